//! Structured Field Values for HTTP (RFC 9651): items, lists and
//! dictionaries, with parameters and inner lists; parsing
//! ([`parse_item`], [`parse_list`], [`parse_dictionary`]) and canonical
//! serialization (`serialize_*`).
//!
//! RFC 9421 signatures are the main user: `signature-input` is a dictionary
//! of inner lists of strings with parameters, `signature` a dictionary of
//! byte sequences; RFC 9530 digests are dictionaries of byte sequences.
//!
//! Every bare item type of RFC 9651 is read, Dates (`@1659578233`) and
//! Display Strings (`%"f%c3%bc"`) included. Serializers refuse what has no
//! valid serialization ([`SerializeError`]): a key, token or string with a
//! character its grammar does not allow, an integer or date beyond 15
//! digits. Decimals ([`Decimal`]) are kept in thousandths, so they are
//! always canonical (§4.1.5: at most three fractional digits, trailing zeros
//! removed, at least one).

use std::fmt;

use crate::encoding::base64;

/// Why a structured field did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SfError {
    /// Invalid syntax at this byte offset.
    #[error("invalid structured field at offset {at}")]
    Syntax {
        /// The offset of the offending byte.
        at: usize,
    },
}

/// Why a value could not be serialized (RFC 9651 §4.1: the serializer fails
/// rather than write something no parser would read back).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SerializeError {
    /// A dictionary or parameter key outside `lcalpha / "*"` then `lcalpha /
    /// DIGIT / "_" / "-" / "." / "*"`.
    #[error("invalid structured-field key {0:?}")]
    Key(String),
    /// A token that does not start with a letter or `*`, or holds a
    /// character other than tchar, `:` and `/`.
    #[error("invalid structured-field token {0:?}")]
    Token(String),
    /// A string holding a character outside printable ASCII (the offset, in
    /// bytes, of the first one).
    #[error("a structured-field string can only hold printable ASCII (offending byte at {0})")]
    String(usize),
    /// An integer (or date) beyond ±999,999,999,999,999.
    #[error("integer {0} is out of the structured-field range (15 digits)")]
    Integer(i64),
}

/// A decimal, in thousandths: at most 12 integer digits and exactly the
/// three fractional digits RFC 9651 allows, so its serialization
/// ([`fmt::Display`]) is always canonical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Decimal {
    milli: i64,
}

impl Decimal {
    /// The largest magnitude, in thousandths (999,999,999,999.999).
    pub const MAX_MILLI: i64 = 999_999_999_999_999;

    /// The decimal `milli / 1000`; `None` beyond ±999,999,999,999.999.
    pub fn from_milli(milli: i64) -> Option<Self> {
        (milli.unsigned_abs() <= Self::MAX_MILLI as u64).then_some(Decimal { milli })
    }

    /// The value in thousandths.
    pub fn milli(self) -> i64 {
        self.milli
    }
}

impl fmt::Display for Decimal {
    /// RFC 9651 §4.1.5: `-`, the integer part, `.`, then the fractional
    /// digits without trailing zeros (`0` if there are none).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let abs = self.milli.unsigned_abs();
        let sign = if self.milli < 0 { "-" } else { "" };
        let mut frac = format!("{:03}", abs % 1000);
        while frac.len() > 1 && frac.ends_with('0') {
            frac.pop();
        }
        write!(f, "{sign}{}.{frac}", abs / 1000)
    }
}

/// A bare item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BareItem {
    /// An integer (at most 15 digits).
    Integer(i64),
    /// A decimal.
    Decimal(Decimal),
    /// A string (printable ASCII).
    String(String),
    /// A token.
    Token(String),
    /// A byte sequence.
    Bytes(Vec<u8>),
    /// A boolean.
    Boolean(bool),
    /// A date: seconds since the Unix epoch (RFC 9651 §3.3.7).
    Date(i64),
    /// A display string: Unicode text (RFC 9651 §3.3.8).
    DisplayString(String),
}

/// Parameters: ordered `key=value` pairs.
pub type Params = Vec<(String, BareItem)>;

/// An item with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The value.
    pub bare: BareItem,
    /// Its parameters.
    pub params: Params,
}

/// A list or dictionary member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    /// A single item.
    Item(Item),
    /// An inner list and its parameters.
    InnerList(Vec<Item>, Params),
}

