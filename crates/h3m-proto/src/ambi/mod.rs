//! AMBI, Asymmetric Manifest-Based Integrity (draft-ietf-mboned-ambi-04):
//! the sender publishes manifests listing a digest of each data packet, over
//! an authenticated channel; a receiver hashes each packet it gets and
//! accepts it only if an authenticated manifest lists that digest.
//!
//! This module is the wire format and the digest profile:
//!
//! * [`Manifest`]: the manifest layout of the draft (§5): manifest stream
//!   identifier, manifest sequence number, first packet sequence number,
//!   the TLV flag and packet digest count, TLVs (Pad, Refresh Deadline,
//!   others kept), the truncated digests.
//! * [`DigestProfile`]: the hash (SHA-256 or BLAKE2b-512), its truncation
//!   and the manifest stream identifier; [`DigestProfile::digest`] hashes the
//!   draft's pseudo-header ([`PseudoHeader`]) followed by the UDP payload.
//! * [`packet_sequence`]: where an h3m packet carries its sequence number.
//! * [`Gate`]: the receiver's gate: datagrams are released only once an
//!   authenticated manifest lists their digest.
//! * [`ManifestBuilder`]: the sender's side: digests of datagrams as they
//!   are queued, overlapping manifests ahead of them.
//! * [`inband`]: manifests multicast on the session, each signed.
//! * [`ManifestStream`]: manifests read from an `application/ambi` body
//!   (the HTTPS channel), chunk by chunk.
//!
//! **Truncation.** A digest is checked against a packet the sender really
//! sent, so a forger who cannot choose the sender's packets must find a
//! *second preimage* of a digest listed: 2^n work for an n-bit truncation.
//! One who can influence what the sender sends (a resource it publishes)
//! could prepare pairs of packets with equal digests, a *collision*: 2^(n/2)
//! work. The default, 128 bits, keeps even that at 2^64 and a second
//! preimage at 2^128 (16 bytes per packet, about 1.3% of a 1200-byte
//! datagram); 64 bits is the floor accepted (second preimage 2^64, for
//! senders whose content no one else controls).
//!
//! **Packet sequence identifier (AMBI metadata `identifier-type
//! payload-content`).** h3m packets are QUIC short-header packets whose
//! packet number h3m-send writes in 4 bytes (`--pn-len 4`, the default):
//! `content-offset` = 1 + the session ID's length (bytes), `content-bits` 32,
//! big-endian. With `--cipher-suite` the packet number is under header
//! protection: a receiver (which holds the session's keys) removes it to
//! read the number, while the digest covers the protected bytes as sent.

pub mod builder;
pub mod gate;
pub mod inband;
pub mod manifest;
pub mod stream;

pub use builder::ManifestBuilder;
pub use gate::{Admission, Gate, GateConfig, GateError, GateStats, HOLD_DOWN_WINDOW, Released};
pub use manifest::{MAX_DIGESTS, Manifest, ManifestError, TLV_PAD, TLV_REFRESH_DEADLINE, Tlv};
pub use stream::ManifestStream;

use std::net::IpAddr;

/// The media type of a manifest stream over HTTPS (back-to-back manifests).
pub const MEDIA_TYPE: &str = "application/ambi";

/// Where an h3m origin (`h3m-send --repair-listen`) streams a session's
/// manifests (`h3m-send --ambi https`), as [`MEDIA_TYPE`].
pub const MANIFEST_PATH: &str = "/.well-known/h3m/ambi";

/// Where an h3m origin serves the session's AMBI metadata (the draft's
/// `ietf-ambi` YANG data, as JSON).
pub const METADATA_PATH: &str = "/.well-known/h3m/ambi.json";

/// The IP protocol number of UDP, in the pseudo-header.
const PROTO_UDP: u8 = 17;

/// A digest algorithm of AMBI's digest profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// SHA-256 (at most 256 bits).
    Sha256,
    /// BLAKE2b-512 (at most 512 bits).
    Blake2b,
}

impl HashAlgorithm {
    /// The algorithm's full output, in bits.
    pub fn max_bits(self) -> u16 {
        match self {
            HashAlgorithm::Sha256 => 256,
            HashAlgorithm::Blake2b => 512,
        }
    }

    /// The name used in metadata and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha256 => "sha-256",
            HashAlgorithm::Blake2b => "blake2b",
        }
    }
}

