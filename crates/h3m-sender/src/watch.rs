//! `--watch`: when a file in a watched tree is complete, and so ready to publish.
//!
//! With inotify (Linux), a file is complete the moment it is closed after
//! writing (`IN_CLOSE_WRITE`) or renamed into a watched directory
//! (`IN_MOVED_TO`): what encoders do when they write `.seg-1.tmp` and rename it
//! to `seg-1.m4s`. Names matching the ignore patterns ([`Ignore`]) are never
//! published, so such a file goes out once, under its final name. Where inotify
//! is unavailable (or its queue overflowed, or a directory appeared whose files
//! may predate its watch), the tree is listed every interval instead, and a new
//! or changed file is published once its size and modification time have held
//! still for one interval. PATHs that are files (not directories) are always
//! watched that way.
//!
//! [`WatchState`] is the sans-IO decision (what was sent, what is pending);
//! [`Watcher`] drives it from inotify and the clock.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use h3m_net::{DirEvent, DirEventKind, DirEvents, WatchId};

use crate::tree::{self, Entry, Ignore, TreeError};

/// What identifies a version of a file: its size and modification time.
type Version = (Option<u64>, Option<SystemTime>);

fn version(e: &Entry) -> Version {
    (e.len, e.modified)
}

/// Which files are ready to publish: the version of each file sent, and the
/// files seen changed once by a listing (published when the next listing shows
/// them unchanged).
#[derive(Debug, Default)]
pub struct WatchState {
    sent: HashMap<String, Version>,
    candidates: HashMap<String, Version>,
}

impl WatchState {
    /// Nothing sent yet.
    pub fn new() -> Self {
        WatchState::default()
    }

    /// Records that `e` (this version of it) was published.
    pub fn mark_sent(&mut self, e: &Entry) {
        self.candidates.remove(&e.path);
        self.sent.insert(e.path.clone(), version(e));
    }

    /// A file is complete (closed after writing, or renamed in): ready now,
    /// unless this version was published already.
    pub fn on_complete(&mut self, e: Entry) -> Option<Entry> {
        self.candidates.remove(&e.path);
        (self.sent.get(&e.path) != Some(&version(&e))).then_some(e)
    }

    /// One look at (part of) the tree: the files whose version differs from
    /// the one sent and equals the one the previous look saw. With
    /// `whole_tree`, pending files missing from `listed` (deleted) are dropped.
    pub fn on_listing(&mut self, listed: Vec<Entry>, whole_tree: bool) -> Vec<Entry> {
        if whole_tree {
            self.candidates.retain(|path, _| listed.iter().any(|e| &e.path == path));
        }
        let mut ready = Vec::new();
        for e in listed {
            let v = version(&e);
            if self.sent.get(&e.path) == Some(&v) {
                self.candidates.remove(&e.path);
            } else if self.candidates.get(&e.path) == Some(&v) {
                self.candidates.remove(&e.path);
                ready.push(e);
            } else {
                self.candidates.insert(e.path.clone(), v);
            }
        }
        ready
    }
}

/// Listings (every interval) after an inotify queue overflow or a new
/// directory: two to see a file unchanged, one spare.
const RECOVERY_LISTINGS: u32 = 3;

/// A watched directory.
#[derive(Debug, Clone)]
struct WatchedDir {
    /// The real path of the PATH it is in.
    root: PathBuf,
    /// Its session path (`""` for the root itself).
    prefix: String,
}

impl WatchedDir {
    fn join(&self, name: &str) -> String {
        if self.prefix.is_empty() { name.to_owned() } else { format!("{}/{name}", self.prefix) }
    }
}

/// Finds the files of `--watch` PATHs that are ready to publish (see the
/// module documentation).
#[derive(Debug)]
pub struct Watcher {
    /// Every PATH, as given.
    roots: Vec<PathBuf>,
    /// The PATHs that are files: always listed.
    file_roots: Vec<PathBuf>,
    /// The PATHs that are directories, as given (listed when polling).
    dir_roots: Vec<PathBuf>,
    ignore: Ignore,
    state: WatchState,
    /// `None`: polling only.
    events: Option<DirEvents>,
    dirs: HashMap<WatchId, WatchedDir>,
    tick: tokio::time::Interval,
    recovery: u32,
}

