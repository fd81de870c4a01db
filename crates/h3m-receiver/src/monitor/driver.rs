//! The monitor's driver: joins every session, feeds each [`Watcher`] from
//! its socket, prints the JSON lines and serves `/metrics`.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use h3m_net::{MulticastConfig, RecvBatch, RecvSocket};
use h3m_unicast::metrics::{Exposition, MetricsError, MetricsServer};
use serde::Serialize;

use super::config::Entry;
use super::watcher::{Snapshot, Watcher};

/// How often up/down changes are looked for.
const TICK: Duration = Duration::from_millis(100);

/// The receive slot of each session's socket, in bytes: a jumbo frame's
/// payload. GRO is off so that a slot holds one datagram, and a session's
/// receive batch takes 32 of these (288 KiB; 72 MiB for the most sessions a
/// configuration may list) instead of the 2 MiB a GRO batch needs. A longer
/// datagram is cut to this length: its header is still read, its bytes are
/// under-counted (and a protected one fails authentication: `foreign`).
pub const SLOT_SIZE: usize = 9216;

/// How the monitor runs.
#[derive(Debug, Clone)]
pub struct MonitorOptions {
    /// A `status` line per session this often.
    pub interval: Duration,
    /// A session is down when no packet came for this long.
    pub down_after: Duration,
    /// Watch for this long, print a `final` line per session and stop
    /// (`None`: until stopped).
    pub once: Option<Duration>,
    /// Serve `/metrics` here.
    pub metrics: Option<SocketAddr>,
    /// The receive buffer each socket asks for.
    pub recv_buffer: usize,
}

impl Default for MonitorOptions {
    /// A line every 5 s, down after 5 s, no `--once`, no metrics, 1 MiB buffers.
    fn default() -> Self {
        MonitorOptions {
            interval: Duration::from_secs(5),
            down_after: Duration::from_secs(5),
            once: None,
            metrics: None,
            recv_buffer: 1 << 20,
        }
    }
}

/// Why the monitor could not run.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The metrics server did not start.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// Writing the output failed.
    #[error("write: {0}")]
    Output(#[from] std::io::Error),
}

/// One line of output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusLine<'a> {
    /// `status` (every interval), `change` (went up or down), `final`
    /// (`--once`).
    pub event: &'static str,
    /// The session's name.
    pub name: &'a str,
    /// Its group and port.
    pub group: SocketAddr,
    /// Whether it is up.
    pub up: bool,
    /// Bits per second since the previous `status` or `final` line (0 on a
    /// `change` line).
    pub rate_bps: u64,
    /// Packets of the session received.
    pub datagrams: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Packets lost (packet-number gaps not filled).
    pub lost: u64,
    /// Datagrams to the group that were not the session's packets.
    pub foreign: u64,
    /// Times the sender started its packet numbers again.
    pub restarts: u64,
    /// Milliseconds since the last packet (`None`: none yet).
    pub last_seen_ms_ago: Option<u64>,
    /// Why the session could not be joined (it is then always down).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

impl<'a> StatusLine<'a> {
    /// The line for `session` from `snapshot`.
    pub fn new(event: &'static str, session: &'a Monitored, snapshot: &Snapshot, rate_bps: u64) -> Self {
        let c = snapshot.counters;
        StatusLine {
            event,
            name: &session.entry.name,
            group: session.entry.group,
            up: snapshot.up,
            rate_bps,
            datagrams: c.datagrams,
            bytes: c.bytes,
            lost: c.lost,
            foreign: c.foreign,
            restarts: c.restarts,
            last_seen_ms_ago: snapshot.last_seen_ago.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            error: session.error.as_deref(),
        }
    }
}

/// A session being watched.
#[derive(Debug)]
pub struct Monitored {
    /// Its configuration.
    pub entry: Entry,
    /// Its state, shared with the task that reads its socket.
    pub watcher: Mutex<Watcher>,
    /// Why it could not be joined.
    pub error: Option<String>,
}

