//! Packet protection cost: protected against unprotected `h3m-send` → `h3m-recv` goodput on loopback, in
//! one run, with the ratios; then the same suites' per-packet crypto cost in process, without sockets.
//!
//! Run (the bench runs the release binaries, it does not build them):
//!
//! ```text
//! cargo build --release -p h3m-sender -p h3m-receiver
//! cargo bench -p h3m-benches --bench protection
//! ```
//!
//! or `scripts/bench-protection.sh`, which does both. Linux only. The traffic stays on this host: each run
//! uses a random group in 239.255.0.0/16, a random port, outgoing interface 127.0.0.1 (`lo`) and TTL 1.
//! The file goes to a temporary directory on `/dev/shm` (the system temporary directory if there is none),
//! deleted at the end. Senders are pinned to CPU 0 and receivers to CPU 1 (with 2 CPUs or more), as in the
//! loopback bench, whose helpers (`h3m_benches`) this one shares.
//!
//! # 1. End to end, per cipher suite
//!
//! Suites `0000` (null, cleartext, as nghq), `1301` (AES-128-GCM), `1302` (AES-256-GCM), `1303`
//! (ChaCha20-Poly1305). Each run starts `h3m-recv --alt-svc LINE --interface 127.0.0.1 --idle-timeout 30
//! --push-timeout 2 --out DIR`, waits until it has joined, then `h3m-send FILE --cipher-suite C [--key K
//! --iv IV] --rate R --print-alt-svc` to the same group. The bench draws a fresh session ID, key and IV
//! for every run, writes the advertisement the receiver gets (the sender's own `--print-alt-svc` line comes
//! too late: the sender starts sending as soon as it has printed it), and checks that the line the sender
//! printed carries the same group, session ID, suite, key, IV and header-protection rule.
//!
//! The suites are interleaved: `H3M_BENCH_REPS` rounds (default 3) of `0000,1301,1302,1303`, so that drift
//! (other work on the machine, thermal) hits every suite alike; the medians per suite are compared.
//!
//! * *goodput*: file bits / (first datagram, timestamped by a probe socket → the receiver's `complete`
//!   line), in Mbit/s of body. Only a *loss-free* run counts: every datagram the sender sent arrived, none
//!   failed authentication, the receiver says `complete=1` and exits 0, the SHA-256 of the file it wrote
//!   equals the source's, and the sender's advertisement matches. Any other run is printed with what went
//!   wrong and left out of the medians; the summary says how many runs of each suite were loss-free.
//! * *ratio*: a suite's median goodput / the null suite's, same run of the bench. The sender is paced
//!   (`H3M_BENCH_RATE`, default `2G`, the rate of the loopback bench's loss-free figure), so when the receiver
//!   keeps up the ratio is ~0.99 (a protected datagram carries a 16-byte tag, so ~1.4 % more datagrams for
//!   the same body at the same UDP rate) and a lower ratio means protection made the receiver (or sender)
//!   fall behind the pace.
//! * *rx µs/dgram*: the receiver's user + system CPU (from `wait4`) / datagrams it got. *rx capacity*: body
//!   bits the receiver took in per CPU-second, the rate it could absorb CPU-bound on a core of its own; its
//!   ratio to null is the goodput ratio to expect when the receiver, not the pace, is the limit.
//!
//! # 2. In process, per cipher suite
//!
//! `h3m_proto::packet::write_packet` (what `SessionEncoder` calls: AEAD seal, then header protection) and
//! `open_packet` after copying the datagram into a scratch buffer (what `Receiver::handle_datagram` does:
//! header unprotection, then AEAD open) on 1200-byte packets (8-byte session ID, 4-byte packet number,
//! consecutive packet numbers) through `&dyn PacketProtection`, one thread pinned to CPU 1. Each is timed for
//! `H3M_BENCH_INPROC_MS` (default 300) per round, rounds interleaved like above, medians printed as
//! packets/s, ns per packet, the ratio to null and the ns added to null. The last lines set the added
//! open cost against the receiver's per-datagram CPU of the end-to-end runs.
//!
//! Environment: `H3M_BENCH_BYTES` (file size in bytes, or with a K/M/G suffix (binary); default 256M),
//! `H3M_BENCH_RATE` (`h3m-send --rate`, default `2G`), `H3M_BENCH_REPS` (rounds, default 3),
//! `H3M_BENCH_SUITES` (default `0000,1301,1302,1303`), `H3M_BENCH_INPROC_MS` (default 300). The target (issue
//! 5 item 6) is printed last: AES-128-GCM goodput ≥ 0.7 × null. The bench exits 0 when it measured, whatever
//! the verdict, and non-zero when it could not run.

