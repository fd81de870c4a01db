//! Short-header QUIC packets as h3m uses them (RFC 9000 §17.3, profiled by
//! draft-pardue-quic-http-mcast-07 §4).
//!
//! ```text
//! byte 0       0 1 S R R K P P   fixed bit set; P+1 = packet-number length
//! 1..=L        session ID (destination connection ID), L known from configuration
//! next 1..=4   packet number, truncated, big-endian
//! rest         frames (plus an AEAD tag when the session is protected)
//! ```
//!
//! There are no long headers, no version field and no coalescing: one packet per
//! UDP datagram. Packet numbers are rebuilt with the RFC 9000 Appendix A.3 rule.

use crate::SessionId;
use crate::protection::{PacketProtection, ProtectionError};

/// The bit that marks a long header; h3m has none.
pub const LONG_HEADER_BIT: u8 = 0x80;
/// The fixed bit, always set in QUIC v1.
pub const FIXED_BIT: u8 = 0x40;

/// Why a datagram is not a packet of this session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// The datagram is empty or shorter than the header.
    #[error("datagram too short for a short header")]
    TooShort,
    /// Bit 0x80 is set: a long header, which h3m sessions never carry.
    #[error("long-header packet")]
    LongHeader,
    /// The fixed bit (0x40) is clear.
    #[error("fixed bit is clear")]
    FixedBitClear,
    /// The destination connection ID is not this session's ID.
    #[error("session ID does not match")]
    SessionIdMismatch,
    /// Header or payload protection failed.
    #[error("packet protection: {0}")]
    Protection(#[from] ProtectionError),
}

/// A packet whose protection has been removed.
#[derive(Debug, PartialEq, Eq)]
pub struct OpenedPacket<'a> {
    /// The unprotected first byte.
    pub first_byte: u8,
    /// The full packet number, rebuilt from its truncated form.
    pub packet_number: u64,
    /// The encoded packet-number length, 1 to 4.
    pub pn_len: usize,
    /// The plaintext frames.
    pub payload: &'a [u8],
}

/// Rebuilds a full packet number from its `pn_len`-byte truncated form, given the
/// largest packet number received so far (RFC 9000 Appendix A.3).
pub fn expand_packet_number(largest: Option<u64>, truncated: u64, pn_len: usize) -> u64 {
    let expected = largest.map_or(0, |l| l + 1);
    let bits = 8 * pn_len as u32;
    let win = 1u64 << bits;
    let half = win / 2;
    let mask = win - 1;
    let candidate = (expected & !mask) | truncated;
    if candidate + half <= expected && candidate < (1 << 62) - win {
        candidate + win
    } else if candidate > expected + half && candidate >= win {
        candidate - win
    } else {
        candidate
    }
}

/// Opens a packet in place: checks the header, matches the session ID, removes
/// header protection, rebuilds the packet number and decrypts the payload.
///
/// `largest` is the largest packet number accepted so far in this session.
pub fn open_packet<'a>(
    datagram: &'a mut [u8],
    session_id: &SessionId,
    largest: Option<u64>,
    protection: &dyn PacketProtection,
) -> Result<OpenedPacket<'a>, PacketError> {
    let pn_offset = check_header(datagram, session_id)?;
    protection.unprotect_header(datagram, pn_offset)?;
    let (packet_number, pn_len) = read_packet_number(datagram, pn_offset, largest)?;
    let first_byte = datagram[0];
    let (header, payload) = datagram.split_at_mut(pn_offset + pn_len);
    let plain_len = protection.open(packet_number, header, payload)?;
    Ok(OpenedPacket { first_byte, packet_number, pn_len, payload: &payload[..plain_len] })
}

/// The packet number of an unprotected header (its length from the first
/// byte), expanded against `largest`, and that length.
fn read_packet_number(datagram: &[u8], pn_offset: usize, largest: Option<u64>) -> Result<(u64, usize), PacketError> {
    let pn_len = usize::from(datagram[0] & 0x03) + 1;
    let pn_bytes = datagram.get(pn_offset..pn_offset + pn_len).ok_or(PacketError::TooShort)?;
    let truncated = pn_bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    Ok((expand_packet_number(largest, truncated, pn_len), pn_len))
}

