//! The resource index: what the receiver knows of each `:path`, built from
//! its records ([`crate::report::Record`]) as they are reported.
//!
//! A path is *pending* from its promise until its `resource` record; then
//! *complete* (written under the output directory, with its length and
//! SHA-256), *incomplete* (given up, with the missing byte ranges) or
//! *refused*. A path written complete stays complete when a later copy is
//! promised or given up (its file is intact on disk); a new complete version
//! replaces it. Waiters of a pending path are woken by every change of it.
//!
//! The records come within the reporter's flood limits
//! ([`crate::report::Reporter::emit_limited`]): under a flood of forged
//! promises, those beyond the limits are not indexed (their paths are
//! unknown, `404`), and a path whose final record was suppressed stays
//! pending until the run ends (its requests time out, `504`).
//!
//! Memory is bounded: at most [`MAX_PENDING`] pending paths (the oldest
//! promise is forgotten first), [`MAX_ENTRIES`] paths in all (the oldest
//! settled is forgotten first) and [`MAX_PUSHES`] push-to-path mappings.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::Notify;

use crate::paths;
use crate::report::{Record, ResourceRecord, ResourceStatus};

/// At most this many paths are pending (promised, not settled) at once.
pub const MAX_PENDING: usize = 4096;
/// At most this many paths are indexed in all.
pub const MAX_ENTRIES: usize = 65_536;
/// At most this many push IDs are mapped to their path (for their response headers).
pub const MAX_PUSHES: usize = 4096;

/// A resource written complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Complete {
    /// Its length in bytes.
    pub len: u64,
    /// Its SHA-256.
    pub sha256: [u8; 32],
    /// Whether FEC or a unicast repair supplied some of it (`multicast`, `fec`, `repair`).
    pub completed_by: Option<&'static str>,
    /// The written file as the record found it: device, inode and
    /// modification time (a file replaced or changed since is not served as
    /// this resource); `None` if it could not be looked at.
    pub identity: Option<FileIdentity>,
}

/// What identifies one version of a file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
}

impl FileIdentity {
    /// The identity of a file's metadata.
    pub fn of(meta: &std::fs::Metadata) -> FileIdentity {
        use std::os::unix::fs::MetadataExt;
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

/// What is known of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Promised, not yet settled.
    Pending,
    /// Written complete.
    Complete(Complete),
    /// Given up with bytes missing: the missing ranges as `h3m-recv` prints
    /// them (`0-1199,2400-`), the bytes received and the reason.
    Incomplete {
        /// Missing ranges, inclusive, comma-separated (`a-` to the end):
        /// the first [`crate::report::MAX_MISSING_LISTED`] of them.
        missing: String,
        /// How many missing ranges there are in all (more than `missing`
        /// lists when the body is that fragmented).
        ranges: u64,
        /// Body bytes received.
        received: u64,
        /// The reason token.
        reason: String,
    },
    /// Refused (unsafe path, failed digest or signature check) or failed (I/O).
    Refused {
        /// The reason.
        reason: String,
    },
}

impl State {
    /// The state's word: `pending`, `complete`, `incomplete`, `refused`.
    pub fn word(&self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Complete(_) => "complete",
            State::Incomplete { .. } => "incomplete",
            State::Refused { .. } => "refused",
        }
    }
}

/// One indexed path.
#[derive(Debug)]
pub struct Entry {
    /// What is known of it.
    pub state: State,
    /// The `content-type` its push carried, if any.
    pub content_type: Option<String>,
    /// The `content-length` its push announced, if any.
    pub length: Option<u64>,
    /// When it last changed.
    pub updated: SystemTime,
    /// Wakes the requests waiting for it.
    pub notify: Arc<Notify>,
    /// Its place in the eviction order.
    seq: u64,
}

impl Entry {
    /// A resource promised, nothing else known yet.
    fn pending(seq: u64) -> Self {
        Entry {
            state: State::Pending,
            content_type: None,
            length: None,
            updated: SystemTime::now(),
            notify: Arc::new(Notify::new()),
            seq,
        }
    }
}

/// Counts of what the index saw (for `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexCounters {
    /// Promises seen.
    pub promised: u64,
    /// `resource` records seen, by status.
    pub complete: u64,
    /// Incomplete `resource` records.
    pub incomplete: u64,
    /// Refused `resource` records.
    pub refused: u64,
    /// Failed `resource` records.
    pub failed: u64,
    /// Paths forgotten to stay within the bounds.
    pub evicted: u64,
}

