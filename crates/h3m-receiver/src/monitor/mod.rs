//! Stream monitoring (`h3m-monitor`): watches a list of sessions and says
//! which are up (a packet within the last few seconds), with their rate,
//! loss (packet-number gaps) and when each was last seen, as JSON lines and
//! on `/metrics`.
//!
//! * [`config`]: the configuration, one session per line (an Alt-Svc value
//!   or `group=ADDR:PORT source=ADDR session-id=HEX ...`).
//! * [`watcher::Watcher`]: one session's state, I/O-free: fed datagrams and
//!   the time.
//! * [`driver::run`]: joins each session and drives the watchers.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use h3m_receiver::monitor::{config, watcher::Watcher};
//!
//! let entries = config::parse("group=239.255.0.1:2000 session-id=2a name=news\n")?;
//! let t0 = Instant::now();
//! let mut w = Watcher::new(&entries[0], Duration::from_secs(5), t0);
//! w.on_packet(t0, 0, 1200);
//! assert!(w.is_up(t0 + Duration::from_secs(1)));
//! assert!(!w.is_up(t0 + Duration::from_secs(5)));
//! # Ok::<(), config::ConfigError>(())
//! ```

pub mod config;
pub mod driver;
pub mod watcher;