use std::hint::black_box;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use h3m_benches::{
    BenchResult, DATAGRAM, H3mRun, H3mSession, PUSH_TIMEOUT_SECS, RECEIVER_CPU, Rng, SENDER_CPU, TempDir, binaries,
    env_number, generate, hex, median, pin, run_h3m,
};
use h3m_proto::SessionId;
use h3m_proto::aead::{AeadProtection, HP_RULE_EXTENSION};
use h3m_proto::altsvc::{self, Advertisement, Extension};
use h3m_proto::packet::{open_packet, write_packet};
use h3m_proto::protection::{CipherSuite, NullProtection, PacketProtection};
use ring::rand::{SecureRandom, SystemRandom};

/// The default rate: the one of the loopback bench's loss-free figure (README, `H3M_BENCH_RATE=2G`).
const DEFAULT_RATE: &str = "2G";
/// The in-process packets' session ID (8 bytes, like the end-to-end runs') and packet-number length.
const INPROC_SESSION_ID: &str = "0123456789abcdef";
const PN_LEN: usize = 4;

fn main() -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("protection bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn name(suite: CipherSuite) -> &'static str {
    match suite {
        CipherSuite::Null => "null",
        CipherSuite::Aes128Gcm => "AES-128-GCM",
        CipherSuite::Aes256Gcm => "AES-256-GCM",
        CipherSuite::ChaCha20Poly1305 => "ChaCha20-Poly1305",
    }
}

fn label(suite: CipherSuite) -> String {
    format!("{:04x} {:<17}", suite.code(), name(suite))
}

/// A size in bytes from the environment: an integer, optionally with a binary K/M/G (or KiB/MiB/GiB) suffix.
fn env_bytes(var: &str, default: u64) -> BenchResult<u64> {
    let Ok(v) = std::env::var(var) else { return Ok(default) };
    let t = v.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        _ => return Err(format!("{var}={v}: not a size (bytes, or with a K/M/G suffix)")),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|&n| n > 0)
        .ok_or(format!("{var}={v}: not a positive size"))
}

fn env_suites() -> BenchResult<Vec<CipherSuite>> {
    let v = std::env::var("H3M_BENCH_SUITES").unwrap_or_else(|_| "0000,1301,1302,1303".to_owned());
    v.split(',')
        .map(|s| {
            u16::from_str_radix(s.trim(), 16)
                .ok()
                .and_then(CipherSuite::from_code)
                .ok_or(format!("H3M_BENCH_SUITES={v}: {s:?} is not 0000, 1301, 1302 or 1303"))
        })
        .collect()
}

/// Fresh key and IV for `suite` (empty for the null suite).
fn fresh_keys(suite: CipherSuite) -> BenchResult<(Vec<u8>, Vec<u8>)> {
    let rng = SystemRandom::new();
    let mut key = vec![0u8; suite.key_len()];
    let mut iv = vec![0u8; suite.iv_len()];
    rng.fill(&mut key).and_then(|()| rng.fill(&mut iv)).map_err(|_| "no random bytes for a key".to_owned())?;
    Ok((key, iv))
}

fn protection(suite: CipherSuite, key: &[u8], iv: &[u8]) -> BenchResult<Box<dyn PacketProtection>> {
    if suite == CipherSuite::Null {
        return Ok(Box::new(NullProtection));
    }
    let p = AeadProtection::from_advertisement(suite, key, iv).map_err(|e| format!("{}: {e}", name(suite)))?;
    Ok(Box::new(p))
}

// ---------------------------------------------------------------------------------------------------
// 1. End to end

/// The advertisement `h3m-send --print-alt-svc` prints for these parameters (its `advertisement()`).
fn advertisement(group: SocketAddr, session_id: SessionId, suite: CipherSuite, key: &[u8], iv: &[u8]) -> Advertisement {
    let mut adv = Advertisement::new("h3m-07", group);
    adv.session_id = session_id;
    adv.idle_timeout_ms = Some(60_000);
    if suite != CipherSuite::Null {
        adv.cipher_suite = suite;
        adv.key = Some(key.to_vec());
        adv.iv = Some(iv.to_vec());
        adv.extensions.push(Extension { code: HP_RULE_EXTENSION, value: None });
    }
    adv
}

