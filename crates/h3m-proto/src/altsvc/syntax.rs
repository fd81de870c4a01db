//! RFC 7838 / RFC 7230 syntax: lexing an `Alt-Svc` field value into raw
//! alternatives (protocol-id, alt-authority, parameters), before any h3m
//! meaning is given to them.

use super::semantics::classify;
use super::{AltSvcError, MAX_FIELD_LEN};

/// One alternative as written, before interpretation.
pub(super) struct RawAlt {
    /// Percent-decoded protocol id (lossy if the bytes are not UTF-8, which no h3m
    /// protocol id can be).
    pub(super) protocol: String,
    /// The alt-authority, unescaped.
    pub(super) authority: String,
    /// Parameters in order: lowercase name, unescaped value.
    pub(super) params: Vec<(String, String)>,
}

impl RawAlt {
    /// Whether its protocol id is an h3m one.
    pub(super) fn is_h3m(&self) -> bool {
        classify(&self.protocol).is_some()
    }
}

/// A byte cursor over the field value.
struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn err(&self, reason: &'static str) -> AltSvcError {
        AltSvcError::Syntax { at: self.pos, reason }
    }

    /// The longest run of bytes satisfying `ok`. Only ASCII bytes are accepted by
    /// the callers' predicates, so the slice is on char boundaries.
    fn take_while(&mut self, ok: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&ok) {
            self.pos += 1;
        }
        self.text.get(start..self.pos).unwrap_or("")
    }

    /// A token (possibly empty).
    fn token(&mut self) -> &'a str {
        self.take_while(is_tchar)
    }

    /// A value: quoted-string, or a bare run of visible ASCII other than `"`, `;`
    /// and `,` (a superset of token, so unquoted IPv6 literals read too).
    fn value(&mut self) -> Result<String, AltSvcError> {
        if self.peek() == Some(b'"') {
            self.quoted()
        } else {
            Ok(self.take_while(|b| matches!(b, 0x21..=0x7e) && !matches!(b, b'"' | b';' | b',')).to_owned())
        }
    }

    /// A quoted-string starting at the opening quote, unescaped.
    fn quoted(&mut self) -> Result<String, AltSvcError> {
        let open = self.pos;
        self.pos += 1;
        let unterminated = AltSvcError::Syntax { at: open, reason: "unterminated quoted-string" };
        let mut out = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(unterminated);
            };
            match b {
                b'"' => {
                    self.pos += 1;
                    break;
                }
                b'\\' => {
                    self.pos += 1;
                    match self.peek() {
                        None => return Err(unterminated),
                        Some(c) if is_qtext(c) || c == b'"' || c == b'\\' => {
                            out.push(c);
                            self.pos += 1;
                        }
                        Some(_) => return Err(self.err("control character in quoted-string")),
                    }
                }
                b if is_qtext(b) => {
                    out.push(b);
                    self.pos += 1;
                }
                _ => return Err(self.err("control character in quoted-string")),
            }
        }
        // Only ASCII bytes were added or removed around whole UTF-8 sequences, so
        // this is valid UTF-8; stay panic-free regardless.
        Ok(String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }
}

/// Where the field value starts in `text`: after an optional `Alt-Svc:` field name.
pub(super) fn field_value_start(text: &str) -> usize {
    let trimmed = text.trim_start_matches([' ', '\t']);
    let is_name = trimmed.as_bytes().get(..7).is_some_and(|b| b.eq_ignore_ascii_case(b"alt-svc"));
    if is_name
        && let Some(rest) = trimmed.get(7..)
        && let Some(value) = rest.trim_start_matches([' ', '\t']).strip_prefix(':')
    {
        return text.len() - value.len();
    }
    0
}

/// Splits a field value (from byte `start`) into raw alternatives; `clear` gives none.
pub(super) fn parse_field(text: &str, start: usize) -> Result<Vec<RawAlt>, AltSvcError> {
    if text.len() > MAX_FIELD_LEN {
        return Err(AltSvcError::TooLong { len: text.len(), max: MAX_FIELD_LEN });
    }
    let mut sc = Scanner { text, pos: start };
    sc.skip_ows();
    if text.get(sc.pos..).is_some_and(|rest| rest.trim_end_matches([' ', '\t']) == "clear") {
        return Ok(Vec::new());
    }
    let mut alts = Vec::new();
    loop {
        sc.skip_ows();
        match sc.peek() {
            None => break,
            Some(b',') => {
                sc.pos += 1;
                continue;
            }
            Some(_) => {}
        }
        alts.push(parse_alt(&mut sc)?);
        sc.skip_ows();
        if sc.peek().is_some() && !sc.eat(b',') {
            return Err(sc.err("expected ',' or ';' after an alternative or parameter"));
        }
    }
    if alts.is_empty() {
        return Err(sc.err("no alternative in the Alt-Svc value"));
    }
    Ok(alts)
}

/// One alt-value: `protocol-id "=" alt-authority *( OWS ";" OWS parameter )`.
fn parse_alt(sc: &mut Scanner<'_>) -> Result<RawAlt, AltSvcError> {
    let at = sc.pos;
    let raw = sc.token();
    if raw.is_empty() {
        return Err(sc.err("expected a protocol-id"));
    }
    let protocol = percent_decode(raw, at)?;
    sc.skip_ows();
    if !sc.eat(b'=') {
        return Err(sc.err("expected '=' after the protocol-id"));
    }
    sc.skip_ows();
    let authority = sc.value()?;
    let mut params = Vec::new();
    loop {
        sc.skip_ows();
        if !sc.eat(b';') {
            break;
        }
        sc.skip_ows();
        if matches!(sc.peek(), None | Some(b';' | b',')) {
            continue; // empty parameter, tolerated
        }
        let name = sc.token();
        if name.is_empty() {
            return Err(sc.err("expected a parameter name"));
        }
        sc.skip_ows();
        if !sc.eat(b'=') {
            return Err(sc.err("expected '=' after the parameter name"));
        }
        sc.skip_ows();
        let value = sc.value()?;
        params.push((name.to_ascii_lowercase(), value));
    }
    Ok(RawAlt { protocol, authority, params })
}

/// Decodes `%XX` escapes in a protocol-id token starting at byte `at`.
fn percent_decode(token: &str, at: usize) -> Result<String, AltSvcError> {
    let out = crate::http::path::percent_decode(token.as_bytes())
        .map_err(|e| AltSvcError::Syntax { at: at + e.at, reason: "bad percent-encoding in the protocol-id" })?;
    Ok(String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// RFC 7230 `tchar`.
pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A non-empty RFC 7230 token.
pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// `qdtext` plus the characters a quoted-pair may carry besides `"` and `\`.
fn is_qtext(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f && b != b'"' && b != b'\\')
}
