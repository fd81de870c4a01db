//! The Alt-Svc `h3m-NN` session advertisement (draft-pardue-quic-http-mcast-07 §10,
//! RFC 7838).
//!
//! A multicast h3m session has no handshake: everything a receiver needs to join it
//! (the group and port, the SSM source, the session ID, the cipher suite and key,
//! limits) arrives beforehand in an HTTP `Alt-Svc` field, usually in a unicast
//! response. This module reads and writes that field.
//!
//! # Format
//!
//! ```text
//! Alt-Svc       = clear / 1#alt-value
//! alt-value     = protocol-id "=" alt-authority *( OWS ";" OWS parameter )
//! alt-authority = quoted-string          ; "<multicast group>:<port>", IPv6 in [ ]
//! parameter     = token "=" ( token / quoted-string )
//! ```
//!
//! For example (one field line on the wire, wrapped here):
//!
//! ```text
//! Alt-Svc: h3m-07="[ff3e::8000:1]:2000"; source-address="2001:db8::10";
//!          session-id=2a; session-idle-timeout=60000; max-concurrent-resources=8;
//!          peak-flow-rate=4000000; cipher-suite=1301;
//!          key=00112233445566778899aabbccddeeff; iv=0123456789abcdef01234567;
//!          digest-algorithm=SHA-256; signature-algorithm=rsa-sha256; ma=3600
//! ```
//!
//! The protocol-id is `h3m` (final RFC), `h3m-<draft>` (`h3m-07`, what nghq speaks)
//! or `h3m-<draft>-<experiment>` (`h3m-09-data-offset`). Alternatives for other
//! protocols (`h3`, `h2`, ...) are skipped by [`parse`].
//!
//! | parameter | value | field |
//! |---|---|---|
//! | `source-address` | IPv4 or IPv6 literal (IPv6 with or without `[ ]`) | [`Advertisement::source`] |
//! | `session-id` | up to 40 hex digits | [`Advertisement::session_id`] |
//! | `session-idle-timeout` | decimal milliseconds | [`Advertisement::idle_timeout_ms`] |
//! | `max-concurrent-resources` | decimal, 32-bit | [`Advertisement::max_concurrent_resources`] |
//! | `peak-flow-rate` | decimal bits per second | [`Advertisement::peak_flow_rate`] |
//! | `cipher-suite` | 4 hex digits, TLS code point | [`Advertisement::cipher_suite`] |
//! | `key`, `iv` | hex | [`Advertisement::key`], [`Advertisement::iv`] |
//! | `digest-algorithm`, `signature-algorithm` | token, repeats into a set | [`Advertisement::digest_algorithms`], [`Advertisement::signature_algorithms`] |
//! | `extensions` | `"XXXX[=hex],..."` | [`Advertisement::extensions`] |
//! | `ma`, `persist` | RFC 7838 | [`Advertisement::max_age`], [`Advertisement::persist`] |
//!
//! # Tolerance
//!
//! The reader is lenient where the draft is sloppy and strict where a mistake would
//! make a receiver join the wrong session or fail to decrypt:
//!
//! - parameter names are case-insensitive; values may be tokens or quoted strings
//!   (with backslash escapes); an unquoted value may also hold characters a token
//!   cannot (`source-address=2001:db8::10`); OWS around `=` and empty parameters
//!   (`;;`, a trailing `;`) are accepted;
//! - an unquoted alt-authority (`h3m-07=232.0.0.1:2000`) is accepted;
//! - `extension` (the IANA section's singular spelling) is read as `extensions`, and
//!   hex in `key`, `iv`, `extensions` and `session-id` may carry a `0x` prefix;
//! - single-valued parameters: the first occurrence wins and later ones are ignored
//!   without being checked;
//! - `session-idle-timeout` is milliseconds per the normative text, but the draft's
//!   appendix writes `60` for one minute: see [`Advertisement::idle_timeout_compat`];
//! - `key`/`iv` lengths are checked against the cipher suite (the draft's own example
//!   pairs AES-128-GCM with an 8-byte key, which is rejected).
//!
//! # Example
//!
//! ```
//! use h3m_proto::altsvc::{self, Advertisement};
//!
//! let field = r#"h3=":443", h3m-07="232.0.0.1:2000"; source-address="10.0.0.1"; session-id=53657373696f6e204944"#;
//! let ads = altsvc::parse(field)?;
//! assert_eq!(ads.len(), 1);
//! let ad = &ads[0];
//! assert_eq!(ad.draft, Some(7));
//! assert_eq!(ad.group, "232.0.0.1:2000".parse().unwrap());
//! assert_eq!(ad.session_id.as_bytes(), b"Session ID");
//!
//! // Display writes a canonical alt-value that parse_one reads back.
//! let text = ad.to_string();
//! assert_eq!(text, r#"h3m-07="232.0.0.1:2000"; source-address="10.0.0.1"; session-id=53657373696f6e204944"#);
//! assert_eq!(text.parse::<Advertisement>()?, *ad);
//! # Ok::<(), altsvc::AltSvcError>(())
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use crate::protection::CipherSuite;
use crate::session_id::{SessionId, SessionIdError};

/// The longest `Alt-Svc` field value accepted (64 KiB); longer input is rejected
/// with [`AltSvcError::TooLong`] before it is looked at.
pub const MAX_FIELD_LEN: usize = 64 * 1024;

/// `session-idle-timeout` values below this many milliseconds (and above zero) are
/// taken to be seconds by [`Advertisement::idle_timeout_compat`].
pub const IDLE_TIMEOUT_COMPAT_THRESHOLD_MS: u64 = 1000;

/// RFC 7838's freshness lifetime when `ma` is absent: 24 hours, in seconds.
pub const DEFAULT_MAX_AGE: u64 = 86_400;

/// The parameter names this module interprets (lowercase); anything else lands in
/// [`Advertisement::unknown`].
pub const KNOWN_PARAMETERS: &[&str] = &[
    "source-address",
    "session-id",
    "session-idle-timeout",
    "max-concurrent-resources",
    "peak-flow-rate",
    "cipher-suite",
    "key",
    "iv",
    "digest-algorithm",
    "signature-algorithm",
    "extensions",
    "extension",
    "ma",
    "persist",
];

/// One h3m session advertisement: a single `h3m...` alt-value of an `Alt-Svc` field.
///
/// Build one with [`parse`], [`parse_one`] or [`Advertisement::new`]; write it out with
/// `Display` (see [`Advertisement::redacted`] for logs). The `Debug` output hides
/// `key` and `iv`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Advertisement {
    /// The ALPN protocol id, percent-decoded: `"h3m-07"`, `"h3m-09-data-offset"`, `"h3m"`.
    pub protocol: String,
    /// The draft number in the protocol id (`7` for `h3m-07`), `None` for bare `h3m`.
    pub draft: Option<u32>,
    /// The experiment name after the draft number (`"data-offset"` in
    /// `h3m-09-data-offset`).
    pub experiment: Option<String>,
    /// The alt-authority: multicast group address and UDP port. Only the IP and port
    /// are represented (an IPv6 scope id or flow label is not part of the format).
    pub group: SocketAddr,
    /// `source-address`: the SSM source S of (S,G); `None` for any-source multicast.
    /// Always unicast and of the same address family as [`Advertisement::group`].
    pub source: Option<IpAddr>,
    /// `session-id`: the destination connection ID of every packet, leading zero
    /// digits kept (nghq's rule); [`SessionId::EMPTY`] when absent.
    pub session_id: SessionId,
    /// `session-idle-timeout` as written, in milliseconds per the draft's normative
    /// text. `None` or `Some(0)`: never time out. See
    /// [`Advertisement::idle_timeout`] and [`Advertisement::idle_timeout_compat`].
    pub idle_timeout_ms: Option<u64>,
    /// `max-concurrent-resources`: the most pushed resources active at once;
    /// `None` means unlimited.
    pub max_concurrent_resources: Option<u32>,
    /// `peak-flow-rate` in bits per second over all groups of the session;
    /// `None` means unlimited.
    pub peak_flow_rate: Option<u64>,
    /// `cipher-suite`; [`CipherSuite::Null`] (cleartext, what nghq uses) when absent.
    pub cipher_suite: CipherSuite,
    /// `key`: the AEAD key, exactly [`CipherSuite::key_len`] bytes. `None` with an
    /// AEAD suite means the key is obtained out of band (the draft leaves how open);
    /// always `None` with the null suite.
    pub key: Option<Vec<u8>>,
    /// `iv`: the AEAD IV, exactly [`CipherSuite::iv_len`] bytes. `None` with an AEAD
    /// suite means it is obtained out of band; always `None` with the null suite.
    pub iv: Option<Vec<u8>>,
    /// `digest-algorithm` values (HTTP Digest Algorithm tokens such as `SHA-256`),
    /// a set: in order of first appearance, duplicates (ignoring ASCII case) dropped.
    /// Empty: content integrity not used or unrestricted.
    pub digest_algorithms: Vec<String>,
    /// `signature-algorithm` values (such as `rsa-sha256`), a set like
    /// [`Advertisement::digest_algorithms`].
    pub signature_algorithms: Vec<String>,
    /// `extensions`: multicast-capable QUIC extensions in use, every occurrence
    /// concatenated in order (not deduplicated).
    pub extensions: Vec<Extension>,
    /// RFC 7838 `ma`, freshness lifetime in seconds (values too large for a `u64`
    /// saturate); `None` means the default of 24 hours.
    pub max_age: Option<u64>,
    /// RFC 7838 `persist=1`: keep the alternative across network changes. Other
    /// `persist` values are ignored, as RFC 7838 requires.
    pub persist: bool,
    /// Parameters this module does not interpret, in order, name in lowercase, value
    /// unescaped (for example the undefined `max-packet-size` of the draft's
    /// Appendix C).
    pub unknown: Vec<(String, String)>,
}

