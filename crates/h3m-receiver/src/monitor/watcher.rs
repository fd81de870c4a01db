//! One watched session, I/O-free: fed the session's datagrams and the time,
//! it counts packets and bytes, loss from packet-number gaps, and says
//! whether the session is up (a packet within the last `down_after`).
//!
//! Only the short header is read: the session ID must match and the packet
//! number is rebuilt (with the packet protection of a protected session,
//! which also authenticates the packet); the frames are not parsed and
//! nothing is kept of them, so a watcher's memory is one datagram's worth.

use std::time::{Duration, Instant};

use h3m_proto::SessionId;
use h3m_proto::packet::open_packet;
use h3m_proto::protection::{NullProtection, PacketProtection};

use super::config::Entry;

/// A watcher's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams accepted as packets of the session.
    pub datagrams: u64,
    /// Their bytes (UDP payload).
    pub bytes: u64,
    /// Datagrams that were not packets of the session (another session ID,
    /// a malformed header, failed authentication).
    pub foreign: u64,
    /// Packet numbers skipped over and not (yet) received: lost packets.
    pub lost: u64,
    /// Packets that arrived after a higher packet number (each makes up for
    /// one counted as lost).
    pub reordered: u64,
    /// Packets whose number had already been received.
    pub duplicates: u64,
    /// Times the packet numbers started again lower (more than
    /// [`RESTART_DISTANCE`] below the largest: the sender was restarted
    /// with the same session ID).
    pub restarts: u64,
}

/// A packet number this far below the largest received is not a late
/// packet but a sender that started again (reordering that deep does not
/// happen on a multicast path).
pub const RESTART_DISTANCE: u64 = 1024;

/// What a watcher reports at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// A packet arrived within the last `down_after`.
    pub up: bool,
    /// The counters.
    pub counters: Counters,
    /// Time since the last packet (`None`: none yet).
    pub last_seen_ago: Option<Duration>,
    /// Time since the watcher started.
    pub watched_for: Duration,
}

