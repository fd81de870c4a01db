//! Writing and hashing the files being received, on a thread of its own.
//!
//! SHA-256 is the largest cost of receiving a big resource (about 0.06 s per
//! 100 MiB with the CPU's SHA extensions, as much as everything else the
//! receive loop does) and writing the next, so the loop does neither: a
//! [`PartialFile`] hands each gathered run of bytes to the worker
//! ([`FileWorker::write`]) and tells it which range of the file now follows its
//! hashed prefix ([`FileWorker::hash`]); the worker writes, hashing from memory
//! each run that continues the hashed prefix (bytes arriving in order), and
//! reads back from the page cache only the ranges that were written ahead of
//! a gap, once the gap is filled, in the order it was asked.
//! At commit the file asks for the digest ([`FileWorker::finish`]) and waits
//! for the worker to catch up; a failed write is reported there.
//!
//! A small resource (its whole body gathered in memory) is committed by the
//! worker altogether instead: hashed, written, renamed (see
//! [`ResourceWriter::commit_later`](crate::writer::ResourceWriter::commit_later)),
//! so that a burst of small files costs the receive loop no file system
//! calls.
//!
//! The process has a worker per core (at most [`MAX_WORKERS`]): every job of
//! one file goes to the same worker (by its [`HashKey`]; a small resource's
//! commit by its path), so a file's writes, hashes and commit keep their
//! order, and so do two commits of one path, while different files are
//! written and hashed side by side. Once a burst of small files has been
//! received, their commits then finish on every core (1000 x 10 KiB on a
//! 2-core netns lab, sender beside: 0.054 -> 0.050 s, 21 runs each). The
//! queues are bounded ([`QUEUE`] jobs in all, each holding the file open and
//! at most 64 KiB of bytes to write, so at most 16 MiB): a receive loop that
//! outruns the workers waits for them instead of growing memory.
//!
//! [`PartialFile`]: crate::writer::PartialFile

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, OnceLock};

/// Jobs waiting for the workers at most, all queues together.
pub const QUEUE: usize = 256;

/// Worker threads at most (fewer on a machine with fewer cores).
pub const MAX_WORKERS: usize = 4;

/// Bytes read back per read.
const READ_CHUNK: usize = 256 * 1024;

/// One file's hash in the worker: an identifier from [`FileWorker::key`].
pub type HashKey = u64;

enum Job {
    /// Write `data` at `at` in `file` (for `key`'s file).
    Write { key: HashKey, file: Arc<File>, at: u64, data: Vec<u8> },
    /// Hash `file`'s bytes `from..to`, which follow what `key` was asked to
    /// hash so far (the part that writes in order hashed already is skipped).
    Hash { key: HashKey, file: Arc<File>, from: u64, to: u64 },
    /// Reply with `key`'s digest (and forget it).
    Finish { key: HashKey, reply: SyncSender<io::Result<[u8; 32]>> },
    /// Forget `key`.
    Forget { key: HashKey },
    /// Run this (a small resource's whole commit, see
    /// [`ResourceWriter::commit_later`](crate::writer::ResourceWriter::commit_later)).
    Call(Box<dyn FnOnce() + Send>),
}

/// The process's hashing threads (see the [module docs](self)).
#[derive(Debug)]
pub struct FileWorker {
    /// One queue per worker thread.
    queues: Vec<SyncSender<Job>>,
    next_key: AtomicU64,
}

