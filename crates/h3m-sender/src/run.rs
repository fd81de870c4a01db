//! `h3m-send`'s run: files and directory trees (hashed, then streamed from
//! disk), standard input and watched directories, published through a
//! [`Publisher`].

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use h3m_proto::altsvc::Advertisement;
use h3m_proto::sender::{ResourceMeta, SenderStats};

use crate::progress::Progress;
use crate::publisher::{PublishError, Publisher, PublisherConfig};
use crate::read_ahead::{Piece, ReadAhead};
use crate::tree::{self, Entry, Ignore};
use crate::watch::Watcher;

/// Everything `h3m-send` was asked to do.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// The session: group, socket, rate, protection, signing.
    pub publisher: PublisherConfig,
    /// Files and directories to publish.
    pub paths: Vec<PathBuf>,
    /// How many times to send the whole set.
    pub repeat: u32,
    /// Cycle the set (and, with `watch`, every file published since) until
    /// `duration` is over or the process is interrupted (`--carousel`).
    pub carousel: bool,
    /// Keep running and publish new or changed files.
    pub watch: bool,
    /// How often `--watch` looks at the tree.
    pub watch_interval: Duration,
    /// Publish standard input as one live resource at this path.
    pub stdin_path: Option<String>,
    /// Show a progress bar on a terminal.
    pub progress: bool,
    /// Stop after this long (`--watch`/`--stdin`/`--carousel` runs; `None`: until interrupted or done).
    pub duration: Option<Duration>,
    /// Names inside directory PATHs never published (`--ignore`, with `--watch`).
    pub ignore: Ignore,
    /// Hash every file before sending it, its digest in the response headers
    /// (`--digest-first`). By default a file over 1 MiB whose digest is not
    /// known yet is hashed as it is sent, its digest in trailers: one pass
    /// over the file, and its first datagram leaves at once (a file sent more
    /// than once, with `repeat` or `carousel`, always has it in its headers).
    /// With unicast repair the origin announces the digest with every range
    /// it serves once the file is sent (`repr-digest`), so a receiver that
    /// lost the trailers still verifies a repaired body.
    pub digest_first: bool,
    /// With AMBI over HTTPS, wait this long at most for a receiver to
    /// subscribe before the first push (`--ambi-wait`; see
    /// [`Publisher::wait_for_subscribers`]).
    pub ambi_wait: Option<Duration>,
}

impl SendOptions {
    /// Whether every file's digest goes in its response headers (see
    /// [`SendOptions::digest_first`]): asked for, or a file sent more than
    /// once (receivers match copies by it).
    fn digests_in_headers(&self) -> bool {
        self.digest_first || self.repeat > 1 || self.carousel
    }
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
    /// The session failed (socket, encoding, signing).
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// Reading standard input failed.
    #[error("stdin: {0}")]
    Stdin(#[from] std::io::Error),
    /// A file could not be sent intact (the run goes on without it).
    #[error(transparent)]
    Skipped(Skipped),
    /// Nothing to send.
    #[error("nothing to publish: no files found")]
    NothingToSend,
}

/// The Alt-Svc advertisement a receiver needs for this session.
pub fn advertisement(opts: &SendOptions) -> Advertisement {
    opts.publisher.advertisement()
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
/// Files up to this size are read once, into memory, and hashed and sent
/// from there (one open and one read instead of two passes over the file).
const READ_WHOLE_UP_TO: u64 = 1 << 20;

/// How a file's datagrams leave: `Batched` lets them wait in the queue for
/// the next file's (consecutive small files share a `sendmmsg` / GSO buffer;
/// the caller sends what is left with [`Publisher::send_queued`]), `Now`
/// sends them before returning (a watched file must not wait for the next).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sending {
    Batched,
    Now,
}

/// The SHA-256 of files larger than [`READ_WHOLE_UP_TO`] already hashed in
/// this run, by path, with the length and modification time they had: a file
/// sent again unchanged (`--repeat`, `--carousel`) is not read twice a round,
/// and its digest goes in its response headers. A file changed in place
/// within the same length and modification time would go out under its old
/// digest, which receivers then refuse (nothing wrong is written).
///
/// A larger file whose digest is not known yet is hashed as it is sent, its
/// digest in trailers (one pass over the file, the first datagram leaves at
/// once), unless `first` asks for it in the headers (`--digest-first`: a
/// whole pass over the file before its first datagram). A file sent more than
/// once (`--repeat`, `--carousel`) always has it in its headers: receivers
/// match its copies by it, and the pass is paid once for every round; so does
/// every file of a session with unicast repair (a receiver that lost the
/// trailers verifies a repaired body against the headers' digest).
#[derive(Debug)]
struct Digests {
    known: std::collections::HashMap<PathBuf, (u64, Option<SystemTime>, [u8; 32])>,
    first: bool,
}

impl Digests {
    fn new(first: bool) -> Self {
        Digests { known: Default::default(), first }
    }

