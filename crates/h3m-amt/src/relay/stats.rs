//! The relay's counters: [`RelayStats`] and [`MessageCounts`].

use crate::message::MessageType;

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

    pub(super) fn add(&mut self, t: MessageType, n: u64) {
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
    /// has [`RelayConfig::max_gateways_per_source`](super::RelayConfig::max_gateways_per_source) gateways.
    pub refused_gateways_per_source: u64,
    /// Records refused because the gateway would exceed its channel limit.
    pub refused_channels: u64,
    /// Records refused because the relay would exceed [`RelayConfig::max_channels`](super::RelayConfig::max_channels).
    pub refused_channels_global: u64,
    /// Updates from new gateways and records refused because the state would
    /// exceed [`RelayConfig::max_state_bytes`](super::RelayConfig::max_state_bytes).
    pub refused_budget: u64,
    /// Records refused for having too many sources.
    pub refused_sources: u64,
    /// Queries sent with the L flag.
    pub limited_queries: u64,
    /// Teardowns that dropped a gateway's state.
    pub teardowns: u64,
    /// Teardowns with a valid MAC for a gateway without state.
    pub teardowns_unknown: u64,
    /// Replies dropped by [`Faults::drop_replies`](super::Faults::drop_replies).
    pub replies_dropped: u64,
    /// Replies held back by [`Faults::delay_replies`](super::Faults::delay_replies).
    pub replies_delayed: u64,
    /// Datagrams ignored while [`Faults::silent`](super::Faults::silent).
    pub ignored_silent: u64,
    /// Native packets forwarded to at least one gateway.
    pub data_packets: u64,
    /// IP octets of those packets (each counted once).
    pub data_bytes: u64,
    /// Native packets no gateway wants.
    pub data_no_subscriber: u64,
    /// Native packets that are not valid multicast UDP datagrams.
    pub data_invalid: u64,
    /// Native packets dropped while [`Faults::silent`](super::Faults::silent).
    pub data_silenced: u64,
    /// Packets given to [`Relay::inject`](super::Relay::inject).
    pub injected: u64,
    /// Gateway channels that timed out.
    pub expired: u64,
    /// Secret rotations.
    pub secret_rotations: u64,
    /// Restarts.
    pub restarts: u64,
    /// Native joins requested ([`RelayEvent::Join`](super::RelayEvent::Join)).
    pub joins: u64,
    /// Native leaves requested ([`RelayEvent::Leave`](super::RelayEvent::Leave)).
    pub leaves: u64,
}
