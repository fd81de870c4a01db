//! The receiver's AMBI gate, sans-IO: datagrams in, authenticated datagrams
//! out, nothing else.
//!
//! A datagram whose packet sequence number an authenticated manifest
//! already covers is checked at once: its digest matches and it is released,
//! or it does not and it is dropped (forged or corrupted). One that comes
//! before its manifest is held (at most [`GateConfig::data_hold`], within a
//! byte budget and a few candidates per sequence number) and checked when
//! the manifest comes. A digest that authorised a datagram is *held down*
//! ([`GateConfig::digest_hold`]): a replay of that datagram is dropped.
//! Released datagrams keep their arrival time, and leave in arrival order
//! among those a manifest releases together, so the receiver core sees the
//! timing the network gave.
//!
//! Floods: a forged datagram either meets a digest (and is dropped at once)
//! or waits in bounded memory; when the budget is full, newcomers are
//! dropped rather than older datagrams evicted, so a flood cannot push out
//! authentic datagrams already held. Since the sender knows every datagram
//! before it sends it, manifests can precede their datagrams, and then
//! nothing is held at all.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::{DigestProfile, Manifest, PseudoHeader};

/// Packet sequence numbers a used digest is held down for (older ones count
/// as used: nothing that old is accepted).
pub const HOLD_DOWN_WINDOW: u32 = 1 << 22;

/// The sequence numbers whose digests were used, for the last
/// [`HOLD_DOWN_WINDOW`] of them (a bitmap; older ones count as used).
#[derive(Debug)]
struct HoldDown {
    top: Option<u32>,
    bits: Vec<u64>,
}

impl HoldDown {
    fn new() -> Self {
        HoldDown { top: None, bits: vec![0; (HOLD_DOWN_WINDOW / 64) as usize] }
    }

    fn slot(seq: u32) -> (usize, u64) {
        let i = seq % HOLD_DOWN_WINDOW;
        ((i / 64) as usize, 1 << (i % 64))
    }

    fn contains(&self, seq: u32) -> bool {
        let Some(top) = self.top else { return false };
        let behind = top.wrapping_sub(seq);
        if (behind as i32) < 0 {
            return false;
        }
        if behind >= HOLD_DOWN_WINDOW {
            return true;
        }
        let (w, b) = Self::slot(seq);
        self.bits[w] & b != 0
    }

    fn insert(&mut self, seq: u32) {
        let top = *self.top.get_or_insert(seq);
        let ahead = seq.wrapping_sub(top);
        if (ahead as i32) > 0 {
            if ahead >= HOLD_DOWN_WINDOW {
                self.bits.iter_mut().for_each(|w| *w = 0);
            } else {
                for s in 1..=ahead {
                    let (w, b) = Self::slot(top.wrapping_add(s));
                    self.bits[w] &= !b;
                }
            }
            self.top = Some(seq);
        } else if top.wrapping_sub(seq) >= HOLD_DOWN_WINDOW {
            return;
        }
        let (w, b) = Self::slot(seq);
        self.bits[w] |= b;
    }
}

/// How a [`Gate`] holds and checks.
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// The digest profile (hash, truncation, manifest stream identifier).
    pub profile: DigestProfile,
    /// How long a datagram waits for its manifest (AMBI's `data-hold-time`,
    /// default 2 s).
    pub data_hold: Duration,
    /// How long a digest waits for its datagram (`digest-hold-time`,
    /// default 10 s). A used digest is held down against replays for the
    /// last [`HOLD_DOWN_WINDOW`] packet sequence numbers (about 20 s at
    /// 2 Gbit/s), in a bitmap of 512 KiB.
    pub digest_hold: Duration,
    /// Bytes of datagrams held at most (default 16 MiB).
    pub max_held_bytes: usize,
    /// Datagrams held per packet sequence number at most (default 4).
    pub max_candidates: usize,
    /// Digests waiting for their datagrams at most (default 262 144, about
    /// 1.2 s ahead at 2 Gbit/s; about 16 MiB at 16-byte digests).
    pub max_digests: usize,
}

impl GateConfig {
    /// The defaults for `profile`.
    pub fn new(profile: DigestProfile) -> Self {
        GateConfig {
            profile,
            data_hold: Duration::from_secs(2),
            digest_hold: Duration::from_secs(10),
            max_held_bytes: 16 << 20,
            max_candidates: 4,
            max_digests: 1 << 18,
        }
    }
}

