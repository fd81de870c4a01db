//! The subset of HTTP Structured Field Values (RFC 8941) that RFC 9421
//! signatures and RFC 9530 digests use: dictionaries whose members are items
//! or inner lists, with parameters; parsing and canonical serialization.

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

/// A bare item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BareItem {
    /// An integer (at most 15 digits).
    Integer(i64),
    /// A decimal, kept as written.
    Decimal(String),
    /// A string (printable ASCII).
    String(String),
    /// A token.
    Token(String),
    /// A byte sequence.
    Bytes(Vec<u8>),
    /// A boolean.
    Boolean(bool),
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

/// A dictionary member's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    /// A single item.
    Item(Item),
    /// An inner list and its parameters.
    InnerList(Vec<Item>, Params),
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

    fn key(&mut self) -> Result<String, SfError> {
        match self.peek() {
            Some(c) if c.is_ascii_lowercase() || c == b'*' => {}
            _ => return self.err(),
        }
        let start = self.i;
        while let Some(c) = self.peek() {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.*".contains(&c) {
                self.i += 1;
            } else {
                break;
            }
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
            Some(c) if c.is_ascii_alphabetic() || c == b'*' => {
                let start = self.i;
                while let Some(c) = self.peek() {
                    if c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&c) {
                        self.i += 1;
                    } else {
                        break;
                    }
                }
                Ok(BareItem::Token(String::from_utf8_lossy(&self.s[start..self.i]).into_owned()))
            }
            _ => self.err(),
        }
    }

    fn number(&mut self) -> Result<BareItem, SfError> {
        let start = self.i;
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
        match dot {
            None => {
                if text.is_empty() || text.len() > 15 {
                    return Err(SfError::Syntax { at: digits_start });
                }
                let v = text.iter().fold(0i64, |acc, &c| acc * 10 + i64::from(c - b'0'));
                Ok(BareItem::Integer(if negative { -v } else { v }))
            }
            Some(d) => {
                let (int, frac) = (d - digits_start, self.i - d - 1);
                if int == 0 || int > 12 || frac == 0 || frac > 3 {
                    return Err(SfError::Syntax { at: d });
                }
                Ok(BareItem::Decimal(String::from_utf8_lossy(&self.s[start..self.i]).into_owned()))
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

    fn bytes(&mut self) -> Result<BareItem, SfError> {
        self.i += 1;
        let start = self.i;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || b"+/=".contains(&c) {
                self.i += 1;
            } else {
                break;
            }
        }
        if self.peek() != Some(b':') {
            return self.err();
        }
        let decoded = super::pem::decode_base64(&self.s[start..self.i]).map_err(|_| SfError::Syntax { at: start })?;
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
}

/// Parses a dictionary (RFC 8941 §4.2.2). A key given twice keeps its first
/// position and its last value.
pub fn parse_dictionary(input: &[u8]) -> Result<Vec<(String, Member)>, SfError> {
    let mut p = Parser { s: input, i: 0 };
    let mut out: Vec<(String, Member)> = Vec::new();
    p.skip_sp();
    if p.peek().is_none() {
        return Ok(out);
    }
    loop {
        let key = p.key()?;
        let member = if p.peek() == Some(b'=') {
            p.i += 1;
            if p.peek() == Some(b'(') { p.inner_list()? } else { Member::Item(p.item()?) }
        } else {
            Member::Item(Item { bare: BareItem::Boolean(true), params: p.params()? })
        };
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = member,
            None => out.push((key, member)),
        }
        p.skip_ows();
        match p.peek() {
            None => return Ok(out),
            Some(b',') => {
                p.i += 1;
                p.skip_ows();
                if p.peek().is_none() {
                    return p.err();
                }
            }
            Some(_) => return p.err(),
        }
    }
}

/// Serializes a bare item canonically.
pub fn serialize_bare(item: &BareItem, out: &mut String) {
    match item {
        BareItem::Integer(v) => out.push_str(&v.to_string()),
        BareItem::Decimal(d) => out.push_str(d),
        BareItem::String(s) => {
            out.push('"');
            for c in s.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        BareItem::Token(t) => out.push_str(t),
        BareItem::Bytes(b) => {
            out.push(':');
            out.push_str(&super::pem::encode_base64(b));
            out.push(':');
        }
        BareItem::Boolean(b) => out.push_str(if *b { "?1" } else { "?0" }),
    }
}

/// Serializes parameters canonically (`;key` for a true boolean).
pub fn serialize_params(params: &Params, out: &mut String) {
    for (k, v) in params {
        out.push(';');
        out.push_str(k);
        if *v != BareItem::Boolean(true) {
            out.push('=');
            serialize_bare(v, out);
        }
    }
}

/// Serializes an item and its parameters canonically.
pub fn serialize_item(item: &Item, out: &mut String) {
    serialize_bare(&item.bare, out);
    serialize_params(&item.params, out);
}

/// Serializes an inner list and its parameters canonically.
pub fn serialize_inner_list(items: &[Item], params: &Params) -> String {
    let mut out = String::from("(");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        serialize_item(item, &mut out);
    }
    out.push(')');
    serialize_params(params, &mut out);
    out
}

/// Whether `s` can be an sf-string (printable ASCII).
pub fn is_sf_string(s: &str) -> bool {
    s.bytes().all(|c| (0x20..=0x7e).contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(serialize_inner_list(items, params), "(\"@method\" \"x\";req);created=5;keyid=\"k\\\"q\"");
        assert_eq!(d[1].1, Member::Item(Item { bare: BareItem::Bytes(b"foo".to_vec()), params: vec![] }));
        assert_eq!(d[2].1, Member::Item(Item { bare: BareItem::Boolean(true), params: vec![] }));
        assert_eq!(d[4].1, Member::Item(Item { bare: BareItem::Decimal("-1.5".into()), params: vec![] }));
        assert_eq!(parse_dictionary(b""), Ok(vec![]));
        assert_eq!(parse_dictionary(b"a=1,"), Err(SfError::Syntax { at: 4 }));
        assert_eq!(parse_dictionary(b"A=1"), Err(SfError::Syntax { at: 0 }));
        assert_eq!(parse_dictionary(b"a=(1 2"), Err(SfError::Syntax { at: 6 }));
        assert_eq!(parse_dictionary(b"a=\"x"), Err(SfError::Syntax { at: 4 }));
        assert_eq!(parse_dictionary(b"a=1234567890123456"), Err(SfError::Syntax { at: 2 }));
        assert_eq!(parse_dictionary(b"a=:Zm9v"), Err(SfError::Syntax { at: 7 }));
    }
}
