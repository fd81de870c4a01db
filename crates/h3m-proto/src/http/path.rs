//! Percent-encoding (RFC 3986 §2.1): the `:path` a sender writes, the strict
//! decoder receivers read paths and Alt-Svc protocol ids with, and the
//! `application/x-www-form-urlencoded` value encoding RFC 9421's
//! `@query-param` needs.
//!
//! Encoding is the `percent-encoding` crate's with the sets below; decoding
//! is strict (every `%` must start an escape of two hex digits), unlike that
//! crate's, which passes malformed escapes through.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What [`percent_encode_path`] escapes: everything but ASCII letters and
/// digits, the other unreserved characters `- . _ ~`, and `/`.
const PATH: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

/// The URL Standard's application/x-www-form-urlencoded percent-encode set:
/// everything but ASCII letters and digits and `* - . _`.
const FORM: &AsciiSet = &NON_ALPHANUMERIC.remove(b'*').remove(b'-').remove(b'.').remove(b'_');

/// Percent-encodes a path for `:path`: unreserved characters and `/` stay,
/// every other byte of its UTF-8 becomes `%XX` (upper-case hex).
pub fn percent_encode_path(path: &str) -> String {
    utf8_percent_encode(path, PATH).to_string()
}

/// The URL Standard's "percent-encode after encoding" of `text` (UTF-8) with
/// the application/x-www-form-urlencoded percent-encode set, a space as
/// `%20` (not `+`): how RFC 9421 §2.2.8 writes `@query-param` names and values.
pub fn form_encode(text: &str) -> String {
    utf8_percent_encode(text, FORM).to_string()
}

/// A `%` not followed by two hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid percent escape at byte {at}")]
pub struct PercentError {
    /// Byte offset of the `%` in the decoded text.
    pub at: usize,
}

/// Decodes `%XX` escapes (either case); every `%` must start one. The other
/// bytes are copied as they are (`+` stays `+`).
pub fn percent_decode(bytes: &[u8]) -> Result<Vec<u8>, PercentError> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let mut byte = [0u8; 1];
            let digits = bytes.get(i + 1..i + 3).ok_or(PercentError { at: i })?;
            hex::decode_to_slice(digits, &mut byte).map_err(|_| PercentError { at: i })?;
            out.push(byte[0]);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes() {
        assert_eq!(percent_encode_path("a b/é?.txt"), "a%20b/%C3%A9%3F.txt");
        assert_eq!(percent_encode_path("~x_y-z.1/2"), "~x_y-z.1/2");
        assert_eq!(percent_encode_path("100%"), "100%25");
        assert_eq!(form_encode("with plus whitespace"), "with%20plus%20whitespace");
        assert_eq!(form_encode("façade\": "), "fa%C3%A7ade%22%3A%20");
        assert_eq!(form_encode("a*b-c.d_e~f!"), "a*b-c.d_e%7Ef%21");
    }

    #[test]
    fn decodes_strictly() {
        assert_eq!(percent_decode(b"a%20b%2fc%2F+"), Ok(b"a b/c/+".to_vec()));
        assert_eq!(percent_decode(b""), Ok(Vec::new()));
        assert_eq!(percent_decode(b"%zz"), Err(PercentError { at: 0 }));
        assert_eq!(percent_decode(b"ab%4"), Err(PercentError { at: 2 }));
        assert_eq!(percent_decode(b"ab%"), Err(PercentError { at: 2 }));
        assert_eq!(percent_decode(b"%+1"), Err(PercentError { at: 0 }));
        assert_eq!(percent_decode(b"%1\xff"), Err(PercentError { at: 0 }));
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(text in "\\PC{0,40}") {
            prop_assert_eq!(percent_decode(percent_encode_path(&text).as_bytes()), Ok(text.clone().into_bytes()));
            prop_assert_eq!(percent_decode(form_encode(&text).as_bytes()), Ok(text.into_bytes()));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Err(e) = percent_decode(&bytes) {
                prop_assert_eq!(bytes[e.at], b'%');
            }
        }
    }
}
