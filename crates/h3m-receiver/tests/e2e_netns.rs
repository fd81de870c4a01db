//! End to end: `h3m-send` and `h3m-recv` as processes, between two network
//! namespaces joined by a veth (IPv4 and IPv6, ASM and SSM, with and without
//! loss), and on a loopback interface (`--watch`, `--stdin`).
//!
//! Network safety: every datagram stays inside namespaces these tests create
//! (deleted on drop, also on panic) or, when not root, on the loopback
//! interface with TTL 1. Only processes started here are killed, by PID.
//!
//! The namespace tests need root (`SKIP: ...` otherwise); the loss test also
//! needs `nft` (nftables). All tests of this file run one at a time (a shared
//! lock): they measure nothing, but a receiver on a 2-core machine must keep up
//! with the sender, and parallel transfers would make that a matter of luck.

mod common;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use h3m_net::testns::{NetNs, VethLink, is_root, skip_unless_root};

use common::*;

/// One test at a time ([`serial`]), with `h3m-send` built first: [`send_bin`] runs `cargo build` once per
/// test process (seconds, even when there is nothing to build), and a receiver started before that
/// would run out its idle timeout (counted from its start while nothing arrives) before the sender ever
/// ran.
fn serial_and_built() -> std::sync::MutexGuard<'static, ()> {
    let guard = serial();
    send_bin();
    guard
}

// ---------------------------------------------------------------------------
// 1. IPv6 ASM
// ---------------------------------------------------------------------------

#[test]
fn ipv6_asm_over_veth() {
    if skip_unless_root("ipv6_asm_over_veth") {
        return;
    }
    let _serial = serial_and_built();
    let t0 = Instant::now();
    let seed = random_u64();
    let mut rng = Rng(seed);
    let tmp = logs_dir();
    let src = tmp.path().join("src");
    let out = tmp.path().join("out");
    write_file(&src, "empty", b"");
    write_file(&src, "one-byte", b"x");
    write_file(&src, "with space/a file with spaces.txt", b"spaces in names\n");
    write_file(&src, "ünïcödé/日本語のファイル 名.txt", "non-ASCII: ü 日本 🦀\n".as_bytes());
    write_file(&src, "100% sure.txt", b"percent\n");
    write_file(&src, "nested/deeper/still deeper/leaf.bin", &rng.bytes(5000));
    write_file(&src, "nested/sibling.bin", &rng.bytes(1201));
    write_file(&src, "big-2MiB.bin", &rng.bytes(2 << 20));
    let expected = tree_digests(&src);

    let link = VethLink::new().expect("veth link");
    let group = format!("ff15::{:x}:{:x}", 1 + random_u64() % 0xfffe, 1 + random_u64() % 0xfffe);
    let port = random_port();
    let sid = random_session_id();
    let a_v6 = VethLink::A_V6.to_string();
    let rx = start_receiver(
        &RecvSpec {
            name: "h3m-recv",
            side: Side { ns: Some(&link.b), interface: VethLink::B_IF },
            group: &group,
            port,
            source: None,
            session_id: &sid,
            out: &out,
            idle_timeout: "5",
        },
        tmp.path(),
    );
    let sent = run_sender(
        &SendSpec {
            side: Side { ns: Some(&link.a), interface: VethLink::A_IF },
            group: &group,
            port,
            source: Some(&a_v6),
            session_id: &sid,
            rate: "100M",
            extra: vec![src.to_string_lossy().into_owned()],
        },
        tmp.path(),
        Duration::from_secs(60),
    );
    let f = rx.wait(Duration::from_secs(60));
    let r = assert_all_intact(&f, &expected, &out);
    assert_eq!(r.summary.get("session_end").map(String::as_str), Some("connection_close"), "{}", show(&f));
    eprintln!(
        "ipv6_asm_over_veth: seed {seed:#x}, group [{group}]:{port}, {} files; send {}, receive {}, total {}; {}",
        expected.len(),
        ms(sent.elapsed),
        ms(f.elapsed),
        ms(t0.elapsed()),
        sent.stdout.trim()
    );
}

// ---------------------------------------------------------------------------
// 2, 3. SSM: the right source gets everything, a wrong one nothing
// ---------------------------------------------------------------------------

fn ssm_and_wrong_source(test: &str, v6: bool) {
    let t0 = Instant::now();
    let seed = random_u64();
    let mut rng = Rng(seed);
    let tmp = logs_dir();
    let src = tmp.path().join("src");
    for i in 0..8 {
        let len = rng.range(0, 40_000) as usize;
        write_file(&src, &format!("dir{}/file-{i}.bin", i % 3), &rng.bytes(len));
    }
    write_file(&src, "top.txt", b"top\n");
    let expected = tree_digests(&src);

    let link = VethLink::new().expect("veth link");
    let (group, source, other) = if v6 {
        link.add_address_a("fd00:213::3/64").expect("second address");
        (
            format!("ff3e::{:x}:{:x}", 0x8000 + random_u64() % 0x7fff, 1 + random_u64() % 0xfffe),
            VethLink::A_V6.to_string(),
            "fd00:213::3",
        )
    } else {
        link.add_address_a("10.213.0.3/24").expect("second address");
        let r = random_u64();
        (
            format!("232.{}.{}.{}", 1 + r % 250, (r >> 8) % 256, 1 + (r >> 16) % 250),
            VethLink::A_V4.to_string(),
            "10.213.0.3",
        )
    };
    let port = random_port();
    let sid = random_session_id();
    let out_right = tmp.path().join("out-right");
    let out_wrong = tmp.path().join("out-wrong");
    let b_side = Side { ns: Some(&link.b), interface: VethLink::B_IF };
    // The wrong-source receiver starts first and its idle timeout (from its start, as nothing arrives)
    // runs out only after the whole session has been sent.
    let rx_wrong = start_receiver(
        &RecvSpec {
            name: "h3m-recv-wrong-source",
            side: b_side,
            group: &group,
            port,
            source: Some(other),
            session_id: &sid,
            out: &out_wrong,
            idle_timeout: "4",
        },
        tmp.path(),
    );
    let rx_right = start_receiver(
        &RecvSpec {
            name: "h3m-recv",
            side: b_side,
            group: &group,
            port,
            source: Some(&source),
            session_id: &sid,
            out: &out_right,
            idle_timeout: "5",
        },
        tmp.path(),
    );
    let sent = run_sender(
        &SendSpec {
            side: Side { ns: Some(&link.a), interface: VethLink::A_IF },
            group: &group,
            port,
            source: Some(&source),
            session_id: &sid,
            rate: "100M",
            extra: vec![src.to_string_lossy().into_owned()],
        },
        tmp.path(),
        Duration::from_secs(60),
    );
    let right = rx_right.wait(Duration::from_secs(60));
    assert_all_intact(&right, &expected, &out_right);
    let wrong = rx_wrong.wait(Duration::from_secs(60));
    let r = Report::parse(&wrong);
    assert_eq!(wrong.code, Some(1), "the wrong-source receiver should exit 1: {}", show(&wrong));
    assert!(wrong.stdout.trim().is_empty(), "the wrong-source receiver printed resources: {}", show(&wrong));
    assert_eq!(r.count("datagrams"), 0, "the wrong-source receiver got datagrams: {}", show(&wrong));
    let files = tree_digests(&out_wrong);
    assert!(files.is_empty(), "the wrong-source receiver wrote {files:?}");
    assert!(
        wrong.elapsed >= Duration::from_secs(3),
        "the wrong-source receiver ended before its idle timeout: {}",
        show(&wrong)
    );
    eprintln!(
        "{test}: seed {seed:#x}, ({source}, {group}):{port}; right source: {} files in {}; wrong source ({other}): \
         nothing, exit 1 after {}; send {}, total {}",
        expected.len(),
        ms(right.elapsed),
        ms(wrong.elapsed),
        ms(sent.elapsed),
        ms(t0.elapsed())
    );
}

#[test]
fn ipv4_ssm_and_wrong_source() {
    if skip_unless_root("ipv4_ssm_and_wrong_source") {
        return;
    }
    let _serial = serial_and_built();
    ssm_and_wrong_source("ipv4_ssm_and_wrong_source", false);
}

#[test]
fn ipv6_ssm_and_wrong_source() {
    if skip_unless_root("ipv6_ssm_and_wrong_source") {
        return;
    }
    let _serial = serial_and_built();
    ssm_and_wrong_source("ipv6_ssm_and_wrong_source", true);
}

// ---------------------------------------------------------------------------
// 4. Loss
// ---------------------------------------------------------------------------

/// A random source-specific multicast group (232.0.0.0/8), so that parallel runs do not meet.
fn random_ssm_group() -> String {
    let r = random_u64();
    format!("232.{}.{}.{}", 1 + r % 250, (r >> 8) % 256, 1 + (r >> 16) % 250)
}

/// Drops `percent`% of the datagrams to `port`, at random, on input.
fn loss_ruleset(port: u16, percent: u32) -> String {
    format!(
        "table inet h3mloss {{\n  chain in {{\n    type filter hook input priority 0;\n    \
         udp dport {port} numgen random mod 100 < {percent} drop\n  }}\n}}\n"
    )
}

/// Prints `SKIP: test: ...` and returns true when `nft` (or, with `ethtool`, also ethtool) is missing.
fn skip_without_tools(test: &str, ethtool: bool) -> bool {
    let missing = if !nft_available() {
        "`nft` not found (apt-get install nftables)"
    } else if ethtool && !ethtool_available() {
        "`ethtool` not found (apt-get install ethtool)"
    } else {
        return false;
    };
    let _ = writeln!(std::io::stderr(), "SKIP: {test}: {missing}");
    true
}

/// Whether `ethtool` can be run.
fn ethtool_available() -> bool {
    Command::new("ethtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Turns segmentation offload off on `dev` inside `ns`: the sender's UDP GSO sends then leave as single
/// datagrams, so the drop rule on the far side loses single datagrams rather than GSO bursts of up to 64.
fn gso_off(ns: &NetNs, dev: &str) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name(), "ethtool", "-K", dev, "tx-udp-segmentation", "off", "gso", "off"])
        .output()
        .expect("run ethtool");
    assert!(out.status.success(), "ethtool -K {dev} gso off failed: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn loss_without_repeat_is_reported() {
    if skip_unless_root("loss_without_repeat_is_reported")
        || skip_without_tools("loss_without_repeat_is_reported", false)
    {
        return;
    }
    let _serial = serial_and_built();
    let t0 = Instant::now();
    let seed = random_u64();
    let mut rng = Rng(seed);
    let tmp = logs_dir();
    let link = VethLink::new().expect("veth link");
    // One datagram per veth packet (no GSO super-packets), so the drop rule loses single datagrams rather
    // than bursts of up to 64. Without it the test still holds, with bursty loss.
    if let Err(e) = link.a.ip(&["link", "set", VethLink::A_IF, "gso_max_segs", "1"]) {
        eprintln!("note: could not set gso_max_segs on the veth ({e}): losses come in GSO bursts");
    }
    let port = random_port();
    nft_in(&link.b, &loss_ruleset(port, 2));
    let group = random_ssm_group();
    let source = VethLink::A_V4.to_string();

    // One copy of ~20 files of 20-200 KiB (about 1,900 datagrams): with 2% loss P(no loss at all) is
    // 0.98^1900 < 1e-16, so some file is incomplete.
    let src = tmp.path().join("src");
    for i in 0..20 {
        let len = rng.range(20 << 10, 200 << 10) as usize;
        write_file(&src, &format!("set/part-{i:02}.bin"), &rng.bytes(len));
    }
    let expected = tree_digests(&src);
    let out = tmp.path().join("out");
    let sid = random_session_id();
    let rx = start_receiver(
        &RecvSpec {
            name: "h3m-recv",
            side: Side { ns: Some(&link.b), interface: VethLink::B_IF },
            group: &group,
            port,
            source: Some(&source),
            session_id: &sid,
            out: &out,
            idle_timeout: "3",
        },
        tmp.path(),
    );
    let sent = run_sender(
        &SendSpec {
            side: Side { ns: Some(&link.a), interface: VethLink::A_IF },
            group: &group,
            port,
            source: Some(&source),
            session_id: &sid,
            rate: "50M",
            extra: vec![src.to_string_lossy().into_owned(), "--repeat".into(), "1".into()],
        },
        tmp.path(),
        Duration::from_secs(60),
    );
    let f = rx.wait(Duration::from_secs(60));
    let rep = Report::parse(&f);
    assert_eq!(f.code, Some(1), "with loss and one copy the receiver should exit 1: {}", show(&f));
    assert!(!rep.incomplete.is_empty(), "no `incomplete` line although packets were dropped: {}", show(&f));
    let got = tree_digests(&out);
    // What is there is intact, and nothing else is there (no temporary files).
    for (name, v) in &got {
        assert_eq!(expected.get(name), Some(v), "{name} in the output is not an intact copy: {}", show(&f));
    }
    let mut complete: Vec<String> = rep.complete.iter().map(|c| c.0.clone()).collect();
    complete.sort();
    let present: Vec<String> = got.keys().map(|k| escape_name(k)).collect();
    assert_eq!(complete, present, "`complete` lines should name exactly the files written: {}", show(&f));
    let missing: Vec<String> = expected.keys().filter(|k| !got.contains_key(*k)).map(|k| escape_name(k)).collect();
    let mut incomplete: Vec<String> = rep.incomplete.iter().filter(|n| !n.starts_with('(')).cloned().collect();
    incomplete.sort();
    let named = incomplete.len();
    incomplete.dedup();
    assert_eq!(incomplete.len(), named, "a resource reported twice: {}", show(&f));
    for name in &incomplete {
        assert!(missing.contains(name), "`incomplete {name}` but it is not missing (or not sent): {}", show(&f));
    }
    // The sender puts each PUSH_PROMISE alone in the datagram before its push stream. A missing file
    // whose promise (the only place its :path is) arrived is named by an `incomplete` line; one whose
    // promise was lost is counted by an `unpromised push` line (its stream says which push it was), or,
    // when its stream's first datagram was lost too (p = 0.0004 per file), by an `incomplete (push N)`
    // or `incomplete (stream S)` line.
    let unnamed = missing.len() - incomplete.len();
    let by_push_id = rep.unpromised.len() + rep.incomplete.iter().filter(|n| n.starts_with('(')).count();
    assert!(
        unnamed <= by_push_id,
        "{unnamed} missing file(s) named by no line ({by_push_id} unpromised, lost or headless pushes): {}",
        show(&f)
    );
    assert!(rep.other.is_empty(), "unexpected lines: {}", show(&f));
    eprintln!(
        "loss_without_repeat_is_reported: 2% loss, one copy: {} of {} files complete, {} reported incomplete, \
         {unnamed} unnamed, {by_push_id} unpromised/lost/headless line(s), packet_number_gaps={}; send {}, receive {}; \
         seed {seed:#x}, total {}",
        got.len(),
        expected.len(),
        incomplete.len(),
        rep.count("packet_number_gaps"),
        ms(sent.elapsed),
        ms(f.elapsed),
        ms(t0.elapsed())
    );
}

