//! draft-cavage-http-signatures `signature` headers, as nghq's example sender
//! writes them (see `nghq-wire.md` §7):
//!
//! ```text
//! keyId="sender.pem",algorithm=rsa-sha256,headers="(request-target) :scheme :authority",signature="<base64>"
//! ```
//!
//! The signing string ([`Style::Nghq`]) has one line per listed name,
//! `name:value` with **no space** after the colon, `(request-target)` as
//! `<METHOD> <path>` with the method in upper case, values of a repeated
//! name joined with `,`, and **every line ending in `\n`**, the last one
//! included. [`verify`] also accepts the standard cavage-12 string
//! ([`Style::Cavage12`]: `name: value`, lower-case method, values joined with
//! `, `, no final newline), so generic cavage senders are understood; [`sign`]
//! always writes nghq's form so nghq-style receivers can check it.
//!
//! Algorithms: `rsa-sha256` (RSASSA-PKCS1-v1_5), `ec-sha256` or
//! `ecdsa-sha256` (ECDSA P-256, DER signature), `ed25519`, and `hs2019`,
//! which is accepted with Ed25519 keys only (cavage-12 derives hs2019's
//! scheme from the key; for RSA and ECDSA keys it would mean other hashes).
//! Without an `algorithm` parameter the key's type decides. `dsa-sha256` and
//! `hmac-sha256` are not supported, so HMAC and RSA-PSS-only keys neither
//! make nor check cavage signatures (RFC 9421 signatures do both). The signing string may also list
//! `(created)` and `(expires)`, whose values are the parameters of the same
//! names.

use crate::qpack::HeaderField;

use super::keys::{KeyType, SignError, SignatureAlgorithm, SigningKey, VerifyingKey};
use crate::encoding::base64::{self, Base64Error};

/// A parsed `signature` header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CavageSignature {
    /// `keyId`, if given (a label; the key is found by trying the trusted ones).
    pub key_id: Option<String>,
    /// `algorithm`, if given, as written.
    pub algorithm: Option<String>,
    /// `headers`: the signed names, in order, lower-cased (`(created)` if absent).
    pub headers: Vec<String>,
    /// `created`, Unix seconds.
    pub created: Option<u64>,
    /// `expires`, Unix seconds.
    pub expires: Option<u64>,
    /// The decoded signature.
    pub signature: Vec<u8>,
}

/// Why a `signature` header value did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CavageParseError {
    /// The value is empty.
    #[error("empty signature header")]
    Empty,
    /// Not a comma-separated list of `name=value` or `name="value"`.
    #[error("syntax error at offset {0}")]
    Syntax(usize),
    /// A parameter given twice.
    #[error("parameter `{0}` given twice")]
    Duplicate(String),
    /// No `signature` parameter.
    #[error("no `signature` parameter")]
    MissingSignature,
    /// `signature` is not base64.
    #[error("`signature` is not base64: {0}")]
    BadBase64(Base64Error),
    /// `created` or `expires` is not a number.
    #[error("`{0}` is not a number")]
    BadNumber(String),
    /// `headers` lists no name.
    #[error("`headers` is empty")]
    EmptyHeaders,
}

/// How the signing string is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// nghq: `name:value\n` per line, upper-case method, repeated values joined with `,`.
    Nghq,
    /// draft-cavage-12: `name: value` lines joined with `\n`, lower-case
    /// method, repeated values joined with `, `.
    Cavage12,
}

/// Why a signing string could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningStringError {
    /// A signed header (or the request's `:method`/`:path`) is absent.
    #[error("signed header `{0}` is missing")]
    MissingHeader(String),
    /// A value holding CR, LF or NUL, which would make the string ambiguous.
    #[error("header `{0}` has a value that cannot be signed")]
    InvalidValue(String),
    /// `(created)` or `(expires)` is signed without its parameter.
    #[error("`{0}` is signed but has no parameter")]
    MissingParameter(String),
}

