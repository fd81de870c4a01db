//! The AMT relay, sans-IO: discovery, the Request/Query/Update handshake with
//! stateless Response MACs, per-gateway IGMPv3/MLDv2 membership state with
//! expiry, aggregated native joins, and the data plane.
//!
//! The [`Relay`] is a pure state machine in the style of the
//! [`Gateway`](crate::gateway::Gateway). The driver feeds it every datagram
//! that arrived on a listening socket ([`Relay::handle_datagram`], with the
//! local address it arrived on), every native multicast packet captured
//! upstream ([`Relay::forward`]) and timer expiries ([`Relay::handle_timeout`]
//! at [`Relay::poll_timeout`]); it sends what [`Relay::poll_transmit`] yields,
//! from the local address each [`RelayTransmit`] names, and joins or leaves
//! natively on [`RelayEvent::Join`] / [`RelayEvent::Leave`]. Time is always an
//! argument and randomness (the MAC secrets) comes from an injected [`Rng`].
//!
//! # Messages
//!
//! - **Relay Discovery** (non-zero nonce): a Relay Advertisement echoing the
//!   nonce, naming the configured relay address of the family of the address
//!   the Discovery arrived on (the other family's when only that one is
//!   configured, the arrival address itself when none is), sent *from* the
//!   arrival address so it passes the gateway's source check and stateful
//!   firewalls. Zero nonces are ignored and counted.
//! - **Request** (non-zero nonce): a Membership Query echoing the nonce, with
//!   Response MAC = first 48 bits of HMAC-SHA256(secret, gateway IP (4 or 16
//!   octets) || gateway port (2) || nonce (4)), the general query of the family
//!   the P flag asks for ([`membership::build_query`]), the G flag trailer with
//!   the gateway's observed address and port ([`RelayConfig::gateway_address`]),
//!   and the L flag when the gateway table is full and this gateway has no
//!   state yet (or a fault asks for it). A Request creates no state: the MAC is
//!   a stateless cookie.
//! - **Membership Update**: the MAC must match the datagram's source address,
//!   port and nonce under the current or the previous secret (the secret
//!   rotates every [`RelayConfig::secret_rotation`]); the report is parsed with
//!   [`membership::parse_report`] and applied to the state of that gateway
//!   (keyed by address *and* port). Failures are counted and ignored.
//! - **Teardown**: the MAC is checked against the *reported* (old) gateway
//!   address and port, and that gateway's state is dropped.
//!
//! # Membership state
//!
//! One RFC 3376 6 / RFC 3810 7 router state per (gateway, group): INCLUDE(A)
//! with a timer per source, or EXCLUDE(X, Y) with a group timer, a requested
//! list X (timers) and an exclude list Y. Timers run for the Group Membership
//! Interval, GMI = QRV x QQI + QRI from [`RelayConfig::query`] (the QRI read as
//! IGMPv3's tenths of a second, the longer reading).
//!
//! - Current-state records follow RFC 3376 6.4.1 exactly: IS_IN(B) adds B;
//!   IS_EX(B) switches to (or refreshes) EXCLUDE mode.
//! - State-change records follow RFC 3376 6.4.2, except that the
//!   group-and-source-specific queries a router would send (which AMT cannot:
//!   queries only answer Requests) are replaced by explicit tracking: a tunnel
//!   has exactly one host, so what it stops asking for stops at once. Hence
//!   ALLOW(B) adds B; BLOCK(B) removes B in INCLUDE mode and excludes it in
//!   EXCLUDE mode; TO_IN(B) leaves exactly INCLUDE(B) (TO_IN{} drops the
//!   group); TO_EX(B) leaves exactly EXCLUDE({}, B) (TO_EX{} is an any-source
//!   join).
//! - Expiry: an INCLUDE source times out; an EXCLUDE group whose group timer
//!   expires falls back to INCLUDE(X); an X source timing out in EXCLUDE mode
//!   joins Y.
//!
//! A gateway's *channels* are (S,G) for each source of an INCLUDE group and
//! (*,G) for an EXCLUDE group; the union over gateways is what the relay joins
//! natively: the first gateway to want a channel produces [`RelayEvent::Join`],
//! the last one gone (by report, expiry, Teardown or restart)
//! [`RelayEvent::Leave`]. Per-gateway changes come as
//! [`RelayEvent::GatewayJoined`] / [`RelayEvent::GatewayLeft`].
//!
//! # Data plane
//!
//! [`Relay::forward`] takes a native multicast IP packet (IPv4 or IPv6 + UDP),
//! writes the one Multicast Data message every gateway gets into a reusable
//! buffer, and returns the (local address, gateway) pairs to send it to:
//! every gateway whose state forwards that source for that group (an (S,G)
//! subscriber, or an EXCLUDE-mode one that does not exclude S). No allocation
//! per packet once the buffers have grown. [`Relay::inject`] synthesises the
//! packet with [`inner::build_udp`] and queues the messages as transmits
//! (tests: no real multicast needed).
//!
//! # Bounds and faults
//!
//! [`RelayConfig::max_gateways`], [`RelayConfig::max_gateways_per_source`]
//! (gateways from one IP address, whatever their ports),
//! [`RelayConfig::max_channels_per_gateway`], [`RelayConfig::max_channels`]
//! (across gateways), [`RelayConfig::max_sources_per_record`] and the memory
//! budget [`RelayConfig::max_state_bytes`] bound the state; what exceeds them
//! is refused and counted ([`RelayStats`]), and a Request from a gateway that
//! could not be admitted is answered with the L flag. The budget is checked
//! against [`Relay::state_bytes`], an upper bound of the heap the membership
//! state takes ([`GATEWAY_STATE_BYTES`], [`GROUP_STATE_BYTES`],
//! [`CHANNEL_STATE_BYTES`]). [`Faults`] (set with
//! [`Relay::set_faults`]) make the relay misbehave on purpose for tests.