// ---------------------------------------------------------------------------
// 4b. --repeat 3 under 1%, 2% and 5% loss, against independent per-datagram loss
// ---------------------------------------------------------------------------
//
// How the receiver merges copies (crates/h3m-proto/src/receiver, crates/h3m-receiver/src/session.rs):
//
// - A push's bytes are used only once its PUSH_PROMISE has arrived on stream 0 (the only place its
//   `:path` is; a stream without one is an `unpromised push`, its bytes dropped) and its stream's start
//   has arrived: stream type and push ID (else it is a headless stream, dropped), the response HEADERS
//   (their `:path` + digest pick the resource the copy merges into) and the DATA frame header (the body
//   is one DATA frame: without its header no byte maps to a body offset). The sender puts the promise
//   alone in the datagram just before the stream's, and the stream's start in its first datagram.
// - From such a copy every datagram that arrives is written at its body offsets into the one partial file
//   of the resource, whichever copy brought the bytes first; the resource is written when the copies
//   together cover every byte (`have.contains(0..len)`), and its SHA-256 is checked then.
// - Copies of one file are laid out almost but not exactly alike (push ID and stream ID varints, the
//   `date` header's length), so the datagram boundaries of different copies fall at slightly different
//   body offsets. The model works on the real layout, read from every datagram the sender sent.
//
// So under independent loss with probability p per datagram, with the layout of a file's copies known,
// P(file complete) = P(for every body byte, some copy whose promise and start datagrams arrived also got
// the datagram carrying that byte) (for an empty body: P(some copy's promise and start arrived)).
// [`p_complete`] computes it exactly, walking the body's elementary intervals (between the datagram
// boundaries of all copies) with each copy's state (unusable / usable, current datagram lost / arrived).

/// One copy (push) of a file, as the sender laid it out.
#[derive(Debug)]
struct CopyLayout {
    push_id: u64,
    /// How many datagrams must all arrive for the copy to be usable: its promise and those carrying its
    /// stream up to the end of the DATA frame header.
    required: u32,
    /// The body ranges of its datagrams, in order and covering the body: `(start, end, required)`.
    body: Vec<(u64, u64, bool)>,
}

/// What the sender sent, parsed from every datagram of the session.
#[derive(Debug, Default)]
struct Layout {
    /// Per file (relative path): its copies.
    files: BTreeMap<String, Vec<CopyLayout>>,
    /// Push stream ID to push ID.
    stream_push: HashMap<u64, u64>,
    /// Push ID to file.
    push_file: HashMap<u64, String>,
}

/// A socket in the sender's namespace that receives the sender's datagrams through multicast loopback,
/// where no rule drops anything: the layout the model is built from. Its buffer (forced as root) holds a
/// whole run even if its thread were slow.
struct Tap {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Vec<u8>>>,
}

impl Tap {
    fn start(ns: &NetNs, group: &str, port: u16) -> Tap {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let group = std::net::SocketAddr::new(group.parse().expect("group"), port);
        let (socket, warnings) = ns
            .run(|| {
                let mut cfg = h3m_net::MulticastConfig::new(group)
                    .with_source(VethLink::A_V4.into())
                    .with_interface(VethLink::A_IF.parse().expect("interface"));
                cfg.recv_buffer = Some(64 << 20);
                h3m_net::open_receiver(&cfg)
            })
            .expect("open the reference socket in the sender's namespace");
        for w in warnings {
            eprintln!("note: reference socket: {w}");
        }
        socket.set_nonblocking(false).expect("blocking");
        socket.set_read_timeout(Some(Duration::from_millis(100))).expect("read timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut buf = vec![0u8; 65_536];
            loop {
                match socket.recv(&mut buf) {
                    Ok(n) => all.push(buf[..n].to_vec()),
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                        if stopped.load(Ordering::Relaxed) {
                            return all;
                        }
                    }
                    Err(e) => panic!("reference socket: {e}"),
                }
            }
        });
        Tap { stop, thread }
    }

    /// Everything received, once the sender has exited (loopback delivery is synchronous with the send).
    fn finish(self) -> Vec<Vec<u8>> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("reference thread")
    }
}

/// Parses the datagrams of session `sid` into each file's copies; checks they are all there (packet
/// numbers 0 to `count` − 1) and that each file of `expected` was sent `copies` times.
fn parse_layout(
    datagrams: &[Vec<u8>],
    sid: &str,
    count: u64,
    expected: &BTreeMap<String, (u64, String)>,
    copies: usize,
) -> Layout {
    use h3m_proto::frame::{Frame, FrameReader};
    use h3m_proto::h3::{self, FrameHeader, H3Frame};
    use h3m_proto::{packet, protection::NullProtection, qpack, varint};

    let session = h3m_proto::SessionId::from_hex(sid).expect("session ID");
    let mut pns = std::collections::BTreeSet::new();
    let mut largest = None;
    // Push ID -> (path, packet number of its promise).
    let mut promises: HashMap<u64, (String, u64)> = HashMap::new();
    // Stream ID -> (offset, length, bytes when near the start).
    type Segment = (u64, u64, Option<Vec<u8>>);
    let mut streams: HashMap<u64, Vec<Segment>> = HashMap::new();
    for d in datagrams {
        let mut d = d.clone();
        let opened = packet::open_packet(&mut d, &session, largest, &NullProtection).expect("a packet of the session");
        let pn = opened.packet_number;
        largest = largest.max(Some(pn));
        assert!(pns.insert(pn), "packet number {pn} twice in the reference");
        for frame in FrameReader::new(opened.payload) {
            match frame.expect("a readable frame") {
                Frame::Stream { stream_id: 0, data, .. } => {
                    // Each PUSH_PROMISE rides whole in a STREAM frame of its own.
                    let Ok(Some((H3Frame::PushPromise { push_id, field_section }, used))) = h3::decode_frame(data)
                    else {
                        panic!("stream 0 data in packet {pn} is not one whole PUSH_PROMISE");
                    };
                    assert_eq!(used, data.len(), "more than one frame in packet {pn}");
                    let request =
                        qpack::decode_field_section(field_section, &qpack::DecodeLimits::default()).expect("request");
                    let path = request
                        .iter()
                        .find(|f| f.name == b":path")
                        .map(|f| String::from_utf8_lossy(&f.value).into_owned())
                        .expect(":path");
                    if path != "goaway" {
                        promises.insert(push_id, (path, pn));
                    }
                }
                Frame::Stream { stream_id, offset, data, .. } if stream_id % 4 == 3 => {
                    let bytes = (offset < 4096).then(|| data.to_vec());
                    streams.entry(stream_id).or_default().push((offset, data.len() as u64, bytes));
                }
                Frame::Padding { .. } | Frame::Ping => {}
                other => panic!("unexpected frame in packet {pn}: {other:?}"),
            }
        }
    }
    assert!(
        pns.len() as u64 == count && pns.last().is_none_or(|&l| l + 1 == count),
        "the reference holds {} of the {count} datagrams sent: the model needs all",
        pns.len()
    );

    let mut layout = Layout::default();
    for (stream_id, mut segments) in streams {
        segments.sort_by_key(|s| s.0);
        let mut prefix = Vec::new();
        let mut end = 0;
        for (offset, len, bytes) in &segments {
            assert_eq!(*offset, end, "stream {stream_id} is not contiguous in the reference");
            end += len;
            if let Some(b) = bytes.as_ref().filter(|_| *offset == prefix.len() as u64) {
                prefix.extend_from_slice(b);
            }
        }
        // Stream type, push ID, HEADERS, then one DATA frame to the end of the stream.
        let (ty, n) = varint::decode(&prefix).expect("stream type");
        assert_eq!(ty, h3::PUSH_STREAM_TYPE, "stream {stream_id} is not a push stream");
        let (push_id, m) = varint::decode(&prefix[n..]).expect("push ID");
        let mut at = n + m;
        let headers = FrameHeader::parse(&prefix[at..]).expect("HEADERS frame header");
        assert_eq!(headers.frame_type, h3::HEADERS, "stream {stream_id}: HEADERS first");
        at += headers.total_len() as usize;
        let data = FrameHeader::parse(prefix.get(at..).unwrap_or_default()).expect("DATA frame header");
        assert_eq!(data.frame_type, h3::DATA, "stream {stream_id}: one DATA frame after HEADERS");
        let body_start = (at + data.header_len) as u64;
        assert_eq!(end, body_start + data.length, "stream {stream_id}: the body is not one DATA frame to the end");
        let (path, _) = promises.remove(&push_id).expect("every push has a promise");
        let file = path.strip_prefix('/').expect("absolute :path").to_owned();
        let size = expected.get(&file).unwrap_or_else(|| panic!("{path} was not in the tree")).0;
        assert_eq!(size, data.length, "{file}: body length");
        let mut required = 1; // the promise
        let mut body = Vec::new();
        for &(offset, len, _) in &segments {
            let head = offset < body_start;
            required += u32::from(head);
            if offset + len > body_start {
                body.push((offset.max(body_start) - body_start, offset + len - body_start, head));
            }
        }
        layout.stream_push.insert(stream_id, push_id);
        layout.push_file.insert(push_id, file.clone());
        layout.files.entry(file).or_default().push(CopyLayout { push_id, required, body });
    }
    assert!(promises.is_empty(), "promises without a stream: {promises:?}");
    for file in expected.keys() {
        let n = layout.files.get(file).map_or(0, Vec::len);
        assert_eq!(n, copies, "{file} was sent {n} times");
    }
    layout
}

