//! What the origin serves: every published resource by its `:path`, with
//! where its bytes are (memory, a file on disk, or a spool that grows with a
//! live stream) and what its multicast response announced (content type,
//! SHA-256).
//!
//! The publisher adds an [`Entry`] when a push starts; the origin looks it up
//! per request. A file is served from disk as it was when published: if its
//! length or modification time changed since, requests for it fail
//! ([`ReadError::Changed`]) instead of serving bytes that do not match the
//! announced digest.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use bytes::Bytes;

use crate::feed::Feed;
use crate::listing::{Listed, Listing, MAX_LISTED};

/// Where a resource's bytes are.
#[derive(Debug, Clone)]
pub enum Source {
    /// Held in memory.
    Memory(Bytes),
    /// A file, as it was when published.
    File {
        /// The file.
        path: PathBuf,
        /// Its length when published.
        len: u64,
        /// Its modification time when published.
        modified: Option<SystemTime>,
    },
    /// A live stream's bytes so far (see [`Spool`]).
    Spool(Arc<Spool>),
}

/// A published resource.
#[derive(Debug)]
pub struct Entry {
    /// Its bytes.
    pub source: Source,
    /// The `content-type` its response announced.
    pub content_type: Option<String>,
    /// The SHA-256 its response (or trailers) announced, if known yet.
    pub sha256: Option<[u8; 32]>,
}

/// Why bytes of an entry could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file changed since it was published.
    #[error("the file changed since it was published")]
    Changed,
    /// Reading failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl Entry {
    /// An entry for a file, taking its length and modification time now.
    pub fn file(path: &Path, content_type: Option<String>, sha256: Option<[u8; 32]>) -> io::Result<Entry> {
        let meta = std::fs::metadata(path)?;
        Ok(Entry::file_as_read(path, meta.len(), meta.modified().ok(), content_type, sha256))
    }

    /// An entry for a file whose bytes were read when it was `len` bytes
    /// long and last modified at `modified` (its `stat` then): it is served
    /// only while it still is, so a file changed since it was read (and
    /// multicast) is refused, not served as the new bytes.
    pub fn file_as_read(
        path: &Path,
        len: u64,
        modified: Option<std::time::SystemTime>,
        content_type: Option<String>,
        sha256: Option<[u8; 32]>,
    ) -> Entry {
        Entry { source: Source::File { path: path.to_owned(), len, modified }, content_type, sha256 }
    }

    /// The whole length, once known (a spool still growing has none).
    pub fn len(&self) -> Option<u64> {
        match &self.source {
            Source::Memory(b) => Some(b.len() as u64),
            Source::File { len, .. } => Some(*len),
            Source::Spool(s) => s.is_complete().then(|| s.len()),
        }
    }

    /// Whether the entry is known to be empty.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// Bytes available to serve now.
    pub fn available(&self) -> u64 {
        match &self.source {
            Source::Spool(s) => s.len(),
            _ => self.len().unwrap_or(0),
        }
    }

    /// A reader of the entry's bytes (opens the file, checking it is
    /// unchanged).
    pub fn reader(self: &Arc<Self>) -> Result<EntryReader, ReadError> {
        let file = match &self.source {
            Source::File { path, len, modified } => {
                let f = File::open(path)?;
                let meta = f.metadata()?;
                if meta.len() != *len || meta.modified().ok() != *modified {
                    return Err(ReadError::Changed);
                }
                Some(f)
            }
            _ => None,
        };
        Ok(EntryReader { entry: Arc::clone(self), file })
    }
}

/// Reads an entry's bytes at offsets.
#[derive(Debug)]
pub struct EntryReader {
    entry: Arc<Entry>,
    file: Option<File>,
}