/// A dictionary: ordered, unique keys.
pub type Dictionary = Vec<(String, Member)>;

/// Whether `c` is a tchar (RFC 9110 §5.6.2).
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Whether `c` may follow the first character of a key.
fn is_key_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.*".contains(&c)
}

/// Whether `s` is a valid key (RFC 9651 §3.1.2).
pub fn is_key(s: &str) -> bool {
    s.bytes().next().is_some_and(|c| c.is_ascii_lowercase() || c == b'*') && s.bytes().all(is_key_char)
}

/// Whether `s` is a valid token (RFC 9651 §3.3.4).
pub fn is_token(s: &str) -> bool {
    s.bytes().next().is_some_and(|c| c.is_ascii_alphabetic() || c == b'*')
        && s.bytes().all(|c| is_tchar(c) || c == b':' || c == b'/')
}

/// Whether `s` can be an sf-string (printable ASCII).
pub fn is_sf_string(s: &str) -> bool {
    s.bytes().all(|c| (0x20..=0x7e).contains(&c))
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn err<T>(&self) -> Result<T, SfError> {
        Err(SfError::Syntax { at: self.i })
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    /// The rest of the input must be spaces.
    fn end(&mut self) -> Result<(), SfError> {
        self.skip_sp();
        if self.peek().is_some() { self.err() } else { Ok(()) }
    }

    fn key(&mut self) -> Result<String, SfError> {
        match self.peek() {
            Some(c) if c.is_ascii_lowercase() || c == b'*' => {}
            _ => return self.err(),
        }
        let start = self.i;
        while self.peek().is_some_and(is_key_char) {
            self.i += 1;
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn params(&mut self) -> Result<Params, SfError> {
        let mut params: Params = Vec::new();
        while self.peek() == Some(b';') {
            self.i += 1;
            self.skip_sp();
            let key = self.key()?;
            let value = if self.peek() == Some(b'=') {
                self.i += 1;
                self.bare_item()?
            } else {
                BareItem::Boolean(true)
            };
            match params.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => params.push((key, value)),
            }
        }
        Ok(params)
    }

    fn item(&mut self) -> Result<Item, SfError> {
        let bare = self.bare_item()?;
        let params = self.params()?;
        Ok(Item { bare, params })
    }

    fn item_or_inner_list(&mut self) -> Result<Member, SfError> {
        if self.peek() == Some(b'(') { self.inner_list() } else { Ok(Member::Item(self.item()?)) }
    }

    fn bare_item(&mut self) -> Result<BareItem, SfError> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'"') => self.string(),
            Some(b':') => self.bytes(),
            Some(b'?') => {
                self.i += 1;
                let v = match self.peek() {
                    Some(b'1') => true,
                    Some(b'0') => false,
                    _ => return self.err(),
                };
                self.i += 1;
                Ok(BareItem::Boolean(v))
            }
            Some(b'@') => {
                self.i += 1;
                let at = self.i;
                match self.number()? {
                    BareItem::Integer(v) => Ok(BareItem::Date(v)),
                    _ => Err(SfError::Syntax { at }),
                }
            }
            Some(b'%') => self.display_string(),
            Some(c) if c.is_ascii_alphabetic() || c == b'*' => {
                let start = self.i;
                while self.peek().is_some_and(|c| is_tchar(c) || c == b':' || c == b'/') {
                    self.i += 1;
                }
                Ok(BareItem::Token(String::from_utf8_lossy(&self.s[start..self.i]).into_owned()))
            }
            _ => self.err(),
        }
    }

    /// RFC 9651 §4.2.4.
    fn number(&mut self) -> Result<BareItem, SfError> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.i += 1;
        }
        let digits_start = self.i;
        let mut dot = None;
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() {
                self.i += 1;
            } else if c == b'.' && dot.is_none() {
                dot = Some(self.i);
                self.i += 1;
            } else {
                break;
            }
        }
        let text = &self.s[digits_start..self.i];
        let value = |digits: &[u8]| digits.iter().fold(0i64, |acc, &c| acc * 10 + i64::from(c - b'0'));
        match dot {
            None => {
                if text.is_empty() || text.len() > 15 {
                    return Err(SfError::Syntax { at: digits_start });
                }
                let v = value(text);
                Ok(BareItem::Integer(if negative { -v } else { v }))
            }
            Some(d) => {
                let (int, frac) = (&self.s[digits_start..d], &self.s[d + 1..self.i]);
                if int.is_empty() || int.len() > 12 || frac.is_empty() || frac.len() > 3 {
                    return Err(SfError::Syntax { at: d });
                }
                let scale = [100, 10, 1][frac.len() - 1];
                let milli = value(int) * 1000 + value(frac) * scale;
                let milli = if negative { -milli } else { milli };
                // 12 + 3 digits always fit.
                Decimal::from_milli(milli).map(BareItem::Decimal).ok_or(SfError::Syntax { at: d })
            }
        }
    }

    fn string(&mut self) -> Result<BareItem, SfError> {
        self.i += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return self.err(),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(BareItem::String(out));
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => out.push(c as char),
                        _ => return self.err(),
                    }
                    self.i += 1;
                }
                Some(c @ 0x20..=0x7e) => {
                    out.push(c as char);
                    self.i += 1;
                }
                Some(_) => return self.err(),
            }
        }
    }

    /// RFC 9651 §4.2.10: `%"`, printable ASCII with `%xx` (lower-case hex)
    /// escapes, `"`; the bytes must be UTF-8.
    fn display_string(&mut self) -> Result<BareItem, SfError> {
        let start = self.i;
        self.i += 1;
        if self.peek() != Some(b'"') {
            return self.err();
        }
        self.i += 1;
        let mut bytes = Vec::new();
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return String::from_utf8(bytes)
                        .map(BareItem::DisplayString)
                        .map_err(|_| SfError::Syntax { at: start });
                }
                Some(b'%') => {
                    let digits = self.s.get(self.i + 1..self.i + 3).unwrap_or_default();
                    let mut byte = [0u8; 1];
                    if digits.len() != 2
                        || digits.iter().any(u8::is_ascii_uppercase)
                        || hex::decode_to_slice(digits, &mut byte).is_err()
                    {
                        return self.err();
                    }
                    bytes.push(byte[0]);
                    self.i += 3;
                }
                Some(c @ 0x20..=0x7e) => {
                    bytes.push(c);
                    self.i += 1;
                }
                _ => return self.err(),
            }
        }
    }

    fn bytes(&mut self) -> Result<BareItem, SfError> {
        self.i += 1;
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || b"+/=".contains(&c)) {
            self.i += 1;
        }
        if self.peek() != Some(b':') {
            return self.err();
        }
        let decoded = base64::decode(&self.s[start..self.i]).map_err(|_| SfError::Syntax { at: start })?;
        self.i += 1;
        Ok(BareItem::Bytes(decoded))
    }

    fn inner_list(&mut self) -> Result<Member, SfError> {
        self.i += 1;
        let mut items = Vec::new();
        loop {
            self.skip_sp();
            if self.peek() == Some(b')') {
                self.i += 1;
                let params = self.params()?;
                return Ok(Member::InnerList(items, params));
            }
            items.push(self.item()?);
            if !matches!(self.peek(), Some(b' ' | b')')) {
                return self.err();
            }
        }
    }

    /// After a list or dictionary member: the end, or `,` and another member.
    fn next_member(&mut self) -> Result<bool, SfError> {
        self.skip_ows();
        match self.peek() {
            None => Ok(false),
            Some(b',') => {
                self.i += 1;
                self.skip_ows();
                if self.peek().is_none() { self.err() } else { Ok(true) }
            }
            Some(_) => self.err(),
        }
    }
}

