//! QUIC frames inside an h3m packet (RFC 9000 §19, profiled by
//! draft-pardue-quic-http-mcast-07 §4).
//!
//! A sender uses STREAM frames (all eight type variants), PADDING, PING and
//! RESET_STREAM. Every other QUIC v1 frame type is prohibited on a multicast
//! session; the draft tells receivers to ignore them, so [`FrameReader`] parses
//! their fields to skip them and yields [`Frame::Ignored`]. A type the parser does
//! not know cannot be skipped (its length is unknown), so it ends the packet with
//! [`FrameError::UnknownType`]; frames before it stay valid.

use crate::varint::{self, Reader, VarIntError};

/// The largest stream offset plus length QUIC allows (2^62 - 1).
pub const MAX_STREAM_END: u64 = varint::MAX;

/// One QUIC frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A run of PADDING bytes (type 0x00); `len` is how many.
    Padding {
        /// Number of zero bytes in the run.
        len: usize,
    },
    /// PING (0x01): a keep-alive.
    Ping,
    /// RESET_STREAM (0x04): the sender abandoned a stream.
    ResetStream {
        /// The stream.
        stream_id: u64,
        /// The application error code.
        error_code: u64,
        /// The stream's final size.
        final_size: u64,
    },
    /// STREAM (0x08 to 0x0f).
    Stream {
        /// The stream.
        stream_id: u64,
        /// The offset of `data` in the stream.
        offset: u64,
        /// The bytes.
        data: &'a [u8],
        /// Whether this frame ends the stream.
        fin: bool,
    },
    /// A recognised QUIC v1 frame that h3m receivers ignore (ACK, CRYPTO,
    /// MAX_DATA, CONNECTION_CLOSE, DATAGRAM, ...).
    Ignored {
        /// The frame type.
        frame_type: u64,
    },
}

/// Why the rest of a packet's frames could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A field runs past the end of the packet.
    #[error("frame truncated")]
    Truncated,
    /// A frame type with no known layout; the rest of the packet is unreadable.
    #[error("unknown frame type {0:#x}")]
    UnknownType(u64),
    /// A STREAM frame whose offset plus length exceeds 2^62 - 1.
    #[error("stream data beyond 2^62-1")]
    StreamTooLong,
    /// A NEW_CONNECTION_ID frame with a connection ID longer than 20 bytes.
    #[error("malformed frame of type {0:#x}")]
    Malformed(u64),
}

impl From<VarIntError> for FrameError {
    fn from(_: VarIntError) -> Self {
        FrameError::Truncated
    }
}

/// Iterates over the frames of a packet payload.
///
/// After the first error the iterator is exhausted.
#[derive(Debug, Clone)]
pub struct FrameReader<'a> {
    r: Reader<'a>,
    failed: bool,
}

impl<'a> FrameReader<'a> {
    /// A reader over a packet's plaintext payload.
    pub fn new(payload: &'a [u8]) -> Self {
        FrameReader { r: Reader::new(payload), failed: false }
    }

    fn read(&mut self) -> Result<Frame<'a>, FrameError> {
        use frame_type::*;
        let r = &mut self.r;
        let ty = r.varint()?;
        let ignored = Frame::Ignored { frame_type: ty };
        let frame = match ty {
            PADDING => {
                let zeros = r.remaining().iter().take_while(|&&b| b == 0).count();
                r.bytes(zeros)?;
                Frame::Padding { len: zeros + 1 }
            }
            PING => Frame::Ping,
            ACK | ACK_ECN => {
                skip_ack(r, ty == ACK_ECN)?;
                ignored
            }
            RESET_STREAM => {
                Frame::ResetStream { stream_id: r.varint()?, error_code: r.varint()?, final_size: r.varint()? }
            }
            STOP_SENDING | MAX_STREAM_DATA | STREAM_DATA_BLOCKED => {
                r.varint()?; // stream ID
                r.varint()?; // error code / limit
                ignored
            }
            CRYPTO => {
                r.varint()?; // offset
                skip_length_prefixed(r)?;
                ignored
            }
            NEW_TOKEN | DATAGRAM_WITH_LENGTH => {
                skip_length_prefixed(r)?;
                ignored
            }
            STREAM_FIRST..=STREAM_LAST => read_stream(r, ty)?,
            MAX_DATA | MAX_STREAMS_BIDI | MAX_STREAMS_UNI | DATA_BLOCKED | STREAMS_BLOCKED_BIDI
            | STREAMS_BLOCKED_UNI | RETIRE_CONNECTION_ID => {
                r.varint()?;
                ignored
            }
            NEW_CONNECTION_ID => {
                r.varint()?; // sequence number
                r.varint()?; // retire prior to
                let len = r.u8()?;
                if len > 20 {
                    return Err(FrameError::Malformed(ty));
                }
                r.bytes(usize::from(len) + 16)?; // connection ID, reset token
                ignored
            }
            PATH_CHALLENGE | PATH_RESPONSE => {
                r.bytes(8)?;
                ignored
            }
            CONNECTION_CLOSE | CONNECTION_CLOSE_APP => {
                r.varint()?; // error code
                if ty == CONNECTION_CLOSE {
                    r.varint()?; // frame type
                }
                skip_length_prefixed(r)?; // reason phrase
                ignored
            }
            HANDSHAKE_DONE => ignored,
            DATAGRAM => {
                r.rest();
                ignored
            }
            other => return Err(FrameError::UnknownType(other)),
        };
        Ok(frame)
    }
}

