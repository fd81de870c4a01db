//! `open_packet` on one datagram, then every QUIC frame of its payload; and
//! `read_unprotected` on the same datagram, which must agree with it.
//!
//! Input: `[sid_len] [flags] [largest: 8 bytes BE] datagram...`
//!
//! - `sid_len % 21` is the session-ID length. The session ID is taken from the
//!   datagram's own bytes 1..=sid_len (so most inputs get past the ID check);
//!   `flags & 2` flips one bit of it to reach the mismatch path.
//! - `flags & 1`: the largest packet number so far is `Some(largest)` (masked to
//!   QUIC's 62-bit range), else `None`.
//!
//! Checks: `read_unprotected` (the no-copy path for sessions without packet
//! protection) gives exactly what `open_packet` with `NullProtection` gives,
//! error or packet; an opened packet has a 1-4 byte packet number and a payload that is
//! the datagram's tail; re-writing it with `write_packet` gives the datagram
//! back (bar the first byte's spin/reserved/key-phase bits); every STREAM and
//! RESET_STREAM frame re-encodes to a frame that reads back equal.
#![no_main]

use h3m_proto::SessionId;
use h3m_proto::frame::{self, Frame, FrameReader, MAX_STREAM_END};
use h3m_proto::packet::{open_packet, read_unprotected, write_packet};
use h3m_proto::protection::NullProtection;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 10 {
        return;
    }
    let sid_len = usize::from(data[0]) % 21;
    let flags = data[1];
    let largest = u64::from_be_bytes(data[2..10].try_into().unwrap()) & ((1 << 62) - 1);
    let largest = (flags & 1 != 0).then_some(largest);
    let original = &data[10..];

    let mut sid_bytes: Vec<u8> = original.iter().skip(1).take(sid_len).copied().collect();
    sid_bytes.resize(sid_len, 0);
    if flags & 2 != 0 && sid_len > 0 {
        sid_bytes[sid_len - 1] ^= 0x01;
    }
    let sid = SessionId::new(&sid_bytes).expect("at most 20 bytes");

    let mut datagram = original.to_vec();
    let opened = open_packet(&mut datagram, &sid, largest, &NullProtection);
    assert_eq!(read_unprotected(original, &sid, largest), opened);
    let Ok(p) = opened else { return };

    assert!((1..=4).contains(&p.pn_len));
    assert_eq!(usize::from(p.first_byte & 0x03) + 1, p.pn_len);
    let header_len = 1 + sid.len() + p.pn_len;
    assert_eq!(header_len + p.payload.len(), original.len());
    assert_eq!(p.payload, &original[header_len..]);
    assert!(p.packet_number < (1 << 62) + (1 << 32), "packet number {} out of range", p.packet_number);

    // Writing the same packet again gives the same bytes (null protection).
    let mut rewritten = Vec::new();
    write_packet(&mut rewritten, &sid, p.packet_number, p.pn_len, p.payload, &NullProtection)
        .expect("null protection cannot fail");
    assert_eq!(rewritten[0], original[0] & 0x43);
    assert_eq!(&rewritten[1..], &original[1..]);

    for item in FrameReader::new(p.payload) {
        // The reader ends after its first error.
        let Ok(f) = item else { break };
        match f {
            Frame::Padding { len } => assert!(len >= 1),
            Frame::Stream { stream_id, offset, data, fin } => {
                assert!(offset.checked_add(data.len() as u64).is_some_and(|end| end <= MAX_STREAM_END));
                let mut out = Vec::new();
                frame::encode_stream(stream_id, offset, data, fin, true, &mut out).expect("a read frame re-encodes");
                let back: Vec<_> = FrameReader::new(&out).collect();
                assert_eq!(back, vec![Ok(Frame::Stream { stream_id, offset, data, fin })]);
            }
            Frame::ResetStream { stream_id, error_code, final_size } => {
                let mut out = Vec::new();
                frame::encode_reset_stream(stream_id, error_code, final_size, &mut out)
                    .expect("a read frame re-encodes");
                let back: Vec<_> = FrameReader::new(&out).collect();
                assert_eq!(back, vec![Ok(Frame::ResetStream { stream_id, error_code, final_size })]);
            }
            Frame::Ping | Frame::Ignored { .. } => {}
        }
    }
});
