//! `h3m-recv --qlog DIR`: a qlog trace of the session (see [`h3m_proto::qlog`])
//! written to `DIR/<session-id>-receiver.sqlog`.
//!
//! Every datagram of the session is a `transport:packet_received` event with its
//! packet number, length and frames; push promises are `http:frame_parsed`
//! events and finished pushes `http:push_resolved` (`claimed` when complete,
//! `abandoned` otherwise). The file stops growing at
//! [`QlogOptions::max_bytes`], with one final note. Open it in qvis
//! (<https://qvis.quictools.info>, "Load file").

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use h3m_proto::SessionId;
use h3m_proto::qlog::{QlogError, QlogTrace, VantagePoint};

/// Where and how much to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QlogOptions {
    /// The directory the trace is written in (created if missing).
    pub dir: PathBuf,
    /// The most bytes a trace file grows to (`--qlog-max-mib`, default 1 GiB).
    pub max_bytes: u64,
}

impl QlogOptions {
    /// Traces in `dir`, up to 1 GiB each.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        QlogOptions { dir: dir.into(), max_bytes: 1 << 30 }
    }

    /// The trace file of session `session_id` at vantage point `role`
    /// (`receiver` or `sender`).
    pub fn path(&self, session_id: &SessionId, role: &str) -> PathBuf {
        self.dir.join(format!("{}-{role}.sqlog", session_id.to_hex()))
    }
}

/// Why a trace could not be started.
#[derive(Debug, thiserror::Error)]
pub enum QlogOpenError {
    /// The file or directory could not be created.
    #[error("qlog file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The header record could not be written.
    #[error("qlog file {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        source: QlogError,
    },
}

/// Creates `path` (and its directory) and starts a trace in it, at `start`.
pub fn open_trace(
    path: &Path,
    title: &str,
    vantage: VantagePoint,
    start: Instant,
    max_bytes: u64,
) -> Result<QlogTrace, QlogOpenError> {
    let io = |source| QlogOpenError::Io { path: path.to_owned(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let file = std::fs::File::create(path).map_err(io)?;
    let reference = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    QlogTrace::new(Box::new(BufWriter::with_capacity(64 << 10, file)), title, vantage, start, reference, max_bytes)
        .map_err(|source| QlogOpenError::Write { path: path.to_owned(), source })
}

/// The receiver's trace of session `session_id`, or `None` (with a warning)
/// when the file cannot be created.
pub(crate) fn open_receiver(opts: &QlogOptions, session_id: &SessionId) -> Option<Box<QlogTrace>> {
    let path = opts.path(session_id, "receiver");
    let title = format!("h3m receiver, session {}", session_id.to_hex());
    match open_trace(&path, &title, VantagePoint::Client, Instant::now(), opts.max_bytes) {
        Ok(t) => {
            tracing::info!(path = %path.display(), "writing qlog");
            Some(Box::new(t))
        }
        Err(e) => {
            tracing::warn!(error = %e, "qlog off");
            None
        }
    }
}
