//! DRIAD (DNS Reverse IP AMT Discovery, RFC 8777): finding an AMT relay for a
//! multicast source S from DNS.
//!
//! The gateway asks DNS for the AMTRELAY records (RR type 260) published at
//! the reverse-mapping name of S ([`reverse_name`]) and tries the relays they
//! name, best precedence first. This module is split in two:
//!
//! - sans-IO (this file): the reverse name, the AMTRELAY RDATA codec
//!   ([`parse_rdata`], [`encode_rdata`]) and the candidate ordering
//!   ([`order_candidates`]), which turns records into the
//!   [`RelayCandidate`] list the [`gateway`](crate::gateway) consumes;
//! - tokio ([`lookup`](self::lookup()), [`relay_candidates`], [`DriadResolver`]):
//!   the DNS queries through `hickory-resolver`, with a rate limit and the
//!   RFC's randomised retry timeout.
//!
//! # AMTRELAY RDATA (RFC 8777 section 4.2)
//!
//! ```text
//!  octet 0      octet 1            octets 2..
//! +------------+-+-------------+---------------------------+
//! | precedence |D| relay type  | relay (depends on type)   |
//! +------------+-+-------------+---------------------------+
//!  type 0: empty ("no relay")   type 1: 4-octet IPv4 address
//!  type 2: 16-octet IPv6 addr.  type 3: uncompressed wire-format domain name
//! ```
//!
//! Records of other relay types are ignored, as the RFC requires
//! ([`parse_rdata`] returns `Ok(None)` for them).
//!
//! # Ordering ([`order_candidates`])
//!
//! - Lowest precedence first.
//! - Among equal precedences the order is random (the load balancing RFC 8777
//!   asks for). RFC 6724 destination address selection is simplified to "the
//!   family the caller prefers first": a stable sort after the shuffle puts
//!   the preferred family ahead, each family staying in random order.
//! - A type-3 name stands for all of its A/AAAA addresses, each with the
//!   record's precedence and D bit.
//! - A type-0 record means "no AMT relay should be used for this source". At
//!   the best precedence (alone or tied with other records: the operator's
//!   "no relay" wins the tie) the answer is [`DriadAnswer::NoRelay`]; at a
//!   worse precedence it ends the list (records at its precedence or worse
//!   are not used).
//! - D bit clear: the address gets a Relay Discovery and the advertised relay
//!   is used (`discovery: true`); D bit set: the address is the relay
//!   (`discovery: false`).
//! - Unspecified and multicast addresses are skipped; an address listed twice
//!   keeps its first (best) position.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use hickory_proto::rr::Name;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::gateway::{RelayCandidate, Rng};

mod lookup;

pub use lookup::{
    DriadOptions, DriadResolver, lookup, lookup_records, parse_dns_server, parse_resolv_conf, relay_candidates,
};

/// The `hickory-proto` crate this module was built with (DNS messages, names,
/// record types), so callers and tests use the same version.
pub use hickory_proto;
/// The `hickory-resolver` crate this module was built with.
pub use hickory_resolver;

/// The AMTRELAY resource record type (RFC 8777 section 4).
pub const AMTRELAY: u16 = 260;

/// The D ("discovery optional") bit of RDATA octet 1.
const D_BIT: u8 = 0x80;

/// Longest domain name in wire format (RFC 1035 section 2.3.4).
const MAX_NAME_WIRE_LEN: usize = 255;

/// Longest label (RFC 1035 section 2.3.4).
const MAX_LABEL_LEN: usize = 63;