/// QUIC frame types (RFC 9000 §19, RFC 9221) as they appear on the wire.
pub mod frame_type {
    /// PADDING.
    pub const PADDING: u64 = 0x00;
    /// PING.
    pub const PING: u64 = 0x01;
    /// ACK.
    pub const ACK: u64 = 0x02;
    /// ACK with ECN counts.
    pub const ACK_ECN: u64 = 0x03;
    /// RESET_STREAM.
    pub const RESET_STREAM: u64 = 0x04;
    /// STOP_SENDING.
    pub const STOP_SENDING: u64 = 0x05;
    /// CRYPTO.
    pub const CRYPTO: u64 = 0x06;
    /// NEW_TOKEN.
    pub const NEW_TOKEN: u64 = 0x07;
    /// The first STREAM type (no offset, no length, no FIN).
    pub const STREAM_FIRST: u64 = 0x08;
    /// The last STREAM type (offset, length and FIN).
    pub const STREAM_LAST: u64 = 0x0f;
    /// STREAM type bit: an offset field is present.
    pub const STREAM_OFF_BIT: u64 = 0x04;
    /// STREAM type bit: a length field is present.
    pub const STREAM_LEN_BIT: u64 = 0x02;
    /// STREAM type bit: the stream ends with this frame.
    pub const STREAM_FIN_BIT: u64 = 0x01;
    /// MAX_DATA.
    pub const MAX_DATA: u64 = 0x10;
    /// MAX_STREAM_DATA.
    pub const MAX_STREAM_DATA: u64 = 0x11;
    /// MAX_STREAMS (bidirectional).
    pub const MAX_STREAMS_BIDI: u64 = 0x12;
    /// MAX_STREAMS (unidirectional).
    pub const MAX_STREAMS_UNI: u64 = 0x13;
    /// DATA_BLOCKED.
    pub const DATA_BLOCKED: u64 = 0x14;
    /// STREAM_DATA_BLOCKED.
    pub const STREAM_DATA_BLOCKED: u64 = 0x15;
    /// STREAMS_BLOCKED (bidirectional).
    pub const STREAMS_BLOCKED_BIDI: u64 = 0x16;
    /// STREAMS_BLOCKED (unidirectional).
    pub const STREAMS_BLOCKED_UNI: u64 = 0x17;
    /// NEW_CONNECTION_ID.
    pub const NEW_CONNECTION_ID: u64 = 0x18;
    /// RETIRE_CONNECTION_ID.
    pub const RETIRE_CONNECTION_ID: u64 = 0x19;
    /// PATH_CHALLENGE.
    pub const PATH_CHALLENGE: u64 = 0x1a;
    /// PATH_RESPONSE.
    pub const PATH_RESPONSE: u64 = 0x1b;
    /// CONNECTION_CLOSE (transport).
    pub const CONNECTION_CLOSE: u64 = 0x1c;
    /// CONNECTION_CLOSE (application).
    pub const CONNECTION_CLOSE_APP: u64 = 0x1d;
    /// HANDSHAKE_DONE.
    pub const HANDSHAKE_DONE: u64 = 0x1e;
    /// DATAGRAM without a length (to the end of the packet).
    pub const DATAGRAM: u64 = 0x30;
    /// DATAGRAM with a length.
    pub const DATAGRAM_WITH_LENGTH: u64 = 0x31;
}

