//! Keys: [`VerifyingKey`] from a PEM public key or certificate, [`SigningKey`]
//! from a PEM private key, and the signature algorithms both speak.
//!
//! Supported key types: RSA (2048 to 8192 bits; `rsaEncryption` keys, and
//! `id-RSASSA-PSS` keys restricted to RSASSA-PSS), ECDSA on P-256, Ed25519,
//! and HMAC-SHA256 shared secrets (RFC 9421 `hmac-sha256`; at least 32 bytes,
//! as RFC 2104 advises). A certificate is only a container for its public
//! key here: its validity dates, issuer and extensions are not read (trust is
//! configured per key).
//!
//! Neither type prints key material in its `Debug` output: a verifying key
//! shows its type and a short fingerprint (none for a shared secret: any
//! digest of it would let a weak secret be guessed offline), a signing key
//! only its type.

use std::path::{Path, PathBuf};

use ring::hmac;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey};

use super::der::{self, DerError, oid};
use super::pem::{self, PemError};

/// The type of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// RSA (`rsaEncryption`): PKCS#1 v1.5 and PSS signatures.
    Rsa,
    /// RSA restricted to RSASSA-PSS (`id-RSASSA-PSS` keys, RFC 4055).
    RsaPss,
    /// ECDSA on NIST P-256 (secp256r1).
    EcdsaP256,
    /// Ed25519.
    Ed25519,
    /// An HMAC-SHA256 shared secret.
    HmacSha256,
}

impl std::fmt::Display for KeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyType::Rsa => "RSA",
            KeyType::RsaPss => "RSA-PSS",
            KeyType::EcdsaP256 => "ECDSA P-256",
            KeyType::Ed25519 => "Ed25519",
            KeyType::HmacSha256 => "HMAC-SHA256",
        })
    }
}

/// A signature algorithm: key type, hash and encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (cavage `rsa-sha256`, RFC 9421 `rsa-v1_5-sha256`).
    RsaPkcs1Sha256,
    /// RSASSA-PSS with SHA-512 (RFC 9421 `rsa-pss-sha512`).
    RsaPssSha512,
    /// ECDSA P-256 with SHA-256, signature as a DER `Ecdsa-Sig-Value` (cavage `ec-sha256`).
    EcdsaP256Sha256Asn1,
    /// ECDSA P-256 with SHA-256, signature as `r || s`, 64 bytes (RFC 9421 `ecdsa-p256-sha256`).
    EcdsaP256Sha256Fixed,
    /// Ed25519 (cavage `ed25519`/`hs2019`, RFC 9421 `ed25519`).
    Ed25519,
    /// HMAC with SHA-256, 32 bytes (RFC 9421 `hmac-sha256`).
    HmacSha256,
}

impl SignatureAlgorithm {
    /// The key type the algorithm needs (an RSA-PSS key also makes and
    /// checks [`RsaPssSha512`](Self::RsaPssSha512): see [`accepts`](Self::accepts)).
    pub fn key_type(self) -> KeyType {
        match self {
            SignatureAlgorithm::RsaPkcs1Sha256 | SignatureAlgorithm::RsaPssSha512 => KeyType::Rsa,
            SignatureAlgorithm::EcdsaP256Sha256Asn1 | SignatureAlgorithm::EcdsaP256Sha256Fixed => KeyType::EcdsaP256,
            SignatureAlgorithm::Ed25519 => KeyType::Ed25519,
            SignatureAlgorithm::HmacSha256 => KeyType::HmacSha256,
        }
    }

    /// Whether a key of type `key` makes and checks this algorithm's signatures.
    pub fn accepts(self, key: KeyType) -> bool {
        key == self.key_type() || (self == SignatureAlgorithm::RsaPssSha512 && key == KeyType::RsaPss)
    }
}

