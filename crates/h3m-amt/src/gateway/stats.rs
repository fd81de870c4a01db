//! The gateway's counters ([`GatewayStats`]).

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
