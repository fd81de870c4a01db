//! Tests of the `Alt-Svc` reader and writer.

use super::*;
use crate::session_id::SessionIdError;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

const SPEC_EXAMPLE: &str = concat!(
    r#"h3m-07="[ff3e::8000:1]:2000"; source-address="2001:db8::10"; "#,
    "session-id=2a; session-idle-timeout=60000; max-concurrent-resources=8; ",
    "peak-flow-rate=4000000; cipher-suite=1301; ",
    "key=00112233445566778899aabbccddeeff; iv=0123456789abcdef01234567; ",
    "digest-algorithm=SHA-256; signature-algorithm=rsa-sha256; ma=3600"
);

fn v4(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn one(text: &str) -> Advertisement {
    parse_one(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn err(text: &str) -> AltSvcError {
    match parse_one(text) {
        Ok(ad) => panic!("{text} parsed as {ad}"),
        Err(e) => e,
    }
}

#[test]
fn spec_example_parses_to_exact_fields() {
    let ads = parse(SPEC_EXAMPLE).unwrap();
    assert_eq!(ads.len(), 1);
    let ad = &ads[0];
    assert_eq!(ad.protocol, "h3m-07");
    assert_eq!(ad.draft, Some(7));
    assert_eq!(ad.experiment, None);
    assert_eq!(ad.group, "[ff3e::8000:1]:2000".parse::<SocketAddr>().unwrap());
    assert_eq!(ad.source, Some("2001:db8::10".parse().unwrap()));
    assert_eq!(ad.session_id.as_bytes(), &[0x2a]);
    assert_eq!(ad.idle_timeout_ms, Some(60_000));
    assert_eq!(ad.idle_timeout(), Some(Duration::from_secs(60)));
    assert_eq!(ad.idle_timeout_compat(), Some(Duration::from_secs(60)));
    assert!(!ad.idle_timeout_is_suspicious());
    assert_eq!(ad.max_concurrent_resources, Some(8));
    assert_eq!(ad.peak_flow_rate, Some(4_000_000));
    assert_eq!(ad.cipher_suite, CipherSuite::Aes128Gcm);
    assert_eq!(
        ad.key.as_deref(),
        Some(&[0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff][..])
    );
    assert_eq!(ad.iv.as_deref(), Some(&[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67][..]));
    assert_eq!(ad.digest_algorithms, ["SHA-256"]);
    assert_eq!(ad.signature_algorithms, ["rsa-sha256"]);
    assert!(ad.extensions.is_empty());
    assert_eq!(ad.max_age, Some(3600));
    assert_eq!(ad.freshness_lifetime(), Duration::from_secs(3600));
    assert!(!ad.persist);
    assert!(ad.unknown.is_empty());
    ad.validate().unwrap();
    // The canonical form of the example is the example itself.
    assert_eq!(ad.to_string(), SPEC_EXAMPLE);
    assert_eq!(parse_one(SPEC_EXAMPLE).unwrap(), *ad);
    assert_eq!(SPEC_EXAMPLE.parse::<Advertisement>().unwrap(), *ad);
}

#[test]
fn nghq_style_advertisement() {
    let ad = one(r#"h3m-07="232.0.0.1:2000"; source-address=10.0.0.1; session-id=53657373696f6e204944"#);
    assert_eq!(ad.group, v4("232.0.0.1:2000"));
    assert_eq!(ad.source, Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
    assert_eq!(ad.session_id, SessionId::NGHQ_DEFAULT);
    assert_eq!(ad.cipher_suite, CipherSuite::Null);
    assert_eq!(ad.freshness_lifetime(), Duration::from_secs(86_400));
    assert_eq!(
        ad.to_string(),
        r#"h3m-07="232.0.0.1:2000"; source-address="10.0.0.1"; session-id=53657373696f6e204944"#
    );
}

#[test]
fn token_and_quoted_values_are_equivalent() {
    let quoted = one(concat!(
        r#"h3m-07="232.0.0.1:2000"; source-address="10.0.0.1"; session-id="2a"; "#,
        r#"session-idle-timeout="5000"; cipher-suite="1302"; digest-algorithm="SHA-256"; ma="60""#
    ));
    let token = one(concat!(
        r#"h3m-07="232.0.0.1:2000";source-address=10.0.0.1 ;  session-id=2a;"#,
        "session-idle-timeout=5000;\tcipher-suite=1302; digest-algorithm=SHA-256; ma=60"
    ));
    assert_eq!(quoted, token);
    assert_eq!(quoted.cipher_suite, CipherSuite::Aes256Gcm);
    assert_eq!(quoted.key, None, "AEAD without key: obtained out of band");

    // IPv6 source: quoted or not, bracketed or not.
    let want = Some("2001:db8::10".parse::<IpAddr>().unwrap());
    for src in ["2001:db8::10", "\"2001:db8::10\"", "[2001:db8::10]", "\"[2001:db8::10]\""] {
        let ad = one(&format!(r#"h3m-07="[ff3e::1]:2000"; source-address={src}"#));
        assert_eq!(ad.source, want, "{src}");
    }

    // Backslash escapes, and commas / semicolons inside quotes.
    let ad = one(r#"h3m-07="232.0.0.1:2000"; digest-algorithm="SHA\-256"; x-note="a\"b;c,d\\e""#);
    assert_eq!(ad.digest_algorithms, ["SHA-256"]);
    assert_eq!(ad.unknown, [("x-note".to_owned(), r#"a"b;c,d\e"#.to_owned())]);
    assert_eq!(ad.to_string(), r#"h3m-07="232.0.0.1:2000"; digest-algorithm=SHA-256; x-note="a\"b;c,d\\e""#);

    // Case-insensitive names, OWS around '=', empty parameters, unquoted authority.
    let ad = one("h3m-07 = 232.0.0.1:2000 ;; SESSION-ID = 2a; Max-Packet-Size=1200;");
    assert_eq!(ad.session_id.as_bytes(), &[0x2a]);
    assert_eq!(ad.unknown, [("max-packet-size".to_owned(), "1200".to_owned())]);
}

#[test]
fn percent_encoded_protocol_id() {
    let ad = one(r#"h%33m-07="232.0.0.1:2000""#);
    assert_eq!(ad.protocol, "h3m-07");
    assert_eq!(ad.draft, Some(7));
    let ad = one(r#"%68%33%6d-09-data-offset="232.0.0.1:2000""#);
    assert_eq!(ad.protocol, "h3m-09-data-offset");
    assert_eq!((ad.draft, ad.experiment.as_deref()), (Some(9), Some("data-offset")));
    // '%' inside an experiment name is written back encoded.
    let ad = one(r#"h3m-07-a%25b="232.0.0.1:2000""#);
    assert_eq!(ad.experiment.as_deref(), Some("a%b"));
    assert_eq!(ad.to_string(), r#"h3m-07-a%25b="232.0.0.1:2000""#);
    assert_eq!(one(&ad.to_string()), ad);
    // Bare h3m (final RFC).
    let ad = one(r#"h3m="232.0.0.1:2000""#);
    assert_eq!((ad.draft, ad.experiment), (None, None));
}

#[test]
fn several_alternatives_non_h3m_skipped() {
    let field = concat!(
        r#"h3=":443"; ma=60, h3m-07="232.0.0.1:2000"; x-list="a,b", "#,
        r#"h2="alt.example:443", , h3m-09-data-offset="[ff3e::1]:3000"; session-id=01; persist=1, "#,
        r#"h3m-foo="232.0.0.2:1", H3M-07="232.0.0.3:1""#
    );
    let ads = parse(field).unwrap();
    assert_eq!(ads.len(), 2);
    assert_eq!(ads[0].group, v4("232.0.0.1:2000"));
    assert_eq!(ads[0].unknown, [("x-list".to_owned(), "a,b".to_owned())]);
    assert_eq!(ads[0].max_age, None, "ma of the h3 alternative does not leak");
    assert_eq!(ads[1].protocol, "h3m-09-data-offset");
    assert_eq!(ads[1].draft, Some(9));
    assert_eq!(ads[1].experiment.as_deref(), Some("data-offset"));
    assert_eq!(ads[1].session_id.as_bytes(), &[1]);
    assert!(ads[1].persist);
    // parse_one skips the others but wants exactly one h3m alternative.
    assert_eq!(parse_one(field), Err(AltSvcError::MultipleH3m(2)));
    let ad = one(r#"h3=":443", h3m-07="232.0.0.1:2000", h2=":443""#);
    assert_eq!(ad.group, v4("232.0.0.1:2000"));
}

#[test]
fn parse_each_keeps_good_alternatives() {
    let each = parse_each(r#"h3m-07="10.0.0.1:1", h3m-07="232.0.0.1:2000""#).unwrap();
    assert_eq!(each.len(), 2);
    assert_eq!(each[0], Err(AltSvcError::NotMulticast(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))));
    assert_eq!(each[1].as_ref().unwrap().group, v4("232.0.0.1:2000"));
    assert!(parse(r#"h3m-07="10.0.0.1:1", h3m-07="232.0.0.1:2000""#).is_err());
}

#[test]
fn first_occurrence_wins() {
    let ad = one(concat!(
        r#"h3m-07="232.0.0.1:2000"; source-address=10.0.0.1; source-address=junk; "#,
        "session-id=01; session-id=02; session-idle-timeout=5000; session-idle-timeout=x; ",
        "max-concurrent-resources=3; max-concurrent-resources=4; peak-flow-rate=10; peak-flow-rate=20; ",
        "cipher-suite=1303; cipher-suite=9999; ",
        "key=0000000000000000000000000000000000000000000000000000000000000000; key=zz; ",
        "iv=000000000000000000000000; iv=00; ma=1; ma=2; ",
        "digest-algorithm=SHA-256; digest-algorithm=sha-256; digest-algorithm=SHA-512; ",
        "signature-algorithm=rsa-sha256; signature-algorithm=hmac-sha256; signature-algorithm=RSA-SHA256; ",
        r#"extensions="0001,0002=ab"; extension=0001; persist=0; persist=1"#
    ));
    assert_eq!(ad.source, Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
    assert_eq!(ad.session_id.as_bytes(), &[1]);
    assert_eq!(ad.idle_timeout_ms, Some(5000));
    assert_eq!(ad.max_concurrent_resources, Some(3));
    assert_eq!(ad.peak_flow_rate, Some(10));
    assert_eq!(ad.cipher_suite, CipherSuite::ChaCha20Poly1305);
    assert_eq!(ad.key, Some(vec![0; 32]));
    assert_eq!(ad.iv, Some(vec![0; 12]));
    assert_eq!(ad.max_age, Some(1));
    assert_eq!(ad.digest_algorithms, ["SHA-256", "SHA-512"]);
    assert_eq!(ad.signature_algorithms, ["rsa-sha256", "hmac-sha256"]);
    assert_eq!(
        ad.extensions,
        [
            Extension { code: 1, value: None },
            Extension { code: 2, value: Some(vec![0xab]) },
            Extension { code: 1, value: None },
        ]
    );
    assert!(ad.persist);
    assert!(ad.unknown.is_empty());
    ad.validate().unwrap();
    assert_eq!(one(&ad.to_string()), ad);
}

#[test]
fn extensions_forms() {
    let ad = one(r#"h3m-07="232.0.0.1:2000"; extensions="0x0020 , ff3e=0x0102, 000a=""#);
    assert_eq!(
        ad.extensions,
        [
            Extension { code: 0x20, value: None },
            Extension { code: 0xff3e, value: Some(vec![1, 2]) },
            Extension { code: 0xa, value: Some(vec![]) },
        ]
    );
    assert!(ad.to_string().ends_with(r#"; extensions="0020,ff3e=0102,000a=""#), "{ad}");
    assert!(one(r#"h3m-07="232.0.0.1:2000"; extensions="""#).extensions.is_empty());
    assert_eq!(one(r#"h3m-07="232.0.0.1:2000"; extensions=00ff=12"#).extensions.len(), 1);
}

#[test]
fn drafts_broken_encrypted_example_is_rejected() {
    // cipher-suite=1301 (AES-128-GCM) with an 8-byte key and a 16-byte IV.
    let text =
        r#"h3m-07="232.0.0.1:2000"; cipher-suite=1301; key=0123456789abcdef; iv=0123456789abcdef0123456789abcdef"#;
    assert_eq!(err(text), AltSvcError::KeyLength { expected: 16, got: 8 });
    let text = r#"h3m-07="232.0.0.1:2000"; cipher-suite=1301; iv=0123456789abcdef0123456789abcdef"#;
    assert_eq!(err(text), AltSvcError::IvLength { expected: 12, got: 16 });
}

#[test]
fn clear() {
    assert_eq!(parse("clear"), Ok(vec![]));
    assert_eq!(parse(" \tclear  "), Ok(vec![]));
    assert_eq!(parse_each("clear"), Ok(vec![]));
    assert_eq!(parse_one("clear"), Err(AltSvcError::NoH3mAlternative));
    assert!(matches!(parse("clear, h3m-07=\"232.0.0.1:1\""), Err(AltSvcError::Syntax { .. })));
    // Only non-h3m alternatives: nothing for parse.
    assert_eq!(parse(r#"h3=":443", h2=":443""#), Ok(vec![]));
}

#[test]
fn field_name_prefix_for_cli() {
    let ad = one(r#"Alt-Svc: h3m-07="232.0.0.1:2000"; session-id=2a"#);
    assert_eq!(ad.session_id.as_bytes(), &[0x2a]);
    let ad = one(r#"  alt-svc :h3m-07="232.0.0.1:2000""#);
    assert_eq!(ad.group, v4("232.0.0.1:2000"));
    // The offset of a syntax error counts from the start of the whole text.
    assert_eq!(
        parse_one(r#"Alt-Svc: h3m-07="232.0.0.1:2000"; =1"#),
        Err(AltSvcError::Syntax { at: 34, reason: "expected a parameter name" })
    );
}

#[test]
fn idle_timeout_compat_rule() {
    let mut ad = one(r#"h3m-07="232.0.0.1:2000"; session-idle-timeout=60"#);
    assert_eq!(ad.idle_timeout_ms, Some(60));
    assert_eq!(ad.idle_timeout(), Some(Duration::from_millis(60)));
    assert_eq!(ad.idle_timeout_compat(), Some(Duration::from_secs(60)));
    assert!(ad.idle_timeout_is_suspicious());
    ad.idle_timeout_ms = Some(999);
    assert_eq!(ad.idle_timeout_compat(), Some(Duration::from_secs(999)));
    ad.idle_timeout_ms = Some(1000);
    assert_eq!(ad.idle_timeout_compat(), Some(Duration::from_secs(1)));
    assert!(!ad.idle_timeout_is_suspicious());
    ad.idle_timeout_ms = Some(0);
    assert_eq!((ad.idle_timeout(), ad.idle_timeout_compat()), (None, None));
    assert!(!ad.idle_timeout_is_suspicious());
    ad.idle_timeout_ms = None;
    assert_eq!((ad.idle_timeout(), ad.idle_timeout_compat()), (None, None));
}

#[test]
fn redaction() {
    let ad = one(SPEC_EXAMPLE);
    let log = ad.redacted();
    assert!(log.contains("; key=<redacted>; iv=<redacted>;"), "{log}");
    assert!(!log.contains("00112233"), "{log}");
    let debug = format!("{ad:?}");
    assert!(debug.contains("<redacted 16 bytes>") && debug.contains("<redacted 12 bytes>"), "{debug}");
    assert!(!debug.contains("17, 34"), "{debug}");
    // Malformed keys are not echoed in errors either.
    let e = err(r#"h3m-07="232.0.0.1:1"; cipher-suite=1301; key=00112233445566778899aabbccddeefg"#);
    assert_eq!(e, AltSvcError::BadHex { param: "key", value: "<redacted: 32 chars>".to_owned() });
}

#[test]
fn new_and_validate() {
    let mut ad = Advertisement::new("h3m-09-data-offset", v4("239.1.2.3:4433"));
    assert_eq!((ad.draft, ad.experiment.as_deref()), (Some(9), Some("data-offset")));
    ad.validate().unwrap();
    assert_eq!(ad.to_string(), r#"h3m-09-data-offset="239.1.2.3:4433""#);

    let bad = |f: &dyn Fn(&mut Advertisement)| {
        let mut ad = Advertisement::new("h3m-07", v4("232.0.0.1:2000"));
        f(&mut ad);
        ad.validate().unwrap_err()
    };
    assert_eq!(bad(&|a| a.protocol = "h3".into()), AltSvcError::NotH3m("h3".into()));
    assert_eq!(bad(&|a| a.draft = Some(8)), AltSvcError::ProtocolFields("h3m-07".into()));
    assert!(matches!(bad(&|a| a.group.set_port(0)), AltSvcError::BadAuthority(_)));
    assert!(matches!(bad(&|a| a.group = v4("10.0.0.1:1")), AltSvcError::NotMulticast(_)));
    assert!(matches!(bad(&|a| a.source = Some("232.0.0.9".parse().unwrap())), AltSvcError::BadSource(_)));
    assert_eq!(bad(&|a| a.source = Some("::1".parse().unwrap())), AltSvcError::FamilyMismatch);
    assert_eq!(bad(&|a| a.key = Some(vec![1])), AltSvcError::KeyWithNullCipher);
    assert!(matches!(
        bad(&|a| a.digest_algorithms = vec!["SHA-256".into(), "sha-256".into()]),
        AltSvcError::BadAlgorithm { .. }
    ));
    for (name, value) in [("Foo", "1"), ("ma", "1"), ("a b", "1"), ("x", "a\nb")] {
        let e = bad(&|a| a.unknown.push((name.into(), value.into())));
        assert!(matches!(e, AltSvcError::BadParameter { .. }), "{name}: {e}");
    }
    ad.cipher_suite = CipherSuite::Aes128Gcm;
    ad.iv = Some(vec![0; 11]);
    assert_eq!(ad.validate(), Err(AltSvcError::IvLength { expected: 12, got: 11 }));
}

#[test]
fn every_error_variant() {
    use AltSvcError as E;
    let g = r#"h3m-07="232.0.0.1:2000""#;
    let with = |params: &str| format!("{g}; {params}");

    assert_eq!(parse(&" ".repeat(MAX_FIELD_LEN + 1)), Err(E::TooLong { len: MAX_FIELD_LEN + 1, max: MAX_FIELD_LEN }));
    assert!(parse(&format!("{g};{}", " ".repeat(MAX_FIELD_LEN - g.len() - 1))).is_ok());

    for (text, at, reason) in [
        ("", 0, "no alternative in the Alt-Svc value"),
        (" , ,", 4, "no alternative in the Alt-Svc value"),
        ("=\"232.0.0.1:1\"", 0, "expected a protocol-id"),
        ("h3m-07", 6, "expected '=' after the protocol-id"),
        ("h3m-07 \"232.0.0.1:1\"", 7, "expected '=' after the protocol-id"),
        ("h3m-07=\"232.0.0.1:1", 7, "unterminated quoted-string"),
        ("h3m-07=\"232.0.0.1:1\\", 7, "unterminated quoted-string"),
        ("h3m-07=\"232.0\u{1}\"", 13, "control character in quoted-string"),
        ("h3m-07=\"232\\\u{7f}\"", 12, "control character in quoted-string"),
        ("h%3m-07=\"232.0.0.1:1\"", 1, "bad percent-encoding in the protocol-id"),
        ("h3m-07=\"232.0.0.1:1\"; ma", 24, "expected '=' after the parameter name"),
        ("h3m-07=\"232.0.0.1:1\"; (x)=1", 22, "expected a parameter name"),
        ("h3m-07=\"232.0.0.1:1\" x", 21, "expected ',' or ';' after an alternative or parameter"),
        ("h3m-07=\"232.0.0.1:1\"; ma=\"1\"2", 28, "expected ',' or ';' after an alternative or parameter"),
        ("h3m-07=\"232.0.0.1:1\"; ma=é", 25, "expected ',' or ';' after an alternative or parameter"),
    ] {
        assert_eq!(parse(text), Err(E::Syntax { at, reason }), "{text:?}");
    }

    assert_eq!(err(r#"h3=":443""#), E::NotH3m("h3".into()));
    assert_eq!(err(r#"h3m-x="232.0.0.1:1""#), E::NotH3m("h3m-x".into()));
    assert_eq!(err(r#"h3m-07-="232.0.0.1:1""#), E::NotH3m("h3m-07-".into()));
    assert_eq!(err(r#"h3m-99999999999="232.0.0.1:1""#), E::NotH3m("h3m-99999999999".into()));
    assert_eq!(err(r#"h3m-07-a%20b="232.0.0.1:1""#), E::NotH3m("h3m-07-a b".into()));
    assert_eq!(err(r#"h3=":443", h2=":443""#), E::NoH3mAlternative);
    assert_eq!(err(&format!("{g}, {g}")), E::MultipleH3m(2));

    for auth in [
        "",
        ":2000",
        "232.0.0.1",
        "232.0.0.1:",
        "232.0.0.1:0",
        "232.0.0.1:+80",
        "232.0.0.1:65536",
        "ff3e::1:2000",
        "[ff3e::1]",
        "[ff3e::1]2000",
        "[232.0.0.1]:2000",
        "[ff02::1%eth0]:2000",
        "mcast.example:2000",
        "232.0.0.1:2000 ",
    ] {
        assert_eq!(err(&format!("h3m-07=\"{auth}\"")), E::BadAuthority(auth.into()), "{auth:?}");
    }
    assert_eq!(err(r#"h3m-07="10.0.0.1:2000""#), E::NotMulticast("10.0.0.1".parse().unwrap()));
    assert_eq!(err(r#"h3m-07="[2001:db8::1]:2000""#), E::NotMulticast("2001:db8::1".parse().unwrap()));

    for src in ["example.com", "232.0.0.9", "0.0.0.0", "255.255.255.255", "::", "ff3e::1", "[10.0.0.1]", ""] {
        assert_eq!(err(&with(&format!("source-address=\"{src}\""))), E::BadSource(src.into()), "{src:?}");
    }
    assert_eq!(err(&with("source-address=2001:db8::1")), E::FamilyMismatch);
    assert_eq!(err(r#"h3m-07="[ff3e::1]:1"; source-address=10.0.0.1"#), E::FamilyMismatch);

    for (param, value) in [
        ("session-idle-timeout", "-1"),
        ("session-idle-timeout", ""),
        ("session-idle-timeout", "+5"),
        ("session-idle-timeout", "18446744073709551616"),
        ("max-concurrent-resources", "4294967296"),
        ("max-concurrent-resources", "1.5"),
        ("peak-flow-rate", "1e6"),
        ("ma", "x"),
        ("ma", ""),
    ] {
        assert_eq!(err(&with(&format!("{param}={value}"))), E::BadNumber { param, value: value.into() });
    }
    assert_eq!(one(&with("ma=99999999999999999999999")).max_age, Some(u64::MAX));
    assert_eq!(one(&with("max-concurrent-resources=4294967295")).max_concurrent_resources, Some(u32::MAX));

    assert_eq!(err(&with("session-id=12g4")), E::BadSessionId(SessionIdError::NotHex('g', 2)));
    assert_eq!(err(&with(&format!("session-id={}", "a".repeat(41)))), E::BadSessionId(SessionIdError::TooLong(21)));
    assert_eq!(one(&with(&format!("session-id={}", "A".repeat(40)))).session_id.len(), 20);

    assert_eq!(err(&with("cipher-suite=1304")), E::UnsupportedCipherSuite("1304".into()));
    assert_eq!(err(&with("cipher-suite=c02f")), E::UnsupportedCipherSuite("c02f".into()));
    for value in ["13010", "130", "0x1301", "13g1", ""] {
        assert_eq!(
            err(&with(&format!("cipher-suite={value}"))),
            E::BadHex { param: "cipher-suite", value: value.into() }
        );
    }
    assert_eq!(err(&with("cipher-suite=1301; iv=abc")), E::BadHex { param: "iv", value: "<redacted: 3 chars>".into() });

    assert_eq!(err(&with("cipher-suite=1302; key=00")), E::KeyLength { expected: 32, got: 1 });
    assert_eq!(err(&with("cipher-suite=1303; iv=")), E::IvLength { expected: 12, got: 0 });
    assert_eq!(err(&with("key=00112233445566778899aabbccddeeff")), E::KeyWithNullCipher);
    assert_eq!(err(&with("cipher-suite=0000; iv=000000000000000000000000")), E::IvWithNullCipher);

    for ext in ["001", "00001", "xyzw", "0001=abc", "0001=zz", ""] {
        assert_eq!(err(&with(&format!("extensions=\"0002,{ext}\""))), E::BadExtension(ext.into()), "{ext:?}");
    }
    assert_eq!(
        err(&with(r#"digest-algorithm="SHA-256,SHA-512""#)),
        E::BadAlgorithm { param: "digest-algorithm", value: "SHA-256,SHA-512".into() }
    );
    assert_eq!(
        err(&with(r#"signature-algorithm="""#)),
        E::BadAlgorithm { param: "signature-algorithm", value: String::new() }
    );
    // ProtocolFields and BadParameter come from validate(): see new_and_validate.
}

#[test]
fn errors_display_clearly() {
    let e = err(r#"h3m-07="232.0.0.1:2000"; cipher-suite=1301; key=0123456789abcdef"#);
    assert_eq!(e.to_string(), "key is 8 bytes long; the cipher suite needs 16");
    assert_eq!(err(r#"h3m-07="10.1.2.3:80""#).to_string(), "group 10.1.2.3 is not a multicast address");
}

// ---- property tests ----

fn token_strategy() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
}

fn algorithms() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(token_strategy(), 0..4).prop_map(|algs| {
        let mut set: Vec<String> = Vec::new();
        for a in algs {
            if !set.iter().any(|s| s.eq_ignore_ascii_case(&a)) {
                set.push(a);
            }
        }
        set
    })
}

fn protocol() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("h3m".to_owned()),
        ("[0-9]{1,9}", proptest::option::of(token_strategy())).prop_map(|(d, exp)| match exp {
            Some(exp) => format!("h3m-{d}-{exp}"),
            None => format!("h3m-{d}"),
        }),
    ]
}

fn addresses() -> impl Strategy<Value = (SocketAddr, Option<IpAddr>)> {
    let v4 = (224u8..=239, any::<[u8; 3]>(), 1u16.., proptest::option::of((1u8..=223, any::<[u8; 3]>()))).prop_map(
        |(a, rest, port, src)| {
            let group = SocketAddr::new(Ipv4Addr::new(a, rest[0], rest[1], rest[2]).into(), port);
            (group, src.map(|(s, r)| IpAddr::V4(Ipv4Addr::new(s, r[0], r[1], r[2]))))
        },
    );
    let v6 = (any::<[u8; 15]>(), 1u16.., proptest::option::of((0x20u8..=0xfe, any::<[u8; 15]>()))).prop_map(
        |(rest, port, src)| {
            let mut g = [0xff; 16];
            g[1..].copy_from_slice(&rest);
            let group = SocketAddr::new(Ipv6Addr::from(g).into(), port);
            let source = src.map(|(first, r)| {
                let mut s = [first; 16];
                s[1..].copy_from_slice(&r);
                IpAddr::V6(Ipv6Addr::from(s))
            });
            (group, source)
        },
    );
    prop_oneof![v4, v6]
}

fn crypto() -> impl Strategy<Value = (CipherSuite, Option<Vec<u8>>, Option<Vec<u8>>)> {
    prop_oneof![
        Just(CipherSuite::Null),
        Just(CipherSuite::Aes128Gcm),
        Just(CipherSuite::Aes256Gcm),
        Just(CipherSuite::ChaCha20Poly1305),
    ]
    .prop_flat_map(|suite| {
        if suite == CipherSuite::Null {
            Just((suite, None, None)).boxed()
        } else {
            (
                proptest::option::of(proptest::collection::vec(any::<u8>(), suite.key_len())),
                proptest::option::of(proptest::collection::vec(any::<u8>(), suite.iv_len())),
            )
                .prop_map(move |(k, i)| (suite, k, i))
                .boxed()
        }
    })
}

prop_compose! {
    fn advertisement()(
        protocol in protocol(),
        (group, source) in addresses(),
        sid in proptest::collection::vec(any::<u8>(), 0..=20),
        idle in proptest::option::of(any::<u64>()),
        mcr in proptest::option::of(any::<u32>()),
        pfr in proptest::option::of(any::<u64>()),
        (cipher_suite, key, iv) in crypto(),
        digest_algorithms in algorithms(),
        signature_algorithms in algorithms(),
        extensions in proptest::collection::vec(
            (any::<u16>(), proptest::option::of(proptest::collection::vec(any::<u8>(), 0..6)))
                .prop_map(|(code, value)| Extension { code, value }),
            0..4,
        ),
        max_age in proptest::option::of(any::<u64>()),
        persist in any::<bool>(),
        unknown in proptest::collection::vec(("x-[a-z0-9.-]{0,8}", "[ -~\t]{0,12}|é[a\"\\\\ ]*"), 0..3),
    ) -> Advertisement {
        let mut ad = Advertisement::new(&protocol, group);
        ad.source = source;
        ad.session_id = SessionId::new(&sid).unwrap();
        ad.idle_timeout_ms = idle;
        ad.max_concurrent_resources = mcr;
        ad.peak_flow_rate = pfr;
        ad.cipher_suite = cipher_suite;
        ad.key = key;
        ad.iv = iv;
        ad.digest_algorithms = digest_algorithms;
        ad.signature_algorithms = signature_algorithms;
        ad.extensions = extensions;
        ad.max_age = max_age;
        ad.persist = persist;
        ad.unknown = unknown;
        ad
    }
}

proptest! {
    #[test]
    fn display_round_trips(ad in advertisement()) {
        prop_assert_eq!(ad.validate(), Ok(()));
        let text = ad.to_string();
        prop_assert_eq!(parse_one(&text), Ok(ad.clone()), "{}", text);
        // Also inside a list with other alternatives.
        let list = format!("h3=\":443\"; ma=1, {text}, h2=\"x:1\"");
        prop_assert_eq!(parse(&list), Ok(vec![ad]));
    }

    #[test]
    fn parse_never_panics(s in any::<String>()) {
        let _ = parse(&s);
        let _ = parse_one(&s);
    }

    #[test]
    fn parse_never_panics_on_near_misses(s in "[h3m0-9a-f\\-=\";,: \t\\[\\]\\\\%.xé\u{1}]{0,60}") {
        let _ = parse(&s);
        let _ = parse_one(&s);
        let _ = parse_one(&format!("h3m-07=\"232.0.0.1:1\"; {s}"));
    }

    #[test]
    fn parse_never_panics_on_mangled_output(ad in advertisement(), cut in any::<usize>(), junk in "[;,=\" \\\\%x]") {
        let text = ad.to_string();
        let mut at = cut % (text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let truncated = &text[..at];
        let _ = parse(truncated);
        let spliced = format!("{}{}{}", &text[..at], junk, &text[at..]);
        let _ = parse(&spliced);
        let _ = parse_one(&spliced);
    }
}

#[test]
fn fec_parameters_round_trip_and_bad_ones_are_refused() {
    let ad =
        parse_one(r#"h3m-07="239.255.0.1:2000"; session-id=2a; fec="5,block=256,depth=8,deadline=50"; fec-port=3000"#)
            .unwrap();
    let fec = ad.fec.unwrap();
    assert_eq!((fec.percent, fec.block, fec.depth, fec.deadline.as_millis()), (5, 256, 8, 50));
    assert_eq!(ad.repair_port(), Some(3000));
    assert_eq!(parse_one(&ad.to_string()).unwrap(), ad);
    let plain = parse_one(r#"h3m-07="239.255.0.1:2000"; fec=15"#).unwrap();
    assert_eq!((plain.fec.map(|f| f.depth), plain.repair_port()), (Some(16), Some(2001)));
    assert!(matches!(
        parse_one(r#"h3m-07="239.255.0.1:2000"; fec=0"#),
        Err(AltSvcError::BadParameter { name, .. }) if name == "fec"
    ));
    assert!(matches!(
        parse_one(r#"h3m-07="239.255.0.1:2000"; fec-port=70000"#),
        Err(AltSvcError::BadNumber { param: "fec-port", .. })
    ));
}

#[test]
fn repair_origin_and_pin_round_trip_and_bad_ones_are_refused() {
    let pin = "ab".repeat(32);
    let ad =
        parse_one(&format!(r#"h3m-07="239.255.0.1:2000"; repair="https://10.0.0.1:4433"; repair-pin={pin}"#)).unwrap();
    assert_eq!(ad.repair_origin.as_deref(), Some("https://10.0.0.1:4433"));
    assert_eq!(ad.repair_pin, Some([0xab; 32]));
    assert_eq!(parse_one(&ad.to_string()).unwrap(), ad);
    assert!(matches!(
        parse_one(r#"h3m-07="239.255.0.1:2000"; repair="http://10.0.0.1""#),
        Err(AltSvcError::BadParameter { name, .. }) if name == "repair"
    ));
    assert!(matches!(
        parse_one(r#"h3m-07="239.255.0.1:2000"; repair-pin=abcd"#),
        Err(AltSvcError::BadParameter { name, .. }) if name == "repair-pin"
    ));
}

#[test]
fn ambi_parameters_round_trip_and_bad_ones_are_refused() {
    let ad = parse_one(r#"h3m-07="232.0.0.1:2000"; source-address="10.0.0.1"; ambi=inband; ambi-digest="blake2b/96""#)
        .unwrap();
    assert_eq!((ad.ambi.as_deref(), ad.ambi_digest.as_deref()), (Some("inband"), Some("blake2b/96")));
    assert_eq!(parse_one(&ad.to_string()).unwrap(), ad);
    for channels in ["https", "both"] {
        let ad = parse_one(&format!(r#"h3m-07="232.0.0.1:2000"; ambi={channels}"#)).unwrap();
        assert_eq!(ad.ambi.as_deref(), Some(channels));
        assert_eq!(parse_one(&ad.to_string()).unwrap(), ad);
    }
    assert!(matches!(
        parse_one(r#"h3m-07="232.0.0.1:2000"; ambi=tls"#),
        Err(AltSvcError::BadParameter { name, .. }) if name == "ambi"
    ));
    assert!(matches!(
        parse_one(r#"h3m-07="232.0.0.1:2000"; ambi-digest="md5/128""#),
        Err(AltSvcError::BadParameter { name, .. }) if name == "ambi-digest"
    ));
}