/// Why a cavage signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CavageVerifyError {
    /// An algorithm this implementation does not check.
    #[error("unsupported signature algorithm `{0}`")]
    UnsupportedAlgorithm(String),
    /// No trusted key has the type the algorithm needs.
    #[error("no trusted key for `{0}` signatures")]
    NoKeyForAlgorithm(String),
    /// The signing string could not be built.
    #[error(transparent)]
    SigningString(#[from] SigningStringError),
    /// No trusted key verifies the signature.
    #[error("signature does not verify")]
    BadSignature,
}

/// Why signing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CavageSignError {
    /// The key ID is empty or has a `"`, `\` or a control character.
    #[error("the key ID must be printable ASCII without `\"` or `\\`")]
    BadKeyId,
    /// A key no cavage algorithm uses here (HMAC, RSA-PSS only).
    #[error("{0} keys make no cavage signatures (use RFC 9421)")]
    UnsupportedKey(KeyType),
    /// The signing string could not be built.
    #[error(transparent)]
    SigningString(#[from] SigningStringError),
    /// The key failed to sign.
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// Parses a `signature` header value.
pub fn parse(value: &[u8]) -> Result<CavageSignature, CavageParseError> {
    if value.trim_ascii().is_empty() {
        return Err(CavageParseError::Empty);
    }
    let mut params: Vec<(String, &[u8])> = Vec::new();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while value.get(*i).is_some_and(|c| *c == b' ' || *c == b'\t') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        let start = i;
        while value.get(i).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_') {
            i += 1;
        }
        if i == start {
            return Err(CavageParseError::Syntax(i));
        }
        let name = String::from_utf8_lossy(&value[start..i]).to_ascii_lowercase();
        skip_ws(&mut i);
        if value.get(i) != Some(&b'=') {
            return Err(CavageParseError::Syntax(i));
        }
        i += 1;
        skip_ws(&mut i);
        let v = if value.get(i) == Some(&b'"') {
            let s = i + 1;
            let len = value[s..].iter().position(|&c| c == b'"').ok_or(CavageParseError::Syntax(i))?;
            i = s + len + 1;
            &value[s..s + len]
        } else {
            let s = i;
            while value.get(i).is_some_and(|&c| !b",\" \t".contains(&c)) {
                i += 1;
            }
            value[s..i].trim_ascii_end()
        };
        if params.iter().any(|(n, _)| *n == name) {
            return Err(CavageParseError::Duplicate(name));
        }
        params.push((name, v));
        skip_ws(&mut i);
        match value.get(i) {
            None => break,
            Some(b',') => i += 1,
            Some(_) => return Err(CavageParseError::Syntax(i)),
        }
    }
    let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| *v);
    let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    let number = |n: &str| -> Result<Option<u64>, CavageParseError> {
        match get(n) {
            None => Ok(None),
            Some(v) => std::str::from_utf8(v)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse().ok())
                .map(Some)
                .ok_or_else(|| CavageParseError::BadNumber(n.to_owned())),
        }
    };
    let signature = base64::decode(get("signature").ok_or(CavageParseError::MissingSignature)?)
        .map_err(CavageParseError::BadBase64)?;
    let headers = match get("headers") {
        Some(v) => {
            let names: Vec<String> =
                v.split(|&c| c == b' ').filter(|n| !n.is_empty()).map(|n| text(n).to_ascii_lowercase()).collect();
            if names.is_empty() {
                return Err(CavageParseError::EmptyHeaders);
            }
            names
        }
        None => vec!["(created)".to_owned()],
    };
    Ok(CavageSignature {
        key_id: get("keyid").map(text),
        algorithm: get("algorithm").map(text),
        headers,
        created: number("created")?,
        expires: number("expires")?,
        signature,
    })
}

/// The values of `name` across `sections`, in order.
fn values<'a>(sections: &[&'a [HeaderField]], name: &str) -> Vec<&'a [u8]> {
    sections
        .iter()
        .flat_map(|s| s.iter())
        .filter(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|f| f.value.as_slice())
        .collect()
}

fn signable(name: &str, v: &[u8]) -> Result<(), SigningStringError> {
    if v.iter().any(|&c| c == b'\r' || c == b'\n' || c == 0) {
        return Err(SigningStringError::InvalidValue(name.to_owned()));
    }
    Ok(())
}

