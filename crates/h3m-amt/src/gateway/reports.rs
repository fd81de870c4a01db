//! Membership reports carried in Updates: state-change records sent on join
//! and leave and repeated QRV times, current-state records answering each
//! Query, and their encoding into as many Updates as family and size need.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::{Channel, Gateway, PendingChange, Phase};
use crate::membership::{self, GroupRecord, RecordType};
use crate::message::Message;

impl Gateway {
    /// Sends a state change now and schedules its repeats.
    pub(super) fn state_change(&mut self, now: Instant, r: GroupRecord) {
        self.send_update(std::slice::from_ref(&r));
        let qrv = match self.phase {
            Phase::Connected { session: Some(s), .. } => s.qrv,
            _ => self.config.default_qrv,
        };
        if qrv > 1 {
            self.changes.push(PendingChange {
                records: vec![r],
                remaining: qrv - 1,
                due: now + self.config.report_interval,
            });
        }
    }

    pub(super) fn repeat_changes(&mut self, now: Instant) {
        let mut due = Vec::new();
        for c in &mut self.changes {
            if c.due <= now {
                due.extend(c.records.iter().cloned());
                c.remaining -= 1;
                c.due = now + self.config.report_interval;
            }
        }
        self.changes.retain(|c| c.remaining > 0);
        if !due.is_empty() {
            self.send_update(&due);
        }
    }

    /// Current-state records: IS_IN{S...} per SSM group, IS_EX{} per ASM group.
    pub(super) fn current_state(&self) -> Vec<GroupRecord> {
        let mut by_group: BTreeMap<IpAddr, GroupRecord> = BTreeMap::new();
        for c in self.channels.keys() {
            match c.source {
                None => {
                    by_group.insert(
                        c.group,
                        GroupRecord { kind: RecordType::ModeIsExclude, group: c.group, sources: Vec::new() },
                    );
                }
                Some(s) => {
                    let r = by_group.entry(c.group).or_insert_with(|| GroupRecord {
                        kind: RecordType::ModeIsInclude,
                        group: c.group,
                        sources: Vec::new(),
                    });
                    // An ASM join of the group already covers every source.
                    if r.kind == RecordType::ModeIsInclude {
                        r.sources.push(s);
                    }
                }
            }
        }
        by_group.into_values().collect()
    }

    /// Sends the records in as many Updates as the family and size need, with
    /// the current nonce and MAC. Nothing is sent before the first Query.
    pub(super) fn send_update(&mut self, records: &[GroupRecord]) {
        let Phase::Connected { relay, session: Some(s), .. } = self.phase else { return };
        let dest = SocketAddr::new(relay, self.config.relay_port);
        for v6 in [false, true] {
            let fam: Vec<GroupRecord> = records.iter().filter(|r| r.group.is_ipv6() == v6).cloned().collect();
            if fam.is_empty() {
                continue;
            }
            let source =
                if v6 { IpAddr::V6(self.config.report_source_v6) } else { IpAddr::V4(self.config.report_source_v4) };
            let Ok(reports) = membership::build_reports(source, &fam, self.config.max_report_len) else { continue };
            for report in reports {
                let mut payload = Vec::with_capacity(12 + report.len());
                Message::MembershipUpdate { mac: s.mac, nonce: s.nonce, report: &report }.encode(&mut payload);
                self.push_transmit(dest, payload);
                self.stats.updates_sent += 1;
            }
        }
    }
}

/// The state-change record of one channel.
pub(super) fn record(kind: RecordType, c: Channel) -> GroupRecord {
    GroupRecord { kind, group: c.group, sources: c.source.into_iter().collect() }
}

/// Whether a record is the one of `source` (`None`: any-source, no sources).
pub(super) fn record_matches(r: &GroupRecord, source: Option<IpAddr>) -> bool {
    match source {
        Some(s) => r.sources.contains(&s),
        None => r.sources.is_empty(),
    }
}
