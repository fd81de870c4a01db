//! A set of half-open `u64` ranges: which stream offsets have arrived.

use std::collections::BTreeMap;
use std::ops::Range;

/// Disjoint, sorted, non-adjacent half-open ranges.
///
/// Backed by an ordered map from range start to range end, so an insert or a
/// lookup costs O(log n) whatever the order the ranges arrive in: a stream
/// planted with tens of thousands of one-byte fragments costs no more per
/// fragment than an in-order one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: BTreeMap<u64, u64>,
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

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The ranges, in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Range<u64>> + '_ {
        self.ranges.iter().map(|(&s, &e)| s..e)
    }

    /// How many offsets are present.
    pub fn covered(&self) -> u64 {
        self.ranges.iter().map(|(s, e)| e - s).sum()
    }

    /// The range holding `at` or ending exactly at it, if any.
    fn touching(&self, at: u64) -> Option<Range<u64>> {
        let (&s, &e) = self.ranges.range(..=at).next_back()?;
        (e >= at).then_some(s..e)
    }

    /// The range that holds offset `at`, if any.
    pub fn range_containing(&self, at: u64) -> Option<Range<u64>> {
        self.touching(at).filter(|r| r.end > at)
    }

    /// Whether every offset in `range` is present (an empty range always is).
    pub fn contains(&self, range: Range<u64>) -> bool {
        if range.start >= range.end {
            return true;
        }
        self.range_containing(range.start).is_some_and(|r| r.end >= range.end)
    }

    /// The parts of `range` that are not present, in order.
    pub fn gaps(&self, range: Range<u64>) -> Vec<Range<u64>> {
        self.gaps_within(range).into_iter().collect()
    }

    /// As [`gaps`](Self::gaps), allocating nothing when there is at most one
    /// gap (the common answer for a datagram's bytes: all new, or all known).
    pub fn gaps_within(&self, range: Range<u64>) -> Gaps {
        let mut out = Gaps::default();
        if range.start >= range.end {
            return out;
        }
        let mut at = range.start;
        if let Some(r) = self.touching(range.start) {
            at = at.max(r.end);
        }
        for (&s, &e) in self.ranges.range(range.start..range.end) {
            if s > at {
                out.push(at..s);
            }
            at = at.max(e);
        }
        if at < range.end {
            out.push(at..range.end);
        }
        out
    }

    /// Whether adding `range` would leave the set with more ranges than now.
    pub fn would_add_range(&self, range: Range<u64>) -> bool {
        if range.start >= range.end {
            return false;
        }
        self.touching(range.start).is_none() && self.ranges.range(range.start..=range.end).next().is_none()
    }

    /// Adds `range`.
    pub fn insert(&mut self, range: Range<u64>) {
        if range.start >= range.end {
            return;
        }
        // At or past the last range (in-order data, new push IDs): one lookup.
        match self.ranges.last_entry() {
            None => {
                self.ranges.insert(range.start, range.end);
                return;
            }
            Some(last) if range.start > *last.get() => {
                self.ranges.insert(range.start, range.end);
                return;
            }
            Some(mut last) if range.start >= *last.key() => {
                let end = last.get_mut();
                *end = (*end).max(range.end);
                return;
            }
            Some(_) => {}
        }
        let mut merged = range;
        if let Some(r) = self.touching(merged.start) {
            merged.start = r.start;
            merged.end = merged.end.max(r.end);
            self.ranges.remove(&r.start);
        }
        while let Some((&s, &e)) = self.ranges.range(merged.start..=merged.end).next() {
            merged.end = merged.end.max(e);
            self.ranges.remove(&s);
        }
        self.ranges.insert(merged.start, merged.end);
    }

    /// Removes every offset below `at`.
    pub fn remove_below(&mut self, at: u64) {
        // Range by range from the lowest: each range is removed once, without
        // the allocations of splitting the tree (callers mostly drop one).
        while let Some(entry) = self.ranges.first_entry() {
            if *entry.key() >= at {
                break;
            }
            let end = entry.remove();
            if end > at {
                self.ranges.insert(at, end);
                break;
            }
        }
    }

    /// Removes every offset in `range`.
    pub fn remove(&mut self, range: Range<u64>) {
        if range.start >= range.end {
            return;
        }
        let mut above = self.ranges.split_off(&range.start);
        // A range starting below the cut may reach into it.
        if let Some((&s, &e)) = self.ranges.iter().next_back()
            && e > range.start
        {
            self.ranges.insert(s, range.start);
            if e > range.end {
                self.ranges.insert(range.end, e);
            }
        }
        let rest = above.split_off(&range.end);
        if let Some((_, &e)) = above.iter().next_back()
            && e > range.end
        {
            self.ranges.insert(range.end, e);
        }
        self.ranges.extend(rest);
    }

    /// Removes the range with the highest start and returns it.
    pub fn pop_last(&mut self) -> Option<Range<u64>> {
        self.ranges.pop_last().map(|(s, e)| s..e)
    }

    /// The end of the range that starts at 0, or 0 when 0 is absent.
    pub fn contiguous_prefix(&self) -> u64 {
        match self.ranges.first_key_value() {
            Some((0, &e)) => e,
            _ => 0,
        }
    }

    /// The highest offset present plus one (0 when empty).
    pub fn max_end(&self) -> u64 {
        self.ranges.last_key_value().map_or(0, |(_, &e)| e)
    }
}

