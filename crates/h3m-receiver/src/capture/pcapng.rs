//! pcapng files (what Wireshark and dumpcap write by default), read block by
//! block with the `pcap-parser` crate.
//!
//! A file is one or more sections, each a Section Header Block (its byte-order
//! magic sets the byte order of the section) followed by Interface Description
//! Blocks and packet blocks:
//!
//! * an **Enhanced Packet Block** names its interface (by index in the
//!   section) and carries a 64-bit timestamp in that interface's units:
//!   `if_tsresol` (default 6: microseconds; `10^-n`, or `2^-n` with the high
//!   bit set) and `if_tsoffset` (seconds added, default 0);
//! * a **Simple Packet Block** belongs to the first interface and has no
//!   timestamp (its datagrams get none).
//!
//! Other blocks (name resolution, statistics, custom, ...) are skipped.
//! Packets of an interface whose link type is not supported are counted as
//! `skipped_non_udp`; packets captured short of their original length as
//! `truncated_records`. A file that ends inside a block stops there
//! (`truncated_tail`); a block that does not parse, a packet of an undefined
//! interface, an unknown byte order or version, an unusable timestamp
//! resolution or a timestamp out of range is a [`CaptureError::BadPcapNg`].

use std::time::Duration;

use pcap_parser::nom;
use pcap_parser::pcapng::{Block, InterfaceDescriptionBlock, parse_block_be, parse_block_le};
use pcap_parser::{OptionCode, PcapError};

use super::link::Link;
use super::window::{Span, Window};
use super::{CaptureError, CaptureStats, Record, read_array, record_start};

/// The first four bytes of a pcapng file: the Section Header Block type.
pub(super) const MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
/// The byte-order magic 0x1A2B3C4D as a big-endian section writes it.
const BOM_BE: [u8; 4] = [0x1a, 0x2b, 0x3c, 0x4d];
/// The byte-order magic as a little-endian section writes it.
const BOM_LE: [u8; 4] = [0x4d, 0x3c, 0x2b, 0x1a];
/// Type, length and trailing length.
const MIN_BLOCK_LEN: usize = 12;

fn bad(offset: usize, reason: impl Into<String>) -> CaptureError {
    CaptureError::BadPcapNg { offset: offset as u64, reason: reason.into() }
}

/// An interface of the current section.
#[derive(Debug)]
struct Interface {
    /// `None`: a link type that is not supported.
    link: Option<Link>,
    /// Timestamp units per second (`if_tsresol`).
    units_per_second: u64,
    /// Seconds added to every timestamp (`if_tsoffset`).
    offset_seconds: i64,
    /// Captured length limit (0: none).
    snaplen: u32,
}

impl Interface {
    fn new(idb: &InterfaceDescriptionBlock<'_>, big_endian: bool) -> Result<Interface, String> {
        let (mut tsresol, mut tsoffset) = (None, None);
        for option in &idb.options {
            let Ok(value) = option.as_bytes() else { continue };
            if option.code == OptionCode::IfTsresol && tsresol.is_none() {
                tsresol = value.first().copied();
            } else if option.code == OptionCode::IfTsoffset && tsoffset.is_none() {
                tsoffset = read_array::<8>(value, 0)
                    .map(|b| if big_endian { i64::from_be_bytes(b) } else { i64::from_le_bytes(b) });
            }
        }
        let tsresol = tsresol.unwrap_or(6);
        let exponent = u32::from(tsresol & 0x7f);
        let units_per_second =
            if tsresol & 0x80 == 0 { 10u64.checked_pow(exponent) } else { 1u64.checked_shl(exponent) }
                .ok_or_else(|| format!("timestamp resolution if_tsresol {tsresol:#04x} does not fit 64 bits"))?;
        Ok(Interface {
            link: u32::try_from(idb.linktype.0).ok().and_then(Link::from_link_type),
            units_per_second,
            offset_seconds: tsoffset.unwrap_or(0),
            snaplen: idb.snaplen,
        })
    }

