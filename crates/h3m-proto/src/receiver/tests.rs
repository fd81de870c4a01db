//! Receiver behaviour on hand-built streams (the nghq vectors are exercised in
//! the interop crate).

use std::time::{Duration, Instant};

use super::*;
use crate::frame::encode_stream;
use crate::h3::{H3Frame, encode_frame};
use crate::packet::write_packet;
use crate::protection::NullProtection;
use crate::qpack::encode_field_section;

const SID: SessionId = SessionId::EMPTY;

/// Packets built frame by frame.
struct Wire {
    pn: u64,
    out: Vec<Vec<u8>>,
}

impl Wire {
    fn new() -> Self {
        Wire { pn: 0, out: Vec::new() }
    }

    fn stream(&mut self, id: u64, offset: u64, data: &[u8], fin: bool) -> &mut Self {
        let mut payload = Vec::new();
        encode_stream(id, offset, data, fin, true, &mut payload).unwrap();
        let mut d = Vec::new();
        write_packet(&mut d, &SID, self.pn, 2, &payload, &NullProtection).unwrap();
        self.pn += 1;
        self.out.push(d);
        self
    }
}

fn section(fields: &[(&str, &str)]) -> Vec<u8> {
    let fields: Vec<HeaderField> = fields.iter().map(|(n, v)| HeaderField::new(*n, *v)).collect();
    let mut s = Vec::new();
    encode_field_section(&fields, &mut s);
    s
}

fn promise(push_id: u64) -> Vec<u8> {
    let mut f = Vec::new();
    let s = section(&[(":method", "GET"), (":path", "/x")]);
    encode_frame(&H3Frame::PushPromise { push_id, field_section: &s }, &mut f).unwrap();
    f
}

