//! The real receiver (`target/release/h3m-recv`, whole stack: receiver core,
//! session layer, file writer, records and the rate-limited report) under
//! forged-datagram floods, one `h3m-recv` process per scenario.
//!
//! For each scenario this program writes the attack as a `.datagrams` capture
//! (4-byte big-endian length + UDP payload records: cleartext short-header
//! packets of session [`SESSION_ID`]) into a temporary directory, with a twin
//! file of the same datagrams under another session ID (the *baseline*: every
//! datagram is read from the file and dropped at the session-ID check). It runs
//! `h3m-recv --input FILE --out DIR --session-id SESSION_ID` on the baseline,
//! then on the attack (standard output to /dev/null: the receiver's per-push
//! lines are rate limited by design, its summary line on standard error is
//! kept), reaps each with `wait4` and prints the datagram count, the peak RSS
//! (`ru_maxrss`, the `VmHWM` of the process), the user + system CPU time per
//! datagram (gross, and net of the baseline, which costs the capture reading
//! and the session-ID check alone), the exit code and summary counters of
//! `h3m-recv`, and whether a genuine push sent after the flood (a promise and
//! its push stream, appended to every attack) was still written intact.
//!
//! Offline mode reads the capture as a stream (a 256 KiB chunk at a time), so
//! the peak RSS is the receiver's: its footprint before any datagram plus its
//! state. The state is also shown as the growth of `VmRSS` (sampled every
//! 5 ms) while the datagrams are handled: from the first sample after
//! `h3m-recv` created its output directory (which it does once the capture is
//! open, before the first datagram) to the highest one.
//! Exits non-zero when an attack run exceeds [`RSS_BUDGET_MIB`] of peak RSS or
//! [`CPU_BUDGET_US`] of CPU per datagram (gross), or the genuine push was lost.
//!
//! Offline input hands every datagram to the receiver at one instant, so no
//! push or orphan timeout fires during a flood: only the count and memory
//! bounds of the receiver protect it (the worst case for memory).
//!
//! Scenarios (one datagram = one packet = one STREAM frame unless said):
//!
//! - `promises`: 1 M PUSH_PROMISEs on stream 0, one per datagram, each for a
//!   path of its own, push IDs 0, 1, 2, ...; no push stream ever arrives.
//! - `promises-sparse`: the same with push IDs 0, 2, 4, ... (every other push
//!   ID never seen: the receiver's record of seen push IDs cannot merge them).
//! - `promises-pushed`: 1 M datagrams each holding a promise and the start of
//!   its push stream (HEADERS with `content-length: 2`, then 1 of the 2 body
//!   bytes): every push begins a resource (a partial file) and stalls.
//! - `fragments`: 256 promised pushes (each with HEADERS and a DATA frame
//!   header of 131 072 bytes) × 65 536 one-byte, non-adjacent body fragments
//!   (every other byte), sent round-robin over the 256 push streams.
//! - `fragments-held`: the same, but the DATA frame header never arrives, so
//!   the fragments are bytes of unknown meaning the receiver would have to
//!   hold rather than hand out.
//! - `orphans`: 100 k push streams (type, push ID, HEADERS, 1 body byte, FIN)
//!   whose promise never arrives.
//! - `claims`: one promise, then 100 k push streams that all claim its push ID
//!   (type, push ID, HEADERS, 1 body byte; no FIN).
//! - `stream0`: 1 M one-byte fragments of stream 0 far ahead of its start
//!   (from offset 2^30 on, disjoint, in descending order so each one is
//!   nearer than those held), every fourth datagram a replay of the one before.
//!
//! Sizes: `H3M_FLOOD_PROMISES` (1 000 000), `H3M_FLOOD_PUSHES` (256),
//! `H3M_FLOOD_FRAGMENTS` (65 536 per push), `H3M_FLOOD_ORPHANS` (100 000, also
//! the streams of `claims`),
//! `H3M_FLOOD_STREAM0` (1 000 000). `H3M_RECV` names another `h3m-recv`;
//! `H3M_FLOOD_KEEP=1` keeps the capture files (to profile `h3m-recv` on them).
//!
//! Run: `cargo build --release -p h3m-receiver`, then
//! `cargo bench -p h3m-benches --bench receiver_floods -- [SCENARIO...]` (all
//! when none is named), or `scripts/bench-floods.sh`.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use h3m_benches::{BenchResult, TempDir, Watched, env_number, summary_fields, timed_lines};
use h3m_proto::SessionId;
use h3m_proto::frame::encode_stream;
use h3m_proto::h3::{self, H3Frame};
use h3m_proto::packet::write_packet;
use h3m_proto::protection::NullProtection;
use h3m_proto::qpack::{HeaderField, encode_field_section};

