//! IP fragment reassembly (IPv4 MF / offset, the IPv6 Fragment header) with bounded memory.
//!
//! Fragments are grouped by [`FragmentKey`]. A reassembly completes when its pieces tile the payload
//! from 0 to the end given by the last fragment; overlapping or contradicting fragments abandon it (RFC
//! 5722), exact duplicates are ignored. At most [`ReassemblyLimits::max_pending`] reassemblies holding at
//! most [`ReassemblyLimits::max_pending_bytes`] octets are pending at once; the oldest are evicted to make
//! room. What happened is counted in [`ReassemblyCounters`].

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use super::IpError;

/// The largest payload a reassembly may produce (the IPv4 Total Length and IPv6 Payload Length limit).
pub const MAX_PAYLOAD_LEN: usize = 65_535;

/// Default bound on the number of reassemblies pending at once.
pub const DEFAULT_MAX_PENDING_REASSEMBLIES: usize = 64;

/// Default bound on the fragment octets held by pending reassemblies.
pub const DEFAULT_MAX_PENDING_FRAGMENT_BYTES: usize = 256 * 1024;

/// Memory bounds of fragment reassembly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// At most this many reassemblies are pending at once; starting one more evicts the oldest.
    pub max_pending: usize,
    /// At most this many fragment payload octets are held by pending reassemblies; the oldest are
    /// evicted to make room.
    pub max_pending_bytes: usize,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        Self { max_pending: DEFAULT_MAX_PENDING_REASSEMBLIES, max_pending_bytes: DEFAULT_MAX_PENDING_FRAGMENT_BYTES }
    }
}

/// Identifies the fragments of one IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragmentKey {
    /// Source address.
    pub source: IpAddr,
    /// Destination address.
    pub destination: IpAddr,
    /// Identification (IPv4: 16 bits).
    pub identification: u32,
    /// IPv4 protocol / the IPv6 Fragment header's next header.
    pub protocol: u8,
}

/// What a [`Reassembler`] did so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyCounters {
    /// Well-formed fragments taken.
    pub fragments: u64,
    /// Payloads completed.
    pub reassembled: u64,
    /// Fragments discarded: exact duplicates, fragments of reassemblies abandoned because of overlapping
    /// or inconsistent fragments, evicted by the memory bounds, or still pending at [`Reassembler::finish`].
    pub dropped: u64,
}

/// One pending reassembly.
#[derive(Debug)]
struct Pending {
    /// Creation order, for eviction.
    seq: u64,
    /// Non-empty, non-overlapping pieces sorted by offset.
    pieces: Vec<(usize, Vec<u8>)>,
    /// Payload length, once the last fragment has been seen.
    total: Option<usize>,
    /// Sum of the pieces' lengths.
    bytes: usize,
    /// Fragments accepted so far.
    count: u64,
}

/// Bounded-memory fragment reassembly (see the module documentation).
#[derive(Debug)]
pub struct Reassembler {
    limits: ReassemblyLimits,
    pending: HashMap<FragmentKey, Pending>,
    /// Creation order of the pending reassemblies.
    order: BTreeMap<u64, FragmentKey>,
    next_seq: u64,
    /// Sum of the pending reassemblies' bytes.
    bytes: usize,
    counters: ReassemblyCounters,
}

impl Reassembler {
    /// An empty reassembler with the memory bounds `limits`.
    pub fn new(limits: ReassemblyLimits) -> Self {
        Self {
            limits,
            pending: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            bytes: 0,
            counters: ReassemblyCounters::default(),
        }
    }

    /// The memory bounds.
    pub fn limits(&self) -> ReassemblyLimits {
        self.limits
    }

    /// The counters so far.
    pub fn counters(&self) -> ReassemblyCounters {
        self.counters
    }

    /// Reassemblies pending.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Fragment payload octets held by the pending reassemblies.
    pub fn pending_bytes(&self) -> usize {
        self.bytes
    }

    fn remove(&mut self, key: &FragmentKey) -> Option<Pending> {
        let entry = self.pending.remove(key)?;
        self.order.remove(&entry.seq);
        self.bytes -= entry.bytes;
        Some(entry)
    }

    /// Drops a reassembly, counting its fragments (and `extra` more) as dropped.
    fn abandon(&mut self, key: &FragmentKey, extra: u64) {
        let count = self.remove(key).map_or(0, |entry| entry.count);
        self.counters.dropped += count + extra;
    }