/// Checks a short header's fixed parts (form, fixed bit, session ID) and
/// returns the offset of its packet number.
fn check_header(datagram: &[u8], session_id: &SessionId) -> Result<usize, PacketError> {
    let first = *datagram.first().ok_or(PacketError::TooShort)?;
    if first & LONG_HEADER_BIT != 0 {
        return Err(PacketError::LongHeader);
    }
    if first & FIXED_BIT == 0 {
        return Err(PacketError::FixedBitClear);
    }
    let pn_offset = 1 + session_id.len();
    if datagram.len() < pn_offset + 1 {
        return Err(PacketError::TooShort);
    }
    if &datagram[1..pn_offset] != session_id.as_bytes() {
        return Err(PacketError::SessionIdMismatch);
    }
    Ok(pn_offset)
}

/// [`open_packet`] for a session without packet protection (nghq's, the
/// [`NullProtection`](crate::protection::NullProtection)): there is nothing
/// to undo, so the packet is read where it lies, without a copy to open it
/// in. The same result as `open_packet` with `NullProtection`.
pub fn read_unprotected<'a>(
    datagram: &'a [u8],
    session_id: &SessionId,
    largest: Option<u64>,
) -> Result<OpenedPacket<'a>, PacketError> {
    let pn_offset = check_header(datagram, session_id)?;
    let (packet_number, pn_len) = read_packet_number(datagram, pn_offset, largest)?;
    Ok(OpenedPacket { first_byte: datagram[0], packet_number, pn_len, payload: &datagram[pn_offset + pn_len..] })
}

