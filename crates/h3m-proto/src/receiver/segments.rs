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
        let first = self.map.range(..range.start).next_back().map(|(&k, v)| (k, v.len()));
        let mut keys: Vec<u64> = Vec::new();
        if let Some((k, len)) = first
            && k + len as u64 > range.start
        {
            keys.push(k);
        }
        keys.extend(self.map.range(range.start..range.end).map(|(&k, _)| k));
        for k in keys {
            let Some(seg) = self.map.remove(&k) else { continue };
            self.bytes -= seg.len();
            let end = k + seg.len() as u64;
            let lo = range.start.max(k);
            let hi = range.end.min(end);
            if k < lo {
                self.insert(k, seg[..(lo - k) as usize].to_vec());
            }
            if hi < end {
                self.insert(hi, seg[(hi - k) as usize..].to_vec());
            }
            if lo < hi {
                out.push((lo, seg[(lo - k) as usize..(hi - k) as usize].to_vec()));
            }
        }
        out
    }

    /// Drops every byte below `offset`; returns how many were dropped.
    pub fn discard_below(&mut self, offset: u64) -> usize {
        let before = self.bytes;
        drop(self.take(0..offset));
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
}
