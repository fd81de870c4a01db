//! The parsers of `h3m_proto::auth` and `h3m_proto::http` on untrusted input:
//! PEM and base64, the DER walker and key loading (public keys, certificates,
//! PKCS#8 including RSA-PSS, PKCS#1, SEC 1, HMAC secrets and their
//! `KEYID=HEX|@FILE` arguments), cavage `signature` headers and their signing
//! strings, RFC 9421 `signature-input` / `signature` and their signature
//! bases (`@query-param` included), structured-field items, lists and
//! dictionaries, digest fields, HTTP dates, the strict percent-decoder, and
//! the whole push check.
//!
//! The whole input is tried as each format (a PEM text, DER bytes, a header
//! value); for RFC 9421 it is split at the first newline into the
//! `signature-input` and `signature` values. Nothing may panic, and:
//! base64 decodes what it encodes; a structured field that parses serializes
//! and parses back to itself; a DER SubjectPublicKeyInfo that loads
//! loads to the same key again; a cavage header that parses has a non-empty
//! name list; no signature over fuzz input verifies against the fixed key (it
//! was not made with it), so the push check never accepts.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use h3m_proto::auth::{self, Freshness, Push, VerifyingKey, cavage, der, keys, pem, rfc9421};
use h3m_proto::encoding::base64;
use h3m_proto::http::{digest, path, sf};
use h3m_proto::qpack::HeaderField;
use libfuzzer_sys::fuzz_target;

// RFC 9421 Appendix B.1.4 test-key-ed25519 (public).
const ED_PUB: &[u8] =
    b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=\n-----END PUBLIC KEY-----\n";

fuzz_target!(|data: &[u8]| {
    // base64 both ways.
    let encoded = base64::encode(data);
    assert_eq!(base64::decode(encoded.as_bytes()).as_deref(), Ok(data), "base64 round trip");
    let _ = base64::decode(data);
    if let Err(e) = path::percent_decode(data) {
        assert_eq!(data[e.at], b'%', "percent error at a %");
    }

    // PEM, and DER inside each block.
    if let Ok(blocks) = pem::parse(data) {
        for b in &blocks {
            let _ = der::parse_spki(&b.der);
            let _ = der::certificate_spki(&b.der);
        }
    }
    let _ = VerifyingKey::all_from_pem(data);
    let _ = auth::SigningKey::from_pem(data);

    // DER as it is.
    let _ = der::parse_pkcs8(data);
    let _ = der::parse_sec1(data);
    let _ = der::rsa_modulus_bits(data);
    let _ = der::certificate_spki(data);
    let _ = der::parse_spki(data);
    if let Ok(key) = VerifyingKey::from_spki_der(data) {
        assert_eq!(VerifyingKey::from_spki_der(data).as_ref(), Ok(&key), "SPKI loads the same twice");
    }
    let _ = VerifyingKey::from_certificate_der(data);
    let _ = VerifyingKey::from_pkcs1_der(data);
    let _ = auth::SigningKey::from_pkcs8_der(data);
    let _ = auth::SigningKey::from_pkcs1_der(data);
    let _ = auth::SigningKey::from_sec1_der(data);
    let _ = VerifyingKey::hmac_sha256(data);
    let _ = auth::SigningKey::hmac_sha256(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = keys::parse_hmac_arg(text);
    }

    // Header values.
    let request = vec![
        HeaderField::new(":method", "GET"),
        HeaderField::new(":scheme", "https"),
        HeaderField::new(":authority", "localhost"),
        HeaderField::new(":path", "/a?b=1&c=%zz&b"),
        HeaderField::new("signature", data.to_vec()),
    ];
    let response = vec![
        HeaderField::new(":status", "200"),
        HeaderField::new("date", data.to_vec()),
        HeaderField::new("digest", data.to_vec()),
        HeaderField::new("repr-digest", data.to_vec()),
        HeaderField::new("content-digest", data.to_vec()),
        HeaderField::new("signature", data.to_vec()),
    ];
    let key = VerifyingKey::from_pem(ED_PUB).expect("constant key");
    if let Ok(sig) = cavage::parse(data) {
        assert!(!sig.headers.is_empty());
        for style in [cavage::Style::Nghq, cavage::Style::Cavage12] {
            let _ = cavage::signing_string(&sig.headers, sig.created, sig.expires, &request, &[&response], style);
        }
        assert!(cavage::verify(&sig, &request, &[&response], std::slice::from_ref(&key)).is_err());
    }
    if let Ok(d) = sf::parse_dictionary(data) {
        let text = sf::serialize_dictionary(&d).expect("a parsed dictionary serializes");
        assert_eq!(sf::parse_dictionary(text.as_bytes()), Ok(d), "dictionary round trip");
    }
    if let Ok(l) = sf::parse_list(data) {
        let text = sf::serialize_list(&l).expect("a parsed list serializes");
        assert_eq!(sf::parse_list(text.as_bytes()), Ok(l), "list round trip");
    }
    if let Ok(item) = sf::parse_item(data) {
        let mut text = String::new();
        sf::serialize_item(&item, &mut text).expect("a parsed item serializes");
        assert_eq!(sf::parse_item(text.as_bytes()), Ok(item), "item round trip");
    }
    let _ = digest::announced(&response);
    let _ = digest::announced_consistent(&response);
    let _ = h3m_proto::http::date::parse_http_date(data);

    let (input, signature) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b""[..]),
    };
    if let Ok(sigs) = rfc9421::parse(&[input], &[signature]) {
        let msg = rfc9421::Message { request: &request, response: Some(&response), trailers: &response };
        for sig in &sigs {
            let _ = rfc9421::signature_base(&sig.components, &sig.params, &msg);
            assert!(rfc9421::verify(sig, &msg, std::slice::from_ref(&key)).is_err());
        }
    }

    // The whole check, the fuzz input as every signature-related field.
    let mut response = response;
    response.push(HeaderField::new("signature-input", input.to_vec()));
    response.push(HeaderField::new("signature", signature.to_vec()));
    let push = Push { request: &request, response: &response, trailers: &response, body_sha256: Some([7; 32]) };
    let now = UNIX_EPOCH + Duration::from_secs(1_795_794_119);
    assert!(auth::verify_push(&push, &[key], Some(now), &Freshness::default()).is_err());
});