/// The index (see the module documentation).
#[derive(Debug, Default)]
pub struct Index {
    entries: HashMap<PathBuf, Entry>,
    /// Eviction order of settled paths: sequence number to path.
    settled_order: BTreeMap<u64, PathBuf>,
    /// Eviction order of pending paths.
    pending_order: BTreeMap<u64, PathBuf>,
    /// Push ID to path, for the response headers.
    pushes: BTreeMap<u64, PathBuf>,
    next_seq: u64,
    counters: IndexCounters,
}

/// The inclusive missing ranges of a record, as `h3m-recv` prints them.
fn missing_text(r: &ResourceRecord) -> String {
    let mut ranges: Vec<String> = r
        .missing
        .iter()
        .filter(|[s, e]| e > s)
        .map(|[s, e]| if e - s == 1 { format!("{s}") } else { format!("{s}-{}", e - 1) })
        .collect();
    if let Some(from) = r.missing_from {
        ranges.push(format!("{from}-"));
    }
    ranges.join(",")
}

/// The relative path a record names: its `name` (already sanitized) for a
/// complete or incomplete resource, its `:path` sanitized otherwise.
fn record_path(r: &ResourceRecord) -> Option<PathBuf> {
    match r.status {
        ResourceStatus::Complete | ResourceStatus::Incomplete if !r.name.is_empty() => {
            Some(PathBuf::from(OsString::from_vec(r.name.clone())))
        }
        _ => paths::sanitize(r.path.as_deref()?.as_bytes()).ok(),
    }
}

fn sha256_of(hex_text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut out).ok()?;
    Some(out)
}

