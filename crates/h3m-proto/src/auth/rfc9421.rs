//! RFC 9421 HTTP Message Signatures: `signature-input` and `signature`.
//!
//! h3m signs a pushed response, whose request is the PUSH_PROMISE's header
//! list. [`sign`] covers, by default ([`PUSH_COMPONENTS`]):
//!
//! ```text
//! sig1=("@method";req "@path";req "@authority";req "@status" "content-type" "content-length" "date" "repr-digest");created=1795794119;keyid="k";alg="ed25519"
//! ```
//!
//! Request-derived components of a response carry the `req` parameter, as
//! RFC 9421 §2.4 says; a signature that names them without `req` is still
//! understood (they can only come from the promised request). Fields with
//! `tr` come from the trailers. `@query-param` (§2.2.8) takes its `name`
//! parameter: the query is parsed as `application/x-www-form-urlencoded`
//! (the `form_urlencoded` crate, the URL Standard's algorithm) and names and
//! values are re-encoded with the URL Standard's form-urlencoded
//! percent-encode set, a space as `%20`; a name given twice in the query
//! cannot be signed ([`ComponentError::Ambiguous`]). Other component
//! parameters (`sf`, `bs`, `key`) are not supported: a signature using them
//! does not verify.
//!
//! Algorithms: `ed25519`, `ecdsa-p256-sha256` (`r || s`), `rsa-v1_5-sha256`,
//! `rsa-pss-sha512` and `hmac-sha256`; without `alg` the key's type decides
//! (an RSA key tries both RSA algorithms, an RSA-PSS key only PSS). The
//! signature base is built as in RFC 9421 §2.5, with `@signature-params`
//! re-serialized canonically (RFC 9651).

use crate::qpack::HeaderField;

use super::keys::{KeyType, SignError, SignatureAlgorithm, SigningKey, VerifyingKey};
use crate::http::path::form_encode;
use crate::http::sf::{self, BareItem, Item, Member, Params, SerializeError, SfError};

/// The components [`sign`] covers by default; absent fields (e.g.
/// `content-length` of a live resource) are left out.
pub const PUSH_COMPONENTS: &[(&str, &[&str])] = &[
    ("@method", &["req"]),
    ("@path", &["req"]),
    ("@authority", &["req"]),
    ("@status", &[]),
    ("content-type", &[]),
    ("content-length", &[]),
    ("date", &[]),
    ("repr-digest", &[]),
];

/// One signature: its label, covered components and parameters, and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rfc9421Signature {
    /// The dictionary key shared by `signature-input` and `signature`.
    pub label: String,
    /// The covered components, in order (sf strings with parameters).
    pub components: Vec<Item>,
    /// The signature parameters (`created`, `keyid`, `alg`, ...), in order.
    pub params: Params,
    /// The signature bytes.
    pub signature: Vec<u8>,
}

impl Rfc9421Signature {
    fn param(&self, name: &str) -> Option<&BareItem> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// `created`, Unix seconds.
    pub fn created(&self) -> Option<i64> {
        match self.param("created") {
            Some(BareItem::Integer(v)) => Some(*v),
            _ => None,
        }
    }

    /// `expires`, Unix seconds.
    pub fn expires(&self) -> Option<i64> {
        match self.param("expires") {
            Some(BareItem::Integer(v)) => Some(*v),
            _ => None,
        }
    }

    /// `keyid`.
    pub fn keyid(&self) -> Option<&str> {
        match self.param("keyid") {
            Some(BareItem::String(v)) => Some(v),
            _ => None,
        }
    }

    /// `alg`.
    pub fn alg(&self) -> Option<&str> {
        match self.param("alg") {
            Some(BareItem::String(v)) => Some(v),
            _ => None,
        }
    }

    /// Whether a component with this name (any parameters) is covered.
    pub fn covers(&self, name: &str) -> bool {
        self.components.iter().any(|c| matches!(&c.bare, BareItem::String(n) if n == name))
    }
}