/// Why AMTRELAY data, a relay name, a DNS server or a DRIAD lookup was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriadError {
    /// The RDATA is shorter than its two fixed octets.
    #[error("AMTRELAY RDATA is {len} octet(s) long; at least 2 (precedence, D bit and relay type) are needed")]
    ShortRdata {
        /// Length of the RDATA.
        len: usize,
    },
    /// The relay field of a type 0, 1 or 2 record has the wrong length.
    #[error("AMTRELAY relay type {relay_type} needs a {expected}-octet relay field, found {found} octet(s)")]
    RelayLength {
        /// The relay type (0, 1 or 2).
        relay_type: u8,
        /// The length that type requires.
        expected: usize,
        /// The length found.
        found: usize,
    },
    /// The relay field of a type 3 record is not one uncompressed wire-format
    /// domain name.
    #[error("AMTRELAY type 3 relay name is malformed at RDATA octet {offset}: {reason}")]
    BadWireName {
        /// Offset in the RDATA where the problem was found.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A relay name in presentation form cannot be turned into a domain name.
    #[error("invalid relay name {name:?}: {reason}")]
    BadName {
        /// The name as given.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A DNS server specification could not be parsed.
    #[error("invalid DNS server {input:?}: expected ADDRESS or ADDRESS:PORT (an IPv6 address with a port in brackets)")]
    BadServer {
        /// The text given.
        input: String,
    },
    /// No DNS server to ask.
    #[error("no DNS server configured")]
    NoNameServers,
    /// The system resolver configuration could not be read.
    #[error("cannot read {path}: {source}")]
    ResolvConf {
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The resolver could not be built.
    #[error("cannot set up the DNS resolver: {0}")]
    Resolver(#[source] Box<hickory_resolver::net::NetError>),
    /// A DNS query failed (timeouts, server failures, ...) on every attempt.
    /// A name that does not exist or has no records of the type is not an error.
    #[error("DNS query {name} {record_type} failed after {attempts} attempt(s): {source}")]
    Dns {
        /// The query name.
        name: String,
        /// The query type.
        record_type: String,
        /// How many times the query was sent.
        attempts: u32,
        /// The last error.
        #[source]
        source: Box<hickory_resolver::net::NetError>,
    },
}

/// The reverse-mapping name DRIAD queries for a source address (hickory's
/// `Name` from the address): IPv4 `198.51.100.10` is
/// `10.100.51.198.in-addr.arpa.`; IPv6 is 32 nibbles in reverse order under
/// `ip6.arpa.`. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) maps to the
/// IPv4 name.
pub fn reverse_dns_name(source: IpAddr) -> Name {
    match source {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or_else(|| Name::from(a), Name::from),
        IpAddr::V4(a) => Name::from(a),
    }
}

/// [`reverse_dns_name`] in presentation form, with the trailing dot.
pub fn reverse_name(source: IpAddr) -> String {
    reverse_dns_name(source).to_ascii()
}

/// The relay field of an AMTRELAY record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RelayTarget {
    /// Type 0: no AMT relay should be used for this source.
    None,
    /// Type 1: an IPv4 address.
    Ipv4(Ipv4Addr),
    /// Type 2: an IPv6 address.
    Ipv6(Ipv6Addr),
    /// Type 3: a domain name (resolved with A/AAAA), in presentation form
    /// with the trailing dot (`relays.amt.test.`; the root is `.`). Octets
    /// outside printable ASCII and the characters `. \ " ( ) ; @ $` are
    /// escaped as in zone files (`\DDD`, `\.`).
    Name(String),
}

impl RelayTarget {
    /// The relay type number (0-3).
    pub fn relay_type(&self) -> u8 {
        match self {
            RelayTarget::None => 0,
            RelayTarget::Ipv4(_) => 1,
            RelayTarget::Ipv6(_) => 2,
            RelayTarget::Name(_) => 3,
        }
    }
}

/// One AMTRELAY record (RFC 8777 section 4.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AmtRelayRecord {
    /// Lower is tried first (0-255).
    pub precedence: u8,
    /// The D bit: `true` means the gateway may send Requests to the relay
    /// directly; `false` means it must send a Relay Discovery there first.
    pub discovery_optional: bool,
    /// The relay.
    pub relay: RelayTarget,
}

/// Decodes AMTRELAY RDATA. `Ok(None)`: a relay type this implementation does
/// not know (4-127), which RFC 8777 says to ignore. Lengths are exact: a
/// type 0 relay field is empty, type 1 is 4 octets, type 2 is 16, and a
/// type 3 name fills the rest of the RDATA exactly, uncompressed.
pub fn parse_rdata(rdata: &[u8]) -> Result<Option<AmtRelayRecord>, DriadError> {
    let [precedence, flags, relay @ ..] = rdata else {
        return Err(DriadError::ShortRdata { len: rdata.len() });
    };
    let relay_type = flags & !D_BIT;
    let exact = |expected: usize| {
        if relay.len() == expected {
            Ok(())
        } else {
            Err(DriadError::RelayLength { relay_type, expected, found: relay.len() })
        }
    };
    let relay = match relay_type {
        0 => {
            exact(0)?;
            RelayTarget::None
        }
        1 => {
            exact(4)?;
            let mut a = [0u8; 4];
            a.copy_from_slice(relay);
            RelayTarget::Ipv4(Ipv4Addr::from(a))
        }
        2 => {
            exact(16)?;
            let mut a = [0u8; 16];
            a.copy_from_slice(relay);
            RelayTarget::Ipv6(Ipv6Addr::from(a))
        }
        3 => RelayTarget::Name(labels_to_text(&parse_wire_name(relay, 2)?)),
        _ => return Ok(None),
    };
    Ok(Some(AmtRelayRecord { precedence: *precedence, discovery_optional: flags & D_BIT != 0, relay }))
}

/// Encodes an AMTRELAY record as RDATA (a type-3 name uncompressed). Fails
/// only for a type-3 name that is not a valid domain name.
pub fn encode_rdata(record: &AmtRelayRecord) -> Result<Vec<u8>, DriadError> {
    let flags = record.relay.relay_type() | if record.discovery_optional { D_BIT } else { 0 };
    let mut out = vec![record.precedence, flags];
    match &record.relay {
        RelayTarget::None => {}
        RelayTarget::Ipv4(a) => out.extend_from_slice(&a.octets()),
        RelayTarget::Ipv6(a) => out.extend_from_slice(&a.octets()),
        RelayTarget::Name(name) => {
            for label in text_to_labels(name)? {
                // text_to_labels bounds every label to 63 octets.
                out.push(label.len() as u8);
                out.extend_from_slice(&label);
            }
            out.push(0);
        }
    }
    Ok(out)
}

/// Splits an uncompressed wire-format name that must fill `wire` exactly.
/// `base` is the offset of `wire` in the RDATA, for error messages.
fn parse_wire_name(wire: &[u8], base: usize) -> Result<Vec<&[u8]>, DriadError> {
    let err = |pos: usize, reason| DriadError::BadWireName { offset: base + pos, reason };
    let mut labels = Vec::new();
    let mut pos = 0;
    loop {
        let Some(&len) = wire.get(pos) else {
            return Err(err(pos, "the name ends without its root label"));
        };
        match len & 0xc0 {
            0 => {}
            0xc0 => return Err(err(pos, "compression pointer (AMTRELAY names must not be compressed)")),
            _ => return Err(err(pos, "unsupported label type (high bits 01 or 10)")),
        }
        if len == 0 {
            pos += 1;
            break;
        }
        let start = pos + 1;
        let end = start + usize::from(len);
        let Some(label) = wire.get(start..end) else {
            return Err(err(pos, "label runs past the end of the RDATA"));
        };
        labels.push(label);
        pos = end;
        // Room must remain for the root label.
        if pos + 1 > MAX_NAME_WIRE_LEN {
            return Err(err(pos, "name is longer than 255 octets"));
        }
    }
    if pos != wire.len() {
        return Err(err(pos, "octets follow the end of the name"));
    }
    Ok(labels)
}

/// Presentation form of a name's labels, with the trailing dot.
fn labels_to_text<L: AsRef<[u8]>>(labels: &[L]) -> String {
    if labels.is_empty() {
        return ".".to_owned();
    }
    let mut out = String::new();
    for label in labels {
        for &b in label.as_ref() {
            match b {
                b'.' | b'\\' | b'"' | b'(' | b')' | b';' | b'@' | b'$' => {
                    out.push('\\');
                    out.push(char::from(b));
                }
                0x21..=0x7e => out.push(char::from(b)),
                _ => {
                    let _ = write!(out, "\\{b:03}");
                }
            }
        }
        out.push('.');
    }
    out
}

/// Labels of a name in presentation form (`\DDD` and `\X` escapes; the
/// trailing dot is optional: every name is taken as fully qualified).
pub(crate) fn text_to_labels(name: &str) -> Result<Vec<Vec<u8>>, DriadError> {
    let bad = |reason| DriadError::BadName { name: name.to_owned(), reason };
    if name == "." {
        return Ok(Vec::new());
    }
    if name.is_empty() {
        return Err(bad("empty name"));
    }
    let bytes = name.as_bytes();
    let mut labels = Vec::new();
    let mut label = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        match b {
            b'\\' => {
                let Some(&next) = bytes.get(i) else {
                    return Err(bad("the name ends with a lone backslash"));
                };
                if next.is_ascii_digit() {
                    let digits = bytes.get(i..i + 3).filter(|d| d.iter().all(u8::is_ascii_digit));
                    let Some(d) = digits else {
                        return Err(bad("a \\DDD escape needs three decimal digits"));
                    };
                    let value = u16::from(d[0] - b'0') * 100 + u16::from(d[1] - b'0') * 10 + u16::from(d[2] - b'0');
                    let Ok(value) = u8::try_from(value) else {
                        return Err(bad("a \\DDD escape is above 255"));
                    };
                    label.push(value);
                    i += 3;
                } else {
                    label.push(next);
                    i += 1;
                }
            }
            b'.' => {
                if label.is_empty() {
                    return Err(bad("empty label"));
                }
                labels.push(std::mem::take(&mut label));
            }
            _ => label.push(b),
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(bad("a label is longer than 63 octets"));
        }
    }
    if !label.is_empty() {
        labels.push(label);
    }
    let wire_len: usize = labels.iter().map(|l| l.len() + 1).sum::<usize>() + 1;
    if wire_len > MAX_NAME_WIRE_LEN {
        return Err(bad("the name is longer than 255 octets"));
    }
    Ok(labels)
}

