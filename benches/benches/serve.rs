//! `h3m-recv --serve` as a local origin, measured (issue 12's targets), over
//! IPv4 loopback multicast (group 239.255.x.x, interface 127.0.0.1, TTL 1):
//!
//! 1. **Segment availability**: a client asks for a segment that is promised
//!    but not complete (its last datagram not sent yet), as a player asks for
//!    the next one; the time from sending that last datagram to the `200`
//!    status line, p50/p99/max over `H3M_SERVE_SEGMENTS` (300) segments of
//!    100 KiB. The datagrams come from `h3m_proto`'s encoder in this process,
//!    so "last datagram sent" is one clock reading.
//! 2. **Reception with clients pulling**: `h3m-send` of 64 files of 4 MiB at
//!    `H3M_SERVE_RATE` (2G) to `h3m-recv --serve`, once with 4 HTTP clients
//!    that follow `/events` and fetch every resource the moment it completes,
//!    once without `--serve` at all; runs alternate (`H3M_SERVE_RUNS`, 3),
//!    goodput is the body bytes over the time from the first datagram to the
//!    last `complete` line, and the ratio of medians is printed.
//! 3. **Memory**: a 1 GiB file received with `--serve`, then fetched whole
//!    by 8 concurrent clients (one of them checks its SHA-256); the
//!    receiver's peak RSS (`wait4`).
//!
//! Run: `cargo build --release -p h3m-sender -p h3m-receiver && cargo bench
//! -p h3m-benches --bench serve`; `H3M_SERVE_RATE=max` for the fastest rate.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use h3m_benches::{
    BenchResult, Exit, RECEIVER_CPU, Rng, SENDER_CPU, TempDir, Watched, binaries, env_number, generate, hex, joined,
    median, pin, probe, sha256_file, timed_lines,
};
use h3m_proto::SessionId;
use h3m_proto::encoder::{EncoderConfig, SessionEncoder};
use h3m_proto::qpack::HeaderField;

const FILES: usize = 64;
const FILE_LEN: u64 = 4 << 20;
const CLIENTS: usize = 4;
const BIG_LEN: u64 = 1 << 30;
const BIG_CLIENTS: usize = 8;

