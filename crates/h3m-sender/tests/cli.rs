//! The `h3m-send` command line: usage errors exit 2 with a message naming the
//! flag, and `--print-alt-svc` prints an advertisement that parses back to the
//! session the sender uses (fresh keys for every session when none are given).
//!
//! A file that is gone before its turn, or shrinks while being sent, makes the
//! run exit 1 naming it.
//!
//! Network safety: the tests that send do so to 239.255.0.0/16 with the
//! outgoing interface 127.0.0.1 and TTL 1.

use std::process::{Command, Output};

use h3m_proto::altsvc;
use h3m_proto::protection::CipherSuite;

fn h3m_send(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_h3m-send")).args(args).output().expect("run h3m-send")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn usage_errors_exit_2_and_name_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "nothing to publish"),
        (&["x", "--session-id", "zz"], "--session-id"),
        (&["x", "--rate", "fast"], "--rate"),
        (&["x", "--cipher-suite", "1304"], "'1304' for '--cipher-suite"),
        (&["x", "--max-datagram-size", "63"], "--max-datagram-size"),
        (&["x", "--repeat", "0"], "--repeat"),
        (&["x", "--carousel", "--repeat", "2"], "'--carousel' cannot be used with '--repeat"),
        (&["--carousel", "--stdin", "--path", "/live"], "'--carousel' cannot be used with '--stdin'"),
        (&["x", "--repeat-heads", "soon"], "--repeat-heads"),
        (&["x", "--group", "10.1.2.3"], "--group 10.1.2.3: not a multicast address"),
        (&["x", "--group", "127.0.0.1"], "--group 127.0.0.1: not a multicast address"),
        (&["x", "--group", "2001:db8::1"], "--group 2001:db8::1: not a multicast address"),
        (&["x", "--ignore", "*.tmp"], "--watch"),
        (&["x", "--key", "00", "--iv", "00"], "--key/--iv need a --cipher-suite"),
        (&["x", "--cipher-suite", "1301", "--key", "0011", "--iv", "001122334455667788990011"], "--key/--iv"),
        (&["x", "--cipher-suite", "1301", "--key", "abc", "--iv", "00"], "'abc' for '--key <KEY>': not an even number"),
        (&["x", "--sign", "/nonexistent/key.pem"], "--sign /nonexistent/key.pem"),
        (&["x", "--signature", "rfc9421"], "--sign <KEY.pem>"),
        (
            &["x", "--sign", concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop/vectors/keys/ed25519.pub.pem")],
            "no private key",
        ),
        (
            &[
                "x",
                "--sign",
                concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop/vectors/keys/ed25519.key.pem"),
                "--key-id",
                "a\"b",
            ],
            "--key-id",
        ),
    ];
    for (args, needle) in cases {
        let o = h3m_send(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {:?} lacks {needle:?}", stderr(&o));
    }
}

/// The `Alt-Svc:` line of one short protected session of `file`.
fn advertised(file: &std::path::Path, port: &str) -> (String, Output) {
    let o = h3m_send(&[
        file.to_str().unwrap(),
        "--group",
        "239.255.77.30",
        "--port",
        port,
        "--interface",
        "127.0.0.1",
        "--ttl",
        "1",
        "--session-id",
        "0a0b",
        "--cipher-suite",
        "1301",
        "--rate",
        "50M",
        "--print-alt-svc",
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = text.lines().find_map(|l| l.strip_prefix("Alt-Svc: ")).expect("an Alt-Svc line").to_owned();
    (line, o)
}

#[test]
fn print_alt_svc_carries_a_fresh_key_for_every_session() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.bin");
    std::fs::write(&file, b"0123456789").unwrap();
    let (first, out1) = advertised(&file, "47301");
    let (second, _) = advertised(&file, "47301");

    let a = altsvc::parse_one(&first).unwrap_or_else(|e| panic!("{first}: {e}"));
    let b = altsvc::parse_one(&second).unwrap();
    assert_eq!(a.group, "239.255.77.30:47301".parse().unwrap());
    assert_eq!(a.session_id.as_bytes(), &[0x0a, 0x0b]);
    assert_eq!(a.cipher_suite, CipherSuite::Aes128Gcm);
    let (ka, kb) = (a.key.clone().expect("key"), b.key.clone().expect("key"));
    assert_eq!(ka.len(), 16);
    assert_eq!(a.iv.as_ref().map(Vec::len), Some(12));
    assert_ne!(ka, kb, "two sessions must not share a key");
    assert_ne!(a.iv, b.iv, "two sessions must not share an IV");
    // The key is on stdout in the advertisement only: never in the log.
    let key_hex: String = ka.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!stderr(&out1).to_ascii_lowercase().contains(&key_hex));
    // The summary line counts the one resource.
    assert!(String::from_utf8_lossy(&out1.stdout).contains("sent 1 resources, 10 body bytes"));
}

/// The arguments of a loopback send of `files` to 239.255.77.`last_octet`:`port`.
fn loopback_args(files: &[&std::path::Path], last_octet: u8, port: u16, rate: &str) -> Vec<String> {
    let mut args: Vec<String> = files.iter().map(|f| f.to_str().unwrap().to_owned()).collect();
    for a in ["--group", &format!("239.255.77.{last_octet}"), "--port", &port.to_string()] {
        args.push(a.to_owned());
    }
    for a in ["--interface", "127.0.0.1", "--ttl", "1", "--session-id", "0a0d", "--rate", rate, "--quiet"] {
        args.push(a.to_owned());
    }
    args
}

/// Joins 239.255.77.`last_octet` on 127.0.0.1 at `port`.
fn join(last_octet: u8, port: u16) -> std::net::UdpSocket {
    let s = std::net::UdpSocket::bind((std::net::Ipv4Addr::new(239, 255, 77, last_octet), port)).expect("bind");
    s.join_multicast_v4(&std::net::Ipv4Addr::new(239, 255, 77, last_octet), &std::net::Ipv4Addr::LOCALHOST)
        .expect("join on 127.0.0.1");
    s.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    s
}

/// A port for this test run (the process ID spreads parallel runs apart).
fn port(offset: u16) -> u16 {
    30_000 + (std::process::id() % 10_000) as u16 + offset * 10_000 % 30_000
}

/// Starts `h3m-send ARGS`, waits for its first datagram (so it has listed its
/// files and started the first), runs `meanwhile`, and waits for the exit.
fn send_and_meanwhile(args: &[String], socket: &std::net::UdpSocket, meanwhile: impl FnOnce()) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_h3m-send"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start h3m-send");
    let mut buf = [0u8; 2048];
    let first = socket.recv(&mut buf);
    meanwhile();
    let out = child.wait_with_output().expect("wait for h3m-send");
    first.unwrap_or_else(|e| panic!("no datagram from h3m-send ({e}): {}", stderr(&out)));
    out
}

