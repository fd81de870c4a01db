//! `h3m-recv` on hostile and broken input: unsafe `:path`s, symlinks out of
//! the output directory, malformed capture files, lost packets, unpromised
//! push streams and an unusable output directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use h3m_proto::SessionId;
use h3m_proto::encoder::{EncoderConfig, SessionEncoder};
use h3m_proto::qpack::HeaderField;
use h3m_proto::receiver::{Event, Receiver, ReceiverConfig};
use h3m_receiver::offline::{self, ExitStatus, Options};
use h3m_receiver::report::ResourceStatus;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_h3m-recv");
const SID: &str = "cafe0001";

fn sid() -> SessionId {
    SessionId::from_hex(SID).unwrap()
}

fn request(path: &[u8]) -> Vec<HeaderField> {
    vec![
        HeaderField::new(":method", "GET"),
        HeaderField::new(":scheme", "https"),
        HeaderField::new(":authority", "example.org"),
        HeaderField::new(":path", path),
    ]
}

fn response() -> Vec<HeaderField> {
    vec![HeaderField::new(":status", "200"), HeaderField::new("content-type", "application/octet-stream")]
}

/// Datagrams of a session of the given resources; also the datagram index
/// range of each resource.
fn session(resources: &[(&[u8], &[u8])]) -> (Vec<Vec<u8>>, Vec<std::ops::Range<usize>>) {
    let mut enc = SessionEncoder::new(EncoderConfig::new(sid()));
    let mut out = Vec::new();
    let mut spans = Vec::new();
    for (path, body) in resources {
        let start = out.len();
        enc.push(&request(path), &response(), body, &mut out).unwrap();
        spans.push(start..out.len());
    }
    (out, spans)
}

fn datagrams_file(datagrams: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for d in datagrams {
        bytes.extend_from_slice(&(d.len() as u32).to_be_bytes());
        bytes.extend_from_slice(d);
    }
    bytes
}

fn run(input: &Path, out: &Path, json: bool) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("--input").arg(input).arg("--session-id").arg(SID).arg("--out").arg(out);
    if json {
        cmd.arg("--json");
    }
    cmd.output().unwrap()
}

