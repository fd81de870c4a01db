//! The `h3m-amt-relay` binary: help, usage errors (exit 2), socket errors
//! (exit 3), and a short live run on 127.0.0.1 (answers a Discovery, exits 0
//! on SIGTERM). Only the child started here is signalled, by its PID.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_h3m-amt-relay");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run h3m-amt-relay")
}

/// Kills the child (by its handle) if the test fails before it exits.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn help_works() {
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--interface",
        "--advertise",
        "--query-interval",
        "--qrv",
        "--secret-rotation",
        "--port",
        "--max-gateways",
        "--max-gateways-per-source",
        "--max-channels",
        "--max-channels-per-gateway",
        "--max-state-mib",
        "--quiet",
        "--stats-interval",
    ] {
        assert!(text.contains(flag), "{flag} missing from:\n{text}");
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["--listen", "127.0.0.1"],
        &["--interface", "lo"],
        &["--listen", "1.2.3", "--interface", "lo"],
        &["--listen", "127.0.0.1", "--interface", "h3m-nonexist0"],
        &["--listen", "127.0.0.1", "--interface", "lo", "--qrv", "9"],
        &["--listen", "127.0.0.1", "--interface", "lo", "--advertise", "127.0.0.1", "--advertise", "127.0.0.2"],
        &["--listen", "0.0.0.0", "--interface", "lo"],
        &["--listen", "192.52.193.1", "--interface", "lo"],
        &["--listen", "127.0.0.1", "--interface", "lo", "--capture", "ports"],
        &["--listen", "127.0.0.1", "--interface", "lo", "--bogus"],
        &["--listen", "127.0.0.1", "--interface", "lo", "--max-gateways-per-source", "0"],
        &["--listen", "127.0.0.1", "--interface", "lo", "--max-channels", "0"],
        &["--listen", "127.0.0.1", "--interface", "lo", "--max-state-mib", "0"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn socket_errors_exit_3() {
    // 192.0.2.1 (TEST-NET-1) is not an address of this host: bind fails.
    let out = run(&["--listen", "192.0.2.1:0", "--interface", "lo", "--capture", "off"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn answers_discovery_and_exits_cleanly_on_sigterm() {
    let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(BIN)
        .args(["--listen", &listen, "--interface", "lo", "--capture", "off", "--stats-interval", "0"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut child = Reap(child);
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(20)).expect("startup line");
    assert!(first.contains(&format!("listening on {listen}")) && first.contains("advertising 127.0.0.1"), "{first}");
    let gw = UdpSocket::bind("127.0.0.1:0").unwrap();
    gw.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 64];
    let (n, from) = loop {
        assert!(Instant::now() < deadline, "no Advertisement");
        gw.send_to(&[1, 0, 0, 0, 0x0d, 0x15, 0xc0, 0xe1], &listen).unwrap();
        if let Ok(r) = gw.recv_from(&mut buf) {
            break r;
        }
    };
    assert_eq!(from.to_string(), listen);
    assert_eq!(&buf[..n], &[2, 0, 0, 0, 0x0d, 0x15, 0xc0, 0xe1, 127, 0, 0, 1]);
    let pid = child.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    // The reader thread may still be forwarding the last lines: read until it
    // ends (end of the child's stderr), not just what has arrived so far.
    let rest: Vec<String> = std::iter::from_fn(|| rx.recv_timeout(Duration::from_secs(10)).ok()).collect();
    assert!(rest.iter().any(|l| l.contains("stopped;")), "{rest:?}");
}