/// One entry of the `extensions` parameter: a QUIC transport-parameter code point and
/// an optional value (`ext = 4HEXDIG [ "=" *HEXDIG ]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Extension {
    /// The transport-parameter code point.
    pub code: u16,
    /// The value after `=`; `Some(vec![])` for `XXXX=`, `None` when there is no `=`.
    pub value: Option<Vec<u8>>,
}

/// Why an `Alt-Svc` value could not be read as h3m advertisements.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AltSvcError {
    /// The field value is longer than [`MAX_FIELD_LEN`].
    #[error("Alt-Svc value is {len} bytes long; at most {max} are accepted")]
    TooLong {
        /// The length of the input.
        len: usize,
        /// The limit, [`MAX_FIELD_LEN`].
        max: usize,
    },
    /// The text does not follow the RFC 7838 grammar.
    #[error("Alt-Svc syntax error at byte {at}: {reason}")]
    Syntax {
        /// Byte offset into the input.
        at: usize,
        /// What was wrong there.
        reason: &'static str,
    },
    /// [`parse_one`] found only a non-h3m alternative (the percent-decoded protocol id).
    #[error("alternative {0:?} is not h3m (expected \"h3m\", \"h3m-<draft>\" or \"h3m-<draft>-<experiment>\")")]
    NotH3m(String),
    /// [`parse_one`] found no h3m alternative (`clear`, or only other protocols).
    #[error("no h3m alternative in the Alt-Svc value")]
    NoH3mAlternative,
    /// [`parse_one`] found several h3m alternatives (how many).
    #[error("{0} h3m alternatives in the Alt-Svc value; exactly one was expected")]
    MultipleH3m(usize),
    /// The alt-authority is not `"<IP literal>:<port 1-65535>"` (IPv6 in brackets).
    #[error("alt-authority {0:?} is not \"<multicast IP>:<port>\" (IP literal, IPv6 in [ ], port 1-65535)")]
    BadAuthority(String),
    /// The group address is not multicast (IPv4 224.0.0.0/4, IPv6 ff00::/8).
    #[error("group {0} is not a multicast address")]
    NotMulticast(IpAddr),
    /// `source-address` is not a unicast IP literal.
    #[error("source-address {0:?} is not a unicast IP address")]
    BadSource(String),
    /// `source-address` and the group are of different address families.
    #[error("source-address and group are of different address families")]
    FamilyMismatch,
    /// A numeric parameter is not a decimal number that fits its type.
    #[error("{param}={value:?} is not a valid decimal number")]
    BadNumber {
        /// The parameter name.
        param: &'static str,
        /// The value as written.
        value: String,
    },
    /// `session-id` is not up to 40 hex digits.
    #[error("bad session-id: {0}")]
    BadSessionId(#[from] SessionIdError),
    /// `cipher-suite` names a code point h3m does not support (the value as written).
    #[error("unsupported cipher-suite {0} (supported: 0000, 1301, 1302, 1303)")]
    UnsupportedCipherSuite(String),
    /// `key` has the wrong length for the cipher suite.
    #[error("key is {got} bytes long; the cipher suite needs {expected}")]
    KeyLength {
        /// [`CipherSuite::key_len`] of the advertised suite.
        expected: usize,
        /// The length of the advertised key.
        got: usize,
    },
    /// `iv` has the wrong length for the cipher suite.
    #[error("iv is {got} bytes long; the cipher suite needs {expected}")]
    IvLength {
        /// [`CipherSuite::iv_len`] of the advertised suite.
        expected: usize,
        /// The length of the advertised IV.
        got: usize,
    },
    /// A `key` is given but the cipher suite is the null suite (absent or `0000`).
    #[error("a key is given but the cipher suite is 0000 (no protection)")]
    KeyWithNullCipher,
    /// An `iv` is given but the cipher suite is the null suite (absent or `0000`).
    #[error("an iv is given but the cipher suite is 0000 (no protection)")]
    IvWithNullCipher,
    /// A hex parameter is malformed (`cipher-suite` not exactly 4 hex digits, or an
    /// odd number of digits or a non-hex character in `key`/`iv`). For `key` and
    /// `iv` the value is replaced by `<redacted: N chars>` so keys stay out of logs.
    #[error("{param}={value:?} is not valid hex")]
    BadHex {
        /// The parameter name.
        param: &'static str,
        /// The value as written (redacted for `key` and `iv`).
        value: String,
    },
    /// An `extensions` entry is not `XXXX` or `XXXX=<hex>` (the entry as written).
    #[error("bad extensions entry {0:?} (expected 4 hex digits, optionally \"=\" and an even number of hex digits)")]
    BadExtension(String),
    /// A `digest-algorithm` or `signature-algorithm` value is not a token.
    #[error("{param}={value:?} is not a valid algorithm token")]
    BadAlgorithm {
        /// The parameter name.
        param: &'static str,
        /// The value as written.
        value: String,
    },
    /// [`Advertisement::validate`]: the protocol id does not agree with
    /// [`Advertisement::draft`] / [`Advertisement::experiment`].
    #[error("protocol {0:?} does not match the draft/experiment fields")]
    ProtocolFields(String),
    /// [`Advertisement::validate`]: an entry of [`Advertisement::unknown`] cannot be
    /// written and read back (name not a lowercase token, a known name, or a control
    /// character in the value).
    #[error("parameter {name:?} cannot be written: {reason}")]
    BadParameter {
        /// The parameter name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Reads every h3m alternative of an `Alt-Svc` field value.
///
/// Alternatives for other protocols are skipped; `clear` (and a value listing no h3m
/// alternative) gives an empty list. Any syntax error in the field, or a bad h3m
/// alternative, fails the whole call; use [`parse_each`] to keep the good
/// alternatives of a field with a bad one.
pub fn parse(header_value: &str) -> Result<Vec<Advertisement>, AltSvcError> {
    parse_each(header_value)?.into_iter().collect()
}

/// Reads an `Alt-Svc` field value and checks each h3m alternative separately.
///
/// The outer error is for the field as a whole (too long, syntax); the inner results
/// are the h3m alternatives in order, other protocols skipped.
pub fn parse_each(header_value: &str) -> Result<Vec<Result<Advertisement, AltSvcError>>, AltSvcError> {
    let alts = parse_field(header_value, 0)?;
    Ok(alts.into_iter().filter(RawAlt::is_h3m).map(build).collect())
}

/// Reads exactly one h3m advertisement, for command lines and configuration.
///
/// The text is an `Alt-Svc` field value, optionally preceded by the field name
/// (`Alt-Svc: ...`). Alternatives for other protocols are skipped, but there must be
/// exactly one h3m alternative: [`AltSvcError::NotH3m`] when the only alternative is
/// another protocol, [`AltSvcError::NoH3mAlternative`] for `clear` or several non-h3m
/// alternatives, [`AltSvcError::MultipleH3m`] for more than one h3m alternative.
pub fn parse_one(text: &str) -> Result<Advertisement, AltSvcError> {
    let alts = parse_field(text, field_value_start(text))?;
    let total = alts.len();
    let mut h3m: Vec<RawAlt> = Vec::new();
    let mut other = None;
    for alt in alts {
        if alt.is_h3m() {
            h3m.push(alt);
        } else if other.is_none() {
            other = Some(alt.protocol);
        }
    }
    match (h3m.len(), other) {
        (1, _) => h3m.pop().map_or(Err(AltSvcError::NoH3mAlternative), build),
        (0, Some(protocol)) if total == 1 => Err(AltSvcError::NotH3m(protocol)),
        (0, _) => Err(AltSvcError::NoH3mAlternative),
        (n, _) => Err(AltSvcError::MultipleH3m(n)),
    }
}

impl FromStr for Advertisement {
    type Err = AltSvcError;

    /// Same as [`parse_one`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_one(s)
    }
}

impl Advertisement {
    /// An advertisement for `group` with no parameters: any-source multicast, empty
    /// session ID, null cipher suite, no limits.
    ///
    /// `draft` and `experiment` are derived from `protocol`; they are `None` when
    /// `protocol` is not an h3m protocol id (which [`Advertisement::validate`] reports).
    pub fn new(protocol: &str, group: SocketAddr) -> Self {
        let (draft, experiment) = classify(protocol).unwrap_or((None, None));
        Advertisement {
            protocol: protocol.to_owned(),
            draft,
            experiment,
            group,
            source: None,
            session_id: SessionId::EMPTY,
            idle_timeout_ms: None,
            max_concurrent_resources: None,
            peak_flow_rate: None,
            cipher_suite: CipherSuite::Null,
            key: None,
            iv: None,
            digest_algorithms: Vec::new(),
            signature_algorithms: Vec::new(),
            extensions: Vec::new(),
            max_age: None,
            persist: false,
            unknown: Vec::new(),
        }
    }

    /// The `Display` form with the `key` and `iv` values replaced by `<redacted>`,
    /// for logs. The result is not meant to be parsed back.
    pub fn redacted(&self) -> String {
        Shown { ad: self, redact: true }.to_string()
    }

    /// The idle timeout read as milliseconds, as the draft's normative text says.
    /// `None` when absent or 0 (never time out).
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout_ms.filter(|&ms| ms != 0).map(Duration::from_millis)
    }

    /// The idle timeout with the compatibility rule for the draft's seconds-era
    /// examples: a value below [`IDLE_TIMEOUT_COMPAT_THRESHOLD_MS`] is taken as
    /// seconds (`60` is one minute, as the draft's appendix and nghq's examples
    /// mean it); larger values are milliseconds. `None` when absent or 0.
    pub fn idle_timeout_compat(&self) -> Option<Duration> {
        match self.idle_timeout_ms? {
            0 => None,
            v if v < IDLE_TIMEOUT_COMPAT_THRESHOLD_MS => Some(Duration::from_secs(v)),
            v => Some(Duration::from_millis(v)),
        }
    }

    /// Whether `session-idle-timeout` is suspiciously small (between 1 and 999 ms),
    /// most likely a seconds value from the draft's appendix. Callers should warn and
    /// consider [`Advertisement::idle_timeout_compat`].
    pub fn idle_timeout_is_suspicious(&self) -> bool {
        self.idle_timeout_ms.is_some_and(|v| v != 0 && v < IDLE_TIMEOUT_COMPAT_THRESHOLD_MS)
    }

    /// The RFC 7838 freshness lifetime: `ma`, or 24 hours when absent.
    pub fn freshness_lifetime(&self) -> Duration {
        Duration::from_secs(self.max_age.unwrap_or(DEFAULT_MAX_AGE))
    }

    /// Checks every rule [`parse_one`] enforces, so that an advertisement built in
    /// code can be relied on to be written by `Display` and read back equal.
    pub fn validate(&self) -> Result<(), AltSvcError> {
        match classify(&self.protocol) {
            None => return Err(AltSvcError::NotH3m(self.protocol.clone())),
            Some((draft, experiment)) => {
                if draft != self.draft || experiment != self.experiment {
                    return Err(AltSvcError::ProtocolFields(self.protocol.clone()));
                }
            }
        }
        let plain_v6 = match self.group {
            SocketAddr::V4(_) => true,
            SocketAddr::V6(v6) => v6.scope_id() == 0 && v6.flowinfo() == 0,
        };
        if self.group.port() == 0 || !plain_v6 {
            return Err(AltSvcError::BadAuthority(self.group.to_string()));
        }
        if !self.group.ip().is_multicast() {
            return Err(AltSvcError::NotMulticast(self.group.ip()));
        }
        if let Some(source) = self.source
            && !is_unicast(source)
        {
            return Err(AltSvcError::BadSource(source.to_string()));
        }
        for (param, set) in
            [("digest-algorithm", &self.digest_algorithms), ("signature-algorithm", &self.signature_algorithms)]
        {
            for (i, alg) in set.iter().enumerate() {
                let duplicate = set[..i].iter().any(|a| a.eq_ignore_ascii_case(alg));
                if !is_token(alg) || duplicate {
                    return Err(AltSvcError::BadAlgorithm { param, value: alg.clone() });
                }
            }
        }
        for (name, value) in &self.unknown {
            let reason = if !is_token(name) {
                Some("name is not a token")
            } else if name.bytes().any(|b| b.is_ascii_uppercase()) {
                Some("name is not lowercase")
            } else if KNOWN_PARAMETERS.contains(&name.as_str()) {
                Some("name is a parameter this module interprets")
            } else if value.bytes().any(|b| b != b'\t' && (b < 0x20 || b == 0x7f)) {
                Some("value holds a control character")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(AltSvcError::BadParameter { name: name.clone(), reason });
            }
        }
        self.check_consistency()
    }

    /// The cross-parameter rules: source family, key/iv against the suite.
    fn check_consistency(&self) -> Result<(), AltSvcError> {
        if self.source.is_some_and(|s| s.is_ipv4() != self.group.is_ipv4()) {
            return Err(AltSvcError::FamilyMismatch);
        }
        let suite = self.cipher_suite;
        if suite == CipherSuite::Null {
            if self.key.is_some() {
                return Err(AltSvcError::KeyWithNullCipher);
            }
            if self.iv.is_some() {
                return Err(AltSvcError::IvWithNullCipher);
            }
            return Ok(());
        }
        if let Some(key) = &self.key
            && key.len() != suite.key_len()
        {
            return Err(AltSvcError::KeyLength { expected: suite.key_len(), got: key.len() });
        }
        if let Some(iv) = &self.iv
            && iv.len() != suite.iv_len()
        {
            return Err(AltSvcError::IvLength { expected: suite.iv_len(), got: iv.len() });
        }
        Ok(())
    }
}