/// Why `signature-input` / `signature` did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rfc9421ParseError {
    /// A field is not a structured-field dictionary.
    #[error("`{field}` is not a structured dictionary: {error}")]
    Sf {
        /// `signature-input` or `signature`.
        field: &'static str,
        /// The syntax error.
        error: SfError,
    },
    /// A `signature-input` member that is not an inner list of strings.
    #[error("`signature-input` member `{0}` is not a list of component names")]
    BadInput(String),
    /// A signature parameter of the wrong type (`created` not an integer, ...).
    #[error("signature `{label}`: parameter `{name}` has the wrong type")]
    BadParameter {
        /// The signature's label.
        label: String,
        /// The parameter.
        name: String,
    },
    /// A `signature-input` member without its `signature` member.
    #[error("signature `{0}` has no value in `signature`")]
    MissingSignature(String),
    /// A `signature` member that is not a byte sequence.
    #[error("`signature` member `{0}` is not a byte sequence")]
    BadSignature(String),
}

/// Why a signature base could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComponentError {
    /// A covered component is absent from the message.
    #[error("covered component `{0}` is missing")]
    Missing(String),
    /// A component or component parameter this implementation does not support.
    #[error("unsupported component `{0}`")]
    Unsupported(String),
    /// A component covered twice.
    #[error("component `{0}` is covered twice")]
    Duplicate(String),
    /// A value holding CR, LF or NUL.
    #[error("component `{0}` has a value that cannot be signed")]
    InvalidValue(String),
    /// An `@query-param` whose name occurs more than once in the query
    /// (RFC 9421 §2.2.8: it must not be signed; sign `@query` instead).
    #[error("component `{0}`: the query parameter occurs more than once")]
    Ambiguous(String),
    /// A component identifier or signature parameter with no valid
    /// structured-field serialization.
    #[error(transparent)]
    Serialize(#[from] SerializeError),
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rfc9421VerifyError {
    /// An `alg` this implementation does not check.
    #[error("unsupported signature algorithm `{0}`")]
    UnsupportedAlgorithm(String),
    /// No trusted key has the type the algorithm needs.
    #[error("no trusted key for `{0}` signatures")]
    NoKeyForAlgorithm(String),
    /// The signature base could not be built.
    #[error(transparent)]
    Component(#[from] ComponentError),
    /// No trusted key verifies the signature.
    #[error("signature does not verify")]
    BadSignature,
}

/// Why signing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rfc9421SignError {
    /// The key ID or label cannot be serialized.
    #[error("the key ID must be printable ASCII and the label a structured-field key")]
    BadKeyId,
    /// The signature base could not be built.
    #[error(transparent)]
    Component(#[from] ComponentError),
    /// The key failed to sign.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// The key cannot make the algorithm asked for.
    #[error("a {key} key cannot make `{alg}` signatures")]
    Algorithm {
        /// The key's type.
        key: KeyType,
        /// The algorithm's name.
        alg: String,
    },
}

/// The message a signature covers: a pushed response (with its promised
/// request and trailers), or a request alone (`response: None`).
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The request (the PUSH_PROMISE's header list).
    pub request: &'a [HeaderField],
    /// The response headers, for a response signature.
    pub response: Option<&'a [HeaderField]>,
    /// The response trailers (empty if none).
    pub trailers: &'a [HeaderField],
}

fn dictionary(lines: &[&[u8]], field: &'static str) -> Result<Vec<(String, Member)>, Rfc9421ParseError> {
    let joined = lines.join(&b", "[..]);
    sf::parse_dictionary(&joined).map_err(|error| Rfc9421ParseError::Sf { field, error })
}

/// Parses the signatures of a message from the field lines of
/// `signature-input` and of `signature` (several lines are combined, as
/// RFC 8941 says). Every input must have its signature; signatures without
/// an input are ignored.
pub fn parse(signature_input: &[&[u8]], signature: &[&[u8]]) -> Result<Vec<Rfc9421Signature>, Rfc9421ParseError> {
    let inputs = dictionary(signature_input, "signature-input")?;
    let values = dictionary(signature, "signature")?;
    let mut out = Vec::new();
    for (label, member) in inputs {
        let Member::InnerList(components, params) = member else {
            return Err(Rfc9421ParseError::BadInput(label));
        };
        if components.iter().any(|c| !matches!(c.bare, BareItem::String(_))) {
            return Err(Rfc9421ParseError::BadInput(label));
        }
        for (name, v) in &params {
            let ok = match name.as_str() {
                "created" | "expires" => matches!(v, BareItem::Integer(_)),
                "keyid" | "alg" | "nonce" | "tag" => matches!(v, BareItem::String(_)),
                _ => true,
            };
            if !ok {
                return Err(Rfc9421ParseError::BadParameter { label, name: name.clone() });
            }
        }
        let signature = match values.iter().find(|(k, _)| *k == label) {
            None => return Err(Rfc9421ParseError::MissingSignature(label)),
            Some((_, Member::Item(Item { bare: BareItem::Bytes(b), .. }))) => b.clone(),
            Some(_) => return Err(Rfc9421ParseError::BadSignature(label)),
        };
        out.push(Rfc9421Signature { label, components, params, signature });
    }
    Ok(out)
}

/// The field lines named `name` across the given sections.
fn field_lines<'a>(sections: &[&'a [HeaderField]], name: &str) -> Vec<&'a [u8]> {
    sections.iter().flat_map(|s| s.iter()).filter(|f| f.name == name.as_bytes()).map(|f| f.value.as_slice()).collect()
}

