//! Classic libpcap files: a 24-byte file header (magic, version 2.x, link
//! type) and records of a 16-byte header (seconds, fraction, captured length,
//! original length) and the captured bytes, in the writer's byte order.

use std::time::Duration;

use super::link::Link;
use super::window::{Span, Window};
use super::{CaptureError, CaptureStats, Format, Record, record_start};

/// Size of the classic pcap file header.
const HEADER_LEN: usize = 24;
/// Size of a classic pcap record header.
const RECORD_HEADER_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    fn u32(self, b: [u8; 4]) -> u32 {
        match self {
            Endian::Little => u32::from_le_bytes(b),
            Endian::Big => u32::from_be_bytes(b),
        }
    }

    fn u16(self, b: [u8; 2]) -> u16 {
        match self {
            Endian::Little => u16::from_le_bytes(b),
            Endian::Big => u16::from_be_bytes(b),
        }
    }
}

/// A classic pcap file being read.
#[derive(Debug)]
pub(super) struct Reader {
    endian: Endian,
    nanosecond: bool,
    link: Link,
    pos: usize,
}

impl Reader {
    /// `None` when `magic` is no pcap magic; else the checked file header.
    pub(super) fn detect(magic: [u8; 4], w: Window<'_>) -> Option<Result<Option<(Format, Reader)>, CaptureError>> {
        let (endian, nanosecond) = match magic {
            [0xa1, 0xb2, 0xc3, 0xd4] => (Endian::Big, false),
            [0xd4, 0xc3, 0xb2, 0xa1] => (Endian::Little, false),
            [0xa1, 0xb2, 0x3c, 0x4d] => (Endian::Big, true),
            [0x4d, 0x3c, 0xb2, 0xa1] => (Endian::Little, true),
            _ => return None,
        };
        Some(Self::header(w, endian, nanosecond))
    }

    fn header(w: Window<'_>, endian: Endian, nanosecond: bool) -> Result<Option<(Format, Reader)>, CaptureError> {
        let header = match w.array::<HEADER_LEN>(0) {
            Ok(header) => header,
            Err(Span::More) => return Ok(None),
            Err(_) => {
                return Err(CaptureError::BadHeader(format!(
                    "file header truncated: {} of {HEADER_LEN} bytes",
                    w.end()
                )));
            }
        };
        let major = endian.u16([header[4], header[5]]);
        let minor = endian.u16([header[6], header[7]]);
        if major != 2 {
            return Err(CaptureError::BadHeader(format!("unsupported pcap version {major}.{minor} (expected 2.x)")));
        }
        // Bits 26..=31 of the link type field may carry FCS information.
        let link_type = endian.u32([header[20], header[21], header[22], header[23]]) & 0x03ff_ffff;
        let Some(link) = Link::from_link_type(link_type) else {
            return Err(CaptureError::UnsupportedLinkType(link_type));
        };
        Ok(Some((Format::Pcap { link_type, nanosecond }, Reader { endian, nanosecond, link, pos: HEADER_LEN })))
    }

    /// The next record (a file cut inside a record ends it, flagged as
    /// `truncated_tail`).
    /// The file offset of the next record.
    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    /// The next record (or a wish for more of the file).
    pub(super) fn next<'a>(&mut self, w: Window<'a>, stats: &mut CaptureStats) -> Record<'a> {
        let start = self.pos;
        if let Some(record) = record_start(w, start) {
            return record;
        }
        let header = match w.array::<RECORD_HEADER_LEN>(start) {
            Ok(header) => header,
            Err(Span::More) => return Record::More,
            Err(_) => {
                stats.truncated_tail = true;
                return Record::End;
            }
        };
        let field =
            |i: usize| self.endian.u32([header[i * 4], header[i * 4 + 1], header[i * 4 + 2], header[i * 4 + 3]]);
        let (ts_sec, ts_frac, caplen, origlen) = (field(0), field(1), field(2), field(3));
        let data_start = start + RECORD_HEADER_LEN;
        let data = match w.span(data_start, caplen as usize) {
            Span::Bytes(data) => data,
            Span::More => return Record::More,
            Span::Cut => {
                stats.truncated_tail = true;
                return Record::End;
            }
        };
        self.pos = data_start + data.len();
        stats.records += 1;
        if caplen < origlen {
            stats.truncated_records += 1;
            return Record::Skip;
        }
        let frac_nanos = if self.nanosecond { u64::from(ts_frac) } else { u64::from(ts_frac) * 1_000 };
        let timestamp = Duration::from_secs(u64::from(ts_sec)) + Duration::from_nanos(frac_nanos);
        Record::Frame { link: self.link, timestamp: Some(timestamp), data }
    }
}
