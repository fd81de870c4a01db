//! PEM (RFC 7468) and base64 (RFC 4648 §4) decoding.
//!
//! [`parse`] finds every `-----BEGIN LABEL-----` ... `-----END LABEL-----`
//! block of a text and decodes its base64 body. Text outside the blocks is
//! ignored (OpenSSL writes explanatory text before certificates), as are
//! RFC 1421 header lines inside a block, except that an encrypted legacy key
//! (`Proc-Type: 4,ENCRYPTED`) is an error: keys must be unencrypted.

/// Why base64 text did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Base64Error {
    /// A character outside the standard alphabet (`A-Z a-z 0-9 + /`).
    #[error("invalid base64 character at offset {0}")]
    InvalidCharacter(usize),
    /// `=` padding somewhere other than at the end, or too much of it.
    #[error("misplaced base64 padding at offset {0}")]
    BadPadding(usize),
    /// A length no base64 encoding has (one character left over).
    #[error("truncated base64")]
    Truncated,
}

/// Decodes standard base64. Padding is optional; whitespace is not allowed
/// (use [`decode_base64_lines`] for wrapped text).
pub fn decode_base64(text: &[u8]) -> Result<Vec<u8>, Base64Error> {
    let body_len = text.iter().rposition(|&c| c != b'=').map_or(0, |p| p + 1);
    let padding = text.len() - body_len;
    if padding > 2 || (padding > 0 && !text.len().is_multiple_of(4)) {
        return Err(Base64Error::BadPadding(body_len));
    }
    if body_len % 4 == 1 {
        return Err(Base64Error::Truncated);
    }
    let mut out = Vec::with_capacity(body_len / 4 * 3 + 2);
    let (mut acc, mut bits) = (0u32, 0u32);
    for (i, &c) in text[..body_len].iter().enumerate() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => return Err(Base64Error::BadPadding(i)),
            _ => return Err(Base64Error::InvalidCharacter(i)),
        };
        acc = ((acc << 6) | u32::from(v)) & 0xff_ffff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}

/// Decodes base64 that may be wrapped over lines (ASCII whitespace is skipped).
pub fn decode_base64_lines(text: &[u8]) -> Result<Vec<u8>, Base64Error> {
    let compact: Vec<u8> = text.iter().copied().filter(|c| !c.is_ascii_whitespace()).collect();
    decode_base64(&compact)
}

/// Standard base64 with padding (the encoder the sender already uses).
pub fn encode_base64(data: &[u8]) -> String {
    crate::sender::base64(data)
}

/// Why a PEM text did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    /// No `-----BEGIN ...-----` line at all.
    #[error("no PEM block (no -----BEGIN line)")]
    NoBlock,
    /// A block whose `-----END LABEL-----` line is missing.
    #[error("PEM block `{0}` has no matching -----END line")]
    Unterminated(String),
    /// A BEGIN or END line that is not `-----BEGIN LABEL-----`.
    #[error("malformed PEM boundary line")]
    BadBoundary,
    /// The block's body is not base64.
    #[error("PEM block `{label}`: {error}")]
    Base64 {
        /// The block's label.
        label: String,
        /// The base64 error.
        error: Base64Error,
    },
    /// An encrypted legacy key (`Proc-Type: 4,ENCRYPTED`).
    #[error("PEM block `{0}` is encrypted; give an unencrypted key")]
    Encrypted(String),
}

/// One decoded PEM block.
#[derive(Clone, PartialEq, Eq)]
pub struct PemBlock {
    /// The label: `CERTIFICATE`, `PUBLIC KEY`, `PRIVATE KEY`, ...
    pub label: String,
    /// The DER bytes.
    pub der: Vec<u8>,
}

impl std::fmt::Debug for PemBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The bytes may be a private key: never print them.
        f.debug_struct("PemBlock").field("label", &self.label).field("der_len", &self.der.len()).finish()
    }
}

/// `-----BEGIN LABEL-----` or `-----END LABEL-----` (trailing whitespace
/// allowed): the label.
fn boundary<'a>(line: &'a [u8], kind: &[u8]) -> Option<Result<&'a str, PemError>> {
    let rest = line.trim_ascii_end().strip_prefix(b"-----")?.strip_prefix(kind)?;
    let Some(label) = rest.strip_prefix(b" ").and_then(|r| r.strip_suffix(b"-----")) else {
        return Some(Err(PemError::BadBoundary));
    };
    let ok = label.iter().all(|&c| c.is_ascii_graphic() || c == b' ') && !label.contains(&b'-');
    Some(std::str::from_utf8(label).ok().filter(|_| ok).ok_or(PemError::BadBoundary))
}

