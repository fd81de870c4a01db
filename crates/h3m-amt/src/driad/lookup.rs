//! The DNS side of DRIAD, on tokio through `hickory-resolver`.
//!
//! [`DriadResolver`] wraps a hickory resolver built either from explicit name
//! servers (`--dns SERVER:PORT`, [`DriadResolver::from_name_servers`]) or from
//! the system configuration ([`DriadResolver::from_system_conf`]: hickory's
//! own system-config support is left out to keep its dependencies small, so
//! `/etc/resolv.conf` is read here, minimally: only its `nameserver` lines;
//! `search`, `domain` and `options` do not matter for the fully qualified
//! names DRIAD asks for).
//!
//! Every query goes through a rate limit (at most 10 per 100 ms, as RFC 8777
//! asks of clients whose DNS library does not limit itself; a CNAME chain
//! hickory follows counts as one query) and, when it fails (timeout,
//! SERVFAIL, ...), is repeated after a random delay in
//! [1 s, min(1 s x 2^n, 120 s)] up to [`DriadOptions::attempts`] times;
//! hickory's own immediate retries are turned off. A name that does not exist or has no record of the type is
//! an answer, not a failure. CNAME chains are followed by hickory; a DNAME
//! is followed through the CNAME a server synthesises for it.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::rr::{Name, RData, RecordType};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::runtime::TokioRuntimeProvider;

use super::{
    AMTRELAY, AmtRelayRecord, DriadAnswer, DriadError, QueryRateLimiter, RelayTarget, ResolvedNames, order_candidates,
    parse_rdata, retry_delay, reverse_dns_name, text_to_labels,
};
use crate::gateway::{RelayCandidate, Rng, SystemRng};

/// Where the system resolver configuration is read from.
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The DNS port.
const DNS_PORT: u16 = 53;

/// DRIAD lookup settings. [`DriadOptions::default`] gives the RFC's values.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DriadOptions {
    /// How long one query waits for its answer (2 s).
    pub query_timeout: Duration,
    /// How many times a failing query is sent in all (3).
    pub attempts: u32,
    /// The smallest retry delay (RFC 8777: 1 s).
    pub retry_base: Duration,
    /// The largest retry delay (RFC 8777: 120 s).
    pub retry_max: Duration,
    /// The address family tried first among relays of equal precedence;
    /// `None`: the family of the source.
    pub prefer_ipv6: Option<bool>,
    /// At most this many distinct type-3 relay names are resolved per lookup (8).
    pub max_names: usize,
}

impl Default for DriadOptions {
    fn default() -> Self {
        DriadOptions {
            query_timeout: Duration::from_secs(2),
            attempts: 3,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(120),
            prefer_ipv6: None,
            max_names: 8,
        }
    }
}

/// A DNS resolver for DRIAD: hickory's tokio resolver plus the options, the
/// query rate limit and the random source for retries and load balancing.
pub struct DriadResolver {
    resolver: TokioResolver,
    options: DriadOptions,
    limiter: Mutex<QueryRateLimiter>,
    rng: Mutex<Box<dyn Rng + Send>>,
}

impl std::fmt::Debug for DriadResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriadResolver").field("resolver", &self.resolver).field("options", &self.options).finish()
    }
}

impl DriadResolver {
    /// Wraps a resolver built elsewhere (its own timeout and retry options
    /// apply to each attempt).
    pub fn new(resolver: TokioResolver, options: DriadOptions) -> Self {
        DriadResolver {
            resolver,
            options,
            limiter: Mutex::new(QueryRateLimiter::rfc8777()),
            rng: Mutex::new(Box::new(SystemRng::default())),
        }
    }

    /// A resolver asking these name servers (UDP, with TCP for truncated
    /// answers), in order.
    pub fn from_name_servers(servers: &[SocketAddr], options: DriadOptions) -> Result<Self, DriadError> {
        if servers.is_empty() {
            return Err(DriadError::NoNameServers);
        }
        let name_servers = servers
            .iter()
            .map(|server| {
                let mut config = NameServerConfig::udp_and_tcp(server.ip());
                for connection in &mut config.connections {
                    connection.port = server.port();
                }
                config
            })
            .collect();
        let mut builder = hickory_resolver::Resolver::builder_with_config(
            ResolverConfig::from_name_servers(name_servers),
            TokioRuntimeProvider::default(),
        );
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = options.query_timeout;
        // Retries are ours, with the RFC's randomised backoff.
        opts.attempts = 0;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.num_concurrent_reqs = 1;
        let resolver = builder.build().map_err(|e| DriadError::Resolver(Box::new(e)))?;
        Ok(Self::new(resolver, options))
    }