/// Why a manifest was refused (the channel that sent it is disconnected).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    /// Its stream identifier is not the profile's.
    #[error("manifest stream {got:#x}, expected {expected:#x}")]
    StreamMismatch {
        /// The profile's identifier.
        expected: u32,
        /// The manifest's.
        got: u32,
    },
    /// Its digests are not the profile's length.
    #[error("manifest digests of {got} bytes, the profile's are {expected}")]
    DigestLength {
        /// The profile's digest length.
        expected: usize,
        /// The manifest's.
        got: usize,
    },
}

/// What a gate did, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct GateStats {
    /// Datagrams released (their digest matched).
    pub authenticated: u64,
    /// Datagrams released without waiting (their manifest came first).
    pub authenticated_on_arrival: u64,
    /// Datagrams whose digest did not match the manifest's: dropped.
    pub mismatched: u64,
    /// Datagrams no manifest covered within the hold time: dropped.
    pub expired: u64,
    /// Datagrams dropped because the hold budget was full.
    pub over_budget: u64,
    /// Datagrams whose digest was used already: dropped.
    pub replays: u64,
    /// Datagrams without a readable sequence number: dropped.
    pub unsequenced: u64,
    /// Manifests accepted.
    pub manifests: u64,
    /// Manifests refused: of another stream or digest length, or
    /// malformed ([`Gate::refuse_manifest`]).
    pub manifests_refused: u64,
    /// Manifests whose signature no trusted key verified
    /// ([`Gate::bad_signature`]).
    pub manifests_bad_signature: u64,
    /// Signatures checked to accept or refuse in-band manifests (a batch's
    /// manifests share one, see [`super::inband`]); set by the caller that
    /// reads them ([`super::inband::Verifier::verifications`]), 0 here.
    pub signatures_checked: u64,
    /// Digests that expired unused.
    pub digests_expired: u64,
    /// Times an HTTPS manifest channel connected ([`Gate::channel_connected`]).
    pub channel_connects: u64,
    /// Times it failed to connect or was lost, or was disconnected for
    /// sending what was not a manifest of this stream ([`Gate::channel_lost`]).
    pub channel_losses: u64,
    /// The median time from a datagram's arrival to its release, in
    /// microseconds (0: released on arrival), to a power of two.
    pub release_delay_p50_us: u64,
    /// The 99th percentile of that time, in microseconds, to a power of two.
    pub release_delay_p99_us: u64,
}

/// Release delays in powers of two of microseconds: bucket `i` holds delays
/// below `2^i` µs (bucket 0: none), the last everything longer.
const DELAY_BUCKETS: usize = 24;

/// A manifest's digest as the gate keeps it until its datagram comes:
/// inline up to 32 bytes (every SHA-256 profile), else on the heap.
#[derive(Debug, Clone)]
enum StoredDigest {
    Inline { len: u8, bytes: [u8; 32] },
    Heap(Box<[u8]>),
}

impl StoredDigest {
    fn new(digest: &[u8]) -> Self {
        match u8::try_from(digest.len()) {
            Ok(len) if digest.len() <= 32 => {
                let mut bytes = [0; 32];
                bytes[..digest.len()].copy_from_slice(digest);
                StoredDigest::Inline { len, bytes }
            }
            _ => StoredDigest::Heap(digest.into()),
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            StoredDigest::Inline { len, bytes } => &bytes[..usize::from(*len)],
            StoredDigest::Heap(b) => b,
        }
    }
}

/// What [`Gate::admit`] did with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Authentic on arrival, nothing released before it waiting: the
    /// caller hands it to the core now (the gate kept no copy).
    Release,
    /// Released behind others (see [`Gate::poll_released`]), held for a
    /// manifest, or dropped (the stats say which).
    Withheld,
}

/// A datagram released by the gate, with the time it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// When it arrived.
    pub arrival: Instant,
    /// Its packet sequence number.
    pub seq: u32,
    /// The datagram.
    pub datagram: Vec<u8>,
}

#[derive(Debug)]
struct Held {
    arrival: Instant,
    header: PseudoHeader,
    datagram: Vec<u8>,
}

