//! Writing advertisements: the canonical alt-value `Display` gives, the
//! redacted form for logs, and the `Debug` output that hides secrets.

use std::fmt;
use std::net::IpAddr;

use super::Advertisement;
use super::syntax::{is_tchar, is_token};
use crate::protection::CipherSuite;

impl fmt::Display for Advertisement {
    /// A canonical single alt-value: present parameters only, in a fixed order
    /// (source-address, session-id, session-idle-timeout, max-concurrent-resources,
    /// peak-flow-rate, cipher-suite, key, iv, digest-algorithm, signature-algorithm,
    /// extensions, ma, persist, fec, fec-port, repair,
    /// repair-pin, ambi, ambi-digest, then unknown ones), lowercase hex, quoted authority.
    /// [`parse_one`](super::parse_one) reads it back equal for any advertisement that passes
    /// [`Advertisement::validate`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Shown { ad: self, redact: false }.fmt(f)
    }
}

impl fmt::Debug for Advertisement {
    /// Every field, with `key` and `iv` shown only by length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Advertisement")
            .field("protocol", &self.protocol)
            .field("draft", &self.draft)
            .field("experiment", &self.experiment)
            .field("group", &self.group)
            .field("source", &self.source)
            .field("session_id", &self.session_id)
            .field("idle_timeout_ms", &self.idle_timeout_ms)
            .field("max_concurrent_resources", &self.max_concurrent_resources)
            .field("peak_flow_rate", &self.peak_flow_rate)
            .field("cipher_suite", &self.cipher_suite)
            .field("key", &self.key.as_ref().map(|k| Redacted(k.len())))
            .field("iv", &self.iv.as_ref().map(|k| Redacted(k.len())))
            .field("digest_algorithms", &self.digest_algorithms)
            .field("signature_algorithms", &self.signature_algorithms)
            .field("extensions", &self.extensions)
            .field("max_age", &self.max_age)
            .field("persist", &self.persist)
            .field("fec", &self.fec)
            .field("fec_port", &self.fec_port)
            .field("repair_origin", &self.repair_origin)
            .field("repair_pin", &self.repair_pin.map(hex::encode))
            .field("ambi", &self.ambi)
            .field("ambi_digest", &self.ambi_digest)
            .field("unknown", &self.unknown)
            .finish()
    }
}

/// Debug stand-in for secret bytes.
struct Redacted(usize);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0)
    }
}

/// The writer behind `Display` and [`Advertisement::redacted`].
pub(super) struct Shown<'a> {
    /// The advertisement to write.
    pub(super) ad: &'a Advertisement,
    /// Whether `key` and `iv` are written as `<redacted>`.
    pub(super) redact: bool,
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ad = self.ad;
        for b in ad.protocol.bytes() {
            if is_tchar(b) && b != b'%' {
                f.write_str(char::from(b).encode_utf8(&mut [0; 4]))?;
            } else {
                write!(f, "%{b:02X}")?;
            }
        }
        match ad.group.ip() {
            IpAddr::V4(ip) => write!(f, "=\"{ip}:{}\"", ad.group.port())?,
            IpAddr::V6(ip) => write!(f, "=\"[{ip}]:{}\"", ad.group.port())?,
        }
        if let Some(source) = ad.source {
            write!(f, "; source-address=\"{source}\"")?;
        }
        if !ad.session_id.is_empty() {
            write!(f, "; session-id={}", ad.session_id.to_hex())?;
        }
        if let Some(v) = ad.idle_timeout_ms {
            write!(f, "; session-idle-timeout={v}")?;
        }
        if let Some(v) = ad.max_concurrent_resources {
            write!(f, "; max-concurrent-resources={v}")?;
        }
        if let Some(v) = ad.peak_flow_rate {
            write!(f, "; peak-flow-rate={v}")?;
        }
        if ad.cipher_suite != CipherSuite::Null {
            write!(f, "; cipher-suite={:04x}", ad.cipher_suite.code())?;
        }
        for (name, secret) in [("key", &ad.key), ("iv", &ad.iv)] {
            match secret {
                Some(_) if self.redact => write!(f, "; {name}=<redacted>")?,
                Some(bytes) => write!(f, "; {name}={}", Hex(bytes))?,
                None => {}
            }
        }
        for alg in &ad.digest_algorithms {
            write!(f, "; digest-algorithm={}", Value(alg))?;
        }
        for alg in &ad.signature_algorithms {
            write!(f, "; signature-algorithm={}", Value(alg))?;
        }
        if !ad.extensions.is_empty() {
            f.write_str("; extensions=\"")?;
            for (i, ext) in ad.extensions.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{:04x}", ext.code)?;
                if let Some(value) = &ext.value {
                    write!(f, "={}", Hex(value))?;
                }
            }
            f.write_str("\"")?;
        }
        if let Some(v) = ad.max_age {
            write!(f, "; ma={v}")?;
        }
        if ad.persist {
            f.write_str("; persist=1")?;
        }
        if let Some(fec) = &ad.fec {
            write!(f, "; fec=\"{fec}\"")?;
        }
        if let Some(port) = ad.fec_port {
            write!(f, "; fec-port={port}")?;
        }
        if let Some(origin) = &ad.repair_origin {
            write!(f, "; repair=\"{origin}\"")?;
        }
        if let Some(pin) = &ad.repair_pin {
            write!(f, "; repair-pin={}", hex::encode(pin))?;
        }
        if let Some(ambi) = &ad.ambi {
            write!(f, "; ambi={ambi}")?;
        }
        if let Some(digest) = &ad.ambi_digest {
            write!(f, "; ambi-digest=\"{digest}\"")?;
        }
        for (name, value) in &ad.unknown {
            write!(f, "; {name}={}", Value(value))?;
        }
        Ok(())
    }
}

/// Lowercase hex of a byte string.
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// A parameter value: bare when it is a token, else a quoted-string.
struct Value<'a>(&'a str);

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_token(self.0) {
            return f.write_str(self.0);
        }
        f.write_str("\"")?;
        for c in self.0.chars() {
            if c == '"' || c == '\\' {
                f.write_str("\\")?;
            }
            f.write_str(c.encode_utf8(&mut [0; 4]))?;
        }
        f.write_str("\"")
    }
}
