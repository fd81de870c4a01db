//! HTTP/3 frames as h3m uses them (draft-ietf-quic-http-29 type space, which
//! nghq implements, plus DATA_WITH_OFFSET from draft-hurst-quic-http-data-offset).
//!
//! Every frame is `type (varint) | length (varint) | payload`. Receivers need
//! only the header to skip a frame, so [`FrameHeader::parse`] is separate from
//! payload decoding: a DATA payload is never buffered just to find the next frame.
//! Unknown and reserved types (`0x1f * N + 0x21` grease among them) are skipped by
//! length, as HTTP/3 requires.

use crate::varint::{self, Reader, VarIntError};

/// DATA.
pub const DATA: u64 = 0x00;
/// HEADERS.
pub const HEADERS: u64 = 0x01;
/// CANCEL_PUSH.
pub const CANCEL_PUSH: u64 = 0x03;
/// SETTINGS.
pub const SETTINGS: u64 = 0x04;
/// PUSH_PROMISE.
pub const PUSH_PROMISE: u64 = 0x05;
/// GOAWAY.
pub const GOAWAY: u64 = 0x07;
/// MAX_PUSH_ID.
pub const MAX_PUSH_ID: u64 = 0x0d;
/// DATA_WITH_OFFSET (draft-hurst-quic-http-data-offset-frame).
pub const DATA_WITH_OFFSET: u64 = 0xd00;

/// The unidirectional stream type of a push stream.
pub const PUSH_STREAM_TYPE: u64 = 0x01;

/// Why an HTTP/3 frame could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum H3Error {
    /// The payload ends before its fields do.
    #[error("HTTP/3 frame of type {0:#x} is truncated")]
    Truncated(u64),
    /// The payload has bytes after its fields (for fixed-layout frames).
    #[error("HTTP/3 frame of type {0:#x} has trailing bytes")]
    TrailingBytes(u64),
    /// A SETTINGS identifier appears twice.
    #[error("duplicate SETTINGS identifier {0:#x}")]
    DuplicateSetting(u64),
    /// A value does not fit a varint.
    #[error("value does not fit a varint")]
    TooLarge,
}

/// The header of an HTTP/3 frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The frame type.
    pub frame_type: u64,
    /// The payload length.
    pub length: u64,
    /// How many bytes the type and length fields took.
    pub header_len: usize,
}

impl FrameHeader {
    /// Parses a frame header from the front of `buf`; `Ok(None)` when `buf` ends
    /// inside it (more bytes are needed).
    pub fn parse(buf: &[u8]) -> Option<FrameHeader> {
        let mut r = Reader::new(buf);
        let frame_type = r.varint().ok()?;
        let length = r.varint().ok()?;
        Some(FrameHeader { frame_type, length, header_len: r.position() })
    }

    /// The whole frame's length, header included.
    pub fn total_len(&self) -> u64 {
        self.header_len as u64 + self.length
    }
}

