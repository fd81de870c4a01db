//! `h3m-send --qlog DIR`: a qlog trace of the session (see
//! [`h3m_proto::qlog`]) written to `DIR/<session-id>-sender.sqlog`: one
//! `transport:packet_sent` event per datagram of the session, with its packet
//! number, length and frames. The file stops growing at
//! [`QlogConfig::max_bytes`], with one final note. Open it in qvis
//! (<https://qvis.quictools.info>, "Load file").

use std::io::BufWriter;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use h3m_proto::SessionId;
use h3m_proto::protection::PacketProtection;
use h3m_proto::qlog::{Direction, QlogError, QlogTrace, VantagePoint};

/// Where and how much to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QlogConfig {
    /// The directory the trace is written in (created if missing).
    pub dir: PathBuf,
    /// The most bytes the trace file grows to (`--qlog-max-mib`, default 1 GiB).
    pub max_bytes: u64,
}

impl QlogConfig {
    /// Traces in `dir`, up to 1 GiB.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        QlogConfig { dir: dir.into(), max_bytes: 1 << 30 }
    }

    /// The trace file of session `session_id`.
    pub fn path(&self, session_id: &SessionId) -> PathBuf {
        self.dir.join(format!("{}-sender.sqlog", session_id.to_hex()))
    }
}

/// Why the trace could not be started.
#[derive(Debug, thiserror::Error)]
pub enum QlogOpenError {
    /// The file or its directory could not be created.
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

/// The sender's trace: the file, and what it takes to open the packets it
/// logs.
pub(crate) struct SenderQlog {
    trace: QlogTrace,
    session_id: SessionId,
    protection: Box<dyn PacketProtection>,
}

impl SenderQlog {
    /// Creates the trace file of session `session_id` and writes its header.
    pub(crate) fn open(
        config: &QlogConfig,
        session_id: SessionId,
        protection: Box<dyn PacketProtection>,
    ) -> Result<Self, QlogOpenError> {
        let path = config.path(&session_id);
        let io = |source| QlogOpenError::Io { path: path.clone(), source };
        std::fs::create_dir_all(&config.dir).map_err(io)?;
        let file = std::fs::File::create(&path).map_err(io)?;
        let reference = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let title = format!("h3m sender, session {}", session_id.to_hex());
        let out = Box::new(BufWriter::with_capacity(64 << 10, file));
        let trace = QlogTrace::new(out, &title, VantagePoint::Server, Instant::now(), reference, config.max_bytes)
            .map_err(|source| QlogOpenError::Write { path: path.clone(), source })?;
        tracing::info!(path = %path.display(), "writing qlog");
        Ok(SenderQlog { trace, session_id, protection })
    }

    /// Logs a batch of datagrams sent at `now`.
    pub(crate) fn sent(&mut self, now: Instant, batch: &[Vec<u8>]) -> Result<(), QlogError> {
        for d in batch {
            self.trace.datagram(now, Direction::Sent, d, &self.session_id, self.protection.as_ref())?;
        }
        Ok(())
    }

    /// Flushes the file.
    pub(crate) fn flush(&mut self) -> Result<(), QlogError> {
        self.trace.flush()
    }
}