/// The attacked session (`--session-id`).
const SESSION_ID: &str = "f100d5e55100d0e1";
/// The baseline's datagrams carry this one instead (same length).
const FOREIGN_ID: &str = "0ff0d5e55100d0e1";
/// Peak RSS budget of a receiver run.
const RSS_BUDGET_MIB: f64 = 64.0;
/// CPU budget per attack datagram (gross).
const CPU_BUDGET_US: f64 = 2.0;
/// Longest one `h3m-recv` run may take.
const RUN_LIMIT: Duration = Duration::from_secs(900);
/// Where the stream-0 flood starts.
const STREAM0_BASE: u64 = 1 << 30;

const SCENARIOS: [&str; 8] =
    ["promises", "promises-sparse", "promises-pushed", "fragments", "fragments-held", "orphans", "claims", "stream0"];

/// The scenario sizes.
struct Sizes {
    promises: u64,
    pushes: u64,
    fragments: u64,
    orphans: u64,
    stream0: u64,
}

impl Sizes {
    fn from_env() -> BenchResult<Self> {
        Ok(Sizes {
            promises: env_number("H3M_FLOOD_PROMISES", 1_000_000)?,
            pushes: env_number("H3M_FLOOD_PUSHES", 256)?,
            fragments: env_number("H3M_FLOOD_FRAGMENTS", 65_536)?,
            orphans: env_number("H3M_FLOOD_ORPHANS", 100_000)?,
            stream0: env_number("H3M_FLOOD_STREAM0", 1_000_000)?,
        })
    }
}

fn section(fields: &[(&str, &str)]) -> Vec<u8> {
    let fields: Vec<HeaderField> = fields.iter().map(|(n, v)| HeaderField::new(*n, *v)).collect();
    let mut s = Vec::new();
    encode_field_section(&fields, &mut s);
    s
}

fn h3_err(e: impl std::fmt::Display) -> String {
    format!("encode: {e}")
}

/// A PUSH_PROMISE frame for `path`.
fn promise_frame(push_id: u64, path: &str) -> BenchResult<Vec<u8>> {
    let s = section(&[(":method", "GET"), (":scheme", "https"), (":authority", "localhost"), (":path", path)]);
    let mut f = Vec::new();
    h3::encode_frame(&H3Frame::PushPromise { push_id, field_section: &s }, &mut f).map_err(h3_err)?;
    Ok(f)
}

/// The start of a push stream: type, push ID, HEADERS (`:status 200`,
/// `content-length`), then the header of one DATA frame of `content_length`
/// bytes when `data_header` is set.
fn push_head(push_id: u64, content_length: u64, data_header: bool) -> BenchResult<Vec<u8>> {
    let mut s = Vec::new();
    h3m_proto::varint::encode(h3::PUSH_STREAM_TYPE, &mut s).map_err(h3_err)?;
    h3m_proto::varint::encode(push_id, &mut s).map_err(h3_err)?;
    let headers = section(&[(":status", "200"), ("content-length", &content_length.to_string())]);
    h3::encode_frame(&H3Frame::Headers(&headers), &mut s).map_err(h3_err)?;
    if data_header {
        h3::encode_header(h3::DATA, content_length, &mut s).map_err(h3_err)?;
    }
    Ok(s)
}

/// The stream a push ID is sent on (as h3m's and nghq's senders number them).
fn push_stream_id(push_id: u64) -> u64 {
    3 + 4 * push_id
}

