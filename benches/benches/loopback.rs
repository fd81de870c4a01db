//! Loopback throughput: h3m end to end next to the raw UDP ceiling of the same path, in one run.
//!
//! Run (the bench runs the release binaries, it does not build them):
//!
//! ```text
//! cargo build --release -p h3m-sender -p h3m-receiver
//! cargo bench -p h3m-benches --bench loopback
//! ```
//!
//! or `scripts/bench-loopback.sh`, which does both. Linux only. The traffic stays on this host: the
//! group is a random one in 239.255.0.0/16, the port is random, the outgoing interface is 127.0.0.1 (`lo`)
//! and the TTL is 1. The files go to a temporary directory on `/dev/shm` (tmpfs; the system temporary
//! directory if there is no `/dev/shm`), deleted at the end. Sender processes and threads are pinned
//! to CPU 0, receivers to CPU 1 (when there are 2 CPUs or more).
//!
//! Each repetition measures, in this order:
//!
//! 1. **h3m**: `h3m-send FILE --rate max` (one pseudo-random file, 1 GiB by default, 1200-byte
//!    datagrams, unpaced) to a live `h3m-recv --group G --interface 127.0.0.1 --out DIR`.
//!    * *window*: from the first datagram of the session to the receiver's completion. The first
//!      datagram is timestamped by a probe socket of this bench that joins the group just before the
//!      sender starts and leaves as soon as it has one datagram; the completion is the moment the
//!      receiver prints its `complete`/`incomplete` line (its stdout is line-buffered, and it prints the
//!      line after the file is verified, synced and renamed into place). As a cross-check, the window
//!      is also derived from the sender alone: (sender exit − the send time it prints) → receiver line.
//!    * *goodput*: bytes of the file written intact / window (0 if the file did not arrive intact),
//!      in Gbit/s of body (the UDP payload is ~2 % more: QUIC and HTTP/3 framing).
//!    * *CPU*: user + system seconds of each process from `wait4` (the sender's includes hashing the
//!      file before sending it, and, on `lo`, the kernel's delivery of every datagram to the receiving
//!      sockets, which runs in the sender's context); *rx µs/dgram* = receiver CPU / datagrams it got.
//!    * *Gbit/s of body per rx CPU-second*: body bytes the receiver took in / its CPU seconds, i.e. the
//!      rate it could absorb if it were CPU-bound on a core of its own. An estimate, printed because an
//!      unpaced sender on `lo` outruns the receiver and then the goodput is 0.
//!    * *rx RSS*: the receiver's peak RSS (`ru_maxrss` from `wait4`).
//!    * *loss-free*: the receiver got every datagram the sender sent, its summary says `complete=1`, it
//!      exited 0, and the SHA-256 of the file it wrote equals the source's.
//! 2. **raw send_to**: one thread `send_to`s as many 1200-byte datagrams as the h3m sender sent (blocking
//!    `std` socket from `h3m_net::open_sender`), another drains them with `h3m_net::RecvSocket::recv_batch`
//!    (recvmmsg + GRO, 16 MiB buffer like `h3m-recv`) counting bytes.
//! 3. **raw GSO**: the same with `h3m_net::SendSocket::send_batch` in batches of `gso_segments(1200)` (54).
//!
//! For the raw runs: *sent/s* is datagrams / the sender's time; *delivered* Gbit/s is UDP payload bytes
//! received / (first send → last datagram received); *received* shows the loss. The ceiling used in
//! the ratios is the delivered rate. Note that on `lo` a GSO super-datagram reaches a GRO receiver without
//! being segmented, so the GSO ceiling on `lo` is far above what a real NIC or veth would carry.
//!
//! Every figure is measured `H3M_BENCH_REPS` times (default 3) and the median is printed. The file size
//! in MiB is `H3M_BENCH_MIB` (default 1024); `H3M_BENCH_RATE` replaces `max` as the sender's `--rate`
//! (e.g. `5G`, for a loss-free h3m figure). The targets (from the issue) are printed last: h3m goodput
//! ≥ 70 % of the GSO ceiling, loss-free, receiver peak RSS < 64 MiB. The bench exits 0 when it measured,
//! whatever the verdicts, and non-zero when it could not run.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use h3m_net::{Interface, MulticastConfig, RecvBatch, RecvSocket, SendSocket};

