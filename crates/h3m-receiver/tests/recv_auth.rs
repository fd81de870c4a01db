//! `h3m-recv --trust / --max-age / --require-digest` on captures (`--input`):
//! nghq's signed captures are written with nghq's key or certificate; an
//! unsigned capture, a wrong key, a tampered header or body, a stale or
//! future signature, a resource without a digest and one whose digest fields
//! disagree are refused (exit 1, nothing written); a live resource is checked
//! by the digest and signature in its trailers. Tampered captures and signed sessions with old dates are
//! built here, from the vectors' `.datagrams` files and with `h3m_proto`'s
//! sender and signer, so nothing depends on today's date.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use h3m_proto::SessionId;
use h3m_proto::auth::{PushSigner, SignatureForms, SigningKey};
use h3m_proto::encoder::EncoderConfig;
use h3m_proto::protection::NullProtection;
use h3m_proto::qpack::huffman;
use h3m_proto::sender::{ResourceMeta, Sender, SenderConfig};
use serde_json::Value;

#[path = "support/loopback.rs"]
mod loopback;
use loopback::send_on_loopback;

const BIN: &str = env!("CARGO_BIN_EXE_h3m-recv");
const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop/vectors/nghq");
const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop/vectors/keys");

fn vector(name: &str) -> PathBuf {
    Path::new(VECTORS).join(name)
}

fn nghq_key(name: &str) -> String {
    vector("keys").join(name).to_string_lossy().into_owned()
}

fn test_key(name: &str) -> String {
    Path::new(KEYS).join(name).to_string_lossy().into_owned()
}

fn recv(input: &Path, out: &Path, args: &[&str]) -> Output {
    Command::new(BIN).arg("--input").arg(input).arg("--out").arg(out).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every file under `dir` (none if it does not exist).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
    out
}

/// Asserts a run refused its one resource with `reason`, exit 1, nothing written.
fn assert_refused(o: &Output, out: &Path, reason: &str) {
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.starts_with("refused    ") && stdout.contains(&format!("({reason})")), "{reason}: {stdout}");
    assert!(stderr.contains("h3m-recv: error: push 0 ("), "{stderr}");
    assert!(stderr.contains(reason), "{stderr}");
    assert!(files(out).is_empty(), "nothing written: {:?}", files(out));
}

/// `.datagrams` records.
fn read_datagrams(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        out.push(rest[4..4 + len].to_vec());
        rest = &rest[4 + len..];
    }
    out
}

fn write_datagrams(datagrams: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for d in datagrams {
        out.extend((d.len() as u32).to_be_bytes());
        out.extend(d);
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Changes a Huffman-coded header value inside the datagrams by one bit, so
/// that it still decodes, to a different value of the same length (the
/// QPACK and QUIC framing stay valid): the datagrams and the new value.
fn tamper_huffman_value(datagrams: &[Vec<u8>], value: &str) -> (Vec<Vec<u8>>, String) {
    let mut coded = Vec::new();
    huffman::encode(value.as_bytes(), &mut coded);
    let (di, at) = datagrams
        .iter()
        .enumerate()
        .find_map(|(i, d)| find(d, &coded).map(|at| (i, at)))
        .unwrap_or_else(|| panic!("{value} not found Huffman-coded"));
    for byte in 0..coded.len() - 1 {
        for bit in 0..8 {
            let mut c = coded.clone();
            c[byte] ^= 1 << bit;
            let mut decoded = Vec::new();
            if huffman::decode(&c, &mut decoded).is_ok() && decoded.len() == value.len() && decoded != value.as_bytes()
            {
                let mut out = datagrams.to_vec();
                out[di][at..at + c.len()].copy_from_slice(&c);
                return (out, text(&decoded));
            }
        }
    }
    panic!("no one-bit change of {value} decodes");
}

/// A signed nghq scenario: name, session ID, port, and its resources
/// (relative path, payload file).
type SignedScenario = (String, String, u16, Vec<(String, PathBuf)>);

/// The nghq scenarios whose pushes are signed.
fn signed_scenarios() -> Vec<SignedScenario> {
    let mut names: Vec<String> = std::fs::read_dir(VECTORS)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok()?.strip_suffix(".expected.json").map(str::to_owned))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let json: Value =
            serde_json::from_slice(&std::fs::read(vector(&format!("{name}.expected.json"))).unwrap()).unwrap();
        let pushes = json["pushes"].as_array().unwrap();
        if !pushes.iter().any(|p| p.get("response_signature_verified") == Some(&Value::Bool(true))) {
            continue;
        }
        let resources = pushes
            .iter()
            .filter(|p| p["payload_file"].is_string())
            .map(|p| {
                let rel = p["path"].as_str().unwrap().trim_start_matches('/').to_owned();
                (rel, vector(p["payload_file"].as_str().unwrap()))
            })
            .collect();
        let sid = json["session_id_hex"].as_str().unwrap().to_owned();
        out.push((name, sid, json["port"].as_u64().unwrap() as u16, resources));
    }
    out
}