fn first<'a>(section: &'a [HeaderField], name: &str) -> Option<&'a [u8]> {
    section.iter().find(|f| f.name == name.as_bytes()).map(|f| f.value.as_slice())
}

/// A component identifier, serialized (RFC 9421 §2: the form the signature
/// base names it by).
fn identifier(c: &Item) -> Result<String, ComponentError> {
    let mut id = String::new();
    sf::serialize_item(c, &mut id)?;
    Ok(id)
}

/// The value of `@query-param;name=<want>` (RFC 9421 §2.2.8) in a query
/// (without its `?`): `None` if the parameter is absent, an error if it
/// occurs more than once.
fn query_param(query: &[u8], want: &str, id: &str) -> Result<Option<String>, ComponentError> {
    let mut found = None;
    for (name, value) in form_urlencoded::parse(query) {
        if form_encode(&name) == want {
            if found.is_some() {
                return Err(ComponentError::Ambiguous(id.to_owned()));
            }
            found = Some(form_encode(&value));
        }
    }
    Ok(found)
}

/// The value of one component (RFC 9421 §2.1, §2.2).
fn component_value(c: &Item, msg: &Message<'_>) -> Result<Vec<u8>, ComponentError> {
    let id = identifier(c)?;
    let BareItem::String(name) = &c.bare else { return Err(ComponentError::Unsupported(id)) };
    let mut req = false;
    let mut tr = false;
    let mut param_name = None;
    for (k, v) in &c.params {
        match (k.as_str(), v) {
            ("req", BareItem::Boolean(true)) => req = true,
            ("tr", BareItem::Boolean(true)) => tr = true,
            ("name", BareItem::String(n)) if name == "@query-param" => param_name = Some(n.as_str()),
            _ => return Err(ComponentError::Unsupported(id)),
        }
    }
    let missing = || ComponentError::Missing(id.clone());
    let request = msg.request;
    let path_query = || first(request, ":path").ok_or_else(missing);
    let value: Vec<u8> = match name.as_str() {
        "@method" => first(request, ":method").ok_or_else(missing)?.to_vec(),
        "@scheme" => first(request, ":scheme").ok_or_else(missing)?.to_ascii_lowercase(),
        "@authority" => first(request, ":authority").ok_or_else(missing)?.to_ascii_lowercase(),
        "@request-target" => path_query()?.to_vec(),
        "@path" => {
            let pq = path_query()?;
            let path = pq.split(|&b| b == b'?').next().unwrap_or_default();
            if path.is_empty() { b"/".to_vec() } else { path.to_vec() }
        }
        "@query" => {
            let pq = path_query()?;
            match pq.iter().position(|&b| b == b'?') {
                Some(q) => pq[q..].to_vec(),
                None => b"?".to_vec(),
            }
        }
        "@query-param" => {
            let Some(want) = param_name else { return Err(ComponentError::Unsupported(id)) };
            let pq = path_query()?;
            let query = pq.iter().position(|&b| b == b'?').map_or(&[][..], |q| &pq[q + 1..]);
            query_param(query, want, &id)?.ok_or_else(missing)?.into_bytes()
        }
        "@target-uri" => {
            let scheme = first(request, ":scheme").ok_or_else(missing)?.to_ascii_lowercase();
            let authority = first(request, ":authority").ok_or_else(missing)?.to_ascii_lowercase();
            [scheme.as_slice(), b"://", authority.as_slice(), path_query()?].concat()
        }
        "@status" => match (req, msg.response) {
            (false, Some(r)) => first(r, ":status").ok_or_else(missing)?.to_vec(),
            _ => return Err(ComponentError::Unsupported(id)),
        },
        n if n.starts_with('@') => return Err(ComponentError::Unsupported(id)),
        n if n.bytes().any(|b| b.is_ascii_uppercase()) || n.is_empty() => {
            return Err(ComponentError::Unsupported(id));
        }
        n => {
            let sections: Vec<&[HeaderField]> = match (req, tr, msg.response) {
                (true, false, _) | (false, false, None) => vec![request],
                (true, true, _) | (false, true, None) => return Err(ComponentError::Unsupported(id)),
                (false, true, Some(_)) => vec![msg.trailers],
                (false, false, Some(r)) => vec![r],
            };
            let lines = field_lines(&sections, n);
            if lines.is_empty() {
                return Err(missing());
            }
            let trimmed: Vec<&[u8]> = lines.iter().map(|l| trim_ows(l)).collect();
            trimmed.join(&b", "[..])
        }
    };
    if value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(ComponentError::InvalidValue(id));
    }
    Ok(value)
}

