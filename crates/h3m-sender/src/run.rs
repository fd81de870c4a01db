//! The send loop: resources from the file system (or standard input) through the
//! `Sender` state machine, paced onto a multicast socket.

use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use h3m_net::{Interface, MulticastConfig, Pacer, SendSocket};
use h3m_proto::SessionId;
use h3m_proto::aead::{AeadProtection, HP_RULE_EXTENSION};
use h3m_proto::altsvc::Advertisement;
use h3m_proto::altsvc::Extension;
use h3m_proto::auth::{PushSigner, SignPushError};
use h3m_proto::encoder::{EncodeError, EncoderConfig};
use h3m_proto::protection::{CipherSuite, NullProtection, PacketProtection};
use h3m_proto::qpack::HeaderField;
use h3m_proto::sender::{ResourceMeta, Sender, SenderConfig, SenderStats, base64};

use crate::progress::Progress;
use crate::tree::{self, Entry};

/// Everything `h3m-send` was asked to do.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// Files and directories to publish.
    pub paths: Vec<PathBuf>,
    /// Multicast group and port.
    pub group: SocketAddr,
    /// Source address to send from (and advertise for SSM).
    pub source: Option<IpAddr>,
    /// Outgoing interface.
    pub interface: Option<Interface>,
    /// TTL / hop limit.
    pub ttl: u32,
    /// Session ID.
    pub session_id: SessionId,
    /// `:authority`.
    pub authority: String,
    /// `:path` prefix.
    pub path_prefix: String,
    /// Peak rate in bits/s of UDP payload; `None` sends unpaced.
    pub rate: Option<u64>,
    /// How many times to send the whole set.
    pub repeat: u32,
    /// Keep running and publish new or changed files.
    pub watch: bool,
    /// How often `--watch` looks at the tree.
    pub watch_interval: Duration,
    /// Publish standard input as one live resource at this path.
    pub stdin_path: Option<String>,
    /// Packet protection: the suite, its key and IV (`None`: cleartext, as nghq).
    pub protection: Option<SessionKeys>,
    /// Largest datagram.
    pub max_datagram_size: usize,
    /// Packet-number length in bytes.
    pub pn_len: usize,
    /// Keep-alive interval.
    pub keepalive: Duration,
    /// Show a progress bar on a terminal.
    pub progress: bool,
    /// Stop after this long (`--watch`/`--stdin` runs; `None`: until interrupted or done).
    pub duration: Option<Duration>,
    /// Sign every push with this key (`--sign`; `None`: unsigned).
    pub signer: Option<Arc<PushSigner>>,
}

/// A session's packet-protection keys, as the advertisement carries them.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    /// The cipher suite.
    pub suite: CipherSuite,
    /// The AEAD key.
    pub key: Vec<u8>,
    /// The AEAD IV.
    pub iv: Vec<u8>,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key material never appears in logs.
        f.debug_struct("SessionKeys").field("suite", &self.suite).finish_non_exhaustive()
    }
}

impl SessionKeys {
    /// Fresh random keys for `suite` (from the operating system's generator).
    pub fn generate(suite: CipherSuite) -> Result<Self, String> {
        use ring::rand::SecureRandom;
        let rng = ring::rand::SystemRandom::new();
        let mut key = vec![0u8; suite.key_len()];
        let mut iv = vec![0u8; suite.iv_len()];
        rng.fill(&mut key).map_err(|_| "no random numbers for a session key".to_owned())?;
        rng.fill(&mut iv).map_err(|_| "no random numbers for a session IV".to_owned())?;
        Ok(SessionKeys { suite, key, iv })
    }

