//! The AMT gateway, sans-IO: one tunnel to one relay carrying any number of
//! (S,G) channels.
//!
//! The [`Gateway`] is a pure state machine in the style of quinn-proto. The
//! driver feeds it datagrams that arrived on its one UDP socket
//! ([`Gateway::handle_datagram`], which hands back the decapsulated UDP
//! datagram of a subscribed channel without copying it), ICMP unreachable
//! errors ([`Gateway::handle_unreachable`]), subscription changes and timer
//! expiries ([`Gateway::handle_timeout`] at [`Gateway::poll_timeout`]); it
//! sends whatever [`Gateway::poll_transmit`] yields and reports
//! [`Gateway::poll_event`]. Time is always an argument; randomness (nonces and
//! timer jitter) comes from an [`Rng`] the driver supplies, so tests run in
//! simulated time with a seeded generator.
//!
//! # Life cycle
//!
//! ```text
//!  Idle --subscribe--> Discovering --Advertisement--> Connected --Query--> (established)
//!                          ^   |  (no reply: next candidate,      |
//!                          |   |   randomised backoff 1 s..120 s) |
//!                          +---+----------------------------------+
//!                 relay lost: Requests unanswered, ICMP unreachable after
//!                 retries, Query with L flag (relay held down), no data
//! ```
//!
//! - **Discovery**: a Relay Discovery with a fresh non-zero nonce goes to each
//!   candidate in turn ([`RelayCandidate`]: a configured relay, DRIAD answers,
//!   the anycast addresses); an Advertisement counts only if it echoes the
//!   nonce *and* comes from the address the Discovery went to. A candidate
//!   whose D bit says discovery is optional is used directly.
//! - **Request/Query/Update**: every Request carries a fresh non-zero nonce;
//!   only a Query echoing the outstanding nonce from the relay is accepted (a
//!   replayed or stale Query is dropped and counted). Its Response MAC and
//!   nonce go into every Update until the next Query. The gateway answers each
//!   accepted Query at once with a current-state report of every channel.
//! - **Refresh** at min(QQI from the relay's query, [`GatewayConfig::nat_keepalive`]):
//!   a new Request, which also keeps NAT bindings open and picks up a new MAC
//!   after the relay rotates its secret or restarts.
//! - **Retries**: an unanswered Request is repeated with a fresh nonce after a
//!   randomised backoff in [1 s, min(1 s x 2^n, 120 s)] (RFC 7450 5.2.3.4.3);
//!   after [`GatewayConfig::request_retries`] the relay is considered lost and
//!   discovery starts again. An ICMP unreachable makes the next retry due at
//!   once (the relay process is gone: a restart is probably under way).
//! - **State changes**: a join sends ALLOW{S} (TO_EX{} for any-source), a leave
//!   BLOCK{S} (TO_IN{}), each repeated QRV times one
//!   [`GatewayConfig::report_interval`] apart, so one lost Update loses nothing.
//! - **Data watchdog**: when subscribed channels see no data for a randomised
//!   [`GatewayConfig::data_timeout`] x 2^n (capped at 120 s), the gateway
//!   sends a fresh Request at once (a restarted relay then learns the channels
//!   again); if that goes unanswered, the usual retries lead to rediscovery.
//! - **L flag**: the relay is overloaded; it is held down for
//!   [`GatewayConfig::limit_hold_down`] and the next candidate is tried (when
//!   every candidate is held down, the one released first is retried then).
//! - **G flag**: the relay reports the gateway's address and port as it sees
//!   them. When they change (NAT rebinding), the gateway sends a Teardown with
//!   the *old* nonce, MAC and address so the relay drops the stale tunnel, and
//!   carries on. No Teardown is sent otherwise (a normal leave is a report).

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::inner::{self, InnerDatagram, InnerError};
use crate::membership::{self, GroupRecord, RecordType};
use crate::message::{AMT_PORT, ANYCAST_V4, ANYCAST_V6, Message, ResponseMac};

/// A source of random numbers for nonces and timer jitter.
pub trait Rng {
    /// A uniformly distributed 32-bit value.
    fn next_u32(&mut self) -> u32;
}

/// The operating system's CSPRNG (through `ring`).
pub struct SystemRng(ring::rand::SystemRandom);

impl Default for SystemRng {
    fn default() -> Self {
        SystemRng(ring::rand::SystemRandom::new())
    }
}

impl std::fmt::Debug for SystemRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SystemRng")
    }
}

impl Rng for SystemRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        // SystemRandom fails only when the OS has no entropy source at all;
        // then fall back to the clock-and-address mix below rather than panic.
        if ring::rand::SecureRandom::fill(&self.0, &mut b).is_err() {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            b = (t.subsec_nanos() ^ (&b as *const _ as usize as u32).rotate_left(13)).to_be_bytes();
        }
        u32::from_be_bytes(b)
    }
}

