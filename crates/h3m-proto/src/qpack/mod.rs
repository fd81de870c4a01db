//! Static-table QPACK (RFC 9204) with Huffman string coding (RFC 7541,
//! Appendix B), both directions.
//!
//! h3m sessions are one-way: a multicast receiver has no decoder stream to
//! acknowledge dynamic-table insertions, so draft-pardue-quic-http-mcast-07
//! senders (nghq among them) run QPACK with a zero-capacity dynamic table.
//! Every field section then starts with a Required Insert Count of 0 and
//! every field line refers to the static table or carries literals. This
//! module implements exactly that profile:
//!
//! - [`decode_field_section`] accepts every representation a static-only
//!   peer can send (indexed, literal with static name reference, literal with
//!   literal name; N and H bits in any combination; any Delta Base) and
//!   rejects anything that needs the dynamic table with a [`QpackError`].
//!   It never panics, bounds its memory by the input length and the
//!   [`DecodeLimits`], and checks every length against the remaining input
//!   before copying.
//! - [`encode_field_section`] produces the same bytes as ls-qpack configured
//!   as nghq configures it (no dynamic table, never-index flag, Huffman when
//!   strictly shorter), byte for byte; [`encode_field_section_with`] lets the
//!   caller turn off the N bit or Huffman coding.
//!
//! # Encoding rules (ls-qpack as used by nghq)
//!
//! The section prefix is always `00 00` (Required Insert Count 0, Delta Base
//! 0). For each field, in order:
//!
//! 1. If the (name, value) pair is in the [static table](static_table), emit
//!    an indexed field line `11xxxxxx` (6-bit prefix index, T=1).
//! 2. Otherwise, if the name is in the static table, emit a literal field line
//!    with name reference `01NTxxxx` (N = never-index option, T=1, 4-bit
//!    prefix index) using the *lowest* static index carrying that name, which
//!    is what ls-qpack's name lookup returns (`:status` is 24, `content-type`
//!    is 44, `user-agent` is 95).
//! 3. Otherwise emit a literal field line with literal name `001NHxxx`
//!    (3-bit prefix name length).
//!
//! Each string is Huffman-coded only when that is strictly shorter than the
//! raw octets (equal length stays raw); the H bit says which. The value
//! string's length uses a 7-bit prefix with H as the high bit.
//!
//! Integers are RFC 7541 §5.1 prefix integers. The decoder rejects values
//! above 2^62 and continuations longer than needed to carry 63 bits with
//! [`QpackError::IntegerOverflow`].
//!
//! # Example
//!
//! ```
//! use h3m_proto::qpack::{decode_field_section, encode_field_section, DecodeLimits, HeaderField};
//!
//! let fields = vec![
//!     HeaderField::new(":method", "GET"),
//!     HeaderField::new(":authority", "localhost"),
//! ];
//! let mut wire = Vec::new();
//! encode_field_section(&fields, &mut wire);
//! assert_eq!(wire, [0x00, 0x00, 0xd1, 0x70, 0x86, 0xa0, 0xe4, 0x1d, 0x13, 0x9d, 0x09]);
//! assert_eq!(decode_field_section(&wire, &DecodeLimits::default()).unwrap(), fields);
//! ```

pub mod huffman;
pub mod static_table;

/// One header field line (name and value as bytes; values may be non-ASCII
/// UTF-8 or any other octets).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HeaderField {
    /// The field name, as sent (HTTP/3 requires lowercase; not enforced here).
    pub name: Vec<u8>,
    /// The field value.
    pub value: Vec<u8>,
}

impl HeaderField {
    /// A field from anything convertible to bytes (`&str`, `String`, `&[u8]`,
    /// `Vec<u8>`, ...).
    pub fn new(name: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self { name: name.into(), value: value.into() }
    }

    /// The RFC 9204 §3.2.1 / §4.1.1.3 size of this field: name length plus
    /// value length plus 32.
    pub fn size(&self) -> usize {
        self.name.len().saturating_add(self.value.len()).saturating_add(ENTRY_OVERHEAD)
    }
}

/// Per-field overhead counted in the section size (RFC 9204 §3.2.1).
const ENTRY_OVERHEAD: usize = 32;

/// Largest prefix-integer value the decoder accepts: 2^62. Everything QPACK
/// carries (indices, lengths, counts) is far smaller; the bound keeps the
/// decoder's arithmetic comfortably inside `u64`.
const MAX_INT: u64 = 1 << 62;

