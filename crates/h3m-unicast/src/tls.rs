//! TLS for the repair origin and its clients (rustls with the `ring`
//! provider, the one crypto stack of the workspace).
//!
//! The origin has an [`Identity`]: a certificate chain and key from PEM
//! files, or a self-signed certificate made at start-up whose SHA-256
//! [fingerprint](Identity::fingerprint) the sender prints (and advertises)
//! so receivers can pin it. A client trusts the origin through a [`Trust`]:
//! a CA file, a pinned fingerprint, or the system's roots.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// ALPN of HTTP/3.
pub const ALPN_H3: &[u8] = b"h3";
/// ALPN of HTTP/1.1 (the fallback over TCP).
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// A self-signed certificate could not be made.
    #[error("self-signed certificate: {0}")]
    SelfSigned(#[from] rcgen::Error),
    /// rustls refused the configuration (e.g. a key that does not match).
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    /// A pin is not 64 hex digits (a SHA-256).
    #[error("a pin is the certificate's SHA-256 in hex (64 digits, colons allowed)")]
    BadPin,
    /// No system root certificates could be loaded.
    #[error("no system root certificates found (give --repair-ca or --repair-pin)")]
    NoSystemRoots,
}

/// The ring provider (the workspace's one crypto stack; rustls deprecates it
/// only for lacking post-quantum key exchange, which needs aws-lc-rs).
#[allow(deprecated)]
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The SHA-256 of a certificate's DER, the value a pin compares.
pub fn fingerprint(cert: &CertificateDer<'_>) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Parses a pin: 64 hex digits, optionally in colon-separated pairs (as
/// `openssl x509 -fingerprint -sha256` prints them).
pub fn parse_pin(s: &str) -> Result<[u8; 32], TlsError> {
    let digits: String = s.trim().chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(digits).map_err(|_| TlsError::BadPin)?;
    bytes.try_into().map_err(|_| TlsError::BadPin)
}

/// The origin's certificate chain and private key.
#[derive(Debug)]
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity { chain: self.chain.clone(), key: self.key.clone_key() }
    }
}

fn pem_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::Pem { path: path.display().to_string(), reason: reason.to_string() }
}

/// Every certificate in a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no CERTIFICATE in it"));
    }
    Ok(certs)
}

impl Identity {
    /// A chain (leaf first) and its key from PEM files.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Identity, TlsError> {
        let chain = load_certs(cert)?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
        Ok(Identity { chain, key })
    }

    /// A fresh self-signed certificate (ECDSA P-256) for `names` (DNS names
    /// or IP addresses).
    pub fn self_signed(names: &[String]) -> Result<Identity, TlsError> {
        let made = rcgen::generate_simple_self_signed(names.to_vec())?;
        let key = PrivateKeyDer::try_from(made.signing_key.serialize_der())
            .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_owned())))?;
        Ok(Identity { chain: vec![made.cert.der().clone()], key })
    }

    /// The leaf certificate.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    /// The leaf certificate's SHA-256 (what `--repair-pin` takes).
    pub fn fingerprint(&self) -> [u8; 32] {
        fingerprint(self.leaf())
    }

    /// The leaf certificate as PEM.
    pub fn leaf_pem(&self) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(self.leaf().as_ref());
        let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
        out
    }

    /// A rustls server configuration offering `alpn`.
    pub(crate) fn server_config(&self, alpn: &[u8]) -> Result<rustls::ServerConfig, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(config)
    }
}

/// How a client trusts the origin's certificate.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Certificates (CAs, or the origin's own) from a PEM file.
    Ca(Vec<CertificateDer<'static>>),
    /// Exactly the certificate with this SHA-256, whatever its names and dates.
    Pin([u8; 32]),
    /// The system's root certificates.
    System,
}

impl Trust {
    /// A rustls client configuration offering `alpn`.
    pub(crate) fn client_config(&self, alpn: &[u8]) -> Result<rustls::ClientConfig, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?;
        let mut config = match self {
            Trust::Pin(pin) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinVerifier {
                    pin: *pin,
                    algorithms: provider().signature_verification_algorithms,
                }))
                .with_no_client_auth(),
            Trust::Ca(certs) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in certs {
                    roots.add(c.clone())?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            Trust::System => {
                let mut roots = rustls::RootCertStore::empty();
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(TlsError::NoSystemRoots);
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
        };
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(config)
    }
}

/// Trusts exactly one certificate, by its SHA-256; the handshake's
/// signatures are still checked against it.
#[derive(Debug)]
struct PinVerifier {
    pin: [u8; 32],
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if fingerprint(end_entity) == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_with_or_without_colons() {
        let hex64 = "ab".repeat(32);
        assert_eq!(parse_pin(&hex64).unwrap(), [0xab; 32]);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_pin(&colons).unwrap(), [0xab; 32]);
        assert!(matches!(parse_pin("abcd"), Err(TlsError::BadPin)));
        assert!(matches!(parse_pin(&"zz".repeat(32)), Err(TlsError::BadPin)));
    }

    #[test]
    fn self_signed_identity_round_trips_through_pem() {
        let id = Identity::self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cert.pem");
        std::fs::write(&path, id.leaf_pem()).unwrap();
        let certs = load_certs(&path).unwrap();
        assert_eq!(certs, vec![id.leaf().clone()]);
        assert_eq!(fingerprint(&certs[0]), id.fingerprint());
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing here\n").unwrap();
        assert!(matches!(load_certs(&empty), Err(TlsError::Pem { .. })));
    }
}