#[test]
fn a_file_gone_before_its_turn_exits_1_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    let victim = dir.path().join("victim.txt");
    std::fs::write(&big, vec![7u8; 2 << 20]).unwrap();
    std::fs::write(&victim, b"here at the listing, gone at its turn").unwrap();
    let p = port(1);
    let socket = join(31, p);
    // 2 MiB at 20 Mbit/s: the first file takes about 0.8 s; the second goes meanwhile.
    let o = send_and_meanwhile(&loopback_args(&[&big, &victim], 31, p, "20M"), &socket, || {
        std::fs::remove_file(&victim).unwrap()
    });
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let v = victim.display();
    assert!(err.contains(&format!("h3m-send: skipped {v}: No such file or directory")), "{err}");
    assert!(err.contains(&format!("h3m-send: 1 not sent intact: {v}\n")), "{err}");
    assert!(!err.contains("big.bin"), "{err}");
}

#[test]
fn a_file_that_shrinks_while_sent_is_reset_exits_1_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("shrinks.bin");
    let after = dir.path().join("z-after.txt");
    std::fs::write(&big, vec![7u8; 4 << 20]).unwrap();
    std::fs::write(&after, b"still sent").unwrap();
    let p = port(2);
    let socket = join(32, p);
    // 4 MiB at 20 Mbit/s: about 1.7 s; it is cut to 1000 bytes after its first datagram.
    let o = send_and_meanwhile(&loopback_args(&[&big, &after], 32, p, "20M"), &socket, || {
        std::fs::OpenOptions::new().write(true).open(&big).unwrap().set_len(1000).unwrap()
    });
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let b = big.display();
    let line =
        err.lines().find(|l| l.starts_with(&format!("h3m-send: reset {b}: "))).unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("file shrank while being sent (") && line.contains(" of 4194304 bytes)"), "{line}");
    assert!(line.ends_with("(receivers get it incomplete)"), "{line}");
    assert!(err.contains(&format!("h3m-send: 1 not sent intact: {b}\n")), "{err}");
    // The run went on: the next file was sent whole (the reset one is not counted).
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("sent 1 resources, 10 body bytes"), "{out}");
}