/// Addresses of type-3 relay names, as resolved with A/AAAA. Keys are names in
/// presentation form; they match a record's name ASCII case-insensitively and
/// with or without the trailing dot.
pub type ResolvedNames = BTreeMap<String, Vec<IpAddr>>;

/// What DNS says about relays for one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriadAnswer {
    /// Relays to try, best first. Empty when the source has no usable
    /// AMTRELAY records (none published, only unknown types, or names that
    /// did not resolve).
    Relays(Vec<RelayCandidate>),
    /// The best-precedence record is type 0: the source's operator says no
    /// AMT relay should be used for it.
    NoRelay,
}

impl DriadAnswer {
    /// The relays to try (none for [`DriadAnswer::NoRelay`]).
    pub fn candidates(&self) -> &[RelayCandidate] {
        match self {
            DriadAnswer::Relays(c) => c,
            DriadAnswer::NoRelay => &[],
        }
    }
}

/// Orders AMTRELAY records into gateway candidates (see the module
/// documentation for the rules). `resolved` holds the addresses of type-3
/// names (names missing from it contribute nothing); `prefer_ipv6` picks the
/// family that goes first among equal precedences; `rng` shuffles equal
/// precedences.
pub fn order_candidates(
    records: &[AmtRelayRecord],
    resolved: &ResolvedNames,
    prefer_ipv6: bool,
    rng: &mut dyn Rng,
) -> DriadAnswer {
    let Some(best) = records.iter().map(|r| r.precedence).min() else {
        return DriadAnswer::Relays(Vec::new());
    };
    let cutoff = records.iter().filter(|r| r.relay == RelayTarget::None).map(|r| r.precedence).min();
    if cutoff == Some(best) {
        return DriadAnswer::NoRelay;
    }
    let cutoff = cutoff.map_or(256, u16::from);
    let precedences: BTreeSet<u8> = records.iter().map(|r| r.precedence).filter(|&p| u16::from(p) < cutoff).collect();
    let mut out: Vec<RelayCandidate> = Vec::new();
    for p in precedences {
        let mut group = Vec::new();
        for r in records.iter().filter(|r| r.precedence == p) {
            let discovery = !r.discovery_optional;
            match &r.relay {
                RelayTarget::None => {}
                RelayTarget::Ipv4(a) => group.push(RelayCandidate { address: IpAddr::V4(*a), discovery }),
                RelayTarget::Ipv6(a) => group.push(RelayCandidate { address: IpAddr::V6(*a), discovery }),
                RelayTarget::Name(name) => {
                    for &address in resolved_addresses(resolved, name) {
                        group.push(RelayCandidate { address, discovery });
                    }
                }
            }
        }
        shuffle(&mut group, rng);
        group.sort_by_key(|c| c.address.is_ipv6() != prefer_ipv6);
        for c in group {
            if usable(c.address) && !out.iter().any(|o| o.address == c.address) {
                out.push(c);
            }
        }
    }
    DriadAnswer::Relays(out)
}

