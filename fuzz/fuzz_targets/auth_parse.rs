//! The parsers of `h3m_proto::auth` on untrusted input: PEM and base64, the DER
//! walker and key loading (public keys, certificates, PKCS#8, PKCS#1, SEC 1),
//! cavage `signature` headers and their signing strings, RFC 9421
//! `signature-input` / `signature` and their signature bases, structured-field
//! dictionaries, digest fields, HTTP dates, and the whole push check.
//!
//! The whole input is tried as each format (a PEM text, DER bytes, a header
//! value); for RFC 9421 it is split at the first newline into the
//! `signature-input` and `signature` values. Nothing may panic, and:
//! base64 decodes what it encodes; a DER SubjectPublicKeyInfo that loads
//! loads to the same key again; a cavage header that parses has a non-empty
//! name list; no signature over fuzz input verifies against the fixed key (it
//! was not made with it), so the push check never accepts.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use h3m_proto::auth::{self, Freshness, Push, VerifyingKey, cavage, der, digest, pem, rfc9421, sf};
use h3m_proto::qpack::HeaderField;
use libfuzzer_sys::fuzz_target;

// RFC 9421 Appendix B.1.4 test-key-ed25519 (public).
const ED_PUB: &[u8] =
    b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=\n-----END PUBLIC KEY-----\n";

fuzz_target!(|data: &[u8]| {
    // base64 both ways.
    let encoded = pem::encode_base64(data);
    assert_eq!(pem::decode_base64(encoded.as_bytes()).as_deref(), Ok(data), "base64 round trip");
    let _ = pem::decode_base64(data);

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

    // Header values.
    let request = vec![
        HeaderField::new(":method", "GET"),
        HeaderField::new(":scheme", "https"),
        HeaderField::new(":authority", "localhost"),
        HeaderField::new(":path", "/a?b"),
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
    let _ = sf::parse_dictionary(data);
    let _ = digest::announced(&response);
    let _ = digest::announced_consistent(&response);
    let _ = auth::date::parse_http_date(data);

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