impl fmt::Display for Advertisement {
    /// A canonical single alt-value: present parameters only, in a fixed order
    /// (source-address, session-id, session-idle-timeout, max-concurrent-resources,
    /// peak-flow-rate, cipher-suite, key, iv, digest-algorithm, signature-algorithm,
    /// extensions, ma, persist, then unknown ones), lowercase hex, quoted authority.
    /// [`parse_one`] reads it back equal for any advertisement that passes
    /// [`Advertisement::validate`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Shown { ad: self, redact: false }.fmt(f)
    }
}

impl fmt::Debug for Advertisement {
    /// Every field, with `key` and `iv` shown only by length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Advertisement")
            .field("protocol", &self.protocol)
            .field("draft", &self.draft)
            .field("experiment", &self.experiment)
            .field("group", &self.group)
            .field("source", &self.source)
            .field("session_id", &self.session_id)
            .field("idle_timeout_ms", &self.idle_timeout_ms)
            .field("max_concurrent_resources", &self.max_concurrent_resources)
            .field("peak_flow_rate", &self.peak_flow_rate)
            .field("cipher_suite", &self.cipher_suite)
            .field("key", &self.key.as_ref().map(|k| Redacted(k.len())))
            .field("iv", &self.iv.as_ref().map(|k| Redacted(k.len())))
            .field("digest_algorithms", &self.digest_algorithms)
            .field("signature_algorithms", &self.signature_algorithms)
            .field("extensions", &self.extensions)
            .field("max_age", &self.max_age)
            .field("persist", &self.persist)
            .field("unknown", &self.unknown)
            .finish()
    }
}

/// Debug stand-in for secret bytes.
struct Redacted(usize);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0)
    }
}

/// The writer behind `Display` and [`Advertisement::redacted`].
struct Shown<'a> {
    ad: &'a Advertisement,
    redact: bool,
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ad = self.ad;
        for b in ad.protocol.bytes() {
            if is_tchar(b) && b != b'%' {
                f.write_str(char::from(b).encode_utf8(&mut [0; 4]))?;
            } else {
                write!(f, "%{b:02X}")?;
            }
        }
        match ad.group.ip() {
            IpAddr::V4(ip) => write!(f, "=\"{ip}:{}\"", ad.group.port())?,
            IpAddr::V6(ip) => write!(f, "=\"[{ip}]:{}\"", ad.group.port())?,
        }
        if let Some(source) = ad.source {
            write!(f, "; source-address=\"{source}\"")?;
        }
        if !ad.session_id.is_empty() {
            write!(f, "; session-id={}", ad.session_id.to_hex())?;
        }
        if let Some(v) = ad.idle_timeout_ms {
            write!(f, "; session-idle-timeout={v}")?;
        }
        if let Some(v) = ad.max_concurrent_resources {
            write!(f, "; max-concurrent-resources={v}")?;
        }
        if let Some(v) = ad.peak_flow_rate {
            write!(f, "; peak-flow-rate={v}")?;
        }
        if ad.cipher_suite != CipherSuite::Null {
            write!(f, "; cipher-suite={:04x}", ad.cipher_suite.code())?;
        }
        for (name, secret) in [("key", &ad.key), ("iv", &ad.iv)] {
            match secret {
                Some(_) if self.redact => write!(f, "; {name}=<redacted>")?,
                Some(bytes) => write!(f, "; {name}={}", Hex(bytes))?,
                None => {}
            }
        }
        for alg in &ad.digest_algorithms {
            write!(f, "; digest-algorithm={}", Value(alg))?;
        }
        for alg in &ad.signature_algorithms {
            write!(f, "; signature-algorithm={}", Value(alg))?;
        }
        if !ad.extensions.is_empty() {
            f.write_str("; extensions=\"")?;
            for (i, ext) in ad.extensions.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{:04x}", ext.code)?;
                if let Some(value) = &ext.value {
                    write!(f, "={}", Hex(value))?;
                }
            }
            f.write_str("\"")?;
        }
        if let Some(v) = ad.max_age {
            write!(f, "; ma={v}")?;
        }
        if ad.persist {
            f.write_str("; persist=1")?;
        }
        for (name, value) in &ad.unknown {
            write!(f, "; {name}={}", Value(value))?;
        }
        Ok(())
    }
}