/// P(a file of `len` body bytes completes) from its copies' layout, each datagram lost independently
/// with probability `p` (see the comment above [`CopyLayout`]).
///
/// The body is cut at every datagram boundary of every copy; on each piece each copy is in one of three
/// states: 0 unusable (a required datagram lost), 1 usable but the datagram carrying this piece lost,
/// 2 usable and that datagram arrived. A copy's state is drawn afresh where its datagram changes (a
/// required datagram arrived if the copy is usable at all); a piece is covered iff some copy is in
/// state 2, and the probability of the states that cover every piece is the answer.
fn p_complete(len: u64, copies: &[CopyLayout], p: f64) -> f64 {
    let usable: Vec<f64> = copies.iter().map(|c| (1.0 - p).powi(c.required as i32)).collect();
    if len == 0 {
        return 1.0 - usable.iter().map(|u| 1.0 - u).product::<f64>();
    }
    let digit = |s: usize, c: usize| s / 3usize.pow(c as u32) % 3;
    let states = 3usize.pow(copies.len() as u32);
    let mut mass: Vec<f64> = (0..states)
        .map(|s| {
            (0..copies.len())
                .map(|c| match digit(s, c) {
                    0 => 1.0 - usable[c],
                    1 => usable[c],
                    _ => 0.0,
                })
                .product()
        })
        .collect();
    let mut cuts: Vec<u64> = copies.iter().flat_map(|c| c.body.iter().map(|d| d.0)).chain([len]).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut current = vec![usize::MAX; copies.len()];
    for piece in cuts.windows(2) {
        for (c, copy) in copies.iter().enumerate() {
            let i = copy.body.partition_point(|d| d.1 <= piece[0]);
            assert!(copy.body.get(i).is_some_and(|d| d.0 <= piece[0] && piece[1] <= d.1), "copy does not cover");
            if current[c] == i {
                continue;
            }
            current[c] = i;
            let arrived = if copy.body[i].2 { 1.0 } else { 1.0 - p };
            let unit = 3usize.pow(c as u32);
            let mut next = vec![0.0; states];
            for (s, m) in mass.iter().enumerate() {
                match digit(s, c) {
                    0 => next[s] += m,
                    d => {
                        let base = s - d * unit;
                        next[base + 2 * unit] += m * arrived;
                        next[base + unit] += m * (1.0 - arrived);
                    }
                }
            }
            mass = next;
        }
        for (s, m) in mass.iter_mut().enumerate() {
            if !(0..copies.len()).any(|c| digit(s, c) == 2) {
                *m = 0.0;
            }
        }
    }
    mass.iter().sum()
}

/// [`p_complete`] against the closed form for identically laid-out copies, and against enumerating every
/// loss pattern for misaligned ones. (No network: runs everywhere.)
#[test]
fn loss_model_is_exact_on_small_layouts() {
    // n body datagrams per copy, the first also carrying the stream's start (required), plus the promise:
    // a copy is usable with u = (1 − p)², and then datagrams 2..n of the usable copies must cover each
    // slot, so P = Σ_m C(3, m) u^m (1 − u)^(3 − m) (1 − p^m)^(n − 1).
    let aligned = |n: u64| -> Vec<CopyLayout> {
        (0..3)
            .map(|k| CopyLayout {
                push_id: k,
                required: 2,
                body: (0..n).map(|i| (i * 1000, (i + 1) * 1000, i == 0)).collect(),
            })
            .collect()
    };
    for (n, p) in [(1, 0.05), (7, 0.01), (40, 0.02), (170, 0.05)] {
        let u = (1.0f64 - p) * (1.0 - p);
        let binom = [1.0, 3.0, 3.0, 1.0];
        let want: f64 = (1..=3)
            .map(|m| {
                binom[m] * u.powi(m as i32) * (1.0 - u).powi(3 - m as i32) * (1.0 - p.powi(m as i32)).powi(n as i32 - 1)
            })
            .sum();
        let got = p_complete(n * 1000, &aligned(n), p);
        assert!((got - want).abs() < 1e-12, "n={n} p={p}: {got} != {want}");
    }
    // Two copies of 3 datagrams, the second shifted by 10 bytes, and a third copy of 2: enumerate all
    // 2^11 loss patterns (promise + 3, promise + 3, promise + 2 datagrams).
    let copies = vec![
        CopyLayout { push_id: 0, required: 2, body: vec![(0, 100, true), (100, 200, false), (200, 250, false)] },
        CopyLayout { push_id: 1, required: 2, body: vec![(0, 90, true), (90, 190, false), (190, 250, false)] },
        CopyLayout { push_id: 2, required: 2, body: vec![(0, 150, true), (150, 250, false)] },
    ];
    let p = 0.3;
    let mut want = 0.0;
    for pattern in 0u32..1 << 11 {
        let mut bit = 0;
        let mut prob = 1.0;
        // Per copy: usable, and which body datagrams arrived.
        let mut arrived: Vec<(bool, Vec<bool>)> = Vec::new();
        for c in &copies {
            let mut take = || {
                let ok = pattern >> bit & 1 == 1;
                bit += 1;
                prob *= if ok { 1.0 - p } else { p };
                ok
            };
            let promise = take();
            let body: Vec<bool> = c.body.iter().map(|_| take()).collect();
            arrived.push((promise && body[0], body));
        }
        let covered = (0..250).all(|x| {
            copies
                .iter()
                .zip(&arrived)
                .any(|(c, (usable, body))| *usable && c.body.iter().zip(body).any(|(d, ok)| *ok && d.0 <= x && x < d.1))
        });
        if covered {
            want += prob;
        }
    }
    let got = p_complete(250, &copies, p);
    assert!((got - want).abs() < 1e-12, "misaligned: {got} != {want}");
}

/// "sent N resources, B body bytes in D datagrams (...)": D.
fn sent_datagrams(stdout: &str) -> u64 {
    let words: Vec<&str> = stdout.split_whitespace().collect();
    words
        .windows(3)
        .find_map(|w| (w[0] == "in" && w[2] == "datagrams").then(|| w[1].parse().ok()).flatten())
        .unwrap_or_else(|| panic!("no datagram count in h3m-send's output: {stdout}"))
}

#[test]
fn repeat_3_under_loss_matches_independent_loss() {
    const TEST: &str = "repeat_3_under_loss_matches_independent_loss";
    if skip_unless_root(TEST) || skip_without_tools(TEST, true) {
        return;
    }
    let _serial = serial_and_built();
    let t0 = Instant::now();
    let seed = random_u64();
    let mut rng = Rng(seed);
    let tmp = logs_dir();
    // 160 files, 4.7 MB: empty, single-datagram, and 1-190 KiB (up to ~170 datagrams), so that at 5% a
    // few files are expected to stay incomplete even with three copies.
    let src = tmp.path().join("src");
    for i in 0..160u64 {
        let len = match i {
            0..4 => 0,
            4..10 => rng.range(1, 200),
            10..40 => rng.range(200, 1000),
            40..100 => rng.range(1000, 16_000),
            100..140 => rng.range(16_000, 64_000),
            _ => rng.range(64_000, 192_000),
        };
        write_file(&src, &format!("tree/d{}/f{i:03}.bin", i % 7), &rng.bytes(len as usize));
    }
    let expected = tree_digests(&src);
    let link = VethLink::new().expect("veth link");
    gso_off(&link.a, VethLink::A_IF);
    let port = random_port();
    let group = random_ssm_group();
    let source = VethLink::A_V4.to_string();
    for (i, percent) in [1u32, 2, 5].into_iter().enumerate() {
        let t = Instant::now();
        let p = f64::from(percent) / 100.0;
        let ruleset = loss_ruleset(port, percent);
        nft_in(&link.b, &if i == 0 { ruleset } else { format!("delete table inet h3mloss\n{ruleset}") });
        let out = tmp.path().join(format!("out-{percent}"));
        let sid = random_session_id();
        let tap = Tap::start(&link.a, &group, port);
        let rx = start_receiver(
            &RecvSpec {
                name: &format!("h3m-recv-{percent}"),
                side: Side { ns: Some(&link.b), interface: VethLink::B_IF },
                group: &group,
                port,
                source: Some(&source),
                session_id: &sid,
                out: &out,
                idle_timeout: "3",
            },
            tmp.path(),
        );
        let sent = run_sender(
            &SendSpec {
                side: Side { ns: Some(&link.a), interface: VethLink::A_IF },
                group: &group,
                port,
                source: Some(&source),
                session_id: &sid,
                rate: "50M",
                extra: vec![src.to_string_lossy().into_owned(), "--repeat".into(), "3".into()],
            },
            tmp.path(),
            Duration::from_secs(60),
        );
        let count = sent_datagrams(&sent.stdout);
        let layout = parse_layout(&tap.finish(), &sid, count, &expected, 3);
        let f = rx.wait(Duration::from_secs(60));
        let rep = Report::parse(&f);
        let label = format!("--repeat 3 at {percent}% loss (seed {seed:#x})");

        // The loss is the drop rule's alone: the receiver got Binomial(count, p) fewer datagrams than
        // were sent (more would mean it was overrun, and the model would not apply).
        let lost = count - rep.count("datagrams");
        let (loss_mean, loss_sd) = (count as f64 * p, (count as f64 * p * (1.0 - p)).sqrt());
        assert!(
            (lost as f64 - loss_mean).abs() <= 4.0 * loss_sd + 1.0,
            "{label}: {lost} of {count} datagrams lost, expected {loss_mean:.0} ± {loss_sd:.1}: {}",
            show(&f)
        );

        // Every file is written byte-exact or missing, and nothing else is written.
        let got = tree_digests(&out);
        for (name, v) in &got {
            assert_eq!(expected.get(name), Some(v), "{label}: {name} is not an intact copy: {}", show(&f));
        }
        let mut complete: Vec<(String, u64, String)> = rep.complete.clone();
        complete.sort();
        let written: Vec<(String, u64, String)> =
            got.iter().map(|(k, (len, sha))| (escape_name(k), *len, sha.clone())).collect();
        assert_eq!(complete, written, "{label}: `complete` lines should list exactly the files written: {}", show(&f));
        let missing: Vec<&String> = expected.keys().filter(|k| !got.contains_key(*k)).collect();

        // Every missing file is named: by path in an `incomplete` line (any copy's promise arrived), or,
        // when no copy's promise arrived, every copy by its push ID (an `unpromised push` line, or an
        // `incomplete (push N)` / `incomplete (stream S)` line for a push lost whole or headless).
        let mut by_path = std::collections::BTreeSet::new();
        let mut push_ids = std::collections::BTreeSet::new();
        let mut repeated_lines = 0;
        for line in f.stdout.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let id = |w: &str| w.trim_end_matches(')').parse::<u64>().expect("an ID");
            match words.as_slice() {
                ["complete", ..] => {}
                ["incomplete", "(push", n, ..] => {
                    push_ids.insert(id(n));
                }
                ["incomplete", "(stream", s, ..] => {
                    push_ids.extend(layout.stream_push.get(&id(s)));
                }
                ["incomplete", name, ..] => {
                    // One line per resource, and one more per copy of it that never got its response
                    // headers (`no_push_stream`): a file may be named more than once.
                    if !by_path.insert((*name).to_owned()) {
                        repeated_lines += 1;
                    }
                }
                ["unpromised", "push", n, "on", "stream", _] => {
                    push_ids.insert(id(n));
                }
                _ => panic!("{label}: unexpected line {line:?}: {}", show(&f)),
            }
        }
        for name in &by_path {
            assert!(
                missing.iter().any(|m| escape_name(m) == *name),
                "{label}: `incomplete {name}` but it was written (or never sent): {}",
                show(&f)
            );
        }
        let only_by_push_id: Vec<&String> =
            missing.iter().copied().filter(|m| !by_path.contains(&escape_name(m))).collect();
        // When the end signal was lost too, the receiver knows of no push after the last it saw
        // (`last_push_id` in its summary): a copy after it, lost whole, can be named by no line.
        let known_to: Option<u64> = rep.summary.get("last_push_id").map(|v| v.parse().expect("a push ID"));
        let unnamed: Vec<&String> = only_by_push_id
            .iter()
            .copied()
            .filter(|m| {
                !layout.files[*m]
                    .iter()
                    .all(|c| push_ids.contains(&c.push_id) || known_to.is_some_and(|k| c.push_id > k))
            })
            .collect();
        // For a failure: each unnamed file's copies, and which of their push IDs a line named.
        let copies: Vec<String> = unnamed
            .iter()
            .map(|m| {
                let ids: Vec<String> = layout.files[*m]
                    .iter()
                    .map(|c| format!("{}{}", c.push_id, if push_ids.contains(&c.push_id) { " (named)" } else { "" }))
                    .collect();
                format!("{m}: copies {}", ids.join(", "))
            })
            .collect();
        assert!(unnamed.is_empty(), "{label}: missing and named by no line: {copies:?}: {}", show(&f));
        let want_code = if missing.is_empty() { 0 } else { 1 };
        assert_eq!(f.code, Some(want_code), "{label}: exit 1 iff a file is incomplete: {}", show(&f));

        // The number of complete files against the model. Files share no datagram, so their fates are
        // independent and the count is a sum of independent Bernoulli variables (Poisson binomial) with
        // mean E = Σ P and variance V = Σ P(1 − P). Near-normal, it is within 4 standard deviations of E
        // with probability > 0.9999; where V is small (1% loss: nearly every file completes) the shortfall
        // is about Poisson(V), and the +1 covers the discreteness: P(Poisson(λ) > λ + 4√λ + 1) < 1.3e-3
        // for every λ. Copies not merged datagram by datagram, or a lost promise costing more than its own
        // copy, would shift E by far more than that at 2% and 5%.
        let probs: Vec<f64> =
            expected.iter().map(|(name, (len, _))| p_complete(*len, &layout.files[name], p)).collect();
        let mean: f64 = probs.iter().sum();
        let var: f64 = probs.iter().map(|q| q * (1.0 - q)).sum();
        let observed = got.len() as f64;
        let bound = 4.0 * var.sqrt() + 1.0;
        let detail = format!(
            "{label}: {} files, {} complete (predicted {mean:.1} ± {:.1}, allowed ±{bound:.1}), {} incomplete \
             named ({} by path, {} by push ID only; {repeated_lines} repeated lines), {} unnamed; {count} datagrams, {lost} lost (expected \
             {loss_mean:.0} ± {loss_sd:.1}), packet_number_gaps={}; send {}, receive {}, total {}",
            expected.len(),
            got.len(),
            var.sqrt(),
            missing.len(),
            by_path.len(),
            only_by_push_id.len(),
            unnamed.len(),
            rep.count("packet_number_gaps"),
            ms(sent.elapsed),
            ms(f.elapsed),
            ms(t.elapsed())
        );
        eprintln!("{detail}");
        assert!((observed - mean).abs() <= bound, "{detail}: the complete count is off the model: {}", show(&f));
    }
    eprintln!("{TEST}: seed {seed:#x}, total {}", ms(t0.elapsed()));
}

