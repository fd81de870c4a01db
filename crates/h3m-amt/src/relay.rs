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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use ring::hmac;

use crate::gateway::{Channel, Rng};
use crate::inner::{self, InnerError};
use crate::membership::{self, GroupRecord, QueryParams, RecordType, decode_code};
use crate::message::{Message, MessageType, ResponseMac};

/// The general query parameters a relay uses by default: Max Resp Code 100
/// (10 s in IGMPv3; MLDv2 reads the same code as 100 ms), QRV 2 and QQIC 125
/// (125 s, the IGMP default Query Interval). The GMI is then 2 x 125 + 10 =
/// 260 s. Gateways refresh more often anyway (the h3m gateway every 25 s, to
/// keep NAT bindings open).
pub const DEFAULT_QUERY: QueryParams = QueryParams { max_resp_code: 100, qrv: 2, qqic: 125 };

/// Default secret rotation period: 300 s. A MAC stays valid for at least one
/// rotation period (the previous secret is still accepted), so this must
/// exceed the interval at which gateways refresh (at most the QQI, 125 s).
pub const DEFAULT_SECRET_ROTATION: Duration = Duration::from_secs(300);

/// Default source of the encapsulated MLDv2 queries (MLD requires a
/// link-local source).
pub const DEFAULT_QUERY_SOURCE_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

/// Heap charged against [`RelayConfig::max_state_bytes`] for each gateway with
/// state: its entries in the gateway table, the timer index and the
/// per-address count, with the B-tree nodes' slack and the allocator's overhead.
pub const GATEWAY_STATE_BYTES: usize = 512;

/// Heap charged for each (gateway, group) with state: the group's entry in the
/// gateway's table, the gateway's entry in the group's index (a new index node
/// when the group is new), and the first node of the group's source table.
/// The worst case, one group per channel, costs this plus one
/// [`CHANNEL_STATE_BYTES`] per channel (measured by `scripts/bench-floods-amt.sh`).
pub const GROUP_STATE_BYTES: usize = 1024;

/// Heap charged for each channel entry (a source timer, an excluded source, or
/// the (*,G) of an EXCLUDE group) and its share of the native channel table.
pub const CHANNEL_STATE_BYTES: usize = 160;

/// Default [`RelayConfig::max_state_bytes`]: 32 MiB, room for the default
/// 10 000 gateways and 100 000 channels in a few groups, or about 27 000
/// channels each in its own group (the worst case).
pub const DEFAULT_MAX_STATE_BYTES: usize = 32 << 20;

/// Relay settings. [`RelayConfig::default`] advertises nothing (Discovery is
/// then answered with the address it arrived on); [`RelayConfig::new`] takes
/// the relay addresses to advertise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// The IPv4 relay address Advertisements name (the unicast address
    /// gateways then send Requests to).
    pub advertise_v4: Option<Ipv4Addr>,
    /// The IPv6 relay address Advertisements name.
    pub advertise_v6: Option<Ipv6Addr>,
    /// Source address of the encapsulated IGMPv3 queries (the relay's "tunnel
    /// address"; gateways only use it as a label).
    pub query_source_v4: Ipv4Addr,
    /// Source address of the encapsulated MLDv2 queries (link-local).
    pub query_source_v6: Ipv6Addr,
    /// Max Resp Code, QRV and QQIC of the general queries (see
    /// [`DEFAULT_QUERY`]); they also give the Group Membership Interval.
    pub query: QueryParams,
    /// Whether every Query carries the G flag trailer with the gateway's
    /// address and port as the relay sees them (lets gateways detect NAT
    /// rebinding). Default true.
    pub gateway_address: bool,
    /// How often the MAC secret changes; `None`: never.
    pub secret_rotation: Option<Duration>,
    /// Most gateways with state; Updates from further gateways are refused,
    /// and their Queries carry the L flag. Default 10000.
    pub max_gateways: usize,
    /// Most gateways with state from one IP address (any port: one host can
    /// use many ports); further ones are refused like beyond `max_gateways`.
    /// Default 64.
    pub max_gateways_per_source: usize,
    /// Most channels per gateway (a source of an INCLUDE group counts one; an
    /// EXCLUDE group one plus one per source it tracks); records that would
    /// exceed it are refused. Default 1024.
    pub max_channels_per_gateway: usize,
    /// Most channels across all gateways (each gateway's channels counted as
    /// for `max_channels_per_gateway`); records that would exceed it are
    /// refused. Default 100000.
    pub max_channels: usize,
    /// Memory budget of the membership state: gateways and records that would
    /// take [`Relay::state_bytes`] beyond it are refused. Default
    /// [`DEFAULT_MAX_STATE_BYTES`].
    pub max_state_bytes: usize,
    /// Most sources in one group record; longer records are refused. Default 256.
    pub max_sources_per_record: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            advertise_v4: None,
            advertise_v6: None,
            query_source_v4: Ipv4Addr::UNSPECIFIED,
            query_source_v6: DEFAULT_QUERY_SOURCE_V6,
            query: DEFAULT_QUERY,
            gateway_address: true,
            secret_rotation: Some(DEFAULT_SECRET_ROTATION),
            max_gateways: 10_000,
            max_gateways_per_source: 64,
            max_channels_per_gateway: 1024,
            max_channels: 100_000,
            max_state_bytes: DEFAULT_MAX_STATE_BYTES,
            max_sources_per_record: 256,
        }
    }
}

impl RelayConfig {
    /// Defaults, advertising the first address of each family in `advertise`;
    /// the IPv4 one is also the IGMPv3 query source.
    pub fn new(advertise: &[IpAddr]) -> Self {
        let mut c = RelayConfig::default();
        for a in advertise {
            match a {
                IpAddr::V4(v4) if c.advertise_v4.is_none() => {
                    c.advertise_v4 = Some(*v4);
                    c.query_source_v4 = *v4;
                }
                IpAddr::V6(v6) if c.advertise_v6.is_none() => c.advertise_v6 = Some(*v6),
                _ => {}
            }
        }
        c
    }

    /// The Group Membership Interval: QRV x QQI + QRI (QRV 0 or above 7 reads
    /// as 2, QQIC 0 as 125 s, the Max Resp Code as IGMPv3 tenths of a second).
    pub fn group_membership_interval(&self) -> Duration {
        let qrv = if self.query.qrv == 0 || self.query.qrv > 7 { 2 } else { u32::from(self.query.qrv) };
        let qqi = match decode_code(self.query.qqic) {
            0 => 125,
            s => u64::from(s),
        };
        let qri = Duration::from_millis(u64::from(decode_code(self.query.max_resp_code)) * 100);
        Duration::from_secs(qqi) * qrv + qri
    }
}

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

/// How the G flag is chosen for Queries ([`Faults::gateway_flag`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GatewayFlag {
    /// As [`RelayConfig::gateway_address`] says.
    #[default]
    Config,
    /// Set on the next Query only, then back to `Config`.
    Next,
    /// Set on every Query.
    Always,
    /// Never set.
    Never,
}

/// Misbehaviour on demand, for tests ([`Relay::set_faults`]). The default is
/// a well-behaved relay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Drop this many of the next replies (Advertisements and Queries); counts
    /// down as they are dropped.
    pub drop_replies: u32,
    /// Hold every reply back this long (released by [`Relay::handle_timeout`]).
    pub delay_replies: Option<Duration>,
    /// Stop answering: every datagram is ignored and no data is forwarded
    /// (state is kept, and still expires).
    pub silent: bool,
    /// Set the L flag on the next Query (one shot).
    pub limit_next_query: bool,
    /// When Queries carry the G flag.
    pub gateway_flag: GatewayFlag,
    /// Report this address in the G trailer instead of the observed one (NAT
    /// simulation).
    pub fake_gateway_address: Option<SocketAddr>,
    /// One shot, acted on by [`Relay::set_faults`]: [`Relay::restart`].
    pub restart: bool,
    /// One shot, acted on by [`Relay::set_faults`]: [`Relay::rotate_secret`].
    pub rotate_secret: bool,
}

/// Messages counted by type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageCounts {
    /// Relay Discovery (1).
    pub relay_discovery: u64,
    /// Relay Advertisement (2).
    pub relay_advertisement: u64,
    /// Request (3).
    pub request: u64,
    /// Membership Query (4).
    pub membership_query: u64,
    /// Membership Update (5).
    pub membership_update: u64,
    /// Multicast Data (6).
    pub multicast_data: u64,
    /// Teardown (7).
    pub teardown: u64,
}

impl MessageCounts {
    /// The count of one type.
    pub fn get(&self, t: MessageType) -> u64 {
        match t {
            MessageType::RelayDiscovery => self.relay_discovery,
            MessageType::RelayAdvertisement => self.relay_advertisement,
            MessageType::Request => self.request,
            MessageType::MembershipQuery => self.membership_query,
            MessageType::MembershipUpdate => self.membership_update,
            MessageType::MulticastData => self.multicast_data,
            MessageType::Teardown => self.teardown,
        }
    }

    fn add(&mut self, t: MessageType, n: u64) {
        let c = match t {
            MessageType::RelayDiscovery => &mut self.relay_discovery,
            MessageType::RelayAdvertisement => &mut self.relay_advertisement,
            MessageType::Request => &mut self.request,
            MessageType::MembershipQuery => &mut self.membership_query,
            MessageType::MembershipUpdate => &mut self.membership_update,
            MessageType::MulticastData => &mut self.multicast_data,
            MessageType::Teardown => &mut self.teardown,
        };
        *c += n;
    }
}