/// Trims spaces and tabs (HTTP OWS) from both ends.
fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(v.len());
    let end = v.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(start, |e| e + 1);
    &v[start..end]
}

/// Builds the signature base (RFC 9421 §2.5) for covered `components` and
/// signature `params` over `msg`.
pub fn signature_base(components: &[Item], params: &Params, msg: &Message<'_>) -> Result<Vec<u8>, ComponentError> {
    let mut out = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for c in components {
        let id = identifier(c)?;
        if seen.contains(&id) {
            return Err(ComponentError::Duplicate(id));
        }
        if matches!(&c.bare, BareItem::String(n) if n == "@signature-params") {
            return Err(ComponentError::Unsupported(id));
        }
        let value = component_value(c, msg)?;
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(&value);
        out.push(b'\n');
        seen.push(id);
    }
    out.extend_from_slice(b"\"@signature-params\": ");
    out.extend_from_slice(sf::serialize_inner_list(components, params)?.as_bytes());
    Ok(out)
}

/// The algorithms to try for an `alg` value and a key type (empty if that
/// key cannot check it; an error if the name is unknown).
pub fn algorithms_for(alg: Option<&str>, key: KeyType) -> Result<Vec<SignatureAlgorithm>, Rfc9421VerifyError> {
    let fixed = match alg {
        None => {
            return Ok(match key {
                KeyType::Rsa => vec![SignatureAlgorithm::RsaPkcs1Sha256, SignatureAlgorithm::RsaPssSha512],
                KeyType::RsaPss => vec![SignatureAlgorithm::RsaPssSha512],
                KeyType::EcdsaP256 => vec![SignatureAlgorithm::EcdsaP256Sha256Fixed],
                KeyType::Ed25519 => vec![SignatureAlgorithm::Ed25519],
                KeyType::HmacSha256 => vec![SignatureAlgorithm::HmacSha256],
            });
        }
        Some(name) => algorithm(name).ok_or_else(|| Rfc9421VerifyError::UnsupportedAlgorithm(name.to_owned()))?,
    };
    Ok(if fixed.accepts(key) { vec![fixed] } else { Vec::new() })
}

