//! The AMBI manifest (draft-ietf-mboned-ambi-04 §5), all fields big-endian:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                  Manifest Stream Identifier                   |
//! |                   Manifest Sequence Number                    |
//! |                 First Packet Sequence Number                  |
//! |T|     Packet Digest Count     |  TLV Space (if T)             |
//! |  TLVs (TLV Space bytes) ...   |  Packet Digests ...           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! A TLV of type 0–127 has an 8-bit length, 128–255 a 16-bit one. Type 0 is
//! Pad, 128 Refresh Deadline (16-bit seconds); others are kept as they are.
//! The digests fill the rest: exactly `count × digest length` bytes, the
//! length coming from the digest profile, not from the manifest.

/// The Pad TLV.
pub const TLV_PAD: u8 = 0;
/// The Refresh Deadline TLV (16-bit seconds).
pub const TLV_REFRESH_DEADLINE: u8 = 128;

/// The most digests one manifest holds (15 bits).
pub const MAX_DIGESTS: usize = 0x7fff;

/// Bytes before the TLVs: 14, or 16 with the TLV space field.
const FIXED: usize = 14;

/// Why a manifest was not understood (a receiver disconnects the channel).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Shorter than its fixed fields.
    #[error("manifest truncated")]
    Truncated,
    /// A TLV runs past the TLV space.
    #[error("a TLV runs past the TLV space")]
    TlvOverrun,
    /// A Refresh Deadline TLV that is not 2 bytes.
    #[error("a Refresh Deadline TLV of {0} bytes (2 expected)")]
    BadRefreshDeadline(usize),
    /// The digests are not exactly `count × digest length` bytes.
    #[error("{count} digests of {len} bytes announced, {got} bytes of digests present")]
    DigestBytes {
        /// The digest count field.
        count: usize,
        /// The profile's digest length.
        len: usize,
        /// Bytes after the TLVs.
        got: usize,
    },
    /// More than 32 767 digests, or TLVs over 65 535 bytes (on writing).
    #[error("too many digests or TLV bytes for one manifest")]
    TooLarge,
}

/// One TLV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlv {
    /// Its type.
    pub kind: u8,
    /// Its value.
    pub value: Vec<u8>,
}

impl Tlv {
    /// A Refresh Deadline TLV.
    pub fn refresh_deadline(seconds: u16) -> Tlv {
        Tlv { kind: TLV_REFRESH_DEADLINE, value: seconds.to_be_bytes().to_vec() }
    }

    fn encoded_len(&self) -> usize {
        if self.kind < 128 { 2 + self.value.len() } else { 3 + self.value.len() }
    }
}

/// A manifest: the digests of consecutive data packets from
/// `first_packet` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The manifest stream identifier (equals the digest profile's).
    pub stream_id: u32,
    /// The manifest sequence number (+1 per manifest, wrapping).
    pub sequence: u32,
    /// The packet sequence number of the first digest.
    pub first_packet: u32,
    /// TLVs, in order.
    pub tlvs: Vec<Tlv>,
    /// The digests, back to back, `digest_len` bytes each.
    pub digests: Vec<u8>,
    /// Bytes per digest (from the digest profile).
    pub digest_len: usize,
}

impl Manifest {
    /// The number of digests.
    pub fn count(&self) -> usize {
        self.digests.len().checked_div(self.digest_len).unwrap_or(0)
    }

    /// Digest `i` (of packet `first_packet + i`).
    pub fn digest(&self, i: usize) -> Option<&[u8]> {
        self.digests.get(i * self.digest_len..(i + 1) * self.digest_len)
    }

    /// The Refresh Deadline, if a TLV carries one.
    pub fn refresh_deadline(&self) -> Option<u16> {
        self.tlvs
            .iter()
            .find(|t| t.kind == TLV_REFRESH_DEADLINE)
            .and_then(|t| <[u8; 2]>::try_from(t.value.as_slice()).ok())
            .map(u16::from_be_bytes)
    }