/// Writes the attack and its baseline twin, datagram by datagram.
struct Flood {
    sid: SessionId,
    foreign: SessionId,
    attack: BufWriter<File>,
    baseline: BufWriter<File>,
    /// The next packet number.
    pn: u64,
    datagrams: u64,
    bytes: u64,
    /// Where the next genuine stream-0 frame goes.
    stream0: u64,
    frames: Vec<u8>,
    packet: Vec<u8>,
}

impl Flood {
    fn create(attack: &Path, baseline: &Path) -> BenchResult<Self> {
        let open = |p: &Path| File::create(p).map(BufWriter::new).map_err(|e| format!("{}: {e}", p.display()));
        let sid = |s: &str| SessionId::parse_strict(s).map_err(|e| format!("{s}: {e}"));
        Ok(Flood {
            sid: sid(SESSION_ID)?,
            foreign: sid(FOREIGN_ID)?,
            attack: open(attack)?,
            baseline: open(baseline)?,
            pn: 0,
            datagrams: 0,
            bytes: 0,
            stream0: 0,
            frames: Vec::new(),
            packet: Vec::new(),
        })
    }

    /// Adds a STREAM frame to the datagram being built.
    fn frame(&mut self, stream_id: u64, offset: u64, data: &[u8], fin: bool) -> BenchResult<&mut Self> {
        encode_stream(stream_id, offset, data, fin, true, &mut self.frames).map_err(h3_err)?;
        Ok(self)
    }

    /// Adds a promise at the next offset of stream 0 to the datagram being built.
    fn promise(&mut self, push_id: u64, path: &str) -> BenchResult<&mut Self> {
        let f = promise_frame(push_id, path)?;
        let at = self.stream0;
        self.stream0 += f.len() as u64;
        self.frame(0, at, &f, false)
    }

    /// Sends the datagram built so far (packet number `pn`, or the next one).
    fn send_as(&mut self, pn: Option<u64>) -> BenchResult<()> {
        let pn = pn.unwrap_or_else(|| {
            self.pn += 1;
            self.pn - 1
        });
        for (sid, out) in [(self.sid, &mut self.attack), (self.foreign, &mut self.baseline)] {
            self.packet.clear();
            write_packet(&mut self.packet, &sid, pn, 4, &self.frames, &NullProtection).map_err(h3_err)?;
            out.write_all(&(self.packet.len() as u32).to_be_bytes()).map_err(|e| e.to_string())?;
            out.write_all(&self.packet).map_err(|e| e.to_string())?;
        }
        self.frames.clear();
        self.datagrams += 1;
        self.bytes += 4 + self.packet.len() as u64;
        Ok(())
    }

    fn send(&mut self) -> BenchResult<()> {
        self.send_as(None)
    }

    /// A genuine push after the flood: its promise, then its whole push stream.
    /// Returns the path it is written to (relative to the output directory)
    /// and its body.
    fn genuine(&mut self, push_id: u64, name: &str) -> BenchResult<(PathBuf, Vec<u8>)> {
        let body: Vec<u8> = format!("genuine push after the {name} flood\n").repeat(40).into_bytes();
        let path = format!("/genuine/{name}.txt");
        self.promise(push_id, &path)?.send()?;
        let mut stream = push_head(push_id, body.len() as u64, false)?;
        h3::encode_frame(&H3Frame::Data(&body), &mut stream).map_err(h3_err)?;
        self.frame(push_stream_id(push_id), 0, &stream, true)?.send()?;
        Ok((PathBuf::from(format!("genuine/{name}.txt")), body))
    }

    fn finish(mut self) -> BenchResult<(u64, u64)> {
        self.attack.flush().map_err(|e| e.to_string())?;
        self.baseline.flush().map_err(|e| e.to_string())?;
        Ok((self.datagrams, self.bytes))
    }
}

/// What a scenario wrote.
struct Generated {
    datagrams: u64,
    bytes: u64,
    /// The genuine push: where it is written, and its body.
    genuine: (PathBuf, Vec<u8>),
    /// What the flood is, in words.
    what: String,
}