/// Every PEM block of `text`, in order. At least one is required.
pub fn parse(text: &[u8]) -> Result<Vec<PemBlock>, PemError> {
    let mut blocks = Vec::new();
    let mut lines = text.split(|&c| c == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    while let Some(line) = lines.next() {
        let label = match boundary(line, b"BEGIN") {
            None => continue,
            Some(r) => r?.to_owned(),
        };
        let mut body = Vec::new();
        let mut ended = false;
        for line in lines.by_ref() {
            if let Some(end) = boundary(line, b"END") {
                if end? != label {
                    return Err(PemError::Unterminated(label));
                }
                ended = true;
                break;
            }
            if line.contains(&b':') {
                // An RFC 1421 header line (Proc-Type, DEK-Info).
                if line.starts_with(b"Proc-Type:") && line.windows(9).any(|w| w == b"ENCRYPTED") {
                    return Err(PemError::Encrypted(label));
                }
                continue;
            }
            body.extend_from_slice(line);
        }
        if !ended {
            return Err(PemError::Unterminated(label));
        }
        let der = decode_base64_lines(&body).map_err(|error| PemError::Base64 { label: label.clone(), error })?;
        blocks.push(PemBlock { label, der });
    }
    if blocks.is_empty() {
        return Err(PemError::NoBlock);
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_rejects() {
        for n in 0..40usize {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            let text = encode_base64(&data);
            assert_eq!(decode_base64(text.as_bytes()), Ok(data.clone()), "{text}");
            let unpadded = text.trim_end_matches('=');
            assert_eq!(decode_base64(unpadded.as_bytes()), Ok(data), "{unpadded}");
        }
        assert_eq!(decode_base64(b"Zm9v!mFy"), Err(Base64Error::InvalidCharacter(4)));
        assert_eq!(decode_base64(b"Zm=9"), Err(Base64Error::BadPadding(2)));
        assert_eq!(decode_base64(b"Zg==="), Err(Base64Error::BadPadding(2)));
        assert_eq!(decode_base64(b"Zg="), Err(Base64Error::BadPadding(2)));
        assert_eq!(decode_base64(b"Z"), Err(Base64Error::Truncated));
        assert_eq!(decode_base64(b"Zm9v YmF"), Err(Base64Error::InvalidCharacter(4)));
        assert_eq!(decode_base64_lines(b"Zm9v\r\nYmFy\n"), Ok(b"foobar".to_vec()));
    }

    #[test]
    fn blocks_and_errors() {
        let text = b"junk before\n-----BEGIN PUBLIC KEY-----\r\nZm9v\r\nYmFy\r\n-----END PUBLIC KEY-----\r\n\
                     -----BEGIN CERTIFICATE-----\nZg==\n-----END CERTIFICATE-----\n";
        let blocks = parse(text).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!((blocks[0].label.as_str(), blocks[0].der.as_slice()), ("PUBLIC KEY", &b"foobar"[..]));
        assert_eq!((blocks[1].label.as_str(), blocks[1].der.as_slice()), ("CERTIFICATE", &b"f"[..]));
        assert!(!format!("{:?}", blocks[0]).contains("102"), "no bytes in Debug");
        assert_eq!(parse(b"nothing here"), Err(PemError::NoBlock));
        assert_eq!(parse(b"-----BEGIN X-----\nZg==\n"), Err(PemError::Unterminated("X".into())));
        assert_eq!(parse(b"-----BEGIN X-----\nZg==\n-----END Y-----\n"), Err(PemError::Unterminated("X".into())));
        assert_eq!(parse(b"-----BEGINX-----\n"), Err(PemError::BadBoundary));
        assert_eq!(
            parse(b"-----BEGIN X-----\nZ!==\n-----END X-----"),
            Err(PemError::Base64 { label: "X".into(), error: Base64Error::InvalidCharacter(1) })
        );
        assert_eq!(
            parse(b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES\n\nZg==\n-----END RSA PRIVATE KEY-----"),
            Err(PemError::Encrypted("RSA PRIVATE KEY".into()))
        );
    }
}