// ---------------------------------------------------------------------------
// 5. A 100 MiB file and 1,000 small files, four ways
// ---------------------------------------------------------------------------

/// The rate of the big transfers. At 400 Mbit/s a debug-build receiver lost ~17 MB of the big file in one
/// burst when it followed the 1,000 small files (each is fsync'ed on the receive path; the stall overflows
/// the 16 MiB socket buffer); 200 Mbit/s showed no loss.
const BIG_RATE: &str = "200M";

#[test]
fn big_file_and_many_small_files() {
    if skip_unless_root("big_file_and_many_small_files") {
        return;
    }
    let _serial = serial_and_built();
    let t0 = Instant::now();
    let seed = random_u64();
    let mut rng = Rng(seed);
    let tmp = logs_dir();
    let src = tmp.path().join("src");
    // `big.bin` sorts before `small/`, so it is sent first.
    write_file(&src, "big.bin", &rng.bytes(100 << 20));
    for i in 0..1000 {
        let len = rng.range(0, 4096) as usize;
        write_file(&src, &format!("small/d{:02}/f{i:04}.txt", i % 25), &rng.bytes(len));
    }
    let expected = tree_digests(&src);
    assert_eq!(expected.len(), 1001);
    eprintln!("big_file_and_many_small_files: tree of 1,001 files made in {}", ms(t0.elapsed()));

    // All four variants take ~30 s in debug builds on a 2-core machine, so all use the full sizes.
    let link = VethLink::new().expect("veth link");
    let r = random_u64();
    let variants = [
        ("IPv4 ASM", format!("239.{}.{}.{}", 1 + r % 250, (r >> 8) % 256, 1 + (r >> 16) % 250), false, false),
        ("IPv4 SSM", format!("232.{}.{}.{}", 1 + (r >> 24) % 250, (r >> 32) % 256, 1 + (r >> 40) % 250), false, true),
        ("IPv6 ASM", format!("ff15::{:x}", 1 + (r >> 16) % 0xfffe), true, false),
        ("IPv6 SSM", format!("ff3e::8000:{:x}", 1 + (r >> 32) % 0xfffe), true, true),
    ];
    for (label, group, v6, ssm) in variants {
        let t = Instant::now();
        let source = if v6 { VethLink::A_V6.to_string() } else { VethLink::A_V4.to_string() };
        let port = random_port();
        let sid = random_session_id();
        let out = tmp.path().join(format!("out-{}", label.replace(' ', "-")));
        let rx = start_receiver(
            &RecvSpec {
                name: "h3m-recv",
                side: Side { ns: Some(&link.b), interface: VethLink::B_IF },
                group: &group,
                port,
                source: ssm.then_some(source.as_str()),
                session_id: &sid,
                out: &out,
                idle_timeout: "10",
            },
            tmp.path(),
        );
        let sent = run_sender(
            &SendSpec {
                side: Side { ns: Some(&link.a), interface: VethLink::A_IF },
                group: &group,
                port,
                source: Some(&source),
                session_id: &sid,
                rate: BIG_RATE,
                extra: vec![src.to_string_lossy().into_owned()],
            },
            tmp.path(),
            Duration::from_secs(180),
        );
        let f = rx.wait(Duration::from_secs(180));
        let rep = assert_all_intact(&f, &expected, &out);
        assert_eq!(rep.count("packet_number_gaps"), 0, "datagrams were lost: {}", show(&f));
        eprintln!(
            "big_file_and_many_small_files: {label} ({group}):{port}: intact; {}; receive {}, variant {}",
            sent.stdout.trim(),
            ms(f.elapsed),
            ms(t.elapsed())
        );
        fs::remove_dir_all(&out).expect("remove output");
    }
    eprintln!("big_file_and_many_small_files: seed {seed:#x}, total {}", ms(t0.elapsed()));
}

// ---------------------------------------------------------------------------
// 6, 7. Loopback: --watch and --stdin
// ---------------------------------------------------------------------------

/// A private namespace's loopback when root (lo is up and multicast there), else the root namespace's
/// loopback (127.0.0.1, TTL 1).
fn loopback() -> Option<NetNs> {
    is_root().then(|| NetNs::new().expect("namespace"))
}

fn loopback_group() -> String {
    let r = random_u64();
    format!("239.255.{}.{}", r % 256, 1 + (r >> 8) % 254)
}

/// The receiver of the loopback tests (`--watch`, `--stdin`): any source, 10 s idle timeout.
fn loopback_recv_spec<'a>(side: Side<'a>, group: &'a str, port: u16, sid: &'a str, out: &'a Path) -> RecvSpec<'a> {
    RecvSpec { name: "h3m-recv", side, group, port, source: None, session_id: sid, out, idle_timeout: "10" }
}

/// The sender of the loopback tests at 50 Mbit/s, without PATHs or options.
fn loopback_send_spec<'a>(side: Side<'a>, group: &'a str, port: u16, sid: &'a str) -> SendSpec<'a> {
    SendSpec { side, group, port, source: None, session_id: sid, rate: "50M", extra: Vec::new() }
}

#[test]
fn watch_publishes_new_files() {
    let _serial = serial_and_built();
    let t0 = Instant::now();
    let seed = random_u64();
    let mut rng = Rng(seed);
    let tmp = logs_dir();
    let ns = loopback();
    let side = Side { ns: ns.as_ref(), interface: "127.0.0.1" };
    let dir = tmp.path().join("watched");
    let out = tmp.path().join("out");
    write_file(&dir, "initial.txt", b"there from the start\n");
    let group = loopback_group();
    let port = random_port();
    let sid = random_session_id();
    let rx = start_receiver(&loopback_recv_spec(side, &group, port, &sid, &out), tmp.path());
    let spec = SendSpec {
        extra: vec!["--watch".into(), dir.to_string_lossy().into_owned(), "--duration".into(), "6".into()],
        ..loopback_send_spec(side, &group, port, &sid)
    };
    let tx = Proc::spawn("h3m-send", side.ns, &send_bin(), &sender_args(&spec), tmp.path(), Stdio::null());
    // Each new file is written in two steps with a pause shorter than the watch interval (0.5 s): the
    // sender must publish it once, whole, not the first half.
    let two_steps = |rel: &str, data: &[u8]| {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        let mut f = fs::File::create(&p).expect("create");
        f.write_all(&data[..data.len() / 2]).expect("write");
        f.flush().expect("flush");
        std::thread::sleep(Duration::from_millis(200));
        f.write_all(&data[data.len() / 2..]).expect("write");
    };
    let one = rng.bytes(300_000);
    let two = rng.bytes(77_777);
    std::thread::sleep(Duration::from_secs(1).saturating_sub(tx.started.elapsed()));
    two_steps("new/one.bin", &one);
    std::thread::sleep(Duration::from_secs(2).saturating_sub(tx.started.elapsed()));
    two_steps("two words.bin", &two);
    let expected = tree_digests(&dir);
    assert_eq!(expected.len(), 3);
    let sent = tx.wait(Duration::from_secs(30));
    assert_eq!(sent.code, Some(0), "h3m-send --watch failed: {}", show(&sent));
    // Three resources: neither half-written file was published.
    assert!(sent.stdout.starts_with("sent 3 resources,"), "h3m-send --watch: {}", show(&sent));
    let f = rx.wait(Duration::from_secs(30));
    let r = assert_all_intact(&f, &expected, &out);
    assert_eq!(
        r.summary.get("session_end").map(String::as_str),
        Some("goaway"),
        "the receiver should end on the sender's goaway: {}",
        show(&f)
    );
    eprintln!(
        "watch_publishes_new_files: {} via ({group}):{port}: 3 files intact, session_end=goaway; sender {}, \
         receiver {}, total {}; {}",
        if ns.is_some() { "namespace loopback" } else { "root-namespace loopback" },
        ms(sent.elapsed),
        ms(f.elapsed),
        ms(t0.elapsed()),
        sent.stdout.trim()
    );
}

#[test]
fn stdin_pipe_arrives_whole() {
    let _serial = serial_and_built();
    let t0 = Instant::now();
    let seed = random_u64();
    let mut rng = Rng(seed);
    let tmp = logs_dir();
    let ns = loopback();
    let side = Side { ns: ns.as_ref(), interface: "127.0.0.1" };
    let out = tmp.path().join("out");
    let group = loopback_group();
    let port = random_port();
    let sid = random_session_id();
    let rx = start_receiver(&loopback_recv_spec(side, &group, port, &sid, &out), tmp.path());
    let spec = SendSpec {
        extra: vec!["--stdin".into(), "--path".into(), "live/feed.bin".into()],
        ..loopback_send_spec(side, &group, port, &sid)
    };
    let mut tx = Proc::spawn("h3m-send", side.ns, &send_bin(), &sender_args(&spec), tmp.path(), Stdio::piped());
    let mut stdin = tx.child().stdin.take().expect("stdin");
    // 48 chunks of 64 KiB, 60 ms apart: 3 MiB over ~3 s.
    let mut fed = Vec::new();
    for _ in 0..48 {
        let chunk = rng.bytes(64 << 10);
        stdin.write_all(&chunk).expect("feed h3m-send");
        fed.extend_from_slice(&chunk);
        std::thread::sleep(Duration::from_millis(60));
    }
    drop(stdin);
    let sent = tx.wait(Duration::from_secs(30));
    assert_eq!(sent.code, Some(0), "h3m-send --stdin failed: {}", show(&sent));
    let f = rx.wait(Duration::from_secs(30));
    let expected = BTreeMap::from([("live/feed.bin".to_owned(), (fed.len() as u64, sha256_hex(&fed)))]);
    let r = assert_all_intact(&f, &expected, &out);
    eprintln!(
        "stdin_pipe_arrives_whole: {} bytes fed over {} via ({group}):{port}, intact (session_end={}); \
         receiver {}, total {}",
        fed.len(),
        ms(sent.elapsed),
        r.summary.get("session_end").map_or("none", String::as_str),
        ms(f.elapsed),
        ms(t0.elapsed())
    );
}

#[test]
fn carousel_under_5_percent_loss_delivers_every_file_to_a_late_joiner() {
    // Issue 10, item 2: with no feedback at all, a receiver that joins a
    // carousel 1.5 s after it started and loses 5% of the datagrams (single
    // datagrams: the sender's GSO is off) completes every file from the later
    // cycles, merging the copies, and names nothing incomplete.
    carousel_late_joiner("carousel_under_5_percent_loss_delivers_every_file_to_a_late_joiner", &[]);
}

