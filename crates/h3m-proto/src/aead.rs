//! QUIC packet protection (RFC 9001 §5) for h3m sessions whose advertisement
//! names a real cipher suite: AES-128-GCM (`1301`), AES-256-GCM (`1302`) or
//! ChaCha20-Poly1305 (`1303`), with the `key` and `iv` from the advertisement.
//!
//! Payload protection is ordinary QUIC AEAD: the nonce is the IV XORed with the
//! packet number (left-padded, big-endian), the associated data is the
//! unprotected header. Header protection is QUIC's (RFC 9001 §5.4): a 5-byte
//! mask from a 16-byte sample taken 4 bytes after the start of the packet
//! number masks the first byte's low 5 bits and the packet number.
//!
//! # The header-protection key rule (an h3m extension)
//!
//! The draft's advertisement carries no header-protection key, so h3m derives
//! one from the session key:
//!
//! ```text
//! prk    = HKDF-Extract(salt = "h3m hp", ikm = key)            (the suite's hash)
//! hp_key = HKDF-Expand-Label(prk, "quic hp", "", len(key))     (RFC 8446 §7.1)
//! ```
//!
//! where the hash is SHA-256 for `1301` and `1303` and SHA-384 for `1302`.
//! Receivers and senders that follow this rule interoperate; it is advertised
//! as the h3m extension [`HP_RULE_EXTENSION`] in the Alt-Svc `extensions`
//! parameter.
//!
//! A packet too short to yield a sample cannot be protected: the packet writer
//! pads protected packets ([`crate::packet::write_packet`]).

use std::sync::Arc;

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::SecureRandom;

use crate::altsvc::Advertisement;
use crate::protection::{CipherSuite, PacketProtection, ProtectionError};

/// The Alt-Svc `extensions` code point announcing the header-protection key
/// rule above (from the private-use-like range of QUIC transport parameters).
pub const HP_RULE_EXTENSION: u16 = 0x4833;

/// The sample length of QUIC header protection.
pub const SAMPLE_LEN: usize = 16;

/// Why keys could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The null suite has no keys.
    #[error("the null cipher suite takes no key")]
    NullSuite,
    /// The key has the wrong length for the suite.
    #[error("key is {got} bytes; the suite needs {expected}")]
    KeyLength {
        /// What the suite needs.
        expected: usize,
        /// What was given.
        got: usize,
    },
    /// The IV is not 12 bytes.
    #[error("IV is {0} bytes; 12 are needed")]
    IvLength(usize),
    /// An advertisement names an AEAD suite but carries no key or no IV.
    #[error("cipher suite {:04x} needs a key and an iv; the advertisement lacks them", .0.code())]
    Missing(CipherSuite),
    /// The random number generator failed while generating keys.
    #[error("no random numbers for a session key")]
    Random,
}

/// A session's packet-protection keys as an advertisement carries them: an
/// AEAD cipher suite with its key and IV, checked when built, so keys of the
/// wrong length (or the null suite) cannot be represented and using them
/// cannot fail. The one key type of senders and receivers.
#[derive(Clone)]
pub struct PacketKeys {
    key: Vec<u8>,
    iv: [u8; 12],
    protection: Arc<AeadProtection>,
}

impl std::fmt::Debug for PacketKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key material never appears in logs.
        f.debug_struct("PacketKeys").field("suite", &self.suite()).finish_non_exhaustive()
    }
}

impl PartialEq for PacketKeys {
    fn eq(&self, other: &Self) -> bool {
        (self.suite(), &self.key, self.iv) == (other.suite(), &other.key, other.iv)
    }
}

impl Eq for PacketKeys {}

impl PacketKeys {
    /// Checks `key` and `iv` against `suite` (an AEAD suite: [`KeyError::NullSuite`]
    /// otherwise) and builds the protection they give, with the
    /// header-protection key derived by h3m's rule (module docs).
    pub fn new(suite: CipherSuite, key: &[u8], iv: &[u8]) -> Result<Self, KeyError> {
        let protection = AeadProtection::from_advertisement(suite, key, iv)?;
        let iv: [u8; 12] = iv.try_into().map_err(|_| KeyError::IvLength(iv.len()))?;
        Ok(PacketKeys { key: key.to_vec(), iv, protection: Arc::new(protection) })
    }

