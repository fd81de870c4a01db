//! `h3m-recv` as a hostile sender or an unlucky operator finds it: pushes lost
//! whole and streams seen only from their middle are named, a body offset far
//! beyond the announced length fails its push (not the run), floods of
//! promises cost bounded output and memory, and malformed command lines are
//! usage errors. (Regressions of the hardening issue, items 2, 5, 6 and 12.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Instant, UNIX_EPOCH};

use h3m_proto::encoder::EncoderConfig;
use h3m_proto::protection::NullProtection;
use h3m_proto::sender::{ResourceMeta, Sender, SenderConfig};
use h3m_proto::{SessionId, frame, h3, packet, qpack, varint};
use h3m_receiver::offline::{self, ExitStatus, Options};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_h3m-recv");
const SID: &str = "4a4d0008";

fn sid() -> SessionId {
    SessionId::from_hex(SID).unwrap()
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
    out
}

fn body(seed: u32, len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8).collect()
}

/// The datagrams of a session of `files`, one group per resource (its
/// promise, then its push stream).
fn session(files: &[(&str, &[u8])]) -> Vec<Vec<Vec<u8>>> {
    let mut sender = Sender::new(SenderConfig::new(EncoderConfig::new(sid())), Box::new(NullProtection));
    let now = Instant::now();
    files
        .iter()
        .enumerate()
        .map(|(i, (path, body))| {
            let mut meta = ResourceMeta::file(*path, body.len() as u64, UNIX_EPOCH);
            meta.sha256 = Some(sha256(body));
            meta.last = i + 1 == files.len();
            let id = sender.start(&meta).unwrap();
            assert_eq!(id, i as u64);
            sender.write(id, body).unwrap();
            sender.finish(id, None).unwrap();
            std::iter::from_fn(|| sender.poll_transmit(now)).collect()
        })
        .collect()
}

