//! Stream 0, the request stream: a sequence of PUSH_PROMISE frames with no
//! stream-type byte and no FIN.
//!
//! A receiver may join late or lose a packet, so the stream is not parsed with
//! one cursor. Frame starts are known for certain at offset 0 and at the end of
//! every parsed frame; the start of every STREAM frame is a likely frame start
//! too (nghq and h3m senders begin each promise in a fresh STREAM frame), tried
//! only where no certain frame is known to cover it.
//!
//! The stream is open to anyone who can send a datagram, so its state is
//! bounded and its cost per frame is too:
//! - at most [`MAX_RANGES`] disjoint received ranges and [`MAX_BOUNDARIES`]
//!   remembered frame starts; when either is full, the *farthest* fragment
//!   (highest offset) is forgotten to make room, never the run being read,
//!   and new data is refused only when it is itself the farthest;
//! - a frame start that has made no progress while [`STALE_FRAMES`] other
//!   frames were parsed (a promise whose packet was lost) is forgotten, with
//!   the bytes held for it;
//! - a STREAM frame that brings nothing new costs one range lookup; one that
//!   does is parsed from the frame starts of its own run only, whose frame
//!   ends are cached, so work per frame does not grow with what is held.

use std::collections::BTreeMap;
use std::ops::Range;

use super::ranges::RangeSet;
use super::segments::Segments;
use crate::h3::FrameHeader;

/// Most disjoint received ranges held.
pub(crate) const MAX_RANGES: usize = 1024;
/// Most frame starts remembered.
pub(crate) const MAX_BOUNDARIES: usize = 64;
/// A frame start is forgotten once this many frames were parsed after it
/// became one without it making progress.
pub(crate) const STALE_FRAMES: u64 = 64;
/// [`MAX_BOUNDARIES`] and [`STALE_FRAMES`] once the session is known to
/// carry FEC: a lost promise packet comes back up to two FEC groups later
/// (some 16 000 datagrams, a few thousand promises of small files), so its
/// frame start and the bytes after it are kept that long.
pub(crate) const FEC_MAX_BOUNDARIES: usize = 512;
/// See [`FEC_MAX_BOUNDARIES`].
pub(crate) const FEC_STALE_FRAMES: u64 = 4096;

/// A remembered frame start.
#[derive(Debug, Clone, Copy)]
struct Boundary {
    /// Known for certain (offset 0 or the end of a parsed frame).
    certain: bool,
    /// The frame's end, once its header has arrived.
    end: Option<u64>,
    /// The parsed-frame count when it was recorded (its age).
    since: u64,
}

#[derive(Debug)]
pub(crate) struct RequestStream {
    received: RangeSet,
    pending: Segments,
    boundaries: BTreeMap<u64, Boundary>,
    /// Frames parsed so far (the clock of [`Boundary::since`]).
    frames_parsed: u64,
    /// The end of the last parsed frame: the read position.
    read_position: u64,
    /// The run of received bytes the last call brought something new to.
    dirty: Option<Range<u64>>,
    /// Fragments and frame starts forgotten to stay within the bounds.
    pub(crate) evicted: u64,
    /// The bounds in force: [`MAX_BOUNDARIES`] and [`STALE_FRAMES`], or the
    /// FEC ones ([`RequestStream::expect_repair`]).
    max_boundaries: usize,
    stale_frames: u64,
}

/// A whole frame read from the request stream.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RawFrame {
    pub frame_type: u64,
    pub payload: Vec<u8>,
}

impl Default for RequestStream {
    fn default() -> Self {
        RequestStream {
            received: RangeSet::new(),
            pending: Segments::default(),
            boundaries: BTreeMap::from([(0, Boundary { certain: true, end: None, since: 0 })]),
            frames_parsed: 0,
            read_position: 0,
            dirty: None,
            evicted: 0,
            max_boundaries: MAX_BOUNDARIES,
            stale_frames: STALE_FRAMES,
        }
    }
}

