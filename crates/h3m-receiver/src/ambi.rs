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

/// How to authenticate (`h3m-recv --ambi`).
#[derive(Debug, Clone)]
pub struct AmbiOptions {
    /// The digest profile (hash, truncation, manifest stream identifier).
    pub profile: DigestProfile,
    /// The keys manifests must be signed with.
    pub trust: Vec<VerifyingKey>,
}

/// What AMBI did, for the summary: the gate's counters.
pub type AmbiCounters = h3m_proto::ambi::GateStats;

/// The gate of a live session.
#[derive(Debug)]
pub(crate) struct AmbiReceiver {
    gate: Gate,
    trust: Vec<VerifyingKey>,
    group: SocketAddr,
    session_id_len: usize,
}

impl AmbiReceiver {
    pub(crate) fn new(opts: &AmbiOptions, group: SocketAddr, session_id_len: usize) -> Self {
        AmbiReceiver {
            gate: Gate::new(GateConfig::new(opts.profile)),
            trust: opts.trust.clone(),
            group,
            session_id_len,
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
            // A refused manifest is counted by the gate.
            Ok(m) => {
                let _ = self.gate.on_manifest(now, &m);
            }
            Err(inband::InbandError::BadSignature) => self.gate.bad_signature(),
            Err(_) => self.gate.refuse_manifest(),
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
        self.gate.stats()
    }
}

/// Whether a side-port datagram is an in-band manifest.
pub(crate) fn is_manifest(payload: &[u8]) -> bool {
    inband::is_inband(payload)
}
