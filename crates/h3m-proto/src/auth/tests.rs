//! Sign-then-verify round trips, tampering, freshness, and parsers that never
//! panic. Keys: the test keys of `interop/vectors/keys/` (see its README).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;

use super::*;

macro_rules! key_file {
    ($name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop/vectors/keys/", $name)).as_slice()
    };
}

/// (name, private key PEM, public key PEM, certificate PEM)
type KeySet = (&'static str, &'static [u8], &'static [u8], &'static [u8]);

fn key_sets() -> Vec<KeySet> {
    vec![
        ("rsa pkcs8", key_file!("rsa2048.key.pem"), key_file!("rsa2048.pub.pem"), key_file!("rsa2048.cert.pem")),
        ("rsa pkcs1", key_file!("rsa2048.pkcs1.key.pem"), key_file!("rsa2048.pub.pem"), key_file!("rsa2048.cert.pem")),
        ("ec pkcs8", key_file!("ecp256.key.pem"), key_file!("ecp256.pub.pem"), key_file!("ecp256.cert.pem")),
        ("ec sec1", key_file!("ecp256.sec1.key.pem"), key_file!("ecp256.pub.pem"), key_file!("ecp256.cert.pem")),
        ("ed25519", key_file!("ed25519.key.pem"), key_file!("ed25519.pub.pem"), key_file!("ed25519.cert.pem")),
    ]
}

const NOW: u64 = 1_795_794_119; // Fri, 27 Nov 2026 15:41:59 GMT
const BODY: &[u8] = b"hello world!\n";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
    out
}

fn request() -> Vec<HeaderField> {
    vec![
        HeaderField::new(":method", "GET"),
        HeaderField::new(":scheme", "https"),
        HeaderField::new(":authority", "localhost"),
        HeaderField::new(":path", "/hello.txt"),
    ]
}

fn response(date: SystemTime, body: &[u8]) -> Vec<HeaderField> {
    let d = crate::encoding::base64::encode(&sha256(body));
    vec![
        HeaderField::new(":status", "200"),
        HeaderField::new("content-type", "text/plain; charset=UTF-8"),
        HeaderField::new("content-length", body.len().to_string()),
        HeaderField::new("date", date::format_http_date(date)),
        HeaderField::new("digest", format!("sha-256={d}")),
        HeaderField::new("repr-digest", format!("sha-256=:{d}:")),
        HeaderField::new("connection", "close"),
    ]
}

fn signed(forms: SignatureForms, key: &[u8], at: SystemTime) -> (Vec<HeaderField>, Vec<HeaderField>) {
    let signer = PushSigner::new(SigningKey::from_pem(key).unwrap(), "test-key", forms).unwrap();
    let (mut req, mut resp) = (request(), response(at, BODY));
    assert!(signer.sign_headers(&mut req, &mut resp, at).unwrap());
    (req, resp)
}

fn check(req: &[HeaderField], resp: &[HeaderField], keys: &[VerifyingKey]) -> Result<Verified, AuthError> {
    let push = Push { request: req, response: resp, trailers: &[], body_sha256: Some(sha256(BODY)) };
    verify_push(&push, keys, Some(now()), &Freshness::default())
}

