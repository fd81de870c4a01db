//! What `h3m-recv` prints: one record per event, as a text line or a JSON object.
//!
//! # Text mode (default)
//!
//! Standard output has one line per resource (each promised push, once it has
//! finished) and per unpromised push stream; fields are separated by two
//! spaces, the status word is padded to 10 columns:
//!
//! ```text
//! complete   PATH  BYTES bytes  sha256:HEX
//! incomplete PATH  RECEIVED of LEN[+] bytes  missing RANGES  (REASON)
//! refused    PATH  RECEIVED bytes  (REASON)
//! failed     PATH  RECEIVED bytes  (REASON)
//! unpromised push ID on stream STREAM
//! ```
//!
//! * `PATH` is the file's path relative to the output directory; for a refused
//!   push (or one without a `:path`: `-`), the `:path` as sent. Bytes that are
//!   whitespace, control characters, `%`, or not UTF-8 are percent-encoded
//!   (`%20`), so no field holds a space.
//! * `RECEIVED` counts the body bytes that arrived, `LEN` is the body length as
//!   far as it is known; `+` means the length is unknown beyond it.
//! * `RANGES` lists the missing body bytes as inclusive ranges `a-b`
//!   separated by commas; `a-` means everything from `a` on; `none` if no
//!   range is known.
//! * `REASON` is a token, possibly followed by `: ` and details: `timeout`,
//!   `session_ended`, `reset: error code N`, `cancelled`, `no_push_stream`,
//!   `evicted`, `bad_headers: ...`, `protocol_error: ...`,
//!   `inconsistent: ...`, `digest mismatch: ...` (incomplete); `refused: ...`
//!   (the `:path` is unsafe, see [`crate::paths`]; or a check of
//!   [`crate::verify`] failed: `refused: no digest`, `refused: unsigned`,
//!   `refused: signature does not verify`, `refused: stale (date ... older than
//!   max-age N s)`, `refused: the digest fields disagree`, ...); `io_error: ...`
//!   (failed).
//!
//! Standard error has the errors (`h3m-recv: error: ...`) and, last, one
//! summary line of `key=value` fields (`h3m-recv: summary: complete=1 ...`).
//!
//! # JSON mode (`--json`)
//!
//! Standard output has one JSON object per line, each with an `"event"` key:
//! `push_promised`, `response_headers`, `trailers`, `resource`,
//! `unpromised_push`, `lost_push`, `headless_stream`, `error`, `session_end` and, last, `summary` (see
//! [`Record`] for the fields). Body data is not reported event by event (there
//! would be one object per packet); the `resource` object sums it up. Header
//! names and values are converted to strings lossily. Standard error still gets
//! the error and summary lines of text mode.

use std::io::Write;
use std::path::Path;

use h3m_proto::qpack::HeaderField;
use h3m_proto::receiver::{IncompleteReason, ReceiverStats, SessionEndReason};
use serde::Serialize;

use crate::capture::CaptureStats;

/// How a resource ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceStatus {
    /// Every byte arrived and the file was written.
    Complete,
    /// Bytes are missing: nothing was written.
    Incomplete,
    /// The `:path` is unsafe, or the resource failed a check of
    /// [`crate::verify`] (no digest, a signature): nothing was written.
    Refused,
    /// Writing failed (I/O error): nothing was written.
    Failed,
}

impl ResourceStatus {
    /// The status word of text lines.
    pub fn word(self) -> &'static str {
        match self {
            ResourceStatus::Complete => "complete",
            ResourceStatus::Incomplete => "incomplete",
            ResourceStatus::Refused => "refused",
            ResourceStatus::Failed => "failed",
        }
    }
}