/// Lowercase hex of a byte string.
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// A parameter value: bare when it is a token, else a quoted-string.
struct Value<'a>(&'a str);

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_token(self.0) {
            return f.write_str(self.0);
        }
        f.write_str("\"")?;
        for c in self.0.chars() {
            if c == '"' || c == '\\' {
                f.write_str("\\")?;
            }
            f.write_str(c.encode_utf8(&mut [0; 4]))?;
        }
        f.write_str("\"")
    }
}

// ---------------------------------------------------------------------------
// Syntax: RFC 7838 / RFC 7230 lexing into raw alternatives.
// ---------------------------------------------------------------------------

/// One alternative as written, before interpretation.
struct RawAlt {
    /// Percent-decoded protocol id (lossy if the bytes are not UTF-8, which no h3m
    /// protocol id can be).
    protocol: String,
    /// The alt-authority, unescaped.
    authority: String,
    /// Parameters in order: lowercase name, unescaped value.
    params: Vec<(String, String)>,
}

impl RawAlt {
    fn is_h3m(&self) -> bool {
        classify(&self.protocol).is_some()
    }
}

/// A byte cursor over the field value.
struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn err(&self, reason: &'static str) -> AltSvcError {
        AltSvcError::Syntax { at: self.pos, reason }
    }

    /// The longest run of bytes satisfying `ok`. Only ASCII bytes are accepted by
    /// the callers' predicates, so the slice is on char boundaries.
    fn take_while(&mut self, ok: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&ok) {
            self.pos += 1;
        }
        self.text.get(start..self.pos).unwrap_or("")
    }

    /// A token (possibly empty).
    fn token(&mut self) -> &'a str {
        self.take_while(is_tchar)
    }

    /// A value: quoted-string, or a bare run of visible ASCII other than `"`, `;`
    /// and `,` (a superset of token, so unquoted IPv6 literals read too).
    fn value(&mut self) -> Result<String, AltSvcError> {
        if self.peek() == Some(b'"') {
            self.quoted()
        } else {
            Ok(self.take_while(|b| matches!(b, 0x21..=0x7e) && !matches!(b, b'"' | b';' | b',')).to_owned())
        }
    }

    /// A quoted-string starting at the opening quote, unescaped.
    fn quoted(&mut self) -> Result<String, AltSvcError> {
        let open = self.pos;
        self.pos += 1;
        let unterminated = AltSvcError::Syntax { at: open, reason: "unterminated quoted-string" };
        let mut out = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(unterminated);
            };
            match b {
                b'"' => {
                    self.pos += 1;
                    break;
                }
                b'\\' => {
                    self.pos += 1;
                    match self.peek() {
                        None => return Err(unterminated),
                        Some(c) if is_qtext(c) || c == b'"' || c == b'\\' => {
                            out.push(c);
                            self.pos += 1;
                        }
                        Some(_) => return Err(self.err("control character in quoted-string")),
                    }
                }
                b if is_qtext(b) => {
                    out.push(b);
                    self.pos += 1;
                }
                _ => return Err(self.err("control character in quoted-string")),
            }
        }
        // Only ASCII bytes were added or removed around whole UTF-8 sequences, so
        // this is valid UTF-8; stay panic-free regardless.
        Ok(String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }
}

/// Where the field value starts in `text`: after an optional `Alt-Svc:` field name.
fn field_value_start(text: &str) -> usize {
    let trimmed = text.trim_start_matches([' ', '\t']);
    let is_name = trimmed.as_bytes().get(..7).is_some_and(|b| b.eq_ignore_ascii_case(b"alt-svc"));
    if is_name
        && let Some(rest) = trimmed.get(7..)
        && let Some(value) = rest.trim_start_matches([' ', '\t']).strip_prefix(':')
    {
        return text.len() - value.len();
    }
    0
}

/// Splits a field value (from byte `start`) into raw alternatives; `clear` gives none.
fn parse_field(text: &str, start: usize) -> Result<Vec<RawAlt>, AltSvcError> {
    if text.len() > MAX_FIELD_LEN {
        return Err(AltSvcError::TooLong { len: text.len(), max: MAX_FIELD_LEN });
    }
    let mut sc = Scanner { text, pos: start };
    sc.skip_ows();
    if text.get(sc.pos..).is_some_and(|rest| rest.trim_end_matches([' ', '\t']) == "clear") {
        return Ok(Vec::new());
    }
    let mut alts = Vec::new();
    loop {
        sc.skip_ows();
        match sc.peek() {
            None => break,
            Some(b',') => {
                sc.pos += 1;
                continue;
            }
            Some(_) => {}
        }
        alts.push(parse_alt(&mut sc)?);
        sc.skip_ows();
        if sc.peek().is_some() && !sc.eat(b',') {
            return Err(sc.err("expected ',' or ';' after an alternative or parameter"));
        }
    }
    if alts.is_empty() {
        return Err(sc.err("no alternative in the Alt-Svc value"));
    }
    Ok(alts)
}

/// One alt-value: `protocol-id "=" alt-authority *( OWS ";" OWS parameter )`.
fn parse_alt(sc: &mut Scanner<'_>) -> Result<RawAlt, AltSvcError> {
    let at = sc.pos;
    let raw = sc.token();
    if raw.is_empty() {
        return Err(sc.err("expected a protocol-id"));
    }
    let protocol = percent_decode(raw, at)?;
    sc.skip_ows();
    if !sc.eat(b'=') {
        return Err(sc.err("expected '=' after the protocol-id"));
    }
    sc.skip_ows();
    let authority = sc.value()?;
    let mut params = Vec::new();
    loop {
        sc.skip_ows();
        if !sc.eat(b';') {
            break;
        }
        sc.skip_ows();
        if matches!(sc.peek(), None | Some(b';' | b',')) {
            continue; // empty parameter, tolerated
        }
        let name = sc.token();
        if name.is_empty() {
            return Err(sc.err("expected a parameter name"));
        }
        sc.skip_ows();
        if !sc.eat(b'=') {
            return Err(sc.err("expected '=' after the parameter name"));
        }
        sc.skip_ows();
        let value = sc.value()?;
        params.push((name.to_ascii_lowercase(), value));
    }
    Ok(RawAlt { protocol, authority, params })
}

/// Decodes `%XX` escapes in a protocol-id token starting at byte `at`.
fn percent_decode(token: &str, at: usize) -> Result<String, AltSvcError> {
    let out = crate::http::path::percent_decode(token.as_bytes())
        .map_err(|e| AltSvcError::Syntax { at: at + e.at, reason: "bad percent-encoding in the protocol-id" })?;
    Ok(String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

// ---------------------------------------------------------------------------
// Semantics: raw alternative -> Advertisement.
// ---------------------------------------------------------------------------

/// `(draft, experiment)` of an h3m protocol id, `None` when it is not one.
fn classify(protocol: &str) -> Option<(Option<u32>, Option<String>)> {
    if protocol == "h3m" {
        return Some((None, None));
    }
    let rest = protocol.strip_prefix("h3m-")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let draft: u32 = rest.get(..digits)?.parse().ok()?;
    let tail = rest.get(digits..)?;
    if tail.is_empty() {
        return Some((Some(draft), None));
    }
    let experiment = tail.strip_prefix('-')?;
    is_token(experiment).then(|| (Some(draft), Some(experiment.to_owned())))
}

/// Builds an advertisement from an h3m raw alternative.
fn build(raw: RawAlt) -> Result<Advertisement, AltSvcError> {
    if classify(&raw.protocol).is_none() {
        return Err(AltSvcError::NotH3m(raw.protocol));
    }
    let mut ad = Advertisement::new(&raw.protocol, parse_group(&raw.authority)?);
    let mut seen: Vec<&'static str> = Vec::new();
    for (name, value) in raw.params {
        let key = KNOWN_PARAMETERS.iter().copied().find(|k| *k == name);
        let Some(key) = key else {
            ad.unknown.push((name, value));
            continue;
        };
        let single =
            !matches!(key, "digest-algorithm" | "signature-algorithm" | "extensions" | "extension" | "persist");
        if single {
            if seen.contains(&key) {
                continue; // first occurrence wins; later ones are not checked
            }
            seen.push(key);
        }
        let v = value.as_str();
        match key {
            "source-address" => ad.source = Some(parse_source(v)?),
            "session-id" => ad.session_id = SessionId::from_hex(v)?,
            "session-idle-timeout" => ad.idle_timeout_ms = Some(parse_number(key, v)?),
            "max-concurrent-resources" => {
                let n = parse_number(key, v)?;
                let n = u32::try_from(n).map_err(|_| bad_number(key, v))?;
                ad.max_concurrent_resources = Some(n);
            }
            "peak-flow-rate" => ad.peak_flow_rate = Some(parse_number(key, v)?),
            "cipher-suite" => ad.cipher_suite = parse_cipher_suite(v)?,
            "key" => ad.key = Some(parse_secret(key, v)?),
            "iv" => ad.iv = Some(parse_secret(key, v)?),
            "digest-algorithm" => add_algorithm(key, v, &mut ad.digest_algorithms)?,
            "signature-algorithm" => add_algorithm(key, v, &mut ad.signature_algorithms)?,
            "extensions" | "extension" => parse_extensions(v, &mut ad.extensions)?,
            "ma" => {
                ad.max_age = Some(match parse_number(key, v) {
                    Ok(n) => n,
                    // RFC 7234 delta-seconds: too large means "very long".
                    Err(_) if all_digits(v) => u64::MAX,
                    Err(e) => return Err(e),
                })
            }
            "persist" => ad.persist |= v == "1",
            _ => ad.unknown.push((name, value)),
        }
    }
    ad.check_consistency()?;
    Ok(ad)
}

/// The alt-authority as a multicast group and non-zero port.
fn parse_group(authority: &str) -> Result<SocketAddr, AltSvcError> {
    let bad = || AltSvcError::BadAuthority(authority.to_owned());
    let (ip, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, port) = rest.split_once("]:").ok_or_else(bad)?;
        (IpAddr::V6(host.parse::<Ipv6Addr>().map_err(|_| bad())?), port)
    } else {
        let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
        (IpAddr::V4(host.parse::<Ipv4Addr>().map_err(|_| bad())?), port)
    };
    if !all_digits(port) {
        return Err(bad());
    }
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(bad());
    }
    if !ip.is_multicast() {
        return Err(AltSvcError::NotMulticast(ip));
    }
    Ok(SocketAddr::new(ip, port))
}