    /// Fresh keys for `suite` from `rng` (a sender's per-session keys).
    pub fn generate(suite: CipherSuite, rng: &dyn SecureRandom) -> Result<Self, KeyError> {
        if suite == CipherSuite::Null {
            return Err(KeyError::NullSuite);
        }
        let mut key = vec![0u8; suite.key_len()];
        let mut iv = [0u8; 12];
        rng.fill(&mut key).map_err(|_| KeyError::Random)?;
        rng.fill(&mut iv).map_err(|_| KeyError::Random)?;
        Self::new(suite, &key, &iv)
    }

    /// The keys an advertisement carries: `None` for the null suite (cleartext),
    /// [`KeyError::Missing`] for an AEAD suite without `key` or `iv`.
    pub fn from_advertisement(adv: &Advertisement) -> Result<Option<Self>, KeyError> {
        if adv.cipher_suite == CipherSuite::Null {
            return Ok(None);
        }
        match (&adv.key, &adv.iv) {
            (Some(key), Some(iv)) => Self::new(adv.cipher_suite, key, iv).map(Some),
            _ => Err(KeyError::Missing(adv.cipher_suite)),
        }
    }

    /// The cipher suite (never [`CipherSuite::Null`]).
    pub fn suite(&self) -> CipherSuite {
        self.protection.suite
    }

    /// The AEAD key, [`CipherSuite::key_len`] bytes.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The AEAD IV.
    pub fn iv(&self) -> &[u8; 12] {
        &self.iv
    }

    /// The packet protection these keys give (shared, not rebuilt).
    pub fn protection(&self) -> Box<dyn PacketProtection> {
        Box::new(Arc::clone(&self.protection))
    }
}

/// Shared protection (one key schedule for every sender or receiver built
/// from the same [`PacketKeys`]).
impl PacketProtection for Arc<AeadProtection> {
    fn suite(&self) -> CipherSuite {
        self.as_ref().suite()
    }

    fn tag_len(&self) -> usize {
        self.as_ref().tag_len()
    }

    fn unprotect_header(&self, packet: &mut [u8], pn_offset: usize) -> Result<(), ProtectionError> {
        self.as_ref().unprotect_header(packet, pn_offset)
    }

    fn protect_header(&self, packet: &mut [u8], pn_offset: usize, pn_len: usize) -> Result<(), ProtectionError> {
        self.as_ref().protect_header(packet, pn_offset, pn_len)
    }

    fn open(&self, packet_number: u64, header: &[u8], payload: &mut [u8]) -> Result<usize, ProtectionError> {
        self.as_ref().open(packet_number, header, payload)
    }

    fn seal(&self, packet_number: u64, header: &[u8], payload: &mut Vec<u8>) -> Result<(), ProtectionError> {
        self.as_ref().seal(packet_number, header, payload)
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
pub fn hkdf_expand_label(prk: &hkdf::Prk, label: &[u8], len: usize) -> Vec<u8> {
    let full_label_len = 6 + label.len();
    let info = [&(len as u16).to_be_bytes()[..], &[full_label_len as u8], b"tls13 ", label, &[0u8]];
    let mut out = vec![0u8; len];
    // `fill` only fails for lengths beyond 255 hash blocks, far above any key here.
    if let Ok(okm) = prk.expand(&info, Len(len)) {
        let _ = okm.fill(&mut out);
    }
    out
}

fn hkdf_alg(suite: CipherSuite) -> hkdf::Algorithm {
    match suite {
        CipherSuite::Aes256Gcm => hkdf::HKDF_SHA384,
        _ => hkdf::HKDF_SHA256,
    }
}

/// The header-protection key h3m derives from a session key (module docs).
pub fn derive_hp_key(suite: CipherSuite, key: &[u8]) -> Vec<u8> {
    let prk = hkdf::Salt::new(hkdf_alg(suite), b"h3m hp").extract(key);
    hkdf_expand_label(&prk, b"quic hp", key.len())
}

/// AEAD packet protection with fixed session keys.
pub struct AeadProtection {
    suite: CipherSuite,
    key: LessSafeKey,
    iv: [u8; 12],
    hp: aead::quic::HeaderProtectionKey,
}

impl std::fmt::Debug for AeadProtection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key material never appears in logs.
        f.debug_struct("AeadProtection").field("suite", &self.suite).finish_non_exhaustive()
    }
}

