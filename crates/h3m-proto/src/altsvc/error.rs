//! [`AltSvcError`]: why an `Alt-Svc` value could not be read, or an
//! [`Advertisement`](super::Advertisement) could not be written.

use std::net::IpAddr;

use crate::session_id::SessionIdError;

/// Why an `Alt-Svc` value could not be read as h3m advertisements.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AltSvcError {
    /// The field value is longer than [`MAX_FIELD_LEN`](super::MAX_FIELD_LEN).
    #[error("Alt-Svc value is {len} bytes long; at most {max} are accepted")]
    TooLong {
        /// The length of the input.
        len: usize,
        /// The limit, [`MAX_FIELD_LEN`](super::MAX_FIELD_LEN).
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
    /// [`parse_one`](super::parse_one) found only a non-h3m alternative (the percent-decoded protocol id).
    #[error("alternative {0:?} is not h3m (expected \"h3m\", \"h3m-<draft>\" or \"h3m-<draft>-<experiment>\")")]
    NotH3m(String),
    /// [`parse_one`](super::parse_one) found no h3m alternative (`clear`, or only other protocols).
    #[error("no h3m alternative in the Alt-Svc value")]
    NoH3mAlternative,
    /// [`parse_one`](super::parse_one) found several h3m alternatives (how many).
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
        /// [`CipherSuite::key_len`](crate::protection::CipherSuite::key_len) of the advertised suite.
        expected: usize,
        /// The length of the advertised key.
        got: usize,
    },
    /// `iv` has the wrong length for the cipher suite.
    #[error("iv is {got} bytes long; the cipher suite needs {expected}")]
    IvLength {
        /// [`CipherSuite::iv_len`](crate::protection::CipherSuite::iv_len) of the advertised suite.
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
    /// [`Advertisement::validate`](super::Advertisement::validate): the protocol id does not agree with
    /// [`Advertisement::draft`](super::Advertisement::draft) / [`Advertisement::experiment`](super::Advertisement::experiment).
    #[error("protocol {0:?} does not match the draft/experiment fields")]
    ProtocolFields(String),
    /// [`Advertisement::validate`](super::Advertisement::validate): an entry of [`Advertisement::unknown`](super::Advertisement::unknown) cannot be
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
