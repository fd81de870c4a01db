//! h3m meaning: turning a raw alternative into an [`Advertisement`] (protocol
//! ids, the group, each parameter's value) and the rules
//! [`Advertisement::validate`] checks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::syntax::{RawAlt, is_token};
use super::{Advertisement, AltSvcError, Extension, KNOWN_PARAMETERS};
use crate::protection::CipherSuite;
use crate::session_id::SessionId;

/// `(draft, experiment)` of an h3m protocol id, `None` when it is not one.
pub(super) fn classify(protocol: &str) -> Option<(Option<u32>, Option<String>)> {
    if protocol == "h3m" {
        return Some((None, None));
    }
    let rest = protocol.strip_prefix("h3m-")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let draft: u32 = rest.get(..digits)?.parse().ok()?;
    let tail = rest.get(digits..)?;
    if tail.is_empty() {
        return Some((Some(draft), None));
    }
    let experiment = tail.strip_prefix('-')?;
    is_token(experiment).then(|| (Some(draft), Some(experiment.to_owned())))
}

/// Builds an advertisement from an h3m raw alternative.
pub(super) fn build(raw: RawAlt) -> Result<Advertisement, AltSvcError> {
    if classify(&raw.protocol).is_none() {
        return Err(AltSvcError::NotH3m(raw.protocol));
    }
    let mut ad = Advertisement::new(&raw.protocol, parse_group(&raw.authority)?);
    let mut seen: Vec<&'static str> = Vec::new();
    for (name, value) in raw.params {
        let key = KNOWN_PARAMETERS.iter().copied().find(|k| *k == name);
        let Some(key) = key else {
            ad.unknown.push((name, value));
            continue;
        };
        let single =
            !matches!(key, "digest-algorithm" | "signature-algorithm" | "extensions" | "extension" | "persist");
        if single {
            if seen.contains(&key) {
                continue; // first occurrence wins; later ones are not checked
            }
            seen.push(key);
        }
        let v = value.as_str();
        match key {
            "source-address" => ad.source = Some(parse_source(v)?),
            "session-id" => ad.session_id = SessionId::from_hex(v)?,
            "session-idle-timeout" => ad.idle_timeout_ms = Some(parse_number(key, v)?),
            "max-concurrent-resources" => {
                let n = parse_number(key, v)?;
                let n = u32::try_from(n).map_err(|_| bad_number(key, v))?;
                ad.max_concurrent_resources = Some(n);
            }
            "peak-flow-rate" => ad.peak_flow_rate = Some(parse_number(key, v)?),
            "cipher-suite" => ad.cipher_suite = parse_cipher_suite(v)?,
            "key" => ad.key = Some(parse_secret(key, v)?),
            "iv" => ad.iv = Some(parse_secret(key, v)?),
            "digest-algorithm" => add_algorithm(key, v, &mut ad.digest_algorithms)?,
            "signature-algorithm" => add_algorithm(key, v, &mut ad.signature_algorithms)?,
            "extensions" | "extension" => parse_extensions(v, &mut ad.extensions)?,
            "ma" => {
                ad.max_age = Some(match parse_number(key, v) {
                    Ok(n) => n,
                    // RFC 7234 delta-seconds: too large means "very long".
                    Err(_) if all_digits(v) => u64::MAX,
                    Err(e) => return Err(e),
                })
            }
            "persist" => ad.persist |= v == "1",
            "fec" => {
                ad.fec = Some(v.parse().map_err(|_| AltSvcError::BadParameter {
                    name: name.clone(),
                    reason: "not PERCENT[,block=N][,depth=D][,deadline=MS] within range",
                })?)
            }
            "fec-port" => {
                let n = parse_number(key, v)?;
                ad.fec_port = Some(u16::try_from(n).ok().filter(|&p| p != 0).ok_or_else(|| bad_number(key, v))?);
            }
            "repair" => {
                if !v.starts_with("https://") || v.len() > 255 || v.bytes().any(|b| !b.is_ascii_graphic()) {
                    return Err(AltSvcError::BadParameter { name: name.clone(), reason: "not an https:// origin" });
                }
                ad.repair_origin = Some(v.to_owned());
            }
            "repair-pin" => {
                let pin = hex::decode(strip_0x(v)).ok().and_then(|b| <[u8; 32]>::try_from(b).ok());
                ad.repair_pin = Some(pin.ok_or_else(|| AltSvcError::BadParameter {
                    name: name.clone(),
                    reason: "not a SHA-256 in hex (64 digits)",
                })?);
            }
            "ambi" => {
                if !matches!(v, "inband" | "https" | "both") {
                    return Err(AltSvcError::BadParameter { name: name.clone(), reason: "not inband, https or both" });
                }
                ad.ambi = Some(v.to_owned());
            }
            "ambi-digest" => {
                if crate::ambi::DigestProfile::parse(v, 0).is_err() {
                    return Err(AltSvcError::BadParameter { name: name.clone(), reason: "not ALG[/BITS]" });
                }
                ad.ambi_digest = Some(v.to_owned());
            }
            _ => ad.unknown.push((name, value)),
        }
    }
    ad.check_consistency()?;
    Ok(ad)
}