fn header<'a>(headers: &'a [[String; 2]], name: &str) -> Option<&'a str> {
    headers.iter().find(|[n, _]| n.eq_ignore_ascii_case(name)).map(|[_, v]| v.as_str())
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Index::default()
    }

    /// What the index saw so far.
    pub fn counters(&self) -> IndexCounters {
        self.counters
    }

    /// The entry of a relative path.
    pub fn get(&self, rel: &std::path::Path) -> Option<&Entry> {
        self.entries.get(rel)
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&PathBuf, &Entry)> {
        self.entries.iter()
    }

    /// The `n` entries changed last, newest first (from the eviction order:
    /// no scan of the whole index).
    pub fn recent(&self, n: usize) -> Vec<(&PathBuf, &Entry)> {
        let mut settled = self.settled_order.iter().rev().peekable();
        let mut pending = self.pending_order.iter().rev().peekable();
        let mut out = Vec::with_capacity(n.min(self.entries.len()));
        while out.len() < n {
            let next = match (settled.peek(), pending.peek()) {
                (Some((a, _)), Some((b, _))) if a > b => settled.next(),
                (Some(_), Some(_)) => pending.next(),
                (Some(_), None) => settled.next(),
                (None, Some(_)) => pending.next(),
                (None, None) => break,
            };
            if let Some((_, rel)) = next
                && let Some(e) = self.entries.get(rel)
            {
                out.push((rel, e));
            }
        }
        out
    }

    /// Paths by state: pending, complete, incomplete, refused.
    pub fn state_counts(&self) -> [u64; 4] {
        let mut counts = [0u64; 4];
        for e in self.entries.values() {
            counts[match e.state {
                State::Pending => 0,
                State::Complete(_) => 1,
                State::Incomplete { .. } => 2,
                State::Refused { .. } => 3,
            }] += 1;
        }
        counts
    }

    /// Paths indexed, and of them pending.
    pub fn len(&self) -> (usize, usize) {
        (self.entries.len(), self.pending_order.len())
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Takes in one record.
    pub fn on_record(&mut self, record: &Record) {
        match record {
            Record::PushPromised { push_id, path, .. } => {
                self.counters.promised += 1;
                let Some(rel) = path.as_deref().and_then(|p| paths::sanitize(p.as_bytes()).ok()) else { return };
                self.pushes.insert(*push_id, rel.clone());
                while self.pushes.len() > MAX_PUSHES {
                    self.pushes.pop_first();
                }
                self.promise(rel);
            }
            Record::ResponseHeaders { push_id, headers } => {
                let Some(rel) = self.pushes.get(push_id) else { return };
                let Some(entry) = self.entries.get_mut(rel) else { return };
                if let Some(ct) = header(headers, "content-type") {
                    entry.content_type = Some(ct.chars().take(256).collect());
                }
                if let Some(len) = header(headers, "content-length").and_then(|v| v.trim().parse().ok()) {
                    entry.length = Some(len);
                }
            }
            Record::Resource(r) => self.on_resource(r),
            Record::Summary(_) => self.give_up_pending("session ended"),
            _ => {}
        }
    }

    /// A promise of `rel`: pending, unless it is already complete.
    fn promise(&mut self, rel: PathBuf) {
        if let Some(entry) = self.entries.get_mut(&rel) {
            match entry.state {
                State::Complete(_) | State::Pending => return,
                _ => {}
            }
            entry.state = State::Pending;
            entry.updated = SystemTime::now();
            let seq = entry.seq;
            self.settled_order.remove(&seq);
            self.pending_order.insert(seq, rel);
        } else {
            let seq = self.next();
            self.entries.insert(rel.clone(), Entry::pending(seq));
            self.pending_order.insert(seq, rel);
        }
        self.enforce_bounds();
    }

    fn on_resource(&mut self, r: &ResourceRecord) {
        match r.status {
            ResourceStatus::Complete => self.counters.complete += 1,
            ResourceStatus::Incomplete => self.counters.incomplete += 1,
            ResourceStatus::Refused => self.counters.refused += 1,
            ResourceStatus::Failed => self.counters.failed += 1,
        }
        let Some(rel) = record_path(r) else { return };
        let state = match r.status {
            ResourceStatus::Complete => match r.sha256.as_deref().and_then(sha256_of) {
                Some(sha256) => {
                    // One stat per resource written, on the receiver's side.
                    let identity =
                        r.file.as_deref().and_then(|f| std::fs::metadata(f).ok()).map(|m| FileIdentity::of(&m));
                    State::Complete(Complete { len: r.bytes, sha256, completed_by: r.completed_by, identity })
                }
                None => return,
            },
            ResourceStatus::Incomplete => State::Incomplete {
                missing: missing_text(r),
                ranges: r.missing_ranges.max(r.missing.len() as u64) + u64::from(r.missing_from.is_some()),
                received: r.bytes,
                reason: r.reason.clone().unwrap_or_default(),
            },
            ResourceStatus::Refused | ResourceStatus::Failed => {
                State::Refused { reason: r.reason.clone().unwrap_or_default() }
            }
        };
        self.settle(rel, state);
    }

    /// Sets a path's settled state (a complete one is replaced only by a
    /// newer complete one) and wakes its waiters.
    fn settle(&mut self, rel: PathBuf, state: State) {
        let seq = self.next();
        let entry = self.entries.entry(rel.clone()).or_insert_with(|| Entry::pending(seq));
        if matches!(entry.state, State::Complete(_)) && !matches!(state, State::Complete(_)) {
            return;
        }
        self.pending_order.remove(&entry.seq);
        self.settled_order.remove(&entry.seq);
        entry.seq = seq;
        entry.state = state;
        entry.updated = SystemTime::now();
        entry.notify.notify_waiters();
        self.settled_order.insert(seq, rel);
        self.enforce_bounds();
    }

    /// Every pending path given up (the run ended).
    fn give_up_pending(&mut self, reason: &str) {
        let pending: Vec<PathBuf> = std::mem::take(&mut self.pending_order).into_values().collect();
        for rel in pending {
            let state = State::Incomplete { missing: String::new(), ranges: 0, received: 0, reason: reason.to_owned() };
            self.settle(rel, state);
        }
    }

    fn next(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn enforce_bounds(&mut self) {
        while self.pending_order.len() > MAX_PENDING {
            let Some((_, rel)) = self.pending_order.pop_first() else { break };
            self.forget(&rel);
        }
        while self.entries.len() > MAX_ENTRIES {
            let Some((_, rel)) = self.settled_order.pop_first().or_else(|| self.pending_order.pop_first()) else {
                break;
            };
            self.forget(&rel);
        }
    }

    fn forget(&mut self, rel: &std::path::Path) {
        if let Some(entry) = self.entries.remove(rel) {
            self.counters.evicted += 1;
            // Its waiters look again, and find it unknown.
            entry.notify.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(status: ResourceStatus, path: &str) -> ResourceRecord {
        ResourceRecord {
            push_id: 0,
            status,
            complete: status == ResourceStatus::Complete,
            path: Some(path.into()),
            file: None,
            bytes: 10,
            body_len: 3000,
            sha256: (status == ResourceStatus::Complete).then(|| "ab".repeat(32)),
            missing: vec![[0, 1200], [2400, 2401]],
            missing_ranges: 2,
            copies: 1,
            fec_bytes: 0,
            repair_bytes: 0,
            completed_by: None,
            missing_from: Some(2800),
            reason: Some("timeout".into()),
            name: path.trim_start_matches('/').as_bytes().to_vec(),
        }
    }

    fn promise(push_id: u64, path: &str) -> Record {
        Record::PushPromised { push_id, path: Some(path.into()), request: Vec::new() }
    }

    #[test]
    fn states_follow_the_records() {
        let mut index = Index::new();
        index.on_record(&promise(1, "/a/b.m4s"));
        index.on_record(&Record::ResponseHeaders {
            push_id: 1,
            headers: vec![["content-type".into(), "video/mp4".into()], ["content-length".into(), "3000".into()]],
        });
        let e = index.get("a/b.m4s".as_ref()).unwrap();
        assert_eq!((&e.state, e.content_type.as_deref(), e.length), (&State::Pending, Some("video/mp4"), Some(3000)));
        index.on_record(&Record::Resource(resource(ResourceStatus::Incomplete, "/a/b.m4s")));
        match &index.get("a/b.m4s".as_ref()).unwrap().state {
            State::Incomplete { missing, ranges, .. } => {
                assert_eq!((missing.as_str(), *ranges), ("0-1199,2400,2800-", 3))
            }
            other => panic!("{other:?}"),
        }
        // Another copy: pending again, then complete; a later copy's failure
        // leaves the complete file served.
        index.on_record(&promise(2, "/a/b.m4s"));
        assert_eq!(index.get("a/b.m4s".as_ref()).unwrap().state, State::Pending);
        index.on_record(&Record::Resource(resource(ResourceStatus::Complete, "/a/b.m4s")));
        index.on_record(&promise(3, "/a/b.m4s"));
        index.on_record(&Record::Resource(resource(ResourceStatus::Incomplete, "/a/b.m4s")));
        assert!(matches!(index.get("a/b.m4s".as_ref()).unwrap().state, State::Complete(Complete { len: 10, .. })));
        // Unsafe paths are never indexed; the end of the run gives up the pending.
        index.on_record(&promise(4, "/../etc/passwd"));
        index.on_record(&promise(5, "/c"));
        index.on_record(&Record::Summary(Box::default()));
        assert_eq!(index.len(), (2, 0));
        assert_eq!(index.get("c".as_ref()).unwrap().state.word(), "incomplete");
        assert_eq!(index.counters().promised, 5);
        // Newest first: the pending path given up last, then the segment.
        let recent: Vec<&PathBuf> = index.recent(5).into_iter().map(|(p, _)| p).collect();
        assert_eq!(recent, [&PathBuf::from("c"), &PathBuf::from("a/b.m4s")]);
        assert_eq!(index.state_counts(), [0, 1, 1, 0]);
        assert_eq!((index.counters().complete, index.counters().incomplete), (1, 2));
    }

    #[test]
    fn bounded() {
        let mut index = Index::new();
        for i in 0..MAX_PENDING + 10 {
            index.on_record(&promise(i as u64, &format!("/p{i}")));
        }
        assert_eq!(index.len(), (MAX_PENDING, MAX_PENDING));
        assert!(index.get("p0".as_ref()).is_none());
        assert!(index.get(format!("p{}", MAX_PENDING + 9).as_ref()).is_some());
        assert_eq!(index.counters().evicted, 10);
        assert!(index.pushes.len() <= MAX_PUSHES);
        for i in 0..MAX_ENTRIES + 5 {
            index.on_record(&Record::Resource(resource(ResourceStatus::Complete, &format!("/f{i}"))));
        }
        assert_eq!(index.len().0, MAX_ENTRIES);
    }
}
