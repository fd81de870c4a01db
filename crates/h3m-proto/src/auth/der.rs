//! A minimal DER (X.690) walker: just enough to take keys out of the
//! structures OpenSSL writes.
//!
//! * `SubjectPublicKeyInfo` (RFC 5280 §4.1.2.7, `BEGIN PUBLIC KEY`): the key
//!   algorithm and the key bytes ([`parse_spki`]).
//! * X.509 `Certificate` (`BEGIN CERTIFICATE`): its `SubjectPublicKeyInfo`
//!   ([`certificate_spki`]); nothing else of the certificate is read or checked.
//! * PKCS#8 `PrivateKeyInfo` (RFC 5958, `BEGIN PRIVATE KEY`): the key
//!   algorithm and the private key's bytes ([`parse_pkcs8`]); ring parses the rest.
//! * SEC 1 `ECPrivateKey` (RFC 5915, `BEGIN EC PRIVATE KEY`): the private
//!   scalar, curve and public point ([`parse_sec1`]).
//! * PKCS#1 `RSAPublicKey`: the modulus size ([`rsa_modulus_bits`]).
//!
//! Only definite lengths and single-byte tags are accepted; nesting is walked
//! iteratively, so no input can exhaust the stack. Nothing here panics.

/// Why DER bytes did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DerError {
    /// The input ended inside an element.
    #[error("DER: truncated element")]
    Truncated,
    /// An element of another type where this one was expected.
    #[error("DER: expected tag {expected:#04x}, found {found:#04x}")]
    UnexpectedTag {
        /// The tag wanted.
        expected: u8,
        /// The tag found.
        found: u8,
    },
    /// An indefinite, over-long or non-minimal length.
    #[error("DER: unsupported length encoding")]
    BadLength,
    /// A multi-byte (high-number) tag.
    #[error("DER: unsupported high-number tag")]
    HighTag,
    /// Bytes after the outermost element.
    #[error("DER: trailing bytes after the structure")]
    TrailingData,
    /// A BIT STRING whose unused-bits count is not 0.
    #[error("DER: BIT STRING with unused bits")]
    UnusedBits,
    /// A version number this walker does not know.
    #[error("DER: unsupported version {0}")]
    Version(u64),
    /// An INTEGER that is empty or negative where a positive one is needed.
    #[error("DER: bad INTEGER")]
    BadInteger,
}

/// DER tags used here.
pub mod tag {
    /// INTEGER.
    pub const INTEGER: u8 = 0x02;
    /// BIT STRING.
    pub const BIT_STRING: u8 = 0x03;
    /// OCTET STRING.
    pub const OCTET_STRING: u8 = 0x04;
    /// NULL.
    pub const NULL: u8 = 0x05;
    /// OBJECT IDENTIFIER.
    pub const OID: u8 = 0x06;
    /// SEQUENCE (constructed).
    pub const SEQUENCE: u8 = 0x30;
    /// `[0]` constructed, context-specific.
    pub const CONTEXT_0: u8 = 0xa0;
    /// `[1]` constructed, context-specific.
    pub const CONTEXT_1: u8 = 0xa1;
}

/// Object identifiers (DER content bytes).
pub mod oid {
    /// rsaEncryption, 1.2.840.113549.1.1.1.
    pub const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    /// id-RSASSA-PSS, 1.2.840.113549.1.1.10 (RFC 4055).
    pub const RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
    /// id-ecPublicKey, 1.2.840.10045.2.1.
    pub const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    /// prime256v1 / secp256r1, 1.2.840.10045.3.1.7.
    pub const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    /// id-Ed25519, 1.3.101.112.
    pub const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
}

/// One element: its tag and content bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The tag byte.
    pub tag: u8,
    /// The content bytes.
    pub value: &'a [u8],
}

/// A cursor over consecutive DER elements.
#[derive(Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

// The bytes may belong to a private key: `Debug` shows tags and lengths only.
impl std::fmt::Debug for Tlv<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tlv").field("tag", &self.tag).field("len", &self.value.len()).finish()
    }
}

impl std::fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").field("remaining", &self.rest.len()).finish()
    }
}