/// The gaps [`RangeSet::gaps_within`] found, in order: the first one held
/// inline, the rest (rare) in a vector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gaps {
    first: Option<Range<u64>>,
    rest: Vec<Range<u64>>,
}

impl Gaps {
    fn push(&mut self, gap: Range<u64>) {
        if self.first.is_none() {
            self.first = Some(gap);
        } else {
            self.rest.push(gap);
        }
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }
}

impl IntoIterator for Gaps {
    type Item = Range<u64>;
    type IntoIter = std::iter::Chain<std::option::IntoIter<Range<u64>>, std::vec::IntoIter<Range<u64>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.rest)
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
            let v: Vec<_> = s.iter().collect();
            for w in v.windows(2) { prop_assert!(w[0].end < w[1].start); }
            prop_assert_eq!(s.covered(), bits.iter().filter(|&&b| b).count() as u64);
            for at in 0..260u64 {
                prop_assert_eq!(s.range_containing(at).is_some(), bits[at as usize]);
            }
            // would_add_range predicts what insert does to the count.
            let before = s.range_count();
            let predicted = s.would_add_range(qs..qs + ql);
            let mut t = s.clone();
            t.insert(qs..qs + ql);
            prop_assert_eq!(predicted, t.range_count() > before);
            // remove takes out exactly the offsets asked for.
            let mut r = s.clone();
            r.remove(qs..qs + ql);
            for at in 0..260u64 {
                prop_assert_eq!(r.range_containing(at).is_some(), bits[at as usize] && !(qs..qs + ql).contains(&at));
            }
            let rv: Vec<_> = r.iter().collect();
            for w in rv.windows(2) { prop_assert!(w[0].end < w[1].start); }
            // remove_below keeps exactly the offsets at or above the cut.
            let mut u = s.clone();
            u.remove_below(qs);
            for at in 0..260u64 {
                prop_assert_eq!(u.range_containing(at).is_some(), bits[at as usize] && at >= qs);
            }
        }
    }

    #[test]
    fn fragment_floods_cost_log_time() {
        // 65 536 one-byte fragments in shuffled order, then the holes: a
        // Vec-backed set moved half the set per insert (quadratic).
        let mut s = RangeSet::new();
        let n = 65_536u64;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut order: Vec<u64> = (0..n).collect();
        for i in (1..order.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        for &i in &order {
            s.insert(2 * i..2 * i + 1);
        }
        assert_eq!(s.range_count(), n as usize);
        for &i in &order {
            s.insert(2 * i + 1..2 * i + 2);
        }
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0..2 * n]);
        assert_eq!(s.pop_last(), Some(0..2 * n));
        assert!(s.is_empty());
    }
}