    /// The capture time of a timestamp of this interface; `None` before 1970
    /// or beyond `u64` seconds.
    fn timestamp(&self, high: u32, low: u32) -> Option<Duration> {
        let units = (u64::from(high) << 32) | u64::from(low);
        let per_second = self.units_per_second.max(1);
        let nanos = u128::from(units % per_second) * 1_000_000_000 / u128::from(per_second);
        let secs = i128::from(units / per_second) + i128::from(self.offset_seconds);
        Some(Duration::new(u64::try_from(secs).ok()?, u32::try_from(nanos).ok()?))
    }
}

/// A pcapng file being read.
/// What the window holds of the block at the reader's position.
enum BlockAt {
    /// All of it: its length and the section's byte order.
    Whole { len: usize, big_endian: bool },
    /// Part of it; the file goes on.
    More,
    /// Part of it; the file ends inside it.
    Cut,
}

#[derive(Debug)]
pub(super) struct Reader {
    pos: usize,
    big_endian: bool,
    interfaces: Vec<Interface>,
}

/// What a block's type is called in messages.
fn block_name(block_type: [u8; 4], big_endian: bool) -> String {
    let t = if big_endian { u32::from_be_bytes(block_type) } else { u32::from_le_bytes(block_type) };
    match t {
        0x0a0d_0d0a => "section header block".into(),
        1 => "interface description block".into(),
        3 => "simple packet block".into(),
        6 => "enhanced packet block".into(),
        other => format!("block of type {other:#x}"),
    }
}

/// Why `pcap-parser` refused a block, without echoing its bytes.
fn parse_failure(e: &nom::Err<PcapError<&[u8]>>) -> String {
    match e {
        nom::Err::Incomplete(_) => "its content is cut short".into(),
        nom::Err::Error(e) | nom::Err::Failure(e) => match e {
            PcapError::HeaderNotRecognized => "unrecognized section header".into(),
            PcapError::NomError(_, nom::error::ErrorKind::Verify)
            | PcapError::OwnedNomError(_, nom::error::ErrorKind::Verify) => {
                "its length fields do not agree with each other or with its content".into()
            }
            PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
                format!("inconsistent content ({})", kind.description())
            }
            other => format!("{other:?}"),
        },
    }
}

impl Reader {
    /// Checks that the file starts with a whole Section Header Block; `None`:
    /// the window does not hold all of it yet.
    pub(super) fn new(w: Window<'_>) -> Result<Option<Reader>, CaptureError> {
        let mut reader = Reader { pos: 0, big_endian: false, interfaces: Vec::new() };
        match reader.block_at(w)? {
            BlockAt::Whole { .. } => Ok(Some(reader)),
            BlockAt::More => Ok(None),
            BlockAt::Cut => Err(bad(0, format!("file ends inside the section header block ({} bytes)", w.end()))),
        }
    }

    /// The file offset of the next block.
    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    /// The length and byte order of the block at the current position.
    fn block_at(&mut self, w: Window<'_>) -> Result<BlockAt, CaptureError> {
        let at = self.pos;
        let head = match w.array::<8>(at) {
            Ok(head) => head,
            Err(Span::More) => return Ok(BlockAt::More),
            Err(_) => return Ok(BlockAt::Cut),
        };
        let big_endian = if head[..4] == MAGIC {
            match w.array::<4>(at.saturating_add(8)) {
                Ok(BOM_BE) => true,
                Ok(BOM_LE) => false,
                Ok(other) => return Err(bad(at, format!("unknown byte-order magic {other:02x?}"))),
                Err(Span::More) => return Ok(BlockAt::More),
                Err(_) => return Ok(BlockAt::Cut),
            }
        } else {
            self.big_endian
        };
        let len_field = [head[4], head[5], head[6], head[7]];
        let len = if big_endian { u32::from_be_bytes(len_field) } else { u32::from_le_bytes(len_field) } as usize;
        if len < MIN_BLOCK_LEN || !len.is_multiple_of(4) {
            let name = block_name([head[0], head[1], head[2], head[3]], big_endian);
            return Err(bad(at, format!("{name} with a length of {len} bytes")));
        }
        Ok(match w.span(at, len) {
            Span::Bytes(_) => BlockAt::Whole { len, big_endian },
            Span::More => BlockAt::More,
            Span::Cut => BlockAt::Cut,
        })
    }