/// A small deterministic generator (xorshift32): reproducible nonces and
/// jitter for simulations, tests and benchmarks. Not for real tunnels (use
/// [`SystemRng`]); a zero seed is replaced by 1.
#[derive(Debug, Clone)]
pub struct XorShiftRng(pub u32);

impl Rng for XorShiftRng {
    fn next_u32(&mut self) -> u32 {
        let mut x = if self.0 == 0 { 1 } else { self.0 };
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
}

/// A relay address to try, in the order the driver found them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayCandidate {
    /// The address a Relay Discovery goes to, or (see `discovery`) the relay itself.
    pub address: IpAddr,
    /// `true`: send a Relay Discovery there and use the relay it advertises
    /// (RFC 8777 D bit clear, and the anycast addresses). `false`: the address
    /// is the relay; send Requests to it directly.
    pub discovery: bool,
}

impl RelayCandidate {
    /// The well-known anycast discovery address of a family.
    pub fn anycast(ipv6: bool) -> Self {
        let address = if ipv6 { IpAddr::V6(ANYCAST_V6) } else { IpAddr::V4(ANYCAST_V4) };
        RelayCandidate { address, discovery: true }
    }
}

/// Gateway settings. [`GatewayConfig::new`] gives the RFC's defaults.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where to look for a relay, in order (at least one).
    pub candidates: Vec<RelayCandidate>,
    /// The relay's UDP port (2268).
    pub relay_port: u16,
    /// Source address of the IGMPv3 reports inside Updates (0.0.0.0 is allowed
    /// by IGMPv3; the relay uses it at most as a host key).
    pub report_source_v4: Ipv4Addr,
    /// Source address of the MLDv2 reports inside Updates (must be link-local).
    pub report_source_v6: Ipv6Addr,
    /// First retransmission timeout of Discovery and Request (1 s).
    pub initial_backoff: Duration,
    /// Cap of the retransmission backoff (120 s).
    pub max_backoff: Duration,
    /// Discoveries sent to one candidate before trying the next.
    pub discovery_attempts: u32,
    /// Requests left unanswered before the relay counts as lost.
    pub request_retries: u32,
    /// Upper bound on the refresh interval, to keep NAT bindings open (25 s).
    pub nat_keepalive: Duration,
    /// Base of the randomised no-data timeout; `None` disables the watchdog.
    /// The default, 6 s, sits just above an h3m sender's 5 s keep-alive, so an
    /// idle but healthy session does not trip it; RFC 8777 suggests 4 s.
    pub data_timeout: Option<Duration>,
    /// Spacing of repeated state-change reports (IGMPv3's unsolicited report interval, 1 s).
    pub report_interval: Duration,
    /// Robustness used before the relay's query has told us its QRV.
    pub default_qrv: u8,
    /// How long a relay that set the L flag is avoided (10 minutes).
    pub limit_hold_down: Duration,
    /// Largest inner report packet; bigger reports are split over several Updates.
    pub max_report_len: usize,
    /// Most channels the tunnel carries; more subscriptions are refused.
    pub max_channels: usize,
}

impl GatewayConfig {
    /// RFC defaults around a candidate list.
    pub fn new(candidates: Vec<RelayCandidate>) -> Self {
        GatewayConfig {
            candidates,
            relay_port: AMT_PORT,
            report_source_v4: Ipv4Addr::UNSPECIFIED,
            report_source_v6: Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0xa4f),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(120),
            discovery_attempts: 3,
            request_retries: 4,
            nat_keepalive: Duration::from_secs(25),
            data_timeout: Some(Duration::from_secs(6)),
            report_interval: Duration::from_secs(1),
            default_qrv: 2,
            limit_hold_down: Duration::from_secs(600),
            max_report_len: 1200,
            max_channels: 4096,
        }
    }
}

/// One (S,G) channel; `source: None` is an any-source (*,G) subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Channel {
    /// The source S (`None`: any source).
    pub source: Option<IpAddr>,
    /// The group G.
    pub group: IpAddr,
}

/// A datagram for the driver to send from the gateway's socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where it goes (the discovery address or the relay, port 2268).
    pub destination: SocketAddr,
    /// The encoded AMT message.
    pub payload: Vec<u8>,
}

/// Why the gateway gave up on a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReason {
    /// Requests went unanswered (retries exhausted).
    NoQuery,
    /// The relay set the L flag: it takes no more state.
    Limit,
}

