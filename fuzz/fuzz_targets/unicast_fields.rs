//! The unicast repair's parsers: `Range`, `Content-Range`, `Retry-After`,
//! the origin's push listing, `repr-digest` and origin URLs. What parses
//! writes back to what parses the same (ranges, listings, digests).
#![no_main]

use h3m_unicast::client::OriginUrl;
use h3m_unicast::{listing, repr_digest};
use h3m_unicast::range::{ByteRange, ContentRange, parse_retry_after};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(ByteRange::FromTo(a, b)) = ByteRange::parse(text)
        && b < u64::MAX
    {
        let again = ByteRange::header_value(&(a..b + 1)).expect("non-empty");
        assert_eq!(ByteRange::parse(&again), Ok(ByteRange::FromTo(a, b)));
    }
    if let Ok(cr) = ContentRange::parse(text) {
        let again = ContentRange::header_value(&cr.range, cr.complete);
        assert_eq!(ContentRange::parse(&again), Ok(cr));
    }
    let _ = parse_retry_after(text);
    if let Ok(l) = listing::parse(text) {
        assert_eq!(listing::parse(&listing::format(&l)), Ok(l));
    }
    let _ = OriginUrl::parse(text);
    if let Some(d) = repr_digest::parse(data) {
        assert_eq!(repr_digest::parse(repr_digest::format(&d).as_bytes()), Some(d));
    }
});
