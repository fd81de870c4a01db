//! `h3m-recv --serve`: a session received in process (datagrams built with
//! h3m-proto's sender, fed to an embedded [`Session`] writing into a
//! temporary directory, its records handed to the server's [`Feed`]), then
//! real HTTP/1.1 requests on 127.0.0.1: bodies byte for byte, headers,
//! ranges, `304`, a request waiting for a resource answered the moment it
//! completes, `504`, `503` with the missing ranges, `404`, escapes refused,
//! the waiter budget under a flood, `/metrics`, the status and `/events`;
//! and the binary with `--input ... --serve`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use h3m_proto::SessionId;
use h3m_proto::encoder::EncoderConfig;
use h3m_proto::protection::NullProtection;
use h3m_proto::sender::{ResourceMeta, Sender, SenderConfig};
use h3m_receiver::report::{Observer, Record, ResourceStatus};
use h3m_receiver::serve::{Feed, ServeOptions, Server};
use h3m_receiver::writer::ResourceWriter;
use h3m_receiver::{Session, SessionConfig};

#[path = "support/datagrams_file.rs"]
mod datagrams_file;

const SID: &str = "5e7e";

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
    out
}

fn body(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 11) as u8).collect()
}

/// The datagrams of each resource, in order (the promise first); the last
/// resource ends the session.
fn datagrams(resources: &[(&str, &[u8])]) -> Vec<Vec<Vec<u8>>> {
    let mut sender =
        Sender::new(SenderConfig::new(EncoderConfig::new(SessionId::from_hex(SID).unwrap())), Box::new(NullProtection));
    let now = Instant::now();
    resources
        .iter()
        .enumerate()
        .map(|(i, (path, body))| {
            let mut meta = ResourceMeta::file(*path, body.len() as u64, UNIX_EPOCH);
            meta.sha256 = Some(sha256(body));
            meta.last = i + 1 == resources.len();
            let id = sender.start(&meta).unwrap();
            sender.write(id, body).unwrap();
            sender.finish(id, None).unwrap();
            std::iter::from_fn(|| sender.poll_transmit(now)).collect()
        })
        .collect()
}

/// A receiver writing into a temporary directory, its records fed to a server.
struct Rig {
    server: Server,
    feed: Feed,
    session: Option<Session<ResourceWriter>>,
    dir: tempfile::TempDir,
    records: Vec<Record>,
}

impl Rig {
    fn new(configure: impl FnOnce(&mut ServeOptions)) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let writer = ResourceWriter::new(&out).unwrap();
        let session = Session::new(SessionConfig::new(SessionId::from_hex(SID).unwrap()), writer);
        let mut opts = ServeOptions::new("127.0.0.1:0".parse().unwrap(), &out);
        configure(&mut opts);
        let server = Server::spawn(opts).unwrap();
        let feed = server.feed();
        Rig { server, feed, session: Some(session), dir, records: Vec::new() }
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    fn pump(&mut self) {
        let session = self.session.as_mut().unwrap();
        while let Some(r) = session.poll_event() {
            self.feed.record(&r);
            self.records.push(r);
        }
    }