/// The addresses `resolved` holds for `name`.
fn resolved_addresses<'a>(resolved: &'a ResolvedNames, name: &str) -> &'a [IpAddr] {
    if let Some(a) = resolved.get(name) {
        return a;
    }
    fn bare(n: &str) -> &str {
        if n.len() > 1 { n.strip_suffix('.').unwrap_or(n) } else { n }
    }
    let want = bare(name);
    resolved.iter().find(|(k, _)| bare(k).eq_ignore_ascii_case(want)).map_or(&[], |(_, v)| v.as_slice())
}

/// Whether a relay address can be sent to at all.
fn usable(a: IpAddr) -> bool {
    !a.is_unspecified() && !a.is_multicast()
}

/// A uniform index below `n` (n ≥ 1), by multiply-shift.
fn below(rng: &mut dyn Rng, n: usize) -> usize {
    ((u64::from(rng.next_u32()) * n as u64) >> 32) as usize
}

/// Fisher-Yates.
fn shuffle<T>(items: &mut [T], rng: &mut dyn Rng) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i + 1);
        items.swap(i, j);
    }
}

/// RFC 8777's DNS retry timeout: uniformly random in
/// [`base`, min(`base` x 2^`failures`, `max`)].
pub(crate) fn retry_delay(failures: u32, base: Duration, max: Duration, rng: &mut dyn Rng) -> Duration {
    let hi = base.saturating_mul(1u32 << failures.min(30)).min(max);
    let lo = base.min(hi);
    let span = (hi - lo).as_nanos();
    let offset = (span * u128::from(rng.next_u32())) >> 32;
    lo + Duration::from_nanos(u64::try_from(offset).unwrap_or(u64::MAX))
}

