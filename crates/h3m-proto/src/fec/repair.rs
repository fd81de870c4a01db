//! The repair datagram: one Reed-Solomon repair symbol of one block, with
//! everything a receiver needs to use it (no other signalling).
//!
//! ```text
//! offset  size  field
//!      0     4  magic "h3mF"
//!      4     1  version (1)
//!      5     1  session ID length L (0..=20)
//!      6     L  session ID (the short header's DCID)
//!    6+L     8  group's first packet number (full 62-bit value, big-endian)
//!   14+L     4  group length n: source datagrams in the group (1..)
//!   18+L     4  full group length: the most datagrams a group of the
//!               session holds (≥ n; a receiver keeps three times that)
//!   22+L     2  depth D: blocks interleaved in the group (1..=1024)
//!   24+L     2  block index i (< min(D, n))
//!   26+L     2  repair symbols of this block R (1..)
//!   28+L     2  this symbol's index (< R)
//!   30+L     2  symbol length S (even, 2..)
//!   32+L     S  the repair symbol
//! ```
//!
//! Block `i` of a group holds the packet numbers `first + i + j·D` for
//! `j < ⌈(n − i) / D⌉`; its source symbol `j` is that datagram as sent (the
//! protected bytes) behind a 2-byte big-endian length, zero-padded to `S`.

use crate::SessionId;
use crate::session_id::MAX_SESSION_ID_LEN;

/// The first bytes of every repair datagram.
pub const MAGIC: [u8; 4] = *b"h3mF";
/// The wire version this module reads and writes.
pub const VERSION: u8 = 1;
/// Most source symbols in one block.
pub const MAX_BLOCK_SOURCES: u32 = 4096;
/// Most repair symbols in one block.
pub const MAX_BLOCK_REPAIRS: u16 = 4096;
/// Most blocks interleaved in one group.
pub const MAX_DEPTH: u16 = 1024;
/// The fixed part of the header after the session ID.
const FIXED_TAIL: usize = 8 + 4 + 4 + 2 + 2 + 2 + 2 + 2;

/// Why a repair datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RepairError {
    /// Shorter than its header.
    #[error("repair datagram too short")]
    TooShort,
    /// Not an h3m repair datagram.
    #[error("not an h3m repair datagram (bad magic)")]
    BadMagic,
    /// A version this receiver does not know.
    #[error("repair datagram version {0} is not supported")]
    Version(u8),
    /// A session ID longer than 20 bytes.
    #[error("session ID length {0} exceeds 20")]
    SessionIdLength(u8),
    /// A field out of its range.
    #[error("repair datagram field out of range: {0}")]
    OutOfRange(&'static str),
    /// The symbol's length is not the one the header names.
    #[error("repair symbol of {got} bytes, header says {expected}")]
    SymbolLength {
        /// From the header.
        expected: u16,
        /// What follows it.
        got: usize,
    },
}

/// The header of a repair datagram (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairHeader {
    /// The session it repairs.
    pub session_id: SessionId,
    /// The packet number of the group's first source datagram.
    pub group_first: u64,
    /// Source datagrams in the group.
    pub group_len: u32,
    /// The most source datagrams a group of the session holds (the first
    /// group of a session is shorter, so its repair comes soon).
    pub full_group_len: u32,
    /// Blocks interleaved in the group.
    pub depth: u16,
    /// This block's index in the group.
    pub block: u16,
    /// Repair symbols of this block.
    pub repair_count: u16,
    /// This symbol's index among them.
    pub repair_index: u16,
    /// The symbol length of the block.
    pub symbol_len: u16,
}

impl RepairHeader {
    /// Source symbols of this block: `⌈(n − i) / D⌉`.
    pub fn sources(&self) -> u32 {
        block_sources(self.group_len, self.depth, self.block)
    }

    /// The packet number of source symbol `j` of this block.
    pub fn source_pn(&self, j: u32) -> u64 {
        self.group_first + u64::from(self.block) + u64::from(j) * u64::from(self.depth)
    }

    /// The packet number of the block's last source symbol.
    pub fn last_pn(&self) -> u64 {
        self.source_pn(self.sources().saturating_sub(1))
    }