impl AeadProtection {
    /// Protection from explicit packet key, IV and header-protection key.
    pub fn from_parts(suite: CipherSuite, key: &[u8], iv: &[u8], hp_key: &[u8]) -> Result<Self, KeyError> {
        let (aead_alg, hp_alg) = match suite {
            CipherSuite::Null => return Err(KeyError::NullSuite),
            CipherSuite::Aes128Gcm => (&aead::AES_128_GCM, &aead::quic::AES_128),
            CipherSuite::Aes256Gcm => (&aead::AES_256_GCM, &aead::quic::AES_256),
            CipherSuite::ChaCha20Poly1305 => (&aead::CHACHA20_POLY1305, &aead::quic::CHACHA20),
        };
        let expected = suite.key_len();
        for k in [key, hp_key] {
            if k.len() != expected {
                return Err(KeyError::KeyLength { expected, got: k.len() });
            }
        }
        let iv: [u8; 12] = iv.try_into().map_err(|_| KeyError::IvLength(iv.len()))?;
        let unbound = UnboundKey::new(aead_alg, key).map_err(|_| KeyError::KeyLength { expected, got: key.len() })?;
        let hp = aead::quic::HeaderProtectionKey::new(hp_alg, hp_key)
            .map_err(|_| KeyError::KeyLength { expected, got: hp_key.len() })?;
        Ok(AeadProtection { suite, key: LessSafeKey::new(unbound), iv, hp })
    }

    /// Protection from an advertisement's `cipher-suite`, `key` and `iv`, with
    /// the header-protection key derived by h3m's rule.
    pub fn from_advertisement(suite: CipherSuite, key: &[u8], iv: &[u8]) -> Result<Self, KeyError> {
        if suite == CipherSuite::Null {
            return Err(KeyError::NullSuite);
        }
        let hp = derive_hp_key(suite, key);
        Self::from_parts(suite, key, iv, &hp)
    }

    fn nonce(&self, packet_number: u64) -> Nonce {
        let mut n = self.iv;
        for (b, p) in n[4..].iter_mut().zip(packet_number.to_be_bytes()) {
            *b ^= p;
        }
        Nonce::assume_unique_for_key(n)
    }

    fn mask(&self, packet: &[u8], pn_offset: usize) -> Result<[u8; 5], ProtectionError> {
        let sample = packet.get(pn_offset + 4..pn_offset + 4 + SAMPLE_LEN).ok_or(ProtectionError::TooShort)?;
        self.hp.new_mask(sample).map_err(|_| ProtectionError::TooShort)
    }
}

impl PacketProtection for AeadProtection {
    fn suite(&self) -> CipherSuite {
        self.suite
    }

    fn unprotect_header(&self, packet: &mut [u8], pn_offset: usize) -> Result<(), ProtectionError> {
        let mask = self.mask(packet, pn_offset)?;
        packet[0] ^= mask[0] & 0x1f;
        let pn_len = usize::from(packet[0] & 0x03) + 1;
        let pn = packet.get_mut(pn_offset..pn_offset + pn_len).ok_or(ProtectionError::TooShort)?;
        for (b, m) in pn.iter_mut().zip(&mask[1..]) {
            *b ^= m;
        }
        Ok(())
    }

    fn protect_header(&self, packet: &mut [u8], pn_offset: usize, pn_len: usize) -> Result<(), ProtectionError> {
        let mask = self.mask(packet, pn_offset)?;
        packet[0] ^= mask[0] & 0x1f;
        let pn = packet.get_mut(pn_offset..pn_offset + pn_len).ok_or(ProtectionError::TooShort)?;
        for (b, m) in pn.iter_mut().zip(&mask[1..]) {
            *b ^= m;
        }
        Ok(())
    }

    fn open(&self, packet_number: u64, header: &[u8], payload: &mut [u8]) -> Result<usize, ProtectionError> {
        let plain = self
            .key
            .open_in_place(self.nonce(packet_number), Aad::from(header), payload)
            .map_err(|_| ProtectionError::Authentication)?;
        Ok(plain.len())
    }