#[test]
fn carousel_and_fec_together_deliver_every_file_to_a_late_joiner() {
    // Both mechanisms at once: the carousel's later cycles and FEC repair
    // (5% loss on the session's port and on the repair port).
    let test = "carousel_and_fec_together_deliver_every_file_to_a_late_joiner";
    if let Some(rep) = carousel_late_joiner(test, &["--fec", "15"]) {
        assert!(rep.count("fec_recovered") > 0, "nothing rebuilt");
    }
}

/// A carousel of 30 segments for 8 s at 10 Mbit/s with `extra` sender
/// arguments; a receiver joins 1.5 s in, loses 5% of the datagrams to the
/// session's port and the next, and must write every file (`None`: skipped).
fn carousel_late_joiner(test: &str, extra: &[&str]) -> Option<Report> {
    if skip_unless_root(test) || skip_without_tools(test, true) {
        return None;
    }
    let _serial = serial_and_built();
    let seed = random_u64();
    let mut rng = Rng(seed);
    let tmp = logs_dir();
    let src = tmp.path().join("src");
    for i in 0..30u64 {
        let len = rng.range(4_000, 48_000);
        write_file(&src, &format!("seg/s{i:02}.m4s"), &rng.bytes(len as usize));
    }
    let expected = tree_digests(&src);
    let ssm = LossySsm::new("numgen random mod 100 < 5", false);
    let mut args = vec![src.to_string_lossy().into_owned(), "--carousel".into(), "--duration".into(), "8".into()];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    // About 0.6 s a cycle: some 13 cycles in 8 s.
    let spec = ssm.send_spec("10M", args);
    let sender = Proc::spawn("h3m-send", spec.side.ns, &send_bin(), &sender_args(&spec), tmp.path(), Stdio::null());
    std::thread::sleep(Duration::from_millis(1500));
    let out = tmp.path().join("out");
    let rx = start_receiver(&ssm.recv_spec("h3m-recv", &out, "5"), tmp.path());
    let sent = sender.wait(Duration::from_secs(30));
    assert_eq!(sent.code, Some(0), "h3m-send: {}", show(&sent));
    let f = rx.wait(Duration::from_secs(30));
    let rep = Report::parse(&f);
    let label = format!("{test}: carousel {extra:?}, 5% loss, late joiner (seed {seed:#x})");
    assert_eq!(tree_digests(&out), expected, "{label}: {}", show(&f));
    assert_eq!(rep.complete.len(), expected.len(), "{label}: one `complete` line per file: {}", show(&f));
    assert_eq!(f.code, Some(0), "{label}: {}", show(&f));
    assert!(rep.count("dropped_malformed") == 0, "{label}: {}", show(&f));
    eprintln!("{label}: {} files intact; {}", expected.len(), f.stderr.lines().last().unwrap_or_default());
    Some(rep)
}

// ---------------------------------------------------------------------------
// 9. FEC (issue 10, item 1): loss on the session's port and its repair port
// ---------------------------------------------------------------------------

/// Drops datagrams to `port` and `port + 1` (the repair) on input, by `rule`
/// (an nftables expression, e.g. `numgen random mod 100 < 1`).
fn fec_loss_ruleset(port: u16, rule: &str) -> String {
    format!(
        "table inet h3mfecloss {{\n  chain in {{\n    type filter hook input priority 0;\n    \
         udp dport {{ {port}, {} }} {rule} drop\n  }}\n}}\n",
        port + 1
    )
}

/// A source-specific session across a fresh veth link whose far side drops
/// datagrams to its port and the next by `rule` (see [`fec_loss_ruleset`]),
/// the sender's GSO off unless `gso`: what the FEC tests share.
struct LossySsm {
    link: VethLink,
    group: String,
    source: String,
    sid: String,
    port: u16,
}

impl LossySsm {
    fn new(rule: &str, gso: bool) -> LossySsm {
        let ssm = LossySsm::without_loss(gso);
        nft_in(&ssm.link.b, &fec_loss_ruleset(ssm.port, rule));
        ssm
    }

    /// The link with no drop rule yet (the caller loads its own).
    fn without_loss(gso: bool) -> LossySsm {
        let link = VethLink::new().expect("veth link");
        if !gso {
            gso_off(&link.a, VethLink::A_IF);
        }
        let port = random_port();
        LossySsm { link, group: random_ssm_group(), source: VethLink::A_V4.to_string(), sid: random_session_id(), port }
    }

    /// A receiver `name` of the session on the far side, writing into `out`.
    fn recv_spec<'a>(&'a self, name: &'a str, out: &'a Path, idle_timeout: &'a str) -> RecvSpec<'a> {
        RecvSpec {
            name,
            side: Side { ns: Some(&self.link.b), interface: VethLink::B_IF },
            group: &self.group,
            port: self.port,
            source: Some(&self.source),
            session_id: &self.sid,
            out,
            idle_timeout,
        }
    }

    /// The session's sender at `rate` with `extra` arguments.
    fn send_spec<'a>(&'a self, rate: &'a str, extra: Vec<String>) -> SendSpec<'a> {
        SendSpec {
            side: Side { ns: Some(&self.link.a), interface: VethLink::A_IF },
            group: &self.group,
            port: self.port,
            source: Some(&self.source),
            session_id: &self.sid,
            rate,
            extra,
        }
    }
}

/// One FEC run: `src` sent with `fec` at `rate` across a veth with `rule`
/// dropping on the receiving side; two receivers side by side see the same
/// loss (the filter runs once per datagram): the default one must write
/// everything intact, the one with `--fec off` must not (so loss did happen
/// and the test can fail). Returns the FEC receiver's summary, or `None`
/// when a random rule happened to drop nothing at all (both receivers saw
/// every datagram: the run proves nothing, the caller runs it again).
fn fec_run(test: &str, src: &Path, fec: &str, rate: &str, rule: &str, gso: bool) -> Option<Report> {
    let _serial = serial_and_built();
    let tmp = logs_dir();
    let expected = tree_digests(src);
    let ssm = LossySsm::new(rule, gso);
    let out = tmp.path().join("out");
    let out_off = tmp.path().join("out-off");
    let rx = start_receiver(&ssm.recv_spec("h3m-recv", &out, "10"), tmp.path());
    let rx_off = start_receiver_with(&ssm.recv_spec("h3m-recv-fec-off", &out_off, "10"), tmp.path(), &["--fec", "off"]);
    let extra = vec![src.to_string_lossy().into_owned(), "--fec".into(), fec.into()];
    let sent = run_sender(&ssm.send_spec(rate, extra), tmp.path(), Duration::from_secs(120));
    let f = rx.wait(Duration::from_secs(60));
    let f_off = rx_off.wait(Duration::from_secs(60));
    let label = format!("{test}: --fec {fec}, {rule}, gso {gso}");
    let rep = Report::parse(&f);
    let rep_off = Report::parse(&f_off);
    if f_off.code == Some(0) && rep.count("packet_number_gaps") == 0 && rep_off.count("packet_number_gaps") == 0 {
        eprintln!("{label}: the rule dropped nothing this time; running again");
        return None;
    }
    assert_eq!(tree_digests(&out), expected, "{label}: {}", show(&f));
    assert_eq!(f.code, Some(0), "{label}: {}", show(&f));
    assert!(rep.count("fec_recovered") > 0, "{label}: nothing rebuilt: {}", show(&f));
    assert_eq!(rep.count("fec_blocks_unrecovered"), 0, "{label}: {}", show(&f));
    assert_eq!(rep_off.count("fec_repair"), 0, "{label}: --fec off listened to repair: {}", show(&f_off));
    assert_ne!(f_off.code, Some(0), "{label}: no loss without FEC? {}", show(&f_off));
    eprintln!(
        "{label}: {} files intact; {}\n  sender: {}\n  without FEC: {}",
        expected.len(),
        f.stderr.lines().last().unwrap_or_default(),
        sent.stdout.trim().replace('\n', "; "),
        f_off.stderr.lines().last().unwrap_or_default()
    );
    Some(rep)
}

/// A 6 MiB file and 150 files of 1–20 KiB.
fn fec_payload(tmp: &Path, rng: &mut Rng) -> std::path::PathBuf {
    let src = tmp.join("src");
    write_file(&src, "big.bin", &rng.bytes(6 << 20));
    for i in 0..150 {
        let len = rng.range(1_000, 20_000) as usize;
        write_file(&src, &format!("small/f{i:03}.bin"), &rng.bytes(len));
    }
    src
}

/// [`fec_run`] on [`fec_payload`] with `percent`% random loss.
fn fec_random_loss(test: &str, fec: &str, rate: &str, percent: u32, gso: bool) {
    if skip_unless_root(test) || skip_without_tools(test, !gso) {
        return;
    }
    let tmp = logs_dir();
    let src = fec_payload(tmp.path(), &mut Rng(random_u64()));
    let rule = format!("numgen random mod 100 < {percent}");
    // At 1% of ~450 veth packets no drop at all happens about once in 90 runs.
    let ran = (0..3).any(|_| fec_run(test, &src, fec, rate, &rule, gso).is_some());
    assert!(ran, "{test}: {rule} dropped nothing in three runs");
}

#[test]
fn fec_5_recovers_1_percent_random_loss_in_gso_bursts() {
    // GSO on: a dropped veth packet is a GSO send of up to `depth` (16)
    // datagrams, each from another block.
    fec_random_loss("fec_5_recovers_1_percent_random_loss_in_gso_bursts", "5", "200M", 1, true);
}

#[test]
fn fec_15_recovers_5_percent_random_loss() {
    // GSO off: one drop, one datagram.
    fec_random_loss("fec_15_recovers_5_percent_random_loss", "15", "50M", 5, false);
}

#[test]
fn fec_20_interleaved_rides_out_50_ms_outages_every_second() {
    // At 20 Mbit/s (about 2 100 datagrams/s of 1200 bytes, 2 400 with the
    // repair) 120 consecutive datagrams of every 2 400 are 50 ms of total
    // loss every second. A group spans 500 ms (the deadline) over 16
    // interleaved blocks: an outage costs each block 7 or 8 of its ~65
    // datagrams, and the next group's outage can take one or two of its
    // repair symbols too: --fec 20 gives it 13 (with --fec 15's 10 a block
    // was lost in one of six runs of this test).
    const TEST: &str = "fec_20_interleaved_rides_out_50_ms_outages_every_second";
    if skip_unless_root(TEST) || skip_without_tools(TEST, true) {
        return;
    }
    let tmp = logs_dir();
    let mut rng = Rng(random_u64());
    let src = tmp.path().join("src");
    write_file(&src, "seg/init.mp4", &rng.bytes(3_000));
    for i in 0..12 {
        let len = rng.range(200_000, 400_000) as usize;
        write_file(&src, &format!("seg/s{i:02}.m4s"), &rng.bytes(len));
    }
    let rep = fec_run(TEST, &src, "20", "20M", "numgen inc mod 2400 < 120", false).expect("a fixed rule always drops");
    assert!(rep.count("fec_recovered") >= 120, "at least one outage rebuilt");
}

#[test]
fn a_live_pipe_with_fec_survives_3_percent_loss() {
    // `--stdin` is a live stream: FEC groups close on their deadline while
    // the pipe trickles (3 MiB over ~3 s), and the datagrams the 3% drop
    // took come back from the repair port.
    const TEST: &str = "a_live_pipe_with_fec_survives_3_percent_loss";
    if skip_unless_root(TEST) || skip_without_tools(TEST, true) {
        return;
    }
    let _serial = serial_and_built();
    let mut rng = Rng(random_u64());
    let tmp = logs_dir();
    let ssm = LossySsm::new("numgen random mod 100 < 3", false);
    let out = tmp.path().join("out");
    let rx = start_receiver(&ssm.recv_spec("h3m-recv", &out, "10"), tmp.path());
    let extra = ["--stdin", "--path", "live/feed.bin", "--fec", "15"].map(String::from).to_vec();
    let spec = ssm.send_spec("50M", extra);
    let mut tx = Proc::spawn("h3m-send", spec.side.ns, &send_bin(), &sender_args(&spec), tmp.path(), Stdio::piped());
    let mut stdin = tx.child().stdin.take().expect("stdin");
    let mut fed = Vec::new();
    for _ in 0..48 {
        let chunk = rng.bytes(64 << 10);
        stdin.write_all(&chunk).expect("feed h3m-send");
        fed.extend_from_slice(&chunk);
        std::thread::sleep(Duration::from_millis(60));
    }
    drop(stdin);
    let sent = tx.wait(Duration::from_secs(30));
    assert_eq!(sent.code, Some(0), "h3m-send --stdin failed: {}", show(&sent));
    let f = rx.wait(Duration::from_secs(30));
    let expected = BTreeMap::from([("live/feed.bin".to_owned(), (fed.len() as u64, sha256_hex(&fed)))]);
    let r = assert_all_intact(&f, &expected, &out);
    assert!(r.count("fec_recovered") > 0, "nothing rebuilt: {}", show(&f));
    eprintln!("{TEST}: intact; {}", f.stderr.lines().last().unwrap_or_default());
}