/// The algorithm an `alg` name stands for (RFC 9421 §6.2.2), if it is one
/// this implementation speaks.
pub fn algorithm(name: &str) -> Option<SignatureAlgorithm> {
    Some(match name {
        "ed25519" => SignatureAlgorithm::Ed25519,
        "ecdsa-p256-sha256" => SignatureAlgorithm::EcdsaP256Sha256Fixed,
        "rsa-v1_5-sha256" => SignatureAlgorithm::RsaPkcs1Sha256,
        "rsa-pss-sha512" => SignatureAlgorithm::RsaPssSha512,
        "hmac-sha256" => SignatureAlgorithm::HmacSha256,
        _ => return None,
    })
}

/// The `alg` name of an algorithm (`None` for cavage's DER-encoded ECDSA,
/// which RFC 9421 does not define).
pub fn rfc9421_name(alg: SignatureAlgorithm) -> Option<&'static str> {
    Some(match alg {
        SignatureAlgorithm::Ed25519 => "ed25519",
        SignatureAlgorithm::EcdsaP256Sha256Fixed => "ecdsa-p256-sha256",
        SignatureAlgorithm::RsaPkcs1Sha256 => "rsa-v1_5-sha256",
        SignatureAlgorithm::RsaPssSha512 => "rsa-pss-sha512",
        SignatureAlgorithm::HmacSha256 => "hmac-sha256",
        SignatureAlgorithm::EcdsaP256Sha256Asn1 => return None,
    })
}

/// The `alg` name [`sign`] writes for a key type.
pub fn algorithm_name(key: KeyType) -> &'static str {
    match key {
        KeyType::Rsa => "rsa-v1_5-sha256",
        KeyType::RsaPss => "rsa-pss-sha512",
        KeyType::EcdsaP256 => "ecdsa-p256-sha256",
        KeyType::Ed25519 => "ed25519",
        KeyType::HmacSha256 => "hmac-sha256",
    }
}

/// Checks `sig` over `msg` against each of `keys` (every compatible key is
/// tried; `keyid` is not used to pick one): the index of the key that verifies it.
pub fn verify(sig: &Rfc9421Signature, msg: &Message<'_>, keys: &[VerifyingKey]) -> Result<usize, Rfc9421VerifyError> {
    let mut base = None;
    let mut any_key = false;
    for (index, key) in keys.iter().enumerate() {
        for alg in algorithms_for(sig.alg(), key.key_type())? {
            any_key = true;
            if base.is_none() {
                base = Some(signature_base(&sig.components, &sig.params, msg)?);
            }
            if let Some(b) = &base
                && key.verify(alg, b, &sig.signature).is_ok()
            {
                return Ok(index);
            }
        }
    }
    if !any_key {
        return Err(Rfc9421VerifyError::NoKeyForAlgorithm(sig.alg().unwrap_or("(unspecified)").to_owned()));
    }
    Err(Rfc9421VerifyError::BadSignature)
}

/// A component identifier item, e.g. `component("@method", &["req"])`.
pub fn component(name: &str, flags: &[&str]) -> Item {
    Item {
        bare: BareItem::String(name.to_owned()),
        params: flags.iter().map(|f| ((*f).to_owned(), BareItem::Boolean(true))).collect(),
    }
}

/// Signs `components` over `msg` and returns the `signature-input` and
/// `signature` fields, labelled `label`, with parameters `created`, `keyid`
/// and `alg` (in that order); the algorithm is the key type's
/// ([`algorithm_name`]). See [`sign_with`] to choose it.
pub fn sign(
    key: &SigningKey,
    key_id: &str,
    label: &str,
    components: &[Item],
    created: u64,
    msg: &Message<'_>,
) -> Result<[HeaderField; 2], Rfc9421SignError> {
    let alg = algorithm(algorithm_name(key.key_type())).ok_or(SignError::Failed)?;
    sign_with(key, alg, key_id, label, components, created, msg)
}

