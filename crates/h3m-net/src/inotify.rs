//! Directory change notification (Linux inotify) on tokio, for a sender that publishes files as soon as
//! they are complete: a file closed after writing, or renamed into a watched directory.

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use tokio::io::unix::AsyncFd;

use crate::sys;

/// One watched directory, as [`DirEvents::watch`] returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WatchId(i32);

/// What happened in a watched directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirEventKind {
    /// A file opened for writing was closed (`IN_CLOSE_WRITE`).
    ClosedWrite,
    /// An entry was renamed into the directory (`IN_MOVED_TO`).
    MovedIn,
    /// An entry was renamed out of the directory (`IN_MOVED_FROM`).
    MovedOut,
    /// An entry was created (`IN_CREATE`).
    Created,
    /// The watch is gone: the directory was deleted or unwatched (`IN_IGNORED`).
    WatchRemoved,
    /// The kernel's event queue overflowed: events were lost (`IN_Q_OVERFLOW`).
    Overflow,
    /// Anything else.
    Other,
}

/// One inotify event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEvent {
    /// The watched directory (`None` for [`DirEventKind::Overflow`]).
    pub watch: Option<WatchId>,
    /// What happened.
    pub kind: DirEventKind,
    /// The entry is a directory (`IN_ISDIR`).
    pub is_dir: bool,
    /// The entry's name in the directory (empty for events about the directory itself).
    pub name: OsString,
}

/// The events a [`DirEvents`] asks for on every directory it watches.
const MASK: u32 = libc::IN_CLOSE_WRITE | libc::IN_MOVED_TO | libc::IN_MOVED_FROM | libc::IN_CREATE | libc::IN_ONLYDIR;

/// The size of `struct inotify_event` before its name.
const HEADER: usize = 16;

/// An inotify instance registered with the current tokio runtime.
#[derive(Debug)]
pub struct DirEvents {
    fd: AsyncFd<std::fs::File>,
    buf: Vec<u8>,
}

impl DirEvents {
    /// A new instance; must be called within a tokio runtime. Fails where inotify is unavailable (then poll).
    pub fn new() -> io::Result<Self> {
        let file = sys::inotify_init()?;
        Ok(DirEvents { fd: sys::register_readable_file(file)?, buf: vec![0; 64 * 1024] })
    }

    /// Watches the directory `dir` (not recursively): files closed after writing, entries renamed in or
    /// out, entries created. Watching the same directory twice returns the same id.
    pub fn watch(&mut self, dir: &Path) -> io::Result<WatchId> {
        sys::inotify_add_watch(self.fd.get_ref().as_fd(), dir, MASK).map(WatchId)
    }

    /// Stops watching (a [`DirEventKind::WatchRemoved`] event follows).
    pub fn unwatch(&mut self, id: WatchId) -> io::Result<()> {
        sys::inotify_rm_watch(self.fd.get_ref().as_fd(), id.0)
    }

    /// Waits for events and returns every one queued. Cancel safe: events are taken from the kernel only
    /// after readiness, without an await in between.
    pub async fn next_batch(&mut self) -> io::Result<Vec<DirEvent>> {
        loop {
            let mut guard = self.fd.readable().await?;
            let buf = &mut self.buf;
            match guard.try_io(|f| f.get_ref().read(buf)) {
                Ok(Ok(n)) => {
                    let events = parse_events(&self.buf[..n]);
                    if !events.is_empty() {
                        return Ok(events);
                    }
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
    }
}

/// Decodes the `struct inotify_event` records of one `read(2)` (a truncated trailing record is dropped).
pub fn parse_events(mut buf: &[u8]) -> Vec<DirEvent> {
    let mut out = Vec::new();
    while buf.len() >= HEADER {
        let word = |i: usize| [buf[i], buf[i + 1], buf[i + 2], buf[i + 3]];
        let wd = i32::from_ne_bytes(word(0));
        let mask = u32::from_ne_bytes(word(4));
        let name_len = u32::from_ne_bytes(word(12)) as usize;
        let Some(name) = buf.get(HEADER..HEADER + name_len) else { break };
        // The name is NUL-padded to an alignment boundary.
        let name = name.split(|&b| b == 0).next().unwrap_or_default().to_vec();
        let kind = if mask & libc::IN_Q_OVERFLOW != 0 {
            DirEventKind::Overflow
        } else if mask & libc::IN_IGNORED != 0 {
            DirEventKind::WatchRemoved
        } else if mask & libc::IN_CLOSE_WRITE != 0 {
            DirEventKind::ClosedWrite
        } else if mask & libc::IN_MOVED_TO != 0 {
            DirEventKind::MovedIn
        } else if mask & libc::IN_MOVED_FROM != 0 {
            DirEventKind::MovedOut
        } else if mask & libc::IN_CREATE != 0 {
            DirEventKind::Created
        } else {
            DirEventKind::Other
        };
        out.push(DirEvent {
            watch: (wd >= 0).then_some(WatchId(wd)),
            kind,
            is_dir: mask & libc::IN_ISDIR != 0,
            name: OsString::from_vec(name),
        });
        buf = &buf[HEADER + name_len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(wd: i32, mask: u32, name: &[u8], padded: usize) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(&wd.to_ne_bytes());
        r.extend_from_slice(&mask.to_ne_bytes());
        r.extend_from_slice(&0u32.to_ne_bytes());
        r.extend_from_slice(&(padded as u32).to_ne_bytes());
        r.extend_from_slice(name);
        r.resize(HEADER + padded, 0);
        r
    }

    #[test]
    fn parses_records_and_drops_a_truncated_one() {
        let mut buf = record(1, libc::IN_MOVED_TO, b"seg-1.m4s", 16);
        buf.extend(record(2, libc::IN_CREATE | libc::IN_ISDIR, b"sub", 16));
        buf.extend(record(-1, libc::IN_Q_OVERFLOW, b"", 0));
        buf.extend(&record(1, libc::IN_CLOSE_WRITE, b"x", 16)[..20]);
        let got = parse_events(&buf);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].kind, DirEventKind::MovedIn);
        assert_eq!(got[0].name, "seg-1.m4s");
        assert_eq!(got[0].watch, Some(WatchId(1)));
        assert!(!got[0].is_dir);
        assert_eq!((got[1].kind, got[1].is_dir), (DirEventKind::Created, true));
        assert_eq!((got[2].kind, got[2].watch), (DirEventKind::Overflow, None));
    }

    #[tokio::test]
    async fn reports_a_rename_into_the_directory_and_a_close_after_writing() {
        let dir = std::env::temp_dir().join(format!("h3m-inotify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut events = DirEvents::new().unwrap();
        let id = events.watch(&dir).unwrap();
        std::fs::write(dir.join(".seg-1.tmp"), b"data").unwrap();
        std::fs::rename(dir.join(".seg-1.tmp"), dir.join("seg-1.m4s")).unwrap();
        let mut got = Vec::new();
        while got.len() < 4 {
            got.extend(events.next_batch().await.unwrap().into_iter().map(|e| (e.watch, e.kind, e.name)));
        }
        let want = [
            (Some(id), DirEventKind::Created, OsString::from(".seg-1.tmp")),
            (Some(id), DirEventKind::ClosedWrite, OsString::from(".seg-1.tmp")),
            (Some(id), DirEventKind::MovedOut, OsString::from(".seg-1.tmp")),
            (Some(id), DirEventKind::MovedIn, OsString::from("seg-1.m4s")),
        ];
        assert_eq!(got, want);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