    /// Appends the datagram carrying `symbol` under this header to `out`.
    pub fn write(&self, symbol: &[u8], out: &mut Vec<u8>) {
        debug_assert_eq!(symbol.len(), usize::from(self.symbol_len));
        out.reserve(6 + self.session_id.len() + FIXED_TAIL + symbol.len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.session_id.len() as u8);
        out.extend_from_slice(self.session_id.as_bytes());
        out.extend_from_slice(&self.group_first.to_be_bytes());
        out.extend_from_slice(&self.group_len.to_be_bytes());
        out.extend_from_slice(&self.full_group_len.to_be_bytes());
        for v in [self.depth, self.block, self.repair_count, self.repair_index, self.symbol_len] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(symbol);
    }

    /// Reads a repair datagram: its header (every field checked against the
    /// limits of this module) and its symbol.
    pub fn parse(datagram: &[u8]) -> Result<(RepairHeader, &[u8]), RepairError> {
        let head = datagram.get(..6).ok_or(RepairError::TooShort)?;
        if head[..4] != MAGIC {
            return Err(RepairError::BadMagic);
        }
        if head[4] != VERSION {
            return Err(RepairError::Version(head[4]));
        }
        let sid_len = usize::from(head[5]);
        if sid_len > MAX_SESSION_ID_LEN {
            return Err(RepairError::SessionIdLength(head[5]));
        }
        let rest = &datagram[6..];
        if rest.len() < sid_len + FIXED_TAIL {
            return Err(RepairError::TooShort);
        }
        let (sid, rest) = rest.split_at(sid_len);
        let session_id = SessionId::new(sid).map_err(|_| RepairError::SessionIdLength(head[5]))?;
        let (fixed, symbol) = rest.split_at(FIXED_TAIL);
        let u16_at = |i: usize| u16::from_be_bytes([fixed[i], fixed[i + 1]]);
        let header = RepairHeader {
            session_id,
            group_first: u64::from_be_bytes(fixed[..8].try_into().expect("8 bytes")),
            group_len: u32::from_be_bytes(fixed[8..12].try_into().expect("4 bytes")),
            full_group_len: u32::from_be_bytes(fixed[12..16].try_into().expect("4 bytes")),
            depth: u16_at(16),
            block: u16_at(18),
            repair_count: u16_at(20),
            repair_index: u16_at(22),
            symbol_len: u16_at(24),
        };
        header.check()?;
        if symbol.len() != usize::from(header.symbol_len) {
            return Err(RepairError::SymbolLength { expected: header.symbol_len, got: symbol.len() });
        }
        Ok((header, symbol))
    }

    /// Every field within its range.
    fn check(&self) -> Result<(), RepairError> {
        let bad = |what| Err(RepairError::OutOfRange(what));
        if self.group_first >= 1 << 62 {
            return bad("group's first packet number");
        }
        if self.depth == 0 || self.depth > MAX_DEPTH {
            return bad("depth");
        }
        if self.group_len == 0 || u64::from(self.group_len) > u64::from(self.depth) * u64::from(MAX_BLOCK_SOURCES) {
            return bad("group length");
        }
        if self.full_group_len < self.group_len
            || u64::from(self.full_group_len) > u64::from(MAX_DEPTH) * u64::from(MAX_BLOCK_SOURCES)
        {
            return bad("full group length");
        }
        if u32::from(self.block) >= self.group_len.min(u32::from(self.depth)) {
            return bad("block index");
        }
        if self.repair_count == 0 || self.repair_count > MAX_BLOCK_REPAIRS {
            return bad("repair count");
        }
        if self.repair_index >= self.repair_count {
            return bad("repair index");
        }
        if self.symbol_len < 2 || !self.symbol_len.is_multiple_of(2) {
            return bad("symbol length");
        }
        Ok(())
    }
}

