//! Receiving with AMBI (`h3m-recv --ambi`): every datagram of the session
//! passes the gate ([`h3m_proto::ambi::Gate`]) before the receiver core sees
//! it, released only once an authenticated manifest lists its digest.
//! Nothing reaches the core unauthenticated. Manifests come by one of two
//! channels ([`ManifestChannel`]):
//!
//! * **in-band** (`--ambi inband --trust KEY.pem`): multicast on the
//!   session's side port ([`h3m_proto::ambi::inband`]), each signed by a
//!   trusted key. Signatures are verified when needed: when a datagram comes
//!   that no known digest covers, the newest pending manifest covering it is
//!   verified. Manifests overlap (a sender sends several before each batch
//!   of datagrams), so that one usually covers the others, which are then
//!   dropped unverified: about one verification per batch instead of one per
//!   manifest. While datagrams are held, a manifest that covers one of them
//!   is verified as it arrives (newest first).
//! * **HTTPS** (`--ambi https://HOST:PORT/.well-known/h3m/ambi`): an
//!   `application/ambi` response that never ends, from the sender's origin
//!   ([`https`]): TLS authenticates the manifests, so they need no
//!   signature. A lost or failed channel reconnects with exponential
//!   back-off from 1 s (the draft's), held datagrams waiting meanwhile.

pub mod https;

use std::net::SocketAddr;
use std::time::Instant;

use h3m_proto::ambi::{self, Admission, DigestProfile, Gate, GateConfig, Manifest, PseudoHeader, Released, inband};
use h3m_proto::auth::VerifyingKey;

/// Where manifests come from.
#[derive(Debug, Clone)]
pub enum ManifestChannel {
    /// Multicast on the session's side port, signed by one of these keys.
    Inband {
        /// The keys manifests must be signed with.
        trust: Vec<VerifyingKey>,
    },
    /// Streamed over HTTPS (HTTP/3, else HTTP/1.1).
    Https(https::HttpsChannel),
}

/// What an advertisement announces of AMBI (`ambi`, `ambi-digest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertisedAmbi {
    /// The channels: `inband`, `https` or `both`.
    pub channels: String,
    /// The digest profile (`sha-256/128` when not announced).
    pub digest: String,
}

impl AdvertisedAmbi {
    /// Whether manifests are multicast on the session.
    pub fn inband(&self) -> bool {
        matches!(self.channels.as_str(), "inband" | "both")
    }

    /// Whether the repair origin streams them.
    pub fn https(&self) -> bool {
        matches!(self.channels.as_str(), "https" | "both")
    }
}

/// How to authenticate (`h3m-recv --ambi`).
#[derive(Debug, Clone)]
pub struct AmbiOptions {
    /// The digest profile (hash, truncation, manifest stream identifier).
    pub profile: DigestProfile,
    /// Where manifests come from.
    pub channel: ManifestChannel,
}

/// What AMBI did, for the summary: the gate's counters.
pub type AmbiCounters = h3m_proto::ambi::GateStats;

/// The gate of a live session.
#[derive(Debug)]
pub(crate) struct AmbiReceiver {
    gate: Gate,
    /// In-band manifests' signatures, and the batch roots verified.
    verifier: inband::Verifier,
    group: SocketAddr,
    session_id_len: usize,
    /// With `--cipher-suite`: the session's header protection, removed from
    /// a copy of each datagram's first bytes to read its sequence number.
    unmask: Option<Unmask>,
    /// Manifest datagrams not verified yet, oldest first.
    pending: std::collections::VecDeque<Vec<u8>>,
    /// Where the session's datagrams come from (the last one's source):
    /// the pseudo-header of the datagrams FEC rebuilds.
    last_source: Option<SocketAddr>,
    /// Datagrams FEC rebuilt that wait in the gate: sequence number -> packet
    /// number, so that released they are handed back as rebuilt.
    recovered: std::collections::HashMap<u32, u64>,
}

/// A session's packet protection, for reading sequence numbers under header
/// protection.
struct Unmask(Box<dyn h3m_proto::protection::PacketProtection>);

impl std::fmt::Debug for Unmask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Unmask").field(&self.0.suite()).finish()
    }
}