// ---------------------------------------------------------------------------
// 10. Unicast repair (issue 10, item 3): the sender's origin, the receivers'
//     --repair, under random loss
// ---------------------------------------------------------------------------

/// A certificate and key for the repair origin, and the certificate's SHA-256
/// in hex (what `--repair-pin` takes).
fn repair_identity(dir: &Path) -> (String, String, String) {
    let made = rcgen::generate_simple_self_signed(vec![VethLink::A_V4.to_string()]).expect("certificate");
    let (cert, key) = (dir.join("origin.pem"), dir.join("origin.key"));
    fs::write(&cert, made.cert.pem()).expect("write certificate");
    fs::write(&key, made.signing_key.serialize_pem()).expect("write key");
    let pin = hex::encode(ring::digest::digest(&ring::digest::SHA256, made.cert.der()).as_ref());
    (cert.to_string_lossy().into_owned(), key.to_string_lossy().into_owned(), pin)
}

/// The bytes (IP packets) the loss rule of [`fec_loss_ruleset`] dropped
/// (its rule must end in `counter`).
fn dropped_bytes(ns: &NetNs) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name(), "nft", "list", "table", "inet", "h3mfecloss"])
        .output()
        .expect("nft list");
    let text = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "bytes").expect("a counter in the loss rule");
    words[at + 1].parse().expect("byte count")
}

/// The sender with a repair origin at `A_V4:origin_port`, in the background
/// until its session has been sent (`sent ...` on stdout); it then serves
/// until [`stop_origin`].
fn start_repair_sender(
    ssm: &LossySsm,
    logs: &Path,
    rate: &str,
    mut extra: Vec<String>,
    origin_port: u16,
    (cert, key): (&str, &str),
) -> Proc {
    let (cert, key) = (cert.to_owned(), key.to_owned());
    extra.extend([
        "--repair-listen".into(),
        format!("{}:{origin_port}", VethLink::A_V4),
        "--repair-cert".into(),
        cert,
        "--repair-key".into(),
        key,
        "--repair-linger".into(),
        "120".into(),
    ]);
    let spec = ssm.send_spec(rate, extra);
    let p = Proc::spawn("h3m-send", spec.side.ns, &send_bin(), &sender_args(&spec), logs, Stdio::null());
    let deadline = Instant::now() + Duration::from_secs(120);
    while !p.logs().0.contains("sent ") {
        assert!(Instant::now() < deadline, "the sender did not finish its session: {:?}", p.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    p
}

/// Stops the lingering origin (SIGTERM) and returns the bytes it served.
fn stop_origin(sender: Proc) -> (u64, u64, Finished) {
    let status = Command::new("kill").args(["-TERM", &sender.pid().to_string()]).status().expect("kill");
    assert!(status.success());
    // (The timeout counts from the sender's start.)
    let f = sender.wait(Duration::from_secs(300));
    assert_eq!(f.code, Some(0), "h3m-send: {}", show(&f));
    let line = f.stdout.lines().find(|l| l.starts_with("repair origin: ")).expect("the origin's counters");
    let words: Vec<&str> = line.split_whitespace().collect();
    let requests = words[2].parse().expect("requests");
    let at = words.iter().position(|w| *w == "bytes,").expect("bytes");
    (requests, words[at - 1].parse().expect("resource bytes served"), f)
}

/// The paths of `out`'s files that are not byte-identical to the truth
/// (nothing wrong may ever be written).
fn wrong_files(out: &Path, expected: &BTreeMap<String, (u64, String)>) -> Vec<String> {
    tree_digests(out).into_iter().filter(|(name, d)| expected.get(name) != Some(d)).map(|(n, _)| n).collect()
}

/// What the repair tests share: a source-specific session across a veth
/// whose far side drops 5% of the session's datagrams (counted), the payload
/// and its digests, and the origin's certificate.
struct RepairLab {
    tmp: tempfile::TempDir,
    src: std::path::PathBuf,
    expected: BTreeMap<String, (u64, String)>,
    ssm: LossySsm,
    cert: String,
    key: String,
    pin: String,
}

impl RepairLab {
    fn new(payload: fn(&Path, &mut Rng) -> std::path::PathBuf) -> RepairLab {
        let tmp = logs_dir();
        let src = payload(tmp.path(), &mut Rng(random_u64()));
        let expected = tree_digests(&src);
        let ssm = LossySsm::new("numgen random mod 100 < 5 counter", false);
        let (cert, key, pin) = repair_identity(tmp.path());
        RepairLab { tmp, src, expected, ssm, cert, key, pin }
    }

    fn out(&self, name: &str) -> std::path::PathBuf {
        self.tmp.path().join(name)
    }

    /// A receiver `name` writing into `out`, trusting the origin by its pin.
    fn receiver(&self, name: &str, out: &Path, extra: &[&str]) -> Proc {
        let mut args = vec!["--repair-pin", &self.pin];
        args.extend_from_slice(extra);
        start_receiver_with(&self.ssm.recv_spec(name, out, "10"), self.tmp.path(), &args)
    }

    /// The sender of the payload with its origin (see [`start_repair_sender`]).
    fn sender(&self, rate: &str, extra: &[&str]) -> Proc {
        let mut args = vec![self.src.to_string_lossy().into_owned()];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        start_repair_sender(&self.ssm, self.tmp.path(), rate, args, random_port(), (&self.cert, &self.key))
    }
}

#[test]
fn repair_alone_recovers_5_percent_loss_and_an_origin_down_loses_nothing_else() {
    let test = "repair_alone_recovers_5_percent_loss_and_an_origin_down_loses_nothing_else";
    if skip_unless_root(test) || skip_without_tools(test, true) {
        return;
    }
    let _serial = serial_and_built();
    let lab = RepairLab::new(fec_payload);
    let (ssm, expected) = (&lab.ssm, &lab.expected);
    let (out, out_down, out_none) = (lab.out("out"), lab.out("out-down"), lab.out("out-none"));
    let rx = lab.receiver("h3m-recv", &out, &["--repair", "auto", "--repair-jitter", "0.5"]);
    // The origin down: nothing listens on port 1.
    let down = format!("https://{}:1", VethLink::A_V4);
    let rx_down =
        lab.receiver("h3m-recv-origin-down", &out_down, &["--repair", &down, "--repair-jitter", "0", "--json"]);
    let rx_none = start_receiver(&ssm.recv_spec("h3m-recv-no-repair", &out_none, "10"), lab.tmp.path());
    let sender = lab.sender("50M", &[]);
    let f = rx.wait(Duration::from_secs(90));
    let f_down = rx_down.wait(Duration::from_secs(90));
    let f_none = rx_none.wait(Duration::from_secs(90));
    let dropped = dropped_bytes(&ssm.link.b);
    let (requests, served, sent) = stop_origin(sender);
    // With repair: everything, byte for byte; some of it repaired.
    let rep = Report::parse(&f);
    assert_eq!(&tree_digests(&out), expected, "{}", show(&f));
    assert_eq!(f.code, Some(0), "{}", show(&f));
    assert!(rep.count("repaired") > 0 && rep.count("repaired_bytes") > 0, "nothing repaired: {}", show(&f));
    assert!(f.stdout.lines().filter(|l| l.contains("  repair:")).count() as u64 == rep.count("repaired"));
    // Exactly the missing ranges: the origin served what the receiver wrote
    // from it (each range once), within 1.2x of what the loss took.
    assert_eq!(served, rep.count("repaired_bytes"), "origin {served} vs receiver {}", rep.count("repaired_bytes"));
    assert!(served as f64 <= 1.2 * dropped as f64, "served {served} bytes for {dropped} dropped");
    // The origin down: what multicast brought is written, the rest reported
    // incomplete with its exact missing ranges; nothing wrong is written.
    assert_eq!(f_down.code, Some(1), "{}", show(&f_down));
    assert_eq!(wrong_files(&out_down, expected), Vec::<String>::new());
    let records: Vec<serde_json::Value> = f_down
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["event"] == "resource")
        .collect();
    let incomplete: Vec<&serde_json::Value> = records.iter().filter(|r| r["status"] == "incomplete").collect();
    // Those the repair would have completed say why it did not, with their
    // exact missing ranges (pushes whose headers never came have no digest
    // to verify a repair by: reported as they were).
    let unrepaired: Vec<&&serde_json::Value> =
        incomplete.iter().filter(|r| r["reason"].as_str().unwrap_or_default().starts_with("repair failed: ")).collect();
    assert!(!unrepaired.is_empty(), "the loss left nothing to repair? {}", show(&f_down));
    for r in &unrepaired {
        assert!(r["missing_ranges"].as_u64().unwrap_or(0) > 0 || r["missing_from"].is_u64(), "{r}");
    }
    for r in &incomplete {
        let name = r["path"].as_str().unwrap_or_default().trim_start_matches('/').to_owned();
        assert!(!out_down.join(&name).exists(), "{name} written incomplete");
    }
    // Without repair, the same loss loses files (so the test can fail).
    assert_ne!(f_none.code, Some(0), "no loss? {}", show(&f_none));
    eprintln!(
        "{test}: {} files intact; {} requests, {served} bytes served for {dropped} bytes dropped ({:.2}x)\n  {}\n  origin down: {} incomplete\n  sender: {}",
        expected.len(),
        requests,
        served as f64 / dropped as f64,
        f.stderr.lines().last().unwrap_or_default(),
        unrepaired.len(),
        sent.stdout.trim().replace('\n', "; ")
    );
}

/// 40 files of 2–20 KiB and one of 1 MiB.
fn repair_payload(tmp: &Path, rng: &mut Rng) -> std::path::PathBuf {
    let src = tmp.join("src");
    write_file(&src, "one.bin", &rng.bytes(1 << 20));
    for i in 0..40 {
        let len = rng.range(2_000, 20_000) as usize;
        write_file(&src, &format!("small/f{i:02}.bin"), &rng.bytes(len));
    }
    src
}

#[test]
fn repair_refuses_an_origin_that_serves_tampered_bytes() {
    let test = "repair_refuses_an_origin_that_serves_tampered_bytes";
    if skip_unless_root(test) || skip_without_tools(test, true) {
        return;
    }
    let _serial = serial_and_built();
    let lab = RepairLab::new(repair_payload);
    let (src, expected) = (&lab.src, &lab.expected);
    let out = lab.out("out");
    // The repair waits out the linger, by when the files are tampered with.
    let rx = lab.receiver("h3m-recv", &out, &["--repair", "auto", "--repair-jitter", "0", "--linger", "4", "--json"]);
    let sender = lab.sender("20M", &[]);
    // Every byte flipped, the length and modification time kept: the origin
    // cannot tell, and serves the wrong bytes.
    for name in expected.keys() {
        let path = src.join(name);
        let modified = fs::metadata(&path).unwrap().modified().unwrap();
        let flipped: Vec<u8> = fs::read(&path).unwrap().iter().map(|b| !b).collect();
        fs::write(&path, flipped).unwrap();
        fs::File::options().write(true).open(&path).unwrap().set_modified(modified).unwrap();
    }
    let f = rx.wait(Duration::from_secs(90));
    let (_, served, _) = stop_origin(sender);
    assert_eq!(f.code, Some(1), "{}", show(&f));
    assert_eq!(wrong_files(&out, expected), Vec::<String>::new(), "tampered bytes written: {}", show(&f));
    let events: Vec<serde_json::Value> = f.stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let mismatches: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["event"] == "error" && e["kind"] == "digest_mismatch").collect();
    let refused: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| {
            e["event"] == "resource"
                && e["status"] == "incomplete"
                && e["reason"].as_str().unwrap_or("").starts_with("digest mismatch")
        })
        .collect();
    assert!(served > 0 && !mismatches.is_empty(), "nothing was repaired: {}", show(&f));
    assert_eq!(mismatches.len(), refused.len(), "{}", show(&f));
    for r in &refused {
        let name = r["path"].as_str().unwrap_or_default().trim_start_matches('/').to_owned();
        assert!(!out.join(&name).exists(), "{name} written");
    }
    eprintln!(
        "{test}: {} of {} files refused after a tampered repair ({served} bytes served), the rest written intact",
        refused.len(),
        expected.len()
    );
}

