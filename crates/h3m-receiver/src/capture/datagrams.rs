//! `.datagrams` files: records of a 4-byte big-endian length and exactly that
//! many bytes (one UDP payload each), with no file header.

use super::window::{Span, Window};
use super::{CaptureError, CaptureStats, Datagram, MAX_DATAGRAM_LEN, Record, record_start};

/// The position in a `.datagrams` file.
#[derive(Debug, Default)]
pub(super) struct Reader {
    pos: usize,
}

impl Reader {
    /// The file offset of the next record.
    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    /// The next record: a datagram, the end of the file, or a wish for more
    /// of it.
    pub(super) fn next<'a>(&mut self, w: Window<'a>, stats: &mut CaptureStats) -> Result<Record<'a>, CaptureError> {
        let start = self.pos;
        if let Some(record) = record_start(w, start) {
            return Ok(record);
        }
        let offset = start as u64;
        let len = match w.array::<4>(start) {
            Ok(len) => u32::from_be_bytes(len),
            Err(Span::More) => return Ok(Record::More),
            Err(_) => return Err(CaptureError::Truncated { offset }),
        };
        if len > MAX_DATAGRAM_LEN {
            return Err(CaptureError::DatagramTooLong { offset, len });
        }
        let body = match w.span(start.saturating_add(4), len as usize) {
            Span::Bytes(body) => body,
            Span::More => return Ok(Record::More),
            Span::Cut => return Err(CaptureError::Truncated { offset }),
        };
        self.pos = start + 4 + body.len();
        stats.records += 1;
        stats.udp_datagrams += 1;
        Ok(Record::Udp(Datagram { timestamp: None, source: None, destination: None, payload: body.to_vec() }))
    }
}