/// The default truncation, in bits (see the [module docs](self)).
pub const DEFAULT_DIGEST_BITS: u16 = 128;

/// The shortest truncation accepted, in bits.
pub const MIN_DIGEST_BITS: u16 = 64;

/// Why a digest profile was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// Not `sha-256` or `blake2b`.
    #[error("unknown hash algorithm `{0}` (sha-256, blake2b)")]
    Algorithm(String),
    /// The truncation is not a whole number of bytes between the floor and
    /// the algorithm's output.
    #[error("digest bits must be a multiple of 8 from {MIN_DIGEST_BITS} to {max} for {alg}")]
    Bits {
        /// The algorithm.
        alg: &'static str,
        /// Its output length.
        max: u16,
    },
}

/// AMBI's digest profile: the hash, its truncation, and the manifest stream
/// identifier every digest's pseudo-header carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DigestProfile {
    /// The hash.
    pub algorithm: HashAlgorithm,
    /// Bits of it kept (a multiple of 8).
    bits: u16,
    /// The manifest stream identifier.
    pub manifest_id: u32,
}

impl DigestProfile {
    /// A profile; the truncation must be a multiple of 8 from
    /// [`MIN_DIGEST_BITS`] to the algorithm's output.
    pub fn new(algorithm: HashAlgorithm, bits: u16, manifest_id: u32) -> Result<Self, ProfileError> {
        if !bits.is_multiple_of(8) || !(MIN_DIGEST_BITS..=algorithm.max_bits()).contains(&bits) {
            return Err(ProfileError::Bits { alg: algorithm.name(), max: algorithm.max_bits() });
        }
        Ok(DigestProfile { algorithm, bits, manifest_id })
    }

    /// SHA-256 truncated to [`DEFAULT_DIGEST_BITS`].
    pub fn default_for(manifest_id: u32) -> Self {
        DigestProfile { algorithm: HashAlgorithm::Sha256, bits: DEFAULT_DIGEST_BITS, manifest_id }
    }

    /// Parses `ALGORITHM[/BITS]` (`sha-256/128`, `blake2b`, ...).
    pub fn parse(s: &str, manifest_id: u32) -> Result<Self, ProfileError> {
        let (alg, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let algorithm = match alg.trim().to_ascii_lowercase().as_str() {
            "sha-256" | "sha256" => HashAlgorithm::Sha256,
            "blake2b" | "blake2b-512" => HashAlgorithm::Blake2b,
            other => return Err(ProfileError::Algorithm(other.to_owned())),
        };
        let bits = match bits {
            None => DEFAULT_DIGEST_BITS,
            Some(b) => {
                b.trim().parse().map_err(|_| ProfileError::Bits { alg: algorithm.name(), max: algorithm.max_bits() })?
            }
        };
        DigestProfile::new(algorithm, bits, manifest_id)
    }

    /// Bits kept.
    pub fn bits(&self) -> u16 {
        self.bits
    }

    /// Bytes per digest.
    pub fn digest_len(&self) -> usize {
        usize::from(self.bits / 8)
    }

    /// The digest of a UDP payload: the hash of the pseudo-header, then the
    /// payload, truncated. Written into `out` ([`digest_len`](Self::digest_len) bytes).
    pub fn digest_into(&self, header: &PseudoHeader, payload: &[u8], out: &mut [u8]) {
        let mut ph = [0u8; 48];
        let n = header.write(self.manifest_id, payload.len(), &mut ph);
        let len = self.digest_len().min(out.len());
        match self.algorithm {
            HashAlgorithm::Sha256 => {
                let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
                ctx.update(&ph[..n]);
                ctx.update(payload);
                out[..len].copy_from_slice(&ctx.finish().as_ref()[..len]);
            }
            HashAlgorithm::Blake2b => {
                let mut state = blake2b_simd::State::new();
                state.update(&ph[..n]);
                state.update(payload);
                out[..len].copy_from_slice(&state.finalize().as_bytes()[..len]);
            }
        }
    }

    /// [`digest_into`](Self::digest_into) into a new vector.
    pub fn digest(&self, header: &PseudoHeader, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; self.digest_len()];
        self.digest_into(header, payload, &mut out);
        out
    }
}

impl std::fmt::Display for DigestProfile {
    /// `ALGORITHM/BITS`, as [`DigestProfile::parse`] reads it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.algorithm.name(), self.bits)
    }
}

