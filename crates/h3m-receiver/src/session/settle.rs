//! The end of a session: resources still assembling settled, copies without
//! headers and lost pushes judged, the summary and the outcome.

use super::*;

impl<'r, 'w, S: ResourceSink> Session<'r, 'w, S> {
    /// Settles every resource still being assembled (at the end of a session),
    /// then reports the copies that never got their headers, unless another
    /// copy wrote their path.
    ///
    /// When holding for a unicast repair, incomplete resources are held and
    /// the copies without headers and lost pushes wait too (the repair may
    /// find them in the origin's listing): [`release_held`](Self::release_held)
    /// judges what is left.
    pub(crate) fn settle_all(&mut self) {
        let mut ids: Vec<u64> = self.assembling.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.try_commit(id, true);
        }
        self.poll_commits(true);
        if !self.hold_for_repair {
            self.judge_deferred();
        }
    }

    /// Judges the copies that never got their headers, the unpromised
    /// streams and the lost pushes deferred to the end of the session.
    pub(super) fn judge_deferred(&mut self) {
        let written: std::collections::HashSet<[u8; 32]> = self.written.values().copied().collect();
        for (push_id, stream_id, digest) in std::mem::take(&mut self.unpromised_pending) {
            if digest.is_some_and(|d| written.contains(&d)) {
                self.repeats += 1;
                continue;
            }
            self.judge_unpromised(push_id, stream_id, None);
        }
        // A copy whose promise came but whose stream start was lost is seen
        // twice: from the promise (here) and as a headless stream (below, by
        // the push ID its stream number gives). It is judged once, here.
        let mut judged = std::collections::HashSet::new();
        for (rel, record) in std::mem::take(&mut self.headless) {
            judged.insert(record.push_id);
            if rel.as_ref().is_some_and(|r| self.written.contains_key(r)) {
                self.repeats += 1;
                continue;
            }
            self.push_record(record);
        }
        // A push whose promise and stream start were lost but whose later
        // bytes came is also seen twice: lost (no promise, no stream start)
        // and headless (by its stream number). It is judged once, headless.
        let headless: std::collections::HashSet<u64> =
            self.lost_pending.iter().filter(|l| l.1.is_some()).filter_map(|l| l.0).collect();
        for (push_id, stream_id, bytes) in std::mem::take(&mut self.lost_pending) {
            if stream_id.is_some() && push_id.is_some_and(|p| judged.contains(&p)) {
                continue;
            }
            if stream_id.is_none() && push_id.is_some_and(|p| headless.contains(&p)) {
                continue;
            }
            self.judge_lost(push_id, stream_id, bytes);
        }
    }

    pub(super) fn defer_lost(&mut self, push_id: Option<u64>, stream_id: Option<u64>, bytes: u64) {
        if self.lost_pending.len() < MAX_DEFERRED {
            self.lost_pending.push((push_id, stream_id, bytes));
        } else {
            self.judge_lost(push_id, stream_id, bytes);
        }
    }

    /// A push lost whole, or a stream seen without its start: a repeat if a
    /// written resource's promise listed it as a copy, else reported.
    pub(super) fn judge_lost(&mut self, push_id: Option<u64>, stream_id: Option<u64>, bytes: u64) {
        if push_id.is_some_and(|p| self.accounted.contains(&p)) {
            self.repeats += 1;
            return;
        }
        match (stream_id, push_id) {
            (Some(stream_id), _) => {
                self.tally.headless += 1;
                self.reporter.emit_limited(|| Record::HeadlessStream { stream_id, bytes });
            }
            (None, Some(push_id)) => {
                self.tally.lost += 1;
                self.reporter.emit_limited(|| Record::LostPush { push_id });
            }
            (None, None) => {}
        }
    }

    /// An unpromised push stream: a repeat if its digest is that of a
    /// resource written intact, else reported.
    pub(super) fn judge_unpromised(&mut self, push_id: u64, stream_id: u64, digest: Option<[u8; 32]>) {
        if digest.is_some_and(|d| self.written.values().any(|w| *w == d)) {
            self.repeats += 1;
            return;
        }
        self.tally.unpromised += 1;
        if self.unpromised.len() < MAX_RETAINED_RECORDS {
            self.unpromised.push((push_id, stream_id));
        }
        self.reporter.emit_limited(|| Record::UnpromisedPush { push_id, stream_id });
    }

    /// The final summary and outcome.
    pub(crate) fn finish(self, capture: CaptureStats) -> Outcome {
        self.finish_parts(capture).0
    }

    /// The final summary and outcome, with the sink and the reporter back.
    pub(crate) fn finish_parts(mut self, capture: CaptureStats) -> (Outcome, S, ReporterRef<'r, 'w>) {
        // Pushes the receiver never finished (it finishes all on `finish`).
        let mut left: Vec<u64> = self.pushes.keys().copied().collect();
        left.sort_unstable();
        for push_id in left {
            self.on_finished(PushSummary {
                push_id,
                status: PushStatus::Incomplete(h3m_proto::receiver::IncompleteReason::SessionEnded),
                body_len: 0,
                missing: Vec::new(),
                missing_from: Some(0),
            });
        }
        self.settle_all();
        self.flush_qlog();
        // What is still held for a repair that did not run (or was
        // interrupted) is reported now, then the deferred judgements.
        self.release_held();
        let stats = self.receiver.stats();
        if stats.packets == 0 && stats.foreign_session > 0 {
            let message = format!(
                "{} datagrams of other sessions seen and none of session {}: check --session-id",
                stats.foreign_session,
                self.receiver.config().session_id
            );
            self.run_error(ErrorKind::WrongSession, message);
        }
        // Its end signal names every push before it; without it, what came
        // after the last push seen is unknown.
        let ended_by_signal = matches!(self.session_end, Some("goaway" | "connection_close"));
        // Under AMBI, datagrams dropped unauthenticated (no manifest in time,
        // or over the hold budget) may have carried resources no line can
        // name, when the session's end signal (which names every push before
        // it) never came: the run did not deliver everything.
        if let Some(a) = &self.ambi
            && a.expired + a.over_budget > 0
            && !ended_by_signal
        {
            let message = format!(
                "{} datagrams dropped unauthenticated ({} expired waiting for a manifest, {} over the hold budget) \
                 and the session's end signal never came: resources they carried may be missing",
                a.expired + a.over_budget,
                a.expired,
                a.over_budget
            );
            self.run_error(ErrorKind::Unauthenticated, message);
        }
        // A resource reported incomplete by one copy and written by another
        // (or a later session) is not incomplete.
        let t = &self.tally;
        let recovered = t.incomplete_names.iter().filter(|n| self.written.contains_key(&name_path(n))).count() as u64;
        let mut summary = SummaryRecord {
            exit_status: 0,
            resources_complete: t.complete,
            resources_incomplete: t.incomplete.saturating_sub(recovered),
            resources_refused: t.refused,
            resources_failed: t.failed,
            resources_repeated: self.repeats,
            resources_merged: t.merged,
            resources_repaired: t.repaired,
            repaired_bytes: t.repaired_bytes,
            unpromised_pushes: t.unpromised,
            lost_pushes: t.lost,
            headless_streams: t.headless,
            suppressed_lines: self.reporter.suppressed(),
            bytes_written: t.bytes_written,
            session_end: self.session_end,
            last_push_id: if ended_by_signal { None } else { self.receiver.highest_push_id() },
            ambi: self.ambi,
            capture,
            receiver: self.receiver.stats().clone(),
        };
        let t = &self.tally;
        let io_failed = t.io_errors > 0 || summary.resources_failed > 0;
        let status = if io_failed {
            ExitStatus::OutputError
        } else if t.input_errors > 0 {
            ExitStatus::BadInput
        } else if summary.resources_incomplete
            + summary.resources_refused
            + summary.unpromised_pushes
            + summary.lost_pushes
            + summary.headless_streams
            > 0
            || t.errors > 0
            || t.settled == 0
        {
            ExitStatus::Incomplete
        } else {
            ExitStatus::Success
        };
        summary.exit_status = status.code();
        self.reporter.emit(&Record::Summary(Box::new(summary.clone())));
        let outcome = Outcome {
            status,
            resources: self.resources,
            errors: self.errors,
            unpromised: self.unpromised,
            summary: Some(summary),
        };
        (outcome, self.writer, self.reporter)
    }
}