impl Watcher {
    /// Starts watching `roots` (must be called within a tokio runtime, before
    /// the first listing, so no file completed in between is missed); warnings
    /// (inotify unavailable: polling) go to `warnings`.
    pub fn new(roots: &[PathBuf], ignore: Ignore, interval: Duration, warnings: &mut Vec<String>) -> Self {
        let (dir_roots, file_roots): (Vec<_>, Vec<_>) = roots.iter().cloned().partition(|r| r.is_dir());
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut w = Watcher {
            roots: roots.to_vec(),
            file_roots,
            dir_roots,
            ignore,
            state: WatchState::new(),
            events: None,
            dirs: HashMap::new(),
            tick,
            recovery: 0,
        };
        if w.dir_roots.is_empty() {
            return w;
        }
        match DirEvents::new() {
            Ok(ev) => w.events = Some(ev),
            Err(e) => {
                warnings.push(format!("--watch: inotify unavailable ({e}): looking at the tree every {interval:?}"));
                return w;
            }
        }
        for root in w.dir_roots.clone() {
            let result = root.canonicalize().and_then(|real| w.watch_tree(&real, &real, ""));
            if let Err(e) = result {
                warnings.push(format!(
                    "--watch: cannot watch {} ({e}): looking at the tree every {interval:?}",
                    root.display()
                ));
                w.events = None;
                w.dirs.clear();
                break;
            }
        }
        w
    }

    /// Whether inotify drives this watcher (else it polls).
    pub fn uses_inotify(&self) -> bool {
        self.events.is_some()
    }

    /// Records that `e` was published (so this version of it is not again).
    pub fn mark_sent(&mut self, e: &Entry) {
        self.state.mark_sent(e);
    }

    /// Waits until at least one file is ready; the files ready, in order.
    /// Cancel safe: events are consumed only after an await completes, and
    /// what they yield is returned without another await.
    pub async fn next(&mut self) -> Result<Vec<Entry>, TreeError> {
        loop {
            let ready = match &mut self.events {
                Some(ev) => {
                    tokio::select! {
                        batch = ev.next_batch() => match batch {
                            Ok(batch) => self.on_events(batch),
                            Err(_) => {
                                // The instance failed: poll from now on.
                                self.events = None;
                                Vec::new()
                            }
                        },
                        _ = self.tick.tick() => self.on_tick()?,
                    }
                }
                None => {
                    self.tick.tick().await;
                    self.on_tick()?
                }
            };
            if !ready.is_empty() {
                return Ok(ready);
            }
        }
    }

    /// Watches `dir` (real path, session path `prefix`, in the tree whose real
    /// path is `root`) and every directory below it that is not ignored.
    fn watch_tree(&mut self, root: &Path, dir: &Path, prefix: &str) -> std::io::Result<()> {
        let Some(ev) = &mut self.events else { return Ok(()) };
        let id = ev.watch(dir)?;
        self.dirs.insert(id, WatchedDir { root: root.to_owned(), prefix: prefix.to_owned() });
        let mut subdirs = Vec::new();
        for entry in std::fs::read_dir(dir)?.filter_map(Result::ok) {
            let Ok(name) = entry.file_name().into_string() else { continue };
            // Not following links: a linked directory is not published (see `tree`).
            if entry.file_type().is_ok_and(|t| t.is_dir()) && !self.ignore.matches_name(&name) {
                subdirs.push(name);
            }
        }
        for name in subdirs {
            let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
            self.watch_tree(root, &dir.join(&name), &path)?;
        }
        Ok(())
    }

