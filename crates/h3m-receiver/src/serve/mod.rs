//! The receiver as a local origin (`h3m-recv --serve ADDR:PORT`): every
//! resource received is served over HTTP/1.1 at its `:path`, with the
//! receiver's metrics, a status page and its event feed beside them.
//!
//! * [`index`]: what is known of each path, built from the receiver's
//!   records ([`crate::report::Record`]) through a [`Feed`], the
//!   [`Observer`] handed to [`crate::live::run_observed`] (or
//!   [`crate::offline::run_observed`]); the session itself stays sans-IO.
//! * [`Server`]: the HTTP/1.1 server (hyper 1) on a thread of its own with
//!   its own single-threaded runtime, so serving (file reads, slow
//!   clients) never delays the receive loop.
//!
//! What is served (see [`http`] for the details):
//!
//! * `GET`/`HEAD /PATH`: a complete resource from its file under the output
//!   directory, streamed (never held in memory), with `content-type` (if its
//!   push carried one), `content-length`, an `ETag` made of its SHA-256,
//!   `date`, byte ranges (`206`, `416`) and `If-None-Match` (`304`). A path
//!   promised but not yet complete: the request waits for it (at most
//!   [`ServeOptions::wait_timeout`], then `504`); given up incomplete: `503`
//!   with `h3m-missing: 0-1199,2400-` (the missing byte ranges, inclusive);
//!   refused (a failed digest or signature check): `502`; unknown: `404`. A
//!   path that would leave the output directory: `400`.
//! * `/metrics`: Prometheus text exposition ([`metrics`]).
//! * `/`: a status page; `/.well-known/h3m/status`: the same as JSON;
//!   `/events`: Server-Sent Events, the JSON records `h3m-recv --json`
//!   prints ([`status`]).
//!
//! In a program of your own (`h3m-recv --serve` does the same):
//!
//! ```no_run
//! use h3m_receiver::{live, serve};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let adv = h3m_proto::altsvc::parse_one(r#"h3m-07="239.255.0.1:2000"; session-id=2a"#)?;
//! let opts = live::LiveOptions::from_advertisement(&adv, "out")?;
//! let server = serve::Server::spawn(serve::ServeOptions::new("127.0.0.1:8080".parse()?, "out"))?;
//! let feed = Box::new(server.feed());
//! let outcome = live::run_observed(&opts, &mut std::io::stdout(), &mut std::io::stderr(), feed).await;
//! println!("{:?}; still serving until `server` is dropped", outcome.status);
//! # Ok(()) }
//! ```
//!
//! Load is bounded: [`ServeOptions::max_connections`] connections (more are
//! closed at once), [`ServeOptions::max_waiters`] requests waiting for a
//! resource (more are answered `503` + `Retry-After: 1`),
//! [`MAX_SUBSCRIBERS`] event feeds, and the index's own bounds
//! ([`index::MAX_ENTRIES`]).

use h3m_unicast::server_thread::ServerThread;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::{Semaphore, mpsc, watch};

use crate::report::{LiveStats, Observer, Record, SummaryRecord};

mod body;
pub mod http;
pub mod index;
pub mod metrics;
pub mod status;

pub use index::Index;

/// At most this many `/events` feeds at once (more are answered `503`).
pub const MAX_SUBSCRIBERS: usize = 64;
/// Records queued for one slow `/events` feed before it misses some.
pub const SUBSCRIBER_QUEUE: usize = 1024;

/// What is received, for the status page.
#[derive(Debug, Clone, Default)]
pub struct SessionInfo {
    /// The group and port (or the capture file).
    pub group: String,
    /// The source of an SSM join, if any.
    pub source: Option<String>,
    /// The session ID, in hex.
    pub session_id: String,
    /// The AMT relay (`--amt`), if any.
    pub amt: Option<String>,
}

