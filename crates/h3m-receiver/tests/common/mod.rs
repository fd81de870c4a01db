//! Helpers shared by the end-to-end tests of `h3m-recv`.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use h3m_net::testns::NetNs;

/// The `h3m-send` binary of this build, next to `h3m-recv`.
pub fn h3m_send() -> PathBuf {
    workspace_bin("h3m-send", "h3m-sender", &["h3m-proto", "h3m-net", "h3m-unicast", "h3m-sender"])
}

/// The `h3m-amt-relay` binary of this build, next to `h3m-recv`.
pub fn h3m_amt_relay() -> PathBuf {
    workspace_bin("h3m-amt-relay", "h3m-amt", &["h3m-net", "h3m-amt"])
}

/// Binary `name` of workspace package `package`, from the target directory of
/// this build, freshly built.
///
/// The binary is always built (once per test process, with the same Cargo,
/// profile and target directory): a binary that merely exists may be stale
/// (`cargo test -p h3m-receiver` after an edit to the sender does not rebuild
/// `h3m-send`), and these tests must never run against an old sender.
/// When it is up to date the build is a no-op that takes a fraction of a second.
/// `sources` are the workspace crates the binary is built from: none of their
/// sources may be newer than it.
pub fn workspace_bin(name: &str, package: &str, sources: &[&str]) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let recv = Path::new(env!("CARGO_BIN_EXE_h3m-recv"));
    let bin = recv.with_file_name(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == name) {
        let profile_dir = recv.parent().expect("binary directory");
        let target_dir = profile_dir.parent().expect("target directory");
        let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
        cmd.args(["build", "--quiet", "-p", package, "--bin", name, "--target-dir"]).arg(target_dir);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo to build a workspace binary");
        assert!(status.success(), "building {name} failed: {status}");
        built.push(name.to_owned());
    }
    assert!(bin.exists(), "{} is missing after building it", bin.display());
    if let Some(newer) = newest_source_after(&bin, sources) {
        panic!("{} is older than {}: a stale binary would be tested", bin.display(), newer.display());
    }
    bin
}

/// A source file of the workspace's crates modified after `bin` was built,
/// if any (the check that [`workspace_bin`] never hands out a stale binary).
fn newest_source_after(bin: &Path, sources: &[&str]) -> Option<PathBuf> {
    fn walk(dir: &Path, built: std::time::SystemTime) -> Option<PathBuf> {
        for entry in fs::read_dir(dir).ok()?.flatten() {
            let path = entry.path();
            let meta = entry.metadata().ok()?;
            if meta.is_dir() {
                if let Some(p) = walk(&path, built) {
                    return Some(p);
                }
            } else if path.extension().is_some_and(|e| e == "rs") && meta.modified().ok()? > built {
                return Some(path);
            }
        }
        None
    }
    let built = fs::metadata(bin).ok()?.modified().ok()?;
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    sources.iter().find_map(|c| walk(&crates.join(c).join("src"), built))
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

pub static SERIAL: Mutex<()> = Mutex::new(());

/// One test at a time (a panicking test must not block the others), with
/// `h3m-send` built first: building it takes seconds even when it is up to
/// date, and a receiver started before that could reach its idle timeout
/// before the sender runs.
pub fn serial() -> MutexGuard<'static, ()> {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    h3m_send();
    guard
}

pub fn recv_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_h3m-recv"))
}

pub fn send_bin() -> PathBuf {
    h3m_send()
}

/// A random number (std's randomly keyed hasher, mixed with the clock).
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.write_u32(std::process::id());
    h.finish()
}

pub fn random_port() -> u16 {
    20_000 + (random_u64() % 40_000) as u16
}

pub fn random_session_id() -> String {
    format!("{:016x}", random_u64())
}

/// What a finished process left.
#[derive(Debug)]
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// A child process (possibly under `ip netns exec`, which execs in place, so the PID is the program's),
/// killed on drop if still running. Its output goes to files, so it never blocks on a full pipe.
pub struct Proc {
    pub name: String,
    pub child: Option<Child>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub started: Instant,
}