/// The end of one promised push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceRecord {
    /// The push ID.
    pub push_id: u64,
    /// How it ended.
    pub status: ResourceStatus,
    /// Whether it was written complete (`status == complete`).
    pub complete: bool,
    /// The `:path` as sent (`null` if the request had none).
    pub path: Option<String>,
    /// The file written (output directory joined with the relative path), or `null`.
    pub file: Option<String>,
    /// Body bytes received (the body length when complete).
    pub bytes: u64,
    /// The body length as far as the receiver knows it.
    pub body_len: u64,
    /// SHA-256 of the file written, lowercase hex; `null` if nothing was written.
    pub sha256: Option<String>,
    /// Missing body ranges, `[start, end_exclusive]`: the first
    /// [`MAX_MISSING_LISTED`] of them.
    pub missing: Vec<[u64; 2]>,
    /// How many missing ranges there are in all (more than `missing` lists
    /// when the body is fragmented beyond [`MAX_MISSING_LISTED`] ranges).
    pub missing_ranges: u64,
    /// How many pushes (copies) were assembled into it: 1 for a single push,
    /// more when copies of it (`--repeat`, `--carousel`) were merged.
    pub copies: u64,
    /// Body bytes that came in datagrams FEC rebuilt (see `h3m-send --fec`).
    pub fec_bytes: u64,
    /// Body bytes fetched from the repair origin (`h3m-recv --repair`).
    pub repair_bytes: u64,
    /// How a resource written complete got its bytes: `multicast` (as sent),
    /// `fec` (some from datagrams FEC rebuilt) or `repair` (some fetched
    /// from the repair origin); `null` if not written.
    pub completed_by: Option<&'static str>,
    /// Everything from this body offset on is missing (the length is unknown).
    pub missing_from: Option<u64>,
    /// Why it is not complete (see the module documentation), `null` if it is.
    pub reason: Option<String>,
    /// The name shown in text lines (relative path, else the `:path`), raw bytes.
    #[serde(skip)]
    pub name: Vec<u8>,
}

/// At most this many missing ranges are listed in a [`ResourceRecord`] (and
/// its line); the rest are counted in [`ResourceRecord::missing_ranges`].
pub const MAX_MISSING_LISTED: usize = 64;

/// The first [`MAX_MISSING_LISTED`] of `ranges`, and how many there are.
pub fn missing_list(ranges: &[std::ops::Range<u64>]) -> (Vec<[u64; 2]>, u64) {
    let listed = ranges.iter().take(MAX_MISSING_LISTED).map(|r| [r.start, r.end]).collect();
    (listed, ranges.len() as u64)
}

impl ResourceRecord {
    /// The text line (without newline).
    pub fn text_line(&self) -> String {
        let name = if self.name.is_empty() { "-".to_owned() } else { escape_name(&self.name) };
        let head = format!("{:<10} {name}  ", self.status.word());
        let reason = self.reason.as_deref().unwrap_or("");
        match self.status {
            ResourceStatus::Complete => {
                let mut how = String::new();
                if self.fec_bytes > 0 {
                    how.push_str(&format!("  fec:{}", self.fec_bytes));
                }
                if self.repair_bytes > 0 {
                    how.push_str(&format!("  repair:{}", self.repair_bytes));
                }
                format!("{head}{} bytes  sha256:{}{how}", self.bytes, self.sha256.as_deref().unwrap_or(""))
            }
            ResourceStatus::Incomplete => {
                let plus = if self.missing_from.is_some() { "+" } else { "" };
                let mut ranges: Vec<String> = self
                    .missing
                    .iter()
                    .filter(|[s, e]| e > s)
                    .map(|[s, e]| if e - s == 1 { format!("{s}") } else { format!("{s}-{}", e - 1) })
                    .collect();
                let unlisted = self.missing_ranges.saturating_sub(self.missing.len() as u64);
                if unlisted > 0 {
                    ranges.push(format!("... ({unlisted} more ranges)"));
                }
                if let Some(from) = self.missing_from {
                    ranges.push(format!("{from}-"));
                }
                let ranges = if ranges.is_empty() { "none".to_owned() } else { ranges.join(",") };
                format!("{head}{} of {}{plus} bytes  missing {ranges}  ({reason})", self.bytes, self.body_len)
            }
            ResourceStatus::Refused | ResourceStatus::Failed => format!("{head}{} bytes  ({reason})", self.bytes),
        }
    }
}

/// What kind of error an [`ErrorRecord`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A push's `:path` is unsafe.
    RefusedPath,
    /// Writing a resource failed.
    Io,
    /// A complete push's bytes did not add up (a receiver bug).
    Inconsistent,
    /// The input could not be read.
    Input,
    /// The output directory is unusable.
    OutputDir,
    /// A resource's body does not match its digest (`digest`, `repr-digest`,
    /// `content-digest`), or its digest fields disagree: not written.
    DigestMismatch,
    /// `--require-digest`: a resource announcing no SHA-256 digest: not written.
    MissingDigest,
    /// `--trust`: a resource whose signatures fail the check (unsigned, not
    /// verifying, stale, ...): not written.
    Unauthenticated,
    /// The network (socket) failed.
    Network,
    /// Datagrams arrived, but none of the session asked for.
    WrongSession,
    /// A resource did not fit the sink's memory budget (a
    /// [`crate::sink::MemorySink`]): not delivered.
    OverBudget,
}