    /// The next record.
    pub(super) fn next<'a>(&mut self, w: Window<'a>, stats: &mut CaptureStats) -> Result<Record<'a>, CaptureError> {
        let start = self.pos;
        if let Some(record) = record_start(w, start) {
            return Ok(record);
        }
        let (len, big_endian) = match self.block_at(w)? {
            BlockAt::Whole { len, big_endian } => (len, big_endian),
            BlockAt::More => return Ok(Record::More),
            BlockAt::Cut => {
                stats.truncated_tail = true;
                return Ok(Record::End);
            }
        };
        let Span::Bytes(block) = w.span(start, len) else { return Ok(Record::More) };
        let parsed = if big_endian { parse_block_be(block) } else { parse_block_le(block) };
        let block = match parsed {
            Ok((_, block)) => block,
            Err(e) => {
                let name = block_name(read_array::<4>(block, 0).unwrap_or_default(), big_endian);
                return Err(bad(start, format!("{name} does not parse: {}", parse_failure(&e))));
            }
        };
        self.pos = start + len;
        match block {
            Block::SectionHeader(shb) => {
                if shb.major_version != 1 {
                    let version = format!("{}.{}", shb.major_version, shb.minor_version);
                    return Err(bad(start, format!("unsupported pcapng version {version} (expected 1.x)")));
                }
                self.big_endian = big_endian;
                self.interfaces.clear();
                Ok(Record::Skip)
            }
            Block::InterfaceDescription(idb) => {
                let interface = Interface::new(&idb, big_endian)
                    .map_err(|reason| bad(start, format!("interface {}: {reason}", self.interfaces.len())))?;
                self.interfaces.push(interface);
                Ok(Record::Skip)
            }
            Block::EnhancedPacket(epb) => {
                let Some(interface) = usize::try_from(epb.if_id).ok().and_then(|i| self.interfaces.get(i)) else {
                    let defined = self.interfaces.len();
                    let reason = format!("packet of interface {}, but the section describes {defined}", epb.if_id);
                    return Err(bad(start, reason));
                };
                stats.records += 1;
                if epb.caplen < epb.origlen {
                    stats.truncated_records += 1;
                    return Ok(Record::Skip);
                }
                let Some(link) = interface.link else {
                    stats.skipped_non_udp += 1;
                    return Ok(Record::Skip);
                };
                let timestamp = interface
                    .timestamp(epb.ts_high, epb.ts_low)
                    .ok_or_else(|| bad(start, "packet timestamp out of range"))?;
                let data = epb.data.get(..epb.caplen as usize).unwrap_or(epb.data);
                Ok(Record::Frame { link, timestamp: Some(timestamp), data })
            }
            Block::SimplePacket(spb) => {
                let Some(interface) = self.interfaces.first() else {
                    return Err(bad(start, "simple packet block in a section without interfaces"));
                };
                stats.records += 1;
                let original = spb.origlen as usize;
                let mut captured = spb.data.len().min(original);
                if interface.snaplen != 0 {
                    captured = captured.min(interface.snaplen as usize);
                }
                if captured < original {
                    stats.truncated_records += 1;
                    return Ok(Record::Skip);
                }
                let Some(link) = interface.link else {
                    stats.skipped_non_udp += 1;
                    return Ok(Record::Skip);
                };
                Ok(Record::Frame { link, timestamp: None, data: spb.data.get(..captured).unwrap_or_default() })
            }
            _ => Ok(Record::Skip),
        }
    }
}