/// Parses an item (RFC 9651 §4.2.3), e.g. `"@query-param";name="Pet"`.
pub fn parse_item(input: &[u8]) -> Result<Item, SfError> {
    let mut p = Parser { s: input, i: 0 };
    p.skip_sp();
    let item = p.item()?;
    p.end()?;
    Ok(item)
}

/// Parses a list (RFC 9651 §4.2.1) of items and inner lists.
pub fn parse_list(input: &[u8]) -> Result<Vec<Member>, SfError> {
    let mut p = Parser { s: input, i: 0 };
    let mut out = Vec::new();
    p.skip_sp();
    if p.peek().is_none() {
        return Ok(out);
    }
    loop {
        out.push(p.item_or_inner_list()?);
        if !p.next_member()? {
            return Ok(out);
        }
    }
}

/// Parses a dictionary (RFC 9651 §4.2.2). A key given twice keeps its first
/// position and its last value.
pub fn parse_dictionary(input: &[u8]) -> Result<Dictionary, SfError> {
    let mut p = Parser { s: input, i: 0 };
    let mut out: Dictionary = Vec::new();
    p.skip_sp();
    if p.peek().is_none() {
        return Ok(out);
    }
    loop {
        let key = p.key()?;
        let member = if p.peek() == Some(b'=') {
            p.i += 1;
            p.item_or_inner_list()?
        } else {
            Member::Item(Item { bare: BareItem::Boolean(true), params: p.params()? })
        };
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = member,
            None => out.push((key, member)),
        }
        if !p.next_member()? {
            return Ok(out);
        }
    }
}

