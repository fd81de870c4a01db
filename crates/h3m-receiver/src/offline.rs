//! The offline mode of `h3m-recv`: a capture file through the receiver into
//! the output directory.
//!
//! [`run`] reads the capture ([`crate::capture`]), feeds every datagram to a
//! [`Receiver`] (times: for pcap, now plus the capture timestamp minus the
//! first; for `.datagrams`, all at one instant), writes each complete push
//! with [`ResourceWriter`] under the name [`paths::sanitize`] gives its
//! `:path`, and reports each event ([`crate::report`]).
//!
//! # Exit status
//!
//! | status | meaning |
//! | --- | --- |
//! | 0 | at least one push was promised, every promised push completed and was written, and no unpromised push stream was seen |
//! | 1 | at least one resource was incomplete or refused, a push stream had no promise, or nothing was received (wrong session ID?) |
//! | 2 | bad usage (command line) |
//! | 3 | the input file is unreadable or malformed |
//! | 4 | an I/O error in the output directory (takes precedence over 1) |

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use h3m_proto::SessionId;
use h3m_proto::qpack::HeaderField;
use h3m_proto::receiver::{Event, IncompleteReason, PushStatus, PushSummary, Receiver, ReceiverConfig};

use crate::capture::{self, CaptureStats, ReadOptions};
use crate::paths;
use crate::report::{
    self, CaptureCounters, ErrorKind, ErrorRecord, Record, Reporter, ResourceRecord, ResourceStatus, SummaryRecord,
};
use crate::writer::{ResourceWriter, WriteError};

/// The exit status of a run (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: everything promised was written.
    Success,
    /// 1: a resource was incomplete or refused, a push was unpromised, or
    /// nothing at all was received (e.g. a wrong session ID).
    Incomplete,
    /// 2: bad usage.
    Usage,
    /// 3: the input is unreadable or malformed.
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

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The capture file (pcap or `.datagrams`).
    pub input: PathBuf,
    /// The session ID to receive.
    pub session_id: SessionId,
    /// The output directory (created if missing).
    pub out_dir: PathBuf,
    /// JSON output instead of text.
    pub json: bool,
    /// Keep only UDP datagrams to this port (pcap only).
    pub port: Option<u16>,
    /// The receiver's push timeout.
    pub push_timeout: Duration,
    /// The receiver's idle timeout (`None`: never).
    pub idle_timeout: Option<Duration>,
}

impl Options {
    /// Options with nghq's default session ID and the receiver's default timeouts.
    pub fn new(input: impl Into<PathBuf>, out_dir: impl Into<PathBuf>) -> Self {
        let defaults = ReceiverConfig::new(SessionId::NGHQ_DEFAULT);
        Options {
            input: input.into(),
            session_id: SessionId::NGHQ_DEFAULT,
            out_dir: out_dir.into(),
            json: false,
            port: None,
            push_timeout: defaults.push_timeout,
            idle_timeout: defaults.idle_timeout,
        }
    }
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The exit status.
    pub status: ExitStatus,
    /// One record per promised push, in the order they finished.
    pub resources: Vec<ResourceRecord>,
    /// Every error reported.
    pub errors: Vec<ErrorRecord>,
    /// Unpromised push streams, `(push_id, stream_id)`.
    pub unpromised: Vec<(u64, u64)>,
    /// The final counters (`None` if the input or the output directory was unusable).
    pub summary: Option<SummaryRecord>,
}

/// Runs the offline mode, printing to `out` and `err` (see [`crate::report`]).
pub fn run(opts: &Options, out: &mut dyn Write, err: &mut dyn Write) -> Outcome {
    let mut reporter = Reporter::new(opts.json, out, err);
    let outcome = run_with(opts, &mut reporter);
    reporter.flush();
    outcome
}

fn run_with(opts: &Options, reporter: &mut Reporter<'_>) -> Outcome {
    let fatal = |reporter: &mut Reporter<'_>, kind, message: String, status| {
        let error = ErrorRecord { kind, push_id: None, path: None, message };
        reporter.emit(&Record::Error(error.clone()));
        Outcome { status, resources: Vec::new(), errors: vec![error], unpromised: Vec::new(), summary: None }
    };
    let capture = match capture::read_capture_file(&opts.input, &ReadOptions { port: opts.port }) {
        Ok(c) => c,
        Err(e @ capture::CaptureError::Io { .. }) => {
            return fatal(reporter, ErrorKind::Input, e.to_string(), ExitStatus::BadInput);
        }
        Err(e) => {
            let message = format!("capture {}: {e}", opts.input.display());
            return fatal(reporter, ErrorKind::Input, message, ExitStatus::BadInput);
        }
    };
    let writer = match ResourceWriter::new(&opts.out_dir) {
        Ok(w) => w,
        Err(e) => {
            let message = format!("output directory: {e}");
            return fatal(reporter, ErrorKind::OutputDir, message, ExitStatus::OutputError);
        }
    };
    let mut config = ReceiverConfig::new(opts.session_id);
    config.push_timeout = opts.push_timeout;
    config.idle_timeout = opts.idle_timeout;
    let mut session = Session::new(Receiver::new(config), writer, reporter);

    let base = Instant::now();
    let first = capture.datagrams.iter().find_map(|d| d.timestamp);
    let mut now = base;
    for datagram in &capture.datagrams {
        if let (Some(t), Some(first)) = (datagram.timestamp, first) {
            let at = base.checked_add(t.checked_sub(first).unwrap_or_default()).unwrap_or(now);
            now = now.max(at);
        }
        if session.receiver.poll_timeout().is_some_and(|t| t <= now) {
            session.receiver.handle_timeout(now);
            session.drain();
        }
        session.receiver.handle_datagram(now, &datagram.payload);
        session.drain();
    }
    session.receiver.finish(now);
    session.drain();
    session.finish(&capture.stats)
}