/// Builds the signing string for `names` over a message: `request` gives
/// `(request-target)`, `message` (one or more sections, e.g. response headers
/// then trailers) gives the named fields (for a promise signature, the
/// message is the request itself).
pub fn signing_string(
    names: &[String],
    created: Option<u64>,
    expires: Option<u64>,
    request: &[HeaderField],
    message: &[&[HeaderField]],
    style: Style,
) -> Result<Vec<u8>, SigningStringError> {
    let mut out = Vec::new();
    let (sep, join): (&[u8], &[u8]) = match style {
        Style::Nghq => (b":", b","),
        Style::Cavage12 => (b": ", b", "),
    };
    for (i, name) in names.iter().enumerate() {
        if style == Style::Cavage12 && i > 0 {
            out.push(b'\n');
        }
        let value: Vec<u8> = match name.as_str() {
            "(request-target)" => {
                let missing = || SigningStringError::MissingHeader(name.clone());
                let method = values(&[request], ":method").first().copied().ok_or_else(missing)?;
                let path = values(&[request], ":path").first().copied().ok_or_else(missing)?;
                signable(":method", method)?;
                signable(":path", path)?;
                let mut v = match style {
                    Style::Nghq => method.to_ascii_uppercase(),
                    Style::Cavage12 => method.to_ascii_lowercase(),
                };
                v.push(b' ');
                v.extend_from_slice(path);
                v
            }
            "(created)" | "(expires)" => {
                let n = if name == "(created)" { created } else { expires };
                n.ok_or_else(|| SigningStringError::MissingParameter(name.clone()))?.to_string().into_bytes()
            }
            _ => {
                let found = values(message, name);
                if found.is_empty() {
                    return Err(SigningStringError::MissingHeader(name.clone()));
                }
                for v in &found {
                    signable(name, v)?;
                }
                found.join(join)
            }
        };
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(sep);
        out.extend_from_slice(&value);
        if style == Style::Nghq {
            out.push(b'\n');
        }
    }
    Ok(out)
}

/// The algorithm for a signature's `algorithm` name and a key's type:
/// `Ok(None)` if that key cannot check it, `Err` if the name is unknown.
pub fn algorithm_for(name: Option<&str>, key: KeyType) -> Result<Option<SignatureAlgorithm>, CavageVerifyError> {
    let fixed = match name.map(str::to_ascii_lowercase).as_deref() {
        None => {
            return Ok(match key {
                KeyType::Rsa => Some(SignatureAlgorithm::RsaPkcs1Sha256),
                KeyType::EcdsaP256 => Some(SignatureAlgorithm::EcdsaP256Sha256Asn1),
                KeyType::Ed25519 => Some(SignatureAlgorithm::Ed25519),
                KeyType::RsaPss | KeyType::HmacSha256 => None,
            });
        }
        Some("rsa-sha256") => SignatureAlgorithm::RsaPkcs1Sha256,
        Some("ec-sha256" | "ecdsa-sha256") => SignatureAlgorithm::EcdsaP256Sha256Asn1,
        Some("ed25519" | "hs2019") => SignatureAlgorithm::Ed25519,
        Some(_) => return Err(CavageVerifyError::UnsupportedAlgorithm(name.unwrap_or_default().to_owned())),
    };
    Ok(fixed.accepts(key).then_some(fixed))
}

/// The `algorithm` name [`sign`] writes for a key type (`None`: such keys
/// make no cavage signatures).
pub fn algorithm_name(key: KeyType) -> Option<&'static str> {
    match key {
        KeyType::Rsa => Some("rsa-sha256"),
        KeyType::EcdsaP256 => Some("ec-sha256"),
        KeyType::Ed25519 => Some("ed25519"),
        KeyType::RsaPss | KeyType::HmacSha256 => None,
    }
}