impl<'a> Reader<'a> {
    /// A reader over `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Reader { rest: input }
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next element's tag, without reading it.
    pub fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Reads the next element, whatever its tag.
    pub fn any(&mut self) -> Result<Tlv<'a>, DerError> {
        let (&tag, rest) = self.rest.split_first().ok_or(DerError::Truncated)?;
        if tag & 0x1f == 0x1f {
            return Err(DerError::HighTag);
        }
        let (&first, mut rest) = rest.split_first().ok_or(DerError::Truncated)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return Err(if rest.len() < n { DerError::Truncated } else { DerError::BadLength });
            }
            let mut len = 0usize;
            for &b in &rest[..n] {
                len = (len << 8) | usize::from(b);
            }
            // DER: the shortest form, and the long form only from 128 on.
            if len < 0x80 || rest[0] == 0 {
                return Err(DerError::BadLength);
            }
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return Err(DerError::Truncated);
        }
        let (value, rest) = rest.split_at(len);
        self.rest = rest;
        Ok(Tlv { tag, value })
    }

    /// Reads the next element, which must have tag `expected`.
    pub fn expect(&mut self, expected: u8) -> Result<&'a [u8], DerError> {
        let tlv = self.any()?;
        if tlv.tag != expected {
            return Err(DerError::UnexpectedTag { expected, found: tlv.tag });
        }
        Ok(tlv.value)
    }

    /// Reads the next element if it has tag `tag`.
    pub fn optional(&mut self, tag: u8) -> Result<Option<&'a [u8]>, DerError> {
        if self.peek_tag() == Some(tag) { self.expect(tag).map(Some) } else { Ok(None) }
    }

    /// A SEQUENCE's contents, as a reader.
    pub fn sequence(&mut self) -> Result<Reader<'a>, DerError> {
        self.expect(tag::SEQUENCE).map(Reader::new)
    }

    /// A small non-negative INTEGER.
    pub fn small_uint(&mut self) -> Result<u64, DerError> {
        let v = self.expect(tag::INTEGER)?;
        if v.is_empty() || v[0] & 0x80 != 0 || v.len() > 8 {
            return Err(DerError::BadInteger);
        }
        Ok(v.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// A BIT STRING with no unused bits: its bytes.
    pub fn bit_string(&mut self) -> Result<&'a [u8], DerError> {
        match self.expect(tag::BIT_STRING)?.split_first() {
            Some((0, bytes)) => Ok(bytes),
            Some(_) => Err(DerError::UnusedBits),
            None => Err(DerError::Truncated),
        }
    }

    /// Fails unless everything has been read.
    pub fn finish(&self) -> Result<(), DerError> {
        if self.rest.is_empty() { Ok(()) } else { Err(DerError::TrailingData) }
    }
}

/// The contents of the single outermost SEQUENCE of `der`.
fn outer_sequence(der: &[u8]) -> Result<Reader<'_>, DerError> {
    let mut r = Reader::new(der);
    let seq = r.sequence()?;
    r.finish()?;
    Ok(seq)
}

/// An AlgorithmIdentifier: the algorithm OID and its parameters element, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlgorithmId<'a> {
    /// The algorithm's OID (content bytes).
    pub oid: &'a [u8],
    /// The parameters (a curve OID for EC keys, NULL for RSA, absent for Ed25519).
    pub params: Option<Tlv<'a>>,
}

fn algorithm_id<'a>(r: &mut Reader<'a>) -> Result<AlgorithmId<'a>, DerError> {
    let mut alg = r.sequence()?;
    let oid = alg.expect(tag::OID)?;
    let params = if alg.is_empty() { None } else { Some(alg.any()?) };
    alg.finish()?;
    Ok(AlgorithmId { oid, params })
}

/// A SubjectPublicKeyInfo, taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spki<'a> {
    /// The key's algorithm.
    pub algorithm: AlgorithmId<'a>,
    /// The subjectPublicKey BIT STRING's bytes: a PKCS#1 `RSAPublicKey` for
    /// RSA, the uncompressed point for EC, the 32 key bytes for Ed25519.
    pub key: &'a [u8],
}

/// Parses a DER SubjectPublicKeyInfo.
pub fn parse_spki(der: &[u8]) -> Result<Spki<'_>, DerError> {
    let mut seq = outer_sequence(der)?;
    let spki = spki_fields(&mut seq)?;
    seq.finish()?;
    Ok(spki)
}

fn spki_fields<'a>(seq: &mut Reader<'a>) -> Result<Spki<'a>, DerError> {
    let algorithm = algorithm_id(seq)?;
    let key = seq.bit_string()?;
    Ok(Spki { algorithm, key })
}

/// The DER SubjectPublicKeyInfo (the whole element, tag and length included)
/// of a DER X.509 certificate.
pub fn certificate_spki(der: &[u8]) -> Result<&[u8], DerError> {
    let mut cert = outer_sequence(der)?;
    let mut tbs = cert.sequence()?;
    // version [0] EXPLICIT (absent for v1), serialNumber, signature, issuer,
    // validity, subject, then subjectPublicKeyInfo.
    tbs.optional(tag::CONTEXT_0)?;
    tbs.expect(tag::INTEGER)?;
    for _ in 0..4 {
        tbs.sequence()?;
    }
    let before = tbs.rest;
    let tlv = tbs.any()?;
    if tlv.tag != tag::SEQUENCE {
        return Err(DerError::UnexpectedTag { expected: tag::SEQUENCE, found: tlv.tag });
    }
    let whole = &before[..before.len() - tbs.rest.len()];
    parse_spki(whole)?;
    Ok(whole)
}

/// A PKCS#8 PrivateKeyInfo, taken apart.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Pkcs8<'a> {
    /// The version: 0 (RFC 5208) or 1 (RFC 5958, with the public key).
    pub version: u64,
    /// The key's algorithm.
    pub algorithm: AlgorithmId<'a>,
    /// The privateKey OCTET STRING's contents (an RSAPrivateKey for RSA).
    pub private_key: &'a [u8],
}