/// [`sign`] with the algorithm `alg` (e.g. `rsa-pss-sha512` with an
/// `rsaEncryption` key).
pub fn sign_with(
    key: &SigningKey,
    alg: SignatureAlgorithm,
    key_id: &str,
    label: &str,
    components: &[Item],
    created: u64,
    msg: &Message<'_>,
) -> Result<[HeaderField; 2], Rfc9421SignError> {
    if !sf::is_sf_string(key_id) || key_id.is_empty() || !sf::is_key(label) {
        return Err(Rfc9421SignError::BadKeyId);
    }
    let alg_name =
        rfc9421_name(alg).filter(|_| alg.accepts(key.key_type())).ok_or_else(|| Rfc9421SignError::Algorithm {
            key: key.key_type(),
            alg: rfc9421_name(alg).unwrap_or("(cavage ecdsa)").to_owned(),
        })?;
    let params: Params = vec![
        ("created".into(), BareItem::Integer(i64::try_from(created).unwrap_or(i64::MAX))),
        ("keyid".into(), BareItem::String(key_id.to_owned())),
        ("alg".into(), BareItem::String(alg_name.to_owned())),
    ];
    let base = signature_base(components, &params, msg)?;
    let sig = key.sign(alg, &base)?;
    let input = format!("{label}={}", sf::serialize_inner_list(components, &params).map_err(ComponentError::from)?);
    let mut value = format!("{label}=");
    sf::serialize_bare(&BareItem::Bytes(sig), &mut value).map_err(ComponentError::from)?;
    Ok([HeaderField::new("signature-input", input), HeaderField::new("signature", value)])
}