/// Manifest datagrams kept unverified at most (then they are verified).
const MAX_PENDING: usize = 64;

/// Rebuilt datagrams waiting in the gate at most (the FEC window's worth);
/// beyond, the map starts again (one that is then released counts as
/// received rather than rebuilt).
const MAX_RECOVERED_WAITING: usize = 32_768;

impl AmbiReceiver {
    pub(crate) fn new(
        opts: &AmbiOptions,
        group: SocketAddr,
        session_id_len: usize,
        keys: Option<&h3m_proto::aead::PacketKeys>,
    ) -> Self {
        let trust = match &opts.channel {
            ManifestChannel::Inband { trust } => trust.clone(),
            // In-band manifests are refused: no key is trusted.
            ManifestChannel::Https(_) => Vec::new(),
        };
        AmbiReceiver {
            gate: Gate::new(GateConfig::new(opts.profile)),
            verifier: inband::Verifier::new(trust),
            group,
            session_id_len,
            unmask: keys.map(|k| Unmask(k.protection())),
            pending: std::collections::VecDeque::new(),
            last_source: None,
            recovered: std::collections::HashMap::new(),
        }
    }

    /// A datagram FEC rebuilt (packet number `pn`): repair datagrams are not
    /// authenticated, so what they rebuild passes the gate like a datagram
    /// received from the session's source; released, it is reported by
    /// [`take_recovered`](Self::take_recovered).
    pub(crate) fn on_recovered(&mut self, now: Instant, pn: u64, payload: &[u8]) {
        // Rebuilt datagrams exist only once the session's datagrams came.
        let Some(source) = self.last_source else { return };
        let seq = self.sequence(payload);
        if let Some(seq) = seq {
            if self.recovered.len() >= MAX_RECOVERED_WAITING {
                self.recovered.clear();
            }
            self.recovered.insert(seq, pn);
        }
        // Through the release queue, where `take_recovered` finds it.
        if let (Admission::Release, Some(seq)) = (self.admit(now, source, payload), seq) {
            self.gate.requeue(now, seq, payload);
        }
    }

    /// The packet number of released datagram `seq` if FEC rebuilt it.
    pub(crate) fn take_recovered(&mut self, seq: u32) -> Option<u64> {
        if self.recovered.is_empty() { None } else { self.recovered.remove(&seq) }
    }

    fn sequence(&self, payload: &[u8]) -> Option<u32> {
        match &self.unmask {
            None => ambi::packet_sequence(payload, self.session_id_len),
            Some(Unmask(p)) => ambi::protected_packet_sequence(payload, self.session_id_len, &**p),
        }
    }

    /// A datagram of the session from `source` arrived at `now`:
    /// [`Admission::Release`] when the caller is to hand it to the core now
    /// (authentic on arrival, nothing released before it waiting), else
    /// what the gate releases comes from [`poll_released`](Self::poll_released).
    pub(crate) fn on_session(&mut self, now: Instant, source: SocketAddr, payload: &[u8]) -> Admission {
        self.last_source = Some(source);
        self.admit(now, source, payload)
    }

    /// Hands a datagram to the gate, verifying the manifest it needs first.
    fn admit(&mut self, now: Instant, source: SocketAddr, payload: &[u8]) -> Admission {
        let header = PseudoHeader {
            source: source.ip(),
            destination: self.group.ip(),
            source_port: source.port(),
            destination_port: self.group.port(),
        };
        let seq = self.sequence(payload);
        if let Some(s) = seq {
            // The pending manifest that covers it and reaches furthest beyond
            // it (usually covering the others too), until its digest is known
            // or none covers it.
            while !self.gate.knows(s) {
                let Some(i) = self.furthest_covering(s) else { break };
                self.verify_at(now, i);
            }
        }
        self.gate.admit(now, header, seq, payload)
    }