    fn feed_datagrams<'a>(&mut self, datagrams: impl IntoIterator<Item = &'a Vec<u8>>) {
        for d in datagrams {
            self.session.as_mut().unwrap().handle_datagram(Instant::now(), d);
        }
        self.pump();
    }

    /// Ends the session: what is incomplete is given up; the summary last.
    fn end(&mut self) {
        let (_, _, events) = self.session.take().unwrap().finish(Instant::now());
        for r in events {
            self.feed.record(&r);
            self.records.push(r);
        }
    }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`); the raw
/// request target is sent as given.
fn request(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Resp {
    try_request(addr, method, target, headers).expect("an HTTP response")
}

/// [`request`], `None` when the connection ends without a response.
fn try_request(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Option<Resp> {
    let mut tcp = TcpStream::connect(addr).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    Some(Resp { status, headers, body: raw[split + 4..].to_vec() })
}

fn get(addr: SocketAddr, target: &str) -> Resp {
    request(addr, "GET", target, &[])
}

#[test]
fn complete_resources_are_served_with_their_headers_ranges_and_conditionals() {
    let seg = body(300_000, 1);
    let page = b"<!doctype html><title>x</title>\n".to_vec();
    let empty: Vec<u8> = Vec::new();
    let wire = datagrams(&[("media/seg 1.m4s", &seg), ("index.html", &page), ("empty.bin", &empty)]);
    let mut rig = Rig::new(|o| o.cors = Some("*".into()));
    rig.feed_datagrams(wire.iter().flatten());
    let addr = rig.addr();
    let written = rig.records.iter().filter(|r| matches!(r, Record::Resource(r) if r.complete)).count();
    assert_eq!(written, 3, "{:?}", rig.records);

    // Whole bodies, byte for byte, with their headers.
    let r = get(addr, "/media/seg%201.m4s");
    assert_eq!(r.status, 200);
    assert_eq!(sha256(&r.body), sha256(&seg));
    let etag = format!("\"{}\"", hex::encode(sha256(&seg)));
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(r.header("content-length"), Some("300000"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert!(r.header("date").is_some_and(|d| d.ends_with(" GMT")), "{:?}", r.headers);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let pushed_type = rig
        .records
        .iter()
        .find_map(|r| match r {
            Record::ResponseHeaders { push_id: 0, headers } => {
                headers.iter().find(|[n, _]| n == "content-type").map(|[_, v]| v.clone())
            }
            _ => None,
        })
        .expect("the push carried a content-type");
    assert_eq!(r.header("content-type"), Some(pushed_type.as_str()));
    let r = get(addr, "/index.html");
    assert_eq!((r.status, &r.body), (200, &page));
    assert!(r.header("content-type").unwrap().starts_with("text/html"), "{:?}", r.headers);
    let r = get(addr, "/empty.bin");
    assert_eq!((r.status, r.body.len(), r.header("content-length")), (200, 0, Some("0")));

    // HEAD: the same head, no body.
    let r = request(addr, "HEAD", "/media/seg%201.m4s", &[]);
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert_eq!(r.header("content-length"), Some("300000"));
    assert_eq!(r.header("etag"), Some(etag.as_str()));

    // Ranges.
    let r = request(addr, "GET", "/media/seg%201.m4s", &[("Range", "bytes=1000-70999")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 1000-70999/300000"));
    assert_eq!(r.body, seg[1000..71000]);
    let r = request(addr, "GET", "/media/seg%201.m4s", &[("Range", "bytes=-10")]);
    assert_eq!((r.status, &r.body[..]), (206, &seg[seg.len() - 10..]));
    let r = request(addr, "GET", "/media/seg%201.m4s", &[("Range", "bytes=299990-")]);
    assert_eq!((r.status, r.header("content-range")), (206, Some("bytes 299990-299999/300000")));
    let r = request(addr, "GET", "/media/seg%201.m4s", &[("Range", "bytes=300000-")]);
    assert_eq!((r.status, r.header("content-range")), (416, Some("bytes */300000")));
    // Not one valid range: ignored, the whole body.
    let r = request(addr, "GET", "/media/seg%201.m4s", &[("Range", "bytes=0-1,5-6")]);
    assert_eq!((r.status, r.body.len()), (200, 300_000));
    // If-Range with another ETag: the whole body; with this one: the range.
    let r = request(addr, "GET", "/media/seg%201.m4s", &[("Range", "bytes=0-9"), ("If-Range", "\"other\"")]);
    assert_eq!((r.status, r.body.len()), (200, 300_000));
    let r = request(addr, "GET", "/media/seg%201.m4s", &[("Range", "bytes=0-9"), ("If-Range", &etag)]);
    assert_eq!((r.status, &r.body[..]), (206, &seg[..10]));

    // Conditionals.
    let r = request(addr, "GET", "/media/seg%201.m4s", &[("If-None-Match", &format!("\"x\", {etag}"))]);
    assert_eq!((r.status, r.body.len(), r.header("etag")), (304, 0, Some(etag.as_str())));
    let r = request(addr, "GET", "/media/seg%201.m4s", &[("If-None-Match", "\"x\"")]);
    assert_eq!(r.status, 200);

    // Unknown, other methods, and the CORS preflight.
    assert_eq!(get(addr, "/nothing-here.bin").status, 404);
    assert_eq!(request(addr, "POST", "/index.html", &[]).status, 405);
    let r = request(addr, "OPTIONS", "/index.html", &[]);
    assert_eq!((r.status, r.header("access-control-allow-methods")), (204, Some("GET, HEAD")));

    // A file changed behind the receiver's back is not served as the
    // resource: replaced by another of the same length, or rewritten longer.
    let file = rig.dir.path().join("out/index.html");
    let other = rig.dir.path().join("out/other");
    std::fs::write(&other, vec![b'x'; page.len()]).unwrap();
    std::fs::rename(&other, &file).unwrap();
    let r = get(addr, "/index.html");
    assert_eq!((r.status, r.header("retry-after")), (503, Some("1")));
    std::fs::write(&file, b"tampered, and longer than it was before").unwrap();
    assert_eq!(get(addr, "/index.html").status, 503);
    std::fs::remove_file(&file).unwrap();
    assert_eq!(get(addr, "/index.html").status, 404);
}

#[test]
fn a_request_for_a_promised_resource_is_answered_when_it_completes() {
    let seg = body(200_000, 2);
    let wire = datagrams(&[("live/seg-7.m4s", &seg)]);
    let mut rig = Rig::new(|_| {});
    let addr = rig.addr();
    // The promise only.
    rig.feed_datagrams(&wire[0][..1]);
    assert!(rig.records.iter().any(|r| matches!(r, Record::PushPromised { .. })));
    let (tx, rx) = mpsc::channel();
    let client = std::thread::spawn(move || {
        let r = get(addr, "/live/seg-7.m4s");
        tx.send(Instant::now()).unwrap();
        r
    });
    // It waits...
    assert!(rx.recv_timeout(Duration::from_millis(500)).is_err(), "answered before the resource completed");
    // ...until the last datagram lands.
    let (last, rest) = wire[0][1..].split_last().unwrap();
    rig.feed_datagrams(rest);
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err(), "answered before the resource completed");
    rig.feed_datagrams([last]);
    let landed = Instant::now();
    let answered = rx.recv_timeout(Duration::from_secs(5)).expect("answered once complete");
    let r = client.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(sha256(&r.body), sha256(&seg));
    let delay = answered.saturating_duration_since(landed);
    eprintln!("answered {delay:?} after the last datagram was handled");
    assert!(delay < Duration::from_secs(2), "{delay:?}");
}

#[test]
fn waiting_times_out_with_504_and_an_incomplete_resource_is_503_with_its_missing_ranges() {
    let seg = body(100_000, 3);
    let wire = datagrams(&[("a.bin", &seg)]);
    let mut rig = Rig::new(|o| o.wait_timeout = Duration::from_millis(300));
    let addr = rig.addr();
    // The promise and the stream's start, then every datagram but two.
    let n = wire[0].len();
    assert!(n > 20);
    let kept: Vec<&Vec<u8>> =
        wire[0].iter().enumerate().filter(|(i, _)| *i != 10 && *i != 11).map(|(_, d)| d).collect();
    rig.feed_datagrams(kept);
    let started = Instant::now();
    let r = get(addr, "/a.bin");
    assert_eq!(r.status, 504);
    assert!(started.elapsed() >= Duration::from_millis(290), "{:?}", started.elapsed());
    // The session ends: given up, with exactly the ranges the receiver reports.
    rig.end();
    let record = rig
        .records
        .iter()
        .find_map(|r| match r {
            Record::Resource(r) if r.status == ResourceStatus::Incomplete => Some(r.clone()),
            _ => None,
        })
        .expect("an incomplete record");
    assert!(!record.missing.is_empty());
    let expected: Vec<String> = record.missing.iter().map(|[s, e]| format!("{s}-{}", e - 1)).collect();
    let r = get(addr, "/a.bin");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("h3m-missing"), Some(expected.join(",").as_str()));
    assert_eq!(r.header("h3m-missing-ranges"), Some(expected.len().to_string().as_str()));
    assert!(r.header("h3m-reason").is_some());
    // Nothing of it was written, nothing is served.
    assert!(!rig.dir.path().join("out/a.bin").exists());
}

#[test]
fn paths_never_leave_the_output_directory() {
    let page = b"inside\n".to_vec();
    let wire = datagrams(&[("ok.txt", &page)]);
    let mut rig = Rig::new(|_| {});
    rig.feed_datagrams(wire.iter().flatten());
    let addr = rig.addr();
    std::fs::write(rig.dir.path().join("secret"), b"outside the output directory").unwrap();
    assert_eq!(get(addr, "/ok.txt").body, page);
    for target in [
        "/../secret",
        "/%2e%2e/secret",
        "/%2E%2E/secret",
        "/..%2fsecret",
        "/..%2Fsecret",
        "/ok.txt/../../secret",
        "/%2F..%2Fsecret",
        "/%2fetc/passwd",
        "/..%5csecret",
        "/ok.txt%00",
        "/%zz",
        "/../../../../etc/passwd",
    ] {
        let r = get(addr, target);
        assert_eq!(r.status, 400, "{target}: {r:?}");
        assert!(!String::from_utf8_lossy(&r.body).contains("outside"), "{target}");
    }
    // A symlink planted where a served file is: not followed.
    std::fs::remove_file(rig.dir.path().join("out/ok.txt")).unwrap();
    std::os::unix::fs::symlink(rig.dir.path().join("secret"), rig.dir.path().join("out/ok.txt")).unwrap();
    let r = get(addr, "/ok.txt");
    assert_ne!(r.status, 200);
    assert!(!String::from_utf8_lossy(&r.body).contains("outside"));
}

#[test]
fn a_flood_of_waiting_requests_beyond_the_budget_gets_503_and_the_rest_are_answered() {
    const BUDGET: usize = 32;
    const CLIENTS: usize = 48;
    let seg = body(50_000, 4);
    let wire = datagrams(&[("next.m4s", &seg)]);
    let mut rig = Rig::new(|o| {
        o.max_waiters = BUDGET;
        o.wait_timeout = Duration::from_secs(20);
    });
    let addr = rig.addr();
    rig.feed_datagrams(&wire[0][..1]);
    let (tx, rx) = mpsc::channel();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let r = get(addr, "/next.m4s");
                tx.send(r.status).unwrap();
                r
            })
        })
        .collect();
    // The ones beyond the budget are answered at once, 503.
    let mut early = Vec::new();
    for _ in 0..CLIENTS - BUDGET {
        early.push(rx.recv_timeout(Duration::from_secs(10)).expect("an early answer"));
    }
    assert!(early.iter().all(|s| *s == 503), "{early:?}");
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err(), "a waiter was answered early");
    let metrics = String::from_utf8(get(addr, "/metrics").body).unwrap();
    assert!(metrics.contains(&format!("\nh3m_serve_waiting {BUDGET}\n")), "{metrics}");
    rig.feed_datagrams(&wire[0][1..]);
    let mut statuses: Vec<u16> = clients.into_iter().map(|c| c.join().unwrap().status).collect();
    statuses.sort_unstable();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), BUDGET, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 503).count(), CLIENTS - BUDGET);
    let metrics = String::from_utf8(get(addr, "/metrics").body).unwrap();
    assert!(metrics.contains("\nh3m_serve_waiting 0\n"), "{metrics}");
}

/// The value of one sample of a Prometheus text exposition.
fn sample(metrics: &str, series: &str) -> Option<u64> {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_status_and_events() {
    let a = body(40_000, 5);
    let b = body(40_000, 6);
    let wire = datagrams(&[("one.bin", &a), ("two.bin", &b)]);
    let mut rig = Rig::new(|_| {});
    let addr = rig.addr();

    // An event feed, open before anything happens.
    let mut sse = TcpStream::connect(addr).unwrap();
    sse.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    sse.write_all(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut sse = BufReader::new(sse);
    let mut line = String::new();
    sse.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let mut head = Vec::new();
    loop {
        line.clear();
        sse.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        head.push(line.trim().to_ascii_lowercase());
    }
    assert!(head.iter().any(|h| h == "content-type: text/event-stream"), "{head:?}");
    // Wait until the feed is registered (its first comment came).
    loop {
        line.clear();
        sse.read_line(&mut line).unwrap();
        if line.contains("h3m-recv events") {
            break;
        }
    }

    rig.feed_datagrams(wire[0].iter());
    // The first segment is lost whole but for its promise.
    rig.feed_datagrams(&wire[1][..1]);
    rig.end();
    assert_eq!(get(addr, "/one.bin").status, 200);
    assert_eq!(get(addr, "/two.bin").status, 503);
    assert_eq!(get(addr, "/nope").status, 404);

    // The feed carried the records as JSON, as `h3m-recv --json` prints them.
    let mut events = Vec::new();
    while !events.iter().any(|e: &serde_json::Value| e["event"] == "summary") {
        line.clear();
        sse.read_line(&mut line).unwrap();
        if let Some(json) = line.trim().strip_prefix("data: ") {
            events.push(serde_json::from_str(json).unwrap());
        }
    }
    let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"push_promised") && kinds.contains(&"response_headers"), "{kinds:?}");
    let resources: Vec<&serde_json::Value> = events.iter().filter(|e| e["event"] == "resource").collect();
    assert_eq!(resources.len(), 2, "{kinds:?}");
    assert_eq!(resources[0]["status"], "complete");
    assert_eq!(resources[0]["sha256"], hex::encode(sha256(&a)));
    assert_eq!(resources[1]["status"], "incomplete");

    // Metrics: well formed, and what happened.
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let metrics = String::from_utf8(r.body).unwrap();
    for l in metrics.lines() {
        if let Some(rest) = l.strip_prefix("# ") {
            assert!(rest.starts_with("HELP h3m_") || rest.starts_with("TYPE h3m_"), "{l}");
        } else {
            let (series, value) = l.rsplit_once(' ').unwrap();
            assert!(series.starts_with("h3m_"), "{l}");
            value.parse::<u64>().unwrap_or_else(|_| panic!("{l}"));
        }
    }
    assert_eq!(sample(&metrics, "h3m_receiver_resources_total{status=\"complete\"}"), Some(1));
    assert_eq!(sample(&metrics, "h3m_receiver_resources_total{status=\"incomplete\"}"), Some(1));
    assert_eq!(sample(&metrics, "h3m_receiver_promises_total"), Some(2));
    let datagrams_fed = (wire[0].len() + 1) as u64;
    assert_eq!(sample(&metrics, "h3m_receiver_packets_total"), Some(datagrams_fed));
    assert_eq!(sample(&metrics, "h3m_receiver_datagrams_total"), Some(datagrams_fed));
    // One resource and the event feed.
    assert_eq!(sample(&metrics, "h3m_serve_requests_total{code=\"200\"}"), Some(2));
    assert_eq!(sample(&metrics, "h3m_serve_requests_total{code=\"503\"}"), Some(1));
    assert_eq!(sample(&metrics, "h3m_serve_requests_total{code=\"404\"}"), Some(1));
    assert_eq!(sample(&metrics, "h3m_serve_body_bytes_total"), Some(40_000));
    assert_eq!(sample(&metrics, "h3m_serve_event_feeds"), Some(1));

    // The status page and its JSON.
    let r = get(addr, "/");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let page = String::from_utf8(r.body).unwrap();
    assert!(page.contains("EventSource(\"/events\")") && page.contains("/.well-known/h3m/status"));
    let status: serde_json::Value = serde_json::from_slice(&get(addr, "/.well-known/h3m/status").body).unwrap();
    assert_eq!(status["counts"]["complete"], 1);
    assert_eq!(status["counts"]["incomplete"], 1);
    assert_eq!(status["finished"], true);
    assert_eq!(status["receiver"]["packets"], datagrams_fed);
    let listed: Vec<&str> =
        status["resources"].as_array().unwrap().iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&"/one.bin") && listed.contains(&"/two.bin"));
}

/// The binary: `h3m-recv --input CAPTURE --serve 127.0.0.1:0` writes, then
/// serves what it wrote until SIGTERM, and exits with the run's status.
#[test]
fn the_binary_serves_a_capture_until_terminated() {
    let dir = tempfile::tempdir().unwrap();
    let a = body(123_457, 7);
    let wire = datagrams(&[("dir/a.bin", &a)]);
    let input = dir.path().join("s.datagrams");
    datagrams_file::write(&input, &wire.concat());
    let out = dir.path().join("out");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_h3m-recv"))
        .args(["--session-id", SID, "--serve", "127.0.0.1:0", "--serve-cors", "https://player.example", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut addr = None;
    let mut line = String::new();
    while addr.is_none() || !line.contains("still serving") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "h3m-recv ended early");
        if let Some(rest) = line.trim().strip_prefix("h3m-recv: serving on http://") {
            addr = Some(rest.trim_end_matches('/').parse::<SocketAddr>().unwrap());
        }
    }
    let addr = addr.unwrap();
    let r = get(addr, "/dir/a.bin");
    assert_eq!(r.status, 200);
    assert_eq!(sha256(&r.body), sha256(&a));
    assert_eq!(r.header("access-control-allow-origin"), Some("https://player.example"));
    assert_eq!(std::fs::read(out.join("dir/a.bin")).unwrap(), a);
    // SIGTERM ends it, with the run's exit status.
    let pid = i32::try_from(child.id()).unwrap();
    assert_eq!(unsafe_free_kill(pid), 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(TcpStream::connect(addr).is_err() || get_fails(addr));
}

/// Sends SIGTERM through the `kill` command (the test crate forbids no
/// unsafe code, but needs none either).
fn unsafe_free_kill(pid: i32) -> i32 {
    let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    status.code().unwrap_or(-1)
}

fn get_fails(addr: SocketAddr) -> bool {
    let Ok(mut tcp) = TcpStream::connect(addr) else { return true };
    let _ = tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut buf = Vec::new();
    tcp.read_to_end(&mut buf).is_err() || buf.is_empty()
}

/// Runs the status page's script in Node (when there is one) against the
/// server, with a stand-in document and `EventSource`: it renders the
/// session, the counts and each resource with its state, and logs events.
#[test]
fn the_status_page_script_renders_the_status() {
    if std::process::Command::new("node").arg("--version").output().is_err() {
        eprintln!("SKIP: no node to run the status page's script");
        return;
    }
    let a = body(10_000, 8);
    let b = body(10_000, 9);
    let wire = datagrams(&[("one.bin", &a), ("two.bin", &b)]);
    let mut rig = Rig::new(|o| o.session.group = "239.255.0.1:2000".into());
    rig.feed_datagrams(wire[0].iter());
    rig.feed_datagrams(&wire[1][..1]);
    rig.end();
    let page = String::from_utf8(get(rig.addr(), "/").body).unwrap();
    let script = &page[page.find("<script>").unwrap() + 8..page.find("</script>").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("page.js"), script).unwrap();
    let harness = dir.path().join("harness.js");
    std::fs::write(
        &harness,
        r#"
const vm = require("vm");
const [base, file] = process.argv.slice(2);
const els = {};
const document = { getElementById: id => (els[id] ??= { innerHTML: "", textContent: "", scrollTop: 0 }) };
class EventSource { constructor(url) { EventSource.url = url; EventSource.last = this; } }
const ctx = { document, EventSource, fetch: (u, o) => fetch(base + u, o), setInterval: () => 0, console };
vm.createContext(ctx);
vm.runInContext(require("fs").readFileSync(file, "utf8"), ctx);
setTimeout(() => {
  EventSource.last.onmessage({ data: JSON.stringify({ event: "resource", path: "/one.bin", status: "complete" }) });
  const out = {};
  for (const [k, v] of Object.entries(els)) out[k] = v.innerHTML || v.textContent;
  out.events_url = EventSource.url;
  console.log(JSON.stringify(out));
}, 1500);
"#,
    )
    .unwrap();
    let out = std::process::Command::new("node")
        .arg(&harness)
        .arg(format!("http://{}", rig.addr()))
        .arg(dir.path().join("page.js"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = |k: &str| shown[k].as_str().unwrap_or_default().to_owned();
    assert_eq!(text("state"), "(run ended, still serving)");
    assert!(text("session").contains("239.255.0.1:2000"), "{shown}");
    assert_eq!(text("counts"), "1 complete, 0 pending, 1 incomplete, 0 refused");
    let res = text("res");
    assert!(res.contains(r#"<a href="/one.bin">/one.bin</a></td><td class="complete">complete"#), "{res}");
    assert!(res.contains(r#"<td>/two.bin</td><td class="incomplete">incomplete"#), "{res}");
    assert!(text("rates").contains("packets"), "{shown}");
    assert!(text("log").contains("resource /one.bin complete"), "{shown}");
    assert_eq!(text("events_url"), "/events");
}

#[test]
fn connections_beyond_the_limit_are_closed_at_once() {
    let page = b"x\n".to_vec();
    let wire = datagrams(&[("x.txt", &page)]);
    let mut rig = Rig::new(|o| o.max_connections = 4);
    rig.feed_datagrams(wire.iter().flatten());
    let addr = rig.addr();
    // Four idle connections hold every slot.
    let held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    // A fifth is accepted and closed without an answer.
    let mut extra = TcpStream::connect(addr).unwrap();
    extra.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = extra.write_all(b"GET /x.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = Vec::new();
    let _ = extra.read_to_end(&mut buf);
    assert!(buf.is_empty(), "{}", String::from_utf8_lossy(&buf));
    // Once they close, the slots serve again, and the refusal was counted.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        if let Some(r) = try_request(addr, "GET", "/metrics", &[]) {
            break String::from_utf8(r.body).unwrap();
        }
        assert!(Instant::now() < deadline, "no slot came free");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(sample(&metrics, "h3m_serve_connections_refused_total").is_some_and(|n| n >= 1), "{metrics}");
    assert_eq!(get(addr, "/x.txt").body, page);
}
