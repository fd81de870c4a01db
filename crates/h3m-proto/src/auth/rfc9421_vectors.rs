//! RFC 9421 Appendix B known answers (B.2.1 to B.2.5; B.2.6 is in the
//! parent module's tests), `@query-param` (§2.2.8), HMAC-SHA256 shared
//! secrets and RSA-PSS private keys, with their negative cases.

use super::*;
use crate::auth::keys::{self, HmacSecretArg, KeyError, MIN_HMAC_SECRET_LEN, VerifyError, parse_hmac_arg};
use crate::auth::{AuthError, Freshness, Push, PushSigner, Scheme, SignPushError, SignatureForms, cavage, verify_push};

/// B.1.2 `test-key-rsa-pss`: the public key (SPKI, rsaEncryption).
const PSS_PUB: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAr4tmm3r20Wd/PbqvP1s2
+QEtvpuRaV8Yq40gjUR8y2Rjxa6dpG2GXHbPfvMs8ct+Lh1GH45x28Rw3Ry53mm+
oAXjyQ86OnDkZ5N8lYbggD4O3w6M6pAvLkhk95AndTrifbIFPNU8PPMO7OyrFAHq
gDsznjPFmTOtCEcN2Z1FpWgchwuYLPL+Wokqltd11nqqzi+bJ9cvSKADYdUAAN5W
Utzdpiy6LbTgSxP7ociU4Tn0g5I6aDZJ7A8Lzo0KSyZYoA485mqcO0GVAdVw9lq4
aOT9v6d+nb4bnNkQVklLQ3fVAvJm+xdDOp9LCNCN48V2pnDOkFV6+U9nV5oyc6XI
2wIDAQAB
-----END PUBLIC KEY-----
";

/// B.1.2 `test-key-rsa-pss`: the private key, PKCS#8 with the
/// id-RSASSA-PSS algorithm (no parameters).
const PSS_PRIV: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADALBgkqhkiG9w0BAQoEggSqMIIEpgIBAAKCAQEAr4tmm3r20Wd/Pbqv
P1s2+QEtvpuRaV8Yq40gjUR8y2Rjxa6dpG2GXHbPfvMs8ct+Lh1GH45x28Rw3Ry5
3mm+oAXjyQ86OnDkZ5N8lYbggD4O3w6M6pAvLkhk95AndTrifbIFPNU8PPMO7Oyr
FAHqgDsznjPFmTOtCEcN2Z1FpWgchwuYLPL+Wokqltd11nqqzi+bJ9cvSKADYdUA
AN5WUtzdpiy6LbTgSxP7ociU4Tn0g5I6aDZJ7A8Lzo0KSyZYoA485mqcO0GVAdVw
9lq4aOT9v6d+nb4bnNkQVklLQ3fVAvJm+xdDOp9LCNCN48V2pnDOkFV6+U9nV5oy
c6XI2wIDAQABAoIBAQCUB8ip+kJiiZVKF8AqfB/aUP0jTAqOQewK1kKJ/iQCXBCq
pbo360gvdt05H5VZ/RDVkEgO2k73VSsbulqezKs8RFs2tEmU+JgTI9MeQJPWcP6X
aKy6LIYs0E2cWgp8GADgoBs8llBq0UhX0KffglIeek3n7Z6Gt4YFge2TAcW2WbN4
XfK7lupFyo6HHyWRiYHMMARQXLJeOSdTn5aMBP0PO4bQyk5ORxTUSeOciPJUFktQ
HkvGbym7KryEfwH8Tks0L7WhzyP60PL3xS9FNOJi9m+zztwYIXGDQuKM2GDsITeD
2mI2oHoPMyAD0wdI7BwSVW18p1h+jgfc4dlexKYRAoGBAOVfuiEiOchGghV5vn5N
RDNscAFnpHj1QgMr6/UG05RTgmcLfVsI1I4bSkbrIuVKviGGf7atlkROALOG/xRx
DLadgBEeNyHL5lz6ihQaFJLVQ0u3U4SB67J0YtVO3R6lXcIjBDHuY8SjYJ7Ci6Z6
vuDcoaEujnlrtUhaMxvSfcUJAoGBAMPsCHXte1uWNAqYad2WdLjPDlKtQJK1diCm
rqmB2g8QE99hDOHItjDBEdpyFBKOIP+NpVtM2KLhRajjcL9Ph8jrID6XUqikQuVi
4J9FV2m42jXMuioTT13idAILanYg8D3idvy/3isDVkON0X3UAVKrgMEne0hJpkPL
FYqgetvDAoGBAKLQ6JZMbSe0pPIJkSamQhsehgL5Rs51iX4m1z7+sYFAJfhvN3Q/
OGIHDRp6HjMUcxHpHw7U+S1TETxePwKLnLKj6hw8jnX2/nZRgWHzgVcY+sPsReRx
NJVf+Cfh6yOtznfX00p+JWOXdSY8glSSHJwRAMog+hFGW1AYdt7w80XBAoGBAImR
NUugqapgaEA8TrFxkJmngXYaAqpA0iYRA7kv3S4QavPBUGtFJHBNULzitydkNtVZ
3w6hgce0h9YThTo/nKc+OZDZbgfN9s7cQ75x0PQCAO4fx2P91Q+mDzDUVTeG30mE
t2m3S0dGe47JiJxifV9P3wNBNrZGSIF3mrORBVNDAoGBAI0QKn2Iv7Sgo4T/XjND
dl2kZTXqGAk8dOhpUiw/HdM3OGWbhHj2NdCzBliOmPyQtAr770GITWvbAI+IRYyF
S7Fnk6ZVVVHsxjtaHy1uJGFlaZzKR4AGNaUTOJMs6NadzCmGPAxNQQOCqoUjn4XR
rOjr9w349JooGXhOxbu8nOxX
-----END PRIVATE KEY-----
";

