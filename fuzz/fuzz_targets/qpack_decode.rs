//! QPACK field-section decoding, and the encoder as its inverse.
//!
//! The whole input is one field section, decoded with the default limits. When
//! it decodes, the field list is encoded again (nghq's choices, then raw
//! literals without the N bit) and each encoding must decode to the same list.
//! Encoding is also checked to be deterministic: decoding nghq-style output and
//! encoding it again gives the same bytes.
#![no_main]

use h3m_proto::qpack::{
    DecodeLimits, EncodeOptions, decode_field_section, encode_field_section, encode_field_section_with,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits::default();
    let Ok(fields) = decode_field_section(data, &limits) else { return };
    assert!(fields.len() <= limits.max_fields);
    let size: usize = fields.iter().map(|f| f.size()).sum();
    assert!(size <= limits.max_section_size, "section size {size} over the limit");

    let mut wire = Vec::new();
    encode_field_section(&fields, &mut wire);
    let again = decode_field_section(&wire, &limits).expect("encoder output decodes");
    assert_eq!(again, fields);

    let mut wire2 = Vec::new();
    encode_field_section(&again, &mut wire2);
    assert_eq!(wire2, wire);

    let plain = EncodeOptions { never_index: false, huffman: false };
    let mut raw = Vec::new();
    encode_field_section_with(&fields, &plain, &mut raw);
    assert!(wire.len() <= raw.len(), "Huffman made the section longer");
    assert_eq!(decode_field_section(&raw, &limits).expect("raw encoder output decodes"), fields);
});