/// Skips an ACK frame's fields (after its type).
fn skip_ack(r: &mut Reader<'_>, ecn: bool) -> Result<(), FrameError> {
    r.varint()?; // largest acknowledged
    r.varint()?; // ack delay
    let ranges = r.varint()?;
    r.varint()?; // first range
    for _ in 0..ranges {
        r.varint()?; // gap
        r.varint()?; // range length
    }
    if ecn {
        for _ in 0..3 {
            r.varint()?; // ECT(0), ECT(1), ECN-CE counts
        }
    }
    Ok(())
}

/// Skips a length-prefixed field.
fn skip_length_prefixed(r: &mut Reader<'_>) -> Result<(), FrameError> {
    let len = r.varint()?;
    r.bytes_u64(len)?;
    Ok(())
}

/// Reads a STREAM frame of type `ty` (after its type).
fn read_stream<'a>(r: &mut Reader<'a>, ty: u64) -> Result<Frame<'a>, FrameError> {
    use frame_type::{STREAM_FIN_BIT, STREAM_LEN_BIT, STREAM_OFF_BIT};
    let stream_id = r.varint()?;
    let offset = if ty & STREAM_OFF_BIT != 0 { r.varint()? } else { 0 };
    let data = if ty & STREAM_LEN_BIT != 0 {
        let len = r.varint()?;
        r.bytes_u64(len)?
    } else {
        r.rest()
    };
    if offset.checked_add(data.len() as u64).is_none_or(|end| end > MAX_STREAM_END) {
        return Err(FrameError::StreamTooLong);
    }
    Ok(Frame::Stream { stream_id, offset, data, fin: ty & STREAM_FIN_BIT != 0 })
}

impl<'a> Iterator for FrameReader<'a> {
    type Item = Result<Frame<'a>, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.r.is_empty() {
            return None;
        }
        let item = self.read();
        self.failed = item.is_err();
        Some(item)
    }
}

/// The encoded size of a STREAM frame header for these fields.
pub fn stream_header_len(stream_id: u64, offset: u64, data_len: usize, with_length: bool) -> usize {
    1 + varint::encoded_len(stream_id)
        + if offset > 0 { varint::encoded_len(offset) } else { 0 }
        + if with_length { varint::encoded_len(data_len as u64) } else { 0 }
}

/// Appends a STREAM frame. The Offset field is written only when `offset` is
/// non-zero and the Length field only when `with_length` is set (a frame without
/// it runs to the end of the packet), as nghq does.
pub fn encode_stream(
    stream_id: u64,
    offset: u64,
    data: &[u8],
    fin: bool,
    with_length: bool,
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    if offset.checked_add(data.len() as u64).is_none_or(|end| end > MAX_STREAM_END) {
        return Err(FrameError::StreamTooLong);
    }
    let ty = 0x08 | if offset > 0 { 0x04 } else { 0 } | if with_length { 0x02 } else { 0 } | u8::from(fin);
    out.push(ty);
    varint::encode(stream_id, out).map_err(|_| FrameError::StreamTooLong)?;
    if offset > 0 {
        varint::encode(offset, out).map_err(|_| FrameError::StreamTooLong)?;
    }
    if with_length {
        varint::encode(data.len() as u64, out).map_err(|_| FrameError::StreamTooLong)?;
    }
    out.extend_from_slice(data);
    Ok(())
}

/// Appends a PING frame.
pub fn encode_ping(out: &mut Vec<u8>) {
    out.push(0x01);
}

/// Appends `len` PADDING bytes.
pub fn encode_padding(len: usize, out: &mut Vec<u8>) {
    out.resize(out.len() + len, 0);
}

