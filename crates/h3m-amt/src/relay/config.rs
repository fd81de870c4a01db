//! Relay settings: [`RelayConfig`], its defaults and the Group Membership
//! Interval it implies.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::membership::{QueryParams, decode_code};

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
    /// take [`Relay::state_bytes`](super::Relay::state_bytes) beyond it are refused. Default
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