    fn get(&self, file: &std::path::Path, meta: &std::fs::Metadata) -> Option<([u8; 32], u64)> {
        let &(len, modified, digest) = self.known.get(file)?;
        (len == meta.len() && modified.is_some() && modified == meta.modified().ok()).then_some((digest, len))
    }

    fn insert(&mut self, file: &std::path::Path, meta: Option<&std::fs::Metadata>, digest: [u8; 32], len: u64) {
        if let Some(meta) = meta {
            self.known.insert(file.to_path_buf(), (len, meta.modified().ok(), digest));
        }
    }
}

/// A regular file of at most [`READ_WHOLE_UP_TO`] bytes, read whole (its
/// length as it is now: one read, no size probing), with its length and
/// modification time when read; `None` for a larger one, whose metadata
/// goes to `metadata`.
fn read_whole(
    file: &std::path::Path,
    metadata: &mut Option<std::fs::Metadata>,
) -> Result<Option<(Vec<u8>, crate::prefetch::Stamp)>, String> {
    let mut f = std::fs::File::open(file).map_err(|e| e.to_string())?;
    Ok(match f.metadata() {
        Ok(m) if m.is_file() && m.len() <= READ_WHOLE_UP_TO => {
            let mut body = vec![0u8; m.len() as usize];
            f.read_exact(&mut body).map_err(|e| e.to_string())?;
            Some((body, (m.len(), m.modified().ok())))
        }
        Ok(m) => {
            *metadata = Some(m);
            None
        }
        Err(_) => None,
    })
}

/// Sends `entry` (read now, or as [`crate::prefetch`] read it ahead: `prefetched`).
#[allow(clippy::too_many_arguments)] // the run's state, threaded through its three callers
async fn send_file(
    publisher: &mut Publisher,
    entry: &Entry,
    last: bool,
    copies: Vec<u64>,
    progress: &mut Progress,
    sending: Sending,
    digests: &mut Digests,
    prefetched: Option<(Vec<u8>, [u8; 32], crate::prefetch::Stamp)>,
) -> Result<(), SendError> {
    let skipped = |reason: String, reset: bool| SendError::Skipped(Skipped { file: entry.file.clone(), reset, reason });
    let mut metadata = None;
    // Read and hashed ahead ([`crate::prefetch`]), or read now; with the
    // length and modification time it was read at.
    let (whole, hashed) = match prefetched {
        Some((body, digest, read)) => (Some((body, read)), Some(digest)),
        None => (read_whole(&entry.file, &mut metadata).map_err(|e| skipped(e, false))?, None),
    };
    let known = metadata.as_ref().and_then(|m| digests.get(&entry.file, m));
    // A file sent more than once announces its digest up front: receivers
    // match its copies by it.
    if let (None, None, false, true, Some(m)) = (&whole, known, digests.first, copies.is_empty(), &metadata) {
        return send_file_trailed(publisher, entry, m, last, copies, progress, digests).await;
    }
    let (digest, len) = match (&whole, known) {
        (Some((body, _)), _) => (hashed.unwrap_or_else(|| h3m_proto::http::digest::sha256(body)), body.len() as u64),
        (None, Some(known)) => known,
        (None, None) => {
            let (digest, len) = sha256_file(&entry.file)?;
            digests.insert(&entry.file, metadata.as_ref(), digest, len);
            (digest, len)
        }
    };
    let mut meta = ResourceMeta::file(entry.path.clone(), len, SystemTime::now());
    meta.sha256 = Some(digest);
    meta.last = last;
    meta.copies = copies;
    if let Some((body, (read_len, modified))) = whole {
        // The origin (unicast repair) serves the file while it is as read.
        let id = publisher.start_file_as_read(&meta, &entry.file, read_len, modified).await?;
        write_body(publisher, id, &body, sending).await?;
        progress.update(&entry.path, len, Some(len), publisher.stats().bytes);
        return finish_body(publisher, id, sending).await;
    }
    let id = publisher.start_file(&meta, &entry.file).await?;
    let mut f = std::fs::File::open(&entry.file);
    let mut buf = vec![0u8; 1 << 18];
    let mut done = 0u64;
    while done < len {
        let want = buf.len().min((len - done) as usize);
        let n = match f.as_mut().map(|f| f.read(&mut buf[..want])) {
            Ok(Ok(n)) if n > 0 => n,
            failed => {
                let reason = match failed {
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                    Ok(Ok(_)) => format!("file shrank while being sent ({done} of {len} bytes)"),
                };
                publisher.abort(id).await?;
                return Err(skipped(reason, true));
            }
        };
        write_body(publisher, id, &buf[..n], sending).await?;
        done += n as u64;
        progress.update(&entry.path, done, Some(len), publisher.stats().bytes);
    }
    finish_body(publisher, id, sending).await
}

/// Sends a file whose digest is not known yet in one pass: read and hashed
/// ahead on a second thread ([`ReadAhead`]), the digest in trailers (see
/// [`Digests`]). A file that
/// changes length or modification time while it is sent is reset (its
/// receivers never write it); otherwise its digest is remembered for the
/// next round.
async fn send_file_trailed(
    publisher: &mut Publisher,
    entry: &Entry,
    before: &std::fs::Metadata,
    last: bool,
    copies: Vec<u64>,
    progress: &mut Progress,
    digests: &mut Digests,
) -> Result<(), SendError> {
    let skipped = |reason: String, reset: bool| SendError::Skipped(Skipped { file: entry.file.clone(), reset, reason });
    let len = before.len();
    let mut meta = ResourceMeta::file(entry.path.clone(), len, SystemTime::now());
    meta.last = last;
    meta.copies = copies;
    let mut ahead = match std::fs::File::open(&entry.file).and_then(|f| ReadAhead::spawn(f, len)) {
        Ok(ahead) => ahead,
        Err(e) => return Err(skipped(e.to_string(), false)),
    };
    let push = publisher.start_file_trailed(&meta, &entry.file).await?;
    let mut done = 0u64;
    let ended = loop {
        match ahead.next_piece() {
            Some(Ok(Piece::Data(buf))) => {
                publisher.write_batched(push.push_id(), &buf).await?;
                done += buf.len() as u64;
                ahead.recycle(buf);
                progress.update(&entry.path, done, Some(len), publisher.stats().bytes);
            }
            Some(Ok(Piece::End { sha256 })) => {
                let now = std::fs::metadata(&entry.file);
                let same = now.as_ref().is_ok_and(|m| m.len() == len && m.modified().ok() == before.modified().ok());
                break if same { Ok(sha256) } else { Err("file changed while being sent".to_string()) };
            }
            Some(Err(e)) => break Err(e.to_string()),
            None => break Err("the reading thread ended".to_string()),
        }
    };
    let sha256 = match ended {
        Ok(sha256) => sha256,
        Err(reason) => {
            publisher.abort(push.push_id()).await?;
            return Err(skipped(reason, true));
        }
    };
    let digest = publisher.finish_with_sha256(push, sha256).await?;
    digests.insert(&entry.file, Some(before), digest, len);
    Ok(())
}

async fn write_body(publisher: &mut Publisher, id: u64, data: &[u8], sending: Sending) -> Result<(), SendError> {
    match sending {
        Sending::Batched => publisher.write_batched(id, data).await?,
        Sending::Now => publisher.write(id, data).await?,
    }
    Ok(())
}

async fn finish_body(publisher: &mut Publisher, id: u64, sending: Sending) -> Result<(), SendError> {
    match sending {
        Sending::Batched => publisher.finish_batched(id).await?,
        Sending::Now => publisher.finish(id).await?,
    }
    Ok(())
}

async fn send_stdin(publisher: &mut Publisher, path: &str, progress: &mut Progress) -> Result<(), SendError> {
    use tokio::io::AsyncReadExt;
    let mut stream = publisher.start_stream(path).await?;
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = tokio::select! {
            n = stdin.read(&mut buf) => n?,
            _ = publisher.keepalive_due() => { publisher.send_due().await?; continue; }
        };
        if n == 0 {
            break;
        }
        publisher.write_stream(&mut stream, &buf[..n]).await?;
        progress.update(path, stream.bytes(), None, publisher.stats().bytes);
    }
    publisher.finish_stream(stream).await?;
    Ok(())
}

