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
use crate::sink::ResourceSink;
use crate::verify::{Clock, VerifyOptions};
use crate::writer::WriteError;

/// The exit status of a run (see the binary's help).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: everything promised was written.
    Success,
    /// 1: a resource was incomplete or refused, a push was unpromised, or
    /// nothing at all was received (e.g. a wrong session ID).
    Incomplete,
    /// 2: bad usage.
    Usage,
    /// 3: the input is unreadable or malformed (offline), or the network
    /// failed (live).
    BadInput,
    /// 4: output directory I/O error.
    OutputError,
}

impl ExitStatus {
    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Incomplete => 1,
            ExitStatus::Usage => 2,
            ExitStatus::BadInput => 3,
            ExitStatus::OutputError => 4,
        }
    }
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The exit status.
    pub status: ExitStatus,
    /// One record per resource, in the order they were settled.
    pub resources: Vec<ResourceRecord>,
    /// Every error reported.
    pub errors: Vec<ErrorRecord>,
    /// Unpromised push streams, `(push_id, stream_id)`.
    pub unpromised: Vec<(u64, u64)>,
    /// The final counters (`None` if the input or the output directory was unusable).
    pub summary: Option<SummaryRecord>,
}

impl Outcome {
    /// An outcome for a run that could not start.
    pub(crate) fn fatal(reporter: &mut Reporter<'_>, kind: ErrorKind, message: String, status: ExitStatus) -> Self {
        let error = ErrorRecord { kind, push_id: None, path: None, message };
        reporter.emit(&Record::Error(error.clone()));
        Outcome { status, resources: Vec::new(), errors: vec![error], unpromised: Vec::new(), summary: None }
    }
}

/// What became of a push.
#[derive(Debug)]
enum Fate {
    /// Waiting for its response headers to pick its resource.
    Pending,
    /// Its body goes to this resource.
    Into(u64),
    /// A copy of a resource already written intact: ignored.
    Repeat,
    /// Its resource was written while it was still arriving: the rest is ignored.
    Done,
    /// Not written: refused `:path` (`refused: ...`) or failed (reason, I/O or not).
    Dead { status: ResourceStatus, reason: String },
}

#[derive(Debug)]
struct PushState {
    /// The request headers (kept only when signatures are checked).
    request: Vec<HeaderField>,
    /// The `:path` as sent.
    raw_path: Option<Vec<u8>>,
    /// The sanitised relative path.
    rel: Option<PathBuf>,
    /// Body bytes received.
    received: u64,
    /// The push IDs of the resource's copies its promise listed (`h3m-copies`).
    copies: Vec<u64>,
    fate: Fate,
}

/// At most this many copy IDs are taken from one promise.
const MAX_COPIES: usize = 64;

/// The push IDs an `h3m-copies` request header lists.
fn copies_of(request: &[HeaderField]) -> Vec<u64> {
    field(request, h3m_proto::sender::COPIES_HEADER.as_bytes())
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).take(MAX_COPIES).collect())
        .unwrap_or_default()
}

/// A resource being assembled from one or more pushes.
#[derive(Debug)]
struct Resource {
    raw_path: Option<Vec<u8>>,
    rel: PathBuf,
    /// The SHA-256 its response headers announce (its identity with the path).
    sha256: Option<[u8; 32]>,
    /// The SHA-256 a copy's trailers announce (a live body's), when the
    /// headers had none: checked at commit like a header digest.
    trailer_sha256: Option<[u8; 32]>,
    /// The body length, from `content-length` or a complete push.
    length: Option<u64>,
    /// Body bytes written so far.
    have: RangeSet,
    /// Pushes still delivering into it.
    active: usize,
    /// Pushes that contributed.
    copies: usize,
    /// The last finished push's summary.
    last: Option<PushSummary>,
    first_push: u64,
    /// When a copy last delivered into it (see [`Session::clock_tick`]).
    touched: u64,
    /// Push IDs of its copies, as the promises listed them.
    copy_ids: Vec<u64>,
    /// The header lists of its copies, by push ID (kept only when signatures
    /// are checked, at most [`MAX_COPY_HEADERS`]).
    copy_headers: Vec<CopyHeaders>,
}

