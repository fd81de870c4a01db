//! Where received resources go.
//!
//! A [`Session`](crate::Session) hands each resource's body bytes to a
//! [`ResourceSink`] as they arrive (at their offsets, possibly out of order,
//! possibly more than once from repeated copies) and asks it to commit the
//! resource once every byte is there: the sink checks that the bytes make up
//! the whole body and match the announced SHA-256, and only then makes the
//! resource visible. Two sinks come with h3m:
//!
//! * [`ResourceWriter`]: the output directory, each resource written through a
//!   temporary file and an atomic rename (what `h3m-recv` uses);
//! * [`MemorySink`]: in memory, within a byte budget, for programs that want
//!   the bodies rather than files.
//!
//! A sink of your own (a cache, an HTTP origin, a database) implements the
//! four methods; the session guarantees that `begin` comes first for an ID,
//! that `write`s only follow a successful `begin`, and that each ID ends with
//! exactly one `commit` or `abort` (or the sink is dropped).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use h3m_proto::http::digest::sha256;
use h3m_proto::receiver::RangeSet;

pub use crate::writer::Commit;
use crate::writer::{ResourceWriter, WriteError, Written};

/// A destination for received resources (see the [module docs](self)).
pub trait ResourceSink {
    /// Starts resource `id` at `rel`, a relative path already checked by
    /// [`crate::paths::sanitize`] (no `..`, no absolute or empty components).
    fn begin(&mut self, id: u64, rel: PathBuf) -> Result<(), WriteError>;

    /// Resource `id`'s body is declared `length` bytes long (its
    /// `content-length`): a sink may size its buffers for it, within its own
    /// limits (the value comes from the sender and is not trusted). The
    /// default ignores it.
    fn expect_length(&mut self, id: u64, length: u64) {
        let _ = (id, length);
    }

    /// Stores body bytes of resource `id` at `offset`. `Ok(false)` if `id` is
    /// not being received (never begun, or already ended). On error the
    /// resource is dropped.
    fn write(&mut self, id: u64, offset: u64, data: &[u8]) -> Result<bool, WriteError>;

    /// Completes resource `id`: exactly `0..body_len` must have been written,
    /// and the body's SHA-256 must equal `expected` when given; only then is
    /// the resource made visible. `None` if `id` is not being received.
    fn commit(&mut self, id: u64, body_len: u64, expected: Option<[u8; 32]>) -> Option<Result<Written, WriteError>>;

    /// As [`commit`](Self::commit), but the sink may finish it later (on a
    /// thread of its own): [`Commit::Pending`], its result then from
    /// [`poll_committed`](Self::poll_committed). The default commits now.
    fn commit_later(&mut self, id: u64, body_len: u64, expected: Option<[u8; 32]>) -> Option<Commit> {
        self.commit(id, body_len, expected).map(Commit::Done)
    }

    /// The result of a commit left pending, by ID: one that is done, else
    /// (with `wait`) the next to finish; `None` when none is pending (or,
    /// without `wait`, done). The default has none.
    fn poll_committed(&mut self, wait: bool) -> Option<(u64, Result<Written, WriteError>)> {
        let _ = wait;
        None
    }

    /// Drops resource `id` and whatever of it was stored.
    fn abort(&mut self, id: u64);

    /// Resource `id` will not be written to for a while (it waits for a
    /// unicast repair): release what can be (a file descriptor). On error the
    /// resource is dropped. The default does nothing.
    fn park(&mut self, id: u64) -> Result<(), WriteError> {
        let _ = id;
        Ok(())
    }
}

impl ResourceSink for ResourceWriter {
    fn begin(&mut self, id: u64, rel: PathBuf) -> Result<(), WriteError> {
        ResourceWriter::begin(self, id, rel)
    }

    fn expect_length(&mut self, id: u64, length: u64) {
        ResourceWriter::expect_length(self, id, length)
    }

    fn write(&mut self, id: u64, offset: u64, data: &[u8]) -> Result<bool, WriteError> {
        ResourceWriter::write(self, id, offset, data)
    }