/// A decoded HTTP/3 frame borrowing its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum H3Frame<'a> {
    /// DATA: body bytes.
    Data(&'a [u8]),
    /// HEADERS: a QPACK field section.
    Headers(&'a [u8]),
    /// CANCEL_PUSH: the sender abandons a promised push.
    CancelPush(u64),
    /// SETTINGS (prohibited in h3m; decoded to be ignored).
    Settings(Vec<(u64, u64)>),
    /// PUSH_PROMISE: push ID and the request's QPACK field section.
    PushPromise {
        /// The push ID.
        push_id: u64,
        /// The encoded request header section.
        field_section: &'a [u8],
    },
    /// GOAWAY (prohibited in h3m; decoded to be ignored).
    Goaway(u64),
    /// MAX_PUSH_ID (prohibited in h3m; decoded to be ignored).
    MaxPushId(u64),
    /// DATA_WITH_OFFSET: body bytes at an explicit offset of the representation.
    DataWithOffset {
        /// The offset of `data` in the body.
        offset: u64,
        /// The bytes.
        data: &'a [u8],
    },
    /// Any other type (reserved, grease, extension): to be skipped.
    Unknown {
        /// The frame type.
        frame_type: u64,
        /// Its payload.
        payload: &'a [u8],
    },
}

fn single_varint(ty: u64, payload: &[u8]) -> Result<u64, H3Error> {
    let mut r = Reader::new(payload);
    let v = r.varint().map_err(|_| H3Error::Truncated(ty))?;
    if !r.is_empty() {
        return Err(H3Error::TrailingBytes(ty));
    }
    Ok(v)
}

/// Decodes a frame's payload, given its type.
pub fn decode_payload(frame_type: u64, payload: &[u8]) -> Result<H3Frame<'_>, H3Error> {
    let truncated = |_: VarIntError| H3Error::Truncated(frame_type);
    Ok(match frame_type {
        DATA => H3Frame::Data(payload),
        HEADERS => H3Frame::Headers(payload),
        CANCEL_PUSH => H3Frame::CancelPush(single_varint(frame_type, payload)?),
        GOAWAY => H3Frame::Goaway(single_varint(frame_type, payload)?),
        MAX_PUSH_ID => H3Frame::MaxPushId(single_varint(frame_type, payload)?),
        SETTINGS => {
            let mut r = Reader::new(payload);
            let mut settings: Vec<(u64, u64)> = Vec::new();
            while !r.is_empty() {
                let id = r.varint().map_err(truncated)?;
                let value = r.varint().map_err(truncated)?;
                if settings.iter().any(|&(i, _)| i == id) {
                    return Err(H3Error::DuplicateSetting(id));
                }
                settings.push((id, value));
            }
            H3Frame::Settings(settings)
        }
        PUSH_PROMISE => {
            let mut r = Reader::new(payload);
            let push_id = r.varint().map_err(truncated)?;
            H3Frame::PushPromise { push_id, field_section: r.rest() }
        }
        DATA_WITH_OFFSET => {
            let mut r = Reader::new(payload);
            let offset = r.varint().map_err(truncated)?;
            H3Frame::DataWithOffset { offset, data: r.rest() }
        }
        _ => H3Frame::Unknown { frame_type, payload },
    })
}

/// Decodes one whole frame from the front of `buf`; returns it and the bytes used.
/// `Ok(None)` means `buf` holds only part of the frame.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(H3Frame<'_>, usize)>, H3Error> {
    let Some(h) = FrameHeader::parse(buf) else { return Ok(None) };
    let total = match usize::try_from(h.total_len()) {
        Ok(t) if t <= buf.len() => t,
        _ => return Ok(None),
    };
    Ok(Some((decode_payload(h.frame_type, &buf[h.header_len..total])?, total)))
}

/// Appends a frame header.
pub fn encode_header(frame_type: u64, length: u64, out: &mut Vec<u8>) -> Result<(), H3Error> {
    varint::encode(frame_type, out).map_err(|_| H3Error::TooLarge)?;
    varint::encode(length, out).map_err(|_| H3Error::TooLarge)
}

/// Appends a whole frame.
pub fn encode_frame(frame: &H3Frame<'_>, out: &mut Vec<u8>) -> Result<(), H3Error> {
    let mut payload = Vec::new();
    let (ty, body): (u64, &[u8]) = match frame {
        H3Frame::Data(d) => (DATA, d),
        H3Frame::Headers(h) => (HEADERS, h),
        H3Frame::CancelPush(id) | H3Frame::Goaway(id) | H3Frame::MaxPushId(id) => {
            varint::encode(*id, &mut payload).map_err(|_| H3Error::TooLarge)?;
            let ty = match frame {
                H3Frame::CancelPush(_) => CANCEL_PUSH,
                H3Frame::Goaway(_) => GOAWAY,
                _ => MAX_PUSH_ID,
            };
            (ty, &payload)
        }
        H3Frame::Settings(s) => {
            for &(id, v) in s {
                varint::encode(id, &mut payload).map_err(|_| H3Error::TooLarge)?;
                varint::encode(v, &mut payload).map_err(|_| H3Error::TooLarge)?;
            }
            (SETTINGS, &payload)
        }
        H3Frame::PushPromise { push_id, field_section } => {
            varint::encode(*push_id, &mut payload).map_err(|_| H3Error::TooLarge)?;
            payload.extend_from_slice(field_section);
            (PUSH_PROMISE, &payload)
        }
        H3Frame::DataWithOffset { offset, data } => {
            varint::encode(*offset, &mut payload).map_err(|_| H3Error::TooLarge)?;
            payload.extend_from_slice(data);
            (DATA_WITH_OFFSET, &payload)
        }
        H3Frame::Unknown { frame_type, payload: p } => (*frame_type, p),
    };
    encode_header(ty, body.len() as u64, out)?;
    out.extend_from_slice(body);
    Ok(())
}

