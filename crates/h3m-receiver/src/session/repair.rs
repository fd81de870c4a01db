//! Unicast repair, the session's side: resources still incomplete when the
//! session ends are *held* (their bytes so far stay in the sink, the file
//! closed) instead of reported; the driver ([`crate::unicast_repair`]) asks
//! for their [gaps](Session::repair_wants), hands back the bytes the origin
//! sent ([`Session::repair_data`]) and ends each one
//! ([`Session::repair_done`]): committed through the same checks as any
//! resource (whole body, SHA-256, signatures), or reported incomplete with
//! the ranges still missing.

use std::ops::Range;

use super::*;

/// What a held resource lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RepairWant {
    /// The resource.
    pub(crate) id: u64,
    /// Its `:path` as pushed.
    pub(crate) path: String,
    /// Its promise's `:authority`.
    pub(crate) authority: Option<String>,
    /// The missing byte ranges; the last ends at `u64::MAX` when the length
    /// is unknown (everything from there on).
    pub(crate) gaps: Vec<Range<u64>>,
}

impl Resource {
    /// Whether a repair could complete it: a path to ask for. What comes
    /// back is verified by the digest the session announced, or else (the
    /// digest was to come in trailers that were lost) by the one the origin
    /// announces with the bytes; without either nothing is written.
    pub(super) fn is_repairable(&self) -> bool {
        self.raw_path.is_some()
    }

    /// The byte ranges it lacks.
    fn gaps(&self) -> Vec<Range<u64>> {
        match self.length {
            Some(len) => self.have.gaps(0..len),
            None => {
                let end = self.have.max_end();
                let mut gaps = self.have.gaps(0..end);
                gaps.push(end..u64::MAX);
                gaps
            }
        }
    }
}

impl<S: ResourceSink> Session<'_, '_, S> {
    /// Holds resources still incomplete at the end of a session for a
    /// unicast repair (see the module docs), up to [`MAX_HELD_FOR_REPAIR`].
    pub(crate) fn set_hold_for_repair(&mut self, hold: bool) {
        self.hold_for_repair = hold;
    }

    /// Keeps `r` for a repair; its ranges stay counted in the range budget.
    pub(super) fn hold(&mut self, id: u64, r: Resource) {
        if let Err(e) = self.writer.park(id) {
            let (status, reason, kind) = Self::classify(&e);
            self.error(kind, r.first_push, r.raw_path.as_deref(), e.to_string());
            self.settle(&r, status, Some(reason), None);
            return;
        }
        self.ranges_held += r.have.range_count();
        self.held.insert(id, r);
    }

    /// What each held resource lacks, in resource order.
    pub(crate) fn repair_wants(&self) -> Vec<RepairWant> {
        let mut wants: Vec<RepairWant> = self
            .held
            .iter()
            .map(|(&id, r)| RepairWant {
                id,
                path: r.raw_path.as_deref().map(lossy).unwrap_or_default(),
                authority: r.authority.as_deref().map(lossy),
                gaps: r.gaps(),
            })
            .collect();
        wants.sort_by_key(|w| w.id);
        wants
    }

    /// Bytes the origin sent for held resource `id` at `offset`; `complete`
    /// is the whole length and `sha256` the whole body's digest, if the
    /// origin said. Only bytes still missing are written. The origin's
    /// digest is taken only where the session announced none (its trailers
    /// were lost): the body is then verified against it, as the origin is
    /// authenticated by TLS (with `--trust`, the signature the trailers
    /// carried is still required). `false` if the resource is no longer
    /// held (a write failed).
    pub(crate) fn repair_data(
        &mut self,
        id: u64,
        offset: u64,
        data: &[u8],
        complete: Option<u64>,
        sha256: Option<[u8; 32]>,
    ) -> bool {
        if let Some(r) = self.held.get_mut(&id) {
            if r.length.is_none() {
                r.length = complete;
            }
            if r.digest().is_none() {
                r.trailer_sha256 = sha256;
            }
        }
        self.held_write(id, offset, data, true)
    }

    /// Bytes of a headless push stream of held resource `id` (its head lost,
    /// so the core could not place them): `segments` at stream offsets, the
    /// body starting at stream offset `body_offset`. They count as received,
    /// not repaired.
    pub(crate) fn place_headless(&mut self, id: u64, body_offset: u64, segments: &[(u64, Vec<u8>)]) {
        for (at, bytes) in segments {
            let skip = body_offset.saturating_sub(*at).min(bytes.len() as u64) as usize;
            let offset = (*at + skip as u64).saturating_sub(body_offset);
            if !self.held_write(id, offset, &bytes[skip..], false) {
                return;
            }
        }
    }

    /// Writes body bytes into held resource `id`, only those still missing;
    /// `repair` counts them as fetched. `false` if it is no longer held.
    fn held_write(&mut self, id: u64, offset: u64, data: &[u8], repair: bool) -> bool {
        let Some(r) = self.held.get_mut(&id) else { return false };
        let end = offset.saturating_add(data.len() as u64).min(r.length.unwrap_or(u64::MAX));
        if end <= offset {
            return true;
        }
        let data = &data[..(end - offset) as usize];
        match write_missing(&mut self.writer, id, &r.have, offset, data) {
            Ok(written) => {
                if repair {
                    r.repair_bytes += written;
                }
                note_held(&mut r.have, offset..end, &mut self.ranges_held);
                true
            }
            Err(e) => {
                let Some(r) = self.held.remove(&id) else { return false };
                self.ranges_held = self.ranges_held.saturating_sub(r.have.range_count());
                let (status, reason, kind) = Self::classify(&e);
                self.error(kind, r.first_push, r.raw_path.as_deref(), e.to_string());
                self.writer.abort(id);
                self.settle(&r, status, Some(reason), None);
                false
            }
        }
    }