/// The gate (see the [module docs](self)).
#[derive(Debug)]
pub struct Gate {
    config: GateConfig,
    /// Authenticated digests not yet used, by packet sequence number.
    digests: foldhash::HashMap<u32, (StoredDigest, Instant)>,
    digest_order: VecDeque<(Instant, u32)>,
    /// Digests used (held down against replays).
    used: HoldDown,
    /// Datagrams waiting for a manifest.
    held: BTreeMap<u32, Vec<Held>>,
    held_order: VecDeque<(Instant, u32)>,
    held_bytes: usize,
    released: VecDeque<Released>,
    stats: GateStats,
    delays: [u64; DELAY_BUCKETS],
    scratch: Vec<u8>,
}

impl Gate {
    /// A gate for `config`.
    pub fn new(config: GateConfig) -> Self {
        let len = config.profile.digest_len();
        Gate {
            config,
            digests: foldhash::HashMap::default(),
            digest_order: VecDeque::new(),
            used: HoldDown::new(),
            held: BTreeMap::new(),
            held_order: VecDeque::new(),
            held_bytes: 0,
            released: VecDeque::new(),
            stats: GateStats::default(),
            delays: [0; DELAY_BUCKETS],
            scratch: vec![0; len],
        }
    }

    /// The counters, with the release delay's percentiles.
    pub fn stats(&self) -> GateStats {
        let mut s = self.stats;
        s.release_delay_p50_us = self.delay_percentile(50);
        s.release_delay_p99_us = self.delay_percentile(99);
        s
    }

    /// Notes a release `delay` after arrival.
    fn note_delay(&mut self, delay: Duration) {
        let us = delay.as_micros().min(u128::from(u64::MAX)) as u64;
        let bucket = (u64::BITS - us.leading_zeros()) as usize;
        self.delays[bucket.min(DELAY_BUCKETS - 1)] += 1;
    }

    /// The `pct` percentile of release delays, as its bucket's bound in µs.
    fn delay_percentile(&self, pct: u64) -> u64 {
        let total: u64 = self.delays.iter().sum();
        if total == 0 {
            return 0;
        }
        let want = (total * pct).div_ceil(100);
        let mut seen = 0;
        for (i, n) in self.delays.iter().enumerate() {
            seen += n;
            if seen >= want {
                return if i == 0 { 0 } else { 1 << i };
            }
        }
        1 << (DELAY_BUCKETS - 1)
    }

    /// Whether the digest of packet `seq` is known (waiting, or used and
    /// held down).
    pub fn knows(&self, seq: u32) -> bool {
        self.digests.contains_key(&seq) || self.used.contains(seq)
    }

    /// Whether the digests of packets `first .. first + count` are all known
    /// (a manifest covering only those brings nothing new).
    pub fn covers(&self, first: u32, count: usize) -> bool {
        // Newest first: a manifest that brings something new usually brings
        // its last digests (the first ones overlap the manifests before it).
        (0..count as u32).rev().all(|i| self.knows(first.wrapping_add(i)))
    }

    /// Whether a datagram with a sequence number in `first .. first + count`
    /// (wrapping) is held, waiting for its digest.
    pub fn holds_any(&self, first: u32, count: usize) -> bool {
        let Some(last) = u32::try_from(count).ok().and_then(|c| c.checked_sub(1)) else { return false };
        let end = first.wrapping_add(last);
        if end >= first {
            self.held.range(first..=end).next().is_some()
        } else {
            self.held.range(first..).next().is_some() || self.held.range(..=end).next().is_some()
        }
    }

    /// Bytes per digest of its profile.
    pub fn digest_len(&self) -> usize {
        self.config.profile.digest_len()
    }

    /// Bytes of datagrams held now.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Digests waiting for their datagrams now.
    pub fn waiting_digests(&self) -> usize {
        self.digests.len()
    }

    /// Whether `datagram` matches `expected`.
    fn matches(&mut self, header: &PseudoHeader, datagram: &[u8], expected: &[u8]) -> bool {
        self.config.profile.digest_into(header, datagram, &mut self.scratch);
        self.scratch == expected
    }

