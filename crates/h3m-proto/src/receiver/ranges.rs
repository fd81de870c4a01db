//! A set of half-open `u64` ranges: which stream offsets have arrived.

use std::ops::Range;

/// Disjoint, sorted, non-adjacent half-open ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<Range<u64>>,
}

impl RangeSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of disjoint ranges (a measure of fragmentation).
    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }

    /// The ranges, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Range<u64>> {
        self.ranges.iter()
    }

    /// Index of the first range whose end is at or after `at`.
    fn first_ending_at_or_after(&self, at: u64) -> usize {
        self.ranges.partition_point(|r| r.end < at)
    }

    /// Whether every offset in `range` is present (an empty range always is).
    pub fn contains(&self, range: Range<u64>) -> bool {
        if range.start >= range.end {
            return true;
        }
        let i = self.ranges.partition_point(|r| r.end <= range.start);
        self.ranges.get(i).is_some_and(|r| r.start <= range.start && r.end >= range.end)
    }

    /// The parts of `range` that are not present, in order.
    pub fn gaps(&self, range: Range<u64>) -> Vec<Range<u64>> {
        let mut out = Vec::new();
        let mut at = range.start;
        let i = self.ranges.partition_point(|r| r.end <= range.start);
        for r in &self.ranges[i..] {
            if r.start >= range.end {
                break;
            }
            if r.start > at {
                out.push(at..r.start);
            }
            at = at.max(r.end);
        }
        if at < range.end {
            out.push(at..range.end);
        }
        out
    }

    /// Adds `range`.
    pub fn insert(&mut self, range: Range<u64>) {
        if range.start >= range.end {
            return;
        }
        let i = self.first_ending_at_or_after(range.start);
        let mut j = i;
        let mut merged = range;
        while let Some(r) = self.ranges.get(j) {
            if r.start > merged.end {
                break;
            }
            merged.start = merged.start.min(r.start);
            merged.end = merged.end.max(r.end);
            j += 1;
        }
        self.ranges.splice(i..j, std::iter::once(merged));
    }

    /// The end of the range that starts at 0, or 0 when 0 is absent.
    pub fn contiguous_prefix(&self) -> u64 {
        match self.ranges.first() {
            Some(r) if r.start == 0 => r.end,
            _ => 0,
        }
    }

    /// The highest offset present plus one (0 when empty).
    pub fn max_end(&self) -> u64 {
        self.ranges.last().map_or(0, |r| r.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn insert_merges_and_gaps_report_holes() {
        let mut s = RangeSet::new();
        s.insert(10..20);
        s.insert(30..40);
        assert_eq!(s.gaps(0..50), vec![0..10, 20..30, 40..50]);
        s.insert(20..30);
        assert_eq!(s.range_count(), 1);
        assert!(s.contains(12..38));
        assert!(!s.contains(5..12));
        s.insert(0..5);
        assert_eq!(s.gaps(0..40), vec![5..10]);
        assert_eq!(s.contiguous_prefix(), 5);
        assert_eq!(s.max_end(), 40);
    }

    proptest! {
        #[test]
        fn matches_a_bitmap(ops in proptest::collection::vec((0u64..200, 0u64..30), 0..30), q in (0u64..200, 0u64..60)) {
            let mut s = RangeSet::new();
            let mut bits = [false; 260];
            for (start, len) in ops {
                s.insert(start..start + len);
                for b in &mut bits[start as usize..(start + len) as usize] { *b = true; }
            }
            let (qs, ql) = q;
            let expect_gaps: Vec<u64> = (qs..qs + ql).filter(|&i| !bits[i as usize]).collect();
            let got: Vec<u64> = s.gaps(qs..qs + ql).into_iter().flatten().collect();
            prop_assert_eq!(got, expect_gaps.clone());
            prop_assert_eq!(s.contains(qs..qs + ql), expect_gaps.is_empty());
            let v: Vec<_> = s.iter().cloned().collect();
            for w in v.windows(2) { prop_assert!(w[0].end < w[1].start); }
        }
    }
}
