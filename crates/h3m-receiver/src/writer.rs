//! Writing received resources into the output directory, safely.
//!
//! Each push in progress has a temporary file in the output directory itself
//! (so the final rename stays on one filesystem), named
//! `.h3m-partial-<push id>-<process id>`, created exclusively (`O_EXCL`, never
//! through a symlink). Body bytes are written at their offsets as they arrive
//! (`pwrite`), so the body is never held in memory. Writing and the SHA-256 are
//! off the receive loop, on the [`FileWorker`] thread: each gathered run of
//! bytes is written there, and each range of the file is hashed once it
//! follows the hashed prefix (bytes that arrived ahead of a gap are hashed
//! once the gap is filled). A small body that is still gathered in memory
//! when it completes is hashed and written at once, without the worker.
//!
//! A complete push is [committed](ResourceWriter::commit): the byte coverage is
//! checked against the body length, the file is synced, the missing parent
//! directories are created (refusing symlinks and non-directories, see
//! [`crate::paths`]), and the file is renamed onto its final path. Anything
//! else removes the temporary file: [`ResourceWriter::abort`], an error, or
//! dropping the [`PartialFile`] or the [`ResourceWriter`].

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use h3m_proto::http::digest::sha256;

use crate::file_worker::{FileWorker, HashKey};
use crate::paths::{self, PathError, PlaceError};

/// The name prefix of temporary files; a `:path` whose first component starts
/// with it is refused ([`PathError::Reserved`]).
pub const TEMP_PREFIX: &str = ".h3m-partial-";

/// The process ID in a temporary file's name (`.h3m-partial-<push>-<pid>`).
fn stale_partial_pid(name: &[u8]) -> Option<u32> {
    let rest = name.strip_prefix(TEMP_PREFIX.as_bytes())?;
    let (push, pid) = std::str::from_utf8(rest).ok()?.split_once('-')?;
    push.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Contiguous body bytes gathered before one `pwrite`: a write per datagram
/// costs about 1.1 µs, a write per 64 KiB about 0.5 µs per datagram's worth.
const WRITE_BUFFER: usize = 64 * 1024;

/// Why a resource could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The path is refused.
    #[error("refused: {0}")]
    Refused(#[from] PathError),
    /// A file system operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The bytes received do not make up the body the receiver reported complete.
    #[error("inconsistent: {0}")]
    Inconsistent(String),
    /// The body's SHA-256 is not the one its `digest` header announced.
    #[error("digest mismatch: the header says sha-256 {expected}, the body has {got}")]
    DigestMismatch {
        /// The announced SHA-256, hex.
        expected: String,
        /// The body's SHA-256, hex.
        got: String,
    },
    /// The sink's byte budget would be exceeded (a [`crate::sink::MemorySink`]).
    #[error("over_budget: the resource does not fit the sink's {budget}-byte budget")]
    OverBudget {
        /// The budget, in bytes.
        budget: usize,
    },
}

impl WriteError {
    /// A [`WriteError::DigestMismatch`] between the announced and the actual SHA-256.
    pub fn digest_mismatch(expected: [u8; 32], got: [u8; 32]) -> Self {
        WriteError::DigestMismatch { expected: hex::encode(expected), got: hex::encode(got) }
    }
}

impl From<PlaceError> for WriteError {
    fn from(e: PlaceError) -> Self {
        match e {
            PlaceError::Refused(e) => WriteError::Refused(e),
            PlaceError::Io { path, source } => WriteError::Io { path, source },
        }
    }
}

/// A resource written to its final path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The file: the output directory joined with the relative path.
    pub path: PathBuf,
    /// Its length.
    pub bytes: u64,
    /// The SHA-256 of its content.
    pub sha256: [u8; 32],
}

/// The temporary file of one push in progress. Dropping it removes the file
/// unless it was committed.
pub struct PartialFile {
    /// The temporary file, created when the first bytes must leave the write
    /// buffer (a small resource that is given up never touches the disk);
    /// shared with the [`FileWorker`] while it hashes a range of it.
    file: Option<Arc<File>>,
    temp: PathBuf,
    /// This file's hash in the [`FileWorker`].
    hash_key: HashKey,
    /// Every byte below this offset is written (the hashed prefix, once the
    /// worker has caught up).
    hashed_to: u64,
    /// Bytes below this offset are queued for the worker's hash.
    queued_to: u64,
    /// Whether bytes were handed to the worker to write (only then does the
    /// worker know this file, hash ranges included).
    handed: bool,
    /// Written ranges above `hashed_to` (start -> end, merged, disjoint).
    pending: BTreeMap<u64, u64>,
    /// Whether a byte was written twice (the hash is then recomputed from the file).
    overlap: bool,
    /// Bytes written, counting each write.
    written: u64,
    committed: bool,
    /// Bytes not yet written to the file, which belong at `wbuf_at`.
    wbuf: Vec<u8>,
    wbuf_at: u64,
    /// Whether the file was created (and then maybe closed by [`park`](Self::park)).
    created: bool,
    /// The body's declared length, if known: the first run gathered gets
    /// room for it at once (up to the write buffer's size) instead of
    /// growing by copies.
    length_hint: Option<u64>,
}

