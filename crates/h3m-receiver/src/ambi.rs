//! Receiving with AMBI (`h3m-recv --ambi inband --trust KEY.pem`): every
//! datagram of the session passes the gate ([`h3m_proto::ambi::Gate`])
//! before the receiver core sees it, released only once a manifest signed
//! by a trusted key lists its digest; manifests come multicast on the
//! session's side port ([`h3m_proto::ambi::inband`]). Nothing reaches the
//! core unauthenticated.

use std::net::SocketAddr;
use std::time::Instant;

use h3m_proto::ambi::{self, DigestProfile, Gate, GateConfig, PseudoHeader, Released, inband};
use h3m_proto::auth::VerifyingKey;
use serde::Serialize;

/// How to authenticate (`h3m-recv --ambi`).
#[derive(Debug, Clone)]
pub struct AmbiOptions {
    /// The digest profile (hash, truncation, manifest stream identifier).
    pub profile: DigestProfile,
    /// The keys manifests must be signed with.
    pub trust: Vec<VerifyingKey>,
}

/// What AMBI did, for the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AmbiCounters {
    /// Datagrams released to the receiver core.
    pub authenticated: u64,
    /// Of those, released on arrival (their manifest came first).
    pub authenticated_on_arrival: u64,
    /// Datagrams whose digest did not match their manifest's: dropped.
    pub mismatched: u64,
    /// Datagrams no manifest covered in time: dropped.
    pub expired: u64,
    /// Datagrams dropped because the hold budget was full.
    pub over_budget: u64,
    /// Replayed datagrams: dropped.
    pub replays: u64,
    /// Datagrams without a readable packet number: dropped.
    pub unsequenced: u64,
    /// Manifests accepted.
    pub manifests: u64,
    /// Manifest datagrams no trusted key verified.
    pub manifests_bad_signature: u64,
    /// Manifests malformed or of another stream.
    pub manifests_refused: u64,
}

/// The gate of a live session.
#[derive(Debug)]
pub(crate) struct AmbiReceiver {
    gate: Gate,
    trust: Vec<VerifyingKey>,
    group: SocketAddr,
    session_id_len: usize,
    bad_signature: u64,
    refused: u64,
}

impl AmbiReceiver {
    pub(crate) fn new(opts: &AmbiOptions, group: SocketAddr, session_id_len: usize) -> Self {
        AmbiReceiver {
            gate: Gate::new(GateConfig::new(opts.profile)),
            trust: opts.trust.clone(),
            group,
            session_id_len,
            bad_signature: 0,
            refused: 0,
        }
    }

    /// A datagram of the session from `source` arrived at `now`.
    pub(crate) fn on_session(&mut self, now: Instant, source: SocketAddr, payload: &[u8]) {
        let header = PseudoHeader {
            source: source.ip(),
            destination: self.group.ip(),
            source_port: source.port(),
            destination_port: self.group.port(),
        };
        let seq = ambi::packet_sequence(payload, self.session_id_len);
        self.gate.on_datagram(now, header, seq, payload);
    }

    /// A datagram of the side port that is an in-band manifest.
    pub(crate) fn on_manifest_datagram(&mut self, now: Instant, payload: &[u8]) {
        let len = self.gate_digest_len();
        match inband::open(payload, len, &self.trust) {
            Ok(m) => {
                if self.gate.on_manifest(now, &m).is_err() {
                    self.refused += 1;
                }
            }
            Err(inband::InbandError::BadSignature) => self.bad_signature += 1,
            Err(_) => self.refused += 1,
        }
    }

    fn gate_digest_len(&self) -> usize {
        self.gate.digest_len()
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
        let s = self.gate.stats();
        AmbiCounters {
            authenticated: s.authenticated,
            authenticated_on_arrival: s.authenticated_on_arrival,
            mismatched: s.mismatched,
            expired: s.expired,
            over_budget: s.over_budget,
            replays: s.replays,
            unsequenced: s.unsequenced,
            manifests: s.manifests,
            manifests_bad_signature: self.bad_signature,
            manifests_refused: self.refused + s.manifests_refused,
        }
    }
}

/// Whether a side-port datagram is an in-band manifest.
pub(crate) fn is_manifest(payload: &[u8]) -> bool {
    inband::is_inband(payload)
}