impl Proc {
    pub fn spawn<S: AsRef<OsStr>>(
        name: &str,
        ns: Option<&NetNs>,
        bin: &Path,
        args: &[S],
        logs: &Path,
        stdin: Stdio,
    ) -> Proc {
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns.name()]).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.args(args);
        let stdout = logs.join(format!("{name}.stdout"));
        let stderr = logs.join(format!("{name}.stderr"));
        cmd.stdin(stdin)
            .stdout(fs::File::create(&stdout).expect("create stdout log"))
            .stderr(fs::File::create(&stderr).expect("create stderr log"));
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {name} ({}): {e}", bin.display()));
        Proc { name: name.to_owned(), child: Some(child), stdout, stderr, started: Instant::now() }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("running")
    }

    pub fn logs(&self) -> (String, String) {
        (fs::read_to_string(&self.stdout).unwrap_or_default(), fs::read_to_string(&self.stderr).unwrap_or_default())
    }

    /// Waits for the process to exit; after `timeout` kills it and fails the test.
    pub fn wait(mut self, timeout: Duration) -> Finished {
        let deadline = self.started + timeout;
        let mut child = self.child.take().expect("running");
        loop {
            match child.try_wait().expect("try_wait") {
                Some(status) => {
                    let (stdout, stderr) = self.logs();
                    return Finished { code: status.code(), stdout, stderr, elapsed: self.started.elapsed() };
                }
                None if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let (stdout, stderr) = self.logs();
                    panic!(
                        "{} (pid {}) did not exit within {timeout:?}: killed.\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}",
                        self.name,
                        child.id()
                    );
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Waits until the process has a UDP socket bound to `port` (the receiver binds, then joins at once),
    /// so a sender started afterwards is not early.
    pub fn wait_bound(&mut self, port: u16) {
        let needle = format!(":{port:04X}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pid = self.pid();
            let bound = ["udp", "udp6"].iter().any(|f| {
                fs::read_to_string(format!("/proc/{pid}/net/{f}")).is_ok_and(|t| {
                    t.lines().skip(1).any(|l| l.split_whitespace().nth(1).is_some_and(|a| a.ends_with(&needle)))
                })
            });
            if bound {
                // Joining follows the bind immediately; leave it a moment.
                std::thread::sleep(Duration::from_millis(100));
                return;
            }
            if let Some(status) = self.child().try_wait().expect("try_wait") {
                let (stdout, stderr) = self.logs();
                panic!("{} exited early ({status}):\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}", self.name);
            }
            assert!(Instant::now() < deadline, "{} never bound UDP port {port}", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take()
            && child.try_wait().ok().flatten().is_none()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Where a program runs and which interface/addresses it uses.
#[derive(Clone, Copy)]
pub struct Side<'a> {
    pub ns: Option<&'a NetNs>,
    pub interface: &'a str,
}

pub struct RecvSpec<'a> {
    pub name: &'a str,
    pub side: Side<'a>,
    pub group: &'a str,
    pub port: u16,
    pub source: Option<&'a str>,
    pub session_id: &'a str,
    pub out: &'a Path,
    pub idle_timeout: &'a str,
}

pub fn start_receiver(spec: &RecvSpec<'_>, logs: &Path) -> Proc {
    start_receiver_with(spec, logs, &[])
}

/// [`start_receiver`] with more arguments.
pub fn start_receiver_with(spec: &RecvSpec<'_>, logs: &Path, extra: &[&str]) -> Proc {
    let port = spec.port.to_string();
    let out = spec.out.to_string_lossy().into_owned();
    let mut args = vec![
        "--group",
        spec.group,
        "--port",
        &port,
        "--interface",
        spec.side.interface,
        "--session-id",
        spec.session_id,
        "--out",
        &out,
        "--idle-timeout",
        spec.idle_timeout,
        "--quiet",
    ];
    if let Some(s) = spec.source {
        args.extend(["--source", s]);
    }
    args.extend_from_slice(extra);
    let mut p = Proc::spawn(spec.name, spec.side.ns, &recv_bin(), &args, logs, Stdio::null());
    p.wait_bound(spec.port);
    p
}

pub struct SendSpec<'a> {
    pub side: Side<'a>,
    pub group: &'a str,
    pub port: u16,
    pub source: Option<&'a str>,
    pub session_id: &'a str,
    pub rate: &'a str,
    /// PATHs and further options.
    pub extra: Vec<String>,
}

pub fn sender_args(spec: &SendSpec<'_>) -> Vec<String> {
    let mut args: Vec<String> = spec.extra.clone();
    for (k, v) in [
        ("--group", spec.group),
        ("--port", &spec.port.to_string()),
        ("--interface", spec.side.interface),
        ("--session-id", spec.session_id),
        ("--rate", spec.rate),
        ("--ttl", "1"),
    ] {
        args.push(k.to_owned());
        args.push(v.to_owned());
    }
    if let Some(s) = spec.source {
        args.push("--source".to_owned());
        args.push(s.to_owned());
    }
    args.push("--quiet".to_owned());
    args
}

/// Runs the sender to its end; it must succeed.
pub fn run_sender(spec: &SendSpec<'_>, logs: &Path, timeout: Duration) -> Finished {
    let p = Proc::spawn("h3m-send", spec.side.ns, &send_bin(), &sender_args(spec), logs, Stdio::null());
    let f = p.wait(timeout);
    assert_eq!(f.code, Some(0), "h3m-send failed:\n--- stdout:\n{}\n--- stderr:\n{}", f.stdout, f.stderr);
    f
}

// ---------------------------------------------------------------------------
// Trees
// ---------------------------------------------------------------------------

/// splitmix64: reproducible file contents from a printed seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(len);
        v
    }

    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

pub fn write_file(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("create dirs");
    fs::write(&p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

/// Every entry under `root` (hidden ones too): relative `/` path -> (length, SHA-256). Anything that is not
/// a regular file or directory is recorded as such, so it cannot go unnoticed.
pub fn tree_digests(root: &Path) -> BTreeMap<String, (u64, String)> {
    pub fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (u64, String)>) {
        let Ok(entries) = fs::read_dir(dir) else { return };
        for e in entries {
            let e = e.expect("read_dir entry");
            let path = e.path();
            let rel = path.strip_prefix(root).expect("under root").to_string_lossy().into_owned();
            let ft = e.file_type().expect("file type");
            if ft.is_dir() {
                walk(root, &path, out);
            } else if ft.is_file() {
                let data = fs::read(&path).expect("read file");
                out.insert(rel, (data.len() as u64, sha256_hex(&data)));
            } else {
                out.insert(rel, (0, format!("not a regular file: {ft:?}")));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The receiver's way of showing a name in text lines (`report::escape_name`): whitespace, control
/// characters and `%` percent-encoded.
pub fn escape_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c == '%' || c.is_whitespace() || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Receiver reports
// ---------------------------------------------------------------------------

/// The receiver's stdout lines and summary, parsed.
#[derive(Debug, Default)]
pub struct Report {
    /// (name as printed, bytes, sha256 hex)
    pub complete: Vec<(String, u64, String)>,
    /// names as printed
    pub incomplete: Vec<String>,
    /// `unpromised push N on stream S` lines
    pub unpromised: Vec<String>,
    /// any other stdout line (refused, failed)
    pub other: Vec<String>,
    pub summary: HashMap<String, String>,
}

impl Report {
    pub fn parse(f: &Finished) -> Report {
        let mut r = Report::default();
        for line in f.stdout.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["complete", name, bytes, "bytes", sha, ..] if sha.starts_with("sha256:") => r.complete.push((
                    (*name).to_owned(),
                    bytes.parse().expect("byte count"),
                    sha["sha256:".len()..].to_owned(),
                )),
                ["incomplete", name, ..] => r.incomplete.push((*name).to_owned()),
                ["unpromised", "push", ..] => r.unpromised.push(line.to_owned()),
                _ => r.other.push(line.to_owned()),
            }
        }
        let summary = f
            .stderr
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("h3m-recv: summary: "))
            .unwrap_or_else(|| panic!("no summary line in stderr:\n{}", f.stderr));
        for kv in summary.split_whitespace() {
            if let Some((k, v)) = kv.split_once('=') {
                r.summary.insert(k.to_owned(), v.to_owned());
            }
        }
        r
    }

    pub fn count(&self, key: &str) -> u64 {
        self.summary.get(key).map_or(0, |v| v.parse().expect("numeric summary field"))
    }
}

pub fn show(f: &Finished) -> String {
    format!("exit {:?}\n--- stdout:\n{}\n--- stderr:\n{}", f.code, f.stdout, f.stderr)
}

/// Everything arrived: exit 0, the output tree equals the source tree byte for byte (so no temporary file
/// is left either), and the stdout lines are exactly one `complete` per file with its length and SHA-256.
pub fn assert_all_intact(f: &Finished, expected: &BTreeMap<String, (u64, String)>, out: &Path) -> Report {
    let r = Report::parse(f);
    assert_eq!(f.code, Some(0), "receiver should exit 0: {}", show(f));
    assert!(r.incomplete.is_empty() && r.other.is_empty(), "unexpected lines: {}", show(f));
    let got = tree_digests(out);
    if &got != expected {
        let missing: Vec<_> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
        let extra: Vec<_> = got.keys().filter(|k| !expected.contains_key(*k)).collect();
        let differ: Vec<_> =
            expected.iter().filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v)).map(|(k, _)| k).collect();
        panic!("output tree differs: missing {missing:?}, extra {extra:?}, different {differ:?}\n{}", show(f));
    }
    let mut lines: Vec<(String, u64, String)> = r.complete.clone();
    lines.sort();
    let mut want: Vec<(String, u64, String)> =
        expected.iter().map(|(k, (len, sha))| (escape_name(k), *len, sha.clone())).collect();
    want.sort();
    assert_eq!(lines, want, "`complete` lines do not name exactly the files sent: {}", show(f));
    r
}

pub fn logs_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("h3m-e2e-").tempdir().expect("temp dir")
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Whether `nft` (nftables) can be run.
pub fn nft_available() -> bool {
    Command::new("nft").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Loads an nftables ruleset inside `ns` (it goes away with the namespace).
pub fn nft_in(ns: &NetNs, ruleset: &str) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns.name(), "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nft");
    child.stdin.take().expect("stdin").write_all(ruleset.as_bytes()).expect("write ruleset");
    let out = child.wait_with_output().expect("nft");
    assert!(out.status.success(), "nft -f failed: {}\n{ruleset}", String::from_utf8_lossy(&out.stderr));
}