/// At most `max` DNS queries per `window` (RFC 8777: 10 per 100 ms). Sans-IO:
/// [`reserve`](Self::reserve) says how long to wait before sending.
#[derive(Debug)]
pub(crate) struct QueryRateLimiter {
    window: Duration,
    max: usize,
    /// The latest `max` send times handed out, oldest first (non-decreasing).
    sent: VecDeque<Instant>,
}

impl QueryRateLimiter {
    /// RFC 8777's limit.
    pub(crate) fn rfc8777() -> Self {
        Self::new(10, Duration::from_millis(100))
    }

    /// A limiter allowing `max` (at least 1) queries per `window`.
    pub(crate) fn new(max: usize, window: Duration) -> Self {
        let max = max.max(1);
        QueryRateLimiter { window, max, sent: VecDeque::with_capacity(max + 1) }
    }

    /// Books a send slot for a query wanted at `now`; returns how long to
    /// wait before sending it.
    pub(crate) fn reserve(&mut self, now: Instant) -> Duration {
        let at =
            if self.sent.len() < self.max { now } else { self.sent.front().map_or(now, |&t| now.max(t + self.window)) };
        self.sent.push_back(at);
        while self.sent.len() > self.max {
            self.sent.pop_front();
        }
        at - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::Rng;
    use proptest::prelude::*;

    /// A deterministic generator (splitmix-style) for tests.
    struct TestRng(u64);

    impl Rng for TestRng {
        fn next_u32(&mut self) -> u32 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) >> 32) as u32
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn rec(precedence: u8, d: bool, relay: RelayTarget) -> AmtRelayRecord {
        AmtRelayRecord { precedence, discovery_optional: d, relay }
    }

    fn v4(s: &str) -> RelayTarget {
        RelayTarget::Ipv4(s.parse().unwrap())
    }

    fn cand(s: &str, discovery: bool) -> RelayCandidate {
        RelayCandidate { address: s.parse().unwrap(), discovery }
    }

    fn addrs(answer: &DriadAnswer) -> Vec<String> {
        answer.candidates().iter().map(|c| c.address.to_string()).collect()
    }

    #[test]
    fn reverse_names_of_the_captures() {
        assert_eq!(reverse_name("198.51.100.10".parse().unwrap()), "10.100.51.198.in-addr.arpa.");
        assert_eq!(reverse_name("198.51.100.12".parse().unwrap()), "12.100.51.198.in-addr.arpa.");
        assert_eq!(
            reverse_name("2001:db8:100::10".parse().unwrap()),
            "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.8.b.d.0.1.0.0.2.ip6.arpa."
        );
        assert_eq!(
            reverse_name("2001:db8::abcd".parse().unwrap()),
            "d.c.b.a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
        );
        assert_eq!(reverse_name("::ffff:192.0.2.1".parse().unwrap()), "1.2.0.192.in-addr.arpa.");
        assert_eq!(reverse_name("0.0.0.0".parse().unwrap()), "0.0.0.0.in-addr.arpa.");
        let name = reverse_dns_name("::ffff:198.51.100.10".parse().unwrap());
        assert!(name.is_fqdn());
        assert_eq!(name, reverse_dns_name("198.51.100.10".parse().unwrap()));
        assert_eq!(name.num_labels(), 6);
    }

    #[test]
    fn rdata_of_the_captures() {
        let cases = [
            ("0a01cb007101", rec(10, false, v4("203.0.113.1"))),
            (
                "140220010db8011300000000000000000001",
                rec(20, false, RelayTarget::Ipv6("2001:db8:113::1".parse().unwrap())),
            ),
            ("80830672656c61797303616d74047465737400", rec(128, true, RelayTarget::Name("relays.amt.test.".into()))),
            ("0000", rec(0, false, RelayTarget::None)),
            ("0a01cb007109", rec(10, false, v4("203.0.113.9"))),
            (
                "0a0220010db8011300000000000000000001",
                rec(10, false, RelayTarget::Ipv6("2001:db8:113::1".parse().unwrap())),
            ),
        ];
        for (h, want) in cases {
            let bytes = hex(h);
            assert_eq!(parse_rdata(&bytes).unwrap(), Some(want.clone()), "{h}");
            assert_eq!(encode_rdata(&want).unwrap(), bytes, "{h}");
        }
    }

    #[test]
    fn unknown_relay_types_are_ignored() {
        assert_eq!(parse_rdata(&hex("0a04")).unwrap(), None);
        assert_eq!(parse_rdata(&hex("0a84deadbeef")).unwrap(), None);
        assert_eq!(parse_rdata(&hex("0a7f")).unwrap(), None);
        assert_eq!(parse_rdata(&hex("0aff00")).unwrap(), None);
    }