/// Checks `sig` against each of `keys` (every compatible key is tried, in
/// order; `keyId` is not used to pick one) with both signing-string styles:
/// the index of the key that verifies it.
pub fn verify(
    sig: &CavageSignature,
    request: &[HeaderField],
    message: &[&[HeaderField]],
    keys: &[VerifyingKey],
) -> Result<usize, CavageVerifyError> {
    let mut any_key = false;
    let mut strings: [Option<Vec<u8>>; 2] = [None, None];
    for (index, key) in keys.iter().enumerate() {
        let Some(alg) = algorithm_for(sig.algorithm.as_deref(), key.key_type())? else { continue };
        any_key = true;
        for (slot, style) in [Style::Nghq, Style::Cavage12].into_iter().enumerate() {
            if strings[slot].is_none() {
                strings[slot] = Some(signing_string(&sig.headers, sig.created, sig.expires, request, message, style)?);
            }
            if let Some(s) = &strings[slot]
                && key.verify(alg, s, &sig.signature).is_ok()
            {
                return Ok(index);
            }
        }
    }
    if !any_key {
        let name = sig.algorithm.clone().unwrap_or_else(|| "(unspecified)".to_owned());
        return Err(CavageVerifyError::NoKeyForAlgorithm(name));
    }
    Err(CavageVerifyError::BadSignature)
}