    fn commit(&mut self, id: u64, body_len: u64, expected: Option<[u8; 32]>) -> Option<Result<Written, WriteError>> {
        ResourceWriter::commit(self, id, body_len, expected)
    }

    fn commit_later(&mut self, id: u64, body_len: u64, expected: Option<[u8; 32]>) -> Option<Commit> {
        ResourceWriter::commit_later(self, id, body_len, expected)
    }

    fn poll_committed(&mut self, wait: bool) -> Option<(u64, Result<Written, WriteError>)> {
        ResourceWriter::poll_committed(self, wait)
    }

    fn abort(&mut self, id: u64) {
        ResourceWriter::abort(self, id)
    }

    fn park(&mut self, id: u64) -> Result<(), WriteError> {
        ResourceWriter::park(self, id)
    }
}

/// A resource received whole into a [`MemorySink`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedResource {
    /// Its path, relative (the `:path` without its leading slash, decoded).
    pub path: PathBuf,
    /// The body.
    pub body: Vec<u8>,
    /// The body's SHA-256 (checked against the announced digest, if any).
    pub sha256: [u8; 32],
}

#[derive(Debug)]
struct Partial {
    rel: PathBuf,
    body: Vec<u8>,
    have: RangeSet,
}

/// Receives resources into memory, within a budget of bytes held (resources
/// in progress plus completed ones not yet [taken](MemorySink::take)).
///
/// A resource whose bytes would take the sink over its budget fails with
/// [`WriteError::OverBudget`] (the session reports it incomplete); nothing
/// is allocated for it beyond the budget, whatever offsets a sender claims.
///
/// ```
/// use h3m_receiver::sink::{MemorySink, ResourceSink};
///
/// let mut sink = MemorySink::new(1 << 20);
/// sink.begin(0, "hello.txt".into()).unwrap();
/// sink.write(0, 6, b"world").unwrap();
/// sink.write(0, 0, b"hello ").unwrap();
/// let written = sink.commit(0, 11, None).unwrap().unwrap();
/// assert_eq!(written.bytes, 11);
/// let got = sink.take();
/// assert_eq!(got[0].body, b"hello world");
/// ```
#[derive(Debug)]
pub struct MemorySink {
    budget: usize,
    held: usize,
    open: HashMap<u64, Partial>,
    done: Vec<ReceivedResource>,
}

impl MemorySink {
    /// A sink holding at most `budget` bytes.
    pub fn new(budget: usize) -> Self {
        MemorySink { budget, held: 0, open: HashMap::new(), done: Vec::new() }
    }

    /// Bytes held now (in progress and completed, not yet taken).
    pub fn held(&self) -> usize {
        self.held
    }

    /// The resources completed since the last call, in the order completed.
    pub fn take(&mut self) -> Vec<ReceivedResource> {
        let done = std::mem::take(&mut self.done);
        self.held -= done.iter().map(|r| r.body.len()).sum::<usize>();
        done
    }

    /// A completed resource not yet taken, by path.
    pub fn get(&self, path: impl AsRef<Path>) -> Option<&ReceivedResource> {
        self.done.iter().rev().find(|r| r.path == path.as_ref())
    }

    fn drop_partial(&mut self, id: u64) {
        if let Some(p) = self.open.remove(&id) {
            self.held -= p.body.len();
        }
    }
}

impl ResourceSink for MemorySink {
    fn begin(&mut self, id: u64, rel: PathBuf) -> Result<(), WriteError> {
        self.drop_partial(id);
        self.open.insert(id, Partial { rel, body: Vec::new(), have: RangeSet::new() });
        Ok(())
    }

    fn write(&mut self, id: u64, offset: u64, data: &[u8]) -> Result<bool, WriteError> {
        let Some(p) = self.open.get_mut(&id) else { return Ok(false) };
        let end = offset.saturating_add(data.len() as u64);
        let grow = end.saturating_sub(p.body.len() as u64);
        if grow > 0 {
            let room = (self.budget - self.held) as u64;
            if grow > room {
                let budget = self.budget;
                self.drop_partial(id);
                return Err(WriteError::OverBudget { budget });
            }
            p.body.resize(end as usize, 0);
            self.held += grow as usize;
        }
        p.body[offset as usize..end as usize].copy_from_slice(data);
        p.have.insert(offset..end);
        Ok(true)
    }