#[test]
fn signed_captures_are_written_with_nghq_key_or_certificate() {
    let scenarios = signed_scenarios();
    assert_eq!(scenarios.len(), 9, "s01-s05, s08-s10, s17");
    for (name, sid, port, resources) in &scenarios {
        for ext in ["pcap", "datagrams"] {
            for key in ["sender.pub.pem", "sender.pem"] {
                let tmp = tempfile::tempdir().unwrap();
                let out = tmp.path().join("out");
                let o = recv(
                    &vector(&format!("{name}.{ext}")),
                    &out,
                    &["--session-id", sid, "--port", &port.to_string(), "--trust", &nghq_key(key)],
                );
                let what = format!("{name}.{ext} --trust {key}");
                assert_eq!(o.status.code(), Some(0), "{what}: {}{}", text(&o.stdout), text(&o.stderr));
                assert_eq!(files(&out).len(), resources.len(), "{what}");
                for (rel, payload) in resources {
                    assert_eq!(std::fs::read(out.join(rel)).unwrap(), std::fs::read(payload).unwrap(), "{what}: {rel}");
                }
                assert!(text(&o.stderr).contains(&format!("complete={} incomplete=0 refused=0", resources.len())));
            }
        }
    }
}

#[test]
fn unsigned_capture_is_refused_with_trust() {
    for ext in ["pcap", "datagrams"] {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let o = recv(&vector(&format!("s06-hello-nossl-v4.{ext}")), &out, &["--trust", &nghq_key("sender.pub.pem")]);
        assert_refused(&o, &out, "refused: unsigned");
        assert_eq!(text(&o.stdout), "refused    //hello.txt  13 bytes  (refused: unsigned)\n");
        // Without --trust the same capture is written.
        let o = recv(&vector(&format!("s06-hello-nossl-v4.{ext}")), &out, &[]);
        assert_eq!(o.status.code(), Some(0));
        assert_eq!(std::fs::read(out.join("hello.txt")).unwrap(), b"hello world!\n");
    }
    // JSON: the error and the resource name the reason.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = recv(&vector("s07-dir3-nossl-v4.pcap"), &out, &["--trust", &nghq_key("sender.pem"), "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let records: Vec<Value> = text(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let errors: Vec<&Value> = records.iter().filter(|r| r["event"] == "error").collect();
    assert_eq!(errors.len(), 3);
    assert!(errors.iter().all(|e| e["kind"] == "unauthenticated" && e["message"] == "refused: unsigned"));
    let resources: Vec<&Value> = records.iter().filter(|r| r["event"] == "resource").collect();
    assert!(
        resources.iter().all(|r| r["status"] == "refused" && r["reason"] == "refused: unsigned" && r["file"].is_null())
    );
    let summary = records.last().unwrap();
    assert_eq!((summary["resources_refused"].as_u64(), summary["exit_status"].as_u64()), (Some(3), Some(1)));
    assert!(files(&out).is_empty());
}