/// The alt-authority as a multicast group and non-zero port.
fn parse_group(authority: &str) -> Result<SocketAddr, AltSvcError> {
    let bad = || AltSvcError::BadAuthority(authority.to_owned());
    let (ip, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, port) = rest.split_once("]:").ok_or_else(bad)?;
        (IpAddr::V6(host.parse::<Ipv6Addr>().map_err(|_| bad())?), port)
    } else {
        let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
        (IpAddr::V4(host.parse::<Ipv4Addr>().map_err(|_| bad())?), port)
    };
    if !all_digits(port) {
        return Err(bad());
    }
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(bad());
    }
    if !ip.is_multicast() {
        return Err(AltSvcError::NotMulticast(ip));
    }
    Ok(SocketAddr::new(ip, port))
}

/// `source-address`: a unicast IP literal, IPv6 with or without brackets.
fn parse_source(value: &str) -> Result<IpAddr, AltSvcError> {
    let bracketed = value.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
    let ip = match bracketed {
        Some(inner) => inner.parse::<Ipv6Addr>().map(IpAddr::V6).ok(),
        None => value.parse::<IpAddr>().ok(),
    };
    ip.filter(|&ip| is_unicast(ip)).ok_or_else(|| AltSvcError::BadSource(value.to_owned()))
}

/// Not multicast, not unspecified, not the IPv4 limited broadcast address.
fn is_unicast(ip: IpAddr) -> bool {
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    !ip.is_multicast() && !ip.is_unspecified() && !broadcast
}

fn bad_number(param: &'static str, value: &str) -> AltSvcError {
    AltSvcError::BadNumber { param, value: value.to_owned() }
}

/// `1*DIGIT` as a `u64` (no sign, no whitespace).
fn parse_number(param: &'static str, value: &str) -> Result<u64, AltSvcError> {
    if !all_digits(value) {
        return Err(bad_number(param, value));
    }
    value.parse().map_err(|_| bad_number(param, value))
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `cipher-suite`: exactly four hex digits naming a supported suite.
fn parse_cipher_suite(value: &str) -> Result<CipherSuite, AltSvcError> {
    let code = (value.len() == 4 && value.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u16::from_str_radix(value, 16).ok())
        .flatten()
        .ok_or_else(|| AltSvcError::BadHex { param: "cipher-suite", value: value.to_owned() })?;
    CipherSuite::from_code(code).ok_or_else(|| AltSvcError::UnsupportedCipherSuite(value.to_owned()))
}

/// `key` / `iv`: an even number of hex digits, optional `0x`; errors never echo it.
fn parse_secret(param: &'static str, value: &str) -> Result<Vec<u8>, AltSvcError> {
    hex::decode(strip_0x(value))
        .map_err(|_| AltSvcError::BadHex { param, value: format!("<redacted: {} chars>", value.chars().count()) })
}

fn strip_0x(s: &str) -> &str {
    s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s)
}

/// Adds a `digest-algorithm` / `signature-algorithm` token to its set.
fn add_algorithm(param: &'static str, value: &str, set: &mut Vec<String>) -> Result<(), AltSvcError> {
    if !is_token(value) {
        return Err(AltSvcError::BadAlgorithm { param, value: value.to_owned() });
    }
    if !set.iter().any(|a| a.eq_ignore_ascii_case(value)) {
        set.push(value.to_owned());
    }
    Ok(())
}