    fn commit(&mut self, id: u64, body_len: u64, expected: Option<[u8; 32]>) -> Option<Result<Written, WriteError>> {
        let p = self.open.remove(&id)?;
        self.held -= p.body.len();
        if p.body.len() as u64 != body_len || !p.have.contains(0..body_len) {
            let covered = p.have.iter().next().filter(|r| r.start == 0).map_or(0, |r| r.end);
            return Some(Err(WriteError::Inconsistent(format!(
                "{body_len}-byte body reported complete, but bytes 0..{covered} are contiguous and data reaches {}",
                p.body.len()
            ))));
        }
        let sha256 = sha256(&p.body);
        if let Some(expected) = expected
            && expected != sha256
        {
            return Some(Err(WriteError::digest_mismatch(expected, sha256)));
        }
        self.held += p.body.len();
        let written = Written { path: p.rel.clone(), bytes: body_len, sha256 };
        self.done.push(ReceivedResource { path: p.rel, body: p.body, sha256 });
        Some(Ok(written))
    }

    fn abort(&mut self, id: u64) {
        self.drop_partial(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_and_repeated_bytes_make_one_verified_body() {
        let body: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let mut sink = MemorySink::new(1 << 20);
        sink.begin(3, "a/b.bin".into()).unwrap();
        for chunk in [(5_000, 10_000), (0, 2_000), (1_000, 6_000)] {
            assert!(sink.write(3, chunk.0 as u64, &body[chunk.0..chunk.1]).unwrap());
        }
        let w = sink.commit(3, 10_000, Some(sha256(&body))).unwrap().unwrap();
        assert_eq!((w.path.as_path(), w.bytes), (Path::new("a/b.bin"), 10_000));
        assert_eq!(sink.get("a/b.bin").unwrap().body, body);
        assert_eq!(sink.held(), 10_000);
        assert_eq!(sink.take().len(), 1);
        assert_eq!(sink.held(), 0);
    }

    #[test]
    fn a_gap_or_a_wrong_digest_is_never_delivered() {
        let mut sink = MemorySink::new(1 << 20);
        sink.begin(0, "x".into()).unwrap();
        sink.write(0, 0, b"ab").unwrap();
        sink.write(0, 3, b"d").unwrap();
        assert!(matches!(sink.commit(0, 4, None), Some(Err(WriteError::Inconsistent(_)))));
        sink.begin(1, "y".into()).unwrap();
        sink.write(1, 0, b"abcd").unwrap();
        assert!(matches!(sink.commit(1, 4, Some([0; 32])), Some(Err(WriteError::DigestMismatch { .. }))));
        assert!(sink.take().is_empty());
        assert_eq!(sink.held(), 0);
        assert!(sink.commit(7, 0, None).is_none());
        assert!(!sink.write(7, 0, b"z").unwrap());
    }

    #[test]
    fn far_offsets_fail_within_the_budget_without_allocating() {
        let mut sink = MemorySink::new(4096);
        sink.begin(0, "far".into()).unwrap();
        sink.write(0, 0, &[1; 100]).unwrap();
        assert!(matches!(sink.write(0, 1 << 50, b"zz"), Err(WriteError::OverBudget { budget: 4096 })));
        assert_eq!(sink.held(), 0, "the failed resource is dropped");
        assert!(!sink.write(0, 0, b"a").unwrap());
        // Two resources share the budget.
        sink.begin(1, "a".into()).unwrap();
        sink.begin(2, "b".into()).unwrap();
        sink.write(1, 0, &[0; 3000]).unwrap();
        assert!(sink.write(2, 0, &[0; 2000]).is_err());
        sink.abort(1);
        assert_eq!(sink.held(), 0);
    }
}