/// Why a key could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The PEM text is malformed.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// The DER structure is malformed.
    #[error(transparent)]
    Der(#[from] DerError),
    /// No PEM block holds a public key or certificate (the labels found are listed).
    #[error("no public key or certificate (PEM blocks found: {0})")]
    NoPublicKey(String),
    /// No PEM block holds a private key (the labels found are listed).
    #[error("no private key (PEM blocks found: {0})")]
    NoPrivateKey(String),
    /// A private key where a public key or certificate is wanted.
    #[error("`{0}` is a private key: give the public key or certificate to trust")]
    PrivateKeyGiven(String),
    /// An encrypted private key (`BEGIN ENCRYPTED PRIVATE KEY`).
    #[error("the private key is encrypted; decrypt it first (openssl pkey -in KEY -out PLAIN)")]
    Encrypted,
    /// A key algorithm other than RSA, EC and Ed25519 (its OID, dotted).
    #[error("unsupported key algorithm {0}")]
    UnsupportedAlgorithm(String),
    /// An EC key on a curve other than P-256 (the curve's OID, dotted).
    #[error("unsupported elliptic curve {0} (only P-256)")]
    UnsupportedCurve(String),
    /// An RSA modulus outside 2048 to 8192 bits.
    #[error("RSA modulus of {0} bits (2048 to 8192 are accepted)")]
    RsaModulusSize(usize),
    /// Key bytes of the wrong form (e.g. a compressed EC point).
    #[error("malformed {0} key")]
    Malformed(KeyType),
    /// ring rejected the key (inconsistent or unsupported private key).
    #[error("key rejected: {0}")]
    Rejected(String),
    /// An `id-RSASSA-PSS` key with parameters (only parameterless keys,
    /// usable with any PSS hash, are read; h3m signs with SHA-512).
    #[error("RSASSA-PSS key with parameters (give one without: openssl genpkey -algorithm RSA-PSS)")]
    PssParameters,
    /// An HMAC secret shorter than 32 bytes (RFC 2104: shorter than the
    /// hash output is strongly discouraged).
    #[error("HMAC-SHA256 secret of {0} bytes (at least 32 are needed)")]
    HmacSecretTooShort(usize),
    /// A `KEYID=HEX` or `KEYID=@FILE` argument that is not one.
    #[error("expected KEYID=HEX or KEYID=@FILE (the file holding the secret in hex)")]
    HmacArgument,
    /// An HMAC secret that is not an even number of hex digits.
    #[error("the HMAC secret is not an even number of hex digits")]
    HmacHex,
}

/// The shortest HMAC-SHA256 secret accepted, in bytes.
pub const MIN_HMAC_SECRET_LEN: usize = 32;

/// Where the secret of a `KEYID=HEX|@FILE` argument is (see [`parse_hmac_arg`]).
#[derive(Clone, PartialEq, Eq)]
pub enum HmacSecretArg {
    /// The secret itself, given in hex.
    Secret(Vec<u8>),
    /// A file holding it in hex ([`hmac_secret_from_hex`] reads its text).
    File(PathBuf),
}

impl std::fmt::Debug for HmacSecretArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HmacSecretArg::Secret(s) => write!(f, "Secret({} bytes)", s.len()),
            HmacSecretArg::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

/// Splits a command-line `KEYID=HEX` or `KEYID=@FILE`: the key ID (a label,
/// and the `keyid` a signer writes) and where the secret is. Nothing is read.
pub fn parse_hmac_arg(arg: &str) -> Result<(String, HmacSecretArg), KeyError> {
    let (id, secret) =
        arg.split_once('=').filter(|(id, s)| !id.is_empty() && !s.is_empty()).ok_or(KeyError::HmacArgument)?;
    let source = match secret.strip_prefix('@') {
        Some(path) => HmacSecretArg::File(PathBuf::from(path)),
        None => HmacSecretArg::Secret(hmac_secret_from_hex(secret.as_bytes())?),
    };
    Ok((id.to_owned(), source))
}