/// How a [`Server`] serves.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The address to listen on (TCP); port 0 picks one.
    pub listen: SocketAddr,
    /// The output directory the receiver writes into.
    pub out_dir: PathBuf,
    /// How long a request for a promised resource waits for it (then `504`).
    pub wait_timeout: Duration,
    /// `Access-Control-Allow-Origin` of every answer (`--serve-cors`).
    pub cors: Option<String>,
    /// Requests waiting for a resource at once; beyond: `503`.
    pub max_waiters: usize,
    /// Connections at once; beyond, new ones are closed.
    pub max_connections: usize,
    /// The session, for the status page.
    pub session: SessionInfo,
}

impl ServeOptions {
    /// Defaults: 10 s wait, 1024 waiters, 512 connections, no CORS.
    pub fn new(listen: SocketAddr, out_dir: impl Into<PathBuf>) -> Self {
        ServeOptions {
            listen,
            out_dir: out_dir.into(),
            wait_timeout: Duration::from_secs(10),
            cors: None,
            max_waiters: 1024,
            max_connections: 512,
            session: SessionInfo::default(),
        }
    }
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Binding the address failed.
    #[error("bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The thread or its runtime could not be started.
    #[error("serve: {0}")]
    Start(String),
}

/// What the receiver reported last, for the status page and the metrics.
#[derive(Debug, Default)]
pub(crate) struct LiveView {
    /// The live counters, latest first.
    pub(crate) stats: LiveStats,
    /// The final summary, once the run ended.
    pub(crate) summary: Option<Box<SummaryRecord>>,
    /// Session ends seen.
    pub(crate) sessions_ended: u64,
    /// The last session end's reason.
    pub(crate) last_end: Option<&'static str>,
}

/// The server's own counters.
#[derive(Debug, Default)]
pub(crate) struct ServeCounters {
    /// Answers by status code.
    pub(crate) by_status: Mutex<BTreeMap<u16, u64>>,
    /// Body bytes of resources sent.
    pub(crate) body_bytes: AtomicU64,
    /// Connections accepted.
    pub(crate) connections: AtomicU64,
    /// Connections closed at once at the connection limit.
    pub(crate) refused_connections: AtomicU64,
    /// Records an `/events` feed missed (it read too slowly).
    pub(crate) events_dropped: AtomicU64,
}

/// What the server's tasks and the [`Feed`] share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) index: Mutex<Index>,
    pub(crate) live: Mutex<LiveView>,
    pub(crate) opts: ServeOptions,
    pub(crate) waiters: Arc<Semaphore>,
    pub(crate) connections: Arc<Semaphore>,
    pub(crate) counters: ServeCounters,
    pub(crate) subscribers: Mutex<Vec<mpsc::Sender<Arc<str>>>>,
    pub(crate) started: SystemTime,
}

/// A lock that a panic elsewhere did not make unusable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    fn new(opts: ServeOptions) -> Shared {
        Shared {
            index: Mutex::new(Index::new()),
            live: Mutex::new(LiveView::default()),
            waiters: Arc::new(Semaphore::new(opts.max_waiters.max(1))),
            connections: Arc::new(Semaphore::new(opts.max_connections.max(1))),
            opts,
            counters: ServeCounters::default(),
            subscribers: Mutex::new(Vec::new()),
            started: SystemTime::now(),
        }
    }

    /// Requests waiting for a resource now.
    pub(crate) fn waiting(&self) -> usize {
        self.opts.max_waiters.max(1) - self.waiters.available_permits()
    }

    /// Connections open now.
    pub(crate) fn open_connections(&self) -> usize {
        self.opts.max_connections.max(1) - self.connections.available_permits()
    }

    fn count(&self, status: u16) {
        *lock(&self.counters.by_status).entry(status).or_default() += 1;
    }

    /// Hands a record to every `/events` feed (serialized once, only when
    /// there is one).
    fn publish(&self, record: &Record) {
        let mut subscribers = lock(&self.subscribers);
        if subscribers.is_empty() {
            return;
        }
        let Ok(json) = serde_json::to_string(record) else { return };
        let json: Arc<str> = json.into();
        subscribers.retain(|tx| match tx.try_send(Arc::clone(&json)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters.events_dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }

    /// A new `/events` feed, unless there are [`MAX_SUBSCRIBERS`] already.
    pub(crate) fn subscribe(&self) -> Option<mpsc::Receiver<Arc<str>>> {
        let mut subscribers = lock(&self.subscribers);
        subscribers.retain(|tx| !tx.is_closed());
        if subscribers.len() >= MAX_SUBSCRIBERS {
            return None;
        }
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE);
        subscribers.push(tx);
        Some(rx)
    }
}

