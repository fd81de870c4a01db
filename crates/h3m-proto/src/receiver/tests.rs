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
    pn_len: usize,
}

impl Wire {
    fn new() -> Self {
        Wire { pn: 0, out: Vec::new(), pn_len: 2 }
    }

    /// Packets numbered from `pn`, each number sent in `pn_len` bytes.
    fn numbered_from(pn: u64, pn_len: usize) -> Self {
        Wire { pn, out: Vec::new(), pn_len }
    }

    fn stream(&mut self, id: u64, offset: u64, data: &[u8], fin: bool) -> &mut Self {
        let mut payload = Vec::new();
        encode_stream(id, offset, data, fin, true, &mut payload).unwrap();
        let mut d = Vec::new();
        write_packet(&mut d, &SID, self.pn, self.pn_len, &payload, &NullProtection).unwrap();
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
fn an_orphan_flood_does_not_turn_away_the_stream_of_a_promised_push() {
    let mut w = Wire::new();
    for id in 0..200u64 {
        w.stream(3 + 4 * id, 0, &push_stream(id, &[H3Frame::Data(b"x")]), true);
    }
    let s = push_stream(200, &[H3Frame::Data(b"genuine")]);
    w.stream(0, 0, &promise(200), false).stream(3 + 4 * 200, 0, &s, true);
    let (rx, evs) = feed(&w);
    assert!(rx.stats().orphan_streams_dropped > 0);
    let f = finished(&evs);
    assert_eq!((f.len(), f[0].push_id, f[0].status.clone()), (1, 200, PushStatus::Complete));
    assert_eq!(body_events(&evs), vec![(0, b"genuine".to_vec())]);
}

#[test]
fn streams_claiming_a_push_that_has_one_are_dropped() {
    let mut rx = Receiver::new(ReceiverConfig::new(SID));
    let now = Instant::now();
    let mut w = Wire::new();
    let s = push_stream(0, &[H3Frame::Data(b"genuine")]);
    // Orphans claiming push 0 before its promise, then its genuine stream (the
    // newer stream for a push wins); claims after it finished are late bytes.
    w.stream(11, 0, &s[..5], false).stream(15, 0, &s[..5], false);
    w.stream(0, 0, &promise(0), false).stream(3, 0, &s, true).stream(19, 0, &s[..5], false);
    // Push 1 stays open: 995 streams claim it one after the other.
    let p1 = promise(1);
    w.stream(0, promise(0).len() as u64, &p1, false);
    let s1 = push_stream(1, &[H3Frame::Data(b"one")]);
    for id in 5..1000u64 {
        w.stream(3 + 4 * id, 0, &s1[..5], false);
    }
    for d in &w.out {
        rx.handle_datagram(now, d);
    }
    assert_eq!(rx.streams.len(), 1, "one stream per push");
    // Streams 15 and 11 (replaced by 3), then 994 of the 995 claims of push 1.
    assert_eq!(rx.stats().stream_errors, 2 + 994, "{:?}", rx.stats());
    let f = finished(&events(&mut rx));
    assert_eq!((f.len(), f[0].push_id, f[0].status.clone()), (1, 0, PushStatus::Complete));
}

#[test]
fn promises_with_sparse_push_ids_are_remembered_in_bounded_memory() {
    let mut w = Wire::new();
    let mut offset = 0;
    for i in 0..10_000u64 {
        let p = promise(2 * i);
        w.stream(0, offset, &p, false);
        offset += p.len() as u64;
    }
    let (rx, evs) = feed(&w);
    assert!(rx.seen_push_ids.range_count() <= MAX_SEEN_RANGES);
    // Every hole is still counted lost (the earliest ones named).
    assert_eq!(rx.stats().pushes_lost, 9_999);
    let lost = evs.iter().filter(|e| matches!(e, Event::PushLost { .. })).count() as u64;
    assert_eq!(lost, MAX_LOST_REPORTED);
}

#[test]
fn the_timer_is_polled_in_constant_time_and_never_late() {
    let mut rx = Receiver::new(ReceiverConfig::new(SID));
    let t0 = Instant::now();
    let mut w = Wire::new();
    w.stream(0, 0, &promise(0), false);
    rx.handle_datagram(t0, &w.out[0]);
    assert_eq!(rx.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    // Activity moves the push's timer later; the hint may stay early, never late.
    let s = push_stream(0, &[H3Frame::Data(&[7; 100])]);
    w.stream(3, 0, &s[..20], false);
    let t1 = t0 + Duration::from_secs(5);
    rx.handle_datagram(t1, &w.out[1]);
    assert!(rx.poll_timeout().is_some_and(|t| t <= t1 + Duration::from_secs(10)));
    rx.handle_timeout(t0 + Duration::from_secs(10));
    assert!(finished(&events(&mut rx)).is_empty(), "not due yet");
    assert_eq!(rx.poll_timeout(), Some(t1 + Duration::from_secs(10)), "exact after handle_timeout");
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

/// A push stream whose response carries `headers`, then `frames`.
fn push_stream_with(push_id: u64, headers: &[(&str, &str)], frames: &[H3Frame<'_>]) -> Vec<u8> {
    let mut s = vec![0x01];
    crate::varint::encode(push_id, &mut s).unwrap();
    encode_frame(&H3Frame::Headers(&section(headers)), &mut s).unwrap();
    for f in frames {
        encode_frame(f, &mut s).unwrap();
    }
    s
}

fn lost(evs: &[Event]) -> Vec<u64> {
    evs.iter()
        .filter_map(|e| match e {
            Event::PushLost { push_id } => Some(*push_id),
            _ => None,
        })
        .collect()
}

#[test]
fn a_new_promise_evicts_the_stalest_push_instead_of_being_refused() {
    // Regression (hardening item 1): at the concurrency limit new promises
    // were refused (`too_many_pushes`), so `--repeat` copies of resources
    // whose first copies lost a packet were never merged.
    let mut cfg = ReceiverConfig::new(SID);
    cfg.max_concurrent_pushes = 2;
    let mut rx = Receiver::new(cfg);
    let t0 = Instant::now();
    let mut w = Wire::new();
    // Pushes 0 and 1 start (HEADERS arrive) but their bodies stall.
    let stalled = |id| push_stream(id, &[H3Frame::Data(b"0123456789")]);
    let s0 = stalled(0);
    let s1 = stalled(1);
    w.stream(0, 0, &promise(0), false).stream(3, 0, &s0[..s0.len() - 4], false);
    let p0 = promise(0).len() as u64;
    w.stream(0, p0, &promise(1), false).stream(7, 0, &s1[..s1.len() - 4], false);
    for (i, d) in w.out.iter().enumerate() {
        rx.handle_datagram(t0 + Duration::from_millis(i as u64), d);
    }
    events(&mut rx);
    // Push 2 arrives whole: push 0 (the stalest) makes room for it.
    let mut w2 = Wire { pn: w.pn, out: Vec::new(), pn_len: 2 };
    let p1 = promise(1).len() as u64;
    w2.stream(0, p0 + p1, &promise(2), false).stream(11, 0, &push_stream(2, &[H3Frame::Data(b"two")]), true);
    for d in &w2.out {
        rx.handle_datagram(t0 + Duration::from_millis(10), d);
    }
    let evs = events(&mut rx);
    let f = finished(&evs);
    assert_eq!(f.len(), 2, "{evs:?}");
    assert_eq!((f[0].push_id, f[0].status.clone()), (0, PushStatus::Incomplete(IncompleteReason::Evicted)));
    assert_eq!((f[0].missing.clone(), f[0].missing_from), (vec![], Some(6)));
    assert_eq!((f[1].push_id, f[1].status.clone()), (2, PushStatus::Complete));
    assert_eq!(rx.stats().pushes_evicted, 1);
    assert_eq!(rx.active_pushes(), 1);
}

#[test]
fn wholly_lost_pushes_are_named_at_the_end() {
    // Regression (hardening item 2): a push whose promise and stream were
    // both lost was never reported.
    let mut w = Wire::new();
    let mut at = 0;
    for id in [0u64, 1, 2, 5] {
        let p = promise(id);
        w.stream(0, at, &p, false);
        at += p.len() as u64;
        w.stream(3 + 4 * id, 0, &push_stream(id, &[H3Frame::Data(b"x")]), true);
    }
    let (rx, evs) = feed(&w);
    assert_eq!(lost(&evs), vec![3, 4]);
    assert_eq!(rx.stats().pushes_lost, 2);
    // What lies after the highest push seen is unknown (6 and on).
    assert_eq!(rx.highest_push_id(), Some(5));
    assert_eq!(Receiver::new(ReceiverConfig::new(SessionId::NGHQ_DEFAULT)).highest_push_id(), None);
    assert!(matches!(evs.last(), Some(Event::SessionEnd { .. })));
}

/// Pushes `ids` (promise, then the whole stream), from packet number `pn`.
fn pushes_from(pn: u64, pn_len: usize, ids: std::ops::Range<u64>) -> Wire {
    let mut w = Wire::numbered_from(pn, pn_len);
    let mut at = 0;
    for id in ids {
        let p = promise(id);
        w.stream(0, at, &p, false);
        at += p.len() as u64;
        w.stream(3 + 4 * id, 0, &push_stream(id, &[H3Frame::Data(b"x")]), true);
    }
    w
}

#[test]
fn pushes_lost_at_the_session_start_are_named() {
    // Regression: pushes below the first one seen were never counted, so a
    // receiver that lost the session's first datagrams (a packed session's
    // first small files whole) exited without them and said nothing.
    for (pn_len, dropped) in [(2, 2), (2, 6), (4, 4), (1, 2)] {
        let mut w = pushes_from(0, pn_len, 0..5);
        w.out.drain(..dropped);
        let (rx, evs) = feed(&w);
        let expect: Vec<u64> = (0..dropped as u64 / 2).collect();
        assert!(rx.saw_session_start(), "pn_len {pn_len}, {dropped} dropped");
        assert_eq!(lost(&evs), expect, "pn_len {pn_len}, {dropped} dropped");
        assert_eq!(rx.stats().pushes_lost, expect.len() as u64);
    }
}

#[test]
fn a_late_joiner_does_not_count_the_pushes_before_it_as_lost() {
    // Joined at packet 1000 (2-byte numbers) or at 10 of a 1-byte space
    // that wraps: push 500 is the first it saw, and pushes 0..500 were sent
    // before it listened.
    for (pn, pn_len) in [(1000, 2), (START_WINDOW, 4), (START_WINDOW_1_BYTE, 1), (10, 1)] {
        let (rx, evs) = feed(&pushes_from(pn, pn_len, 500..503));
        assert!(!rx.saw_session_start(), "first packet {pn} in {pn_len} bytes");
        assert_eq!(lost(&evs), Vec::<u64>::new());
        assert_eq!(rx.stats().pushes_lost, 0);
    }
    // One packet number below the window is enough, whichever comes first.
    let mut w = pushes_from(START_WINDOW, 2, 500..502);
    w.out.extend(pushes_from(START_WINDOW - 1, 2, 500..501).out.drain(..1));
    let (rx, evs) = feed(&w);
    assert!(rx.saw_session_start());
    assert_eq!(lost(&evs).len(), 500);
}

#[test]
fn a_stream_seen_only_from_its_middle_is_reported() {
    // Regression (hardening item 2): a late joiner that saw only the tail of
    // a push got nothing on stdout.
    let s = push_stream(0, &[H3Frame::Data(&[7; 300])]);
    let mut w = Wire::new();
    w.stream(3, 100, &s[100..], true);
    // Push 1 on stream 7 shows the numbering: stream = 3 + 4 × push ID.
    w.stream(0, 0, &promise(1), false).stream(7, 0, &push_stream(1, &[H3Frame::Data(b"x")]), true);
    let (rx, evs) = feed(&w);
    let headless = Event::HeadlessStream { stream_id: 3, bytes: (s.len() - 100) as u64, likely_push_id: Some(0) };
    assert!(evs.contains(&headless), "{evs:?}");
    assert_eq!(rx.stats().headless_streams, 1);
}

#[test]
fn body_bytes_beyond_content_length_fail_the_push() {
    // Regression (hardening item 6): DATA at a body offset near 2^50 reached
    // the writer (pwrite failed with EFBIG: exit 4).
    let s = push_stream_with(
        0,
        &[(":status", "200"), ("content-length", "5")],
        &[
            H3Frame::DataWithOffset { offset: 0, data: b"abc" },
            H3Frame::DataWithOffset { offset: 1 << 50, data: b"zz" },
        ],
    );
    let mut w = Wire::new();
    w.stream(0, 0, &promise(0), false).stream(3, 0, &s, true);
    let (rx, evs) = feed(&w);
    assert_eq!(body_events(&evs), vec![(0, b"abc".to_vec())]);
    let f = finished(&evs);
    assert_eq!(
        f[0].status,
        PushStatus::Incomplete(IncompleteReason::ProtocolError("body bytes beyond the announced content-length"))
    );
    assert_eq!(rx.stats().body_overruns, 1);
    // The refused bytes are not part of the body: it is still the announced 5
    // bytes, of which 3..5 are missing (not 3..2^50).
    assert_eq!(f[0].body_len, 5);
    assert_eq!(f[0].missing.iter().map(|r| (r.start, r.end)).collect::<Vec<_>>(), [(3, 5)]);
    // Without a content-length the configured maximum applies.
    let s = push_stream(0, &[H3Frame::DataWithOffset { offset: 1 << 50, data: b"zz" }]);
    let mut w = Wire::new();
    w.stream(0, 0, &promise(0), false).stream(3, 0, &s, true);
    let (rx, evs) = feed(&w);
    assert!(body_events(&evs).is_empty());
    assert_eq!(rx.stats().body_overruns, 1);
}

#[test]
fn end_signals_can_be_left_to_the_driver() {
    // With `end_signals` off (a driver that verifies signatures), an
    // unverified `connection: close` does not end the session.
    let s = push_stream_with(0, &[(":status", "200"), ("connection", "close")], &[H3Frame::Data(b"x")]);
    let mut w = Wire::new();
    w.stream(0, 0, &promise(0), false).stream(3, 0, &s, true);
    for honour in [true, false] {
        let mut cfg = ReceiverConfig::new(SID);
        cfg.end_signals = honour;
        let mut rx = Receiver::new(cfg);
        let now = Instant::now();
        for d in &w.out {
            rx.handle_datagram(now, d);
        }
        assert_eq!(rx.is_ended(), honour);
    }
}

#[test]
fn replayed_packets_are_counted_apart_from_reordered_ones() {
    let mut w = Wire::new();
    for i in 0..4u64 {
        w.stream(0, i, b"\x21", false);
    }
    let mut rx = Receiver::new(ReceiverConfig::new(SID));
    let now = Instant::now();
    for i in [0usize, 2, 1, 3, 2, 0, 3] {
        rx.handle_datagram(now, &w.out[i]);
    }
    assert_eq!((rx.stats().reordered_packets, rx.stats().replayed_packets), (1, 3));
}

#[test]
fn the_range_budget_fails_the_most_fragmented_stream() {
    // Hardening item 5: fragmentation is bounded across all streams, and the
    // stream that spends the budget is the one that fails.
    let mut cfg = ReceiverConfig::new(SID);
    cfg.max_ranges_total = 500;
    let mut rx = Receiver::new(cfg);
    let now = Instant::now();
    let body = vec![9u8; 4000];
    let s = push_stream(0, &[H3Frame::Data(&body)]);
    let mut w = Wire::new();
    w.stream(0, 0, &promise(0), false).stream(0, promise(0).len() as u64, &promise(1), false);
    w.stream(3, 0, &s[..20], false);
    for i in 0..600u64 {
        w.stream(3, 30 + 2 * i, &s[(30 + 2 * i) as usize..(31 + 2 * i) as usize], false);
    }
    // A healthy push alongside.
    w.stream(7, 0, &push_stream(1, &[H3Frame::Data(b"fine")]), true);
    for d in &w.out {
        rx.handle_datagram(now, d);
    }
    let evs = events(&mut rx);
    let f = finished(&evs);
    assert_eq!(f.len(), 2);
    assert_eq!(f[0].push_id, 0);
    assert_eq!(f[0].status, PushStatus::Incomplete(IncompleteReason::ProtocolError("too many gaps in the stream")));
    assert_eq!((f[1].push_id, f[1].status.clone()), (1, PushStatus::Complete));
    assert_eq!(rx.stats().streams_too_fragmented, 1);
    assert!(rx.ranges_total <= 500);
}

#[test]
fn planted_request_stream_fragments_do_not_block_later_promises() {
    // Regression (hardening item 3): ~1 100 one-byte ranges planted ahead on
    // stream 0 made the receiver drop every later stream-0 byte.
    let mut w = Wire::new();
    for i in 0..1100u64 {
        w.stream(0, 50_000 + 3 * i, b"\x05", false);
    }
    let mut at = 0;
    for id in 0..20u64 {
        let p = promise(id);
        w.stream(0, at, &p, false);
        at += p.len() as u64;
        w.stream(3 + 4 * id, 0, &push_stream(id, &[H3Frame::Data(b"ok")]), true);
    }
    let (rx, evs) = feed(&w);
    let f = finished(&evs);
    assert_eq!(f.len(), 20);
    assert!(f.iter().all(PushSummary::is_complete));
    assert!(rx.stats().request_fragments_forgotten > 0 || rx.stats().dropped_buffer_bytes > 0);
}

#[test]
fn an_empty_body_is_declared_by_length_or_by_agreeing_digests() {
    let h = |fields: &[(&str, &str)]| -> Vec<HeaderField> {
        fields.iter().map(|(n, v)| HeaderField::new(*n, *v)).collect()
    };
    let empty = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    let other = "7PcB9yfZ4td8SqSaxvu8yZcnisoBC93uuWHBDPVNQ1o=";
    assert!(declares_empty_body(&h(&[("content-length", " 0 ")])));
    assert!(declares_empty_body(&h(&[("digest", &format!("SHA-256={empty}"))])));
    assert!(declares_empty_body(&h(&[("digest", &format!("sha256={empty}"))])));
    assert!(declares_empty_body(&h(&[("repr-digest", &format!("sha-256=:{empty}:"))])));
    assert!(declares_empty_body(&crate::http::digest::sha256_fields(&crate::http::digest::sha256(b""))));
    assert!(!declares_empty_body(&h(&[("content-length", "10")])));
    assert!(!declares_empty_body(&h(&[("digest", &format!("SHA-256={other}"))])));
    // Fields that disagree declare nothing.
    let both = h(&[("digest", &format!("SHA-256={empty}")), ("repr-digest", &format!("sha-256=:{other}:"))]);
    assert!(!declares_empty_body(&both));
    assert!(!declares_empty_body(&[]));
}

#[test]
fn a_promise_learnt_elsewhere_claims_the_waiting_stream() {
    use crate::encoder::{EncoderConfig, SessionEncoder};
    let sid = crate::SessionId::from_hex("2a").unwrap();
    let (req, resp) = ([HeaderField::new(":path", "/x.bin")], [HeaderField::new(":status", "200")]);
    let body: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    let mut datagrams = Vec::new();
    SessionEncoder::new(EncoderConfig::new(sid)).push(&req, &resp, &body, &mut datagrams).unwrap();
    let mut rx = Receiver::new(ReceiverConfig::new(sid));
    let now = Instant::now();
    // The first datagram carries the promise: lost.
    for d in &datagrams[1..] {
        rx.handle_datagram(now, d);
    }
    assert_eq!(rx.unpromised_push_ids(), vec![0]);
    rx.adopt_promise(now, 0, req.to_vec());
    let mut got = vec![0u8; body.len()];
    let mut finished = None;
    while let Some(e) = rx.poll_event() {
        match e {
            Event::BodyData { offset, data, .. } => {
                got[offset as usize..offset as usize + data.len()].copy_from_slice(&data)
            }
            Event::PushFinished(s) => finished = Some(s.status),
            _ => {}
        }
    }
    assert_eq!((got, finished), (body, Some(PushStatus::Complete)));
    assert!(rx.unpromised_push_ids().is_empty());
}

#[test]
fn a_headless_stream_hands_over_its_bytes() {
    use crate::encoder::{EncoderConfig, SessionEncoder};
    let sid = crate::SessionId::from_hex("2a").unwrap();
    let (req, resp) = ([HeaderField::new(":path", "/y")], [HeaderField::new(":status", "200")]);
    let body: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    let mut datagrams = Vec::new();
    let mut enc = SessionEncoder::new(EncoderConfig::new(sid));
    let id = enc.open_push(&req, &resp, Some(body.len() as u64)).unwrap();
    let body_offset = enc.body_offset(id).unwrap();
    enc.write(id, &body, &mut datagrams).unwrap();
    enc.finish(id, None, &mut datagrams).unwrap();
    let mut rx = Receiver::new(ReceiverConfig::new(sid));
    let now = Instant::now();
    // The promise arrives; the stream's first datagram (its head) does not.
    rx.handle_datagram(now, &datagrams[0]);
    for d in &datagrams[2..] {
        rx.handle_datagram(now, d);
    }
    let headless = rx.headless_streams();
    assert_eq!(headless.len(), 1);
    let taken = rx.take_headless(headless[0].0);
    let held: usize = taken.iter().map(|(_, b)| b.len()).sum();
    assert!(held > 3000, "{held}");
    // The bytes are the body's, at stream offsets past the head.
    for (at, bytes) in &taken {
        let b = (at - body_offset) as usize;
        assert_eq!(&bytes[..], &body[b..b + bytes.len()]);
    }
    assert!(rx.headless_streams().is_empty());
}

#[test]
fn a_headers_only_push_is_an_empty_file_when_its_length_or_else_its_digest_says_so() {
    let empty = crate::encoding::base64::encode(&crate::http::digest::sha256(b""));
    let digest = format!("SHA-256={empty}");
    let cases: [(&[(&str, &str)], bool); 4] = [
        (&[(":status", "200"), ("content-length", "0")], true),
        (&[(":status", "200"), ("digest", &digest)], true),
        // The declared length decides: ten bytes are missing, whatever the digest.
        (&[(":status", "200"), ("content-length", "10"), ("digest", &digest)], false),
        (&[(":status", "200")], false),
    ];
    for (fields, empty_file) in cases {
        // nghq's empty file: HEADERS, then neither DATA nor FIN.
        let mut s = vec![0x01, 0x00];
        encode_frame(&H3Frame::Headers(&section(fields)), &mut s).unwrap();
        let mut w = Wire::new();
        w.stream(0, 0, &promise(0), false).stream(3, 0, &s, false);
        let (_, evs) = feed(&w);
        let f = finished(&evs);
        if empty_file {
            assert_eq!((f[0].status.clone(), f[0].body_len), (PushStatus::Complete, 0), "{fields:?}");
        } else {
            assert_eq!(f[0].status, PushStatus::Incomplete(IncompleteReason::SessionEnded), "{fields:?}");
        }
    }
}

/// A push whose body, one DATA frame, comes in packets of `chunk` stream
/// bytes: the promise, then the push stream split.
fn chunked_push(body: &[u8], chunk: usize) -> Wire {
    let mut w = Wire::new();
    w.stream(0, 0, &promise(0), false);
    let s = push_stream(0, &[H3Frame::Data(body)]);
    for (i, part) in s.chunks(chunk).enumerate() {
        let last = (i + 1) * chunk >= s.len();
        w.stream(3, (i * chunk) as u64, part, last);
    }
    w
}

#[test]
fn body_buffers_given_back_are_filled_again_with_exactly_the_next_bytes() {
    let body: Vec<u8> = (0..20_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let w = chunked_push(&body, 700);
    let now = Instant::now();
    // One receiver gives every body buffer back, the other none.
    let (mut recycling, mut plain) = (Receiver::new(ReceiverConfig::new(SID)), Receiver::new(ReceiverConfig::new(SID)));
    let (mut given, mut kept) = (Vec::new(), Vec::new());
    let mut reused = 0;
    // A stale buffer first: its old bytes must not show.
    recycling.recycle(vec![0xaa; 3000]);
    let mut given_back: Vec<*const u8> = vec![recycling.spare[0].as_ptr()];
    for d in &w.out {
        recycling.handle_datagram(now, d);
        plain.handle_datagram(now, d);
        for e in events(&mut recycling) {
            if let Event::BodyData { offset, data, .. } = e {
                // The first chunk is split off the segment that also held the
                // headers (a new buffer); the second is longer than the
                // first's buffer (it grows). From the third on, each comes in
                // a buffer given back.
                if given.len() >= 2 {
                    reused += usize::from(given_back.contains(&data.as_ptr()));
                }
                given.push((offset, data.clone()));
                given_back.push(data.as_ptr());
                recycling.recycle(data);
            }
        }
        kept.extend(body_events(&events(&mut plain)));
    }
    assert_eq!(given, kept, "the same bytes at the same offsets");
    let mut whole = vec![0u8; body.len()];
    for (offset, data) in &given {
        whole[*offset as usize..*offset as usize + data.len()].copy_from_slice(data);
    }
    assert_eq!(whole, body);
    assert!(given.len() > 20, "{}", given.len());
    assert_eq!(reused, given.len() - 2);
}

#[test]
fn the_buffers_kept_are_bounded_in_number_and_size() {
    let mut rx = Receiver::new(ReceiverConfig::new(SID));
    rx.recycle(Vec::new());
    rx.recycle(Vec::with_capacity(MAX_SPARE_CAPACITY + 1));
    assert!(rx.spare.is_empty(), "no capacity, or too much: not kept");
    for _ in 0..MAX_SPARE_BUFFERS + 10 {
        rx.recycle(vec![7u8; 1200]);
    }
    assert_eq!(rx.spare.len(), MAX_SPARE_BUFFERS);
    assert!(rx.spare.iter().all(|b| b.is_empty() && b.capacity() >= 1200));
}