/// What a copy of a resource said about it, for the signature check.
#[derive(Debug)]
struct CopyHeaders {
    push_id: u64,
    request: Vec<HeaderField>,
    response: Vec<HeaderField>,
    trailers: Vec<HeaderField>,
}

/// At most this many copies' header lists are kept per resource.
const MAX_COPY_HEADERS: usize = 16;

/// At most this many records of each kind (resources, errors, unpromised
/// pushes) are kept for the [`Outcome`]; the summary counts them all.
pub const MAX_RETAINED_RECORDS: usize = 10_000;

/// At most this many resources are assembled at once (each holds an open
/// partial file); beyond it the one untouched longest, with no push
/// delivering into it, is reported incomplete (`evicted`) to make room.
pub const MAX_ASSEMBLING: usize = 512;

/// At most this many judgements are deferred to the end of the session
/// (copies without response headers, unpromised streams); beyond it they are
/// reported at once.
const MAX_DEFERRED: usize = 4096;

/// At most this many distinct names are remembered to count incomplete
/// resources once each (and written paths to recognise repeats).
const MAX_NAMES: usize = 65_536;

/// Exact counts of what was reported, whatever was retained.
#[derive(Debug, Default)]
struct Tally {
    complete: u64,
    incomplete: u64,
    refused: u64,
    failed: u64,
    bytes_written: u64,
    settled: u64,
    unpromised: u64,
    lost: u64,
    headless: u64,
    io_errors: u64,
    network_errors: u64,
    errors: u64,
    /// Names reported incomplete (counted once each).
    incomplete_names: std::collections::HashSet<Vec<u8>>,
}