fn json_records(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Every entry under `dir` (not following symlinks) with its size or link target.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                out.insert(path.clone(), format!("-> {}", std::fs::read_link(&path).unwrap().display()));
            } else if meta.is_dir() {
                out.insert(path.clone(), "dir".into());
                walk(&path, out);
            } else {
                out.insert(path.clone(), format!("{} bytes", meta.len()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

const MALICIOUS: [&[u8]; 8] =
    [b"/../../etc/x", b"/%2e%2e/x", b"/a/../../x", b"/a%00b", b"/a\\..\\b", b"/C:/x", b"/", b"/%zz"];

#[test]
fn malicious_paths_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // DIR sits three levels down; a sibling file stands where `../../etc/x` would go.
    let parent = tmp.path().join("root");
    let out = parent.join("a/b/out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(parent.join("a/etc")).unwrap();
    std::fs::write(parent.join("a/etc/keep"), b"keep").unwrap();
    let mut resources: Vec<(&[u8], &[u8])> = MALICIOUS.iter().map(|p| (*p, &b"evil body"[..])).collect();
    resources.push((b"/ok.txt", b"fine"));
    let (datagrams, _) = session(&resources);
    let input = tmp.path().join("evil.datagrams");
    std::fs::write(&input, datagrams_file(&datagrams)).unwrap();
    let before = snapshot(&parent);

    for json in [false, true] {
        let _ = std::fs::remove_file(out.join("ok.txt"));
        let output = run(&input, &out, json);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
        assert_eq!(names(&out), ["ok.txt"], "only the benign resource is written");
        assert_eq!(std::fs::read(out.join("ok.txt")).unwrap(), b"fine");
        let mut after = snapshot(&parent);
        after.remove(&out.join("ok.txt"));
        assert_eq!(after, before, "nothing changed around the output directory");
        assert_eq!(stderr.lines().filter(|l| l.starts_with("h3m-recv: error: push ")).count(), MALICIOUS.len());
        if json {
            let records = json_records(&output);
            let errors: Vec<&Value> = records.iter().filter(|r| r["event"] == "error").collect();
            assert_eq!(errors.len(), MALICIOUS.len());
            for (i, e) in errors.iter().enumerate() {
                assert_eq!(e["kind"], "refused_path");
                assert_eq!(e["push_id"], i as u64);
            }
            let refused = records.iter().filter(|r| r["event"] == "resource" && r["status"] == "refused").count();
            assert_eq!(refused, MALICIOUS.len());
            let summary = records.last().unwrap();
            assert_eq!(summary["resources_refused"], MALICIOUS.len());
            assert_eq!(summary["resources_complete"], 1);
            assert_eq!(summary["exit_status"], 1);
        } else {
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            assert_eq!(stdout.lines().filter(|l| l.starts_with("refused    ")).count(), MALICIOUS.len());
            assert!(stdout.contains("refused    /../../etc/x  9 bytes  (refused: the path has a `..` component)"));
            assert!(stdout.contains("refused    /%25zz  9 bytes  (refused: invalid percent escape at byte 1)"));
            assert!(stdout.contains("complete   ok.txt  4 bytes  sha256:"));
        }
    }
    assert!(!Path::new("/etc/x").exists());
}

#[test]
fn symlinked_or_file_parent_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink(&outside, out.join("link")).unwrap();
    std::fs::write(out.join("file"), b"plain").unwrap();
    let (datagrams, _) =
        session(&[(b"/link/x.txt", b"escape"), (b"//link/sub/y.txt", b"escape"), (b"/file/z", b"z"), (b"/ok", b"k")]);
    let input = tmp.path().join("s.datagrams");
    std::fs::write(&input, datagrams_file(&datagrams)).unwrap();
    let output = run(&input, &out, true);
    assert_eq!(output.status.code(), Some(1));
    assert!(names(&outside).is_empty(), "nothing written through the symlink");
    assert_eq!(names(&out), ["file", "link", "ok"]);
    assert_eq!(std::fs::read(out.join("file")).unwrap(), b"plain");
    let records = json_records(&output);
    let errors: Vec<&Value> = records.iter().filter(|r| r["event"] == "error").collect();
    assert_eq!(errors.len(), 3);
    assert!(errors.iter().all(|e| e["kind"] == "refused_path"));
    assert!(errors[0]["message"].as_str().unwrap().contains("link is a symlink"), "{}", errors[0]);
    assert!(errors[2]["message"].as_str().unwrap().contains("file exists and is not a directory"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("h3m-recv: error: push 0 (/link/x.txt): refused: link is a symlink"), "{stderr}");
}

fn assert_bad_input(input: &Path, out: &Path, message: &str) {
    let output = run(input, out, false);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{}: {stderr}", input.display());
    assert!(stderr.contains(message), "{}: {stderr}", input.display());
    assert!(!stderr.contains("panicked"));
    assert!(output.stdout.is_empty());
    assert!(names(out).is_empty());
}

#[test]
fn malformed_inputs_exit_3() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let (datagrams, _) = session(&[(b"/a.bin", &[7u8; 3000][..])]);
    let mut bytes = datagrams_file(&datagrams);
    bytes.truncate(bytes.len() - 10);
    let truncated = tmp.path().join("truncated.datagrams");
    std::fs::write(&truncated, &bytes).unwrap();
    // The capture is read as a stream: the datagrams before the cut are
    // received, the resource they began is named incomplete, nothing is written.
    let output = run(&truncated, &out, false);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    let offset = bytes.len() + 10 - datagrams.last().unwrap().len() - 4;
    assert!(stderr.contains(&format!(".datagrams file ends inside the record at offset {offset}")), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("incomplete a.bin  "), "{stdout}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(names(&out).is_empty());

    let garbage = tmp.path().join("garbage.bin");
    let noise: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80).collect();
    std::fs::write(&garbage, &noise).unwrap();
    assert_bad_input(&garbage, &out, "unknown capture format");

    let empty = tmp.path().join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    assert_bad_input(&empty, &out, "capture is empty");

    let pcapng = tmp.path().join("x.pcapng");
    std::fs::write(&pcapng, [0x0a, 0x0d, 0x0d, 0x0a, 0x1c, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a]).unwrap();
    assert_bad_input(&pcapng, &out, "pcapng");

    assert_bad_input(&tmp.path().join("missing.pcap"), &out, "cannot read capture");
    assert_bad_input(tmp.path(), &out, "cannot read capture");

    // JSON mode reports it as an error object too.
    let output = run(&garbage, &out, true);
    assert_eq!(output.status.code(), Some(3));
    let records = json_records(&output);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["event"], "error");
    assert_eq!(records[0]["kind"], "input");
}

/// The body range each datagram delivers when the session arrives in full, in order.
fn body_ranges(datagrams: &[Vec<u8>]) -> Vec<Vec<(u64, u64, u64)>> {
    let mut rx = Receiver::new(ReceiverConfig::new(sid()));
    let now = Instant::now();
    datagrams
        .iter()
        .map(|d| {
            rx.handle_datagram(now, d);
            let mut got = Vec::new();
            while let Some(ev) = rx.poll_event() {
                if let Event::BodyData { push_id, offset, data, .. } = ev {
                    got.push((push_id, offset, offset + data.len() as u64));
                }
            }
            got
        })
        .collect()
}

#[test]
fn lost_datagram_makes_an_incomplete_resource() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let big: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + 3) as u8).collect();
    let (datagrams, spans) = session(&[(b"/big.bin", &big), (b"/small.txt", b"small")]);
    let ranges = body_ranges(&datagrams);
    // Drop a datagram in the middle of the first push's stream.
    let lost = spans[0].start + spans[0].len() / 2;
    let [(0, start, end)] = ranges[lost][..] else { panic!("datagram {lost} delivers {:?}", ranges[lost]) };
    assert!(0 < start && start < end && end < big.len() as u64);
    let kept: Vec<Vec<u8>> = datagrams.iter().enumerate().filter(|(i, _)| *i != lost).map(|(_, d)| d.clone()).collect();
    let input = tmp.path().join("lossy.datagrams");
    std::fs::write(&input, datagrams_file(&kept)).unwrap();
    let received = big.len() as u64 - (end - start);

    let output = run(&input, &out, false);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let expected =
        format!("incomplete big.bin  {received} of {} bytes  missing {start}-{}  (session_ended)", big.len(), end - 1);
    assert!(stdout.lines().any(|l| l == expected), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("complete   small.txt  5 bytes  sha256:")), "{stdout}");
    assert_eq!(names(&out), ["small.txt"], "the incomplete resource is not written, no temp file is left");

    let output = run(&input, &out, true);
    assert_eq!(output.status.code(), Some(1));
    let records = json_records(&output);
    let rec = records.iter().find(|r| r["event"] == "resource" && r["push_id"] == 0).unwrap();
    assert_eq!(rec["status"], "incomplete");
    assert_eq!(rec["complete"], false);
    assert!(rec["file"].is_null() && rec["sha256"].is_null());
    assert_eq!(rec["bytes"], received);
    assert_eq!(rec["body_len"], big.len());
    assert_eq!(rec["missing"], serde_json::json!([[start, end]]));
    assert!(rec["missing_from"].is_null());
    assert_eq!(rec["reason"], "session_ended");
    assert_eq!(names(&out), ["small.txt"]);

    // The same through the library.
    let mut opts = Options::new(&input, tmp.path().join("lib"));
    opts.session.session_id = sid();
    let outcome = offline::run(&opts, &mut Vec::new(), &mut Vec::new());
    assert_eq!(outcome.status, ExitStatus::Incomplete);
    let rec = outcome.resources.iter().find(|r| r.push_id == 0).unwrap();
    assert_eq!(rec.status, ResourceStatus::Incomplete);
    assert_eq!(rec.missing, [[start, end]]);
    assert_eq!(names(&tmp.path().join("lib")), ["small.txt"]);
}