impl std::fmt::Debug for PartialFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartialFile")
            .field("temp", &self.temp)
            .field("hashed_to", &self.hashed_to)
            .field("pending", &self.pending.len())
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl PartialFile {
    /// A partial file at `temp` (which must not exist), created on disk when
    /// its first bytes are written out: [`write_at`](Self::write_at) gathers
    /// up to 64 KiB of contiguous bytes in memory first, and
    /// [`flush`](Self::flush) writes them.
    pub fn create(temp: PathBuf) -> Result<Self, WriteError> {
        Ok(PartialFile {
            file: None,
            temp,
            hash_key: FileWorker::get().key(),
            hashed_to: 0,
            queued_to: 0,
            handed: false,
            pending: BTreeMap::new(),
            overlap: false,
            written: 0,
            committed: false,
            wbuf: Vec::new(),
            wbuf_at: 0,
            created: false,
            length_hint: None,
        })
    }

    /// The temporary file's path.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Bytes written so far (each write counted).
    pub fn written(&self) -> u64 {
        self.written
    }

    fn io(&self, source: io::Error) -> WriteError {
        WriteError::Io { path: self.temp.clone(), source }
    }

    /// The temporary file, created now if it was not yet.
    fn file(&mut self) -> Result<&Arc<File>, WriteError> {
        if self.file.is_none() {
            let mut options = OpenOptions::new();
            options.read(true).write(true);
            if self.created {
                // Parked: open it again, never through a symlink planted since.
                use std::os::unix::fs::OpenOptionsExt;
                options.custom_flags(libc::O_NOFOLLOW);
            } else {
                options.create_new(true);
            }
            match options.open(&self.temp) {
                Ok(f) => {
                    self.file = Some(Arc::new(f));
                    self.created = true;
                }
                Err(source) => return Err(self.io(source)),
            }
        }
        self.file.as_ref().ok_or_else(|| self.io(io::Error::other("temporary file not open")))
    }

    /// Hands what is gathered to the worker and closes the file (its
    /// descriptor is freed once the worker is done with it; the next write
    /// opens it again). For resources kept a while for a repair.
    pub fn park(&mut self) -> Result<(), WriteError> {
        self.flush()?;
        self.file = None;
        Ok(())
    }

    /// Memory held for bytes not yet written to the file: the write
    /// buffer's capacity (at least the bytes gathered).
    pub fn buffered(&self) -> usize {
        self.wbuf.capacity()
    }

    /// The body is declared `length` bytes long: the first bytes gathered get
    /// room for all of it (at most the write buffer's 64 KiB, and at most 16
    /// times their own length), so that a small body is gathered without
    /// reallocations.
    pub fn expect_length(&mut self, length: u64) {
        self.length_hint = Some(length);
    }

    /// Writes `data` at body offset `offset`.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), WriteError> {
        if data.is_empty() {
            return Ok(());
        }
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| WriteError::Inconsistent(format!("body offset {offset} overflows")))?;
        self.buffered_write(offset, data)?;
        self.written += data.len() as u64;
        if offset < self.hashed_to {
            // Bytes already accounted for are written again: hash the whole file at the end.
            self.overlap = true;
            if end <= self.hashed_to {
                return Ok(());
            }
            self.add(self.hashed_to, end);
            return Ok(());
        }
        self.add(offset, end);
        Ok(())
    }

    /// Writes through the buffer: contiguous small writes are gathered, anything
    /// else first flushes what is gathered, so writes land in their order.
    fn buffered_write(&mut self, offset: u64, data: &[u8]) -> Result<(), WriteError> {
        let follows = offset == self.wbuf_at + self.wbuf.len() as u64;
        if !follows || self.wbuf.len() + data.len() > WRITE_BUFFER {
            self.flush()?;
            self.wbuf_at = offset;
        }
        if data.len() >= WRITE_BUFFER {
            let file = Arc::clone(self.file()?);
            FileWorker::get().write(self.hash_key, file, offset, data.to_vec());
            self.handed = true;
            self.wbuf_at = offset + data.len() as u64;
            self.queue_hash();
            return Ok(());
        }
        if self.wbuf.capacity() == 0 {
            let room = if self.handed {
                // A big body (it was handed over before): its next run is as long.
                WRITE_BUFFER
            } else {
                // The declared rest of the body, within the buffer, and within
                // 16 times what came (the length is the sender's word: a
                // flood of pushes declaring big bodies and sending a byte
                // each holds 16 bytes a push, not 64 KiB).
                let rest = self.length_hint.map_or(0, |len| len.saturating_sub(offset));
                rest.min(WRITE_BUFFER as u64).min(16 * data.len() as u64) as usize
            };
            self.wbuf.reserve_exact(room);
        }
        self.wbuf.extend_from_slice(data);
        Ok(())
    }

    /// Hands the gathered bytes to the worker to write, and queues the prefix
    /// that is now contiguous for its hash.
    pub fn flush(&mut self) -> Result<(), WriteError> {
        if !self.wbuf.is_empty() {
            let file = Arc::clone(self.file()?);
            let at = self.wbuf_at;
            let wbuf = std::mem::take(&mut self.wbuf);
            self.wbuf_at += wbuf.len() as u64;
            FileWorker::get().write(self.hash_key, file, at, wbuf);
            self.handed = true;
        }
        self.queue_hash();
        Ok(())
    }

    /// Writes the gathered bytes on this thread (a small body at its commit:
    /// no hand-over, no wait).
    fn flush_here(&mut self) -> Result<(), WriteError> {
        if !self.wbuf.is_empty() {
            let at = self.wbuf_at;
            let wbuf = std::mem::take(&mut self.wbuf);
            let result = self.file().map(|f| f.write_all_at(&wbuf, at));
            self.wbuf_at += wbuf.len() as u64;
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(self.io(e)),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Hands the written prefix not yet queued to the hashing worker (every
    /// byte below `hashed_to` is in the file when nothing is gathered).
    fn queue_hash(&mut self) {
        if self.wbuf.is_empty()
            && self.queued_to < self.hashed_to
            && let Some(file) = &self.file
        {
            FileWorker::get().hash(self.hash_key, Arc::clone(file), self.queued_to, self.hashed_to);
            self.queued_to = self.hashed_to;
        }
    }

    /// Accounts for `offset..end` written (`offset >= hashed_to`).
    fn add(&mut self, offset: u64, end: u64) {
        if offset == self.hashed_to {
            self.hashed_to = end;
            // The pending ranges that now follow the prefix join it.
            while let Some((&start, &end)) = self.pending.first_key_value() {
                if start > self.hashed_to {
                    break;
                }
                self.pending.remove(&start);
                self.hashed_to = self.hashed_to.max(end);
            }
        } else {
            self.insert_pending(offset, end);
        }
    }

    fn insert_pending(&mut self, start: u64, end: u64) {
        let (mut start, mut end) = (start, end);
        if let Some((&s, &e)) = self.pending.range(..=start).next_back()
            && e >= start
        {
            self.overlap |= e > start;
            self.pending.remove(&s);
            start = s;
            end = end.max(e);
        }
        while let Some((&s, &e)) = self.pending.range(start..).next() {
            if s > end {
                break;
            }
            self.overlap |= s < end;
            self.pending.remove(&s);
            end = end.max(e);
        }
        self.pending.insert(start, end);
    }

    /// The body's SHA-256: from memory when the whole body is still gathered
    /// (a small resource: written here, no file read, no wait), else from the
    /// worker once it has written and hashed everything handed to it (every
    /// byte again after an overlap).
    fn sha256(&mut self, body_len: u64) -> Result<[u8; 32], WriteError> {
        if self.gathered_whole(body_len) {
            // The worker never hears of this file.
            let out = sha256(&self.wbuf);
            self.flush_here()?;
            return Ok(out);
        }
        self.flush()?;
        let worker = FileWorker::get();
        if self.overlap {
            // Everything written (a failure reported) first, then every byte
            // hashed again.
            worker.finish(self.hash_key).map_err(|e| self.io(e))?;
            self.hash_key = worker.key();
            let file = Arc::clone(self.file()?);
            worker.hash(self.hash_key, file, 0, body_len);
        } else if self.created {
            // Open again if parked, for the last range.
            self.file()?;
            self.queue_hash();
        }
        worker.finish(self.hash_key).map_err(|e| self.io(e))
    }

    /// Checks that exactly `0..body_len` was written, syncs, creates the parents
    /// of `rel` under `root` and renames the file onto `root/rel`.
    ///
    /// With `expected`, the body's SHA-256 must equal it, or nothing is written
    /// ([`WriteError::DigestMismatch`]).
    pub fn commit(
        mut self,
        root: &Path,
        rel: &Path,
        body_len: u64,
        expected: Option<[u8; 32]>,
        fsync: bool,
    ) -> Result<Written, WriteError> {
        self.check_whole(body_len)?;
        let sha256 = self.sha256(body_len)?;
        check_digest(expected, sha256)?;
        // An empty body is a file too.
        let file = Arc::clone(self.file()?);
        let target = place(&file, &self.temp, root, rel, fsync)?;
        self.committed = true;
        Ok(Written { path: target, bytes: body_len, sha256 })
    }

    /// Whether exactly `0..body_len` was written.
    fn check_whole(&self, body_len: u64) -> Result<(), WriteError> {
        if self.hashed_to != body_len || !self.pending.is_empty() {
            let beyond = self.pending.last_key_value().map_or(self.hashed_to, |(_, &e)| e);
            return Err(WriteError::Inconsistent(format!(
                "{body_len}-byte body reported complete, but bytes 0..{} are contiguous and data reaches {beyond}",
                self.hashed_to
            )));
        }
        Ok(())
    }

    /// Whether the whole body (`body_len` bytes, each written once) is still
    /// gathered in memory, the worker never having heard of it.
    fn gathered_whole(&self, body_len: u64) -> bool {
        !self.overlap && !self.handed && self.wbuf_at == 0 && self.wbuf.len() as u64 == body_len
    }

    /// A whole body of `body_len` bytes still gathered in memory, never
    /// written to a file (a small resource), taken out: the caller commits
    /// it (see [`commit_small`]); the file is then this one's no more.
    fn take_small_body(&mut self, body_len: u64) -> Option<Vec<u8>> {
        if self.created || !self.gathered_whole(body_len) || self.check_whole(body_len).is_err() {
            return None;
        }
        self.committed = true;
        Some(std::mem::take(&mut self.wbuf))
    }
}

/// `Err(DigestMismatch)` unless `sha256` is what was `expected` (if anything).
fn check_digest(expected: Option<[u8; 32]>, sha256: [u8; 32]) -> Result<(), WriteError> {
    match expected {
        Some(expected) if expected != sha256 => Err(WriteError::digest_mismatch(expected, sha256)),
        _ => Ok(()),
    }
}

/// Makes the complete temporary file `temp` (open as `file`) the resource at
/// `root/rel`: synced first with `fsync`, the parents of `rel` created, then
/// renamed (and the rename made durable with `fsync`, best effort).
fn place(file: &File, temp: &Path, root: &Path, rel: &Path, fsync: bool) -> Result<PathBuf, WriteError> {
    if fsync && let Err(source) = file.sync_all() {
        return Err(WriteError::Io { path: temp.to_path_buf(), source });
    }
    let target = paths::create_parents(root, rel)?;
    if let Err(source) = std::fs::rename(temp, &target) {
        if source.kind() == io::ErrorKind::IsADirectory {
            return Err(PathError::TargetIsDirectory { path: rel.to_path_buf() }.into());
        }
        return Err(WriteError::Io { path: target, source });
    }
    if fsync
        && let Some(parent) = target.parent()
        && let Ok(dir) = File::open(parent)
    {
        let _ = dir.sync_all();
    }
    Ok(target)
}

/// Commits a small resource's whole `body` (see
/// [`ResourceWriter::commit_later`]): hashed and checked against `expected`,
/// written to `temp` (created here), placed at `root/rel`. On failure
/// nothing is left behind.
fn commit_small(
    body: &[u8],
    temp: &Path,
    root: &Path,
    rel: &Path,
    expected: Option<[u8; 32]>,
    fsync: bool,
) -> Result<Written, WriteError> {
    let digest = sha256(body);
    check_digest(expected, digest)?;
    let io = |source| WriteError::Io { path: temp.to_path_buf(), source };
    let file = OpenOptions::new().write(true).create_new(true).open(temp).map_err(io)?;
    let placed = file.write_all_at(body, 0).map_err(io).and_then(|()| place(&file, temp, root, rel, fsync));
    match placed {
        Ok(path) => Ok(Written { path, bytes: body.len() as u64, sha256: digest }),
        Err(e) => {
            let _ = std::fs::remove_file(temp);
            Err(e)
        }
    }
}

/// How a [`ResourceWriter::commit_later`] went.
#[derive(Debug)]
pub enum Commit {
    /// Done now.
    Done(Result<Written, WriteError>),
    /// Being done on the worker: its result comes from
    /// [`ResourceWriter::poll_committed`].
    Pending,
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.committed {
            if self.handed {
                FileWorker::get().forget(self.hash_key);
            }
            if self.created {
                let _ = std::fs::remove_file(&self.temp);
            }
        }
    }
}

/// A push being written: its temporary file and its relative target.
#[derive(Debug)]
struct Entry {
    file: PartialFile,
    rel: PathBuf,
}

/// The resources being written into one output directory, by push ID.
#[derive(Debug)]
pub struct ResourceWriter {
    root: PathBuf,
    pid: u32,
    open: foldhash::HashMap<u64, Entry>,
    fsync: bool,
    /// Bytes gathered in the write buffers of all open pushes.
    buffered: usize,
    /// Small resources being committed on the worker
    /// ([`commit_later`](Self::commit_later)), and where their results come.
    committing: usize,
    committed_tx: std::sync::mpsc::Sender<(u64, Result<Written, WriteError>)>,
    committed_rx: std::sync::mpsc::Receiver<(u64, Result<Written, WriteError>)>,
}

/// At most this many bytes are gathered in memory across the pushes being
/// written (each gathers up to 64 KiB before writing); beyond it a push's
/// bytes go to its file at once.
pub const MAX_BUFFERED_TOTAL: usize = 4 << 20;

impl ResourceWriter {
    /// Uses `root` as the output directory, creating it (and its parents) if needed.
    pub fn new(root: &Path) -> Result<Self, WriteError> {
        let io = |source| WriteError::Io { path: root.to_path_buf(), source };
        std::fs::create_dir_all(root).map_err(io)?;
        let meta = std::fs::metadata(root).map_err(io)?;
        if !meta.is_dir() {
            return Err(io(io::Error::new(io::ErrorKind::NotADirectory, "not a directory")));
        }
        let (committed_tx, committed_rx) = std::sync::mpsc::channel();
        Ok(ResourceWriter {
            root: root.to_path_buf(),
            pid: std::process::id(),
            open: foldhash::HashMap::default(),
            fsync: false,
            buffered: 0,
            committing: 0,
            committed_tx,
            committed_rx,
        })
    }

    /// Removes the temporary files that receivers no longer running left in
    /// the output directory (killed by SIGKILL, or a crash): those whose
    /// process ID is not a live process, or is this process's own (a reused
    /// ID). Files of live processes (another receiver writing here) are kept.
    /// Returns the paths removed.
    pub fn remove_stale_partials(&self) -> Vec<PathBuf> {
        let mut removed = Vec::new();
        let Ok(dir) = std::fs::read_dir(&self.root) else { return removed };
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(pid) = stale_partial_pid(name.as_encoded_bytes()) else { continue };
            let alive = pid != self.pid && Path::new(&format!("/proc/{pid}")).exists();
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            if !alive && is_file && std::fs::remove_file(entry.path()).is_ok() {
                removed.push(entry.path());
            }
        }
        removed.sort();
        removed
    }

    /// Whether each file (and its directory entry) is synced to disk before it
    /// is reported written. Off by default: a sync per file stalls a live
    /// receive loop long enough to overflow the socket buffer under bursts of
    /// small files; the rename is atomic either way.
    pub fn with_fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }

    /// The output directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Pushes being written.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Starts writing push `push_id` to `rel` (a path from [`paths::sanitize`]):
    /// checks the existing parents and creates the temporary file.
    pub fn begin(&mut self, push_id: u64, rel: PathBuf) -> Result<(), WriteError> {
        self.remove(push_id);
        if paths::first_component_starts_with(&rel, TEMP_PREFIX.as_bytes()) {
            return Err(PathError::Reserved.into());
        }
        // The target itself is not looked at: a directory there fails the
        // rename at commit ([`PathError::TargetIsDirectory`]).
        paths::check_parent_dirs(&self.root, &rel)?;
        let temp = self.root.join(format!("{TEMP_PREFIX}{push_id}-{}", self.pid));
        let file = PartialFile::create(temp)?;
        self.open.insert(push_id, Entry { file, rel });
        Ok(())
    }

    /// Push `push_id`'s body is declared `length` bytes long (see
    /// [`PartialFile::expect_length`]); nothing if it is not being written.
    pub fn expect_length(&mut self, push_id: u64, length: u64) {
        if let Some(entry) = self.open.get_mut(&push_id) {
            entry.file.expect_length(length);
        }
    }

    /// Writes body bytes of a push being written; `Ok(false)` if it is not.
    /// On error the push is dropped (its temporary file removed).
    pub fn write(&mut self, push_id: u64, offset: u64, data: &[u8]) -> Result<bool, WriteError> {
        let Some(entry) = self.open.get_mut(&push_id) else { return Ok(false) };
        let before = entry.file.buffered();
        let mut result = entry.file.write_at(offset, data);
        if result.is_ok() && self.buffered + entry.file.buffered() > MAX_BUFFERED_TOTAL + before {
            result = entry.file.flush();
        }
        self.buffered = (self.buffered + entry.file.buffered()).saturating_sub(before);
        match result {
            Ok(()) => Ok(true),
            Err(e) => {
                self.remove(push_id);
                Err(e)
            }
        }
    }

    /// Memory held for bytes gathered across the pushes being written (at
    /// most [`MAX_BUFFERED_TOTAL`] and one push's write buffer).
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Forgets push `push_id` (its temporary file, if any, is removed).
    fn remove(&mut self, push_id: u64) -> Option<Entry> {
        let entry = self.open.remove(&push_id)?;
        self.buffered = self.buffered.saturating_sub(entry.file.buffered());
        Some(entry)
    }

    /// Finishes a complete push of `body_len` bytes, checking its SHA-256 against
    /// `expected` when given: `None` if it is not being written.
    pub fn commit(
        &mut self,
        push_id: u64,
        body_len: u64,
        expected: Option<[u8; 32]>,
    ) -> Option<Result<Written, WriteError>> {
        let entry = self.remove(push_id)?;
        Some(entry.file.commit(&self.root, &entry.rel, body_len, expected, self.fsync))
    }

    /// As [`commit`](Self::commit), but a small resource (its whole body
    /// still gathered in memory, at most 64 KiB) is hashed, checked, written
    /// and renamed on the worker thread, the receive loop going on
    /// meanwhile: [`Commit::Pending`], its result from
    /// [`poll_committed`](Self::poll_committed). Until then its file is not
    /// there. Others are committed now ([`Commit::Done`]).
    pub fn commit_later(&mut self, push_id: u64, body_len: u64, expected: Option<[u8; 32]>) -> Option<Commit> {
        let mut entry = self.remove(push_id)?;
        let Some(body) = entry.file.take_small_body(body_len) else {
            return Some(Commit::Done(entry.file.commit(&self.root, &entry.rel, body_len, expected, self.fsync)));
        };
        // Commits of one path on one worker, in the order given (the later
        // version of a file wins); other paths on other workers.
        let route = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            entry.rel.hash(&mut h);
            h.finish()
        };
        let (temp, root, rel, fsync) = (entry.file.temp.clone(), self.root.clone(), entry.rel, self.fsync);
        let done = self.committed_tx.clone();
        let job = Box::new(move || {
            let _ = done.send((push_id, commit_small(&body, &temp, &root, &rel, expected, fsync)));
        });
        if let Err(job) = FileWorker::get().call(route, job) {
            // No worker thread: here, now.
            job();
        }
        self.committing += 1;
        Some(Commit::Pending)
    }

    /// The result of a commit [`commit_later`](Self::commit_later) left
    /// pending, by push ID: one that is done, else (with `wait`) the next to
    /// finish; `None` when none is pending (or, without `wait`, done).
    pub fn poll_committed(&mut self, wait: bool) -> Option<(u64, Result<Written, WriteError>)> {
        if self.committing == 0 {
            return None;
        }
        let done = if wait { self.committed_rx.recv().ok() } else { self.committed_rx.try_recv().ok() };
        if done.is_some() {
            self.committing -= 1;
        }
        done
    }

    /// Drops a push: its temporary file is removed.
    pub fn abort(&mut self, push_id: u64) {
        self.remove(push_id);
    }

    /// Closes push `push_id`'s temporary file until it is written again (see
    /// [`PartialFile::park`]); on error the push is dropped.
    pub fn park(&mut self, push_id: u64) -> Result<(), WriteError> {
        let Some(entry) = self.open.get_mut(&push_id) else { return Ok(()) };
        let before = entry.file.buffered();
        let result = entry.file.park();
        self.buffered = (self.buffered + entry.file.buffered()).saturating_sub(before);
        if result.is_err() {
            self.remove(push_id);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> [u8; 32] {
        sha256(data)
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    fn body(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + 3) as u8).collect()
    }

    #[test]
    fn stale_partial_files_of_dead_processes_are_removed() {
        // Regression (hardening item 8): files left by a SIGKILLed receiver
        // stayed forever.
        let dir = tempfile::tempdir().unwrap();
        // A process ID that is not running: the kernel's maximum is far below.
        let dead = format!("{TEMP_PREFIX}3-4194999");
        let own = format!("{TEMP_PREFIX}4-{}", std::process::id());
        // PID 1 is always alive: another receiver's file is kept.
        let live = format!("{TEMP_PREFIX}5-1");
        for name in [&dead, &own, &live, &".h3m-partial-x-1".to_owned(), &"keep.txt".to_owned()] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let w = ResourceWriter::new(dir.path()).unwrap();
        let removed = w.remove_stale_partials();
        let mut want = vec![dir.path().join(&dead), dir.path().join(&own)];
        want.sort();
        assert_eq!(removed, want);
        assert_eq!(entries(dir.path()), vec![".h3m-partial-5-1", ".h3m-partial-x-1", "keep.txt"]);
    }

    #[test]
    fn in_order_and_out_of_order_writes_hash_right() {
        let dir = tempfile::tempdir().unwrap();
        let data = body(300_000);
        let mut w = ResourceWriter::new(dir.path()).unwrap();
        w.begin(0, "a/b.bin".into()).unwrap();
        // Out of order: tail first, then a middle piece, then the head.
        w.write(0, 200_000, &data[200_000..]).unwrap();
        w.write(0, 70_000, &data[70_000..200_000]).unwrap();
        w.write(0, 0, &data[..70_000]).unwrap();
        let written = w.commit(0, data.len() as u64, None).unwrap().unwrap();
        assert_eq!(written.sha256, sha(&data));
        assert_eq!(written.path, dir.path().join("a/b.bin"));
        assert_eq!(std::fs::read(&written.path).unwrap(), data);
        assert_eq!(entries(dir.path()), ["a"]);
    }

    #[test]
    fn overlapping_writes_rehash_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let data = body(1000);
        let mut w = ResourceWriter::new(dir.path()).unwrap();
        w.begin(1, "x".into()).unwrap();
        w.write(1, 500, &data[500..]).unwrap();
        w.write(1, 400, &data[400..700]).unwrap();
        w.write(1, 0, &data[..450]).unwrap();
        w.write(1, 10, &data[10..20]).unwrap();
        let written = w.commit(1, 1000, None).unwrap().unwrap();
        assert_eq!(written.sha256, sha(&data));
    }

    #[test]
    fn empty_body() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ResourceWriter::new(dir.path()).unwrap();
        w.begin(2, "empty".into()).unwrap();
        let written = w.commit(2, 0, None).unwrap().unwrap();
        assert_eq!(written.sha256, sha(b""));
        assert_eq!(std::fs::read(dir.path().join("empty")).unwrap(), b"");
    }

    #[test]
    fn gaps_are_inconsistent_and_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ResourceWriter::new(dir.path()).unwrap();
        w.begin(3, "x".into()).unwrap();
        w.write(3, 10, b"abc").unwrap();
        assert!(matches!(w.commit(3, 13, None), Some(Err(WriteError::Inconsistent(_)))));
        w.begin(4, "y".into()).unwrap();
        w.write(4, 0, b"abc").unwrap();
        assert!(matches!(w.commit(4, 2, None), Some(Err(WriteError::Inconsistent(_)))));
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn abort_and_drop_remove_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ResourceWriter::new(dir.path()).unwrap();
        w.begin(5, "x".into()).unwrap();
        w.begin(6, "y".into()).unwrap();
        w.write(5, 0, b"abc").unwrap();
        // A few bytes stay in memory: a push given up never touched the disk.
        assert!(entries(dir.path()).is_empty());
        w.abort(5);
        // More than a write buffer goes to the temporary file, which goes
        // when the push does.
        w.write(6, 0, &body(100_000)).unwrap();
        assert_eq!(entries(dir.path()), [format!("{TEMP_PREFIX}6-{}", std::process::id())]);
        drop(w);
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn a_parked_file_is_opened_again_for_writes_and_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ResourceWriter::new(dir.path()).unwrap();
        let data = body(300_000);
        w.begin(1, "a".into()).unwrap();
        w.write(1, 0, &data[..100_000]).unwrap();
        w.write(1, 200_000, &data[200_000..]).unwrap();
        w.park(1).unwrap();
        w.write(1, 100_000, &data[100_000..200_000]).unwrap();
        let written = w.commit(1, 300_000, Some(sha(&data))).unwrap().unwrap();
        assert_eq!(std::fs::read(&written.path).unwrap(), data);
        // A parked push given up leaves no temporary file.
        w.begin(2, "b".into()).unwrap();
        w.write(2, 0, &data).unwrap();
        w.park(2).unwrap();
        w.abort(2);
        assert_eq!(entries(dir.path()), ["a".to_owned()]);
    }

    #[test]
    fn a_declared_length_sizes_the_first_run_once_within_sixteen_times_what_came() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ResourceWriter::new(dir.path()).unwrap();
        let data = body(10_240);
        w.begin(0, "small".into()).unwrap();
        w.expect_length(0, 10_240);
        w.write(0, 0, &data[..1_200]).unwrap();
        assert_eq!(w.buffered(), 10_240, "room for the whole body at the first bytes");
        for at in (1_200..10_240).step_by(1_200) {
            w.write(0, at as u64, &data[at..(at + 1_200).min(10_240)]).unwrap();
            assert_eq!(w.buffered(), 10_240, "no growth");
        }
        let written = w.commit(0, 10_240, Some(sha(&data))).unwrap().unwrap();
        assert_eq!(std::fs::read(&written.path).unwrap(), data);
        // A length that is only the sender's word: a byte gets 16 bytes of room.
        w.begin(1, "claims".into()).unwrap();
        w.expect_length(1, 1 << 40);
        w.write(1, 0, b"x").unwrap();
        assert_eq!(w.buffered(), 16);
        // Beyond the write buffer the room stops at it.
        w.begin(2, "big".into()).unwrap();
        w.expect_length(2, 1 << 20);
        w.write(2, 0, &body(8_000)).unwrap();
        assert_eq!(w.buffered(), 16 + WRITE_BUFFER);
    }

    #[test]
    fn write_buffers_are_held_within_one_budget() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ResourceWriter::new(dir.path()).unwrap();
        let data = body(60_000);
        for id in 0..200u64 {
            w.begin(id, format!("f{id}").into()).unwrap();
            w.write(id, 0, &data[..30_000]).unwrap();
            w.write(id, 30_000, &data[30_000..]).unwrap();
            assert!(w.buffered() <= MAX_BUFFERED_TOTAL + WRITE_BUFFER, "{} bytes gathered", w.buffered());
        }
        // 200 x 60 000 bytes were written: all but the budget's worth are on disk.
        assert!(w.buffered() > MAX_BUFFERED_TOTAL - 60_000, "{}", w.buffered());
        for id in 0..200u64 {
            let written = w.commit(id, 60_000, Some(sha(&data))).unwrap().unwrap();
            assert_eq!(std::fs::read(&written.path).unwrap(), data);
        }
        assert_eq!(w.buffered(), 0);
        // An empty body is committed as an empty file.
        w.begin(200, "empty".into()).unwrap();
        assert_eq!(w.commit(200, 0, None).unwrap().unwrap().bytes, 0);
        assert_eq!(std::fs::read(dir.path().join("empty")).unwrap(), b"");
    }

    #[test]
    fn reserved_and_refused_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), b"").unwrap();
        let mut w = ResourceWriter::new(dir.path()).unwrap();
        assert!(matches!(w.begin(7, ".h3m-partial-7-1".into()), Err(WriteError::Refused(PathError::Reserved))));
        assert!(matches!(w.begin(8, "file/x".into()), Err(WriteError::Refused(PathError::ParentNotDirectory { .. }))));
        assert_eq!(w.open_count(), 0);
        assert_eq!(entries(dir.path()), ["file"]);
    }

    #[test]
    fn symlink_planted_after_begin_is_refused_at_commit() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let mut w = ResourceWriter::new(dir.path()).unwrap();
        w.begin(9, "sub/x".into()).unwrap();
        w.write(9, 0, b"hi").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("sub")).unwrap();
        assert!(matches!(w.commit(9, 2, None), Some(Err(WriteError::Refused(PathError::SymlinkParent { .. })))));
        assert_eq!(entries(dir.path()), ["sub"]);
        assert!(entries(outside.path()).is_empty());
    }

    #[test]
    fn a_directory_at_the_target_is_refused_at_commit() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ResourceWriter::new(dir.path()).unwrap();
        w.begin(4, "x".into()).unwrap();
        w.write(4, 0, b"hi").unwrap();
        std::fs::create_dir(dir.path().join("x")).unwrap();
        std::fs::write(dir.path().join("x/kept"), b"k").unwrap();
        let r = w.commit(4, 2, None);
        assert!(
            matches!(&r, Some(Err(WriteError::Refused(PathError::TargetIsDirectory { path }))) if path == Path::new("x")),
            "{r:?}"
        );
        // Nothing replaced, no temporary file left.
        assert_eq!(entries(dir.path()), ["x"]);
        assert_eq!(std::fs::read(dir.path().join("x/kept")).unwrap(), b"k");
        // A directory there before the push began: refused the same way.
        w.begin(5, "x".into()).unwrap();
        w.write(5, 0, &body(100_000)).unwrap();
        let r = w.commit(5, 100_000, None);
        assert!(matches!(&r, Some(Err(WriteError::Refused(PathError::TargetIsDirectory { .. })))), "{r:?}");
        assert_eq!(entries(dir.path()), ["x"]);
    }

    #[test]
    fn output_dir_that_is_a_file_fails() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        assert!(matches!(ResourceWriter::new(&file), Err(WriteError::Io { .. })));
    }

    #[test]
    fn digest_mismatch_writes_nothing() {
        let dir = std::env::temp_dir().join(format!("h3m-writer-digest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut w = ResourceWriter::new(&dir).unwrap();
        w.begin(7, PathBuf::from("x.bin")).unwrap();
        w.write(7, 0, b"forged").unwrap();
        let e = w.commit(7, 6, Some(sha(b"genuine"))).unwrap().unwrap_err();
        assert!(matches!(e, WriteError::DigestMismatch { .. }), "{e}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "no file, no temp file");
        w.begin(8, PathBuf::from("x.bin")).unwrap();
        w.write(8, 0, b"genuine").unwrap();
        assert_eq!(w.commit(8, 7, Some(sha(b"genuine"))).unwrap().unwrap().sha256, sha(b"genuine"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn small_bodies_are_committed_on_the_worker_and_others_here() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ResourceWriter::new(dir.path()).unwrap();
        assert!(w.poll_committed(true).is_none(), "nothing pending: no wait");
        // Small, in order, whole: pending until the worker has written it.
        let small = body(10_240);
        w.begin(1, "d/small.bin".into()).unwrap();
        w.write(1, 0, &small[..5_000]).unwrap();
        w.write(1, 5_000, &small[5_000..]).unwrap();
        assert!(matches!(w.commit_later(1, 10_240, Some(sha(&small))), Some(Commit::Pending)));
        // A forged one and one whose target is a directory: pending too, refused.
        w.begin(2, "forged.bin".into()).unwrap();
        w.write(2, 0, b"forged").unwrap();
        assert!(matches!(w.commit_later(2, 6, Some(sha(b"genuine"))), Some(Commit::Pending)));
        std::fs::create_dir(dir.path().join("taken")).unwrap();
        w.begin(3, "taken".into()).unwrap();
        w.write(3, 0, b"x").unwrap();
        assert!(matches!(w.commit_later(3, 1, None), Some(Commit::Pending)));
        // Big (handed to the worker as it came): committed here, at once.
        let big = body(200_000);
        w.begin(4, "big.bin".into()).unwrap();
        w.write(4, 0, &big).unwrap();
        let Some(Commit::Done(Ok(written))) = w.commit_later(4, 200_000, Some(sha(&big))) else { panic!("not done") };
        assert_eq!(std::fs::read(&written.path).unwrap(), big);
        // Not whole: refused at once, whatever its size.
        w.begin(5, "gap.bin".into()).unwrap();
        w.write(5, 10, b"late").unwrap();
        assert!(matches!(w.commit_later(5, 14, None), Some(Commit::Done(Err(WriteError::Inconsistent(_))))));
        assert!(w.commit_later(99, 1, None).is_none(), "not being written");
        let mut done: Vec<(u64, Result<Written, WriteError>)> = std::iter::from_fn(|| w.poll_committed(true)).collect();
        done.sort_by_key(|d| d.0);
        assert_eq!(done.len(), 3);
        let written = done[0].1.as_ref().unwrap();
        assert_eq!((written.bytes, written.sha256), (10_240, sha(&small)));
        assert_eq!(std::fs::read(dir.path().join("d/small.bin")).unwrap(), small);
        assert!(matches!(done[1].1, Err(WriteError::DigestMismatch { .. })), "{:?}", done[1].1);
        assert!(matches!(done[2].1, Err(WriteError::Refused(PathError::TargetIsDirectory { .. }))), "{:?}", done[2].1);
        // Nothing else is left: no temporary file, no forged file.
        let mut names = entries(dir.path());
        names.sort();
        assert_eq!(names, ["big.bin", "d", "taken"]);
        assert!(w.poll_committed(false).is_none());
    }

    proptest::proptest! {
        /// Any order and split of writes (with overlaps of identical bytes) gives
        /// the exact file and its SHA-256, through the write buffer.
        #[test]
        fn buffered_writes_in_any_order_give_the_exact_file(
            len in 0usize..300_000,
            cuts in proptest::collection::vec(0usize..300_000, 0..40),
            seed in proptest::num::u64::ANY,
        ) {
            let body: Vec<u8> = (0..len).map(|i| (i as u64).wrapping_mul(seed | 1).to_le_bytes()[3]).collect();
            let mut points: Vec<usize> = cuts.into_iter().filter(|&c| c < len).collect();
            points.extend([0, len]);
            points.sort_unstable();
            points.dedup();
            let mut pieces: Vec<(usize, usize)> = points.windows(2).map(|w| (w[0], w[1])).collect();
            // A deterministic shuffle, plus one overlapping rewrite.
            let n = pieces.len();
            for i in (1..n).rev() {
                pieces.swap(i, (seed as usize).wrapping_mul(i + 7) % (i + 1));
            }
            if let Some(&(a, b)) = pieces.first() {
                pieces.push((a, b));
            }
            let dir = tempfile::tempdir().unwrap();
            let mut w = ResourceWriter::new(dir.path()).unwrap();
            w.begin(1, PathBuf::from("f.bin")).unwrap();
            for (a, b) in pieces {
                w.write(1, a as u64, &body[a..b]).unwrap();
            }
            let written = w.commit(1, len as u64, Some(sha(&body))).unwrap().unwrap();
            proptest::prop_assert_eq!(written.sha256, sha(&body));
            proptest::prop_assert_eq!(std::fs::read(dir.path().join("f.bin")).unwrap(), body);
        }
    }
}