#[test]
fn every_key_and_form_round_trips_with_public_key_and_certificate() {
    for (name, private, public, cert) in key_sets() {
        let public = VerifyingKey::from_pem(public).unwrap();
        let cert = VerifyingKey::from_pem(cert).unwrap();
        assert_eq!(public, cert, "{name}: the certificate holds the public key");
        assert_eq!(SigningKey::from_pem(private).unwrap().verifying_key(), public, "{name}");
        for forms in [SignatureForms::Cavage, SignatureForms::Rfc9421, SignatureForms::Both] {
            let (req, resp) = signed(forms, private, now());
            for key in [&public, &cert] {
                let v =
                    check(&req, &resp, std::slice::from_ref(key)).unwrap_or_else(|e| panic!("{name} {forms:?}: {e}"));
                let scheme = if forms == SignatureForms::Rfc9421 { Scheme::Rfc9421 } else { Scheme::Cavage };
                assert_eq!(v.scheme, scheme, "{name} {forms:?}");
                assert_eq!(v.promise_signed, forms != SignatureForms::Rfc9421, "{name} {forms:?}");
                assert_eq!(v.signed_at, now());
            }
            // The key is found among others, whatever their order.
            let other = VerifyingKey::from_pem(key_file!("other-ed25519.pub.pem")).unwrap();
            let rsa = VerifyingKey::from_pem(key_file!("rsa2048.pub.pem")).unwrap();
            let v = check(&req, &resp, &[other.clone(), rsa, public.clone()]).unwrap();
            assert!(v.key >= 1, "{name}");
            // Nobody else's key verifies it.
            let err = check(&req, &resp, &[other]).unwrap_err();
            let want = if public.key_type() == KeyType::Ed25519 {
                AuthError::BadSignature
            } else {
                let alg = match (forms, public.key_type()) {
                    (SignatureForms::Rfc9421, KeyType::Rsa) => "rsa-v1_5-sha256",
                    (SignatureForms::Rfc9421, _) => "ecdsa-p256-sha256",
                    (_, KeyType::Rsa) => "rsa-sha256",
                    _ => "ec-sha256",
                };
                AuthError::NoKeyForAlgorithm(alg.into())
            };
            assert_eq!(err, want, "{name} {forms:?}");
        }
    }
}

#[test]
fn nghq_header_forms_are_written() {
    let (req, resp) = signed(SignatureForms::Both, key_file!("rsa2048.key.pem"), now());
    let get = |h: &[HeaderField], n: &str| -> Vec<String> {
        h.iter().filter(|f| f.name == n.as_bytes()).map(|f| String::from_utf8(f.value.clone()).unwrap()).collect()
    };
    let promise = get(&req, "signature");
    assert_eq!(promise.len(), 1);
    assert!(
        promise[0].starts_with(
            "keyId=\"test-key\",algorithm=rsa-sha256,headers=\"(request-target) :scheme :authority\",signature=\""
        ),
        "{}",
        promise[0]
    );
    let sigs = get(&resp, "signature");
    assert_eq!(sigs.len(), 2);
    assert!(sigs[0].contains("headers=\"(request-target) date content-type digest\""), "{}", sigs[0]);
    assert!(sigs[1].starts_with("sig1=:") && sigs[1].ends_with(':'), "{}", sigs[1]);
    assert_eq!(
        get(&resp, "signature-input"),
        [format!(
            "sig1=(\"@method\";req \"@path\";req \"@authority\";req \"@status\" \"content-type\" \"content-length\" \
             \"date\" \"repr-digest\");created={NOW};keyid=\"test-key\";alg=\"rsa-v1_5-sha256\""
        )]
    );
    // The signatures go before `connection: close`, like nghq's.
    assert_eq!(resp.last().unwrap().name, b"connection");
}