/// Why a `KEYID=HEX|@FILE` argument gave no secret ([`load_hmac_arg`]).
/// Messages name the key ID or the file, never the secret.
#[derive(Debug, thiserror::Error)]
pub enum HmacArgError {
    /// The argument, or the secret it gives, is unusable.
    #[error("{id}: {source}")]
    Key {
        /// The key ID, or the file the secret was read from.
        id: String,
        /// Why.
        source: KeyError,
    },
    /// The secret's file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// The key ID and the secret (checked: at least [`MIN_HMAC_SECRET_LEN`]
/// bytes) of a `KEYID=HEX` or `KEYID=@FILE` argument; `read` reads FILE
/// (this crate does no I/O: pass `std::fs::read`).
pub fn load_hmac_arg(
    arg: &str,
    read: impl FnOnce(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<(String, Vec<u8>), HmacArgError> {
    fn named(id: &str) -> impl FnOnce(KeyError) -> HmacArgError + '_ {
        move |source| HmacArgError::Key { id: id.to_owned(), source }
    }
    let (id, source) = parse_hmac_arg(arg).map_err(named(arg.split_once('=').map_or(arg, |(id, _)| id)))?;
    let secret = match source {
        HmacSecretArg::Secret(s) => s,
        HmacSecretArg::File(path) => {
            let shown = path.display().to_string();
            let text = read(&path).map_err(|source| HmacArgError::Io { path: shown.clone(), source })?;
            hmac_secret_from_hex(&text).map_err(named(&shown))?
        }
    };
    check_hmac_secret(&secret).map_err(named(&id))?;
    Ok((id, secret))
}

/// An HMAC secret written in hex (surrounding ASCII whitespace ignored, so a
/// file ending in a newline reads).
pub fn hmac_secret_from_hex(text: &[u8]) -> Result<Vec<u8>, KeyError> {
    hex::decode(text.trim_ascii()).map_err(|_| KeyError::HmacHex)
}

fn check_hmac_secret(secret: &[u8]) -> Result<(), KeyError> {
    if secret.len() < MIN_HMAC_SECRET_LEN {
        return Err(KeyError::HmacSecretTooShort(secret.len()));
    }
    Ok(())
}

/// Why a signature did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The algorithm needs another type of key.
    #[error("a {key} key cannot check an {algorithm:?} signature")]
    WrongKeyType {
        /// This key's type.
        key: KeyType,
        /// The signature's algorithm.
        algorithm: SignatureAlgorithm,
    },
    /// The signature is not valid for this key and message.
    #[error("signature does not verify")]
    BadSignature,
}

/// Why signing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The algorithm needs another type of key.
    #[error("a {key} key cannot make an {algorithm:?} signature")]
    WrongKeyType {
        /// This key's type.
        key: KeyType,
        /// The algorithm asked for.
        algorithm: SignatureAlgorithm,
    },
    /// The cryptographic library failed (no randomness).
    #[error("signing failed")]
    Failed,
}

/// Dotted form of a DER OID's content bytes (for messages).
fn dotted(oid: &[u8]) -> String {
    let mut parts = Vec::new();
    let mut acc: u64 = 0;
    for &b in oid {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if parts.is_empty() {
                let first = (acc / 40).min(2);
                parts.push(first);
                parts.push(acc - first * 40);
            } else {
                parts.push(acc);
            }
            acc = 0;
        }
        if acc > u64::MAX >> 8 {
            break;
        }
    }
    parts.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
}

fn labels(blocks: &[pem::PemBlock]) -> String {
    blocks.iter().map(|b| b.label.as_str()).collect::<Vec<_>>().join(", ")
}

/// A public key that signatures are checked against.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    key_type: KeyType,
    /// PKCS#1 RSAPublicKey, the uncompressed P-256 point, or the 32 Ed25519 bytes.
    bytes: Vec<u8>,
    rsa_bits: usize,
    label: Option<String>,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("type", &self.key_type)
            .field("fingerprint", &self.fingerprint())
            .field("label", &self.label)
            .finish()
    }
}