/// B.1.3 `test-key-ecc-p256`: the public key.
const ECC_PUB: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqIVYZVLCrPZHGHjP17CTW0/+D9Lf
w0EkjqF7xB4FivAxzic30tMM4GF+hR6Dxh71Z50VGGdldkkDXZCnTNnoXQ==
-----END PUBLIC KEY-----
";

/// B.1.5 `test-shared-secret`, base64.
const SHARED_SECRET: &str = "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";

const REQUEST_DIGEST: &str =
    "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";

/// B.2's test-request, as an HTTP/3 header list.
pub(super) fn test_request() -> Vec<HeaderField> {
    vec![
        HeaderField::new(":method", "POST"),
        HeaderField::new(":scheme", "https"),
        HeaderField::new(":authority", "example.com"),
        HeaderField::new(":path", "/foo?param=Value&Pet=dog"),
        HeaderField::new("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
        HeaderField::new("content-type", "application/json"),
        HeaderField::new("content-digest", REQUEST_DIGEST),
        HeaderField::new("content-length", "18"),
    ]
}

/// B.2's test-response.
fn test_response() -> Vec<HeaderField> {
    vec![
        HeaderField::new(":status", "200"),
        HeaderField::new("date", "Tue, 20 Apr 2021 02:07:56 GMT"),
        HeaderField::new("content-type", "application/json"),
        HeaderField::new(
            "content-digest",
            "sha-512=:mEWXIS7MaLRuGgxOBdODa3xqM1XdEvxoYhvlCFJ41QJgJc4GTsPp29l5oGX69wWdXymyU0rjJuahq4l5aGgfLQ==:",
        ),
        HeaderField::new("content-length", "23"),
    ]
}

fn secret() -> Vec<u8> {
    crate::encoding::base64::decode(SHARED_SECRET.as_bytes()).unwrap()
}

fn one(input: &str, signature: &str) -> Rfc9421Signature {
    let mut sigs = parse(&[input.as_bytes()], &[signature.as_bytes()]).unwrap();
    assert_eq!(sigs.len(), 1);
    sigs.remove(0)
}

fn base_text(sig: &Rfc9421Signature, msg: &Message<'_>) -> String {
    String::from_utf8(signature_base(&sig.components, &sig.params, msg).unwrap()).unwrap()
}

/// B.2.1, B.2.2 and B.2.3: RSASSA-PSS (randomised, so verify only), with
/// the published public key and with the public half of the PSS private key.
#[test]
fn b21_b22_b23_rsa_pss_verify() {
    let request = test_request();
    let msg = Message { request: &request, response: None, trailers: &[] };
    let public = VerifyingKey::from_pem(PSS_PUB.as_bytes()).unwrap();
    let private = SigningKey::from_pem(PSS_PRIV.as_bytes()).unwrap();
    assert_eq!(private.key_type(), KeyType::RsaPss);
    let pss_only = private.verifying_key();
    assert_eq!((public.key_type(), pss_only.key_type(), pss_only.rsa_bits()), (KeyType::Rsa, KeyType::RsaPss, 2048));
    let vectors = [
        (
            "sig-b21=();created=1618884473;keyid=\"test-key-rsa-pss\";nonce=\"b3k2pp5k7z-50gnwp.yemd\"",
            "sig-b21=:d2pmTvmbncD3xQm8E9ZV2828BjQWGgiwAaw5bAkgibUopemLJcWDy/lkbbHAve4cRAtx31Iq786U7it++wgGxbtRxf8Udx7zFZsckzXaJMkA7ChG52eSkFxykJeNqsrWH5S+oxNFlD4dzVuwe8DhTSja8xxbR/Z2cOGdCbzR72rgFWhzx2VjBqJzsPLMIQKhO4DGezXehhWwE56YCE+O6c0mKZsfxVrogUvA4HELjVKWmAvtl6UnCh8jYzuVG5WSb/QEVPnP5TmcAnLH1g+s++v6d4s8m0gCw1fV5/SITLq9mhho8K3+7EPYTU8IU1bLhdxO5Nyt8C8ssinQ98Xw9Q==:",
            "\"@signature-params\": ();created=1618884473;keyid=\"test-key-rsa-pss\";nonce=\"b3k2pp5k7z-50gnwp.yemd\""
                .to_owned(),
        ),
        (
            "sig-b22=(\"@authority\" \"content-digest\" \"@query-param\";name=\"Pet\");created=1618884473;keyid=\"test-key-rsa-pss\";tag=\"header-example\"",
            "sig-b22=:LjbtqUbfmvjj5C5kr1Ugj4PmLYvx9wVjZvD9GsTT4F7GrcQEdJzgI9qHxICagShLRiLMlAJjtq6N4CDfKtjvuJyE5qH7KT8UCMkSowOB4+ECxCmT8rtAmj/0PIXxi0A0nxKyB09RNrCQibbUjsLS/2YyFYXEu4TRJQzRw1rLEuEfY17SARYhpTlaqwZVtR8NV7+4UKkjqpcAoFqWFQh62s7Cl+H2fjBSpqfZUJcsIk4N6wiKYd4je2U/lankenQ99PZfB4jY3I5rSV2DSBVkSFsURIjYErOs0tFTQosMTAoxk//0RoKUqiYY8Bh0aaUEb0rQl3/XaVe4bXTugEjHSw==:",
            format!(
                "\"@authority\": example.com\n\"content-digest\": {REQUEST_DIGEST}\n\"@query-param\";name=\"Pet\": dog\n\
                 \"@signature-params\": (\"@authority\" \"content-digest\" \"@query-param\";name=\"Pet\")\
                 ;created=1618884473;keyid=\"test-key-rsa-pss\";tag=\"header-example\""
            ),
        ),
        (
            "sig-b23=(\"date\" \"@method\" \"@path\" \"@query\" \"@authority\" \"content-type\" \"content-digest\" \"content-length\");created=1618884473;keyid=\"test-key-rsa-pss\"",
            "sig-b23=:bbN8oArOxYoyylQQUU6QYwrTuaxLwjAC9fbY2F6SVWvh0yBiMIRGOnMYwZ/5MR6fb0Kh1rIRASVxFkeGt683+qRpRRU5p2voTp768ZrCUb38K0fUxN0O0iC59DzYx8DFll5GmydPxSmme9v6ULbMFkl+V5B1TP/yPViV7KsLNmvKiLJH1pFkh/aYA2HXXZzNBXmIkoQoLd7YfW91kE9o/CCoC1xMy7JA1ipwvKvfrs65ldmlu9bpG6A9BmzhuzF8Eim5f8ui9eH8LZH896+QIF61ka39VBrohr9iyMUJpvRX2Zbhl5ZJzSRxpJyoEZAFL2FUo5fTIztsDZKEgM4cUA==:",
            format!(
                "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\"@method\": POST\n\"@path\": /foo\n\"@query\": ?param=Value&Pet=dog\n\
                 \"@authority\": example.com\n\"content-type\": application/json\n\"content-digest\": {REQUEST_DIGEST}\n\
                 \"content-length\": 18\n\"@signature-params\": (\"date\" \"@method\" \"@path\" \"@query\" \"@authority\" \
                 \"content-type\" \"content-digest\" \"content-length\");created=1618884473;keyid=\"test-key-rsa-pss\""
            ),
        ),
    ];
    for (input, signature, base) in &vectors {
        let sig = one(input, signature);
        assert_eq!(&base_text(&sig, &msg), base, "{}", sig.label);
        // No `alg`: an RSA key tries PKCS#1 v1.5, then PSS.
        assert_eq!(verify(&sig, &msg, std::slice::from_ref(&public)), Ok(0), "{}", sig.label);
        assert_eq!(verify(&sig, &msg, std::slice::from_ref(&pss_only)), Ok(0), "{}", sig.label);
        // With `alg` named, only that algorithm.
        let mut named = sig.clone();
        named.params.push(("alg".into(), BareItem::String("rsa-v1_5-sha256".into())));
        assert_eq!(verify(&named, &msg, std::slice::from_ref(&public)), Err(Rfc9421VerifyError::BadSignature));
        assert_eq!(
            verify(&named, &msg, std::slice::from_ref(&pss_only)),
            Err(Rfc9421VerifyError::NoKeyForAlgorithm("rsa-v1_5-sha256".into()))
        );
        // A changed covered value (or, for B.2.1, any signature parameter) breaks it.
        let mut changed = sig.clone();
        changed.params[0] = ("created".into(), BareItem::Integer(1_618_884_474));
        assert_eq!(verify(&changed, &msg, std::slice::from_ref(&public)), Err(Rfc9421VerifyError::BadSignature));
    }
    // B.2.2 covers the `Pet` query parameter: another value breaks it.
    let sig = one(vectors[1].0, vectors[1].1);
    let mut other = test_request();
    other[3] = HeaderField::new(":path", "/foo?param=Value&Pet=cat");
    let msg = Message { request: &other, response: None, trailers: &[] };
    assert_eq!(verify(&sig, &msg, &[public]), Err(Rfc9421VerifyError::BadSignature));
}

/// B.2.4: ECDSA P-256 over a response.
#[test]
fn b24_ecdsa_response() {
    let response = test_response();
    let msg = Message { request: &[], response: Some(&response), trailers: &[] };
    let sig = one(
        "sig-b24=(\"@status\" \"content-type\" \"content-digest\" \"content-length\");created=1618884473;keyid=\"test-key-ecc-p256\"",
        "sig-b24=:wNmSUAhwb5LxtOtOpNa6W5xj067m5hFrj0XQ4fvpaCLx0NKocgPquLgyahnzDnDAUy5eCdlYUEkLIj+32oiasw==:",
    );
    let key = VerifyingKey::from_pem(ECC_PUB.as_bytes()).unwrap();
    assert_eq!(verify(&sig, &msg, std::slice::from_ref(&key)), Ok(0));
    let mut tampered = response.clone();
    tampered[0] = HeaderField::new(":status", "201");
    let msg = Message { request: &[], response: Some(&tampered), trailers: &[] };
    assert_eq!(verify(&sig, &msg, &[key]), Err(Rfc9421VerifyError::BadSignature));
}

const B25_INPUT: &str =
    "sig-b25=(\"date\" \"@authority\" \"content-type\");created=1618884473;keyid=\"test-shared-secret\"";
const B25_SIG: &str = "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:";

/// B.2.5: HMAC-SHA256 with the test shared secret, verified and (HMAC is
/// deterministic) reproduced byte for byte.
#[test]
fn b25_hmac_known_answer() {
    let request = test_request();
    let msg = Message { request: &request, response: None, trailers: &[] };
    let sig = one(B25_INPUT, B25_SIG);
    assert_eq!(
        base_text(&sig, &msg),
        "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\"@authority\": example.com\n\"content-type\": application/json\n\
         \"@signature-params\": (\"date\" \"@authority\" \"content-type\");created=1618884473;keyid=\"test-shared-secret\""
    );
    let verifying = VerifyingKey::hmac_sha256(&secret()).unwrap();
    assert_eq!(verifying.key_type(), KeyType::HmacSha256);
    assert_eq!(verify(&sig, &msg, std::slice::from_ref(&verifying)), Ok(0));
    let signing = SigningKey::hmac_sha256(&secret()).unwrap();
    let base = signature_base(&sig.components, &sig.params, &msg).unwrap();
    assert_eq!(signing.sign(SignatureAlgorithm::HmacSha256, &base).unwrap(), sig.signature);
    assert_eq!(signing.verifying_key(), verifying);
    // Other keys of the list are skipped, whatever their order.
    let ed = VerifyingKey::from_pem(super::tests::ED_PUB.as_bytes()).unwrap();
    assert_eq!(verify(&sig, &msg, &[ed.clone(), verifying.clone()]), Ok(1));
    // A secret differing in its last bit, a changed covered value, a truncated MAC.
    let mut other = secret();
    other[63] ^= 1;
    let other = VerifyingKey::hmac_sha256(&other).unwrap();
    assert_eq!(verify(&sig, &msg, std::slice::from_ref(&other)), Err(Rfc9421VerifyError::BadSignature));
    let mut changed = test_request();
    changed[4] = HeaderField::new("date", "Tue, 20 Apr 2021 02:07:56 GMT");
    let changed_msg = Message { request: &changed, response: None, trailers: &[] };
    assert_eq!(verify(&sig, &changed_msg, std::slice::from_ref(&verifying)), Err(Rfc9421VerifyError::BadSignature));
    let mut truncated = sig.clone();
    truncated.signature.truncate(16);
    assert_eq!(verify(&truncated, &msg, std::slice::from_ref(&verifying)), Err(Rfc9421VerifyError::BadSignature));
    // Only an HMAC key checks `hmac-sha256`; an HMAC key checks nothing else.
    let mut named = sig.clone();
    named.params.push(("alg".into(), BareItem::String("hmac-sha256".into())));
    assert_eq!(verify(&named, &msg, &[ed]), Err(Rfc9421VerifyError::NoKeyForAlgorithm("hmac-sha256".into())));
    named.params.last_mut().unwrap().1 = BareItem::String("ed25519".into());
    assert_eq!(
        verify(&named, &msg, std::slice::from_ref(&verifying)),
        Err(Rfc9421VerifyError::NoKeyForAlgorithm("ed25519".into()))
    );
    assert_eq!(
        verifying.verify(SignatureAlgorithm::Ed25519, b"m", &[0; 64]),
        Err(VerifyError::WrongKeyType { key: KeyType::HmacSha256, algorithm: SignatureAlgorithm::Ed25519 })
    );
    // Signing writes `alg="hmac-sha256"` and verifies.
    let [input, value] = sign(&signing, "test-shared-secret", "sig1", &sig.components, 1_618_884_473, &msg).unwrap();
    assert_eq!(
        input.value,
        b"sig1=(\"date\" \"@authority\" \"content-type\");created=1618884473;keyid=\"test-shared-secret\";alg=\"hmac-sha256\""
    );
    let back = parse(&[&input.value], &[&value.value]).unwrap();
    assert_eq!(verify(&back[0], &msg, &[verifying]), Ok(0));
}

#[test]
fn hmac_keys_and_arguments() {
    assert_eq!(VerifyingKey::hmac_sha256(&[7; 31]), Err(KeyError::HmacSecretTooShort(31)));
    assert_eq!(SigningKey::hmac_sha256(&[]).unwrap_err(), KeyError::HmacSecretTooShort(0));
    assert!(VerifyingKey::hmac_sha256(&[7; MIN_HMAC_SECRET_LEN]).is_ok());
    // Neither Debug nor the fingerprint shows the secret or a digest of it.
    let key = VerifyingKey::hmac_sha256(&[0xab; 32]).unwrap().with_label("k1");
    let debug = format!("{key:?} {:?}", SigningKey::hmac_sha256(&[0xab; 32]).unwrap());
    assert!(!debug.contains("171") && !debug.contains("ab, ab") && !debug.contains("sha256:"), "{debug}");
    assert_eq!(key.fingerprint(), "(shared secret)");

    let hex32 = "00".repeat(31) + "ff";
    let (id, source) = parse_hmac_arg(&format!("k1={hex32}")).unwrap();
    assert_eq!((id.as_str(), source), ("k1", HmacSecretArg::Secret([&[0u8; 31][..], &[0xff]].concat())));
    assert_eq!(parse_hmac_arg("k2=@/etc/h3m/k2.hex").unwrap().1, HmacSecretArg::File("/etc/h3m/k2.hex".into()));
    assert!(!format!("{:?}", parse_hmac_arg(&format!("k1={hex32}")).unwrap().1).contains("ff"));
    assert_eq!(parse_hmac_arg("k1=abc"), Err(KeyError::HmacHex));
    assert_eq!(parse_hmac_arg("k1=zz"), Err(KeyError::HmacHex));
    assert_eq!(parse_hmac_arg("k1"), Err(KeyError::HmacArgument));
    assert_eq!(parse_hmac_arg("=00"), Err(KeyError::HmacArgument));
    assert_eq!(parse_hmac_arg("k1="), Err(KeyError::HmacArgument));
    assert_eq!(keys::hmac_secret_from_hex(b" 0a0B\n"), Ok(vec![0x0a, 0x0b]));
    // Loading: the secret inline or read through the caller's `read`, checked.
    let no_file = |_: &std::path::Path| -> std::io::Result<Vec<u8>> { panic!("no file to read") };
    let (id, secret) = keys::load_hmac_arg(&format!("k1={hex32}"), no_file).unwrap();
    assert_eq!((id.as_str(), secret.len()), ("k1", 32));
    let (id, from_file) = keys::load_hmac_arg("k2=@dir/k2.hex", |path| {
        assert_eq!(path, std::path::Path::new("dir/k2.hex"));
        Ok(format!("{hex32}\n").into_bytes())
    })
    .unwrap();
    assert_eq!((id.as_str(), from_file), ("k2", secret));
    let err = |arg: &str, text: &'static str| {
        keys::load_hmac_arg(arg, |_| if text == "gone" { Err(std::io::Error::other("gone")) } else { Ok(text.into()) })
            .unwrap_err()
            .to_string()
    };
    assert_eq!(err("k3=00", ""), "k3: HMAC-SHA256 secret of 1 bytes (at least 32 are needed)");
    assert_eq!(err("k4=@f", "gone"), "f: gone");
    assert_eq!(err("k5=@f", "xyz"), "f: the HMAC secret is not an even number of hex digits");
    assert_eq!(err("k6=@f", "0011"), "k6: HMAC-SHA256 secret of 2 bytes (at least 32 are needed)");
    assert_eq!(err("k7", ""), "k7: expected KEYID=HEX or KEYID=@FILE (the file holding the secret in hex)");
}

