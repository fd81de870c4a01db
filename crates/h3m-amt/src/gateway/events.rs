//! What the gateway hands its driver: the [`Transmit`]s to send, the
//! [`GatewayEvent`]s to report (with [`LossReason`]), the [`Channel`]s it
//! carries, and why a subscription was refused ([`SubscribeError`]).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

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
    /// [`GatewayConfig::max_channels`](crate::gateway::GatewayConfig::max_channels) reached.
    #[error("too many channels (limit {0})")]
    TooMany(usize),
}