mod config;
mod faults;
mod groups;
mod mac;
mod stats;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

pub use self::config::{
    DEFAULT_MAX_STATE_BYTES, DEFAULT_QUERY, DEFAULT_QUERY_SOURCE_V6, DEFAULT_SECRET_ROTATION, RelayConfig,
};
pub use self::faults::{Faults, GatewayFlag};
pub use self::groups::{CHANNEL_STATE_BYTES, GATEWAY_STATE_BYTES, GROUP_STATE_BYTES};
pub use self::stats::{MessageCounts, RelayStats};

use self::groups::{GatewayState, Refusal, state_bytes, summary};
use self::mac::Secret;
use crate::gateway::{Channel, Rng};
use crate::inner::{self, InnerError};
use crate::membership;
use crate::message::{Message, MessageType, ResponseMac};

/// A datagram for the driver to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayTransmit {
    /// The local address (and port) to send from: where the message being
    /// answered arrived, or where the gateway's Updates arrive (data).
    pub source: SocketAddr,
    /// The gateway's address and port.
    pub destination: SocketAddr,
    /// The encoded AMT message.
    pub payload: Vec<u8>,
}

/// One destination of a Multicast Data message ([`Relay::forward`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRoute {
    /// The local address to send from.
    pub source: SocketAddr,
    /// The gateway.
    pub destination: SocketAddr,
}

/// Why a gateway stopped receiving a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    /// Its report said so.
    Report,
    /// Its state timed out (no refresh within the GMI).
    Expired,
    /// A Teardown dropped its state.
    Teardown,
    /// The relay restarted ([`Relay::restart`]).
    Restart,
}

/// Something the driver must act on or may log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEvent {
    /// The first gateway wants the channel: join it natively (ASM for `source: None`).
    Join {
        /// S, or `None` for (*,G).
        source: Option<IpAddr>,
        /// G.
        group: IpAddr,
    },
    /// No gateway wants the channel any more: leave it natively.
    Leave {
        /// S, or `None` for (*,G).
        source: Option<IpAddr>,
        /// G.
        group: IpAddr,
    },
    /// A gateway started receiving a channel.
    GatewayJoined {
        /// The gateway (address and port).
        gateway: SocketAddr,
        /// S, or `None` for (*,G).
        source: Option<IpAddr>,
        /// G.
        group: IpAddr,
    },
    /// A gateway stopped receiving a channel.
    GatewayLeft {
        /// The gateway (address and port).
        gateway: SocketAddr,
        /// S, or `None` for (*,G).
        source: Option<IpAddr>,
        /// G.
        group: IpAddr,
        /// Why.
        reason: LeaveReason,
    },
}

/// What the relay holds for one gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySummary {
    /// The gateway's address and port.
    pub address: SocketAddr,
    /// The local address its Updates arrive at (data is sent from there).
    pub local: SocketAddr,
    /// Its channels.
    pub channels: Vec<Channel>,
    /// Multicast Data messages sent to it.
    pub data_messages: u64,
    /// Octets of those messages.
    pub data_bytes: u64,
}