impl RequestStream {
    /// Lost packets may come back late (the session carries FEC): frame
    /// starts wait longer before they are forgotten ([`FEC_STALE_FRAMES`]).
    pub(crate) fn expect_repair(&mut self) {
        self.max_boundaries = FEC_MAX_BOUNDARIES;
        self.stale_frames = FEC_STALE_FRAMES;
    }

    /// The memory held bytes cost (see [`Segments::footprint`]).
    pub(crate) fn buffered(&self) -> usize {
        self.pending.footprint()
    }

    /// The number of disjoint received ranges held.
    #[cfg(test)]
    pub(crate) fn range_count(&self) -> usize {
        self.received.range_count()
    }

    /// Takes a STREAM frame's bytes; returns how many were dropped for lack of room.
    pub(crate) fn on_data(&mut self, offset: u64, data: &[u8], max_buffered: usize, budget: usize) -> usize {
        let end = offset + data.len() as u64;
        let gaps = self.received.gaps(offset..end);
        if gaps.is_empty() {
            return 0; // nothing new: no parsing either
        }
        let mut dropped = 0;
        let mut budget = budget;
        for gap in gaps {
            let n = (gap.end - gap.start) as usize;
            let cost = n + super::segments::SEGMENT_OVERHEAD;
            if self.received.would_add_range(gap.clone()) && !self.make_room_for_range(gap.start) {
                dropped += n;
                continue;
            }
            while self.pending.footprint() + cost > max_buffered || cost > budget {
                let before = self.pending.footprint();
                if !self.evict_farthest_above(gap.start) {
                    break;
                }
                budget += before - self.pending.footprint();
            }
            if self.pending.footprint() + cost > max_buffered || cost > budget {
                dropped += n;
                continue;
            }
            budget -= cost;
            let bytes = &data[(gap.start - offset) as usize..(gap.end - offset) as usize];
            self.pending.insert(gap.start, bytes.to_vec());
            self.received.insert(gap.clone());
        }
        if !self.received.contains(offset..end) {
            // Partly refused: parse what did arrive, from its own run.
            if let Some(r) = self.received.range_containing(offset) {
                self.dirty = Some(r);
            }
            return dropped;
        }
        if !self.boundaries.contains_key(&offset) && self.make_room_for_boundary(offset) {
            self.boundaries.insert(offset, Boundary { certain: false, end: None, since: self.frames_parsed });
        }
        self.dirty = self.received.range_containing(offset).map(|r| r.start..end.max(offset));
        dropped
    }

    /// Makes room for a new received range at `start`: forgets the farthest
    /// fragment above it when the set is full. `false` when `start` is itself
    /// the farthest (the new data is the one to refuse).
    fn make_room_for_range(&mut self, start: u64) -> bool {
        while self.received.range_count() >= MAX_RANGES {
            if !self.evict_farthest_above(start) {
                return false;
            }
        }
        true
    }

    /// Makes room for a new frame start at `at`.
    fn make_room_for_boundary(&mut self, at: u64) -> bool {
        while self.boundaries.len() >= self.max_boundaries {
            let Some((&far, _)) = self.boundaries.last_key_value() else { return true };
            if far <= at || far <= self.read_position {
                return false;
            }
            self.forget_boundary(far);
        }
        true
    }

    /// Forgets the farthest received range if it lies above `floor` and is not
    /// the run being read; `false` if there is none to forget.
    fn evict_farthest_above(&mut self, floor: u64) -> bool {
        let Some(far) = self.received.iter().next_back() else { return false };
        if far.start <= floor || far.contains(&self.read_position) || far.end == self.read_position {
            return false;
        }
        self.received.pop_last();
        drop(self.pending.take(far.clone()));
        let inside: Vec<u64> = self.boundaries.range(far.start..far.end).map(|(&k, _)| k).collect();
        for k in inside {
            self.boundaries.remove(&k);
        }
        self.evicted += 1;
        true
    }

    /// Forgets the frame start at `at` and the bytes held only for it.
    fn forget_boundary(&mut self, at: u64) {
        self.boundaries.remove(&at);
        self.evicted += 1;
    }

