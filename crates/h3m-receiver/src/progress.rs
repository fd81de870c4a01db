//! A one-line progress display on a terminal (stderr), redrawn at most every 200 ms.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Progress of a live reception.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    started: Instant,
    last_draw: Option<Instant>,
}

impl Progress {
    /// Enabled only when stderr is a terminal and `wanted`.
    pub fn new(wanted: bool) -> Self {
        Progress { enabled: wanted && std::io::stderr().is_terminal(), started: Instant::now(), last_draw: None }
    }

    /// Redraws with the body bytes received and resources settled so far.
    pub fn update(&mut self, body_bytes: u64, resources: usize) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self.last_draw.is_some_and(|t| now - t < Duration::from_millis(200)) {
            return;
        }
        self.last_draw = Some(now);
        let secs = (now - self.started).as_secs_f64().max(1e-3);
        let _ = write!(
            std::io::stderr(),
            "\r\x1b[Kreceived {:.1} MiB, {} resources, {:.1} Mbit/s",
            body_bytes as f64 / (1 << 20) as f64,
            resources,
            body_bytes as f64 * 8.0 / secs / 1e6
        );
        let _ = std::io::stderr().flush();
    }

    /// Clears the line.
    pub fn finish(&mut self) {
        if self.enabled && self.last_draw.is_some() {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}
