//! Gateway settings: the [`GatewayConfig`] with its RFC defaults, and the
//! [`RelayCandidate`]s it tries in turn.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::message::{AMT_PORT, ANYCAST_V4, ANYCAST_V6};

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