const MAX_INTEGER: u64 = 999_999_999_999_999;

fn integer(v: i64, out: &mut String) -> Result<(), SerializeError> {
    if v.unsigned_abs() > MAX_INTEGER {
        return Err(SerializeError::Integer(v));
    }
    out.push_str(&v.to_string());
    Ok(())
}

fn key(k: &str, out: &mut String) -> Result<(), SerializeError> {
    if !is_key(k) {
        return Err(SerializeError::Key(k.to_owned()));
    }
    out.push_str(k);
    Ok(())
}

/// Serializes a bare item canonically.
pub fn serialize_bare(item: &BareItem, out: &mut String) -> Result<(), SerializeError> {
    match item {
        BareItem::Integer(v) => integer(*v, out)?,
        BareItem::Decimal(d) => out.push_str(&d.to_string()),
        BareItem::String(s) => {
            if let Some(at) = s.bytes().position(|c| !(0x20..=0x7e).contains(&c)) {
                return Err(SerializeError::String(at));
            }
            out.push('"');
            for c in s.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        BareItem::Token(t) => {
            if !is_token(t) {
                return Err(SerializeError::Token(t.clone()));
            }
            out.push_str(t);
        }
        BareItem::Bytes(b) => {
            out.push(':');
            out.push_str(&base64::encode(b));
            out.push(':');
        }
        BareItem::Boolean(b) => out.push_str(if *b { "?1" } else { "?0" }),
        BareItem::Date(v) => {
            out.push('@');
            integer(*v, out)?;
        }
        BareItem::DisplayString(s) => {
            out.push_str("%\"");
            for b in s.bytes() {
                if b == b'%' || b == b'"' || !(0x20..=0x7e).contains(&b) {
                    out.push('%');
                    out.push_str(&hex::encode([b]));
                } else {
                    out.push(char::from(b));
                }
            }
            out.push('"');
        }
    }
    Ok(())
}

/// Serializes parameters canonically (`;key` for a true boolean).
pub fn serialize_params(params: &Params, out: &mut String) -> Result<(), SerializeError> {
    for (k, v) in params {
        out.push(';');
        key(k, out)?;
        if *v != BareItem::Boolean(true) {
            out.push('=');
            serialize_bare(v, out)?;
        }
    }
    Ok(())
}

/// Serializes an item and its parameters canonically.
pub fn serialize_item(item: &Item, out: &mut String) -> Result<(), SerializeError> {
    serialize_bare(&item.bare, out)?;
    serialize_params(&item.params, out)
}

/// Serializes an inner list and its parameters canonically.
pub fn serialize_inner_list(items: &[Item], params: &Params) -> Result<String, SerializeError> {
    let mut out = String::from("(");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        serialize_item(item, &mut out)?;
    }
    out.push(')');
    serialize_params(params, &mut out)?;
    Ok(out)
}

/// Serializes a list or dictionary member value.
fn serialize_member(member: &Member, out: &mut String) -> Result<(), SerializeError> {
    match member {
        Member::Item(item) => serialize_item(item, out),
        Member::InnerList(items, params) => {
            out.push_str(&serialize_inner_list(items, params)?);
            Ok(())
        }
    }
}

/// Serializes a list canonically (members joined with `, `).
pub fn serialize_list(members: &[Member]) -> Result<String, SerializeError> {
    let mut out = String::new();
    for (i, m) in members.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        serialize_member(m, &mut out)?;
    }
    Ok(out)
}