impl std::fmt::Debug for Pkcs8<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("Pkcs8")
            .field("version", &self.version)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Parses a DER PKCS#8 PrivateKeyInfo down to its private key's bytes (the
/// key itself is left to ring).
pub fn parse_pkcs8(der: &[u8]) -> Result<Pkcs8<'_>, DerError> {
    let mut seq = outer_sequence(der)?;
    let version = seq.small_uint()?;
    if version > 1 {
        return Err(DerError::Version(version));
    }
    let algorithm = algorithm_id(&mut seq)?;
    let private_key = seq.expect(tag::OCTET_STRING)?;
    Ok(Pkcs8 { version, algorithm, private_key })
}

/// A SEC 1 ECPrivateKey, taken apart.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sec1<'a> {
    /// The private scalar, big-endian.
    pub private_key: &'a [u8],
    /// The named curve's OID, if given.
    pub curve: Option<&'a [u8]>,
    /// The uncompressed public point, if given.
    pub public_key: Option<&'a [u8]>,
}

impl std::fmt::Debug for Sec1<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sec1").field("curve", &self.curve).finish_non_exhaustive()
    }
}

/// Parses a DER SEC 1 ECPrivateKey (version 1).
pub fn parse_sec1(der: &[u8]) -> Result<Sec1<'_>, DerError> {
    let mut seq = outer_sequence(der)?;
    let version = seq.small_uint()?;
    if version != 1 {
        return Err(DerError::Version(version));
    }
    let private_key = seq.expect(tag::OCTET_STRING)?;
    let curve = match seq.optional(tag::CONTEXT_0)? {
        Some(inner) => {
            let mut r = Reader::new(inner);
            let oid = r.expect(tag::OID)?;
            r.finish()?;
            Some(oid)
        }
        None => None,
    };
    let public_key = match seq.optional(tag::CONTEXT_1)? {
        Some(inner) => {
            let mut r = Reader::new(inner);
            let bits = r.bit_string()?;
            r.finish()?;
            Some(bits)
        }
        None => None,
    };
    seq.finish()?;
    Ok(Sec1 { private_key, curve, public_key })
}

/// The modulus size in bits of a DER PKCS#1 RSAPublicKey
/// (`SEQUENCE { modulus INTEGER, publicExponent INTEGER }`).
pub fn rsa_modulus_bits(der: &[u8]) -> Result<usize, DerError> {
    let mut seq = outer_sequence(der)?;
    let n = seq.expect(tag::INTEGER)?;
    let e = seq.expect(tag::INTEGER)?;
    seq.finish()?;
    if e.is_empty() || e[0] & 0x80 != 0 {
        return Err(DerError::BadInteger);
    }
    let n = match n.split_first() {
        Some((0, rest)) => rest,
        Some((b, _)) if b & 0x80 != 0 => return Err(DerError::BadInteger),
        Some(_) => n,
        None => return Err(DerError::BadInteger),
    };
    match n.first() {
        Some(&top) if top != 0 => Ok(n.len() * 8 - top.leading_zeros() as usize),
        _ => Err(DerError::BadInteger),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths() {
        assert_eq!(Reader::new(&[0x04, 0x02, 1, 2]).any(), Ok(Tlv { tag: 4, value: &[1, 2] }));
        assert_eq!(Reader::new(&[0x04, 0x03, 1, 2]).any(), Err(DerError::Truncated));
        assert_eq!(Reader::new(&[0x04, 0x80]).any(), Err(DerError::BadLength));
        assert_eq!(Reader::new(&[0x04, 0x81, 0x05, 0, 0, 0, 0, 0]).any(), Err(DerError::BadLength));
        assert_eq!(Reader::new(&[0x04, 0x82, 0x00, 0x80]).any(), Err(DerError::BadLength));
        assert_eq!(Reader::new(&[0x04, 0x85, 1, 1, 1, 1, 1]).any(), Err(DerError::BadLength));
        assert_eq!(Reader::new(&[0x1f, 0x01, 0x00]).any(), Err(DerError::HighTag));
        assert_eq!(Reader::new(&[]).any(), Err(DerError::Truncated));
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([7u8; 0x80]);
        assert_eq!(Reader::new(&long).any().map(|t| t.value.len()), Ok(0x80));
        assert_eq!(parse_spki(&[0x30, 0x00, 0x00]), Err(DerError::TrailingData));
    }

    #[test]
    fn modulus_bits() {
        assert_eq!(rsa_modulus_bits(&[0x30, 0x07, 0x02, 0x02, 0x00, 0x81, 0x02, 0x01, 0x03]), Ok(8));
        assert_eq!(rsa_modulus_bits(&[0x30, 0x07, 0x02, 0x02, 0x01, 0x00, 0x02, 0x01, 0x03]), Ok(9));
        assert_eq!(rsa_modulus_bits(&[0x30, 0x06, 0x02, 0x01, 0x81, 0x02, 0x01, 0x03]), Err(DerError::BadInteger));
        assert_eq!(rsa_modulus_bits(&[0x30, 0x05, 0x02, 0x00, 0x02, 0x01, 0x03]), Err(DerError::BadInteger));
    }
}