/// Limits applied while decoding (memory stays bounded on hostile input).
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Most field lines accepted in one section.
    pub max_fields: usize,
    /// Largest accepted section size, counted as in RFC 9204 §4.1.1.3: the sum
    /// over the decoded fields of `name.len() + value.len() + 32`. This is the
    /// value an HTTP/3 endpoint advertises as SETTINGS_MAX_FIELD_SECTION_SIZE.
    pub max_section_size: usize,
}

impl Default for DecodeLimits {
    /// 256 fields, 64 KiB.
    fn default() -> Self {
        Self { max_fields: 256, max_section_size: 64 * 1024 }
    }
}

/// Encoder choices; the default reproduces nghq's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Set the N ("never index") bit on literal field lines. Default `true`,
    /// as nghq does.
    pub never_index: bool,
    /// Huffman-code a string when (and only when) that is strictly shorter
    /// than the raw octets. Default `true`; `false` always sends raw strings.
    pub huffman: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self { never_index: true, huffman: true }
    }
}

/// Errors from decoding a QPACK field section. All of them are connection
/// errors of type QPACK_DECOMPRESSION_FAILED (RFC 9204 §6) for an HTTP/3
/// endpoint, except [`QpackError::TooManyFields`] and
/// [`QpackError::SectionTooLarge`], which are local limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QpackError {
    /// The input ended inside an integer, a string or the section prefix.
    #[error("QPACK field section truncated")]
    Truncated,
    /// The section's Required Insert Count (the encoded value) is not zero:
    /// it depends on dynamic-table state, which this decoder never has.
    #[error("QPACK Required Insert Count is {0}, not 0: dynamic table references are not supported")]
    RequiredInsertCount(u64),
    /// A field line refers to the dynamic table (indexed or name reference
    /// with T=0, or any post-base form).
    #[error("QPACK field line references the dynamic table, which is not supported")]
    DynamicReference,
    /// A static-table index past the 99-entry table.
    #[error("QPACK static table index {0} is out of range (the table has 99 entries)")]
    InvalidStaticIndex(u64),
    /// A prefix integer larger than 2^62 or with too many continuation bytes.
    #[error("QPACK prefix integer exceeds 2^62 or has too many continuation bytes")]
    IntegerOverflow,
    /// A Huffman-coded string contains EOS, has more than 7 bits of padding,
    /// or padding that is not all ones.
    #[error("invalid Huffman-coded string (EOS symbol, or padding longer than 7 bits or not all ones)")]
    InvalidHuffman,
    /// The section has more field lines than the limit carried here.
    #[error("QPACK field section has more than {0} field lines")]
    TooManyFields(usize),
    /// The decoded section's RFC 9204 size exceeds the limit carried here.
    #[error("QPACK field section exceeds the size limit of {0} bytes")]
    SectionTooLarge(usize),
}

// ---------------------------------------------------------------------------
// Decoder
// ---------------------------------------------------------------------------

/// Decodes one field section (the payload of a HEADERS frame, or of a
/// PUSH_PROMISE frame after its push ID) into its field lines, in order.
///
/// Only static-table QPACK is accepted: a non-zero Required Insert Count or
/// any dynamic reference is an error. The Delta Base is read and ignored
/// (any sign and value is valid when the Required Insert Count is 0).
pub fn decode_field_section(buf: &[u8], limits: &DecodeLimits) -> Result<Vec<HeaderField>, QpackError> {
    let mut rest = buf;

    // Section prefix: Required Insert Count (8-bit prefix) ...
    let ric = read_int(&mut rest, 8)?;
    if ric != 0 {
        return Err(QpackError::RequiredInsertCount(ric));
    }
    // ... then sign bit and Delta Base (7-bit prefix), meaningless here.
    read_int(&mut rest, 7)?;

    // Each field line takes at least one byte of input.
    let mut fields = Vec::with_capacity(limits.max_fields.min(rest.len()));
    let mut budget = Budget { used: 0, limit: limits.max_section_size };
    while let Some(&first) = rest.first() {
        if fields.len() >= limits.max_fields {
            return Err(QpackError::TooManyFields(limits.max_fields));
        }
        budget.charge(ENTRY_OVERHEAD)?;
        let field = if first & 0x80 != 0 {
            // 1Txxxxxx: indexed field line.
            if first & 0x40 == 0 {
                return Err(QpackError::DynamicReference);
            }
            let (name, value) = read_static_index(&mut rest, 6)?;
            budget.charge(name.len())?;
            budget.charge(value.len())?;
            HeaderField::new(name, value)
        } else if first & 0x40 != 0 {
            // 01NTxxxx: literal field line with name reference.
            if first & 0x10 == 0 {
                return Err(QpackError::DynamicReference);
            }
            let (name, _) = read_static_index(&mut rest, 4)?;
            budget.charge(name.len())?;
            let value = read_string(&mut rest, 7, &mut budget)?;
            HeaderField::new(name, value)
        } else if first & 0x20 != 0 {
            // 001NHxxx: literal field line with literal name.
            let name = read_string(&mut rest, 3, &mut budget)?;
            let value = read_string(&mut rest, 7, &mut budget)?;
            HeaderField { name, value }
        } else {
            // 0001xxxx: indexed field line with post-base index;
            // 0000Nxxx: literal field line with post-base name reference.
            return Err(QpackError::DynamicReference);
        };
        fields.push(field);
    }
    Ok(fields)
}