impl VerifyingKey {
    /// The key of a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let spki = der::parse_spki(der)?;
        let alg = spki.algorithm;
        if alg.oid == oid::RSA_ENCRYPTION {
            Self::from_pkcs1_der(spki.key)
        } else if alg.oid == oid::RSASSA_PSS {
            if alg.params.is_some() {
                return Err(KeyError::PssParameters);
            }
            Ok(VerifyingKey { key_type: KeyType::RsaPss, ..Self::from_pkcs1_der(spki.key)? })
        } else if alg.oid == oid::EC_PUBLIC_KEY {
            match alg.params {
                Some(p) if p.tag == der::tag::OID && p.value == oid::P256 => {}
                Some(p) if p.tag == der::tag::OID => return Err(KeyError::UnsupportedCurve(dotted(p.value))),
                _ => return Err(KeyError::UnsupportedCurve("(explicit parameters)".into())),
            }
            if spki.key.len() != 65 || spki.key[0] != 0x04 {
                return Err(KeyError::Malformed(KeyType::EcdsaP256));
            }
            Ok(VerifyingKey { key_type: KeyType::EcdsaP256, bytes: spki.key.to_vec(), rsa_bits: 0, label: None })
        } else if alg.oid == oid::ED25519 {
            if spki.key.len() != 32 || alg.params.is_some() {
                return Err(KeyError::Malformed(KeyType::Ed25519));
            }
            Ok(VerifyingKey { key_type: KeyType::Ed25519, bytes: spki.key.to_vec(), rsa_bits: 0, label: None })
        } else {
            Err(KeyError::UnsupportedAlgorithm(dotted(alg.oid)))
        }
    }

    /// The key of a DER PKCS#1 RSAPublicKey (`BEGIN RSA PUBLIC KEY`).
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self, KeyError> {
        let bits = der::rsa_modulus_bits(der)?;
        if !(2048..=8192).contains(&bits) {
            return Err(KeyError::RsaModulusSize(bits));
        }
        Ok(VerifyingKey { key_type: KeyType::Rsa, bytes: der.to_vec(), rsa_bits: bits, label: None })
    }

    /// An HMAC-SHA256 shared secret (at least [`MIN_HMAC_SECRET_LEN`] bytes).
    pub fn hmac_sha256(secret: &[u8]) -> Result<Self, KeyError> {
        check_hmac_secret(secret)?;
        Ok(VerifyingKey { key_type: KeyType::HmacSha256, bytes: secret.to_vec(), rsa_bits: 0, label: None })
    }

    /// The subject public key of a DER X.509 certificate.
    pub fn from_certificate_der(der: &[u8]) -> Result<Self, KeyError> {
        Self::from_spki_der(der::certificate_spki(der)?)
    }

    /// Every public key in a PEM text: `PUBLIC KEY`, `RSA PUBLIC KEY` and
    /// `CERTIFICATE` blocks (other blocks are skipped; private keys are an error).
    pub fn all_from_pem(text: &[u8]) -> Result<Vec<Self>, KeyError> {
        let blocks = pem::parse(text)?;
        let mut keys = Vec::new();
        for b in &blocks {
            let key = match b.label.as_str() {
                "PUBLIC KEY" => Self::from_spki_der(&b.der)?,
                "RSA PUBLIC KEY" => Self::from_pkcs1_der(&b.der)?,
                "CERTIFICATE" | "TRUSTED CERTIFICATE" | "X509 CERTIFICATE" => Self::from_certificate_der(&b.der)?,
                l if l.ends_with("PRIVATE KEY") => return Err(KeyError::PrivateKeyGiven(l.to_owned())),
                _ => continue,
            };
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(KeyError::NoPublicKey(labels(&blocks)));
        }
        Ok(keys)
    }

    /// The first public key of a PEM text (see [`all_from_pem`](Self::all_from_pem)).
    pub fn from_pem(text: &[u8]) -> Result<Self, KeyError> {
        Self::all_from_pem(text).map(|mut keys| keys.swap_remove(0))
    }

    /// The same key with a label (e.g. its file name) for messages.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// The label, if one was given.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// The key's type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The RSA modulus size in bits (0 for other keys).
    pub fn rsa_bits(&self) -> usize {
        self.rsa_bits
    }

    /// `sha256:` and the first 8 bytes, in hex, of the SHA-256 of the public
    /// key bytes; `(shared secret)` for an HMAC key, whose digest is not shown.
    pub fn fingerprint(&self) -> String {
        if self.key_type == KeyType::HmacSha256 {
            return "(shared secret)".to_owned();
        }
        let d = ring::digest::digest(&ring::digest::SHA256, &self.bytes);
        format!("sha256:{}", hex::encode(&d.as_ref()[..8]))
    }

    /// Checks `sig` over `msg` with `alg`.
    pub fn verify(&self, alg: SignatureAlgorithm, msg: &[u8], sig: &[u8]) -> Result<(), VerifyError> {
        if !alg.accepts(self.key_type) {
            return Err(VerifyError::WrongKeyType { key: self.key_type, algorithm: alg });
        }
        let ring_alg: &'static dyn signature::VerificationAlgorithm = match alg {
            SignatureAlgorithm::HmacSha256 => {
                // Constant-time comparison.
                let key = hmac::Key::new(hmac::HMAC_SHA256, &self.bytes);
                return hmac::verify(&key, msg, sig).map_err(|_| VerifyError::BadSignature);
            }
            SignatureAlgorithm::RsaPkcs1Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            SignatureAlgorithm::RsaPssSha512 => &signature::RSA_PSS_2048_8192_SHA512,
            SignatureAlgorithm::EcdsaP256Sha256Asn1 => &signature::ECDSA_P256_SHA256_ASN1,
            SignatureAlgorithm::EcdsaP256Sha256Fixed => &signature::ECDSA_P256_SHA256_FIXED,
            SignatureAlgorithm::Ed25519 => &signature::ED25519,
        };
        UnparsedPublicKey::new(ring_alg, &self.bytes).verify(msg, sig).map_err(|_| VerifyError::BadSignature)
    }
}