/// A metric family of the exposition: name, type, help, and its value for a session.
type Family = (&'static str, &'static str, &'static str, fn(&Snapshot) -> u64);

fn lock(m: &Mutex<Watcher>) -> MutexGuard<'_, Watcher> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The Prometheus exposition of the sessions at `now`.
pub fn render(sessions: &[Arc<Monitored>], now: Instant) -> String {
    let snaps: Vec<(&str, Snapshot)> =
        sessions.iter().map(|s| (s.entry.name.as_str(), lock(&s.watcher).snapshot(now))).collect();
    let mut e = Exposition::new();
    let families: [Family; 7] = [
        ("h3m_monitor_up", "gauge", "1 if a packet of the session arrived within --down-after.", |s| u64::from(s.up)),
        ("h3m_monitor_datagrams_total", "counter", "Packets of the session received.", |s| s.counters.datagrams),
        ("h3m_monitor_bytes_total", "counter", "Bytes of the session's packets.", |s| s.counters.bytes),
        ("h3m_monitor_lost_packets", "gauge", "Packet numbers skipped over and not received.", |s| s.counters.lost),
        (
            "h3m_monitor_foreign_datagrams_total",
            "counter",
            "Datagrams to the group that were not the session's.",
            |s| s.counters.foreign,
        ),
        ("h3m_monitor_restarts_total", "counter", "Times the sender started its packet numbers again.", |s| {
            s.counters.restarts
        }),
        (
            "h3m_monitor_seconds_since_last_packet",
            "gauge",
            "Seconds since the session's last packet (since the start when none came).",
            |s| s.last_seen_ago.unwrap_or(s.watched_for).as_secs(),
        ),
    ];
    for (name, kind, help, value) in families {
        e.family(name, kind, help);
        for (session, snap) in &snaps {
            e.sample(name, &[("session", session)], value(snap));
        }
    }
    e.finish()
}

/// Joins `entries` and watches them as `opts` says, writing JSON lines to
/// `out` and warnings to `err`. Returns whether every session was up at the
/// end (with `--once`; otherwise it runs until the process is stopped).
pub async fn run(
    entries: Vec<Entry>,
    opts: &MonitorOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<bool, MonitorError> {
    let start = Instant::now();
    let mut sessions = Vec::with_capacity(entries.len());
    let mut sockets = Vec::with_capacity(entries.len());
    for entry in entries {
        let watcher = Mutex::new(Watcher::new(&entry, opts.down_after, start));
        let mut mc = MulticastConfig::new(entry.group);
        mc.source = entry.source;
        mc.interface = entry.interface.clone();
        mc.recv_buffer = Some(opts.recv_buffer);
        mc.gro = false;
        let (socket, error) = match RecvSocket::open(&mc) {
            Ok((socket, warnings)) => {
                for w in warnings {
                    writeln!(err, "h3m-monitor: warning: {}: {w}", entry.name)?;
                }
                (Some(socket), None)
            }
            Err(e) => {
                writeln!(err, "h3m-monitor: {}: join {}: {e}", entry.name, entry.group)?;
                (None, Some(format!("join: {e}")))
            }
        };
        sessions.push(Arc::new(Monitored { entry, watcher, error }));
        sockets.push(socket);
    }
    let sessions: Arc<[Arc<Monitored>]> = sessions.into();
    let mut tasks = tokio::task::JoinSet::new();
    for (session, socket) in sessions.iter().zip(sockets) {
        let Some(socket) = socket else { continue };
        let session = Arc::clone(session);
        tasks.spawn(async move {
            let mut batch = RecvBatch::with_slot_size(SLOT_SIZE);
            loop {
                if let Err(e) = socket.recv_batch(&mut batch).await {
                    // Transient (ICMP errors, ENOBUFS): try again shortly.
                    tracing::debug!(session = %session.entry.name, "receive: {e}");
                    tokio::time::sleep(TICK).await;
                    continue;
                }
                let now = Instant::now();
                let mut w = lock(&session.watcher);
                for d in batch.iter() {
                    w.on_datagram(now, d.payload);
                }
            }
        });
    }
    let _metrics = match opts.metrics {
        Some(listen) => {
            let shared = Arc::clone(&sessions);
            let server = MetricsServer::spawn(listen, Arc::new(move || render(&shared, Instant::now())))?;
            writeln!(err, "h3m-monitor: metrics at http://{}/metrics", server.local_addr())?;
            Some(server)
        }
        None => None,
    };
    let print = |out: &mut dyn Write, event: &'static str, s: &Monitored, snap: &Snapshot, rate: u64| {
        let line = StatusLine::new(event, s, snap, rate);
        let json = serde_json::to_string(&line).unwrap_or_default();
        writeln!(out, "{json}").and_then(|()| out.flush())
    };
    let deadline = opts.once.map(|d| start + d);
    let interval = opts.interval.max(TICK);
    let mut next_status = start + interval;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        for s in sessions.iter() {
            let (change, snap) = {
                let mut w = lock(&s.watcher);
                (w.poll_change(now), w.snapshot(now))
            };
            if change.is_some() {
                print(out, "change", s, &snap, 0)?;
            }
        }
        if now >= next_status {
            next_status += interval;
            if next_status <= now {
                next_status = now + interval;
            }
            for s in sessions.iter() {
                let (snap, rate) = {
                    let mut w = lock(&s.watcher);
                    (w.snapshot(now), w.take_rate(now))
                };
                print(out, "status", s, &snap, rate)?;
            }
        }
    }
    tasks.abort_all();
    let now = Instant::now();
    let mut all_up = true;
    for s in sessions.iter() {
        let (snap, rate) = {
            let mut w = lock(&s.watcher);
            (w.snapshot(now), w.take_rate(now))
        };
        all_up &= snap.up;
        print(out, "final", s, &snap, rate)?;
    }
    Ok(all_up)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::config;

    #[test]
    fn metrics_per_session() {
        let entries = config::parse("group=239.255.0.1:2000 name=a\ngroup=239.255.0.2:2000 name=b\n").unwrap();
        let t0 = Instant::now();
        let sessions: Vec<Arc<Monitored>> = entries
            .into_iter()
            .map(|entry| {
                let watcher = Mutex::new(Watcher::new(&entry, Duration::from_secs(5), t0));
                Arc::new(Monitored { entry, watcher, error: None })
            })
            .collect();
        {
            let mut w = lock(&sessions[0].watcher);
            w.on_packet(t0, 0, 1000);
            w.on_packet(t0, 3, 1000);
        }
        let text = render(&sessions, t0 + Duration::from_secs(2));
        for line in [
            "h3m_monitor_up{session=\"a\"} 1",
            "h3m_monitor_up{session=\"b\"} 0",
            "h3m_monitor_datagrams_total{session=\"a\"} 2",
            "h3m_monitor_bytes_total{session=\"a\"} 2000",
            "h3m_monitor_lost_packets{session=\"a\"} 2",
            "h3m_monitor_seconds_since_last_packet{session=\"a\"} 2",
            "h3m_monitor_seconds_since_last_packet{session=\"b\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
        let snap = lock(&sessions[1].watcher).snapshot(t0);
        let json = serde_json::to_value(StatusLine::new("status", &sessions[1], &snap, 0)).unwrap();
        assert_eq!(json["event"], "status");
        assert_eq!(json["name"], "b");
        assert_eq!(json["group"], "239.255.0.2:2000");
        assert_eq!(json["up"], false);
        assert!(json["last_seen_ms_ago"].is_null());
        assert!(json.get("error").is_none());
    }
}