/// Appends a short-header packet to `out`: header, `payload`, then protection.
///
/// `pn_len` (1 to 4) is the encoded packet-number length, constant for a session.
pub fn write_packet(
    out: &mut Vec<u8>,
    session_id: &SessionId,
    packet_number: u64,
    pn_len: usize,
    payload: &[u8],
    protection: &dyn PacketProtection,
) -> Result<(), ProtectionError> {
    let pn_len = pn_len.clamp(1, 4);
    let start = out.len();
    out.push(FIXED_BIT | (pn_len as u8 - 1));
    out.extend_from_slice(session_id.as_bytes());
    let pn_offset = out.len() - start;
    out.extend_from_slice(&packet_number.to_be_bytes()[8 - pn_len..]);
    let header_len = out.len() - start;
    if protection.suite() == crate::protection::CipherSuite::Null {
        // Nothing to seal: the payload goes in as it is, without a copy to seal.
        out.extend_from_slice(payload);
        return Ok(());
    }
    let mut body = payload.to_vec();
    // Header protection samples 16 bytes from 4 bytes after the packet number's
    // start: pad (PADDING frames are zeros) so every protected packet has them.
    if protection.tag_len() > 0 {
        let min = (4 + crate::aead::SAMPLE_LEN).saturating_sub(pn_len + protection.tag_len());
        if body.len() < min {
            body.resize(min, 0);
        }
    }
    protection.seal(packet_number, &out[start..], &mut body)?;
    out.extend_from_slice(&body);
    debug_assert!(out.len() - start >= header_len);
    protection.protect_header(&mut out[start..], pn_offset, pn_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protection::NullProtection;
    use proptest::prelude::*;

    #[test]
    fn rfc9000_a3_example() {
        // Largest 0xa82f30ea, 2-byte truncated 0x9b32 -> 0xa82f9b32.
        assert_eq!(expand_packet_number(Some(0xa82f30ea), 0x9b32, 2), 0xa82f9b32);
    }

    #[test]
    fn one_byte_numbers_wrap_like_nghq() {
        let mut largest = None;
        for pn in 0u64..600 {
            let got = expand_packet_number(largest, pn & 0xff, 1);
            assert_eq!(got, pn);
            largest = Some(got);
        }
        // A late packet from before the wrap is placed before it.
        assert_eq!(expand_packet_number(Some(260), 250, 1), 250);
    }

    #[test]
    fn s06_first_datagram_header() {
        let mut dgram = b"\x40Session ID\x00\x0a\x00\x40\x47".to_vec();
        let p = open_packet(&mut dgram, &SessionId::NGHQ_DEFAULT, None, &NullProtection).unwrap();
        assert_eq!(p.packet_number, 0);
        assert_eq!(p.pn_len, 1);
        assert_eq!(p.payload, b"\x0a\x00\x40\x47");
    }

    #[test]
    fn header_errors() {
        let sid = SessionId::from_hex("cafe0001").unwrap();
        let null = &NullProtection;
        assert_eq!(open_packet(&mut [], &sid, None, null), Err(PacketError::TooShort));
        assert_eq!(open_packet(&mut [0xc0, 0, 0, 0, 0, 0], &sid, None, null), Err(PacketError::LongHeader));
        assert_eq!(open_packet(&mut [0x00, 0xca, 0xfe, 0, 1, 0], &sid, None, null), Err(PacketError::FixedBitClear));
        assert_eq!(
            open_packet(&mut [0x40, 0xca, 0xfe, 0, 2, 0], &sid, None, null),
            Err(PacketError::SessionIdMismatch)
        );
        assert_eq!(open_packet(&mut [0x40, 0xca, 0xfe, 0], &sid, None, null), Err(PacketError::TooShort));
        // 4-byte packet number declared, 2 present.
        assert_eq!(open_packet(&mut [0x43, 0xca, 0xfe, 0, 1, 0, 0], &sid, None, null), Err(PacketError::TooShort));
    }

    proptest! {
        #[test]
        fn write_then_open(
            sid in proptest::collection::vec(any::<u8>(), 0..=20),
            pn in 0u64..(1 << 40),
            pn_len in 1usize..=4,
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let sid = SessionId::new(&sid).unwrap();
            let mut out = Vec::new();
            write_packet(&mut out, &sid, pn, pn_len, &payload, &NullProtection).unwrap();
            // The receiver has seen the packet before this one.
            let largest = pn.checked_sub(1);
            let p = open_packet(&mut out, &sid, largest, &NullProtection).unwrap();
            prop_assert_eq!(p.packet_number, pn);
            prop_assert_eq!(p.pn_len, pn_len);
            prop_assert_eq!(p.payload, &payload[..]);
        }

        #[test]
        fn expansion_recovers_numbers_within_half_a_window(
            largest in 0u64..(1 << 40), delta in -100i64..100, pn_len in 1usize..=4,
        ) {
            let half = 1i64 << (8 * pn_len - 1);
            prop_assume!(delta.abs() < half - 1);
            let pn = largest as i64 + delta;
            prop_assume!(pn >= 0);
            let pn = pn as u64;
            let truncated = pn & ((1u64 << (8 * pn_len)) - 1);
            prop_assert_eq!(expand_packet_number(Some(largest), truncated, pn_len), pn);
        }

        #[test]
        fn open_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..40), sid_len in 0usize..=20) {
            let sid = SessionId::new(&bytes.iter().skip(1).take(sid_len).copied().collect::<Vec<_>>()).unwrap();
            let _ = open_packet(&mut bytes, &sid, Some(5), &NullProtection);
        }

        #[test]
        fn reading_unprotected_is_opening_with_null_protection(
            bytes in proptest::collection::vec(any::<u8>(), 0..40),
            sid_len in 0usize..=20,
            largest in proptest::option::of(0u64..1 << 40),
        ) {
            // Half the time a session ID that matches, so that packets parse.
            let sid = SessionId::new(&bytes.iter().skip(1).take(sid_len).copied().collect::<Vec<_>>()).unwrap();
            let mut copy = bytes.clone();
            let opened = open_packet(&mut copy, &sid, largest, &NullProtection);
            prop_assert_eq!(read_unprotected(&bytes, &sid, largest), opened);
        }
    }
}