    /// Evicts the oldest reassembly other than `keep`; false if there is none.
    fn evict_oldest(&mut self, keep: &FragmentKey) -> bool {
        let Some(key) = self.order.values().find(|&key| key != keep).copied() else {
            return false;
        };
        self.abandon(&key, 0);
        true
    }

    /// Takes one fragment whose payload `data` sits at `offset` of the original payload (`more`: its More
    /// Fragments flag); returns the whole payload once complete.
    ///
    /// [`IpError::BadFragment`] (the fragment is not counted) when it ends beyond [`MAX_PAYLOAD_LEN`], or
    /// is not the last one and is empty or not a multiple of 8 octets long.
    pub fn insert(
        &mut self,
        key: FragmentKey,
        offset: usize,
        more: bool,
        data: &[u8],
    ) -> Result<Option<Vec<u8>>, IpError> {
        let end = offset.saturating_add(data.len());
        if end > MAX_PAYLOAD_LEN || (more && (data.is_empty() || !data.len().is_multiple_of(8))) {
            return Err(IpError::BadFragment { offset, len: data.len(), more });
        }
        self.counters.fragments += 1;
        if data.len() > self.limits.max_pending_bytes {
            self.counters.dropped += 1;
            return Ok(None);
        }

        if let Some(entry) = self.pending.get(&key) {
            let mut consistent = match entry.total {
                Some(total) => {
                    if more {
                        end <= total
                    } else {
                        end == total
                    }
                }
                None => more || entry.pieces.last().is_none_or(|(o, d)| o + d.len() <= end),
            };
            if !more && entry.total == Some(end) && data.is_empty() {
                // A repeated empty last fragment.
                self.counters.dropped += 1;
                return Ok(None);
            }
            for (o, d) in &entry.pieces {
                if *o < end && offset < o + d.len() {
                    if *o == offset && d.as_slice() == data {
                        // An exact duplicate: harmless, ignore it.
                        self.counters.dropped += 1;
                        return Ok(None);
                    }
                    consistent = false;
                }
            }
            if !consistent {
                // Overlapping or contradicting fragments (RFC 5722): give up on the whole packet.
                self.abandon(&key, 1);
                return Ok(None);
            }
        } else {
            while self.pending.len() >= self.limits.max_pending {
                if !self.evict_oldest(&key) {
                    // max_pending is 0.
                    self.counters.dropped += 1;
                    return Ok(None);
                }
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            self.order.insert(seq, key);
            self.pending.insert(key, Pending { seq, pieces: Vec::new(), total: None, bytes: 0, count: 0 });
        }

        while self.bytes + data.len() > self.limits.max_pending_bytes {
            if !self.evict_oldest(&key) {
                // Only this reassembly is left and it cannot grow: give up.
                self.abandon(&key, 1);
                return Ok(None);
            }
        }

        let Some(entry) = self.pending.get_mut(&key) else { return Ok(None) };
        if !more {
            entry.total = Some(end);
        }
        if !data.is_empty() {
            let at = entry.pieces.partition_point(|(o, _)| *o < offset);
            entry.pieces.insert(at, (offset, data.to_vec()));
        }
        entry.bytes += data.len();
        entry.count += 1;
        self.bytes += data.len();

        if entry.total != Some(entry.bytes) {
            return Ok(None);
        }
        // No overlaps and as many bytes as the total: the pieces tile it.
        let Some(entry) = self.remove(&key) else { return Ok(None) };
        let mut whole = Vec::with_capacity(entry.bytes);
        for (_, piece) in entry.pieces {
            whole.extend_from_slice(&piece);
        }
        self.counters.reassembled += 1;
        Ok(Some(whole))
    }

    /// Gives up on every pending reassembly, counting their fragments as dropped (at the end of a
    /// capture).
    pub fn finish(&mut self) {
        for entry in self.pending.values() {
            self.counters.dropped += entry.count;
        }
        self.pending.clear();
        self.order.clear();
        self.bytes = 0;
    }

    /// The internal bookkeeping agrees with itself (for tests).
    #[cfg(test)]
    pub(crate) fn is_consistent(&self) -> bool {
        self.bytes == self.pending.values().map(|e| e.bytes).sum::<usize>()
            && self.order.len() == self.pending.len()
            && self.pending.len() <= self.limits.max_pending
            && self.bytes <= self.limits.max_pending_bytes
    }
}