impl EntryReader {
    /// Up to `max` bytes at `offset` (fewer at the end of what exists).
    pub fn read_at(&self, offset: u64, max: usize) -> Result<Bytes, ReadError> {
        match (&self.entry.source, &self.file) {
            (Source::Memory(b), _) => {
                let start = (offset as usize).min(b.len());
                let end = start.saturating_add(max).min(b.len());
                Ok(b.slice(start..end))
            }
            (Source::File { len, .. }, Some(f)) => {
                let n = max.min(len.saturating_sub(offset) as usize);
                let mut buf = vec![0u8; n];
                f.read_exact_at(&mut buf, offset).map_err(|e| match e.kind() {
                    io::ErrorKind::UnexpectedEof => ReadError::Changed,
                    _ => ReadError::Io(e),
                })?;
                Ok(buf.into())
            }
            (Source::Spool(s), _) => s.read_at(offset, max),
            (Source::File { .. }, None) => Err(ReadError::Changed),
        }
    }
}

/// A growing resource's bytes in an unlinked temporary file (disk, not
/// memory; gone with the process). One writer appends; any number read.
#[derive(Debug)]
pub struct Spool {
    file: File,
    len: AtomicU64,
    complete: AtomicBool,
}

impl Spool {
    /// A new, empty spool in the system's temporary directory.
    pub fn new() -> io::Result<Spool> {
        let dir = std::env::temp_dir();
        for attempt in 0..16u32 {
            let name = format!(".h3m-spool-{}-{}-{attempt}", std::process::id(), unique());
            let path = dir.join(name);
            match std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path) {
                Ok(file) => {
                    std::fs::remove_file(&path)?;
                    return Ok(Spool { file, len: AtomicU64::new(0), complete: AtomicBool::new(false) });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(io::ErrorKind::AlreadyExists, "no free spool name"))
    }

    /// Appends bytes.
    pub fn append(&self, data: &[u8]) -> io::Result<()> {
        let at = self.len.load(Ordering::Acquire);
        self.file.write_all_at(data, at)?;
        self.len.store(at + data.len() as u64, Ordering::Release);
        Ok(())
    }

    /// Marks the stream ended: its length is final.
    pub fn complete(&self) {
        self.complete.store(true, Ordering::Release);
    }

    /// Whether the stream ended.
    pub fn is_complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }

    /// Bytes so far.
    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    /// Whether nothing was appended yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read_at(&self, offset: u64, max: usize) -> Result<Bytes, ReadError> {
        let n = max.min(self.len().saturating_sub(offset) as usize);
        let mut buf = vec![0u8; n];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(buf.into())
    }
}