/// What became of a promised push so far.
#[derive(Debug)]
enum Fate {
    /// Its bytes go to the writer.
    Writing,
    /// Its `:path` was refused (reason token).
    Refused(String),
    /// Writing failed: reason token, and whether it was an I/O error.
    Failed { reason: String, io: bool },
}

#[derive(Debug)]
struct PushState {
    /// The `:path` as sent.
    raw_path: Option<Vec<u8>>,
    /// The sanitized relative path.
    rel: Option<PathBuf>,
    /// Body bytes received.
    received: u64,
    fate: Fate,
}

/// Receiver events to files and records.
struct Session<'r, 'w> {
    receiver: Receiver,
    writer: ResourceWriter,
    reporter: &'r mut Reporter<'w>,
    pushes: HashMap<u64, PushState>,
    resources: Vec<ResourceRecord>,
    errors: Vec<ErrorRecord>,
    unpromised: Vec<(u64, u64)>,
    session_end: Option<&'static str>,
}

fn field<'a>(fields: &'a [HeaderField], name: &[u8]) -> Option<&'a [u8]> {
    fields.iter().find(|f| f.name == name).map(|f| f.value.as_slice())
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl<'r, 'w> Session<'r, 'w> {
    fn new(receiver: Receiver, writer: ResourceWriter, reporter: &'r mut Reporter<'w>) -> Self {
        Session {
            receiver,
            writer,
            reporter,
            pushes: HashMap::new(),
            resources: Vec::new(),
            errors: Vec::new(),
            unpromised: Vec::new(),
            session_end: None,
        }
    }

    fn drain(&mut self) {
        while let Some(event) = self.receiver.poll_event() {
            self.on_event(event);
        }
    }

    fn error(&mut self, kind: ErrorKind, push_id: u64, raw_path: Option<&[u8]>, message: String) {
        let error = ErrorRecord { kind, push_id: Some(push_id), path: raw_path.map(lossy), message };
        self.reporter.emit(&Record::Error(error.clone()));
        self.errors.push(error);
    }

    /// The fate and error kind of a writer error.
    fn classify(e: &WriteError) -> (Fate, ErrorKind) {
        match e {
            WriteError::Refused(_) => (Fate::Refused(e.to_string()), ErrorKind::RefusedPath),
            WriteError::Io { .. } => (Fate::Failed { reason: format!("io_error: {e}"), io: true }, ErrorKind::Io),
            WriteError::Inconsistent(_) => (Fate::Failed { reason: e.to_string(), io: false }, ErrorKind::Inconsistent),
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::PushPromised { push_id, request } => self.on_promise(push_id, &request),
            Event::ResponseHeaders { push_id, headers } => {
                self.reporter.emit(&Record::ResponseHeaders { push_id, headers: report::header_pairs(&headers) });
            }
            Event::Trailers { push_id, headers } => {
                self.reporter.emit(&Record::Trailers { push_id, headers: report::header_pairs(&headers) });
            }
            Event::BodyData { push_id, offset, data } => self.on_data(push_id, offset, &data),
            Event::PushFinished(summary) => self.on_finished(summary),
            Event::UnpromisedPush { push_id, stream_id } => {
                self.unpromised.push((push_id, stream_id));
                self.reporter.emit(&Record::UnpromisedPush { push_id, stream_id });
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
        self.reporter.emit(&Record::PushPromised {
            push_id,
            path: raw_path.as_deref().map(lossy),
            request: report::header_pairs(request),
        });
        let sanitized = raw_path.as_deref().ok_or(paths::PathError::Missing).and_then(paths::sanitize);
        let (rel, result) = match sanitized {
            Ok(rel) => (Some(rel.clone()), self.writer.begin(push_id, rel)),
            Err(e) => (None, Err(WriteError::Refused(e))),
        };
        let fate = match result {
            Ok(()) => Fate::Writing,
            Err(e) => {
                let (fate, kind) = Self::classify(&e);
                self.error(kind, push_id, raw_path.as_deref(), e.to_string());
                fate
            }
        };
        self.pushes.insert(push_id, PushState { raw_path, rel, received: 0, fate });
    }

    fn on_data(&mut self, push_id: u64, offset: u64, data: &[u8]) {
        let Some(state) = self.pushes.get_mut(&push_id) else { return };
        state.received += data.len() as u64;
        if !matches!(state.fate, Fate::Writing) {
            return;
        }
        if let Err(e) = self.writer.write(push_id, offset, data) {
            let (fate, kind) = Self::classify(&e);
            state.fate = fate;
            let raw = state.raw_path.clone();
            self.error(kind, push_id, raw.as_deref(), e.to_string());
        }
    }

    fn on_finished(&mut self, summary: PushSummary) {
        let push_id = summary.push_id;
        let state = self.pushes.remove(&push_id).unwrap_or(PushState {
            raw_path: None,
            rel: None,
            received: 0,
            fate: Fate::Refused(paths::PathError::Missing.to_string()),
        });
        let mut record = ResourceRecord {
            push_id,
            status: ResourceStatus::Incomplete,
            complete: false,
            path: state.raw_path.as_deref().map(lossy),
            file: None,
            bytes: state.received,
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
        let fate = match (state.fate, &summary.status) {
            (Fate::Writing, PushStatus::Complete) => match self.writer.commit(push_id, summary.body_len) {
                Some(Ok(written)) => {
                    record.status = ResourceStatus::Complete;
                    record.complete = true;
                    record.file = Some(report::path_string(&written.path));
                    record.bytes = written.bytes;
                    record.sha256 = Some(hex(&written.sha256));
                    None
                }
                Some(Err(e)) => {
                    let (fate, kind) = Self::classify(&e);
                    self.error(kind, push_id, state.raw_path.as_deref(), e.to_string());
                    Some(fate)
                }
                None => Some(Fate::Failed { reason: "inconsistent: push not being written".into(), io: false }),
            },
            (Fate::Writing, PushStatus::Incomplete(reason)) => {
                self.writer.abort(push_id);
                record.reason = Some(report::incomplete_reason(reason));
                None
            }
            (fate, _) => Some(fate),
        };
        match fate {
            None => {}
            Some(Fate::Refused(reason)) => {
                record.status = ResourceStatus::Refused;
                record.reason = Some(reason);
                if state.rel.is_some() {
                    // Refused by the output directory: show the :path, like other refusals.
                    record.name = state.raw_path.unwrap_or_default();
                }
            }
            Some(Fate::Failed { reason, io: true }) => {
                record.status = ResourceStatus::Failed;
                record.reason = Some(reason);
            }
            Some(Fate::Failed { reason, io: false }) => {
                record.status = ResourceStatus::Incomplete;
                record.reason = Some(reason);
            }
            Some(Fate::Writing) => {
                record.status = ResourceStatus::Incomplete;
                record.reason = Some("inconsistent: push still being written".to_owned());
            }
        }
        self.reporter.emit(&Record::Resource(record.clone()));
        self.resources.push(record);
    }

    fn finish(mut self, capture: &CaptureStats) -> Outcome {
        // The receiver finishes every push on `finish`; should one be left, it
        // is reported incomplete (and its temporary file removed).
        let mut left: Vec<u64> = self.pushes.keys().copied().collect();
        left.sort_unstable();
        for push_id in left {
            self.on_finished(PushSummary {
                push_id,
                status: PushStatus::Incomplete(IncompleteReason::SessionEnded),
                body_len: 0,
                missing: Vec::new(),
                missing_from: Some(0),
            });
        }
        let count = |status| self.resources.iter().filter(|r| r.status == status).count() as u64;
        let mut summary = SummaryRecord {
            exit_status: 0,
            resources_complete: count(ResourceStatus::Complete),
            resources_incomplete: count(ResourceStatus::Incomplete),
            resources_refused: count(ResourceStatus::Refused),
            resources_failed: count(ResourceStatus::Failed),
            unpromised_pushes: self.unpromised.len() as u64,
            bytes_written: self.resources.iter().filter(|r| r.complete).map(|r| r.bytes).sum(),
            session_end: self.session_end,
            capture: CaptureCounters::from(capture),
            receiver: self.receiver.stats().into(),
        };
        let io_failed = self.errors.iter().any(|e| e.kind == ErrorKind::Io) || summary.resources_failed > 0;
        let status = if io_failed {
            ExitStatus::OutputError
        } else if summary.resources_incomplete + summary.resources_refused + summary.unpromised_pushes > 0
            || !self.errors.is_empty()
            || self.resources.is_empty()
        {
            ExitStatus::Incomplete
        } else {
            ExitStatus::Success
        };
        summary.exit_status = status.code();
        self.reporter.emit(&Record::Summary(summary.clone()));
        Outcome {
            status,
            resources: self.resources,
            errors: self.errors,
            unpromised: self.unpromised,
            summary: Some(summary),
        }
    }
}