/// Serializes a dictionary canonically (`key` alone for a true boolean
/// item, members joined with `, `).
pub fn serialize_dictionary(dict: &[(String, Member)]) -> Result<String, SerializeError> {
    let mut out = String::new();
    for (i, (k, m)) in dict.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        key(k, &mut out)?;
        match m {
            Member::Item(Item { bare: BareItem::Boolean(true), params }) => serialize_params(params, &mut out)?,
            _ => {
                out.push('=');
                serialize_member(m, &mut out)?;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dec(milli: i64) -> BareItem {
        BareItem::Decimal(Decimal::from_milli(milli).unwrap())
    }

    fn item(bare: BareItem) -> Item {
        Item { bare, params: vec![] }
    }

    #[test]
    fn dictionaries() {
        let d =
            parse_dictionary(b"sig1=(\"@method\" \"x\";req);created=5;keyid=\"k\\\"q\", b=:Zm9v:, c, d=?0;p, e=-1.5")
                .unwrap();
        assert_eq!(d.len(), 5);
        let Member::InnerList(items, params) = &d[0].1 else { panic!() };
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].params, vec![("req".into(), BareItem::Boolean(true))]);
        assert_eq!(params[0], ("created".into(), BareItem::Integer(5)));
        assert_eq!(serialize_inner_list(items, params).unwrap(), "(\"@method\" \"x\";req);created=5;keyid=\"k\\\"q\"");
        assert_eq!(d[1].1, Member::Item(item(BareItem::Bytes(b"foo".to_vec()))));
        assert_eq!(d[2].1, Member::Item(item(BareItem::Boolean(true))));
        assert_eq!(d[4].1, Member::Item(item(dec(-1500))));
        assert_eq!(
            serialize_dictionary(&d).unwrap(),
            "sig1=(\"@method\" \"x\";req);created=5;keyid=\"k\\\"q\", b=:Zm9v:, c, d=?0;p, e=-1.5"
        );
        assert_eq!(parse_dictionary(b""), Ok(vec![]));
        assert_eq!(parse_dictionary(b"a=1,"), Err(SfError::Syntax { at: 4 }));
        assert_eq!(parse_dictionary(b"A=1"), Err(SfError::Syntax { at: 0 }));
        assert_eq!(parse_dictionary(b"a=(1 2"), Err(SfError::Syntax { at: 6 }));
        assert_eq!(parse_dictionary(b"a=\"x"), Err(SfError::Syntax { at: 4 }));
        assert_eq!(parse_dictionary(b"a=1234567890123456"), Err(SfError::Syntax { at: 2 }));
        assert_eq!(parse_dictionary(b"a=:Zm9v"), Err(SfError::Syntax { at: 7 }));
        // A key given twice: first position, last value.
        let twice = parse_dictionary(b"a=1, b=2, a=3").unwrap();
        assert_eq!(serialize_dictionary(&twice).unwrap(), "a=3, b=2");
    }

    /// RFC 9421's own fields: Signature-Input is a dictionary of inner lists
    /// with parameters, and a component identifier is an item.
    #[test]
    fn signature_fields_and_component_items() {
        let input = b"sig-b22=(\"@authority\" \"content-digest\" \"@query-param\";name=\"Pet\");created=1618884473;keyid=\"test-key-rsa-pss\";tag=\"header-example\"";
        let d = parse_dictionary(input).unwrap();
        assert_eq!(serialize_dictionary(&d).unwrap().as_bytes(), input);
        let c = parse_item(b"\"@query-param\";name=\"Pet\"").unwrap();
        assert_eq!(c.bare, BareItem::String("@query-param".into()));
        assert_eq!(c.params, vec![("name".into(), BareItem::String("Pet".into()))]);
        assert_eq!(
            parse_item(b"  \"x\";req  "),
            Ok(Item { bare: BareItem::String("x".into()), params: vec![("req".into(), BareItem::Boolean(true))] })
        );
        assert_eq!(parse_item(b"\"x\" \"y\""), Err(SfError::Syntax { at: 4 }));
        assert_eq!(parse_item(b"\"x\"\t"), Err(SfError::Syntax { at: 3 }));
        assert_eq!(parse_item(b""), Err(SfError::Syntax { at: 0 }));
    }

    #[test]
    fn lists() {
        let l = parse_list(b"sugar, tea, (rum \"x\");p=1, ?0 ,\t@1659578233").unwrap();
        assert_eq!(l.len(), 5);
        assert_eq!(l[4], Member::Item(item(BareItem::Date(1_659_578_233))));
        assert_eq!(serialize_list(&l).unwrap(), "sugar, tea, (rum \"x\");p=1, ?0, @1659578233");
        assert_eq!(parse_list(b""), Ok(vec![]));
        assert_eq!(parse_list(b"  "), Ok(vec![]));
        assert_eq!(parse_list(b"a,"), Err(SfError::Syntax { at: 2 }));
        assert_eq!(parse_list(b"a b"), Err(SfError::Syntax { at: 2 }));
        assert_eq!(parse_list(b"(a b"), Err(SfError::Syntax { at: 4 }));
        assert_eq!(parse_list(b"@1.5"), Err(SfError::Syntax { at: 1 }));
    }

    #[test]
    fn decimals_are_canonical() {
        for (text, milli, canonical) in [
            ("1.5", 1500, "1.5"),
            ("1.500", 1500, "1.5"),
            ("1.0", 1000, "1.0"),
            ("-0.001", -1, "-0.001"),
            ("0.010", 10, "0.01"),
            ("999999999999.999", Decimal::MAX_MILLI, "999999999999.999"),
            ("-12.340", -12_340, "-12.34"),
        ] {
            let got = parse_item(text.as_bytes()).unwrap().bare;
            assert_eq!(got, dec(milli), "{text}");
            let mut out = String::new();
            serialize_bare(&got, &mut out).unwrap();
            assert_eq!(out, canonical, "{text}");
        }
        for bad in ["1.", "1.2345", "1234567890123.0", ".5", "-.5", "1..2"] {
            assert!(parse_item(bad.as_bytes()).is_err(), "{bad}");
        }
        assert_eq!(Decimal::from_milli(Decimal::MAX_MILLI + 1), None);
        assert_eq!(Decimal::from_milli(-Decimal::MAX_MILLI).map(|d| d.to_string()), Some("-999999999999.999".into()));
    }

    #[test]
    fn display_strings() {
        let s = parse_item(b"%\"This is intended for display to %c3%bcsers.\"").unwrap().bare;
        assert_eq!(s, BareItem::DisplayString("This is intended for display to üsers.".into()));
        let mut out = String::new();
        serialize_bare(&BareItem::DisplayString("100% \"ü\"".into()), &mut out).unwrap();
        assert_eq!(out, "%\"100%25 %22%c3%bc%22\"");
        assert_eq!(parse_item(out.as_bytes()).unwrap().bare, BareItem::DisplayString("100% \"ü\"".into()));
        for bad in [&b"%\"%C3%BC\""[..], b"%\"%c3\"", b"%\"%g0\"", b"%\"abc", b"%abc", b"%\"\x7f\""] {
            assert!(parse_item(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn serializers_refuse_invalid_values() {
        let bare = |b: BareItem| {
            let mut out = String::new();
            serialize_bare(&b, &mut out).map(|()| out)
        };
        assert_eq!(bare(BareItem::String("a\nb".into())), Err(SerializeError::String(1)));
        assert_eq!(bare(BareItem::String("é".into())), Err(SerializeError::String(0)));
        assert_eq!(bare(BareItem::Token("1abc".into())), Err(SerializeError::Token("1abc".into())));
        assert_eq!(bare(BareItem::Token("a b".into())), Err(SerializeError::Token("a b".into())));
        assert_eq!(bare(BareItem::Token(String::new())), Err(SerializeError::Token(String::new())));
        assert_eq!(bare(BareItem::Token("*a:b/c".into())), Ok("*a:b/c".into()));
        assert_eq!(bare(BareItem::Integer(1_000_000_000_000_000)), Err(SerializeError::Integer(1_000_000_000_000_000)));
        assert_eq!(bare(BareItem::Integer(-999_999_999_999_999)), Ok("-999999999999999".into()));
        assert_eq!(bare(BareItem::Date(i64::MIN)), Err(SerializeError::Integer(i64::MIN)));
        let bad_key = vec![("Key".to_owned(), BareItem::Boolean(true))];
        assert_eq!(serialize_params(&bad_key, &mut String::new()), Err(SerializeError::Key("Key".into())));
        assert_eq!(
            serialize_inner_list(&[item(BareItem::String("x".into()))], &vec![("".into(), BareItem::Integer(1))]),
            Err(SerializeError::Key(String::new()))
        );
        assert_eq!(
            serialize_dictionary(&[("a b".into(), Member::Item(item(BareItem::Integer(1))))]),
            Err(SerializeError::Key("a b".into()))
        );
        assert!(is_key("*a-1._") && !is_key("1a") && !is_key(""));
    }

    fn bare_strategy() -> impl Strategy<Value = BareItem> {
        prop_oneof![
            (-999_999_999_999_999i64..=999_999_999_999_999).prop_map(BareItem::Integer),
            (-Decimal::MAX_MILLI..=Decimal::MAX_MILLI).prop_map(|m| BareItem::Decimal(Decimal::from_milli(m).unwrap())),
            "[ -~]{0,12}".prop_map(BareItem::String),
            "[a-zA-Z*][a-zA-Z0-9!#$%&'*+.^_`|~:/-]{0,8}".prop_map(BareItem::Token),
            proptest::collection::vec(any::<u8>(), 0..12).prop_map(BareItem::Bytes),
            any::<bool>().prop_map(BareItem::Boolean),
            (-999_999_999_999_999i64..=999_999_999_999_999).prop_map(BareItem::Date),
            "\\PC{0,8}".prop_map(BareItem::DisplayString),
        ]
    }

    fn item_strategy() -> impl Strategy<Value = Item> {
        (bare_strategy(), proptest::collection::vec(("[a-z*][a-z0-9_.*-]{0,5}", bare_strategy()), 0..3)).prop_map(
            |(bare, params)| {
                // Parsing keeps one value per parameter key.
                let mut unique: Params = Vec::new();
                for (k, v) in params {
                    match unique.iter_mut().find(|(x, _)| *x == k) {
                        Some(slot) => slot.1 = v,
                        None => unique.push((k, v)),
                    }
                }
                Item { bare, params: unique }
            },
        )
    }

    fn member_strategy() -> impl Strategy<Value = Member> {
        prop_oneof![
            item_strategy().prop_map(Member::Item),
            (
                proptest::collection::vec(item_strategy(), 0..3),
                proptest::collection::vec(("[a-z][a-z0-9]{0,3}", bare_strategy()), 0..1)
            )
                .prop_map(|(items, params)| Member::InnerList(items, params)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// What serializes parses back to itself, and serializes the same again.
        #[test]
        fn serialized_values_parse_back(members in proptest::collection::vec(member_strategy(), 0..4)) {
            let text = serialize_list(&members).unwrap();
            let parsed = parse_list(text.as_bytes()).unwrap();
            prop_assert_eq!(&parsed, &members, "{}", text);
            prop_assert_eq!(serialize_list(&parsed).unwrap(), text);
            if let Some(Member::Item(i)) = members.first() {
                let mut one = String::new();
                serialize_item(i, &mut one).unwrap();
                prop_assert_eq!(parse_item(one.as_bytes()).unwrap(), i.clone());
            }
        }

        /// Parsers never panic, and what parses serializes and parses to the same.
        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..120)) {
            if let Ok(d) = parse_dictionary(&data) {
                let text = serialize_dictionary(&d).unwrap();
                prop_assert_eq!(parse_dictionary(text.as_bytes()).unwrap(), d);
            }
            if let Ok(l) = parse_list(&data) {
                let text = serialize_list(&l).unwrap();
                prop_assert_eq!(parse_list(text.as_bytes()).unwrap(), l);
            }
            if let Ok(i) = parse_item(&data) {
                let mut text = String::new();
                serialize_item(&i, &mut text).unwrap();
                prop_assert_eq!(parse_item(text.as_bytes()).unwrap(), i);
            }
        }

        #[test]
        fn sf_like_text_never_panics(text in "[a-z0-9=(),;:\"?@%* .\\-]{0,60}") {
            let _ = parse_dictionary(text.as_bytes());
            let _ = parse_list(text.as_bytes());
            let _ = parse_item(text.as_bytes());
        }
    }
}