/// An error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorRecord {
    /// What kind.
    pub kind: ErrorKind,
    /// The push concerned, if any.
    pub push_id: Option<u64>,
    /// Its `:path` as sent, if any.
    pub path: Option<String>,
    /// The message.
    pub message: String,
}

impl ErrorRecord {
    /// The text line for standard error (without newline).
    pub fn text_line(&self) -> String {
        match (self.push_id, &self.path) {
            (Some(id), Some(path)) => {
                format!("h3m-recv: error: push {id} ({}): {}", escape_name(path.as_bytes()), self.message)
            }
            (Some(id), None) => format!("h3m-recv: error: push {id}: {}", self.message),
            _ => format!("h3m-recv: error: {}", self.message),
        }
    }
}

/// The counters of a whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SummaryRecord {
    /// The exit status of the run.
    pub exit_status: u8,
    /// Resources written complete.
    pub resources_complete: u64,
    /// Resources not written because bytes were missing.
    pub resources_incomplete: u64,
    /// Resources not written because their `:path` was refused.
    pub resources_refused: u64,
    /// Resources not written because of an I/O error.
    pub resources_failed: u64,
    /// Further copies (repeats) of resources already written intact: recognised
    /// by their digest and not written again.
    pub resources_repeated: u64,
    /// Resources written complete from the bytes of more than one copy.
    pub resources_merged: u64,
    /// Resources written complete with bytes fetched from the repair origin.
    pub resources_repaired: u64,
    /// Body bytes fetched from the repair origin into resources.
    pub repaired_bytes: u64,
    /// Push streams whose promise never arrived.
    pub unpromised_pushes: u64,
    /// Pushes lost whole: neither promise nor stream arrived (push IDs are
    /// sequential, so the hole shows).
    pub lost_pushes: u64,
    /// Push streams whose start never arrived (joined during the push, or its
    /// first packet lost).
    pub headless_streams: u64,
    /// Per-push output lines left out by the flood limit.
    pub suppressed_lines: u64,
    /// Bytes written into complete resources.
    pub bytes_written: u64,
    /// How the session ended (`connection_close`, `goaway`, `idle_timeout`,
    /// `end_of_input`), `null` if it did not.
    pub session_end: Option<&'static str>,
    /// When the session did not end with its end signal (`connection_close`
    /// or `goaway`): the highest push ID seen. The receiver knows nothing of
    /// pushes after it: any lost whole (with the end signal) are named by no
    /// line. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_push_id: Option<u64>,
    /// What AMBI's gate did (`--ambi`), `null` without it.
    pub ambi: Option<crate::ambi::AmbiCounters>,
    /// What the capture held.
    pub capture: CaptureStats,
    /// What the receiver saw and dropped.
    pub receiver: ReceiverStats,
}