#[test]
fn tampering_with_any_signed_value_fails() {
    let ed = VerifyingKey::from_pem(key_file!("ed25519.pub.pem")).unwrap();
    for forms in [SignatureForms::Cavage, SignatureForms::Rfc9421] {
        let (req, resp) = signed(forms, key_file!("ed25519.key.pem"), now());
        // Response fields covered by the form.
        let covered: &[&str] = match forms {
            SignatureForms::Cavage => &["date", "content-type", "digest"],
            _ => &[":status", "content-type", "content-length", "date", "repr-digest"],
        };
        for name in covered {
            let mut r = resp.clone();
            let f = r.iter_mut().find(|f| f.name == name.as_bytes()).unwrap();
            let last = f.value.len() - 1;
            f.value[last] ^= 1;
            assert_eq!(check(&req, &r, std::slice::from_ref(&ed)), Err(AuthError::BadSignature), "{forms:?} {name}");
        }
        // The path, method and authority of the promise.
        for name in [":path", ":method", ":authority"] {
            let mut q = req.clone();
            q.iter_mut().find(|f| f.name == name.as_bytes()).unwrap().value.push(b'x');
            let want = match (forms, name) {
                (SignatureForms::Cavage, ":authority") => AuthError::Promise(Box::new(AuthError::BadSignature)),
                _ => AuthError::BadSignature,
            };
            assert_eq!(check(&q, &resp, std::slice::from_ref(&ed)), Err(want), "{forms:?} {name}");
        }
        // A body other than the signed digest says.
        let push = Push { request: &req, response: &resp, trailers: &[], body_sha256: Some(sha256(b"forged")) };
        assert_eq!(
            verify_push(&push, std::slice::from_ref(&ed), Some(now()), &Freshness::default()),
            Err(AuthError::DigestMismatch),
            "{forms:?}"
        );
        // A response with the signed fields removed.
        let stripped: Vec<HeaderField> =
            resp.iter().filter(|f| f.name != b"signature" && f.name != b"signature-input").cloned().collect();
        assert_eq!(check(&req, &stripped, std::slice::from_ref(&ed)), Err(AuthError::Unsigned));
        let mut no_date = resp.clone();
        no_date.retain(|f| f.name != b"date");
        assert_eq!(
            check(&req, &no_date, std::slice::from_ref(&ed)),
            Err(AuthError::MissingHeader(match forms {
                SignatureForms::Cavage => "date".into(),
                _ => "\"date\"".into(),
            }))
        );
    }
    // The promise's own signature, tampered.
    let (mut req, resp) = signed(SignatureForms::Cavage, key_file!("ed25519.key.pem"), now());
    req.iter_mut().find(|f| f.name == b":scheme").unwrap().value = b"http".to_vec();
    assert_eq!(check(&req, &resp, &[ed]), Err(AuthError::Promise(Box::new(AuthError::BadSignature))));
}

#[test]
fn freshness_window() {
    let ed = VerifyingKey::from_pem(key_file!("ed25519.pub.pem")).unwrap();
    for forms in [SignatureForms::Cavage, SignatureForms::Rfc9421] {
        let at = |secs: i64| UNIX_EPOCH + Duration::from_secs((NOW as i64 + secs) as u64);
        for (offset, ok) in [(0, true), (-300, true), (-301, false), (60, true), (61, false)] {
            let (req, resp) = signed(forms, key_file!("ed25519.key.pem"), at(offset));
            let got = check(&req, &resp, std::slice::from_ref(&ed));
            match (ok, offset < 0) {
                (true, _) => assert!(got.is_ok(), "{forms:?} {offset}: {got:?}"),
                (false, true) => assert_eq!(
                    got,
                    Err(AuthError::Stale { date: date::format_http_date(at(offset)), max_age: 300 }),
                    "{forms:?} {offset}"
                ),
                (false, false) => assert_eq!(
                    got,
                    Err(AuthError::FromTheFuture { date: date::format_http_date(at(offset)), max_skew: 60 }),
                    "{forms:?} {offset}"
                ),
            }
        }
        // Without `now`, no freshness check.
        let (req, resp) = signed(forms, key_file!("ed25519.key.pem"), at(-100_000));
        let push = Push { request: &req, response: &resp, trailers: &[], body_sha256: Some(sha256(BODY)) };
        assert!(verify_push(&push, std::slice::from_ref(&ed), None, &Freshness::default()).is_ok());
        let window = Freshness { max_age: Duration::from_secs(200_000), max_skew: Duration::ZERO };
        assert!(verify_push(&push, std::slice::from_ref(&ed), Some(now()), &window).is_ok());
    }
    assert_eq!(
        check_freshness(
            now(),
            now() + Duration::from_secs(2),
            &Freshness { max_age: Duration::from_secs(1), max_skew: Duration::ZERO }
        ),
        Err(AuthError::Stale { date: "Fri, 27 Nov 2026 15:41:59 GMT".into(), max_age: 1 })
    );
}