#[test]
fn a_file_rewritten_in_place_while_sent_is_reset() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("rewritten.bin");
    std::fs::write(&big, vec![7u8; 4 << 20]).unwrap();
    let p = port(3);
    let socket = join(33, p);
    // Same length, other bytes, a later modification time: its digest in
    // trailers would vouch for a mix of both versions, so it is reset.
    let o = send_and_meanwhile(&loopback_args(&[&big], 33, p, "20M"), &socket, || {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&big).unwrap();
        f.write_all_at(&[8u8; 1000], 3 << 20).unwrap();
        f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5)).unwrap();
    });
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let b = big.display();
    assert!(err.contains(&format!("h3m-send: reset {b}: file changed while being sent")), "{err}");
    assert!(err.contains(&format!("h3m-send: 1 not sent intact: {b}\n")), "{err}");
}

/// `--qlog DIR`: one `transport:packet_sent` per datagram of the session (here a
/// protected one), numbered from 0, whose STREAM frames carry at least the
/// file's bytes; every record is JSON-SEQ with the qlog schema's required
/// fields.
#[test]
fn qlog_logs_every_datagram_sent() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("q.bin");
    std::fs::write(&file, vec![5u8; 40_000]).unwrap();
    let qlog = dir.path().join("qlog");
    let p = port(4);
    let socket = join(34, p);
    socket.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
    let counter = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut n = 0u64;
        while socket.recv(&mut buf).is_ok() {
            n += 1;
        }
        n
    });
    let mut args = loopback_args(&[&file], 34, p, "20M");
    for a in ["--cipher-suite", "1301", "--qlog", qlog.to_str().unwrap(), "--qlog-max-mib", "4"] {
        args.push(a.to_owned());
    }
    let o = h3m_send(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let received = counter.join().unwrap();

    let bytes = std::fs::read(qlog.join("0a0d-sender.sqlog")).expect("the qlog file");
    assert_eq!(bytes.first(), Some(&0x1e));
    assert_eq!(bytes.last(), Some(&b'\n'));
    let mut records = bytes[1..].split(|&b| b == 0x1e).map(|r| {
        assert_eq!(r.last(), Some(&b'\n'));
        serde_json::from_slice::<serde_json::Value>(r).expect("a JSON record")
    });
    let header = records.next().unwrap();
    assert_eq!(header["qlog_format"], "JSON-SEQ");
    assert_eq!(header["trace"]["vantage_point"]["type"], "server");
    assert!(header["trace"]["common_fields"]["reference_time"].is_u64());
    let mut sent = 0u64;
    let mut stream_bytes = 0u64;
    for e in records {
        assert!(e["time"].is_number());
        assert!(e["data"].is_object());
        assert_eq!(e["name"], "transport:packet_sent");
        assert_eq!(e["data"]["header"]["packet_number"], sent);
        sent += 1;
        for f in e["data"]["frames"].as_array().unwrap() {
            stream_bytes += f["length"].as_u64().filter(|_| f["frame_type"] == "stream").unwrap_or(0);
        }
    }
    assert_eq!(sent, received, "one event per datagram");
    assert!(stream_bytes >= 40_000, "{stream_bytes}");
}