    /// Stops watching the directory at session path `prefix` of `root` and
    /// everything below it (it was renamed away).
    fn unwatch_tree(&mut self, root: &Path, prefix: &str) {
        let below = format!("{prefix}/");
        let gone: Vec<WatchId> = self
            .dirs
            .iter()
            .filter(|(_, d)| d.root == root && (d.prefix == prefix || d.prefix.starts_with(&below)))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.dirs.remove(&id);
            if let Some(ev) = &mut self.events {
                let _ = ev.unwatch(id);
            }
        }
    }

    fn on_events(&mut self, batch: Vec<DirEvent>) -> Vec<Entry> {
        let mut ready = Vec::new();
        let mut warnings = Vec::new();
        for event in batch {
            if event.kind == DirEventKind::Overflow {
                self.recovery = RECOVERY_LISTINGS;
                continue;
            }
            let Some(id) = event.watch else { continue };
            if event.kind == DirEventKind::WatchRemoved {
                self.dirs.remove(&id);
                continue;
            }
            let Some(dir) = self.dirs.get(&id).cloned() else { continue };
            let Ok(name) = event.name.into_string() else { continue };
            if name.is_empty() || self.ignore.matches_name(&name) {
                continue;
            }
            let path = dir.join(&name);
            match (event.kind, event.is_dir) {
                (DirEventKind::Created | DirEventKind::MovedIn, true) => {
                    let real = dir.root.join(&path);
                    if self.watch_tree(&dir.root, &real, &path).is_err() {
                        // Out of watches: look at the tree from now on.
                        self.events = None;
                        self.dirs.clear();
                        return ready;
                    }
                    if event.kind == DirEventKind::MovedIn {
                        // A directory renamed in: its files are complete.
                        let listed = tree::list_filtered(&[real], &self.ignore, &mut warnings).unwrap_or_default();
                        for mut e in listed {
                            e.path = format!("{path}/{}", e.path);
                            ready.extend(self.state.on_complete(e));
                        }
                    } else {
                        // Files may have been written before the watch was added.
                        self.recovery = RECOVERY_LISTINGS;
                    }
                }
                (DirEventKind::MovedOut, true) => self.unwatch_tree(&dir.root, &path),
                (DirEventKind::ClosedWrite | DirEventKind::MovedIn, false) => {
                    if let Some(e) = tree::entry(&dir.root, &path, &self.ignore, &mut warnings) {
                        ready.extend(self.state.on_complete(e));
                    }
                }
                _ => {}
            }
        }
        ready
    }

    fn on_tick(&mut self) -> Result<Vec<Entry>, TreeError> {
        let mut warnings = Vec::new();
        if self.events.is_none() {
            let listed = tree::list_filtered(&self.roots, &self.ignore, &mut warnings)?;
            return Ok(self.state.on_listing(listed, true));
        }
        let mut listed = tree::list_filtered(&self.file_roots, &self.ignore, &mut warnings)?;
        let whole_tree = self.recovery > 0;
        if whole_tree {
            self.recovery -= 1;
            listed.extend(tree::list_filtered(&self.dir_roots, &self.ignore, &mut warnings)?);
        }
        Ok(self.state.on_listing(listed, whole_tree))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, len: u64, secs: u64) -> Entry {
        Entry {
            file: PathBuf::from(path),
            path: path.to_owned(),
            len: Some(len),
            modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
        }
    }

    fn paths(v: &[Entry]) -> Vec<&str> {
        v.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn a_listed_file_is_ready_once_it_held_still_for_one_look() {
        let mut s = WatchState::new();
        assert!(s.on_listing(vec![entry("a", 1, 1)], true).is_empty());
        assert!(s.on_listing(vec![entry("a", 2, 2)], true).is_empty(), "still growing");
        let ready = s.on_listing(vec![entry("a", 2, 2)], true);
        assert_eq!(paths(&ready), ["a"]);
        s.mark_sent(&ready[0]);
        assert!(s.on_listing(vec![entry("a", 2, 2)], true).is_empty(), "sent already");
        assert!(s.on_listing(vec![entry("a", 3, 3)], true).is_empty());
        assert_eq!(paths(&s.on_listing(vec![entry("a", 3, 3)], true)), ["a"], "changed: again");
    }

    #[test]
    fn a_completed_file_is_ready_at_once_and_only_in_a_new_version() {
        let mut s = WatchState::new();
        // Pending from a listing, then completed: ready now, and no longer pending.
        assert!(s.on_listing(vec![entry("seg-1.m4s", 5, 1)], true).is_empty());
        let e = s.on_complete(entry("seg-1.m4s", 5, 1)).expect("ready");
        s.mark_sent(&e);
        assert!(s.on_listing(vec![entry("seg-1.m4s", 5, 1)], true).is_empty());
        assert_eq!(s.on_complete(entry("seg-1.m4s", 5, 1)), None, "closed again unchanged");
        assert!(s.on_complete(entry("seg-1.m4s", 6, 2)).is_some(), "rewritten");
    }

    #[test]
    fn a_deleted_pending_file_is_forgotten_by_a_whole_listing() {
        let mut s = WatchState::new();
        assert!(s.on_listing(vec![entry("a", 1, 1)], true).is_empty());
        assert!(s.on_listing(vec![], true).is_empty());
        assert!(s.on_listing(vec![entry("a", 1, 1)], true).is_empty(), "seen anew, not ready yet");
    }

    /// Collects what the watcher publishes until `want` files are ready.
    async fn collect(w: &mut Watcher, want: usize) -> Vec<Entry> {
        let mut got = Vec::new();
        let all = async {
            while got.len() < want {
                for e in w.next().await.unwrap() {
                    w.mark_sent(&e);
                    got.push(e);
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), all).await.expect("the files were never ready");
        got
    }

    /// A writer that writes `.seg-N.tmp` and renames it to `seg-N.m4s`: each
    /// segment is ready exactly once, under its final name, as soon as renamed
    /// (the interval is an hour: nothing here comes from polling).
    #[tokio::test]
    async fn inotify_publishes_renamed_segments_once_under_their_final_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("live");
        std::fs::create_dir_all(&root).unwrap();
        let mut warnings = Vec::new();
        let ignore = Ignore::new(tree::DEFAULT_IGNORE);
        let mut w = Watcher::new(std::slice::from_ref(&root), ignore, Duration::from_secs(3600), &mut warnings);
        assert!(w.uses_inotify(), "{warnings:?}");
        let mut all = Vec::new();
        for n in 1..=3 {
            let tmp = root.join(format!(".seg-{n}.tmp"));
            std::fs::write(&tmp, vec![n as u8; 1000 * n]).unwrap();
            std::fs::rename(&tmp, root.join(format!("seg-{n}.m4s"))).unwrap();
            all.extend(collect(&mut w, 1).await);
        }
        // A directory created afterwards is watched as soon as its event is seen (and
        // the tree is listed a few times, for files written before that).
        std::fs::create_dir(root.join("v2")).unwrap();
        let batch = w.events.as_mut().expect("inotify").next_batch().await.unwrap();
        assert!(w.on_events(batch).is_empty());
        assert_eq!(w.recovery, RECOVERY_LISTINGS);
        w.recovery = 0;
        // Other temporary names are ignored too.
        std::fs::write(root.join("v2/init.mp4.part"), b"partial").unwrap();
        std::fs::write(root.join("v2/init.mp4~"), b"backup").unwrap();
        std::fs::rename(root.join("v2/init.mp4.part"), root.join("v2/init.mp4")).unwrap();
        all.extend(collect(&mut w, 1).await);
        assert_eq!(paths(&all), ["seg-1.m4s", "seg-2.m4s", "seg-3.m4s", "v2/init.mp4"]);
        assert_eq!(all.iter().map(|e| e.len).collect::<Vec<_>>(), [1000, 2000, 3000, 7].map(Some));
        // Nothing else is pending.
        assert!(tokio::time::timeout(Duration::from_millis(100), w.next()).await.is_err());
    }

    /// Without inotify (a file PATH), a file is published once it held still.
    #[tokio::test]
    async fn a_file_path_is_polled() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stream.bin");
        std::fs::write(&file, b"abc").unwrap();
        let mut warnings = Vec::new();
        let mut w = Watcher::new(std::slice::from_ref(&file), Ignore::none(), Duration::from_millis(10), &mut warnings);
        assert!(!w.uses_inotify());
        let got = collect(&mut w, 1).await;
        assert_eq!(paths(&got), ["stream.bin"]);
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}