#[test]
fn coverage_rules() {
    let key = SigningKey::from_pem(key_file!("ed25519.key.pem")).unwrap();
    let ed = [key.verifying_key()];
    let req = request();
    let resp = response(now(), BODY);
    let sign = |names: &[&str], created: Option<u64>| {
        let mut r = resp.clone();
        r.push(cavage::sign(&key, "k", names, created, &req, &[&resp]).unwrap());
        r
    };
    let c = |r: &[HeaderField]| check(&req, r, &ed);
    assert_eq!(c(&sign(&["date", "digest"], None)), Err(AuthError::PathNotCovered));
    assert_eq!(c(&sign(&["(request-target)", "date"], None)), Err(AuthError::DigestNotCovered));
    assert_eq!(c(&sign(&["(request-target)", "digest"], None)), Err(AuthError::DateNotCovered));
    assert!(c(&sign(&["(request-target)", "repr-digest", "(created)"], Some(NOW))).is_ok());
    // A digest field without SHA-256 does not bind the body.
    let mut md5 = resp.clone();
    md5.retain(|f| f.name != b"digest" && f.name != b"repr-digest");
    md5.push(HeaderField::new("digest", "md5=abc"));
    let mut signed_md5 = md5.clone();
    signed_md5.push(cavage::sign(&key, "k", &["(request-target)", "date", "digest"], None, &req, &[&md5]).unwrap());
    assert_eq!(c(&signed_md5), Err(AuthError::DigestNotCovered));
    // An unreadable signed date.
    let mut bad_date = resp.clone();
    bad_date.iter_mut().find(|f| f.name == b"date").unwrap().value = b"yesterday".to_vec();
    let mut signed_bad = bad_date.clone();
    signed_bad.push(cavage::sign(&key, "k", CAVAGE_RESPONSE_HEADERS, None, &req, &[&bad_date]).unwrap());
    assert_eq!(c(&signed_bad), Err(AuthError::BadDate("yesterday".into())));
    // Without a body digest, nothing is bound.
    let r = sign(CAVAGE_RESPONSE_HEADERS, None);
    let push = Push { request: &req, response: &r, trailers: &[], body_sha256: None };
    assert_eq!(verify_push(&push, &ed, Some(now()), &Freshness::default()), Err(AuthError::DigestNotCovered));
    // Malformed and unsupported signatures.
    let mut junk = resp.clone();
    junk.push(HeaderField::new("signature", "keyId=\"k\""));
    assert_eq!(c(&junk), Err(AuthError::MalformedCavage(cavage::CavageParseError::MissingSignature)));
    let mut dsa = resp.clone();
    dsa.push(HeaderField::new("signature", "algorithm=dsa-sha256,headers=\"date\",signature=\"Zg==\""));
    assert_eq!(c(&dsa), Err(AuthError::UnsupportedAlgorithm("dsa-sha256".into())));
    let mut rfc = resp.clone();
    rfc.push(HeaderField::new("signature-input", "sig1=(\"@path\";req);created=1"));
    assert_eq!(c(&rfc), Err(AuthError::MalformedRfc9421(rfc9421::Rfc9421ParseError::MissingSignature("sig1".into()))));
    // Signed with `expires` in the past.
    let mut exp = resp.clone();
    let mut sig = cavage::sign(&key, "k", &["(request-target)", "date", "digest"], None, &req, &[&resp]).unwrap();
    // Re-sign with (expires): build it by hand.
    let names: Vec<String> =
        ["(request-target)", "date", "digest", "(expires)"].iter().map(|s| s.to_string()).collect();
    let string = cavage::signing_string(&names, None, Some(NOW - 1), &req, &[&resp], cavage::Style::Nghq).unwrap();
    let s = key.sign(SignatureAlgorithm::Ed25519, &string).unwrap();
    sig.value = format!(
        "keyId=\"k\",algorithm=ed25519,expires={},headers=\"{}\",signature=\"{}\"",
        NOW - 1,
        names.join(" "),
        crate::encoding::base64::encode(&s)
    )
    .into_bytes();
    exp.push(sig);
    assert_eq!(c(&exp), Err(AuthError::Expired("Fri, 27 Nov 2026 15:41:58 GMT".into())));
}