    /// A resolver asking the name servers of `/etc/resolv.conf` (see
    /// [`parse_resolv_conf`]).
    pub fn from_system_conf(options: DriadOptions) -> Result<Self, DriadError> {
        Self::from_resolv_conf_file(Path::new(RESOLV_CONF), options)
    }

    /// A resolver asking the name servers of a resolv.conf-style file.
    pub fn from_resolv_conf_file(path: &Path, options: DriadOptions) -> Result<Self, DriadError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| DriadError::ResolvConf { path: path.to_owned(), source })?;
        Self::from_name_servers(&parse_resolv_conf(&text), options)
    }

    /// Replaces the random source (tests use a seeded one).
    pub fn with_rng(self, rng: Box<dyn Rng + Send>) -> Self {
        DriadResolver { rng: Mutex::new(rng), ..self }
    }

    /// The options.
    pub fn options(&self) -> &DriadOptions {
        &self.options
    }

    /// The underlying hickory resolver.
    pub fn resolver(&self) -> &TokioResolver {
        &self.resolver
    }

    fn next_u32(&self) -> u32 {
        self.rng.lock().unwrap_or_else(|e| e.into_inner()).next_u32()
    }

    /// Waits for a slot under the rate limit.
    async fn throttle(&self) {
        let wait = self.limiter.lock().unwrap_or_else(|e| e.into_inner()).reserve(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// One query with the RFC's retries. `Ok(None)`: no such name, or no
    /// record of the type.
    async fn query(&self, name: &Name, record_type: RecordType) -> Result<Option<Lookup>, DriadError> {
        let attempts = self.options.attempts.max(1);
        let mut failures = 0;
        loop {
            self.throttle().await;
            let error = match self.resolver.lookup(name.clone(), record_type).await {
                Ok(lookup) => return Ok(Some(lookup)),
                Err(e) if e.is_no_records_found() => return Ok(None),
                Err(e) => e,
            };
            failures += 1;
            if failures >= attempts {
                return Err(DriadError::Dns {
                    name: name.to_ascii(),
                    record_type: record_type.to_string(),
                    attempts: failures,
                    source: Box::new(error),
                });
            }
            let delay = {
                let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
                retry_delay(failures, self.options.retry_base, self.options.retry_max, rng.as_mut())
            };
            tokio::time::sleep(delay).await;
        }
    }
}

/// Parses a DNS server given as `ADDRESS`, `ADDRESS:PORT` or `[IPV6]:PORT`
/// (port 53 when absent).
pub fn parse_dns_server(text: &str) -> Result<SocketAddr, DriadError> {
    let text = text.trim();
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    let bare = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text);
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
        .map_err(|_| DriadError::BadServer { input: text.to_owned() })
}

/// The name servers of a resolv.conf(5) text: every `nameserver ADDRESS`
/// line, port 53. Comments (`#`, `;`), other keywords and unparsable
/// addresses are skipped; so are addresses with a `%zone` suffix (a
/// link-local server needs an interface, which a plain address cannot
/// carry). With no usable line, the local machine (127.0.0.1), as
/// resolv.conf(5) specifies.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let servers: Vec<SocketAddr> = text
        .lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next()).flatten()
        })
        .filter_map(|address| address.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
        .collect();
    if servers.is_empty() { vec![SocketAddr::new(IpAddr::from([127, 0, 0, 1]), DNS_PORT)] } else { servers }
}

/// A hickory name from presentation form, label by label (no IDNA mapping).
fn dns_name(text: &str) -> Result<Name, DriadError> {
    let labels = text_to_labels(text)?;
    Name::from_labels(labels).map_err(|_| DriadError::BadName { name: text.to_owned(), reason: "not a domain name" })
}

