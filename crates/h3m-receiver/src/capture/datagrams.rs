//! `.datagrams` files: records of a 4-byte big-endian length and exactly that
//! many bytes (one UDP payload each), with no file header.

use super::{CaptureError, CaptureStats, Datagram, MAX_DATAGRAM_LEN, read_array};

/// The position in a `.datagrams` file.
#[derive(Debug, Default)]
pub(super) struct Reader {
    pos: usize,
}

impl Reader {
    /// The next record: `None` at the end of the file; a file that ends inside
    /// a record, or a record longer than [`MAX_DATAGRAM_LEN`], is an error.
    pub(super) fn next(&mut self, bytes: &[u8], stats: &mut CaptureStats) -> Option<Result<Datagram, CaptureError>> {
        let start = self.pos;
        if start >= bytes.len() {
            return None;
        }
        let offset = start as u64;
        let Some(len) = read_array::<4>(bytes, start).map(u32::from_be_bytes) else {
            return Some(Err(CaptureError::Truncated { offset }));
        };
        if len > MAX_DATAGRAM_LEN {
            return Some(Err(CaptureError::DatagramTooLong { offset, len }));
        }
        let body = start
            .checked_add(4)
            .and_then(|b| Some((b, b.checked_add(len as usize)?)))
            .and_then(|(b, e)| bytes.get(b..e));
        let Some(body) = body else {
            return Some(Err(CaptureError::Truncated { offset }));
        };
        self.pos = start + 4 + body.len();
        stats.records += 1;
        stats.udp_datagrams += 1;
        Some(Ok(Datagram { timestamp: None, source: None, destination: None, payload: body.to_vec() }))
    }
}
