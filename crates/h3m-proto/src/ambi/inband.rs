//! AMBI manifests multicast on the session, for receivers with no return
//! path (AMT, satellite): each in one datagram, signed.
//!
//! ```text
//! version 1: "h3mA" | 1 | algorithm (1) | manifest length (2) | manifest | signature
//! version 2: "h3mA" | 2 | algorithm (1) | manifest length (2) | manifest
//!            | leaf index (1) | depth (1) | path (depth × 32) | signature
//! ```
//!
//! Version 1 signs each manifest: the signature (the rest of the datagram)
//! covers `"h3m-ambi-1\0"`, then the manifest's bytes.
//!
//! Version 2 ([`seal_batch`], what senders send) signs a batch of up to
//! [`MAX_BATCH`] manifests once: the manifests are the leaves of a Merkle
//! tree of SHA-256 (leaf `H(0x00 || manifest)`, node `H(0x01 || left ||
//! right)`, leaves beyond the batch `H(0x02)`, `2^depth` leaves), and the
//! signature covers `"h3m-ambi-2\0"`, the depth and the root. Each datagram
//! carries its manifest, its leaf index and the path to the root, so it is
//! verified on its own; a [`Verifier`] that has verified a root accepts the
//! batch's other manifests by their path alone (hashes, no signature). A
//! batch of manifests costs the sender one signature instead of one each,
//! and the receiver one verification.
//!
//! Algorithms: 1 Ed25519 (the default), 2 ECDSA P-256 (fixed `r || s`), 3
//! RSA-PSS SHA-512. A receiver accepts a manifest only if one of its
//! trusted keys verifies it (or the root it proves); anything else is
//! counted and dropped before the gate sees it.

use std::collections::VecDeque;

use ring::digest::{Context, SHA256};

use crate::auth::{SignatureAlgorithm, SigningKey, VerifyingKey};

use super::{Manifest, ManifestError};

/// The first bytes of an in-band manifest datagram.
pub const INBAND_MAGIC: &[u8; 4] = b"h3mA";
const VERSION: u8 = 1;
/// What every signature covers first (binds it to this use).
const CONTEXT: &[u8] = b"h3m-ambi-1\0";
/// Batch-signed manifests (see the module docs).
const VERSION_BATCH: u8 = 2;
/// What a batch signature covers first.
const CONTEXT_BATCH: &[u8] = b"h3m-ambi-2\0";
/// Most manifests one signature covers.
pub const MAX_BATCH: usize = 16;
/// Deepest tree accepted (`2^8` leaves).
const MAX_DEPTH: usize = 8;
/// Roots a [`Verifier`] remembers.
const ROOTS_REMEMBERED: usize = 64;

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

/// The datagrams carrying `manifests` (at most [`MAX_BATCH`]), signed
/// together by `key` with `alg`: one signature (see the module docs).
pub fn seal_batch(
    manifests: &[Manifest],
    key: &SigningKey,
    alg: SignatureAlgorithm,
) -> Result<Vec<Vec<u8>>, InbandError> {
    let code = code_for(alg).ok_or_else(|| InbandError::Sign(format!("{alg:?} is not an AMBI algorithm")))?;
    if manifests.is_empty() {
        return Ok(Vec::new());
    }
    if manifests.len() > MAX_BATCH {
        return Err(InbandError::Sign(format!("{} manifests in one batch (at most {MAX_BATCH})", manifests.len())));
    }
    let mut bodies = Vec::with_capacity(manifests.len());
    for m in manifests {
        let mut body = Vec::new();
        m.write(&mut body)?;
        u16::try_from(body.len()).map_err(|_| ManifestError::TooLarge)?;
        bodies.push(body);
    }
    let depth = manifests.len().next_power_of_two().trailing_zeros() as usize;
    // levels[0]: the leaves, padded; each next level half as long.
    let mut levels: Vec<Vec<[u8; 32]>> =
        vec![(0..1 << depth).map(|i| leaf_hash(bodies.get(i).map(Vec::as_slice))).collect()];
    while levels.last().expect("the leaves").len() > 1 {
        let below = levels.last().expect("a level");
        let up = below.chunks(2).map(|pair| node_hash(&pair[0], &pair[1])).collect();
        levels.push(up);
    }
    let root = levels.last().expect("the root")[0];
    let signature = key.sign(alg, &batch_message(depth as u8, &root)).map_err(|e| InbandError::Sign(e.to_string()))?;
    let mut out = Vec::with_capacity(bodies.len());
    for (index, body) in bodies.iter().enumerate() {
        let mut d = Vec::with_capacity(10 + body.len() + 32 * depth + signature.len());
        d.extend_from_slice(INBAND_MAGIC);
        d.push(VERSION_BATCH);
        d.push(code);
        d.extend_from_slice(&(body.len() as u16).to_be_bytes());
        d.extend_from_slice(body);
        d.push(index as u8);
        d.push(depth as u8);
        for (level, nodes) in levels.iter().take(depth).enumerate() {
            d.extend_from_slice(&nodes[(index >> level) ^ 1]);
        }
        d.extend_from_slice(&signature);
        out.push(d);
    }
    Ok(out)
}

