//! The body digests a message announces.
//!
//! * `digest` (RFC 3230): `alg=<base64>` members separated by commas; the
//!   algorithm token is case-insensitive, and nghq writes SHA-256 as `sha256`
//!   rather than the registered `SHA-256`, so both are read.
//! * `repr-digest` and `content-digest` (RFC 9530): structured-field
//!   dictionaries, `sha-256=:<base64>:`. Without content codings (h3m has
//!   none) both are over the body as received.
//!
//! Only SHA-256 is checked; other algorithms are skipped, and a SHA-256
//! member that is not 32 bytes of base64 counts as absent.

use crate::qpack::HeaderField;

use super::sf::{self, BareItem, Member};
use crate::encoding::base64;

/// A header field that carries a body digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestField {
    /// `digest` (RFC 3230).
    Digest,
    /// `repr-digest` (RFC 9530).
    ReprDigest,
    /// `content-digest` (RFC 9530).
    ContentDigest,
}

impl DigestField {
    /// The field's name for a header name, if it is one.
    pub fn from_name(name: &[u8]) -> Option<Self> {
        match name {
            b"digest" => Some(DigestField::Digest),
            b"repr-digest" => Some(DigestField::ReprDigest),
            b"content-digest" => Some(DigestField::ContentDigest),
            _ => None,
        }
    }

    /// The header name.
    pub fn name(self) -> &'static str {
        match self {
            DigestField::Digest => "digest",
            DigestField::ReprDigest => "repr-digest",
            DigestField::ContentDigest => "content-digest",
        }
    }
}

/// The `alg=value` members of a comma-separated field value, trimmed;
/// members without `=` are skipped.
fn members(value: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    value.split(|&b| b == b',').filter_map(|member| {
        let member = member.trim_ascii();
        let eq = member.iter().position(|&b| b == b'=')?;
        Some((&member[..eq], &member[eq + 1..]))
    })
}

/// The SHA-256 values in one field value of a digest field.
pub fn field_sha256(field: DigestField, value: &[u8]) -> Vec<[u8; 32]> {
    let mut out = Vec::new();
    let mut push = |b64: &[u8]| {
        if let Some(d) = base64::decode(b64).ok().and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok()) {
            out.push(d);
        }
    };
    match field {
        DigestField::Digest => {
            for (alg, b64) in members(value) {
                if alg.eq_ignore_ascii_case(b"sha-256") || alg.eq_ignore_ascii_case(b"sha256") {
                    push(b64);
                }
            }
        }
        DigestField::ReprDigest | DigestField::ContentDigest => match sf::parse_dictionary(value) {
            Ok(dict) => {
                for (key, member) in dict {
                    if key == "sha-256"
                        && let Member::Item(item) = member
                        && let BareItem::Bytes(b) = item.bare
                        && let Ok(d) = <[u8; 32]>::try_from(b.as_slice())
                    {
                        out.push(d);
                    }
                }
            }
            // Not a valid dictionary: read `sha-256=:b64:` (or without colons) leniently.
            Err(_) => {
                for (alg, rest) in members(value) {
                    if alg == b"sha-256" {
                        let rest = rest.split(|&b| b == b';').next().unwrap_or(rest);
                        push(rest.strip_prefix(b":").and_then(|v| v.strip_suffix(b":")).unwrap_or(rest));
                    }
                }
            }
        },
    }
    out
}

/// The SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
    out
}

/// The digest fields a sender writes for a body's SHA-256: `digest:
/// sha-256=<base64>` (RFC 3230, for nghq-era receivers) and `repr-digest:
/// sha-256=:<base64>:` (RFC 9530).
pub fn sha256_fields(sha256: &[u8; 32]) -> [HeaderField; 2] {
    let b64 = base64::encode(sha256);
    [
        HeaderField::new(DigestField::Digest.name(), format!("sha-256={b64}")),
        HeaderField::new(DigestField::ReprDigest.name(), format!("sha-256=:{b64}:")),
    ]
}

/// Every SHA-256 a header list announces, with the field it came from, in order.
pub fn announced(headers: &[HeaderField]) -> Vec<(DigestField, [u8; 32])> {
    let mut out = Vec::new();
    for f in headers {
        if let Some(field) = DigestField::from_name(&f.name) {
            out.extend(field_sha256(field, &f.value).into_iter().map(|d| (field, d)));
        }
    }
    out
}

/// The first SHA-256 a header list announces.
pub fn announced_sha256(headers: &[HeaderField]) -> Option<[u8; 32]> {
    announced(headers).first().map(|&(_, d)| d)
}

/// What a header list says about the body's SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announced {
    /// No usable SHA-256 digest.
    None,
    /// One SHA-256 (possibly repeated in several fields).
    Sha256([u8; 32]),
    /// Digest fields that disagree with each other.
    Conflicting,
}

/// The body SHA-256 the fields agree on (see [`Announced`]).
pub fn announced_consistent(headers: &[HeaderField]) -> Announced {
    let all = announced(headers);
    match all.first() {
        None => Announced::None,
        Some(&(_, d)) if all.iter().all(|&(_, x)| x == d) => Announced::Sha256(d),
        Some(_) => Announced::Conflicting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let hello = "7PcB9yfZ4td8SqSaxvu8yZcnisoBC93uuWHBDPVNQ1o=";
        let want = <[u8; 32]>::try_from(base64::decode(hello.as_bytes()).unwrap()).unwrap();
        for (name, value) in [
            ("digest", format!("sha256={hello}")),
            ("digest", format!("SHA-256={hello}")),
            ("digest", format!("md5=xxx, sha-256={hello}")),
            ("repr-digest", format!("sha-256=:{hello}:")),
            ("content-digest", format!("sha-512=:AAAA:, sha-256=:{hello}:")),
            ("content-digest", format!("sha-256=:{hello}:;p")),
            ("repr-digest", format!("sha-256={hello}")),
        ] {
            let h = [HeaderField::new(name, value.clone())];
            assert_eq!(announced_sha256(&h), Some(want), "{name}: {value}");
            assert_eq!(announced_consistent(&h), Announced::Sha256(want), "{name}: {value}");
        }
        assert_eq!(announced_sha256(&[HeaderField::new("digest", "sha-256=short")]), None);
        assert_eq!(announced_sha256(&[HeaderField::new("repr-digest", "sha-256=:Zm9v:")]), None);
        assert_eq!(announced_consistent(&[HeaderField::new("digest", "md5=abc")]), Announced::None);
        let two = [
            HeaderField::new("digest", format!("sha-256={hello}")),
            HeaderField::new("repr-digest", "sha-256=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:"),
        ];
        assert_eq!(announced_consistent(&two), Announced::Conflicting);
    }

    #[test]
    fn written_fields_read_back() {
        let d = [0x5a; 32];
        let fields = sha256_fields(&d);
        assert_eq!(fields[0].name, b"digest");
        assert_eq!(fields[1].value, format!("sha-256=:{}:", base64::encode(&d)).into_bytes());
        assert_eq!(announced(&fields), [(DigestField::Digest, d), (DigestField::ReprDigest, d)]);
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(value in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            for field in [DigestField::Digest, DigestField::ReprDigest, DigestField::ContentDigest] {
                let _ = field_sha256(field, &value);
            }
        }
    }
}