impl SummaryRecord {
    /// The summary line for standard error (without newline): `key=value` fields.
    pub fn text_line(&self) -> String {
        let r = &self.receiver;
        let mut line = format!(
            "h3m-recv: summary: complete={} incomplete={} refused={} failed={} unpromised={} bytes={} \
             datagrams={} packets={} dropped_foreign_session={} dropped_malformed={} dropped_protection={}",
            self.resources_complete,
            self.resources_incomplete,
            self.resources_refused,
            self.resources_failed,
            self.unpromised_pushes,
            self.bytes_written,
            r.datagrams,
            r.packets,
            r.foreign_session,
            r.malformed_packets,
            r.protection_failures,
        );
        let extra = [
            ("frame_errors", r.frame_errors),
            ("stream_errors", r.stream_errors),
            ("header_errors", r.header_errors),
            ("pushes_evicted", r.pushes_evicted),
            ("replayed_packets", r.replayed_packets),
            ("request_fragments_forgotten", r.request_fragments_forgotten),
            ("streams_too_fragmented", r.streams_too_fragmented),
            ("body_overruns", r.body_overruns),
            ("packet_number_gaps", r.packet_number_gaps),
            ("duplicate_bytes", r.duplicate_bytes),
            ("late_bytes", r.late_bytes),
            ("dropped_buffer_bytes", r.dropped_buffer_bytes),
            ("orphan_streams_dropped", r.orphan_streams_dropped),
            ("repeated", self.resources_repeated),
            ("merged", self.resources_merged),
            ("repaired", self.resources_repaired),
            ("repaired_bytes", self.repaired_bytes),
            ("lost_pushes", self.lost_pushes),
            ("headless_streams", self.headless_streams),
            ("suppressed_lines", self.suppressed_lines),
            ("fec_repair", r.fec.repair_datagrams),
            ("fec_recovered", r.fec.datagrams_recovered),
            ("fec_blocks_unrecovered", r.fec.blocks_unrecovered),
            ("fec_unrecovered_at_end", r.fec.unrecovered_at_end),
            ("fec_unrecovered_window", r.fec.unrecovered_window),
            ("fec_unrecovered_budget", r.fec.unrecovered_budget),
            ("fec_decode_failures", r.fec.decode_failures),
            ("fec_window", if r.fec.repair_datagrams > 0 { r.fec.window } else { 0 }),
            ("fec_repair_malformed", r.fec.repair_malformed),
            ("capture_malformed", self.capture.malformed),
            ("capture_truncated_records", self.capture.truncated_records),
            ("capture_fragments_dropped", self.capture.fragments_dropped),
        ];
        for (key, value) in extra.iter().filter(|(_, v)| *v > 0) {
            line.push_str(&format!(" {key}={value}"));
        }
        if let Some(a) = &self.ambi {
            // All of them, zeros too: they are the point of running with AMBI.
            for (key, value) in [
                ("ambi_authenticated", a.authenticated),
                ("ambi_on_arrival", a.authenticated_on_arrival),
                ("ambi_mismatched", a.mismatched),
                ("ambi_expired", a.expired),
                ("ambi_over_budget", a.over_budget),
                ("ambi_replays", a.replays),
                ("ambi_unsequenced", a.unsequenced),
                ("ambi_manifests", a.manifests),
                ("ambi_manifests_bad_signature", a.manifests_bad_signature),
                ("ambi_signatures_checked", a.signatures_checked),
                ("ambi_manifests_refused", a.manifests_refused),
                ("ambi_release_delay_p50_us", a.release_delay_p50_us),
                ("ambi_release_delay_p99_us", a.release_delay_p99_us),
            ] {
                line.push_str(&format!(" {key}={value}"));
            }
            // An HTTPS manifest channel's connections, when there is one.
            if a.channel_connects + a.channel_losses > 0 {
                line.push_str(&format!(
                    " ambi_channel_connects={} ambi_channel_losses={}",
                    a.channel_connects, a.channel_losses
                ));
            }
        }
        if self.capture.truncated_tail {
            line.push_str(" capture_truncated_tail=true");
        }
        if let Some(id) = self.last_push_id {
            line.push_str(&format!(" last_push_id={id}"));
        }
        line.push_str(&format!(" session_end={} exit={}", self.session_end.unwrap_or("none"), self.exit_status));
        line
    }
}

/// One output record. Serialized with an `"event"` key naming the variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Record {
    /// A push was promised.
    PushPromised {
        /// The push ID.
        push_id: u64,
        /// Its `:path` as sent (`null` if none).
        path: Option<String>,
        /// The request headers, `[name, value]` pairs.
        request: Vec<[String; 2]>,
    },
    /// A push's response headers.
    ResponseHeaders {
        /// The push ID.
        push_id: u64,
        /// The response headers, `[name, value]` pairs.
        headers: Vec<[String; 2]>,
    },
    /// A push's trailers.
    Trailers {
        /// The push ID.
        push_id: u64,
        /// The trailer fields, `[name, value]` pairs.
        headers: Vec<[String; 2]>,
    },
    /// A promised push finished.
    Resource(ResourceRecord),
    /// A push stream whose promise never arrived.
    UnpromisedPush {
        /// The push ID it carried.
        push_id: u64,
        /// The stream.
        stream_id: u64,
    },
    /// A push lost whole: neither its promise nor its stream arrived.
    LostPush {
        /// The push ID (push IDs are sequential: a later one arrived).
        push_id: u64,
    },
    /// A push stream whose start never arrived: its push is unknown.
    HeadlessStream {
        /// The stream.
        stream_id: u64,
        /// Bytes of it that arrived (and were dropped).
        bytes: u64,
    },
    /// An error.
    Error(ErrorRecord),
    /// The session ended.
    SessionEnd {
        /// `connection_close`, `goaway`, `idle_timeout`, `end_of_input` or
        /// `interrupted`.
        reason: &'static str,
    },
    /// The final counters.
    Summary(Box<SummaryRecord>),
}

