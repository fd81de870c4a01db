//! Content authenticity: signing pushes and checking their signatures
//! (draft-pardue-quic-http-mcast §6.2), sans IO.
//!
//! Two signature forms are spoken:
//!
//! * draft-cavage `signature` headers exactly as nghq's example sender writes
//!   them ([`cavage`]): one on the promise over `(request-target) :scheme
//!   :authority`, one on the response over `(request-target) date
//!   content-type digest`;
//! * RFC 9421 `signature-input` / `signature` on the response ([`rfc9421`]),
//!   covering the promised request's `@method`, `@path` and `@authority`
//!   (`;req`) and the response's `@status`, `content-type`,
//!   `content-length`, `date` and `repr-digest`.
//!
//! Keys ([`keys`]): RSA (PKCS#1 v1.5 and PSS; `id-RSASSA-PSS` keys sign PSS
//! only, RFC 9421 `rsa-pss-sha512`), ECDSA P-256, Ed25519, and HMAC-SHA256
//! shared secrets (RFC 9421 `hmac-sha256` only: cavage's HMAC is not spoken).
//!
//! [`verify_push`] is the whole receiver-side decision for one resource: it
//! takes the promise's and response's header lists (and trailers), the SHA-256
//! the body will be checked against, the trusted keys and the current time,
//! and says whether the resource may be written. A response is accepted when
//! at least one of its signatures
//!
//! 1. verifies against one of the trusted keys (every key of a compatible
//!    type is tried; `keyId`/`keyid` is only a label),
//! 2. covers the request path (`(request-target)`; `@path`, `@target-uri` or
//!    `@request-target`), so a signed response cannot be replayed under
//!    another name,
//! 3. covers a digest field (`digest`, `repr-digest` or `content-digest`)
//!    whose SHA-256 is the body's, so the body is signed too,
//! 4. is fresh: its signed time (`created` when signed, else the signed
//!    `date`) is no older than [`Freshness::max_age`] and no more than
//!    [`Freshness::max_skew`] ahead of `now` (when `now` is given), and it has
//!    not expired (`expires`, when signed);
//!
//! and, when the promise carries a cavage `signature`, that one verifies too.
//! [`PushSigner`] makes signatures that pass these checks.
//!
//! Module map: [`pem`] (PEM), [`der`] (DER walker), [`keys`] (key
//! loading, sign and verify primitives), [`cavage`], [`rfc9421`]. What they
//! share with the rest of the crate lives in [`crate::http`] (structured
//! fields, digest fields, HTTP dates; [`date`] and [`digest`] are re-exported
//! here for callers from before the move) and [`crate::encoding`] (base64).
//! Key material never appears in `Debug` output or error messages.

pub mod cavage;
pub mod der;
pub mod keys;
pub mod pem;
pub mod rfc9421;

/// HTTP dates: [`crate::http::date`], re-exported at its old path.
pub use crate::http::date;
/// Digest fields: [`crate::http::digest`], re-exported at its old path.
pub use crate::http::digest;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use keys::{KeyError, KeyType, SignError, SignatureAlgorithm, SigningKey, VerifyError, VerifyingKey};

use crate::http::sf;
use crate::qpack::HeaderField;
use cavage::{CavageParseError, CavageSignError, CavageVerifyError, SigningStringError};
use digest::DigestField;
use rfc9421::{ComponentError, Rfc9421ParseError, Rfc9421SignError, Rfc9421Signature, Rfc9421VerifyError};

/// The default [`Freshness::max_age`]: 300 s.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// The default [`Freshness::max_skew`]: 60 s.
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(60);

/// How old (or how far ahead, for clock skew) a signature's time may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// The oldest accepted signed time, before `now`.
    pub max_age: Duration,
    /// The furthest accepted signed time after `now` (senders' clocks run ahead).
    pub max_skew: Duration,
}

impl Default for Freshness {
    fn default() -> Self {
        Freshness { max_age: DEFAULT_MAX_AGE, max_skew: DEFAULT_MAX_SKEW }
    }
}