/// `source-address`: a unicast IP literal, IPv6 with or without brackets.
fn parse_source(value: &str) -> Result<IpAddr, AltSvcError> {
    let bracketed = value.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
    let ip = match bracketed {
        Some(inner) => inner.parse::<Ipv6Addr>().map(IpAddr::V6).ok(),
        None => value.parse::<IpAddr>().ok(),
    };
    ip.filter(|&ip| is_unicast(ip)).ok_or_else(|| AltSvcError::BadSource(value.to_owned()))
}

/// Not multicast, not unspecified, not the IPv4 limited broadcast address.
fn is_unicast(ip: IpAddr) -> bool {
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    !ip.is_multicast() && !ip.is_unspecified() && !broadcast
}

fn bad_number(param: &'static str, value: &str) -> AltSvcError {
    AltSvcError::BadNumber { param, value: value.to_owned() }
}

/// `1*DIGIT` as a `u64` (no sign, no whitespace).
fn parse_number(param: &'static str, value: &str) -> Result<u64, AltSvcError> {
    if !all_digits(value) {
        return Err(bad_number(param, value));
    }
    value.parse().map_err(|_| bad_number(param, value))
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `cipher-suite`: exactly four hex digits naming a supported suite.
fn parse_cipher_suite(value: &str) -> Result<CipherSuite, AltSvcError> {
    let code = (value.len() == 4 && value.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u16::from_str_radix(value, 16).ok())
        .flatten()
        .ok_or_else(|| AltSvcError::BadHex { param: "cipher-suite", value: value.to_owned() })?;
    CipherSuite::from_code(code).ok_or_else(|| AltSvcError::UnsupportedCipherSuite(value.to_owned()))
}

/// `key` / `iv`: an even number of hex digits, optional `0x`; errors never echo it.
fn parse_secret(param: &'static str, value: &str) -> Result<Vec<u8>, AltSvcError> {
    hex::decode(strip_0x(value))
        .map_err(|_| AltSvcError::BadHex { param, value: format!("<redacted: {} chars>", value.chars().count()) })
}

fn strip_0x(s: &str) -> &str {
    s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s)
}

/// Adds a `digest-algorithm` / `signature-algorithm` token to its set.
fn add_algorithm(param: &'static str, value: &str, set: &mut Vec<String>) -> Result<(), AltSvcError> {
    if !is_token(value) {
        return Err(AltSvcError::BadAlgorithm { param, value: value.to_owned() });
    }
    if !set.iter().any(|a| a.eq_ignore_ascii_case(value)) {
        set.push(value.to_owned());
    }
    Ok(())
}

/// `extensions`: `ext *( "," ext )`, `ext = 4HEXDIG [ "=" *HEXDIG ]`; an empty value
/// adds nothing.
fn parse_extensions(value: &str, out: &mut Vec<Extension>) -> Result<(), AltSvcError> {
    if value.trim_matches([' ', '\t']).is_empty() {
        return Ok(());
    }
    for item in value.split(',') {
        let item = item.trim_matches([' ', '\t']);
        let bad = || AltSvcError::BadExtension(item.to_owned());
        let (code, ext_value) = match item.split_once('=') {
            Some((code, v)) => (code.trim_matches([' ', '\t']), Some(v.trim_matches([' ', '\t']))),
            None => (item, None),
        };
        let code = strip_0x(code);
        if code.len() != 4 || !code.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let code = u16::from_str_radix(code, 16).map_err(|_| bad())?;
        let value = match ext_value {
            Some(v) => Some(hex::decode(strip_0x(v)).map_err(|_| bad())?),
            None => None,
        };
        out.push(Extension { code, value });
    }
    Ok(())
}