/// Writes records to standard output and standard error (see the module documentation).
pub struct Reporter<'a> {
    json: bool,
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    limit: LineLimit,
    /// The limit on progress events (promises, headers: JSON mode only).
    progress_limit: LineLimit,
    /// The AMT tunnel's counters, filled in by live mode before the summary
    /// ([`Reporter::amt_slot`]).
    amt: AmtSlot,
    /// Queue mode ([`Reporter::queue`]): records are kept for the program
    /// instead of printed.
    queue: Option<std::collections::VecDeque<Record>>,
    /// Sees every record emitted, and the live counters ([`Observer`]);
    /// boxed once more, so the reporter stays small.
    observer: Option<Box<Observed>>,
}

/// A reporter's [`Observer`], and when it last got the counters.
struct Observed {
    observer: Box<dyn Observer>,
    stats_at: Option<std::time::Instant>,
}

/// Sees what a [`Reporter`] reports, as it happens: every record emitted
/// (printed or queued), and in live mode the receiver's counters. It is
/// what `h3m-recv --serve` builds its resource index, metrics and event
/// feed from ([`crate::serve`]), leaving the session itself untouched.
pub trait Observer {
    /// A record, as it is emitted (within the flood limits). With an
    /// observer, the progress records (`push_promised`, `response_headers`,
    /// `trailers`) are emitted in text mode too (they are not printed).
    fn record(&mut self, record: &Record);

    /// The counters so far (live mode, at most every [`STATS_INTERVAL`]).
    fn stats(&mut self, _stats: &LiveStats) {}
}

/// The live counters an [`Observer`] gets.
#[derive(Debug, Clone, Default)]
pub struct LiveStats {
    /// The receiver's counters.
    pub receiver: ReceiverStats,
    /// UDP datagrams read (session and side port).
    pub datagrams: u64,
    /// The AMT tunnel's counters (`--amt`), else `None`.
    pub amt: Option<crate::input::AmtCounters>,
}

/// The live counters reach an [`Observer`] at most this often.
pub const STATS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// At most this many records wait in a [`Reporter::queue`]; beyond it
/// records are counted as suppressed (a program that never polls does not
/// grow without bound).
pub const MAX_QUEUED: usize = 65_536;

/// Where live mode leaves the AMT tunnel's counters for the summary: the
/// summary line gets their `amt_*` fields (before `session_end`), the JSON
/// summary an `amt` object. Empty (no AMT) prints nothing of them.
pub type AmtSlot = std::rc::Rc<std::cell::Cell<Option<crate::input::AmtCounters>>>;

/// The flood limit on per-push lines: a token bucket of [`LINE_BURST`]
/// lines refilled at [`LINE_RATE`] per second.
#[derive(Debug)]
struct LineLimit {
    burst: f64,
    rate: f64,
    tokens: f64,
    last: std::time::Instant,
    suppressed: u64,
    /// Suppressed lines not yet announced.
    unannounced: u64,
}

/// Per-push lines (anything but a written resource, the session end and the
/// summary) allowed in a burst.
pub const LINE_BURST: f64 = 1000.0;
/// Per-push lines allowed per second after a burst.
pub const LINE_RATE: f64 = 100.0;
/// Progress events (JSON `push_promised`, `response_headers`, `trailers`)
/// allowed in a burst.
pub const PROGRESS_BURST: f64 = 50_000.0;
/// Progress events allowed per second after a burst.
pub const PROGRESS_RATE: f64 = 10_000.0;

impl LineLimit {
    fn new(burst: f64, rate: f64) -> Self {
        LineLimit { burst, rate, tokens: burst, last: std::time::Instant::now(), suppressed: 0, unannounced: 0 }
    }

    fn allow(&mut self) -> bool {
        let now = std::time::Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.suppressed += 1;
            self.unannounced += 1;
            false
        }
    }
}

impl std::fmt::Debug for Reporter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter").field("json", &self.json).finish_non_exhaustive()
    }
}

impl<'a> Reporter<'a> {
    /// A reporter in JSON or text mode.
    pub fn new(json: bool, out: &'a mut dyn Write, err: &'a mut dyn Write) -> Self {
        Reporter {
            json,
            out,
            err,
            limit: LineLimit::new(LINE_BURST, LINE_RATE),
            progress_limit: LineLimit::new(PROGRESS_BURST, PROGRESS_RATE),
            amt: AmtSlot::default(),
            queue: None,
            observer: None,
        }
    }

