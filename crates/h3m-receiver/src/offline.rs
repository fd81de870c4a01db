//! The offline mode of `h3m-recv`: a capture file through the receiver into
//! the output directory.
//!
//! [`run`] reads the capture as a stream ([`crate::capture::CaptureReader`]:
//! memory bounded by a chunk of the file, not its length, so a capture of any
//! size, or a pipe, can be read), feeds every datagram to a
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
//! | 3 | the input file is unreadable or malformed (a fault after the start of the file ends the run there: what came before it is received and reported as usual) |
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
    /// Keep only UDP datagrams to this port (pcap only), and those to the
    /// repair port.
    pub port: Option<u16>,
    /// The FEC repair port (default: `port` + 1; FEC off with the session's
    /// [`fec_window`](crate::SessionConfig::fec_window) 0). Without `port`
    /// (or in a `.datagrams` file) repair datagrams are told by their first
    /// bytes.
    pub repair_port: Option<u16>,
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
            repair_port: None,
            fsync: false,
        }
    }
}

/// Runs the offline mode, printing to `out` and `err` (see [`crate::report`]).
pub fn run(opts: &Options, out: &mut dyn Write, err: &mut dyn Write) -> Outcome {
    run_observed(opts, out, err, None)
}

/// [`run`], with `observer` (if any) seeing every record as it happens (see
/// [`crate::report::Observer`]; `h3m-recv --input ... --serve`).
pub fn run_observed(
    opts: &Options,
    out: &mut dyn Write,
    err: &mut dyn Write,
    observer: Option<Box<dyn crate::report::Observer>>,
) -> Outcome {
    let mut reporter = Reporter::new(opts.json, out, err);
    if let Some(observer) = observer {
        reporter.set_observer(observer);
    }
    let outcome = run_with(opts, &mut reporter);
    reporter.flush();
    outcome
}

fn run_with(opts: &Options, reporter: &mut Reporter<'_>) -> Outcome {
    let _span =
        tracing::info_span!("session", input = %opts.input.display(), session_id = %opts.session.session_id).entered();
    let fatal = Outcome::fatal;
    let fec = opts.session.fec_window > 0;
    let repair_port = opts.port.and_then(|p| opts.repair_port.or(p.checked_add(1))).filter(|_| fec);
    let read_options = ReadOptions { port: opts.port, repair_port };
    let mut capture = match capture::CaptureReader::open(&opts.input, &read_options) {
        Ok(c) => c,
        Err(e) => return fatal(reporter, ErrorKind::Input, capture_error(opts, &e), ExitStatus::BadInput),
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
    session.set_qlog(opts.session.open_qlog());
    // Until the capture gives a time (a .datagrams file never does), the
    // freshness clock is the system's.
    if opts.session.verify.max_age.is_some() {
        session.set_clock(Clock::System);
    }

    let base = Instant::now();
    let mut first = None;
    let mut now = base;
    for datagram in capture.by_ref() {
        let datagram = match datagram {
            Ok(d) => d,
            Err(e) => {
                // What came before was received; the rest is unreadable.
                session.run_error(ErrorKind::Input, capture_error(opts, &e));
                break;
            }
        };
        if let Some(t) = datagram.timestamp {
            let first = *first.get_or_insert(t);
            let at = base.checked_add(t.checked_sub(first).unwrap_or_default()).unwrap_or(now);
            now = now.max(at);
            session.set_clock(Clock::At(std::time::UNIX_EPOCH + t));
        }
        if session.receiver.poll_timeout().is_some_and(|t| t <= now) {
            session.receiver.handle_timeout(now);
            session.drain();
        }
        let repair = match (repair_port, datagram.destination) {
            (Some(rp), Some(dest)) => dest.port() == rp,
            _ => fec && datagram.payload.starts_with(&h3m_proto::fec::repair::MAGIC),
        };
        if repair {
            session.receiver.handle_repair(now, &datagram.payload);
        } else {
            session.receive(now, &datagram.payload);
        }
        session.drain();
    }
    session.receiver.finish(now);
    session.drain();
    session.finish(capture.into_stats())
}

/// The message for an unreadable or malformed capture.
fn capture_error(opts: &Options, e: &capture::CaptureError) -> String {
    match e {
        capture::CaptureError::Io { .. } => e.to_string(),
        e => format!("capture {}: {e}", opts.input.display()),
    }
}