/// Counters of everything the relay saw and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Valid messages received, by type.
    pub rx: MessageCounts,
    /// Messages sent (or queued for a delayed send), by type; Multicast Data
    /// counts one per gateway.
    pub tx: MessageCounts,
    /// Datagrams that are not AMT messages.
    pub malformed: u64,
    /// Messages a relay never receives (Advertisement, Query, Data).
    pub unexpected: u64,
    /// Datagrams from port 0 or an unspecified or multicast address.
    pub bad_source: u64,
    /// Discoveries and Requests with a zero nonce (ignored).
    pub nonce_zero: u64,
    /// Updates and Teardowns whose MAC matches neither secret.
    pub mac_failures: u64,
    /// MACs accepted under the previous secret.
    pub mac_previous_secret: u64,
    /// Updates whose report did not parse.
    pub bad_reports: u64,
    /// Updates applied.
    pub updates_applied: u64,
    /// Records with a non-multicast or link-scope group, or a source that is
    /// multicast, unspecified or of the other family.
    pub invalid_records: u64,
    /// Updates from new gateways refused because the table was full.
    pub refused_gateways: u64,
    /// Updates from new gateways refused because their IP address already
    /// has [`RelayConfig::max_gateways_per_source`] gateways.
    pub refused_gateways_per_source: u64,
    /// Records refused because the gateway would exceed its channel limit.
    pub refused_channels: u64,
    /// Records refused because the relay would exceed [`RelayConfig::max_channels`].
    pub refused_channels_global: u64,
    /// Updates from new gateways and records refused because the state would
    /// exceed [`RelayConfig::max_state_bytes`].
    pub refused_budget: u64,
    /// Records refused for having too many sources.
    pub refused_sources: u64,
    /// Queries sent with the L flag.
    pub limited_queries: u64,
    /// Teardowns that dropped a gateway's state.
    pub teardowns: u64,
    /// Teardowns with a valid MAC for a gateway without state.
    pub teardowns_unknown: u64,
    /// Replies dropped by [`Faults::drop_replies`].
    pub replies_dropped: u64,
    /// Replies held back by [`Faults::delay_replies`].
    pub replies_delayed: u64,
    /// Datagrams ignored while [`Faults::silent`].
    pub ignored_silent: u64,
    /// Native packets forwarded to at least one gateway.
    pub data_packets: u64,
    /// IP octets of those packets (each counted once).
    pub data_bytes: u64,
    /// Native packets no gateway wants.
    pub data_no_subscriber: u64,
    /// Native packets that are not valid multicast UDP datagrams.
    pub data_invalid: u64,
    /// Native packets dropped while [`Faults::silent`].
    pub data_silenced: u64,
    /// Packets given to [`Relay::inject`].
    pub injected: u64,
    /// Gateway channels that timed out.
    pub expired: u64,
    /// Secret rotations.
    pub secret_rotations: u64,
    /// Restarts.
    pub restarts: u64,
    /// Native joins requested ([`RelayEvent::Join`]).
    pub joins: u64,
    /// Native leaves requested ([`RelayEvent::Leave`]).
    pub leaves: u64,
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

/// The router state of one group for one gateway (RFC 3376 6.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct GroupState {
    /// `None`: INCLUDE mode. `Some(t)`: EXCLUDE mode, group timer ends at `t`.
    exclude_until: Option<Instant>,
    /// INCLUDE: A, with source timers. EXCLUDE: the requested list X.
    timers: BTreeMap<IpAddr, Instant>,
    /// EXCLUDE: the exclude list Y (empty in INCLUDE mode).
    blocked: BTreeSet<IpAddr>,
}

impl GroupState {
    fn is_empty(&self) -> bool {
        self.exclude_until.is_none() && self.timers.is_empty()
    }

    /// Entries counted against the channel limit.
    fn count(&self) -> usize {
        match self.exclude_until {
            None => self.timers.len(),
            Some(_) => 1 + self.timers.len() + self.blocked.len(),
        }
    }

    fn channels(&self, group: IpAddr) -> BTreeSet<Channel> {
        match self.exclude_until {
            Some(_) => BTreeSet::from([Channel { source: None, group }]),
            None => self.timers.keys().map(|s| Channel { source: Some(*s), group }).collect(),
        }
    }

    fn forwards(&self, source: IpAddr, now: Instant) -> bool {
        if let Some(t) = self.timers.get(&source) {
            return *t > now;
        }
        match self.exclude_until {
            Some(gt) if gt > now => !self.blocked.contains(&source),
            _ => false,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.timers.values().copied().chain(self.exclude_until).min()
    }

    fn set_timers(&mut self, sources: &BTreeSet<IpAddr>, until: Instant) {
        for s in sources {
            self.timers.insert(*s, until);
        }
    }

    /// Applies one record (see the module docs for the rules).
    fn apply(&mut self, kind: RecordType, b: &BTreeSet<IpAddr>, now: Instant, gmi: Duration) {
        let until = now + gmi;
        match (self.exclude_until.is_some(), kind) {
            // INCLUDE(A) + IS_IN(B) / ALLOW(B) -> INCLUDE(A+B); (B) = GMI.
            // EXCLUDE(X,Y) + IS_IN(A) / ALLOW(A) -> EXCLUDE(X+A, Y-A); (A) = GMI.
            (_, RecordType::ModeIsInclude | RecordType::AllowNewSources) => {
                self.set_timers(b, until);
                self.blocked.retain(|s| !b.contains(s));
            }
            // INCLUDE(A) + IS_EX(B) -> EXCLUDE(A*B, B-A); (B-A) = 0; delete (A-B); GT = GMI.
            (false, RecordType::ModeIsExclude) => {
                self.timers.retain(|s, _| b.contains(s));
                self.blocked = b.iter().filter(|s| !self.timers.contains_key(s)).copied().collect();
                self.exclude_until = Some(until);
            }
            // EXCLUDE(X,Y) + IS_EX(A) -> EXCLUDE(A-Y, Y*A); (A-X-Y) = GMI;
            // delete (X-A), (Y-A); GT = GMI.
            (true, RecordType::ModeIsExclude) => {
                let y = &self.blocked;
                let mut x: BTreeMap<IpAddr, Instant> = BTreeMap::new();
                for s in b.iter().filter(|s| !y.contains(s)) {
                    x.insert(*s, self.timers.get(s).copied().unwrap_or(until));
                }
                self.blocked = y.intersection(b).copied().collect();
                self.timers = x;
                self.exclude_until = Some(until);
            }
            // INCLUDE(A) + BLOCK(B) -> INCLUDE(A-B) (explicit tracking).
            (false, RecordType::BlockOldSources) => self.timers.retain(|s, _| !b.contains(s)),
            // EXCLUDE(X,Y) + BLOCK(A) -> EXCLUDE(X-A, Y+A) (explicit tracking).
            (true, RecordType::BlockOldSources) => {
                self.timers.retain(|s, _| !b.contains(s));
                self.blocked.extend(b.iter().copied());
            }
            // TO_IN(B) -> INCLUDE(B); (B) = GMI (explicit tracking: what the
            // host no longer lists stops now; TO_IN{} drops the group).
            (_, RecordType::ChangeToInclude) => {
                self.exclude_until = None;
                self.blocked.clear();
                self.timers.clear();
                self.set_timers(b, until);
            }
            // TO_EX(B) -> EXCLUDE({}, B); GT = GMI (explicit tracking).
            (_, RecordType::ChangeToExclude) => {
                self.timers.clear();
                self.blocked = b.clone();
                self.exclude_until = Some(until);
            }
        }
    }

    /// Runs the timers due at `now`.
    fn expire(&mut self, now: Instant) {
        match self.exclude_until {
            // Group timer expired: back to INCLUDE with the sources still running.
            Some(gt) if gt <= now => {
                self.exclude_until = None;
                self.blocked.clear();
                self.timers.retain(|_, t| *t > now);
            }
            // An expired X source moves to Y.
            Some(_) => {
                let gone: Vec<IpAddr> = self.timers.iter().filter(|(_, t)| **t <= now).map(|(s, _)| *s).collect();
                for s in gone {
                    self.timers.remove(&s);
                    self.blocked.insert(s);
                }
            }
            None => self.timers.retain(|_, t| *t > now),
        }
    }
}

#[derive(Debug)]
struct GatewayState {
    local: SocketAddr,
    groups: BTreeMap<IpAddr, GroupState>,
    /// Sum of the groups' counts.
    channels: usize,
    /// Its entry in `Relay::timers`.
    timer: Option<Instant>,
    data_messages: u64,
    data_bytes: u64,
}

struct Secret {
    key: hmac::Key,
}

impl Secret {
    fn generate(rng: &mut dyn Rng) -> Secret {
        let mut bytes = [0u8; 32];
        for c in bytes.chunks_exact_mut(4) {
            c.copy_from_slice(&rng.next_u32().to_be_bytes());
        }
        Secret { key: hmac::Key::new(hmac::HMAC_SHA256, &bytes) }
    }

    fn mac(&self, gateway: SocketAddr, nonce: u32) -> ResponseMac {
        let mut data = [0u8; 22];
        let n = match gateway.ip() {
            IpAddr::V4(a) => {
                data[..4].copy_from_slice(&a.octets());
                4
            }
            IpAddr::V6(a) => {
                data[..16].copy_from_slice(&a.octets());
                16
            }
        };
        data[n..n + 2].copy_from_slice(&gateway.port().to_be_bytes());
        data[n + 2..n + 6].copy_from_slice(&nonce.to_be_bytes());
        let tag = hmac::sign(&self.key, &data[..n + 6]);
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&tag.as_ref()[..6]);
        mac
    }
}

/// Constant-time comparison of two MACs.
fn mac_eq(a: &ResponseMac, b: &ResponseMac) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

