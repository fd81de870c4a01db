//! The offline mode of `h3m-recv`: a capture file through the receiver into
//! the output directory.
//!
//! [`run`] reads the capture ([`crate::capture`]), feeds every datagram to a
//! [`Session`](crate::Session)'s engine (times: for pcap, now plus the capture timestamp minus the
//! first; for `.datagrams`, all at one instant), writes each complete push
//! with [`ResourceWriter`] under the name [`crate::paths::sanitize`] gives its
//! `:path`, and reports each event ([`crate::report`]). Before a resource is
//! written the checks of [`crate::verify`] run; their freshness clock is the
//! capture timestamp of the datagram that completed the resource (pcap), or,
//! for a `.datagrams` file, the system clock if `--max-age` was given (else
//! no freshness check).
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

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use h3m_proto::SessionId;

use crate::capture::{self, ReadOptions};
use crate::receiver::SessionConfig;
use crate::report::{ErrorKind, Reporter};
use crate::session::Session;
use crate::verify::Clock;
use crate::writer::ResourceWriter;

pub use crate::session::{ExitStatus, Outcome};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The capture file (pcap or `.datagrams`).
    pub input: PathBuf,
    /// The session: its ID, keys, checks and limits.
    pub session: SessionConfig,
    /// The output directory (created if missing).
    pub out_dir: PathBuf,
    /// JSON output instead of text.
    pub json: bool,
    /// Keep only UDP datagrams to this port (pcap only).
    pub port: Option<u16>,
    /// Sync each file to disk before reporting it written.
    pub fsync: bool,
}

impl Options {
    /// Options with nghq's default session ID and the receiver's default timeouts.
    pub fn new(input: impl Into<PathBuf>, out_dir: impl Into<PathBuf>) -> Self {
        Options {
            input: input.into(),
            session: SessionConfig::new(SessionId::NGHQ_DEFAULT),
            out_dir: out_dir.into(),
            json: false,
            port: None,
            fsync: false,
        }
    }
}

/// Runs the offline mode, printing to `out` and `err` (see [`crate::report`]).
pub fn run(opts: &Options, out: &mut dyn Write, err: &mut dyn Write) -> Outcome {
    let mut reporter = Reporter::new(opts.json, out, err);
    let outcome = run_with(opts, &mut reporter);
    reporter.flush();
    outcome
}

fn run_with(opts: &Options, reporter: &mut Reporter<'_>) -> Outcome {
    let fatal = Outcome::fatal;
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
        Ok(w) => w.with_fsync(opts.fsync),
        Err(e) => {
            let message = format!("output directory: {e}");
            return fatal(reporter, ErrorKind::OutputDir, message, ExitStatus::OutputError);
        }
    };
    let mut session = Session::new(opts.session.receiver(), writer, reporter);
    session.set_verify(opts.session.verify.clone());
    // Freshness: capture time for pcap; without timestamps, the system clock
    // only when --max-age was given.
    let timestamped = capture.datagrams.iter().any(|d| d.timestamp.is_some());
    if !timestamped && opts.session.verify.max_age.is_some() {
        session.set_clock(Clock::System);
    }

    let base = Instant::now();
    let first = capture.datagrams.iter().find_map(|d| d.timestamp);
    let mut now = base;
    for datagram in &capture.datagrams {
        if let (Some(t), Some(first)) = (datagram.timestamp, first) {
            let at = base.checked_add(t.checked_sub(first).unwrap_or_default()).unwrap_or(now);
            now = now.max(at);
        }
        if let Some(t) = datagram.timestamp {
            session.set_clock(Clock::At(std::time::UNIX_EPOCH + t));
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
    session.finish(capture.stats)
}
