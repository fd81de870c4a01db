//! Receiver events to files and report records, shared by the offline
//! (capture) and live (socket) modes.
//!
//! A *push* is one copy of a resource on the wire; a *resource* is what gets
//! written. Copies of the same resource (same `:path` and same announced
//! SHA-256, as `h3m-send --repeat` sends them) write into one partial file:
//! each body byte is written once, from whichever copy brings it first, so
//! copies that each lost different packets complete the resource together. A
//! resource is committed (temporary file, then rename) only when every byte up
//! to its length is present and its SHA-256 matches the announced one. Copies
//! of a resource already written intact are recognised and not written again.
//!
//! One `resource` record is reported per resource: when it is written, when it
//! fails for good, or, if still incomplete, when the session ends.
//!
//! Just before a resource is committed, the checks of [`crate::verify`] run
//! (`--require-digest`, and with `--trust` the signatures of its copies, any
//! one of which may vouch for it); a resource that fails them is refused and
//! not written.

use std::collections::HashMap;
use std::path::PathBuf;

use h3m_proto::auth::digest::{Announced, announced_consistent};
use h3m_proto::auth::{self, Push};
use h3m_proto::qpack::HeaderField;
use h3m_proto::receiver::{Event, PushStatus, PushSummary, RangeSet, Receiver, SessionEndReason};

use crate::capture::CaptureStats;
use crate::digest::announced_sha256;
use crate::paths;
use crate::report::{self, ErrorKind, ErrorRecord, Record, Reporter, ResourceRecord, ResourceStatus, SummaryRecord};
use crate::sink::{Commit, ResourceSink};
use crate::verify::{Clock, VerifyOptions};
use crate::writer::{WriteError, Written};

mod outcome;
mod records;
mod repair;
mod settle;
mod state;

pub use outcome::{ExitStatus, Outcome};
pub(crate) use repair::RepairWant;
use state::*;
pub use state::{MAX_ASSEMBLING, MAX_HELD_FOR_REPAIR, MAX_RETAINED_RECORDS};

/// The reporter of a session: the caller's (the command line's, printing),
/// or its own (an embedded session's queue).
pub(crate) enum ReporterRef<'r, 'w> {
    Borrowed(&'r mut Reporter<'w>),
    Owned(Reporter<'w>),
}

impl<'w> std::ops::Deref for ReporterRef<'_, 'w> {
    type Target = Reporter<'w>;
    fn deref(&self) -> &Reporter<'w> {
        match self {
            ReporterRef::Borrowed(r) => r,
            ReporterRef::Owned(r) => r,
        }
    }
}

impl<'w> std::ops::DerefMut for ReporterRef<'_, 'w> {
    fn deref_mut(&mut self) -> &mut Reporter<'w> {
        match self {
            ReporterRef::Borrowed(r) => r,
            ReporterRef::Owned(r) => r,
        }
    }
}

/// Receiver events to resources (in a [`ResourceSink`]) and records.
pub(crate) struct Session<'r, 'w, S: ResourceSink = crate::writer::ResourceWriter> {
    pub(crate) receiver: Receiver,
    pub(crate) writer: S,
    pub(crate) reporter: ReporterRef<'r, 'w>,
    pushes: foldhash::HashMap<u64, PushState>,
    assembling: foldhash::HashMap<u64, Resource>,
    /// Incomplete resources kept, their bytes so far in the sink, for a
    /// unicast repair ([`Session::set_hold_for_repair`]).
    held: foldhash::HashMap<u64, Resource>,
    /// Resources whole and admitted whose commit the sink finishes on a
    /// thread of its own ([`ResourceSink::commit_later`]): settled when it
    /// is done ([`Session::poll_commits`]).
    committing: foldhash::HashMap<u64, Resource>,
    /// Whether commits may finish later ([`Session::set_commit_later`]).
    commit_later: bool,
    hold_for_repair: bool,
    /// The `:authority` of the first promise (where `--repair auto` asks
    /// for what no held resource names).
    authority_seen: Option<Vec<u8>>,
    /// Disjoint received ranges across the resources being assembled (their
    /// `have` sets, which the sink's out-of-order bookkeeping mirrors), within
    /// the receiver's range budget ([`ReceiverConfig::max_ranges_total`]).
    ///
    /// [`ReceiverConfig::max_ranges_total`]: h3m_proto::receiver::ReceiverConfig::max_ranges_total
    ranges_held: usize,
    /// `(path, sha256)` of resources being assembled, to resource IDs.
    by_identity: HashMap<(PathBuf, [u8; 32]), u64>,
    /// Paths written intact in this run, with their SHA-256.
    written: HashMap<PathBuf, [u8; 32]>,
    next_resource: u64,
    repeats: u64,
    /// Pushes that ended before their response headers, so unmatched to any
    /// resource: reported at the end unless another copy wrote their path.
    headless: Vec<(Option<PathBuf>, ResourceRecord)>,
    /// Push streams whose promise never came: `(push_id, stream_id, digest)`.
    /// Judged at the end: a copy of a resource written intact is a repeat.
    unpromised_pending: Vec<(u64, u64, Option<[u8; 32]>)>,
    resources: Vec<ResourceRecord>,
    errors: Vec<ErrorRecord>,
    unpromised: Vec<(u64, u64)>,
    tally: Tally,
    /// With `--trust`: a verified push carried `connection: close`.
    trusted_close: bool,
    /// Push IDs known to be copies of resources written intact (from
    /// `h3m-copies`): a copy of them lost whole is a lost repeat, not a loss.
    accounted: foldhash::HashSet<u64>,
    /// Lost pushes and headless streams, judged at the end of the session:
    /// `(push ID if known, stream ID if headless, bytes)`.
    lost_pending: Vec<(Option<u64>, Option<u64>, u64)>,
    /// A use counter for [`Resource::touched`].
    clock_tick: u64,
    pub(crate) session_end: Option<&'static str>,
    /// What AMBI's gate did (live runs with `--ambi`), for the summary.
    pub(crate) ambi: Option<crate::ambi::AmbiCounters>,
    verify: VerifyOptions,
    clock: Clock,
    /// `--qlog`: the trace, and the time of the last datagram (push events
    /// are stamped with it). Dropped after a write error.
    qlog: Option<Box<h3m_proto::qlog::QlogTrace>>,
    qlog_now: std::time::Instant,
}