/// What of a push a check reads.
#[derive(Debug, Clone, Copy)]
pub struct Push<'a> {
    /// The promise's (request) header list.
    pub request: &'a [HeaderField],
    /// The response header list.
    pub response: &'a [HeaderField],
    /// The trailers (empty if none).
    pub trailers: &'a [HeaderField],
    /// The SHA-256 the body is (or will be) checked against; `None` if the
    /// push announces none.
    pub body_sha256: Option<[u8; 32]>,
}

/// A signature form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// draft-cavage `signature`.
    Cavage,
    /// RFC 9421 `signature-input` / `signature`.
    Rfc9421,
}

/// A push that passed [`verify_push`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The form of the signature that passed.
    pub scheme: Scheme,
    /// The index of the trusted key that verified it.
    pub key: usize,
    /// Its signed time.
    pub signed_at: SystemTime,
    /// Whether the promise carried a (verified) signature too.
    pub promise_signed: bool,
}

/// Why a push is refused. The `Display` text is the reason `h3m-recv` reports
/// (after `refused: `).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The response carries no signature.
    #[error("unsigned")]
    Unsigned,
    /// A cavage `signature` header that does not parse.
    #[error("malformed signature: {0}")]
    MalformedCavage(CavageParseError),
    /// RFC 9421 fields that do not parse.
    #[error("malformed signature: {0}")]
    MalformedRfc9421(Rfc9421ParseError),
    /// An algorithm this implementation does not check.
    #[error("unsupported signature algorithm `{0}`")]
    UnsupportedAlgorithm(String),
    /// No trusted key has the type the signature's algorithm needs.
    #[error("signature does not verify (no trusted key for `{0}` signatures)")]
    NoKeyForAlgorithm(String),
    /// A signed header or component is absent.
    #[error("signed header `{0}` is missing")]
    MissingHeader(String),
    /// A signed value holding CR, LF or NUL.
    #[error("signed header `{0}` has a value that cannot be signed")]
    InvalidHeaderValue(String),
    /// An RFC 9421 component (or parameter) that is not supported.
    #[error("unsupported signed component `{0}`")]
    UnsupportedComponent(String),
    /// No trusted key verifies the signature.
    #[error("signature does not verify")]
    BadSignature,
    /// The promise's signature failed (the reason follows).
    #[error("promise {0}")]
    Promise(Box<AuthError>),
    /// The signature does not cover the request path.
    #[error("signature does not cover the request path")]
    PathNotCovered,
    /// The signature covers no digest field with a SHA-256 (or the push has no digest).
    #[error("signature does not cover the body digest")]
    DigestNotCovered,
    /// The signed digest is not the body's.
    #[error("signed digest does not match the body")]
    DigestMismatch,
    /// The signature covers neither `date` nor `created`.
    #[error("signature does not cover the date")]
    DateNotCovered,
    /// The signed `date` is not an HTTP date that exists ([`date::parse_http_date`]).
    #[error("unreadable signed date `{0}`")]
    BadDate(String),
    /// The signed time is older than the maximum age.
    #[error("stale (date {date} older than max-age {max_age} s)")]
    Stale {
        /// The signed time, as an HTTP date.
        date: String,
        /// The maximum age, seconds.
        max_age: u64,
    },
    /// The signed time is too far ahead of `now`.
    #[error("date {date} is more than {max_skew} s in the future")]
    FromTheFuture {
        /// The signed time, as an HTTP date.
        date: String,
        /// The allowed skew, seconds.
        max_skew: u64,
    },
    /// The signature's `expires` has passed.
    #[error("signature expired at {0}")]
    Expired(String),
}

impl From<SigningStringError> for AuthError {
    fn from(e: SigningStringError) -> Self {
        match e {
            SigningStringError::MissingHeader(h) | SigningStringError::MissingParameter(h) => {
                AuthError::MissingHeader(h)
            }
            SigningStringError::InvalidValue(h) => AuthError::InvalidHeaderValue(h),
        }
    }
}

impl From<CavageVerifyError> for AuthError {
    fn from(e: CavageVerifyError) -> Self {
        match e {
            CavageVerifyError::UnsupportedAlgorithm(a) => AuthError::UnsupportedAlgorithm(a),
            CavageVerifyError::NoKeyForAlgorithm(a) => AuthError::NoKeyForAlgorithm(a),
            CavageVerifyError::SigningString(s) => s.into(),
            CavageVerifyError::BadSignature => AuthError::BadSignature,
        }
    }
}