/// A group a relay can join: multicast, wider than link scope.
fn valid_group(g: IpAddr) -> bool {
    match g {
        IpAddr::V4(a) => a.is_multicast() && a.octets()[..3] != [224, 0, 0],
        IpAddr::V6(a) => a.is_multicast() && a.octets()[1] & 0x0f > 2,
    }
}

fn valid_source(s: IpAddr, group: IpAddr) -> bool {
    s.is_ipv4() == group.is_ipv4() && !s.is_multicast() && !s.is_unspecified()
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

    fn rotate(&mut self) {
        let new = Secret::generate(&mut *self.rng);
        self.previous = Some(std::mem::replace(&mut self.current, new));
        self.stats.secret_rotations += 1;
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

    // ---- helpers -------------------------------------------------------------

    /// Whether a new gateway `from` may get state.
    fn admission(&self, from: SocketAddr) -> Result<(), Refusal> {
        if self.gateways.len() >= self.config.max_gateways {
            return Err(Refusal::Table);
        }
        if self.per_source.get(&from.ip()).copied().unwrap_or(0) >= self.config.max_gateways_per_source {
            return Err(Refusal::Source);
        }
        // A gateway is only kept with at least one group and one channel.
        let needed = state_bytes(self.gateways.len() + 1, self.group_states + 1, self.channels + 1);
        if needed > self.config.max_state_bytes {
            return Err(Refusal::Budget);
        }
        Ok(())
    }

    fn verify_mac(&mut self, gateway: SocketAddr, nonce: u32, mac: &ResponseMac) -> bool {
        if mac_eq(&self.current.mac(gateway, nonce), mac) {
            return true;
        }
        if self.previous.as_ref().is_some_and(|p| mac_eq(&p.mac(gateway, nonce), mac)) {
            self.stats.mac_previous_secret += 1;
            return true;
        }
        false
    }

    /// Sends (or drops, or delays) a reply per the faults.
    fn reply(&mut self, now: Instant, kind: MessageType, t: RelayTransmit) {
        if self.faults.drop_replies > 0 {
            self.faults.drop_replies -= 1;
            self.stats.replies_dropped += 1;
            return;
        }
        self.stats.tx.add(kind, 1);
        match self.faults.delay_replies {
            Some(d) if !d.is_zero() => {
                self.stats.replies_delayed += 1;
                self.delayed.push_back((now + d, t));
            }
            _ => self.transmits.push_back(t),
        }
    }

    fn apply_record(&mut self, now: Instant, addr: SocketAddr, r: &GroupRecord) {
        if !valid_group(r.group) || !r.sources.iter().all(|s| valid_source(*s, r.group)) {
            self.stats.invalid_records += 1;
            return;
        }
        if r.sources.len() > self.config.max_sources_per_record {
            self.stats.refused_sources += 1;
            return;
        }
        let gmi = self.config.group_membership_interval();
        let Some(gw) = self.gateways.get(&addr) else { return };
        let old = gw.groups.get(&r.group).cloned().unwrap_or_default();
        let sources: BTreeSet<IpAddr> = r.sources.iter().copied().collect();
        let mut new = old.clone();
        new.apply(r.kind, &sources, now, gmi);
        let (oc, nc) = (old.count(), new.count());
        if nc > oc && gw.channels - oc + nc > self.config.max_channels_per_gateway {
            self.stats.refused_channels += 1;
            return;
        }
        if nc > oc && self.channels - oc + nc > self.config.max_channels {
            self.stats.refused_channels_global += 1;
            return;
        }
        let groups = self.group_states + usize::from(old.is_empty() && !new.is_empty());
        let needed = state_bytes(self.gateways.len(), groups, self.channels - oc + nc);
        if needed > self.state_bytes() && needed > self.config.max_state_bytes {
            self.stats.refused_budget += 1;
            return;
        }
        self.set_group(addr, r.group, new, LeaveReason::Report);
    }

    /// Replaces the state of `group` for `addr`, keeping the indexes, the
    /// native channel counts and the events in step.
    fn set_group(&mut self, addr: SocketAddr, group: IpAddr, new: GroupState, reason: LeaveReason) {
        let Some(gw) = self.gateways.get_mut(&addr) else { return };
        let old = gw.groups.remove(&group).unwrap_or_default();
        gw.channels = gw.channels - old.count() + new.count();
        self.channels = self.channels - old.count() + new.count();
        self.group_states = self.group_states + usize::from(!new.is_empty()) - usize::from(!old.is_empty());
        let before = old.channels(group);
        let after = new.channels(group);
        if new.is_empty() {
            if let Some(set) = self.by_group.get_mut(&group) {
                set.remove(&addr);
                if set.is_empty() {
                    self.by_group.remove(&group);
                }
            }
        } else {
            gw.groups.insert(group, new);
            self.by_group.entry(group).or_default().insert(addr);
        }
        for c in before.difference(&after) {
            if reason == LeaveReason::Expired {
                self.stats.expired += 1;
            }
            self.events.push_back(RelayEvent::GatewayLeft { gateway: addr, source: c.source, group, reason });
            self.native_remove(*c);
        }
        for c in after.difference(&before) {
            self.events.push_back(RelayEvent::GatewayJoined { gateway: addr, source: c.source, group });
            self.native_add(*c);
        }
    }

    fn native_add(&mut self, c: Channel) {
        let n = self.native.entry(c).or_insert(0);
        *n += 1;
        if *n == 1 {
            self.stats.joins += 1;
            self.events.push_back(RelayEvent::Join { source: c.source, group: c.group });
        }
    }

    fn native_remove(&mut self, c: Channel) {
        let Some(n) = self.native.get_mut(&c) else { return };
        *n -= 1;
        if *n == 0 {
            self.native.remove(&c);
            self.stats.leaves += 1;
            self.events.push_back(RelayEvent::Leave { source: c.source, group: c.group });
        }
    }

    fn expire_gateway(&mut self, now: Instant, addr: SocketAddr) {
        let Some(gw) = self.gateways.get(&addr) else { return };
        let changes: Vec<(IpAddr, GroupState)> = gw
            .groups
            .iter()
            .filter_map(|(g, st)| {
                let mut new = st.clone();
                new.expire(now);
                (new != *st).then_some((*g, new))
            })
            .collect();
        for (g, new) in changes {
            self.set_group(addr, g, new, LeaveReason::Expired);
        }
        self.settle(addr);
    }

    /// Drops a gateway without state; reschedules the timer of one with state.
    fn settle(&mut self, addr: SocketAddr) {
        let Some(gw) = self.gateways.get_mut(&addr) else { return };
        if let Some(t) = gw.timer.take() {
            self.timers.remove(&(t, addr));
        }
        if gw.groups.is_empty() {
            self.gateways.remove(&addr);
            if let Some(n) = self.per_source.get_mut(&addr.ip()) {
                *n -= 1;
                if *n == 0 {
                    self.per_source.remove(&addr.ip());
                }
            }
            return;
        }
        gw.timer = gw.groups.values().filter_map(GroupState::next_deadline).min();
        if let Some(t) = gw.timer {
            self.timers.insert((t, addr));
        }
    }

    fn remove_gateway(&mut self, addr: SocketAddr, reason: LeaveReason) {
        let Some(gw) = self.gateways.get(&addr) else { return };
        let groups: Vec<IpAddr> = gw.groups.keys().copied().collect();
        for g in groups {
            self.set_group(addr, g, GroupState::default(), reason);
        }
        self.settle(addr);
    }
}

/// Why a new gateway was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// [`RelayConfig::max_gateways`].
    Table,
    /// [`RelayConfig::max_gateways_per_source`].
    Source,
    /// [`RelayConfig::max_state_bytes`].
    Budget,
}

/// The heap charged for this much state (see [`Relay::state_bytes`]).
fn state_bytes(gateways: usize, groups: usize, channels: usize) -> usize {
    gateways
        .saturating_mul(GATEWAY_STATE_BYTES)
        .saturating_add(groups.saturating_mul(GROUP_STATE_BYTES))
        .saturating_add(channels.saturating_mul(CHANNEL_STATE_BYTES))
}

