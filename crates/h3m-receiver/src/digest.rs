//! Reading the body digest a response announces: `digest: sha-256=<base64>`
//! (RFC 3230; nghq writes the algorithm as `sha256`),
//! `repr-digest: sha-256=:<base64>:` or `content-digest: sha-256=:<base64>:`
//! (RFC 9530 structured dictionaries). The parsing is
//! [`h3m_proto::http::digest`]'s, shared with the signature check.

use h3m_proto::qpack::HeaderField;

/// The SHA-256 a response announces for its body, if any (the first one;
/// see [`h3m_proto::http::digest::announced_consistent`] for whether they agree).
pub fn announced_sha256(headers: &[HeaderField]) -> Option<[u8; 32]> {
    h3m_proto::http::digest::announced_sha256(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nghq_and_rfc_forms() {
        let hello = "7PcB9yfZ4td8SqSaxvu8yZcnisoBC93uuWHBDPVNQ1o=";
        let want = h3m_proto::encoding::base64::decode(hello.as_bytes()).unwrap();
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
    }
}