/// One datagram holding a whole push stream (type, push ID, HEADERS, DATA,
/// FIN) whose promise is never sent.
fn unpromised_stream(push_id: u64, stream_id: u64, packet_number: u64) -> Vec<u8> {
    use h3m_proto::{frame, h3, packet, protection::NullProtection, qpack, varint};
    let mut stream = Vec::new();
    varint::encode(h3::PUSH_STREAM_TYPE, &mut stream).unwrap();
    varint::encode(push_id, &mut stream).unwrap();
    let mut section = Vec::new();
    qpack::encode_field_section(&response(), &mut section);
    h3::encode_frame(&h3::H3Frame::Headers(&section), &mut stream).unwrap();
    h3::encode_frame(&h3::H3Frame::Data(b"no promise"), &mut stream).unwrap();
    let mut payload = Vec::new();
    frame::encode_stream(stream_id, 0, &stream, true, true, &mut payload).unwrap();
    let mut dgram = Vec::new();
    packet::write_packet(&mut dgram, &sid(), packet_number, 4, &payload, &NullProtection).unwrap();
    dgram
}

#[test]
fn unpromised_push_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let (mut datagrams, _) = session(&[(b"/ok.txt", b"ok")]);
    datagrams.push(unpromised_stream(5, 23, 1000));
    let input = tmp.path().join("orphan.datagrams");
    std::fs::write(&input, datagrams_file(&datagrams)).unwrap();
    let output = run(&input, &out, false);
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.lines().any(|l| l == "unpromised push 5 on stream 23"), "{stdout}");
    assert!(stderr.contains(" unpromised=1 "), "{stderr}");
    assert_eq!(names(&out), ["ok.txt"]);
    let output = run(&input, &out, true);
    let records = json_records(&output);
    let rec = records.iter().find(|r| r["event"] == "unpromised_push").unwrap();
    assert_eq!(rec["push_id"], 5);
    assert_eq!(rec["stream_id"], 23);
    assert_eq!(records.last().unwrap()["unpromised_pushes"], 1);
    assert_eq!(records.last().unwrap()["exit_status"], 1);
}