/// `extensions`: `ext *( "," ext )`, `ext = 4HEXDIG [ "=" *HEXDIG ]`; an empty value
/// adds nothing.
fn parse_extensions(value: &str, out: &mut Vec<Extension>) -> Result<(), AltSvcError> {
    if value.trim_matches([' ', '\t']).is_empty() {
        return Ok(());
    }
    for item in value.split(',') {
        let item = item.trim_matches([' ', '\t']);
        let bad = || AltSvcError::BadExtension(item.to_owned());
        let (code, ext_value) = match item.split_once('=') {
            Some((code, v)) => (code.trim_matches([' ', '\t']), Some(v.trim_matches([' ', '\t']))),
            None => (item, None),
        };
        let code = strip_0x(code);
        if code.len() != 4 || !code.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let code = u16::from_str_radix(code, 16).map_err(|_| bad())?;
        let value = match ext_value {
            Some(v) => Some(hex::decode(strip_0x(v)).map_err(|_| bad())?),
            None => None,
        };
        out.push(Extension { code, value });
    }
    Ok(())
}

impl Advertisement {
    /// Checks every rule [`parse_one`](super::parse_one) enforces, so that an advertisement built in
    /// code can be relied on to be written by `Display` and read back equal.
    pub fn validate(&self) -> Result<(), AltSvcError> {
        match classify(&self.protocol) {
            None => return Err(AltSvcError::NotH3m(self.protocol.clone())),
            Some((draft, experiment)) => {
                if draft != self.draft || experiment != self.experiment {
                    return Err(AltSvcError::ProtocolFields(self.protocol.clone()));
                }
            }
        }
        let plain_v6 = match self.group {
            SocketAddr::V4(_) => true,
            SocketAddr::V6(v6) => v6.scope_id() == 0 && v6.flowinfo() == 0,
        };
        if self.group.port() == 0 || !plain_v6 {
            return Err(AltSvcError::BadAuthority(self.group.to_string()));
        }
        if !self.group.ip().is_multicast() {
            return Err(AltSvcError::NotMulticast(self.group.ip()));
        }
        if let Some(source) = self.source
            && !is_unicast(source)
        {
            return Err(AltSvcError::BadSource(source.to_string()));
        }
        for (param, set) in
            [("digest-algorithm", &self.digest_algorithms), ("signature-algorithm", &self.signature_algorithms)]
        {
            for (i, alg) in set.iter().enumerate() {
                let duplicate = set[..i].iter().any(|a| a.eq_ignore_ascii_case(alg));
                if !is_token(alg) || duplicate {
                    return Err(AltSvcError::BadAlgorithm { param, value: alg.clone() });
                }
            }
        }
        for (name, value) in &self.unknown {
            let reason = if !is_token(name) {
                Some("name is not a token")
            } else if name.bytes().any(|b| b.is_ascii_uppercase()) {
                Some("name is not lowercase")
            } else if KNOWN_PARAMETERS.contains(&name.as_str()) {
                Some("name is a parameter this module interprets")
            } else if value.bytes().any(|b| b != b'\t' && (b < 0x20 || b == 0x7f)) {
                Some("value holds a control character")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(AltSvcError::BadParameter { name: name.clone(), reason });
            }
        }
        self.check_consistency()
    }

    /// The cross-parameter rules: source family, key/iv against the suite.
    pub(super) fn check_consistency(&self) -> Result<(), AltSvcError> {
        if self.source.is_some_and(|s| s.is_ipv4() != self.group.is_ipv4()) {
            return Err(AltSvcError::FamilyMismatch);
        }
        let suite = self.cipher_suite;
        if suite == CipherSuite::Null {
            if self.key.is_some() {
                return Err(AltSvcError::KeyWithNullCipher);
            }
            if self.iv.is_some() {
                return Err(AltSvcError::IvWithNullCipher);
            }
            return Ok(());
        }
        if let Some(key) = &self.key
            && key.len() != suite.key_len()
        {
            return Err(AltSvcError::KeyLength { expected: suite.key_len(), got: key.len() });
        }
        if let Some(iv) = &self.iv
            && iv.len() != suite.iv_len()
        {
            return Err(AltSvcError::IvLength { expected: suite.iv_len(), got: iv.len() });
        }
        Ok(())
    }
}