/// A push stream: prologue, HEADERS, then the given frames.
fn push_stream(push_id: u64, frames: &[H3Frame<'_>]) -> Vec<u8> {
    let mut s = vec![0x01];
    crate::varint::encode(push_id, &mut s).unwrap();
    encode_frame(&H3Frame::Headers(&section(&[(":status", "200")])), &mut s).unwrap();
    for f in frames {
        encode_frame(f, &mut s).unwrap();
    }
    s
}

fn events(rx: &mut Receiver) -> Vec<Event> {
    std::iter::from_fn(|| rx.poll_event()).collect()
}

fn body_events(evs: &[Event]) -> Vec<(u64, Vec<u8>)> {
    evs.iter()
        .filter_map(|e| match e {
            Event::BodyData { offset, data, .. } => Some((*offset, data.clone())),
            _ => None,
        })
        .collect()
}

fn finished(evs: &[Event]) -> Vec<PushSummary> {
    evs.iter()
        .filter_map(|e| match e {
            Event::PushFinished(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

fn feed(w: &Wire) -> (Receiver, Vec<Event>) {
    let mut rx = Receiver::new(ReceiverConfig::new(SID));
    let now = Instant::now();
    for d in &w.out {
        rx.handle_datagram(now, d);
    }
    rx.finish(now);
    let evs = events(&mut rx);
    (rx, evs)
}

#[test]
fn overlapping_data_with_offset_reports_each_byte_once() {
    let s = push_stream(
        0,
        &[
            H3Frame::DataWithOffset { offset: 0, data: b"abcdef" },
            H3Frame::DataWithOffset { offset: 4, data: b"efgh" },
            H3Frame::DataWithOffset { offset: 0, data: b"abcdefgh" },
        ],
    );
    let mut w = Wire::new();
    w.stream(0, 0, &promise(0), false).stream(3, 0, &s, true);
    let (_, evs) = feed(&w);
    assert_eq!(body_events(&evs), vec![(0, b"abcdef".to_vec()), (6, b"gh".to_vec())]);
    let f = finished(&evs);
    assert_eq!((f[0].status.clone(), f[0].body_len), (PushStatus::Complete, 8));
}

#[test]
fn data_with_offset_holes_are_missing() {
    let s = push_stream(
        0,
        &[H3Frame::DataWithOffset { offset: 0, data: b"ab" }, H3Frame::DataWithOffset { offset: 5, data: b"fg" }],
    );
    let mut w = Wire::new();
    w.stream(0, 0, &promise(0), false).stream(3, 0, &s, true);
    let (_, evs) = feed(&w);
    let f = finished(&evs);
    assert_eq!(f[0].status, PushStatus::Incomplete(IncompleteReason::SessionEnded));
    let hole = 2..5;
    assert_eq!((f[0].missing.clone(), f[0].missing_from), (vec![hole], None));
}

#[test]
fn data_and_data_with_offset_must_not_mix() {
    let s = push_stream(0, &[H3Frame::Data(b"abcd"), H3Frame::DataWithOffset { offset: 2, data: b"cdef" }]);
    let mut w = Wire::new();
    w.stream(0, 0, &promise(0), false).stream(3, 0, &s, true);
    let (rx, evs) = feed(&w);
    assert_eq!(body_events(&evs), vec![(0, b"abcd".to_vec())]);
    let f = finished(&evs);
    assert_eq!(
        f[0].status,
        PushStatus::Incomplete(IncompleteReason::ProtocolError("DATA and DATA_WITH_OFFSET on one stream"))
    );
    assert_eq!(rx.stats().stream_errors, 1);
}

#[test]
fn fin_before_earlier_data_does_not_complete() {
    let s = push_stream(0, &[H3Frame::Data(&[9; 3000])]);
    let mut w = Wire::new();
    w.stream(0, 0, &promise(0), false).stream(3, 0, &s[..1000], false);
    w.stream(3, 2000, &s[2000..], true); // the FIN overtakes bytes 1000..2000
    let mut rx = Receiver::new(ReceiverConfig::new(SID));
    let now = Instant::now();
    for d in &w.out {
        rx.handle_datagram(now, d);
    }
    assert!(finished(&events(&mut rx)).is_empty(), "complete only when every byte is here");
    let mut late = Wire::new();
    late.pn = 10;
    late.stream(3, 1000, &s[1000..2000], false);
    rx.handle_datagram(now, &late.out[0]);
    let f = finished(&events(&mut rx));
    assert_eq!((f[0].status.clone(), f[0].body_len), (PushStatus::Complete, 3000));
}

#[test]
fn push_stream_before_promise_waits_and_unpromised_ones_are_reported() {
    let s = push_stream(0, &[H3Frame::Data(b"hello")]);
    let orphan = push_stream(1, &[H3Frame::Data(b"never promised")]);
    let mut w = Wire::new();
    w.stream(3, 0, &s, true).stream(7, 0, &orphan, true).stream(0, 0, &promise(0), false);
    let (rx, evs) = feed(&w);
    assert_eq!(body_events(&evs), vec![(0, b"hello".to_vec())]);
    assert_eq!(finished(&evs)[0].status, PushStatus::Complete);
    let status_200 = vec![HeaderField::new(":status", "200")];
    assert!(evs.contains(&Event::UnpromisedPush { push_id: 1, stream_id: 7, response: Some(status_200) }));
    assert_eq!(rx.buffered_bytes(), 0);
}

#[test]
fn buffering_is_bounded_and_drops_are_counted() {
    let mut cfg = ReceiverConfig::new(SID);
    cfg.max_buffered_total = 10_000;
    cfg.max_buffered_per_stream = 4_000;
    cfg.max_orphan_streams = 20;
    let mut rx = Receiver::new(cfg);
    let now = Instant::now();
    // Many orphan streams with data beyond a gap: none may hold more than allowed.
    let mut w = Wire::new();
    for id in 0..50u64 {
        w.stream(3 + 4 * id, 10, &[1; 1000], false);
        w.stream(3 + 4 * id, 5000, &[1; 1000], false);
    }
    for d in &w.out {
        rx.handle_datagram(now, d);
        assert!(rx.buffered_bytes() <= 10_000);
    }
    assert!(rx.stats().orphan_streams_dropped > 0);
    assert!(rx.stats().dropped_buffer_bytes > 0);
    rx.handle_timeout(now + Duration::from_secs(11));
    assert_eq!((rx.buffered_bytes(), rx.streams.len()), (0, 0), "orphans time out: {:?}", rx.stats());
}

#[test]
fn idle_timeout_ends_the_session_and_open_pushes() {
    let s = push_stream(0, &[H3Frame::Data(&[1; 100])]);
    let mut w = Wire::new();
    w.stream(0, 0, &promise(0), false).stream(3, 0, &s[..20], false);
    let mut rx = Receiver::new(ReceiverConfig::new(SID));
    let t0 = Instant::now();
    for d in &w.out {
        rx.handle_datagram(t0, d);
    }
    let deadline = rx.poll_timeout().unwrap();
    assert_eq!(deadline, t0 + Duration::from_secs(10), "the push timeout comes first");
    rx.handle_timeout(t0 + Duration::from_secs(60));
    let evs = events(&mut rx);
    assert_eq!(finished(&evs)[0].status, PushStatus::Incomplete(IncompleteReason::Timeout));
    assert!(evs.contains(&Event::SessionEnd { reason: SessionEndReason::IdleTimeout }));
    assert_eq!(rx.poll_timeout(), None);
}