/// The receiver's side of a [`Server`]: an [`Observer`] that keeps its
/// index, counters and event feeds up to date. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Feed {
    shared: Arc<Shared>,
}

impl Feed {
    /// A snapshot of the index's counters.
    pub fn counters(&self) -> index::IndexCounters {
        lock(&self.shared.index).counters()
    }
}

impl Observer for Feed {
    fn record(&mut self, record: &Record) {
        lock(&self.shared.index).on_record(record);
        match record {
            Record::SessionEnd { reason } => {
                let mut live = lock(&self.shared.live);
                live.sessions_ended += 1;
                live.last_end = Some(reason);
            }
            Record::Summary(summary) => {
                let mut live = lock(&self.shared.live);
                live.stats.receiver = summary.receiver.clone();
                live.stats.datagrams = live.stats.datagrams.max(summary.capture.udp_datagrams);
                live.summary = Some(summary.clone());
            }
            _ => {}
        }
        self.shared.publish(record);
    }

    fn stats(&mut self, stats: &LiveStats) {
        lock(&self.shared.live).stats = stats.clone();
    }
}

/// A running server; dropping it (or [`shutdown`](Self::shutdown)) stops it.
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    thread: ServerThread,
}

impl Server {
    /// Binds the address and starts serving on a thread of its own.
    pub fn spawn(opts: ServeOptions) -> Result<Server, ServeError> {
        let bind_err = |addr, source| ServeError::Bind { addr, source };
        let listen = opts.listen;
        let tcp = std::net::TcpListener::bind(listen).map_err(|e| bind_err(listen, e))?;
        let local_addr = tcp.local_addr().map_err(|e| bind_err(listen, e))?;
        tcp.set_nonblocking(true).map_err(|e| bind_err(local_addr, e))?;
        let shared = Arc::new(Shared::new(opts));
        let (stop, stopped) = watch::channel(false);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let task_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("h3m-serve".into())
            .spawn(move || {
                yield_to_reception();
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(ServeError::Start(e.to_string())));
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(tcp) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(bind_err(local_addr, e)));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    http::accept_loop(listener, task_shared, stopped).await;
                });
            })
            .map_err(|e| ServeError::Start(e.to_string()))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(ServeError::Start("the serve thread ended".into())),
        }
        tracing::info!(%local_addr, "serving received resources over HTTP/1.1");
        Ok(Server { local_addr, shared, thread: ServerThread::new(stop, thread) })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The observer to hand to the receiver ([`crate::live::run_observed`]).
    pub fn feed(&self) -> Feed {
        Feed { shared: Arc::clone(&self.shared) }
    }

    /// Stops serving (connections are closed) and waits for the thread.
    pub fn shutdown(mut self) {
        self.thread.stop();
    }
}

/// Nice value of the serve thread: when the CPU is short, reception (the
/// receive loop and the file worker, at the process's own priority) comes
/// first and HTTP clients wait, rather than datagrams overflowing the socket
/// buffer while a client is fed.
pub const SERVE_THREAD_NICE: i32 = 10;

/// Lowers the calling thread's priority to [`SERVE_THREAD_NICE`]; failure
/// leaves it as it is.
fn yield_to_reception() {
    if let Err(e) = h3m_net::lower_thread_priority(SERVE_THREAD_NICE) {
        tracing::debug!(error = %e, "the serve thread keeps its priority");
    }
}