    /// Parses one manifest of exactly `bytes`, with digests of `digest_len`
    /// bytes (from the digest profile).
    pub fn parse(bytes: &[u8], digest_len: usize) -> Result<Manifest, ManifestError> {
        let fixed = bytes.get(..FIXED).ok_or(ManifestError::Truncated)?;
        let u32_at = |i: usize| u32::from_be_bytes([fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]]);
        let flags = u16::from_be_bytes([fixed[12], fixed[13]]);
        let count = usize::from(flags & 0x7fff);
        let mut at = FIXED;
        let mut tlvs = Vec::new();
        if flags & 0x8000 != 0 {
            let space = bytes.get(at..at + 2).ok_or(ManifestError::Truncated)?;
            let space = usize::from(u16::from_be_bytes([space[0], space[1]]));
            at += 2;
            let region = bytes.get(at..at + space).ok_or(ManifestError::TlvOverrun)?;
            tlvs = parse_tlvs(region)?;
            at += space;
        }
        let digests = &bytes[at..];
        if digest_len == 0 || digests.len() != count * digest_len {
            return Err(ManifestError::DigestBytes { count, len: digest_len, got: digests.len() });
        }
        Ok(Manifest {
            stream_id: u32_at(0),
            sequence: u32_at(4),
            first_packet: u32_at(8),
            tlvs,
            digests: digests.to_vec(),
            digest_len,
        })
    }

    /// The first manifest of a byte stream of back-to-back manifests (an
    /// `application/ambi` body): the manifest and the bytes it took, or
    /// `None` when the stream does not hold all of it yet.
    pub fn parse_prefix(bytes: &[u8], digest_len: usize) -> Result<Option<(Manifest, usize)>, ManifestError> {
        let Some(fixed) = bytes.get(..FIXED) else { return Ok(None) };
        let flags = u16::from_be_bytes([fixed[12], fixed[13]]);
        let count = usize::from(flags & 0x7fff);
        let mut len = FIXED;
        if flags & 0x8000 != 0 {
            let Some(space) = bytes.get(FIXED..FIXED + 2) else { return Ok(None) };
            len += 2 + usize::from(u16::from_be_bytes([space[0], space[1]]));
        }
        len += count * digest_len;
        match bytes.get(..len) {
            Some(whole) => Manifest::parse(whole, digest_len).map(|m| Some((m, len))),
            None => Ok(None),
        }
    }

    /// Appends the manifest's bytes to `out`.
    pub fn write(&self, out: &mut Vec<u8>) -> Result<(), ManifestError> {
        let count = self.count();
        let tlv_space: usize = self.tlvs.iter().map(Tlv::encoded_len).sum();
        if count > MAX_DIGESTS
            || tlv_space > usize::from(u16::MAX)
            || self.tlvs.iter().any(|t| t.value.len() > if t.kind < 128 { 255 } else { 65_535 })
        {
            return Err(ManifestError::TooLarge);
        }
        out.extend_from_slice(&self.stream_id.to_be_bytes());
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.first_packet.to_be_bytes());
        let t = if self.tlvs.is_empty() { 0 } else { 0x8000 };
        out.extend_from_slice(&(t | count as u16).to_be_bytes());
        if !self.tlvs.is_empty() {
            out.extend_from_slice(&(tlv_space as u16).to_be_bytes());
            for tlv in &self.tlvs {
                out.push(tlv.kind);
                if tlv.kind < 128 {
                    out.push(tlv.value.len() as u8);
                } else {
                    out.extend_from_slice(&(tlv.value.len() as u16).to_be_bytes());
                }
                out.extend_from_slice(&tlv.value);
            }
        }
        out.extend_from_slice(&self.digests[..count * self.digest_len]);
        Ok(())
    }
}

