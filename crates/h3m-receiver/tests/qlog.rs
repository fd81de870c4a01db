//! `--qlog`: a session sent in-process and received through the embeddable
//! receiver with a qlog trace; the file is checked against the qlog schema's
//! required fields and against what was sent.

use std::time::{Instant, SystemTime};

use h3m_proto::SessionId;
use h3m_proto::encoder::EncoderConfig;
use h3m_proto::frame::{Frame, FrameReader};
use h3m_proto::packet::open_packet;
use h3m_proto::protection::NullProtection;
use h3m_proto::qlog::RECORD_SEPARATOR;
use h3m_proto::sender::{ResourceMeta, Sender, SenderConfig};
use h3m_receiver::qlog::QlogOptions;
use h3m_receiver::sink::MemorySink;
use h3m_receiver::{Session, SessionConfig};

#[path = "support/datagrams_file.rs"]
mod datagrams_file;

/// Checks JSON-SEQ framing and the qlog main schema's required fields; returns
/// the events.
fn validate(bytes: &[u8]) -> Vec<serde_json::Value> {
    assert_eq!(bytes.first(), Some(&RECORD_SEPARATOR));
    assert_eq!(bytes.last(), Some(&b'\n'));
    let mut events = Vec::new();
    for (i, record) in bytes[1..].split(|&b| b == RECORD_SEPARATOR).enumerate() {
        assert_eq!(record.last(), Some(&b'\n'), "record {i}");
        let v: serde_json::Value = serde_json::from_slice(record).expect("JSON record");
        if i == 0 {
            assert_eq!(v["qlog_version"], "0.3");
            assert_eq!(v["qlog_format"], "JSON-SEQ");
            assert_eq!(v["trace"]["vantage_point"]["type"], "client");
            assert!(v["trace"]["common_fields"]["reference_time"].as_u64().unwrap() > 1_600_000_000_000);
            assert_eq!(v["trace"]["common_fields"]["time_format"], "relative");
        } else {
            assert!(v["time"].as_f64().is_some_and(|t| t >= 0.0), "record {i}: time");
            let name = v["name"].as_str().expect("name");
            assert!(name.split_once(':').is_some_and(|(c, e)| !c.is_empty() && !e.is_empty()), "{name}");
            assert!(v["data"].is_object());
            events.push(v);
        }
    }
    events
}