    /// The packet protection these keys give (the header-protection key by
    /// h3m's rule, see `h3m_proto::aead`).
    pub fn protection(&self) -> Result<Box<dyn PacketProtection>, String> {
        AeadProtection::from_advertisement(self.suite, &self.key, &self.iv)
            .map(|p| Box::new(p) as Box<dyn PacketProtection>)
            .map_err(|e| e.to_string())
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    /// The sender's counters.
    pub stats: SenderStats,
    /// Wall time from the first to the last datagram.
    pub elapsed: Duration,
}

impl Summary {
    /// Achieved rate of UDP payload in bits/s.
    pub fn rate_bps(&self) -> f64 {
        self.stats.bytes as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-6)
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Listing the files failed.
    #[error(transparent)]
    Tree(#[from] tree::TreeError),
    /// Opening the socket failed.
    #[error(transparent)]
    Net(#[from] h3m_net::NetError),
    /// Sending failed.
    #[error("send: {0}")]
    Io(#[from] std::io::Error),
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Encoding failed.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Nothing to send.
    #[error("nothing to publish: no files found")]
    NothingToSend,
    /// The packet-protection keys are unusable.
    #[error("packet protection: {0}")]
    Keys(String),
    /// Signing a push failed.
    #[error("signing: {0}")]
    Sign(#[from] SignPushError),
}

/// The Alt-Svc advertisement a receiver needs for this session.
pub fn advertisement(opts: &SendOptions) -> Advertisement {
    let mut adv = Advertisement::new("h3m-07", opts.group);
    adv.source = opts.source;
    adv.session_id = opts.session_id;
    adv.peak_flow_rate = opts.rate;
    adv.idle_timeout_ms = Some(60_000);
    if let Some(k) = &opts.protection {
        adv.cipher_suite = k.suite;
        adv.key = Some(k.key.clone());
        adv.iv = Some(k.iv.clone());
        adv.extensions.push(Extension { code: HP_RULE_EXTENSION, value: None });
    }
    adv
}

/// Sends datagrams from the state machine at the configured pace.
struct Transmitter {
    socket: SendSocket,
    dest: SocketAddr,
    pacer: Pacer,
    batch: Vec<Vec<u8>>,
    first: Option<Instant>,
    last: Instant,
    batch_bytes: usize,
}

impl Transmitter {
    /// Sends everything the sender has queued (and any keep-alive due).
    async fn drain(&mut self, sender: &mut Sender) -> Result<(), SendError> {
        loop {
            let now = Instant::now();
            self.batch.clear();
            let mut bytes = 0;
            while bytes < self.batch_bytes {
                let Some(d) = sender.poll_transmit(now) else { break };
                bytes += d.len();
                self.batch.push(d);
            }
            if self.batch.is_empty() {
                return Ok(());
            }
            if let Some(at) = self.pacer.reserve(now, bytes) {
                tokio::time::sleep_until(at.into()).await;
            }
            self.socket.send_batch(self.dest, &self.batch).await?;
            self.first.get_or_insert(now);
            self.last = Instant::now();
        }
    }
}

fn sha256_file(path: &PathBuf) -> Result<([u8; 32], u64), SendError> {
    let err = |source| SendError::Read { path: path.clone(), source };
    let mut f = std::fs::File::open(path).map_err(err)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 18];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        len += n as u64;
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok((out, len))
}

/// Publishes one file: hashed first (the digest goes in the response headers),
/// then streamed from disk.
async fn send_file(
    tx: &mut Transmitter,
    sender: &mut Sender,
    signer: Option<&PushSigner>,
    entry: &Entry,
    last: bool,
    progress: &mut Progress,
) -> Result<(), SendError> {
    let (digest, len) = sha256_file(&entry.file)?;
    let mut meta = ResourceMeta::file(entry.path.clone(), len, SystemTime::now());
    meta.sha256 = Some(digest);
    meta.last = last;
    let id = start(sender, signer, &meta)?.0;
    let err = |source| SendError::Read { path: entry.file.clone(), source };
    let mut f = std::fs::File::open(&entry.file).map_err(err)?;
    let mut buf = vec![0u8; 1 << 18];
    let mut done = 0u64;
    while done < len {
        let want = buf.len().min((len - done) as usize);
        let n = f.read(&mut buf[..want]).map_err(err)?;
        if n == 0 {
            // The file shrank while being sent: receivers will see it incomplete.
            sender.abort(id)?;
            tx.drain(sender).await?;
            return Err(SendError::Read {
                path: entry.file.clone(),
                source: std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file shrank while being sent"),
            });
        }
        sender.write(id, &buf[..n])?;
        done += n as u64;
        tx.drain(sender).await?;
        progress.update(&entry.path, done, Some(len), sender.stats().bytes);
    }
    sender.finish(id, None)?;
    tx.drain(sender).await
}

/// Starts a resource, its headers signed when there is a signer: its push ID,
/// and the (signed) request and response header lists.
fn start(
    sender: &mut Sender,
    signer: Option<&PushSigner>,
    meta: &ResourceMeta,
) -> Result<(u64, Vec<HeaderField>, Vec<HeaderField>), SendError> {
    let mut request = sender.request_headers(meta);
    let mut response = sender.response_headers(meta);
    if let Some(signer) = signer {
        signer.sign_headers(&mut request, &mut response, meta.date)?;
    }
    let id = sender.start_with_headers(meta, &request, &response)?;
    Ok((id, request, response))
}

/// Publishes standard input as one live resource: each chunk is sent as soon as
/// it is read; the SHA-256 goes in trailers at the end (`digest` and
/// `repr-digest`, signed there when there is a signer).
async fn send_stdin(
    tx: &mut Transmitter,
    sender: &mut Sender,
    signer: Option<&PushSigner>,
    path: &str,
    progress: &mut Progress,
) -> Result<(), SendError> {
    use tokio::io::AsyncReadExt;
    let mut meta = ResourceMeta::file(path, 0, SystemTime::now());
    meta.length = None;
    meta.live = true;
    meta.last = true;
    let (id, request, response) = start(sender, signer, &meta)?;
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 1 << 16];
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut done = 0u64;
    loop {
        let n = tokio::select! {
            n = stdin.read(&mut buf) => n?,
            _ = keepalive_due(sender) => { tx.drain(sender).await?; continue; }
        };
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        sender.write(id, &buf[..n])?;
        sender.flush(id)?;
        done += n as u64;
        tx.drain(sender).await?;
        progress.update(path, done, None, sender.stats().bytes);
    }
    let b64 = base64(ctx.finish().as_ref());
    let mut trailers = vec![
        HeaderField::new("digest", format!("sha-256={b64}")),
        HeaderField::new("repr-digest", format!("sha-256=:{b64}:")),
    ];
    if let Some(signer) = signer {
        signer.sign_trailers(&request, &response, &mut trailers, SystemTime::now())?;
    }
    sender.finish(id, Some(&trailers))?;
    tx.drain(sender).await
}

async fn keepalive_due(sender: &Sender) {
    match sender.poll_timeout() {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// Runs a whole send.
pub async fn run(opts: &SendOptions) -> Result<Summary, SendError> {
    let mut warnings = Vec::new();
    let entries = if opts.paths.is_empty() { Vec::new() } else { tree::list(&opts.paths, &mut warnings)? };
    for w in &warnings {
        eprintln!("h3m-send: warning: {w}");
    }
    if entries.is_empty() && opts.stdin_path.is_none() && !opts.watch {
        return Err(SendError::NothingToSend);
    }
    let mut mc = MulticastConfig::new(opts.group);
    mc.source = opts.source;
    mc.interface = opts.interface.clone();
    mc.ttl = opts.ttl;
    mc.send_buffer = Some(4 << 20);
    let (socket, net_warnings) = h3m_net::open_sender(&mc)?;
    for w in net_warnings {
        eprintln!("h3m-send: warning: {w}");
    }
    let socket = SendSocket::from_std(socket)?;
    let mut enc = EncoderConfig::new(opts.session_id);
    enc.max_datagram_size = opts.max_datagram_size;
    enc.pn_len = opts.pn_len;
    let mut cfg = SenderConfig::new(enc);
    cfg.authority = opts.authority.clone();
    cfg.path_prefix = opts.path_prefix.clone();
    cfg.keepalive = opts.keepalive;
    let protection = match &opts.protection {
        Some(k) => k.protection().map_err(SendError::Keys)?,
        None => Box::new(NullProtection),
    };
    let mut sender = Sender::new(cfg, protection);
    // Pace in batches of about 1 ms at the rate (timers are ~1 ms granular), at
    // least one datagram, at most 64.
    let batch_bytes = match opts.rate {
        Some(r) => ((r / 8 / 1000) as usize).clamp(opts.max_datagram_size, 64 * opts.max_datagram_size),
        None => 64 * opts.max_datagram_size,
    };
    let mut tx = Transmitter {
        socket,
        dest: opts.group,
        // A burst of 2 ms at the rate: tokio timers are ~1 ms granular, so each
        // wake-up must be allowed about a millisecond's worth of datagrams (a
        // 1 ms burst holds only ~85% of the rate).
        pacer: Pacer::with_burst(
            opts.rate,
            opts.rate.map_or(0, |r| r / 8 / 500).max(4 * opts.max_datagram_size as u64),
        ),
        batch: Vec::new(),
        first: None,
        last: Instant::now(),
        batch_bytes,
    };
    let mut progress = Progress::new(opts.progress);
    let deadline = opts.duration.map(|d| Instant::now() + d);
    let ends_with_files = !opts.watch && opts.stdin_path.is_none();
    for round in 0..opts.repeat.max(1) {
        for (i, e) in entries.iter().enumerate() {
            let last = ends_with_files && round + 1 == opts.repeat.max(1) && i + 1 == entries.len();
            match send_file(&mut tx, &mut sender, opts.signer.as_deref(), e, last, &mut progress).await {
                Ok(()) => {}
                Err(SendError::Read { path, source }) => {
                    eprintln!("h3m-send: skipped {}: {source}", path.display());
                }
                Err(e) => return Err(e),
            }
        }
    }
    if let Some(path) = &opts.stdin_path {
        send_stdin(&mut tx, &mut sender, opts.signer.as_deref(), path, &mut progress).await?;
    }
    if opts.watch {
        watch(&mut tx, &mut sender, opts, entries, deadline, &mut progress).await?;
    }
    sender.close()?;
    tx.drain(&mut sender).await?;
    progress.finish();
    let elapsed = tx.first.map_or(Duration::ZERO, |f| tx.last - f);
    Ok(Summary { stats: sender.stats(), elapsed })
}

/// `--watch`: publishes each new or changed file once its size and modification
/// time have held still for one interval, until interrupted or the deadline.
async fn watch(
    tx: &mut Transmitter,
    sender: &mut Sender,
    opts: &SendOptions,
    published: Vec<Entry>,
    deadline: Option<Instant>,
    progress: &mut Progress,
) -> Result<(), SendError> {
    let key = |e: &Entry| (e.len, e.modified);
    let mut sent: HashMap<String, (u64, Option<SystemTime>)> =
        published.iter().map(|e| (e.path.clone(), key(e))).collect();
    let mut candidates: HashMap<String, (u64, Option<SystemTime>)> = HashMap::new();
    let mut tick = tokio::time::interval(opts.watch_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d.into()).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = keepalive_due(sender) => tx.drain(sender).await?,
            _ = tick.tick() => {
                let mut warnings = Vec::new();
                let now_listed = tree::list(&opts.paths, &mut warnings)?;
                for e in now_listed {
                    let k = key(&e);
                    if sent.get(&e.path) == Some(&k) {
                        continue;
                    }
                    if candidates.get(&e.path) == Some(&k) {
                        candidates.remove(&e.path);
                        match send_file(tx, sender, opts.signer.as_deref(), &e, false, progress).await {
                            Ok(()) => { sent.insert(e.path.clone(), k); }
                            Err(SendError::Read { path, source }) => eprintln!("h3m-send: skipped {}: {source}", path.display()),
                            Err(err) => return Err(err),
                        }
                    } else {
                        candidates.insert(e.path.clone(), k);
                    }
                }
            }
        }
    }
}