    /// Lets `observer` see every record from now on (see [`Observer`]).
    pub fn set_observer(&mut self, observer: Box<dyn Observer>) {
        self.observer = Some(Box::new(Observed { observer, stats_at: None }));
    }

    /// Gives the observer, if any, the counters `make` builds, at most
    /// every [`STATS_INTERVAL`] (live mode calls it after each batch).
    pub fn observe_stats(&mut self, make: impl FnOnce() -> LiveStats) {
        let Some(o) = self.observer.as_mut() else { return };
        let now = std::time::Instant::now();
        if o.stats_at.is_some_and(|at| now.duration_since(at) < STATS_INTERVAL) {
            return;
        }
        o.stats_at = Some(now);
        o.observer.stats(&make());
    }

    /// A reporter that prints nothing and keeps every record (within the
    /// same flood limits, at most [`MAX_QUEUED`] waiting) for
    /// [`Reporter::next_record`]: the typed event stream of an embedded
    /// [`Session`](crate::Session).
    pub fn queue() -> Reporter<'static> {
        let out: &'static mut std::io::Sink = Box::leak(Box::new(std::io::sink()));
        let err: &'static mut std::io::Sink = Box::leak(Box::new(std::io::sink()));
        let mut r = Reporter::new(true, out, err);
        r.queue = Some(std::collections::VecDeque::new());
        r
    }

    /// The next queued record (queue mode), oldest first.
    pub fn next_record(&mut self) -> Option<Record> {
        self.queue.as_mut()?.pop_front()
    }

    /// The slot for the AMT tunnel's counters (see [`AmtSlot`]).
    pub fn amt_slot(&self) -> AmtSlot {
        self.amt.clone()
    }

    /// Prints a progress event (a promise, response headers, trailers; JSON
    /// mode only, or given to the [`Observer`]) within its own, larger flood
    /// limit. The record is made only when it is printed or observed.
    pub fn emit_progress(&mut self, record: impl FnOnce() -> Record) {
        if (self.json || self.observer.is_some()) && self.progress_limit.allow() {
            self.emit(&record());
        }
    }

    /// Prints a per-push record unless the flood limit is reached (a forged
    /// flood of promises must not become a flood of output); says on standard
    /// error how many were left out when printing resumes. The record is made
    /// only when it is printed.
    pub fn emit_limited(&mut self, record: impl FnOnce() -> Record) {
        if self.admit_limited() {
            self.emit(&record());
        }
    }

    /// Whether the flood limit lets one more per-push record through (it is
    /// then the caller's to [`emit`](Self::emit)); otherwise it is counted as
    /// suppressed.
    pub fn admit_limited(&mut self) -> bool {
        if !self.limit.allow() {
            return false;
        }
        if self.limit.unannounced > 0 {
            let n = std::mem::take(&mut self.limit.unannounced);
            let _ = writeln!(self.err, "h3m-recv: {n} per-push lines suppressed (flood limit)");
        }
        true
    }

    /// Per-push lines left out by the flood limits so far.
    pub fn suppressed(&self) -> u64 {
        self.limit.suppressed + self.progress_limit.suppressed
    }

    /// Prints one record. Write errors (a closed pipe) are ignored.
    pub fn emit(&mut self, record: &Record) {
        if let Some(o) = self.observer.as_mut() {
            o.observer.record(record);
        }
        if let Some(queue) = &mut self.queue {
            if queue.len() < MAX_QUEUED {
                queue.push_back(record.clone());
            } else {
                self.limit.suppressed += 1;
            }
            return;
        }
        if self.json
            && let Ok(line) = json_line(record, self.amt.get())
        {
            let _ = writeln!(self.out, "{line}");
        }
        match record {
            Record::Resource(r) if !self.json => {
                let _ = writeln!(self.out, "{}", r.text_line());
            }
            Record::UnpromisedPush { push_id, stream_id } if !self.json => {
                let _ = writeln!(self.out, "unpromised push {push_id} on stream {stream_id}");
            }
            Record::LostPush { push_id } if !self.json => {
                let _ = writeln!(
                    self.out,
                    "{:<10} (push {push_id})  0 of 0+ bytes  missing 0-  (lost: neither its promise nor its stream arrived)",
                    "incomplete"
                );
            }
            Record::HeadlessStream { stream_id, bytes } if !self.json => {
                let _ = writeln!(
                    self.out,
                    "{:<10} (stream {stream_id})  {bytes} of {bytes}+ bytes  missing 0-  (headless_stream: its start never arrived)",
                    "incomplete"
                );
            }
            Record::Error(e) => {
                let _ = writeln!(self.err, "{}", e.text_line());
            }
            Record::Summary(s) => {
                let _ = writeln!(self.err, "{}", with_amt_fields(s.text_line(), self.amt.get()));
            }
            _ => {}
        }
    }

    /// Flushes both streams.
    pub fn flush(&mut self) {
        let _ = self.out.flush();
        let _ = self.err.flush();
    }
}