impl From<Rfc9421VerifyError> for AuthError {
    fn from(e: Rfc9421VerifyError) -> Self {
        match e {
            Rfc9421VerifyError::UnsupportedAlgorithm(a) => AuthError::UnsupportedAlgorithm(a),
            Rfc9421VerifyError::NoKeyForAlgorithm(a) => AuthError::NoKeyForAlgorithm(a),
            Rfc9421VerifyError::Component(ComponentError::Missing(c)) => AuthError::MissingHeader(c),
            Rfc9421VerifyError::Component(ComponentError::InvalidValue(c) | ComponentError::Ambiguous(c)) => {
                AuthError::InvalidHeaderValue(c)
            }
            Rfc9421VerifyError::Component(ComponentError::Serialize(e)) => {
                AuthError::UnsupportedComponent(e.to_string())
            }
            Rfc9421VerifyError::Component(ComponentError::Unsupported(c) | ComponentError::Duplicate(c)) => {
                AuthError::UnsupportedComponent(c)
            }
            Rfc9421VerifyError::BadSignature => AuthError::BadSignature,
        }
    }
}

/// Checks a signed time against `now` (see [`Freshness`]).
pub fn check_freshness(signed_at: SystemTime, now: SystemTime, window: &Freshness) -> Result<(), AuthError> {
    if let Ok(age) = now.duration_since(signed_at)
        && age > window.max_age
    {
        return Err(AuthError::Stale { date: date::format_http_date(signed_at), max_age: window.max_age.as_secs() });
    }
    if let Ok(ahead) = signed_at.duration_since(now)
        && ahead > window.max_skew
    {
        return Err(AuthError::FromTheFuture {
            date: date::format_http_date(signed_at),
            max_skew: window.max_skew.as_secs(),
        });
    }
    Ok(())
}

fn unix(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// The values of `name` across `sections`.
fn values<'a>(sections: &[&'a [HeaderField]], name: &str) -> Vec<&'a [u8]> {
    sections.iter().flat_map(|s| s.iter()).filter(|f| f.name == name.as_bytes()).map(|f| f.value.as_slice()).collect()
}

/// Whether a `signature` field line is an RFC 9421 dictionary of byte
/// sequences rather than a cavage parameter list (both use the name).
fn is_rfc9421_line(line: &[u8]) -> bool {
    matches!(sf::parse_dictionary(line), Ok(d) if !d.is_empty()
        && d.iter().all(|(_, m)| matches!(m, sf::Member::Item(sf::Item { bare: sf::BareItem::Bytes(_), .. }))))
}

/// Checks that the covered digest fields (`(field, values)`) carry the body's SHA-256.
fn check_digest(covered: &[(DigestField, Vec<&[u8]>)], body: Option<[u8; 32]>) -> Result<(), AuthError> {
    let signed: Vec<[u8; 32]> =
        covered.iter().flat_map(|(f, vals)| vals.iter().flat_map(|v| digest::field_sha256(*f, v))).collect();
    match body {
        _ if signed.is_empty() => Err(AuthError::DigestNotCovered),
        None => Err(AuthError::DigestNotCovered),
        Some(b) if signed.contains(&b) => Ok(()),
        Some(_) => Err(AuthError::DigestMismatch),
    }
}

fn signed_date(date: &[u8]) -> Result<SystemTime, AuthError> {
    date::parse_http_date(date).ok_or_else(|| AuthError::BadDate(String::from_utf8_lossy(date).into_owned()))
}

fn check_time(
    signed_at: SystemTime,
    expires: Option<SystemTime>,
    now: Option<SystemTime>,
    window: &Freshness,
) -> Result<(), AuthError> {
    let Some(now) = now else { return Ok(()) };
    if let Some(exp) = expires
        && now > exp
    {
        return Err(AuthError::Expired(date::format_http_date(exp)));
    }
    check_freshness(signed_at, now, window)
}

