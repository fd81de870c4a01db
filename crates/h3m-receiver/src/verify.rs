//! What `h3m-recv` checks before it writes a resource, beyond its bytes being
//! complete: `--require-digest`, and with `--trust` its signatures and their
//! freshness (`--max-age`). The decision itself is
//! [`h3m_proto::auth::verify_push`]; this module holds the options, loads the
//! trusted keys and says which clock the freshness check uses.
//!
//! # Rules
//!
//! * Integrity (always): every SHA-256 the response announces (`digest`,
//!   `repr-digest`, `content-digest`, in the headers or the trailers) must
//!   agree and match the body, or nothing is written (`digest mismatch`, exit 1).
//! * `--require-digest`: a resource announcing no SHA-256 digest is refused
//!   (`refused: no digest`).
//! * `--trust KEY.pem` (repeatable; a PEM public key or certificate, every
//!   key in the file): a resource is written only if one of its response
//!   signatures (cavage `signature`, or RFC 9421 `signature-input` +
//!   `signature`) verifies against a trusted key, covers its path and its
//!   digest, and is fresh; and, if its promise carries a cavage signature,
//!   that one verifies too. Otherwise it is refused with the reason
//!   (`refused: unsigned`, `refused: signature does not verify`,
//!   `refused: stale (date ... older than max-age 300 s)`, ...).
//! * `--trust-hmac KEYID=HEX|@FILE` (repeatable): an HMAC-SHA256 shared
//!   secret (at least 32 bytes, in hex, inline or in a file) trusted the same
//!   way, for RFC 9421 `hmac-sha256` signatures ([`load_trust_hmac`]); the
//!   key ID is the key's label.
//! * Freshness: the signed time (`created` when signed, else the signed
//!   `date`) must be at most `--max-age` seconds (default 300) before the
//!   clock and at most 60 s after it (senders' clocks may run ahead). The
//!   clock is: live, the system clock when the resource completes; a pcap
//!   capture, the capture timestamp of the datagram that completed the
//!   resource; a `.datagrams` file (no timestamps), no freshness check unless
//!   `--max-age` is given, then the system clock.

use std::path::Path;
use std::time::{Duration, SystemTime};

use h3m_proto::auth::keys::{HmacArgError, load_hmac_arg};
use h3m_proto::auth::{Freshness, KeyError, VerifyingKey};

/// The checks to make (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Trusted keys (`--trust`, `--trust-hmac`); empty: signatures are not checked.
    pub trust: Vec<VerifyingKey>,
    /// `--max-age`, if given.
    pub max_age: Option<Duration>,
    /// `--require-digest`.
    pub require_digest: bool,
}

impl VerifyOptions {
    /// Whether signatures are checked.
    pub fn checks_signatures(&self) -> bool {
        !self.trust.is_empty()
    }

    /// The freshness window: `--max-age` (default 300 s), 60 s of clock skew.
    pub fn freshness(&self) -> Freshness {
        let mut f = Freshness::default();
        if let Some(age) = self.max_age {
            f.max_age = age;
        }
        f
    }
}

/// Why a `--trust` file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file holds no usable public key.
    #[error("{path}: {source}")]
    Key {
        /// The file.
        path: String,
        /// The error.
        source: KeyError,
    },
    /// A `--trust-hmac` argument gave no secret.
    #[error(transparent)]
    Hmac(#[from] HmacArgError),
}

/// Every public key of a PEM file (public keys and certificates), labelled
/// with the file's name.
pub fn load_trust_file(path: &Path) -> Result<Vec<VerifyingKey>, TrustError> {
    let shown = path.display().to_string();
    let text = std::fs::read(path).map_err(|source| TrustError::Io { path: shown.clone(), source })?;
    let keys = VerifyingKey::all_from_pem(&text).map_err(|source| TrustError::Key { path: shown.clone(), source })?;
    let name = path.file_name().map_or(shown, |n| n.to_string_lossy().into_owned());
    Ok(keys.into_iter().map(|k| k.with_label(name.clone())).collect())
}

/// The shared secret of a `--trust-hmac KEYID=HEX|@FILE` argument (the file
/// holds the secret in hex), labelled with the key ID. Errors name the key
/// ID, never the secret.
pub fn load_trust_hmac(arg: &str) -> Result<VerifyingKey, TrustError> {
    let (id, secret) = load_hmac_arg(arg, |path| std::fs::read(path))?;
    let key = VerifyingKey::hmac_sha256(&secret).map_err(|source| TrustError::Key { path: id.clone(), source })?;
    Ok(key.with_label(id))
}

/// The clock a freshness check reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Clock {
    /// No freshness check.
    None,
    /// The system clock.
    System,
    /// A fixed time (a capture timestamp).
    At(SystemTime),
}

impl Clock {
    pub(crate) fn now(self) -> Option<SystemTime> {
        match self {
            Clock::None => None,
            Clock::System => Some(SystemTime::now()),
            Clock::At(t) => Some(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use h3m_proto::auth::KeyType;

    #[test]
    fn hmac_trust_arguments() {
        let hex32 = "ab".repeat(32);
        let key = load_trust_hmac(&format!("k1={hex32}")).unwrap();
        assert_eq!((key.key_type(), key.label()), (KeyType::HmacSha256, Some("k1")));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k2.hex");
        std::fs::write(&file, format!("{hex32}\n")).unwrap();
        let from_file = load_trust_hmac(&format!("k2=@{}", file.display())).unwrap();
        assert_eq!(from_file.label(), Some("k2"));
        assert_eq!(from_file.with_label("k1"), key);
        // Errors name the key ID or the file, never the secret.
        let short = load_trust_hmac("k3=abcd").unwrap_err().to_string();
        assert_eq!(short, "k3: HMAC-SHA256 secret of 2 bytes (at least 32 are needed)");
        let odd = load_trust_hmac("k4=abc").unwrap_err().to_string();
        assert_eq!(odd, "k4: the HMAC secret is not an even number of hex digits");
        assert!(load_trust_hmac("k5").unwrap_err().to_string().contains("expected KEYID=HEX or KEYID=@FILE"));
        let missing = dir.path().join("missing");
        assert!(matches!(
            load_trust_hmac(&format!("k6=@{}", missing.display())),
            Err(TrustError::Hmac(HmacArgError::Io { .. }))
        ));
        std::fs::write(&file, "not hex").unwrap();
        let bad = load_trust_hmac(&format!("k2=@{}", file.display())).unwrap_err().to_string();
        assert!(bad.ends_with("k2.hex: the HMAC secret is not an even number of hex digits"), "{bad}");
    }
}
