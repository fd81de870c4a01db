//! HTTP/3 frame decoding over a byte stream.
//!
//! The input is read as a stream of HTTP/3 frames with `decode_frame`, frame
//! after frame. Each step is cross-checked against `FrameHeader::parse` plus
//! `decode_payload`, and every decoded frame is re-encoded with `encode_frame`
//! and decoded back equal. A frame whose payload does not decode is skipped by
//! its header's length, as a receiver would. When the input ends inside a
//! frame, the partial payload is still given to `decode_payload`.
#![no_main]

use h3m_proto::h3::{FrameHeader, decode_frame, decode_payload, encode_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    while !buf.is_empty() {
        let header = FrameHeader::parse(buf);
        match decode_frame(buf) {
            Ok(Some((frame, used))) => {
                let h = header.expect("a decoded frame has a header");
                assert!(used >= h.header_len && used <= buf.len());
                assert_eq!(used as u64, h.total_len());
                let payload = &buf[h.header_len..used];
                assert_eq!(decode_payload(h.frame_type, payload), Ok(frame.clone()));

                let mut wire = Vec::new();
                encode_frame(&frame, &mut wire).expect("a decoded frame re-encodes");
                assert_eq!(decode_frame(&wire), Ok(Some((frame, wire.len()))));
                // The encoder writes minimal varints, never more than was read.
                assert!(wire.len() <= used, "re-encoded {} bytes from {used}", wire.len());
                buf = &buf[used..];
            }
            Ok(None) => {
                // Incomplete: either the header or the payload runs past the end.
                if let Some(h) = header {
                    assert!(h.total_len() > buf.len() as u64);
                    let _ = decode_payload(h.frame_type, &buf[h.header_len..]);
                }
                break;
            }
            Err(e) => {
                let h = header.expect("a payload error implies a whole header");
                let used = usize::try_from(h.total_len()).expect("the frame was in the buffer");
                assert!(used <= buf.len());
                assert_eq!(decode_payload(h.frame_type, &buf[h.header_len..used]), Err(e));
                buf = &buf[used..];
            }
        }
    }
});