const DATAGRAM: usize = 1200;
const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;
const SENDER_CPU: usize = 0;
const RECEIVER_CPU: usize = 1;
/// The receive buffer `h3m-recv` asks for (`LiveOptions::recv_buffer`).
const RECV_BUFFER: usize = 16 << 20;
/// The send buffer `h3m-send` asks for.
const SEND_BUFFER: usize = 4 << 20;
/// The receiver gives up on a stalled push after this long (lossy runs end sooner).
const PUSH_TIMEOUT_SECS: &str = "2";
/// Longest an h3m run may take before both processes are killed.
const RUN_LIMIT: Duration = Duration::from_secs(180);

type BenchResult<T> = Result<T, String>;

fn main() -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loopback bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where the release binaries are: `target/release`, the parent of the bench executable's directory.
fn binaries() -> BenchResult<(PathBuf, PathBuf)> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let release = exe.parent().and_then(Path::parent).ok_or("cannot locate target/release")?;
    let send = release.join("h3m-send");
    let recv = release.join("h3m-recv");
    if !send.is_file() || !recv.is_file() {
        return Err(format!(
            "{} or {} is missing: run `cargo build --release -p h3m-sender -p h3m-receiver` first",
            send.display(),
            recv.display()
        ));
    }
    Ok((send, recv))
}

fn env_number(name: &str, default: u64) -> BenchResult<u64> {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().ok().filter(|&n| n > 0).ok_or(format!("{name}={v}: not a positive integer")),
        Err(_) => Ok(default),
    }
}

// ---------------------------------------------------------------------------------------------------
// Small utilities

/// xorshift64*: test data and random group/port/session ID (no cryptographic use).
struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        let t = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        Rng((t ^ u64::from(std::process::id()).rotate_left(29)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A group in 239.255.1.1–239.255.254.254 and a port in 20000–59999.
    fn group(&mut self) -> SocketAddr {
        let r = self.next();
        let ip = Ipv4Addr::new(239, 255, 1 + (r % 254) as u8, 1 + ((r >> 8) % 254) as u8);
        SocketAddr::new(IpAddr::V4(ip), 20_000 + ((r >> 16) % 40_000) as u16)
    }
}

/// Pins a process or thread (`0`: the calling thread) to one CPU, if there are at least two.
fn pin(tid: libc::pid_t, cpu: usize) {
    if thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return;
    }
    // SAFETY: cpu_set_t is plain data; CPU_SET stays within it (cpu < 2 < CPU_SETSIZE).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// User + system CPU seconds of the calling thread.
fn thread_cpu() -> f64 {
    // SAFETY: getrusage writes one rusage.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
        ru
    };
    cpu_secs(&ru)
}

