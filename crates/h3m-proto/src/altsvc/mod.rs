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

mod display;
mod error;
mod semantics;
mod syntax;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

pub use self::error::AltSvcError;

use self::display::Shown;
use self::semantics::{build, classify};
use self::syntax::{RawAlt, field_value_start, parse_field};
use crate::protection::CipherSuite;
use crate::session_id::SessionId;

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
    "fec",
    "fec-port",
    "repair",
    "repair-pin",
    "ambi",
    "ambi-digest",
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
    /// h3m's `fec`: the session carries FEC repair datagrams with these
    /// parameters (`PERCENT[,block=N][,depth=D][,deadline=MS]`, see
    /// [`crate::fec`]) on the repair port.
    pub fec: Option<crate::fec::FecConfig>,
    /// h3m's `fec-port`: the repair port, when not the session's port + 1.
    pub fec_port: Option<u16>,
    /// h3m's `repair`: the unicast repair origin, `https://HOST:PORT`, which
    /// serves every resource of the session with byte ranges over HTTP/3
    /// (and HTTP/1.1).
    pub repair_origin: Option<String>,
    /// h3m's `repair-pin`: the SHA-256 of the repair origin's certificate
    /// (a self-signed one), in hex.
    pub repair_pin: Option<[u8; 32]>,
    /// h3m's `ambi`: how AMBI manifests travel (`inband`: signed, on the
    /// side port; `https`: streamed by the repair origin at
    /// [`crate::ambi::MANIFEST_PATH`]; `both`); `None`: the session has no AMBI.
    pub ambi: Option<String>,
    /// h3m's `ambi-digest`: the AMBI digest profile (`sha-256/128`, ...).
    pub ambi_digest: Option<String>,
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
            fec: None,
            fec_port: None,
            repair_origin: None,
            repair_pin: None,
            ambi: None,
            ambi_digest: None,
            unknown: Vec::new(),
        }
    }

    /// The port of the session's FEC repair datagrams: `fec-port`, else the
    /// session's port + 1 (`None` when that overflows).
    pub fn repair_port(&self) -> Option<u16> {
        self.fec_port.or_else(|| self.group.port().checked_add(1))
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
}