/// An id-RSASSA-PSS private key signs `rsa-pss-sha512` only; an
/// rsaEncryption key signs PSS when asked.
#[test]
fn rsa_pss_private_keys_sign() {
    let request = test_request();
    let msg = Message { request: &request, response: None, trailers: &[] };
    let pss = SigningKey::from_pem(PSS_PRIV.as_bytes()).unwrap();
    let public = VerifyingKey::from_pem(PSS_PUB.as_bytes()).unwrap();
    let comps = [component("@method", &[]), component("@path", &[]), component("content-digest", &[])];
    let [input, value] = sign(&pss, "test-key-rsa-pss", "sig1", &comps, 1_618_884_473, &msg).unwrap();
    assert!(String::from_utf8(input.value.clone()).unwrap().ends_with(";alg=\"rsa-pss-sha512\""));
    let sigs = parse(&[&input.value], &[&value.value]).unwrap();
    assert_eq!(verify(&sigs[0], &msg, std::slice::from_ref(&public)), Ok(0));
    assert_eq!(sigs[0].signature.len(), 256);
    assert_eq!(
        pss.sign(SignatureAlgorithm::RsaPkcs1Sha256, b"m"),
        Err(SignError::WrongKeyType { key: KeyType::RsaPss, algorithm: SignatureAlgorithm::RsaPkcs1Sha256 })
    );
    assert_eq!(
        sign_with(&pss, SignatureAlgorithm::RsaPkcs1Sha256, "k", "sig1", &comps, 1, &msg),
        Err(Rfc9421SignError::Algorithm { key: KeyType::RsaPss, alg: "rsa-v1_5-sha256".into() })
    );
    assert_eq!(
        sign_with(&pss, SignatureAlgorithm::EcdsaP256Sha256Asn1, "k", "sig1", &comps, 1, &msg),
        Err(Rfc9421SignError::Algorithm { key: KeyType::RsaPss, alg: "(cavage ecdsa)".into() })
    );
    // Cavage has no PSS algorithm here.
    assert_eq!(
        cavage::sign(&pss, "k", &["(request-target)"], None, &request, &[&request]),
        Err(cavage::CavageSignError::UnsupportedKey(KeyType::RsaPss))
    );
    assert!(matches!(
        PushSigner::new(SigningKey::from_pem(PSS_PRIV.as_bytes()).unwrap(), "k", SignatureForms::Both),
        Err(SignPushError::CavageKey(KeyType::RsaPss))
    ));
    // An rsaEncryption key (h3m's test key) signs PSS on request.
    let rsa = SigningKey::from_pem(include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../interop/vectors/keys/rsa2048.key.pem"
    )))
    .unwrap();
    let [input, value] = sign_with(&rsa, SignatureAlgorithm::RsaPssSha512, "k", "sig1", &comps, 5, &msg).unwrap();
    let sigs = parse(&[&input.value], &[&value.value]).unwrap();
    assert_eq!(sigs[0].alg(), Some("rsa-pss-sha512"));
    assert_eq!(verify(&sigs[0], &msg, &[rsa.verifying_key()]), Ok(0));
    // PSS keys with parameters are refused: an AlgorithmIdentifier with a
    // (here empty) RSASSA-PSS-params SEQUENCE.
    let mut der = crate::auth::pem::parse(PSS_PRIV.as_bytes()).unwrap().remove(0).der;
    // 30 82 04 be | 02 01 00 | 30 0b 06 09 <oid>: grow the inner SEQUENCE by `30 00`.
    assert_eq!(&der[7..11], &[0x30, 0x0b, 0x06, 0x09]);
    der[8] = 0x0d;
    der.splice(20..20, [0x30, 0x00]);
    der[3] += 2;
    assert_eq!(SigningKey::from_pkcs8_der(&der).unwrap_err(), KeyError::PssParameters);
}