fn main() {
    if let Err(e) = run() {
        eprintln!("serve bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> BenchResult<()> {
    let bins = binaries()?;
    let mut rng = Rng::seeded();
    let dir = TempDir::new("serve")?;
    let segments = env_number("H3M_SERVE_SEGMENTS", 300)? as usize;
    let runs = env_number("H3M_SERVE_RUNS", 3)? as usize;
    let rate = std::env::var("H3M_SERVE_RATE").unwrap_or_else(|_| "2G".into());

    let lat = availability(&bins.1, &dir.0, &mut rng, segments)?;
    println!(
        "availability: {} segments of 100 KiB, last datagram -> 200: p50 {:.0} us, p99 {:.0} us, max {:.0} us",
        lat.len(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0)
    );

    let src = dir.0.join("files");
    std::fs::create_dir_all(&src).map_err(|e| e.to_string())?;
    for i in 0..FILES {
        generate(&src.join(format!("f{i:03}.bin")), FILE_LEN, &mut rng)?;
    }
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for r in 0..runs {
        let a = receive_set(&bins, &dir.0, &src, &rate, CLIENTS, &mut rng)?;
        let b = receive_set(&bins, &dir.0, &src, &rate, 0, &mut rng)?;
        println!(
            "run {}: {} files of 4 MiB at {rate}: with --serve and {CLIENTS} clients {:.1} MiB/s ({} MiB pulled), without --serve {:.1} MiB/s",
            r + 1,
            FILES,
            a.mib_s,
            a.pulled >> 20,
            b.mib_s
        );
        with.push(a.mib_s);
        without.push(b.mib_s);
    }
    let (w, wo) = (median(with), median(without));
    println!("reception: with {CLIENTS} clients pulling {w:.1} MiB/s, without --serve {wo:.1} MiB/s: {:.2}x", w / wo);

    let big = dir.0.join("big");
    std::fs::create_dir_all(&big).map_err(|e| e.to_string())?;
    let sha = generate(&big.join("big.bin"), BIG_LEN, &mut rng)?;
    std::fs::remove_dir_all(&src).map_err(|e| e.to_string())?;
    let (rss, secs) = serve_big(&bins, &dir.0, &big, &sha, &mut rng)?;
    println!(
        "memory: 1 GiB at 2G to h3m-recv --serve, asked for by {BIG_CLIENTS} clients while it arrived and served to each whole, all done {secs:.2} s after the requests: receiver peak RSS {rss:.1} MiB"
    );
    Ok(())
}

fn percentile(sorted_us: &[f64], p: f64) -> f64 {
    let i = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    sorted_us[i.min(sorted_us.len() - 1)]
}

fn random_group(rng: &mut Rng) -> (Ipv4Addr, u16, String) {
    let g = Ipv4Addr::new(239, 255, 1 + (rng.next_u64() % 250) as u8, 1 + (rng.next_u64() % 250) as u8);
    let port = 20_000 + (rng.next_u64() % 20_000) as u16;
    (g, port, format!("{:08x}", rng.next_u64() as u32 | 1))
}

/// A free TCP port on 127.0.0.1 (bound, then released).
fn free_port() -> BenchResult<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// Output lines, each with the time it arrived.
type Lines = Vec<(Instant, String)>;

/// A running `h3m-recv`, its stdout lines timed, its stderr kept.
struct Recv {
    child: Child,
    watched: Watched,
    out: thread::JoinHandle<Lines>,
    err: thread::JoinHandle<Lines>,
}

fn start_recv(recv: &Path, group: Ipv4Addr, port: u16, sid: &str, out: &Path, serve: Option<u16>) -> BenchResult<Recv> {
    let mut cmd = Command::new(recv);
    cmd.args(["--group", &group.to_string(), "--port", &port.to_string(), "--interface", "127.0.0.1"])
        .args(["--session-id", sid, "--idle-timeout", "30"])
        .arg("--out")
        .arg(out);
    if let Some(p) = serve {
        cmd.args(["--serve", &format!("127.0.0.1:{p}"), "--serve-timeout", "30"]);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", recv.display()))?;
    let watched = Watched::new(&child);
    pin(watched.pid, RECEIVER_CPU);
    let out = timed_lines(child.stdout.take().ok_or("stdout")?);
    let err = timed_lines(child.stderr.take().ok_or("stderr")?);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !joined(group) || serve.is_some_and(|p| TcpStream::connect(("127.0.0.1", p)).is_err()) {
        if watched.has_exited() || Instant::now() > deadline {
            return Err("h3m-recv did not start (join or --serve)".into());
        }
        thread::sleep(Duration::from_millis(5));
    }
    Ok(Recv { child, watched, out, err })
}

impl Recv {
    /// Ends it (SIGTERM, by PID, unless it has ended: `exited`) and returns
    /// its exit and output lines.
    fn stop(self, exited: Option<Exit>) -> BenchResult<(Exit, Lines, Lines)> {
        let exit = match exited {
            Some(e) => e,
            None => {
                // SAFETY: signals our own child, by its PID; it is reaped only by `wait` below.
                unsafe { libc::kill(self.watched.pid, libc::SIGTERM) };
                self.watched.wait(Instant::now() + Duration::from_secs(20))?
            }
        };
        drop(self.child);
        Ok((exit, self.out.join().unwrap_or_default(), self.err.join().unwrap_or_default()))
    }
}

// ---------------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client (keep-alive, Content-Length bodies)

struct Http {
    conn: BufReader<TcpStream>,
}

struct Answer {
    status: u16,
    len: u64,
    sha256: Option<[u8; 32]>,
}

impl Http {
    fn connect(port: u16) -> BenchResult<Http> {
        let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Http { conn: BufReader::with_capacity(256 << 10, s) })
    }

    fn send(&mut self, path: &str) -> BenchResult<()> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        self.conn.get_mut().write_all(req.as_bytes()).map_err(|e| format!("request: {e}"))
    }

    /// Reads the status line only (the caller's clock reading follows it).
    fn status(&mut self) -> BenchResult<u16> {
        let mut line = String::new();
        self.conn.read_line(&mut line).map_err(|e| format!("status line: {e}"))?;
        line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or(format!("bad status line {line:?}"))
    }

    /// The headers after the status line, then the body: counted, hashed when asked.
    fn rest(&mut self, status: u16, hash: bool) -> BenchResult<Answer> {
        let mut len = 0u64;
        loop {
            let mut line = String::new();
            self.conn.read_line(&mut line).map_err(|e| format!("header: {e}"))?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().map_err(|_| format!("content-length {v:?}"))?;
            }
        }
        let mut ctx = hash.then(|| ring::digest::Context::new(&ring::digest::SHA256));
        let mut left = len;
        while left > 0 {
            let buf = self.conn.fill_buf().map_err(|e| format!("body: {e}"))?;
            if buf.is_empty() {
                return Err(format!("body ended {left} bytes short"));
            }
            let n = buf.len().min(left as usize);
            if let Some(c) = ctx.as_mut() {
                c.update(&buf[..n]);
            }
            self.conn.consume(n);
            left -= n as u64;
        }
        let sha256 = ctx.map(|c| c.finish().as_ref().try_into().expect("32 bytes"));
        Ok(Answer { status, len, sha256 })
    }

    fn get(&mut self, path: &str, hash: bool) -> BenchResult<Answer> {
        self.send(path)?;
        let status = self.status()?;
        self.rest(status, hash)
    }
}