/// RFC 7230 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A non-empty RFC 7230 token.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// `qdtext` plus the characters a quoted-pair may carry besides `"` and `\`.
fn is_qtext(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f && b != b'"' && b != b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SPEC_EXAMPLE: &str = concat!(
        r#"h3m-07="[ff3e::8000:1]:2000"; source-address="2001:db8::10"; "#,
        "session-id=2a; session-idle-timeout=60000; max-concurrent-resources=8; ",
        "peak-flow-rate=4000000; cipher-suite=1301; ",
        "key=00112233445566778899aabbccddeeff; iv=0123456789abcdef01234567; ",
        "digest-algorithm=SHA-256; signature-algorithm=rsa-sha256; ma=3600"
    );

    fn v4(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn one(text: &str) -> Advertisement {
        parse_one(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn err(text: &str) -> AltSvcError {
        match parse_one(text) {
            Ok(ad) => panic!("{text} parsed as {ad}"),
            Err(e) => e,
        }
    }

    #[test]
    fn spec_example_parses_to_exact_fields() {
        let ads = parse(SPEC_EXAMPLE).unwrap();
        assert_eq!(ads.len(), 1);
        let ad = &ads[0];
        assert_eq!(ad.protocol, "h3m-07");
        assert_eq!(ad.draft, Some(7));
        assert_eq!(ad.experiment, None);
        assert_eq!(ad.group, "[ff3e::8000:1]:2000".parse::<SocketAddr>().unwrap());
        assert_eq!(ad.source, Some("2001:db8::10".parse().unwrap()));
        assert_eq!(ad.session_id.as_bytes(), &[0x2a]);
        assert_eq!(ad.idle_timeout_ms, Some(60_000));
        assert_eq!(ad.idle_timeout(), Some(Duration::from_secs(60)));
        assert_eq!(ad.idle_timeout_compat(), Some(Duration::from_secs(60)));
        assert!(!ad.idle_timeout_is_suspicious());
        assert_eq!(ad.max_concurrent_resources, Some(8));
        assert_eq!(ad.peak_flow_rate, Some(4_000_000));
        assert_eq!(ad.cipher_suite, CipherSuite::Aes128Gcm);
        assert_eq!(
            ad.key.as_deref(),
            Some(&[0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff][..])
        );
        assert_eq!(
            ad.iv.as_deref(),
            Some(&[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67][..])
        );
        assert_eq!(ad.digest_algorithms, ["SHA-256"]);
        assert_eq!(ad.signature_algorithms, ["rsa-sha256"]);
        assert!(ad.extensions.is_empty());
        assert_eq!(ad.max_age, Some(3600));
        assert_eq!(ad.freshness_lifetime(), Duration::from_secs(3600));
        assert!(!ad.persist);
        assert!(ad.unknown.is_empty());
        ad.validate().unwrap();
        // The canonical form of the example is the example itself.
        assert_eq!(ad.to_string(), SPEC_EXAMPLE);
        assert_eq!(parse_one(SPEC_EXAMPLE).unwrap(), *ad);
        assert_eq!(SPEC_EXAMPLE.parse::<Advertisement>().unwrap(), *ad);
    }

    #[test]
    fn nghq_style_advertisement() {
        let ad = one(r#"h3m-07="232.0.0.1:2000"; source-address=10.0.0.1; session-id=53657373696f6e204944"#);
        assert_eq!(ad.group, v4("232.0.0.1:2000"));
        assert_eq!(ad.source, Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
        assert_eq!(ad.session_id, SessionId::NGHQ_DEFAULT);
        assert_eq!(ad.cipher_suite, CipherSuite::Null);
        assert_eq!(ad.freshness_lifetime(), Duration::from_secs(86_400));
        assert_eq!(
            ad.to_string(),
            r#"h3m-07="232.0.0.1:2000"; source-address="10.0.0.1"; session-id=53657373696f6e204944"#
        );
    }

    #[test]
    fn token_and_quoted_values_are_equivalent() {
        let quoted = one(concat!(
            r#"h3m-07="232.0.0.1:2000"; source-address="10.0.0.1"; session-id="2a"; "#,
            r#"session-idle-timeout="5000"; cipher-suite="1302"; digest-algorithm="SHA-256"; ma="60""#
        ));
        let token = one(concat!(
            r#"h3m-07="232.0.0.1:2000";source-address=10.0.0.1 ;  session-id=2a;"#,
            "session-idle-timeout=5000;\tcipher-suite=1302; digest-algorithm=SHA-256; ma=60"
        ));
        assert_eq!(quoted, token);
        assert_eq!(quoted.cipher_suite, CipherSuite::Aes256Gcm);
        assert_eq!(quoted.key, None, "AEAD without key: obtained out of band");

        // IPv6 source: quoted or not, bracketed or not.
        let want = Some("2001:db8::10".parse::<IpAddr>().unwrap());
        for src in ["2001:db8::10", "\"2001:db8::10\"", "[2001:db8::10]", "\"[2001:db8::10]\""] {
            let ad = one(&format!(r#"h3m-07="[ff3e::1]:2000"; source-address={src}"#));
            assert_eq!(ad.source, want, "{src}");
        }

        // Backslash escapes, and commas / semicolons inside quotes.
        let ad = one(r#"h3m-07="232.0.0.1:2000"; digest-algorithm="SHA\-256"; x-note="a\"b;c,d\\e""#);
        assert_eq!(ad.digest_algorithms, ["SHA-256"]);
        assert_eq!(ad.unknown, [("x-note".to_owned(), r#"a"b;c,d\e"#.to_owned())]);
        assert_eq!(ad.to_string(), r#"h3m-07="232.0.0.1:2000"; digest-algorithm=SHA-256; x-note="a\"b;c,d\\e""#);

        // Case-insensitive names, OWS around '=', empty parameters, unquoted authority.
        let ad = one("h3m-07 = 232.0.0.1:2000 ;; SESSION-ID = 2a; Max-Packet-Size=1200;");
        assert_eq!(ad.session_id.as_bytes(), &[0x2a]);
        assert_eq!(ad.unknown, [("max-packet-size".to_owned(), "1200".to_owned())]);
    }

    #[test]
    fn percent_encoded_protocol_id() {
        let ad = one(r#"h%33m-07="232.0.0.1:2000""#);
        assert_eq!(ad.protocol, "h3m-07");
        assert_eq!(ad.draft, Some(7));
        let ad = one(r#"%68%33%6d-09-data-offset="232.0.0.1:2000""#);
        assert_eq!(ad.protocol, "h3m-09-data-offset");
        assert_eq!((ad.draft, ad.experiment.as_deref()), (Some(9), Some("data-offset")));
        // '%' inside an experiment name is written back encoded.
        let ad = one(r#"h3m-07-a%25b="232.0.0.1:2000""#);
        assert_eq!(ad.experiment.as_deref(), Some("a%b"));
        assert_eq!(ad.to_string(), r#"h3m-07-a%25b="232.0.0.1:2000""#);
        assert_eq!(one(&ad.to_string()), ad);
        // Bare h3m (final RFC).
        let ad = one(r#"h3m="232.0.0.1:2000""#);
        assert_eq!((ad.draft, ad.experiment), (None, None));
    }

    #[test]
    fn several_alternatives_non_h3m_skipped() {
        let field = concat!(
            r#"h3=":443"; ma=60, h3m-07="232.0.0.1:2000"; x-list="a,b", "#,
            r#"h2="alt.example:443", , h3m-09-data-offset="[ff3e::1]:3000"; session-id=01; persist=1, "#,
            r#"h3m-foo="232.0.0.2:1", H3M-07="232.0.0.3:1""#
        );
        let ads = parse(field).unwrap();
        assert_eq!(ads.len(), 2);
        assert_eq!(ads[0].group, v4("232.0.0.1:2000"));
        assert_eq!(ads[0].unknown, [("x-list".to_owned(), "a,b".to_owned())]);
        assert_eq!(ads[0].max_age, None, "ma of the h3 alternative does not leak");
        assert_eq!(ads[1].protocol, "h3m-09-data-offset");
        assert_eq!(ads[1].draft, Some(9));
        assert_eq!(ads[1].experiment.as_deref(), Some("data-offset"));
        assert_eq!(ads[1].session_id.as_bytes(), &[1]);
        assert!(ads[1].persist);
        // parse_one skips the others but wants exactly one h3m alternative.
        assert_eq!(parse_one(field), Err(AltSvcError::MultipleH3m(2)));
        let ad = one(r#"h3=":443", h3m-07="232.0.0.1:2000", h2=":443""#);
        assert_eq!(ad.group, v4("232.0.0.1:2000"));
    }

    #[test]
    fn parse_each_keeps_good_alternatives() {
        let each = parse_each(r#"h3m-07="10.0.0.1:1", h3m-07="232.0.0.1:2000""#).unwrap();
        assert_eq!(each.len(), 2);
        assert_eq!(each[0], Err(AltSvcError::NotMulticast(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))));
        assert_eq!(each[1].as_ref().unwrap().group, v4("232.0.0.1:2000"));
        assert!(parse(r#"h3m-07="10.0.0.1:1", h3m-07="232.0.0.1:2000""#).is_err());
    }

    #[test]
    fn first_occurrence_wins() {
        let ad = one(concat!(
            r#"h3m-07="232.0.0.1:2000"; source-address=10.0.0.1; source-address=junk; "#,
            "session-id=01; session-id=02; session-idle-timeout=5000; session-idle-timeout=x; ",
            "max-concurrent-resources=3; max-concurrent-resources=4; peak-flow-rate=10; peak-flow-rate=20; ",
            "cipher-suite=1303; cipher-suite=9999; ",
            "key=0000000000000000000000000000000000000000000000000000000000000000; key=zz; ",
            "iv=000000000000000000000000; iv=00; ma=1; ma=2; ",
            "digest-algorithm=SHA-256; digest-algorithm=sha-256; digest-algorithm=SHA-512; ",
            "signature-algorithm=rsa-sha256; signature-algorithm=hmac-sha256; signature-algorithm=RSA-SHA256; ",
            r#"extensions="0001,0002=ab"; extension=0001; persist=0; persist=1"#
        ));
        assert_eq!(ad.source, Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
        assert_eq!(ad.session_id.as_bytes(), &[1]);
        assert_eq!(ad.idle_timeout_ms, Some(5000));
        assert_eq!(ad.max_concurrent_resources, Some(3));
        assert_eq!(ad.peak_flow_rate, Some(10));
        assert_eq!(ad.cipher_suite, CipherSuite::ChaCha20Poly1305);
        assert_eq!(ad.key, Some(vec![0; 32]));
        assert_eq!(ad.iv, Some(vec![0; 12]));
        assert_eq!(ad.max_age, Some(1));
        assert_eq!(ad.digest_algorithms, ["SHA-256", "SHA-512"]);
        assert_eq!(ad.signature_algorithms, ["rsa-sha256", "hmac-sha256"]);
        assert_eq!(
            ad.extensions,
            [
                Extension { code: 1, value: None },
                Extension { code: 2, value: Some(vec![0xab]) },
                Extension { code: 1, value: None },
            ]
        );
        assert!(ad.persist);
        assert!(ad.unknown.is_empty());
        ad.validate().unwrap();
        assert_eq!(one(&ad.to_string()), ad);
    }

    #[test]
    fn extensions_forms() {
        let ad = one(r#"h3m-07="232.0.0.1:2000"; extensions="0x0020 , ff3e=0x0102, 000a=""#);
        assert_eq!(
            ad.extensions,
            [
                Extension { code: 0x20, value: None },
                Extension { code: 0xff3e, value: Some(vec![1, 2]) },
                Extension { code: 0xa, value: Some(vec![]) },
            ]
        );
        assert!(ad.to_string().ends_with(r#"; extensions="0020,ff3e=0102,000a=""#), "{ad}");
        assert!(one(r#"h3m-07="232.0.0.1:2000"; extensions="""#).extensions.is_empty());
        assert_eq!(one(r#"h3m-07="232.0.0.1:2000"; extensions=00ff=12"#).extensions.len(), 1);
    }

    #[test]
    fn drafts_broken_encrypted_example_is_rejected() {
        // cipher-suite=1301 (AES-128-GCM) with an 8-byte key and a 16-byte IV.
        let text =
            r#"h3m-07="232.0.0.1:2000"; cipher-suite=1301; key=0123456789abcdef; iv=0123456789abcdef0123456789abcdef"#;
        assert_eq!(err(text), AltSvcError::KeyLength { expected: 16, got: 8 });
        let text = r#"h3m-07="232.0.0.1:2000"; cipher-suite=1301; iv=0123456789abcdef0123456789abcdef"#;
        assert_eq!(err(text), AltSvcError::IvLength { expected: 12, got: 16 });
    }

    #[test]
    fn clear() {
        assert_eq!(parse("clear"), Ok(vec![]));
        assert_eq!(parse(" \tclear  "), Ok(vec![]));
        assert_eq!(parse_each("clear"), Ok(vec![]));
        assert_eq!(parse_one("clear"), Err(AltSvcError::NoH3mAlternative));
        assert!(matches!(parse("clear, h3m-07=\"232.0.0.1:1\""), Err(AltSvcError::Syntax { .. })));
        // Only non-h3m alternatives: nothing for parse.
        assert_eq!(parse(r#"h3=":443", h2=":443""#), Ok(vec![]));
    }

    #[test]
    fn field_name_prefix_for_cli() {
        let ad = one(r#"Alt-Svc: h3m-07="232.0.0.1:2000"; session-id=2a"#);
        assert_eq!(ad.session_id.as_bytes(), &[0x2a]);
        let ad = one(r#"  alt-svc :h3m-07="232.0.0.1:2000""#);
        assert_eq!(ad.group, v4("232.0.0.1:2000"));
        // The offset of a syntax error counts from the start of the whole text.
        assert_eq!(
            parse_one(r#"Alt-Svc: h3m-07="232.0.0.1:2000"; =1"#),
            Err(AltSvcError::Syntax { at: 34, reason: "expected a parameter name" })
        );
    }

    #[test]
    fn idle_timeout_compat_rule() {
        let mut ad = one(r#"h3m-07="232.0.0.1:2000"; session-idle-timeout=60"#);
        assert_eq!(ad.idle_timeout_ms, Some(60));
        assert_eq!(ad.idle_timeout(), Some(Duration::from_millis(60)));
        assert_eq!(ad.idle_timeout_compat(), Some(Duration::from_secs(60)));
        assert!(ad.idle_timeout_is_suspicious());
        ad.idle_timeout_ms = Some(999);
        assert_eq!(ad.idle_timeout_compat(), Some(Duration::from_secs(999)));
        ad.idle_timeout_ms = Some(1000);
        assert_eq!(ad.idle_timeout_compat(), Some(Duration::from_secs(1)));
        assert!(!ad.idle_timeout_is_suspicious());
        ad.idle_timeout_ms = Some(0);
        assert_eq!((ad.idle_timeout(), ad.idle_timeout_compat()), (None, None));
        assert!(!ad.idle_timeout_is_suspicious());
        ad.idle_timeout_ms = None;
        assert_eq!((ad.idle_timeout(), ad.idle_timeout_compat()), (None, None));
    }

    #[test]
    fn redaction() {
        let ad = one(SPEC_EXAMPLE);
        let log = ad.redacted();
        assert!(log.contains("; key=<redacted>; iv=<redacted>;"), "{log}");
        assert!(!log.contains("00112233"), "{log}");
        let debug = format!("{ad:?}");
        assert!(debug.contains("<redacted 16 bytes>") && debug.contains("<redacted 12 bytes>"), "{debug}");
        assert!(!debug.contains("17, 34"), "{debug}");
        // Malformed keys are not echoed in errors either.
        let e = err(r#"h3m-07="232.0.0.1:1"; cipher-suite=1301; key=00112233445566778899aabbccddeefg"#);
        assert_eq!(e, AltSvcError::BadHex { param: "key", value: "<redacted: 32 chars>".to_owned() });
    }

    #[test]
    fn new_and_validate() {
        let mut ad = Advertisement::new("h3m-09-data-offset", v4("239.1.2.3:4433"));
        assert_eq!((ad.draft, ad.experiment.as_deref()), (Some(9), Some("data-offset")));
        ad.validate().unwrap();
        assert_eq!(ad.to_string(), r#"h3m-09-data-offset="239.1.2.3:4433""#);

        let bad = |f: &dyn Fn(&mut Advertisement)| {
            let mut ad = Advertisement::new("h3m-07", v4("232.0.0.1:2000"));
            f(&mut ad);
            ad.validate().unwrap_err()
        };
        assert_eq!(bad(&|a| a.protocol = "h3".into()), AltSvcError::NotH3m("h3".into()));
        assert_eq!(bad(&|a| a.draft = Some(8)), AltSvcError::ProtocolFields("h3m-07".into()));
        assert!(matches!(bad(&|a| a.group.set_port(0)), AltSvcError::BadAuthority(_)));
        assert!(matches!(bad(&|a| a.group = v4("10.0.0.1:1")), AltSvcError::NotMulticast(_)));
        assert!(matches!(bad(&|a| a.source = Some("232.0.0.9".parse().unwrap())), AltSvcError::BadSource(_)));
        assert_eq!(bad(&|a| a.source = Some("::1".parse().unwrap())), AltSvcError::FamilyMismatch);
        assert_eq!(bad(&|a| a.key = Some(vec![1])), AltSvcError::KeyWithNullCipher);
        assert!(matches!(
            bad(&|a| a.digest_algorithms = vec!["SHA-256".into(), "sha-256".into()]),
            AltSvcError::BadAlgorithm { .. }
        ));
        for (name, value) in [("Foo", "1"), ("ma", "1"), ("a b", "1"), ("x", "a\nb")] {
            let e = bad(&|a| a.unknown.push((name.into(), value.into())));
            assert!(matches!(e, AltSvcError::BadParameter { .. }), "{name}: {e}");
        }
        ad.cipher_suite = CipherSuite::Aes128Gcm;
        ad.iv = Some(vec![0; 11]);
        assert_eq!(ad.validate(), Err(AltSvcError::IvLength { expected: 12, got: 11 }));
    }

    #[test]
    fn every_error_variant() {
        use AltSvcError as E;
        let g = r#"h3m-07="232.0.0.1:2000""#;
        let with = |params: &str| format!("{g}; {params}");

        assert_eq!(
            parse(&" ".repeat(MAX_FIELD_LEN + 1)),
            Err(E::TooLong { len: MAX_FIELD_LEN + 1, max: MAX_FIELD_LEN })
        );
        assert!(parse(&format!("{g};{}", " ".repeat(MAX_FIELD_LEN - g.len() - 1))).is_ok());

        for (text, at, reason) in [
            ("", 0, "no alternative in the Alt-Svc value"),
            (" , ,", 4, "no alternative in the Alt-Svc value"),
            ("=\"232.0.0.1:1\"", 0, "expected a protocol-id"),
            ("h3m-07", 6, "expected '=' after the protocol-id"),
            ("h3m-07 \"232.0.0.1:1\"", 7, "expected '=' after the protocol-id"),
            ("h3m-07=\"232.0.0.1:1", 7, "unterminated quoted-string"),
            ("h3m-07=\"232.0.0.1:1\\", 7, "unterminated quoted-string"),
            ("h3m-07=\"232.0\u{1}\"", 13, "control character in quoted-string"),
            ("h3m-07=\"232\\\u{7f}\"", 12, "control character in quoted-string"),
            ("h%3m-07=\"232.0.0.1:1\"", 1, "bad percent-encoding in the protocol-id"),
            ("h3m-07=\"232.0.0.1:1\"; ma", 24, "expected '=' after the parameter name"),
            ("h3m-07=\"232.0.0.1:1\"; (x)=1", 22, "expected a parameter name"),
            ("h3m-07=\"232.0.0.1:1\" x", 21, "expected ',' or ';' after an alternative or parameter"),
            ("h3m-07=\"232.0.0.1:1\"; ma=\"1\"2", 28, "expected ',' or ';' after an alternative or parameter"),
            ("h3m-07=\"232.0.0.1:1\"; ma=é", 25, "expected ',' or ';' after an alternative or parameter"),
        ] {
            assert_eq!(parse(text), Err(E::Syntax { at, reason }), "{text:?}");
        }

        assert_eq!(err(r#"h3=":443""#), E::NotH3m("h3".into()));
        assert_eq!(err(r#"h3m-x="232.0.0.1:1""#), E::NotH3m("h3m-x".into()));
        assert_eq!(err(r#"h3m-07-="232.0.0.1:1""#), E::NotH3m("h3m-07-".into()));
        assert_eq!(err(r#"h3m-99999999999="232.0.0.1:1""#), E::NotH3m("h3m-99999999999".into()));
        assert_eq!(err(r#"h3m-07-a%20b="232.0.0.1:1""#), E::NotH3m("h3m-07-a b".into()));
        assert_eq!(err(r#"h3=":443", h2=":443""#), E::NoH3mAlternative);
        assert_eq!(err(&format!("{g}, {g}")), E::MultipleH3m(2));

        for auth in [
            "",
            ":2000",
            "232.0.0.1",
            "232.0.0.1:",
            "232.0.0.1:0",
            "232.0.0.1:+80",
            "232.0.0.1:65536",
            "ff3e::1:2000",
            "[ff3e::1]",
            "[ff3e::1]2000",
            "[232.0.0.1]:2000",
            "[ff02::1%eth0]:2000",
            "mcast.example:2000",
            "232.0.0.1:2000 ",
        ] {
            assert_eq!(err(&format!("h3m-07=\"{auth}\"")), E::BadAuthority(auth.into()), "{auth:?}");
        }
        assert_eq!(err(r#"h3m-07="10.0.0.1:2000""#), E::NotMulticast("10.0.0.1".parse().unwrap()));
        assert_eq!(err(r#"h3m-07="[2001:db8::1]:2000""#), E::NotMulticast("2001:db8::1".parse().unwrap()));

        for src in ["example.com", "232.0.0.9", "0.0.0.0", "255.255.255.255", "::", "ff3e::1", "[10.0.0.1]", ""] {
            assert_eq!(err(&with(&format!("source-address=\"{src}\""))), E::BadSource(src.into()), "{src:?}");
        }
        assert_eq!(err(&with("source-address=2001:db8::1")), E::FamilyMismatch);
        assert_eq!(err(r#"h3m-07="[ff3e::1]:1"; source-address=10.0.0.1"#), E::FamilyMismatch);

        for (param, value) in [
            ("session-idle-timeout", "-1"),
            ("session-idle-timeout", ""),
            ("session-idle-timeout", "+5"),
            ("session-idle-timeout", "18446744073709551616"),
            ("max-concurrent-resources", "4294967296"),
            ("max-concurrent-resources", "1.5"),
            ("peak-flow-rate", "1e6"),
            ("ma", "x"),
            ("ma", ""),
        ] {
            assert_eq!(err(&with(&format!("{param}={value}"))), E::BadNumber { param, value: value.into() });
        }
        assert_eq!(one(&with("ma=99999999999999999999999")).max_age, Some(u64::MAX));
        assert_eq!(one(&with("max-concurrent-resources=4294967295")).max_concurrent_resources, Some(u32::MAX));

        assert_eq!(err(&with("session-id=12g4")), E::BadSessionId(SessionIdError::NotHex('g', 2)));
        assert_eq!(err(&with(&format!("session-id={}", "a".repeat(41)))), E::BadSessionId(SessionIdError::TooLong(21)));
        assert_eq!(one(&with(&format!("session-id={}", "A".repeat(40)))).session_id.len(), 20);

        assert_eq!(err(&with("cipher-suite=1304")), E::UnsupportedCipherSuite("1304".into()));
        assert_eq!(err(&with("cipher-suite=c02f")), E::UnsupportedCipherSuite("c02f".into()));
        for value in ["13010", "130", "0x1301", "13g1", ""] {
            assert_eq!(
                err(&with(&format!("cipher-suite={value}"))),
                E::BadHex { param: "cipher-suite", value: value.into() }
            );
        }
        assert_eq!(
            err(&with("cipher-suite=1301; iv=abc")),
            E::BadHex { param: "iv", value: "<redacted: 3 chars>".into() }
        );

        assert_eq!(err(&with("cipher-suite=1302; key=00")), E::KeyLength { expected: 32, got: 1 });
        assert_eq!(err(&with("cipher-suite=1303; iv=")), E::IvLength { expected: 12, got: 0 });
        assert_eq!(err(&with("key=00112233445566778899aabbccddeeff")), E::KeyWithNullCipher);
        assert_eq!(err(&with("cipher-suite=0000; iv=000000000000000000000000")), E::IvWithNullCipher);

        for ext in ["001", "00001", "xyzw", "0001=abc", "0001=zz", ""] {
            assert_eq!(err(&with(&format!("extensions=\"0002,{ext}\""))), E::BadExtension(ext.into()), "{ext:?}");
        }
        assert_eq!(
            err(&with(r#"digest-algorithm="SHA-256,SHA-512""#)),
            E::BadAlgorithm { param: "digest-algorithm", value: "SHA-256,SHA-512".into() }
        );
        assert_eq!(
            err(&with(r#"signature-algorithm="""#)),
            E::BadAlgorithm { param: "signature-algorithm", value: String::new() }
        );
        // ProtocolFields and BadParameter come from validate(): see new_and_validate.
    }

    #[test]
    fn errors_display_clearly() {
        let e = err(r#"h3m-07="232.0.0.1:2000"; cipher-suite=1301; key=0123456789abcdef"#);
        assert_eq!(e.to_string(), "key is 8 bytes long; the cipher suite needs 16");
        assert_eq!(err(r#"h3m-07="10.1.2.3:80""#).to_string(), "group 10.1.2.3 is not a multicast address");
    }

    // ---- property tests ----

    fn token_strategy() -> impl Strategy<Value = String> {
        "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
    }

    fn algorithms() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec(token_strategy(), 0..4).prop_map(|algs| {
            let mut set: Vec<String> = Vec::new();
            for a in algs {
                if !set.iter().any(|s| s.eq_ignore_ascii_case(&a)) {
                    set.push(a);
                }
            }
            set
        })
    }

    fn protocol() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("h3m".to_owned()),
            ("[0-9]{1,9}", proptest::option::of(token_strategy())).prop_map(|(d, exp)| match exp {
                Some(exp) => format!("h3m-{d}-{exp}"),
                None => format!("h3m-{d}"),
            }),
        ]
    }

    fn addresses() -> impl Strategy<Value = (SocketAddr, Option<IpAddr>)> {
        let v4 = (224u8..=239, any::<[u8; 3]>(), 1u16.., proptest::option::of((1u8..=223, any::<[u8; 3]>()))).prop_map(
            |(a, rest, port, src)| {
                let group = SocketAddr::new(Ipv4Addr::new(a, rest[0], rest[1], rest[2]).into(), port);
                (group, src.map(|(s, r)| IpAddr::V4(Ipv4Addr::new(s, r[0], r[1], r[2]))))
            },
        );
        let v6 = (any::<[u8; 15]>(), 1u16.., proptest::option::of((0x20u8..=0xfe, any::<[u8; 15]>()))).prop_map(
            |(rest, port, src)| {
                let mut g = [0xff; 16];
                g[1..].copy_from_slice(&rest);
                let group = SocketAddr::new(Ipv6Addr::from(g).into(), port);
                let source = src.map(|(first, r)| {
                    let mut s = [first; 16];
                    s[1..].copy_from_slice(&r);
                    IpAddr::V6(Ipv6Addr::from(s))
                });
                (group, source)
            },
        );
        prop_oneof![v4, v6]
    }

    fn crypto() -> impl Strategy<Value = (CipherSuite, Option<Vec<u8>>, Option<Vec<u8>>)> {
        prop_oneof![
            Just(CipherSuite::Null),
            Just(CipherSuite::Aes128Gcm),
            Just(CipherSuite::Aes256Gcm),
            Just(CipherSuite::ChaCha20Poly1305),
        ]
        .prop_flat_map(|suite| {
            if suite == CipherSuite::Null {
                Just((suite, None, None)).boxed()
            } else {
                (
                    proptest::option::of(proptest::collection::vec(any::<u8>(), suite.key_len())),
                    proptest::option::of(proptest::collection::vec(any::<u8>(), suite.iv_len())),
                )
                    .prop_map(move |(k, i)| (suite, k, i))
                    .boxed()
            }
        })
    }

    prop_compose! {
        fn advertisement()(
            protocol in protocol(),
            (group, source) in addresses(),
            sid in proptest::collection::vec(any::<u8>(), 0..=20),
            idle in proptest::option::of(any::<u64>()),
            mcr in proptest::option::of(any::<u32>()),
            pfr in proptest::option::of(any::<u64>()),
            (cipher_suite, key, iv) in crypto(),
            digest_algorithms in algorithms(),
            signature_algorithms in algorithms(),
            extensions in proptest::collection::vec(
                (any::<u16>(), proptest::option::of(proptest::collection::vec(any::<u8>(), 0..6)))
                    .prop_map(|(code, value)| Extension { code, value }),
                0..4,
            ),
            max_age in proptest::option::of(any::<u64>()),
            persist in any::<bool>(),
            unknown in proptest::collection::vec(("x-[a-z0-9.-]{0,8}", "[ -~\t]{0,12}|é[a\"\\\\ ]*"), 0..3),
        ) -> Advertisement {
            let mut ad = Advertisement::new(&protocol, group);
            ad.source = source;
            ad.session_id = SessionId::new(&sid).unwrap();
            ad.idle_timeout_ms = idle;
            ad.max_concurrent_resources = mcr;
            ad.peak_flow_rate = pfr;
            ad.cipher_suite = cipher_suite;
            ad.key = key;
            ad.iv = iv;
            ad.digest_algorithms = digest_algorithms;
            ad.signature_algorithms = signature_algorithms;
            ad.extensions = extensions;
            ad.max_age = max_age;
            ad.persist = persist;
            ad.unknown = unknown;
            ad
        }
    }

    proptest! {
        #[test]
        fn display_round_trips(ad in advertisement()) {
            prop_assert_eq!(ad.validate(), Ok(()));
            let text = ad.to_string();
            prop_assert_eq!(parse_one(&text), Ok(ad.clone()), "{}", text);
            // Also inside a list with other alternatives.
            let list = format!("h3=\":443\"; ma=1, {text}, h2=\"x:1\"");
            prop_assert_eq!(parse(&list), Ok(vec![ad]));
        }

        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = parse(&s);
            let _ = parse_one(&s);
        }

        #[test]
        fn parse_never_panics_on_near_misses(s in "[h3m0-9a-f\\-=\";,: \t\\[\\]\\\\%.xé\u{1}]{0,60}") {
            let _ = parse(&s);
            let _ = parse_one(&s);
            let _ = parse_one(&format!("h3m-07=\"232.0.0.1:1\"; {s}"));
        }

        #[test]
        fn parse_never_panics_on_mangled_output(ad in advertisement(), cut in any::<usize>(), junk in "[;,=\" \\\\%x]") {
            let text = ad.to_string();
            let mut at = cut % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let truncated = &text[..at];
            let _ = parse(truncated);
            let spliced = format!("{}{}{}", &text[..at], junk, &text[at..]);
            let _ = parse(&spliced);
            let _ = parse_one(&spliced);
        }
    }
}
