//! Reading and hashing a run's small files ahead of the sender, on a thread
//! of their own.
//!
//! A small file costs the sender's loop an `open`, a `read` and its SHA-256
//! (which goes in its response headers) before its first datagram: a
//! quarter of its time for a tree of 10 KiB files. [`Prefetch`] does those
//! for the files to come, in the order they will be sent, and hands each
//! over with its digest; the loop only packetizes and sends. Files larger
//! than [`PREFETCH_UP_TO`], and files that cannot be read, are left to the
//! loop (which reads big files with [`crate::read_ahead`] and reports
//! errors). At most [`AHEAD`] files are held, so memory stays within
//! `AHEAD × PREFETCH_UP_TO`. A file is sent as it is at its turn, within
//! [`STILL_FRESH`]: one whose length or modification time when read differs
//! from the listing's, or (read longer than that before its turn) from what
//! a `stat` says at its turn, or that is gone by then, is left to the loop,
//! which reads it again (or reports it). A tree of small files read just
//! ahead of its sending costs the loop no `stat` a file.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Largest file read ahead.
pub const PREFETCH_UP_TO: u64 = 64 * 1024;

/// Files read ahead of the sender at most.
pub const AHEAD: usize = 64;

/// One file as the reading thread found it.
#[derive(Debug)]
struct Fetched {
    file: PathBuf,
    /// Its bytes and their SHA-256, with its length and modification time
    /// when read; `None`: left to the sender's loop.
    body: Option<ReadAhead>,
}

/// What says a file is still the one listed: its length and modification time.
pub type Stamp = (u64, Option<std::time::SystemTime>);

/// A small file read whole: its bytes, their SHA-256, its stamp then, and when.
type ReadAhead = (Vec<u8>, [u8; 32], Stamp, Instant);

/// How long a file read ahead counts as read at its turn: one read longer
/// before (a big file went first) is looked at again (a `stat`) then.
pub const STILL_FRESH: Duration = Duration::from_millis(100);

fn stamp(m: &std::fs::Metadata) -> Stamp {
    (m.len(), m.modified().ok())
}

/// Small files read and hashed ahead (see the [module docs](self)).
#[derive(Debug)]
pub struct Prefetch {
    fetched: Option<Receiver<Fetched>>,
    thread: Option<JoinHandle<()>>,
}

