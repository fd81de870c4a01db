//! The `repr-digest` field (RFC 9530) as the origin writes it and the client
//! reads it: a structured dictionary whose `sha-256` member is the SHA-256
//! of the whole resource, `sha-256=:BASE64:`. Other members are skipped.

use base64::Engine;

/// `sha-256=:BASE64:` for `sha256`.
pub fn format(sha256: &[u8; 32]) -> String {
    format!("sha-256=:{}:", base64::engine::general_purpose::STANDARD.encode(sha256))
}

/// The `sha-256` member of a `repr-digest` value, if there is one of 32
/// bytes (members are separated by commas; anything else is skipped).
pub fn parse(value: &[u8]) -> Option<[u8; 32]> {
    value.split(|&b| b == b',').find_map(|member| {
        let b64 = member.trim_ascii().strip_prefix(b"sha-256=:")?.strip_suffix(b":")?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        <[u8; 32]>::try_from(bytes.as_slice()).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_sha256_member_is_found_among_others() {
        let d = [7u8; 32];
        assert_eq!(parse(format(&d).as_bytes()), Some(d));
        assert_eq!(parse(format!("sha-512=:AAAA:, {}", format(&d)).as_bytes()), Some(d));
        assert_eq!(parse(b"sha-256=:AAAA:"), None, "not 32 bytes");
        assert_eq!(parse(b"sha-256=AAAA"), None, "not a byte sequence");
        assert_eq!(parse(b""), None);
    }

    proptest! {
        #[test]
        fn digests_round_trip(d in any::<[u8; 32]>()) {
            prop_assert_eq!(parse(format(&d).as_bytes()), Some(d));
        }

        #[test]
        fn junk_never_panics(value in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&value);
        }
    }
}
