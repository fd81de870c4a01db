//! AMBI manifests multicast on the session, for receivers with no return
//! path (AMT, satellite): each in one datagram, signed.
//!
//! ```text
//! "h3mA" | version (1) = 1 | algorithm (1) | manifest length (2) | manifest | signature
//! ```
//!
//! The signature (the rest of the datagram) covers `"h3m-ambi-1\0"`, then
//! the manifest's bytes. Algorithms: 1 Ed25519 (the default), 2 ECDSA P-256
//! (fixed `r || s`), 3 RSA-PSS SHA-512. A receiver accepts a manifest only
//! if one of its trusted keys verifies it; anything else is counted and
//! dropped before the gate sees it.

use crate::auth::{SignatureAlgorithm, SigningKey, VerifyingKey};

use super::{Manifest, ManifestError};

/// The first bytes of an in-band manifest datagram.
pub const INBAND_MAGIC: &[u8; 4] = b"h3mA";
const VERSION: u8 = 1;
/// What every signature covers first (binds it to this use).
const CONTEXT: &[u8] = b"h3m-ambi-1\0";

/// Why an in-band manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InbandError {
    /// Not an in-band manifest (magic or version).
    #[error("not an h3m AMBI manifest datagram")]
    NotInband,
    /// The lengths do not add up.
    #[error("truncated")]
    Truncated,
    /// An algorithm number not known.
    #[error("unknown signature algorithm {0}")]
    Algorithm(u8),
    /// No trusted key verifies it.
    #[error("no trusted key verifies the manifest's signature")]
    BadSignature,
    /// The manifest inside is malformed.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The key cannot sign with the algorithm.
    #[error("signing: {0}")]
    Sign(String),
}

fn algorithm(code: u8) -> Result<SignatureAlgorithm, InbandError> {
    Ok(match code {
        1 => SignatureAlgorithm::Ed25519,
        2 => SignatureAlgorithm::EcdsaP256Sha256Fixed,
        3 => SignatureAlgorithm::RsaPssSha512,
        other => return Err(InbandError::Algorithm(other)),
    })
}

/// The algorithm code for a signing key: Ed25519, ECDSA P-256 or RSA-PSS.
fn code_for(alg: SignatureAlgorithm) -> Option<u8> {
    match alg {
        SignatureAlgorithm::Ed25519 => Some(1),
        SignatureAlgorithm::EcdsaP256Sha256Fixed => Some(2),
        SignatureAlgorithm::RsaPssSha512 => Some(3),
        _ => None,
    }
}

fn signed_message(manifest: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(CONTEXT.len() + manifest.len());
    msg.extend_from_slice(CONTEXT);
    msg.extend_from_slice(manifest);
    msg
}

/// The datagram carrying `manifest`, signed by `key` with `alg` (Ed25519,
/// ECDSA P-256 fixed, or RSA-PSS SHA-512).
pub fn seal(manifest: &Manifest, key: &SigningKey, alg: SignatureAlgorithm) -> Result<Vec<u8>, InbandError> {
    let code = code_for(alg).ok_or_else(|| InbandError::Sign(format!("{alg:?} is not an AMBI algorithm")))?;
    let mut body = Vec::new();
    manifest.write(&mut body)?;
    let len = u16::try_from(body.len()).map_err(|_| ManifestError::TooLarge)?;
    let signature = key.sign(alg, &signed_message(&body)).map_err(|e| InbandError::Sign(e.to_string()))?;
    let mut out = Vec::with_capacity(8 + body.len() + signature.len());
    out.extend_from_slice(INBAND_MAGIC);
    out.push(VERSION);
    out.push(code);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&signature);
    Ok(out)
}

/// Whether a datagram is an in-band manifest (by its first bytes).
pub fn is_inband(datagram: &[u8]) -> bool {
    datagram.starts_with(INBAND_MAGIC)
}

/// The first packet sequence number and digest count an in-band manifest
/// claims, read without checking its signature (to skip verifying one that
/// would bring nothing new); `None` if it is not one.
pub fn peek_coverage(datagram: &[u8]) -> Option<(u32, usize)> {
    if !is_inband(datagram) || datagram.get(4) != Some(&VERSION) {
        return None;
    }
    let m = datagram.get(8..8 + 14)?;
    let first = u32::from_be_bytes([m[8], m[9], m[10], m[11]]);
    let count = usize::from(u16::from_be_bytes([m[12], m[13]]) & 0x7fff);
    Some((first, count))
}

/// The manifest in `datagram`, if one of `trust` verifies its signature;
/// digests are `digest_len` bytes.
pub fn open(datagram: &[u8], digest_len: usize, trust: &[VerifyingKey]) -> Result<Manifest, InbandError> {
    if !is_inband(datagram) || datagram.get(4) != Some(&VERSION) {
        return Err(InbandError::NotInband);
    }
    let head = datagram.get(..8).ok_or(InbandError::Truncated)?;
    let alg = algorithm(head[5])?;
    let len = usize::from(u16::from_be_bytes([head[6], head[7]]));
    let body = datagram.get(8..8 + len).ok_or(InbandError::Truncated)?;
    let signature = &datagram[8 + len..];
    let msg = signed_message(body);
    if !trust.iter().any(|k| alg.accepts(k.key_type()) && k.verify(alg, &msg, signature).is_ok()) {
        return Err(InbandError::BadSignature);
    }
    Ok(Manifest::parse(body, digest_len)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/../../interop/vectors/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    fn manifest() -> Manifest {
        Manifest { stream_id: 5, sequence: 1, first_packet: 77, tlvs: Vec::new(), digests: vec![9; 64], digest_len: 16 }
    }

    #[test]
    fn sealed_manifests_open_only_with_the_right_key() {
        let signer = SigningKey::from_pem(&pem("ed25519.key.pem")).unwrap();
        let d = seal(&manifest(), &signer, SignatureAlgorithm::Ed25519).unwrap();
        assert!(is_inband(&d));
        assert_eq!(peek_coverage(&d), Some((77, 4)));
        assert_eq!(d.len(), 8 + 14 + 64 + 64);
        assert_eq!(open(&d, 16, &[signer.verifying_key()]), Ok(manifest()));
        // Another key, a flipped bit anywhere, or a truncation: refused.
        let other = VerifyingKey::from_pem(&pem("other-ed25519.pub.pem")).unwrap();
        assert_eq!(open(&d, 16, &[other]), Err(InbandError::BadSignature));
        // ECDSA P-256 too.
        let ec = SigningKey::from_pem(&pem("ecp256.key.pem")).unwrap();
        let d2 = seal(&manifest(), &ec, SignatureAlgorithm::EcdsaP256Sha256Fixed).unwrap();
        assert_eq!(open(&d2, 16, &[signer.verifying_key(), ec.verifying_key()]), Ok(manifest()));
        for i in [8, 30, d.len() - 1] {
            let mut bad = d.clone();
            bad[i] ^= 1;
            assert_eq!(open(&bad, 16, &[signer.verifying_key()]), Err(InbandError::BadSignature), "byte {i}");
        }
        assert_eq!(open(&d[..20], 16, &[signer.verifying_key()]), Err(InbandError::Truncated));
        assert_eq!(open(b"h3mF\x01", 16, &[]), Err(InbandError::NotInband));
        let mut unknown = d.clone();
        unknown[5] = 9;
        assert_eq!(open(&unknown, 16, &[]), Err(InbandError::Algorithm(9)));
    }
}