/// The state of one watched session.
pub struct Watcher {
    session_id: SessionId,
    protection: Box<dyn PacketProtection>,
    down_after: Duration,
    started: Instant,
    last_seen: Option<Instant>,
    /// Up as last reported by [`Watcher::poll_change`].
    reported_up: bool,
    largest: Option<u64>,
    counters: Counters,
    /// Where a datagram is copied to have its header opened.
    scratch: Vec<u8>,
    /// Bytes and time at the start of the current rate period.
    rate_mark: (Instant, u64),
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("session_id", &self.session_id)
            .field("down_after", &self.down_after)
            .field("last_seen", &self.last_seen)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Watcher {
    /// A watcher of `entry`'s session, started at `now`, down until its
    /// first packet and when `down_after` passes without one.
    pub fn new(entry: &Entry, down_after: Duration, now: Instant) -> Self {
        let protection = match &entry.keys {
            Some(keys) => keys.protection(),
            None => Box::new(NullProtection),
        };
        Self::with_protection(entry.session_id, protection, down_after, now)
    }

    /// A watcher of the session `session_id` protected by `protection`.
    pub fn with_protection(
        session_id: SessionId,
        protection: Box<dyn PacketProtection>,
        down_after: Duration,
        now: Instant,
    ) -> Self {
        Watcher {
            session_id,
            protection,
            down_after,
            started: now,
            last_seen: None,
            reported_up: false,
            largest: None,
            counters: Counters::default(),
            scratch: Vec::new(),
            rate_mark: (now, 0),
        }
    }

    /// Takes one UDP payload that came to the session's group and port at
    /// `now`: a packet of the session is counted, anything else is foreign.
    pub fn on_datagram(&mut self, now: Instant, datagram: &[u8]) {
        self.scratch.clear();
        self.scratch.extend_from_slice(datagram);
        match open_packet(&mut self.scratch, &self.session_id, self.largest, &*self.protection) {
            Ok(packet) => {
                let pn = packet.packet_number;
                self.on_packet(now, pn, datagram.len());
            }
            Err(_) => self.counters.foreign += 1,
        }
    }

    /// Counts a packet of the session numbered `packet_number`, `len` bytes
    /// long, received at `now` (what [`Watcher::on_datagram`] does once the
    /// header is read).
    pub fn on_packet(&mut self, now: Instant, packet_number: u64, len: usize) {
        let c = &mut self.counters;
        c.datagrams += 1;
        c.bytes += len as u64;
        self.last_seen = Some(now);
        match self.largest {
            None => self.largest = Some(packet_number),
            Some(l) if packet_number > l => {
                c.lost += packet_number - l - 1;
                self.largest = Some(packet_number);
            }
            Some(l) if packet_number == l => c.duplicates += 1,
            Some(l) if l - packet_number > RESTART_DISTANCE => {
                c.restarts += 1;
                self.largest = Some(packet_number);
            }
            Some(_) => {
                // Late: it was counted as lost when the gap opened (or it is
                // a duplicate of a late one, which the count cannot tell).
                c.reordered += 1;
                c.lost = c.lost.saturating_sub(1);
            }
        }
    }

    /// Whether the session is up at `now`: a packet within `down_after`.
    pub fn is_up(&self, now: Instant) -> bool {
        self.last_seen.is_some_and(|t| now.saturating_duration_since(t) < self.down_after)
    }

    /// `Some(up)` when the session went up or down since the last call.
    pub fn poll_change(&mut self, now: Instant) -> Option<bool> {
        let up = self.is_up(now);
        (up != self.reported_up).then(|| {
            self.reported_up = up;
            up
        })
    }

    /// When the session goes down if no packet arrives (`None`: it is down).
    pub fn down_at(&self) -> Option<Instant> {
        self.last_seen.map(|t| t + self.down_after)
    }

    /// What the watcher knows at `now`.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        Snapshot {
            up: self.is_up(now),
            counters: self.counters,
            last_seen_ago: self.last_seen.map(|t| now.saturating_duration_since(t)),
            watched_for: now.saturating_duration_since(self.started),
        }
    }

    /// The rate in bits per second since the last call (or the start), and
    /// starts a new period at `now`.
    pub fn take_rate(&mut self, now: Instant) -> u64 {
        let (since, bytes) = self.rate_mark;
        let elapsed = now.saturating_duration_since(since).as_secs_f64();
        let delta = self.counters.bytes - bytes;
        self.rate_mark = (now, self.counters.bytes);
        if elapsed <= 0.0 { 0 } else { (delta as f64 * 8.0 / elapsed) as u64 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use h3m_proto::packet::write_packet;

    fn sid() -> SessionId {
        SessionId::new(&[0x2a, 0x2b]).unwrap()
    }

    fn watcher(now: Instant) -> Watcher {
        Watcher::with_protection(sid(), Box::new(NullProtection), Duration::from_secs(5), now)
    }

    fn packet(id: &SessionId, pn: u64) -> Vec<u8> {
        let mut out = Vec::new();
        write_packet(
            &mut out,
            id,
            pn,
            2,
            b"\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14",
            &NullProtection,
        )
        .unwrap();
        out
    }

    #[test]
    fn up_after_a_packet_down_after_silence() {
        let t0 = Instant::now();
        let mut w = watcher(t0);
        assert!(!w.is_up(t0));
        assert_eq!(w.poll_change(t0), None, "down from the start: no change");
        let p = packet(&sid(), 0);
        w.on_datagram(t0 + Duration::from_secs(1), &p);
        assert_eq!(w.snapshot(t0 + Duration::from_secs(1)).counters.datagrams, 1);
        assert_eq!(w.poll_change(t0 + Duration::from_secs(1)), Some(true));
        assert_eq!(w.poll_change(t0 + Duration::from_secs(2)), None);
        let s = w.snapshot(t0 + Duration::from_secs(3));
        assert!(s.up);
        assert_eq!(s.last_seen_ago, Some(Duration::from_secs(2)));
        assert_eq!(w.down_at(), Some(t0 + Duration::from_secs(6)));
        assert!(w.is_up(t0 + Duration::from_millis(5999)));
        assert!(!w.is_up(t0 + Duration::from_secs(6)));
        assert_eq!(w.poll_change(t0 + Duration::from_secs(6)), Some(false));
        assert_eq!(w.poll_change(t0 + Duration::from_secs(7)), None);
        w.on_datagram(t0 + Duration::from_secs(8), &packet(&sid(), 1));
        assert_eq!(w.poll_change(t0 + Duration::from_secs(8)), Some(true));
    }

    #[test]
    fn foreign_datagrams_do_not_make_it_up() {
        let t0 = Instant::now();
        let mut w = watcher(t0);
        let other = SessionId::new(&[0x99, 0x98]).unwrap();
        w.on_datagram(t0, &packet(&other, 0));
        w.on_datagram(t0, b"");
        w.on_datagram(t0, &[0x80, 1, 2, 3]);
        let s = w.snapshot(t0);
        assert!(!s.up);
        assert_eq!(s.counters.datagrams, 0);
        assert_eq!(s.counters.foreign, 3);
        assert_eq!(s.last_seen_ago, None);
    }

    #[test]
    fn loss_from_packet_number_gaps() {
        let t0 = Instant::now();
        let mut w = watcher(t0);
        for pn in [0, 1, 2, 5, 6, 10] {
            w.on_datagram(t0, &packet(&sid(), pn));
        }
        assert_eq!(w.snapshot(t0).counters.lost, 2 + 3);
        // A late one makes up for one counted lost; a repeat of the largest is a duplicate.
        w.on_datagram(t0, &packet(&sid(), 4));
        w.on_datagram(t0, &packet(&sid(), 10));
        let c = w.snapshot(t0).counters;
        assert_eq!((c.lost, c.reordered, c.duplicates, c.datagrams), (4, 1, 1, 8));
        // Truncated packet numbers are expanded past the 2-byte window.
        for pn in 11..70_000u64 {
            w.on_packet(t0, pn, 1);
        }
        w.on_datagram(t0, &packet(&sid(), 70_002));
        assert_eq!(w.snapshot(t0).counters.lost, 4 + 2);
    }

    #[test]
    fn a_restarted_sender_is_not_a_flood_of_late_packets() {
        let t0 = Instant::now();
        let mut w = watcher(t0);
        for pn in (0..5000).chain(0..10).chain(12..20) {
            w.on_packet(t0, pn, 1);
        }
        let c = w.snapshot(t0).counters;
        assert_eq!((c.restarts, c.lost, c.reordered), (1, 2, 0), "10 and 11 lost after the restart");
    }

    #[test]
    fn rate_over_each_period() {
        let t0 = Instant::now();
        let mut w = watcher(t0);
        for pn in 0..100 {
            w.on_packet(t0 + Duration::from_millis(pn * 10), pn, 1250);
        }
        // 125 000 bytes in 2 s: 500 kbit/s.
        assert_eq!(w.take_rate(t0 + Duration::from_secs(2)), 500_000);
        assert_eq!(w.take_rate(t0 + Duration::from_secs(3)), 0);
        assert_eq!(w.take_rate(t0 + Duration::from_secs(3)), 0, "an empty period");
        assert_eq!(w.snapshot(t0).counters.bytes, 125_000);
    }
}
