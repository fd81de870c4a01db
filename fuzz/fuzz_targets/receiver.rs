//! The receiver state machine fed a sequence of datagrams over time.
//!
//! Input:
//!
//! ```text
//! [sid_len] [sid bytes: sid_len % 21] [config] then records:
//! [dt] [len: 2 bytes BE] [datagram: len bytes (the last may be short)]
//! ```
//!
//! `config` picks small limits so that the limit paths are reached (see
//! [`config`]); before each datagram the clock moves on by `dt * 20 ms`, and
//! every timer that `poll_timeout` says is due by then is fired with
//! `handle_timeout`, at its own deadline. After the last record comes
//! `finish(now)`.
//!
//! Invariants checked after every step:
//! - `buffered_bytes() <= max_buffered_total`;
//! - `handle_timeout(t)` clears every timer due at `t` (`poll_timeout` moves past
//!   `t`), so a driver waiting on `poll_timeout` cannot spin;
//! - `BodyData` only for a promised, unfinished push, never repeating a body byte
//!   of that push;
//! - `ResponseHeaders` and `Trailers` only for a promised, unfinished push;
//! - `PushFinished` exactly once per `PushPromised` (after `finish`, every
//!   promised push has finished), never for a push that was not promised;
//! - exactly one `SessionEnd` by the end (never two).
//!
//! To look for other problems while a known one is open, the environment
//! variable `H3M_FUZZ_LAX` (comma-separated) turns single checks off: `timers`
//! (the `handle_timeout` check), `overlap` (body bytes reported twice).
#![no_main]

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use h3m_proto::SessionId;
use h3m_proto::receiver::{Event, PushStatus, Receiver, ReceiverConfig};
use libfuzzer_sys::fuzz_target;

/// The receiver's settings for this run, from one input byte.
fn config(session_id: SessionId, b: u8) -> ReceiverConfig {
    let mut c = ReceiverConfig::new(session_id);
    c.push_timeout = Duration::from_secs(1);
    c.idle_timeout = if b & 0x04 != 0 { None } else { Some(Duration::from_secs(5)) };
    c.max_concurrent_pushes = [1, 2, 8, 256][usize::from(b & 0x03)];
    c.max_orphan_streams = 4;
    c.max_buffered_per_stream = [512, 4096, 64 << 10, 1 << 20][usize::from((b >> 3) & 0x03)];
    c.max_buffered_total = if b & 0x20 != 0 { 8 << 10 } else { 1 << 20 };
    c.max_header_block = if b & 0x40 != 0 { 256 } else { 64 << 10 };
    c.max_gaps_per_stream = if b & 0x80 != 0 { 4 } else { 1024 };
    c
}

/// Disjoint half-open ranges, keyed by start.
#[derive(Default)]
struct Ranges(BTreeMap<u64, u64>);

impl Ranges {
    /// Adds `start..end`; false if any of it was already present.
    fn insert_new(&mut self, start: u64, end: u64) -> bool {
        if start >= end {
            return true;
        }
        if let Some((_, &e)) = self.0.range(..=start).next_back()
            && e > start
        {
            return false;
        }
        if self.0.range(start..end).next().is_some() {
            return false;
        }
        // Merge with the neighbours it touches.
        let mut s = start;
        let mut e = end;
        if let Some((&ps, &pe)) = self.0.range(..start).next_back()
            && pe == start
        {
            self.0.remove(&ps);
            s = ps;
        }
        if let Some(ne) = self.0.remove(&end) {
            e = ne;
        }
        self.0.insert(s, e);
        true
    }
}

#[derive(Default)]
struct Checker {
    /// Promised pushes not yet finished, with the body bytes reported so far.
    active: HashMap<u64, Ranges>,
    promised: u64,
    finished: u64,
    session_ends: u32,
}