impl<'r, 'w, S: ResourceSink> Session<'r, 'w, S> {
    pub(crate) fn new(receiver: Receiver, sink: S, reporter: &'r mut Reporter<'w>) -> Self {
        Self::with_reporter(receiver, sink, ReporterRef::Borrowed(reporter))
    }

    pub(crate) fn with_reporter(receiver: Receiver, writer: S, reporter: ReporterRef<'r, 'w>) -> Self {
        Session {
            receiver,
            writer,
            reporter,
            pushes: foldhash::HashMap::default(),
            assembling: foldhash::HashMap::default(),
            held: foldhash::HashMap::default(),
            committing: foldhash::HashMap::default(),
            commit_later: false,
            hold_for_repair: false,
            authority_seen: None,
            ranges_held: 0,
            by_identity: HashMap::new(),
            written: HashMap::new(),
            next_resource: 0,
            repeats: 0,
            headless: Vec::new(),
            unpromised_pending: Vec::new(),
            resources: Vec::new(),
            errors: Vec::new(),
            unpromised: Vec::new(),
            tally: Tally::default(),
            trusted_close: false,
            accounted: foldhash::HashSet::default(),
            lost_pending: Vec::new(),
            clock_tick: 0,
            session_end: None,
            ambi: None,
            verify: VerifyOptions::default(),
            clock: Clock::None,
            qlog: None,
            qlog_now: std::time::Instant::now(),
        }
    }

    /// Sets the checks made before a resource is written.
    pub(crate) fn set_verify(&mut self, verify: VerifyOptions) {
        // With signatures checked, only a verified push may end the session.
        self.receiver.set_end_signals(!verify.checks_signatures());
        self.verify = verify;
    }

    /// Sets the clock of the freshness check (for a capture: the timestamp of
    /// the datagram about to be handled).
    pub(crate) fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    /// Sets the qlog trace (`None`: off).
    pub(crate) fn set_qlog(&mut self, qlog: Option<Box<h3m_proto::qlog::QlogTrace>>) {
        self.qlog = qlog;
    }

    /// Hands a datagram of the session to the receiver, logging it first when
    /// qlog is on.
    pub(crate) fn receive(&mut self, now: std::time::Instant, datagram: &[u8]) {
        self.log_received(now, datagram);
        self.receiver.handle_datagram(now, datagram);
    }

    /// A datagram FEC rebuilt (packet number `pn`) that the caller checked
    /// ([`h3m_proto::receiver::ReceiverConfig::recovered_to_caller`]); not
    /// logged, as rebuilt datagrams are not otherwise.
    pub(crate) fn receive_recovered(&mut self, now: std::time::Instant, pn: u64, datagram: &[u8]) {
        self.receiver.handle_recovered_datagram(now, pn, datagram);
    }

