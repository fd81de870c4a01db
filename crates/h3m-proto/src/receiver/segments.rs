//! Out-of-order stream bytes held until the parser can use them.

use std::collections::BTreeMap;
use std::ops::Range;

/// What one held segment costs beyond its bytes (B-tree slot, `Vec` header,
/// allocator rounding), charged against the receiver's memory budget.
pub const SEGMENT_OVERHEAD: usize = 64;

/// Non-overlapping byte segments keyed by stream offset.
///
/// Callers insert only bytes they have not seen before (see
/// [`RangeSet::gaps`](super::ranges::RangeSet::gaps)), so segments never overlap.
#[derive(Debug, Default)]
pub struct Segments {
    map: BTreeMap<u64, Vec<u8>>,
    bytes: usize,
}

impl Segments {
    /// How many bytes are held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The memory the held bytes cost: the bytes plus a fixed
    /// [`SEGMENT_OVERHEAD`] per segment (map node and allocation), so a flood of
    /// one-byte fragments is charged for what it really costs.
    pub fn footprint(&self) -> usize {
        self.bytes + self.map.len() * SEGMENT_OVERHEAD
    }

    /// Copies up to `buf.len()` contiguous bytes starting exactly at `from`
    /// into `buf`, without allocating; returns how many.
    pub fn peek(&self, from: u64, buf: &mut [u8]) -> usize {
        let mut n = 0;
        let mut at = from;
        let start = self.map.range(..=from).next_back().map_or(from, |(&k, _)| k);
        for (&off, seg) in self.map.range(start..) {
            if n >= buf.len() {
                break;
            }
            let end = off + seg.len() as u64;
            if end <= at {
                continue;
            }
            if off > at {
                break;
            }
            let skip = (at - off) as usize;
            let take = (seg.len() - skip).min(buf.len() - n);
            buf[n..n + take].copy_from_slice(&seg[skip..skip + take]);
            n += take;
            at += take as u64;
        }
        n
    }

    /// Holds `data` at `offset`.
    pub fn insert(&mut self, offset: u64, data: Vec<u8>) {
        if data.is_empty() {
            return;
        }
        self.bytes += data.len();
        self.map.insert(offset, data);
    }

    /// Up to `max` contiguous bytes starting exactly at `from`, copied out.
    pub fn contiguous(&self, from: u64, max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = from;
        let start = self.map.range(..=from).next_back().map_or(from, |(&k, _)| k);
        for (&off, seg) in self.map.range(start..) {
            if out.len() >= max {
                break;
            }
            let end = off + seg.len() as u64;
            if end <= at {
                continue;
            }
            if off > at {
                break;
            }
            let skip = (at - off) as usize;
            let take = (seg.len() - skip).min(max - out.len());
            out.extend_from_slice(&seg[skip..skip + take]);
            at += take as u64;
        }
        out
    }