/// One cavage signature of a response.
fn check_cavage(
    value: &[u8],
    push: &Push<'_>,
    keys: &[VerifyingKey],
    now: Option<SystemTime>,
    window: &Freshness,
) -> Result<(usize, SystemTime), AuthError> {
    let sig = cavage::parse(value).map_err(AuthError::MalformedCavage)?;
    let message: [&[HeaderField]; 2] = [push.response, push.trailers];
    let key = cavage::verify(&sig, push.request, &message, keys)?;
    let covers = |n: &str| sig.headers.iter().any(|h| h == n);
    if !covers("(request-target)") {
        return Err(AuthError::PathNotCovered);
    }
    let covered: Vec<(DigestField, Vec<&[u8]>)> = sig
        .headers
        .iter()
        .filter_map(|h| DigestField::from_name(h.as_bytes()))
        .map(|f| (f, values(&message, f.name())))
        .collect();
    check_digest(&covered, push.body_sha256)?;
    let signed_at = match (covers("(created)"), sig.created) {
        (true, Some(c)) => unix(i64::try_from(c).unwrap_or(i64::MAX)),
        _ if covers("date") => {
            let date = values(&message, "date");
            signed_date(date.first().copied().unwrap_or_default())?
        }
        _ => return Err(AuthError::DateNotCovered),
    };
    let expires = sig.expires.filter(|_| covers("(expires)")).map(|e| unix(i64::try_from(e).unwrap_or(i64::MAX)));
    check_time(signed_at, expires, now, window)?;
    Ok((key, signed_at))
}

/// One RFC 9421 signature of a response.
fn check_rfc9421(
    sig: &Rfc9421Signature,
    push: &Push<'_>,
    keys: &[VerifyingKey],
    now: Option<SystemTime>,
    window: &Freshness,
) -> Result<(usize, SystemTime), AuthError> {
    let msg = rfc9421::Message { request: push.request, response: Some(push.response), trailers: push.trailers };
    let key = rfc9421::verify(sig, &msg, keys)?;
    if !["@path", "@target-uri", "@request-target"].iter().any(|c| sig.covers(c)) {
        return Err(AuthError::PathNotCovered);
    }
    let mut covered = Vec::new();
    for c in &sig.components {
        let sf::BareItem::String(name) = &c.bare else { continue };
        let Some(field) = DigestField::from_name(name.as_bytes()) else { continue };
        let flag = |f: &str| c.params.iter().any(|(k, _)| k == f);
        let section = if flag("req") {
            push.request
        } else if flag("tr") {
            push.trailers
        } else {
            push.response
        };
        covered.push((field, values(&[section], name)));
    }
    check_digest(&covered, push.body_sha256)?;
    let signed_at = match sig.created() {
        Some(c) => unix(c),
        None if sig.covers("date") => {
            let date = values(&[push.response], "date");
            signed_date(date.first().copied().unwrap_or_default())?
        }
        None => return Err(AuthError::DateNotCovered),
    };
    check_time(signed_at, sig.expires().map(unix), now, window)?;
    Ok((key, signed_at))
}