/// Whether the sender's printed advertisement carries what the receiver was given.
fn same_session(printed: Option<&str>, given: &Advertisement) -> bool {
    let Some(Ok(p)) = printed.map(altsvc::parse_one) else { return false };
    let hp_rule = |a: &Advertisement| a.extensions.iter().any(|e| e.code == HP_RULE_EXTENSION);
    p.group == given.group
        && p.session_id == given.session_id
        && p.cipher_suite == given.cipher_suite
        && p.key == given.key
        && p.iv == given.iv
        && hp_rule(&p) == hp_rule(given)
}

struct SuiteRun {
    run: H3mRun,
    alt_svc_ok: bool,
}

impl SuiteRun {
    fn ok(&self) -> bool {
        self.run.loss_free() && self.run.dropped_protection == 0 && self.alt_svc_ok
    }

    fn mbit(&self) -> f64 {
        self.run.goodput_gbit * 1e3
    }

    /// What went wrong, or `ok`.
    fn verdict(&self) -> String {
        let r = &self.run;
        let mut v = Vec::new();
        let lost = r.sent_datagrams.saturating_sub(r.received_datagrams);
        if lost > 0 {
            v.push(format!("LOST {lost} datagrams ({:.2} %)", lost as f64 * 100.0 / r.sent_datagrams.max(1) as f64));
        }
        if r.dropped_protection > 0 {
            v.push(format!("{} FAILED AUTHENTICATION", r.dropped_protection));
        }
        if !r.complete {
            v.push(format!("INCOMPLETE ({} of {} body bytes)", r.body_received, r.body_len));
        } else if !r.sha_ok {
            v.push("SHA-256 DIFFERS".to_owned());
        }
        if r.exit_code != Some(0) {
            v.push(format!("rx exit {}", r.exit_code.map_or("signal".to_owned(), |c| c.to_string())));
        }
        if !self.alt_svc_ok {
            v.push("SENDER'S ALT-SVC DIFFERS".to_owned());
        }
        if v.is_empty() { "ok (loss-free, sha256 matches)".to_owned() } else { v.join(", ") }
    }
}

fn run_suite(
    bins: &(std::path::PathBuf, std::path::PathBuf),
    dir: &std::path::Path,
    src: &std::path::Path,
    src_sha: &[u8; 32],
    rate: &str,
    suite: CipherSuite,
    rng: &mut Rng,
) -> BenchResult<SuiteRun> {
    let group = rng.group();
    let session_hex = format!("{:016x}", rng.next_u64());
    let session_id = SessionId::from_hex(&session_hex).map_err(|e| format!("session ID: {e}"))?;
    let (key, iv) = fresh_keys(suite)?;
    let adv = advertisement(group, session_id, suite, &key, &iv);
    let line = adv.to_string();
    let mut send_args = vec!["--cipher-suite".to_owned(), format!("{:04x}", suite.code())];
    if suite != CipherSuite::Null {
        send_args.extend(["--key".to_owned(), hex(&key), "--iv".to_owned(), hex(&iv)]);
    }
    send_args.push("--print-alt-svc".to_owned());
    let session = H3mSession { group, session_id: &session_hex, rate, send_args: &send_args, alt_svc: Some(&line) };
    let run = run_h3m(bins, dir, src, src_sha, &session)?;
    let alt_svc_ok = same_session(run.sender_alt_svc.as_deref(), &adv);
    Ok(SuiteRun { run, alt_svc_ok })
}

fn print_run(round: usize, suite: CipherSuite, s: &SuiteRun) {
    let r = &s.run;
    println!(
        "  round {round} {}  {:>8.1} Mbit/s  window {:.3} s  datagrams {} sent / {} got  rx CPU {:.3} s = {:.2} us/dgram  \
         tx CPU {:.3} s  {}",
        label(suite),
        s.mbit(),
        r.window,
        r.sent_datagrams,
        r.received_datagrams,
        r.rx_cpu,
        r.rx_us_per_datagram(),
        r.tx_cpu,
        s.verdict()
    );
}

/// Medians of one suite's loss-free runs.
struct SuiteSummary {
    suite: CipherSuite,
    runs: usize,
    ok: usize,
    goodput_mbit: f64,
    datagrams: f64,
    rx_us: f64,
    tx_cpu: f64,
    rx_capacity_mbit: f64,
    /// Goodput of each round, NaN where the run was not loss-free.
    per_round: Vec<f64>,
}