/// Whether a key ID can be written into the header.
pub fn valid_key_id(key_id: &str) -> bool {
    !key_id.is_empty() && key_id.bytes().all(|c| (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\')
}

/// Signs `names` over a message (see [`signing_string`]) in nghq's style and
/// returns the `signature` header: `keyId="ID",algorithm=ALG,headers="NAMES",signature="B64"`
/// (with `created=N` after the algorithm when given).
pub fn sign(
    key: &SigningKey,
    key_id: &str,
    names: &[&str],
    created: Option<u64>,
    request: &[HeaderField],
    message: &[&[HeaderField]],
) -> Result<HeaderField, CavageSignError> {
    if !valid_key_id(key_id) {
        return Err(CavageSignError::BadKeyId);
    }
    let names: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    let string = signing_string(&names, created, None, request, message, Style::Nghq)?;
    let unsupported = CavageSignError::UnsupportedKey(key.key_type());
    let alg = algorithm_for(None, key.key_type()).ok().flatten().ok_or(unsupported.clone())?;
    let name = algorithm_name(key.key_type()).ok_or(unsupported)?;
    let sig = key.sign(alg, &string)?;
    let created = created.map(|c| format!("created={c},")).unwrap_or_default();
    let value = format!(
        "keyId=\"{key_id}\",algorithm={name},{created}headers=\"{}\",signature=\"{}\"",
        names.join(" "),
        base64::encode(&sig)
    );
    Ok(HeaderField::new("signature", value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> Vec<HeaderField> {
        vec![
            HeaderField::new(":method", "GET"),
            HeaderField::new(":scheme", "https"),
            HeaderField::new(":authority", "localhost"),
            HeaderField::new(":path", "//hello.txt"),
        ]
    }

    #[test]
    fn nghq_signing_strings() {
        let request = req();
        let names = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
        let s = signing_string(
            &names("(request-target) :scheme :authority"),
            None,
            None,
            &request,
            &[&request],
            Style::Nghq,
        )
        .unwrap();
        assert_eq!(s, b"(request-target):GET //hello.txt\n:scheme:https\n:authority:localhost\n");
        let response = vec![
            HeaderField::new(":status", "200"),
            HeaderField::new("date", "Fri, 27 Nov 2026 15:41:59 GMT"),
            HeaderField::new("content-type", "text/plain; charset=UTF-8"),
            HeaderField::new("digest", "sha256=7PcB9yfZ4td8SqSaxvu8yZcnisoBC93uuWHBDPVNQ1o="),
        ];
        let s = signing_string(
            &names("(request-target) date content-type digest"),
            None,
            None,
            &request,
            &[&response],
            Style::Nghq,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(s).unwrap(),
            "(request-target):GET //hello.txt\ndate:Fri, 27 Nov 2026 15:41:59 GMT\ncontent-type:text/plain; charset=UTF-8\ndigest:sha256=7PcB9yfZ4td8SqSaxvu8yZcnisoBC93uuWHBDPVNQ1o=\n"
        );
        let s = signing_string(&names("(request-target) date"), None, None, &request, &[&response], Style::Cavage12)
            .unwrap();
        assert_eq!(s, b"(request-target): get //hello.txt\ndate: Fri, 27 Nov 2026 15:41:59 GMT");
        // Repeated names are joined; (created) takes the parameter.
        let twice = vec![HeaderField::new("x", "a"), HeaderField::new("x", "b")];
        let s = signing_string(&names("x (created)"), Some(7), None, &request, &[&twice], Style::Nghq).unwrap();
        assert_eq!(s, b"x:a,b\n(created):7\n");
        assert_eq!(
            signing_string(&names("y"), None, None, &request, &[&twice], Style::Nghq),
            Err(SigningStringError::MissingHeader("y".into()))
        );
        assert_eq!(
            signing_string(&names("(expires)"), None, None, &request, &[&twice], Style::Nghq),
            Err(SigningStringError::MissingParameter("(expires)".into()))
        );
        let evil = vec![HeaderField::new("x", "a\nb")];
        assert_eq!(
            signing_string(&names("x"), None, None, &request, &[&evil], Style::Nghq),
            Err(SigningStringError::InvalidValue("x".into()))
        );
    }

    #[test]
    fn parses_nghq_and_cavage_forms() {
        let s = parse(b"keyId=\"sender.pem\",algorithm=rsa-sha256,headers=\"(request-target) :scheme :authority\",signature=\"Zm9v\"").unwrap();
        assert_eq!(s.key_id.as_deref(), Some("sender.pem"));
        assert_eq!(s.algorithm.as_deref(), Some("rsa-sha256"));
        assert_eq!(s.headers, ["(request-target)", ":scheme", ":authority"]);
        assert_eq!(s.signature, b"foo");
        let s = parse(b"keyId=\"k\", algorithm=\"hs2019\", created=12, headers=\"Date\", signature=\"Zg==\"").unwrap();
        assert_eq!(
            (s.algorithm.as_deref(), s.created, s.headers.as_slice()),
            (Some("hs2019"), Some(12), &["date".to_owned()][..])
        );
        let s = parse(b"signature=\"Zg==\"").unwrap();
        assert_eq!(s.headers, ["(created)"]);
        assert_eq!(parse(b" "), Err(CavageParseError::Empty));
        assert_eq!(parse(b"keyId=\"a\""), Err(CavageParseError::MissingSignature));
        assert_eq!(
            parse(b"signature=\"Zg==\",signature=\"Zg==\""),
            Err(CavageParseError::Duplicate("signature".into()))
        );
        assert_eq!(parse(b"signature=\"Zg=="), Err(CavageParseError::Syntax(10)));
        assert_eq!(parse(b"signature=\"Z!==\""), Err(CavageParseError::BadBase64(Base64Error::InvalidCharacter(1))));
        assert_eq!(parse(b"created=x,signature=\"Zg==\""), Err(CavageParseError::BadNumber("created".into())));
        assert_eq!(parse(b"headers=\" \",signature=\"Zg==\""), Err(CavageParseError::EmptyHeaders));
        assert_eq!(parse(b"=1"), Err(CavageParseError::Syntax(0)));
        assert_eq!(parse(b"a=1 b=2"), Err(CavageParseError::Syntax(4)));
    }

    #[test]
    fn algorithm_names() {
        assert_eq!(algorithm_for(Some("rsa-sha256"), KeyType::Rsa), Ok(Some(SignatureAlgorithm::RsaPkcs1Sha256)));
        assert_eq!(algorithm_for(Some("rsa-sha256"), KeyType::Ed25519), Ok(None));
        assert_eq!(algorithm_for(Some("hs2019"), KeyType::Ed25519), Ok(Some(SignatureAlgorithm::Ed25519)));
        assert_eq!(algorithm_for(Some("hs2019"), KeyType::Rsa), Ok(None));
        assert_eq!(
            algorithm_for(Some("EC-SHA256"), KeyType::EcdsaP256),
            Ok(Some(SignatureAlgorithm::EcdsaP256Sha256Asn1))
        );
        assert_eq!(algorithm_for(None, KeyType::EcdsaP256), Ok(Some(SignatureAlgorithm::EcdsaP256Sha256Asn1)));
        assert_eq!(
            algorithm_for(Some("dsa-sha256"), KeyType::Rsa),
            Err(CavageVerifyError::UnsupportedAlgorithm("dsa-sha256".into()))
        );
    }
}