/// Something the driver (or its user) may want to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayEvent {
    /// A Relay Advertisement named the relay to use.
    RelayDiscovered {
        /// Where the Discovery went.
        discovery: IpAddr,
        /// The relay it advertised.
        relay: IpAddr,
    },
    /// The relay answered a Request: the tunnel is up (or refreshed after a loss).
    Connected {
        /// The relay.
        relay: SocketAddr,
    },
    /// The gateway left a relay and looks for another (or the same) one.
    RelayLost {
        /// The relay.
        relay: IpAddr,
        /// Why.
        reason: LossReason,
    },
    /// Every Discovery to a candidate went unanswered.
    DiscoveryFailed {
        /// The candidate's address.
        candidate: IpAddr,
    },
    /// The relay reported a new gateway address (NAT rebinding); a Teardown for
    /// the old one was sent.
    GatewayAddressChanged {
        /// The address and port the relay saw before.
        old: SocketAddr,
        /// What it sees now.
        new: SocketAddr,
    },
    /// Subscribed channels saw no data for the watchdog's timeout.
    DataAbsent {
        /// How long ago the last datagram of a subscribed channel arrived;
        /// `None`: none ever did.
        idle: Option<Duration>,
    },
}

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The group is not a multicast address.
    #[error("{0} is not a multicast group")]
    NotMulticast(IpAddr),
    /// The source is multicast, unspecified, or of the other family.
    #[error("source {address} does not fit group {group}")]
    BadSource {
        /// The source.
        address: IpAddr,
        /// The group.
        group: IpAddr,
    },
    /// [`GatewayConfig::max_channels`] reached.
    #[error("too many channels (limit {0})")]
    TooMany(usize),
}

/// Counters of everything the gateway saw and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayStats {
    /// Relay Discoveries sent.
    pub discoveries_sent: u64,
    /// Advertisements accepted.
    pub advertisements: u64,
    /// Requests sent.
    pub requests_sent: u64,
    /// Queries accepted.
    pub queries: u64,
    /// Updates sent.
    pub updates_sent: u64,
    /// Teardowns sent.
    pub teardowns_sent: u64,
    /// Multicast Data messages delivered (subscribed channel, valid inner datagram).
    pub data_packets: u64,
    /// UDP payload bytes delivered.
    pub data_bytes: u64,
    /// Data for a channel nobody subscribed to.
    pub data_unsubscribed: u64,
    /// Data whose inner packet was not a valid multicast UDP datagram (incl.
    /// fragments and bad checksums).
    pub data_invalid: u64,
    /// Of `data_invalid`: inner packets with a bad IPv4 header or UDP checksum
    /// (or a zero IPv6 UDP checksum), e.g. forwarded by a relay from a source
    /// whose checksums were left to an offloading NIC that never filled them in.
    pub data_bad_checksum: u64,
    /// Datagrams that are not valid AMT messages.
    pub malformed: u64,
    /// Messages a gateway never receives (Discovery, Request, Update, Teardown).
    pub unexpected_type: u64,
    /// Advertisements or Queries with a nonce that is not outstanding (stale, replayed).
    pub nonce_mismatch: u64,
    /// Messages from an address other than the one expected.
    pub wrong_source: u64,
    /// Messages that arrived while no tunnel was wanted or in the wrong phase.
    pub out_of_phase: u64,
    /// Queries whose encapsulated general query did not parse (defaults used).
    pub bad_inner_query: u64,
    /// Queries with the L flag.
    pub limit_queries: u64,
    /// ICMP unreachable errors reported by the driver.
    pub unreachable: u64,
    /// Times a relay was given up.
    pub relays_lost: u64,
    /// Data-absence watchdog expiries.
    pub watchdog_fired: u64,
}