fn generate(name: &str, sizes: &Sizes, attack: &Path, baseline: &Path) -> BenchResult<Generated> {
    let mut f = Flood::create(attack, baseline)?;
    let (next_push, what) = match name {
        "promises" | "promises-sparse" => {
            let stride = if name == "promises" { 1 } else { 2 };
            for i in 0..sizes.promises {
                f.promise(i * stride, &format!("/flood/promise-{i}.bin"))?.send()?;
            }
            let ids = if stride == 1 { "consecutive" } else { "every other" };
            (sizes.promises * stride, format!("{} promises ({ids} push IDs), no push streams", sizes.promises))
        }
        "promises-pushed" => {
            for i in 0..sizes.promises {
                let mut head = push_head(i, 2, true)?;
                head.push(b'x');
                f.promise(i, &format!("/flood/pushed-{i}.bin"))?.frame(push_stream_id(i), 0, &head, false)?.send()?;
            }
            (sizes.promises, format!("{} promises each with 1 of its 2 body bytes", sizes.promises))
        }
        "fragments" | "fragments-held" => {
            let held = name == "fragments-held";
            let body_len = 2 * sizes.fragments;
            let mut data_start = 0;
            for p in 0..sizes.pushes {
                f.promise(p, &format!("/flood/fragmented-{p}.bin"))?.send()?;
            }
            for p in 0..sizes.pushes {
                let head = push_head(p, body_len, !held)?;
                // Held: the DATA frame header (type 0, 4-byte length) never arrives.
                data_start = head.len() as u64 + if held { 1 + 4 } else { 0 };
                f.frame(push_stream_id(p), 0, &head, false)?.send()?;
            }
            for k in 0..sizes.fragments {
                for p in 0..sizes.pushes {
                    f.frame(push_stream_id(p), data_start + 2 * k, b"x", false)?.send()?;
                }
            }
            let of = if held { "of unknown meaning (DATA frame header withheld)" } else { "of DATA" };
            (sizes.pushes, format!("{} pushes x {} one-byte fragments {of}", sizes.pushes, sizes.fragments))
        }
        "orphans" => {
            for i in 0..sizes.orphans {
                let mut stream = push_head(i, 1, true)?;
                stream.push(b'x');
                f.frame(push_stream_id(i), 0, &stream, true)?.send()?;
            }
            (sizes.orphans, format!("{} push streams without a promise", sizes.orphans))
        }
        "claims" => {
            f.promise(0, "/flood/claimed.bin")?.send()?;
            let mut stream = push_head(0, 2, true)?;
            stream.push(b'x');
            for i in 0..sizes.orphans {
                // Streams 11, 15, ...: stream 7 is left for the genuine push 1.
                f.frame(push_stream_id(2 + i), 0, &stream, false)?.send()?;
            }
            (1, format!("1 promise, then {} push streams all claiming its push ID", sizes.orphans))
        }
        "stream0" => {
            let mut fresh = 0;
            for k in 0..sizes.stream0 {
                if k % 4 == 3 {
                    // A replay of the previous datagram (same packet number, same frame).
                    let (at, pn) = (STREAM0_BASE + 2 * (sizes.stream0 - fresh + 1), f.pn - 1);
                    f.frame(0, at, &[h3::PUSH_PROMISE as u8], false)?.send_as(Some(pn))?;
                } else {
                    let at = STREAM0_BASE + 2 * (sizes.stream0 - fresh);
                    f.frame(0, at, &[h3::PUSH_PROMISE as u8], false)?.send()?;
                    fresh += 1;
                }
            }
            (0, format!("{} one-byte stream-0 fragments from offset 2^30, 1 in 4 replayed", sizes.stream0))
        }
        _ => return Err(format!("unknown scenario {name}")),
    };
    let genuine = f.genuine(next_push, name)?;
    let (datagrams, bytes) = f.finish()?;
    Ok(Generated { datagrams, bytes, genuine, what })
}

