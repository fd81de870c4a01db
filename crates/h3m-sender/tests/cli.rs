//! The `h3m-send` command line: usage errors exit 2 with a message naming the
//! flag, and `--print-alt-svc` prints an advertisement that parses back to the
//! session the sender uses (fresh keys for every session when none are given).
//!
//! Network safety: the one test that sends does so to 239.255.0.0/16 with the
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
        (&["x", "--cipher-suite", "1304"], "--cipher-suite 1304"),
        (&["x", "--max-datagram-size", "63"], "--max-datagram-size"),
        (&["x", "--key", "00", "--iv", "00"], "--key/--iv need a --cipher-suite"),
        (&["x", "--cipher-suite", "1301", "--key", "0011", "--iv", "001122334455667788990011"], "--key/--iv"),
        (&["x", "--cipher-suite", "1301", "--key", "abc", "--iv", "00"], "--key: not an even number"),
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