fn field<'a>(fields: &'a [HeaderField], name: &[u8]) -> Option<&'a [u8]> {
    fields.iter().find(|f| f.name == name).map(|f| f.value.as_slice())
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The relative path a record's name stands for.
fn name_path(name: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(name))
}

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
    pushes: HashMap<u64, PushState>,
    assembling: HashMap<u64, Resource>,
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
    accounted: std::collections::HashSet<u64>,
    /// Lost pushes and headless streams, judged at the end of the session:
    /// `(push ID if known, stream ID if headless, bytes)`.
    lost_pending: Vec<(Option<u64>, Option<u64>, u64)>,
    /// A use counter for [`Resource::touched`].
    clock_tick: u64,
    pub(crate) session_end: Option<&'static str>,
    verify: VerifyOptions,
    clock: Clock,
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
            pushes: HashMap::new(),
            assembling: HashMap::new(),
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
            accounted: std::collections::HashSet::new(),
            lost_pending: Vec::new(),
            clock_tick: 0,
            session_end: None,
            verify: VerifyOptions::default(),
            clock: Clock::None,
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

    /// Handles every event the receiver has.
    pub(crate) fn drain(&mut self) {
        while let Some(event) = self.receiver.poll_event() {
            self.on_event(event);
        }
        if self.trusted_close && !self.receiver.is_ended() && self.receiver.active_pushes() == 0 {
            // A verified push said `connection: close` and nothing is in flight.
            self.receiver.end(std::time::Instant::now(), SessionEndReason::ConnectionClose);
            while let Some(event) = self.receiver.poll_event() {
                self.on_event(event);
            }
        }
    }

    fn error(&mut self, kind: ErrorKind, push_id: u64, raw_path: Option<&[u8]>, message: String) {
        let error = ErrorRecord { kind, push_id: Some(push_id), path: raw_path.map(lossy), message };
        self.push_error(error);
    }

    /// Reports a network or other run-level error.
    pub(crate) fn run_error(&mut self, kind: ErrorKind, message: String) {
        self.push_error(ErrorRecord { kind, push_id: None, path: None, message });
    }

    fn push_error(&mut self, error: ErrorRecord) {
        self.tally.errors += 1;
        match error.kind {
            ErrorKind::Io => self.tally.io_errors += 1,
            ErrorKind::Network => self.tally.network_errors += 1,
            _ => {}
        }
        self.reporter.emit_limited(&Record::Error(error.clone()));
        if self.errors.len() < MAX_RETAINED_RECORDS {
            self.errors.push(error);
        }
    }

    /// Reports a resource record, counts it, and keeps it (up to a limit).
    fn push_record(&mut self, record: ResourceRecord) {
        self.tally.settled += 1;
        match record.status {
            ResourceStatus::Complete => {
                self.tally.complete += 1;
                self.tally.bytes_written += record.bytes;
                self.reporter.emit(&Record::Resource(record.clone()));
            }
            status => {
                match status {
                    ResourceStatus::Refused => self.tally.refused += 1,
                    ResourceStatus::Failed => self.tally.failed += 1,
                    _ => {
                        // This push is reported: its stream, if it turns up
                        // headless, is not another loss.
                        if self.accounted.len() < MAX_NAMES * 4 {
                            self.accounted.insert(record.push_id);
                        }
                        // One count and one line per resource, however many
                        // copies failed (a copy that never got its response
                        // headers is judged after its resource).
                        if self.tally.incomplete_names.len() >= MAX_NAMES
                            || self.tally.incomplete_names.insert(record.name.clone())
                        {
                            self.tally.incomplete += 1;
                        } else if !record.name.is_empty() {
                            self.repeats += 1;
                            return;
                        }
                    }
                }
                self.reporter.emit_limited(&Record::Resource(record.clone()));
            }
        }
        if self.resources.len() < MAX_RETAINED_RECORDS {
            self.resources.push(record);
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
        match event {
            Event::PushPromised { push_id, request } => self.on_promise(push_id, &request),
            Event::ResponseHeaders { push_id, headers } => {
                self.reporter
                    .emit_progress(&Record::ResponseHeaders { push_id, headers: report::header_pairs(&headers) });
                self.on_response(push_id, &headers);
            }
            Event::Trailers { push_id, headers } => {
                self.reporter.emit_progress(&Record::Trailers { push_id, headers: report::header_pairs(&headers) });
                self.on_trailers(push_id, headers);
            }
            Event::BodyData { push_id, offset, data } => self.on_data(push_id, offset, &data),
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
                self.session_end = Some(reason);
                self.reporter.emit(&Record::SessionEnd { reason });
            }
        }
    }

    fn on_promise(&mut self, push_id: u64, request: &[HeaderField]) {
        let raw_path = field(request, b":path").map(<[u8]>::to_vec);
        self.reporter.emit_progress(&Record::PushPromised {
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
        let request = if self.verify.checks_signatures() { request.to_vec() } else { Vec::new() };
        self.pushes.insert(push_id, PushState { request, raw_path, rel, received: 0, copies, fate });
    }

    /// Picks the push's resource: a copy of one written intact (ignored), one
    /// being assembled (same path and digest), or a new one.
    fn on_response(&mut self, push_id: u64, headers: &[HeaderField]) {
        let Some(state) = self.pushes.get_mut(&push_id) else { return };
        if !matches!(state.fate, Fate::Pending) {
            return;
        }
        let Some(rel) = state.rel.clone() else { return };
        if announced_consistent(headers) == Announced::Conflicting {
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
        let sha256 = announced_sha256(headers);
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
        let known = r.sha256.or(r.trailer_sha256);
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
        let Some(r) = self.assembling.remove(&id) else { return };
        self.writer.abort(id);
        if let Some(d) = r.sha256 {
            self.by_identity.remove(&(r.rel.clone(), d));
        }
        self.settle(&r, ResourceStatus::Incomplete, Some("evicted: too many resources in progress".into()), None);
        self.done_pushes(id);
    }

    fn on_data(&mut self, push_id: u64, offset: u64, data: &[u8]) {
        let Some(state) = self.pushes.get_mut(&push_id) else { return };
        state.received += data.len() as u64;
        let Fate::Into(id) = state.fate else { return };
        self.clock_tick += 1;
        let Some(r) = self.assembling.get_mut(&id) else { return };
        r.touched = self.clock_tick;
        let end = offset + data.len() as u64;
        for gap in r.have.gaps(offset..end) {
            let part = &data[(gap.start - offset) as usize..(gap.end - offset) as usize];
            if let Err(e) = self.writer.write(id, gap.start, part) {
                let raw = r.raw_path.clone();
                self.fail_resource(id, push_id, raw.as_deref(), e);
                return;
            }
        }
        r.have.insert(offset..end);
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
        if let Some(r) = self.assembling.remove(&id) {
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
        if let Some(r) = self.assembling.remove(&id) {
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
        let sha256 = r.sha256.or(r.trailer_sha256);
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

    fn record_for(r: &Resource) -> ResourceRecord {
        let (missing, missing_from, body_len) = match (&r.last, r.length) {
            (Some(last), _) if r.copies == 1 => {
                (last.missing.iter().map(|x| [x.start, x.end]).collect(), last.missing_from, last.body_len)
            }
            (_, Some(len)) => (r.have.gaps(0..len).iter().map(|x| [x.start, x.end]).collect(), None, len),
            (last, None) => {
                let from = r.have.contiguous_prefix();
                (Vec::new(), Some(from), last.as_ref().map_or(from, |l| l.body_len))
            }
        };
        ResourceRecord {
            push_id: r.first_push,
            status: ResourceStatus::Incomplete,
            complete: false,
            path: r.raw_path.as_deref().map(lossy),
            file: None,
            bytes: r.have.covered(),
            body_len,
            sha256: None,
            missing,
            missing_from,
            reason: None,
            name: r.rel.as_os_str().as_encoded_bytes().to_vec(),
        }
    }

    /// Reports a resource's final record.
    fn settle(
        &mut self,
        r: &Resource,
        status: ResourceStatus,
        reason: Option<String>,
        written: Option<(String, [u8; 32], u64)>,
    ) {
        let mut record = Self::record_for(r);
        record.status = status;
        record.reason = reason;
        if let Some((file, sha, bytes)) = written {
            record.complete = true;
            record.file = Some(file);
            record.sha256 = Some(hex::encode(sha));
            record.bytes = bytes;
            record.body_len = bytes;
            record.missing.clear();
            record.missing_from = None;
        }
        if status == ResourceStatus::Refused {
            record.name = r.raw_path.clone().unwrap_or_default();
        }
        self.push_record(record);
    }

    fn on_finished(&mut self, summary: PushSummary) {
        let push_id = summary.push_id;
        let Some(state) = self.pushes.remove(&push_id) else { return };
        match state.fate {
            Fate::Repeat => self.repeats += 1,
            Fate::Done => {}
            Fate::Dead { status, reason } => {
                let mut record = ResourceRecord {
                    push_id,
                    status,
                    complete: false,
                    path: state.raw_path.as_deref().map(lossy),
                    file: None,
                    bytes: state.received,
                    body_len: summary.body_len,
                    sha256: None,
                    missing: summary.missing.iter().map(|r| [r.start, r.end]).collect(),
                    missing_from: summary.missing_from,
                    reason: Some(reason),
                    name: state.raw_path.clone().unwrap_or_default(),
                };
                if status != ResourceStatus::Refused
                    && let Some(rel) = &state.rel
                {
                    record.name = rel.as_os_str().as_encoded_bytes().to_vec();
                }
                self.push_record(record);
            }
            Fate::Pending => {
                // Finished before its response headers arrived.
                let mut record = ResourceRecord {
                    push_id,
                    status: ResourceStatus::Incomplete,
                    complete: false,
                    path: state.raw_path.as_deref().map(lossy),
                    file: None,
                    bytes: 0,
                    body_len: summary.body_len,
                    sha256: None,
                    missing: summary.missing.iter().map(|r| [r.start, r.end]).collect(),
                    missing_from: summary.missing_from,
                    reason: None,
                    name: match &state.rel {
                        Some(rel) => rel.as_os_str().as_encoded_bytes().to_vec(),
                        None => state.raw_path.clone().unwrap_or_default(),
                    },
                };
                if let PushStatus::Incomplete(reason) = &summary.status {
                    record.reason = Some(report::incomplete_reason(reason));
                }
                if self.headless.len() < MAX_DEFERRED {
                    self.headless.push((state.rel, record));
                } else {
                    self.push_record(record);
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
        let Some(r) = self.assembling.remove(&id) else { return };
        if let Some(d) = r.sha256 {
            self.by_identity.remove(&(r.rel.clone(), d));
        }
        if !whole {
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
        match self.writer.commit(id, len, r.sha256.or(r.trailer_sha256)) {
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
                let (status, reason, kind) = Self::classify(&e);
                self.error(kind, r.first_push, r.raw_path.as_deref(), e.to_string());
                self.settle(&r, status, Some(reason), None);
            }
            None => self.settle(&r, ResourceStatus::Failed, Some("inconsistent: not being written".into()), None),
        }
    }

    /// Settles every resource still being assembled (at the end of a session),
    /// then reports the copies that never got their headers, unless another
    /// copy wrote their path.
    pub(crate) fn settle_all(&mut self) {
        let mut ids: Vec<u64> = self.assembling.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.try_commit(id, true);
        }
        let written: std::collections::HashSet<[u8; 32]> = self.written.values().copied().collect();
        for (push_id, stream_id, digest) in std::mem::take(&mut self.unpromised_pending) {
            if digest.is_some_and(|d| written.contains(&d)) {
                self.repeats += 1;
                continue;
            }
            self.judge_unpromised(push_id, stream_id, None);
        }
        for (rel, record) in std::mem::take(&mut self.headless) {
            if rel.as_ref().is_some_and(|r| self.written.contains_key(r)) {
                self.repeats += 1;
                continue;
            }
            self.push_record(record);
        }
        for (push_id, stream_id, bytes) in std::mem::take(&mut self.lost_pending) {
            self.judge_lost(push_id, stream_id, bytes);
        }
    }

    fn defer_lost(&mut self, push_id: Option<u64>, stream_id: Option<u64>, bytes: u64) {
        if self.lost_pending.len() < MAX_DEFERRED {
            self.lost_pending.push((push_id, stream_id, bytes));
        } else {
            self.judge_lost(push_id, stream_id, bytes);
        }
    }

    /// A push lost whole, or a stream seen without its start: a repeat if a
    /// written resource's promise listed it as a copy, else reported.
    fn judge_lost(&mut self, push_id: Option<u64>, stream_id: Option<u64>, bytes: u64) {
        if push_id.is_some_and(|p| self.accounted.contains(&p)) {
            self.repeats += 1;
            return;
        }
        match (stream_id, push_id) {
            (Some(stream_id), _) => {
                self.tally.headless += 1;
                self.reporter.emit_limited(&Record::HeadlessStream { stream_id, bytes });
            }
            (None, Some(push_id)) => {
                self.tally.lost += 1;
                self.reporter.emit_limited(&Record::LostPush { push_id });
            }
            (None, None) => {}
        }
    }

    /// An unpromised push stream: a repeat if its digest is that of a
    /// resource written intact, else reported.
    fn judge_unpromised(&mut self, push_id: u64, stream_id: u64, digest: Option<[u8; 32]>) {
        if digest.is_some_and(|d| self.written.values().any(|w| *w == d)) {
            self.repeats += 1;
            return;
        }
        self.tally.unpromised += 1;
        if self.unpromised.len() < MAX_RETAINED_RECORDS {
            self.unpromised.push((push_id, stream_id));
        }
        self.reporter.emit_limited(&Record::UnpromisedPush { push_id, stream_id });
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
        let stats = self.receiver.stats();
        if stats.packets == 0 && stats.foreign_session > 0 {
            let message = format!(
                "{} datagrams of other sessions seen and none of session {}: check --session-id",
                stats.foreign_session,
                self.receiver.config().session_id
            );
            self.run_error(ErrorKind::WrongSession, message);
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
            unpromised_pushes: t.unpromised,
            lost_pushes: t.lost,
            headless_streams: t.headless,
            suppressed_lines: self.reporter.suppressed(),
            bytes_written: t.bytes_written,
            session_end: self.session_end,
            capture,
            receiver: self.receiver.stats().clone(),
        };
        let t = &self.tally;
        let io_failed = t.io_errors > 0 || summary.resources_failed > 0;
        let status = if io_failed {
            ExitStatus::OutputError
        } else if t.network_errors > 0 {
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