/// Appends a RESET_STREAM frame.
pub fn encode_reset_stream(
    stream_id: u64,
    error_code: u64,
    final_size: u64,
    out: &mut Vec<u8>,
) -> Result<(), VarIntError> {
    out.push(0x04);
    varint::encode(stream_id, out)?;
    varint::encode(error_code, out)?;
    varint::encode(final_size, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames(payload: &[u8]) -> Vec<Result<Frame<'_>, FrameError>> {
        FrameReader::new(payload).collect()
    }

    #[test]
    fn nghq_s01_push_packet() {
        // STREAM, LEN (0x0a) then STREAM, OFF, LEN, FIN (0x0f) on stream 7.
        let mut p = vec![0x0a, 0x07, 0x40, 0x03, 1, 2, 3];
        p.extend_from_slice(&[0x0f, 0x07, 0x03, 0x02, 4, 5]);
        assert_eq!(
            frames(&p),
            vec![
                Ok(Frame::Stream { stream_id: 7, offset: 0, data: &[1, 2, 3], fin: false }),
                Ok(Frame::Stream { stream_id: 7, offset: 3, data: &[4, 5], fin: true }),
            ]
        );
    }

    #[test]
    fn s13_ping_padding_and_lengthless_stream() {
        let mut p = vec![0x01];
        p.extend_from_slice(&[0; 20]);
        assert_eq!(frames(&p), vec![Ok(Frame::Ping), Ok(Frame::Padding { len: 20 })]);
        assert_eq!(
            frames(&[0x0d, 0x07, 0x40, 0x10, 9, 9]),
            vec![Ok(Frame::Stream { stream_id: 7, offset: 16, data: &[9, 9], fin: true })]
        );
    }

    #[test]
    fn padding_ping_anywhere_and_reset() {
        let p = [0x00, 0x00, 0x01, 0x04, 0x07, 0x02, 0x40, 0x64, 0x0b, 0x03, 0x01, 0xaa];
        assert_eq!(
            frames(&p),
            vec![
                Ok(Frame::Padding { len: 2 }),
                Ok(Frame::Ping),
                Ok(Frame::ResetStream { stream_id: 7, error_code: 2, final_size: 100 }),
                Ok(Frame::Stream { stream_id: 3, offset: 0, data: &[0xaa], fin: true }),
            ]
        );
    }

    #[test]
    fn prohibited_frames_are_skipped() {
        let mut p = vec![0x02, 0x05, 0x00, 0x01, 0x00, 0x00, 0x02]; // ACK with 1 extra range
        p.extend_from_slice(&[0x1c, 0x01, 0x00, 0x02, b'h', b'i']); // CONNECTION_CLOSE
        p.extend_from_slice(&[0x18, 0x01, 0x00, 0x02, 0xaa, 0xbb]); // NEW_CONNECTION_ID
        p.extend_from_slice(&[0u8; 16]);
        p.extend_from_slice(&[0x1e, 0x10, 0x3f, 0x31, 0x01, 0x7f, 0x01]); // HANDSHAKE_DONE, MAX_DATA, DATAGRAM, PING
        assert_eq!(
            frames(&p),
            vec![
                Ok(Frame::Ignored { frame_type: 0x02 }),
                Ok(Frame::Ignored { frame_type: 0x1c }),
                Ok(Frame::Ignored { frame_type: 0x18 }),
                Ok(Frame::Ignored { frame_type: 0x1e }),
                Ok(Frame::Ignored { frame_type: 0x10 }),
                Ok(Frame::Ignored { frame_type: 0x31 }),
                Ok(Frame::Ping),
            ]
        );
    }

    #[test]
    fn stream_control_crypto_and_ecn_ack_frames_are_skipped_whole() {
        let mut p = vec![0x05, 0x07, 0x00]; // STOP_SENDING: stream 7, error 0
        p.extend_from_slice(&[0x11, 0x07, 0x40, 0x80]); // MAX_STREAM_DATA: stream 7, 128
        p.extend_from_slice(&[0x15, 0x03, 0x01]); // STREAM_DATA_BLOCKED: stream 3, 1
        p.extend_from_slice(&[0x06, 0x00, 0x03, b'a', b'b', b'c']); // CRYPTO: offset 0, 3 bytes
        p.extend_from_slice(&[0x03, 0x09, 0x00, 0x00, 0x02, 0x01, 0x02, 0x03]); // ACK with ECN counts
        p.push(0x01);
        assert_eq!(
            frames(&p),
            vec![
                Ok(Frame::Ignored { frame_type: 0x05 }),
                Ok(Frame::Ignored { frame_type: 0x11 }),
                Ok(Frame::Ignored { frame_type: 0x15 }),
                Ok(Frame::Ignored { frame_type: 0x06 }),
                Ok(Frame::Ignored { frame_type: 0x03 }),
                Ok(Frame::Ping),
            ]
        );
        // Cut inside each: the packet ends with an error, nothing is skipped past its end.
        for cut in [&p[..2], &p[..6], &p[..12], &p[..15], &p[..p.len() - 2]] {
            assert!(frames(cut).last().unwrap().is_err(), "{cut:02x?}");
        }
    }

    #[test]
    fn padding_and_overlong_streams_are_encoded_or_refused() {
        let mut out = vec![0x01];
        encode_padding(3, &mut out);
        assert_eq!(out, [0x01, 0, 0, 0]);
        assert_eq!(frames(&out), vec![Ok(Frame::Ping), Ok(Frame::Padding { len: 3 })]);
        let mut out = Vec::new();
        assert_eq!(encode_stream(3, MAX_STREAM_END, b"x", false, true, &mut out), Err(FrameError::StreamTooLong));
        assert_eq!(encode_stream(3, u64::MAX, b"", false, true, &mut out), Err(FrameError::StreamTooLong));
        assert!(out.is_empty(), "nothing written on error");
    }

    #[test]
    fn errors_end_the_packet() {
        assert_eq!(frames(&[0x01, 0x21, 0x01]), vec![Ok(Frame::Ping), Err(FrameError::UnknownType(0x21))]);
        assert_eq!(frames(&[0x0a, 0x07, 0x05, 1]), vec![Err(FrameError::Truncated)]);
        assert_eq!(frames(&[0x18, 0x01, 0x00, 21]), vec![Err(FrameError::Malformed(0x18))]);
        let mut big = vec![0x0e, 0x07];
        varint::encode(varint::MAX, &mut big).unwrap();
        big.extend_from_slice(&[0x01, 0xff]);
        assert_eq!(frames(&big), vec![Err(FrameError::StreamTooLong)]);
    }

    fn arb_frame() -> impl Strategy<Value = (u64, u64, Vec<u8>, bool, bool)> {
        (0..(1u64 << 62), 0..(1u64 << 40), proptest::collection::vec(any::<u8>(), 0..50), any::<bool>(), any::<bool>())
    }

    proptest! {
        #[test]
        fn stream_round_trip(frames_in in proptest::collection::vec(arb_frame(), 1..6)) {
            let mut p = Vec::new();
            let n = frames_in.len();
            for (i, (id, off, data, fin, len)) in frames_in.iter().enumerate() {
                // Only the last frame may omit its length.
                let with_length = *len || i + 1 < n;
                encode_stream(*id, *off, data, *fin, with_length, &mut p).unwrap();
                prop_assert!(p.len() >= stream_header_len(*id, *off, data.len(), with_length));
            }
            encode_ping(&mut p);
            let got: Vec<_> = FrameReader::new(&p).collect();
            // The last frame may have swallowed the PING if it had no length.
            let last_has_len = frames_in.last().map(|f| f.4).unwrap_or(true);
            prop_assert_eq!(got.len(), n + usize::from(last_has_len));
            for (i, (id, off, data, fin, _)) in frames_in.iter().enumerate() {
                match &got[i] {
                    Ok(Frame::Stream { stream_id, offset, data: d, fin: f }) => {
                        prop_assert_eq!(*stream_id, *id);
                        prop_assert_eq!(*offset, *off);
                        prop_assert_eq!(*f, *fin);
                        if i + 1 < n || last_has_len {
                            prop_assert_eq!(*d, &data[..]);
                        }
                    }
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
            }
        }

        #[test]
        fn reset_round_trip(id in 0..=varint::MAX, code in 0..=varint::MAX, size in 0..=varint::MAX) {
            let mut p = Vec::new();
            encode_reset_stream(id, code, size, &mut p).unwrap();
            let got: Vec<_> = FrameReader::new(&p).collect();
            prop_assert_eq!(got, vec![Ok(Frame::ResetStream { stream_id: id, error_code: code, final_size: size })]);
        }

        #[test]
        fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            for f in FrameReader::new(&bytes) {
                let _ = f;
            }
        }
    }
}