/// The AMTRELAY records published for `source` (CNAME chains followed).
/// Records of unknown relay types are left out; malformed ones are skipped,
/// unless every record is malformed, which is reported as the first one's
/// error. No records at all is an empty list.
pub async fn lookup_records(source: IpAddr, resolver: &DriadResolver) -> Result<Vec<AmtRelayRecord>, DriadError> {
    let name = reverse_dns_name(source);
    let Some(answer) = resolver.query(&name, RecordType::from(AMTRELAY)).await? else {
        return Ok(Vec::new());
    };
    let mut records = Vec::new();
    let mut first_error = None;
    let mut seen = 0usize;
    for record in answer.answers() {
        let RData::Unknown { code, rdata } = &record.data else { continue };
        if u16::from(*code) != AMTRELAY {
            continue;
        }
        seen += 1;
        match parse_rdata(&rdata.anything) {
            Ok(Some(r)) => {
                if !records.contains(&r) {
                    records.push(r);
                }
            }
            Ok(None) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if records.is_empty() && seen > 0 => Err(e),
        _ => Ok(records),
    }
}

/// The A and AAAA addresses of a relay name; failures count as no address.
async fn resolve_name(name: &str, resolver: &DriadResolver) -> Vec<IpAddr> {
    let Ok(name) = dns_name(name) else { return Vec::new() };
    let mut out = Vec::new();
    for record_type in [RecordType::A, RecordType::AAAA] {
        let Ok(Some(answer)) = resolver.query(&name, record_type).await else { continue };
        for record in answer.answers() {
            let address = match &record.data {
                RData::A(a) => IpAddr::V4(a.0),
                RData::AAAA(a) => IpAddr::V6(a.0),
                _ => continue,
            };
            if !out.contains(&address) {
                out.push(address);
            }
        }
    }
    out
}

async fn lookup_preferring(
    source: IpAddr,
    prefer_ipv6: bool,
    resolver: &DriadResolver,
) -> Result<DriadAnswer, DriadError> {
    let records = lookup_records(source, resolver).await?;
    // Resolve the names that can matter: those ahead of any type-0 record.
    let cutoff = records.iter().filter(|r| r.relay == RelayTarget::None).map(|r| r.precedence).min();
    let mut resolved = ResolvedNames::new();
    let names = records.iter().filter(|r| cutoff.is_none_or(|c| r.precedence < c)).filter_map(|r| match &r.relay {
        RelayTarget::Name(n) => Some(n),
        _ => None,
    });
    for name in names {
        if resolved.len() >= resolver.options.max_names {
            break;
        }
        if !resolved.contains_key(name) {
            let addresses = resolve_name(name, resolver).await;
            resolved.insert(name.clone(), addresses);
        }
    }
    let mut rng = ShuffleRng(resolver);
    Ok(order_candidates(&records, &resolved, prefer_ipv6, &mut rng))
}

/// The resolver's random source as an [`Rng`] (locked per draw).
struct ShuffleRng<'a>(&'a DriadResolver);

impl Rng for ShuffleRng<'_> {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
}

/// DRIAD for one source: the AMTRELAY query for its reverse name, A/AAAA
/// for type-3 relay names, then [`order_candidates`](super::order_candidates)
/// (preferring [`DriadOptions::prefer_ipv6`], by default the source's family).
/// No records (NXDOMAIN, no data) gives an empty [`DriadAnswer::Relays`];
/// an error means the DNS could not be asked (every attempt failed) or the
/// records were all malformed.
pub async fn lookup(source: IpAddr, resolver: &DriadResolver) -> Result<DriadAnswer, DriadError> {
    let prefer_ipv6 = resolver.options.prefer_ipv6.unwrap_or(source.is_ipv6());
    lookup_preferring(source, prefer_ipv6, resolver).await
}