/// A record as one JSON line; a summary gets the AMT counters as its `amt` object.
fn json_line(record: &Record, amt: Option<crate::input::AmtCounters>) -> serde_json::Result<String> {
    match (record, amt) {
        (Record::Summary(_), Some(amt)) => {
            let mut value = serde_json::to_value(record)?;
            if let Some(object) = value.as_object_mut() {
                object.insert("amt".to_string(), serde_json::to_value(amt)?);
            }
            serde_json::to_string(&value)
        }
        _ => serde_json::to_string(record),
    }
}

/// The summary line with the AMT counters' fields before `session_end`.
fn with_amt_fields(mut line: String, amt: Option<crate::input::AmtCounters>) -> String {
    if let Some(amt) = amt {
        let at = line.rfind(" session_end=").unwrap_or(line.len());
        line.insert_str(at, &amt.summary_fields());
    }
    line
}

/// Header fields as `[name, value]` string pairs (lossy UTF-8).
pub fn header_pairs(fields: &[HeaderField]) -> Vec<[String; 2]> {
    fields
        .iter()
        .map(|f| [String::from_utf8_lossy(&f.name).into_owned(), String::from_utf8_lossy(&f.value).into_owned()])
        .collect()
}

/// Percent-encodes whitespace, control characters, `%` and non-UTF-8 bytes, so
/// the name holds no space and no line break.
pub fn escape_name(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let encode = |out: &mut String, bytes: &[u8]| {
        for b in bytes {
            out.push_str(&format!("%{b:02X}"));
        }
    };
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '%' || c.is_whitespace() || c.is_control() {
                let mut buf = [0u8; 4];
                encode(&mut out, c.encode_utf8(&mut buf).as_bytes());
            } else {
                out.push(c);
            }
        }
        encode(&mut out, chunk.invalid());
    }
    out
}