/// The addresses and ports of a UDP datagram, for the pseudo-header its
/// digest covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PseudoHeader {
    /// The source address.
    pub source: IpAddr,
    /// The destination (the group).
    pub destination: IpAddr,
    /// The source port.
    pub source_port: u16,
    /// The destination port.
    pub destination_port: u16,
}

impl PseudoHeader {
    /// Writes the pseudo-header (draft §6.1): source and destination
    /// addresses (4 or 16 bytes each), a zero byte, the protocol (17), the
    /// payload length, the ports and the manifest stream identifier, all
    /// big-endian; returns its length (20 or 44).
    pub fn write(&self, manifest_id: u32, payload_len: usize, out: &mut [u8; 48]) -> usize {
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        for a in [self.source, self.destination] {
            match a {
                IpAddr::V4(v4) => put(&v4.octets()),
                IpAddr::V6(v6) => put(&v6.octets()),
            }
        }
        put(&[0, PROTO_UDP]);
        put(&(payload_len.min(usize::from(u16::MAX)) as u16).to_be_bytes());
        put(&self.source_port.to_be_bytes());
        put(&self.destination_port.to_be_bytes());
        put(&manifest_id.to_be_bytes());
        at
    }
}

/// The manifest stream identifier of a session when none is given: the
/// first 4 bytes of the SHA-256 of its session ID (sender and receiver agree
/// on it without saying).
pub fn default_manifest_id(session_id: &crate::SessionId) -> u32 {
    let d = crate::http::digest::sha256(session_id.as_bytes());
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// The packet sequence number of an h3m datagram (see the
/// [module docs](self)): 4 bytes at offset 1 + `session_id_len`, as written
/// with `--pn-len 4` (before header protection, if any, is removed).
pub fn packet_sequence(datagram: &[u8], session_id_len: usize) -> Option<u32> {
    let at = 1 + session_id_len;
    let bytes = datagram.get(at..at + 4)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// The packet sequence number of an h3m datagram sent with packet
/// protection (`--cipher-suite`): header protection removed from a copy of
/// its first bytes (the datagram itself, whose digest counts the protected
/// bytes, is untouched). `None` when it is too short, or its packet number
/// is not 4 bytes (the sequence AMBI reads).
pub fn protected_packet_sequence(
    datagram: &[u8],
    session_id_len: usize,
    protection: &dyn crate::protection::PacketProtection,
) -> Option<u32> {
    // The header, the packet number and the 16-byte sample after it.
    let pn_offset = 1 + session_id_len;
    let len = pn_offset + 4 + 16;
    let mut head = [0u8; 1 + crate::session_id::MAX_SESSION_ID_LEN + 4 + 16];
    let head = head.get_mut(..len)?;
    head.copy_from_slice(datagram.get(..len)?);
    protection.unprotect_header(head, pn_offset).ok()?;
    if head[0] & 0x03 != 3 {
        return None;
    }
    packet_sequence(head, session_id_len)
}

/// The pseudo-header of the unit tests: 10.0.0.1:4000 to 232.0.0.1:2000.
#[cfg(test)]
pub(crate) fn test_header() -> PseudoHeader {
    PseudoHeader {
        source: [10, 0, 0, 1].into(),
        destination: [232, 0, 0, 1].into(),
        source_port: 4000,
        destination_port: 2000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under header protection the sequence number is read from an unmasked
    /// copy; the bytes as sent are not the number.
    #[test]
    fn protected_sequence_numbers_are_read_under_header_protection() {
        use crate::aead::PacketKeys;
        use crate::encoder::{EncoderConfig, SessionEncoder};
        use crate::protection::CipherSuite;
        let keys = PacketKeys::new(CipherSuite::Aes128Gcm, &[7; 16], &[9; 12]).unwrap();
        let sid = crate::SessionId::from_hex("0102030405060708").unwrap();
        let mut cfg = EncoderConfig::new(sid);
        cfg.first_packet_number = 0x0102_0300;
        let mut enc = SessionEncoder::with_protection(cfg, keys.protection());
        let mut out = Vec::new();
        let req = [crate::qpack::HeaderField::new(":path", "/a")];
        let resp = [crate::qpack::HeaderField::new(":status", "200")];
        enc.push(&req, &resp, &[5u8; 5000], &mut out).unwrap();
        assert!(out.len() > 3);
        let mut masked = 0;
        for (i, d) in out.iter().enumerate() {
            let pn = 0x0102_0300 + i as u32;
            assert_eq!(protected_packet_sequence(d, 8, &*keys.protection()), Some(pn));
            masked += usize::from(packet_sequence(d, 8) != Some(pn));
            // Too short for the sample: no number.
            assert_eq!(protected_packet_sequence(&d[..1 + 8 + 4 + 15], 8, &*keys.protection()), None);
        }
        assert!(masked > 0, "header protection masks the packet number");
    }

    fn header(v6: bool) -> PseudoHeader {
        let (s, d): (IpAddr, IpAddr) = if v6 {
            ("fd00::1".parse().unwrap(), "ff3e::8000:1".parse().unwrap())
        } else {
            ([10, 0, 0, 1].into(), [232, 0, 0, 1].into())
        };
        PseudoHeader { source: s, destination: d, source_port: 40000, destination_port: 2000 }
    }

    #[test]
    fn pseudo_headers_are_laid_out_as_the_draft_says() {
        let mut out = [0u8; 48];
        let n = header(false).write(0xdead_beef, 1200, &mut out);
        assert_eq!(
            hex::encode(&out[..n]),
            ["0a000001", "e8000001", "00", "11", "04b0", "9c40", "07d0", "deadbeef"].concat()
        );
        assert_eq!(header(true).write(1, 0, &mut out), 44);
    }

    #[test]
    fn digests_are_the_truncated_hash_of_pseudo_header_and_payload() {
        let payload = b"a datagram";
        let h = header(false);
        let sha = DigestProfile::default_for(7);
        let mut ph = [0u8; 48];
        let n = h.write(7, payload.len(), &mut ph);
        let mut whole = ph[..n].to_vec();
        whole.extend_from_slice(payload);
        let full = ring::digest::digest(&ring::digest::SHA256, &whole);
        assert_eq!(sha.digest(&h, payload), full.as_ref()[..16]);
        let b2 = DigestProfile::new(HashAlgorithm::Blake2b, 512, 7).unwrap();
        assert_eq!(b2.digest(&h, payload), blake2b_simd::blake2b(&whole).as_bytes());
        // Any change of address, port, length, stream or payload changes it.
        let mut other = h;
        other.source_port += 1;
        assert_ne!(sha.digest(&other, payload), sha.digest(&h, payload));
        assert_ne!(DigestProfile::default_for(8).digest(&h, payload), sha.digest(&h, payload));
        assert_ne!(sha.digest(&h, b"a datagraM"), sha.digest(&h, payload));
    }

    #[test]
    fn profiles_parse_and_refuse_bad_truncations() {
        assert_eq!(DigestProfile::parse("sha-256", 1).unwrap(), DigestProfile::default_for(1));
        let b = DigestProfile::parse("BLAKE2b/80", 1).unwrap();
        assert_eq!(
            (b.algorithm, b.bits(), b.digest_len(), b.to_string()),
            (HashAlgorithm::Blake2b, 80, 10, "blake2b/80".into())
        );
        assert!(matches!(DigestProfile::parse("md5", 1), Err(ProfileError::Algorithm(_))));
        for bad in ["sha-256/56", "sha-256/130", "sha-256/264", "blake2b/520", "sha-256/x"] {
            assert!(matches!(DigestProfile::parse(bad, 1), Err(ProfileError::Bits { .. })), "{bad}");
        }
    }

    #[test]
    fn the_sequence_is_the_4_byte_packet_number() {
        let mut enc = crate::encoder::SessionEncoder::new(crate::encoder::EncoderConfig::new(
            crate::SessionId::from_hex("0102030405060708").unwrap(),
        ));
        let mut out = Vec::new();
        let req = [crate::qpack::HeaderField::new(":path", "/a")];
        let resp = [crate::qpack::HeaderField::new(":status", "200")];
        enc.push(&req, &resp, &[5u8; 3000], &mut out).unwrap();
        let seqs: Vec<u32> = out.iter().map(|d| packet_sequence(d, 8).unwrap()).collect();
        let first = seqs[0];
        assert_eq!(seqs, (first..first + out.len() as u32).collect::<Vec<_>>());
        assert_eq!(packet_sequence(&[0x40, 1, 2], 8), None);
    }
}