/// Runs a whole send.
pub async fn run(opts: &SendOptions) -> Result<Summary, SendError> {
    let mut warnings = Vec::new();
    // Watching starts before the listing, so no file completed in between is missed.
    let mut watcher =
        opts.watch.then(|| Watcher::new(&opts.paths, opts.ignore.clone(), opts.watch_interval, &mut warnings));
    // Watching and the carousel tell versions of a file apart by its listed
    // length and time; a run that sends each file and ends lists without a
    // `stat` a file (each is stat'ed when read).
    let entries = if opts.paths.is_empty() {
        Vec::new()
    } else if opts.watch || opts.carousel {
        tree::list_filtered(&opts.paths, &opts.ignore, &mut warnings)?
    } else {
        tree::list_unstamped(&opts.paths, &opts.ignore, &mut warnings)?
    };
    for w in &warnings {
        tracing::warn!("{w}");
        eprintln!("h3m-send: warning: {w}");
    }
    if entries.is_empty() && opts.stdin_path.is_none() && !opts.watch {
        return Err(SendError::NothingToSend);
    }
    let mut publisher = Publisher::open(&opts.publisher)?;
    for w in publisher.take_warnings() {
        tracing::warn!("{w}");
        eprintln!("h3m-send: warning: {w}");
    }
    if let Some(wait) = opts.ambi_wait
        && let Some((subscribers, waited)) = publisher.wait_for_subscribers(wait).await?
    {
        eprintln!("h3m-send: AMBI: {subscribers} subscriber(s) after {:.3} s", waited.as_secs_f64());
    }
    let mut progress = Progress::new(opts.progress);
    let deadline = opts.duration.map(|d| Instant::now() + d);
    let ends_with_files = !opts.watch && opts.stdin_path.is_none();
    let mut skipped = Vec::new();
    if opts.carousel {
        carousel(&mut publisher, entries, watcher, deadline, &mut progress, &mut skipped, Digests::new(true)).await?;
        let closed = publisher.close().await?;
        progress.finish();
        return Ok(Summary { stats: closed.stats, elapsed: closed.elapsed, skipped });
    }
    let rounds = u64::from(opts.repeat.max(1));
    let mut digests = Digests::new(opts.digests_in_headers());
    // Push IDs of each entry's copies: those sent, then those planned (one
    // round later each, as long as no file is skipped).
    let mut copy_ids: Vec<Vec<u64>> = vec![Vec::new(); entries.len()];
    // The small files, read and hashed ahead on a thread of their own, in
    // the order of the rounds below.
    let order: Vec<std::path::PathBuf> = (0..rounds).flat_map(|_| entries.iter().map(|e| e.file.clone())).collect();
    let mut prefetch = crate::prefetch::Prefetch::spawn(order).ok();
    for round in 0..opts.repeat.max(1) {
        for (i, e) in entries.iter().enumerate() {
            let last = ends_with_files && round + 1 == opts.repeat.max(1) && i + 1 == entries.len();
            let copies = if rounds > 1 {
                let next = publisher.next_push_id();
                let planned = (0..rounds - u64::from(round)).map(|k| next + k * entries.len() as u64);
                copy_ids[i].iter().copied().chain(planned).collect()
            } else {
                Vec::new()
            };
            copy_ids[i].push(publisher.next_push_id());
            let pre = prefetch.as_mut().and_then(|p| p.take(&e.file, e.stamp()));
            let sent =
                send_file(&mut publisher, e, last, copies, &mut progress, Sending::Batched, &mut digests, pre).await;
            if note_skipped(sent, &mut skipped)?
                && let Some(w) = &mut watcher
            {
                w.mark_sent(e);
            }
        }
    }
    // The last files' datagrams, left in the queue by batched sending.
    publisher.send_queued().await?;
    if let Some(path) = &opts.stdin_path {
        send_stdin(&mut publisher, path, &mut progress).await?;
    }
    if let Some(watcher) = watcher {
        watch(&mut publisher, watcher, deadline, &mut progress, &mut skipped, opts.digests_in_headers()).await?;
    }
    let closed = publisher.close().await?;
    progress.finish();
    Ok(Summary { stats: closed.stats, elapsed: closed.elapsed, skipped })
}