enum SigningInner {
    Rsa(RsaKeyPair),
    RsaPss(RsaKeyPair),
    EcdsaP256(Box<EcdsaPair>),
    Ed25519(Ed25519KeyPair),
    /// The ring key and the secret (for [`SigningKey::verifying_key`]).
    Hmac(hmac::Key, Vec<u8>),
}

/// One P-256 key, as ring wants it for each signature encoding.
struct EcdsaPair {
    asn1: EcdsaKeyPair,
    fixed: EcdsaKeyPair,
}

/// A private key that signs.
pub struct SigningKey {
    inner: SigningInner,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never any key material.
        f.debug_struct("SigningKey").field("type", &self.key_type()).finish_non_exhaustive()
    }
}

fn rejected(e: ring::error::KeyRejected) -> KeyError {
    KeyError::Rejected(e.to_string())
}

impl SigningKey {
    /// The first private key of a PEM text: `PRIVATE KEY` (PKCS#8: RSA,
    /// RSA-PSS, ECDSA P-256 or Ed25519), `RSA PRIVATE KEY` (PKCS#1) or `EC PRIVATE KEY`
    /// (SEC 1, P-256, with its public key). Other blocks (`EC PARAMETERS`) are
    /// skipped.
    pub fn from_pem(text: &[u8]) -> Result<Self, KeyError> {
        let blocks = pem::parse(text)?;
        for b in &blocks {
            match b.label.as_str() {
                "PRIVATE KEY" => return Self::from_pkcs8_der(&b.der),
                "RSA PRIVATE KEY" => return Self::from_pkcs1_der(&b.der),
                "EC PRIVATE KEY" => return Self::from_sec1_der(&b.der),
                "ENCRYPTED PRIVATE KEY" => return Err(KeyError::Encrypted),
                _ => {}
            }
        }
        Err(KeyError::NoPrivateKey(labels(&blocks)))
    }