    /// The qlog record of a datagram handed to the receiver.
    fn log_received(&mut self, now: std::time::Instant, datagram: &[u8]) {
        if let Some(q) = self.qlog.as_mut() {
            self.qlog_now = now;
            let config = self.receiver.config();
            let r = q.datagram(
                now,
                h3m_proto::qlog::Direction::Received,
                datagram,
                &config.session_id,
                config.protection.as_ref(),
            );
            self.qlog_result(r);
        }
    }

    /// Turns qlog off after a write error, with a warning.
    fn qlog_result(&mut self, r: Result<(), h3m_proto::qlog::QlogError>) {
        if let Err(e) = r {
            tracing::warn!(error = %e, "qlog off");
            self.qlog = None;
        }
    }

    /// Flushes the qlog trace.
    pub(crate) fn flush_qlog(&mut self) {
        if let Some(q) = self.qlog.as_mut() {
            let r = q.flush();
            self.qlog_result(r);
        }
    }

    /// Handles every event the receiver has, and settles the commits done.
    pub(crate) fn drain(&mut self) {
        while let Some(event) = self.receiver.poll_event() {
            self.on_event(event);
        }
        self.poll_commits(false);
        if self.trusted_close && !self.receiver.is_ended() && self.receiver.active_pushes() == 0 {
            // A verified push said `connection: close` and nothing is in flight.
            self.receiver.end(std::time::Instant::now(), SessionEndReason::ConnectionClose);
            while let Some(event) = self.receiver.poll_event() {
                self.on_event(event);
            }
        }
    }

    /// Settles this session and starts listening for the next one on the
    /// same input (`--follow`); counters carry over.
    pub(crate) fn next_session(&mut self) {
        self.receiver.finish(std::time::Instant::now());
        self.drain();
        self.settle_all();
        self.receiver.next_session();
        self.trusted_close = false;
    }

    /// Resources reported so far.
    pub(crate) fn settled_count(&self) -> u64 {
        self.tally.settled
    }

    /// Whether everything seen so far is settled intact: nothing being
    /// assembled, nothing reported incomplete (or it was written since),
    /// refused or failed, no push known lost, no stream without its start,
    /// no unpromised stream. A live run whose session has ended then has
    /// nothing to wait for.
    pub(crate) fn all_intact(&self) -> bool {
        let t = &self.tally;
        self.assembling.is_empty()
            && self.pushes.is_empty()
            && self.lost_pending.is_empty()
            && self.headless.is_empty()
            && self.unpromised_pending.is_empty()
            && t.refused + t.failed + t.lost + t.headless + t.unpromised == 0
            && t.incomplete_names.iter().all(|n| self.written.contains_key(&name_path(n)))
    }

    fn classify(e: &WriteError) -> (ResourceStatus, String, ErrorKind) {
        match e {
            WriteError::Refused(_) => (ResourceStatus::Refused, e.to_string(), ErrorKind::RefusedPath),
            WriteError::Io { .. } => (ResourceStatus::Failed, format!("io_error: {e}"), ErrorKind::Io),
            WriteError::Inconsistent(_) => (ResourceStatus::Incomplete, e.to_string(), ErrorKind::Inconsistent),
            WriteError::DigestMismatch { .. } => (ResourceStatus::Incomplete, e.to_string(), ErrorKind::DigestMismatch),
            WriteError::OverBudget { .. } => (ResourceStatus::Incomplete, e.to_string(), ErrorKind::OverBudget),
        }
    }

    fn on_event(&mut self, event: Event) {
        // A push's events (not its body data, the hot path) run in a `push`
        // span, so what is logged while handling them names the push.
        let push_id = match &event {
            Event::PushPromised { push_id, .. }
            | Event::ResponseHeaders { push_id, .. }
            | Event::Trailers { push_id, .. }
            | Event::UnpromisedPush { push_id, .. }
            | Event::PushLost { push_id } => Some(*push_id),
            Event::PushFinished(summary) => Some(summary.push_id),
            _ => None,
        };
        let _push = push_id.map(|push_id| tracing::debug_span!("push", push_id).entered());
        match event {
            Event::PushPromised { push_id, request } => self.on_promise(push_id, &request),
            Event::ResponseHeaders { push_id, headers } => {
                self.reporter
                    .emit_progress(|| Record::ResponseHeaders { push_id, headers: report::header_pairs(&headers) });
                self.on_response(push_id, &headers);
            }
            Event::Trailers { push_id, headers } => {
                self.reporter.emit_progress(|| Record::Trailers { push_id, headers: report::header_pairs(&headers) });
                self.on_trailers(push_id, headers);
            }
            Event::BodyData { push_id, offset, data, fec } => {
                self.on_data(push_id, offset, &data, fec);
                // Its buffer holds the next datagram's bytes.
                self.receiver.recycle(data);
            }
            Event::PushFinished(summary) => self.on_finished(summary),
            Event::UnpromisedPush { push_id, stream_id, response } => {
                let digest = response.as_deref().and_then(announced_sha256);
                if self.unpromised_pending.len() < MAX_DEFERRED {
                    self.unpromised_pending.push((push_id, stream_id, digest));
                } else {
                    self.judge_unpromised(push_id, stream_id, digest);
                }
            }
            Event::PushLost { push_id } => self.defer_lost(Some(push_id), None, 0),
            Event::HeadlessStream { stream_id, bytes, likely_push_id } => {
                self.defer_lost(likely_push_id, Some(stream_id), bytes);
            }
            Event::SessionEnd { reason } => {
                let reason = report::session_end_reason(reason);
                tracing::info!(reason, "session ended");
                self.session_end = Some(reason);
                self.reporter.emit(&Record::SessionEnd { reason });
            }
        }
    }