#[test]
fn live_resources_sign_their_trailers() {
    for forms in [SignatureForms::Cavage, SignatureForms::Rfc9421, SignatureForms::Both] {
        let signer = PushSigner::new(SigningKey::from_pem(key_file!("ecp256.key.pem")).unwrap(), "k", forms).unwrap();
        let mut req = request();
        req.push(HeaderField::new("range", "bytes=0-*"));
        let mut resp = vec![
            HeaderField::new(":status", "206"),
            HeaderField::new("content-type", "video/mp2t"),
            HeaderField::new("content-range", "bytes 0-*/*"),
            HeaderField::new("date", date::format_http_date(now() - Duration::from_secs(3600))),
        ];
        assert!(!signer.sign_headers(&mut req, &mut resp, now() - Duration::from_secs(3600)).unwrap());
        assert!(!resp.iter().any(|f| f.name == b"signature"), "{forms:?}");
        let d = crate::encoding::base64::encode(&sha256(BODY));
        let mut trailers = vec![
            HeaderField::new("digest", format!("sha-256={d}")),
            HeaderField::new("repr-digest", format!("sha-256=:{d}:")),
        ];
        signer.sign_trailers(&req, &resp, &mut trailers, now()).unwrap();
        let ec = signer.key().verifying_key();
        let push = Push { request: &req, response: &resp, trailers: &trailers, body_sha256: Some(sha256(BODY)) };
        // Fresh: the trailer signature's time is the end of the stream, not the header date.
        let v = verify_push(&push, std::slice::from_ref(&ec), Some(now()), &Freshness::default()).unwrap();
        assert_eq!(v.signed_at, now(), "{forms:?}");
        let forged = Push { body_sha256: Some(sha256(b"x")), ..push };
        assert_eq!(verify_push(&forged, &[ec], Some(now()), &Freshness::default()), Err(AuthError::DigestMismatch));
    }
}