/// Retransmission state shared by Discovery and Request.
#[derive(Debug, Clone, Copy)]
struct Outstanding {
    nonce: u32,
    /// Messages sent with this purpose so far (1 after the first).
    attempts: u32,
    retry_at: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Established {
    mac: ResponseMac,
    nonce: u32,
    /// Relay's robustness variable (repeats of state-change reports).
    qrv: u8,
    next_refresh: Instant,
    /// Gateway address the relay reported with the G flag.
    seen_as: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
enum Phase {
    /// No channel subscribed: nothing to do.
    Idle,
    /// Looking for a relay: candidate index and the outstanding Discovery (if
    /// `None`, the next Discovery is due at `wait_until`).
    Discovering { candidate: usize, outstanding: Option<Outstanding>, wait_until: Option<Instant> },
    /// Talking to a relay.
    Connected { relay: IpAddr, request: Option<Outstanding>, session: Option<Established> },
}

/// A state-change report still to be repeated.
#[derive(Debug, Clone)]
struct PendingChange {
    records: Vec<GroupRecord>,
    remaining: u8,
    due: Instant,
}

/// The AMT gateway state machine. See the [module docs](self), and
/// `examples/gateway_and_relay.rs` for a gateway and a relay wired together.
///
/// ```
/// use std::time::Instant;
/// use h3m_amt::gateway::{Gateway, GatewayConfig, RelayCandidate, SystemRng};
/// use h3m_amt::message::Message;
///
/// let now = Instant::now();
/// let relay = "203.0.113.1".parse().unwrap();
/// let config = GatewayConfig::new(vec![RelayCandidate { address: relay, discovery: true }]);
/// let mut gateway = Gateway::new(now, config, Box::new(SystemRng::default()));
/// gateway.subscribe(now, Some("192.0.2.10".parse().unwrap()), "232.1.1.1".parse().unwrap()).unwrap();
/// // The first thing to send: a Relay Discovery to the candidate, port 2268.
/// let t = gateway.poll_transmit().unwrap();
/// assert_eq!(t.destination, "203.0.113.1:2268".parse().unwrap());
/// assert!(matches!(Message::decode(&t.payload), Ok(Message::RelayDiscovery { .. })));
/// // Nothing more until the relay answers or the retry timer fires.
/// assert!(gateway.poll_transmit().is_none());
/// assert!(gateway.poll_timeout().is_some());
/// ```
pub struct Gateway {
    config: GatewayConfig,
    rng: Box<dyn Rng + Send>,
    phase: Phase,
    /// Subscribed channels with their reference counts.
    channels: BTreeMap<Channel, u32>,
    changes: Vec<PendingChange>,
    hold_down: Vec<(IpAddr, Instant)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<GatewayEvent>,
    /// Last time data (or the tunnel's establishment) was seen, and the
    /// watchdog's current exponent and deadline.
    last_data: Option<Instant>,
    watchdog_exp: u32,
    watchdog_at: Option<Instant>,
    watchdog_armed_at: Instant,
    /// Backoff exponent across discovery rounds (reset when a relay answers).
    discovery_round: u32,
    stats: GatewayStats,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("phase", &self.phase)
            .field("channels", &self.channels.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway with no subscriptions (it sends nothing until the first
    /// one), created at `now`.
    pub fn new(now: Instant, config: GatewayConfig, rng: Box<dyn Rng + Send>) -> Self {
        Gateway {
            config,
            rng,
            phase: Phase::Idle,
            channels: BTreeMap::new(),
            changes: Vec::new(),
            hold_down: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            last_data: None,
            watchdog_exp: 0,
            watchdog_at: None,
            watchdog_armed_at: now,
            discovery_round: 0,
            stats: GatewayStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> &GatewayStats {
        &self.stats
    }

    /// The relay in use, once discovery has found one.
    pub fn relay(&self) -> Option<SocketAddr> {
        match self.phase {
            Phase::Connected { relay, .. } => Some(SocketAddr::new(relay, self.config.relay_port)),
            _ => None,
        }
    }

    /// Whether the relay has answered a Request (Updates can be sent).
    pub fn is_established(&self) -> bool {
        matches!(self.phase, Phase::Connected { session: Some(_), .. })
    }

    /// The subscribed channels.
    pub fn channels(&self) -> impl Iterator<Item = Channel> + '_ {
        self.channels.keys().copied()
    }

    /// Subscribes to (S,G) (`source: None` for any source). Subscriptions are
    /// counted: each needs a matching [`Gateway::unsubscribe`].
    pub fn subscribe(&mut self, now: Instant, source: Option<IpAddr>, group: IpAddr) -> Result<(), SubscribeError> {
        if !group.is_multicast() {
            return Err(SubscribeError::NotMulticast(group));
        }
        if let Some(s) = source
            && (s.is_multicast() || s.is_unspecified() || s.is_ipv4() != group.is_ipv4())
        {
            return Err(SubscribeError::BadSource { address: s, group });
        }
        let channel = Channel { source, group };
        if let Some(n) = self.channels.get_mut(&channel) {
            *n += 1;
            return Ok(());
        }
        if self.channels.len() >= self.config.max_channels {
            return Err(SubscribeError::TooMany(self.config.max_channels));
        }
        self.channels.insert(channel, 1);
        match self.phase {
            Phase::Idle => self.start_discovery(now, 0, None),
            Phase::Connected { session: Some(_), .. } => {
                let kind = if source.is_some() { RecordType::AllowNewSources } else { RecordType::ChangeToExclude };
                self.state_change(now, record(kind, channel));
                self.arm_watchdog(now);
            }
            _ => {}
        }
        Ok(())
    }

    /// Drops one subscription to (S,G); the last one leaves the channel (a
    /// BLOCK{S} or TO_IN{} report, repeated QRV times), and leaving the last
    /// channel ends the tunnel. Unknown channels are ignored.
    pub fn unsubscribe(&mut self, now: Instant, source: Option<IpAddr>, group: IpAddr) {
        let channel = Channel { source, group };
        let Some(n) = self.channels.get_mut(&channel) else { return };
        *n -= 1;
        if *n > 0 {
            return;
        }
        self.channels.remove(&channel);
        // A pending repeat of this channel's join must not follow its leave.
        for c in &mut self.changes {
            c.records.retain(|r| !(r.group == group && record_matches(r, source)));
        }
        self.changes.retain(|c| !c.records.is_empty());
        if let Phase::Connected { session: Some(_), .. } = self.phase {
            let kind = if source.is_some() { RecordType::BlockOldSources } else { RecordType::ChangeToInclude };
            self.state_change(now, record(kind, channel));
        }
        if self.channels.is_empty() {
            // Send the leave repeats right away (nobody will drive us later),
            // then go quiet.
            for c in std::mem::take(&mut self.changes) {
                for _ in 0..c.remaining {
                    self.send_update(&c.records);
                }
            }
            self.phase = Phase::Idle;
            self.watchdog_at = None;
        }
    }

    /// Leaves every channel (one aggregated report, sent QRV times now) and
    /// goes idle: call before exit. No Teardown: a leave is a report.
    pub fn leave_all(&mut self, _now: Instant) {
        let records: Vec<GroupRecord> = std::mem::take(&mut self.channels)
            .into_keys()
            .map(|c| {
                let kind = if c.source.is_some() { RecordType::BlockOldSources } else { RecordType::ChangeToInclude };
                record(kind, c)
            })
            .collect();
        self.changes.clear();
        if let Phase::Connected { session: Some(s), .. } = self.phase
            && !records.is_empty()
        {
            for _ in 0..s.qrv.max(1) {
                self.send_update(&records);
            }
        }
        self.phase = Phase::Idle;
        self.watchdog_at = None;
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<GatewayEvent> {
        self.events.pop_front()
    }

    /// Whether [`Gateway::poll_event`] has something.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// When [`Gateway::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut add = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        match &self.phase {
            Phase::Idle => return None,
            Phase::Discovering { outstanding, wait_until, .. } => {
                add(outstanding.map(|o| o.retry_at));
                add(*wait_until);
            }
            Phase::Connected { request, session, .. } => {
                add(request.map(|r| r.retry_at));
                if request.is_none() {
                    add(session.map(|s| s.next_refresh));
                }
                if session.is_some() {
                    add(self.changes.iter().map(|c| c.due).min());
                    add(self.watchdog_at);
                }
            }
        }
        t
    }

    /// Runs every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase.clone() {
            Phase::Idle => {}
            Phase::Discovering { candidate, outstanding, wait_until } => {
                if let Some(o) = outstanding
                    && o.retry_at <= now
                {
                    if o.attempts >= self.config.discovery_attempts {
                        let address = self.config.candidates[candidate].address;
                        self.events.push_back(GatewayEvent::DiscoveryFailed { candidate: address });
                        // Next candidate; after a whole round, back off first.
                        let next = candidate + 1;
                        let wait = if next >= self.config.candidates.len() {
                            self.discovery_round += 1;
                            Some(self.backoff(self.discovery_round))
                        } else {
                            None
                        };
                        self.start_discovery(now, next, wait);
                    } else {
                        self.send_discovery(now, candidate, o.attempts);
                    }
                } else if wait_until.is_some_and(|w| w <= now) {
                    self.start_discovery(now, candidate, None);
                }
            }
            Phase::Connected { relay, request, session } => {
                if let Some(r) = request
                    && r.retry_at <= now
                {
                    if r.attempts > self.config.request_retries {
                        self.lose_relay(now, relay, LossReason::NoQuery);
                        return;
                    }
                    self.send_request(now, r.attempts);
                } else if request.is_none()
                    && let Some(s) = session
                    && s.next_refresh <= now
                {
                    self.send_request(now, 0);
                }
                if session.is_some() {
                    self.repeat_changes(now);
                    if self.watchdog_at.is_some_and(|w| w <= now) {
                        self.watchdog(now);
                    }
                }
            }
        }
    }

    /// The driver's socket reported ICMP port or host unreachable: the relay
    /// (or discovery address) is not there right now.
    pub fn handle_unreachable(&mut self, now: Instant) {
        self.stats.unreachable += 1;
        match &mut self.phase {
            Phase::Connected { request, .. } => match request {
                // Retry soon; the retry count still leads to rediscovery.
                Some(r) => r.retry_at = r.retry_at.min(now + self.config.initial_backoff),
                None => self.send_request(now, 0),
            },
            Phase::Discovering { outstanding: Some(o), .. } => {
                o.retry_at = o.retry_at.min(now + self.config.initial_backoff);
            }
            _ => {}
        }
    }

    /// Handles one datagram that arrived from `from`. Multicast Data for a
    /// subscribed channel comes back as the inner UDP datagram (borrowing
    /// `datagram`); everything else is consumed (and counted).
    pub fn handle_datagram<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &'a [u8],
    ) -> Option<InnerDatagram<'a>> {
        let msg = match Message::decode(datagram) {
            Ok(m) => m,
            Err(_) => {
                self.stats.malformed += 1;
                return None;
            }
        };
        match msg {
            Message::MulticastData { packet } => return self.on_data(now, from, packet),
            Message::RelayAdvertisement { nonce, relay } => self.on_advertisement(now, from, nonce, relay),
            Message::MembershipQuery { limit, mac, nonce, query, gateway } => {
                self.on_query(now, from, limit, mac, nonce, query, gateway)
            }
            _ => self.stats.unexpected_type += 1,
        }
        None
    }