    fn on_promise(&mut self, push_id: u64, request: &[HeaderField]) {
        // Reported lost (or its stream headless) at the session's end, then
        // promised after all (FEC rebuilt the datagram that held its promise
        // and stream start): not lost; its own fate says the rest.
        self.lost_pending.retain(|&(lost, _, _)| lost != Some(push_id));
        let raw_path = field(request, b":path").map(<[u8]>::to_vec);
        if let Some(q) = self.qlog.as_mut() {
            let r = q.push_promised(self.qlog_now, push_id, &lossy(raw_path.as_deref().unwrap_or_default()));
            self.qlog_result(r);
        }
        self.reporter.emit_progress(|| Record::PushPromised {
            push_id,
            path: raw_path.as_deref().map(lossy),
            request: report::header_pairs(request),
        });
        let (rel, fate) = match raw_path.as_deref().ok_or(paths::PathError::Missing).and_then(paths::sanitize) {
            Ok(rel) => (Some(rel), Fate::Pending),
            Err(e) => {
                let e = WriteError::Refused(e);
                let (status, reason, kind) = Self::classify(&e);
                self.error(kind, push_id, raw_path.as_deref(), e.to_string());
                (None, Fate::Dead { status, reason })
            }
        };
        let copies = copies_of(request);
        let authority = field(request, b":authority").map(<[u8]>::to_vec);
        if self.authority_seen.is_none() {
            self.authority_seen.clone_from(&authority);
        }
        let request = if self.verify.checks_signatures() { request.to_vec() } else { Vec::new() };
        self.pushes.insert(push_id, PushState { request, raw_path, rel, received: 0, copies, authority, fate });
    }

    /// Picks the push's resource: a copy of one written intact (ignored), one
    /// being assembled (same path and digest), or a new one.
    fn on_response(&mut self, push_id: u64, headers: &[HeaderField]) {
        let Some(state) = self.pushes.get_mut(&push_id) else { return };
        if !matches!(state.fate, Fate::Pending) {
            return;
        }
        let Some(rel) = state.rel.clone() else { return };
        let announced = announced_consistent(headers);
        if announced == Announced::Conflicting {
            let reason = "refused: the digest fields disagree".to_owned();
            state.fate = Fate::Dead { status: ResourceStatus::Refused, reason: reason.clone() };
            let raw_path = state.raw_path.clone();
            self.error(ErrorKind::DigestMismatch, push_id, raw_path.as_deref(), reason);
            return;
        }
        let copy = self.verify.checks_signatures().then(|| CopyHeaders {
            push_id,
            request: std::mem::take(&mut state.request),
            response: headers.to_vec(),
            trailers: Vec::new(),
        });
        // The digest fields agree (or there are none): the first is the SHA-256.
        let sha256 = match announced {
            Announced::Sha256(d) => Some(d),
            Announced::None | Announced::Conflicting => None,
        };
        let length = field(headers, b"content-length")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(d) = sha256 {
            if self.written.get(&rel) == Some(&d) {
                state.fate = Fate::Repeat;
                if self.accounted.len() < MAX_NAMES * 4 {
                    self.accounted.extend(state.copies.iter().copied());
                }
                return;
            }
            if let Some(&id) = self.by_identity.get(&(rel.clone(), d))
                && let Some(r) = self.assembling.get_mut(&id)
            {
                r.active += 1;
                r.copies += 1;
                r.length = r.length.or(length);
                for c in &state.copies {
                    if r.copy_ids.len() < MAX_COPIES && !r.copy_ids.contains(c) {
                        r.copy_ids.push(*c);
                    }
                }
                if let Some(c) = copy
                    && r.copy_headers.len() < MAX_COPY_HEADERS
                {
                    r.copy_headers.push(c);
                }
                state.fate = Fate::Into(id);
                return;
            }
        }
        let id = self.next_resource;
        self.next_resource += 1;
        let raw_path = state.raw_path.clone();
        if self.assembling.len() >= MAX_ASSEMBLING {
            self.evict_assembling();
        }
        let Some(state) = self.pushes.get_mut(&push_id) else { return };
        match self.writer.begin(id, rel.clone()) {
            Ok(()) => {
                if let Some(len) = length {
                    self.writer.expect_length(id, len);
                }
                state.fate = Fate::Into(id);
                if let Some(d) = sha256 {
                    self.by_identity.insert((rel.clone(), d), id);
                }
                self.assembling.insert(
                    id,
                    Resource {
                        raw_path,
                        rel,
                        sha256,
                        trailer_sha256: None,
                        length,
                        have: RangeSet::new(),
                        active: 1,
                        copies: 1,
                        fec_bytes: 0,
                        repair_bytes: 0,
                        repair_tried: false,
                        authority: state.authority.clone(),
                        last: None,
                        first_push: push_id,
                        touched: self.clock_tick,
                        copy_ids: state.copies.clone(),
                        copy_headers: copy.into_iter().collect(),
                    },
                );
            }
            Err(e) => {
                let (status, reason, kind) = Self::classify(&e);
                state.fate = Fate::Dead { status, reason };
                self.error(kind, push_id, raw_path.as_deref(), e.to_string());
            }
        }
    }