#[test]
fn nghq_capture_signature_verifies() {
    // s01-hello-v4, push 0 (the full set is checked in interop/tests/nghq_signatures.rs).
    let cert = VerifyingKey::from_pem(include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../interop/vectors/nghq/keys/sender.pem"
    )))
    .unwrap();
    assert_eq!((cert.key_type(), cert.rsa_bits()), (KeyType::Rsa, 2048));
    let req = vec![
        HeaderField::new(":method", "GET"),
        HeaderField::new(":scheme", "https"),
        HeaderField::new(":authority", "localhost"),
        HeaderField::new(":path", "//hello.txt"),
        HeaderField::new("user-agent", "NGHQ-Example/1.0 (Linux) NGHQ/20180321 NGHQ-Server/1.0"),
        HeaderField::new(
            "signature",
            "keyId=\"sender.pem\",algorithm=rsa-sha256,headers=\"(request-target) :scheme :authority\",signature=\"hM801Vt/4RO4+f4KsfHGEAJKgI6p8Ix7WseQym+EgOQVo5TeneJKuqED8hOPccRKwLLWd5GTGa1WjKZjwZKp+KONpq6AlfYwV0jldVH6nw6qQtDITcpeVeVEmt9+TxXwbLIY7I+Y2APUUQrcvvEuvtDTcYtMOrTvYWeX7Suf1W2P6KVMqGlTedkvcdg8fB1z8r41/pD0SmHiekp2XogjQXirNhP6FTM1aPpM5neRhIV8KsIz4hDPnQOaCYiztii9hdK3487mTUiMakSGGXU/HiWV5fFctwU2pxCWcfdpREyvPBADu8Kk/SUOUvvfFRrLcabIKWiQEYZZxBES1qu+9A==\"",
        ),
    ];
    let resp = vec![
        HeaderField::new(":status", "200"),
        HeaderField::new("server", "NGHQ-Server/1.0 (GNU/Linux)"),
        HeaderField::new("date", "Fri, 27 Nov 2026 16:00:17 GMT"),
        HeaderField::new("content-type", "text/plain; charset=UTF-8"),
        HeaderField::new("digest", "sha256=7PcB9yfZ4td8SqSaxvu8yZcnisoBC93uuWHBDPVNQ1o="),
        HeaderField::new(
            "signature",
            "keyId=\"sender.pem\",algorithm=rsa-sha256,headers=\"(request-target) date content-type digest\",signature=\"Fsva2fBmyEtvSOl0CMp47LX8YG/uYHaZiAAdJt4RkV/4ehgpZsKstgfvAK5xMgGjLNENzmD5QztB12Ot0YEsEWA2l8GMIpZqEM1pwKcALmivgfJhwtC5pBikivZMJzYoRX9GSJMjoaeMXBQ3YkZqkTjRi3olXKrBFT6E0jOq8pODwDO/bJLatOZSN8XTgiW6advCbYwOWBYgpC4Z1rIaawJJJ/MdX8fFZxTxN3AtIATS1cucjS4EgSjm+83vMEdWDMst0vEy8pezLIV2ilPydh0k8UMbuNo8ob/cupB/keoVD9T7vPsE1Di9p+4ixeoN77oiqWqthYqBCEvLAjhzhg==\"",
        ),
        HeaderField::new("connection", "close"),
    ];
    let push = Push { request: &req, response: &resp, trailers: &[], body_sha256: Some(sha256(BODY)) };
    let v = verify_push(&push, std::slice::from_ref(&cert), None, &Freshness::default()).unwrap();
    assert!(v.promise_signed);
    assert_eq!(v.signed_at, date::parse_http_date(b"Fri, 27 Nov 2026 16:00:17 GMT").unwrap());
}

