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

mod config;
mod events;
mod reports;
mod rng;
mod stats;

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

pub use self::config::{GatewayConfig, RelayCandidate};
pub use self::events::{Channel, GatewayEvent, LossReason, SubscribeError, Transmit};
pub use self::rng::{Rng, SystemRng, XorShiftRng};
pub use self::stats::GatewayStats;

use self::reports::{record, record_matches};
use self::rng::{backoff, jitter};
use crate::inner::{self, InnerDatagram, InnerError};
use crate::membership::{self, GroupRecord, RecordType};
use crate::message::{Message, ResponseMac};

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