    /// Trailers: kept for the signature check; a digest in them (a live
    /// body's) is the resource's digest when its headers had none.
    fn on_trailers(&mut self, push_id: u64, trailers: Vec<HeaderField>) {
        let Some(state) = self.pushes.get(&push_id) else { return };
        let Fate::Into(id) = state.fate else { return };
        let Some(r) = self.assembling.get_mut(&id) else { return };
        let known = r.digest();
        let announced = match announced_consistent(&trailers) {
            Announced::Sha256(d) if known.is_none_or(|x| x == d) => Some(d),
            Announced::None => None,
            _ => {
                let raw = r.raw_path.clone();
                let reason = "refused: the digest fields disagree".to_owned();
                self.refuse_resource(id, push_id, raw.as_deref(), ErrorKind::DigestMismatch, reason);
                return;
            }
        };
        if r.sha256.is_none() {
            r.trailer_sha256 = r.trailer_sha256.or(announced);
        }
        if let Some(c) = r.copy_headers.iter_mut().find(|c| c.push_id == push_id) {
            c.trailers = trailers;
        }
    }

    /// Makes room for one more resource being assembled: the one untouched
    /// longest (preferring one no push delivers into) is reported incomplete.
    fn evict_assembling(&mut self) {
        let Some((&id, _)) = self.assembling.iter().min_by_key(|(_, r)| (r.active > 0, r.touched)) else { return };
        self.drop_assembling(id, "evicted: too many resources in progress");
    }

    /// Keeps the session within its range budget: while it holds more
    /// disjoint ranges than the receiver's budget, the most fragmented
    /// resource is reported incomplete.
    fn enforce_range_budget(&mut self) {
        while self.ranges_held > self.receiver.config().max_ranges_total {
            let Some((&id, _)) = self.assembling.iter().max_by_key(|(_, r)| r.have.range_count()) else {
                if !self.drop_most_fragmented_held() {
                    self.ranges_held = 0;
                    return;
                }
                continue;
            };
            self.drop_assembling(id, "too fragmented: the range budget is spent");
        }
    }

    /// Reports resource `id` incomplete for `reason` and forgets it; pushes
    /// still delivering into it are done.
    fn drop_assembling(&mut self, id: u64, reason: &str) {
        let Some(r) = self.take_assembling(id) else { return };
        self.writer.abort(id);
        if let Some(d) = r.sha256 {
            self.by_identity.remove(&(r.rel.clone(), d));
        }
        self.settle(&r, ResourceStatus::Incomplete, Some(reason.into()), None);
        self.done_pushes(id);
    }

    /// Removes resource `id` from those being assembled, releasing its ranges.
    fn take_assembling(&mut self, id: u64) -> Option<Resource> {
        let r = self.assembling.remove(&id)?;
        self.ranges_held = self.ranges_held.saturating_sub(r.have.range_count());
        Some(r)
    }