/// The TLVs of a TLV space.
fn parse_tlvs(mut region: &[u8]) -> Result<Vec<Tlv>, ManifestError> {
    let mut tlvs = Vec::new();
    while let Some((&kind, rest)) = region.split_first() {
        let (len, rest) = if kind < 128 {
            let (&l, rest) = rest.split_first().ok_or(ManifestError::TlvOverrun)?;
            (usize::from(l), rest)
        } else {
            let l = rest.get(..2).ok_or(ManifestError::TlvOverrun)?;
            (usize::from(u16::from_be_bytes([l[0], l[1]])), &rest[2..])
        };
        let value = rest.get(..len).ok_or(ManifestError::TlvOverrun)?;
        if kind == TLV_REFRESH_DEADLINE && len != 2 {
            return Err(ManifestError::BadRefreshDeadline(len));
        }
        tlvs.push(Tlv { kind, value: value.to_vec() });
        region = &rest[len..];
    }
    Ok(tlvs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_manifest_without_tlvs_is_14_bytes_plus_digests() {
        let m = Manifest {
            stream_id: 0x0102_0304,
            sequence: 5,
            first_packet: 1000,
            tlvs: Vec::new(),
            digests: vec![0xaa; 3 * 10],
            digest_len: 10,
        };
        let mut out = Vec::new();
        m.write(&mut out).unwrap();
        assert_eq!(out.len(), 14 + 30);
        assert_eq!(hex::encode(&out[..14]), "01020304".to_owned() + "00000005" + "000003e8" + "0003");
        assert_eq!(Manifest::parse(&out, 10), Ok(m.clone()));
        assert_eq!(m.digest(2), Some(&[0xaa; 10][..]));
        assert_eq!(m.digest(3), None);
    }

    #[test]
    fn tlvs_take_the_t_flag_and_a_space_field() {
        let m = Manifest {
            stream_id: 9,
            sequence: u32::MAX,
            first_packet: 0,
            tlvs: vec![
                Tlv { kind: TLV_PAD, value: vec![0; 3] },
                Tlv::refresh_deadline(30),
                Tlv { kind: 121, value: vec![1] },
            ],
            digests: vec![1; 32],
            digest_len: 16,
        };
        let mut out = Vec::new();
        m.write(&mut out).unwrap();
        // 16 fixed + (2+3) + (3+2) + (2+1) TLV bytes + 32 digest bytes.
        assert_eq!(out.len(), 16 + 13 + 32);
        assert_eq!(&out[12..16], &[0x80, 0x02, 0x00, 13]);
        let back = Manifest::parse(&out, 16).unwrap();
        assert_eq!(back.refresh_deadline(), Some(30));
        assert_eq!(back, m);
    }

    #[test]
    fn malformed_manifests_are_refused_with_their_reason() {
        assert_eq!(Manifest::parse(&[0; 13], 16), Err(ManifestError::Truncated));
        // T set, no space field.
        let mut m = vec![0u8; 14];
        m[12] = 0x80;
        assert_eq!(Manifest::parse(&m, 16), Err(ManifestError::Truncated));
        // TLV space past the end.
        m.extend_from_slice(&[0, 9, 0, 1]);
        assert_eq!(Manifest::parse(&m, 16), Err(ManifestError::TlvOverrun));
        // A TLV running past its space.
        let mut m = vec![0u8; 12];
        m.extend_from_slice(&[0x80, 0, 0, 2, 5, 9]);
        assert_eq!(Manifest::parse(&m, 16), Err(ManifestError::TlvOverrun));
        // A Refresh Deadline of 1 byte.
        let mut m = vec![0u8; 12];
        m.extend_from_slice(&[0x80, 0, 0, 4, 128, 0, 1, 7]);
        assert_eq!(Manifest::parse(&m, 16), Err(ManifestError::BadRefreshDeadline(1)));
        // Digest bytes that do not match the count.
        let mut m = vec![0u8; 12];
        m.extend_from_slice(&[0, 2]);
        m.extend_from_slice(&[0; 31]);
        assert_eq!(Manifest::parse(&m, 16), Err(ManifestError::DigestBytes { count: 2, len: 16, got: 31 }));
    }

    #[test]
    fn a_stream_of_manifests_parses_one_at_a_time() {
        let m = |seq: u32| Manifest {
            stream_id: 1,
            sequence: seq,
            first_packet: seq * 4,
            tlvs: if seq == 1 { vec![Tlv::refresh_deadline(5)] } else { Vec::new() },
            digests: vec![seq as u8; 4 * 8],
            digest_len: 8,
        };
        let mut stream = Vec::new();
        for seq in 0..3 {
            m(seq).write(&mut stream).unwrap();
        }
        let mut at = 0;
        for seq in 0..3 {
            // Every proper prefix of the next manifest is "not yet".
            let (next, used) = Manifest::parse_prefix(&stream[at..], 8).unwrap().unwrap();
            for cut in 0..used {
                assert_eq!(Manifest::parse_prefix(&stream[at..at + cut], 8), Ok(None));
            }
            assert_eq!(next, m(seq));
            at += used;
        }
        assert_eq!(at, stream.len());
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_err(bytes in proptest::collection::vec(any::<u8>(), 0..200), len in 0usize..40) {
            if let Ok(m) = Manifest::parse(&bytes, len) {
                let mut out = Vec::new();
                m.write(&mut out).unwrap();
                // What parses writes back to bytes that parse the same.
                prop_assert_eq!(Manifest::parse(&out, len).unwrap(), m);
            }
        }

        #[test]
        fn manifests_round_trip(
            stream_id in any::<u32>(),
            sequence in any::<u32>(),
            first_packet in any::<u32>(),
            len in 1usize..64,
            count in 0usize..50,
            tlvs in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..20)), 0..4),
        ) {
            let tlvs: Vec<Tlv> = tlvs
                .into_iter()
                .map(|(kind, value)| if kind == TLV_REFRESH_DEADLINE { Tlv::refresh_deadline(7) } else { Tlv { kind, value } })
                .collect();
            let digests: Vec<u8> = (0..len * count).map(|i| i as u8).collect();
            let m = Manifest { stream_id, sequence, first_packet, tlvs, digests, digest_len: len };
            let mut out = Vec::new();
            m.write(&mut out).unwrap();
            prop_assert_eq!(Manifest::parse(&out, len), Ok(m));
        }
    }
}
