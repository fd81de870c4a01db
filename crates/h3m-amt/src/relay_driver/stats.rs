//! The driver's counters: [`DriverStats`], the relay's statistics with the
//! driver's own, and the counters the loop keeps to build them.

use super::{Capture, RelayDriver};
use crate::relay::RelayStats;

/// Counters of the relay and of the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverStats {
    /// The state machine's counters.
    pub relay: RelayStats,
    /// Gateways with state.
    pub gateways: usize,
    /// Channels the relay wants joined.
    pub channels: usize,
    /// The heap the membership state is charged for ([`Relay::state_bytes`](crate::relay::Relay::state_bytes)),
    /// against [`RelayConfig::max_state_bytes`](crate::relay::RelayConfig::max_state_bytes).
    pub state_bytes: usize,
    /// Channels joined on the upstream interface.
    pub memberships: usize,
    /// The capture in use.
    pub capture: Capture,
    /// Native multicast datagrams captured and handed to the relay (a GSO super-packet counts as the
    /// datagrams it is split into).
    pub captured: u64,
    /// GSO super-packets split into datagrams.
    pub capture_split: u64,
    /// Captured packets dropped as malformed or unsupported (bad offload header, truncated, fragment,
    /// datagram that could not be rebuilt by port capture).
    pub capture_invalid: u64,
    /// Packets the kernel dropped before the packet sockets were read (receive buffer full).
    pub capture_drops: u64,
    /// Native joins that failed.
    pub join_errors: u64,
    /// Datagrams the kernel refused to send (or no socket for the source address).
    pub send_errors: u64,
    /// Receive errors.
    pub recv_errors: u64,
}

/// The driver's own counters, copied into [`DriverStats`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) captured: u64,
    pub(super) capture_split: u64,
    pub(super) capture_invalid: u64,
    pub(super) capture_drops: u64,
    pub(super) join_errors: u64,
    pub(super) send_errors: u64,
    pub(super) recv_errors: u64,
}

impl RelayDriver {
    /// A snapshot of the relay's and the driver's counters (reads the kernel's capture drops).
    pub(super) fn stats(&mut self) -> DriverStats {
        for p in &self.capture_sockets {
            // The kernel counts since the previous read.
            self.counters.capture_drops += p.drops().unwrap_or(0);
        }
        DriverStats {
            relay: self.relay.stats().clone(),
            gateways: self.relay.gateway_count(),
            channels: self.relay.joined().count(),
            state_bytes: self.relay.state_bytes(),
            memberships: self.joins.len(),
            capture: self.capture.clone(),
            captured: self.counters.captured,
            capture_split: self.counters.capture_split,
            capture_invalid: self.counters.capture_invalid,
            capture_drops: self.counters.capture_drops,
            join_errors: self.counters.join_errors,
            send_errors: self.counters.send_errors,
            recv_errors: self.counters.recv_errors,
        }
    }
}