    #[test]
    fn malformed_rdata_is_rejected() {
        assert!(matches!(parse_rdata(&[]), Err(DriadError::ShortRdata { len: 0 })));
        assert!(matches!(parse_rdata(&[10]), Err(DriadError::ShortRdata { len: 1 })));
        let length = |h: &str| match parse_rdata(&hex(h)) {
            Err(DriadError::RelayLength { relay_type, expected, found }) => (relay_type, expected, found),
            other => panic!("{h}: {other:?}"),
        };
        assert_eq!(length("000000"), (0, 0, 1));
        assert_eq!(length("0a01cb0071"), (1, 4, 3));
        assert_eq!(length("0a81cb00710101"), (1, 4, 5));
        assert_eq!(length("0a0220010db8"), (2, 16, 4));
        let name = |h: &str| match parse_rdata(&hex(h)) {
            Err(e @ DriadError::BadWireName { .. }) => e.to_string(),
            other => panic!("{h}: {other:?}"),
        };
        assert!(name("0a03").contains("root label"));
        assert!(name("0a030161").contains("root label"));
        assert!(name("0a030561").contains("past the end"));
        assert!(name("0a03c00c").contains("compression"));
        assert!(name("0a034001").contains("label type"));
        assert!(name("0a03016100ff").contains("follow"));
        // 128 labels of one octet: 257 octets of name.
        let mut long = vec![10, 3];
        for _ in 0..128 {
            long.extend_from_slice(&[1, b'a']);
        }
        long.push(0);
        assert!(parse_rdata(&long).unwrap_err().to_string().contains("255"));
        // Exactly 255 octets is fine: 127 one-octet labels + a 0-octet root.
        let mut max = vec![10, 3];
        for _ in 0..127 {
            max.extend_from_slice(&[1, b'a']);
        }
        max.push(0);
        assert!(parse_rdata(&max).unwrap().is_some());
    }

    #[test]
    fn names_with_odd_octets_round_trip() {
        let mut wire = hex("0a03");
        wire.extend_from_slice(b"\x05a.b\\c\x03\x00\xff \x00");
        let r = parse_rdata(&wire).unwrap().unwrap();
        assert_eq!(r.relay, RelayTarget::Name("a\\.b\\\\c.\\000\\255\\032.".into()));
        assert_eq!(encode_rdata(&r).unwrap(), wire);
        let root = parse_rdata(&hex("0a0300")).unwrap().unwrap();
        assert_eq!(root.relay, RelayTarget::Name(".".into()));
        assert_eq!(encode_rdata(&root).unwrap(), hex("0a0300"));
        // Without the trailing dot, and with mixed case (kept as is).
        let r = rec(1, false, RelayTarget::Name("Relays.AMT.test".into()));
        assert_eq!(encode_rdata(&r).unwrap(), hex("01030652656c61797303414d54047465737400"));
    }

    #[test]
    fn bad_names_do_not_encode() {
        for name in ["", "a..b", ".a", "a\\", "a\\25", "a\\256", &"x".repeat(64), &"abc.".repeat(64)] {
            let r = rec(1, false, RelayTarget::Name(name.to_owned()));
            assert!(matches!(encode_rdata(&r), Err(DriadError::BadName { .. })), "{name:?}");
        }
    }

    #[test]
    fn lowest_precedence_first() {
        let records = [
            rec(128, true, RelayTarget::Name("relays.amt.test.".into())),
            rec(20, false, RelayTarget::Ipv6("2001:db8:113::1".parse().unwrap())),
            rec(10, false, v4("203.0.113.1")),
        ];
        let mut resolved = ResolvedNames::new();
        resolved.insert("relays.amt.test.".into(), vec!["203.0.113.5".parse().unwrap()]);
        let answer = order_candidates(&records, &resolved, false, &mut TestRng(1));
        assert_eq!(
            answer,
            DriadAnswer::Relays(vec![
                cand("203.0.113.1", true),
                cand("2001:db8:113::1", true),
                cand("203.0.113.5", false),
            ])
        );
    }

    #[test]
    fn equal_precedence_is_shuffled_both_ways() {
        let records = [rec(10, false, v4("203.0.113.1")), rec(10, false, v4("203.0.113.9"))];
        let mut seen = BTreeSet::new();
        for seed in 0..64 {
            let answer = order_candidates(&records, &ResolvedNames::new(), false, &mut TestRng(seed));
            let a = addrs(&answer);
            assert_eq!(a.len(), 2);
            seen.insert(a);
        }
        assert_eq!(seen.len(), 2, "both orders over 64 seeds: {seen:?}");
        // Three equal records: every permutation shows up.
        let three = [rec(5, false, v4("192.0.2.1")), rec(5, false, v4("192.0.2.2")), rec(5, false, v4("192.0.2.3"))];
        let perms: BTreeSet<_> = (0..200)
            .map(|seed| addrs(&order_candidates(&three, &ResolvedNames::new(), false, &mut TestRng(seed))))
            .collect();
        assert_eq!(perms.len(), 6);
    }