#[test]
fn twenty_receivers_repair_at_once_from_one_origin() {
    let test = "twenty_receivers_repair_at_once_from_one_origin";
    if skip_unless_root(test) || skip_without_tools(test, true) {
        return;
    }
    let _serial = serial_and_built();
    let lab = RepairLab::new(repair_payload);
    let (ssm, expected) = (&lab.ssm, &lab.expected);
    let outs: Vec<std::path::PathBuf> = (0..20).map(|i| lab.out(&format!("out{i:02}"))).collect();
    let receivers: Vec<Proc> = (0..20)
        .map(|i| lab.receiver(&format!("h3m-recv-{i:02}"), &outs[i], &["--repair", "auto", "--repair-jitter", "2"]))
        .collect();
    let sender = lab.sender("20M", &[]);
    let finished: Vec<Finished> = receivers.into_iter().map(|r| r.wait(Duration::from_secs(120))).collect();
    // One drop rule for the namespace: every receiver lost the same datagrams.
    let dropped = dropped_bytes(&ssm.link.b);
    let (requests, served, sent) = stop_origin(sender);
    let datagrams = sent_datagrams(&sent.stdout);
    let (mut repaired, mut lost) = (0, 0);
    for (i, f) in finished.iter().enumerate() {
        assert_eq!(f.code, Some(0), "receiver {i}: {}", show(f));
        assert_eq!(&tree_digests(&outs[i]), expected, "receiver {i}: {}", show(f));
        let rep = Report::parse(f);
        repaired += rep.count("repaired_bytes");
        // Each receiver lost what the rule dropped and what its socket
        // dropped (20 receivers on 2 cores): the datagrams it never got, at
        // most 1200 bytes each. (Counted from the sender's total, not from
        // the gaps between packet numbers seen: those miss what was lost
        // before the first and after the last, and a lost end of the
        // session's last file is repaired too.)
        lost += datagrams.saturating_sub(rep.count("packets")) * 1200;
    }
    // The origin sent each receiver what it lacked, nothing more.
    assert_eq!(served, repaired, "{}", sent.stdout);
    assert!(served as f64 <= 1.2 * lost as f64, "served {served} for {lost} lost");
    eprintln!(
        "{test}: 20 receivers intact; origin: {requests} requests, {served} bytes for {lost} bytes lost \
         ({:.2}x; the rule dropped 20 x {dropped})\n  {}",
        served as f64 / lost as f64,
        sent.stdout.lines().last().unwrap_or_default()
    );
}

#[test]
fn fec_too_weak_for_the_loss_and_repair_together_deliver_everything() {
    let test = "fec_too_weak_for_the_loss_and_repair_together_deliver_everything";
    if skip_unless_root(test) || skip_without_tools(test, true) {
        return;
    }
    let _serial = serial_and_built();
    let lab = RepairLab::new(fec_payload);
    let expected = &lab.expected;
    let out = lab.out("out");
    let rx = lab.receiver("h3m-recv", &out, &["--repair", "auto", "--repair-jitter", "0"]);
    let sender = lab.sender("50M", &["--fec", "5"]);
    let f = rx.wait(Duration::from_secs(90));
    let (_, served, _) = stop_origin(sender);
    let rep = Report::parse(&f);
    assert_eq!(&tree_digests(&out), expected, "{}", show(&f));
    assert_eq!(f.code, Some(0), "{}", show(&f));
    // FEC rebuilt most of what was lost, the repair fetched the rest.
    assert!(rep.count("fec_recovered") > 0, "{}", show(&f));
    assert_eq!(served, rep.count("repaired_bytes"));
    eprintln!(
        "{test}: {} files intact; FEC rebuilt {} datagrams, {} blocks beyond it; repair fetched {served} bytes",
        expected.len(),
        rep.count("fec_recovered"),
        rep.count("fec_blocks_unrecovered")
    );
}

// ---------------------------------------------------------------------------
// 11. AMBI (issue 11): in-band signed manifests, the receiver's gate, an
//     injector racing the real datagrams with forged ones
// ---------------------------------------------------------------------------

/// The test keys (interop/vectors/keys).
fn test_key(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/vectors/keys").join(name).to_string_lossy().into_owned()
}

/// Forged datagrams of session `sid`: the same push streams and offsets as
/// the real session of `expected` (its files in the sender's order), other
/// bytes; length-prefixed records in a file for the injector.
fn forged_datagrams(sid: &str, expected: &BTreeMap<String, (u64, String)>, path: &Path, rng: &mut Rng) {
    use h3m_proto::encoder::{EncoderConfig, SessionEncoder};
    use h3m_proto::qpack::HeaderField;
    let mut enc = SessionEncoder::new(EncoderConfig::new(h3m_proto::SessionId::from_hex(sid).expect("hex")));
    let mut out = Vec::new();
    for (name, (len, _)) in expected {
        let req = [HeaderField::new(":path", format!("/{name}"))];
        let resp = [HeaderField::new(":status", "200")];
        enc.push(&req, &resp, &rng.bytes(*len as usize), &mut out).expect("encode");
    }
    let mut file = Vec::new();
    for d in &out {
        file.extend_from_slice(&(d.len() as u32).to_be_bytes());
        file.extend_from_slice(d);
    }
    fs::write(path, file).expect("write forged datagrams");
}

/// Sends the records of `path` to `group:port` from `source` in `ns`, over
/// and over, at about `rate` datagrams/s, until killed (TTL 1).
fn start_injector(ns: &NetNs, group: &str, port: u16, source: &str, path: &Path, rate: u32, logs: &Path) -> Proc {
    let script = format!(
        "import socket,struct,time\n\
         data=open({path:?},'rb').read(); recs=[]; i=0\n\
         while i<len(data):\n    n=struct.unpack('>I',data[i:i+4])[0]; recs.append(data[i+4:i+4+n]); i+=4+n\n\
         s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(({source:?},0))\n\
         s.setsockopt(socket.IPPROTO_IP,socket.IP_MULTICAST_IF,socket.inet_aton({source:?}))\n\
         s.setsockopt(socket.IPPROTO_IP,socket.IP_MULTICAST_TTL,1)\n\
         t=time.time(); k=0\n\
         while True:\n    for r in recs:\n        s.sendto(r,({group:?},{port}))\n        k+=1\n        \
         if k%100==0:\n            d=t+k/{rate}-time.time()\n            if d>0: time.sleep(d)\n",
        path = path.to_string_lossy()
    );
    Proc::spawn("injector", Some(ns), Path::new("python3"), &["-c", &script], logs, Stdio::null())
}

/// Like [`start_injector`], but the forgeries take the live session's
/// packet numbers: it first listens to the group (in the sender's namespace)
/// for one of the session's datagrams, then gives its records the packet
/// numbers that follow that one's (4 bytes after the first byte and the
/// `sid_len`-byte session ID), so they race the real datagrams still to
/// come.
fn start_copying_injector(
    spec: (&NetNs, &str, u16, &str),
    sid_len: usize,
    path: &Path,
    rate: u32,
    logs: &Path,
) -> Proc {
    let (ns, group, port, source) = spec;
    let at = 1 + sid_len;
    let script = format!(
        "import socket,struct,time\n\
         data=open({path:?},'rb').read(); recs=[]; i=0\n\
         while i<len(data):\n    n=struct.unpack('>I',data[i:i+4])[0]; recs.append(bytearray(data[i+4:i+4+n])); i+=4+n\n\
         r=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); r.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         r.bind(({group:?},{port}))\n\
         r.setsockopt(socket.IPPROTO_IP,socket.IP_ADD_MEMBERSHIP,socket.inet_aton({group:?})+socket.inet_aton({source:?}))\n\
         d=r.recv(2048); base=struct.unpack('>I',d[{at}:{at}+4])[0]+1; r.close()\n\
         print('base',base,flush=True)\n\
         for k,rec in enumerate(recs): rec[{at}:{at}+4]=struct.pack('>I',(base+k)&0xffffffff)\n\
         s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(({source:?},0))\n\
         s.setsockopt(socket.IPPROTO_IP,socket.IP_MULTICAST_IF,socket.inet_aton({source:?}))\n\
         s.setsockopt(socket.IPPROTO_IP,socket.IP_MULTICAST_TTL,1)\n\
         t=time.time(); k=0\n\
         while True:\n    for rec in recs:\n        s.sendto(rec,({group:?},{port}))\n        k+=1\n        \
         if k%100==0:\n            d=t+k/{rate}-time.time()\n            if d>0: time.sleep(d)\n",
        path = path.to_string_lossy()
    );
    Proc::spawn("copying-injector", Some(ns), Path::new("python3"), &["-c", &script], logs, Stdio::null())
}

/// `h3m-send` arguments: `src`, signed with the Ed25519 test key, AMBI in-band.
fn ambi_sender_args(src: &Path) -> Vec<String> {
    let key = test_key("ed25519.key.pem");
    vec![src.to_string_lossy().into_owned(), "--sign".into(), key, "--ambi".into(), "inband".into()]
}

#[test]
fn ambi_lets_no_forged_datagram_through_and_a_wrong_key_writes_nothing() {
    let test = "ambi_lets_no_forged_datagram_through_and_a_wrong_key_writes_nothing";
    if skip_unless_root(test) || skip_without_tools(test, false) {
        return;
    }
    let _serial = serial_and_built();
    let tmp = logs_dir();
    let src = repair_payload(tmp.path(), &mut Rng(random_u64()));
    let expected = tree_digests(&src);
    let ssm = LossySsm::without_loss(false);
    let forged = tmp.path().join("forged.bin");
    forged_datagrams(&ssm.sid, &expected, &forged, &mut Rng(random_u64()));
    let (trust, other) = (test_key("ed25519.pub.pem"), test_key("other-ed25519.pub.pem"));
    let (out, out_plain, out_wrong) =
        (tmp.path().join("out"), tmp.path().join("out-plain"), tmp.path().join("out-wrong"));
    let rx = start_receiver_with(
        &ssm.recv_spec("h3m-recv", &out, "5"),
        tmp.path(),
        &["--ambi", "inband", "--trust", &trust],
    );
    let rx_plain =
        start_receiver_with(&ssm.recv_spec("h3m-recv-no-ambi", &out_plain, "5"), tmp.path(), &["--trust", &trust]);
    let rx_wrong = start_receiver_with(
        &ssm.recv_spec("h3m-recv-wrong-key", &out_wrong, "5"),
        tmp.path(),
        &["--ambi", "inband", "--trust", &other],
    );
    // The injector races the sender at about 10x its datagram rate (20
    // Mbit/s is about 2 000 datagrams/s).
    let injector = start_injector(&ssm.link.a, &ssm.group, ssm.port, &ssm.source, &forged, 20_000, tmp.path());
    std::thread::sleep(Duration::from_millis(300));
    let extra = ambi_sender_args(&src);
    let sent = run_sender(&ssm.send_spec("20M", extra), tmp.path(), Duration::from_secs(120));
    // (Killed: a receiver without AMBI would take its traffic for the session's.)
    drop(injector);
    let f = rx.wait(Duration::from_secs(60));
    let f_plain = rx_plain.wait(Duration::from_secs(60));
    let f_wrong = rx_wrong.wait(Duration::from_secs(60));
    let rep = Report::parse(&f);
    // With AMBI: every file intact, every forged datagram dropped at the gate.
    assert_eq!(tree_digests(&out), expected, "{}", show(&f));
    assert_eq!(f.code, Some(0), "{}", show(&f));
    let dropped = rep.count("ambi_mismatched") + rep.count("ambi_expired") + rep.count("ambi_over_budget");
    assert!(rep.count("ambi_authenticated") > 0 && dropped > 1000, "{}", show(&f));
    assert_eq!(rep.count("ambi_manifests_bad_signature"), 0);
    // Manifests travel ahead: the gate adds (nearly) no delay.
    assert!(rep.count("ambi_release_delay_p99_us") <= 32_768, "{}", show(&f));
    // Without it, the forgeries reach the receiver and files fail.
    assert_ne!(f_plain.code, Some(0), "the forgeries did no harm? {}", show(&f_plain));
    assert_eq!(wrong_files(&out_plain, &expected), Vec::<String>::new(), "wrong bytes written: {}", show(&f_plain));
    // With a key that did not sign the manifests: nothing gets through.
    let rep_wrong = Report::parse(&f_wrong);
    assert_eq!(f_wrong.code, Some(1), "{}", show(&f_wrong));
    assert!(tree_digests(&out_wrong).is_empty(), "{}", show(&f_wrong));
    assert_eq!(rep_wrong.count("ambi_authenticated"), 0);
    assert!(rep_wrong.count("ambi_manifests_bad_signature") > 0, "{}", show(&f_wrong));
    eprintln!(
        "{test}: {} files intact; {} datagrams authenticated ({} on arrival, release delay p50/p99 {}/{} µs), \
         {dropped} forged dropped; without AMBI: {}; wrong key: {} manifests refused\n  sender: {}",
        expected.len(),
        rep.count("ambi_authenticated"),
        rep.count("ambi_on_arrival"),
        rep.count("ambi_release_delay_p50_us"),
        rep.count("ambi_release_delay_p99_us"),
        f_plain.stderr.lines().last().unwrap_or_default(),
        rep_wrong.count("ambi_manifests_bad_signature"),
        sent.stdout.trim().replace('\n', "; ")
    );
}