/// The leaf hash of a manifest's bytes (`None`: a padding leaf).
fn leaf_hash(body: Option<&[u8]>) -> [u8; 32] {
    let mut c = Context::new(&SHA256);
    match body {
        Some(b) => {
            c.update(&[0]);
            c.update(b);
        }
        None => c.update(&[2]),
    }
    c.finish().as_ref().try_into().expect("32 bytes")
}

fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut c = Context::new(&SHA256);
    c.update(&[1]);
    c.update(left);
    c.update(right);
    c.finish().as_ref().try_into().expect("32 bytes")
}

fn batch_message(depth: u8, root: &[u8; 32]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(CONTEXT_BATCH.len() + 33);
    msg.extend_from_slice(CONTEXT_BATCH);
    msg.push(depth);
    msg.extend_from_slice(root);
    msg
}

/// Opens in-band manifests against trusted keys, remembering the batch
/// roots it verified (the 64 newest) so that the other
/// manifests of a batch cost hashes, not a signature verification.
#[derive(Debug, Clone)]
pub struct Verifier {
    trust: Vec<VerifyingKey>,
    roots: VecDeque<[u8; 33]>,
    verifications: u64,
}

impl Verifier {
    /// A verifier trusting `trust`.
    pub fn new(trust: Vec<VerifyingKey>) -> Self {
        Verifier { trust, roots: VecDeque::new(), verifications: 0 }
    }

    /// Signatures checked so far (manifests accepted by a remembered root
    /// cost none).
    pub fn verifications(&self) -> u64 {
        self.verifications
    }

    /// The manifest in `datagram` (version 1 or 2), if a trusted key
    /// verifies it (or a root verified before); digests are `digest_len`
    /// bytes.
    pub fn open(&mut self, datagram: &[u8], digest_len: usize) -> Result<Manifest, InbandError> {
        if !is_inband(datagram) {
            return Err(InbandError::NotInband);
        }
        match datagram.get(4) {
            Some(&VERSION) => {
                self.verifications += 1;
                open(datagram, digest_len, &self.trust)
            }
            Some(&VERSION_BATCH) => self.open_batched(datagram, digest_len),
            _ => Err(InbandError::NotInband),
        }
    }