    #[test]
    fn preferred_family_first_within_a_precedence_only() {
        let records = [
            rec(10, false, v4("192.0.2.1")),
            rec(10, false, RelayTarget::Ipv6("2001:db8::1".parse().unwrap())),
            rec(10, false, v4("192.0.2.2")),
            rec(20, false, RelayTarget::Ipv6("2001:db8::2".parse().unwrap())),
            rec(30, false, v4("192.0.2.3")),
        ];
        for seed in 0..16 {
            let v6 = addrs(&order_candidates(&records, &ResolvedNames::new(), true, &mut TestRng(seed)));
            assert_eq!(v6[0], "2001:db8::1");
            assert_eq!(&v6[3..], ["2001:db8::2", "192.0.2.3"]);
            let v4 = addrs(&order_candidates(&records, &ResolvedNames::new(), false, &mut TestRng(seed)));
            assert_eq!(v4[2], "2001:db8::1");
            assert_eq!(&v4[3..], ["2001:db8::2", "192.0.2.3"]);
        }
    }

    #[test]
    fn d_bit_maps_to_discovery() {
        let records = [rec(1, true, v4("192.0.2.1")), rec(2, false, v4("192.0.2.2"))];
        let answer = order_candidates(&records, &ResolvedNames::new(), false, &mut TestRng(0));
        assert_eq!(answer.candidates(), [cand("192.0.2.1", false), cand("192.0.2.2", true)]);
    }

    #[test]
    fn type_zero_handling() {
        let none = |p| rec(p, false, RelayTarget::None);
        let r = ResolvedNames::new();
        // The captured .11 answer: only type 0.
        assert_eq!(order_candidates(&[none(0)], &r, false, &mut TestRng(0)), DriadAnswer::NoRelay);
        // Type 0 tied with a relay at the best precedence: "no relay" wins.
        let tied = [rec(10, false, v4("192.0.2.1")), none(10)];
        for seed in 0..8 {
            assert_eq!(order_candidates(&tied, &r, false, &mut TestRng(seed)), DriadAnswer::NoRelay);
        }
        // Type 0 at a worse precedence ends the list.
        let later = [
            none(20),
            rec(30, false, v4("192.0.2.3")),
            rec(10, false, v4("192.0.2.1")),
            rec(20, false, v4("192.0.2.2")),
        ];
        assert_eq!(addrs(&order_candidates(&later, &r, false, &mut TestRng(0))), ["192.0.2.1"]);
        assert_eq!(order_candidates(&[], &r, false, &mut TestRng(0)), DriadAnswer::Relays(vec![]));
        assert!(DriadAnswer::NoRelay.candidates().is_empty());
    }

    #[test]
    fn unknown_types_in_an_answer_are_skipped() {
        // What a lookup does: unknown types parse to None and are dropped.
        let rdatas = [hex("0504c0000201"), hex("0a01c0000202")];
        let records: Vec<_> = rdatas.iter().filter_map(|d| parse_rdata(d).unwrap()).collect();
        assert_eq!(records.len(), 1);
        let answer = order_candidates(&records, &ResolvedNames::new(), false, &mut TestRng(0));
        assert_eq!(addrs(&answer), ["192.0.2.2"]);
    }