    fn on_data(&mut self, push_id: u64, offset: u64, data: &[u8], fec: bool) {
        let Some(state) = self.pushes.get_mut(&push_id) else { return };
        state.received += data.len() as u64;
        let Fate::Into(id) = state.fate else { return };
        self.clock_tick += 1;
        let Some(r) = self.assembling.get_mut(&id) else { return };
        r.touched = self.clock_tick;
        let end = offset + data.len() as u64;
        let written = match write_missing(&mut self.writer, id, &r.have, offset, data) {
            Ok(n) => n,
            Err(e) => {
                let raw = r.raw_path.clone();
                self.fail_resource(id, push_id, raw.as_deref(), e);
                return;
            }
        };
        if fec {
            r.fec_bytes += written;
        }
        note_held(&mut r.have, offset..end, &mut self.ranges_held);
        if self.ranges_held > self.receiver.config().max_ranges_total {
            self.enforce_range_budget();
            if !self.assembling.contains_key(&id) {
                return;
            }
        }
        let Some(r) = self.assembling.get(&id) else { return };
        // With a digest to verify it, a resource is written as soon as its copies
        // together hold every byte, without waiting for any copy to end.
        if r.sha256.is_some() && r.length.is_some_and(|len| r.have.contains(0..len)) {
            self.try_commit(id, false);
        }
    }

    /// A resource that can no longer be written: every push into it is dead.
    fn fail_resource(&mut self, id: u64, push_id: u64, raw_path: Option<&[u8]>, e: WriteError) {
        let (status, reason, kind) = Self::classify(&e);
        self.error(kind, push_id, raw_path, e.to_string());
        self.writer.abort(id);
        if let Some(r) = self.take_assembling(id) {
            if let Some(d) = r.sha256 {
                self.by_identity.remove(&(r.rel.clone(), d));
            }
            self.settle(&r, status, Some(reason), None);
        }
        for p in self.pushes.values_mut() {
            if matches!(p.fate, Fate::Into(x) if x == id) {
                p.fate = Fate::Done;
            }
        }
    }

    /// A resource refused by a check: not written, every push into it is done.
    fn refuse_resource(&mut self, id: u64, push_id: u64, raw_path: Option<&[u8]>, kind: ErrorKind, reason: String) {
        self.error(kind, push_id, raw_path, reason.clone());
        self.writer.abort(id);
        if let Some(r) = self.take_assembling(id) {
            if let Some(d) = r.sha256 {
                self.by_identity.remove(&(r.rel.clone(), d));
            }
            self.settle(&r, ResourceStatus::Refused, Some(reason), None);
        }
        self.done_pushes(id);
    }

    /// Pushes still delivering resource `id` have nothing more to give.
    fn done_pushes(&mut self, id: u64) {
        for p in self.pushes.values_mut() {
            if matches!(p.fate, Fate::Into(x) if x == id) {
                p.fate = Fate::Done;
            }
        }
    }