    /// Ends the repair of held resource `id`: committed if it is whole now
    /// (digest and signatures checked), else reported incomplete, with
    /// `failure` (why the repair fell short) as the reason.
    pub(crate) fn repair_done(&mut self, id: u64, failure: Option<String>) {
        let Some(mut r) = self.held.remove(&id) else { return };
        r.repair_tried = true;
        let whole = r.length.is_some_and(|len| r.have.contains(0..len));
        let verifiable = r.digest().is_some();
        if whole && verifiable {
            // Back among those assembled, committed the usual way.
            self.assembling.insert(id, r);
            self.try_commit(id, true);
            return;
        }
        self.ranges_held = self.ranges_held.saturating_sub(r.have.range_count());
        let _ = self.writer.park(id);
        self.writer.abort(id);
        let short = if whole {
            "no digest to verify the body by (the session's trailers were lost and the origin announced none)"
        } else {
            "the origin sent too little"
        };
        let reason = format!("repair failed: {}", failure.as_deref().unwrap_or(short));
        self.settle(&r, ResourceStatus::Incomplete, Some(reason), None);
    }

    /// Reports every held resource incomplete (no repair ran, or it was
    /// interrupted), judges the orphans left, and holds no more.
    pub(crate) fn release_held(&mut self) {
        self.hold_for_repair = false;
        let mut ids: Vec<u64> = self.held.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.drop_held(id, None);
        }
        self.judge_deferred();
    }

    /// Push IDs whose resource the session never learnt (promise lost, or
    /// promise and stream both lost, or the response headers lost): a repair
    /// can find them in the origin's listing ([`adopt`](Self::adopt)).
    pub(crate) fn orphan_push_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .unpromised_pending
            .iter()
            .map(|o| o.0)
            .chain(self.headless.iter().map(|(_, r)| r.push_id))
            .chain(self.lost_pending.iter().filter_map(|l| l.0))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The `:authority` of the first promise seen.
    pub(crate) fn authority_seen(&self) -> Option<String> {
        self.authority_seen.as_deref().map(lossy)
    }

    /// The origin's listing says push `push_id` carried the resource at
    /// `path` (`length` bytes, SHA-256 `sha256`): it is held for a repair,
    /// unless it is a copy of a resource written or held already (then a
    /// repeat). Without a digest (nothing to verify it by) or with a refused
    /// path, it stays an orphan. Returns the held resource its bytes belong
    /// to (new, or a copy held already).
    pub(crate) fn adopt(
        &mut self,
        push_id: u64,
        path: &str,
        length: Option<u64>,
        sha256: Option<[u8; 32]>,
    ) -> Option<u64> {
        let sha256 = sha256?;
        let rel = paths::sanitize(path.as_bytes()).ok()?;
        let held_copy = self
            .held
            .iter()
            .find(|(_, r)| r.rel == rel && r.digest() == Some(sha256))
            .map(|(&id, r)| (id, r.first_push));
        let mut adopted = held_copy.map(|(id, _)| id);
        if let Some((_, first)) = held_copy {
            // Another copy (unless it is the one adopted from this push's stream).
            if first != push_id {
                self.repeats += 1;
            }
        } else if self.written.get(&rel) == Some(&sha256) {
            self.repeats += 1;
        } else {
            if self.held.len() >= MAX_HELD_FOR_REPAIR {
                return None;
            }
            let id = self.next_resource;
            self.writer.begin(id, rel.clone()).ok()?;
            if let Some(len) = length {
                self.writer.expect_length(id, len);
            }
            self.next_resource += 1;
            adopted = Some(id);
            let r = Resource {
                raw_path: Some(path.as_bytes().to_vec()),
                rel,
                sha256: Some(sha256),
                trailer_sha256: None,
                length,
                have: RangeSet::new(),
                active: 0,
                copies: 1,
                fec_bytes: 0,
                repair_bytes: 0,
                repair_tried: false,
                authority: self.authority_seen.clone(),
                last: None,
                first_push: push_id,
                touched: self.clock_tick,
                copy_ids: Vec::new(),
                copy_headers: Vec::new(),
            };
            self.held.insert(id, r);
        }
        self.unpromised_pending.retain(|o| o.0 != push_id);
        self.headless.retain(|(_, r)| r.push_id != push_id);
        self.lost_pending.retain(|l| l.0 != Some(push_id));
        adopted
    }

    /// Reports held resource `id` incomplete.
    fn drop_held(&mut self, id: u64, reason: Option<&str>) {
        let Some(r) = self.held.remove(&id) else { return };
        self.ranges_held = self.ranges_held.saturating_sub(r.have.range_count());
        self.writer.abort(id);
        let reason = reason.map(str::to_owned).unwrap_or_else(|| match &r.last {
            Some(PushSummary { status: PushStatus::Incomplete(reason), .. }) => report::incomplete_reason(reason),
            _ => "session_ended".to_owned(),
        });
        self.settle(&r, ResourceStatus::Incomplete, Some(reason), None);
    }

    /// Over the range budget with nothing assembling: the most fragmented
    /// held resource is reported incomplete. `false` if none is held.
    pub(super) fn drop_most_fragmented_held(&mut self) -> bool {
        let Some((&id, _)) = self.held.iter().max_by_key(|(_, r)| r.have.range_count()) else { return false };
        self.drop_held(id, Some("too fragmented: the range budget is spent"));
        true
    }
}
