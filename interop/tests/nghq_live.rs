//! Live interop with nghq's example programs: runs `live/nghq_live.sh` when
//! `NGHQ_BIN_DIR` points at nghq's built examples and the test runs as root;
//! otherwise prints `SKIP: ...` and passes.
//!
//! Our binaries are not built for this crate (no `CARGO_BIN_EXE_*` here): the
//! test passes `H3M_SEND` / `H3M_RECV` from the environment if set, else
//! `<workspace>/target/debug/h3m-{send,recv}`, and skips when they are missing
//! (`cargo build -p h3m-sender -p h3m-receiver` first).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn skip(reason: &str) {
    // Straight to the stderr descriptor, so the harness's output capture does not hide it.
    let _ = writeln!(std::io::stderr(), "SKIP: nghq_live: {reason}");
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1)) == Some("0")
    })
}

fn binary(var: &str, name: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug").join(name),
    }
}

#[test]
fn nghq_live() {
    let Some(nghq) = std::env::var_os("NGHQ_BIN_DIR") else {
        skip("NGHQ_BIN_DIR not set (point it at nghq's examples directory)");
        return;
    };
    if !is_root() {
        skip("needs root (network namespaces)");
        return;
    }
    let send = binary("H3M_SEND", "h3m-send");
    let recv = binary("H3M_RECV", "h3m-recv");
    for b in [&send, &recv] {
        if !b.exists() {
            skip(&format!("{} not found (run `cargo build -p h3m-sender -p h3m-receiver`)", b.display()));
            return;
        }
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("live/nghq_live.sh");
    // Plain, then with FEC: nghq's receiver must behave the same when the
    // session carries repair datagrams (on port + 1, which it never binds).
    for extra in ["", "--fec 5"] {
        eprintln!("nghq_live: h3m-send extra arguments: {extra:?}");
        let out = Command::new("bash")
            .arg(&script)
            .env("NGHQ_BIN_DIR", &nghq)
            .env("H3M_SEND", &send)
            .env("H3M_RECV", &recv)
            .env("H3M_SEND_EXTRA", extra)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("{stdout}{stderr}");
        assert!(out.status.success(), "{} {extra} failed ({})", script.display(), out.status);
        if let Some(line) = stdout.lines().find(|l| l.starts_with("SKIP:")) {
            skip(line.trim_start_matches("SKIP:").trim());
            return;
        }
    }
}
