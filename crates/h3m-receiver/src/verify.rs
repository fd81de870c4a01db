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
//! * Freshness: the signed time (`created` when signed, else the signed
//!   `date`) must be at most `--max-age` seconds (default 300) before the
//!   clock and at most 60 s after it (senders' clocks may run ahead). The
//!   clock is: live, the system clock when the resource completes; a pcap
//!   capture, the capture timestamp of the datagram that completed the
//!   resource; a `.datagrams` file (no timestamps), no freshness check unless
//!   `--max-age` is given, then the system clock.

use std::path::Path;
use std::time::{Duration, SystemTime};

use h3m_proto::auth::{Freshness, KeyError, VerifyingKey};

/// The checks to make (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Trusted keys (`--trust`); empty: signatures are not checked.
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