    /// Reads every frame the last [`on_data`](Self::on_data) made readable.
    /// Frames longer than `max_frame` are dropped (their start is forgotten);
    /// returns how many were.
    pub(crate) fn poll_frames(&mut self, max_frame: u64, out: &mut Vec<RawFrame>) -> usize {
        let Some(dirty) = self.dirty.take() else { return 0 };
        let Some(run) = self.received.range_containing(dirty.start) else { return 0 };
        let mut rejected = 0;
        let mut scan_end = dirty.end;
        let mut at = run.start;
        while at <= scan_end
            && let Some((&c, &b)) = self.boundaries.range(at..=scan_end).next()
        {
            at = c + 1;
            if !b.certain && self.covered_by_certain_frame(c, run.start) {
                self.boundaries.remove(&c);
                continue;
            }
            let end = match b.end {
                Some(e) => e,
                None => {
                    let mut head = [0u8; 16];
                    let n = self.pending.peek(c, &mut head);
                    let Some(h) = FrameHeader::parse(&head[..n]) else { continue };
                    if h.length > max_frame {
                        self.boundaries.remove(&c);
                        rejected += 1;
                        continue;
                    }
                    let e = c.saturating_add(h.total_len());
                    if let Some(slot) = self.boundaries.get_mut(&c) {
                        slot.end = Some(e);
                    }
                    e
                }
            };
            if end > run.end {
                continue; // waits for more bytes
            }
            let mut head = [0u8; 16];
            let n = self.pending.peek(c, &mut head);
            let Some(h) = FrameHeader::parse(&head[..n]) else { continue };
            let payload_start = c + h.header_len as u64;
            let payload = self.pending.contiguous(payload_start, h.length as usize);
            let inside: Vec<u64> = self.boundaries.range(c..end).map(|(&k, _)| k).collect();
            for k in inside {
                self.boundaries.remove(&k);
            }
            drop(self.pending.take(c..end));
            self.frames_parsed += 1;
            self.read_position = end;
            self.boundaries
                .entry(end)
                .or_insert(Boundary { certain: true, end: None, since: self.frames_parsed })
                .certain = true;
            out.push(RawFrame { frame_type: h.frame_type, payload });
            at = end;
            scan_end = scan_end.max(end);
        }
        self.forget_stale();
        rejected
    }

    /// Whether a tentative start at `at` lies inside a frame whose certain
    /// start (at or after `floor`) is known.
    fn covered_by_certain_frame(&self, at: u64, floor: u64) -> bool {
        self.boundaries
            .range(floor..at)
            .rev()
            .find(|(_, b)| b.certain)
            .is_some_and(|(_, b)| b.end.is_some_and(|e| e > at))
    }

    /// Forgets frame starts that made no progress while [`STALE_FRAMES`] frames
    /// were parsed elsewhere (their packet was lost), with their held bytes.
    fn forget_stale(&mut self) {
        let stale: Vec<u64> = self
            .boundaries
            .iter()
            .filter(|&(&k, b)| k != self.read_position && self.frames_parsed - b.since >= self.stale_frames)
            .map(|(&k, _)| k)
            .collect();
        for k in stale {
            self.forget_boundary(k);
            // The bytes up to the next frame start can no longer be parsed.
            let next = self.boundaries.range(k..).next().map_or(u64::MAX, |(&n, _)| n);
            drop(self.pending.take(k..next));
            // A run holding no frame start any more is forgotten whole, so a
            // long session with lost packets does not pile up ranges.
            let run = self.received.range_containing(k).or_else(|| self.received.range_containing(k.checked_sub(1)?));
            if let Some(run) = run
                && self.boundaries.range(run.start..=run.end).next().is_none()
                && run.end != self.read_position
            {
                self.forget_run(run);
            }
        }
    }

    /// Forgets a received run (its bytes may arrive again and be re-read).
    fn forget_run(&mut self, run: Range<u64>) {
        drop(self.pending.take(run.clone()));
        self.received.remove(run);
    }