#[test]
fn a_key_that_did_not_sign_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let input = vector("s01-hello-v4.pcap");
    let o = recv(&input, &out, &["--trust", &test_key("ed25519.pub.pem")]);
    assert_refused(&o, &out, "refused: signature does not verify (no trusted key for `rsa-sha256` signatures)");
    let o = recv(&input, &out, &["--trust", &test_key("rsa2048.cert.pem")]);
    assert_refused(&o, &out, "refused: signature does not verify");
    // One right key among wrong ones is enough.
    let o = recv(
        &input,
        &out,
        &[
            "--trust",
            &test_key("rsa2048.cert.pem"),
            "--trust",
            &test_key("ed25519.pub.pem"),
            "--trust",
            &nghq_key("sender.pem"),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(std::fs::read(out.join("hello.txt")).unwrap(), b"hello world!\n");
}

#[test]
fn tampered_header_is_refused() {
    let original = read_datagrams(&std::fs::read(vector("s01-hello-v4.datagrams")).unwrap());
    for (value, signed_by) in [
        ("Fri, 27 Nov 2026 16:00:17 GMT", "response"),
        ("text/plain; charset=UTF-8", "response"),
        ("localhost", "promise"),
    ] {
        let (tampered, new_value) = tamper_huffman_value(&original, value);
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("tampered.datagrams");
        std::fs::write(&input, write_datagrams(&tampered)).unwrap();
        let out = tmp.path().join("out");
        let o = recv(&input, &out, &["--trust", &nghq_key("sender.pub.pem"), "--json"]);
        let stdout = text(&o.stdout);
        // The framing is intact: the receiver decoded the changed value.
        assert!(stdout.contains(&new_value), "{value} -> {new_value}: {stdout}");
        let reason = if signed_by == "promise" {
            "refused: promise signature does not verify"
        } else {
            "refused: signature does not verify"
        };
        assert_eq!(o.status.code(), Some(1), "{value}: {stdout}");
        assert!(stdout.contains(&format!("\"reason\":\"{reason}\"")), "{value}: {stdout}");
        assert!(files(&out).is_empty(), "{value}");
        // Integrity alone cannot see it: without --trust the file is written.
        let out2 = tmp.path().join("out2");
        assert_eq!(recv(&input, &out2, &[]).status.code(), Some(0), "{value}");
        assert_eq!(files(&out2).len(), 1);
    }
}

#[test]
fn tampered_body_is_not_written() {
    let original = read_datagrams(&std::fs::read(vector("s01-hello-v4.datagrams")).unwrap());
    let mut tampered = original.clone();
    let d = tampered.iter_mut().find(|d| find(d, b"hello world!\n").is_some()).unwrap();
    let at = find(d, b"hello world!\n").unwrap();
    d[at] = b'j';
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("tampered.datagrams");
    std::fs::write(&input, write_datagrams(&tampered)).unwrap();
    for args in [&[][..], &["--trust", &nghq_key("sender.pub.pem")][..], &["--require-digest"][..]] {
        let out = tmp.path().join(format!("out{}", args.len()));
        let o = recv(&input, &out, args);
        let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
        assert_eq!(o.status.code(), Some(1), "{args:?}: {stdout}{stderr}");
        assert!(stdout.contains("(digest mismatch: the header says sha-256 ecf701f7"), "{args:?}: {stdout}");
        assert!(stderr.contains("h3m-recv: error: push 0 (//hello.txt): digest mismatch"), "{args:?}: {stderr}");
        assert!(files(&out).is_empty(), "{args:?}");
    }
}

/// `s01-hello-v4.pcap` with every record's timestamp moved by `shift` seconds.
fn shifted_pcap(shift: i64) -> Vec<u8> {
    let mut pcap = std::fs::read(vector("s01-hello-v4.pcap")).unwrap();
    let le = pcap[..4] == [0xd4, 0xc3, 0xb2, 0xa1] || pcap[..4] == [0x4d, 0x3c, 0xb2, 0xa1];
    let mut pos = 24;
    while pos + 16 <= pcap.len() {
        let field = |b: &[u8]| -> u32 {
            let a: [u8; 4] = b.try_into().unwrap();
            if le { u32::from_le_bytes(a) } else { u32::from_be_bytes(a) }
        };
        let ts = field(&pcap[pos..pos + 4]);
        let caplen = field(&pcap[pos + 8..pos + 12]) as usize;
        let new = (i64::from(ts) + shift) as u32;
        pcap[pos..pos + 4].copy_from_slice(&if le { new.to_le_bytes() } else { new.to_be_bytes() });
        pos += 16 + caplen;
    }
    pcap
}

#[test]
fn pcap_timestamps_decide_freshness() {
    let tmp = tempfile::tempdir().unwrap();
    let trust = nghq_key("sender.pub.pem");
    // Received an hour after it was signed.
    let late = tmp.path().join("late.pcap");
    std::fs::write(&late, shifted_pcap(3600)).unwrap();
    let out = tmp.path().join("out1");
    assert_refused(
        &recv(&late, &out, &["--trust", &trust]),
        &out,
        "refused: stale (date Fri, 27 Nov 2026 16:00:17 GMT older than max-age 300 s)",
    );
    assert_refused(
        &recv(&late, &out, &["--trust", &trust, "--max-age", "3599"]),
        &out,
        "refused: stale (date Fri, 27 Nov 2026 16:00:17 GMT older than max-age 3599 s)",
    );
    let o = recv(&late, &out, &["--trust", &trust, "--max-age", "3700"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    // Received before it was signed: more than the 60 s of allowed clock skew.
    let early = tmp.path().join("early.pcap");
    std::fs::write(&early, shifted_pcap(-65)).unwrap();
    let out = tmp.path().join("out2");
    assert_refused(
        &recv(&early, &out, &["--trust", &trust]),
        &out,
        "refused: date Fri, 27 Nov 2026 16:00:17 GMT is more than 60 s in the future",
    );
    std::fs::write(&early, shifted_pcap(-55)).unwrap();
    assert_eq!(recv(&early, &out, &["--trust", &trust]).status.code(), Some(0));
}

/// A `.datagrams` session of `files`, signed with `key` at `date`.
fn signed_session(key: &str, forms: SignatureForms, date: SystemTime, files: &[(&str, &[u8])]) -> Vec<u8> {
    let key = SigningKey::from_pem(&std::fs::read(test_key(key)).unwrap()).unwrap();
    let signer = PushSigner::new(key, "test-key", forms).unwrap();
    let mut s = Sender::new(SenderConfig::new(EncoderConfig::new(SessionId::NGHQ_DEFAULT)), Box::new(NullProtection));
    for (i, (path, body)) in files.iter().enumerate() {
        let mut meta = ResourceMeta::file(*path, body.len() as u64, date);
        meta.sha256 = Some(sha256(body));
        meta.last = i + 1 == files.len();
        let (mut req, mut resp) = (s.request_headers(&meta), s.response_headers(&meta));
        assert!(signer.sign_headers(&mut req, &mut resp, date).unwrap());
        let id = s.start_with_headers(&meta, &req, &resp).unwrap();
        s.write(id, body).unwrap();
        s.finish(id, None).unwrap();
    }
    let now = Instant::now();
    let datagrams: Vec<Vec<u8>> = std::iter::from_fn(|| s.poll_transmit(now)).collect();
    write_datagrams(&datagrams)
}

#[test]
fn datagrams_files_check_freshness_only_with_max_age() {
    let old = UNIX_EPOCH + Duration::from_secs(1_600_000_000); // Sun, 13 Sep 2020 12:26:40 GMT
    let tmp = tempfile::tempdir().unwrap();
    for (key, forms) in [("ed25519.key.pem", SignatureForms::Cavage), ("ecp256.key.pem", SignatureForms::Rfc9421)] {
        let input = tmp.path().join(format!("{key}.datagrams"));
        std::fs::write(&input, signed_session(key, forms, old, &[("old.txt", b"signed in 2020\n")])).unwrap();
        let trust = test_key(&key.replace(".key.pem", ".pub.pem"));
        // No timestamps, no --max-age: no clock, no freshness check.
        let out = tmp.path().join(format!("{key}-ok"));
        let o = recv(&input, &out, &["--trust", &trust]);
        assert_eq!(o.status.code(), Some(0), "{key}: {}{}", text(&o.stdout), text(&o.stderr));
        assert_eq!(std::fs::read(out.join("old.txt")).unwrap(), b"signed in 2020\n");
        // --max-age: the system clock, long after 2020.
        let out = tmp.path().join(format!("{key}-stale"));
        assert_refused(
            &recv(&input, &out, &["--trust", &trust, "--max-age", "1"]),
            &out,
            "refused: stale (date Sun, 13 Sep 2020 12:26:40 GMT older than max-age 1 s)",
        );
    }
}

#[test]
fn require_digest_refuses_a_resource_without_one() {
    let tmp = tempfile::tempdir().unwrap();
    for ext in ["pcap", "datagrams"] {
        let out = tmp.path().join(format!("out-{ext}"));
        let o = recv(&vector(&format!("s06-hello-nossl-v4.{ext}")), &out, &["--require-digest"]);
        assert_refused(&o, &out, "refused: no digest");
        assert_eq!(text(&o.stdout), "refused    //hello.txt  13 bytes  (refused: no digest)\n");
    }
    // nghq's `sha256=` digest satisfies it.
    let out = tmp.path().join("signed");
    assert_eq!(recv(&vector("s01-hello-v4.pcap"), &out, &["--require-digest"]).status.code(), Some(0));
    // So do h3m's `digest` + `repr-digest`, together with --trust.
    let input = tmp.path().join("h3m.datagrams");
    let now = SystemTime::now();
    std::fs::write(&input, signed_session("rsa2048.pkcs1.key.pem", SignatureForms::Both, now, &[("a", b"x")])).unwrap();
    let out = tmp.path().join("h3m");
    let o = recv(&input, &out, &["--require-digest", "--trust", &test_key("rsa2048.pub.pem"), "--max-age", "600"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
}

#[test]
fn usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let input = vector("s01-hello-v4.pcap");
    let cases: &[(&[&str], &str)] = &[
        (&["--max-age", "5"], "--trust"),
        (&["--trust", "/nonexistent/key.pem"], "--trust /nonexistent/key.pem: "),
        (&["--trust", &test_key("ed25519.key.pem")], "is a private key"),
        (&["--trust", &nghq_key("sender.pub.pem"), "--max-age", "0"], "more than 0 seconds"),
    ];
    for (args, needle) in cases {
        let o = recv(&input, &out, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains(needle), "{args:?}: {}", text(&o.stderr));
    }
    assert!(files(&out).is_empty());
}

/// A `.datagrams` session of one live resource (unknown length, digest in the
/// trailers), signed in its trailers when `key` is given; `corrupt` changes
/// one body byte after the digest is computed.
fn live_session(key: Option<&str>, body: &[u8], corrupt: bool) -> Vec<u8> {
    let signer = key.map(|k| {
        let key = SigningKey::from_pem(&std::fs::read(test_key(k)).unwrap()).unwrap();
        PushSigner::new(key, "live", SignatureForms::Both).unwrap()
    });
    let mut s = Sender::new(SenderConfig::new(EncoderConfig::new(SessionId::NGHQ_DEFAULT)), Box::new(NullProtection));
    let now = SystemTime::now();
    let mut meta = ResourceMeta::file("live.ts", 0, now);
    (meta.length, meta.live, meta.last) = (None, true, true);
    let (mut req, mut resp) = (s.request_headers(&meta), s.response_headers(&meta));
    if let Some(signer) = &signer {
        assert!(!signer.sign_headers(&mut req, &mut resp, now).unwrap(), "no digest in the headers");
    }
    let id = s.start_with_headers(&meta, &req, &resp).unwrap();
    let mut sent = body.to_vec();
    if corrupt {
        sent[0] ^= 1;
    }
    s.write(id, &sent).unwrap();
    let b64 = h3m_proto::sender::base64(&sha256(body));
    let mut trailers = vec![h3m_proto::qpack::HeaderField::new("repr-digest", format!("sha-256=:{b64}:"))];
    if let Some(signer) = &signer {
        signer.sign_trailers(&req, &resp, &mut trailers, now).unwrap();
    }
    s.finish(id, Some(&trailers)).unwrap();
    let t = Instant::now();
    write_datagrams(&std::iter::from_fn(|| s.poll_transmit(t)).collect::<Vec<_>>())
}

#[test]
fn live_resources_are_checked_by_their_trailers() {
    let tmp = tempfile::tempdir().unwrap();
    let body: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let run = |name: &str, key: Option<&str>, corrupt: bool, args: &[&str]| {
        let input = tmp.path().join(format!("{name}.datagrams"));
        std::fs::write(&input, live_session(key, &body, corrupt)).unwrap();
        let out = tmp.path().join(name);
        (recv(&input, &out, args), out)
    };
    let trust = test_key("ed25519.pub.pem");
    // Signed in the trailers: written with --trust and --require-digest.
    let (o, out) = run("signed", Some("ed25519.key.pem"), false, &["--trust", &trust, "--require-digest"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
    assert_eq!(std::fs::read(out.join("live.ts")).unwrap(), body);
    // The trailer digest is checked: a changed byte is not written.
    let (o, out) = run("corrupt", Some("ed25519.key.pem"), true, &["--trust", &trust]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stdout).contains("(digest mismatch: "), "{}", text(&o.stdout));
    assert!(files(&out).is_empty());
    // Unsigned trailers: refused with --trust, written without.
    let (o, out) = run("unsigned", None, false, &["--trust", &trust]);
    assert_refused(&o, &out, "refused: unsigned");
    let (o, out) = run("unsigned2", None, false, &["--require-digest"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(std::fs::read(out.join("live.ts")).unwrap(), body);
}

#[test]
fn disagreeing_digest_fields_are_refused() {
    let mut s = Sender::new(SenderConfig::new(EncoderConfig::new(SessionId::NGHQ_DEFAULT)), Box::new(NullProtection));
    let mut meta = ResourceMeta::file("two.txt", 3, SystemTime::now());
    (meta.sha256, meta.last) = (Some(sha256(b"abc")), true);
    let req = s.request_headers(&meta);
    let mut resp = s.response_headers(&meta);
    let other = h3m_proto::sender::base64(&sha256(b"xyz"));
    resp.iter_mut().find(|f| f.name == b"repr-digest").unwrap().value = format!("sha-256=:{other}:").into_bytes();
    let id = s.start_with_headers(&meta, &req, &resp).unwrap();
    s.write(id, b"abc").unwrap();
    s.finish(id, None).unwrap();
    let t = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("two.datagrams");
    std::fs::write(&input, write_datagrams(&std::iter::from_fn(|| s.poll_transmit(t)).collect::<Vec<_>>())).unwrap();
    let out = tmp.path().join("out");
    assert_refused(&recv(&input, &out, &[]), &out, "refused: the digest fields disagree");
}

/// A classic pcap (raw IPv4, link type 228) of `datagrams` sent to
/// 239.255.0.1:2000, every record captured at `captured` (Unix seconds).
fn pcap_at(datagrams: &[Vec<u8>], captured: u32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(0xa1b2_c3d4u32.to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(4u16.to_le_bytes());
    out.extend([0u8; 8]); // thiszone, sigfigs
    out.extend(65_535u32.to_le_bytes());
    out.extend(228u32.to_le_bytes());
    for d in datagrams {
        let udp_len = 8 + d.len();
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 1, 17, 0, 0, 127, 0, 0, 1, 239, 255, 0, 1];
        ip[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
        ip.extend(40_000u16.to_be_bytes());
        ip.extend(2000u16.to_be_bytes());
        ip.extend((udp_len as u16).to_be_bytes());
        ip.extend([0, 0]); // no UDP checksum
        ip.extend(d);
        out.extend(captured.to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend((ip.len() as u32).to_le_bytes());
        out.extend((ip.len() as u32).to_le_bytes());
        out.extend(ip);
    }
    out
}

/// One resource `early.txt`, signed draft-cavage style (nghq's form) over a
/// response whose `date` header reads exactly `date`, as written by the
/// sender (e.g. nghq's strftime `%e` day): the datagrams.
fn cavage_session_dated(date: &str, body: &[u8]) -> Vec<Vec<u8>> {
    let key = SigningKey::from_pem(&std::fs::read(test_key("rsa2048.key.pem")).unwrap()).unwrap();
    let signer = PushSigner::new(key, "sender.pem", SignatureForms::Cavage).unwrap();
    let mut s = Sender::new(SenderConfig::new(EncoderConfig::new(SessionId::NGHQ_DEFAULT)), Box::new(NullProtection));
    let mut meta = ResourceMeta::file("early.txt", body.len() as u64, UNIX_EPOCH);
    (meta.sha256, meta.last) = (Some(sha256(body)), true);
    let (mut req, mut resp) = (s.request_headers(&meta), s.response_headers(&meta));
    resp.iter_mut().find(|f| f.name == b"date").unwrap().value = date.as_bytes().to_vec();
    assert!(signer.sign_headers(&mut req, &mut resp, UNIX_EPOCH).unwrap());
    let id = s.start_with_headers(&meta, &req, &resp).unwrap();
    s.write(id, body).unwrap();
    s.finish(id, None).unwrap();
    let t = Instant::now();
    std::iter::from_fn(|| s.poll_transmit(t)).collect()
}

/// nghq writes `date` with strftime `%e`, so on days 1 to 9 of every month
/// the day is space-padded; its signed pushes verify end to end, as do the
/// other RFC 9110 forms of the same instant, freshness measured exactly at
/// the capture time. An impossible date (`31 Feb`, which would roll over to
/// 3 Mar) or a wrong day name is refused, never reinterpreted.
#[test]
fn nghq_space_padded_dates_verify_and_impossible_dates_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let trust = test_key("rsa2048.pub.pem");
    let body = b"signed on the 6th\n";
    let signed_at: u32 = 1_796_531_873; // Sun,  6 Dec 2026 04:37:53 GMT
    let run = |name: &str, date: &str, captured: u32, args: &[&str]| {
        let input = tmp.path().join(format!("{name}.pcap"));
        std::fs::write(&input, pcap_at(&cavage_session_dated(date, body), captured)).unwrap();
        let out = tmp.path().join(name);
        let mut all = vec!["--trust", trust.as_str()];
        all.extend(args);
        (recv(&input, &out, &all), out)
    };
    for (i, date) in [
        "Sun,  6 Dec 2026 04:37:53 GMT",
        "Sun, 06 Dec 2026 04:37:53 GMT",
        "Sunday, 06-Dec-26 04:37:53 GMT",
        "Sun Dec  6 04:37:53 2026",
    ]
    .into_iter()
    .enumerate()
    {
        let (o, out) = run(&format!("ok{i}"), date, signed_at + 10, &[]);
        assert_eq!(o.status.code(), Some(0), "{date}: {}{}", text(&o.stdout), text(&o.stderr));
        assert_eq!(std::fs::read(out.join("early.txt")).unwrap(), body, "{date}");
        assert!(text(&o.stdout).starts_with("complete   early.txt  18 bytes  sha256:"), "{}", text(&o.stdout));
        // The signed instant is exactly 04:37:53: 301 s later it is stale.
        let (o, out) = run(&format!("stale{i}"), date, signed_at + 301, &[]);
        assert_refused(&o, &out, "refused: stale (date Sun, 06 Dec 2026 04:37:53 GMT older than max-age 300 s)");
    }
    // 31 Feb 2026 would be Tue, 3 Mar 2026 12:00:00 (1772539200): refused at that capture time.
    for (name, date, at) in [
        ("feb31", "Tue, 31 Feb 2026 12:00:00 GMT", 1_772_539_210),
        ("feb29", "Mon, 29 Feb 2027 12:00:00 GMT", 1_803_902_410),
        ("weekday", "Mon,  6 Dec 2026 04:37:53 GMT", signed_at + 10),
    ] {
        let (o, out) = run(name, date, at, &[]);
        assert_refused(&o, &out, &format!("refused: unreadable signed date `{date}`"));
    }
    // A leap day that exists is fine.
    let (o, _) = run("feb29-2028", "Tue, 29 Feb 2028 12:00:00 GMT", 1_835_438_410, &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
}

/// An advertisement whose keys cannot protect packets is a usage error that
/// names `--alt-svc` (exit 2, before joining anything), never a receiver that
/// accepts cleartext.
#[test]
fn alt_svc_with_unusable_keys_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let iv = "iv=0123456789abcdef01234567";
    let cases = [
        (format!("cipher-suite=1301; key=0011223344556677; {iv}"), "key is 8 bytes long; the cipher suite needs 16"),
        (
            format!("cipher-suite=1303; key=00112233445566778899aabbccddeeff; {iv}"),
            "key is 16 bytes long; the cipher suite needs 32",
        ),
        ("cipher-suite=1302; key=00".to_owned(), "key is 1 bytes long; the cipher suite needs 32"),
        (
            "cipher-suite=1301; key=00112233445566778899aabbccddeeff".to_owned(),
            "cipher suite 1301 needs a key and an iv; the advertisement lacks them",
        ),
        ("cipher-suite=1302".to_owned(), "cipher suite 1302 needs a key and an iv; the advertisement lacks them"),
    ];
    for (params, needle) in cases {
        let adv = format!(r#"h3m-07="239.255.0.1:2000"; session-id=2a; {params}"#);
        let o = Command::new(BIN).args(["--alt-svc", &adv, "--idle-timeout", "1", "--out"]).arg(&out).output().unwrap();
        let stderr = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{params}: {stderr}");
        assert!(stderr.contains(&format!("h3m-recv: --alt-svc: {needle}")), "{params}: {stderr}");
        assert!(!stderr.contains("0011223344"), "no key material in messages: {stderr}");
    }
    assert!(files(&out).is_empty());
}

/// An unsigned push stream for push `push_id` (stream `stream_id`), whose
/// response says `connection: close`, as an off-path forger would send it.
fn forged_close(push_id: u64, stream_id: u64, packet_number: u64) -> Vec<u8> {
    use h3m_proto::{frame, h3, packet, qpack, varint};
    let mut stream = Vec::new();
    varint::encode(h3::PUSH_STREAM_TYPE, &mut stream).unwrap();
    varint::encode(push_id, &mut stream).unwrap();
    let fields = [qpack::HeaderField::new(":status", "200"), qpack::HeaderField::new("connection", "close")];
    let mut section = Vec::new();
    qpack::encode_field_section(&fields, &mut section);
    h3::encode_frame(&h3::H3Frame::Headers(&section), &mut stream).unwrap();
    h3::encode_frame(&h3::H3Frame::Data(b"forged"), &mut stream).unwrap();
    let mut payload = Vec::new();
    frame::encode_stream(stream_id, 0, &stream, true, true, &mut payload).unwrap();
    let mut dgram = Vec::new();
    packet::write_packet(&mut dgram, &SessionId::NGHQ_DEFAULT, packet_number, 4, &payload, &NullProtection).unwrap();
    dgram
}

/// The length of the stream-0 data (the promise) in a cleartext datagram.
fn stream0_frame_len(datagram: &[u8]) -> usize {
    use h3m_proto::frame::{Frame, FrameReader};
    let mut d = datagram.to_vec();
    let p = h3m_proto::packet::open_packet(&mut d, &SessionId::NGHQ_DEFAULT, None, &NullProtection).unwrap();
    FrameReader::new(p.payload)
        .find_map(|f| match f.unwrap() {
            Frame::Stream { stream_id: 0, data, .. } => Some(data.len()),
            _ => None,
        })
        .expect("a promise on stream 0")
}

/// A datagram with an (unsigned) promise of push `push_id` for `path` at the
/// start of the request stream.
fn promise_datagram(push_id: u64, path: &str, packet_number: u64) -> Vec<u8> {
    use h3m_proto::{frame, h3, packet, qpack};
    let fields = [
        qpack::HeaderField::new(":method", "GET"),
        qpack::HeaderField::new(":scheme", "https"),
        qpack::HeaderField::new(":authority", "example.org"),
        qpack::HeaderField::new(":path", path),
    ];
    let mut section = Vec::new();
    qpack::encode_field_section(&fields, &mut section);
    let mut stream = Vec::new();
    h3::encode_frame(&h3::H3Frame::PushPromise { push_id, field_section: &section }, &mut stream).unwrap();
    let mut payload = Vec::new();
    frame::encode_stream(0, 0, &stream, false, true, &mut payload).unwrap();
    let mut dgram = Vec::new();
    packet::write_packet(&mut dgram, &SessionId::NGHQ_DEFAULT, packet_number, 4, &payload, &NullProtection).unwrap();
    dgram
}

#[test]
fn live_an_unsigned_connection_close_does_not_end_a_trusted_session() {
    // Regression (hardening item 7), live, as it was found: a forged unsigned
    // push with `connection: close` ended the receiver (after its 0.3 s linger)
    // before the signed sender started: nothing was written.
    let tmp = tempfile::tempdir().unwrap();
    let files: [(&str, &[u8]); 3] = [("a.txt", b"first\n"), ("b.txt", b"second\n"), ("c.txt", b"third\n")];
    let genuine = read_datagrams(&signed_session("ed25519.key.pem", SignatureForms::Cavage, SystemTime::now(), &files));
    let port = 30_000 + (std::process::id() % 20_000) as u16;
    let group: std::net::SocketAddr = format!("239.255.71.7:{port}").parse().unwrap();
    let out = tmp.path().join("out");
    let trust = test_key("ed25519.pub.pem");
    let child = Command::new(BIN)
        .args(["--group", "239.255.71.7", "--port", &port.to_string(), "--interface", "127.0.0.1"])
        .args(["--session-id", &SessionId::NGHQ_DEFAULT.to_hex(), "--trust", &trust, "--idle-timeout", "5"])
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    // The forger sends a push 0 of its own, with `connection: close`, before
    // the sender starts. Its promise has the length of the genuine first
    // promise (as a forger that watched an earlier run of this sender would
    // make it), so the request stream stays aligned and the genuine pushes
    // after the first can still arrive.
    let first_promise_len = stream0_frame_len(&genuine[0]);
    let mut path = String::from("/forged");
    let forged_promise = loop {
        let promise = promise_datagram(0, &path, 999);
        let len = stream0_frame_len(&promise);
        if len == first_promise_len {
            break promise;
        }
        assert!(len < first_promise_len, "the forged promise outgrew the genuine one");
        path.push('x');
    };
    send_on_loopback(group, &[forged_promise, forged_close(0, 3, 1_000)]);
    // The signed sender starts a second later (the receiver's linger is 0.3 s).
    std::thread::sleep(Duration::from_millis(1_000));
    send_on_loopback(group, &genuine);
    let o = child.wait_with_output().unwrap();
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(std::fs::read(out.join("b.txt")).ok().as_deref(), Some(&b"second\n"[..]), "{stdout}{stderr}");
    assert_eq!(std::fs::read(out.join("c.txt")).unwrap(), b"third\n");
    assert!(stderr.contains("session_end=connection_close"), "{stderr}");
    assert!(stdout.lines().any(|l| l.starts_with("refused    /forgedx")), "{stdout}{stderr}");
    assert!(!out.join("a.txt").exists(), "the genuine push 0 collided with the forged one");
    assert_eq!(o.status.code(), Some(1), "the forged push was refused: {stdout}{stderr}");
}

#[test]
fn an_unsigned_connection_close_does_not_end_a_trusted_session() {
    // Regression (hardening item 7): under --trust a forged, unsigned push
    // carrying `connection: close` ended the session: nothing after it was written.
    let tmp = tempfile::tempdir().unwrap();
    let date = SystemTime::now();
    let files: [(&str, &[u8]); 3] = [("a.txt", b"first\n"), ("b.txt", b"second\n"), ("c.txt", b"third\n")];
    let genuine = read_datagrams(&signed_session("ed25519.key.pem", SignatureForms::Cavage, date, &files));
    let trust = test_key("ed25519.pub.pem");
    // The forger's stream for push 0 arrives first (it knows the session ID and
    // that push 0 travels on stream 3); the genuine session follows.
    let mut wire = vec![forged_close(0, 3, 1_000)];
    wire.extend(genuine.iter().cloned());
    let input = tmp.path().join("forged.datagrams");
    std::fs::write(&input, write_datagrams(&wire)).unwrap();
    let out = tmp.path().join("out");
    let o = recv(&input, &out, &["--trust", &trust]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    // Push 0's stream holds the forger's response: it is refused, never written.
    assert_eq!(o.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.lines().any(|l| l.starts_with("refused    /a.txt  ") && l.ends_with("(refused: unsigned)")),
        "{stdout}"
    );
    // The session went on: the signed pushes after it were written.
    assert_eq!(std::fs::read(out.join("b.txt")).unwrap(), b"second\n", "{stdout}{stderr}");
    assert_eq!(std::fs::read(out.join("c.txt")).unwrap(), b"third\n");
    assert!(!out.join("a.txt").exists());
    // The genuine, signed `connection: close` (on the last push) still ends it.
    assert!(stderr.contains("session_end=connection_close"), "{stderr}");
    // Without --trust an unsigned close is honoured as before (nghq's receivers do).
    let out = tmp.path().join("out-untrusted");
    let o = recv(&input, &out, &[]);
    assert!(text(&o.stderr).contains("session_end=connection_close"), "{}", text(&o.stderr));
}