    /// The checks of [`crate::verify`] for a resource about to be written:
    /// `Err((kind, reason))` refuses it.
    /// `Ok(Some(i))`: copy `i` carries the verified signature.
    fn admit(&self, r: &Resource) -> Result<Option<usize>, (ErrorKind, String)> {
        let sha256 = r.digest();
        if self.verify.require_digest && sha256.is_none() {
            return Err((ErrorKind::MissingDigest, "refused: no digest".to_owned()));
        }
        if !self.verify.checks_signatures() {
            return Ok(None);
        }
        let now = self.clock.now();
        let window = self.verify.freshness();
        let mut first_error = None;
        for (i, c) in r.copy_headers.iter().enumerate() {
            let push = Push { request: &c.request, response: &c.response, trailers: &c.trailers, body_sha256: sha256 };
            match auth::verify_push(&push, &self.verify.trust, now, &window) {
                Ok(_) => return Ok(Some(i)),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let reason = first_error.map_or_else(|| "unsigned".to_owned(), |e| e.to_string());
        Err((ErrorKind::Unauthenticated, format!("refused: {reason}")))
    }

    fn on_finished(&mut self, summary: PushSummary) {
        let push_id = summary.push_id;
        if let Some(q) = self.qlog.as_mut() {
            let r = q.push_resolved(self.qlog_now, push_id, summary.status == PushStatus::Complete);
            self.qlog_result(r);
        }
        let Some(mut state) = self.pushes.remove(&push_id) else { return };
        match std::mem::replace(&mut state.fate, Fate::Done) {
            Fate::Repeat => self.repeats += 1,
            Fate::Done => {}
            Fate::Dead { status, reason } => {
                let make = || {
                    let mut record = Self::unmatched_record(&state, &summary, status);
                    record.bytes = state.received;
                    record.reason = Some(reason);
                    if status == ResourceStatus::Refused {
                        record.name = state.raw_path.clone().unwrap_or_default();
                    }
                    record
                };
                self.push_record_with(status, push_id, make);
            }
            Fate::Pending => {
                // Finished before its response headers arrived.
                let make = || {
                    let mut record = Self::unmatched_record(&state, &summary, ResourceStatus::Incomplete);
                    if let PushStatus::Incomplete(reason) = &summary.status {
                        record.reason = Some(report::incomplete_reason(reason));
                    }
                    record
                };
                if self.headless.len() < MAX_DEFERRED {
                    let record = make();
                    self.headless.push((state.rel, record));
                } else {
                    self.push_record_with(ResourceStatus::Incomplete, push_id, make);
                }
            }
            Fate::Into(id) => {
                let Some(r) = self.assembling.get_mut(&id) else { return };
                r.active = r.active.saturating_sub(1);
                if summary.status == PushStatus::Complete {
                    r.length = Some(summary.body_len);
                }
                r.last = Some(summary);
                self.try_commit(id, false);
            }
        }
    }

    /// Commits a resource whose bytes are all here; with `final_call`, reports
    /// it incomplete otherwise.
    fn try_commit(&mut self, id: u64, final_call: bool) {
        let Some(r) = self.assembling.get(&id) else { return };
        let whole = r.length.is_some_and(|len| r.have.contains(0..len));
        // Without a digest copies cannot be matched: settle when the push ends.
        let may_wait = r.sha256.is_some() && !final_call;
        if !whole && (r.active > 0 || may_wait) {
            return;
        }
        let Some(r) = self.take_assembling(id) else { return };
        if let Some(d) = r.sha256 {
            self.by_identity.remove(&(r.rel.clone(), d));
        }
        if !whole {
            if self.hold_for_repair && !r.repair_tried && self.held.len() < MAX_HELD_FOR_REPAIR && r.is_repairable() {
                self.hold(id, r);
                return;
            }
            self.writer.abort(id);
            let reason = match &r.last {
                Some(PushSummary { status: PushStatus::Incomplete(reason), .. }) => report::incomplete_reason(reason),
                _ => "session_ended".to_owned(),
            };
            self.settle(&r, ResourceStatus::Incomplete, Some(reason), None);
            return;
        }
        let verified_copy = match self.admit(&r) {
            Ok(copy) => copy,
            Err((kind, reason)) => {
                self.writer.abort(id);
                self.error(kind, r.first_push, r.raw_path.as_deref(), reason.clone());
                self.settle(&r, ResourceStatus::Refused, Some(reason), None);
                self.done_pushes(id);
                return;
            }
        };
        if let Some(c) = verified_copy.and_then(|i| r.copy_headers.get(i))
            && c.response.iter().any(|f| f.name == b"connection" && f.value.eq_ignore_ascii_case(b"close"))
        {
            self.trusted_close = true;
        }
        let len = r.length.unwrap_or(0);
        let expected = r.digest();
        let commit = if self.commit_later {
            self.writer.commit_later(id, len, expected)
        } else {
            self.writer.commit(id, len, expected).map(Commit::Done)
        };
        match commit {
            Some(Commit::Pending) => {
                // Known written meanwhile (a copy that comes now is a
                // repeat); undone if the commit fails.
                if let Some(d) = expected {
                    self.written.insert(r.rel.clone(), d);
                }
                self.done_pushes(id);
                self.committing.insert(id, r);
            }
            Some(Commit::Done(result)) => self.on_committed(id, r, Some(result)),
            None => self.on_committed(id, r, None),
        }
    }

    /// Lets the sink finish commits on a thread of its own
    /// ([`ResourceSink::commit_later`]): for a receive loop that wakes at
    /// [`commits_due`](Self::commits_due) (the live one), so that it makes
    /// no file system calls for small resources. Off by default: each
    /// resource is settled before the call that completed it returns.
    pub(crate) fn set_commit_later(&mut self, later: bool) {
        self.commit_later = later;
    }

    /// When a receive loop with nothing else to do should settle the
    /// commits done meanwhile ([`drain`](Self::drain)): soon, while any is
    /// pending (a small file's commit takes well under a millisecond).
    pub(crate) fn commits_due(&self, now: std::time::Instant) -> Option<std::time::Instant> {
        (!self.committing.is_empty()).then(|| now + std::time::Duration::from_millis(1))
    }

    /// Settles the resources whose commit the sink finished since (with
    /// `wait`, every one still pending: at the end of a session).
    pub(crate) fn poll_commits(&mut self, wait: bool) {
        if self.committing.is_empty() {
            return;
        }
        while let Some((id, result)) = self.writer.poll_committed(wait) {
            if let Some(r) = self.committing.remove(&id) {
                // In the span of the push that completed it, as a commit done at once is.
                let push_id = r.last.as_ref().map_or(r.first_push, |s| s.push_id);
                let _push = tracing::debug_span!("push", push_id).entered();
                self.on_committed(id, r, Some(result));
            }
        }
    }

    /// Resource `id` (`r`) committed by the sink (`None`: the sink did not
    /// know it): reported written, or why not.
    fn on_committed(&mut self, id: u64, r: Resource, result: Option<Result<Written, WriteError>>) {
        match result {
            Some(Ok(w)) => {
                if self.written.len() >= MAX_NAMES {
                    // Forget an arbitrary earlier one: at worst a later copy
                    // of it is written again, identically.
                    if let Some(k) = self.written.keys().next().cloned() {
                        self.written.remove(&k);
                    }
                }
                self.written.insert(r.rel.clone(), w.sha256);
                if self.accounted.len() < MAX_NAMES * 4 {
                    self.accounted.extend(r.copy_ids.iter().copied());
                }
                // Pushes still delivering this resource have nothing more to give.
                for p in self.pushes.values_mut() {
                    if matches!(p.fate, Fate::Into(x) if x == id) {
                        p.fate = Fate::Done;
                    }
                }
                self.settle(
                    &r,
                    ResourceStatus::Complete,
                    None,
                    Some((report::path_string(&w.path), w.sha256, w.bytes)),
                );
            }
            Some(Err(e)) => {
                if let Some(d) = r.digest()
                    && self.written.get(&r.rel) == Some(&d)
                {
                    self.written.remove(&r.rel);
                }
                let (status, reason, kind) = Self::classify(&e);
                self.error(kind, r.first_push, r.raw_path.as_deref(), e.to_string());
                self.settle(&r, status, Some(reason), None);
            }
            None => self.settle(&r, ResourceStatus::Failed, Some("inconsistent: not being written".into()), None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::MemorySink;
    use h3m_proto::SessionId;
    use h3m_proto::encoder::{EncoderConfig, SessionEncoder};
    use h3m_proto::receiver::{Receiver, ReceiverConfig};

    /// Four files packed (the second small enough to travel whole in one
    /// datagram), the last with `connection: close`.
    fn packed_session(sid: SessionId, first_len: usize) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let mut cfg = EncoderConfig::new(sid);
        cfg.pack = true;
        let mut enc = SessionEncoder::new(cfg);
        let mut out = Vec::new();
        let bodies: Vec<Vec<u8>> =
            [first_len, 100, 3000, 100].iter().enumerate().map(|(k, &n)| vec![k as u8 + 1; n]).collect();
        for (k, body) in bodies.iter().enumerate() {
            let request = [HeaderField::new(":method", "GET"), HeaderField::new(":path", format!("/f{k}"))];
            let mut response =
                vec![HeaderField::new(":status", "200"), HeaderField::new("content-length", body.len().to_string())];
            if k == 3 {
                response.push(HeaderField::new("connection", "close"));
            }
            enc.push(&request, &response, body, &mut out).unwrap();
        }
        enc.seal(&mut out).unwrap();
        (bodies, out)
    }

    #[test]
    fn a_push_lost_at_the_end_signal_then_rebuilt_is_not_missing() {
        // Packed, one datagram can hold a file's promise and its whole
        // stream: lost, it leaves a hole in the push IDs, which the end
        // signal reports as a lost push. Then FEC rebuilds it.
        let sid = SessionId::from_hex("2a").unwrap();
        let mut found = false;
        for first_len in (1000..3000).step_by(37) {
            let (bodies, out) = packed_session(sid, first_len);
            for lost in 0..out.len() {
                let mut reporter = Reporter::queue();
                let mut session =
                    Session::new(Receiver::new(ReceiverConfig::new(sid)), MemorySink::new(1 << 20), &mut reporter);
                let now = std::time::Instant::now();
                for (i, d) in out.iter().enumerate() {
                    if i != lost {
                        session.receive(now, d);
                        session.drain();
                    }
                }
                if !session.receiver.is_ended() || session.lost_pending.is_empty() {
                    continue; // not the case under test
                }
                found = true;
                assert!(!session.all_intact());
                session.receive_recovered(now, lost as u64, &out[lost]);
                session.drain();
                assert!(session.lost_pending.is_empty(), "promised after all: not lost");
                assert!(session.all_intact(), "nothing missing, nothing to linger for");
                let got = session.writer.take();
                assert_eq!(got.len(), 4);
                for (k, body) in bodies.iter().enumerate() {
                    let path = std::path::PathBuf::from(format!("f{k}"));
                    assert!(got.iter().any(|r| r.path == path && &r.body == body), "f{k}");
                }
            }
        }
        assert!(found, "no layout put a whole push in a datagram of its own");
    }
}
