//! A one-line progress display on a terminal (stderr), redrawn at most every 200 ms.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Progress of a send.
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

    /// Redraws: `done` of `total` bytes of `name`, `sent` bytes on the wire so far.
    pub fn update(&mut self, name: &str, done: u64, total: Option<u64>, sent: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self.last_draw.is_some_and(|t| now - t < Duration::from_millis(200)) {
            return;
        }
        self.last_draw = Some(now);
        let secs = (now - self.started).as_secs_f64().max(1e-3);
        let rate = sent as f64 * 8.0 / secs / 1e6;
        let bar = match total {
            Some(t) if t > 0 => {
                let filled = (done.min(t) * 30 / t) as usize;
                format!("[{}{}] {:3}%", "=".repeat(filled), " ".repeat(30 - filled), done.min(t) * 100 / t)
            }
            _ => format!("{} bytes", done),
        };
        let mut err = std::io::stderr();
        let _ = write!(err, "\r\x1b[K{bar} {rate:7.1} Mbit/s {name}");
        let _ = err.flush();
    }

    /// Clears the line.
    pub fn finish(&mut self) {
        if self.enabled && self.last_draw.is_some() {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}