fn cpu_secs(ru: &libc::rusage) -> f64 {
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn gbit(bytes: f64, secs: f64) -> f64 {
    if secs > 0.0 { bytes * 8.0 / secs / 1e9 } else { f64::NAN }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha256_file(path: &Path) -> BenchResult<[u8; 32]> {
    let mut f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok(out)
}

/// Writes `len` pseudo-random bytes to `path` and returns their SHA-256.
fn generate(path: &Path, len: u64, rng: &mut Rng) -> BenchResult<[u8; 32]> {
    let mut f = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for chunk in buf.chunks_exact_mut(8) {
            chunk.copy_from_slice(&rng.next().to_le_bytes());
        }
        let n = buf.len().min(left as usize);
        f.write_all(&buf[..n]).map_err(|e| format!("{}: {e}", path.display()))?;
        ctx.update(&buf[..n]);
        left -= n as u64;
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok(out)
}

/// The bench's temporary directory, removed on drop (also when the bench panics).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> BenchResult<Self> {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
        let dir = base.join(format!("h3m-bench-loopback-{}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------------
// Child processes: exit time, status and rusage through wait4; killed (by PID) if still running on drop

struct Exit {
    at: Instant,
    /// Exit code, or `None` if killed by a signal.
    code: Option<i32>,
    cpu: f64,
    max_rss_kib: i64,
}

/// A child process watched by a thread that reaps it with `wait4` as soon as it exits.
struct Watched {
    pid: libc::pid_t,
    reaped: Arc<Mutex<bool>>,
    exit: mpsc::Receiver<Exit>,
}

impl Watched {
    fn new(child: &std::process::Child) -> Self {
        let pid = child.id() as libc::pid_t;
        let reaped = Arc::new(Mutex::new(false));
        let (tx, rx) = mpsc::channel();
        let flag = Arc::clone(&reaped);
        thread::spawn(move || {
            // Wait for the exit without reaping, so that `Drop` never signals a reaped (reusable) PID.
            loop {
                // SAFETY: waitid writes one siginfo_t.
                let r = unsafe {
                    let mut info: libc::siginfo_t = std::mem::zeroed();
                    libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT)
                };
                if r == 0 {
                    break;
                }
                if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    return;
                }
            }
            let at = Instant::now();
            let mut reaped = flag.lock().unwrap_or_else(|e| e.into_inner());
            let mut status = 0;
            // SAFETY: wait4 writes the status and one rusage.
            let ru = unsafe {
                let mut ru: libc::rusage = std::mem::zeroed();
                libc::wait4(pid, &mut status, 0, &mut ru);
                ru
            };
            *reaped = true;
            drop(reaped);
            let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
            let _ = tx.send(Exit { at, code, cpu: cpu_secs(&ru), max_rss_kib: ru.ru_maxrss });
        });
        Watched { pid, reaped, exit: rx }
    }

    fn has_exited(&self) -> bool {
        *self.reaped.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait(&self, until: Instant) -> BenchResult<Exit> {
        self.exit
            .recv_timeout(until.saturating_duration_since(Instant::now()))
            .map_err(|_| format!("process {} did not exit in time", self.pid))
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let reaped = self.reaped.lock().unwrap_or_else(|e| e.into_inner());
        if !*reaped {
            // SAFETY: signals our own unreaped child, by its PID.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }
}

/// Reads lines in a thread, each with the time it arrived.
fn timed_lines(r: impl Read + Send + 'static) -> JoinHandle<Vec<(Instant, String)>> {
    thread::spawn(move || {
        let mut out = Vec::new();
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            out.push((Instant::now(), line));
        }
        out
    })
}

/// Whether an IPv4 group is joined on some interface of this namespace (`/proc/net/igmp`).
fn joined(group: Ipv4Addr) -> bool {
    let key = format!("{:08X}", u32::from_le_bytes(group.octets()));
    fs::read_to_string("/proc/net/igmp").is_ok_and(|s| s.split_whitespace().any(|w| w == key))
}

/// Joins `group` and timestamps the first datagram, then leaves (closes the socket).
fn probe(group: SocketAddr, stop: Arc<AtomicBool>) -> BenchResult<JoinHandle<Option<Instant>>> {
    let mut cfg = MulticastConfig::new(group).with_interface(Interface::Addr(IpAddr::V4(LOOPBACK)));
    cfg.recv_buffer = None;
    let (socket, _) = h3m_net::open_receiver(&cfg).map_err(|e| format!("probe socket: {e}"))?;
    socket.set_nonblocking(false).map_err(|e| format!("probe: {e}"))?;
    socket.set_read_timeout(Some(Duration::from_millis(20))).map_err(|e| format!("probe: {e}"))?;
    Ok(thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            if socket.recv(&mut buf).is_ok() {
                return Some(Instant::now());
            }
        }
        None
    }))
}

// ---------------------------------------------------------------------------------------------------
// 1. h3m end to end

struct H3mRun {
    sent_datagrams: u64,
    sender_send_secs: f64,
    received_datagrams: u64,
    body_len: u64,
    body_received: u64,
    complete: bool,
    exit_code: Option<i32>,
    sha_ok: bool,
    window: f64,
    window_from_sender: f64,
    goodput_gbit: f64,
    tx_cpu: f64,
    rx_cpu: f64,
    rx_rss_mib: f64,
}

impl H3mRun {
    fn loss_free(&self) -> bool {
        self.complete && self.exit_code == Some(0) && self.sha_ok && self.received_datagrams == self.sent_datagrams
    }

    fn rx_us_per_datagram(&self) -> f64 {
        self.rx_cpu * 1e6 / self.received_datagrams.max(1) as f64
    }

    /// Body Gbit/s the receiver processed per CPU-second it used: the rate it could absorb on a core of its
    /// own if it were CPU-bound (an estimate, not a measurement of delivery).
    fn rx_capacity_gbit(&self) -> f64 {
        gbit(self.body_received as f64, self.rx_cpu)
    }
}

/// `key=value` fields of the receiver's summary line.
fn summary_fields(lines: &[(Instant, String)]) -> HashMap<String, String> {
    lines
        .iter()
        .rev()
        .find_map(|(_, l)| l.strip_prefix("h3m-recv: summary: "))
        .map(|s| {
            s.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// `sent 1 resources, B body bytes in N datagrams (U bytes), S s, R Mbit/s` → (B, N, S).
fn parse_sender(lines: &[(Instant, String)]) -> Option<(u64, u64, f64)> {
    let line = lines.iter().find(|(_, l)| l.starts_with("sent "))?;
    let w: Vec<&str> = line.1.split_whitespace().collect();
    let body = w.get(3)?.parse().ok()?;
    let datagrams = w.get(7)?.parse().ok()?;
    let secs = w.get(11)?.parse().ok()?;
    Some((body, datagrams, secs))
}

fn run_h3m(
    bins: &(PathBuf, PathBuf),
    dir: &Path,
    src: &Path,
    src_sha: &[u8; 32],
    rate: &str,
    rng: &mut Rng,
) -> BenchResult<H3mRun> {
    let group = rng.group();
    let IpAddr::V4(group_ip) = group.ip() else { unreachable!("IPv4 group") };
    let port = group.port().to_string();
    let session = format!("{:016x}", rng.next());
    let out = dir.join("out");
    let _ = fs::remove_dir_all(&out);

    let mut recv = Command::new(&bins.1)
        .args(["--group", &group_ip.to_string(), "--port", &port, "--interface", "127.0.0.1"])
        .args(["--session-id", &session, "--quiet", "--idle-timeout", "30", "--push-timeout", PUSH_TIMEOUT_SECS])
        .arg("--out")
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", bins.1.display()))?;
    let recv_w = Watched::new(&recv);
    pin(recv_w.pid, RECEIVER_CPU);
    let recv_out = timed_lines(recv.stdout.take().ok_or("receiver stdout")?);
    let recv_err = timed_lines(recv.stderr.take().ok_or("receiver stderr")?);
    let join_deadline = Instant::now() + Duration::from_secs(5);
    while !joined(group_ip) {
        if recv_w.has_exited() || Instant::now() > join_deadline {
            let err = recv_err.join().unwrap_or_default();
            let err: Vec<String> = err.into_iter().map(|(_, l)| l).collect();
            return Err(format!("h3m-recv did not join {group}: {}", err.join(" / ")));
        }
        thread::sleep(Duration::from_millis(2));
    }
    let stop_probe = Arc::new(AtomicBool::new(false));
    let probe = probe(group, Arc::clone(&stop_probe))?;

    let mut send = Command::new(&bins.0)
        .arg(src)
        .args(["--group", &group_ip.to_string(), "--port", &port, "--interface", "127.0.0.1", "--ttl", "1"])
        .args(["--session-id", &session, "--rate", rate, "--quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", bins.0.display()))?;
    let send_w = Watched::new(&send);
    pin(send_w.pid, SENDER_CPU);
    let send_out = timed_lines(send.stdout.take().ok_or("sender stdout")?);
    let send_err = timed_lines(send.stderr.take().ok_or("sender stderr")?);

    let limit = Instant::now() + RUN_LIMIT;
    let send_exit = send_w.wait(limit)?;
    let recv_exit = recv_w.wait(limit)?;
    stop_probe.store(true, Ordering::Relaxed);
    let first = probe.join().unwrap_or(None);
    let send_lines = send_out.join().unwrap_or_default();
    let send_errs = send_err.join().unwrap_or_default();
    let recv_lines = recv_out.join().unwrap_or_default();
    let recv_errs = recv_err.join().unwrap_or_default();

    let (_, sent_datagrams, sender_send_secs) = parse_sender(&send_lines).ok_or_else(|| {
        let e: Vec<&str> = send_lines.iter().chain(&send_errs).map(|(_, l)| l.as_str()).collect();
        format!("h3m-send exited {:?} without its summary: {}", send_exit.code, e.join(" / "))
    })?;
    let summary = summary_fields(&recv_errs);
    let field = |k: &str| summary.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let received_datagrams = field("datagrams");
    // The resource line: `complete   NAME  B bytes  sha256:H` or `incomplete NAME  R of L[+] bytes ...`.
    let resource = recv_lines.iter().find(|(_, l)| l.starts_with("complete") || l.starts_with("incomplete"));
    let done_at = resource.map_or(recv_exit.at, |(t, _)| *t);
    let file_len = fs::metadata(src).map_err(|e| e.to_string())?.len();
    let (body_received, body_len) = match resource {
        Some((_, l)) if l.starts_with("complete") => (file_len, file_len),
        Some((_, l)) => {
            let w: Vec<&str> = l.split_whitespace().collect();
            let r = w.get(2).and_then(|v| v.parse().ok()).unwrap_or(0);
            let len = w.get(4).and_then(|v| v.trim_end_matches('+').parse().ok()).unwrap_or(file_len);
            (r, len)
        }
        None => (0, file_len),
    };
    let complete = field("complete") == 1 && summary.contains_key("complete");
    let written = out.join(src.file_name().ok_or("source name")?);
    let sha_ok = complete && written.is_file() && sha256_file(&written)? == *src_sha;
    let _ = fs::remove_dir_all(&out);

    let sender_first = send_exit.at.checked_sub(Duration::from_secs_f64(sender_send_secs));
    let window_from_sender = sender_first.map_or(f64::NAN, |f| done_at.saturating_duration_since(f).as_secs_f64());
    let window = first.map_or(window_from_sender, |f| done_at.saturating_duration_since(f).as_secs_f64());
    let goodput_gbit = if sha_ok { gbit(file_len as f64, window) } else { 0.0 };
    Ok(H3mRun {
        sent_datagrams,
        sender_send_secs,
        received_datagrams,
        body_len,
        body_received,
        complete,
        exit_code: recv_exit.code,
        sha_ok,
        window,
        window_from_sender,
        goodput_gbit,
        tx_cpu: send_exit.cpu,
        rx_cpu: recv_exit.cpu,
        rx_rss_mib: recv_exit.max_rss_kib as f64 / 1024.0,
    })
}

// ---------------------------------------------------------------------------------------------------
// 2./3. raw UDP over the same path

#[derive(Clone, Copy, PartialEq, Eq)]
enum RawMode {
    SendTo,
    Gso,
}

struct RawRun {
    sent: u64,
    send_secs: f64,
    received: u64,
    received_bytes: u64,
    /// First send → last datagram received.
    window: f64,
    tx_cpu: f64,
    rx_cpu: f64,
    segments: usize,
}

impl RawRun {
    fn sent_per_sec(&self) -> f64 {
        self.sent as f64 / self.send_secs
    }

    fn delivered_gbit(&self) -> f64 {
        gbit(self.received_bytes as f64, self.window)
    }
}

struct RawRx {
    count: u64,
    bytes: u64,
    last: Option<Instant>,
    cpu: f64,
}

fn raw_receiver(
    group: SocketAddr,
    n: u64,
    ready: mpsc::Sender<()>,
    sender_done: Arc<AtomicBool>,
) -> BenchResult<RawRx> {
    pin(0, RECEIVER_CPU);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let mut cfg = MulticastConfig::new(group).with_interface(Interface::Addr(IpAddr::V4(LOOPBACK)));
        cfg.recv_buffer = Some(RECV_BUFFER);
        let (socket, _) = RecvSocket::open(&cfg).map_err(|e| format!("raw receiver: {e}"))?;
        let _ = ready.send(());
        let mut batch = RecvBatch::new();
        let (mut count, mut bytes, mut last) = (0u64, 0u64, None);
        while count < n {
            match tokio::time::timeout(Duration::from_millis(50), socket.recv_batch(&mut batch)).await {
                Ok(Ok(k)) => {
                    bytes += batch.iter().map(|d| d.payload.len() as u64).sum::<u64>();
                    count += k as u64;
                    last = Some(Instant::now());
                }
                Ok(Err(e)) => return Err(format!("raw receive: {e}")),
                // 50 ms of silence after the sender is done: whatever is missing was dropped.
                Err(_) if sender_done.load(Ordering::Acquire) => break,
                Err(_) => {}
            }
        }
        Ok(RawRx { count, bytes, last, cpu: thread_cpu() })
    })
}

/// Sends `n` datagrams; returns (start, end, thread CPU, GSO segments per send).
fn raw_sender(mode: RawMode, group: SocketAddr, n: u64) -> BenchResult<(Instant, Instant, f64, usize)> {
    pin(0, SENDER_CPU);
    let mut cfg = MulticastConfig::new(group).with_interface(Interface::Addr(IpAddr::V4(LOOPBACK)));
    cfg.ttl = 1;
    cfg.send_buffer = Some(SEND_BUFFER);
    let (socket, _) = h3m_net::open_sender(&cfg).map_err(|e| format!("raw sender: {e}"))?;
    let mut payload = [0u8; DATAGRAM];
    for (i, b) in payload.iter_mut().enumerate() {
        *b = (i * 7 + 3) as u8;
    }
    match mode {
        RawMode::SendTo => {
            socket.set_nonblocking(false).map_err(|e| e.to_string())?;
            let start = Instant::now();
            for _ in 0..n {
                loop {
                    match socket.send_to(&payload, group) {
                        Ok(_) => break,
                        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => thread::yield_now(),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(format!("send_to: {e}")),
                    }
                }
            }
            Ok((start, Instant::now(), thread_cpu(), 1))
        }
        RawMode::Gso => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            rt.block_on(async {
                let socket = SendSocket::from_std(socket).map_err(|e| e.to_string())?;
                let segments = socket.gso_segments(DATAGRAM);
                let datagrams: Vec<&[u8]> = vec![&payload[..]; segments];
                let start = Instant::now();
                let mut sent = 0u64;
                while sent < n {
                    let k = segments.min((n - sent) as usize);
                    socket.send_batch(group, &datagrams[..k]).await.map_err(|e| format!("send_batch: {e}"))?;
                    sent += k as u64;
                }
                Ok((start, Instant::now(), thread_cpu(), segments))
            })
        }
    }
}

fn run_raw(mode: RawMode, n: u64, rng: &mut Rng) -> BenchResult<RawRun> {
    let group = rng.group();
    let (ready_tx, ready_rx) = mpsc::channel();
    let done = Arc::new(AtomicBool::new(false));
    let rx = {
        let done = Arc::clone(&done);
        thread::spawn(move || raw_receiver(group, n, ready_tx, done))
    };
    if ready_rx.recv_timeout(Duration::from_secs(5)).is_err() {
        return Err(rx.join().map_err(|_| "raw receiver panicked".to_owned())?.err().unwrap_or_default());
    }
    let tx = thread::spawn(move || raw_sender(mode, group, n));
    let sent = tx.join().map_err(|_| "raw sender panicked".to_owned());
    done.store(true, Ordering::Release);
    let got = rx.join().map_err(|_| "raw receiver panicked".to_owned())??;
    let (start, end, tx_cpu, segments) = sent??;
    let last = got.last.unwrap_or(end).max(end);
    Ok(RawRun {
        sent: n,
        send_secs: (end - start).as_secs_f64(),
        received: got.count,
        received_bytes: got.bytes,
        window: (last - start).as_secs_f64(),
        tx_cpu,
        rx_cpu: got.cpu,
        segments,
    })
}

// ---------------------------------------------------------------------------------------------------
// Report

fn print_h3m(r: &H3mRun) {
    let lost = r.sent_datagrams.saturating_sub(r.received_datagrams);
    println!(
        "  h3m          sent {} datagrams in {:.3} s (sender's own first->last: {:.2} Gbit/s of body), received {} \
         ({} lost, {:.2} %)",
        r.sent_datagrams,
        r.sender_send_secs,
        gbit(r.body_len as f64, r.sender_send_secs),
        r.received_datagrams,
        lost,
        lost as f64 * 100.0 / r.sent_datagrams.max(1) as f64
    );
    println!(
        "               complete={} exit={} sha256 {}; body received {} of {} bytes; window {:.3} s (from the sender's \
         side: {:.3} s); goodput {:.3} Gbit/s",
        u8::from(r.complete),
        r.exit_code.map_or("signal".to_owned(), |c| c.to_string()),
        if r.sha_ok { "matches" } else { "DIFFERS/absent" },
        r.body_received,
        r.body_len,
        r.window,
        r.window_from_sender,
        r.goodput_gbit
    );
    println!(
        "               CPU tx {:.2} s, rx {:.2} s ({:.2} us per received datagram, {:.2} Gbit/s of body per rx CPU-second); \
         rx peak RSS {:.1} MiB; loss-free: {}",
        r.tx_cpu,
        r.rx_cpu,
        r.rx_us_per_datagram(),
        r.rx_capacity_gbit(),
        r.rx_rss_mib,
        if r.loss_free() { "yes" } else { "NO" }
    );
}

fn print_raw(name: &str, r: &RawRun) {
    println!(
        "  {name:<12} sent {} in {:.3} s = {:.0} k/s ({:.2} Gbit/s), received {} ({:.2} % lost), delivered {:.2} Gbit/s \
         ({:.0} k/s), CPU tx {:.2} s rx {:.2} s",
        r.sent,
        r.send_secs,
        r.sent_per_sec() / 1e3,
        gbit((r.sent * DATAGRAM as u64) as f64, r.send_secs),
        r.received,
        r.sent.saturating_sub(r.received) as f64 * 100.0 / r.sent.max(1) as f64,
        r.delivered_gbit(),
        r.received as f64 / r.window / 1e3,
        r.tx_cpu,
        r.rx_cpu
    );
}

fn bench() -> BenchResult<()> {
    let bins = binaries()?;
    let mib = env_number("H3M_BENCH_MIB", 1024)?;
    let reps = env_number("H3M_BENCH_REPS", 3)? as usize;
    let rate = std::env::var("H3M_BENCH_RATE").unwrap_or_else(|_| "max".to_owned());
    let mut rng = Rng::seeded();
    let dir = TempDir::new()?;
    let src = dir.0.join("big.bin");
    let t = Instant::now();
    let src_sha = generate(&src, mib << 20, &mut rng)?;
    println!("h3m loopback benchmark (see the header of benches/benches/loopback.rs for what each number means)");
    println!(
        "  file {} MiB of pseudo-random bytes, sha256 {}..., generated in {:.1} s into {} (removed at the end)",
        mib,
        &hex(&src_sha)[..16],
        t.elapsed().as_secs_f64(),
        dir.0.display()
    );
    println!(
        "  {DATAGRAM}-byte datagrams, random groups in 239.255.0.0/16, interface 127.0.0.1 (lo), TTL 1; senders on CPU {SENDER_CPU}, \
         receivers on CPU {RECEIVER_CPU}; {} CPUs",
        thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("  binaries: {} and {}", bins.0.display(), bins.1.display());
    println!("  h3m-send --rate {rate}; h3m-recv --push-timeout {PUSH_TIMEOUT_SECS} (a lossy run gives up after that)");

    let mut h3m = Vec::new();
    let mut plain = Vec::new();
    let mut gso = Vec::new();
    let mut n = None;
    for rep in 1..=reps {
        println!("\nrun {rep}/{reps}");
        let r = run_h3m(&bins, &dir.0, &src, &src_sha, &rate, &mut rng)?;
        print_h3m(&r);
        let count = *n.get_or_insert(r.sent_datagrams);
        h3m.push(r);
        let r = run_raw(RawMode::SendTo, count, &mut rng)?;
        print_raw("raw send_to", &r);
        plain.push(r);
        let r = run_raw(RawMode::Gso, count, &mut rng)?;
        print_raw(&format!("raw GSO x{}", r.segments), &r);
        gso.push(r);
        let _ = std::io::stdout().flush();
    }
    drop(dir);

    let m = |f: &dyn Fn(usize) -> f64| median((0..reps).map(f).collect());
    println!("\n== medians of {reps} runs (each figure separately) ==");
    let h_good = m(&|i| h3m[i].goodput_gbit);
    let loss_free = h3m.iter().filter(|r| r.loss_free()).count();
    let rss = m(&|i| h3m[i].rx_rss_mib);
    let max_rss = h3m.iter().map(|r| r.rx_rss_mib).fold(0.0, f64::max);
    println!(
        "  h3m          goodput {:.3} Gbit/s ({:.0} MiB/s), window {:.3} s, sender's own send time {:.3} s, received {:.1} % \
         of datagrams, loss-free {loss_free}/{reps} runs",
        h_good,
        h_good * 1e9 / 8.0 / f64::from(1 << 20),
        m(&|i| h3m[i].window),
        m(&|i| h3m[i].sender_send_secs),
        m(&|i| h3m[i].received_datagrams as f64 * 100.0 / h3m[i].sent_datagrams.max(1) as f64),
    );
    println!(
        "               CPU tx {:.2} s, rx {:.2} s ({:.2} us per received datagram, {:.2} Gbit/s of body per rx CPU-second), \
         rx peak RSS {:.1} MiB (max {:.1})",
        m(&|i| h3m[i].tx_cpu),
        m(&|i| h3m[i].rx_cpu),
        m(&|i| h3m[i].rx_us_per_datagram()),
        m(&|i| h3m[i].rx_capacity_gbit()),
        rss,
        max_rss
    );
    let raw_line = |name: &str, v: &[RawRun]| {
        println!(
            "  {name:<12} sent {:.0} k datagrams/s ({:.2} Gbit/s), delivered {:.2} Gbit/s ({:.0} k/s), received {:.0} of {} \
             ({:.2} % lost), CPU tx {:.2} s rx {:.2} s",
            m(&|i| v[i].sent_per_sec() / 1e3),
            m(&|i| gbit((v[i].sent * DATAGRAM as u64) as f64, v[i].send_secs)),
            m(&|i| v[i].delivered_gbit()),
            m(&|i| v[i].received as f64 / v[i].window / 1e3),
            m(&|i| v[i].received as f64),
            v[0].sent,
            m(&|i| v[i].sent.saturating_sub(v[i].received) as f64 * 100.0 / v[i].sent.max(1) as f64),
            m(&|i| v[i].tx_cpu),
            m(&|i| v[i].rx_cpu),
        );
    };
    raw_line("raw send_to", &plain);
    raw_line(&format!("raw GSO x{}", gso[0].segments), &gso);
    let c_gso = m(&|i| gso[i].delivered_gbit());
    let c_plain = m(&|i| plain[i].delivered_gbit());
    let ratio_gso = h_good / c_gso;
    println!(
        "\n== h3m against the raw ceilings (median goodput / median delivered rate; body bits vs UDP payload bits) =="
    );
    println!("  h3m / raw GSO     = {:.1} %", ratio_gso * 100.0);
    println!("  h3m / raw send_to = {:.1} %", h_good / c_plain * 100.0);
    let cap = m(&|i| h3m[i].rx_capacity_gbit());
    println!(
        "  estimate, not a delivery: the h3m receiver's CPU-bound capacity ({cap:.2} Gbit/s of body per CPU-second) is \
         {:.1} % of the GSO ceiling, {:.1} % of the send_to ceiling",
        cap / c_gso * 100.0,
        cap / c_plain * 100.0
    );
    println!("\n== target (issue): >= 70 % of the GSO ceiling, loss-free, receiver RSS < 64 MiB ==");
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    println!("  >= 70 % of GSO ceiling : {} ({:.1} %)", verdict(ratio_gso >= 0.7), ratio_gso * 100.0);
    println!("  loss-free              : {} ({loss_free}/{reps} runs)", verdict(loss_free == reps));
    println!("  receiver RSS < 64 MiB  : {} (max {:.1} MiB)", verdict(max_rss < 64.0), max_rss);
    Ok(())
}