/// The running RFC 9204 size of the section being decoded, against its limit.
struct Budget {
    used: usize,
    limit: usize,
}

impl Budget {
    /// Counts `n` more bytes, failing once the total would pass the limit.
    fn charge(&mut self, n: usize) -> Result<(), QpackError> {
        self.used = self
            .used
            .checked_add(n)
            .filter(|&used| used <= self.limit)
            .ok_or(QpackError::SectionTooLarge(self.limit))?;
        Ok(())
    }

    /// Bytes still allowed.
    fn remaining(&self) -> usize {
        self.limit.saturating_sub(self.used)
    }
}

/// Reads a static-table index (prefix integer of `prefix_bits` bits) and
/// returns its entry.
fn read_static_index(rest: &mut &[u8], prefix_bits: u32) -> Result<(&'static [u8], &'static [u8]), QpackError> {
    let index = read_int(rest, prefix_bits)?;
    static_table::get(index).ok_or(QpackError::InvalidStaticIndex(index))
}

/// Reads an RFC 7541 §5.1 prefix integer whose first byte is `rest[0]`
/// (its high `8 - prefix_bits` bits are flags and ignored), `1 <= prefix_bits <= 8`.
fn read_int(rest: &mut &[u8], prefix_bits: u32) -> Result<u64, QpackError> {
    let (&first, tail) = rest.split_first().ok_or(QpackError::Truncated)?;
    *rest = tail;
    let mask: u64 = (1u64 << prefix_bits) - 1;
    let mut value = u64::from(first) & mask;
    if value < mask {
        return Ok(value);
    }
    let mut shift: u32 = 0;
    loop {
        // Nine continuation bytes carry 63 bits, more than MAX_INT needs.
        if shift > 56 {
            return Err(QpackError::IntegerOverflow);
        }
        let (&b, tail) = rest.split_first().ok_or(QpackError::Truncated)?;
        *rest = tail;
        // value <= 2^62 and (b & 0x7f) << 56 < 2^63: no u64 overflow.
        value += u64::from(b & 0x7f) << shift;
        if value > MAX_INT {
            return Err(QpackError::IntegerOverflow);
        }
        if b & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
    }
}

/// Reads a string literal whose length is a `prefix_bits` prefix integer with
/// the Huffman flag just above it (RFC 9204 §4.1.2), charging its decoded
/// length to `budget`. The length is checked against the remaining input, and
/// a string that cannot fit the budget is rejected, before anything is
/// allocated.
fn read_string(rest: &mut &[u8], prefix_bits: u32, budget: &mut Budget) -> Result<Vec<u8>, QpackError> {
    let first = *rest.first().ok_or(QpackError::Truncated)?;
    let huffman = first & (1 << prefix_bits) != 0;
    let len = read_int(rest, prefix_bits)?;
    let len = usize::try_from(len).map_err(|_| QpackError::Truncated)?;
    let (bytes, tail) = rest.split_at_checked(len).ok_or(QpackError::Truncated)?;
    *rest = tail;
    let out = if huffman {
        // No code is longer than 30 bits and padding is under 8 bits, so
        // `len` bytes decode to at least this many octets.
        let min_decoded = len.saturating_mul(8).saturating_sub(7).div_ceil(30);
        if min_decoded > budget.remaining() {
            return Err(QpackError::SectionTooLarge(budget.limit));
        }
        let mut out = Vec::new();
        huffman::decode(bytes, &mut out)?;
        out
    } else {
        if len > budget.remaining() {
            return Err(QpackError::SectionTooLarge(budget.limit));
        }
        bytes.to_vec()
    };
    budget.charge(out.len())?;
    Ok(out)
}

// ---------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------

/// Appends the field section for `fields` to `out`, byte-identical to nghq's
/// ls-qpack output (never-index literals, Huffman when strictly shorter).
///
/// Same as [`encode_field_section_with`] with [`EncodeOptions::default`].
pub fn encode_field_section(fields: &[HeaderField], out: &mut Vec<u8>) {
    encode_field_section_with(fields, &EncodeOptions::default(), out);
}