fn summary(address: SocketAddr, g: &GatewayState) -> GatewaySummary {
    GatewaySummary {
        address,
        local: g.local,
        channels: g.groups.iter().flat_map(|(grp, st)| st.channels(*grp)).collect(),
        data_messages: g.data_messages,
        data_bytes: g.data_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::build_report;

    const RELAY4: &str = "203.0.113.1";
    const RELAY6: &str = "2001:db8:113::1";
    const S1: &str = "198.51.100.10";
    const S2: &str = "198.51.100.11";
    const G1: &str = "232.1.1.1";
    const G2: &str = "232.1.1.2";
    const SEED: u32 = 0x1234_5678;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn at(s: &str, port: u16) -> SocketAddr {
        SocketAddr::new(ip(s), port)
    }

    fn gw() -> SocketAddr {
        at("203.0.113.2", 40001)
    }

    fn local4() -> SocketAddr {
        at(RELAY4, 2268)
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    use crate::gateway::XorShiftRng as TestRng;

    /// The `n`th secret (0 = the first) the relay draws from `TestRng(SEED)`.
    fn secret(n: usize) -> [u8; 32] {
        let mut rng = TestRng(SEED);
        let mut s = [0u8; 32];
        for _ in 0..=n {
            for c in s.chunks_exact_mut(4) {
                c.copy_from_slice(&rng.next_u32().to_be_bytes());
            }
        }
        s
    }

    /// HMAC-SHA256(secret, ip || port || nonce), first 6 octets, computed here independently.
    fn expected_mac(secret: &[u8; 32], gateway: SocketAddr, nonce: u32) -> ResponseMac {
        let mut data = match gateway.ip() {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        data.extend_from_slice(&gateway.port().to_be_bytes());
        data.extend_from_slice(&nonce.to_be_bytes());
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), &data);
        tag.as_ref()[..6].try_into().unwrap()
    }

    fn config() -> RelayConfig {
        RelayConfig::new(&[ip(RELAY4), ip(RELAY6)])
    }

    fn relay_with(config: RelayConfig) -> (Relay, Instant) {
        let t0 = Instant::now();
        (Relay::new(config, Box::new(TestRng(SEED)), t0), t0)
    }

    fn relay() -> (Relay, Instant) {
        relay_with(config())
    }

    fn drain(r: &mut Relay) -> Vec<RelayTransmit> {
        std::iter::from_fn(|| r.poll_transmit()).collect()
    }

    fn events(r: &mut Relay) -> Vec<RelayEvent> {
        std::iter::from_fn(|| r.poll_event()).collect()
    }

    fn native(r: &mut Relay) -> Vec<RelayEvent> {
        events(r).into_iter().filter(|e| matches!(e, RelayEvent::Join { .. } | RelayEvent::Leave { .. })).collect()
    }

    fn rec(kind: RecordType, group: &str, sources: &[&str]) -> GroupRecord {
        GroupRecord { kind, group: ip(group), sources: sources.iter().map(|s| ip(s)).collect() }
    }

    fn report(records: &[GroupRecord]) -> Vec<u8> {
        let v6 = records.first().is_some_and(|r| r.group.is_ipv6());
        let source = if v6 { ip("fe80::9000:1") } else { ip("0.0.0.0") };
        build_report(source, records).unwrap()
    }

    fn update_bytes(r: &Relay, from: SocketAddr, nonce: u32, records: &[GroupRecord]) -> Vec<u8> {
        let mac = r.response_mac(from, nonce);
        Message::MembershipUpdate { mac, nonce, report: &report(records) }.to_vec()
    }

    fn update(r: &mut Relay, now: Instant, from: SocketAddr, records: &[GroupRecord]) {
        let bytes = update_bytes(r, from, 77, records);
        let local = if from.is_ipv6() { at(RELAY6, 2268) } else { local4() };
        r.handle_datagram(now, local, from, &bytes);
    }

    fn packet(s: &str, g: &str, payload: &[u8]) -> Vec<u8> {
        let mut p = Vec::new();
        inner::build_udp(at(s, 40000), at(g, 5001), 1, payload, &mut p).unwrap();
        p
    }

    /// Gateways a packet from `s` to `g` goes to.
    fn routes(r: &mut Relay, now: Instant, s: &str, g: &str) -> Vec<SocketAddr> {
        let mut msg = Vec::new();
        r.forward(now, &packet(s, g, b"x"), &mut msg).iter().map(|d| d.destination).collect()
    }

    fn channels(r: &Relay, gateway: SocketAddr) -> Vec<(Option<IpAddr>, IpAddr)> {
        r.gateway(gateway).map(|g| g.channels.iter().map(|c| (c.source, c.group)).collect()).unwrap_or_default()
    }

    fn ssm(s: &str, g: &str) -> (Option<IpAddr>, IpAddr) {
        (Some(ip(s)), ip(g))
    }

    fn asm(g: &str) -> (Option<IpAddr>, IpAddr) {
        (None, ip(g))
    }

    fn query_of(t: &RelayTransmit) -> (bool, ResponseMac, u32, Vec<u8>, Option<SocketAddr>) {
        match Message::decode(&t.payload).unwrap() {
            Message::MembershipQuery { limit, mac, nonce, query, gateway } => {
                (limit, mac, nonce, query.to_vec(), gateway)
            }
            m => panic!("expected a Query, got {m:?}"),
        }
    }

    fn request(r: &mut Relay, now: Instant, from: SocketAddr, nonce: u32) -> RelayTransmit {
        r.handle_datagram(now, local4(), from, &Message::Request { mld: false, nonce }.to_vec());
        let mut t = drain(r);
        assert_eq!(t.len(), 1);
        t.remove(0)
    }

    // ---- messages -----------------------------------------------------------

    #[test]
    fn discovery_is_answered_from_the_arrival_address_with_the_right_family() {
        let (mut r, t0) = relay();
        let disc = hex("01000000 0d15c0e1");
        r.handle_datagram(t0, at("192.52.193.1", 2268), gw(), &disc);
        assert_eq!(
            drain(&mut r),
            vec![RelayTransmit {
                source: at("192.52.193.1", 2268),
                destination: gw(),
                payload: hex("02000000 0d15c0e1 cb007101"),
            }]
        );
        let gw6 = at("2001:db8:113::2", 40001);
        r.handle_datagram(t0, at("2001:3::1", 2268), gw6, &hex("01000000 74b0dc51"));
        assert_eq!(
            drain(&mut r),
            vec![RelayTransmit {
                source: at("2001:3::1", 2268),
                destination: gw6,
                payload: hex("02000000 74b0dc51 20010db8011300000000000000000001"),
            }]
        );
        assert_eq!((r.stats().rx.relay_discovery, r.stats().tx.relay_advertisement), (2, 2));
    }

    #[test]
    fn discovery_of_an_unconfigured_family_names_what_is_configured() {
        let (mut r, t0) = relay_with(RelayConfig::new(&[ip(RELAY4)]));
        let gw6 = at("2001:db8:113::2", 40001);
        r.handle_datagram(t0, at("2001:3::1", 2268), gw6, &hex("01000000 00000005"));
        assert_eq!(drain(&mut r)[0].payload, hex("02000000 00000005 cb007101"));
        // Nothing configured: the address the Discovery arrived on.
        let (mut r, t0) = relay_with(RelayConfig::default());
        r.handle_datagram(t0, at("127.0.0.2", 2268), at("127.0.0.1", 5000), &hex("01000000 00000006"));
        assert_eq!(drain(&mut r)[0].payload, hex("02000000 00000006 7f000002"));
    }

    #[test]
    fn zero_nonces_junk_and_bad_sources_are_ignored_and_counted() {
        let (mut r, t0) = relay();
        r.handle_datagram(t0, local4(), gw(), &hex("01000000 00000000"));
        r.handle_datagram(t0, local4(), gw(), &hex("03000000 00000000"));
        r.handle_datagram(t0, local4(), gw(), &[]);
        r.handle_datagram(t0, local4(), gw(), &[0x13, 0, 0, 0, 0, 0, 0, 1]);
        r.handle_datagram(t0, local4(), gw(), &hex("0600 4500"));
        r.handle_datagram(t0, local4(), gw(), &hex("02000000 0d15c0e1 cb007101"));
        r.handle_datagram(t0, local4(), at("203.0.113.2", 0), &hex("01000000 00000001"));
        r.handle_datagram(t0, local4(), at("0.0.0.0", 5), &hex("01000000 00000001"));
        r.handle_datagram(t0, local4(), at("224.0.0.1", 5), &hex("01000000 00000001"));
        assert!(drain(&mut r).is_empty());
        let s = r.stats();
        assert_eq!((s.nonce_zero, s.malformed, s.unexpected, s.bad_source), (2, 2, 2, 3));
        assert_eq!(s.tx, MessageCounts::default());
        assert_eq!((s.rx.relay_discovery, s.rx.request, s.rx.multicast_data), (4, 1, 1));
    }

    #[test]
    fn request_gets_a_query_with_the_hmac_the_query_and_the_g_trailer() {
        let (mut r, t0) = relay();
        r.handle_datagram(t0, local4(), gw(), &hex("03000000 5eed0001"));
        let t = drain(&mut r);
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].source, t[0].destination), (local4(), gw()));
        let mac = expected_mac(&secret(0), gw(), 0x5eed0001);
        let mut expected = vec![0x04, 0x01];
        expected.extend_from_slice(&mac);
        expected.extend_from_slice(&hex("5eed0001"));
        expected.extend_from_slice(&membership::build_query(ip(RELAY4), &DEFAULT_QUERY));
        expected.extend_from_slice(&hex("9c41 000000000000000000000000cb007102"));
        assert_eq!(t[0].payload, expected);
        // The inner query as a gateway reads it.
        let (_, _, _, q, _) = query_of(&t[0]);
        let q = membership::parse_query(&q).unwrap();
        assert_eq!(
            (q.source, q.qrv, q.qqi, q.max_resp),
            (ip(RELAY4), 2, Duration::from_secs(125), Duration::from_secs(10))
        );
        assert!(q.router_alert);
        // P flag: an MLDv2 query from the link-local query source.
        r.handle_datagram(t0, local4(), gw(), &hex("03010000 5eed0002"));
        let (limit, mac2, nonce, q, g) = query_of(&drain(&mut r)[0]);
        assert_eq!((limit, nonce, g), (false, 0x5eed0002, Some(gw())));
        assert_eq!(mac2, expected_mac(&secret(0), gw(), 0x5eed0002));
        assert_eq!(q, membership::build_query(IpAddr::V6(DEFAULT_QUERY_SOURCE_V6), &DEFAULT_QUERY));
        assert_eq!(membership::parse_query(&q).unwrap().source, ip("fe80::1"));
        assert_eq!((r.stats().rx.request, r.stats().tx.membership_query), (2, 2));
        // Requests create no state.
        assert_eq!(r.gateway_count(), 0);
    }

    #[test]
    fn the_mac_changes_with_the_gateway_port_and_nonce() {
        let (mut r, t0) = relay();
        let macs: Vec<ResponseMac> =
            [(gw(), 1u32), (at("203.0.113.2", 40002), 1), (gw(), 2), (at("203.0.113.3", 40001), 1)]
                .into_iter()
                .map(|(g, n)| {
                    let (_, mac, _, _, _) = query_of(&request(&mut r, t0, g, n));
                    assert_eq!(mac, expected_mac(&secret(0), g, n));
                    assert_eq!(mac, r.response_mac(g, n));
                    mac
                })
                .collect();
        for i in 0..macs.len() {
            for j in i + 1..macs.len() {
                assert_ne!(macs[i], macs[j], "{i} {j}");
            }
        }
        // IPv6 gateways: 16 octets of address.
        let g6 = at("2001:db8:113::2", 40001);
        assert_eq!(r.response_mac(g6, 1), expected_mac(&secret(0), g6, 1));
        // An IPv4-mapped source is the IPv4 gateway.
        let mapped = at("::ffff:203.0.113.2", 40001);
        assert_eq!(query_of(&request(&mut r, t0, mapped, 1)).1, macs[0]);
    }

    #[test]
    fn the_previous_secret_is_accepted_after_one_rotation_and_refused_after_two() {
        let (mut r, t0) = relay();
        let old = update_bytes(&r, gw(), 5, &[rec(RecordType::AllowNewSources, G1, &[S1])]);
        r.rotate_secret(t0);
        assert_ne!(r.response_mac(gw(), 5), expected_mac(&secret(0), gw(), 5));
        assert_eq!(r.response_mac(gw(), 5), expected_mac(&secret(1), gw(), 5));
        r.handle_datagram(t0, local4(), gw(), &old);
        assert_eq!(channels(&r, gw()), vec![ssm(S1, G1)]);
        assert_eq!((r.stats().mac_previous_secret, r.stats().mac_failures), (1, 0));
        let older = update_bytes(&r, gw(), 6, &[rec(RecordType::AllowNewSources, G2, &[S1])]);
        let oldest = {
            let mac = expected_mac(&secret(0), gw(), 7);
            Message::MembershipUpdate { mac, nonce: 7, report: &report(&[rec(RecordType::AllowNewSources, G2, &[S2])]) }
                .to_vec()
        };
        r.rotate_secret(t0);
        r.handle_datagram(t0, local4(), gw(), &oldest);
        assert_eq!((r.stats().mac_previous_secret, r.stats().mac_failures), (1, 1));
        r.handle_datagram(t0, local4(), gw(), &older);
        assert_eq!((r.stats().mac_previous_secret, r.stats().mac_failures), (2, 1));
        assert_eq!(channels(&r, gw()), vec![ssm(S1, G1), ssm(S1, G2)]);
        assert_eq!(r.stats().secret_rotations, 2);
    }

    #[test]
    fn the_secret_rotates_on_its_timer() {
        let mut c = config();
        c.secret_rotation = Some(Duration::from_secs(30));
        let (mut r, t0) = relay_with(c);
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(30)));
        let before = r.response_mac(gw(), 1);
        r.handle_timeout(t0 + Duration::from_secs(29));
        assert_eq!(r.response_mac(gw(), 1), before);
        r.handle_timeout(t0 + Duration::from_secs(30));
        assert_eq!(r.response_mac(gw(), 1), expected_mac(&secret(1), gw(), 1));
        assert_eq!(r.stats().secret_rotations, 1);
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(60)));
        let (mut r, _) = relay_with(RelayConfig { secret_rotation: None, ..config() });
        assert_eq!(r.poll_timeout(), None);
        r.handle_timeout(t0 + Duration::from_secs(10_000));
        assert_eq!(r.stats().secret_rotations, 0);
    }

    #[test]
    fn updates_need_the_mac_of_their_source_address_port_and_nonce() {
        let (mut r, t0) = relay();
        let good = update_bytes(&r, gw(), 9, &[rec(RecordType::ModeIsInclude, G1, &[S1])]);
        // Same bytes from another port, or with a flipped MAC or nonce: refused.
        r.handle_datagram(t0, local4(), at("203.0.113.2", 40002), &good);
        let mut bad = good.clone();
        bad[2] ^= 1;
        r.handle_datagram(t0, local4(), gw(), &bad);
        let mut other_nonce = good.clone();
        other_nonce[11] ^= 1;
        r.handle_datagram(t0, local4(), gw(), &other_nonce);
        assert_eq!(r.stats().mac_failures, 3);
        assert_eq!(r.gateway_count(), 0);
        assert!(events(&mut r).is_empty());
        r.handle_datagram(t0, local4(), gw(), &good);
        assert_eq!(
            events(&mut r),
            vec![
                RelayEvent::GatewayJoined { gateway: gw(), source: Some(ip(S1)), group: ip(G1) },
                RelayEvent::Join { source: Some(ip(S1)), group: ip(G1) },
            ]
        );
        assert!(drain(&mut r).is_empty(), "an Update is not answered");
        assert_eq!(r.stats().updates_applied, 1);
        assert_eq!(r.gateway(gw()).unwrap().local, local4());
        // A report that does not parse.
        let mac = r.response_mac(gw(), 9);
        r.handle_datagram(
            t0,
            local4(),
            gw(),
            &Message::MembershipUpdate { mac, nonce: 9, report: &[0x45, 0] }.to_vec(),
        );
        assert_eq!(r.stats().bad_reports, 1);
    }

    #[test]
    fn native_joins_are_aggregated_over_gateways() {
        let (mut r, t0) = relay();
        let gw2 = at("203.0.113.3", 5000);
        update(&mut r, t0, gw(), &[rec(RecordType::AllowNewSources, G1, &[S1])]);
        update(&mut r, t0, gw2, &[rec(RecordType::AllowNewSources, G1, &[S1, S2])]);
        assert_eq!(
            native(&mut r),
            vec![
                RelayEvent::Join { source: Some(ip(S1)), group: ip(G1) },
                RelayEvent::Join { source: Some(ip(S2)), group: ip(G1) },
            ]
        );
        update(&mut r, t0, gw(), &[rec(RecordType::BlockOldSources, G1, &[S1])]);
        assert!(native(&mut r).is_empty(), "gw2 still wants (S1,G1)");
        assert_eq!(r.gateway_count(), 1, "a gateway without state is forgotten");
        update(&mut r, t0, gw2, &[rec(RecordType::ChangeToInclude, G1, &[])]);
        assert_eq!(
            native(&mut r),
            vec![
                RelayEvent::Leave { source: Some(ip(S1)), group: ip(G1) },
                RelayEvent::Leave { source: Some(ip(S2)), group: ip(G1) },
            ]
        );
        assert_eq!((r.stats().joins, r.stats().leaves), (2, 2));
        assert_eq!(r.joined().count(), 0);
    }

    #[test]
    fn teardown_is_verified_against_the_reported_address() {
        let (mut r, t0) = relay();
        update(&mut r, t0, gw(), &[rec(RecordType::ModeIsInclude, G1, &[S1])]);
        events(&mut r);
        let new = at("203.0.113.2", 40002);
        let mac = r.response_mac(gw(), 77);
        // Wrong nonce, or an address the MAC was not made for: refused.
        r.handle_datagram(t0, local4(), new, &Message::Teardown { mac, nonce: 78, gateway: gw() }.to_vec());
        r.handle_datagram(t0, local4(), new, &Message::Teardown { mac, nonce: 77, gateway: new }.to_vec());
        assert_eq!(r.stats().mac_failures, 2);
        assert_eq!(r.gateway_count(), 1);
        // From the new address, about the old one: the old state goes.
        r.handle_datagram(t0, local4(), new, &Message::Teardown { mac, nonce: 77, gateway: gw() }.to_vec());
        assert_eq!(
            events(&mut r),
            vec![
                RelayEvent::GatewayLeft {
                    gateway: gw(),
                    source: Some(ip(S1)),
                    group: ip(G1),
                    reason: LeaveReason::Teardown
                },
                RelayEvent::Leave { source: Some(ip(S1)), group: ip(G1) },
            ]
        );
        assert_eq!((r.gateway_count(), r.stats().teardowns), (0, 1));
        r.handle_datagram(t0, local4(), new, &Message::Teardown { mac, nonce: 77, gateway: gw() }.to_vec());
        assert_eq!(r.stats().teardowns_unknown, 1);
        assert!(drain(&mut r).is_empty(), "a Teardown is not answered");
    }

    // ---- record semantics -----------------------------------------------------

    #[test]
    fn include_mode_records() {
        use RecordType::*;
        let (mut r, t0) = relay();
        update(&mut r, t0, gw(), &[rec(ModeIsInclude, G1, &[S1])]);
        assert_eq!(channels(&r, gw()), vec![ssm(S1, G1)]);
        update(&mut r, t0, gw(), &[rec(AllowNewSources, G1, &[S2])]);
        assert_eq!(channels(&r, gw()), vec![ssm(S1, G1), ssm(S2, G1)]);
        assert_eq!(routes(&mut r, t0, S2, G1), vec![gw()]);
        assert_eq!(routes(&mut r, t0, "198.51.100.12", G1), vec![]);
        update(&mut r, t0, gw(), &[rec(BlockOldSources, G1, &[S1])]);
        assert_eq!(channels(&r, gw()), vec![ssm(S2, G1)]);
        assert_eq!(routes(&mut r, t0, S1, G1), vec![]);
        // TO_IN(B) leaves exactly B.
        update(&mut r, t0, gw(), &[rec(ChangeToInclude, G1, &[S1])]);
        assert_eq!(channels(&r, gw()), vec![ssm(S1, G1)]);
        // TO_IN{} drops the group.
        update(&mut r, t0, gw(), &[rec(ChangeToInclude, G1, &[])]);
        assert_eq!(r.gateway_count(), 0);
        let ev = events(&mut r);
        assert_eq!(ev.iter().filter(|e| matches!(e, RelayEvent::GatewayJoined { .. })).count(), 3);
        assert_eq!(ev.iter().filter(|e| matches!(e, RelayEvent::GatewayLeft { .. })).count(), 3);
        assert_eq!(ev.last(), Some(&RelayEvent::Leave { source: Some(ip(S1)), group: ip(G1) }));
    }

    #[test]
    fn exclude_mode_records() {
        use RecordType::*;
        let (mut r, t0) = relay();
        // IS_EX{} and TO_EX{}: any-source joins.
        update(&mut r, t0, gw(), &[rec(ModeIsExclude, G1, &[]), rec(ChangeToExclude, G2, &[])]);
        assert_eq!(channels(&r, gw()), vec![asm(G1), asm(G2)]);
        assert_eq!(
            native(&mut r),
            vec![RelayEvent::Join { source: None, group: ip(G1) }, RelayEvent::Join { source: None, group: ip(G2) }]
        );
        assert_eq!(routes(&mut r, t0, S1, G1), vec![gw()]);
        // BLOCK in EXCLUDE mode excludes; ALLOW takes it back.
        update(&mut r, t0, gw(), &[rec(BlockOldSources, G1, &[S1])]);
        assert_eq!(routes(&mut r, t0, S1, G1), vec![]);
        assert_eq!(routes(&mut r, t0, S2, G1), vec![gw()]);
        update(&mut r, t0, gw(), &[rec(AllowNewSources, G1, &[S1])]);
        assert_eq!(routes(&mut r, t0, S1, G1), vec![gw()]);
        // TO_EX(B): everything but B. IS_IN in EXCLUDE mode un-excludes.
        update(&mut r, t0, gw(), &[rec(ChangeToExclude, G1, &[S1])]);
        assert_eq!(routes(&mut r, t0, S1, G1), vec![]);
        update(&mut r, t0, gw(), &[rec(ModeIsInclude, G1, &[S1])]);
        assert_eq!(routes(&mut r, t0, S1, G1), vec![gw()]);
        // IS_EX(A) in EXCLUDE(X,Y): EXCLUDE(A-Y, Y*A).
        update(&mut r, t0, gw(), &[rec(ChangeToExclude, G2, &[S1])]);
        update(&mut r, t0, gw(), &[rec(ModeIsExclude, G2, &[S1, S2])]);
        assert_eq!(routes(&mut r, t0, S1, G2), vec![], "S1 stays excluded");
        assert_eq!(routes(&mut r, t0, S2, G2), vec![gw()], "S2 joins X (a timer), still forwarded");
        // TO_IN(B) from EXCLUDE mode: exactly INCLUDE(B).
        update(&mut r, t0, gw(), &[rec(ChangeToInclude, G2, &[S2])]);
        assert_eq!(channels(&r, gw()), vec![asm(G1), ssm(S2, G2)]);
        assert_eq!(routes(&mut r, t0, S1, G2), vec![]);
        assert!(native(&mut r).contains(&RelayEvent::Leave { source: None, group: ip(G2) }));
    }

    #[test]
    fn is_ex_in_include_mode_keeps_the_common_sources_on_their_timers() {
        use RecordType::*;
        let (mut r, t0) = relay();
        let gmi = config().group_membership_interval();
        update(&mut r, t0, gw(), &[rec(ModeIsInclude, G1, &[S1, S2])]);
        let t1 = t0 + Duration::from_secs(100);
        // INCLUDE(A={S1,S2}) + IS_EX(B={S1,S3}) -> EXCLUDE(X={S1}, Y={S3}); S2 deleted.
        update(&mut r, t1, gw(), &[rec(ModeIsExclude, G1, &[S1, "198.51.100.13"])]);
        assert_eq!(channels(&r, gw()), vec![asm(G1)]);
        assert_eq!(routes(&mut r, t1, "198.51.100.13", G1), vec![]);
        assert_eq!(routes(&mut r, t1, S2, G1), vec![gw()], "EXCLUDE forwards what it does not exclude");
        // S1's timer still ends at t0 + GMI: then it moves to the exclude list.
        r.handle_timeout(t0 + gmi);
        assert_eq!(routes(&mut r, t0 + gmi, S1, G1), vec![]);
        assert_eq!(routes(&mut r, t0 + gmi, S2, G1), vec![gw()]);
        // The group timer (t1 + GMI) ends EXCLUDE mode; X is empty: the group goes.
        r.handle_timeout(t1 + gmi);
        assert_eq!(r.gateway_count(), 0);
    }

    #[test]
    fn mldv2_records_over_an_ipv6_tunnel() {
        use RecordType::*;
        let (mut r, t0) = relay();
        let g6 = at("2001:db8:113::2", 40001);
        let (s, g) = ("2001:db8:100::10", "ff3e::8000:1");
        update(&mut r, t0, g6, &[rec(ModeIsInclude, g, &[s])]);
        assert_eq!(channels(&r, g6), vec![ssm(s, g)]);
        assert_eq!(r.gateway(g6).unwrap().local, at(RELAY6, 2268));
        update(&mut r, t0, g6, &[rec(ChangeToExclude, "ff3e::8000:2", &[])]);
        update(&mut r, t0, g6, &[rec(BlockOldSources, g, &[s])]);
        assert_eq!(channels(&r, g6), vec![asm("ff3e::8000:2")]);
        // IPv4 records from the same gateway are fine too (families are independent).
        update(&mut r, t0, g6, &[rec(AllowNewSources, G1, &[S1])]);
        assert_eq!(channels(&r, g6), vec![ssm(S1, G1), asm("ff3e::8000:2")]);
    }

    #[test]
    fn invalid_and_oversized_records_are_refused() {
        use RecordType::*;
        let mut c = config();
        c.max_sources_per_record = 2;
        c.max_channels_per_gateway = 3;
        let (mut r, t0) = relay_with(c);
        update(
            &mut r,
            t0,
            gw(),
            &[
                rec(AllowNewSources, "224.0.0.251", &[S1]),
                rec(AllowNewSources, G1, &[S1, S2, "198.51.100.12"]),
                rec(AllowNewSources, G1, &[S1, S2]),
                rec(AllowNewSources, G2, &[S1, S2]),
                rec(AllowNewSources, "232.1.1.3", &[S1]),
            ],
        );
        assert_eq!(channels(&r, gw()), vec![ssm(S1, G1), ssm(S2, G1), ssm(S1, "232.1.1.3")]);
        let s = r.stats();
        assert_eq!((s.invalid_records, s.refused_sources, s.refused_channels), (1, 1, 1));
        // Reducing is always allowed, then there is room again.
        update(&mut r, t0, gw(), &[rec(BlockOldSources, G1, &[S2]), rec(AllowNewSources, G2, &[S2])]);
        assert_eq!(channels(&r, gw()), vec![ssm(S1, G1), ssm(S2, G2), ssm(S1, "232.1.1.3")]);
        // Unicast group, source of the other family, multicast source (build_report refuses
        // mixed families, so hand-build those records through MLD: ff02::1 is link scope).
        update(&mut r, t0, at("2001:db8:113::2", 1), &[rec(AllowNewSources, "ff02::1:3", &["2001:db8::1"])]);
        update(&mut r, t0, gw(), &[rec(AllowNewSources, "198.51.100.1", &[S1])]);
        update(&mut r, t0, gw(), &[rec(AllowNewSources, "232.1.1.9", &["232.1.1.1"])]);
        assert_eq!(r.stats().invalid_records, 4);
    }

    #[test]
    fn gateways_beyond_the_limit_are_refused_and_told_so_with_the_l_flag() {
        let (mut r, t0) = relay_with(RelayConfig { max_gateways: 1, ..config() });
        let gw2 = at("203.0.113.3", 5000);
        assert!(!query_of(&request(&mut r, t0, gw2, 3)).0, "room for one");
        update(&mut r, t0, gw(), &[rec(RecordType::AllowNewSources, G1, &[S1])]);
        update(&mut r, t0, gw2, &[rec(RecordType::AllowNewSources, G1, &[S1])]);
        assert_eq!((r.gateway_count(), r.stats().refused_gateways), (1, 1));
        assert!(query_of(&request(&mut r, t0, gw2, 4)).0, "full: L flag for a new gateway");
        assert!(!query_of(&request(&mut r, t0, gw(), 5)).0, "no L flag for the known one");
        assert_eq!(r.stats().limited_queries, 1);
    }

    #[test]
    fn gateways_beyond_the_per_address_limit_are_refused_while_other_addresses_are_admitted() {
        let (mut r, t0) = relay_with(RelayConfig { max_gateways_per_source: 2, ..config() });
        let host = |port| at("203.0.113.2", port);
        let other = at("203.0.113.3", 40001);
        for port in [1000, 1001] {
            update(&mut r, t0, host(port), &[rec(RecordType::AllowNewSources, G1, &[S1])]);
        }
        assert!(query_of(&request(&mut r, t0, host(1002), 1)).0, "the address is full: L flag");
        assert!(!query_of(&request(&mut r, t0, host(1000), 2)).0, "no L flag for a known gateway");
        assert!(!query_of(&request(&mut r, t0, other, 3)).0, "another address has room");
        update(&mut r, t0, host(1002), &[rec(RecordType::AllowNewSources, G1, &[S1])]);
        update(&mut r, t0, other, &[rec(RecordType::AllowNewSources, G1, &[S1])]);
        assert_eq!(r.gateway(host(1002)), None);
        assert_eq!(channels(&r, other), vec![ssm(S1, G1)]);
        let s = r.stats();
        assert_eq!((r.gateway_count(), s.refused_gateways_per_source, s.refused_gateways), (3, 1, 0));
        assert_eq!(s.limited_queries, 1);
        // A known gateway of the full address still updates.
        update(&mut r, t0, host(1000), &[rec(RecordType::AllowNewSources, G2, &[S1])]);
        assert_eq!(channels(&r, host(1000)), vec![ssm(S1, G1), ssm(S1, G2)]);
        // One leaves (TO_IN{} drops every group): the address has room again.
        update(&mut r, t0, host(1001), &[rec(RecordType::ChangeToInclude, G1, &[])]);
        assert_eq!(r.gateway(host(1001)), None);
        update(&mut r, t0, host(1002), &[rec(RecordType::AllowNewSources, G1, &[S1])]);
        assert_eq!(channels(&r, host(1002)), vec![ssm(S1, G1)]);
        assert_eq!(r.stats().refused_gateways_per_source, 1);
        // Teardown and restart release the count too.
        r.restart(t0);
        for port in [1003, 1004] {
            update(&mut r, t0, host(port), &[rec(RecordType::AllowNewSources, G1, &[S1])]);
        }
        assert_eq!((r.gateway_count(), r.stats().refused_gateways_per_source), (2, 1));
    }

    #[test]
    fn channels_beyond_the_global_limit_are_refused_across_gateways() {
        use RecordType::*;
        let (mut r, t0) = relay_with(RelayConfig { max_channels: 3, ..config() });
        let gw2 = at("203.0.113.3", 5000);
        update(&mut r, t0, gw(), &[rec(AllowNewSources, G1, &[S1, S2])]);
        assert_eq!(r.channel_count(), 2);
        // gw2: the first record fits (3), the second (TO_EX{} of G2: one more) does not.
        update(&mut r, t0, gw2, &[rec(AllowNewSources, G1, &[S1]), rec(ChangeToExclude, G2, &[])]);
        assert_eq!(channels(&r, gw2), vec![ssm(S1, G1)]);
        assert_eq!((r.channel_count(), r.stats().refused_channels_global, r.stats().refused_channels), (3, 1, 0));
        // A new gateway whose only record is refused leaves no state.
        let gw3 = at("203.0.113.4", 5000);
        update(&mut r, t0, gw3, &[rec(AllowNewSources, G2, &[S1])]);
        assert_eq!((r.gateway(gw3), r.gateway_count()), (None, 2));
        assert_eq!(r.stats().refused_channels_global, 2);
        // Refreshing what is held and shrinking are always allowed; then there is room.
        update(&mut r, t0, gw(), &[rec(ModeIsInclude, G1, &[S1, S2])]);
        update(&mut r, t0, gw(), &[rec(BlockOldSources, G1, &[S2])]);
        update(&mut r, t0, gw3, &[rec(AllowNewSources, G2, &[S1])]);
        assert_eq!(channels(&r, gw3), vec![ssm(S1, G2)]);
        assert_eq!((r.channel_count(), r.stats().refused_channels_global), (3, 2));
        // Expiry gives the count back.
        let gmi = r.config().group_membership_interval();
        r.handle_timeout(t0 + gmi);
        assert_eq!((r.channel_count(), r.gateway_count()), (0, 0));
    }

    #[test]
    fn the_memory_budget_refuses_gateways_and_records_beyond_it() {
        use RecordType::*;
        // Room for one gateway with one group of two channels, and nothing more.
        let budget = GATEWAY_STATE_BYTES + GROUP_STATE_BYTES + 2 * CHANNEL_STATE_BYTES;
        let (mut r, t0) = relay_with(RelayConfig { max_state_bytes: budget, ..config() });
        update(&mut r, t0, gw(), &[rec(AllowNewSources, G1, &[S1])]);
        assert_eq!(r.state_bytes(), GATEWAY_STATE_BYTES + GROUP_STATE_BYTES + CHANNEL_STATE_BYTES);
        // A second group does not fit; a second source in the same group does.
        update(&mut r, t0, gw(), &[rec(AllowNewSources, G2, &[S1]), rec(AllowNewSources, G1, &[S2])]);
        assert_eq!(channels(&r, gw()), vec![ssm(S1, G1), ssm(S2, G1)]);
        assert_eq!((r.state_bytes(), r.stats().refused_budget), (budget, 1));
        // A new gateway does not fit: refused, and its Request gets the L flag.
        let gw2 = at("203.0.113.3", 5000);
        assert!(query_of(&request(&mut r, t0, gw2, 9)).0);
        update(&mut r, t0, gw2, &[rec(AllowNewSources, G1, &[S1])]);
        assert_eq!((r.gateway(gw2), r.stats().refused_budget), (None, 2));
        let s = r.stats();
        assert_eq!((s.refused_gateways, s.refused_gateways_per_source, s.refused_channels_global), (0, 0, 0));
        // Teardown frees the budget.
        let mac = r.response_mac(gw(), 77);
        r.handle_datagram(t0, local4(), gw(), &Message::Teardown { mac, nonce: 77, gateway: gw() }.to_vec());
        assert_eq!(r.state_bytes(), 0);
        update(&mut r, t0, gw2, &[rec(AllowNewSources, G1, &[S1])]);
        assert_eq!(channels(&r, gw2), vec![ssm(S1, G1)]);
    }

    #[test]
    fn the_default_limits() {
        let c = RelayConfig::default();
        assert_eq!((c.max_gateways, c.max_gateways_per_source, c.max_channels_per_gateway), (10_000, 64, 1024));
        assert_eq!((c.max_channels, c.max_state_bytes), (100_000, 32 << 20));
        // The default gateways and channels (in few groups) fit the default budget.
        assert!(state_bytes(10_000, 10_000, 100_000) <= c.max_state_bytes);
    }

    // ---- expiry -------------------------------------------------------------

    #[test]
    fn state_expires_at_the_group_membership_interval_unless_refreshed() {
        let (mut r, t0) = relay_with(RelayConfig { secret_rotation: None, ..config() });
        let gmi = r.config().group_membership_interval();
        assert_eq!(gmi, Duration::from_secs(260));
        update(&mut r, t0, gw(), &[rec(RecordType::ModeIsInclude, G1, &[S1, S2])]);
        events(&mut r);
        assert_eq!(r.poll_timeout(), Some(t0 + gmi));
        // A refresh of S1 only, later.
        let t1 = t0 + Duration::from_secs(25);
        update(&mut r, t1, gw(), &[rec(RecordType::ModeIsInclude, G1, &[S1])]);
        assert_eq!(r.poll_timeout(), Some(t0 + gmi));
        r.handle_timeout(t0 + gmi - Duration::from_millis(1));
        assert!(events(&mut r).is_empty());
        assert_eq!(routes(&mut r, t0 + gmi - Duration::from_millis(1), S2, G1), vec![gw()]);
        // Forwarding stops at the deadline even before the timer runs.
        assert_eq!(routes(&mut r, t0 + gmi, S2, G1), vec![]);
        r.handle_timeout(t0 + gmi);
        assert_eq!(
            events(&mut r),
            vec![
                RelayEvent::GatewayLeft {
                    gateway: gw(),
                    source: Some(ip(S2)),
                    group: ip(G1),
                    reason: LeaveReason::Expired
                },
                RelayEvent::Leave { source: Some(ip(S2)), group: ip(G1) },
            ]
        );
        assert_eq!(r.poll_timeout(), Some(t1 + gmi));
        r.handle_timeout(t1 + gmi);
        assert_eq!(r.gateway_count(), 0);
        assert_eq!(r.stats().expired, 2);
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn exclude_mode_expires_into_include_mode_with_the_requested_sources() {
        use RecordType::*;
        let (mut r, t0) = relay_with(RelayConfig { secret_rotation: None, ..config() });
        let gmi = r.config().group_membership_interval();
        update(&mut r, t0, gw(), &[rec(ModeIsExclude, G1, &[])]);
        let t1 = t0 + Duration::from_secs(60);
        update(&mut r, t1, gw(), &[rec(AllowNewSources, G1, &[S1])]);
        events(&mut r);
        r.handle_timeout(t0 + gmi);
        assert_eq!(channels(&r, gw()), vec![ssm(S1, G1)]);
        assert_eq!(
            events(&mut r),
            vec![
                RelayEvent::GatewayLeft { gateway: gw(), source: None, group: ip(G1), reason: LeaveReason::Expired },
                RelayEvent::Leave { source: None, group: ip(G1) },
                RelayEvent::GatewayJoined { gateway: gw(), source: Some(ip(S1)), group: ip(G1) },
                RelayEvent::Join { source: Some(ip(S1)), group: ip(G1) },
            ]
        );
        r.handle_timeout(t1 + gmi);
        assert_eq!(r.gateway_count(), 0);
    }

    #[test]
    fn the_gmi_follows_the_query_parameters() {
        let c = RelayConfig { query: QueryParams { max_resp_code: 16, qrv: 3, qqic: 20 }, ..config() };
        assert_eq!(c.group_membership_interval(), Duration::from_millis(61_600));
        let c = RelayConfig { query: QueryParams { max_resp_code: 0, qrv: 0, qqic: 0 }, ..config() };
        assert_eq!(c.group_membership_interval(), Duration::from_secs(250));
    }

    // ---- data -----------------------------------------------------------------

    #[test]
    fn forward_writes_one_message_for_every_subscribed_gateway() {
        let (mut r, t0) = relay();
        let gw2 = at("203.0.113.3", 5000);
        let gw6 = at("2001:db8:113::2", 40001);
        update(&mut r, t0, gw(), &[rec(RecordType::AllowNewSources, G1, &[S1])]);
        update(&mut r, t0, gw2, &[rec(RecordType::ChangeToExclude, G1, &[])]);
        update(
            &mut r,
            t0,
            gw6,
            &[rec(RecordType::AllowNewSources, G1, &[S1]), rec(RecordType::ChangeToExclude, G1, &[])],
        );
        let p = packet(S1, G1, b"AMT-VECTOR seq=0000 ");
        let mut msg = vec![0xee; 3];
        let routes = r.forward(t0, &p, &mut msg).to_vec();
        let mut expected = vec![6, 0];
        expected.extend_from_slice(&p);
        assert_eq!(msg, expected);
        assert_eq!(
            routes,
            vec![
                DataRoute { source: local4(), destination: gw() },
                DataRoute { source: local4(), destination: gw2 },
                DataRoute { source: at(RELAY6, 2268), destination: gw6 },
            ],
            "one copy per gateway, even subscribed to both (S,G) and (*,G)"
        );
        // Another source: the (*,G) gateways only.
        let other: Vec<SocketAddr> =
            r.forward(t0, &packet(S2, G1, b"y"), &mut msg).iter().map(|d| d.destination).collect();
        assert_eq!(other, vec![gw2, gw6]);
        // Nobody, junk.
        assert!(r.forward(t0, &packet(S1, G2, b"z"), &mut msg).is_empty());
        assert!(msg.is_empty());
        assert!(r.forward(t0, &p[..10], &mut msg).is_empty());
        let s = r.stats();
        assert_eq!((s.data_packets, s.data_bytes, s.tx.multicast_data), (2, (p.len() + 29) as u64, 5));
        assert_eq!((s.data_no_subscriber, s.data_invalid), (1, 1));
        let g = r.gateway(gw()).unwrap();
        assert_eq!((g.data_messages, g.data_bytes), (1, expected.len() as u64));
    }

    #[test]
    fn inject_builds_the_datagram_and_queues_the_messages() {
        let (mut r, t0) = relay();
        update(&mut r, t0, gw(), &[rec(RecordType::AllowNewSources, G1, &[S1])]);
        assert_eq!(r.inject(t0, at(S1, 40000), at(G1, 5001), 1, b"hello"), Ok(1));
        let t = drain(&mut r);
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].source, t[0].destination), (local4(), gw()));
        let Message::MulticastData { packet } = Message::decode(&t[0].payload).unwrap() else { panic!() };
        assert_eq!(packet, &self::packet(S1, G1, b"hello")[..]);
        let d = inner::parse_udp(packet).unwrap();
        assert_eq!((d.source, d.destination, d.ttl, d.payload), (at(S1, 40000), at(G1, 5001), 1, &b"hello"[..]));
        assert_eq!(r.inject(t0, at(S2, 40000), at(G1, 5001), 1, b"x"), Ok(0));
        assert!(r.inject(t0, at(S1, 1), at("ff3e::1", 1), 1, b"x").is_err());
        assert_eq!(r.stats().injected, 2);
    }

    // ---- faults -----------------------------------------------------------------

    #[test]
    fn fault_drop_replies() {
        let (mut r, t0) = relay();
        r.set_faults(t0, Faults { drop_replies: 2, ..Faults::default() });
        r.handle_datagram(t0, local4(), gw(), &hex("01000000 00000001"));
        r.handle_datagram(t0, local4(), gw(), &hex("03000000 00000002"));
        assert!(drain(&mut r).is_empty());
        assert_eq!(r.faults().drop_replies, 0);
        r.handle_datagram(t0, local4(), gw(), &hex("01000000 00000003"));
        assert_eq!(drain(&mut r).len(), 1);
        assert_eq!((r.stats().replies_dropped, r.stats().tx.relay_advertisement), (2, 1));
    }

    #[test]
    fn fault_delay_replies() {
        let (mut r, t0) = relay_with(RelayConfig { secret_rotation: None, ..config() });
        let d = Duration::from_millis(1500);
        r.set_faults(t0, Faults { delay_replies: Some(d), ..Faults::default() });
        r.handle_datagram(t0, local4(), gw(), &hex("01000000 00000001"));
        let t1 = t0 + Duration::from_millis(100);
        r.handle_datagram(t1, local4(), gw(), &hex("01000000 00000002"));
        assert!(drain(&mut r).is_empty());
        assert_eq!(r.poll_timeout(), Some(t0 + d));
        r.handle_timeout(t0 + d);
        assert_eq!(drain(&mut r)[0].payload, hex("02000000 00000001 cb007101"));
        assert_eq!(r.poll_timeout(), Some(t1 + d));
        r.handle_timeout(t1 + d);
        assert_eq!(drain(&mut r)[0].payload, hex("02000000 00000002 cb007101"));
        assert_eq!((r.stats().replies_delayed, r.poll_timeout()), (2, None));
    }

    #[test]
    fn fault_silent() {
        let (mut r, t0) = relay();
        update(&mut r, t0, gw(), &[rec(RecordType::AllowNewSources, G1, &[S1])]);
        r.set_faults(t0, Faults { silent: true, ..Faults::default() });
        r.handle_datagram(t0, local4(), gw(), &hex("01000000 00000001"));
        update(&mut r, t0, gw(), &[rec(RecordType::AllowNewSources, G2, &[S1])]);
        assert_eq!(r.inject(t0, at(S1, 1), at(G1, 1), 1, b"x"), Ok(0));
        assert!(drain(&mut r).is_empty());
        assert_eq!((r.stats().ignored_silent, r.stats().data_silenced), (2, 1));
        assert_eq!(channels(&r, gw()), vec![ssm(S1, G1)], "state is kept");
        r.set_faults(t0, Faults::default());
        assert_eq!(r.inject(t0, at(S1, 1), at(G1, 1), 1, b"x"), Ok(1));
    }

    #[test]
    fn fault_restart_forgets_everything_and_changes_the_secret() {
        let (mut r, t0) = relay();
        let gw2 = at("203.0.113.3", 5000);
        update(&mut r, t0, gw(), &[rec(RecordType::AllowNewSources, G1, &[S1])]);
        update(&mut r, t0, gw2, &[rec(RecordType::ChangeToExclude, G2, &[])]);
        let stale = update_bytes(&r, gw(), 5, &[rec(RecordType::AllowNewSources, G2, &[S1])]);
        r.rotate_secret(t0);
        events(&mut r);
        r.set_faults(t0, Faults { delay_replies: Some(Duration::from_secs(1)), ..Faults::default() });
        r.handle_datagram(t0, local4(), gw(), &hex("01000000 00000001"));
        r.set_faults(t0, Faults { restart: true, ..Faults::default() });
        assert!(!r.faults().restart, "one shot");
        assert_eq!(
            native(&mut r),
            vec![
                RelayEvent::Leave { source: Some(ip(S1)), group: ip(G1) },
                RelayEvent::Leave { source: None, group: ip(G2) }
            ]
        );
        assert_eq!((r.gateway_count(), r.joined().count(), r.stats().restarts), (0, 0, 1));
        assert_eq!(r.poll_timeout(), Some(t0 + DEFAULT_SECRET_ROTATION), "delayed replies are dropped");
        // Neither the current nor the previous secret of before still works.
        r.handle_datagram(t0, local4(), gw(), &stale);
        assert_eq!(r.stats().mac_failures, 1);
        assert_eq!(r.response_mac(gw(), 1), expected_mac(&secret(2), gw(), 1));
        // A new handshake works.
        update(&mut r, t0, gw(), &[rec(RecordType::AllowNewSources, G1, &[S1])]);
        assert_eq!(channels(&r, gw()), vec![ssm(S1, G1)]);
    }

    #[test]
    fn fault_limit_next_query() {
        let (mut r, t0) = relay();
        r.set_faults(t0, Faults { limit_next_query: true, ..Faults::default() });
        let t = request(&mut r, t0, gw(), 1);
        assert_eq!(t.payload[1], 0x03, "L and G");
        assert!(query_of(&t).0);
        assert!(!query_of(&request(&mut r, t0, gw(), 2)).0, "one shot");
        assert_eq!(r.stats().limited_queries, 1);
    }

    #[test]
    fn fault_gateway_flag_and_fake_address() {
        let (mut r, t0) = relay_with(RelayConfig { gateway_address: false, ..config() });
        assert_eq!(query_of(&request(&mut r, t0, gw(), 1)).4, None);
        let fake = at("192.0.2.99", 1234);
        r.set_faults(
            t0,
            Faults { gateway_flag: GatewayFlag::Next, fake_gateway_address: Some(fake), ..Faults::default() },
        );
        let t = request(&mut r, t0, gw(), 2);
        assert_eq!(t.payload[1], 0x01);
        assert_eq!(t.payload[t.payload.len() - 18..], hex("04d2 000000000000000000000000c0000263"));
        assert_eq!(query_of(&t).4, Some(fake));
        assert_eq!(query_of(&request(&mut r, t0, gw(), 3)).4, None, "Next is one shot");
        assert_eq!(r.faults().gateway_flag, GatewayFlag::Config);
        r.set_faults(t0, Faults { gateway_flag: GatewayFlag::Always, ..Faults::default() });
        assert_eq!(query_of(&request(&mut r, t0, gw(), 4)).4, Some(gw()));
        assert_eq!(query_of(&request(&mut r, t0, gw(), 5)).4, Some(gw()));
        let (mut r, t0) = relay();
        r.set_faults(t0, Faults { gateway_flag: GatewayFlag::Never, ..Faults::default() });
        assert_eq!(query_of(&request(&mut r, t0, gw(), 6)).4, None);
    }

    #[test]
    fn fault_rotate_secret() {
        let (mut r, t0) = relay();
        let before = r.response_mac(gw(), 1);
        r.set_faults(t0, Faults { rotate_secret: true, ..Faults::default() });
        assert_ne!(r.response_mac(gw(), 1), before);
        assert_eq!((r.stats().secret_rotations, r.faults().rotate_secret), (1, false));
    }
}