    fn open_batched(&mut self, datagram: &[u8], digest_len: usize) -> Result<Manifest, InbandError> {
        let (alg, body, rest) = split(datagram)?;
        let (&[index, depth], rest) = rest.split_first_chunk().ok_or(InbandError::Truncated)?;
        let (index, depth_n) = (usize::from(index), usize::from(depth));
        if depth_n > MAX_DEPTH || index >> depth_n != 0 {
            return Err(InbandError::Truncated);
        }
        let (path, signature) = rest.split_at_checked(32 * depth_n).ok_or(InbandError::Truncated)?;
        let mut hash = leaf_hash(Some(body));
        for (level, sibling) in path.chunks_exact(32).enumerate() {
            let sibling: &[u8; 32] = sibling.try_into().expect("32 bytes");
            hash = if (index >> level) & 1 == 0 { node_hash(&hash, sibling) } else { node_hash(sibling, &hash) };
        }
        let mut known = [0u8; 33];
        known[0] = depth;
        known[1..].copy_from_slice(&hash);
        if !self.roots.contains(&known) {
            self.verifications += 1;
            if !trusted(&self.trust, alg, &batch_message(depth, &hash), signature) {
                return Err(InbandError::BadSignature);
            }
            if self.roots.len() >= ROOTS_REMEMBERED {
                self.roots.pop_front();
            }
            self.roots.push_back(known);
        }
        Ok(Manifest::parse(body, digest_len)?)
    }
}

/// Whether a datagram is an in-band manifest (by its first bytes).
pub fn is_inband(datagram: &[u8]) -> bool {
    datagram.starts_with(INBAND_MAGIC)
}