    /// A DER PKCS#8 PrivateKeyInfo. An `id-RSASSA-PSS` key (RFC 4055, as
    /// `openssl genpkey -algorithm RSA-PSS` writes it and as RFC 9421's
    /// `test-key-rsa-pss` is) signs RSASSA-PSS only; ring reads the
    /// RSAPrivateKey inside it.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let info = der::parse_pkcs8(der)?;
        let alg = info.algorithm;
        let rng = SystemRandom::new();
        let inner = if alg.oid == oid::RSA_ENCRYPTION {
            let pair = RsaKeyPair::from_pkcs8(der).map_err(rejected)?;
            Self::check_rsa(&pair)?;
            SigningInner::Rsa(pair)
        } else if alg.oid == oid::RSASSA_PSS {
            if alg.params.is_some() {
                return Err(KeyError::PssParameters);
            }
            let pair = RsaKeyPair::from_der(info.private_key).map_err(rejected)?;
            Self::check_rsa(&pair)?;
            SigningInner::RsaPss(pair)
        } else if alg.oid == oid::EC_PUBLIC_KEY {
            match alg.params {
                Some(p) if p.tag == der::tag::OID && p.value == oid::P256 => {}
                Some(p) if p.tag == der::tag::OID => return Err(KeyError::UnsupportedCurve(dotted(p.value))),
                _ => return Err(KeyError::UnsupportedCurve("(explicit parameters)".into())),
            }
            let asn1 =
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, der, &rng).map_err(rejected)?;
            let fixed =
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng).map_err(rejected)?;
            SigningInner::EcdsaP256(Box::new(EcdsaPair { asn1, fixed }))
        } else if alg.oid == oid::ED25519 {
            SigningInner::Ed25519(Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(rejected)?)
        } else {
            return Err(KeyError::UnsupportedAlgorithm(dotted(alg.oid)));
        };
        Ok(SigningKey { inner, rng })
    }

    /// An HMAC-SHA256 shared secret (at least [`MIN_HMAC_SECRET_LEN`] bytes).
    pub fn hmac_sha256(secret: &[u8]) -> Result<Self, KeyError> {
        check_hmac_secret(secret)?;
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        Ok(SigningKey { inner: SigningInner::Hmac(key, secret.to_vec()), rng: SystemRandom::new() })
    }

    /// A DER PKCS#1 RSAPrivateKey (`BEGIN RSA PRIVATE KEY`).
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self, KeyError> {
        let pair = RsaKeyPair::from_der(der).map_err(rejected)?;
        Self::check_rsa(&pair)?;
        Ok(SigningKey { inner: SigningInner::Rsa(pair), rng: SystemRandom::new() })
    }

    /// A DER SEC 1 ECPrivateKey (`BEGIN EC PRIVATE KEY`) on P-256 that
    /// includes its public key.
    pub fn from_sec1_der(der: &[u8]) -> Result<Self, KeyError> {
        let sec1 = der::parse_sec1(der)?;
        match sec1.curve {
            Some(c) if c != oid::P256 => return Err(KeyError::UnsupportedCurve(dotted(c))),
            _ => {}
        }
        let public = sec1.public_key.ok_or(KeyError::Malformed(KeyType::EcdsaP256))?;
        if sec1.private_key.len() > 32 {
            return Err(KeyError::Malformed(KeyType::EcdsaP256));
        }
        let mut scalar = [0u8; 32];
        scalar[32 - sec1.private_key.len()..].copy_from_slice(sec1.private_key);
        let rng = SystemRandom::new();
        let make = |alg| EcdsaKeyPair::from_private_key_and_public_key(alg, &scalar, public, &rng).map_err(rejected);
        let asn1 = make(&signature::ECDSA_P256_SHA256_ASN1_SIGNING)?;
        let fixed = make(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)?;
        Ok(SigningKey { inner: SigningInner::EcdsaP256(Box::new(EcdsaPair { asn1, fixed })), rng })
    }

    fn check_rsa(pair: &RsaKeyPair) -> Result<(), KeyError> {
        let bits = pair.public().modulus_len() * 8;
        if !(2048..=8192).contains(&bits) {
            return Err(KeyError::RsaModulusSize(bits));
        }
        Ok(())
    }

    /// The key's type.
    pub fn key_type(&self) -> KeyType {
        match self.inner {
            SigningInner::Rsa(_) => KeyType::Rsa,
            SigningInner::RsaPss(_) => KeyType::RsaPss,
            SigningInner::EcdsaP256(_) => KeyType::EcdsaP256,
            SigningInner::Ed25519(_) => KeyType::Ed25519,
            SigningInner::Hmac(..) => KeyType::HmacSha256,
        }
    }

    /// The matching public key (for an HMAC key, the same secret).
    pub fn verifying_key(&self) -> VerifyingKey {
        let bytes = match &self.inner {
            SigningInner::Rsa(p) | SigningInner::RsaPss(p) => p.public().as_ref().to_vec(),
            SigningInner::EcdsaP256(pair) => pair.asn1.public_key().as_ref().to_vec(),
            SigningInner::Ed25519(p) => p.public_key().as_ref().to_vec(),
            SigningInner::Hmac(_, secret) => secret.clone(),
        };
        let rsa_bits = match &self.inner {
            SigningInner::Rsa(p) | SigningInner::RsaPss(p) => {
                der::rsa_modulus_bits(&bytes).unwrap_or(p.public().modulus_len() * 8)
            }
            _ => 0,
        };
        VerifyingKey { key_type: self.key_type(), bytes, rsa_bits, label: None }
    }

    /// Signs `msg` with `alg`.
    pub fn sign(&self, alg: SignatureAlgorithm, msg: &[u8]) -> Result<Vec<u8>, SignError> {
        let wrong = || SignError::WrongKeyType { key: self.key_type(), algorithm: alg };
        match (&self.inner, alg) {
            (SigningInner::Rsa(pair), SignatureAlgorithm::RsaPkcs1Sha256 | SignatureAlgorithm::RsaPssSha512)
            | (SigningInner::RsaPss(pair), SignatureAlgorithm::RsaPssSha512) => {
                let padding: &'static dyn signature::RsaEncoding = match alg {
                    SignatureAlgorithm::RsaPkcs1Sha256 => &signature::RSA_PKCS1_SHA256,
                    _ => &signature::RSA_PSS_SHA512,
                };
                let mut sig = vec![0u8; pair.public().modulus_len()];
                pair.sign(padding, &self.rng, msg, &mut sig).map_err(|_| SignError::Failed)?;
                Ok(sig)
            }
            (SigningInner::EcdsaP256(pair), SignatureAlgorithm::EcdsaP256Sha256Asn1) => {
                pair.asn1.sign(&self.rng, msg).map(|s| s.as_ref().to_vec()).map_err(|_| SignError::Failed)
            }
            (SigningInner::EcdsaP256(pair), SignatureAlgorithm::EcdsaP256Sha256Fixed) => {
                pair.fixed.sign(&self.rng, msg).map(|s| s.as_ref().to_vec()).map_err(|_| SignError::Failed)
            }
            (SigningInner::Ed25519(pair), SignatureAlgorithm::Ed25519) => Ok(pair.sign(msg).as_ref().to_vec()),
            (SigningInner::Hmac(key, _), SignatureAlgorithm::HmacSha256) => Ok(hmac::sign(key, msg).as_ref().to_vec()),
            _ => Err(wrong()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_in_messages() {
        assert_eq!(dotted(oid::RSA_ENCRYPTION), "1.2.840.113549.1.1.1");
        assert_eq!(dotted(oid::P256), "1.2.840.10045.3.1.7");
        assert_eq!(dotted(oid::ED25519), "1.3.101.112");
    }

    // RFC 9421 Appendix B.1.4, test-key-ed25519.
    const ED_PUB: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=\n-----END PUBLIC KEY-----\n";
    const ED_PRIV: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n";

    #[test]
    fn ed25519_pair_and_debug() {
        let public = VerifyingKey::from_pem(ED_PUB.as_bytes()).unwrap();
        let private = SigningKey::from_pem(ED_PRIV.as_bytes()).unwrap();
        assert_eq!(private.verifying_key(), public);
        assert_eq!(public.key_type(), KeyType::Ed25519);
        let sig = private.sign(SignatureAlgorithm::Ed25519, b"msg").unwrap();
        assert_eq!(public.verify(SignatureAlgorithm::Ed25519, b"msg", &sig), Ok(()));
        assert_eq!(public.verify(SignatureAlgorithm::Ed25519, b"msG", &sig), Err(VerifyError::BadSignature));
        assert_eq!(
            public.verify(SignatureAlgorithm::RsaPkcs1Sha256, b"msg", &sig),
            Err(VerifyError::WrongKeyType { key: KeyType::Ed25519, algorithm: SignatureAlgorithm::RsaPkcs1Sha256 })
        );
        assert_eq!(
            private.sign(SignatureAlgorithm::EcdsaP256Sha256Fixed, b"m"),
            Err(SignError::WrongKeyType { key: KeyType::Ed25519, algorithm: SignatureAlgorithm::EcdsaP256Sha256Fixed })
        );
        let debug = format!("{private:?} {public:?}");
        assert!(debug.contains("Ed25519") && !debug.contains("JrQL") && !debug.contains("26, 180"), "{debug}");
        assert_eq!(VerifyingKey::from_pem(ED_PRIV.as_bytes()), Err(KeyError::PrivateKeyGiven("PRIVATE KEY".into())));
        assert_eq!(SigningKey::from_pem(ED_PUB.as_bytes()).unwrap_err(), KeyError::NoPrivateKey("PUBLIC KEY".into()));
    }
}
