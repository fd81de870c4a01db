//! The send loop: resources from the file system (or standard input) through the
//! `Sender` state machine, paced onto a multicast socket.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use h3m_net::{Interface, MulticastConfig, Pacer, SendSocket};
use h3m_proto::SessionId;
use h3m_proto::aead::{HP_RULE_EXTENSION, PacketKeys};
use h3m_proto::altsvc::Advertisement;
use h3m_proto::altsvc::Extension;
use h3m_proto::auth::{PushSigner, SignPushError};
use h3m_proto::encoder::{EncodeError, EncoderConfig};
use h3m_proto::protection::NullProtection;
use h3m_proto::qpack::HeaderField;
use h3m_proto::sender::{ResourceMeta, Sender, SenderConfig, SenderStats, base64};

use crate::progress::Progress;
use crate::tree::{self, Entry, Ignore};
use crate::watch::Watcher;

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
    /// Packet protection: the suite, its key and IV, checked when built
    /// (`None`: cleartext, as nghq).
    pub protection: Option<PacketKeys>,
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
    /// Names inside directory PATHs never published (`--ignore`, with `--watch`).
    pub ignore: Ignore,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// The sender's counters.
    pub stats: SenderStats,
    /// Wall time from the first to the last datagram.
    pub elapsed: Duration,
    /// The files that did not go out intact, in order (`h3m-send` then exits 1).
    pub skipped: Vec<Skipped>,
}

/// A file that did not go out intact.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} {}: {reason}{}", if *.reset { "reset" } else { "skipped" }, .file.display(), if *.reset { " (receivers get it incomplete)" } else { "" })]
pub struct Skipped {
    /// The file.
    pub file: PathBuf,
    /// Its push was started and then reset (a read failed or the file shrank
    /// while being sent); else it was never started (unreadable or gone).
    pub reset: bool,
    /// Why.
    pub reason: String,
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
    /// A file could not be sent intact (the run goes on without it).
    #[error(transparent)]
    Skipped(Skipped),
    /// Encoding failed.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Nothing to send.
    #[error("nothing to publish: no files found")]
    NothingToSend,
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
        adv.cipher_suite = k.suite();
        adv.key = Some(k.key().to_vec());
        adv.iv = Some(k.iv().to_vec());
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
    let err =
        |e: std::io::Error| SendError::Skipped(Skipped { file: path.clone(), reset: false, reason: e.to_string() });
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
    copies: Vec<u64>,
    progress: &mut Progress,
) -> Result<(), SendError> {
    let (digest, len) = sha256_file(&entry.file)?;
    let mut meta = ResourceMeta::file(entry.path.clone(), len, SystemTime::now());
    meta.sha256 = Some(digest);
    meta.last = last;
    meta.copies = copies;
    let id = start(sender, signer, &meta)?.0;
    let mut f = std::fs::File::open(&entry.file);
    let mut buf = vec![0u8; 1 << 18];
    let mut done = 0u64;
    while done < len {
        let want = buf.len().min((len - done) as usize);
        let n = match f.as_mut().map(|f| f.read(&mut buf[..want])) {
            Ok(Ok(n)) if n > 0 => n,
            // Gone, unreadable or shrunk since it was hashed: reset the push
            // (receivers see it incomplete) and go on without it.
            failed => {
                let reason = match failed {
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                    Ok(Ok(_)) => format!("file shrank while being sent ({done} of {len} bytes)"),
                };
                sender.abort(id)?;
                tx.drain(sender).await?;
                return Err(SendError::Skipped(Skipped { file: entry.file.clone(), reset: true, reason }));
            }
        };
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
    // Watching starts before the listing, so no file completed in between is missed.
    let mut watcher =
        opts.watch.then(|| Watcher::new(&opts.paths, opts.ignore.clone(), opts.watch_interval, &mut warnings));
    let entries =
        if opts.paths.is_empty() { Vec::new() } else { tree::list_filtered(&opts.paths, &opts.ignore, &mut warnings)? };
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
        Some(k) => k.protection(),
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
    let mut skipped = Vec::new();
    let rounds = u64::from(opts.repeat.max(1));
    // Push IDs of each entry's copies: those sent, then those planned (one
    // round later each, as long as no file is skipped).
    let mut copy_ids: Vec<Vec<u64>> = vec![Vec::new(); entries.len()];
    for round in 0..opts.repeat.max(1) {
        for (i, e) in entries.iter().enumerate() {
            let last = ends_with_files && round + 1 == opts.repeat.max(1) && i + 1 == entries.len();
            let copies = if rounds > 1 {
                let next = sender.next_push_id();
                let planned = (0..rounds - u64::from(round)).map(|k| next + k * entries.len() as u64);
                copy_ids[i].iter().copied().chain(planned).collect()
            } else {
                Vec::new()
            };
            copy_ids[i].push(sender.next_push_id());
            let sent = send_file(&mut tx, &mut sender, opts.signer.as_deref(), e, last, copies, &mut progress).await;
            if note_skipped(sent, &mut skipped)?
                && let Some(w) = &mut watcher
            {
                w.mark_sent(e);
            }
        }
    }
    if let Some(path) = &opts.stdin_path {
        send_stdin(&mut tx, &mut sender, opts.signer.as_deref(), path, &mut progress).await?;
    }
    if let Some(watcher) = watcher {
        watch(&mut tx, &mut sender, opts, watcher, deadline, &mut progress, &mut skipped).await?;
    }
    sender.close()?;
    tx.drain(&mut sender).await?;
    progress.finish();
    let elapsed = tx.first.map_or(Duration::ZERO, |f| tx.last - f);
    Ok(Summary { stats: sender.stats(), elapsed, skipped })
}

/// Whether a file went out intact: a skipped one is reported on stderr and
/// noted in `skipped`; any other error ends the run.
fn note_skipped(sent: Result<(), SendError>, skipped: &mut Vec<Skipped>) -> Result<bool, SendError> {
    match sent {
        Ok(()) => Ok(true),
        Err(SendError::Skipped(s)) => {
            eprintln!("h3m-send: {s}");
            skipped.push(s);
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// `--watch`: publishes each file as soon as the watcher finds it complete
/// (see [`crate::watch`]), until interrupted or the deadline.
async fn watch(
    tx: &mut Transmitter,
    sender: &mut Sender,
    opts: &SendOptions,
    mut watcher: Watcher,
    deadline: Option<Instant>,
    progress: &mut Progress,
    skipped: &mut Vec<Skipped>,
) -> Result<(), SendError> {
    // Ctrl-C (SIGINT) or the deadline, whichever comes first.
    let stop = async {
        let until = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = until => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = keepalive_due(sender) => tx.drain(sender).await?,
            ready = watcher.next() => {
                for e in ready? {
                    let sent = send_file(tx, sender, opts.signer.as_deref(), &e, false, Vec::new(), progress).await;
                    if note_skipped(sent, skipped)? {
                        watcher.mark_sent(&e);
                    }
                }
            }
        }
    }
}