/// The default components ([`PUSH_COMPONENTS`]) that are present in a
/// pushed response, with `repr-digest` taken from the trailers (`;tr`) when
/// the headers have none.
pub fn push_components(response: &[HeaderField], trailers: &[HeaderField]) -> Vec<Item> {
    let has = |s: &[HeaderField], n: &str| s.iter().any(|f| f.name == n.as_bytes());
    let mut out = Vec::new();
    for (name, flags) in PUSH_COMPONENTS {
        if name.starts_with('@') || has(response, name) {
            out.push(component(name, flags));
        } else if has(trailers, name) {
            out.push(component(name, &["tr"]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 9421 Appendix B.1.4 and B.2.6.
    pub(super) const ED_PUB: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=\n-----END PUBLIC KEY-----\n";
    const ED_PRIV: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n";
    const B26_INPUT: &str = "sig-b26=(\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\"";
    const B26_SIG: &str =
        "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:";

    /// B.2's test-request (B.2.6 does not cover its `content-digest`).
    fn b26_request() -> Vec<HeaderField> {
        super::vectors::test_request()
    }

    #[test]
    fn rfc_b26_vector() {
        let request = b26_request();
        let msg = Message { request: &request, response: None, trailers: &[] };
        let sigs = parse(&[B26_INPUT.as_bytes()], &[B26_SIG.as_bytes()]).unwrap();
        assert_eq!(sigs.len(), 1);
        let base = signature_base(&sigs[0].components, &sigs[0].params, &msg).unwrap();
        assert_eq!(
            String::from_utf8(base).unwrap(),
            "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\"@method\": POST\n\"@path\": /foo\n\"@authority\": example.com\n\
             \"content-type\": application/json\n\"content-length\": 18\n\"@signature-params\": (\"date\" \"@method\" \
             \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\""
        );
        let key = VerifyingKey::from_pem(ED_PUB.as_bytes()).unwrap();
        assert_eq!(verify(&sigs[0], &msg, std::slice::from_ref(&key)), Ok(0));
        // Ed25519 is deterministic: signing the same base reproduces the RFC's value.
        let signer = SigningKey::from_pem(ED_PRIV.as_bytes()).unwrap();
        let base = signature_base(&sigs[0].components, &sigs[0].params, &msg).unwrap();
        assert_eq!(signer.sign(SignatureAlgorithm::Ed25519, &base).unwrap(), sigs[0].signature);
        // One changed covered value breaks it.
        let mut changed = b26_request();
        *changed.iter_mut().find(|f| f.name == b"content-length").unwrap() = HeaderField::new("content-length", "19");
        let msg = Message { request: &changed, response: None, trailers: &[] };
        assert_eq!(verify(&sigs[0], &msg, &[key]), Err(Rfc9421VerifyError::BadSignature));
    }

    #[test]
    fn derived_components_and_errors() {
        let request = b26_request();
        let response =
            vec![HeaderField::new(":status", "200"), HeaderField::new("x", " a "), HeaderField::new("x", "b")];
        let trailers = vec![HeaderField::new("repr-digest", "sha-256=:AA==:")];
        let msg = Message { request: &request, response: Some(&response), trailers: &trailers };
        let comps = [
            component("@method", &["req"]),
            component("@target-uri", &["req"]),
            component("@query", &[]),
            component("@status", &[]),
            component("x", &[]),
            component("repr-digest", &["tr"]),
            component("date", &["req"]),
        ];
        let base = signature_base(&comps, &vec![], &msg).unwrap();
        assert_eq!(
            String::from_utf8(base).unwrap(),
            "\"@method\";req: POST\n\"@target-uri\";req: https://example.com/foo?param=Value&Pet=dog\n\
             \"@query\": ?param=Value&Pet=dog\n\"@status\": 200\n\"x\": a, b\n\"repr-digest\";tr: sha-256=:AA==:\n\
             \"date\";req: Tue, 20 Apr 2021 02:07:55 GMT\n\"@signature-params\": (\"@method\";req \"@target-uri\";req \
             \"@query\" \"@status\" \"x\" \"repr-digest\";tr \"date\";req)"
        );
        let err = |c: Item| signature_base(&[c], &vec![], &msg).unwrap_err();
        assert_eq!(err(component("y", &[])), ComponentError::Missing("\"y\"".into()));
        assert_eq!(err(component("x", &["sf"])), ComponentError::Unsupported("\"x\";sf".into()));
        assert_eq!(err(component("@query-param", &[])), ComponentError::Unsupported("\"@query-param\"".into()));
        assert_eq!(err(component("X", &[])), ComponentError::Unsupported("\"X\"".into()));
        assert_eq!(
            signature_base(&[component("x", &[]), component("x", &[])], &vec![], &msg),
            Err(ComponentError::Duplicate("\"x\"".into()))
        );
        assert_eq!(parse(&[b"a=1"], &[b"a=:AA==:"]), Err(Rfc9421ParseError::BadInput("a".into())));
        assert_eq!(
            parse(&[b"a=();created=\"x\""], &[b"a=:AA==:"]),
            Err(Rfc9421ParseError::BadParameter { label: "a".into(), name: "created".into() })
        );
        assert_eq!(parse(&[b"a=()"], &[b"b=:AA==:"]), Err(Rfc9421ParseError::MissingSignature("a".into())));
        assert_eq!(parse(&[b"a=()"], &[b"a=1"]), Err(Rfc9421ParseError::BadSignature("a".into())));
        assert!(matches!(parse(&[b"a=("], &[b""]), Err(Rfc9421ParseError::Sf { field: "signature-input", .. })));
        // Two lines make one dictionary.
        let two = parse(&[b"a=()", b"b=()"], &[b"b=:AA==:, a=:AA==:"]).unwrap();
        assert_eq!(two.iter().map(|s| s.label.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(
            algorithms_for(Some("hmac-sha512"), KeyType::Rsa),
            Err(Rfc9421VerifyError::UnsupportedAlgorithm("hmac-sha512".into()))
        );
        // A known algorithm for another key type: no algorithm to try with this key.
        assert_eq!(algorithms_for(Some("hmac-sha256"), KeyType::Rsa), Ok(vec![]));
        assert_eq!(algorithms_for(Some("rsa-pss-sha512"), KeyType::RsaPss), Ok(vec![SignatureAlgorithm::RsaPssSha512]));
        assert_eq!(algorithms_for(Some("rsa-v1_5-sha256"), KeyType::RsaPss), Ok(vec![]));
        assert_eq!(algorithms_for(None, KeyType::HmacSha256), Ok(vec![SignatureAlgorithm::HmacSha256]));
    }
}

#[cfg(test)]
#[path = "rfc9421_vectors.rs"]
mod vectors;