/// The AMT relay state machine. See the [module docs](self).
pub struct Relay {
    config: RelayConfig,
    rng: Box<dyn Rng + Send>,
    current: Secret,
    previous: Option<Secret>,
    next_rotation: Option<Instant>,
    query_v4: Vec<u8>,
    query_v6: Vec<u8>,
    gateways: BTreeMap<SocketAddr, GatewayState>,
    /// (deadline, gateway) of every gateway's earliest membership timer.
    timers: BTreeSet<(Instant, SocketAddr)>,
    /// Gateways with state for each group.
    by_group: BTreeMap<IpAddr, BTreeSet<SocketAddr>>,
    /// Native channels and how many gateways want each.
    native: BTreeMap<Channel, usize>,
    /// Gateways with state per IP address.
    per_source: BTreeMap<IpAddr, usize>,
    /// Sum of the gateways' channel counts.
    channels: usize,
    /// (gateway, group) pairs with state.
    group_states: usize,
    transmits: VecDeque<RelayTransmit>,
    delayed: VecDeque<(Instant, RelayTransmit)>,
    events: VecDeque<RelayEvent>,
    faults: Faults,
    stats: RelayStats,
    routes: Vec<DataRoute>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("gateways", &self.gateways.len())
            .field("native", &self.native.len())
            .field("faults", &self.faults)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Maps IPv4-mapped IPv6 addresses (from dual-stack sockets) to IPv4.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

impl Relay {
    /// A relay with a fresh secret from `rng`, its first rotation one period after `now`.
    pub fn new(config: RelayConfig, mut rng: Box<dyn Rng + Send>, now: Instant) -> Self {
        let current = Secret::generate(&mut *rng);
        let query_v4 = membership::build_query(IpAddr::V4(config.query_source_v4), &config.query);
        let query_v6 = membership::build_query(IpAddr::V6(config.query_source_v6), &config.query);
        Relay {
            next_rotation: config.secret_rotation.map(|r| now + r),
            config,
            rng,
            current,
            previous: None,
            query_v4,
            query_v6,
            gateways: BTreeMap::new(),
            timers: BTreeSet::new(),
            by_group: BTreeMap::new(),
            native: BTreeMap::new(),
            per_source: BTreeMap::new(),
            channels: 0,
            group_states: 0,
            transmits: VecDeque::new(),
            delayed: VecDeque::new(),
            events: VecDeque::new(),
            faults: Faults::default(),
            stats: RelayStats::default(),
            routes: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> &RelayStats {
        &self.stats
    }

    /// The faults in force (one-shot ones disappear once used).
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Sets the faults; `restart` and `rotate_secret` act at once (and are not stored).
    pub fn set_faults(&mut self, now: Instant, mut faults: Faults) {
        if std::mem::take(&mut faults.restart) {
            self.restart(now);
        }
        if std::mem::take(&mut faults.rotate_secret) {
            self.rotate_secret(now);
        }
        self.faults = faults;
    }

    /// The Response MAC the current secret gives `gateway` and `nonce`.
    pub fn response_mac(&self, gateway: SocketAddr, nonce: u32) -> ResponseMac {
        self.current.mac(canonical(gateway), nonce)
    }

    /// Number of gateways with state.
    pub fn gateway_count(&self) -> usize {
        self.gateways.len()
    }

    /// Channels across all gateways (counted as for [`RelayConfig::max_channels`]).
    pub fn channel_count(&self) -> usize {
        self.channels
    }

    /// The heap the membership state is charged for (an upper bound checked
    /// against [`RelayConfig::max_state_bytes`]): [`GATEWAY_STATE_BYTES`] per
    /// gateway, [`GROUP_STATE_BYTES`] per (gateway, group) and
    /// [`CHANNEL_STATE_BYTES`] per channel.
    pub fn state_bytes(&self) -> usize {
        state_bytes(self.gateways.len(), self.group_states, self.channels)
    }

    /// What the relay holds for `gateway`.
    pub fn gateway(&self, gateway: SocketAddr) -> Option<GatewaySummary> {
        let gateway = canonical(gateway);
        self.gateways.get(&gateway).map(|g| summary(gateway, g))
    }

    /// Every gateway with state, by address.
    pub fn gateways(&self) -> Vec<GatewaySummary> {
        self.gateways.iter().map(|(a, g)| summary(*a, g)).collect()
    }

    /// The channels joined natively (wanted by at least one gateway).
    pub fn joined(&self) -> impl Iterator<Item = Channel> + '_ {
        self.native.keys().copied()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<RelayTransmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<RelayEvent> {
        self.events.pop_front()
    }

    /// When [`Relay::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.next_rotation, self.timers.first().map(|(t, _)| *t), self.delayed.iter().map(|(t, _)| *t).min()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Runs everything due at `now`: secret rotation, delayed replies, membership expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let (Some(at), Some(period)) = (self.next_rotation, self.config.secret_rotation)
            && at <= now
        {
            self.rotate();
            self.next_rotation = Some(now + period);
        }
        if self.delayed.iter().any(|(t, _)| *t <= now) {
            let (due, keep): (VecDeque<_>, VecDeque<_>) =
                std::mem::take(&mut self.delayed).into_iter().partition(|(t, _)| *t <= now);
            self.delayed = keep;
            self.transmits.extend(due.into_iter().map(|(_, t)| t));
        }
        while let Some(&(t, addr)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.remove(&(t, addr));
            if let Some(g) = self.gateways.get_mut(&addr) {
                g.timer = None;
            }
            self.expire_gateway(now, addr);
        }
    }

    /// Makes a new secret current; the old one is still accepted until the next rotation.
    pub fn rotate_secret(&mut self, now: Instant) {
        self.rotate();
        self.next_rotation = self.config.secret_rotation.map(|p| now + p);
    }

    /// Forgets every gateway (a [`RelayEvent::GatewayLeft`] per channel and a
    /// [`RelayEvent::Leave`] per native channel), drops delayed replies and
    /// starts over with a new secret (the old ones are no longer accepted), as
    /// a restarted relay process would. Counters are kept.
    pub fn restart(&mut self, now: Instant) {
        let all: Vec<SocketAddr> = self.gateways.keys().copied().collect();
        for a in all {
            self.remove_gateway(a, LeaveReason::Restart);
        }
        self.delayed.clear();
        self.current = Secret::generate(&mut *self.rng);
        self.previous = None;
        self.next_rotation = self.config.secret_rotation.map(|p| now + p);
        self.stats.restarts += 1;
    }

    /// Handles one datagram that arrived at `local` (the address and port it
    /// was sent to) from `from`.
    pub fn handle_datagram(&mut self, now: Instant, local: SocketAddr, from: SocketAddr, datagram: &[u8]) {
        let (local, from) = (canonical(local), canonical(from));
        let msg = match Message::decode(datagram) {
            Ok(m) => m,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        self.stats.rx.add(msg.message_type(), 1);
        if self.faults.silent {
            self.stats.ignored_silent += 1;
            return;
        }
        if from.port() == 0 || from.ip().is_unspecified() || from.ip().is_multicast() {
            self.stats.bad_source += 1;
            return;
        }
        match msg {
            Message::RelayDiscovery { nonce } => self.on_discovery(now, local, from, nonce),
            Message::Request { mld, nonce } => self.on_request(now, local, from, mld, nonce),
            Message::MembershipUpdate { mac, nonce, report } => self.on_update(now, local, from, mac, nonce, report),
            Message::Teardown { mac, nonce, gateway } => self.on_teardown(canonical(gateway), mac, nonce),
            _ => self.stats.unexpected += 1,
        }
    }

    /// Forwards one native multicast packet (a whole IPv4 or IPv6 + UDP
    /// datagram): writes the Multicast Data message into `message` (cleared
    /// first) and returns where to send it, one entry per subscribed gateway
    /// (empty: send nothing). Counts the packet, and per gateway the message.
    pub fn forward(&mut self, now: Instant, packet: &[u8], message: &mut Vec<u8>) -> &[DataRoute] {
        self.routes.clear();
        message.clear();
        if self.faults.silent {
            self.stats.data_silenced += 1;
            return &self.routes;
        }
        let (s, g) = match inner::parse_udp(packet) {
            Ok(d) => (d.source.ip(), d.destination.ip()),
            Err(_) => {
                self.stats.data_invalid += 1;
                return &self.routes;
            }
        };
        let len = 2 + packet.len() as u64;
        if let Some(set) = self.by_group.get(&g) {
            for addr in set {
                if let Some(gw) = self.gateways.get_mut(addr)
                    && gw.groups.get(&g).is_some_and(|st| st.forwards(s, now))
                {
                    gw.data_messages += 1;
                    gw.data_bytes += len;
                    self.routes.push(DataRoute { source: gw.local, destination: *addr });
                }
            }
        }
        if self.routes.is_empty() {
            self.stats.data_no_subscriber += 1;
            return &self.routes;
        }
        message.reserve(2 + packet.len());
        message.extend_from_slice(&[MessageType::MulticastData as u8, 0]);
        message.extend_from_slice(packet);
        self.stats.data_packets += 1;
        self.stats.data_bytes += packet.len() as u64;
        self.stats.tx.add(MessageType::MulticastData, self.routes.len() as u64);
        &self.routes
    }

    /// Synthesises the UDP datagram `source` -> `group` (hop limit `ttl`, valid
    /// checksums) and queues a Multicast Data message for every gateway that
    /// wants it; returns how many.
    pub fn inject(
        &mut self,
        now: Instant,
        source: SocketAddr,
        group: SocketAddr,
        ttl: u8,
        payload: &[u8],
    ) -> Result<usize, InnerError> {
        let mut packet = Vec::new();
        inner::build_udp(source, group, ttl, payload, &mut packet)?;
        self.stats.injected += 1;
        let mut message = std::mem::take(&mut self.scratch);
        let routes = self.forward(now, &packet, &mut message).to_vec();
        for r in &routes {
            self.transmits.push_back(RelayTransmit {
                source: r.source,
                destination: r.destination,
                payload: message.clone(),
            });
        }
        self.scratch = message;
        Ok(routes.len())
    }

    // ---- message handlers ------------------------------------------------

    fn on_discovery(&mut self, now: Instant, local: SocketAddr, from: SocketAddr, nonce: u32) {
        if nonce == 0 {
            self.stats.nonce_zero += 1;
            return;
        }
        let v4 = self.config.advertise_v4.map(IpAddr::V4);
        let v6 = self.config.advertise_v6.map(IpAddr::V6);
        let (same, other) = if local.is_ipv6() { (v6, v4) } else { (v4, v6) };
        let relay = same.or(other).unwrap_or(local.ip());
        let payload = Message::RelayAdvertisement { nonce, relay }.to_vec();
        self.reply(now, MessageType::RelayAdvertisement, RelayTransmit { source: local, destination: from, payload });
    }

    fn on_request(&mut self, now: Instant, local: SocketAddr, from: SocketAddr, mld: bool, nonce: u32) {
        if nonce == 0 {
            self.stats.nonce_zero += 1;
            return;
        }
        let mac = self.current.mac(from, nonce);
        let full = !self.gateways.contains_key(&from) && self.admission(from).is_err();
        let limit = std::mem::take(&mut self.faults.limit_next_query) || full;
        if limit {
            self.stats.limited_queries += 1;
        }
        let g = match self.faults.gateway_flag {
            GatewayFlag::Config => self.config.gateway_address,
            GatewayFlag::Next => {
                self.faults.gateway_flag = GatewayFlag::Config;
                true
            }
            GatewayFlag::Always => true,
            GatewayFlag::Never => false,
        };
        let gateway = g.then(|| self.faults.fake_gateway_address.unwrap_or(from));
        let query = if mld { &self.query_v6 } else { &self.query_v4 };
        let payload = Message::MembershipQuery { limit, mac, nonce, query, gateway }.to_vec();
        self.reply(now, MessageType::MembershipQuery, RelayTransmit { source: local, destination: from, payload });
    }

    fn on_update(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        mac: ResponseMac,
        nonce: u32,
        report: &[u8],
    ) {
        if !self.verify_mac(from, nonce, &mac) {
            self.stats.mac_failures += 1;
            return;
        }
        let report = match membership::parse_report(report) {
            Ok(r) => r,
            Err(_) => {
                self.stats.bad_reports += 1;
                return;
            }
        };
        let admission = self.admission(from);
        match self.gateways.get_mut(&from) {
            Some(g) => g.local = local,
            None => {
                if let Err(refusal) = admission {
                    *match refusal {
                        Refusal::Table => &mut self.stats.refused_gateways,
                        Refusal::Source => &mut self.stats.refused_gateways_per_source,
                        Refusal::Budget => &mut self.stats.refused_budget,
                    } += 1;
                    return;
                }
                *self.per_source.entry(from.ip()).or_insert(0) += 1;
                self.gateways.insert(
                    from,
                    GatewayState {
                        local,
                        groups: BTreeMap::new(),
                        channels: 0,
                        timer: None,
                        data_messages: 0,
                        data_bytes: 0,
                    },
                );
            }
        }
        self.stats.updates_applied += 1;
        for r in &report.records {
            self.apply_record(now, from, r);
        }
        self.settle(from);
    }

    fn on_teardown(&mut self, gateway: SocketAddr, mac: ResponseMac, nonce: u32) {
        if !self.verify_mac(gateway, nonce, &mac) {
            self.stats.mac_failures += 1;
            return;
        }
        if self.gateways.contains_key(&gateway) {
            self.stats.teardowns += 1;
            self.remove_gateway(gateway, LeaveReason::Teardown);
        } else {
            self.stats.teardowns_unknown += 1;
        }
    }
}
