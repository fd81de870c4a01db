//! The packet-protection seam.
//!
//! h3m sessions are protected (or not) by the cipher suite named in the session's
//! advertisement. nghq uses no protection at all: no AEAD tag and an all-zero
//! header-protection mask, which [`NullProtection`] reproduces. Real AEAD suites
//! plug in behind [`PacketProtection`] without the packet codec changing.

/// A TLS cipher-suite code point as carried in the Alt-Svc `cipher-suite` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CipherSuite {
    /// `0000`, TLS_NULL_WITH_NULL_NULL: cleartext, what nghq uses.
    #[default]
    Null,
    /// `1301`, TLS_AES_128_GCM_SHA256.
    Aes128Gcm,
    /// `1302`, TLS_AES_256_GCM_SHA384.
    Aes256Gcm,
    /// `1303`, TLS_CHACHA20_POLY1305_SHA256.
    ChaCha20Poly1305,
}

/// A cipher suite name h3m does not know (see [`CipherSuite`]'s `FromStr`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown cipher suite {0:?}: use 0000, 1301, 1302 or 1303")]
pub struct UnknownCipherSuite(pub String);

impl std::str::FromStr for CipherSuite {
    type Err = UnknownCipherSuite;

    /// Parses a TLS code point as four hex digits (`1301`, optionally `0x1301`).
    fn from_str(text: &str) -> Result<Self, UnknownCipherSuite> {
        let digits = text.strip_prefix("0x").unwrap_or(text);
        (digits.len() == 4)
            .then(|| u16::from_str_radix(digits, 16).ok())
            .flatten()
            .and_then(CipherSuite::from_code)
            .ok_or_else(|| UnknownCipherSuite(text.to_owned()))
    }
}

impl CipherSuite {
    /// The suite for a code point, or `None` when h3m does not support it.
    pub fn from_code(code: u16) -> Option<Self> {
        match code {
            0x0000 => Some(Self::Null),
            0x1301 => Some(Self::Aes128Gcm),
            0x1302 => Some(Self::Aes256Gcm),
            0x1303 => Some(Self::ChaCha20Poly1305),
            _ => None,
        }
    }

    /// The TLS code point.
    pub fn code(self) -> u16 {
        match self {
            Self::Null => 0x0000,
            Self::Aes128Gcm => 0x1301,
            Self::Aes256Gcm => 0x1302,
            Self::ChaCha20Poly1305 => 0x1303,
        }
    }

    /// The AEAD key length in bytes (0 for the null suite).
    pub fn key_len(self) -> usize {
        match self {
            Self::Null => 0,
            Self::Aes128Gcm => 16,
            Self::Aes256Gcm | Self::ChaCha20Poly1305 => 32,
        }
    }

    /// The AEAD IV length in bytes (0 for the null suite).
    pub fn iv_len(self) -> usize {
        match self {
            Self::Null => 0,
            _ => 12,
        }
    }

    /// The AEAD tag length in bytes added to every packet (0 for the null suite).
    pub fn tag_len(self) -> usize {
        match self {
            Self::Null => 0,
            _ => 16,
        }
    }
}

/// Why packet protection could not be applied or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtectionError {
    /// The packet is too short to carry a header-protection sample or a tag.
    #[error("packet too short for packet protection")]
    TooShort,
    /// The AEAD tag did not verify: the packet was not sealed with this key.
    #[error("packet failed authentication")]
    Authentication,
}

/// Packet protection for one session: header protection plus AEAD payload
/// protection, as in RFC 9001 §5, with keys fixed for the whole session.
///
/// The packet codec calls these in the RFC 9001 order: on receipt
/// [`unprotect_header`](Self::unprotect_header) then [`open`](Self::open); on
/// send [`seal`](Self::seal) then [`protect_header`](Self::protect_header).
pub trait PacketProtection: Send + Sync {
    /// The cipher suite this protection implements.
    fn suite(&self) -> CipherSuite;

