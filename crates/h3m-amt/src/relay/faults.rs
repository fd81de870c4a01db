//! Misbehaviour on demand for tests ([`Faults`], [`GatewayFlag`]) and the
//! reply path they act on (drop, delay).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Relay, RelayTransmit};
use crate::message::MessageType;

/// How the G flag is chosen for Queries ([`Faults::gateway_flag`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GatewayFlag {
    /// As [`RelayConfig::gateway_address`](super::RelayConfig::gateway_address) says.
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

impl Relay {
    /// Sends (or drops, or delays) a reply per the faults.
    pub(super) fn reply(&mut self, now: Instant, kind: MessageType, t: RelayTransmit) {
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
}