    #[test]
    fn names_resolve_case_insensitively_and_unresolved_names_vanish() {
        let records = [
            rec(10, false, RelayTarget::Name("Relays.AMT.test.".into())),
            rec(10, false, RelayTarget::Name("missing.amt.test.".into())),
            rec(20, true, RelayTarget::Name("other.test.".into())),
        ];
        let mut resolved = ResolvedNames::new();
        resolved.insert("relays.amt.test".into(), vec!["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()]);
        resolved.insert("other.test.".into(), vec!["192.0.2.1".parse().unwrap(), "192.0.2.7".parse().unwrap()]);
        let answer = order_candidates(&records, &resolved, false, &mut TestRng(3));
        // 192.0.2.1 appears twice: the better (precedence 10, D=0) entry stays.
        assert_eq!(answer.candidates(), [cand("192.0.2.1", true), cand("2001:db8::1", true), cand("192.0.2.7", false)]);
    }

    #[test]
    fn unusable_addresses_are_skipped() {
        let records = [
            rec(1, false, v4("0.0.0.0")),
            rec(2, false, v4("224.0.0.1")),
            rec(3, false, RelayTarget::Ipv6("ff02::1".parse().unwrap())),
            rec(4, false, v4("127.0.0.1")),
        ];
        assert_eq!(addrs(&order_candidates(&records, &ResolvedNames::new(), false, &mut TestRng(0))), ["127.0.0.1"]);
    }

    #[test]
    fn retry_delay_follows_rfc_8777() {
        let s = Duration::from_secs;
        for seed in 0..200 {
            let mut rng = TestRng(seed);
            assert_eq!(retry_delay(0, s(1), s(120), &mut rng), s(1));
            let d = retry_delay(1, s(1), s(120), &mut rng);
            assert!(d >= s(1) && d <= s(2), "{d:?}");
            let d = retry_delay(3, s(1), s(120), &mut rng);
            assert!(d >= s(1) && d <= s(8), "{d:?}");
            let d = retry_delay(40, s(1), s(120), &mut rng);
            assert!(d >= s(1) && d <= s(120), "{d:?}");
        }
        let spread: BTreeSet<_> = (0..50).map(|seed| retry_delay(4, s(1), s(120), &mut TestRng(seed))).collect();
        assert!(spread.len() > 40);
    }

    #[test]
    fn rate_limit_is_10_per_100_ms() {
        let t0 = Instant::now();
        let mut l = QueryRateLimiter::rfc8777();
        let waits: Vec<_> = (0..25).map(|_| l.reserve(t0)).collect();
        assert!(waits[..10].iter().all(|w| w.is_zero()));
        assert!(waits[10..20].iter().all(|&w| w == Duration::from_millis(100)));
        assert!(waits[20..].iter().all(|&w| w == Duration::from_millis(200)));
        // Later, the window has moved on.
        let t1 = t0 + Duration::from_millis(400);
        assert!(l.reserve(t1).is_zero());
        // Property: any 100 ms window holds at most 10 send times.
        let mut l = QueryRateLimiter::rfc8777();
        let mut times = Vec::new();
        for i in 0..100u64 {
            let now = t0 + Duration::from_millis(i * 3);
            times.push(now + l.reserve(now));
        }
        for (i, &t) in times.iter().enumerate() {
            let in_window = times[i..].iter().filter(|&&u| u < t + Duration::from_millis(100)).count();
            assert!(in_window <= 10);
        }
    }

    fn arb_name() -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop::collection::vec(prop::collection::vec(any::<u8>(), 1..=20), 0..8)
    }

    fn arb_record() -> impl Strategy<Value = AmtRelayRecord> {
        let relay = prop_oneof![
            Just(RelayTarget::None),
            any::<[u8; 4]>().prop_map(|a| RelayTarget::Ipv4(a.into())),
            any::<[u8; 16]>().prop_map(|a| RelayTarget::Ipv6(a.into())),
            arb_name().prop_map(|labels| RelayTarget::Name(labels_to_text(&labels))),
        ];
        (any::<u8>(), any::<bool>(), relay).prop_map(|(precedence, discovery_optional, relay)| AmtRelayRecord {
            precedence,
            discovery_optional,
            relay,
        })
    }

    proptest! {
        #[test]
        fn parse_rdata_never_panics(data in prop::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(Some(r)) = parse_rdata(&data) {
                // Whatever parses re-encodes to the same octets.
                prop_assert_eq!(encode_rdata(&r).unwrap(), data);
            }
        }

        #[test]
        fn type3_never_panics(labels in prop::collection::vec(any::<u8>(), 0..300)) {
            let mut data = vec![7, 3];
            data.extend_from_slice(&labels);
            let _ = parse_rdata(&data);
        }

        #[test]
        fn rdata_round_trip(r in arb_record()) {
            let wire = encode_rdata(&r).unwrap();
            prop_assert_eq!(parse_rdata(&wire).unwrap(), Some(r));
        }

        #[test]
        fn name_text_round_trip(labels in arb_name()) {
            let text = labels_to_text(&labels);
            prop_assert_eq!(text_to_labels(&text).unwrap(), labels);
        }

        #[test]
        fn ordering_keeps_precedence_and_every_usable_address(
            records in prop::collection::vec(arb_record(), 0..12),
            seed in any::<u64>(),
            prefer_ipv6 in any::<bool>(),
        ) {
            let answer = order_candidates(&records, &ResolvedNames::new(), prefer_ipv6, &mut TestRng(seed));
            let precedence_of = |c: &RelayCandidate| records.iter().filter(|r| match r.relay {
                RelayTarget::Ipv4(a) => IpAddr::V4(a) == c.address,
                RelayTarget::Ipv6(a) => IpAddr::V6(a) == c.address,
                _ => false,
            }).map(|r| r.precedence).min().unwrap();
            let c = answer.candidates();
            for w in c.windows(2) {
                prop_assert!(precedence_of(&w[0]) <= precedence_of(&w[1]));
            }
            let unique: BTreeSet<_> = c.iter().map(|c| c.address).collect();
            prop_assert_eq!(unique.len(), c.len());
        }
    }
}