impl Prefetch {
    /// Starts reading `files`, in this order.
    pub fn spawn(files: Vec<PathBuf>) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel(AHEAD);
        let thread = std::thread::Builder::new().name("h3m-prefetch".into()).spawn(move || {
            for file in files {
                let body = read_small(&file);
                if tx.send(Fetched { file, body }).is_err() {
                    return;
                }
            }
        })?;
        Ok(Prefetch { fetched: Some(rx), thread: Some(thread) })
    }

    /// The next file's bytes and SHA-256 if it is `file`, was read ahead and
    /// was then as `listed` (length and modification time when it was
    /// listed, if the listing looked: see [`crate::tree::list_unstamped`]);
    /// `None` (the caller reads it) otherwise. Files must be asked
    /// for in the order given; once one is asked for out of order, none is
    /// read ahead any more.
    pub fn take(&mut self, file: &Path, listed: Option<Stamp>) -> Option<(Vec<u8>, [u8; 32], Stamp)> {
        let next = self.fetched.as_ref()?.recv().ok();
        match next {
            Some(f) if f.file == file => {
                let (body, digest, read, at) = f.body?;
                if listed.is_some_and(|listed| listed != read) {
                    return None;
                }
                if at.elapsed() > STILL_FRESH {
                    let now = std::fs::metadata(file).ok().filter(std::fs::Metadata::is_file).map(|m| stamp(&m));
                    if now != Some(read) {
                        return None;
                    }
                }
                Some((body, digest, read))
            }
            _ => {
                // Out of step with the sender: stop, and let it read.
                self.fetched = None;
                None
            }
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        // The thread ends at its next send once the receiver is gone.
        self.fetched = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A regular file of at most [`PREFETCH_UP_TO`] bytes, read whole, with its
/// SHA-256; `None` for anything else or on any error.
fn read_small(file: &Path) -> Option<ReadAhead> {
    let mut f = File::open(file).ok()?;
    let m = f.metadata().ok()?;
    if !m.is_file() || m.len() > PREFETCH_UP_TO {
        return None;
    }
    let mut body = vec![0u8; m.len() as usize];
    f.read_exact(&mut body).ok()?;
    let digest = h3m_proto::http::digest::sha256(&body);
    Some((body, digest, stamp(&m), Instant::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_files_come_read_and_hashed_in_order_big_ones_are_left() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("a.txt");
        let big = dir.path().join("b.bin");
        let missing = dir.path().join("gone");
        std::fs::write(&small, b"hello").unwrap();
        std::fs::write(&big, vec![7u8; PREFETCH_UP_TO as usize + 1]).unwrap();
        let listed = |f: &Path| std::fs::metadata(f).map(|m| stamp(&m)).ok();
        let mut p = Prefetch::spawn(vec![small.clone(), big.clone(), missing.clone(), small.clone()]).unwrap();
        assert_eq!(
            p.take(&small, listed(&small)),
            Some((b"hello".to_vec(), h3m_proto::http::digest::sha256(b"hello"), listed(&small).unwrap())),
            "with the length and modification time it was read at"
        );
        assert_eq!(p.take(&big, listed(&big)), None, "too big: the loop reads it");
        assert_eq!(p.take(&missing, listed(&missing)), None, "unreadable: the loop reports it");
        assert_eq!(p.take(&small, listed(&small)).map(|(b, ..)| b), Some(b"hello".to_vec()));
        assert_eq!(p.take(&small, listed(&small)), None, "nothing more");
    }

    /// Files `a`, `b` and `c` in `dir`, each holding `first`.
    fn three_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
        for f in [&a, &b, &c] {
            std::fs::write(f, b"first").unwrap();
        }
        (a, b, c)
    }

    #[test]
    fn a_file_changed_since_it_was_listed_is_left_to_the_loop() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = three_files(dir.path());
        // Listed, then b changed and c removed, then read ahead (as the
        // thread does), then asked for.
        let listed: Vec<Stamp> = [&a, &b, &c].map(|f| stamp(&std::fs::metadata(f).unwrap())).into();
        std::fs::write(&b, b"second, longer").unwrap();
        std::fs::remove_file(&c).unwrap();
        let fetched: Vec<Fetched> = [&a, &b, &c].map(|f| Fetched { file: f.to_path_buf(), body: read_small(f) }).into();
        let (tx, rx) = sync_channel(AHEAD);
        for f in fetched {
            tx.send(f).unwrap();
        }
        let mut p = Prefetch { fetched: Some(rx), thread: None };
        assert_eq!(
            p.take(&a, Some(listed[0])).map(|(body, ..)| body),
            Some(b"first".to_vec()),
            "as listed: as read ahead"
        );
        assert_eq!(p.take(&b, Some(listed[1])), None, "changed since listed: read again at its turn");
        assert_eq!(p.take(&c, Some(listed[2])), None, "gone: the loop reports it");
    }

    #[test]
    fn a_file_read_long_before_its_turn_is_looked_at_again() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = three_files(dir.path());
        let long_ago = |f: &PathBuf| {
            let (body, digest, stamp, at) = read_small(f).unwrap();
            Fetched { file: f.clone(), body: Some((body, digest, stamp, at - 2 * STILL_FRESH)) }
        };
        let fetched = [Fetched { file: a.clone(), body: read_small(&a) }, long_ago(&b), long_ago(&c)];
        // Read ahead, then b changed and c removed (files not stat'ed when listed).
        std::fs::write(&b, b"second, longer").unwrap();
        std::fs::remove_file(&c).unwrap();
        let (tx, rx) = sync_channel(AHEAD);
        for f in fetched {
            tx.send(f).unwrap();
        }
        let mut p = Prefetch { fetched: Some(rx), thread: None };
        assert_eq!(p.take(&a, None).map(|(body, ..)| body), Some(b"first".to_vec()), "just read: as read");
        assert_eq!(p.take(&b, None), None, "read long ago and changed since: read again");
        assert_eq!(p.take(&c, None), None, "read long ago and gone since: the loop reports it");
    }

    #[test]
    fn asked_out_of_order_it_stops_reading_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"A").unwrap();
        std::fs::write(&b, b"B").unwrap();
        let listed = |f: &Path| Some(stamp(&std::fs::metadata(f).unwrap()));
        let mut p = Prefetch::spawn(vec![a.clone(), b.clone()]).unwrap();
        assert_eq!(p.take(&b, listed(&b)), None);
        assert_eq!(p.take(&b, listed(&b)), None, "stopped: the loop reads from now on");
        drop(p);
    }
}