    /// Marks the digest of `seq` used.
    fn use_digest(&mut self, seq: u32) {
        self.digests.remove(&seq);
        self.used.insert(seq);
    }

    /// A datagram from `header` arrived at `now`; `seq` is its packet
    /// sequence number (`None`: unreadable, dropped). What is released goes
    /// to [`poll_released`](Self::poll_released).
    pub fn on_datagram(&mut self, now: Instant, header: PseudoHeader, seq: Option<u32>, datagram: &[u8]) {
        if let (Admission::Release, Some(seq)) = (self.admit(now, header, seq, datagram), seq) {
            self.requeue(now, seq, datagram);
        }
    }

    /// Puts a datagram [`admit`](Self::admit) released back in the release
    /// queue (for a caller that wants it from there).
    pub fn requeue(&mut self, arrival: Instant, seq: u32, datagram: &[u8]) {
        self.released.push_back(Released { arrival, seq, datagram: datagram.to_vec() });
    }

    /// [`on_datagram`](Self::on_datagram) without a copy for the usual
    /// case: a datagram authentic on arrival, with nothing released before
    /// it still waiting for [`poll_released`](Self::poll_released), is
    /// [`Admission::Release`]: the caller hands `datagram` to the core now,
    /// before polling anything released (the order of arrival holds).
    pub fn admit(&mut self, now: Instant, header: PseudoHeader, seq: Option<u32>, datagram: &[u8]) -> Admission {
        let Some(seq) = seq else {
            self.stats.unsequenced += 1;
            return Admission::Withheld;
        };
        if self.used.contains(seq) {
            self.stats.replays += 1;
            return Admission::Withheld;
        }
        if let Some((expected, _)) = self.digests.get(&seq) {
            self.config.profile.digest_into(&header, datagram, &mut self.scratch);
            if expected.as_slice() == self.scratch.as_slice() {
                self.use_digest(seq);
                self.stats.authenticated += 1;
                self.stats.authenticated_on_arrival += 1;
                self.note_delay(Duration::ZERO);
                if self.released.is_empty() {
                    return Admission::Release;
                }
                self.released.push_back(Released { arrival: now, seq, datagram: datagram.to_vec() });
            } else {
                self.stats.mismatched += 1;
            }
            return Admission::Withheld;
        }
        let candidates = self.held.get(&seq).map_or(0, Vec::len);
        if candidates >= self.config.max_candidates || self.held_bytes + datagram.len() > self.config.max_held_bytes {
            self.stats.over_budget += 1;
            return Admission::Withheld;
        }
        self.held_bytes += datagram.len();
        self.held.entry(seq).or_default().push(Held { arrival: now, header, datagram: datagram.to_vec() });
        self.held_order.push_back((now, seq));
        // Entries of datagrams a manifest already took stay until their hold
        // time: under a flood of held-then-refused forgeries, drop them
        // early so the order grows with what is held, not with the rate.
        if self.held_order.len() > 2 * self.held.len() + 1024 {
            let held = &self.held;
            self.held_order.retain(|(at, seq)| held.get(seq).is_some_and(|c| c.iter().any(|h| h.arrival == *at)));
        }
        Admission::Withheld
    }

    /// An authenticated manifest arrived at `now` (its channel is the
    /// caller's to authenticate: TLS, or a verified signature). Held
    /// datagrams it covers are checked; its other digests wait.
    pub fn on_manifest(&mut self, now: Instant, manifest: &Manifest) -> Result<(), GateError> {
        let profile = &self.config.profile;
        if manifest.stream_id != profile.manifest_id {
            self.stats.manifests_refused += 1;
            return Err(GateError::StreamMismatch { expected: profile.manifest_id, got: manifest.stream_id });
        }
        if manifest.digest_len != profile.digest_len() {
            self.stats.manifests_refused += 1;
            return Err(GateError::DigestLength { expected: profile.digest_len(), got: manifest.digest_len });
        }
        self.stats.manifests += 1;
        let mut released = Vec::new();
        for i in 0..manifest.count() {
            let seq = manifest.first_packet.wrapping_add(i as u32);
            let Some(digest) = manifest.digest(i) else { break };
            if self.used.contains(seq) || self.digests.contains_key(&seq) {
                // Overlapping manifests repeat digests: the first one stands.
                continue;
            }
            if let Some(candidates) = self.held.remove(&seq) {
                let mut found = false;
                for h in candidates {
                    self.held_bytes -= h.datagram.len();
                    if !found && self.matches(&h.header, &h.datagram, digest) {
                        found = true;
                        self.note_delay(now.saturating_duration_since(h.arrival));
                        released.push(Released { arrival: h.arrival, seq, datagram: h.datagram });
                    } else {
                        self.stats.mismatched += 1;
                    }
                }
                if found {
                    self.use_digest(seq);
                    self.stats.authenticated += 1;
                    continue;
                }
            }
            if self.digests.len() >= self.config.max_digests {
                self.evict_oldest_digest();
            }
            self.digests.insert(seq, (StoredDigest::new(digest), now));
            self.digest_order.push_back((now, seq));
        }
        released.sort_by_key(|r| r.arrival);
        self.released.extend(released);
        Ok(())
    }