/// One `h3m-recv` run.
struct Run {
    code: Option<i32>,
    cpu: f64,
    rss_mib: f64,
    wall: f64,
    summary: String,
    fields: std::collections::HashMap<String, String>,
    stderr_lines: usize,
    /// `VmRSS` (KiB) sampled every [`SAMPLE_EVERY`] from the time the output
    /// directory exists, which `h3m-recv` creates once it has read the whole
    /// capture (and freed the file's bytes).
    samples: Vec<u64>,
}

impl Run {
    /// What handling the datagrams added to the memory the loaded capture
    /// takes (`None`: too few samples, a run of a few tens of ms).
    fn state_mib(&self) -> Option<f64> {
        let (first, max) = (self.samples.first()?, self.samples.iter().max()?);
        (self.samples.len() >= 3).then(|| (*max as f64 - *first as f64) / 1024.0)
    }
}

/// How often a running `h3m-recv`'s `VmRSS` is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(5);

/// The `VmRSS` of a process in KiB (`None` once it has exited).
fn vm_rss_kib(pid: libc::pid_t) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn run_recv(recv: &Path, input: &Path, out: &Path) -> BenchResult<Run> {
    let start = Instant::now();
    let mut child = Command::new(recv)
        .arg("--input")
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(["--session-id", SESSION_ID])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", recv.display()))?;
    let watched = Watched::new(&child);
    let pid = watched.pid;
    let out_dir = out.to_path_buf();
    let sampler = std::thread::spawn(move || {
        let mut samples = Vec::new();
        while let Some(kib) = vm_rss_kib(pid) {
            if out_dir.exists() {
                samples.push(kib);
            }
            std::thread::sleep(SAMPLE_EVERY);
        }
        samples
    });
    let err = timed_lines(child.stderr.take().ok_or("h3m-recv stderr")?);
    let exit = watched.wait(Instant::now() + RUN_LIMIT)?;
    let lines = err.join().unwrap_or_default();
    let samples = sampler.join().unwrap_or_default();
    let summary = lines
        .iter()
        .rev()
        .find_map(|(_, l)| l.strip_prefix("h3m-recv: summary: "))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("(no summary; stderr: {:?})", lines.iter().take(3).collect::<Vec<_>>()));
    Ok(Run {
        code: exit.code,
        cpu: exit.cpu,
        rss_mib: exit.max_rss_kib as f64 / 1024.0,
        wall: exit.at.duration_since(start).as_secs_f64(),
        fields: summary_fields(&lines),
        summary,
        stderr_lines: lines.len(),
        samples,
    })
}

/// `target/release/h3m-recv` (next to this bench's `deps/` directory), or `H3M_RECV`.
fn receiver_binary() -> BenchResult<PathBuf> {
    if let Some(p) = std::env::var_os("H3M_RECV") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let release = exe.parent().and_then(Path::parent).ok_or("cannot locate target/release")?;
    let recv = release.join("h3m-recv");
    if !recv.is_file() {
        return Err(format!("{} is missing: run `cargo build --release -p h3m-receiver` first", recv.display()));
    }
    Ok(recv)
}

/// The counters worth showing for a scenario, from the summary line.
const KEY_FIELDS: [&str; 16] = [
    "complete",
    "incomplete",
    "unpromised",
    "pushes_evicted",
    "stream_errors",
    "streams_too_fragmented",
    "orphan_streams_dropped",
    "request_fragments_forgotten",
    "dropped_buffer_bytes",
    "late_bytes",
    "replayed_packets",
    "lost_pushes",
    "headless_streams",
    "suppressed_lines",
    "dropped_foreign_session",
    "session_end",
];