/// A path as a string for JSON (lossy UTF-8).
pub fn path_string(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The reason token of an incomplete push.
pub fn incomplete_reason(reason: &IncompleteReason) -> String {
    match reason {
        IncompleteReason::Timeout => "timeout".to_owned(),
        IncompleteReason::SessionEnded => "session_ended".to_owned(),
        IncompleteReason::Reset { error_code } => format!("reset: error code {error_code:#x}"),
        IncompleteReason::Cancelled => "cancelled".to_owned(),
        IncompleteReason::NoPushStream => "no_push_stream".to_owned(),
        IncompleteReason::Evicted => "evicted".to_owned(),
        IncompleteReason::BadHeaders(e) => format!("bad_headers: {e}"),
        IncompleteReason::ProtocolError(e) => format!("protocol_error: {e}"),
    }
}

/// The token of a session end reason.
pub fn session_end_reason(reason: SessionEndReason) -> &'static str {
    match reason {
        SessionEndReason::ConnectionClose => "connection_close",
        SessionEndReason::Goaway => "goaway",
        SessionEndReason::IdleTimeout => "idle_timeout",
        SessionEndReason::EndOfInput => "end_of_input",
        SessionEndReason::Interrupted => "interrupted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: ResourceStatus) -> ResourceRecord {
        ResourceRecord {
            push_id: 3,
            status,
            complete: status == ResourceStatus::Complete,
            path: Some("/data.bin".into()),
            file: None,
            bytes: 98304,
            body_len: 100000,
            sha256: None,
            missing: vec![[98304, 100000]],
            missing_ranges: 1,
            copies: 1,
            fec_bytes: 0,
            repair_bytes: 0,
            completed_by: None,
            missing_from: None,
            reason: Some("timeout".into()),
            name: b"data.bin".to_vec(),
        }
    }

    #[test]
    fn text_lines() {
        let mut r = record(ResourceStatus::Complete);
        r.bytes = 13;
        r.sha256 = Some("ecf7".into());
        r.name = b"my file%.txt".to_vec();
        assert_eq!(r.text_line(), "complete   my%20file%25.txt  13 bytes  sha256:ecf7");
        let r = record(ResourceStatus::Incomplete);
        assert_eq!(r.text_line(), "incomplete data.bin  98304 of 100000 bytes  missing 98304-99999  (timeout)");
        let mut r = record(ResourceStatus::Incomplete);
        r.missing = vec![[5, 6], [10, 20]];
        r.missing_from = Some(30);
        assert_eq!(r.text_line(), "incomplete data.bin  98304 of 100000+ bytes  missing 5,10-19,30-  (timeout)");
        // Beyond MAX_MISSING_LISTED ranges the rest are counted.
        let gaps: Vec<std::ops::Range<u64>> = (0..100u64).map(|i| 2 * i..2 * i + 1).collect();
        (r.missing, r.missing_ranges) = missing_list(&gaps);
        assert_eq!((r.missing.len(), r.missing_ranges), (MAX_MISSING_LISTED, 100));
        assert_eq!(r.missing[63], [126, 127]);
        assert!(r.text_line().ends_with(",124,126,... (36 more ranges),30-  (timeout)"), "{}", r.text_line());
        let mut r = record(ResourceStatus::Refused);
        r.name = b"/../x\n".to_vec();
        r.reason = Some("refused: the path has a `..` component".into());
        assert_eq!(r.text_line(), "refused    /../x%0A  98304 bytes  (refused: the path has a `..` component)");
    }

    #[test]
    fn escaping() {
        assert_eq!(escape_name("été/日本.txt".as_bytes()), "été/日本.txt");
        assert_eq!(escape_name(b"a\xffb c\t"), "a%FFb%20c%09");
        assert_eq!(escape_name("a\u{a0}b".as_bytes()), "a%C2%A0b");
    }

    #[test]
    fn json_shape() {
        let json = serde_json::to_value(Record::Resource(record(ResourceStatus::Incomplete))).unwrap();
        assert_eq!(json["event"], "resource");
        assert_eq!(json["status"], "incomplete");
        assert_eq!(json["missing"], serde_json::json!([[98304, 100000]]));
        assert_eq!(json["copies"], 1);
        assert!(json.get("name").is_none());
        let json = serde_json::to_value(Record::SessionEnd { reason: "goaway" }).unwrap();
        assert_eq!(json, serde_json::json!({"event": "session_end", "reason": "goaway"}));
    }

    #[test]
    fn a_summary_without_the_end_signal_names_the_last_push_seen() {
        let ended = SummaryRecord { session_end: Some("connection_close"), ..Default::default() };
        assert!(ended.text_line().ends_with(" session_end=connection_close exit=0"), "{}", ended.text_line());
        assert!(serde_json::to_value(&ended).unwrap().get("last_push_id").is_none());
        let timed_out =
            SummaryRecord { session_end: Some("idle_timeout"), last_push_id: Some(41), ..Default::default() };
        assert!(timed_out.text_line().ends_with(" last_push_id=41 session_end=idle_timeout exit=0"));
        assert_eq!(serde_json::to_value(&timed_out).unwrap()["last_push_id"], 41);
    }

    #[test]
    fn the_summary_carries_the_amt_counters_when_there_are_some() {
        let amt = crate::input::AmtCounters { queries: 2, data_invalid: 9, data_bad_checksum: 9, ..Default::default() };
        for json in [false, true] {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let mut reporter = Reporter::new(json, &mut out, &mut err);
            let slot = reporter.amt_slot();
            reporter.emit(&Record::Summary(Box::default()));
            slot.set(Some(amt));
            reporter.emit(&Record::Summary(Box::default()));
            drop(reporter);
            let err = String::from_utf8(err).unwrap();
            let lines: Vec<&str> = err.lines().collect();
            assert!(!lines[0].contains("amt_"), "{}", lines[0]);
            assert!(
                lines[1].ends_with(
                    " amt_advertisements=0 amt_queries=2 amt_data=0 amt_data_invalid=9 amt_bad_checksum=9 \
                     session_end=none exit=0"
                ),
                "{}",
                lines[1]
            );
            let out = String::from_utf8(out).unwrap();
            if json {
                let objects: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
                assert_eq!(objects[0]["event"], "summary");
                assert!(objects[0].get("amt").is_none());
                assert_eq!(objects[1]["amt"]["data_bad_checksum"], 9);
                assert_eq!(objects[1]["amt"]["queries"], 2);
                assert_eq!(objects[1]["amt"]["data_packets"], 0);
            } else {
                assert!(out.is_empty());
            }
        }
    }
}