    fn seal(&self, packet_number: u64, header: &[u8], payload: &mut Vec<u8>) -> Result<(), ProtectionError> {
        self.key
            .seal_in_place_append_tag(self.nonce(packet_number), Aad::from(header), payload)
            .map_err(|_| ProtectionError::Authentication)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SessionId;
    use crate::packet::{open_packet, write_packet};
    use crate::protection::NullProtection;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("hex digits")
    }

    /// RFC 9001 Appendix A.5: a ChaCha20-Poly1305 short-header packet (empty
    /// destination connection ID, 3-byte packet number 654360564, PING).
    #[test]
    fn rfc9001_a5_chacha20_short_header() {
        let secret = hex("9ac312a7f877468ebe69422748ad00a15443f18203a07d6060f688f30f21632b");
        let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &secret);
        let key = hkdf_expand_label(&prk, b"quic key", 32);
        let iv = hkdf_expand_label(&prk, b"quic iv", 12);
        let hp = hkdf_expand_label(&prk, b"quic hp", 32);
        assert_eq!(key, hex("c6d98ff3441c3fe1b2182094f69caa2ed4b716b65488960a7a984979fb23e1c8"));
        assert_eq!(iv, hex("e0459b3474bdd0e44a41c144"));
        assert_eq!(hp, hex("25a282b9e82f06f21f488917a4fc8f1b73573685608597d0efcb076b0ab7a7a4"));
        let p = AeadProtection::from_parts(CipherSuite::ChaCha20Poly1305, &key, &iv, &hp).unwrap();
        let mut out = Vec::new();
        write_packet(&mut out, &SessionId::EMPTY, 654_360_564, 3, &[0x01], &p).unwrap();
        assert_eq!(out, hex("4cfe4189655e5cd55c41f69080575d7999c25a5bfb"));
        let opened = open_packet(&mut out, &SessionId::EMPTY, Some(654_360_563), &p).unwrap();
        assert_eq!((opened.packet_number, opened.payload), (654_360_564, &[0x01][..]));
    }

    #[test]
    fn every_suite_round_trips_and_rejects_forgeries() {
        let sid = SessionId::from_hex("53657373696f6e204944").unwrap();
        for (suite, key_len) in
            [(CipherSuite::Aes128Gcm, 16), (CipherSuite::Aes256Gcm, 32), (CipherSuite::ChaCha20Poly1305, 32)]
        {
            let key: Vec<u8> = (0..key_len as u8).collect();
            let iv = [7u8; 12];
            let p = AeadProtection::from_advertisement(suite, &key, &iv).unwrap();
            for (pn, pn_len, payload) in [(0u64, 1usize, &b"\x01"[..]), (70_000, 4, &[0x0a; 500][..]), (5, 2, b"")] {
                let mut out = Vec::new();
                write_packet(&mut out, &sid, pn, pn_len, payload, &p).unwrap();
                if payload.len() > 16 {
                    assert!(!out.windows(16).any(|w| w == &payload[..16]), "{suite:?}: payload in clear");
                }
                let mut copy = out.clone();
                let opened = open_packet(&mut copy, &sid, pn.checked_sub(1), &p).unwrap();
                assert_eq!(opened.packet_number, pn);
                assert_eq!(&opened.payload[..payload.len()], payload, "{suite:?}");
                assert!(opened.payload[payload.len()..].iter().all(|&b| b == 0), "padding only");
                // One flipped bit anywhere after the header fails authentication.
                let mut forged = out.clone();
                let last = forged.len() - 1;
                forged[last] ^= 1;
                assert_eq!(
                    open_packet(&mut forged, &sid, pn.checked_sub(1), &p).map(|o| o.packet_number),
                    Err(crate::packet::PacketError::Protection(ProtectionError::Authentication))
                );
                // Another key, or no key, cannot open it.
                let other = AeadProtection::from_advertisement(suite, &vec![0xee; key_len], &iv).unwrap();
                assert!(open_packet(&mut out.clone(), &sid, pn.checked_sub(1), &other).is_err());
                assert!(
                    open_packet(&mut out.clone(), &sid, pn.checked_sub(1), &NullProtection).map(|o| o.payload.to_vec())
                        != Ok(payload.to_vec())
                );
            }
        }
    }

    #[test]
    fn key_errors_and_debug_hides_keys() {
        assert_eq!(
            AeadProtection::from_advertisement(CipherSuite::Aes128Gcm, &[0; 8], &[0; 12]).map(|_| ()),
            Err(KeyError::KeyLength { expected: 16, got: 8 })
        );
        assert_eq!(
            AeadProtection::from_advertisement(CipherSuite::Aes128Gcm, &[0; 16], &[0; 16]).map(|_| ()),
            Err(KeyError::IvLength(16))
        );
        assert_eq!(
            AeadProtection::from_advertisement(CipherSuite::Null, &[], &[]).map(|_| ()),
            Err(KeyError::NullSuite)
        );
        let p = AeadProtection::from_advertisement(CipherSuite::Aes128Gcm, &[0x42; 16], &[0; 12]).unwrap();
        assert!(!format!("{p:?}").contains("42"));
        // The rule is deterministic and depends on the key.
        assert_eq!(derive_hp_key(CipherSuite::Aes128Gcm, &[1; 16]), derive_hp_key(CipherSuite::Aes128Gcm, &[1; 16]));
        assert_ne!(derive_hp_key(CipherSuite::Aes128Gcm, &[1; 16]), derive_hp_key(CipherSuite::Aes128Gcm, &[2; 16]));
        assert_eq!(derive_hp_key(CipherSuite::Aes256Gcm, &[1; 32]).len(), 32);
    }

    /// Keys that cannot protect packets are an error when the keys are built,
    /// so no sender or receiver can be handed them (and fall back to cleartext).
    #[test]
    fn packet_keys_are_checked_when_built() {
        assert_eq!(
            PacketKeys::new(CipherSuite::Aes128Gcm, &[0; 8], &[0; 12]),
            Err(KeyError::KeyLength { expected: 16, got: 8 })
        );
        assert_eq!(
            PacketKeys::new(CipherSuite::ChaCha20Poly1305, &[0; 16], &[0; 12]),
            Err(KeyError::KeyLength { expected: 32, got: 16 })
        );
        assert_eq!(PacketKeys::new(CipherSuite::Aes256Gcm, &[0; 32], &[0; 8]), Err(KeyError::IvLength(8)));
        assert_eq!(PacketKeys::new(CipherSuite::Null, &[], &[]), Err(KeyError::NullSuite));
        let rng = ring::rand::SystemRandom::new();
        assert_eq!(PacketKeys::generate(CipherSuite::Null, &rng), Err(KeyError::NullSuite));
        for suite in [CipherSuite::Aes128Gcm, CipherSuite::Aes256Gcm, CipherSuite::ChaCha20Poly1305] {
            let k = PacketKeys::generate(suite, &rng).unwrap();
            assert_eq!((k.suite(), k.key().len()), (suite, suite.key_len()));
            assert_ne!(PacketKeys::generate(suite, &rng).unwrap(), k, "fresh keys each time");
            assert_eq!(PacketKeys::new(suite, k.key(), k.iv()).unwrap(), k);
            assert_eq!(k.protection().suite(), suite);
            assert_eq!(k.protection().tag_len(), 16);
        }
        let k = PacketKeys::new(CipherSuite::Aes128Gcm, &[0x42; 16], &[0x24; 12]).unwrap();
        let debug = format!("{k:?}");
        assert!(!debug.contains("42") && !debug.contains("24") && debug.contains("Aes128Gcm"), "{debug}");
    }

    #[test]
    fn packet_keys_from_an_advertisement() {
        use crate::altsvc::parse_one;
        let plain = parse_one(r#"h3m-07="232.0.0.1:2000"; session-id=2a"#).unwrap();
        assert_eq!(PacketKeys::from_advertisement(&plain), Ok(None));
        let keyed = parse_one(
            r#"h3m-07="232.0.0.1:2000"; cipher-suite=1301; key=00112233445566778899aabbccddeeff; iv=0123456789abcdef01234567"#,
        )
        .unwrap();
        let k = PacketKeys::from_advertisement(&keyed).unwrap().unwrap();
        assert_eq!((k.suite(), k.key()[15], k.iv()[11]), (CipherSuite::Aes128Gcm, 0xff, 0x67));
        let mut no_iv = keyed.clone();
        no_iv.iv = None;
        assert_eq!(PacketKeys::from_advertisement(&no_iv), Err(KeyError::Missing(CipherSuite::Aes128Gcm)));
        assert_eq!(
            KeyError::Missing(CipherSuite::Aes128Gcm).to_string(),
            "cipher suite 1301 needs a key and an iv; the advertisement lacks them"
        );
        // Built by hand past the parser's checks: still refused, never cleartext.
        let mut short = keyed;
        short.key = Some(vec![0; 8]);
        assert_eq!(PacketKeys::from_advertisement(&short), Err(KeyError::KeyLength { expected: 16, got: 8 }));
    }

    /// The shared protection of [`PacketKeys`] is the same AEAD as building
    /// it from the advertisement's values: each opens what the other seals.
    #[test]
    fn packet_keys_protection_interoperates() {
        let sid = SessionId::from_hex("2a").unwrap();
        let k = PacketKeys::new(CipherSuite::Aes256Gcm, &[5; 32], &[6; 12]).unwrap();
        let direct = AeadProtection::from_advertisement(CipherSuite::Aes256Gcm, &[5; 32], &[6; 12]).unwrap();
        let mut out = Vec::new();
        write_packet(&mut out, &sid, 9, 4, &[0x01; 40], k.protection().as_ref()).unwrap();
        let opened = open_packet(&mut out, &sid, Some(8), &direct).unwrap();
        assert_eq!((opened.packet_number, &opened.payload[..40]), (9, &[0x01; 40][..]));
        let mut out = Vec::new();
        write_packet(&mut out, &sid, 10, 4, &[0x02; 40], &direct).unwrap();
        let opened = open_packet(&mut out, &sid, Some(9), k.protection().as_ref()).unwrap();
        assert_eq!((opened.packet_number, &opened.payload[..40]), (10, &[0x02; 40][..]));
    }

    #[test]
    fn receiver_drops_and_counts_every_forged_packet() {
        use crate::encoder::{EncoderConfig, SessionEncoder};
        use crate::qpack::HeaderField;
        use crate::receiver::{Event, Receiver, ReceiverConfig};
        let sid = SessionId::from_hex("2a").unwrap();
        let (key, iv) = ([9u8; 16], [3u8; 12]);
        let keyed = || Box::new(AeadProtection::from_advertisement(CipherSuite::Aes128Gcm, &key, &iv).unwrap());
        let req = [HeaderField::new(":method", "GET"), HeaderField::new(":path", "/f")];
        let resp = [HeaderField::new(":status", "200")];
        let genuine: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let mut good = Vec::new();
        SessionEncoder::with_protection(EncoderConfig::new(sid), keyed())
            .push(&req, &resp, &genuine, &mut good)
            .unwrap();
        // Injectors on the same session ID: one without a key, one with another key.
        let mut forged = Vec::new();
        SessionEncoder::new(EncoderConfig::new(sid)).push(&req, &resp, &[0xee; 5000], &mut forged).unwrap();
        let other = Box::new(AeadProtection::from_advertisement(CipherSuite::Aes128Gcm, &[1; 16], &iv).unwrap());
        SessionEncoder::with_protection(EncoderConfig::new(sid), other)
            .push(&req, &resp, &[0xdd; 5000], &mut forged)
            .unwrap();
        let mut cfg = ReceiverConfig::new(sid);
        cfg.protection = keyed();
        let mut rx = Receiver::new(cfg);
        let now = std::time::Instant::now();
        // Forgeries first, so they would win any race for the same stream offsets.
        for d in forged.iter().chain(&good) {
            rx.handle_datagram(now, d);
        }
        let mut body = vec![0u8; 5000];
        let mut complete = false;
        while let Some(e) = rx.poll_event() {
            match e {
                Event::BodyData { offset, data, .. } => {
                    body[offset as usize..offset as usize + data.len()].copy_from_slice(&data)
                }
                Event::PushFinished(s) => complete = s.is_complete(),
                _ => {}
            }
        }
        assert!(complete);
        assert_eq!(body, genuine, "no forged byte");
        assert_eq!(rx.stats().protection_failures, forged.len() as u64);
        assert_eq!(rx.stats().packets, good.len() as u64);
    }
}