    /// Drops held bytes that no remembered frame start can reach any more;
    /// returns how many.
    pub(crate) fn discard_unreachable(&mut self) -> usize {
        let lowest = self.boundaries.keys().next().copied().unwrap_or(u64::MAX);
        self.pending.discard_below(lowest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ty: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![ty, payload.len() as u8];
        v.extend_from_slice(payload);
        v
    }

    fn feed(s: &mut RequestStream, offset: u64, data: &[u8]) -> Vec<RawFrame> {
        s.on_data(offset, data, 1 << 20, 1 << 20);
        let mut out = Vec::new();
        s.poll_frames(1000, &mut out);
        s.discard_unreachable();
        out
    }

    #[test]
    fn reordered_and_late_joined_promises() {
        let a = frame(5, b"\x00aaaa");
        let b = frame(5, b"\x01bbbbbb");
        let mut s = RequestStream::default();
        // The second promise arrives first.
        assert_eq!(feed(&mut s, a.len() as u64, &b), vec![RawFrame { frame_type: 5, payload: b"\x01bbbbbb".to_vec() }]);
        assert_eq!(feed(&mut s, 0, &a), vec![RawFrame { frame_type: 5, payload: b"\x00aaaa".to_vec() }]);
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn a_promise_split_across_packets_is_not_misread() {
        let a = frame(5, b"\x00\x05\x05\x05\x05\x05\x05");
        let mut s = RequestStream::default();
        // The tail arrives first and looks like a frame start.
        assert!(feed(&mut s, 4, &a[4..]).is_empty());
        assert_eq!(feed(&mut s, 0, &a[..4]), vec![RawFrame { frame_type: 5, payload: a[2..].to_vec() }]);
    }

    /// Promises 0..n laid end to end, with their offsets.
    fn promises(n: u8) -> Vec<(u64, Vec<u8>)> {
        let mut at = 0;
        (0..n)
            .map(|i| {
                let f = frame(5, &[i, b'p', b'p', b'p']);
                let o = at;
                at += f.len() as u64;
                (o, f)
            })
            .collect()
    }

    #[test]
    fn planted_fragments_never_block_genuine_promises() {
        // Regression (hardening item 3): more than 1 024 disjoint one-byte
        // ranges planted ahead of the sender made every later byte of
        // stream 0 be dropped, genuine promises included.
        let mut s = RequestStream::default();
        for i in 0..5_000u64 {
            assert!(feed(&mut s, 100_000 + 2 * i, b"\x05").is_empty());
        }
        assert!(s.range_count() <= MAX_RANGES);
        for (o, f) in promises(50) {
            let got = feed(&mut s, o, &f);
            assert_eq!(got, vec![RawFrame { frame_type: 5, payload: f[2..].to_vec() }], "promise at {o}");
        }
        assert!(s.evicted > 0);
        assert!(s.boundaries.len() <= MAX_BOUNDARIES);
    }

    #[test]
    fn fragments_behind_a_lost_packet_are_forgotten_in_time() {
        // A long session that loses one promise packet in ten: held state
        // stays bounded and every promise that arrived is read.
        let mut s = RequestStream::default();
        let all = promises(250);
        let mut read = 0;
        for (i, (o, f)) in all.iter().enumerate() {
            if i % 10 == 3 {
                continue;
            }
            read += feed(&mut s, *o, f).len();
        }
        assert_eq!(read, 225);
        assert!(s.range_count() < 16, "{} ranges held", s.range_count());
        assert!(s.boundaries.len() < 16);
    }

    #[test]
    fn duplicates_cost_nothing_and_read_nothing() {
        let mut s = RequestStream::default();
        let all = promises(3);
        for (o, f) in &all {
            assert_eq!(feed(&mut s, *o, f).len(), 1);
        }
        for (o, f) in &all {
            assert!(feed(&mut s, *o, f).is_empty());
        }
    }

    #[test]
    fn oversized_frames_are_rejected_and_forgotten() {
        let mut s = RequestStream::default();
        s.on_data(0, &[5, 0x7f, 0xff], 1 << 20, 1 << 20);
        let mut out = Vec::new();
        assert_eq!(s.poll_frames(1000, &mut out), 1);
        assert!(out.is_empty());
    }
}