/// RFC 9421 §2.2.8's examples, and what cannot be signed.
#[test]
fn query_param_component() {
    let req = |path: &str| {
        vec![
            HeaderField::new(":method", "GET"),
            HeaderField::new(":scheme", "https"),
            HeaderField::new(":authority", "example.com"),
            HeaderField::new(":path", path),
        ]
    };
    let value = |path: &str, name: &str| {
        let request = req(path);
        let msg = Message { request: &request, response: None, trailers: &[] };
        let mut c = component("@query-param", &[]);
        c.params.push(("name".into(), BareItem::String(name.into())));
        signature_base(&[c], &vec![], &msg).map(|b| {
            let text = String::from_utf8(b).unwrap();
            text.lines().next().unwrap().split_once(": ").map(|(_, v)| v.to_owned()).unwrap_or_default()
        })
    };
    let p = "/path?param=value&foo=bar&baz=batman&qux=";
    assert_eq!(value(p, "baz"), Ok("batman".into()));
    assert_eq!(value(p, "qux"), Ok(String::new()));
    assert_eq!(value(p, "param"), Ok("value".into()));
    let p = "/parameters?var=this%20is%20a%20big%0Amultiline%20value&bar=with+plus+whitespace&fa%C3%A7ade%22%3A%20=something";
    assert_eq!(value(p, "var"), Ok("this%20is%20a%20big%0Amultiline%20value".into()));
    assert_eq!(value(p, "bar"), Ok("with%20plus%20whitespace".into()));
    assert_eq!(value(p, "fa%C3%A7ade%22%3A%20"), Ok("something".into()));
    // The name is matched in its encoded form only.
    assert!(matches!(value(p, "façade\": "), Err(ComponentError::Serialize(_))));
    assert_eq!(
        value(p, "fa%c3%a7ade%22%3a%20"),
        Err(ComponentError::Missing("\"@query-param\";name=\"fa%c3%a7ade%22%3a%20\"".into()))
    );
    // Lenient WHATWG decoding: a stray `%` stays a `%`, re-encoded.
    assert_eq!(value("/p?a=100%&b=%zz", "a"), Ok("100%25".into()));
    assert_eq!(value("/p?a=100%&b=%zz", "b"), Ok("%25zz".into()));
    assert_eq!(value("/p?a=1&&a=2", "a"), Err(ComponentError::Ambiguous("\"@query-param\";name=\"a\"".into())));
    assert_eq!(value("/p", "a"), Err(ComponentError::Missing("\"@query-param\";name=\"a\"".into())));
    assert_eq!(value("/p?a", "a"), Ok(String::new()));
    // `name` is required, must be a string, and belongs to `@query-param` only.
    let request = req("/p?a=1");
    let msg = Message { request: &request, response: None, trailers: &[] };
    let err = |c: Item| signature_base(&[c], &vec![], &msg).unwrap_err();
    let mut c = component("@query-param", &[]);
    c.params.push(("name".into(), BareItem::Token("a".into())));
    assert_eq!(err(c), ComponentError::Unsupported("\"@query-param\";name=a".into()));
    let mut c = component("@query", &[]);
    c.params.push(("name".into(), BareItem::String("a".into())));
    assert_eq!(err(c), ComponentError::Unsupported("\"@query\";name=\"a\"".into()));
    // A component identifier that cannot be serialized.
    assert!(matches!(err(component("x\ny", &[])), ComponentError::Serialize(_)));
    // The push check reports an ambiguous parameter as a value that cannot be signed.
    assert_eq!(
        AuthError::from(Rfc9421VerifyError::Component(ComponentError::Ambiguous("a".into()))),
        AuthError::InvalidHeaderValue("a".into())
    );
}