/// The gateway's candidate list for a channel, in the order: the configured
/// relay address (as a discovery address: it gets a Relay Discovery), then
/// the DRIAD answer for `source` (when there is a source), then both anycast
/// discovery addresses (192.52.193.1, 2001:3::1), the group's family first.
/// Never empty. Duplicates keep their first place.
///
/// DNS failures and empty answers only leave DRIAD's part out. A
/// [`DriadAnswer::NoRelay`] answer leaves it out too, without removing the
/// anycast fallback: a gateway that must honour "no relay" strictly calls
/// [`lookup`] itself.
pub async fn relay_candidates(
    configured: Option<IpAddr>,
    source: Option<IpAddr>,
    group_is_ipv6: bool,
    resolver: &DriadResolver,
) -> Vec<RelayCandidate> {
    let mut out: Vec<RelayCandidate> = Vec::new();
    let add = |c: RelayCandidate, out: &mut Vec<RelayCandidate>| {
        if !out.iter().any(|o| o.address == c.address) {
            out.push(c);
        }
    };
    if let Some(address) = configured {
        add(RelayCandidate { address, discovery: true }, &mut out);
    }
    if let Some(source) = source.filter(|s| !s.is_unspecified() && !s.is_multicast()) {
        let prefer_ipv6 = resolver.options.prefer_ipv6.unwrap_or(group_is_ipv6);
        if let Ok(DriadAnswer::Relays(relays)) = lookup_preferring(source, prefer_ipv6, resolver).await {
            for c in relays {
                add(c, &mut out);
            }
        }
    }
    add(RelayCandidate::anycast(group_is_ipv6), &mut out);
    add(RelayCandidate::anycast(!group_is_ipv6), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_servers_parse() {
        let p = |s: &str| parse_dns_server(s).unwrap().to_string();
        assert_eq!(p("127.0.0.1:5353"), "127.0.0.1:5353");
        assert_eq!(p("127.0.0.1"), "127.0.0.1:53");
        assert_eq!(p(" 192.0.2.53 "), "192.0.2.53:53");
        assert_eq!(p("[::1]:5353"), "[::1]:5353");
        assert_eq!(p("::1"), "[::1]:53");
        assert_eq!(p("[2001:db8::53]"), "[2001:db8::53]:53");
        for bad in ["", "localhost", "127.0.0.1:", "127.0.0.1:99999", "::1:53:x", "[::1"] {
            assert!(matches!(parse_dns_server(bad), Err(DriadError::BadServer { .. })), "{bad}");
        }
    }

    #[test]
    fn resolv_conf_nameserver_lines() {
        let text = "# comment\nsearch example.com\nnameserver 192.0.2.53 # trailing\n;nameserver 192.0.2.99\n\
                    nameserver\tfe80::1%eth0\noptions ndots:2\n  nameserver 2001:db8::53\nnameserver bogus\n";
        let servers: Vec<String> = parse_resolv_conf(text).iter().map(|s| s.to_string()).collect();
        assert_eq!(servers, ["192.0.2.53:53", "[2001:db8::53]:53"]);
        assert_eq!(parse_resolv_conf("search x\n"), [SocketAddr::from(([127, 0, 0, 1], 53))]);
    }

    #[test]
    fn no_servers_is_an_error() {
        assert!(matches!(
            DriadResolver::from_name_servers(&[], DriadOptions::default()),
            Err(DriadError::NoNameServers)
        ));
        let missing =
            DriadResolver::from_resolv_conf_file(Path::new("/nonexistent/resolv.conf"), DriadOptions::default());
        assert!(matches!(missing, Err(DriadError::ResolvConf { .. })));
    }

    #[test]
    fn builds_outside_a_runtime() {
        let server = parse_dns_server("127.0.0.1:5353").unwrap();
        let r = DriadResolver::from_name_servers(&[server], DriadOptions::default()).unwrap();
        assert_eq!(r.options().attempts, 3);
        assert_eq!(r.resolver().options().attempts, 0);
        assert!(format!("{r:?}").starts_with("DriadResolver"));
    }

    #[test]
    fn names_convert_label_by_label() {
        let n = dns_name("10.100.51.198.in-addr.arpa.").unwrap();
        assert!(n.is_fqdn());
        assert_eq!(n.to_ascii(), "10.100.51.198.in-addr.arpa.");
        assert_eq!(dns_name("Relays.AMT.test").unwrap().to_ascii(), "Relays.AMT.test.");
        assert!(dns_name("a..b").is_err());
    }
}
