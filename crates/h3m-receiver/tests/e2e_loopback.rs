//! End to end through both binaries over IPv4 loopback multicast (outgoing
//! interface 127.0.0.1, TTL 1, a group in 239.255.0.0/16): a tree with an empty
//! file, a 1-byte file, a 100 MiB file, names with spaces and non-ASCII UTF-8,
//! and nested directories arrives byte for byte.
//!
//! `h3m-send` is taken from the same target directory (built there first when
//! it is missing, see `common::h3m_send`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{h3m_send, sha256_hex};

/// Kills the child on drop (a failing test leaves nothing running).
struct Reaper(Option<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `h3m-recv ARGS --out OUT` (stdout and stderr captured) and gives it a
/// moment to join before anything is sent.
fn start_receiver(args: &[&str], out: &Path) -> Reaper {
    // Built before the receiver starts, so the build does not eat its idle timeout.
    h3m_send();
    let child = Command::new(env!("CARGO_BIN_EXE_h3m-recv"))
        .args(args)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    Reaper(Some(child))
}

/// Runs `send` (an `h3m-send` command) to its end, then waits for the
/// receiver: its exit code and stderr. Panics with the sender's stderr if
/// the sender failed.
fn send_then_finish(send: &mut Command, recv: &mut Reaper) -> (Option<i32>, String) {
    let sent = send.output().unwrap();
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    let output = recv.0.take().unwrap().wait_with_output().unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Relative path -> SHA-256 of every file under `root`.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, sha256_hex(&std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// Field `key` of the summary line in `stderr`.
fn summary_count(stderr: &str, key: &str) -> u64 {
    let at = stderr.find(&format!(" {key}=")).unwrap_or_else(|| panic!("{key}: {stderr}"));
    stderr[at + key.len() + 2..].split(' ').next().unwrap().trim().parse().unwrap()
}

fn unique_port() -> u16 {
    20_000 + (std::process::id() as u16 % 20_000)
}

#[test]
fn tree_with_100_mib_file_arrives_byte_for_byte() {
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    let out = base.path().join("out");
    std::fs::create_dir_all(src.join("nested/deeper/still")).unwrap();
    std::fs::write(src.join("empty.dat"), b"").unwrap();
    std::fs::write(src.join("one.bin"), b"1").unwrap();
    std::fs::write(src.join("with spaces.txt"), b"spaces in the name\n").unwrap();
    std::fs::write(src.join("nested/données-日本.txt"), "non-ASCII UTF-8 name\n").unwrap();
    std::fs::write(src.join("nested/deeper/still/leaf.json"), b"{\"deep\": true}\n").unwrap();
    let big: Vec<u8> = (0..100u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(src.join("nested/big.bin"), &big).unwrap();
    drop(big);

    let group = "239.255.77.7";
    let port = unique_port().to_string();
    let mut recv = start_receiver(
        &[
            "--group",
            group,
            "--port",
            &port,
            "--interface",
            "127.0.0.1",
            "--session-id",
            "0e2e0001",
            "--idle-timeout",
            "20",
        ],
        &out,
    );
    let started = Instant::now();
    let send = Command::new(h3m_send())
        .arg(&src)
        .args(["--group", group, "--port", &port, "--interface", "127.0.0.1", "--session-id", "0e2e0001"])
        .args(["--rate", "200M", "--quiet"])
        .output()
        .unwrap();
    assert!(send.status.success(), "h3m-send: {}", String::from_utf8_lossy(&send.stderr));
    let deadline = Instant::now() + Duration::from_secs(60);
    let child = recv.0.as_mut().unwrap();
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "h3m-recv did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = recv.0.take().unwrap().wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{} MiB tree in {:.2} s\n{stdout}{stderr}", 100, started.elapsed().as_secs_f64());
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");

    let sent = tree(&src);
    assert_eq!(tree(&out), sent, "received tree differs");
    assert_eq!(sent.len(), 6);
    // One `complete` line per file, naming it; the summary says the session closed.
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{stdout}");
    assert!(lines.iter().all(|l| l.starts_with("complete ")), "{stdout}");
    assert!(stdout.contains("with%20spaces.txt") && stdout.contains("nested/big.bin  104857600 bytes"), "{stdout}");
    assert!(stderr.contains("session_end=connection_close") && stderr.contains("exit=0"), "{stderr}");
    // Nothing but the resources in the output directory (no temporary files).
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 4);
}

#[test]
fn alt_svc_line_from_the_sender_drives_the_receiver() {
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"advertised\n").unwrap();
    let port = (unique_port() + 1).to_string();
    let common = ["--group", "239.255.77.8", "--port", &port, "--session-id", "cafe01"];
    // The advertisement as the sender prints it.
    let adv = Command::new(h3m_send())
        .arg(&src)
        .args(common)
        .args(["--print-alt-svc", "--interface", "127.0.0.1"])
        .args(["--rate", "10M", "--quiet"])
        .output()
        .unwrap();
    let adv = String::from_utf8_lossy(&adv.stdout);
    let line = adv.lines().find_map(|l| l.strip_prefix("Alt-Svc: ")).expect("an Alt-Svc line").to_owned();
    assert!(line.contains("session-id=cafe01"), "{line}");
    let out = base.path().join("out");
    let mut recv = start_receiver(&["--alt-svc", &line, "--interface", "127.0.0.1", "--idle-timeout", "10"], &out);
    let send =
        Command::new(h3m_send()).arg(&src).args(common).args(["--interface", "127.0.0.1", "--quiet"]).output().unwrap();
    assert!(send.status.success());
    let output = recv.0.take().unwrap().wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stdout));
    assert_eq!(std::fs::read(out.join("a.txt")).unwrap(), b"advertised\n");
}

