//! The h3m session ID: the bytes a sender puts in the destination connection ID
//! field of every short-header packet.
//!
//! Its length is not on the wire; both ends are configured with it (0 to 20 bytes).
//! [`SessionId::from_hex`] follows nghq's conversion, which is also what an
//! advertisement's `session-id` parameter is taken to mean here: every hex digit
//! counts, leading zeros included, and an odd count puts the first digit in the low
//! nibble of the first byte (`"abc"` is `0a bc`).

use std::fmt;

/// The longest session ID QUIC v1 allows (a connection ID of 160 bits).
pub const MAX_SESSION_ID_LEN: usize = 20;

/// A session ID of 0 to [`MAX_SESSION_ID_LEN`] bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SessionId {
    len: u8,
    bytes: [u8; MAX_SESSION_ID_LEN],
}

/// Why a session ID could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionIdError {
    /// More than 20 bytes (40 hex digits).
    #[error("session ID is {0} bytes long; at most 20 are allowed")]
    TooLong(usize),
    /// A character that is not a hex digit.
    #[error("session ID has a non-hex character {0:?} at position {1}")]
    NotHex(char, usize),
    /// An odd number of hex digits where whole bytes are required.
    #[error("session ID `{0}` has an odd number of hex digits; nghq reads it as `0{0}`: give that")]
    OddDigits(String),
    /// No digits where an explicit value is required.
    #[error("session ID is empty; give `none` for the zero-length session ID")]
    Empty,
}

impl SessionId {
    /// The zero-length session ID (the 5-tuple alone identifies the session).
    pub const EMPTY: SessionId = SessionId { len: 0, bytes: [0; MAX_SESSION_ID_LEN] };

    /// nghq's default session ID, the 10 ASCII bytes `"Session ID"`.
    pub const NGHQ_DEFAULT: SessionId = SessionId { len: 10, bytes: *b"Session ID\0\0\0\0\0\0\0\0\0\0" };

    /// A session ID holding exactly `bytes`.
    pub fn new(bytes: &[u8]) -> Result<Self, SessionIdError> {
        if bytes.len() > MAX_SESSION_ID_LEN {
            return Err(SessionIdError::TooLong(bytes.len()));
        }
        let mut id = SessionId::EMPTY;
        id.bytes[..bytes.len()].copy_from_slice(bytes);
        id.len = bytes.len() as u8;
        Ok(id)
    }

    /// Parses hex digits (an optional `0x` prefix is allowed) as nghq does:
    /// `ceil(digits / 2)` bytes, leading zeros kept.
    pub fn from_hex(text: &str) -> Result<Self, SessionIdError> {
        let digits = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")).unwrap_or(text);
        let offset = text.len() - digits.len();
        if let Some((i, c)) = digits.chars().enumerate().find(|(_, c)| !c.is_ascii_hexdigit()) {
            return Err(SessionIdError::NotHex(c, i + offset));
        }
        // nghq's rule: an odd count has an implied leading zero.
        let padded = if digits.len() % 2 == 1 { format!("0{digits}") } else { digits.to_owned() };
        let bytes = hex::decode(&padded).map_err(|_| SessionIdError::NotHex('?', offset))?;
        Self::new(&bytes)
    }

    /// Parses a session ID given by a user (command line): whole bytes of hex
    /// digits (optional `0x`), or `none` for the zero-length ID. Unlike
    /// [`from_hex`](Self::from_hex) nothing is guessed: an odd digit count
    /// ([`SessionIdError::OddDigits`]) and an empty string
    /// ([`SessionIdError::Empty`]) are errors.
    pub fn parse_strict(text: &str) -> Result<Self, SessionIdError> {
        if text == "none" {
            return Ok(SessionId::EMPTY);
        }
        let digits = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")).unwrap_or(text);
        if digits.is_empty() {
            return Err(SessionIdError::Empty);
        }
        if digits.len() % 2 == 1 {
            return Err(SessionIdError::OddDigits(digits.to_owned()));
        }
        Self::from_hex(text)
    }

    /// The bytes of the ID.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether this is the zero-length ID.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The ID as lowercase hex digits, two per byte.
    pub fn to_hex(&self) -> String {
        hex::encode(self.as_bytes())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.to_hex())
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_parsing_guesses_nothing() {
        // Regression (hardening item 12): `abc` silently became `0abc`, and
        // an empty string was taken as the zero-length ID.
        assert_eq!(SessionId::parse_strict("abc"), Err(SessionIdError::OddDigits("abc".into())));
        assert_eq!(SessionId::parse_strict("0xabc"), Err(SessionIdError::OddDigits("abc".into())));
        assert_eq!(SessionId::parse_strict(""), Err(SessionIdError::Empty));
        assert_eq!(SessionId::parse_strict("0x"), Err(SessionIdError::Empty));
        assert_eq!(SessionId::parse_strict("none"), Ok(SessionId::EMPTY));
        assert_eq!(SessionId::parse_strict("0abc").unwrap().as_bytes(), &[0x0a, 0xbc]);
        assert_eq!(SessionId::parse_strict("zz"), Err(SessionIdError::NotHex('z', 0)));
    }

    #[test]
    fn nghq_default_is_session_id_ascii() {
        assert_eq!(SessionId::from_hex("53657373696f6e204944").unwrap(), SessionId::NGHQ_DEFAULT);
        assert_eq!(SessionId::NGHQ_DEFAULT.as_bytes(), b"Session ID");
    }

    #[test]
    fn odd_digit_count_pads_the_first_byte() {
        assert_eq!(SessionId::from_hex("abc").unwrap().as_bytes(), &[0x0a, 0xbc]);
        assert_eq!(SessionId::from_hex("0010").unwrap().as_bytes(), &[0x00, 0x10]);
        assert_eq!(SessionId::from_hex("").unwrap(), SessionId::EMPTY);
        assert_eq!(SessionId::from_hex("0xCAFE0001").unwrap().as_bytes(), &[0xca, 0xfe, 0, 1]);
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(SessionId::from_hex("12g4"), Err(SessionIdError::NotHex('g', 2)));
        assert_eq!(SessionId::from_hex(&"ab".repeat(21)), Err(SessionIdError::TooLong(21)));
        assert_eq!(SessionId::new(&[0; 21]), Err(SessionIdError::TooLong(21)));
    }

    proptest::proptest! {
        #[test]
        fn hex_round_trip(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..=20)) {
            let id = SessionId::new(&bytes).unwrap();
            proptest::prop_assert_eq!(SessionId::from_hex(&id.to_hex()).unwrap(), id);
        }
    }
}