/// Appends the field section for `fields` to `out` (nothing already in `out`
/// is touched), using only the static table. See the [module
/// documentation](self) for the representation chosen for each field.
pub fn encode_field_section_with(fields: &[HeaderField], opts: &EncodeOptions, out: &mut Vec<u8>) {
    // Required Insert Count 0; sign 0, Delta Base 0.
    out.extend_from_slice(&[0x00, 0x00]);
    for field in fields {
        encode_field_line(field, opts, out);
    }
}

fn encode_field_line(field: &HeaderField, opts: &EncodeOptions, out: &mut Vec<u8>) {
    if let Some(index) = static_table::find_exact(&field.name, &field.value) {
        // Indexed field line, static: 1 T=1 index(6+).
        write_int(out, 0xc0, 6, index as u64);
    } else if let Some(index) = static_table::find_name(&field.name) {
        // Literal with name reference: 01 N T=1 index(4+), then the value.
        let n = if opts.never_index { 0x20 } else { 0 };
        write_int(out, 0x40 | n | 0x10, 4, index as u64);
        write_string(out, 0x00, 7, &field.value, opts.huffman);
    } else {
        // Literal with literal name: 001 N H namelen(3+), name, then the value.
        let n = if opts.never_index { 0x10 } else { 0 };
        write_string(out, 0x20 | n, 3, &field.name, opts.huffman);
        write_string(out, 0x00, 7, &field.value, opts.huffman);
    }
}