/// AMBI over HTTPS, a session shorter than the receiver's connection to the
/// origin (one 10 KiB file: its 9 datagrams leave before the origin, which
/// starts with the sender, has answered): the receiver connects after the
/// session's end and still gets its manifests (the feed's backlog). Before,
/// the closed feed answered 410 and the file was never written (exit 1).
#[test]
fn ambi_over_https_authenticates_a_session_shorter_than_the_receiver_s_connection() {
    let test = "ambi_over_https_authenticates_a_session_shorter_than_the_receiver_s_connection";
    if skip_unless_root(test) || skip_without_tools(test, false) {
        return;
    }
    let _serial = serial_and_built();
    let tmp = logs_dir();
    let src = tmp.path().join("src");
    write_file(&src, "only.bin", &Rng(random_u64()).bytes(10_240));
    let expected = tree_digests(&src);
    let ssm = LossySsm::without_loss(false);
    let (cert, key, pin) = repair_identity(tmp.path());
    let origin = format!("{}:{}", VethLink::A_V4, random_port());
    let out = tmp.path().join("out");
    let url = format!("https://{origin}");
    let rx =
        start_receiver_with(&ssm.recv_spec("h3m-recv", &out, "5"), tmp.path(), &["--ambi", &url, "--ambi-pin", &pin]);
    std::thread::sleep(Duration::from_millis(300));
    let args: Vec<String> = [
        src.to_str().expect("utf-8"),
        "--ambi",
        "https",
        "--repair-listen",
        &origin,
        "--repair-cert",
        &cert,
        "--repair-key",
        &key,
        "--repair-linger",
        "0",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    run_sender(&ssm.send_spec("20M", args), tmp.path(), Duration::from_secs(60));
    let f = rx.wait(Duration::from_secs(30));
    let rep = Report::parse(&f);
    assert_eq!(f.code, Some(0), "{}", show(&f));
    assert_eq!(tree_digests(&out), expected, "{}", show(&f));
    assert_eq!(rep.count("ambi_authenticated"), rep.count("packets"), "{}", show(&f));
    assert_eq!(rep.count("ambi_expired"), 0, "{}", show(&f));
    eprintln!(
        "{test}: 1 file intact, {} datagrams authenticated (release delay p99 {} µs)",
        rep.count("ambi_authenticated"),
        rep.count("ambi_release_delay_p99_us")
    );
}

#[test]
fn ambi_survives_5_percent_of_manifests_lost_and_withheld_manifests_let_nothing_through() {
    let test = "ambi_survives_5_percent_of_manifests_lost_and_withheld_manifests_let_nothing_through";
    if skip_unless_root(test) || skip_without_tools(test, false) {
        return;
    }
    let _serial = serial_and_built();
    let tmp = logs_dir();
    let src = repair_payload(tmp.path(), &mut Rng(random_u64()));
    let expected = tree_digests(&src);
    let ssm = LossySsm::without_loss(false);
    // 5% of the side port's datagrams (the manifests) dropped, none of the data.
    let ruleset = format!(
        "table inet h3mambiloss {{\n  chain in {{\n    type filter hook input priority 0;\n    \
         udp dport {} numgen random mod 100 < 5 counter drop\n  }}\n}}\n",
        ssm.port + 1
    );
    nft_in(&ssm.link.b, &ruleset);
    let trust = test_key("ed25519.pub.pem");
    let out = tmp.path().join("out");
    let rx = start_receiver_with(
        &ssm.recv_spec("h3m-recv", &out, "5"),
        tmp.path(),
        &["--ambi", "inband", "--trust", &trust],
    );
    // A receiver told of another side port never sees a manifest: it must
    // write nothing, with every datagram held and then expired.
    let out_none = tmp.path().join("out-none");
    let rx_none = start_receiver_with(
        &ssm.recv_spec("h3m-recv-no-manifests", &out_none, "5"),
        tmp.path(),
        &["--ambi", "inband", "--trust", &trust, "--fec-port", &(ssm.port + 7).to_string()],
    );
    let extra = ambi_sender_args(&src);
    run_sender(&ssm.send_spec("20M", extra), tmp.path(), Duration::from_secs(120));
    let f = rx.wait(Duration::from_secs(60));
    let f_none = rx_none.wait(Duration::from_secs(60));
    let rep = Report::parse(&f);
    assert_eq!(tree_digests(&out), expected, "{}", show(&f));
    assert_eq!(f.code, Some(0), "{}", show(&f));
    assert_eq!(rep.count("ambi_expired") + rep.count("ambi_over_budget"), 0, "{}", show(&f));
    let rep_none = Report::parse(&f_none);
    assert!(tree_digests(&out_none).is_empty(), "{}", show(&f_none));
    assert_eq!((rep_none.count("ambi_authenticated"), rep_none.count("ambi_manifests")), (0, 0));
    assert!(rep_none.count("ambi_expired") > 1000, "{}", show(&f_none));
    // Its end signal expired too: the run says datagrams were dropped unauthenticated and fails.
    assert_eq!(f_none.code, Some(1), "{}", show(&f_none));
    assert!(f_none.stderr.contains("dropped unauthenticated"), "{}", show(&f_none));
    assert!(!f.stderr.contains("dropped unauthenticated"), "{}", show(&f));
    eprintln!(
        "{test}: {} files intact with 5% of manifests dropped ({} manifests got through); without manifests: {} datagrams expired, nothing written",
        expected.len(),
        rep.count("ambi_manifests"),
        rep_none.count("ambi_expired")
    );
}

/// Waits until `p`'s stderr holds `needle`.
fn wait_stderr(p: &Proc, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !p.logs().1.contains(needle) {
        assert!(Instant::now() < deadline, "no {needle:?} within {timeout:?}: {:?}", p.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// AMBI over HTTPS: the sender's origin streams the manifests
/// (`h3m-send --ambi https`), TLS authenticates them. Files appear in a
/// watched directory while an injector races the real datagrams at 10x with
/// forged ones that take the session's next packet numbers. With AMBI every
/// file is intact; without it the forgeries break the files. (The channel
/// failing, backing off and coming back is the receiver's unit test
/// `the_channel_reconnects_after_a_loss_and_refuses_another_stream`.)
#[test]
fn ambi_over_https_lets_no_forged_datagram_through() {
    let test = "ambi_over_https_lets_no_forged_datagram_through";
    if skip_unless_root(test) || skip_without_tools(test, false) {
        return;
    }
    let _serial = serial_and_built();
    let tmp = logs_dir();
    let src = repair_payload(tmp.path(), &mut Rng(random_u64()));
    let expected = tree_digests(&src);
    let ssm = LossySsm::without_loss(false);
    let forged = tmp.path().join("forged.bin");
    forged_datagrams(&ssm.sid, &expected, &forged, &mut Rng(random_u64()));
    let (cert, key, pin) = repair_identity(tmp.path());
    let origin = format!("{}:{}", VethLink::A_V4, random_port());
    // The sender watches an empty directory (silent until a file comes);
    // its origin serves the manifest stream.
    let live = tmp.path().join("live");
    fs::create_dir_all(&live).expect("live dir");
    let args: Vec<String> = [
        live.to_str().expect("utf-8"),
        "--watch",
        "--watch-interval",
        "0.2",
        "--duration",
        "15",
        "--keepalive",
        "0.2",
        "--ambi",
        "https",
        "--repair-listen",
        &origin,
        "--repair-cert",
        &cert,
        "--repair-key",
        &key,
        "--repair-linger",
        "0",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let spec = ssm.send_spec("20M", args);
    let sender = Proc::spawn("h3m-send", spec.side.ns, &send_bin(), &sender_args(&spec), tmp.path(), Stdio::null());
    wait_stderr(&sender, "repair origin", Duration::from_secs(15));
    let (out, out_plain) = (tmp.path().join("out"), tmp.path().join("out-plain"));
    let url = format!("https://{origin}");
    let rx =
        start_receiver_with(&ssm.recv_spec("h3m-recv", &out, "30"), tmp.path(), &["--ambi", &url, "--ambi-pin", &pin]);
    let rx_plain = start_receiver(&ssm.recv_spec("h3m-recv-no-ambi", &out_plain, "30"), tmp.path());
    wait_stderr(&rx, "AMBI manifests from", Duration::from_secs(15));
    let staging = tmp.path().join("staging");
    let publish = |name: &str| {
        let (from, to, stage) = (src.join(name), live.join(name), staging.join(name));
        fs::create_dir_all(stage.parent().expect("parent")).expect("staging dir");
        fs::create_dir_all(to.parent().expect("parent")).expect("live dir");
        fs::copy(&from, &stage).expect("copy");
        fs::rename(&stage, &to).expect("rename into the watched tree");
    };
    // The first file starts the session; the injector hears it and races
    // the rest at about 10x the sender's datagram rate, with the packet
    // numbers the session is about to use.
    let mut names = expected.keys();
    publish(names.next().expect("a file"));
    let link = (&ssm.link.a, ssm.group.as_str(), ssm.port, ssm.source.as_str());
    let injector = start_copying_injector(link, ssm.sid.len() / 2, &forged, 20_000, tmp.path());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !injector.logs().0.contains("base") {
        assert!(Instant::now() < deadline, "the injector heard no datagram: {:?}", injector.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    for name in names {
        publish(name);
    }
    let sent = sender.wait(Duration::from_secs(60));
    drop(injector);
    let f = rx.wait(Duration::from_secs(60));
    let f_plain = rx_plain.wait(Duration::from_secs(60));
    assert_eq!(sent.code, Some(0), "h3m-send: {}", show(&sent));
    let rep = Report::parse(&f);
    assert_eq!(tree_digests(&out), expected, "{}", show(&f));
    assert_eq!(f.code, Some(0), "{}", show(&f));
    let dropped = rep.count("ambi_mismatched") + rep.count("ambi_expired") + rep.count("ambi_over_budget");
    assert!(rep.count("ambi_authenticated") > 0 && dropped > 1000, "{}", show(&f));
    assert!(rep.count("ambi_channel_connects") >= 1, "{}", show(&f));
    // No signature involved: the manifests came over TLS.
    assert_eq!(rep.count("ambi_manifests_bad_signature"), 0);
    assert!(rep.count("ambi_manifests") > 0);
    // Without it the forgeries do harm: files fail, or (forged pushes
    // carry no digest) forged bytes are written under the real names.
    let forged_written = wrong_files(&out_plain, &expected);
    assert!(f_plain.code != Some(0) || !forged_written.is_empty(), "the forgeries did no harm? {}", show(&f_plain));
    eprintln!(
        "{test}: {} files intact; {} datagrams authenticated ({} on arrival, release delay p50/p99 {}/{} µs) by {} \
         manifests over HTTPS ({} connections); {dropped} forged dropped; without AMBI: {} forged files written, {}",
        expected.len(),
        rep.count("ambi_authenticated"),
        rep.count("ambi_on_arrival"),
        rep.count("ambi_release_delay_p50_us"),
        rep.count("ambi_release_delay_p99_us"),
        rep.count("ambi_manifests"),
        rep.count("ambi_channel_connects"),
        forged_written.len(),
        f_plain.stderr.lines().last().unwrap_or_default(),
    );
}
