//! QPACK against the nghq capture vectors.
//!
//! Walks every `vectors/nghq/*.expected.json`, rebuilds each field section
//! from its field lines (`00 00` followed by the concatenated `wire_hex`) and
//! checks that `h3m_proto::qpack` decodes it to the listed names and values.
//! For the sessions nghq itself produced (s01-s12, s17; ls-qpack, N=1,
//! Huffman when shorter) it also checks that the encoder reproduces every
//! field line and every section byte for byte. The crafted sessions (s13-s16,
//! s18) are decode-only.

use std::fs;
use std::path::{Path, PathBuf};

use h3m_proto::qpack::{DecodeLimits, HeaderField, decode_field_section, encode_field_section};
use serde_json::Value;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/vectors/nghq");

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_else(|e| panic!("wire_hex {s:?}: {e}"))
}

/// The `*.expected.json` files, sorted by name.
fn expected_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(Path::new(VECTORS))
        .unwrap_or_else(|e| panic!("reading {VECTORS}: {e}"))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(".expected.json")))
        .collect();
    files.sort();
    files
}

/// Scenarios whose sections were encoded by nghq (ls-qpack): s01-s12 and s17.
fn produced_by_nghq(scenario: &str) -> bool {
    let number: u32 = scenario
        .strip_prefix('s')
        .and_then(|rest| rest.get(..2))
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("scenario name {scenario:?} does not start with sNN"));
    (1..=12).contains(&number) || number == 17
}

fn str_field<'a>(value: &'a Value, key: &str, ctx: &str) -> &'a str {
    value[key].as_str().unwrap_or_else(|| panic!("{ctx}: `{key}` is not a string"))
}

#[test]
fn nghq_vectors_qpack_sections() {
    let files = expected_files();
    assert!(!files.is_empty(), "no *.expected.json under {VECTORS}");

    let mut scenarios = 0usize;
    let mut sections_decoded = 0usize;
    let mut sections_reencoded = 0usize;
    let mut lines_reencoded = 0usize;

    for path in &files {
        let file_name = path.file_name().and_then(|n| n.to_str()).expect("utf-8 file name");
        let scenario = file_name.trim_end_matches(".expected.json");
        let by_nghq = produced_by_nghq(scenario);
        let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{file_name}: {e}"));
        let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file_name}: {e}"));
        scenarios += 1;

        let streams = json["streams"].as_array().unwrap_or_else(|| panic!("{scenario}: no `streams` array"));
        for stream in streams {
            let stream_id = stream["stream_id"].as_u64().expect("stream_id");
            let frames = stream["h3_frames"]
                .as_array()
                .unwrap_or_else(|| panic!("{scenario}: stream {stream_id}: no `h3_frames`"));
            for frame in frames {
                let section = match frame.get("field_section") {
                    Some(section) if !section.is_null() => section,
                    _ => continue,
                };
                let ctx = format!(
                    "{scenario} stream {stream_id} {} frame at offset {}",
                    frame["name"].as_str().unwrap_or("?"),
                    frame["offset"]
                );
                assert_eq!(section["required_insert_count"].as_u64(), Some(0), "{ctx}");
                assert_eq!(section["delta_base"].as_u64(), Some(0), "{ctx}");

                let lines = section["fields"].as_array().unwrap_or_else(|| panic!("{ctx}: no `fields` array"));
                let mut wire = vec![0x00, 0x00];
                let mut expected = Vec::with_capacity(lines.len());
                for line in lines {
                    let line_hex = str_field(line, "wire_hex", &ctx);
                    let field = HeaderField::new(
                        str_field(line, "name", &ctx).as_bytes(),
                        str_field(line, "value", &ctx).as_bytes(),
                    );
                    if by_nghq {
                        // Field line by field line first, for a precise message.
                        let mut out = Vec::new();
                        encode_field_section(std::slice::from_ref(&field), &mut out);
                        assert_eq!(
                            hex::encode(&out[2..]),
                            line_hex,
                            "{ctx}: encoding `{}` (repr {}, index {})",
                            str_field(line, "name", &ctx),
                            line["repr"],
                            line["index"]
                        );
                        lines_reencoded += 1;
                    }
                    wire.extend_from_slice(&unhex(line_hex));
                    expected.push(field);
                }

                let decoded = decode_field_section(&wire, &DecodeLimits::default())
                    .unwrap_or_else(|e| panic!("{ctx}: decode failed: {e}"));
                assert_eq!(decoded, expected, "{ctx}: decoded fields differ");
                sections_decoded += 1;

                if by_nghq {
                    let mut out = Vec::new();
                    encode_field_section(&expected, &mut out);
                    assert_eq!(hex::encode(&out), hex::encode(&wire), "{ctx}: encoded section differs");
                    sections_reencoded += 1;
                }
            }
        }
    }

    eprintln!(
        "qpack vectors: {scenarios} scenarios, {sections_decoded} sections decoded, \
         {sections_reencoded} sections ({lines_reencoded} field lines) re-encoded byte-exact"
    );
    assert!(sections_decoded > 0, "no field sections found");
    assert!(sections_reencoded > 0, "no nghq-encoded field sections found");
    assert!(sections_reencoded < sections_decoded, "crafted scenarios missing");
}