#[test]
fn receiver_qlog_matches_what_was_sent() {
    let sid = SessionId::from_hex("2a").unwrap();
    let mut sender = Sender::new(SenderConfig::new(EncoderConfig::new(sid)), Box::new(NullProtection));
    let t0 = Instant::now();
    let mut sent = Vec::new();
    let sizes = [0usize, 1000, 70_000];
    for (r, &size) in sizes.iter().enumerate() {
        let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let mut meta = ResourceMeta::file(format!("f{r}.bin"), size as u64, SystemTime::now());
        meta.last = r == sizes.len() - 1;
        let id = sender.start(&meta).unwrap();
        sender.write(id, &body).unwrap();
        sender.finish(id, None).unwrap();
        sent.extend(std::iter::from_fn(|| sender.poll_transmit(t0)));
    }
    sender.close().unwrap();
    sent.extend(std::iter::from_fn(|| sender.poll_transmit(t0)));

    // The STREAM bytes the sender put on the wire, read without the qlog code.
    let mut stream_bytes = 0u64;
    for d in &sent {
        let mut copy = d.clone();
        let p = open_packet(&mut copy, &sid, None, &NullProtection).unwrap();
        for f in FrameReader::new(p.payload) {
            if let Frame::Stream { data, .. } = f.unwrap() {
                stream_bytes += data.len() as u64;
            }
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let mut config = SessionConfig::new(sid);
    config.qlog = Some(QlogOptions::new(dir.path().join("q")));
    let mut session = Session::new(config, MemorySink::new(1 << 20));
    for d in &sent {
        session.handle_datagram(Instant::now(), d);
    }
    session.handle_datagram(Instant::now(), b"not a packet");
    let datagrams = session.stats().packets;
    let (outcome, _sink, _events) = session.finish(Instant::now());
    assert_eq!(outcome.summary.unwrap().resources_complete, 3);

    let path = dir.path().join("q").join("2a-receiver.sqlog");
    let events = validate(&std::fs::read(&path).unwrap());
    let received: Vec<_> = events.iter().filter(|e| e["name"] == "transport:packet_received").collect();
    assert_eq!(received.len() as u64, datagrams);
    assert_eq!(datagrams, sent.len() as u64);
    let mut logged = 0u64;
    for (e, d) in received.iter().zip(&sent) {
        assert_eq!(e["data"]["header"]["packet_type"], "1RTT");
        assert!(e["data"]["header"]["packet_number"].is_u64());
        assert_eq!(e["data"]["raw"]["length"], d.len());
        for f in e["data"]["frames"].as_array().unwrap() {
            if f["frame_type"] == "stream" {
                assert!(f["stream_id"].is_u64() && f["offset"].is_u64() && f["fin"].is_boolean());
                logged += f["length"].as_u64().unwrap();
            }
        }
    }
    assert_eq!(logged, stream_bytes);
    let promised: Vec<_> = events
        .iter()
        .filter(|e| e["name"] == "http:frame_parsed" && e["data"]["frame"]["frame_type"] == "push_promise")
        .map(|e| e["data"]["frame"]["headers"][0]["value"].as_str().unwrap().to_owned())
        .collect();
    assert!(["/f0.bin", "/f1.bin", "/f2.bin"].iter().all(|p| promised.iter().any(|q| q.ends_with(p))), "{promised:?}");
    let claimed = events.iter().filter(|e| e["name"] == "http:push_resolved" && e["data"]["decision"] == "claimed");
    assert_eq!(claimed.count(), 3);
}

#[test]
fn unwritable_qlog_dir_leaves_reception_alone() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let sid = SessionId::from_hex("2a").unwrap();
    let mut config = SessionConfig::new(sid);
    config.qlog = Some(QlogOptions::new(file.join("sub")));
    let mut session = Session::new(config, MemorySink::new(1 << 20));
    for d in h3m_receiver::receiver::example_session(sid) {
        session.handle_datagram(Instant::now(), &d);
    }
    let (outcome, _, _) = session.finish(Instant::now());
    assert_eq!(outcome.summary.unwrap().resources_complete, 1);
}

/// `h3m-recv --input CAPTURE --qlog DIR`: the capture's datagrams, one event
/// each, in `DIR/<session-id>-receiver.sqlog`; `--qlog-max-mib 0` is a usage
/// error.
#[test]
fn h3m_recv_input_writes_the_qlog_file() {
    let dir = tempfile::tempdir().unwrap();
    let sid = SessionId::from_hex("2a").unwrap();
    let datagrams = h3m_receiver::receiver::example_session(sid);
    let capture = dir.path().join("c.datagrams");
    datagrams_file::write(&capture, &datagrams);
    let run = |qlog: &std::path::Path, max: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_h3m-recv"));
        cmd.arg("--input").arg(&capture).args(["--session-id", "2a", "--out"]).arg(dir.path().join("out"));
        cmd.arg("--qlog").arg(qlog);
        if let Some(m) = max {
            cmd.args(["--qlog-max-mib", m]);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let q = dir.path().join("q");
    run(&q, None);
    let events = validate(&std::fs::read(q.join("2a-receiver.sqlog")).unwrap());
    let received = events.iter().filter(|e| e["name"] == "transport:packet_received").count();
    assert_eq!(received, datagrams.len());
    assert!(events.iter().any(|e| e["name"] == "http:push_resolved" && e["data"]["decision"] == "claimed"));
    let usage = std::process::Command::new(env!("CARGO_BIN_EXE_h3m-recv"))
        .arg("--input")
        .arg(&capture)
        .args(["--qlog-max-mib", "0", "--qlog"])
        .arg(&q)
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
}