impl Checker {
    fn drain(&mut self, rx: &mut Receiver) {
        while let Some(event) = rx.poll_event() {
            match event {
                Event::PushPromised { push_id, .. } => {
                    assert!(!self.active.contains_key(&push_id), "push {push_id} promised twice while active");
                    self.active.insert(push_id, Ranges::default());
                    self.promised += 1;
                }
                Event::ResponseHeaders { push_id, .. } | Event::Trailers { push_id, .. } => {
                    assert!(
                        self.active.contains_key(&push_id),
                        "headers for push {push_id}, not an active promised push"
                    );
                }
                Event::BodyData { push_id, offset, data, .. } => {
                    let ranges = self
                        .active
                        .get_mut(&push_id)
                        .unwrap_or_else(|| panic!("BodyData for push {push_id}, not an active promised push"));
                    let end = offset.checked_add(data.len() as u64).expect("body offset overflow");
                    assert!(
                        ranges.insert_new(offset, end) || lax("overlap"),
                        "push {push_id}: body bytes {offset}..{end} reported twice"
                    );
                }
                Event::PushFinished(summary) => {
                    let push_id = summary.push_id;
                    assert!(
                        self.active.remove(&push_id).is_some(),
                        "PushFinished for push {push_id}, which was not promised (or finished already)"
                    );
                    if summary.status == PushStatus::Complete {
                        assert!(summary.missing.is_empty() && summary.missing_from.is_none());
                    }
                    self.finished += 1;
                }
                Event::UnpromisedPush { .. } | Event::PushLost { .. } | Event::HeadlessStream { .. } => {}
                Event::SessionEnd { .. } => {
                    self.session_ends += 1;
                    assert!(self.session_ends == 1, "a second SessionEnd");
                    assert!(rx.is_ended());
                }
            }
        }
        assert!(
            rx.buffered_bytes() <= rx.config().max_buffered_total,
            "buffered {} bytes, limit {}",
            rx.buffered_bytes(),
            rx.config().max_buffered_total
        );
    }
}

/// Whether the check named `name` is turned off by `H3M_FUZZ_LAX`.
fn lax(name: &str) -> bool {
    static LAX: LazyLock<Vec<String>> = LazyLock::new(|| {
        std::env::var("H3M_FUZZ_LAX").unwrap_or_default().split(',').map(|s| s.trim().to_owned()).collect()
    });
    LAX.iter().any(|s| s == name)
}

/// Fires every timer due by `now`, each at its deadline.
fn run_timers(rx: &mut Receiver, checker: &mut Checker, now: Instant) {
    // Each round clears at least one deadline, and there are finitely many.
    for _ in 0..10_000 {
        let Some(due) = rx.poll_timeout() else { return };
        if due > now {
            return;
        }
        rx.handle_timeout(due);
        checker.drain(rx);
        match rx.poll_timeout() {
            Some(next) if next <= due => {
                assert!(lax("timers"), "handle_timeout({due:?}) left a timer due at {next:?}: a driver would spin");
                // Lax: fire the rest at `now`, once, as a per-datagram driver does.
                rx.handle_timeout(now);
                checker.drain(rx);
                return;
            }
            _ => {}
        }
    }
    panic!("timers never settle");
}

fuzz_target!(|data: &[u8]| {
    let Some((&sid_len, rest)) = data.split_first() else { return };
    let sid_len = usize::from(sid_len) % 21;
    if rest.len() < sid_len + 1 {
        return;
    }
    let (sid, rest) = rest.split_at(sid_len);
    let (&cfg, mut rest) = rest.split_first().expect("checked above");
    let session_id = SessionId::new(sid).expect("at most 20 bytes");
    let mut rx = Receiver::new(config(session_id, cfg));
    let mut checker = Checker::default();

    let mut now = Instant::now();
    while let [dt, l0, l1, tail @ ..] = rest {
        now += Duration::from_millis(20 * u64::from(*dt));
        let len = usize::from(u16::from_be_bytes([*l0, *l1])).min(tail.len());
        let (datagram, after) = tail.split_at(len);
        rest = after;
        run_timers(&mut rx, &mut checker, now);
        rx.handle_datagram(now, datagram);
        checker.drain(&mut rx);
    }

    rx.finish(now);
    checker.drain(&mut rx);
    assert_eq!(checker.session_ends, 1, "finish must end the session exactly once");
    assert!(
        checker.active.is_empty(),
        "pushes still open after finish: {:?}",
        checker.active.keys().collect::<Vec<_>>()
    );
    assert_eq!(checker.promised, checker.finished);
    assert_eq!(rx.active_pushes(), 0);
});