    /// Bytes [`seal`](Self::seal) appends to every payload (the AEAD tag).
    fn tag_len(&self) -> usize {
        self.suite().tag_len()
    }

    /// Removes header protection in place. `packet` is the whole packet and
    /// `pn_offset` the offset of the packet-number field; the first byte's low
    /// five bits and the packet-number bytes are unmasked.
    fn unprotect_header(&self, packet: &mut [u8], pn_offset: usize) -> Result<(), ProtectionError>;

    /// Applies header protection in place, the inverse of
    /// [`unprotect_header`](Self::unprotect_header); `pn_len` is the encoded
    /// packet-number length.
    fn protect_header(&self, packet: &mut [u8], pn_offset: usize, pn_len: usize) -> Result<(), ProtectionError>;

    /// Authenticates and decrypts `payload` in place, with `header` (the
    /// unprotected header bytes) as associated data. Returns the plaintext length.
    fn open(&self, packet_number: u64, header: &[u8], payload: &mut [u8]) -> Result<usize, ProtectionError>;

    /// Encrypts `payload` in place and appends the tag.
    fn seal(&self, packet_number: u64, header: &[u8], payload: &mut Vec<u8>) -> Result<(), ProtectionError>;
}

/// No protection, as nghq sends: no tag, and a header-protection mask of zeros.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NullProtection;

impl PacketProtection for NullProtection {
    fn suite(&self) -> CipherSuite {
        CipherSuite::Null
    }

    fn unprotect_header(&self, _packet: &mut [u8], _pn_offset: usize) -> Result<(), ProtectionError> {
        Ok(())
    }

    fn protect_header(&self, _packet: &mut [u8], _pn_offset: usize, _pn_len: usize) -> Result<(), ProtectionError> {
        Ok(())
    }

    fn open(&self, _pn: u64, _header: &[u8], payload: &mut [u8]) -> Result<usize, ProtectionError> {
        Ok(payload.len())
    }

    fn seal(&self, _pn: u64, _header: &[u8], _payload: &mut Vec<u8>) -> Result<(), ProtectionError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_points_round_trip() {
        for suite in [CipherSuite::Null, CipherSuite::Aes128Gcm, CipherSuite::Aes256Gcm, CipherSuite::ChaCha20Poly1305]
        {
            assert_eq!(CipherSuite::from_code(suite.code()), Some(suite));
        }
        assert_eq!(CipherSuite::from_code(0x1304), None);
        let lens = |s: CipherSuite| (s.key_len(), s.iv_len());
        assert_eq!(lens(CipherSuite::Null), (0, 0));
        assert_eq!(lens(CipherSuite::Aes128Gcm), (16, 12));
        assert_eq!(lens(CipherSuite::Aes256Gcm), (32, 12));
        assert_eq!(lens(CipherSuite::ChaCha20Poly1305), (32, 12));
    }

    #[test]
    fn cipher_suites_parse_from_four_hex_digits() {
        for (text, suite) in [
            ("0000", CipherSuite::Null),
            ("1301", CipherSuite::Aes128Gcm),
            ("0x1302", CipherSuite::Aes256Gcm),
            ("1303", CipherSuite::ChaCha20Poly1305),
        ] {
            assert_eq!(text.parse::<CipherSuite>(), Ok(suite), "{text}");
        }
        for text in ["1304", "130", "01301", "0x", "zz01", "", "+301", "0X1301"] {
            assert_eq!(text.parse::<CipherSuite>(), Err(UnknownCipherSuite(text.to_owned())), "{text}");
        }
    }

    #[test]
    fn null_protection_is_identity() {
        let mut packet = b"\x40abc\x01payload".to_vec();
        let p = NullProtection;
        p.unprotect_header(&mut packet, 4).unwrap();
        let (header, payload) = packet.split_at_mut(5);
        assert_eq!(p.open(1, header, payload), Ok(7));
        assert_eq!(&packet, b"\x40abc\x01payload");
        assert_eq!(p.tag_len(), 0);
    }
}
