//! FEC cost on one core, in process: the sender's encoder and the receiver's decoder
//! (`h3m_proto::fec`) over 100 MiB of 1200-byte datagrams, for `--fec 5` with 1% loss and
//! `--fec 15` with 5% loss (random, seeded), default block and depth. Prints the seconds of one
//! core per 100 MiB of datagrams (the issue's budget: encode + decode ≤ 0.3 s) and the rates,
//! the median of `H3M_BENCH_REPS` rounds (default 3), and checks that every lost datagram came
//! back byte for byte.
//!
//! ```text
//! cargo bench -p h3m-benches --bench fec
//! ```

use std::time::{Duration, Instant};

use h3m_proto::SessionId;
use h3m_proto::fec::decoder::{DEFAULT_MAX_WINDOW, DEFAULT_REPAIR_BUDGET};
use h3m_proto::fec::{FecConfig, FecDecoder, FecEncoder};

const DATAGRAM: usize = 1200;
const TOTAL: usize = 100 << 20;

fn main() {
    let reps: usize = std::env::var("H3M_BENCH_REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let n = TOTAL / DATAGRAM;
    let sid = SessionId::from_hex("2a").expect("hex");
    let datagrams: Vec<Vec<u8>> = (0..n).map(|i| (0..DATAGRAM).map(|b| (i * 31 + b * 7) as u8).collect()).collect();
    println!("FEC, one core, {n} datagrams of {DATAGRAM} bytes (100 MiB), median of {reps}");
    println!(
        "| setting | loss | encode s/100 MiB | decode s/100 MiB | together | encode MB/s | decode MB/s | repair | rebuilt |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (percent, loss) in [(5u16, 1u64), (15, 5)] {
        let config = FecConfig::new(percent);
        let (mut enc_t, mut dec_t) = (Vec::new(), Vec::new());
        let (mut repairs_n, mut rebuilt_n) = (0, 0);
        for rep in 0..reps {
            let t0 = Instant::now();
            let mut enc = FecEncoder::new(config, sid);
            let mut repairs = Vec::new();
            // Sent at 1 Gbit/s: a datagram every 9.6 µs.
            let start = Instant::now();
            let at = |pn: usize| start + Duration::from_nanos(9_600 * pn as u64);
            for (pn, d) in datagrams.iter().enumerate() {
                enc.add_source(at(pn), pn as u64, d);
                while let Some(r) = enc.poll_repair(at(pn)) {
                    repairs.push((pn, r));
                }
            }
            enc.flush(at(n));
            while let Some(r) = enc.poll_repair(at(n)) {
                repairs.push((n, r));
            }
            enc_t.push(t0.elapsed());
            // The receiver: datagrams and repair interleaved as sent, `loss`% of both lost.
            let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ rep as u64;
            let mut lost = || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed % 100 < loss
            };
            let t1 = Instant::now();
            let mut dec = FecDecoder::new(sid, DEFAULT_MAX_WINDOW, DEFAULT_REPAIR_BUDGET);
            let mut missing = 0usize;
            let mut rebuilt = 0usize;
            let mut next_repair = 0;
            for (pn, d) in datagrams.iter().enumerate() {
                while next_repair < repairs.len() && repairs[next_repair].0 <= pn {
                    if !lost() {
                        dec.add_repair(at(pn), &repairs[next_repair].1);
                    }
                    next_repair += 1;
                }
                if lost() {
                    missing += 1;
                } else {
                    dec.add_source(pn as u64, d);
                }
                while let Some((rpn, r)) = dec.poll_recovered() {
                    assert_eq!(r, datagrams[rpn as usize]);
                    rebuilt += 1;
                }
            }
            for (_, r) in &repairs[next_repair..] {
                if !lost() {
                    dec.add_repair(at(n), r);
                }
            }
            dec.finish();
            while let Some((rpn, r)) = dec.poll_recovered() {
                assert_eq!(r, datagrams[rpn as usize]);
                rebuilt += 1;
            }
            dec_t.push(t1.elapsed());
            assert!(rebuilt >= missing, "{rebuilt} rebuilt, {missing} lost: {:?}", dec.stats());
            repairs_n = repairs.len();
            rebuilt_n = rebuilt;
        }
        enc_t.sort();
        dec_t.sort();
        let (e, d) = (enc_t[reps / 2].as_secs_f64(), dec_t[reps / 2].as_secs_f64());
        let mb = (n * DATAGRAM) as f64 / 1e6;
        println!(
            "| --fec {percent} | {loss}% | {e:.3} | {d:.3} | {:.3} | {:.0} | {:.0} | {repairs_n} | {rebuilt_n} |",
            e + d,
            mb / e,
            mb / d
        );
    }
}