/// Decides whether a push may be written (see the module documentation):
/// `Ok` with what verified it, or the first reason to refuse it. `now`
/// `None` skips the freshness check.
pub fn verify_push(
    push: &Push<'_>,
    keys: &[VerifyingKey],
    now: Option<SystemTime>,
    window: &Freshness,
) -> Result<Verified, AuthError> {
    let sections: [&[HeaderField]; 2] = [push.response, push.trailers];
    let lines = values(&sections, "signature");
    let (rfc_lines, cavage_lines): (Vec<&[u8]>, Vec<&[u8]>) = lines.into_iter().partition(|l| is_rfc9421_line(l));
    let inputs = values(&sections, "signature-input");
    let mut first_error = None;
    let mut passed = None;
    for line in &cavage_lines {
        match check_cavage(line, push, keys, now, window) {
            Ok((key, at)) => {
                passed = Some((Scheme::Cavage, key, at));
                break;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if passed.is_none() && !inputs.is_empty() {
        match rfc9421::parse(&inputs, &rfc_lines) {
            Err(e) => {
                first_error.get_or_insert(AuthError::MalformedRfc9421(e));
            }
            Ok(sigs) => {
                for sig in &sigs {
                    match check_rfc9421(sig, push, keys, now, window) {
                        Ok((key, at)) => {
                            passed = Some((Scheme::Rfc9421, key, at));
                            break;
                        }
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                }
            }
        }
    }
    let Some((scheme, key, signed_at)) = passed else {
        return Err(first_error.unwrap_or(AuthError::Unsigned));
    };
    let promise_lines = values(&[push.request], "signature");
    for line in &promise_lines {
        verify_promise(line, push.request, keys).map_err(|e| AuthError::Promise(Box::new(e)))?;
    }
    Ok(Verified { scheme, key, signed_at, promise_signed: !promise_lines.is_empty() })
}

/// Checks a promise's cavage `signature` over the request itself.
pub fn verify_promise(value: &[u8], request: &[HeaderField], keys: &[VerifyingKey]) -> Result<usize, AuthError> {
    let sig = cavage::parse(value).map_err(AuthError::MalformedCavage)?;
    Ok(cavage::verify(&sig, request, &[request], keys)?)
}

/// Which signatures [`PushSigner`] adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignatureForms {
    /// nghq's cavage `signature` headers on the promise and the response.
    #[default]
    Cavage,
    /// An RFC 9421 signature on the response.
    Rfc9421,
    /// Both.
    Both,
}

impl std::str::FromStr for SignatureForms {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cavage" => Ok(SignatureForms::Cavage),
            "rfc9421" => Ok(SignatureForms::Rfc9421),
            "both" => Ok(SignatureForms::Both),
            _ => Err(format!("`{s}`: use cavage, rfc9421 or both")),
        }
    }
}

impl SignatureForms {
    fn cavage(self) -> bool {
        matches!(self, SignatureForms::Cavage | SignatureForms::Both)
    }

    fn rfc9421(self) -> bool {
        matches!(self, SignatureForms::Rfc9421 | SignatureForms::Both)
    }
}

/// Why a push could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignPushError {
    /// The key ID cannot be written into the headers.
    #[error("the key ID must be printable ASCII without `\"` or `\\`")]
    BadKeyId,
    /// Cavage signatures asked for with a key that makes none (HMAC,
    /// RSA-PSS only): sign with [`SignatureForms::Rfc9421`].
    #[error("{0} keys make no cavage signatures: sign with RFC 9421 only")]
    CavageKey(KeyType),
    /// A cavage signature failed.
    #[error("cavage signature: {0}")]
    Cavage(#[from] CavageSignError),
    /// An RFC 9421 signature failed.
    #[error("RFC 9421 signature: {0}")]
    Rfc9421(#[from] Rfc9421SignError),
}

/// The names nghq's sender signs in a promise.
pub const CAVAGE_PROMISE_HEADERS: &[&str] = &["(request-target)", ":scheme", ":authority"];
/// The names nghq's sender signs in a response.
pub const CAVAGE_RESPONSE_HEADERS: &[&str] = &["(request-target)", "date", "content-type", "digest"];
/// The names a live response's trailer signature covers (the digest is a trailer).
pub const CAVAGE_TRAILER_HEADERS: &[&str] = &["(request-target)", "(created)", "date", "content-type", "digest"];
/// The label of the RFC 9421 signature [`PushSigner`] adds.
pub const RFC9421_LABEL: &str = "sig1";

/// Signs pushes with one key (see [`SignatureForms`]).
pub struct PushSigner {
    key: SigningKey,
    key_id: String,
    forms: SignatureForms,
}

impl std::fmt::Debug for PushSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushSigner")
            .field("key", &self.key)
            .field("key_id", &self.key_id)
            .field("forms", &self.forms)
            .finish()
    }
}

/// Inserts `fields` before a `connection` field (nghq's order), else at the end.
fn insert_before_connection(headers: &mut Vec<HeaderField>, fields: impl IntoIterator<Item = HeaderField>) {
    let at = headers.iter().position(|f| f.name == b"connection").unwrap_or(headers.len());
    headers.splice(at..at, fields);
}

