//! nghq's digest and draft-cavage signatures (nghq-wire.md §7) through the pure
//! checks of `h3m_proto::auth`: every push of every capture whose
//! `expected.json` records a signature check verifies, promise and response,
//! against `keys/sender.pub.pem` and against the certificate `keys/sender.pem`
//! (headers as `expected.json` lists them and as h3m's receiver decodes them
//! from the capture); changing any signed value or the body makes it fail with
//! the exact error; pushes of the OpenSSL-less captures are unsigned.

use std::time::SystemTime;

use h3m_interop::{Scenario, header_list, scenarios, vectors_dir};
use h3m_proto::auth::{self, AuthError, Freshness, Push, Scheme, VerifyingKey, cavage};
use h3m_proto::qpack::HeaderField;
use h3m_proto::receiver::ReceiverConfig;
use serde_json::Value;

fn trusted() -> [(&'static str, VerifyingKey); 2] {
    let load =
        |name: &str| VerifyingKey::from_pem(&std::fs::read(vectors_dir().join("keys").join(name)).unwrap()).unwrap();
    [("sender.pub.pem", load("sender.pub.pem")), ("sender.pem (certificate)", load("sender.pem"))]
}

fn fields(list: &[(String, String)]) -> Vec<HeaderField> {
    list.iter().map(|(n, v)| HeaderField::new(n.as_str(), v.as_str())).collect()
}

fn unhex(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

fn value<'a>(h: &'a [HeaderField], name: &str) -> Option<&'a [u8]> {
    h.iter().find(|f| f.name == name.as_bytes()).map(|f| f.value.as_slice())
}

/// The signed time of a response: its `date`, which the capture was taken at.
fn date_of(response: &[HeaderField]) -> SystemTime {
    auth::date::parse_http_date(value(response, "date").expect("date")).expect("IMF-fixdate")
}

/// The pushes of a scenario that `expected.json` says are signed.
fn signed_pushes(s: &Scenario) -> Vec<&Value> {
    s.resources().into_iter().filter(|p| p.get("response_signature_verified").is_some()).collect()
}

#[test]
fn every_signed_push_verifies_with_the_public_key_and_the_certificate() {
    let keys = trusted();
    let mut checked = 0;
    for s in scenarios() {
        for p in signed_pushes(&s) {
            let (request, response) =
                (fields(&header_list(&p["request_headers"])), fields(&header_list(&p["response_headers"])));
            let body = unhex(p["body_sha256"].as_str().unwrap());
            assert_eq!(p["digest_matches_body"], true, "{} push {}", s.name, p["push_id"]);
            assert_eq!(p["promise_signature_verified"], true, "{} push {}", s.name, p["push_id"]);
            assert_eq!(p["response_signature_verified"], true, "{} push {}", s.name, p["push_id"]);
            for (name, key) in &keys {
                let keys = std::slice::from_ref(key);
                let what = format!("{} push {} with {name}", s.name, p["push_id"]);
                // The promise alone.
                assert_eq!(
                    auth::verify_promise(value(&request, "signature").unwrap(), &request, keys),
                    Ok(0),
                    "{what}"
                );
                // The whole push, at the capture's own date and with no clock.
                let push = Push { request: &request, response: &response, trailers: &[], body_sha256: Some(body) };
                for now in [Some(date_of(&response)), None] {
                    let v = auth::verify_push(&push, keys, now, &Freshness::default())
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_eq!((v.scheme, v.key, v.promise_signed), (Scheme::Cavage, 0, true), "{what}");
                    assert_eq!(v.signed_at, date_of(&response), "{what}");
                }
                checked += 1;
            }
        }
    }
    // s01-s05, s08-s10 and s17: 15 signed pushes, each checked with both key files.
    assert_eq!(checked, 30);
}

