//! Standard base64 (RFC 4648 §4), through the `base64` crate.
//!
//! [`encode`] writes padded base64. [`decode`] is exactly as strict as h3m's
//! decoder has always been (a differential test over every string of up to
//! nine characters from `AZg9+/=!` found no difference in result or error):
//!
//! * padding is optional, but when present it is one or two `=` that bring
//!   the length to a multiple of four (`Zg==` and `Zg` decode, `Zg=` does not);
//! * the unused low bits of the last character are ignored (`Zh==` is `f`,
//!   as with OpenSSL): signatures and digests are compared as bytes, so this
//!   only widens what text spells the same bytes;
//! * no whitespace ([`decode_lines`] skips it for wrapped PEM text).
//!
//! Errors carry the offset of the offending character.

use ::base64::Engine as _;
use ::base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// The engine: standard alphabet, padding written, padding optional when
/// read, trailing bits allowed.
const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &::base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Why base64 text did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Base64Error {
    /// A character outside the standard alphabet (`A-Z a-z 0-9 + /`).
    #[error("invalid base64 character at offset {0}")]
    InvalidCharacter(usize),
    /// `=` padding somewhere other than at the end, or too much of it.
    #[error("misplaced base64 padding at offset {0}")]
    BadPadding(usize),
    /// A length no base64 encoding has (one character left over).
    #[error("truncated base64")]
    Truncated,
}

/// Standard base64 with padding.
pub fn encode(data: &[u8]) -> String {
    ENGINE.encode(data)
}

/// Decodes standard base64 (see the module documentation for what is accepted).
pub fn decode(text: &[u8]) -> Result<Vec<u8>, Base64Error> {
    // The crate accepts padding that does not complete a quad (`Zg=`) when
    // padding is optional; h3m never has.
    let body_len = text.iter().rposition(|&c| c != b'=').map_or(0, |p| p + 1);
    let padding = text.len() - body_len;
    if padding > 2 || (padding > 0 && !text.len().is_multiple_of(4)) {
        return Err(Base64Error::BadPadding(body_len));
    }
    if body_len % 4 == 1 {
        return Err(Base64Error::Truncated);
    }
    ENGINE.decode(text).map_err(|e| match e {
        ::base64::DecodeError::InvalidByte(at, b'=') => Base64Error::BadPadding(at),
        ::base64::DecodeError::InvalidByte(at, _) => Base64Error::InvalidCharacter(at),
        ::base64::DecodeError::InvalidLength(_) => Base64Error::Truncated,
        ::base64::DecodeError::InvalidLastSymbol { offset, .. } => Base64Error::InvalidCharacter(offset),
        ::base64::DecodeError::InvalidPadding => Base64Error::BadPadding(body_len),
    })
}

/// Decodes base64 that may be wrapped over lines (ASCII whitespace is skipped;
/// offsets in errors count the text without it).
pub fn decode_lines(text: &[u8]) -> Result<Vec<u8>, Base64Error> {
    let compact: Vec<u8> = text.iter().copied().filter(|c| !c.is_ascii_whitespace()).collect();
    decode(&compact)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_and_rejects() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "Zg==");
        assert_eq!(encode(b"fo"), "Zm8=");
        assert_eq!(encode(b"foobar"), "Zm9vYmFy");
        for n in 0..40usize {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            let text = encode(&data);
            assert_eq!(decode(text.as_bytes()), Ok(data.clone()), "{text}");
            let unpadded = text.trim_end_matches('=');
            assert_eq!(decode(unpadded.as_bytes()), Ok(data), "{unpadded}");
        }
        assert_eq!(decode(b"Zm9v!mFy"), Err(Base64Error::InvalidCharacter(4)));
        assert_eq!(decode(b"Zm=9"), Err(Base64Error::BadPadding(2)));
        assert_eq!(decode(b"Zg==="), Err(Base64Error::BadPadding(2)));
        assert_eq!(decode(b"Zg="), Err(Base64Error::BadPadding(2)));
        assert_eq!(decode(b"Zm9vZg="), Err(Base64Error::BadPadding(6)));
        assert_eq!(decode(b"Zg==Zg=="), Err(Base64Error::BadPadding(2)));
        assert_eq!(decode(b"=="), Err(Base64Error::BadPadding(0)));
        assert_eq!(decode(b"Z"), Err(Base64Error::Truncated));
        assert_eq!(decode(b"Zm9v YmF"), Err(Base64Error::InvalidCharacter(4)));
        // Unused trailing bits are ignored, as they always were.
        assert_eq!(decode(b"Zh=="), Ok(b"f".to_vec()));
        assert_eq!(decode(b"Zm9="), Ok(b"fo".to_vec()));
        assert_eq!(decode_lines(b"Zm9v\r\nYmFy\n"), Ok(b"foobar".to_vec()));
        // Padding at a length that needs none, and a pad inside the last group.
        assert_eq!(decode(b"Zm9v===="), Err(Base64Error::BadPadding(4)));
        assert_eq!(decode(b"Zm9vY=Fy"), Err(Base64Error::BadPadding(5)));
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(decode(encode(&data).as_bytes()), Ok(data));
        }

        /// Never panics; what decodes re-encodes to the same bytes.
        #[test]
        fn decode_never_panics(text in "[A-Za-z0-9+/=! ]{0,40}") {
            if let Ok(bytes) = decode(text.as_bytes()) {
                prop_assert_eq!(decode(encode(&bytes).as_bytes()), Ok(bytes));
            }
        }
    }
}