    // ---- message handlers ------------------------------------------------

    fn on_data<'a>(&mut self, now: Instant, from: SocketAddr, packet: &'a [u8]) -> Option<InnerDatagram<'a>> {
        let Phase::Connected { relay, .. } = self.phase else {
            self.stats.out_of_phase += 1;
            return None;
        };
        if from.ip() != relay {
            self.stats.wrong_source += 1;
            return None;
        }
        let d = match inner::parse_udp(packet) {
            Ok(d) => d,
            Err(e) => {
                self.stats.data_invalid += 1;
                if matches!(e, InnerError::UdpChecksum | InnerError::HeaderChecksum | InnerError::ZeroUdpChecksum) {
                    self.stats.data_bad_checksum += 1;
                }
                return None;
            }
        };
        let (s, g) = (d.source.ip(), d.destination.ip());
        let subscribed = self.channels.contains_key(&Channel { source: Some(s), group: g })
            || self.channels.contains_key(&Channel { source: None, group: g });
        if !subscribed {
            self.stats.data_unsubscribed += 1;
            return None;
        }
        self.stats.data_packets += 1;
        self.stats.data_bytes += d.payload.len() as u64;
        self.last_data = Some(now);
        // The watchdog is pushed back lazily when it fires (no timer work or
        // random number per packet); only a fired one is reset here.
        if self.watchdog_exp != 0 {
            self.watchdog_exp = 0;
            self.arm_watchdog(now);
        }
        Some(d)
    }

    fn on_advertisement(&mut self, now: Instant, from: SocketAddr, nonce: u32, relay: IpAddr) {
        let Phase::Discovering { candidate, outstanding: Some(o), .. } = self.phase else {
            self.stats.out_of_phase += 1;
            return;
        };
        if nonce != o.nonce {
            self.stats.nonce_mismatch += 1;
            return;
        }
        let discovery = self.config.candidates[candidate].address;
        if from.ip() != discovery {
            self.stats.wrong_source += 1;
            return;
        }
        if relay.is_unspecified() || relay.is_multicast() {
            self.stats.malformed += 1;
            return;
        }
        self.stats.advertisements += 1;
        self.events.push_back(GatewayEvent::RelayDiscovered { discovery, relay });
        self.connect(now, relay);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_query(
        &mut self,
        now: Instant,
        from: SocketAddr,
        limit: bool,
        mac: ResponseMac,
        nonce: u32,
        query: &[u8],
        gateway: Option<SocketAddr>,
    ) {
        let Phase::Connected { relay, request, session } = self.phase.clone() else {
            self.stats.out_of_phase += 1;
            return;
        };
        if from.ip() != relay {
            self.stats.wrong_source += 1;
            return;
        }
        let Some(req) = request.filter(|r| r.nonce == nonce) else {
            self.stats.nonce_mismatch += 1;
            return;
        };
        let _ = req;
        if limit {
            self.stats.limit_queries += 1;
            let until = now + self.config.limit_hold_down;
            self.hold_down.retain(|(a, _)| *a != relay);
            self.hold_down.push((relay, until));
            self.lose_relay(now, relay, LossReason::Limit);
            return;
        }
        self.stats.queries += 1;
        let (qrv, qqi) = match membership::parse_query(query) {
            Ok(q) => (if q.qrv == 0 { self.config.default_qrv } else { q.qrv }, q.qqi),
            Err(_) => {
                self.stats.bad_inner_query += 1;
                (self.config.default_qrv, Duration::from_secs(125))
            }
        };
        // NAT rebinding: tear the old tunnel down (old nonce, MAC, address).
        let mut seen_as = session.and_then(|s| s.seen_as);
        if let Some(new) = gateway {
            if let (Some(old), Some(s)) = (seen_as, session)
                && old != new
            {
                let mut payload = Vec::with_capacity(30);
                Message::Teardown { mac: s.mac, nonce: s.nonce, gateway: old }.encode(&mut payload);
                self.push_transmit(SocketAddr::new(relay, self.config.relay_port), payload);
                self.stats.teardowns_sent += 1;
                self.events.push_back(GatewayEvent::GatewayAddressChanged { old, new });
            }
            seen_as = Some(new);
        }
        let refresh = qqi.min(self.config.nat_keepalive).max(Duration::from_millis(100));
        let first = session.is_none();
        self.phase = Phase::Connected {
            relay,
            request: None,
            session: Some(Established { mac, nonce, qrv, next_refresh: now + refresh, seen_as }),
        };
        self.discovery_round = 0;
        if first {
            self.events.push_back(GatewayEvent::Connected { relay: SocketAddr::new(relay, self.config.relay_port) });
            self.arm_watchdog(now);
        }
        // Answer the general query with the current state of every channel.
        let records = self.current_state();
        self.send_update(&records);
    }

    // ---- actions -----------------------------------------------------------

    /// Starts discovery at candidate `from` (wrapping around the list),
    /// skipping held-down relays; `wait` delays the first Discovery (a backoff
    /// after a whole round of candidates went unanswered).
    fn start_discovery(&mut self, now: Instant, from: usize, wait: Option<Duration>) {
        self.hold_down.retain(|(_, until)| *until > now);
        let n = self.config.candidates.len();
        if n == 0 {
            self.phase = Phase::Idle;
            return;
        }
        let pick = (0..n).map(|i| (from + i) % n).find(|&i| {
            let a = self.config.candidates[i].address;
            !self.hold_down.iter().any(|(h, _)| *h == a)
        });
        let (i, wait_until) = match pick {
            Some(i) => (i, wait.map(|w| now + w)),
            None => {
                // Everything is held down: wait for the first release.
                let (addr, until) = self
                    .hold_down
                    .iter()
                    .copied()
                    .min_by_key(|(_, u)| *u)
                    .unwrap_or((self.config.candidates[0].address, now + self.config.initial_backoff));
                let i = self.config.candidates.iter().position(|c| c.address == addr).unwrap_or(0);
                (i, Some(until))
            }
        };
        if let Some(w) = wait_until.filter(|w| *w > now) {
            self.phase = Phase::Discovering { candidate: i, outstanding: None, wait_until: Some(w) };
            return;
        }
        let c = self.config.candidates[i];
        if c.discovery {
            self.send_discovery(now, i, 0);
        } else {
            self.connect(now, c.address);
        }
    }

    fn send_discovery(&mut self, now: Instant, candidate: usize, attempts: u32) {
        let nonce = self.nonce();
        let address = self.config.candidates[candidate].address;
        let mut payload = Vec::with_capacity(8);
        Message::RelayDiscovery { nonce }.encode(&mut payload);
        self.push_transmit(SocketAddr::new(address, self.config.relay_port), payload);
        self.stats.discoveries_sent += 1;
        let retry_at = now + self.backoff(attempts);
        self.phase = Phase::Discovering {
            candidate,
            outstanding: Some(Outstanding { nonce, attempts: attempts + 1, retry_at }),
            wait_until: None,
        };
    }

    fn connect(&mut self, now: Instant, relay: IpAddr) {
        self.phase = Phase::Connected { relay, request: None, session: None };
        self.send_request(now, 0);
    }

    /// Sends a Request with a fresh nonce (`attempts` already unanswered).
    fn send_request(&mut self, now: Instant, attempts: u32) {
        let nonce = self.nonce();
        let Phase::Connected { relay, request, .. } = &mut self.phase else { return };
        let retry_at = now + backoff(&mut *self.rng, &self.config, attempts);
        *request = Some(Outstanding { nonce, attempts: attempts + 1, retry_at });
        let relay = *relay;
        // P flag: ask for an MLDv2 query only when every channel is IPv6.
        let mld = !self.channels.is_empty() && self.channels.keys().all(|c| c.group.is_ipv6());
        let mut payload = Vec::with_capacity(8);
        Message::Request { mld, nonce }.encode(&mut payload);
        self.push_transmit(SocketAddr::new(relay, self.config.relay_port), payload);
        self.stats.requests_sent += 1;
    }

    fn lose_relay(&mut self, now: Instant, relay: IpAddr, reason: LossReason) {
        self.stats.relays_lost += 1;
        self.events.push_back(GatewayEvent::RelayLost { relay, reason });
        self.changes.clear();
        self.watchdog_at = None;
        self.watchdog_exp = 0;
        // Start over from the first candidate that is not held down; a relay
        // found by discovery is rediscovered through its candidate.
        self.start_discovery(now, 0, None);
    }

    /// Sends a state change now and schedules its repeats.
    fn state_change(&mut self, now: Instant, r: GroupRecord) {
        self.send_update(std::slice::from_ref(&r));
        let qrv = match self.phase {
            Phase::Connected { session: Some(s), .. } => s.qrv,
            _ => self.config.default_qrv,
        };
        if qrv > 1 {
            self.changes.push(PendingChange {
                records: vec![r],
                remaining: qrv - 1,
                due: now + self.config.report_interval,
            });
        }
    }

    fn repeat_changes(&mut self, now: Instant) {
        let mut due = Vec::new();
        for c in &mut self.changes {
            if c.due <= now {
                due.extend(c.records.iter().cloned());
                c.remaining -= 1;
                c.due = now + self.config.report_interval;
            }
        }
        self.changes.retain(|c| c.remaining > 0);
        if !due.is_empty() {
            self.send_update(&due);
        }
    }

    fn watchdog(&mut self, now: Instant) {
        if let (Some(last), Some(at)) = (self.last_data, self.watchdog_at)
            && last > self.watchdog_armed_at
        {
            // Data arrived since arming: move the deadline, do not fire.
            self.watchdog_at = Some(last + at.saturating_duration_since(self.watchdog_armed_at));
            self.watchdog_armed_at = last;
            return;
        }
        self.stats.watchdog_fired += 1;
        let idle = self.last_data.map(|last| now.saturating_duration_since(last));
        self.events.push_back(GatewayEvent::DataAbsent { idle });
        self.watchdog_exp = (self.watchdog_exp + 1).min(16);
        self.arm_watchdog(now);
        // Probe the relay with a fresh Request: a restarted relay answers and
        // learns our channels again; a dead one leads to rediscovery.
        if let Phase::Connected { request: None, .. } = self.phase {
            self.send_request(now, 0);
        }
    }

    fn arm_watchdog(&mut self, now: Instant) {
        let Some(base) = self.config.data_timeout else { return };
        if self.channels.is_empty() {
            self.watchdog_at = None;
            return;
        }
        let hi = base.saturating_mul(1 << self.watchdog_exp).min(self.config.max_backoff.max(base));
        self.watchdog_at = Some(now + jitter(&mut *self.rng, base, hi));
        self.watchdog_armed_at = now;
    }

    /// Current-state records: IS_IN{S...} per SSM group, IS_EX{} per ASM group.
    fn current_state(&self) -> Vec<GroupRecord> {
        let mut by_group: BTreeMap<IpAddr, GroupRecord> = BTreeMap::new();
        for c in self.channels.keys() {
            match c.source {
                None => {
                    by_group.insert(
                        c.group,
                        GroupRecord { kind: RecordType::ModeIsExclude, group: c.group, sources: Vec::new() },
                    );
                }
                Some(s) => {
                    let r = by_group.entry(c.group).or_insert_with(|| GroupRecord {
                        kind: RecordType::ModeIsInclude,
                        group: c.group,
                        sources: Vec::new(),
                    });
                    // An ASM join of the group already covers every source.
                    if r.kind == RecordType::ModeIsInclude {
                        r.sources.push(s);
                    }
                }
            }
        }
        by_group.into_values().collect()
    }

    /// Sends the records in as many Updates as the family and size need, with
    /// the current nonce and MAC. Nothing is sent before the first Query.
    fn send_update(&mut self, records: &[GroupRecord]) {
        let Phase::Connected { relay, session: Some(s), .. } = self.phase else { return };
        let dest = SocketAddr::new(relay, self.config.relay_port);
        for v6 in [false, true] {
            let fam: Vec<GroupRecord> = records.iter().filter(|r| r.group.is_ipv6() == v6).cloned().collect();
            if fam.is_empty() {
                continue;
            }
            let source =
                if v6 { IpAddr::V6(self.config.report_source_v6) } else { IpAddr::V4(self.config.report_source_v4) };
            let Ok(reports) = membership::build_reports(source, &fam, self.config.max_report_len) else { continue };
            for report in reports {
                let mut payload = Vec::with_capacity(12 + report.len());
                Message::MembershipUpdate { mac: s.mac, nonce: s.nonce, report: &report }.encode(&mut payload);
                self.push_transmit(dest, payload);
                self.stats.updates_sent += 1;
            }
        }
    }

    fn push_transmit(&mut self, destination: SocketAddr, payload: Vec<u8>) {
        self.transmits.push_back(Transmit { destination, payload });
    }

    fn nonce(&mut self) -> u32 {
        loop {
            let n = self.rng.next_u32();
            if n != 0 {
                return n;
            }
        }
    }

    fn backoff(&mut self, attempts: u32) -> Duration {
        backoff(&mut *self.rng, &self.config, attempts)
    }
}

/// RFC 7450 5.2.3.4.3: random in [initial, min(initial x 2^n, max)].
fn backoff(rng: &mut dyn Rng, config: &GatewayConfig, attempts: u32) -> Duration {
    let lo = config.initial_backoff;
    let hi = lo.saturating_mul(1u32 << attempts.min(20)).min(config.max_backoff.max(lo));
    jitter(rng, lo, hi)
}

/// A uniformly random duration in [lo, hi].
fn jitter(rng: &mut dyn Rng, lo: Duration, hi: Duration) -> Duration {
    if hi <= lo {
        return lo;
    }
    let span = (hi - lo).as_nanos() as f64;
    lo + Duration::from_nanos((span * (f64::from(rng.next_u32()) / f64::from(u32::MAX))) as u64)
}

fn record(kind: RecordType, c: Channel) -> GroupRecord {
    GroupRecord { kind, group: c.group, sources: c.source.into_iter().collect() }
}

fn record_matches(r: &GroupRecord, source: Option<IpAddr>) -> bool {
    match source {
        Some(s) => r.sources.contains(&s),
        None => r.sources.is_empty(),
    }
}