/// Source symbols of block `block` of a group of `group_len` datagrams over
/// `depth` blocks.
pub fn block_sources(group_len: u32, depth: u16, block: u16) -> u32 {
    group_len.saturating_sub(u32::from(block)).div_ceil(u32::from(depth.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header() -> RepairHeader {
        RepairHeader {
            session_id: SessionId::from_hex("2a").unwrap(),
            group_first: 1000,
            group_len: 10,
            full_group_len: 12,
            depth: 4,
            block: 1,
            repair_count: 2,
            repair_index: 1,
            symbol_len: 6,
        }
    }

    #[test]
    fn a_header_round_trips_byte_exact() {
        let mut out = Vec::new();
        header().write(&[1, 2, 3, 4, 5, 6], &mut out);
        assert_eq!(
            out,
            [
                b"h3mF".as_slice(),
                &[1, 1, 0x2a],
                &1000u64.to_be_bytes(),
                &10u32.to_be_bytes(),
                &12u32.to_be_bytes(),
                &[0, 4, 0, 1, 0, 2, 0, 1, 0, 6],
                &[1, 2, 3, 4, 5, 6]
            ]
            .concat()
        );
        let (h, symbol) = RepairHeader::parse(&out).unwrap();
        assert_eq!((h, symbol), (header(), &[1, 2, 3, 4, 5, 6][..]));
        // Block 1 of 10 datagrams over depth 4: packet numbers 1001, 1005, 1009.
        assert_eq!((h.sources(), h.source_pn(0), h.last_pn()), (3, 1001, 1009));
    }

    #[test]
    fn malformed_headers_get_their_error() {
        let mut good = Vec::new();
        header().write(&[0; 6], &mut good);
        assert_eq!(RepairHeader::parse(&good[..5]), Err(RepairError::TooShort));
        assert_eq!(
            RepairHeader::parse(&good[..good.len() - 1]),
            Err(RepairError::SymbolLength { expected: 6, got: 5 })
        );
        let mut bad = good.clone();
        bad[0] = b'x';
        assert_eq!(RepairHeader::parse(&bad), Err(RepairError::BadMagic));
        bad = good.clone();
        bad[4] = 2;
        assert_eq!(RepairHeader::parse(&bad), Err(RepairError::Version(2)));
        bad = good.clone();
        bad[5] = 21;
        assert_eq!(RepairHeader::parse(&bad), Err(RepairError::SessionIdLength(21)));
        for (h, what) in [
            (RepairHeader { depth: 0, ..header() }, "depth"),
            (RepairHeader { depth: MAX_DEPTH + 1, ..header() }, "depth"),
            (RepairHeader { group_len: 0, ..header() }, "group length"),
            (
                RepairHeader {
                    group_len: 4 * MAX_BLOCK_SOURCES + 1,
                    full_group_len: 4 * MAX_BLOCK_SOURCES + 1,
                    ..header()
                },
                "group length",
            ),
            (RepairHeader { full_group_len: 9, ..header() }, "full group length"),
            (RepairHeader { block: 4, ..header() }, "block index"),
            (RepairHeader { group_len: 1, ..header() }, "block index"),
            (RepairHeader { repair_count: 0, repair_index: 0, ..header() }, "repair count"),
            (RepairHeader { repair_index: 2, ..header() }, "repair index"),
            (RepairHeader { group_first: 1 << 62, ..header() }, "group's first packet number"),
        ] {
            let mut d = Vec::new();
            h.write(&[0; 6], &mut d);
            assert_eq!(RepairHeader::parse(&d), Err(RepairError::OutOfRange(what)), "{h:?}");
        }
        let mut d = Vec::new();
        RepairHeader { symbol_len: 5, ..header() }.write(&[0; 5], &mut d);
        assert_eq!(RepairHeader::parse(&d), Err(RepairError::OutOfRange("symbol length")));
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_fail_without_panicking(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = RepairHeader::parse(&data);
            let mut d = b"h3mF\x01".to_vec();
            d.extend_from_slice(&data);
            if let Ok((h, symbol)) = RepairHeader::parse(&d) {
                // What parses writes back to the same bytes.
                let mut again = Vec::new();
                h.write(symbol, &mut again);
                prop_assert_eq!(again, d);
                prop_assert!(h.sources() >= 1 && h.sources() <= MAX_BLOCK_SOURCES);
            }
        }

        #[test]
        fn every_packet_number_of_a_group_is_in_exactly_one_block(n in 1u32..3000, depth in 1u16..64) {
            let mut seen = vec![0u8; n as usize];
            for block in 0..depth.min(n as u16) {
                let h = RepairHeader { group_len: n, full_group_len: n, depth, block, group_first: 0, ..header() };
                for j in 0..h.sources() {
                    seen[h.source_pn(j) as usize] += 1;
                }
            }
            prop_assert!(seen.iter().all(|&c| c == 1));
        }
    }
}
