//! The sender's side of AMBI, sans-IO: the digest of every datagram as it is
//! queued (before it is sent, so manifests can travel ahead of the data),
//! and overlapping manifests over them.
//!
//! A new manifest goes out every `per_manifest / overlap` datagrams (and at
//! each [`ManifestBuilder::flush`]), listing every digest that is not yet in
//! `overlap` manifests: at most the last [`ManifestBuilder::per_manifest`].
//! So each digest is in exactly `overlap` manifests (the last few of a
//! session in fewer: no manifest follows them), however often the sender
//! flushes, and a receiver that loses some manifests still authenticates
//! every datagram (losing a fraction `p` of manifests leaves a datagram
//! unauthenticated with probability about `p^overlap`). Over HTTPS
//! (`overlap` 1) each digest is sent once.

use std::collections::VecDeque;

use super::{DigestProfile, Manifest, PseudoHeader};

/// Builds a session's manifests (see the [module docs](self)).
#[derive(Debug)]
pub struct ManifestBuilder {
    profile: DigestProfile,
    header: PseudoHeader,
    per_manifest: usize,
    overlap: usize,
    step: usize,
    /// The digests not yet in `overlap` manifests, consecutive in sequence
    /// number: `(first seq, bytes)`.
    window_first: u32,
    window: VecDeque<u8>,
    /// How many manifests each digest of the window is in (never more for
    /// an older one than a newer one: each manifest lists a newest part).
    listed: VecDeque<usize>,
    since_last: usize,
    next_sequence: u32,
    ready: VecDeque<Manifest>,
}

impl ManifestBuilder {
    /// Manifests of `per_manifest` digests (at most
    /// [`MAX_DIGESTS`](super::MAX_DIGESTS)), each digest in `overlap` of
    /// them, for datagrams sent with `header`.
    pub fn new(profile: DigestProfile, header: PseudoHeader, per_manifest: usize, overlap: usize) -> Self {
        let per_manifest = per_manifest.clamp(1, super::MAX_DIGESTS);
        let overlap = overlap.clamp(1, per_manifest);
        let step = (per_manifest / overlap).max(1);
        ManifestBuilder {
            profile,
            header,
            per_manifest,
            overlap,
            step,
            window_first: 0,
            window: VecDeque::new(),
            listed: VecDeque::new(),
            since_last: 0,
            next_sequence: 0,
            ready: VecDeque::new(),
        }
    }

    /// Digests per manifest.
    pub fn per_manifest(&self) -> usize {
        self.per_manifest
    }

    /// Datagrams added between two manifests (`per_manifest / overlap`).
    pub fn step(&self) -> usize {
        self.step
    }

    fn len(&self) -> usize {
        self.listed.len()
    }

    /// Forgets the oldest digest of the window.
    fn drop_oldest(&mut self) {
        self.window.drain(..self.profile.digest_len());
        self.listed.pop_front();
        self.window_first = self.window_first.wrapping_add(1);
    }

    /// A datagram with packet sequence number `seq` is about to be sent.
    pub fn add(&mut self, seq: u32, datagram: &[u8]) {
        let dl = self.profile.digest_len();
        if self.len() > 0 && self.window_first.wrapping_add(self.len() as u32) != seq {
            // Not consecutive: what is pending goes out, a new run starts.
            self.flush();
            self.window.clear();
            self.listed.clear();
        }
        if self.window.is_empty() {
            self.window_first = seq;
        }
        let mut digest = [0u8; 64];
        self.profile.digest_into(&self.header, datagram, &mut digest[..dl]);
        self.window.extend(&digest[..dl]);
        self.listed.push_back(0);
        if self.len() > self.per_manifest {
            self.drop_oldest();
        }
        self.since_last += 1;
        if self.since_last >= self.step {
            self.emit();
        }
    }

    /// Datagrams added since the last manifest was emitted: in none yet.
    pub fn unlisted(&self) -> usize {
        self.since_last
    }

    /// How many manifests wait for [`poll_manifest`](Self::poll_manifest).
    pub fn ready(&self) -> usize {
        self.ready.len()
    }

    /// Emits a manifest of what is pending now, if anything is new since the
    /// last (at the end of a session, or on a deadline for live data).
    pub fn flush(&mut self) {
        if self.since_last > 0 {
            self.emit();
        }
    }

    /// Emits manifests until every digest of the window is in `overlap` of
    /// them (at the end of a session: its last datagrams would otherwise be
    /// in fewer, the very last in one, so losing that one manifest would
    /// leave the end unauthenticated).
    pub fn complete(&mut self) {
        self.flush();
        while self.listed.back().is_some_and(|&n| n < self.overlap) {
            self.emit();
        }
    }

    fn emit(&mut self) {
        self.since_last = 0;
        let dl = self.profile.digest_len();
        let from = self.listed.iter().position(|&n| n < self.overlap).unwrap_or(self.len());
        let m = Manifest {
            stream_id: self.profile.manifest_id,
            sequence: self.next_sequence,
            first_packet: self.window_first.wrapping_add(from as u32),
            tlvs: Vec::new(),
            digests: self.window.iter().skip(from * dl).copied().collect(),
            digest_len: dl,
        };
        for n in self.listed.iter_mut().skip(from) {
            *n += 1;
        }
        while self.listed.front().is_some_and(|&n| n >= self.overlap) {
            self.drop_oldest();
        }
        self.next_sequence = self.next_sequence.wrapping_add(1);
        self.ready.push_back(m);
    }