#[test]
fn headers_decoded_from_the_captures_verify() {
    let key = &trusted()[0].1;
    let mut checked = 0;
    for s in scenarios() {
        let signed: Vec<u64> = signed_pushes(&s).iter().map(|p| p["push_id"].as_u64().unwrap()).collect();
        if signed.is_empty() {
            continue;
        }
        let out = h3m_interop::run(ReceiverConfig::new(s.session_id()), &s.datagrams);
        for id in signed {
            let got = &out.pushes[&id];
            let (request, response) = (fields(&got.request), fields(got.response.as_ref().expect("response")));
            let body = ring::digest::digest(&ring::digest::SHA256, &got.body);
            let push = Push {
                request: &request,
                response: &response,
                trailers: &[],
                body_sha256: Some(body.as_ref().try_into().unwrap()),
            };
            let v =
                auth::verify_push(&push, std::slice::from_ref(key), Some(date_of(&response)), &Freshness::default());
            assert!(v.is_ok(), "{} push {id}: {v:?}", s.name);
            checked += 1;
        }
    }
    assert_eq!(checked, 15);
}

#[test]
fn changing_any_signed_value_or_the_body_fails_exactly() {
    let keys = [trusted()[0].1.clone()];
    let mut cases = 0;
    for s in scenarios() {
        for p in signed_pushes(&s) {
            let (request, response) =
                (fields(&header_list(&p["request_headers"])), fields(&header_list(&p["response_headers"])));
            let body = unhex(p["body_sha256"].as_str().unwrap());
            let check = |req: &[HeaderField], resp: &[HeaderField], body: [u8; 32]| {
                let push = Push { request: req, response: resp, trailers: &[], body_sha256: Some(body) };
                auth::verify_push(&push, &keys, Some(date_of(&response)), &Freshness::default())
            };
            let what = format!("{} push {}", s.name, p["push_id"]);
            // Response fields the response signature covers.
            let sig = cavage::parse(value(&response, "signature").unwrap()).unwrap();
            assert_eq!(sig.headers, ["(request-target)", "date", "content-type", "digest"], "{what}");
            for name in ["date", "content-type", "digest"] {
                let mut r = response.clone();
                let f = r.iter_mut().find(|f| f.name == name.as_bytes()).unwrap();
                f.value[0] ^= 0x20;
                assert_eq!(check(&request, &r, body), Err(AuthError::BadSignature), "{what}: {name}");
                cases += 1;
            }
            // Request fields: the method and path are in both signatures;
            // :scheme and :authority only in the promise's.
            for (name, want) in [
                (":method", AuthError::BadSignature),
                (":path", AuthError::BadSignature),
                (":scheme", AuthError::Promise(Box::new(AuthError::BadSignature))),
                (":authority", AuthError::Promise(Box::new(AuthError::BadSignature))),
            ] {
                let mut q = request.clone();
                q.iter_mut().find(|f| f.name == name.as_bytes()).unwrap().value.push(b'x');
                assert_eq!(check(&q, &response, body), Err(want), "{what}: {name}");
                cases += 1;
            }
            // A body other than the one signed.
            let mut other = body;
            other[31] ^= 1;
            assert_eq!(check(&request, &response, other), Err(AuthError::DigestMismatch), "{what}: body");
            // The signature bytes themselves.
            let mut r = response.clone();
            let f = r.iter_mut().find(|f| f.name == b"signature").unwrap();
            let at = f.value.len() - 10;
            f.value[at] = if f.value[at] == b'A' { b'B' } else { b'A' };
            assert_eq!(check(&request, &r, body), Err(AuthError::BadSignature), "{what}: signature");
            // Unchanged, it passes.
            assert!(check(&request, &response, body).is_ok(), "{what}");
            cases += 3;
        }
    }
    assert_eq!(cases, 15 * 10);
}

#[test]
fn openssl_less_captures_are_unsigned() {
    let key = [trusted()[0].1.clone()];
    let mut unsigned = 0;
    for s in scenarios() {
        for p in s.resources() {
            if p.get("response_signature_verified").is_some() {
                continue;
            }
            let (request, response) =
                (fields(&header_list(&p["request_headers"])), fields(&header_list(&p["response_headers"])));
            let body = p["body_sha256"].as_str().map(unhex);
            let push = Push { request: &request, response: &response, trailers: &[], body_sha256: body };
            assert_eq!(
                auth::verify_push(&push, &key, None, &Freshness::default()),
                Err(AuthError::Unsigned),
                "{} push {}",
                s.name,
                p["push_id"]
            );
            unsigned += 1;
        }
    }
    assert!(unsigned >= 10, "{unsigned}");
}