/// Writes a prefix integer: `flags` holds the bits above the prefix.
fn write_int(out: &mut Vec<u8>, flags: u8, prefix_bits: u32, value: u64) {
    let mask: u8 = ((1u16 << prefix_bits) - 1) as u8;
    if value < u64::from(mask) {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | mask);
    let mut rest = value - u64::from(mask);
    while rest >= 0x80 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// Writes a string literal: H flag at bit `prefix_bits`, length as a prefix
/// integer below it, then the octets (Huffman-coded when allowed and strictly
/// shorter, as ls-qpack decides).
fn write_string(out: &mut Vec<u8>, flags: u8, prefix_bits: u32, s: &[u8], allow_huffman: bool) {
    let huff_len = if allow_huffman { huffman::encoded_len(s) } else { usize::MAX };
    if huff_len < s.len() {
        write_int(out, flags | (1 << prefix_bits), prefix_bits, huff_len as u64);
        huffman::encode(s, out);
    } else {
        write_int(out, flags, prefix_bits, s.len() as u64);
        out.extend_from_slice(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("hex digits")
    }

    fn enc(fields: &[HeaderField], opts: &EncodeOptions) -> String {
        let mut out = Vec::new();
        encode_field_section_with(fields, opts, &mut out);
        hex::encode(&out)
    }

    fn dec(wire_hex: &str) -> Result<Vec<HeaderField>, QpackError> {
        decode_field_section(&unhex(wire_hex), &DecodeLimits::default())
    }

    const NGHQ: EncodeOptions = EncodeOptions { never_index: true, huffman: true };
    const RAW: EncodeOptions = EncodeOptions { never_index: false, huffman: false };

    /// Single field lines from the nghq captures (ls-qpack output), checked
    /// in both directions: (name, value, field line bytes).
    const NGHQ_LINES: &[(&str, &str, &str)] = &[
        (":method", "GET", "d1"),
        (":scheme", "https", "d7"),
        (":status", "200", "d9"),
        (":authority", "localhost", "7086a0e41d139d09"),
        (":path", "//hello.txt", "71886189cb45075d3e53"),
        (":path", "//data100k.bin", "718a618906918400eabc66ab"),
        (
            "user-agent",
            "NGHQ-Example/1.0 (Linux) NGHQ/20180321 NGHQ-Server/1.0",
            "7f50aad38b1ec5b0791d35d05602b814feb39aab7cff6a69c58f6302005e03220a9a7163d8b6e2d9dcb63015c1",
        ),
        ("server", "NGHQ-Server/1.0 (GNU/Linux)", "7f4d96d38b1ec5b716cee5b180ae053fac5a78319cd55be7fb"),
        ("date", "Fri, 27 Nov 2026 16:05:01 GMT", "7696c361be9413aa693f75040138a05cb806ee002a62d1bf"),
        ("content-type", "application/octet-stream", "7f1d901d75d0620d263d4c1c892a56426c28e9"),
        // Literal name: `3f 00` is length 7 on a 3-bit prefix (7 + 0).
        ("connection", "close", "3f0021eaa8a4498f57842507417f"),
        (
            "digest",
            "sha256=2WuralXuMmuiBt1KhabpXhQ2DX+rv0SPA+aJwkOCt9A=",
            "3c90d31509a944e3136e402e56d83a3f2dd14da6ba90e69c71d7f93ec15ffcff767706ed70ffb1e5f1d755e4bf0c1f",
        ),
    ];

    /// Field lines of the crafted captures: N=0, raw strings.
    const RAW_LINES: &[(&str, &str, &str)] = &[
        (":authority", "example.org", "500b6578616d706c652e6f7267"),
        (":path", "/crafted/a.txt", "510e2f637261667465642f612e747874"),
        ("connection", "close", "2703636f6e6e656374696f6e05636c6f7365"),
    ];

    #[test]
    fn nghq_field_lines_both_ways() {
        for &(name, value, line) in NGHQ_LINES {
            let field = HeaderField::new(name, value);
            assert_eq!(enc(std::slice::from_ref(&field), &NGHQ), format!("0000{line}"), "{name}: {value}");
            assert_eq!(dec(&format!("0000{line}")).unwrap(), vec![field]);
        }
    }

    #[test]
    fn crafted_raw_field_lines_both_ways() {
        for &(name, value, line) in RAW_LINES {
            let field = HeaderField::new(name, value);
            assert_eq!(enc(std::slice::from_ref(&field), &RAW), format!("0000{line}"));
            assert_eq!(dec(&format!("0000{line}")).unwrap(), vec![field]);
        }
        // The crafted captures reference name 44 for `content-type:
        // text/plain` although entry 53 matches exactly: decode only (an
        // ls-qpack style encoder sends `f5`).
        assert_eq!(
            dec("00005f1d0a746578742f706c61696e").unwrap(),
            vec![HeaderField::new("content-type", "text/plain")]
        );
        assert_eq!(enc(&[HeaderField::new("content-type", "text/plain")], &RAW), "0000f5");
    }

    #[test]
    fn whole_nghq_section() {
        // s06-hello-nossl-v4, the HEADERS frame of push 0.
        let wire = "0000d97f4d96d38b1ec5b716cee5b180ae053fac5a78319cd55be7fb7696c361be9413aa693f\
                    75040138a05cb8005c65e53168df7f1d93497ca58ae819aafb50938ec4153070df8567bf3f00\
                    21eaa8a4498f57842507417f";
        let fields = vec![
            HeaderField::new(":status", "200"),
            HeaderField::new("server", "NGHQ-Server/1.0 (GNU/Linux)"),
            HeaderField::new("date", "Fri, 27 Nov 2026 16:00:38 GMT"),
            HeaderField::new("content-type", "text/plain; charset=UTF-8"),
            HeaderField::new("connection", "close"),
        ];
        assert_eq!(dec(wire).unwrap(), fields);
        assert_eq!(enc(&fields, &EncodeOptions::default()), wire);
        let mut out = Vec::new();
        encode_field_section(&fields, &mut out);
        assert_eq!(hex::encode(&out), wire);
    }

    #[test]
    fn raw_utf8_path_stays_raw() {
        // Non-ASCII octets have 19-22 bit codes: Huffman is longer, so raw.
        let path = "/caf\u{e9}.txt";
        assert!(huffman::encoded_len(path.as_bytes()) > path.len());
        let field = HeaderField::new(":path", path);
        let wire = "0000710a2f636166c3a92e747874";
        assert_eq!(enc(std::slice::from_ref(&field), &NGHQ), wire);
        assert_eq!(dec(wire).unwrap(), vec![field]);
    }

    #[test]
    fn huffman_only_when_strictly_shorter() {
        // "1" is 5 bits -> 1 byte either way: equal, so raw.
        assert_eq!(huffman::encoded_len(b"1"), 1);
        assert_eq!(enc(&[HeaderField::new("age", "1")], &NGHQ), "0000720131");
        // Empty strings are raw with length 0 (custom name, empty value).
        // 0x31 = 001 N=1 H=0 len=1, "x", then 0x00: raw empty value.
        assert_eq!(enc(&[HeaderField::new("x", "")], &NGHQ), "0000317800");
    }

    #[test]
    fn rfc9204_b1_literal_with_name_reference() {
        // RFC 9204 Appendix B.1.
        let wire = "0000510b2f696e6465782e68746d6c";
        let field = HeaderField::new(":path", "/index.html");
        assert_eq!(dec(wire).unwrap(), vec![field.clone()]);
        assert_eq!(enc(&[field], &RAW), wire);
    }

    #[test]
    fn rfc7541_c4_huffman_examples() {
        let cases: &[(&str, &str)] = &[
            ("www.example.com", "f1e3c2e5f23a6ba0ab90f4ff"),
            ("no-cache", "a8eb10649cbf"),
            ("custom-key", "25a849e95ba97d7f"),
            ("custom-value", "25a849e95bb8e8b4bf"),
        ];
        for &(text, coded) in cases {
            let mut out = Vec::new();
            huffman::encode(text.as_bytes(), &mut out);
            assert_eq!(hex::encode(&out), coded, "{text}");
            assert_eq!(huffman::encoded_len(text.as_bytes()), out.len());
            let mut back = Vec::new();
            huffman::decode(&unhex(coded), &mut back).unwrap();
            assert_eq!(back, text.as_bytes());
        }
    }

    #[test]
    fn huffman_rejects_bad_padding_and_eos() {
        let mut out = Vec::new();
        // 8 bits of ones: padding longer than 7 bits.
        assert_eq!(huffman::decode(&[0xff], &mut out), Err(QpackError::InvalidHuffman));
        // 'a' (00011) then 000 padding: not all ones.
        assert_eq!(huffman::decode(&[0x18], &mut out), Err(QpackError::InvalidHuffman));
        // 'a' then 111 padding is fine.
        out.clear();
        huffman::decode(&[0x1f], &mut out).unwrap();
        assert_eq!(out, b"a");
        // EOS (30 ones) followed by two padding ones.
        assert_eq!(huffman::decode(&[0xff, 0xff, 0xff, 0xff], &mut out), Err(QpackError::InvalidHuffman));
        // Empty input is the empty string.
        out.clear();
        huffman::decode(&[], &mut out).unwrap();
        assert!(out.is_empty());
        // Every single octet round-trips, including the 30-bit ones.
        for b in 0..=255u8 {
            let mut coded = Vec::new();
            huffman::encode(&[b], &mut coded);
            let mut back = Vec::new();
            huffman::decode(&coded, &mut back).unwrap();
            assert_eq!(back, [b]);
        }
    }

    #[test]
    fn huffman_table_spot_checks() {
        // Rows of RFC 7541 Appendix B.
        assert_eq!(huffman::CODES[0], (0x1ff8, 13));
        assert_eq!(huffman::CODES[usize::from(b'0')], (0x0, 5));
        assert_eq!(huffman::CODES[usize::from(b'/')], (0x18, 6));
        assert_eq!(huffman::CODES[usize::from(b'\\')], (0x7fff0, 19));
        assert_eq!(huffman::CODES[10], (0x3ffffffc, 30));
        assert_eq!(huffman::CODES[255], (0x3ffffee, 26));
        assert_eq!(huffman::CODES[256], (0x3fffffff, 30));
    }

    #[test]
    fn prefix_integers_rfc7541_c1() {
        let mut out = Vec::new();
        write_int(&mut out, 0, 5, 10);
        write_int(&mut out, 0, 5, 1337);
        write_int(&mut out, 0, 8, 42);
        assert_eq!(hex::encode(&out), "0a1f9a0a2a");
        let mut rest: &[u8] = &out;
        assert_eq!(read_int(&mut rest, 5), Ok(10));
        assert_eq!(read_int(&mut rest, 5), Ok(1337));
        assert_eq!(read_int(&mut rest, 8), Ok(42));
        assert!(rest.is_empty());
        // Largest accepted value, and one past it.
        for (value, ok) in [(MAX_INT, true), (MAX_INT + 1, false)] {
            let mut buf = Vec::new();
            write_int(&mut buf, 0, 6, value);
            let mut rest: &[u8] = &buf;
            let got = read_int(&mut rest, 6);
            if ok {
                assert_eq!(got, Ok(value));
            } else {
                assert_eq!(got, Err(QpackError::IntegerOverflow));
            }
        }
        // Overlong continuation (ten bytes of 0x80, then 0).
        let mut long = vec![0x3f];
        long.extend_from_slice(&[0x80; 10]);
        long.push(0);
        assert_eq!(read_int(&mut &long[..], 6), Err(QpackError::IntegerOverflow));
        // Non-minimal but short continuations are accepted.
        assert_eq!(read_int(&mut &[0x3f, 0x80, 0x00][..], 6), Ok(63));
    }

    #[test]
    fn index_choice() {
        let cases: &[(&str, &str, &str)] = &[
            // Exact match past the 6-bit prefix: index 66 = 63 + 3.
            (":status", "302", "ff03"),
            (":status", "500", "ff08"),
            // Name-only: the lowest index with that name.
            (":status", "201", "7f09" /* 24 = 15 + 9 */),
            (":method", "PATCH", "7f00"),
            ("content-type", "text/plain; charset=UTF-8", "7f1d"),
            (":authority", "a", "70"),
        ];
        for &(name, value, prefix) in cases {
            let got = enc(&[HeaderField::new(name, value)], &NGHQ);
            assert!(got[4..].starts_with(prefix), "{name}: {value} -> {got}, expected prefix {prefix}");
        }
        assert_eq!(static_table::find_name(b":status"), Some(24));
        assert_eq!(static_table::find_name(b"content-type"), Some(44));
        assert_eq!(static_table::find_name(b"connection"), None);
        assert_eq!(static_table::find_exact(b":status", b"425"), Some(70));
        assert_eq!(static_table::get(98), Some((&b"x-frame-options"[..], &b"sameorigin"[..])));
        assert_eq!(static_table::get(99), None);
        assert_eq!(static_table::STATIC_TABLE.len(), 99);
    }

    fn huff(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        huffman::encode(s, &mut out);
        out
    }

    #[test]
    fn decoder_accepts_all_static_forms() {
        // Non-zero Delta Base with the sign bit set (ignored when RIC is 0).
        let mut wire = unhex("00ff05");
        // Indexed static.
        wire.push(0xd1);
        // Name reference, N=0, raw value.
        wire.extend_from_slice(&unhex("5103616263"));
        // Name reference, N=1, Huffman value.
        wire.push(0x71);
        wire.push(0x80 | huff(b"abc").len() as u8);
        wire.extend_from_slice(&huff(b"abc"));
        // Literal name, N=0, raw name, raw value.
        wire.extend_from_slice(&unhex("216103646566"));
        // Literal name, N=1, Huffman name, Huffman value.
        wire.push(0x38 | huff(b"a").len() as u8);
        wire.extend_from_slice(&huff(b"a"));
        wire.push(0x80 | huff(b"quote").len() as u8);
        wire.extend_from_slice(&huff(b"quote"));
        // Literal name, N=0, Huffman name, raw empty value.
        wire.push(0x28 | huff(b"b").len() as u8);
        wire.extend_from_slice(&huff(b"b"));
        wire.push(0x00);
        let got = decode_field_section(&wire, &DecodeLimits::default()).unwrap();
        assert_eq!(
            got,
            vec![
                HeaderField::new(":method", "GET"),
                HeaderField::new(":path", "abc"),
                HeaderField::new(":path", "abc"),
                HeaderField::new("a", "def"),
                HeaderField::new("a", "quote"),
                HeaderField::new("b", ""),
            ]
        );
        // An empty section is valid.
        assert_eq!(dec("0000"), Ok(vec![]));
    }

    #[test]
    fn decoder_errors() {
        use QpackError::*;
        let cases: &[(&str, QpackError)] = &[
            ("", Truncated),
            ("00", Truncated),
            ("0000ff", Truncated),
            ("000051", Truncated),
            ("0000510561", Truncated),
            ("00002161", Truncated),
            ("0100", RequiredInsertCount(1)),
            ("ff0a00", RequiredInsertCount(265)),
            // Indexed, T=0 (dynamic).
            ("000080", DynamicReference),
            // Name reference, T=0.
            ("00004000", DynamicReference),
            ("00006000", DynamicReference),
            // Indexed post-base.
            ("000010", DynamicReference),
            // Literal with post-base name reference, N=0 and N=1.
            ("0000000161", DynamicReference),
            ("0000080161", DynamicReference),
            // Static indices past 98.
            ("0000ff24", InvalidStaticIndex(99)),
            ("00005f5500", InvalidStaticIndex(100)),
            ("0000ff ffffffffffffffffff 00", IntegerOverflow),
            ("ff808080808080808080808000", IntegerOverflow),
            // Huffman value of one 0xff byte: 8 bits of padding.
            ("00005181ff", InvalidHuffman),
            // Huffman name that is EOS.
            ("00002c ffffffff 00", InvalidHuffman),
        ];
        for (wire, err) in cases {
            let wire: String = wire.split_whitespace().collect();
            assert_eq!(dec(&wire), Err(err.clone()), "{wire}");
        }
    }

    #[test]
    fn decoder_limits() {
        let wire = unhex("0000d1d7d9");
        let three = DecodeLimits { max_fields: 3, max_section_size: usize::MAX };
        assert_eq!(decode_field_section(&wire, &three).unwrap().len(), 3);
        let two = DecodeLimits { max_fields: 2, ..three };
        assert_eq!(decode_field_section(&wire, &two), Err(QpackError::TooManyFields(2)));
        // :method GET = 7 + 3 + 32 = 42; :scheme https = 7 + 5 + 32 = 44;
        // :status 200 = 7 + 3 + 32 = 42; total 128.
        let exact = DecodeLimits { max_fields: 10, max_section_size: 128 };
        assert_eq!(decode_field_section(&wire, &exact).unwrap().len(), 3);
        let small = DecodeLimits { max_section_size: 127, ..exact };
        assert_eq!(decode_field_section(&wire, &small), Err(QpackError::SectionTooLarge(127)));
        // A long raw value is refused before it is copied; a truncated one
        // is reported as truncated.
        let mut long = unhex("0000517f0f");
        long.extend_from_slice(&[b'x'; 142]);
        let tiny = DecodeLimits { max_fields: 10, max_section_size: 100 };
        assert_eq!(decode_field_section(&long, &tiny), Err(QpackError::SectionTooLarge(100)));
        long.pop();
        assert_eq!(decode_field_section(&long, &tiny), Err(QpackError::Truncated));
        let sizes: usize =
            decode_field_section(&wire, &DecodeLimits::default()).unwrap().iter().map(HeaderField::size).sum();
        assert_eq!(sizes, 128);
    }

    #[test]
    fn encoder_appends() {
        let mut out = vec![0xaa];
        encode_field_section(&[HeaderField::new(":method", "GET")], &mut out);
        assert_eq!(out, [0xaa, 0x00, 0x00, 0xd1]);
        let mut out = Vec::new();
        encode_field_section(&[], &mut out);
        assert_eq!(out, [0x00, 0x00]);
    }

    /// Header fields for property tests: arbitrary octets, static names with
    /// arbitrary values, and exact static entries.
    fn field_strategy() -> impl Strategy<Value = HeaderField> {
        let any_bytes = || proptest::collection::vec(any::<u8>(), 0..48);
        let static_entry = (0..static_table::LEN).prop_map(|i| static_table::STATIC_TABLE[i]);
        prop_oneof![
            (any_bytes(), any_bytes()).prop_map(|(n, v)| HeaderField::new(n, v)),
            ("[a-z0-9-]{1,20}", "[ -~]{0,40}").prop_map(|(n, v)| HeaderField::new(n, v)),
            (static_entry.clone(), any_bytes()).prop_map(|((n, _), v)| HeaderField::new(n, v)),
            static_entry.prop_map(|(n, v)| HeaderField::new(n, v)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn huffman_round_trip(input in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut coded = Vec::new();
            huffman::encode(&input, &mut coded);
            prop_assert_eq!(coded.len(), huffman::encoded_len(&input));
            let mut back = Vec::new();
            huffman::decode(&coded, &mut back).unwrap();
            prop_assert_eq!(back, input);
        }

        #[test]
        fn section_round_trip(
            fields in proptest::collection::vec(field_strategy(), 0..20),
            never_index: bool,
            use_huffman: bool,
        ) {
            let opts = EncodeOptions { never_index, huffman: use_huffman };
            let mut wire = Vec::new();
            encode_field_section_with(&fields, &opts, &mut wire);
            let limits = DecodeLimits { max_fields: 20, max_section_size: usize::MAX };
            prop_assert_eq!(decode_field_section(&wire, &limits).unwrap(), fields.clone());
            // Never longer with Huffman allowed than without.
            let mut raw = Vec::new();
            encode_field_section_with(&fields, &EncodeOptions { never_index, huffman: false }, &mut raw);
            let mut best = Vec::new();
            encode_field_section_with(&fields, &EncodeOptions { never_index, huffman: true }, &mut best);
            prop_assert!(best.len() <= raw.len());
        }

        #[test]
        fn decoder_never_panics_and_honours_limits(
            prefix_zero: bool,
            body in proptest::collection::vec(any::<u8>(), 0..200),
            max_fields in 0usize..8,
            max_section_size in 0usize..400,
        ) {
            let mut buf = if prefix_zero { vec![0, 0] } else { Vec::new() };
            buf.extend_from_slice(&body);
            let limits = DecodeLimits { max_fields, max_section_size };
            if let Ok(fields) = decode_field_section(&buf, &limits) {
                prop_assert!(fields.len() <= max_fields);
                let size: usize = fields.iter().map(HeaderField::size).sum();
                prop_assert!(size <= max_section_size);
            }
            let _ = decode_field_section(&buf, &DecodeLimits::default());
            let mut out = Vec::new();
            let _ = huffman::decode(&body, &mut out);
            prop_assert!(out.len() <= body.len() * 8 / 5);
        }
    }
}