/// A per-process counter for unique names.
fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The published resources by `:path` (shared between the publisher and the
/// origin's tasks).
#[derive(Debug, Default)]
pub struct Catalog {
    entries: RwLock<HashMap<String, Arc<Entry>>>,
    /// Push IDs to `:path`s and body offsets (the newest [`MAX_LISTED`] pushes).
    pushes: RwLock<std::collections::BTreeMap<u64, (String, Option<u64>)>>,
    /// Streaming responses by path (see [`crate::feed`]).
    feeds: RwLock<HashMap<String, Arc<Feed>>>,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the resource at `path` (its `:path`, as pushed).
    pub fn insert(&self, path: impl Into<String>, entry: Entry) -> Arc<Entry> {
        let entry = Arc::new(entry);
        self.entries.write().unwrap_or_else(|e| e.into_inner()).insert(path.into(), Arc::clone(&entry));
        entry
    }

    /// Sets the SHA-256 of the entry at `path` (a live stream's, known when it ends).
    pub fn set_sha256(&self, path: &str, sha256: [u8; 32]) {
        let mut map = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = map.get_mut(path) {
            *e = Arc::new(Entry {
                source: e.source.clone(),
                content_type: e.content_type.clone(),
                sha256: Some(sha256),
            });
        }
    }

    /// Notes that push `push_id` carried the resource at `path`, its body
    /// from stream offset `body_offset` if one DATA frame (for the
    /// [listing](crate::listing)).
    pub fn note_push(&self, push_id: u64, path: impl Into<String>, body_offset: Option<u64>) {
        let mut pushes = self.pushes.write().unwrap_or_else(|e| e.into_inner());
        pushes.insert(push_id, (path.into(), body_offset));
        while pushes.len() > MAX_LISTED {
            pushes.pop_first();
        }
    }

    /// What the listing says of push `push_id`.
    pub fn listed(&self, push_id: u64) -> Option<Listed> {
        let pushes = self.pushes.read().unwrap_or_else(|e| e.into_inner());
        let (path, body_offset) = pushes.get(&push_id)?;
        let e = self.get(path);
        Some(Listed {
            path: path.clone(),
            length: e.as_ref().and_then(|e| e.len()),
            sha256: e.as_ref().and_then(|e| e.sha256),
            body_offset: *body_offset,
        })
    }

    /// The listing of the pushes noted, with each resource's length and
    /// SHA-256 as known now.
    pub fn listing(&self) -> Listing {
        let pushes = self.pushes.read().unwrap_or_else(|e| e.into_inner());
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        pushes
            .iter()
            .map(|(&id, (path, body_offset))| {
                let e = entries.get(path);
                let listed = Listed {
                    path: path.clone(),
                    length: e.and_then(|e| e.len()),
                    sha256: e.and_then(|e| e.sha256),
                    body_offset: *body_offset,
                };
                (id, listed)
            })
            .collect()
    }

    /// Serves `feed` at `path`: every `GET` of it is a response that
    /// streams the feed's chunks until the feed is closed.
    pub fn insert_feed(&self, path: impl Into<String>, feed: Arc<Feed>) {
        self.feeds.write().unwrap_or_else(|e| e.into_inner()).insert(path.into(), feed);
    }

    /// The feed at `path`.
    pub fn feed(&self, path: &str) -> Option<Arc<Feed>> {
        self.feeds.read().unwrap_or_else(|e| e.into_inner()).get(path).cloned()
    }

    /// The resource at `path`.
    pub fn get(&self, path: &str) -> Option<Arc<Entry>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).get(path).cloned()
    }

    /// How many resources it holds.
    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_file_and_spool_read_the_same_bytes() {
        let body: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, &body).unwrap();
        let spool = Arc::new(Spool::new().unwrap());
        for chunk in body.chunks(777) {
            spool.append(chunk).unwrap();
        }
        let catalog = Catalog::new();
        catalog.insert("/m", Entry { source: Source::Memory(body.clone().into()), content_type: None, sha256: None });
        catalog.insert("/f", Entry::file(&path, None, None).unwrap());
        let s = catalog.insert("/s", Entry { source: Source::Spool(spool.clone()), content_type: None, sha256: None });
        assert_eq!((s.len(), s.available()), (None, body.len() as u64));
        spool.complete();
        assert_eq!(s.len(), Some(body.len() as u64));
        for p in ["/m", "/f", "/s"] {
            let r = catalog.get(p).unwrap().reader().unwrap();
            assert_eq!(r.read_at(1000, 5000).unwrap(), body[1000..6000], "{p}");
            assert_eq!(r.read_at(99_990, 5000).unwrap(), body[99_990..], "{p}");
        }
        assert!(catalog.get("/nope").is_none());
    }

    #[test]
    fn a_changed_file_is_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"original").unwrap();
        let entry = Arc::new(Entry::file(&path, None, None).unwrap());
        std::fs::write(&path, b"changed, longer").unwrap();
        assert!(matches!(entry.reader(), Err(ReadError::Changed)));
    }

    #[test]
    fn a_file_as_read_is_served_while_it_is_as_read_and_refused_once_it_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"original").unwrap();
        let m = std::fs::metadata(&path).unwrap();
        let read = Arc::new(Entry::file_as_read(&path, m.len(), m.modified().ok(), None, None));
        assert_eq!(read.reader().unwrap().read_at(0, 100).unwrap(), &b"original"[..]);
        // Read at another length (the file changed between its read and its
        // entry): refused, though the file on disk is whole.
        let earlier = Arc::new(Entry::file_as_read(&path, 5, m.modified().ok(), None, None));
        assert!(matches!(earlier.reader(), Err(ReadError::Changed)));
        let older = std::time::SystemTime::UNIX_EPOCH;
        let earlier = Arc::new(Entry::file_as_read(&path, m.len(), Some(older), None, None));
        assert!(matches!(earlier.reader(), Err(ReadError::Changed)));
    }
}
