//! Helpers shared by the end-to-end tests of `h3m-recv`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The `h3m-send` binary of this build, next to `h3m-recv`.
///
/// `cargo test --workspace` builds it (h3m-sender has integration tests of its
/// own, so Cargo builds its binaries), but `cargo test -p h3m-receiver` does not:
/// then it is built here, once, with the same Cargo, profile and target
/// directory, so these tests never run against a stale or missing sender.
pub fn h3m_send() -> PathBuf {
    static BUILT: Mutex<bool> = Mutex::new(false);
    let recv = Path::new(env!("CARGO_BIN_EXE_h3m-recv"));
    let send = recv.with_file_name(format!("h3m-send{}", std::env::consts::EXE_SUFFIX));
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !send.exists() && !*built {
        let profile_dir = recv.parent().expect("binary directory");
        let target_dir = profile_dir.parent().expect("target directory");
        let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
        cmd.args(["build", "--quiet", "-p", "h3m-sender", "--bin", "h3m-send", "--target-dir"]).arg(target_dir);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo to build h3m-send");
        assert!(status.success(), "building h3m-send failed: {status}");
        *built = true;
    }
    assert!(send.exists(), "{} is missing after building it", send.display());
    send
}