/// The first packet sequence number and digest count an in-band manifest
/// claims, read without checking its signature (to skip verifying one that
/// would bring nothing new); `None` if it is not one.
pub fn peek_coverage(datagram: &[u8]) -> Option<(u32, usize)> {
    if !is_inband(datagram) || !matches!(datagram.get(4), Some(&VERSION | &VERSION_BATCH)) {
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
    let (alg, body, signature) = split(datagram)?;
    if !trusted(trust, alg, &signed_message(body), signature) {
        return Err(InbandError::BadSignature);
    }
    Ok(Manifest::parse(body, digest_len)?)
}

/// The parts every version shares: the algorithm, the manifest's bytes,
/// and what follows them.
fn split(datagram: &[u8]) -> Result<(SignatureAlgorithm, &[u8], &[u8]), InbandError> {
    let head = datagram.get(..8).ok_or(InbandError::Truncated)?;
    let alg = algorithm(head[5])?;
    let len = usize::from(u16::from_be_bytes([head[6], head[7]]));
    let body = datagram.get(8..8 + len).ok_or(InbandError::Truncated)?;
    Ok((alg, body, &datagram[8 + len..]))
}

/// Whether one of the trusted keys verifies `signature` over `message`.
fn trusted(trust: &[VerifyingKey], alg: SignatureAlgorithm, message: &[u8], signature: &[u8]) -> bool {
    trust.iter().any(|k| alg.accepts(k.key_type()) && k.verify(alg, message, signature).is_ok())
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

    fn batch(n: usize) -> Vec<Manifest> {
        (0..n as u32)
            .map(|i| Manifest { sequence: i, first_packet: 100 + 4 * i, digests: vec![i as u8; 64], ..manifest() })
            .collect()
    }

    /// A batch costs one signature to make and one verification to open,
    /// in any order of arrival; each datagram still opens on its own.
    #[test]
    fn a_batch_is_signed_once_and_verified_once() {
        let signer = SigningKey::from_pem(&pem("ed25519.key.pem")).unwrap();
        for n in [1usize, 2, 5, 16] {
            let ms = batch(n);
            let ds = seal_batch(&ms, &signer, SignatureAlgorithm::Ed25519).unwrap();
            assert_eq!(ds.len(), n);
            let depth = n.next_power_of_two().trailing_zeros() as usize;
            // Version 1's datagram plus the index, the depth and the path.
            assert_eq!(ds[0].len(), 8 + 14 + 64 + 2 + 32 * depth + 64, "n {n}");
            for (order, label) in [((0..n).collect::<Vec<_>>(), "in order"), ((0..n).rev().collect(), "reversed")] {
                let mut v = Verifier::new(vec![signer.verifying_key()]);
                for i in order {
                    assert_eq!(peek_coverage(&ds[i]), Some((ms[i].first_packet, 4)));
                    assert_eq!(v.open(&ds[i], 16), Ok(ms[i].clone()), "n {n} {label} manifest {i}");
                }
                assert_eq!(v.verifications(), 1, "n {n} {label}");
            }
            // Alone, every one verifies.
            for (d, m) in ds.iter().zip(&ms) {
                assert_eq!(Verifier::new(vec![signer.verifying_key()]).open(d, 16), Ok(m.clone()));
            }
        }
        assert!(seal_batch(&batch(MAX_BATCH + 1), &signer, SignatureAlgorithm::Ed25519).is_err());
        assert_eq!(seal_batch(&[], &signer, SignatureAlgorithm::Ed25519), Ok(Vec::new()));
    }

    /// A changed manifest, path, index or depth proves another root, which
    /// no trusted key signed: refused, even by a verifier that knows the
    /// batch's real root. A wrong key refuses the batch.
    #[test]
    fn a_tampered_batch_manifest_is_refused() {
        let signer = SigningKey::from_pem(&pem("ed25519.key.pem")).unwrap();
        let ms = batch(5);
        let ds = seal_batch(&ms, &signer, SignatureAlgorithm::Ed25519).unwrap();
        let len = ds[2].len();
        let body_end = 8 + 14 + 64;
        let mut knows_root = Verifier::new(vec![signer.verifying_key()]);
        assert!(knows_root.open(&ds[0], 16).is_ok());
        // A manifest byte, the index, a path byte: another root.
        for at in [8, 30, body_end - 1, body_end, body_end + 2, body_end + 2 + 40] {
            let mut bad = ds[2].clone();
            bad[at] ^= 1;
            let fresh = Verifier::new(vec![signer.verifying_key()]).open(&bad, 16);
            assert_eq!(fresh, Err(InbandError::BadSignature), "byte {at}");
            assert_eq!(knows_root.open(&bad, 16), Err(InbandError::BadSignature), "byte {at}, root known");
        }
        // A signature byte: a fresh verifier refuses it; one that verified
        // the root does not need the signature (the path proves it).
        let mut bad_sig = ds[2].clone();
        bad_sig[len - 1] ^= 1;
        assert_eq!(Verifier::new(vec![signer.verifying_key()]).open(&bad_sig, 16), Err(InbandError::BadSignature));
        assert_eq!(knows_root.open(&bad_sig, 16), Ok(ms[2].clone()));
        // Depth beyond the limit, index beyond the tree, truncations.
        let mut deep = ds[2].clone();
        deep[body_end + 1] = 9;
        assert_eq!(knows_root.open(&deep, 16), Err(InbandError::Truncated));
        let mut far = ds[2].clone();
        far[body_end] = 8;
        assert_eq!(knows_root.open(&far, 16), Err(InbandError::Truncated));
        for cut in [9, body_end, body_end + 1, body_end + 2 + 50] {
            assert_eq!(knows_root.open(&ds[2][..cut], 16), Err(InbandError::Truncated), "cut at {cut}");
        }
        let other = VerifyingKey::from_pem(&pem("other-ed25519.pub.pem")).unwrap();
        assert_eq!(Verifier::new(vec![other]).open(&ds[1], 16), Err(InbandError::BadSignature));
        // Version 1 datagrams open through a verifier too, each verified.
        let mut v = Verifier::new(vec![signer.verifying_key()]);
        let single = seal(&ms[0], &signer, SignatureAlgorithm::Ed25519).unwrap();
        assert_eq!(v.open(&single, 16), Ok(ms[0].clone()));
        assert_eq!(v.open(&single, 16), Ok(ms[0].clone()));
        assert_eq!(v.verifications(), 2);
    }

    proptest::proptest! {
        /// Whatever the bytes, opening never panics, and what opens under a
        /// key that signed nothing is nothing.
        #[test]
        fn junk_never_opens(mut d in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400), v2 in proptest::prelude::any::<bool>()) {
            if d.len() > 6 {
                d[..4].copy_from_slice(INBAND_MAGIC);
                d[4] = if v2 { VERSION_BATCH } else { VERSION };
                d[5] = 1;
            }
            let other = VerifyingKey::from_pem(&pem("other-ed25519.pub.pem")).unwrap();
            proptest::prop_assert!(Verifier::new(vec![other]).open(&d, 16).is_err());
        }
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