    /// The next manifest to send.
    pub fn poll_manifest(&mut self) -> Option<Manifest> {
        self.ready.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ambi::{Gate, GateConfig};
    use std::time::Instant;

    use crate::ambi::test_header as header;

    #[test]
    fn every_digest_is_in_overlap_manifests_and_they_precede_their_data() {
        let profile = DigestProfile::default_for(3);
        let mut b = ManifestBuilder::new(profile, header(), 64, 4);
        let mut gate = Gate::new(GateConfig::new(profile));
        let now = Instant::now();
        let mut covered = std::collections::HashMap::<u32, usize>::new();
        let mut released = 0;
        for seq in 1000..1000 + 640u32 {
            let d = [seq.to_be_bytes().as_slice(), &[7u8; 200]].concat();
            b.add(seq, &d);
            b.flush();
            while let Some(m) = b.poll_manifest() {
                for i in 0..m.count() {
                    *covered.entry(m.first_packet + i as u32).or_default() += 1;
                }
                gate.on_manifest(now, &m).unwrap();
            }
            // The manifest went first: the datagram passes on arrival.
            gate.on_datagram(now, header(), Some(seq), &d);
            released += std::iter::from_fn(|| gate.poll_released()).count();
        }
        assert_eq!(released, 640);
        assert_eq!(gate.stats().authenticated_on_arrival, 640);
        // Flushed after every datagram, each digest is still in exactly 4
        // manifests (the last 3 in fewer: the session ends), not in 64.
        assert_eq!(covered.len(), 640);
        assert!((1000..1637).all(|s| covered[&s] == 4), "{covered:?}");
        assert_eq!([covered[&1637], covered[&1638], covered[&1639]], [3, 2, 1]);
        // Completed at the session's end, the last ones are in 4 too.
        b.complete();
        while let Some(m) = b.poll_manifest() {
            for i in 0..m.count() {
                *covered.entry(m.first_packet + i as u32).or_default() += 1;
            }
        }
        assert!((1000..1640).all(|s| covered[&s] == 4), "{covered:?}");
        b.complete();
        assert!(b.poll_manifest().is_none(), "nothing left to complete");
    }

    #[test]
    fn completing_gives_every_digest_of_a_short_run_its_overlap() {
        let profile = DigestProfile::default_for(3);
        for (n, overlap) in [(1u32, 4), (5, 4), (17, 4), (63, 4), (64, 4), (100, 4), (30, 1), (200, 3)] {
            let mut b = ManifestBuilder::new(profile, header(), 64, overlap);
            let mut covered = std::collections::HashMap::<u32, usize>::new();
            for seq in 0..n {
                b.add(seq, &seq.to_be_bytes());
            }
            b.complete();
            while let Some(m) = b.poll_manifest() {
                assert!(m.count() <= 64);
                for i in 0..m.count() {
                    *covered.entry(m.first_packet + i as u32).or_default() += 1;
                }
            }
            assert!((0..n).all(|s| covered.get(&s) == Some(&overlap)), "{n} datagrams, overlap {overlap}: {covered:?}");
        }
    }

    #[test]
    fn over_https_each_digest_is_sent_once_however_often_it_flushes() {
        let profile = DigestProfile::default_for(3);
        let mut b = ManifestBuilder::new(profile, header(), 64, 1);
        let mut covered = Vec::new();
        for seq in 0..1000u32 {
            b.add(seq, &seq.to_be_bytes());
            if seq % 7 == 0 {
                b.flush();
            }
        }
        b.flush();
        while let Some(m) = b.poll_manifest() {
            assert!((1..=64).contains(&m.count()));
            covered.extend((0..m.count() as u32).map(|i| m.first_packet + i));
        }
        assert_eq!(covered, (0..1000).collect::<Vec<u32>>());
    }

    #[test]
    fn without_flushing_each_digest_lands_in_overlap_manifests() {
        let profile = DigestProfile::default_for(3);
        let mut b = ManifestBuilder::new(profile, header(), 64, 4);
        let mut covered = std::collections::HashMap::<u32, usize>::new();
        for seq in 0..1600u32 {
            b.add(seq, &seq.to_be_bytes());
        }
        b.flush();
        let mut sequences = Vec::new();
        while let Some(m) = b.poll_manifest() {
            assert!(m.count() <= 64);
            sequences.push(m.sequence);
            for i in 0..m.count() {
                *covered.entry(m.first_packet + i as u32).or_default() += 1;
            }
        }
        assert_eq!(sequences, (0..sequences.len() as u32).collect::<Vec<_>>());
        // Away from the start, every digest is in exactly 4 manifests.
        assert!((64..=1536).all(|s| covered[&s] == 4));
        // A gap starts a new run.
        b.add(5000, b"x");
        b.flush();
        let m = b.poll_manifest().unwrap();
        assert_eq!((m.first_packet, m.count()), (5000, 1));
    }
}
