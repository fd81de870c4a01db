//! AMBI cost on one core, in process, over 100 MiB of 1200-byte datagrams:
//! the digest of every datagram (SHA-256 and BLAKE2b, 128-bit truncation),
//! the sender's manifests (64 digests each, overlap 4) signed with Ed25519
//! a batch at a time (`inband::seal_batch`), and the receiver's side: every
//! manifest opened (a batch's signature verified once, the others by their
//! Merkle path) and every datagram through the gate with its manifest ahead. Prints seconds of one
//! core per 100 MiB and the rates, the median of `H3M_BENCH_REPS` rounds
//! (default 3), and checks that every datagram was released.
//!
//! ```text
//! cargo bench -p h3m-benches --bench ambi
//! ```

use std::time::{Duration, Instant};

use h3m_proto::ambi::{DigestProfile, Gate, GateConfig, ManifestBuilder, PseudoHeader, inband};
use h3m_proto::auth::{SignatureAlgorithm, SigningKey};

const DATAGRAM: usize = 1200;
const TOTAL: usize = 100 << 20;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let reps: usize = std::env::var("H3M_BENCH_REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let n = TOTAL / DATAGRAM;
    let header = PseudoHeader {
        source: [10, 0, 0, 1].into(),
        destination: [232, 0, 0, 1].into(),
        source_port: 40000,
        destination_port: 2000,
    };
    // Datagrams whose first bytes are a short header with a 1-byte session ID
    // and the 4-byte packet number (where AMBI reads the sequence).
    let datagrams: Vec<Vec<u8>> = (0..n as u32)
        .map(|i| {
            let mut d = vec![0x43, 0x2a];
            d.extend_from_slice(&i.to_be_bytes());
            d.extend((6..DATAGRAM).map(|b| (i as usize * 31 + b * 7) as u8));
            d
        })
        .collect();
    let pem = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../interop/vectors/keys/ed25519.key.pem"))
        .expect("the Ed25519 test key");
    let key = SigningKey::from_pem(&pem).expect("key");
    let trust = vec![key.verifying_key()];
    println!("AMBI, one core, {n} datagrams of {DATAGRAM} bytes (100 MiB), median of {reps}");
    println!("| step | s/100 MiB | rate |");
    println!("|---|---|---|");
    for profile in [DigestProfile::default_for(7), DigestProfile::parse("blake2b/128", 7).expect("profile")] {
        let times: Vec<Duration> = (0..reps)
            .map(|_| {
                let t = Instant::now();
                let mut out = [0u8; 16];
                for d in &datagrams {
                    profile.digest_into(&header, d, &mut out);
                }
                std::hint::black_box(out);
                t.elapsed()
            })
            .collect();
        let t = median(times);
        println!("| digest {profile} | {:.3} | {:.0} MB/s |", t.as_secs_f64(), TOTAL as f64 / t.as_secs_f64() / 1e6);
    }
    let profile = DigestProfile::default_for(7);
    let (mut send_t, mut recv_t) = (Vec::new(), Vec::new());
    let mut manifests = 0;
    for _ in 0..reps {
        // Sender: digests and signed manifests.
        let t = Instant::now();
        let mut builder = ManifestBuilder::new(profile, header, 64, 4);
        let mut made = Vec::new();
        let mut order = Vec::with_capacity(n + n / 8);
        for (i, d) in datagrams.iter().enumerate() {
            builder.add(i as u32, d);
            while let Some(m) = builder.poll_manifest() {
                made.push(m);
                order.push(None);
            }
            order.push(Some(i));
        }
        builder.flush();
        made.extend(std::iter::from_fn(|| builder.poll_manifest()));
        // Signed as the publisher signs them: a batch of manifests at a time.
        let mut sealed = Vec::with_capacity(made.len());
        for batch in made.chunks(inband::MAX_BATCH) {
            sealed.extend(inband::seal_batch(batch, &key, SignatureAlgorithm::Ed25519).expect("seal"));
        }
        send_t.push(t.elapsed());
        manifests = sealed.len();
        // Receiver: each manifest verified, then the datagrams it precedes.
        let t = Instant::now();
        let mut gate = Gate::new(GateConfig::new(profile));
        let mut verifier = inband::Verifier::new(trust.clone());
        let now = Instant::now();
        let mut next_manifest = 0;
        let mut released = 0;
        for item in &order {
            match item {
                None => {
                    let m = verifier.open(&sealed[next_manifest], 16).expect("verifies");
                    next_manifest += 1;
                    gate.on_manifest(now, &m).expect("accepted");
                }
                Some(i) => gate.on_datagram(now, header, Some(*i as u32), &datagrams[*i]),
            }
            while gate.poll_released().is_some() {
                released += 1;
            }
        }
        recv_t.push(t.elapsed());
        // Datagrams after the last full manifest wait for the flushed one.
        for s in &sealed[next_manifest..] {
            gate.on_manifest(now, &verifier.open(s, 16).expect("verifies")).expect("accepted");
        }
        while gate.poll_released().is_some() {
            released += 1;
        }
        assert_eq!(released, n, "every datagram released");
    }
    let (s, r) = (median(send_t), median(recv_t));
    println!(
        "| sender: digests + {manifests} manifests, Ed25519-signed {} at a time | {:.3} | {:.0} MB/s |",
        inband::MAX_BATCH,
        s.as_secs_f64(),
        TOTAL as f64 / s.as_secs_f64() / 1e6
    );
    println!(
        "| receiver: verify + gate (digest of every datagram) | {:.3} | {:.0} MB/s |",
        r.as_secs_f64(),
        TOTAL as f64 / r.as_secs_f64() / 1e6
    );
}
