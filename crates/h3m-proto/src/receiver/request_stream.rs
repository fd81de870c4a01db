//! Stream 0, the request stream: a sequence of PUSH_PROMISE frames with no
//! stream-type byte and no FIN.
//!
//! A receiver may join late or lose a packet, so the stream is not parsed with
//! one cursor. Frame starts are known for certain at offset 0 and at the end of
//! every parsed frame; the start of every STREAM frame is a likely frame start
//! too (nghq and h3m senders begin each promise in a fresh STREAM frame), tried
//! only where no certain frame is known to cover it.

use std::collections::BTreeMap;

use super::ranges::RangeSet;
use super::segments::Segments;
use crate::h3::FrameHeader;

/// Bounds on the frame starts remembered.
const MAX_BOUNDARIES: usize = 1024;

#[derive(Debug)]
pub(crate) struct RequestStream {
    received: RangeSet,
    pending: Segments,
    /// Candidate frame starts; `true` when certain.
    boundaries: BTreeMap<u64, bool>,
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
            boundaries: BTreeMap::from([(0, true)]),
        }
    }
}

impl RequestStream {
    pub(crate) fn buffered(&self) -> usize {
        self.pending.bytes()
    }

    /// Takes a STREAM frame's bytes; returns how many were dropped for lack of room.
    pub(crate) fn on_data(&mut self, offset: u64, data: &[u8], max_buffered: usize, budget: usize) -> usize {
        let end = offset + data.len() as u64;
        let mut dropped = 0;
        let mut budget = budget;
        for gap in self.received.gaps(offset..end) {
            let n = (gap.end - gap.start) as usize;
            if self.pending.bytes() + n > max_buffered || n > budget || self.received.range_count() > MAX_BOUNDARIES {
                dropped += n;
                continue;
            }
            budget -= n;
            if gap.start == offset && self.boundaries.len() < MAX_BOUNDARIES {
                self.boundaries.entry(offset).or_insert(false);
            }
            let bytes = &data[(gap.start - offset) as usize..(gap.end - offset) as usize];
            self.pending.insert(gap.start, bytes.to_vec());
            self.received.insert(gap.clone());
        }
        dropped
    }

    /// Whether a tentative start at `at` lies inside a frame whose certain start is known.
    fn covered_by_certain_frame(&self, at: u64) -> bool {
        self.boundaries.range(..at).rev().find(|(_, certain)| **certain).is_some_and(|(&c, _)| {
            FrameHeader::parse(&self.pending.contiguous(c, 16)).is_some_and(|h| c.saturating_add(h.total_len()) > at)
        })
    }

    /// Reads every frame that can be read. Frames longer than `max_frame` are
    /// dropped (their start is forgotten); returns how many were.
    pub(crate) fn poll_frames(&mut self, max_frame: u64, out: &mut Vec<RawFrame>) -> usize {
        let mut rejected = 0;
        'restart: loop {
            let starts: Vec<(u64, bool)> = self.boundaries.iter().map(|(&k, &v)| (k, v)).collect();
            for (at, certain) in starts {
                if !certain && self.covered_by_certain_frame(at) {
                    self.boundaries.remove(&at);
                    continue;
                }
                let Some(h) = FrameHeader::parse(&self.pending.contiguous(at, 16)) else { continue };
                if h.length > max_frame {
                    self.boundaries.remove(&at);
                    rejected += 1;
                    continue;
                }
                let payload_start = at + h.header_len as u64;
                let payload = self.pending.contiguous(payload_start, h.length as usize);
                if (payload.len() as u64) < h.length {
                    continue;
                }
                let end = payload_start + h.length;
                self.boundaries.remove(&at);
                let inside: Vec<u64> = self.boundaries.range(at..end).map(|(&k, _)| k).collect();
                for k in inside {
                    self.boundaries.remove(&k);
                }
                drop(self.pending.take(at..end));
                self.boundaries.insert(end, true);
                out.push(RawFrame { frame_type: h.frame_type, payload });
                continue 'restart;
            }
            return rejected;
        }
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

    #[test]
    fn reordered_and_late_joined_promises() {
        let a = frame(5, b"\x00aaaa");
        let b = frame(5, b"\x01bbbbbb");
        let mut s = RequestStream::default();
        let mut out = Vec::new();
        // The second promise arrives first.
        s.on_data(a.len() as u64, &b, 1 << 20, 1 << 20);
        s.poll_frames(1000, &mut out);
        assert_eq!(out, vec![RawFrame { frame_type: 5, payload: b"\x01bbbbbb".to_vec() }]);
        s.on_data(0, &a, 1 << 20, 1 << 20);
        out.clear();
        s.poll_frames(1000, &mut out);
        assert_eq!(out, vec![RawFrame { frame_type: 5, payload: b"\x00aaaa".to_vec() }]);
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn a_promise_split_across_packets_is_not_misread() {
        let a = frame(5, b"\x00\x05\x05\x05\x05\x05\x05");
        let mut s = RequestStream::default();
        let mut out = Vec::new();
        // The tail arrives first and looks like a frame start.
        s.on_data(4, &a[4..], 1 << 20, 1 << 20);
        s.poll_frames(1000, &mut out);
        assert!(out.is_empty());
        s.on_data(0, &a[..4], 1 << 20, 1 << 20);
        s.poll_frames(1000, &mut out);
        assert_eq!(out, vec![RawFrame { frame_type: 5, payload: a[2..].to_vec() }]);
    }
}