#[test]
fn unusable_output_dir_exits_4() {
    let tmp = tempfile::tempdir().unwrap();
    let (datagrams, _) = session(&[(b"/a.txt", b"aaa")]);
    let input = tmp.path().join("s.datagrams");
    std::fs::write(&input, datagrams_file(&datagrams)).unwrap();
    let file = tmp.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    for out in [file.clone(), file.join("sub")] {
        let output = run(&input, &out, false);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(4), "{stderr}");
        assert!(stderr.contains("output directory"), "{stderr}");
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"x");

    // A read-only directory (only meaningful when not running as root).
    use std::os::unix::fs::PermissionsExt;
    let ro = tmp.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let probe = ro.join("probe");
    if std::fs::write(&probe, b"").is_ok() {
        eprintln!("running as root: the read-only directory case is skipped");
        std::fs::remove_file(&probe).unwrap();
    } else {
        let output = run(&input, &ro, true);
        assert_eq!(output.status.code(), Some(4));
        let records = json_records(&output);
        assert!(records.iter().any(|r| r["event"] == "error" && r["kind"] == "io"));
        let rec = records.iter().find(|r| r["event"] == "resource").unwrap();
        assert_eq!(rec["status"], "failed");
        assert!(names(&ro).is_empty());
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn amt_usage_errors_exit_2() {
    let out = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--group", "232.1.1.1", "--amt", "232.1.1.1"], "neither `auto` nor a unicast IP address"),
        (&["--group", "232.1.1.1", "--amt", "relay.example"], "neither `auto` nor a unicast IP address"),
        (&["--group", "232.1.1.1", "--amt", "0.0.0.0"], "neither `auto` nor a unicast IP address"),
        (&["--group", "232.1.1.1", "--amt", "192.0.2.1", "--amt-dns", "127.0.0.1"], "--amt-dns needs --amt auto"),
        (&["--group", "232.1.1.1", "--amt-dns", "127.0.0.1"], "--amt-dns needs --amt auto"),
        (&["--group", "232.1.1.1", "--amt", "auto", "--amt-dns", "nameserver"], "not an address"),
    ];
    for (args, needle) in cases {
        let output =
            Command::new(env!("CARGO_BIN_EXE_h3m-recv")).args(*args).arg("--out").arg(out.path()).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr:?} lacks {needle:?}");
    }
    assert!(names(out.path()).is_empty(), "nothing written");
}
