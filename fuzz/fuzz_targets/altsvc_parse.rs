//! Alt-Svc `h3m-NN` advertisement parsing and its `Display` round trip.
//!
//! The input, converted to UTF-8 lossily, is an `Alt-Svc` field value. Every
//! advertisement `parse` returns must pass `validate` and must be written by
//! `Display` as text that `parse_one` reads back equal. `parse_each` and
//! `parse_one` run on the same input too (panics only).
#![no_main]

use h3m_proto::altsvc::{parse, parse_each, parse_one};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let each = parse_each(&text);
    let _ = parse_one(&text);
    let Ok(ads) = parse(&text) else { return };
    // parse is parse_each with every alternative required to be good.
    let each = each.expect("parse succeeded, so the field is well-formed");
    assert_eq!(each.len(), ads.len());
    for ad in ads {
        if let Err(e) = ad.validate() {
            panic!("parsed advertisement fails validate: {e}\n  input: {text:?}\n  ad: {ad:?}");
        }
        let written = ad.to_string();
        match parse_one(&written) {
            Ok(back) => assert!(
                back == ad,
                "round trip changed the advertisement\n  input: {text:?}\n  written: {written:?}\n  before: {ad:?}\n  after:  {back:?}"
            ),
            Err(e) => panic!("written advertisement does not parse: {e}\n  input: {text:?}\n  written: {written:?}"),
        }
    }
});