fn write_input(dir: &Path, name: &str, datagrams: &[Vec<u8>]) -> std::path::PathBuf {
    let mut bytes = Vec::new();
    for d in datagrams {
        bytes.extend_from_slice(&(d.len() as u32).to_be_bytes());
        bytes.extend_from_slice(d);
    }
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn recv(input: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--input")
        .arg(input)
        .args(["--session-id", SID])
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn summary_field(stderr: &str, key: &str) -> u64 {
    let line = stderr.lines().find(|l| l.contains(" session_end=")).unwrap_or_else(|| panic!("no summary: {stderr}"));
    let at = line.find(&format!(" {key}=")).unwrap_or_else(|| panic!("no {key} in {line}")) + key.len() + 2;
    line[at..].split_whitespace().next().unwrap().parse().unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// One short-header datagram carrying one STREAM frame.
fn stream_datagram(packet_number: u64, stream_id: u64, offset: u64, data: &[u8], fin: bool) -> Vec<u8> {
    let mut payload = Vec::new();
    frame::encode_stream(stream_id, offset, data, fin, true, &mut payload).unwrap();
    let mut dgram = Vec::new();
    packet::write_packet(&mut dgram, &sid(), packet_number, 4, &payload, &NullProtection).unwrap();
    dgram
}

fn field_section(fields: &[(&str, &str)]) -> Vec<u8> {
    let fields: Vec<qpack::HeaderField> = fields.iter().map(|(n, v)| qpack::HeaderField::new(*n, *v)).collect();
    let mut section = Vec::new();
    qpack::encode_field_section(&fields, &mut section);
    section
}

fn promise_frame(push_id: u64, path: &str) -> Vec<u8> {
    let section =
        field_section(&[(":method", "GET"), (":scheme", "https"), (":authority", "example.org"), (":path", path)]);
    let mut out = Vec::new();
    h3::encode_frame(&h3::H3Frame::PushPromise { push_id, field_section: &section }, &mut out).unwrap();
    out
}

#[test]
fn a_push_lost_whole_is_named_and_the_run_exits_1() {
    // Regression (item 2): when a promise and its push stream were both lost the
    // receiver printed only the others and could exit 0.
    let tmp = tempfile::tempdir().unwrap();
    let input = one_push_lost_whole(tmp.path(), 1);

    let o = recv(&input, &tmp.path().join("out-json"), &["--json"]);
    let records: Vec<Value> = text(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let lost: Vec<&Value> = records.iter().filter(|r| r["event"] == "lost_push").collect();
    assert_eq!(lost.len(), 1, "{records:?}");
    assert_eq!(lost[0]["push_id"], 1);
    assert_eq!(records.last().unwrap()["exit_status"], 1);
}

#[test]
fn a_late_joiner_names_the_stream_it_saw_only_the_tail_of() {
    // Regression (item 2): a receiver that joined in the middle of a push saw
    // nothing on stdout (only `orphan_streams_dropped` in the summary).
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (body(7, 20_000), body(8, 2_000));
    let groups = session(&[("a.bin", &a), ("b.bin", &b)]);
    assert!(groups[0].len() > 10);
    // Joined after the promise and the first half of push 0's stream.
    let skip = groups[0].len() / 2;
    let kept: Vec<Vec<u8>> = groups[0][skip..].iter().chain(&groups[1]).cloned().collect();
    let input = write_input(tmp.path(), "late.datagrams", &kept);
    let out = tmp.path().join("out");
    let o = recv(&input, &out, &[]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "{stdout}{stderr}");
    let headless: Vec<&str> = stdout.lines().filter(|l| l.starts_with("incomplete (stream 3)  ")).collect();
    assert_eq!(headless.len(), 1, "{stdout}");
    assert!(headless[0].ends_with("(headless_stream: its start never arrived)"), "{stdout}");
    assert_eq!(entries(&out), ["b.bin"]);
    assert_eq!(std::fs::read(out.join("b.bin")).unwrap(), b);
    assert_eq!(summary_field(&stderr, "headless_streams"), 1, "{stderr}");
    // Push 0 lies below the first push seen (1) from the session's start
    // (packet numbers in the first 64): judged once, as the headless stream.
    assert!(!stderr.contains("lost_pushes="), "{stderr}");
}

#[test]
fn the_session_s_first_push_lost_whole_is_named_and_the_run_exits_1() {
    // Regression: pushes below the first one seen were not counted, so losing
    // the session's first datagrams (a packed session's first small file
    // whole) left the receiver silent about it, exiting 0.
    let tmp = tempfile::tempdir().unwrap();
    one_push_lost_whole(tmp.path(), 0);
}

/// A session of three 3 000-byte files `a.bin`, `b.bin`, `c.bin` whose push
/// `lost` (promise and stream) never arrives: the receiver names it lost,
/// writes the other two byte for byte and exits 1. Returns the input.
fn one_push_lost_whole(tmp: &Path, lost: usize) -> PathBuf {
    let bodies: Vec<Vec<u8>> = (0..3).map(|i| body(i, 3_000)).collect();
    let names = ["a.bin", "b.bin", "c.bin"];
    let groups = session(&[(names[0], &bodies[0]), (names[1], &bodies[1]), (names[2], &bodies[2])]);
    let kept: Vec<Vec<u8>> =
        groups.iter().enumerate().filter(|(i, _)| *i != lost).flat_map(|(_, g)| g.clone()).collect();
    let input = write_input(tmp, "lost.datagrams", &kept);
    let out = tmp.join("out");
    let o = recv(&input, &out, &[]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "{stdout}{stderr}");
    let line = format!(
        "incomplete (push {lost})  0 of 0+ bytes  missing 0-  (lost: neither its promise nor its stream arrived)"
    );
    assert!(stdout.lines().any(|l| l == line), "{stdout}");
    let written: Vec<usize> = (0..3).filter(|&i| i != lost).collect();
    assert_eq!(entries(&out), written.iter().map(|&i| names[i]).collect::<Vec<_>>());
    for i in written {
        assert_eq!(std::fs::read(out.join(names[i])).unwrap(), bodies[i]);
    }
    assert_eq!(summary_field(&stderr, "lost_pushes"), 1, "{stderr}");
    input
}

#[test]
fn a_body_offset_far_beyond_the_length_fails_the_push_not_the_run() {
    // Regression (item 6): DATA at a body offset near 2^50 reached the writer,
    // whose pwrite failed with EFBIG: exit 4, "output directory error".
    let tmp = tempfile::tempdir().unwrap();
    let mut stream0 = promise_frame(0, "/far.bin");
    let second = promise_frame(1, "/ok.txt");
    let mut far = vec![0x01, 0x00];
    let headers = field_section(&[(":status", "200"), ("content-length", "5")]);
    h3::encode_frame(&h3::H3Frame::Headers(&headers), &mut far).unwrap();
    h3::encode_frame(&h3::H3Frame::DataWithOffset { offset: 0, data: b"abc" }, &mut far).unwrap();
    h3::encode_frame(&h3::H3Frame::DataWithOffset { offset: 1 << 50, data: b"zz" }, &mut far).unwrap();
    let mut ok = vec![0x01];
    varint::encode(1, &mut ok).unwrap();
    let headers = field_section(&[(":status", "200"), ("content-length", "3")]);
    h3::encode_frame(&h3::H3Frame::Headers(&headers), &mut ok).unwrap();
    h3::encode_frame(&h3::H3Frame::Data(b"ok\n"), &mut ok).unwrap();
    let first_len = stream0.len() as u64;
    stream0.extend_from_slice(&second);
    let datagrams = [
        stream_datagram(0, 0, 0, &stream0[..first_len as usize], false),
        stream_datagram(1, 3, 0, &far, true),
        stream_datagram(2, 0, first_len, &second, false),
        stream_datagram(3, 7, 0, &ok, true),
    ];
    let input = write_input(tmp.path(), "far.datagrams", &datagrams);
    let out = tmp.path().join("out");
    let o = recv(&input, &out, &[]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.lines().any(|l| l.starts_with("incomplete far.bin  3 of 5 bytes  missing 3-4  ")
            && l.contains("body bytes beyond the announced content-length")),
        "{stdout}"
    );
    assert_eq!(entries(&out), ["ok.txt"]);
    assert_eq!(std::fs::read(out.join("ok.txt")).unwrap(), b"ok\n");
    assert_eq!(summary_field(&stderr, "body_overruns"), 1, "{stderr}");
}

#[test]
fn a_fragment_flood_is_held_within_the_range_budget_and_named_in_short() {
    // Regression (item 5, fragments): a push failed by the receiver core as too
    // fragmented still had its ranges held by the session (its resource waited
    // for another copy) and by the file writer's out-of-order map, outside any
    // budget, and its record kept the full missing-range list. Three pushes of
    // one-byte fragments (every other byte), with a 1 MiB budget (10 922
    // ranges): the resources are given up, each record lists 64 missing ranges
    // and counts the rest, and a genuine push after the flood is written.
    const FRAGMENTS: u64 = 9_000;
    let tmp = tempfile::tempdir().unwrap();
    let mut datagrams = Vec::new();
    let mut stream0 = Vec::new();
    let mut pn = 0;
    let mut next = |datagrams: &mut Vec<Vec<u8>>, stream: u64, offset: u64, data: &[u8], fin: bool| {
        datagrams.push(stream_datagram(pn, stream, offset, data, fin));
        pn += 1;
    };
    let body_len = 2 * FRAGMENTS;
    let digest = h3m_proto::encoding::base64::encode(&sha256(&vec![0x42; body_len as usize]));
    let mut heads = Vec::new();
    for push_id in 0..3u64 {
        let promise = promise_frame(push_id, &format!("/f{push_id}.bin"));
        next(&mut datagrams, 0, stream0.len() as u64, &promise, false);
        stream0.extend_from_slice(&promise);
        let mut head = vec![0x01];
        varint::encode(push_id, &mut head).unwrap();
        let length = body_len.to_string();
        let headers =
            field_section(&[(":status", "200"), ("content-length", &length), ("digest", &format!("sha-256={digest}"))]);
        h3::encode_frame(&h3::H3Frame::Headers(&headers), &mut head).unwrap();
        let mut data_header = Vec::new();
        varint::encode(0x00, &mut data_header).unwrap();
        varint::encode(body_len, &mut data_header).unwrap();
        head.extend_from_slice(&data_header);
        heads.push(head.len() as u64);
        next(&mut datagrams, 3 + 4 * push_id, 0, &head, false);
    }
    for i in 0..FRAGMENTS {
        for push_id in 0..3u64 {
            next(&mut datagrams, 3 + 4 * push_id, heads[push_id as usize] + 2 * i, &[0x42], false);
        }
    }
    // The genuine push.
    let promise = promise_frame(3, "/ok.txt");
    next(&mut datagrams, 0, stream0.len() as u64, &promise, false);
    let mut ok = vec![0x01, 0x03];
    let headers = field_section(&[(":status", "200"), ("content-length", "3")]);
    h3::encode_frame(&h3::H3Frame::Headers(&headers), &mut ok).unwrap();
    h3::encode_frame(&h3::H3Frame::Data(b"ok\n"), &mut ok).unwrap();
    next(&mut datagrams, 15, 0, &ok, true);
    let input = write_input(tmp.path(), "fragments.datagrams", &datagrams);
    let out = tmp.path().join("out");
    let o = recv(&input, &out, &["--json", "--max-buffer-mib", "1"]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert_eq!(entries(&out), ["ok.txt"]);
    assert_eq!(std::fs::read(out.join("ok.txt")).unwrap(), b"ok\n");
    let records: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let given_up: Vec<&Value> =
        records.iter().filter(|r| r["event"] == "resource" && r["status"] == "incomplete").collect();
    assert_eq!(given_up.len(), 3, "{stdout}");
    let reasons: Vec<&str> = given_up.iter().map(|r| r["reason"].as_str().unwrap()).collect();
    // The session's own budget gave up at least one resource the core had
    // already failed (and released).
    assert!(reasons.contains(&"too fragmented: the range budget is spent"), "{reasons:?}");
    for r in &given_up {
        let listed = r["missing"].as_array().unwrap().len() as u64;
        let ranges = r["missing_ranges"].as_u64().unwrap();
        assert_eq!(listed, 64, "{r}");
        assert!(ranges > 64 && ranges <= FRAGMENTS + 1, "{r}");
        // The ranges of a single copy: every other byte, then the tail.
        assert_eq!(r["missing"][0], serde_json::json!([1, 2]), "{r}");
    }
    let o = recv(&input, &tmp.path().join("out-text"), &["--max-buffer-mib", "1"]);
    let stdout = text(&o.stdout);
    let line = stdout.lines().find(|l| l.starts_with("incomplete f0.bin  ")).unwrap();
    assert!(line.contains(",125,127,... ("), "{line}");
}

#[test]
fn a_flood_of_promises_is_counted_exactly_with_bounded_output_and_records() {
    // Regression (item 5): a record per refused or unfinished push was kept for
    // the summary, with its full missing-range list, and each got a line.
    const PROMISES: u64 = 30_000;
    let tmp = tempfile::tempdir().unwrap();
    let mut datagrams = Vec::new();
    let mut offset = 0;
    for push_id in 0..PROMISES {
        let promise = promise_frame(push_id, &format!("/flood/{push_id}.bin"));
        datagrams.push(stream_datagram(push_id, 0, offset, &promise, false));
        offset += promise.len() as u64;
    }
    let input = write_input(tmp.path(), "flood.datagrams", &datagrams);
    let out = tmp.path().join("out");
    let o = recv(&input, &out, &[]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    let lines = stdout.lines().count() as u64;
    let suppressed = summary_field(&stderr, "suppressed_lines");
    assert!(lines < PROMISES / 2, "per-push lines are rate limited: {lines} lines");
    assert_eq!(lines + suppressed, PROMISES, "every line is printed or counted as suppressed");
    // Every promise is accounted for in the summary, exactly.
    assert_eq!(summary_field(&stderr, "incomplete"), PROMISES, "{stderr}");
    assert_eq!(entries(&out), Vec::<String>::new());

    // The library keeps a bounded number of records, and says so by the counts.
    let mut opts = Options::new(&input, tmp.path().join("lib"));
    opts.session.session_id = sid();
    let outcome = offline::run(&opts, &mut std::io::sink(), &mut std::io::sink());
    assert_eq!(outcome.status, ExitStatus::Incomplete);
    assert!(outcome.resources.len() <= 10_000, "{} records retained", outcome.resources.len());
    assert_eq!(outcome.summary.unwrap().resources_incomplete, PROMISES);
}

#[test]
fn malformed_session_ids_and_port_zero_are_usage_errors() {
    // Regression (item 12): `--session-id abc` silently became `0abc`, `''`
    // was accepted, and `--port 0` was accepted.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let run = |args: &[&str]| -> Output { Command::new(BIN).args(args).arg("--out").arg(&out).output().unwrap() };
    for bad in ["abc", "", "0x", "zz", "0x123"] {
        let o = run(&[
            "--group",
            "239.255.0.1",
            "--interface",
            "127.0.0.1",
            "--port",
            "4433",
            "--idle-timeout",
            "0.5",
            "--session-id",
            bad,
        ]);
        assert_eq!(o.status.code(), Some(2), "--session-id {bad:?}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains("session"), "--session-id {bad:?}: {}", text(&o.stderr));
    }
    let o = run(&[
        "--group",
        "239.255.0.1",
        "--interface",
        "127.0.0.1",
        "--port",
        "0",
        "--idle-timeout",
        "0.5",
        "--session-id",
        "01",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let o = run(&["--group", "239.255.0.1", "--interface", "127.0.0.1", "--port", "4433", "--max-buffer-mib", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(!out.exists(), "a usage error creates nothing");
}
