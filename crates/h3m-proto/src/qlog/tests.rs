use super::*;
use crate::frame::{encode_padding, encode_ping, encode_stream};
use crate::protection::NullProtection;

/// Checks JSON-SEQ framing and the qlog schema's required fields; returns the
/// parsed events (header excluded).
fn validate(bytes: &[u8]) -> Vec<serde_json::Value> {
    assert_eq!(bytes.first(), Some(&RECORD_SEPARATOR), "starts with RS");
    assert_eq!(bytes.last(), Some(&b'\n'), "ends with a newline");
    let records: Vec<&[u8]> = bytes[1..].split(|&b| b == RECORD_SEPARATOR).collect();
    let mut events = Vec::new();
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record.last(), Some(&b'\n'), "record {i} ends with a newline");
        let v: serde_json::Value = serde_json::from_slice(record).expect("record is JSON");
        if i == 0 {
            assert_eq!(v["qlog_version"], "0.3");
            assert_eq!(v["qlog_format"], "JSON-SEQ");
            assert!(v["trace"]["vantage_point"]["type"].is_string());
            assert!(v["trace"]["common_fields"]["reference_time"].is_number());
            assert_eq!(v["trace"]["common_fields"]["time_format"], "relative");
        } else {
            assert!(v["time"].is_number(), "record {i}: numeric time");
            let name = v["name"].as_str().expect("string name");
            let (cat, ev) = name.split_once(':').expect("category:event");
            assert!(!cat.is_empty() && !ev.is_empty());
            assert!(v["data"].is_object(), "record {i}: object data");
            events.push(v);
        }
    }
    events
}

fn datagram(pn: u64, frames: &[u8]) -> Vec<u8> {
    let sid = SessionId::new(&[1, 2, 3, 4]).unwrap();
    let mut out = Vec::new();
    packet::write_packet(&mut out, &sid, pn, 2, frames, &NullProtection).unwrap();
    out
}

#[test]
fn records_are_json_seq_with_required_fields() {
    let sid = SessionId::new(&[1, 2, 3, 4]).unwrap();
    let mut payload = Vec::new();
    encode_stream(3, 100, b"hello", true, true, &mut payload).unwrap();
    encode_ping(&mut payload);
    encode_padding(7, &mut payload);
    let d = datagram(42, &payload);
    let mut scratch = Vec::new();
    let trace = PacketTrace::open(&d, &sid, None, &NullProtection, &mut scratch).unwrap();
    assert_eq!(trace.packet_number, 42);
    assert_eq!(trace.stream_bytes(), 5);

    let mut out = Vec::new();
    let mut w = QlogWriter::new(1 << 20);
    w.header(&mut out, "h3m \"session\" 01020304", VantagePoint::Client, 1_700_000_000_000).unwrap();
    w.packet(&mut out, 1.5, Direction::Received, &trace).unwrap();
    w.packet(&mut out, 2.0, Direction::Sent, &trace).unwrap();
    w.push_promised(&mut out, 2.5, 7, "/a\\b\n\u{1}").unwrap();
    w.push_resolved(&mut out, 3.0, 7, true).unwrap();
    w.push_resolved(&mut out, f64::NAN, 8, false).unwrap();
    assert_eq!(w.largest_packet_number(), Some(42));

    let events = validate(&out);
    assert_eq!(events.len(), 5);
    let p = &events[0];
    assert_eq!(p["name"], "transport:packet_received");
    assert_eq!(p["data"]["header"]["packet_number"], 42);
    assert_eq!(p["data"]["header"]["packet_type"], "1RTT");
    assert_eq!(p["data"]["raw"]["length"], d.len());
    let frames = p["data"]["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[0]["frame_type"], "stream");
    assert_eq!(frames[0]["stream_id"], 3);
    assert_eq!(frames[0]["offset"], 100);
    assert_eq!(frames[0]["length"], 5);
    assert_eq!(frames[0]["fin"], true);
    assert_eq!(frames[1]["frame_type"], "ping");
    assert_eq!(frames[2]["frame_type"], "padding");
    assert_eq!(events[1]["name"], "transport:packet_sent");
    assert_eq!(events[2]["data"]["frame"]["push_id"], 7);
    assert_eq!(events[2]["data"]["frame"]["headers"][0]["value"], "/a\\b\n\u{1}");
    assert_eq!(events[3]["data"]["decision"], "claimed");
    assert_eq!(events[4]["data"]["decision"], "abandoned");
    assert_eq!(events[4]["time"], 0.0);
    assert_eq!(w.bytes_written(), out.len() as u64);
}

#[test]
fn size_bound_ends_with_one_note() {
    let trace = PacketTrace { packet_number: 1, length: 100, frames: vec![FrameSummary::Ping] };
    let mut out = Vec::new();
    let mut w = QlogWriter::new(2048);
    w.header(&mut out, "t", VantagePoint::Server, 0).unwrap();
    for i in 0..1000 {
        w.packet(&mut out, f64::from(i), Direction::Sent, &trace).unwrap();
    }
    assert!(w.is_stopped());
    assert!(out.len() <= 2048, "{} bytes", out.len());
    let events = validate(&out);
    let last = events.last().unwrap();
    assert_eq!(last["name"], "generic:warning");
    assert_eq!(events.iter().filter(|e| e["name"] == "generic:warning").count(), 1);
    assert!(events[..events.len() - 1].iter().all(|e| e["name"] == "transport:packet_sent"));
}

#[test]
fn foreign_packet_is_an_error() {
    let other = SessionId::new(&[9, 9, 9, 9]).unwrap();
    let d = datagram(1, &[1]);
    let mut scratch = Vec::new();
    assert!(PacketTrace::open(&d, &other, None, &NullProtection, &mut scratch).is_err());
    assert!(PacketTrace::open(&[], &other, None, &NullProtection, &mut scratch).is_err());
}

#[derive(Clone, Default)]
struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn trace_logs_session_datagrams_only() {
    let sid = SessionId::new(&[1, 2, 3, 4]).unwrap();
    let shared = Shared::default();
    let start = Instant::now();
    let mut t = QlogTrace::new(Box::new(shared.clone()), "x", VantagePoint::Server, start, 5, 1 << 20).unwrap();
    let mut payload = Vec::new();
    encode_stream(1, 0, b"abc", false, false, &mut payload).unwrap();
    for pn in 0..300 {
        t.datagram(start, Direction::Sent, &datagram(pn, &payload), &sid, &NullProtection).unwrap();
    }
    t.datagram(start, Direction::Sent, b"junk", &sid, &NullProtection).unwrap();
    t.push_promised(start, 0, "/x").unwrap();
    t.flush().unwrap();
    let bytes = shared.0.lock().unwrap().clone();
    let events = validate(&bytes);
    assert_eq!(events.len(), 301);
    assert_eq!(events[299]["data"]["header"]["packet_number"], 299);
}