    /// The pending manifest covering sequence number `s` whose coverage ends
    /// furthest after it (senders send a batch's manifests newest first, so
    /// the order of arrival says little), the last such on a tie.
    fn furthest_covering(&self, s: u32) -> Option<usize> {
        let mut best: Option<(usize, usize)> = None;
        for (i, d) in self.pending.iter().enumerate() {
            let Some((first, count)) = inband::peek_coverage(d) else { continue };
            let at = s.wrapping_sub(first) as usize;
            if at < count && best.is_none_or(|(_, ahead)| count - at >= ahead) {
                best = Some((i, count - at));
            }
        }
        best.map(|(i, _)| i)
    }

    /// Verifies pending manifest `i`, then drops the pending ones that bring
    /// nothing new any more.
    fn verify_at(&mut self, now: Instant, i: usize) {
        let Some(d) = self.pending.remove(i) else { return };
        match self.verifier.open(&d, self.gate.digest_len()) {
            // A refused manifest is counted by the gate.
            Ok(m) => {
                let _ = self.gate.on_manifest(now, &m);
            }
            Err(inband::InbandError::BadSignature) => self.gate.bad_signature(),
            Err(_) => self.gate.refuse_manifest(),
        }
        let gate = &self.gate;
        self.pending.retain(|d| !inband::peek_coverage(d).is_some_and(|(first, count)| gate.covers(first, count)));
    }

    /// Verifies the pending manifests that cover a held datagram, newest
    /// first (the newest usually covers what the older ones would; those
    /// that then bring nothing new are dropped unverified).
    fn verify_for_held(&mut self, now: Instant) {
        let mut i = self.pending.len();
        while i > 0 {
            i -= 1;
            let needed =
                inband::peek_coverage(&self.pending[i]).is_some_and(|(first, count)| self.gate.holds_any(first, count));
            if needed {
                self.verify_at(now, i);
                i = self.pending.len();
            }
        }
    }

    /// A datagram of the side port that is an in-band manifest: kept until
    /// needed (verified at once while datagrams wait).
    pub(crate) fn on_manifest_datagram(&mut self, now: Instant, payload: &[u8]) {
        // One that brings nothing new (the older manifests of a batch whose
        // newest was verified) is dropped unverified.
        if inband::peek_coverage(payload).is_some_and(|(first, count)| self.gate.covers(first, count)) {
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            let gate = &self.gate;
            self.pending.retain(|d| !inband::peek_coverage(d).is_some_and(|(first, count)| gate.covers(first, count)));
        }
        if self.pending.len() >= MAX_PENDING {
            // Manifests ahead of data not read yet: verify the oldest rather
            // than drop it (it covers the datagrams that come next).
            self.verify_at(now, 0);
        }
        self.pending.push_back(payload.to_vec());
        if self.gate.held_bytes() > 0 {
            self.verify_for_held(now);
        }
    }

    /// What the HTTPS channel brought or did.
    pub(crate) fn on_channel_event(&mut self, now: Instant, event: https::ChannelEvent) {
        match event {
            https::ChannelEvent::Manifest(m) => self.on_trusted_manifest(now, &m),
            https::ChannelEvent::Connected(_) => self.gate.channel_connected(),
            https::ChannelEvent::Lost { .. } => self.gate.channel_lost(),
        }
    }

    /// A manifest from a channel that authenticated it (TLS).
    fn on_trusted_manifest(&mut self, now: Instant, m: &Manifest) {
        // A manifest of another stream or digest length is counted by the
        // gate (the channel checked both already).
        let _ = self.gate.on_manifest(now, m);
    }

    /// The next datagram released to the core.
    pub(crate) fn poll_released(&mut self) -> Option<Released> {
        self.gate.poll_released()
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.gate.poll_timeout()
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.gate.handle_timeout(now);
    }

    pub(crate) fn counters(&self) -> AmbiCounters {
        AmbiCounters { signatures_checked: self.verifier.verifications(), ..self.gate.stats() }
    }
}

