//! Benchmarks live in `benches/`; this library holds what the end-to-end ones share: locating the release
//! binaries, test files, random loopback groups, child processes reaped with their `rusage`, and one
//! `h3m-send` → `h3m-recv` run over IPv4 loopback multicast ([`run_h3m`]).
//!
//! Network safety: every group is in 239.255.0.0/16, the interface is 127.0.0.1 (`lo`) and the TTL is 1.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use h3m_net::{Interface, MulticastConfig};

/// The UDP payload size h3m sends by default.
pub const DATAGRAM: usize = 1200;
/// The interface of every bench socket and process.
pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Sender processes and threads run on this CPU (when there are 2 or more).
pub const SENDER_CPU: usize = 0;
/// Receiver processes and threads run on this CPU (when there are 2 or more).
pub const RECEIVER_CPU: usize = 1;
/// The receiver gives up on a stalled push after this long (lossy runs end sooner).
pub const PUSH_TIMEOUT_SECS: &str = "2";
/// Longest an h3m run may take before both processes are killed.
pub const RUN_LIMIT: Duration = Duration::from_secs(180);

/// Errors are messages: the benches print them and exit non-zero.
pub type BenchResult<T> = Result<T, String>;

/// Where the release binaries are: `target/release`, the parent of the bench executable's directory.
/// Returns `(h3m-send, h3m-recv)`.
pub fn binaries() -> BenchResult<(PathBuf, PathBuf)> {
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

/// A positive integer from the environment, or `default` when the variable is unset.
pub fn env_number(name: &str, default: u64) -> BenchResult<u64> {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().ok().filter(|&n| n > 0).ok_or(format!("{name}={v}: not a positive integer")),
        Err(_) => Ok(default),
    }
}

// ---------------------------------------------------------------------------------------------------
// Small utilities

/// xorshift64*: test data and random group/port/session ID (no cryptographic use).
pub struct Rng(u64);