// ---------------------------------------------------------------------------------------------------
// 1. Availability

fn availability(recv: &Path, dir: &Path, rng: &mut Rng, segments: usize) -> BenchResult<Vec<f64>> {
    let (group, port, sid) = random_group(rng);
    let http_port = free_port()?;
    let out = dir.join("avail");
    let r = start_recv(recv, group, port, &sid, &out, Some(http_port))?;
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    sock.set_multicast_ttl_v4(1).map_err(|e| e.to_string())?;
    sock.set_multicast_loop_v4(true).map_err(|e| e.to_string())?;
    sock.connect(SocketAddr::from((group, port))).map_err(|e| e.to_string())?;
    let mut enc = SessionEncoder::new(EncoderConfig::new(SessionId::from_hex(&sid).map_err(|e| e.to_string())?));
    let mut http = Http::connect(http_port)?;
    let mut lat = Vec::with_capacity(segments);
    let mut body = vec![0u8; 100 << 10];
    for i in 0..segments {
        for b in body.iter_mut() {
            *b = rng.next_u64() as u8;
        }
        let path = format!("/live/seg-{i:05}.m4s");
        let request = [
            HeaderField::new(":method", "GET"),
            HeaderField::new(":scheme", "https"),
            HeaderField::new(":authority", "localhost"),
            HeaderField::new(":path", path.as_str()),
        ];
        let len = body.len().to_string();
        let response = [
            HeaderField::new(":status", "200"),
            HeaderField::new("content-type", "video/iso.segment"),
            HeaderField::new("content-length", len.as_str()),
        ];
        let mut datagrams = Vec::new();
        enc.push(&request, &response, &body, &mut datagrams).map_err(|e| e.to_string())?;
        let last = datagrams.pop().ok_or("no datagrams")?;
        for d in &datagrams {
            sock.send(d).map_err(|e| format!("send: {e}"))?;
        }
        // The promise has arrived; the player asks; the request is pending.
        thread::sleep(Duration::from_millis(3));
        http.send(&path)?;
        thread::sleep(Duration::from_millis(3));
        let t0 = Instant::now();
        sock.send(&last).map_err(|e| format!("send: {e}"))?;
        let status = http.status()?;
        let t1 = Instant::now();
        let a = http.rest(status, false)?;
        if a.status != 200 || a.len != body.len() as u64 {
            return Err(format!("{path}: {} with {} bytes", a.status, a.len));
        }
        lat.push((t1 - t0).as_secs_f64() * 1e6);
    }
    let (_, _, err) = r.stop(None)?;
    let summary = err.iter().rev().find(|(_, l)| l.contains("summary:")).map(|(_, l)| l.clone()).unwrap_or_default();
    if !summary.contains(&format!("complete={segments} ")) {
        return Err(format!("receiver summary: {summary}"));
    }
    let _ = std::fs::remove_dir_all(&out);
    lat.sort_by(f64::total_cmp);
    Ok(lat)
}

// ---------------------------------------------------------------------------------------------------
// 2. Reception with clients pulling every resource

struct SetRun {
    mib_s: f64,
    pulled: u64,
}

fn start_send(
    send: &Path,
    src: &Path,
    group: Ipv4Addr,
    port: u16,
    sid: &str,
    rate: &str,
) -> BenchResult<(Child, Watched)> {
    let child = Command::new(send)
        .arg(src)
        .args(["--group", &group.to_string(), "--port", &port.to_string(), "--interface", "127.0.0.1", "--ttl", "1"])
        .args(["--session-id", sid, "--rate", rate, "--quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", send.display()))?;
    let w = Watched::new(&child);
    pin(w.pid, SENDER_CPU);
    Ok((child, w))
}

/// One client: follows `/events` and fetches every resource that completes.
fn puller(port: u16, want: usize) -> thread::JoinHandle<BenchResult<u64>> {
    thread::spawn(move || {
        let (tx, rx) = mpsc::channel::<String>();
        let mut events = Http::connect(port)?;
        events.send("/events")?;
        let status = events.status()?;
        if status != 200 {
            return Err(format!("/events: {status}"));
        }
        thread::spawn(move || {
            let mut line = String::new();
            while events.conn.read_line(&mut line).is_ok_and(|n| n > 0) {
                if let Some(json) = line.trim_end().strip_prefix("data: ")
                    && let Ok(v) = serde_json::from_str::<serde_json::Value>(json)
                    && v["event"] == "resource"
                    && v["status"] == "complete"
                    && let Some(p) = v["path"].as_str()
                    && tx.send(p.to_owned()).is_err()
                {
                    break;
                }
                line.clear();
            }
        });
        let mut http = Http::connect(port)?;
        let mut bytes = 0;
        for _ in 0..want {
            let path = rx.recv_timeout(Duration::from_secs(60)).map_err(|_| "no more events".to_string())?;
            let a = http.get(&path, false)?;
            if a.status != 200 {
                return Err(format!("{path}: {}", a.status));
            }
            bytes += a.len;
        }
        Ok(bytes)
    })
}