#[test]
fn key_loading_errors() {
    assert_eq!(VerifyingKey::from_pem(b"nothing"), Err(KeyError::Pem(pem::PemError::NoBlock)));
    assert_eq!(
        VerifyingKey::from_pem(b"-----BEGIN FOO-----\nZg==\n-----END FOO-----\n"),
        Err(KeyError::NoPublicKey("FOO".into()))
    );
    assert_eq!(
        SigningKey::from_pem(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nZg==\n-----END ENCRYPTED PRIVATE KEY-----\n")
            .unwrap_err(),
        KeyError::Encrypted
    );
    assert_eq!(
        VerifyingKey::from_pem(b"-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n"),
        Err(KeyError::Der(der::DerError::Truncated))
    );
    // A P-384 key: SPKI with secp384r1 (1.3.132.0.34).
    let mut p384 = vec![0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    p384.extend([0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00, 0x04]);
    p384.extend([0u8; 96]);
    assert_eq!(VerifyingKey::from_spki_der(&p384), Err(KeyError::UnsupportedCurve("1.3.132.0.34".into())));
    // An unknown key algorithm (DSA, 1.2.840.10040.4.1).
    let dsa = [0x30, 0x0e, 0x30, 0x09, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01, 0x03, 0x01, 0x00];
    assert_eq!(VerifyingKey::from_spki_der(&dsa), Err(KeyError::UnsupportedAlgorithm("1.2.840.10040.4.1".into())));
    // Several keys in one file are all read.
    let two = [key_file!("ed25519.pub.pem"), key_file!("rsa2048.cert.pem")].concat();
    let keys = VerifyingKey::all_from_pem(&two).unwrap();
    assert_eq!(keys.iter().map(VerifyingKey::key_type).collect::<Vec<_>>(), [KeyType::Ed25519, KeyType::Rsa]);
    assert!(matches!(
        PushSigner::new(SigningKey::from_pem(key_file!("ed25519.key.pem")).unwrap(), "a\"b", SignatureForms::Cavage),
        Err(SignPushError::BadKeyId)
    ));
    let signer =
        PushSigner::new(SigningKey::from_pem(key_file!("rsa2048.key.pem")).unwrap(), "k", SignatureForms::Both)
            .unwrap();
    let debug = format!("{signer:?}");
    assert!(debug.contains("Rsa") && debug.len() < 200, "{debug}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = pem::parse(&data);
        let _ = crate::encoding::base64::decode(&data);
        let _ = der::parse_spki(&data);
        let _ = der::certificate_spki(&data);
        let _ = der::parse_pkcs8(&data);
        let _ = der::parse_sec1(&data);
        let _ = der::rsa_modulus_bits(&data);
        let _ = VerifyingKey::from_spki_der(&data);
        let _ = VerifyingKey::from_certificate_der(&data);
        let _ = VerifyingKey::all_from_pem(&data);
        let _ = SigningKey::from_pkcs8_der(&data);
        let _ = SigningKey::from_sec1_der(&data);
        let _ = SigningKey::from_pem(&data);
        let _ = cavage::parse(&data);
        let _ = sf::parse_dictionary(&data);
        let _ = sf::parse_list(&data);
        let _ = sf::parse_item(&data);
        let _ = rfc9421::parse(&[&data], &[&data]);
        let _ = digest::announced(&[HeaderField::new("repr-digest", data.clone()), HeaderField::new("digest", data.clone())]);
        let _ = date::parse_http_date(&data);
    }

    #[test]
    fn pem_framed_der_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400), label in 0usize..5) {
        let labels = ["PUBLIC KEY", "CERTIFICATE", "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"];
        let text = format!("-----BEGIN {0}-----\n{1}\n-----END {0}-----\n", labels[label], crate::encoding::base64::encode(&data));
        let _ = VerifyingKey::all_from_pem(text.as_bytes());
        let _ = SigningKey::from_pem(text.as_bytes());
    }

    #[test]
    fn der_mutations_of_real_keys_never_panic(which in 0usize..8, at in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
        let files = [
            key_file!("rsa2048.pub.pem"), key_file!("rsa2048.cert.pem"), key_file!("ecp256.cert.pem"),
            key_file!("ed25519.cert.pem"), key_file!("ecp256.key.pem"), key_file!("ecp256.sec1.key.pem"),
            key_file!("ed25519.key.pem"), key_file!("rsa2048.pkcs1.key.pem"),
        ];
        let mut der = pem::parse(files[which]).unwrap().remove(0).der;
        let i = at % der.len();
        der[i] = byte;
        der.truncate(der.len() - cut % 8);
        let _ = VerifyingKey::from_spki_der(&der);
        let _ = VerifyingKey::from_certificate_der(&der);
        let _ = SigningKey::from_pkcs8_der(&der);
        let _ = SigningKey::from_sec1_der(&der);
        let _ = SigningKey::from_pkcs1_der(&der);
    }

    #[test]
    fn verify_push_never_panics(sig in "[ -~]{0,200}", input in "[ -~]{0,200}", date_v in "[ -~]{0,40}") {
        let ed = VerifyingKey::from_pem(key_file!("ed25519.pub.pem")).unwrap();
        let mut resp = response(now(), BODY);
        resp.push(HeaderField::new("signature", sig.clone()));
        resp.push(HeaderField::new("signature-input", input));
        resp.push(HeaderField::new("date", date_v));
        let mut req = request();
        req.push(HeaderField::new("signature", sig));
        let push = Push { request: &req, response: &resp, trailers: &resp, body_sha256: Some(sha256(BODY)) };
        let _ = verify_push(&push, &[ed], Some(now()), &Freshness::default());
    }
}