fn summarize(suite: CipherSuite, runs: &[&SuiteRun]) -> SuiteSummary {
    let good: Vec<&SuiteRun> = runs.iter().copied().filter(|r| r.ok()).collect();
    let m = |f: &dyn Fn(&SuiteRun) -> f64| median(good.iter().map(|r| f(r)).collect());
    SuiteSummary {
        suite,
        runs: runs.len(),
        ok: good.len(),
        goodput_mbit: m(&|r| r.mbit()),
        datagrams: m(&|r| r.run.sent_datagrams as f64),
        rx_us: m(&|r| r.run.rx_us_per_datagram()),
        tx_cpu: m(&|r| r.run.tx_cpu),
        rx_capacity_mbit: m(&|r| r.run.rx_capacity_gbit() * 1e3),
        per_round: runs.iter().map(|r| if r.ok() { r.mbit() } else { f64::NAN }).collect(),
    }
}

fn ratio_text(x: f64) -> String {
    if x.is_finite() { format!("{x:.3}") } else { "n/a".to_owned() }
}

// ---------------------------------------------------------------------------------------------------
// 2. In process

struct Inproc {
    seal_pps: f64,
    open_pps: f64,
}

/// Packets per second of `f` (which handles 64 packets per call) over about `dur`.
fn rate_of(dur: Duration, mut f: impl FnMut()) -> f64 {
    // Warm up (caches, branch predictors, CPU frequency).
    for _ in 0..64 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < dur {
        f();
        n += 64;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn inproc(suite: CipherSuite, dur: Duration, rng: &mut Rng) -> BenchResult<Inproc> {
    let sid = SessionId::from_hex(INPROC_SESSION_ID).map_err(|e| format!("session ID: {e}"))?;
    let (key, iv) = fresh_keys(suite)?;
    let p = protection(suite, &key, &iv)?;
    let p: &dyn PacketProtection = p.as_ref();
    let payload_len = DATAGRAM - (1 + sid.len() + PN_LEN + p.tag_len());
    let payload: Vec<u8> = (0..payload_len).map(|_| rng.next_u64() as u8).collect();

    let mut out = Vec::with_capacity(DATAGRAM);
    let mut pn = 0u64;
    let mut failed = false;
    let seal_pps = rate_of(dur, || {
        for _ in 0..64 {
            out.clear();
            failed |= write_packet(&mut out, &sid, pn, PN_LEN, black_box(&payload), p).is_err();
            black_box(&out);
            pn += 1;
        }
    });
    if failed || out.len() != DATAGRAM {
        return Err(format!("{}: write_packet failed or made {} bytes", name(suite), out.len()));
    }

    const PACKETS: u64 = 1024;
    let mut sealed = Vec::new();
    for pn in 0..PACKETS {
        let mut d = Vec::with_capacity(DATAGRAM);
        write_packet(&mut d, &sid, pn, PN_LEN, &payload, p).map_err(|e| format!("{}: {e}", name(suite)))?;
        sealed.push(d);
    }
    let mut scratch = Vec::with_capacity(DATAGRAM);
    let mut next = 0u64;
    let mut bad = 0u64;
    let open_pps = rate_of(dur, || {
        for _ in 0..64 {
            scratch.clear();
            scratch.extend_from_slice(&sealed[next as usize]);
            match open_packet(&mut scratch, &sid, next.checked_sub(1), p) {
                Ok(o) => bad += u64::from(o.packet_number != next || o.payload.len() != payload_len),
                Err(_) => bad += 1,
            }
            next = (next + 1) % PACKETS;
        }
    });
    if bad > 0 {
        return Err(format!("{}: {bad} packets did not open to what was sealed", name(suite)));
    }
    Ok(Inproc { seal_pps, open_pps })
}

fn inproc_section(suites: &[CipherSuite], reps: usize, dur: Duration) -> BenchResult<Vec<(CipherSuite, f64, f64)>> {
    let suites = suites.to_vec();
    let t = thread::spawn(move || -> BenchResult<Vec<(CipherSuite, f64, f64)>> {
        pin(0, RECEIVER_CPU);
        let mut rng = Rng::seeded();
        let mut all: Vec<Vec<Inproc>> = suites.iter().map(|_| Vec::new()).collect();
        for round in 1..=reps {
            for (i, &suite) in suites.iter().enumerate() {
                let r = inproc(suite, dur, &mut rng)?;
                println!(
                    "  round {round} {}  seal+protect {:>9.0} packets/s ({:>6.1} ns)  unprotect+open {:>9.0} packets/s \
                     ({:>6.1} ns)",
                    label(suite),
                    r.seal_pps,
                    1e9 / r.seal_pps,
                    r.open_pps,
                    1e9 / r.open_pps
                );
                let _ = std::io::stdout().flush();
                all[i].push(r);
            }
        }
        Ok(suites
            .iter()
            .zip(all)
            .map(|(&s, v)| {
                let seal = median(v.iter().map(|r| r.seal_pps).collect());
                let open = median(v.iter().map(|r| r.open_pps).collect());
                (s, seal, open)
            })
            .collect())
    });
    t.join().map_err(|_| "in-process bench panicked".to_owned())?
}

// ---------------------------------------------------------------------------------------------------

fn bench() -> BenchResult<()> {
    let bins = binaries()?;
    let bytes = env_bytes("H3M_BENCH_BYTES", 256 << 20)?;
    let reps = env_number("H3M_BENCH_REPS", 3)? as usize;
    let rate = std::env::var("H3M_BENCH_RATE").unwrap_or_else(|_| DEFAULT_RATE.to_owned());
    let suites = env_suites()?;
    let inproc_ms = env_number("H3M_BENCH_INPROC_MS", 300)?;
    let mut rng = Rng::seeded();
    let dir = TempDir::new("protection")?;
    let src = dir.0.join("big.bin");
    let t = Instant::now();
    let src_sha = generate(&src, bytes, &mut rng)?;
    println!(
        "h3m packet-protection benchmark (see the header of benches/benches/protection.rs for what each number means)"
    );
    println!(
        "  file {} bytes ({:.1} MiB) of pseudo-random bytes, sha256 {}..., generated in {:.1} s into {} (removed at the end)",
        bytes,
        bytes as f64 / f64::from(1 << 20),
        &hex(&src_sha)[..16],
        t.elapsed().as_secs_f64(),
        dir.0.display()
    );
    println!(
        "  {DATAGRAM}-byte datagrams, random groups in 239.255.0.0/16, interface 127.0.0.1 (lo), TTL 1; senders on CPU \
         {SENDER_CPU}, receivers on CPU {RECEIVER_CPU}; {} CPUs",
        thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("  binaries: {} and {}", bins.0.display(), bins.1.display());
    println!(
        "  h3m-send --rate {rate} --cipher-suite C [--key K --iv IV] --print-alt-svc; h3m-recv --alt-svc LINE \
         --push-timeout {PUSH_TIMEOUT_SECS}; fresh session ID, key and IV per run"
    );

    // 1. End to end, suites interleaved.
    println!(
        "\n== end to end: {reps} rounds of {} ==",
        suites.iter().map(|s| format!("{:04x}", s.code())).collect::<Vec<_>>().join(",")
    );
    let mut runs: Vec<(usize, CipherSuite, SuiteRun)> = Vec::new();
    for round in 1..=reps {
        for &suite in &suites {
            let r = run_suite(&bins, &dir.0, &src, &src_sha, &rate, suite, &mut rng)?;
            print_run(round, suite, &r);
            let _ = std::io::stdout().flush();
            runs.push((round, suite, r));
        }
    }
    drop(dir);
    let summaries: Vec<SuiteSummary> = suites
        .iter()
        .map(|&s| summarize(s, &runs.iter().filter(|(_, x, _)| *x == s).map(|(_, _, r)| r).collect::<Vec<_>>()))
        .collect();
    let null = summaries.iter().find(|s| s.suite == CipherSuite::Null);
    println!("\n== end to end: medians of the loss-free runs per suite; ratio = suite / null (same bench run) ==");
    for s in &summaries {
        let (ratio, per_round, dgram_ratio, rx_extra, cap_ratio) = match null {
            Some(n) => (
                s.goodput_mbit / n.goodput_mbit,
                s.per_round.iter().zip(&n.per_round).map(|(a, b)| ratio_text(a / b)).collect::<Vec<_>>().join(" "),
                s.datagrams / n.datagrams,
                s.rx_us - n.rx_us,
                s.rx_capacity_mbit / n.rx_capacity_mbit,
            ),
            None => (f64::NAN, "n/a".to_owned(), f64::NAN, f64::NAN, f64::NAN),
        };
        println!(
            "  {}  goodput {:>8.1} Mbit/s  ratio {} (per round: {per_round})  loss-free {}/{}  datagrams {:.0} ({} x null)  \
             rx {:.2} us/dgram ({:+.2})  rx capacity {:.0} Mbit/s per CPU-s (ratio {})  tx CPU {:.2} s",
            label(s.suite),
            s.goodput_mbit,
            ratio_text(ratio),
            s.ok,
            s.runs,
            s.datagrams,
            ratio_text(dgram_ratio),
            s.rx_us,
            rx_extra,
            s.rx_capacity_mbit,
            ratio_text(cap_ratio),
            s.tx_cpu,
        );
    }
    let _ = std::io::stdout().flush();

    // 2. In process.
    println!(
        "\n== in process: write_packet (seal + header protection) and open_packet (copy, header unprotection, open), \
         1200-byte packets, 1 thread on CPU {RECEIVER_CPU}, {inproc_ms} ms per figure, {reps} rounds =="
    );
    let inproc = inproc_section(&suites, reps, Duration::from_millis(inproc_ms))?;
    println!("\n== in process: medians; ratio = suite / null packets/s; +ns = added to null per packet ==");
    let null_in = inproc.iter().find(|(s, _, _)| *s == CipherSuite::Null).map(|&(_, a, b)| (a, b));
    for &(suite, seal, open) in &inproc {
        let (sr, so, sn, on) = null_in.map_or((f64::NAN, f64::NAN, f64::NAN, f64::NAN), |(ns, no)| {
            (seal / ns, open / no, 1e9 / seal - 1e9 / ns, 1e9 / open - 1e9 / no)
        });
        println!(
            "  {}  seal+protect {:>9.0} packets/s ({:.2} Gbit/s, {:>6.1} ns, ratio {}, {:+.1} ns)  unprotect+open \
             {:>9.0} packets/s ({:.2} Gbit/s, {:>6.1} ns, ratio {}, {:+.1} ns)",
            label(suite),
            seal,
            seal * (DATAGRAM * 8) as f64 / 1e9,
            1e9 / seal,
            ratio_text(sr),
            sn,
            open,
            open * (DATAGRAM * 8) as f64 / 1e9,
            1e9 / open,
            ratio_text(so),
            on
        );
    }

    // What the in-process cost predicts for the receiver, against what the end-to-end runs measured.
    if let (Some(n), Some((_, no))) = (null, null_in) {
        println!("\n== receiver CPU per datagram: null end to end + in-process open cost added, against measured ==");
        for s in summaries.iter().filter(|s| s.suite != CipherSuite::Null) {
            let Some(&(_, _, open)) = inproc.iter().find(|(x, _, _)| *x == s.suite) else { continue };
            let added_us = (1e9 / open - 1e9 / no) / 1e3;
            let predicted = n.rx_us + added_us;
            println!(
                "  {}  predicted {:.2} us/dgram ({:.2} + {:.2}), measured {:.2}; CPU-bound goodput ratio predicted {}, \
                 measured rx-capacity ratio {}",
                label(s.suite),
                predicted,
                n.rx_us,
                added_us,
                s.rx_us,
                ratio_text(n.rx_us / predicted * n.datagrams / s.datagrams),
                ratio_text(s.rx_capacity_mbit / n.rx_capacity_mbit)
            );
        }
    }

    println!("\n== target (issue 5 item 6): AES-128-GCM goodput >= 0.7 x null, loss-free, same run ==");
    match (null, summaries.iter().find(|s| s.suite == CipherSuite::Aes128Gcm)) {
        (Some(n), Some(a)) => {
            let ratio = a.goodput_mbit / n.goodput_mbit;
            let pass = ratio >= 0.7 && a.ok == a.runs && n.ok == n.runs;
            println!(
                "  AES-128-GCM / null = {} ({:.1} / {:.1} Mbit/s; loss-free {}/{} and {}/{} runs): {}",
                ratio_text(ratio),
                a.goodput_mbit,
                n.goodput_mbit,
                a.ok,
                a.runs,
                n.ok,
                n.runs,
                if pass { "PASS" } else { "FAIL" }
            );
        }
        _ => println!("  not measured (H3M_BENCH_SUITES lacks 0000 or 1301)"),
    }
    Ok(())
}