fn receive_set(
    bins: &(PathBuf, PathBuf),
    dir: &Path,
    src: &Path,
    rate: &str,
    clients: usize,
    rng: &mut Rng,
) -> BenchResult<SetRun> {
    let (group, port, sid) = random_group(rng);
    let out = dir.join("set-out");
    let _ = std::fs::remove_dir_all(&out);
    let http_port = (clients > 0).then(free_port).transpose()?;
    let r = start_recv(&bins.1, group, port, &sid, &out, http_port)?;
    let pullers: Vec<_> = http_port.map_or(Vec::new(), |p| (0..clients).map(|_| puller(p, FILES)).collect());
    thread::sleep(Duration::from_millis(100));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let first = probe(SocketAddr::from((group, port)), stop.clone())?;
    let (send, send_w) = start_send(&bins.0, src, group, port, &sid, rate)?;
    let send_exit = send_w.wait(Instant::now() + Duration::from_secs(120))?;
    drop(send);
    if send_exit.code != Some(0) {
        return Err(format!("h3m-send exited {:?}", send_exit.code));
    }
    let mut pulled = 0;
    let mut client_errors = Vec::new();
    for p in pullers {
        match p.join().map_err(|_| "client panicked".to_string())? {
            Ok(b) if b == FILES as u64 * FILE_LEN => pulled += b,
            Ok(b) => client_errors.push(format!("a client pulled {b} bytes")),
            Err(e) => client_errors.push(e),
        }
    }
    // Without --serve it ends on the session's end signal.
    let exited = if clients == 0 { Some(r.watched.wait(Instant::now() + Duration::from_secs(30))?) } else { None };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let first = first.join().unwrap_or(None).ok_or("no datagram seen")?;
    let (_, lines, err) = r.stop(exited)?;
    let complete: Vec<Instant> = lines.iter().filter(|(_, l)| l.starts_with("complete")).map(|(t, _)| *t).collect();
    if complete.len() != FILES || !client_errors.is_empty() {
        let summary = err.iter().rev().find(|(_, l)| l.contains("summary:")).map(|(_, l)| l.as_str()).unwrap_or("");
        return Err(format!("{} of {FILES} complete, clients: {client_errors:?}; {summary}", complete.len()));
    }
    for i in [0, FILES / 2, FILES - 1] {
        let name = format!("f{i:03}.bin");
        if sha256_file(&out.join(&name))? != sha256_file(&src.join(&name))? {
            return Err(format!("{name} differs"));
        }
    }
    let last = complete.iter().max().copied().unwrap_or(first);
    let secs = last.saturating_duration_since(first).as_secs_f64();
    let _ = std::fs::remove_dir_all(&out);
    Ok(SetRun { mib_s: (FILES as u64 * FILE_LEN) as f64 / secs / (1 << 20) as f64, pulled })
}

// ---------------------------------------------------------------------------------------------------
// 3. Memory: 1 GiB to 8 clients

fn serve_big(
    bins: &(PathBuf, PathBuf),
    dir: &Path,
    src: &Path,
    sha: &[u8; 32],
    rng: &mut Rng,
) -> BenchResult<(f64, f64)> {
    let (group, port, sid) = random_group(rng);
    let out = dir.join("big-out");
    let http_port = free_port()?;
    let r = start_recv(&bins.1, group, port, &sid, &out, Some(http_port))?;
    let (send, send_w) = start_send(&bins.0, src, group, port, &sid, "2G")?;
    // Ask while it is still arriving: each client's request waits for it.
    thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let clients: Vec<_> = (0..BIG_CLIENTS)
        .map(|i| {
            thread::spawn(move || -> BenchResult<Answer> {
                let mut http = Http::connect(http_port)?;
                http.get("/big.bin", i == 0)
            })
        })
        .collect();
    let send_exit = send_w.wait(Instant::now() + Duration::from_secs(120))?;
    drop(send);
    if send_exit.code != Some(0) {
        return Err(format!("h3m-send exited {:?}", send_exit.code));
    }
    for c in clients {
        let a = c.join().map_err(|_| "client panicked".to_string())??;
        if a.status != 200 || a.len != BIG_LEN {
            return Err(format!("/big.bin: {} with {} bytes", a.status, a.len));
        }
        if let Some(got) = a.sha256
            && got != *sha
        {
            return Err(format!("/big.bin served with SHA-256 {}, not {}", hex(&got), hex(sha)));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let (exit, _, _) = r.stop(None)?;
    let _ = std::fs::remove_dir_all(&out);
    Ok((exit.max_rss_kib as f64 / 1024.0, secs))
}