#[test]
fn wrong_session_id_receives_nothing_and_says_so() {
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"not for you\n").unwrap();
    let port = (unique_port() + 2).to_string();
    let out = base.path().join("out");
    let mut recv = start_receiver(
        &[
            "--group",
            "239.255.77.9",
            "--port",
            &port,
            "--interface",
            "127.0.0.1",
            "--session-id",
            "01",
            "--idle-timeout",
            "1.5",
        ],
        &out,
    );
    let send = Command::new(h3m_send())
        .arg(&src)
        .args(["--group", "239.255.77.9", "--port", &port, "--interface", "127.0.0.1", "--session-id", "02", "--quiet"])
        .output()
        .unwrap();
    assert!(send.status.success());
    let output = recv.0.take().unwrap().wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let field = |k: &str| -> u64 {
        let at = stderr.find(&format!(" {k}=")).unwrap_or_else(|| panic!("no {k} in {stderr}")) + k.len() + 2;
        stderr[at..].split_whitespace().next().unwrap().parse().unwrap()
    };
    // Every datagram arrived and was dropped as another session's; none was accepted.
    assert!(field("datagrams") > 0, "{stderr}");
    assert_eq!((field("packets"), field("dropped_foreign_session")), (0, field("datagrams")), "{stderr}");
    assert!(stderr.contains("session_end=idle_timeout"), "{stderr}");
    // Not just a summary: the operator is told what is wrong.
    let hint =
        format!("{} datagrams of other sessions seen and none of session 01: check --session-id", field("datagrams"));
    assert!(stderr.contains(&hint), "{stderr}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
}

#[test]
fn protected_session_ignores_an_injector_without_the_key() {
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    let evil = base.path().join("evil");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&evil).unwrap();
    let genuine: Vec<u8> = (0..300_000u32).map(|i| (i * 13 % 251) as u8).collect();
    std::fs::write(src.join("data.bin"), &genuine).unwrap();
    std::fs::write(evil.join("data.bin"), vec![0xee; 300_000]).unwrap();
    let port = (unique_port() + 3).to_string();
    let session = ["--group", "239.255.77.10", "--port", &port, "--interface", "127.0.0.1", "--session-id", "2b"];
    let keys =
        ["--cipher-suite", "1301", "--key", "000102030405060708090a0b0c0d0e0f", "--iv", "a0a1a2a3a4a5a6a7a8a9aaab"];
    // The advertisement the sender prints (nobody listens to this first run).
    let first = Command::new(h3m_send())
        .arg(&src)
        .args(session)
        .args(keys)
        .args(["--print-alt-svc", "--quiet"])
        .output()
        .unwrap();
    let adv = String::from_utf8_lossy(&first.stdout);
    let line = adv.lines().find_map(|l| l.strip_prefix("Alt-Svc: ")).expect("an Alt-Svc line").to_owned();
    assert!(line.contains("cipher-suite=1301") && line.contains("extensions=\"4833\""), "{line}");
    let out = base.path().join("out");
    let mut recv = start_receiver(&["--alt-svc", &line, "--interface", "127.0.0.1", "--idle-timeout", "3"], &out);
    // An injector on the same group and session ID without the key, then the real sender.
    let injected =
        Command::new(h3m_send()).arg(&evil).args(session).args(["--rate", "100M", "--quiet"]).output().unwrap();
    let sent = Command::new(h3m_send())
        .arg(&src)
        .args(session)
        .args(keys)
        .args(["--rate", "100M", "--quiet"])
        .output()
        .unwrap();
    assert!(injected.status.success() && sent.status.success());
    let output = recv.0.take().unwrap().wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(std::fs::read(out.join("data.bin")).unwrap(), genuine, "no forged byte");
    // Every injected datagram was dropped by packet protection.
    let injected_datagrams: u64 = String::from_utf8_lossy(&injected.stdout)
        .split(" datagrams")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the injector's summary");
    assert!(stderr.contains(&format!("dropped_protection={injected_datagrams} ")), "{injected_datagrams}: {stderr}");
}

