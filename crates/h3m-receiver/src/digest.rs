//! Reading the body digest a response announces: `digest: sha-256=<base64>`
//! (RFC 3230; nghq writes the algorithm as `sha256`) or
//! `repr-digest: sha-256=:<base64>:` (RFC 9530).

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

/// The SHA-256 a response announces for its body, if any.
pub fn announced_sha256(headers: &[HeaderField]) -> Option<[u8; 32]> {
    for f in headers {
        let structured = match f.name.as_slice() {
            b"digest" => false,
            b"repr-digest" => true,
            _ => continue,
        };
        for item in f.value.split(|&b| b == b',') {
            let item = item.trim_ascii();
            let Some(eq) = item.iter().position(|&b| b == b'=') else { continue };
            let (alg, value) = (&item[..eq], &item[eq + 1..]);
            if !(alg.eq_ignore_ascii_case(b"sha-256") || alg.eq_ignore_ascii_case(b"sha256")) {
                continue;
            }
            let value = if structured {
                value.strip_prefix(b":").and_then(|v| v.strip_suffix(b":")).unwrap_or(value)
            } else {
                value
            };
            if let Some(bytes) = base64_decode(value)
                && let Ok(d) = <[u8; 32]>::try_from(bytes.as_slice())
            {
                return Some(d);
            }
        }
    }
    None
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
