//! Reading the body digest a response announces: `digest: sha-256=<base64>`
//! (RFC 3230; nghq writes the algorithm as `sha256`),
//! `repr-digest: sha-256=:<base64>:` or `content-digest: sha-256=:<base64>:`
//! (RFC 9530 structured dictionaries). The parsing is
//! [`h3m_proto::auth::digest`]'s, shared with the signature check.

use h3m_proto::qpack::HeaderField;

/// Decodes standard base64 (padding optional); `None` on any other character.
pub fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    let text = text.strip_suffix(b"==").or_else(|| text.strip_suffix(b"=")).unwrap_or(text);
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for &c in text {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// The SHA-256 a response announces for its body, if any (the first one;
/// see [`h3m_proto::auth::digest::announced_consistent`] for whether they agree).
pub fn announced_sha256(headers: &[HeaderField]) -> Option<[u8; 32]> {
    h3m_proto::auth::digest::announced_sha256(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nghq_and_rfc_forms() {
        let hello = "7PcB9yfZ4td8SqSaxvu8yZcnisoBC93uuWHBDPVNQ1o=";
        let want = base64_decode(hello.as_bytes()).unwrap();
        for (name, value) in [
            ("digest", format!("sha256={hello}")),
            ("digest", format!("SHA-256={hello}")),
            ("digest", format!("md5=xxx, sha-256={hello}")),
            ("repr-digest", format!("sha-256=:{hello}:")),
            ("repr-digest", format!("sha-256={hello}")),
            ("content-digest", format!("sha-512=:AAAA:, sha-256=:{hello}:")),
        ] {
            let got = announced_sha256(&[HeaderField::new(name, value.clone())]);
            assert_eq!(got.map(|d| d.to_vec()), Some(want.clone()), "{name}: {value}");
        }
        assert_eq!(announced_sha256(&[HeaderField::new("digest", "sha-256=short")]), None);
        assert_eq!(announced_sha256(&[HeaderField::new("digest", "md5=abc")]), None);
        assert_eq!(base64_decode(b"Zm9vYmFy"), Some(b"foobar".to_vec()));
        assert_eq!(base64_decode(b"Zg=="), Some(b"f".to_vec()));
        assert_eq!(base64_decode(b"Z!"), None);
    }
}
