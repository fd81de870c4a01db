//! Membership state: the RFC 3376 / RFC 3810 router state per (gateway,
//! group), the indexes and native channel counts kept in step with it, expiry,
//! and the admission limits and memory budget that bound it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::{GatewaySummary, LeaveReason, Relay, RelayEvent};
use crate::gateway::Channel;
use crate::membership::{GroupRecord, RecordType};

/// Heap charged against
/// [`RelayConfig::max_state_bytes`](super::RelayConfig::max_state_bytes) for
/// each gateway with state: its entries in the gateway table, the timer index
/// and the per-address count, with the B-tree nodes' slack and the allocator's overhead.
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

/// The router state of one group for one gateway (RFC 3376 6.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct GroupState {
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

    /// Whether data from `source` reaches this gateway at `now`.
    pub(super) fn forwards(&self, source: IpAddr, now: Instant) -> bool {
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

/// The membership state of one gateway.
#[derive(Debug)]
pub(super) struct GatewayState {
    /// The local address its Updates arrive at (data is sent from there).
    pub(super) local: SocketAddr,
    /// Its groups with state.
    pub(super) groups: BTreeMap<IpAddr, GroupState>,
    /// Sum of the groups' counts.
    pub(super) channels: usize,
    /// Its entry in `Relay::timers`.
    pub(super) timer: Option<Instant>,
    /// Multicast Data messages sent to it.
    pub(super) data_messages: u64,
    /// Octets of those messages.
    pub(super) data_bytes: u64,
}

/// A group a relay can join: multicast, wider than link scope.
fn valid_group(g: IpAddr) -> bool {
    match g {
        IpAddr::V4(a) => a.is_multicast() && a.octets()[..3] != [224, 0, 0],
        IpAddr::V6(a) => a.is_multicast() && a.octets()[1] & 0x0f > 2,
    }
}

/// A source a record may name: unicast, of the group's family.
fn valid_source(s: IpAddr, group: IpAddr) -> bool {
    s.is_ipv4() == group.is_ipv4() && !s.is_multicast() && !s.is_unspecified()
}

impl Relay {
    /// Whether a new gateway `from` may get state.
    pub(super) fn admission(&self, from: SocketAddr) -> Result<(), Refusal> {
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

    /// Applies one group record of an Update from `addr`, unless it is invalid
    /// or would break a limit (then counted and ignored).
    pub(super) fn apply_record(&mut self, now: Instant, addr: SocketAddr, r: &GroupRecord) {
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

    /// Runs the membership timers of `addr` due at `now`.
    pub(super) fn expire_gateway(&mut self, now: Instant, addr: SocketAddr) {
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
    pub(super) fn settle(&mut self, addr: SocketAddr) {
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

    /// Drops all the state of `addr`, with `reason` in the events.
    pub(super) fn remove_gateway(&mut self, addr: SocketAddr, reason: LeaveReason) {
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
pub(super) enum Refusal {
    /// [`RelayConfig::max_gateways`](super::RelayConfig::max_gateways).
    Table,
    /// [`RelayConfig::max_gateways_per_source`](super::RelayConfig::max_gateways_per_source).
    Source,
    /// [`RelayConfig::max_state_bytes`](super::RelayConfig::max_state_bytes).
    Budget,
}

/// The heap charged for this much state (see [`Relay::state_bytes`]).
pub(super) fn state_bytes(gateways: usize, groups: usize, channels: usize) -> usize {
    gateways
        .saturating_mul(GATEWAY_STATE_BYTES)
        .saturating_add(groups.saturating_mul(GROUP_STATE_BYTES))
        .saturating_add(channels.saturating_mul(CHANNEL_STATE_BYTES))
}

/// The public view of one gateway's state.
pub(super) fn summary(address: SocketAddr, g: &GatewayState) -> GatewaySummary {
    GatewaySummary {
        address,
        local: g.local,
        channels: g.groups.iter().flat_map(|(grp, st)| st.channels(*grp)).collect(),
        data_messages: g.data_messages,
        data_bytes: g.data_bytes,
    }
}