    fn evict_oldest_digest(&mut self) {
        while let Some((at, seq)) = self.digest_order.pop_front() {
            if self.digests.get(&seq).is_some_and(|(_, t)| *t == at) {
                self.digests.remove(&seq);
                self.stats.digests_expired += 1;
                return;
            }
        }
    }

    /// Counts a manifest the channel could not read (malformed).
    pub fn refuse_manifest(&mut self) {
        self.stats.manifests_refused += 1;
    }

    /// Counts a connection of a manifest channel.
    pub fn channel_connected(&mut self) {
        self.stats.channel_connects += 1;
    }

    /// Counts a manifest channel that failed or was lost.
    pub fn channel_lost(&mut self) {
        self.stats.channel_losses += 1;
    }

    /// Counts a manifest whose signature did not verify.
    pub fn bad_signature(&mut self) {
        self.stats.manifests_bad_signature += 1;
    }

    /// The next released datagram, oldest arrival first.
    pub fn poll_released(&mut self) -> Option<Released> {
        self.released.pop_front()
    }

    /// Expires what waited too long at `now`: held datagrams (dropped) and
    /// unused digests.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, seq)) = self.held_order.front() {
            if at + self.config.data_hold > now {
                break;
            }
            self.held_order.pop_front();
            if let Some(candidates) = self.held.get_mut(&seq) {
                let before = candidates.len();
                candidates.retain(|h| {
                    let keep = h.arrival + self.config.data_hold > now;
                    if !keep {
                        self.held_bytes -= h.datagram.len();
                    }
                    keep
                });
                self.stats.expired += (before - candidates.len()) as u64;
                if candidates.is_empty() {
                    self.held.remove(&seq);
                }
            }
        }
        while let Some(&(at, seq)) = self.digest_order.front() {
            if at + self.config.digest_hold > now {
                break;
            }
            self.digest_order.pop_front();
            if self.digests.get(&seq).is_some_and(|(_, t)| *t == at) {
                self.digests.remove(&seq);
                self.stats.digests_expired += 1;
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let held = self.held_order.front().map(|(at, _)| *at + self.config.data_hold);
        let digests = self.digest_order.front().map(|(at, _)| *at + self.config.digest_hold);
        [held, digests].into_iter().flatten().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ambi::test_header as header;

    fn profile() -> DigestProfile {
        DigestProfile::default_for(0x2a)
    }

    /// Datagram `seq`: its sequence number then filler.
    fn datagram(seq: u32) -> Vec<u8> {
        let mut d = seq.to_be_bytes().to_vec();
        d.extend((0..100).map(|i| (i as u32 ^ seq) as u8));
        d
    }

    fn manifest(first: u32, count: u32) -> Manifest {
        let p = profile();
        let digests = (first..first + count).flat_map(|s| p.digest(&header(), &datagram(s))).collect();
        Manifest {
            stream_id: p.manifest_id,
            sequence: 0,
            first_packet: first,
            tlvs: Vec::new(),
            digests,
            digest_len: p.digest_len(),
        }
    }

    fn drain(g: &mut Gate) -> Vec<Released> {
        std::iter::from_fn(|| g.poll_released()).collect()
    }

    #[test]
    fn a_manifest_ahead_lets_datagrams_through_on_arrival() {
        let mut g = Gate::new(GateConfig::new(profile()));
        let t0 = Instant::now();
        g.on_manifest(t0, &manifest(10, 5)).unwrap();
        for s in 10..15 {
            g.on_datagram(t0 + Duration::from_millis(s.into()), header(), Some(s), &datagram(s));
        }
        let out = drain(&mut g);
        assert_eq!(
            out.iter().map(|r| r.datagram.clone()).collect::<Vec<_>>(),
            (10..15).map(datagram).collect::<Vec<_>>()
        );
        assert_eq!((g.stats().authenticated_on_arrival, g.held_bytes(), g.waiting_digests()), (5, 0, 0));
    }

    #[test]
    fn admit_hands_authentic_datagrams_back_without_a_copy_unless_others_wait_before_them() {
        let mut g = Gate::new(GateConfig::new(profile()));
        let t0 = Instant::now();
        // 1 arrives before its manifest and is held.
        assert_eq!(g.admit(t0, header(), Some(1), &datagram(1)), Admission::Withheld);
        g.on_manifest(t0, &manifest(1, 4)).unwrap();
        // 1 is released to the queue; 2 is authentic on arrival but must
        // follow 1, so it is queued behind it.
        assert_eq!(g.admit(t0, header(), Some(2), &datagram(2)), Admission::Withheld);
        let out = drain(&mut g);
        assert_eq!(out.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
        // Nothing waits: 3 is the caller's to hand on, nothing is queued.
        assert_eq!(g.admit(t0, header(), Some(3), &datagram(3)), Admission::Release);
        assert!(drain(&mut g).is_empty());
        // A forgery, a replay and one without a sequence number are withheld.
        let mut forged = datagram(4);
        forged[50] ^= 1;
        assert_eq!(g.admit(t0, header(), Some(4), &forged), Admission::Withheld);
        assert_eq!(g.admit(t0, header(), Some(3), &datagram(3)), Admission::Withheld);
        assert_eq!(g.admit(t0, header(), None, &datagram(4)), Admission::Withheld);
        assert!(drain(&mut g).is_empty());
        let st = g.stats();
        assert_eq!((st.authenticated, st.authenticated_on_arrival, st.mismatched, st.replays), (3, 2, 1, 1));
    }

    #[test]
    fn datagrams_before_their_manifest_wait_and_keep_their_arrival_time() {
        let mut g = Gate::new(GateConfig::new(profile()));
        let t0 = Instant::now();
        for s in [3u32, 1, 2] {
            g.on_datagram(t0 + Duration::from_millis(s.into()), header(), Some(s), &datagram(s));
        }
        assert!(drain(&mut g).is_empty());
        g.on_manifest(t0 + Duration::from_millis(40), &manifest(1, 3)).unwrap();
        let out = drain(&mut g);
        // Arrival order and times are kept.
        assert_eq!(
            out.iter().map(|r| r.arrival).collect::<Vec<_>>(),
            [1, 2, 3].map(|ms| t0 + Duration::from_millis(ms))
        );
        assert_eq!(out[0].datagram, datagram(1));
        assert_eq!(g.held_bytes(), 0);
    }

    #[test]
    fn forgeries_and_replays_are_dropped_and_counted() {
        let mut g = Gate::new(GateConfig::new(profile()));
        let t0 = Instant::now();
        let mut forged = datagram(7);
        forged[50] ^= 1;
        // A forgery before the manifest waits beside the real one.
        g.on_datagram(t0, header(), Some(7), &forged);
        g.on_datagram(t0, header(), Some(7), &datagram(7));
        g.on_manifest(t0, &manifest(7, 2)).unwrap();
        assert_eq!(drain(&mut g).iter().map(|r| r.datagram.clone()).collect::<Vec<_>>(), [datagram(7)]);
        // After it: dropped on arrival.
        g.on_datagram(t0, header(), Some(8), &forged);
        // A replay of the real one.
        g.on_datagram(t0, header(), Some(7), &datagram(7));
        // The real 8 still passes, from another source it would not.
        let mut elsewhere = header();
        elsewhere.source = [10, 0, 0, 66].into();
        g.on_datagram(t0, elsewhere, Some(8), &datagram(8));
        g.on_datagram(t0, header(), Some(8), &datagram(8));
        assert_eq!(drain(&mut g).len(), 1);
        let s = g.stats();
        assert_eq!((s.authenticated, s.mismatched, s.replays), (2, 3, 1));
    }

    #[test]
    fn unauthenticated_datagrams_expire_and_memory_stays_bounded_under_a_flood() {
        let mut cfg = GateConfig::new(profile());
        cfg.max_held_bytes = 64 * 1024;
        let mut g = Gate::new(cfg);
        let t0 = Instant::now();
        // An authentic datagram held first; then a flood of forgeries on
        // every sequence number and on its own.
        g.on_datagram(t0, header(), Some(5), &datagram(5));
        for s in 0..100_000u32 {
            g.on_datagram(t0, header(), Some(s % 50_000), &[0xee; 104]);
        }
        assert!(g.held_bytes() <= 64 * 1024);
        assert!(g.stats().over_budget > 90_000);
        // The authentic one was not pushed out.
        g.on_manifest(t0 + Duration::from_millis(500), &manifest(5, 1)).unwrap();
        assert_eq!(drain(&mut g).iter().map(|r| r.datagram.clone()).collect::<Vec<_>>(), [datagram(5)]);
        // The rest expire after the hold time; nothing is released.
        assert_eq!(g.poll_timeout(), Some(t0 + Duration::from_secs(2)));
        g.handle_timeout(t0 + Duration::from_secs(3));
        assert_eq!(g.held_bytes(), 0);
        assert!(g.stats().expired > 0);
        assert!(drain(&mut g).is_empty());
    }

    #[test]
    fn the_hold_order_stays_in_step_with_what_is_held_under_a_flood() {
        let mut g = Gate::new(GateConfig::new(profile()));
        let t0 = Instant::now();
        // Forgeries held, then refused by their manifest, over and over.
        for round in 0..200u32 {
            for s in 0..64 {
                let mut forged = datagram(round * 64 + s);
                forged[50] ^= 1;
                g.on_datagram(t0, header(), Some(round * 64 + s), &forged);
            }
            g.on_manifest(t0, &manifest(round * 64, 64)).unwrap();
        }
        assert_eq!((g.stats().mismatched, g.held_bytes()), (200 * 64, 0));
        assert!(g.held_order.len() <= 1024 + 64, "{}", g.held_order.len());
    }

    #[test]
    fn manifests_of_another_stream_or_length_are_refused() {
        let mut g = Gate::new(GateConfig::new(profile()));
        let mut m = manifest(0, 1);
        m.stream_id = 7;
        assert_eq!(g.on_manifest(Instant::now(), &m), Err(GateError::StreamMismatch { expected: 0x2a, got: 7 }));
        let mut m = manifest(0, 1);
        m.digest_len = 8;
        m.digests.truncate(8);
        assert_eq!(g.on_manifest(Instant::now(), &m), Err(GateError::DigestLength { expected: 16, got: 8 }));
        assert_eq!(g.stats().manifests_refused, 2);
    }

    #[test]
    fn the_hold_down_window_slides_and_wraps() {
        let mut h = HoldDown::new();
        assert!(!h.contains(5));
        h.insert(5);
        assert!(h.contains(5) && !h.contains(6) && !h.contains(4));
        // Far ahead: 5 falls out of the window and counts as used (too old).
        h.insert(5 + HOLD_DOWN_WINDOW + 10);
        assert!(h.contains(5) && h.contains(6));
        assert!(!h.contains(5 + HOLD_DOWN_WINDOW + 9));
        // Across the wrap of the 32-bit numbers.
        let mut h = HoldDown::new();
        h.insert(u32::MAX - 1);
        h.insert(1);
        assert!(h.contains(u32::MAX - 1) && h.contains(1) && !h.contains(0) && !h.contains(u32::MAX));
    }

    #[test]
    fn digests_expire_unused() {
        let mut g = Gate::new(GateConfig::new(profile()));
        let t0 = Instant::now();
        g.on_manifest(t0, &manifest(0, 2)).unwrap();
        g.on_datagram(t0, header(), Some(0), &datagram(0));
        g.handle_timeout(t0 + Duration::from_secs(11));
        assert_eq!((g.waiting_digests(), g.stats().digests_expired), (0, 1));
        assert_eq!(g.poll_timeout(), None);
    }
}