/// Whether `frame_type` is a reserved (grease) type, `0x1f * N + 0x21`.
pub fn is_reserved(frame_type: u64) -> bool {
    frame_type >= 0x21 && (frame_type - 0x21).is_multiple_of(0x1f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nghq_data_headers() {
        // `00 80 00 40 00`: a 16384-byte DATA frame header with a 4-byte length.
        assert_eq!(
            FrameHeader::parse(&[0x00, 0x80, 0x00, 0x40, 0x00]),
            Some(FrameHeader { frame_type: DATA, length: 16384, header_len: 5 })
        );
        assert_eq!(FrameHeader::parse(&[0x00, 0x80, 0x00]), None);
        let (f, n) = decode_frame(&[0x05, 0x03, 0x00, 0x00, 0x00, 0xff]).unwrap().unwrap();
        assert_eq!(f, H3Frame::PushPromise { push_id: 0, field_section: &[0, 0] });
        assert_eq!(n, 5);
        assert_eq!(decode_frame(&[0x01, 0x05, 0x00]), Ok(None));
    }

    #[test]
    fn grease_is_unknown() {
        assert!(is_reserved(0x21) && is_reserved(0x40) && !is_reserved(0x22));
        assert_eq!(
            decode_frame(&[0x21, 0x00]).unwrap().unwrap().0,
            H3Frame::Unknown { frame_type: 0x21, payload: &[] }
        );
    }

    #[test]
    fn payload_errors() {
        assert_eq!(decode_payload(CANCEL_PUSH, &[]), Err(H3Error::Truncated(CANCEL_PUSH)));
        assert_eq!(decode_payload(GOAWAY, &[0x01, 0x02]), Err(H3Error::TrailingBytes(GOAWAY)));
        assert_eq!(decode_payload(SETTINGS, &[0x06, 0x01, 0x06, 0x02]), Err(H3Error::DuplicateSetting(6)));
        assert_eq!(decode_payload(SETTINGS, &[0x06]), Err(H3Error::Truncated(SETTINGS)));
        assert_eq!(decode_payload(PUSH_PROMISE, &[0x40]), Err(H3Error::Truncated(PUSH_PROMISE)));
        assert_eq!(decode_payload(DATA_WITH_OFFSET, &[]), Err(H3Error::Truncated(DATA_WITH_OFFSET)));
    }

    fn arb_h3() -> impl Strategy<Value = (u64, Vec<u8>, u64)> {
        (
            prop_oneof![
                Just(DATA),
                Just(HEADERS),
                Just(CANCEL_PUSH),
                Just(SETTINGS),
                Just(PUSH_PROMISE),
                Just(GOAWAY),
                Just(MAX_PUSH_ID),
                Just(DATA_WITH_OFFSET),
                0x21u64..0x10000
            ],
            proptest::collection::vec(any::<u8>(), 0..40),
            0..=varint::MAX,
        )
    }

    fn build(ty: u64, bytes: &[u8], n: u64) -> H3Frame<'_> {
        match ty {
            DATA => H3Frame::Data(bytes),
            HEADERS => H3Frame::Headers(bytes),
            CANCEL_PUSH => H3Frame::CancelPush(n),
            GOAWAY => H3Frame::Goaway(n),
            MAX_PUSH_ID => H3Frame::MaxPushId(n),
            SETTINGS => H3Frame::Settings(
                bytes
                    .iter()
                    .enumerate()
                    .map(|(i, &b)| (i as u64 * 0x1f + 0x21, u64::from(b).wrapping_mul(n) % 1000))
                    .collect(),
            ),
            PUSH_PROMISE => H3Frame::PushPromise { push_id: n, field_section: bytes },
            DATA_WITH_OFFSET => H3Frame::DataWithOffset { offset: n, data: bytes },
            t => H3Frame::Unknown { frame_type: t, payload: bytes },
        }
    }

    proptest! {
        #[test]
        fn round_trip(frames in proptest::collection::vec(arb_h3(), 1..5)) {
            let mut buf = Vec::new();
            for (ty, bytes, n) in &frames {
                encode_frame(&build(*ty, bytes, *n), &mut buf).unwrap();
            }
            let mut at = 0;
            for (ty, bytes, n) in &frames {
                let (f, used) = decode_frame(&buf[at..]).unwrap().unwrap();
                prop_assert_eq!(f, build(*ty, bytes, *n));
                at += used;
            }
            prop_assert_eq!(at, buf.len());
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..60)) {
            let _ = decode_frame(&bytes);
            if let Some(h) = FrameHeader::parse(&bytes) {
                let _ = decode_payload(h.frame_type, bytes.get(h.header_len..).unwrap_or(&[]));
            }
        }
    }
}