/// AMBI on a protected session: anyone with the session's key (every
/// receiver has it) can forge datagrams that decrypt; with in-band AMBI the
/// receiver takes only what a manifest signed by the sender's key lists
/// (digests over the protected bytes, sequence numbers read under header
/// protection), so a key holder's forgeries are dropped.
#[test]
fn ambi_on_a_protected_session_drops_a_key_holders_forgeries() {
    let keys_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop/vectors/keys/");
    let base = tempfile::tempdir().unwrap();
    let (src, evil) = (base.path().join("src"), base.path().join("evil"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&evil).unwrap();
    let genuine: Vec<u8> = (0..300_000u32).map(|i| (i * 17 % 251) as u8).collect();
    std::fs::write(src.join("data.bin"), &genuine).unwrap();
    std::fs::write(evil.join("data.bin"), vec![0xee; 300_000]).unwrap();
    let port = (unique_port() + 6).to_string();
    let session = ["--group", "239.255.77.13", "--port", &port, "--interface", "127.0.0.1", "--session-id", "2c"];
    let keys =
        ["--cipher-suite", "1301", "--key", "000102030405060708090a0b0c0d0e0f", "--iv", "a0a1a2a3a4a5a6a7a8a9aaab"];
    let trust = format!("{keys_dir}ed25519.pub.pem");
    let sign = format!("{keys_dir}ed25519.key.pem");
    let ambi = ["--source", "127.0.0.1", "--sign", &sign, "--ambi", "inband"];
    // The advertisement (keys, AMBI) the sender prints; nobody listens to this run.
    let first = Command::new(h3m_send())
        .arg(&src)
        .args(session)
        .args(keys)
        .args(ambi)
        .args(["--print-alt-svc", "--quiet"])
        .output()
        .unwrap();
    let adv = String::from_utf8_lossy(&first.stdout);
    let line = adv.lines().find_map(|l| l.strip_prefix("Alt-Svc: ")).expect("an Alt-Svc line").to_owned();
    assert!(line.contains("cipher-suite=1301") && line.contains("ambi=inband"), "{line}");
    let (out, out_plain) = (base.path().join("out"), base.path().join("out-plain"));
    let mut args = vec!["--alt-svc", &line, "--interface", "127.0.0.1", "--idle-timeout", "4"];
    let mut plain = start_receiver(&args, &out_plain);
    args.extend(["--ambi", "auto", "--trust", &trust]);
    let mut recv = start_receiver(&args, &out);
    // A key holder forges the file first, then the sender sends it, signed manifests ahead.
    let forged = Command::new(h3m_send())
        .arg(&evil)
        .args(session)
        .args(keys)
        .args(["--rate", "100M", "--quiet", "--source", "127.0.0.1"])
        .output()
        .unwrap();
    assert!(forged.status.success(), "{}", String::from_utf8_lossy(&forged.stderr));
    let (code, stderr) = send_then_finish(
        Command::new(h3m_send()).arg(&src).args(session).args(keys).args(ambi).args(["--rate", "100M", "--quiet"]),
        &mut recv,
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(std::fs::read(out.join("data.bin")).unwrap(), genuine, "no forged byte");
    let count = |key: &str| summary_count(&stderr, key);
    // Every genuine datagram authenticated; the forgeries held, then
    // dropped (mismatched once the real manifest came, or expired).
    assert!(count("ambi_authenticated") > 250 && count("ambi_manifests") > 0, "{stderr}");
    assert!(count("ambi_mismatched") + count("ambi_expired") > 250, "{stderr}");
    assert_eq!(count("dropped_protection"), 0, "the forgeries decrypt: {stderr}");
    // Without AMBI the key holder's file is taken for the sender's.
    let plain = plain.0.take().unwrap().wait_with_output().unwrap();
    let written = std::fs::read(out_plain.join("data.bin")).unwrap_or_default();
    assert_ne!(written, genuine, "the forgery did no harm? {}", String::from_utf8_lossy(&plain.stderr));
}

#[test]
fn signed_sessions_are_written_only_with_the_senders_key() {
    let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop/vectors/keys/");
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"signed and sealed\n").unwrap();
    let big: Vec<u8> = (0..250_000u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(src.join("sub/b.bin"), &big).unwrap();
    let port = (unique_port() + 4).to_string();
    let session = ["--group", "239.255.77.11", "--port", &port, "--interface", "127.0.0.1", "--session-id", "5197"];
    let cases = [
        ("ed25519.key.pem", "cavage", "ed25519.pub.pem", true),
        ("rsa2048.key.pem", "cavage", "rsa2048.cert.pem", true),
        ("ed25519.key.pem", "rfc9421", "ed25519.cert.pem", true),
        ("rsa2048.pkcs1.key.pem", "rfc9421", "rsa2048.pub.pem", true),
        // A key the sender did not sign with: nothing is written.
        ("ed25519.key.pem", "both", "other-ed25519.pub.pem", false),
    ];
    for (i, (key, form, trusted, ok)) in cases.into_iter().enumerate() {
        let out = base.path().join(format!("out{i}"));
        let trust = format!("{keys}{trusted}");
        let mut args = session.to_vec();
        args.extend(["--idle-timeout", "5", "--trust", &trust]);
        let mut recv = start_receiver(&args, &out);
        let send = Command::new(h3m_send())
            .arg(&src)
            .args(session)
            .args(["--rate", "100M", "--quiet", "--sign", &format!("{keys}{key}"), "--signature", form])
            .output()
            .unwrap();
        assert!(send.status.success(), "h3m-send {key} {form}: {}", String::from_utf8_lossy(&send.stderr));
        let output = recv.0.take().unwrap().wait_with_output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        let what = format!("{key} {form}, trusting {trusted}");
        if ok {
            assert_eq!(output.status.code(), Some(0), "{what}: {stdout}{stderr}");
            assert_eq!(tree(&out), tree(&src), "{what}");
        } else {
            assert_eq!(output.status.code(), Some(1), "{what}: {stdout}{stderr}");
            assert_eq!(
                stdout.lines().filter(|l| l.ends_with("(refused: signature does not verify)")).count(),
                2,
                "{what}: {stdout}"
            );
            assert!(stderr.contains("refused=2") && stderr.contains("exit=1"), "{what}: {stderr}");
            assert!(tree(&out).is_empty(), "{what}: nothing written");
        }
    }
}

/// Entry names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}

/// Sends SIGTERM to a child of this test (by its PID).
fn terminate(child: &Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

#[test]
fn sigterm_removes_temporary_files_and_says_the_session_was_interrupted() {
    // Regression (hardening item 8): SIGTERM (and SIGKILL) left `.h3m-partial-*`
    // files that no later run removed; SIGINT reported `session_end=connection_close`.
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let big: Vec<u8> = (0..3u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    std::fs::write(src.join("big.bin"), &big).unwrap();
    let out = base.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // A temporary file of a receiver that was killed (its PID is gone), and
    // one of this (live) test process, which must be kept.
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let stale = format!(".h3m-partial-0-{}", gone.id());
    let alive = format!(".h3m-partial-0-{}", std::process::id());
    for name in [&stale, &alive, &"keep.txt".to_owned()] {
        std::fs::write(out.join(name), b"x").unwrap();
    }
    let port = (unique_port() + 5).to_string();
    let group = "239.255.77.11";
    let session = ["--group", group, "--port", &port, "--interface", "127.0.0.1", "--session-id", "0e2e0008"];
    let mut recv = start_receiver(&[&session[..], &["--idle-timeout", "20"]].concat(), &out);
    let recv_pid = recv.0.as_ref().unwrap().id();
    assert_eq!(entries(&out), [alive.clone(), "keep.txt".to_owned()], "the stale temporary file is removed at start");
    // 3 MiB at 4 Mbit/s: about 6 s, so the receiver is mid-file when it is stopped.
    let _send = Reaper(Some(
        Command::new(h3m_send())
            .arg(&src)
            .args(session)
            .args(["--rate", "4M", "--quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    let own = format!(".h3m-partial-0-{recv_pid}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !out.join(&own).exists() {
        assert!(Instant::now() < deadline, "the receiver never started writing: {:?}", entries(&out));
        std::thread::sleep(Duration::from_millis(20));
    }
    terminate(recv.0.as_ref().unwrap());
    let output = recv.0.take().unwrap().wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(stderr.contains("session_end=interrupted"), "{stdout}{stderr}");
    assert!(stdout.lines().any(|l| l.starts_with("incomplete big.bin  ")), "{stdout}");
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(entries(&out), [alive, "keep.txt".to_owned()], "its own temporary file is removed");
}

#[test]
fn follow_mode_summary_counts_the_datagrams_of_every_session() {
    // Regression (hardening item 12): with --follow the summary said `datagrams=0`.
    let base = tempfile::tempdir().unwrap();
    let out = base.path().join("out");
    let port = (unique_port() + 6).to_string();
    let session = ["--group", "239.255.77.12", "--port", &port, "--interface", "127.0.0.1", "--session-id", "0e2e0012"];
    let mut recv = start_receiver(&[&session[..], &["--follow"]].concat(), &out);
    for name in ["one.txt", "two.txt"] {
        let src = base.path().join(name);
        std::fs::write(&src, name.as_bytes()).unwrap();
        let send = Command::new(h3m_send()).arg(&src).args(session).arg("--quiet").output().unwrap();
        assert!(send.status.success(), "h3m-send: {}", String::from_utf8_lossy(&send.stderr));
        std::thread::sleep(Duration::from_millis(500));
    }
    terminate(recv.0.as_ref().unwrap());
    let output = recv.0.take().unwrap().wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(std::fs::read(out.join("one.txt")).unwrap(), b"one.txt", "{stdout}{stderr}");
    assert_eq!(std::fs::read(out.join("two.txt")).unwrap(), b"two.txt", "{stdout}{stderr}");
    let field = |k: &str| -> u64 {
        let at = stderr.find(&format!(" {k}=")).unwrap_or_else(|| panic!("no {k} in {stderr}")) + k.len() + 2;
        stderr[at..].split_whitespace().next().unwrap().parse().unwrap()
    };
    assert_eq!(field("complete"), 2, "{stderr}");
    // Each session is at least one datagram (packed: the promise, the
    // response with its end signal and the body fill one).
    assert!(field("datagrams") >= 2 && field("packets") == field("datagrams"), "{stderr}");
    assert!(stderr.contains("session_end=interrupted"), "{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
}

#[test]
fn an_intact_session_ends_at_its_end_signal_without_lingering() {
    // Issue 13, item 1: the linger after the end signal applies only while
    // something is incomplete. With --linger 60 an intact session must still
    // end as soon as its end signal arrives (not 60 s later).
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("a.txt");
    std::fs::write(&src, b"intact\n").unwrap();
    let out = base.path().join("out");
    let port = (unique_port() + 7).to_string();
    let session = ["--group", "239.255.77.13", "--port", &port, "--interface", "127.0.0.1", "--session-id", "0e2e0013"];
    let mut recv = start_receiver(&[&session[..], &["--linger", "60", "--idle-timeout", "60"]].concat(), &out);
    let send = Command::new(h3m_send()).arg(&src).args(session).arg("--quiet").output().unwrap();
    assert!(send.status.success(), "h3m-send: {}", String::from_utf8_lossy(&send.stderr));
    let deadline = Instant::now() + Duration::from_secs(30);
    let child = recv.0.as_mut().unwrap();
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "h3m-recv lingered after an intact session ended");
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = recv.0.take().unwrap().wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("session_end=connection_close"), "{stderr}");
    assert_eq!(std::fs::read(out.join("a.txt")).unwrap(), b"intact\n");
}

#[test]
fn a_receiver_joining_a_carousel_late_writes_every_file() {
    // Issue 10, item 2: `h3m-send --carousel` cycles the set until --duration;
    // a receiver started well after the first cycle began (in the middle of a
    // file) learns the push in flight from the repeated promise and head,
    // completes it and every other file from the next cycles, and exits 0
    // when the sender's end signal comes.
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    let mut expected = BTreeMap::new();
    for (i, name) in ["one.bin", "two.bin", "three.bin"].iter().enumerate() {
        let body: Vec<u8> = (0..60_000u32).map(|k| ((k as usize * (i + 3)) % 251) as u8).collect();
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join(name), &body).unwrap();
        expected.insert(name.to_string(), sha256_hex(&body));
    }
    let out = base.path().join("out");
    let port = (unique_port() + 9).to_string();
    let session = ["--group", "239.255.77.14", "--port", &port, "--interface", "127.0.0.1", "--session-id", "0e2e0014"];
    // 4 Mbit/s: a cycle of the three files takes about 0.4 s.
    let mut send = Command::new(h3m_send())
        .arg(&src)
        .args(session)
        .args(["--quiet", "--carousel", "--duration", "3", "--rate", "4M", "--repeat-heads", "0.05"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(650));
    let recv = start_receiver(&[&session[..], &["--idle-timeout", "20", "--json"]].concat(), &out);
    let status = send.wait().unwrap();
    assert!(status.success());
    let mut recv = recv;
    let output = recv.0.take().unwrap().wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(tree(&out), expected);
    // It joined late: the first copy it saw of some file was partial, or it
    // saw none of the first cycle's first file.
    let records: Vec<serde_json::Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let first_push = records.iter().find_map(|r| r["push_id"].as_u64()).unwrap();
    assert!(first_push > 0, "the receiver joined after the first push: {stdout}");
    assert!(stderr.contains("session_end=connection_close") || stderr.contains("session_end=goaway"), "{stderr}");
}

/// `--ambi-key` / `--ambi-trust`: in-band manifests signed with a key of
/// their own and pushes with no signature: every datagram authenticated,
/// the file written; a receiver trusting another manifest key writes nothing.
#[test]
fn an_ambi_key_of_its_own_authenticates_unsigned_pushes() {
    let keys_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop/vectors/keys/");
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let body: Vec<u8> = (0..200_000u32).map(|i| (i * 29 % 253) as u8).collect();
    std::fs::write(src.join("clip.bin"), &body).unwrap();
    let port = (unique_port() + 12).to_string();
    let session = ["--group", "239.255.77.16", "--port", &port, "--interface", "127.0.0.1", "--session-id", "3d"];
    let (out, out_other) = (base.path().join("out"), base.path().join("out-other"));
    let (good, other) = (format!("{keys_dir}ed25519.pub.pem"), format!("{keys_dir}other-ed25519.pub.pem"));
    let mut args = session.to_vec();
    args.extend(["--source", "127.0.0.1", "--idle-timeout", "4", "--ambi", "inband"]);
    let mut recv = start_receiver(&[&args[..], &["--ambi-trust", &good]].concat(), &out);
    let mut wrong = start_receiver(&[&args[..], &["--ambi-trust", &other]].concat(), &out_other);
    let (code, stderr) = send_then_finish(
        Command::new(h3m_send())
            .arg(&src)
            .args(session)
            .args(["--source", "127.0.0.1", "--rate", "100M", "--quiet", "--ambi", "inband"])
            .args(["--ambi-key", &format!("{keys_dir}ed25519.key.pem")]),
        &mut recv,
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(std::fs::read(out.join("clip.bin")).unwrap(), body);
    let count = summary_count;
    assert_eq!(count(&stderr, "ambi_authenticated"), count(&stderr, "datagrams"), "{stderr}");
    // The manifests of a batch share one signature: the receiver checked at most half as many
    // signatures as it accepted manifests (one per manifest before batches were signed together).
    assert!(count(&stderr, "ambi_manifests") >= 3, "{stderr}");
    assert!(count(&stderr, "ambi_signatures_checked") * 2 <= count(&stderr, "ambi_manifests"), "{stderr}");
    let output = wrong.0.take().unwrap().wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!out_other.join("clip.bin").exists(), "{stderr}");
    assert_eq!(count(&stderr, "ambi_authenticated"), 0, "{stderr}");
    assert!(count(&stderr, "ambi_manifests_bad_signature") > 0, "{stderr}");
}
