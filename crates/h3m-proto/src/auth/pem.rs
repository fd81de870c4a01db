//! PEM (RFC 7468) decoding (the base64 inside is [`crate::encoding::base64`]).
//!
//! Why not `rustls-pki-types`' `PemObject` (tried, 1.16): it skips blocks
//! whose label it does not know (`RSA PUBLIC KEY`, `ENCRYPTED PRIVATE KEY`,
//! `TRUSTED CERTIFICATE`...) without a word, so a key file of the wrong kind
//! could not be named in the error ([`super::KeyError::NoPublicKey`] lists the
//! labels found) and an encrypted PKCS#8 key could not be told apart; it
//! feeds RFC 1421 header lines to base64, so `Proc-Type: 4,ENCRYPTED` becomes
//! a base64 error instead of [`PemError::Encrypted`]; and its base64 errors
//! are strings without an offset.
//!
//! [`parse`] finds every `-----BEGIN LABEL-----` ... `-----END LABEL-----`
//! block of a text and decodes its base64 body. Text outside the blocks is
//! ignored (OpenSSL writes explanatory text before certificates), as are
//! RFC 1421 header lines inside a block, except that an encrypted legacy key
//! (`Proc-Type: 4,ENCRYPTED`) is an error: keys must be unencrypted.

use crate::encoding::base64::{self, Base64Error};

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
        let der = base64::decode_lines(&body).map_err(|error| PemError::Base64 { label: label.clone(), error })?;
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