/// A push signed with an HMAC secret (RFC 9421 only) passes the whole push
/// check; one signed with another secret does not.
#[test]
fn hmac_signed_push() {
    let signer = PushSigner::new(SigningKey::hmac_sha256(&secret()).unwrap(), "k", SignatureForms::Rfc9421).unwrap();
    assert!(matches!(
        PushSigner::new(SigningKey::hmac_sha256(&secret()).unwrap(), "k", SignatureForms::Cavage),
        Err(SignPushError::CavageKey(KeyType::HmacSha256))
    ));
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_794_119);
    let body_sha256 = [9u8; 32];
    let mut request = vec![
        HeaderField::new(":method", "GET"),
        HeaderField::new(":scheme", "https"),
        HeaderField::new(":authority", "localhost"),
        HeaderField::new(":path", "/a.txt?v=1"),
    ];
    let mut response = vec![
        HeaderField::new(":status", "200"),
        HeaderField::new("content-type", "text/plain"),
        HeaderField::new("date", crate::http::date::format_http_date(now)),
    ];
    response.extend(crate::http::digest::sha256_fields(&body_sha256));
    assert!(signer.sign_headers(&mut request, &mut response, now).unwrap());
    let push = Push { request: &request, response: &response, trailers: &[], body_sha256: Some(body_sha256) };
    let key = VerifyingKey::hmac_sha256(&secret()).unwrap();
    let v = verify_push(&push, std::slice::from_ref(&key), Some(now), &Freshness::default()).unwrap();
    assert_eq!((v.scheme, v.key), (Scheme::Rfc9421, 0));
    let other = VerifyingKey::hmac_sha256(&[1; 32]).unwrap();
    assert_eq!(verify_push(&push, &[other], Some(now), &Freshness::default()), Err(AuthError::BadSignature));
}