impl Rng {
    /// Seeded from the clock and the process ID.
    pub fn seeded() -> Self {
        let t = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        Rng((t ^ u64::from(std::process::id()).rotate_left(29)) | 1)
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A group in 239.255.1.1–239.255.254.254 and a port in 20000–59999.
    pub fn group(&mut self) -> SocketAddr {
        let r = self.next_u64();
        let ip = Ipv4Addr::new(239, 255, 1 + (r % 254) as u8, 1 + ((r >> 8) % 254) as u8);
        SocketAddr::new(IpAddr::V4(ip), 20_000 + ((r >> 16) % 40_000) as u16)
    }
}

/// Pins a process or thread (`0`: the calling thread) to one CPU, if there are at least two.
pub fn pin(tid: libc::pid_t, cpu: usize) {
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
pub fn thread_cpu() -> f64 {
    // SAFETY: getrusage writes one rusage.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
        ru
    };
    cpu_secs(&ru)
}

/// User + system seconds of an `rusage`.
pub fn cpu_secs(ru: &libc::rusage) -> f64 {
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// The median (NaN for no values).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// Gbit/s of `bytes` in `secs`.
pub fn gbit(bytes: f64, secs: f64) -> f64 {
    if secs > 0.0 { bytes * 8.0 / secs / 1e9 } else { f64::NAN }
}

/// Lowercase hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The SHA-256 of a file.
pub fn sha256_file(path: &Path) -> BenchResult<[u8; 32]> {
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
pub fn generate(path: &Path, len: u64, rng: &mut Rng) -> BenchResult<[u8; 32]> {
    let mut f = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for chunk in buf.chunks_exact_mut(8) {
            chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
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

/// A bench's temporary directory on `/dev/shm` (tmpfs; the system temporary directory if there is no
/// `/dev/shm`), removed on drop (also when the bench panics).
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `h3m-bench-NAME-PID`.
    pub fn new(name: &str) -> BenchResult<Self> {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
        let dir = base.join(format!("h3m-bench-{name}-{}", std::process::id()));
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

/// How a watched child ended.
pub struct Exit {
    /// When its exit was seen.
    pub at: Instant,
    /// Exit code, or `None` if killed by a signal.
    pub code: Option<i32>,
    /// User + system CPU seconds (from `wait4`).
    pub cpu: f64,
    /// Peak RSS in KiB (from `wait4`).
    pub max_rss_kib: i64,
}

/// A child process watched by a thread that reaps it with `wait4` as soon as it exits.
pub struct Watched {
    /// The child's PID.
    pub pid: libc::pid_t,
    reaped: Arc<Mutex<bool>>,
    exit: mpsc::Receiver<Exit>,
}

impl Watched {
    /// Starts watching `child` (which must not be waited for elsewhere).
    pub fn new(child: &std::process::Child) -> Self {
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

    /// Whether the child has exited (and been reaped).
    pub fn has_exited(&self) -> bool {
        *self.reaped.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the exit until `until`.
    pub fn wait(&self, until: Instant) -> BenchResult<Exit> {
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
pub fn timed_lines(r: impl Read + Send + 'static) -> JoinHandle<Vec<(Instant, String)>> {
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
pub fn joined(group: Ipv4Addr) -> bool {
    let key = format!("{:08X}", u32::from_le_bytes(group.octets()));
    fs::read_to_string("/proc/net/igmp").is_ok_and(|s| s.split_whitespace().any(|w| w == key))
}

/// Joins `group` on loopback and timestamps the first datagram, then leaves (closes the socket).
pub fn probe(group: SocketAddr, stop: Arc<AtomicBool>) -> BenchResult<JoinHandle<Option<Instant>>> {
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
// One h3m-send -> h3m-recv run over loopback multicast

/// What one run tells the two binaries.
pub struct H3mSession<'a> {
    /// The group and port (239.255.0.0/16).
    pub group: SocketAddr,
    /// The session ID in hex.
    pub session_id: &'a str,
    /// `h3m-send --rate`.
    pub rate: &'a str,
    /// More `h3m-send` arguments (e.g. `--cipher-suite`, `--key`, `--iv`, `--print-alt-svc`).
    pub send_args: &'a [String],
    /// `None`: the receiver is given `--group`, `--port` and `--session-id`; `Some(line)`: it is given
    /// `--alt-svc line` instead (group, port, session ID and keys from the advertisement).
    pub alt_svc: Option<&'a str>,
}

/// The measurements of one run.
pub struct H3mRun {
    /// Datagrams the sender says it sent.
    pub sent_datagrams: u64,
    /// The sender's own first → last send time.
    pub sender_send_secs: f64,
    /// Datagrams the receiver got (its summary's `datagrams`).
    pub received_datagrams: u64,
    /// Datagrams the receiver dropped because they failed authentication (`dropped_protection`).
    pub dropped_protection: u64,
    /// The resource's body length.
    pub body_len: u64,
    /// Body bytes the receiver wrote.
    pub body_received: u64,
    /// The summary says `complete=1`.
    pub complete: bool,
    /// The receiver's exit code (`None`: killed by a signal).
    pub exit_code: Option<i32>,
    /// The written file's SHA-256 equals the source's.
    pub sha_ok: bool,
    /// First datagram (probe) → the receiver's resource line, in seconds.
    pub window: f64,
    /// The same window starting at (sender exit − its send time).
    pub window_from_sender: f64,
    /// File bits / window, in Gbit/s; 0 if the file did not arrive intact.
    pub goodput_gbit: f64,
    /// The sender's CPU seconds (`wait4`).
    pub tx_cpu: f64,
    /// The receiver's CPU seconds (`wait4`).
    pub rx_cpu: f64,
    /// The receiver's peak RSS in MiB.
    pub rx_rss_mib: f64,
    /// The value of the `Alt-Svc:` line the sender printed (`--print-alt-svc`), if any.
    pub sender_alt_svc: Option<String>,
}

impl H3mRun {
    /// Every datagram arrived, the resource completed, the receiver exited 0 and the file is intact.
    pub fn loss_free(&self) -> bool {
        self.complete && self.exit_code == Some(0) && self.sha_ok && self.received_datagrams == self.sent_datagrams
    }

    /// Receiver CPU µs per datagram it got.
    pub fn rx_us_per_datagram(&self) -> f64 {
        self.rx_cpu * 1e6 / self.received_datagrams.max(1) as f64
    }

    /// Body Gbit/s the receiver processed per CPU-second it used: the rate it could absorb on a core of its
    /// own if it were CPU-bound (an estimate, not a measurement of delivery).
    pub fn rx_capacity_gbit(&self) -> f64 {
        gbit(self.body_received as f64, self.rx_cpu)
    }
}

/// `key=value` fields of the receiver's summary line.
pub fn summary_fields(lines: &[(Instant, String)]) -> HashMap<String, String> {
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
pub fn parse_sender(lines: &[(Instant, String)]) -> Option<(u64, u64, f64)> {
    let line = lines.iter().find(|(_, l)| l.starts_with("sent "))?;
    let w: Vec<&str> = line.1.split_whitespace().collect();
    let body = w.get(3)?.parse().ok()?;
    let datagrams = w.get(7)?.parse().ok()?;
    let secs = w.get(11)?.parse().ok()?;
    Some((body, datagrams, secs))
}

/// Sends `src` once with `h3m-send` to a live `h3m-recv` (started first, joined before the sender starts),
/// both on loopback, and measures the run. The receiver writes into `dir/out`, removed afterwards.
pub fn run_h3m(
    bins: &(PathBuf, PathBuf),
    dir: &Path,
    src: &Path,
    src_sha: &[u8; 32],
    session: &H3mSession<'_>,
) -> BenchResult<H3mRun> {
    let group = session.group;
    let IpAddr::V4(group_ip) = group.ip() else { return Err(format!("{group}: not an IPv4 group")) };
    if group_ip.octets()[..2] != [239, 255] {
        return Err(format!("{group}: the benches only use 239.255.0.0/16"));
    }
    let port = group.port().to_string();
    let out = dir.join("out");
    let _ = fs::remove_dir_all(&out);

    let mut recv_cmd = Command::new(&bins.1);
    match session.alt_svc {
        None => recv_cmd.args(["--group", &group_ip.to_string(), "--port", &port, "--session-id", session.session_id]),
        Some(line) => recv_cmd.args(["--alt-svc", line]),
    };
    let mut recv = recv_cmd
        .args(["--interface", "127.0.0.1"])
        .args(["--quiet", "--idle-timeout", "30", "--push-timeout", PUSH_TIMEOUT_SECS])
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
        .args(["--session-id", session.session_id, "--rate", session.rate, "--quiet"])
        .args(session.send_args)
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
    let sender_alt_svc = send_lines.iter().find_map(|(_, l)| l.strip_prefix("Alt-Svc: ")).map(str::to_owned);
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
        dropped_protection: field("dropped_protection"),
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
        sender_alt_svc,
    })
}
