//! AMBI manifests: `Manifest::parse` at every digest length of the profiles
//! (8 to 64 bytes); what parses writes back to bytes that parse the same.
//! Then the gate, fed the input's chunks as datagrams and the manifest
//! (panics and memory only: its hold budget is small here). And the
//! `application/ambi` stream reader, fed the input in 7-byte chunks: it
//! yields the manifests `parse_prefix` finds, or an error, never more bytes
//! held than were given. And the in-band datagram reader (versions 1 and
//! 2, the batch proofs), trusting no key: it refuses everything.
#![no_main]

use std::time::{Duration, Instant};

use h3m_proto::ambi::{DigestProfile, Gate, GateConfig, Manifest, ManifestStream, PseudoHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&len, bytes)) = data.split_first() else { return };
    let len = usize::from(len % 57) + 8;
    let parsed = Manifest::parse(bytes, len);
    if let Ok(m) = &parsed {
        let mut out = Vec::new();
        m.write(&mut out).expect("a parsed manifest writes");
        assert_eq!(Manifest::parse(&out, len).as_ref(), Ok(m));
    }
    let mut stream = ManifestStream::new(len);
    let mut given = 0;
    'read: for chunk in bytes.chunks(7) {
        stream.push(chunk);
        given += chunk.len();
        loop {
            match stream.next_manifest() {
                Ok(Some(m)) => assert_eq!(m.digest_len, len),
                Ok(None) => break,
                Err(_) => break 'read,
            }
        }
        assert!(stream.buffered() <= given);
    }
    let mut config = GateConfig::new(DigestProfile::default_for(0));
    config.max_held_bytes = 4096;
    let mut gate = Gate::new(config);
    let header = PseudoHeader {
        source: [10, 0, 0, 1].into(),
        destination: [232, 0, 0, 1].into(),
        source_port: 1,
        destination_port: 2,
    };
    let t0 = Instant::now();
    for chunk in bytes.chunks(24) {
        let seq = chunk.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        gate.on_datagram(t0, header, seq, chunk);
    }
    if let Ok(mut m) = parsed {
        m.stream_id = 0;
        let _ = gate.on_manifest(t0, &m);
    }
    while gate.poll_released().is_some() {}
    gate.handle_timeout(t0 + Duration::from_secs(60));
    assert_eq!(gate.held_bytes(), 0);
    let mut verifier = h3m_proto::ambi::inband::Verifier::new(Vec::new());
    for version in [1u8, 2] {
        let mut d = h3m_proto::ambi::inband::INBAND_MAGIC.to_vec();
        d.push(version);
        d.extend_from_slice(bytes);
        assert!(verifier.open(&d, len).is_err());
    }
});