impl PushSigner {
    /// A signer; the key ID must be printable ASCII without `"` or `\`, and
    /// cavage forms need a key cavage has an algorithm for (not HMAC or
    /// RSA-PSS only).
    pub fn new(key: SigningKey, key_id: impl Into<String>, forms: SignatureForms) -> Result<Self, SignPushError> {
        let key_id = key_id.into();
        if !cavage::valid_key_id(&key_id) {
            return Err(SignPushError::BadKeyId);
        }
        if forms.cavage() && cavage::algorithm_name(key.key_type()).is_none() {
            return Err(SignPushError::CavageKey(key.key_type()));
        }
        Ok(PushSigner { key, key_id, forms })
    }

    /// The key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// The key ID written into signatures.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The forms added.
    pub fn forms(&self) -> SignatureForms {
        self.forms
    }

    /// Signs a push's header lists at `now`: with cavage, the promise over
    /// [`CAVAGE_PROMISE_HEADERS`]; and, if the response carries a digest
    /// field, the response (cavage over [`CAVAGE_RESPONSE_HEADERS`], RFC 9421
    /// over [`rfc9421::push_components`]). Returns whether the response was
    /// signed; if not (a live body's digest comes in trailers), sign the
    /// trailers with [`sign_trailers`](Self::sign_trailers).
    pub fn sign_headers(
        &self,
        request: &mut Vec<HeaderField>,
        response: &mut Vec<HeaderField>,
        now: SystemTime,
    ) -> Result<bool, SignPushError> {
        if self.forms.cavage() {
            let sig = cavage::sign(&self.key, &self.key_id, CAVAGE_PROMISE_HEADERS, None, request, &[request])?;
            request.push(sig);
        }
        let has_digest = response.iter().any(|f| DigestField::from_name(&f.name).is_some());
        if !has_digest {
            return Ok(false);
        }
        let mut added = Vec::new();
        if self.forms.cavage() {
            let present = |n: &str| response.iter().any(|f| f.name == n.as_bytes());
            let mut names: Vec<&str> =
                CAVAGE_RESPONSE_HEADERS.iter().copied().filter(|n| n.starts_with('(') || present(n)).collect();
            if !present("digest")
                && let Some(other) = ["repr-digest", "content-digest"].into_iter().find(|n| present(n))
            {
                names.push(other);
            }
            added.push(cavage::sign(&self.key, &self.key_id, &names, None, request, &[response])?);
        }
        if self.forms.rfc9421() {
            let msg = rfc9421::Message { request, response: Some(response), trailers: &[] };
            let components = rfc9421::push_components(response, &[]);
            let created = date::unix_secs(now);
            added.extend(rfc9421::sign(&self.key, &self.key_id, RFC9421_LABEL, &components, created, &msg)?);
        }
        insert_before_connection(response, added);
        Ok(true)
    }

    /// Signs the trailers of a response whose digest is in them, at `now`
    /// (the end of the body): cavage over [`CAVAGE_TRAILER_HEADERS`] with
    /// `created`, RFC 9421 over [`rfc9421::push_components`] (`repr-digest;tr`).
    pub fn sign_trailers(
        &self,
        request: &[HeaderField],
        response: &[HeaderField],
        trailers: &mut Vec<HeaderField>,
        now: SystemTime,
    ) -> Result<(), SignPushError> {
        let created = date::unix_secs(now);
        let mut added = Vec::new();
        if self.forms.cavage() {
            let names: Vec<&str> = CAVAGE_TRAILER_HEADERS
                .iter()
                .copied()
                .filter(|n| {
                    n.starts_with('(')
                        || [response, trailers.as_slice()].iter().any(|s| s.iter().any(|f| f.name == n.as_bytes()))
                })
                .collect();
            added.push(cavage::sign(
                &self.key,
                &self.key_id,
                &names,
                Some(created),
                request,
                &[response, trailers.as_slice()],
            )?);
        }
        if self.forms.rfc9421() {
            let msg = rfc9421::Message { request, response: Some(response), trailers: trailers.as_slice() };
            let components = rfc9421::push_components(response, trailers);
            added.extend(rfc9421::sign(&self.key, &self.key_id, RFC9421_LABEL, &components, created, &msg)?);
        }
        trailers.extend(added);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