/// Whether a side-port datagram is an in-band manifest.
pub(crate) fn is_manifest(payload: &[u8]) -> bool {
    inband::is_inband(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use h3m_proto::ambi::ManifestBuilder;
    use h3m_proto::auth::{SignatureAlgorithm, SigningKey};

    fn key(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/../../interop/vectors/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    /// A batch's manifests come first; verifying the newest covers the rest,
    /// so one signature is checked per batch, and every datagram is released.
    #[test]
    fn one_verification_per_batch_of_overlapping_manifests() {
        // As a publisher sends them (newest first), and oldest first.
        for newest_first in [true, false] {
            one_verification_per_batch(newest_first);
        }
    }

    /// The test key, the sender's address, a builder of overlapping
    /// manifests (64 digests, each in 4) and a receiver trusting the key.
    fn inband_rig() -> (SigningKey, SocketAddr, ManifestBuilder, AmbiReceiver) {
        let signer = SigningKey::from_pem(&key("ed25519.key.pem")).unwrap();
        let profile = ambi::DigestProfile::default_for(9);
        let group: SocketAddr = "232.0.0.1:2000".parse().unwrap();
        let source: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let header =
            PseudoHeader { source: source.ip(), destination: group.ip(), source_port: 4000, destination_port: 2000 };
        let builder = ManifestBuilder::new(profile, header, 64, 4);
        let opts = AmbiOptions { profile, channel: ManifestChannel::Inband { trust: vec![signer.verifying_key()] } };
        (signer, source, builder, AmbiReceiver::new(&opts, group, 1, None))
    }

    /// Batch `batch` of 64 datagrams (session ID 0x2a, 4-byte packet
    /// numbers) and its manifests, signed, in the order the builder made them.
    fn sealed_batch(builder: &mut ManifestBuilder, signer: &SigningKey, batch: u32) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let datagrams: Vec<Vec<u8>> =
            (0..64u32).map(|i| [&[0x43u8, 0x2a][..], &(batch * 64 + i).to_be_bytes(), &[7u8; 100]].concat()).collect();
        for (i, d) in datagrams.iter().enumerate() {
            builder.add(batch * 64 + i as u32, d);
        }
        builder.flush();
        let sealed = std::iter::from_fn(|| builder.poll_manifest())
            .map(|m| inband::seal(&m, signer, SignatureAlgorithm::Ed25519).unwrap())
            .collect();
        (datagrams, sealed)
    }

    fn one_verification_per_batch(newest_first: bool) {
        let (signer, source, mut builder, mut rx) = inband_rig();
        let now = Instant::now();
        let mut released = 0;
        for batch in 0..10u32 {
            let (datagrams, mut sealed) = sealed_batch(&mut builder, &signer, batch);
            assert_eq!(sealed.len(), 4);
            if newest_first {
                sealed.reverse();
            }
            for m in &sealed {
                rx.on_manifest_datagram(now, m);
            }
            for d in &datagrams {
                // On arrival, each is handed back at once (no copy queued).
                assert_eq!(rx.on_session(now, source, d), Admission::Release);
                released += 1 + std::iter::from_fn(|| rx.poll_released()).count();
            }
        }
        let c = rx.counters();
        assert_eq!((released, c.authenticated_on_arrival), (640, 640));
        assert_eq!(c.manifests, 10, "one verified manifest per batch ({newest_first}): {c:?}");
    }

    #[test]
    fn stale_manifests_do_not_pile_up_into_verifications() {
        // Manifests that bring nothing new (a batch's older ones read after
        // its data, late copies) are dropped as they arrive, not kept until
        // the pending queue fills and then verified one by one.
        let (signer, source, mut builder, mut rx) = inband_rig();
        let now = Instant::now();
        let mut old = Vec::new();
        for batch in 0..100u32 {
            let (datagrams, mut sealed) = sealed_batch(&mut builder, &signer, batch);
            sealed.reverse();
            let newest = sealed.remove(0);
            rx.on_manifest_datagram(now, &newest);
            for d in &datagrams {
                rx.on_session(now, source, d);
            }
            for m in &sealed {
                rx.on_manifest_datagram(now, m);
            }
            while rx.poll_released().is_some() {}
            old.extend(sealed);
        }
        // Late copies of old manifests (a slow path, a replay): nothing new.
        for m in &old {
            rx.on_manifest_datagram(now, m);
        }
        let c = rx.counters();
        assert_eq!(c.authenticated_on_arrival, 6400);
        assert_eq!(c.manifests, 100, "{c:?}");
    }
}