impl FileWorker {
    /// The process's workers (one per core, at most [`MAX_WORKERS`]), started
    /// on first use.
    pub fn get() -> &'static FileWorker {
        static WORKER: OnceLock<FileWorker> = OnceLock::new();
        WORKER.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, usize::from);
            FileWorker::start(cores.clamp(1, MAX_WORKERS))
        })
    }

    /// `workers` threads sharing [`QUEUE`].
    fn start(workers: usize) -> FileWorker {
        let queues = (0..workers)
            .map(|_| {
                let (jobs, queue) = sync_channel(QUEUE / workers);
                // If a thread cannot start, every job sent to it fails at `finish`.
                let _ = std::thread::Builder::new().name("h3m-hash".into()).spawn(move || run(queue));
                jobs
            })
            .collect();
        FileWorker { queues, next_key: AtomicU64::new(0) }
    }

    /// The queue of the worker that does every job of `key`'s file (or of
    /// route `key`, see [`call`](Self::call)).
    fn jobs(&self, key: u64) -> &SyncSender<Job> {
        &self.queues[(key % self.queues.len() as u64) as usize]
    }

    /// Queues `data` to be written at `at` in `file` (for `key`'s file); waits
    /// while the queue is full. A failure is reported by [`finish`](Self::finish).
    pub fn write(&self, key: HashKey, file: Arc<File>, at: u64, data: Vec<u8>) {
        if !data.is_empty() {
            let _ = self.jobs(key).send(Job::Write { key, file, at, data });
        }
    }

    /// A new key, for one file's hash.
    pub fn key(&self) -> HashKey {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues `file`'s bytes `from..to` for `key`'s hash (they must follow
    /// what it was given so far, and be written already); waits while the
    /// queue is full.
    pub fn hash(&self, key: HashKey, file: Arc<File>, from: u64, to: u64) {
        if from < to {
            let _ = self.jobs(key).send(Job::Hash { key, file, from, to });
        }
    }

    /// `key`'s digest once every range queued for it is hashed.
    pub fn finish(&self, key: HashKey) -> io::Result<[u8; 32]> {
        let (reply, answer) = sync_channel(1);
        self.jobs(key).send(Job::Finish { key, reply }).map_err(|_| io::Error::other("the hashing thread is gone"))?;
        answer.recv().map_err(|_| io::Error::other("the hashing thread is gone"))?
    }

    /// Drops `key`'s hash (the file was given up).
    pub fn forget(&self, key: HashKey) {
        let _ = self.jobs(key).send(Job::Forget { key });
    }

    /// Runs `job` on the worker that `route` picks (jobs of one route run in
    /// the order given, and after the jobs of the file whose [`HashKey`] is
    /// `route`), after what is queued there; waits while its queue is full.
    /// `Err(job)` back if the thread is gone (run it here).
    pub fn call(&self, route: u64, job: Box<dyn FnOnce() + Send>) -> Result<(), Box<dyn FnOnce() + Send>> {
        match self.jobs(route).send(Job::Call(job)) {
            Err(std::sync::mpsc::SendError(Job::Call(job))) => Err(job),
            _ => Ok(()),
        }
    }
}

/// One file's hash in progress.
struct InProgress {
    hasher: ring::digest::Context,
    hashed_to: u64,
    failed: Option<io::Error>,
}

fn run(queue: Receiver<Job>) {
    let mut hashes: HashMap<HashKey, InProgress> = HashMap::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let new = || InProgress { hasher: ring::digest::Context::new(&ring::digest::SHA256), hashed_to: 0, failed: None };
    while let Ok(job) = queue.recv() {
        match job {
            Job::Write { key, file, at, data } => {
                let h = hashes.entry(key).or_insert_with(new);
                if h.failed.is_some() {
                    continue;
                }
                if let Err(e) = file.write_all_at(&data, at) {
                    h.failed = Some(e);
                } else if at == h.hashed_to {
                    // In order: hashed from memory, not read back.
                    h.hasher.update(&data);
                    h.hashed_to += data.len() as u64;
                }
            }
            Job::Hash { key, file, from, to } => {
                let h = hashes.entry(key).or_insert_with(new);
                if h.failed.is_some() {
                    continue;
                }
                if from > h.hashed_to {
                    h.failed =
                        Some(io::Error::other(format!("hash ranges out of order: {from} after {}", h.hashed_to)));
                    continue;
                }
                // What the writes in order brought is hashed already; the
                // rest (written ahead of a gap) is read back.
                let mut at = h.hashed_to;
                while at < to {
                    let n = usize::try_from(to - at).unwrap_or(READ_CHUNK).min(READ_CHUNK);
                    let chunk = &mut buf[..n];
                    if let Err(e) = file.read_exact_at(chunk, at) {
                        h.failed = Some(e);
                        break;
                    }
                    h.hasher.update(chunk);
                    at += n as u64;
                }
                h.hashed_to = at;
            }
            Job::Finish { key, reply } => {
                let result = match hashes.remove(&key) {
                    Some(InProgress { failed: Some(e), .. }) => Err(e),
                    Some(InProgress { hasher, .. }) => {
                        let mut out = [0u8; 32];
                        out.copy_from_slice(hasher.finish().as_ref());
                        Ok(out)
                    }
                    None => {
                        let mut out = [0u8; 32];
                        out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, b"").as_ref());
                        Ok(out)
                    }
                };
                let _ = reply.send(result);
            }
            Job::Forget { key } => {
                hashes.remove(&key);
            }
            Job::Call(job) => job(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn ranges_in_order_give_the_file_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let body: Vec<u8> = (0..700_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::File::create(&path).unwrap().write_all(&body).unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        let w = FileWorker::get();
        let key = w.key();
        w.hash(key, file.clone(), 0, 1000);
        w.hash(key, file.clone(), 1000, 1000); // empty: nothing queued
        w.hash(key, file.clone(), 1000, body.len() as u64);
        assert_eq!(w.finish(key).unwrap(), h3m_proto::http::digest::sha256(&body));
        // Nothing queued: the empty body's digest.
        assert_eq!(w.finish(w.key()).unwrap(), h3m_proto::http::digest::sha256(b""));
    }

    #[test]
    fn writes_land_before_the_ranges_queued_after_them_are_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = Arc::new(std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path).unwrap());
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let w = FileWorker::get();
        let key = w.key();
        // The second half first, then the first half: hashed once contiguous.
        w.write(key, file.clone(), 150_000, body[150_000..].to_vec());
        w.write(key, file.clone(), 0, body[..150_000].to_vec());
        w.hash(key, file.clone(), 0, body.len() as u64);
        assert_eq!(w.finish(key).unwrap(), h3m_proto::http::digest::sha256(&body));
        assert_eq!(std::fs::read(&path).unwrap(), body);
        // A write that fails (a read-only descriptor) is reported at finish.
        let read_only = Arc::new(File::open(&path).unwrap());
        let key = w.key();
        w.write(key, read_only, 0, vec![1u8; 10]);
        assert!(w.finish(key).is_err());
    }

    #[test]
    fn writes_in_order_are_hashed_from_memory_and_only_what_came_ahead_of_a_gap_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = Arc::new(std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path).unwrap());
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 249) as u8).collect();
        let w = FileWorker::get();
        let key = w.key();
        w.write(key, file.clone(), 0, body[..100_000].to_vec());
        w.write(key, file.clone(), 200_000, body[200_000..].to_vec());
        // Once those writes are done, the file changes under the worker in
        // both regions: the first was hashed as written (from memory), the
        // one ahead of the gap is read back when the gap is filled.
        let other = path.clone();
        w.call(
            key,
            Box::new(move || {
                let f = std::fs::OpenOptions::new().write(true).open(other).unwrap();
                f.write_all_at(&[0xee; 10], 5).unwrap();
                f.write_all_at(&[0xdd; 10], 250_000).unwrap();
            }),
        )
        .unwrap_or_else(|_| panic!("worker gone"));
        w.write(key, file.clone(), 100_000, body[100_000..200_000].to_vec());
        w.hash(key, file.clone(), 0, 100_000);
        w.hash(key, file.clone(), 100_000, body.len() as u64);
        let mut expected = body.clone();
        expected[250_000..250_010].fill(0xdd);
        assert_eq!(w.finish(key).unwrap(), h3m_proto::http::digest::sha256(&expected));
    }

    #[test]
    fn several_workers_keep_each_files_order_and_each_routes_order() {
        let dir = tempfile::tempdir().unwrap();
        let w = FileWorker::start(3);
        assert_eq!(w.queues.len(), 3);
        let bodies: Vec<Vec<u8>> = (0..12u32).map(|k| (0..40_000u32).map(|i| (i * (k + 3)) as u8).collect()).collect();
        let files: Vec<(HashKey, Arc<File>)> = (0..12)
            .map(|k| {
                let path = dir.path().join(format!("f{k}"));
                let f = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(path).unwrap();
                (w.key(), Arc::new(f))
            })
            .collect();
        // The files' chunks interleaved, each file's second half ahead of its first.
        for half in [1, 0] {
            for ((key, file), body) in files.iter().zip(&bodies) {
                let at = half * 20_000;
                w.write(*key, file.clone(), at as u64, body[at..at + 20_000].to_vec());
            }
        }
        for ((key, file), body) in files.iter().zip(&bodies) {
            w.hash(*key, file.clone(), 0, 40_000);
            assert_eq!(w.finish(*key).unwrap(), h3m_proto::http::digest::sha256(body));
        }
        // Jobs of one route run in the order given, whichever worker it is.
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        for i in 0..60u64 {
            let seen = seen.clone();
            w.call(i % 5, Box::new(move || seen.lock().unwrap().push(i))).unwrap_or_else(|_| panic!("worker gone"));
        }
        for route in 0..5u64 {
            let (reply, done) = sync_channel(1);
            w.call(route, Box::new(move || reply.send(()).unwrap())).unwrap_or_else(|_| panic!("worker gone"));
            done.recv().unwrap();
        }
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 60);
        for route in 0..5u64 {
            let order: Vec<u64> = seen.iter().copied().filter(|i| i % 5 == route).collect();
            assert_eq!(order, (route..60).step_by(5).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_gap_between_ranges_is_an_error_not_a_wrong_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![9u8; 5000]).unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        let w = FileWorker::get();
        let key = w.key();
        w.hash(key, file.clone(), 0, 1000);
        w.hash(key, file.clone(), 2000, 3000);
        let e = w.finish(key).unwrap_err();
        assert_eq!(e.to_string(), "hash ranges out of order: 2000 after 1000");
        // A range beyond the end of the file is a read error.
        let key = w.key();
        w.hash(key, file, 0, 6000);
        assert_eq!(w.finish(key).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