/// Whether a file went out intact: a skipped one is reported on stderr and
/// noted in `skipped`; any other error ends the run.
fn note_skipped(sent: Result<(), SendError>, skipped: &mut Vec<Skipped>) -> Result<bool, SendError> {
    match sent {
        Ok(()) => Ok(true),
        Err(SendError::Skipped(s)) => {
            tracing::warn!("{s}");
            eprintln!("h3m-send: {s}");
            skipped.push(s);
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// `--watch`: publishes each file as soon as the watcher finds it complete
/// (see [`crate::watch`]), until interrupted or the deadline.
/// At most this many earlier copies of a resource are named in a carousel
/// copy's `h3m-copies` (with its own push ID and the next copy's, as planned),
/// so a receiver counts a copy it lost whole as a lost repeat, not a loss,
/// once another copy names it.
const CAROUSEL_COPIES_NAMED: usize = 15;

/// A file of the carousel and the push IDs of its copies so far.
struct Slot {
    entry: Entry,
    copies: Vec<u64>,
}

/// `--carousel`: sends the set over and over, each file a new push (the
/// receivers merge the copies of a resource, by path and digest); with a
/// watcher, files published since join the cycle (a changed file replaces
/// its old version). Ends when `deadline` passes or on Ctrl-C, between two
/// files.
async fn carousel(
    publisher: &mut Publisher,
    entries: Vec<Entry>,
    mut watcher: Option<Watcher>,
    deadline: Option<Instant>,
    progress: &mut Progress,
    skipped: &mut Vec<Skipped>,
    mut digests: Digests,
) -> Result<(), SendError> {
    let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = interrupted.clone();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let stop =
        || interrupted.load(std::sync::atomic::Ordering::SeqCst) || deadline.is_some_and(|d| Instant::now() >= d);
    let mut slots: Vec<Slot> = entries.into_iter().map(|entry| Slot { entry, copies: Vec::new() }).collect();
    let mut i = 0;
    while !stop() {
        if let Some(w) = &mut watcher {
            // Cancel safe: what is not ready now is found on a later look.
            let ready = tokio::select! {
                biased;
                ready = w.next() => ready?,
                _ = std::future::ready(()) => Vec::new(),
            };
            for e in ready {
                match slots.iter_mut().find(|s| s.entry.path == e.path) {
                    Some(slot) => *slot = Slot { entry: e, copies: Vec::new() },
                    None => slots.push(Slot { entry: e, copies: Vec::new() }),
                }
            }
        }
        if slots.is_empty() {
            // Nothing to cycle yet (an empty watched tree): wait a little.
            publisher.send_queued().await?;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = publisher.keepalive_due() => publisher.send_due().await?,
            }
            continue;
        }
        i %= slots.len();
        let cycle = slots.len() as u64;
        let slot = &mut slots[i];
        let id = publisher.next_push_id();
        let from = slot.copies.len().saturating_sub(CAROUSEL_COPIES_NAMED);
        let mut copies: Vec<u64> = slot.copies[from..].to_vec();
        copies.push(id);
        // And the next copy as planned (one cycle on, if the set stays as it
        // is): a copy lost whole in the last cycle is then named too.
        copies.push(id + cycle);
        let sent =
            send_file(publisher, &slot.entry, false, copies, progress, Sending::Batched, &mut digests, None).await;
        if note_skipped(sent, skipped)? {
            slot.copies.push(id);
            if slot.copies.len() > 2 * CAROUSEL_COPIES_NAMED {
                slot.copies.drain(..CAROUSEL_COPIES_NAMED);
            }
            if let Some(w) = &mut watcher {
                w.mark_sent(&slot.entry);
            }
            i += 1;
        } else {
            // Gone or unreadable: out of the cycle.
            slots.remove(i);
        }
    }
    ctrl_c.abort();
    Ok(())
}

async fn watch(
    publisher: &mut Publisher,
    mut watcher: Watcher,
    deadline: Option<Instant>,
    progress: &mut Progress,
    skipped: &mut Vec<Skipped>,
    digest_first: bool,
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
            _ = publisher.keepalive_due() => publisher.send_due().await?,
            ready = watcher.next() => {
                for e in ready? {
                    let sent =
                        send_file(publisher, &e, false, Vec::new(), progress, Sending::Now, &mut Digests::new(digest_first), None)
                            .await;
                    if note_skipped(sent, skipped)? {
                        watcher.mark_sent(&e);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod digests_tests {
    use super::*;

    #[test]
    fn a_digest_is_reused_only_for_the_same_length_and_modification_time() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("big.bin");
        std::fs::write(&file, vec![7u8; 2 << 20]).unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        let mut digests = Digests::new(true);
        assert_eq!(digests.get(&file, &meta), None);
        let (digest, len) = sha256_file(&file).unwrap();
        digests.insert(&file, Some(&meta), digest, len);
        assert_eq!(digests.get(&file, &meta), Some((digest, 2 << 20)));
        // Rewritten with other bytes and a later modification time: hashed again.
        std::fs::write(&file, vec![8u8; 2 << 20]).unwrap();
        let later = std::time::SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options().write(true).open(&file).unwrap().set_modified(later).unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!(digests.get(&file, &meta), None);
        // A length change alone is enough.
        std::fs::write(&file, vec![8u8; 3 << 20]).unwrap();
        assert_eq!(digests.get(&file, &std::fs::metadata(&file).unwrap()), None);
    }
}