    /// Removes and returns the bytes inside `range`, splitting segments that
    /// straddle its ends.
    pub fn take(&mut self, range: Range<u64>) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        if range.start >= range.end {
            return out;
        }
        // A segment that starts before the range and reaches into it: its
        // head stays, the rest is taken (and a tail beyond the range stays).
        if let Some((&k, seg)) = self.map.range(..range.start).next_back()
            && k + seg.len() as u64 > range.start
            && let Some(mut head) = self.map.remove(&k)
        {
            self.bytes -= head.len();
            let middle = head.split_off((range.start - k) as usize);
            self.insert(k, head);
            out.push((range.start, self.keep_tail(range.start, middle, range.end)));
        }
        // Segments that start inside: moved out whole, not copied.
        while let Some((&k, _)) = self.map.range(range.start..range.end).next() {
            let Some(seg) = self.map.remove(&k) else { break };
            self.bytes -= seg.len();
            out.push((k, self.keep_tail(k, seg, range.end)));
        }
        out
    }

    /// `seg` (at `at`) cut at `end`: what lies beyond `end` is held again.
    fn keep_tail(&mut self, at: u64, mut seg: Vec<u8>, end: u64) -> Vec<u8> {
        let len = end.saturating_sub(at);
        if (seg.len() as u64) > len {
            let tail = seg.split_off(len as usize);
            self.insert(end, tail);
        }
        seg
    }

    /// Drops every byte below `offset`; returns how many were dropped.
    pub fn discard_below(&mut self, offset: u64) -> usize {
        let before = self.bytes;
        while let Some(mut entry) = self.map.first_entry() {
            let k = *entry.key();
            if k >= offset {
                break;
            }
            let seg = entry.get_mut();
            let end = k + seg.len() as u64;
            if end <= offset {
                self.bytes -= entry.remove().len();
                continue;
            }
            // Straddles `offset`: keep the part from it on.
            let mut seg = entry.remove();
            self.bytes -= seg.len();
            seg.drain(..(offset - k) as usize);
            self.insert(offset, seg);
            break;
        }
        before - self.bytes
    }

    /// Drops everything; returns how many bytes were held.
    pub fn clear(&mut self) -> usize {
        let n = self.bytes;
        self.map.clear();
        self.bytes = 0;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_and_take() {
        let mut s = Segments::default();
        s.insert(10, b"abcde".to_vec());
        s.insert(15, b"fgh".to_vec());
        s.insert(30, b"xyz".to_vec());
        assert_eq!(s.contiguous(12, 100), b"cdefgh");
        let mut buf = [0u8; 4];
        assert_eq!(s.peek(12, &mut buf), 4);
        assert_eq!(&buf, b"cdef");
        assert_eq!(s.peek(9, &mut buf), 0);
        assert_eq!(s.footprint(), 11 + 3 * SEGMENT_OVERHEAD);
        assert_eq!(s.contiguous(12, 2), b"cd");
        assert_eq!(s.contiguous(9, 100), b"");
        assert_eq!(s.take(12..16), vec![(12, b"cde".to_vec()), (15, b"f".to_vec())]);
        assert_eq!(s.bytes(), 2 + 2 + 3);
        assert_eq!(s.contiguous(10, 100), b"ab");
        assert_eq!(s.discard_below(31), 2 + 2 + 1);
        assert_eq!(s.contiguous(31, 10), b"yz");
        assert_eq!(s.clear(), 2);
    }

    /// Holds `(offset, len)` segments of bytes `offset % 251`.
    fn held(segments: &[(u64, usize)]) -> Segments {
        let mut s = Segments::default();
        for &(off, len) in segments {
            s.insert(off, (off..off + len as u64).map(|i| (i % 251) as u8).collect());
        }
        s
    }

    /// Every byte held, as `(offset, byte)`.
    fn bytes_of(s: &Segments) -> Vec<(u64, u8)> {
        s.map.iter().flat_map(|(&k, v)| v.iter().enumerate().map(move |(i, &b)| (k + i as u64, b))).collect()
    }

    proptest::proptest! {
        #[test]
        fn take_and_discard_move_exactly_the_bytes_asked_for(
            layout in proptest::collection::vec((0u64..4, 1usize..6), 0..12),
            a in 0u64..80, b in 0u64..80, cut in 0u64..80,
        ) {
            // Disjoint segments laid out with gaps.
            let mut at = 0;
            let segments: Vec<(u64, usize)> = layout.iter().map(|&(gap, len)| {
                at += gap;
                let seg = (at, len);
                at += len as u64;
                seg
            }).collect();
            let range = a.min(b)..a.max(b);
            let mut s = held(&segments);
            let all = bytes_of(&s);
            let taken: Vec<(u64, u8)> = s.take(range.clone()).into_iter()
                .flat_map(|(k, v)| v.into_iter().enumerate().map(move |(i, b)| (k + i as u64, b)))
                .collect();
            let want: Vec<(u64, u8)> = all.iter().copied().filter(|(o, _)| range.contains(o)).collect();
            proptest::prop_assert_eq!(&taken, &want);
            let left: Vec<(u64, u8)> = all.iter().copied().filter(|(o, _)| !range.contains(o)).collect();
            proptest::prop_assert_eq!(bytes_of(&s), left.clone());
            proptest::prop_assert_eq!(s.bytes(), left.len());
            let dropped = s.discard_below(cut);
            proptest::prop_assert_eq!(dropped, left.iter().filter(|(o, _)| *o < cut).count());
            let kept: Vec<(u64, u8)> = left.into_iter().filter(|(o, _)| *o >= cut).collect();
            proptest::prop_assert_eq!(s.bytes(), kept.len());
            proptest::prop_assert_eq!(bytes_of(&s), kept);
        }
    }
}