/// Runs one scenario; `Err` when a bound was broken (or the run failed).
fn scenario(name: &str, sizes: &Sizes, recv: &Path) -> BenchResult<()> {
    let dir = TempDir::new(&format!("floods-{name}"))?;
    let keep = std::env::var_os("H3M_FLOOD_KEEP").is_some();
    let (attack, baseline) = (dir.0.join("attack.datagrams"), dir.0.join("baseline.datagrams"));
    let t0 = Instant::now();
    let g = generate(name, sizes, &attack, &baseline)?;
    let gen_secs = t0.elapsed().as_secs_f64();
    let base = run_recv(recv, &baseline, &dir.0.join("out-baseline"))?;
    if !keep {
        fs::remove_file(&baseline).map_err(|e| e.to_string())?;
    }
    let out = dir.0.join("out");
    let run = run_recv(recv, &attack, &out)?;
    let genuine_ok = fs::read(out.join(&g.genuine.0)).is_ok_and(|b| b == g.genuine.1);
    // The receiver's own state: the growth of VmRSS while the datagrams are
    // handled (the baseline's, about 0, is the check).
    let mib = |m: Option<f64>| m.map_or("n/a".to_string(), |m| format!("{m:+.1} MiB"));
    let state = format!("{} (baseline {})", mib(run.state_mib()), mib(base.state_mib()));
    let n = g.datagrams as f64;
    let us = |cpu: f64| cpu * 1e6 / n.max(1.0);
    let code = |c: Option<i32>| c.map_or("killed".to_string(), |c| c.to_string());
    println!(
        "recv-flood {name}: {}, then 1 genuine push: {} datagrams ({:.1} MB, generated in {gen_secs:.1} s)",
        g.what,
        g.datagrams,
        g.bytes as f64 / 1e6
    );
    println!(
        "recv-flood {name}: h3m-recv exit {}; peak RSS {:.1} MiB (baseline {:.1} MiB; receiver state {state}); \
         CPU {:.2} s = {:.3} us/datagram (baseline {:.2} s = {:.3} us/datagram, net {:.3} us/datagram); \
         {:.2} s wall; genuine push after the flood: {}",
        code(run.code),
        run.rss_mib,
        base.rss_mib,
        run.cpu,
        us(run.cpu),
        base.cpu,
        us(base.cpu),
        us(run.cpu - base.cpu),
        run.wall,
        if genuine_ok { "written intact" } else { "NOT WRITTEN" },
    );
    let keys: Vec<String> = KEY_FIELDS.iter().filter_map(|k| run.fields.get(*k).map(|v| format!("{k}={v}"))).collect();
    println!("recv-flood {name}: counters: {} (stderr lines: {})", keys.join(" "), run.stderr_lines);
    println!("recv-flood {name}: summary: {}", run.summary);
    let mut broken = Vec::new();
    if run.rss_mib > RSS_BUDGET_MIB {
        broken.push(format!("peak RSS {:.1} MiB over {RSS_BUDGET_MIB} MiB", run.rss_mib));
    }
    if us(run.cpu) > CPU_BUDGET_US {
        broken.push(format!("CPU {:.3} us/datagram over {CPU_BUDGET_US} us", us(run.cpu)));
    }
    if !genuine_ok {
        broken.push("the genuine push after the flood was not written intact".to_string());
    }
    if run.code.is_none_or(|c| c > 1) {
        broken.push(format!("h3m-recv exited {}", code(run.code)));
    }
    if keep {
        println!("recv-flood {name}: files kept in {}", dir.0.display());
        std::mem::forget(dir);
    }
    if broken.is_empty() { Ok(()) } else { Err(format!("{name}: {}", broken.join("; "))) }
}

fn main() -> ExitCode {
    let sizes = match Sizes::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("recv-flood: {e}");
            return ExitCode::from(2);
        }
    };
    // `cargo bench` passes `--bench`; every other argument names a scenario.
    let named: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    for n in &named {
        if !SCENARIOS.contains(&n.as_str()) {
            eprintln!("recv-flood: unknown scenario {n} (one of {})", SCENARIOS.join(", "));
            return ExitCode::from(2);
        }
    }
    let recv = match receiver_binary() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("recv-flood: {e}");
            return ExitCode::from(2);
        }
    };
    let chosen: Vec<&str> =
        if named.is_empty() { SCENARIOS.to_vec() } else { named.iter().map(String::as_str).collect() };
    let mut failed = false;
    for name in chosen {
        if let Err(e) = scenario(name, &sizes, &recv) {
            eprintln!("recv-flood: FAIL {e}");
            failed = true;
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
