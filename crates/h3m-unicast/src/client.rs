//! The repair client: byte ranges of resources from an origin, over HTTP/3
//! when it answers and HTTP/1.1 over TLS otherwise.
//!
//! One [`RepairClient`] holds one connection. Over HTTP/3 any number of
//! [`fetch`](RepairClient::fetch)es run side by side on it (each its own
//! stream); over HTTP/1.1 they take turns. Every answer is checked: the
//! status, the `Content-Range` against the range asked for, and the body's
//! length against both, so a response can only ever fill the bytes that
//! were asked for. Whether those bytes are the right ones is the caller's to
//! check (the receiver verifies the whole body's digest before writing).

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{StatusCode, header};
use rustls::pki_types::ServerName;

use crate::listing::{self, LISTING_PATH, Listed};
use crate::range::{ByteRange, ContentRange, parse_retry_after};

/// The longest listing line read (a `:path` of up to about 4 KiB).
const MAX_LISTING_LINE: u64 = 4200;
use crate::tls::{ALPN_H3, ALPN_HTTP11, TlsError, Trust};

/// Why an origin URL was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URI with a host.
    #[error("not an origin URL (https://HOST[:PORT]): {0}")]
    Malformed(String),
    /// A scheme other than `https`.
    #[error("the repair origin's scheme must be https, not {0}")]
    Scheme(String),
}

/// An origin: `https://HOST[:PORT]` (port 443 by default).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OriginUrl {
    /// The host: a DNS name or an IP address (without brackets).
    pub host: String,
    /// The port.
    pub port: u16,
}

impl OriginUrl {
    /// Parses `https://HOST[:PORT][/]` (a path, if any, is ignored).
    pub fn parse(s: &str) -> Result<OriginUrl, UrlError> {
        let uri: http::Uri = s.trim().parse().map_err(|_| UrlError::Malformed(s.into()))?;
        match uri.scheme_str() {
            Some("https") => {}
            Some(other) => return Err(UrlError::Scheme(other.into())),
            None => return Err(UrlError::Malformed(s.into())),
        }
        let authority = uri.authority().ok_or_else(|| UrlError::Malformed(s.into()))?;
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(UrlError::Malformed(s.into()));
        }
        Ok(OriginUrl { host: host.to_owned(), port: authority.port_u16().unwrap_or(443) })
    }

    /// The origin a push's `:authority` names (`HOST[:PORT]`, https).
    pub fn from_authority(authority: &str) -> Result<OriginUrl, UrlError> {
        OriginUrl::parse(&format!("https://{authority}"))
    }

    /// The `host:port` of requests (IPv6 in brackets).
    pub fn authority(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("[{}]:{}", self.host, self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }

    async fn resolve(&self) -> Result<SocketAddr, FetchError> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        let mut addrs = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| FetchError::Connect(format!("resolve {}: {e}", self.host)))?;
        addrs.next().ok_or_else(|| FetchError::Connect(format!("resolve {}: no address", self.host)))
    }
}

impl std::fmt::Display for OriginUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "https://{}", self.authority())
    }
}

/// How a [`RepairClient`] connects.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// How the origin's certificate is trusted.
    pub trust: Trust,
    /// How long a connection attempt (per protocol) may take.
    pub connect_timeout: Duration,
    /// How long one request may take.
    pub request_timeout: Duration,
    /// Try HTTP/3.
    pub http3: bool,
    /// Fall back to HTTP/1.1 over TLS (TCP).
    pub http1: bool,
    /// An HTTP/3 connection that hears nothing for this long is lost
    /// (keep-alives go out at a third of it, at most every 5 s).
    pub idle_timeout: Duration,
    /// How often a connection attempt that found the TCP port closed knocks
    /// on it while its HTTP/3 attempt waits (see [`wait_for_listener`]).
    pub listener_probe: Duration,
}

impl ClientConfig {
    /// HTTP/3 first, then HTTP/1.1; 3 s to connect, 30 s per request, 30 s
    /// idle, a closed port knocked on every [`LISTENER_PROBE`].
    pub fn new(trust: Trust) -> Self {
        ClientConfig {
            trust,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(30),
            http3: true,
            http1: true,
            idle_timeout: Duration::from_secs(30),
            listener_probe: LISTENER_PROBE,
        }
    }
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The origin could not be reached (by any protocol tried).
    #[error("connect: {0}")]
    Connect(String),
    /// TLS could not be set up.
    #[error("tls: {0}")]
    Tls(String),
    /// `503`: the origin is busy; ask again after the delay it gave.
    #[error("busy (503{})", .retry_after.map(|d| format!(", retry after {} s", d.as_secs())).unwrap_or_default())]
    Busy {
        /// Its `Retry-After`, if given in seconds.
        retry_after: Option<Duration>,
    },
    /// `404`: the origin does not have it.
    #[error("not found (404)")]
    NotFound,
    /// `416`: none of the range exists (yet).
    #[error("range not satisfiable (416)")]
    RangeNotSatisfiable,
    /// Another status.
    #[error("status {0}")]
    Status(u16),
    /// The answer does not match the question (its range or its length).
    #[error("bad response: {0}")]
    BadResponse(String),
    /// The request took longer than [`ClientConfig::request_timeout`].
    #[error("timed out")]
    Timeout,
    /// The connection or stream failed.
    #[error("transport: {0}")]
    Transport(String),
}

impl From<TlsError> for FetchError {
    fn from(e: TlsError) -> Self {
        FetchError::Tls(e.to_string())
    }
}

/// Bytes of a resource, as the origin sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Where they belong.
    pub range: Range<u64>,
    /// The resource's whole length, if the origin said.
    pub complete: Option<u64>,
    /// The bytes (`range.end - range.start` of them).
    pub body: Bytes,
    /// The whole resource's SHA-256, if the answer announced it
    /// (`repr-digest: sha-256=:…:`).
    pub sha256: Option<[u8; 32]>,
}

/// The protocol a client ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/3 over QUIC.
    Http3,
    /// HTTP/1.1 over TLS over TCP.
    Http11,
}

impl Protocol {
    /// `h3` or `http/1.1`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http3 => "h3",
            Protocol::Http11 => "http/1.1",
        }
    }
}

type H1Sender = hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>;

enum Transport {
    H3 {
        send_request: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
        driver: tokio::task::JoinHandle<()>,
        endpoint: quinn::Endpoint,
    },
    H1(tokio::sync::Mutex<H1Sender>),
}

/// A connection to a repair origin (see the [module docs](self)).
pub struct RepairClient {
    url: OriginUrl,
    transport: Transport,
    request_timeout: Duration,
}

impl std::fmt::Debug for RepairClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepairClient").field("url", &self.url).field("protocol", &self.protocol()).finish()
    }
}

impl Drop for RepairClient {
    fn drop(&mut self) {
        if let Transport::H3 { driver, endpoint, .. } = &self.transport {
            endpoint.close(0u32.into(), b"done");
            driver.abort();
        }
    }
}

fn server_name(url: &OriginUrl) -> Result<ServerName<'static>, FetchError> {
    ServerName::try_from(url.host.clone()).map_err(|e| FetchError::Connect(format!("server name {}: {e}", url.host)))
}

async fn connect_h3(url: &OriginUrl, addr: SocketAddr, config: &ClientConfig) -> Result<Transport, FetchError> {
    let bind: SocketAddr =
        if addr.is_ipv6() { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() } else { ([0; 4], 0).into() };
    let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| FetchError::Connect(format!("udp socket: {e}")))?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(config.trust.client_config(ALPN_H3)?)
        .map_err(|e| FetchError::Tls(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    let idle = config.idle_timeout.clamp(Duration::from_millis(100), Duration::from_secs(600));
    transport.max_idle_timeout(Some(idle.try_into().map_err(|_| FetchError::Connect("idle timeout".into()))?));
    transport.keep_alive_interval(Some((idle / 3).min(Duration::from_secs(5))));
    client.transport_config(Arc::new(transport));
    endpoint.set_default_client_config(client);
    let name = url.host.clone();
    let connecting = endpoint.connect(addr, &name).map_err(|e| FetchError::Connect(e.to_string()))?;
    let conn = connecting.await.map_err(|e| FetchError::Connect(format!("h3 {addr}: {e}")))?;
    let (mut driver, send_request) = h3::client::new(h3_quinn::Connection::new(conn))
        .await
        .map_err(|e| FetchError::Connect(format!("h3 {addr}: {e}")))?;
    let driver = tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    Ok(Transport::H3 { send_request, driver, endpoint })
}

async fn connect_tcp(addr: SocketAddr) -> Result<tokio::net::TcpStream, FetchError> {
    tokio::net::TcpStream::connect(addr).await.map_err(|e| FetchError::Connect(format!("tcp {addr}: {e}")))
}

async fn connect_h1(url: &OriginUrl, addr: SocketAddr, config: &ClientConfig) -> Result<Transport, FetchError> {
    h1_over(url, addr, config, connect_tcp(addr).await?).await
}

/// HTTP/1.1 over TLS over `tcp` (connected to `addr`).
async fn h1_over(
    url: &OriginUrl,
    addr: SocketAddr,
    config: &ClientConfig,
    tcp: tokio::net::TcpStream,
) -> Result<Transport, FetchError> {
    let _ = tcp.set_nodelay(true);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config.trust.client_config(ALPN_HTTP11)?));
    let tls =
        connector.connect(server_name(url)?, tcp).await.map_err(|e| FetchError::Connect(format!("tls {addr}: {e}")))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| FetchError::Connect(format!("http/1.1 {addr}: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Transport::H1(tokio::sync::Mutex::new(sender)))
}

/// HTTP/3, with the TCP connection for the HTTP/1.1 fallback opened
/// alongside (see [`RepairClient::connect`]); once more at once when the
/// origin started listening during the attempt.
async fn raced(url: &OriginUrl, addr: SocketAddr, config: &ClientConfig) -> Result<Transport, FetchError> {
    match race_once(url, addr, config).await {
        Err(RaceFailure::Opened(_)) => race_once(url, addr, config).await.map_err(RaceFailure::into_fetch_error),
        other => other.map_err(RaceFailure::into_fetch_error),
    }
}

/// Why one race failed.
enum RaceFailure {
    /// Nothing listened when it began, something does now: QUIC's first
    /// packet went to a closed port and would be resent only after its
    /// probe timeout (a second or so), so the race is run again.
    Opened(SocketAddr),
    /// Neither protocol connected.
    Failed(FetchError),
}

impl RaceFailure {
    fn into_fetch_error(self) -> FetchError {
        match self {
            RaceFailure::Opened(addr) => FetchError::Connect(format!("h3 {addr}: no answer; tcp {addr}: opened late")),
            RaceFailure::Failed(e) => e,
        }
    }
}

impl From<FetchError> for RaceFailure {
    fn from(e: FetchError) -> Self {
        RaceFailure::Failed(e)
    }
}

async fn race_once(url: &OriginUrl, addr: SocketAddr, config: &ClientConfig) -> Result<Transport, RaceFailure> {
    let started = tokio::time::Instant::now();
    let h3 = tokio::time::timeout(config.connect_timeout, connect_h3(url, addr, config));
    tokio::pin!(h3);
    let tcp = tokio::time::timeout(config.connect_timeout, connect_tcp(addr));
    tokio::pin!(tcp);
    let mut tcp_result: Option<Result<tokio::net::TcpStream, FetchError>> = None;
    let h3_result = loop {
        tokio::select! {
            biased;
            r = &mut h3 => break r,
            r = &mut tcp, if tcp_result.is_none() => {
                let r = r.unwrap_or_else(|_| Err(FetchError::Connect(format!("tcp {addr}: timed out"))));
                let refused = r.is_err();
                tcp_result = Some(r);
                if refused {
                    // Nothing listens on TCP: give QUIC a short grace only,
                    // and start again should the origin open meanwhile.
                    let grace = started.elapsed() * 2 + std::time::Duration::from_millis(100);
                    tokio::select! {
                        biased;
                        r = &mut h3 => break r,
                        opened = listener_opens(addr, grace, config.listener_probe) => {
                            if opened {
                                return Err(RaceFailure::Opened(addr));
                            }
                            break Ok(Err(FetchError::Connect(format!("h3 {addr}: no answer"))));
                        }
                    }
                }
            }
        }
    };
    let h3_failure = match h3_result {
        Ok(Ok(transport)) => return Ok(transport),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("h3 {addr}: timed out"),
    };
    let tcp = match tcp_result {
        Some(r) => r,
        None => tcp.await.unwrap_or_else(|_| Err(FetchError::Connect(format!("tcp {addr}: timed out")))),
    };
    let h1 = match tcp {
        Ok(tcp) => match tokio::time::timeout(config.connect_timeout, h1_over(url, addr, config, tcp)).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Connect(format!("http/1.1 {addr}: timed out"))),
        },
        Err(e) => Err(e),
    };
    Ok(h1.map_err(|e| FetchError::Connect(format!("{h3_failure}; {e}")))?)
}

/// The part of a response that decides what to do with its body.
struct Head {
    status: StatusCode,
    content_range: Option<String>,
    retry_after: Option<String>,
    sha256: Option<[u8; 32]>,
}

impl Head {
    fn of(status: StatusCode, headers: &http::HeaderMap) -> Head {
        let get = |h| headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Head {
            status,
            content_range: get(header::CONTENT_RANGE),
            retry_after: get(header::RETRY_AFTER),
            sha256: headers.get_all("repr-digest").iter().find_map(|v| crate::repr_digest::parse(v.as_bytes())),
        }
    }

    /// Which bytes of `asked` the body will hold and where the body starts:
    /// `(range, complete, skip)`, or the error the status means.
    fn expect(&self, asked: &Range<u64>) -> Result<(Range<u64>, Option<u64>, u64), FetchError> {
        match self.status {
            StatusCode::PARTIAL_CONTENT => {
                let cr = self.content_range.as_deref().ok_or_else(|| bad("206 without content-range"))?;
                let cr = ContentRange::parse(cr).map_err(|e| bad(format!("content-range: {e}")))?;
                // The origin may send less than asked (the end of a body, a
                // growing one); never other bytes.
                if cr.range.start != asked.start || cr.range.end > asked.end {
                    return Err(bad(format!("asked for {asked:?}, got {:?}", cr.range)));
                }
                Ok((cr.range, cr.complete, 0))
            }
            StatusCode::OK => Ok((asked.clone(), None, asked.start)),
            StatusCode::SERVICE_UNAVAILABLE => {
                Err(FetchError::Busy { retry_after: self.retry_after.as_deref().and_then(parse_retry_after) })
            }
            StatusCode::NOT_FOUND => Err(FetchError::NotFound),
            StatusCode::RANGE_NOT_SATISFIABLE => Err(FetchError::RangeNotSatisfiable),
            s => Err(FetchError::Status(s.as_u16())),
        }
    }
}

fn bad(s: impl Into<String>) -> FetchError {
    FetchError::BadResponse(s.into())
}

/// Gathers a body: skips `skip` bytes and keeps `range`'s bytes of a `200`
/// answer to a range (ignoring the rest); keeps a `206` answer's bytes,
/// which must be exactly the range.
struct Gather {
    skip: u64,
    want: usize,
    body: Vec<u8>,
    /// A `200` answer: bytes past the range are ignored, not an error.
    whole_body: bool,
}

impl Gather {
    fn new(range: &Range<u64>, skip: u64, whole_body: bool) -> Gather {
        let want = (range.end - range.start) as usize;
        Gather { skip, want, body: Vec::with_capacity(want.min(1 << 20)), whole_body }
    }

    /// Takes a chunk; `Ok(true)` once the range is whole.
    fn take(&mut self, mut chunk: &[u8]) -> Result<bool, FetchError> {
        let skip = (self.skip as usize).min(chunk.len());
        self.skip -= skip as u64;
        chunk = &chunk[skip..];
        let room = self.want - self.body.len();
        if chunk.len() > room {
            if !self.whole_body {
                return Err(bad("the body is longer than its range"));
            }
            chunk = &chunk[..room];
        }
        self.body.extend_from_slice(chunk);
        Ok(self.body.len() == self.want)
    }
}

/// How often [`wait_for_listener`] knocks.
pub const LISTENER_PROBE: Duration = Duration::from_millis(25);

/// Waits at most `within` for something to listen on `url`'s TCP port: a
/// bare TCP connect at once and every 25 ms while the port refuses (a SYN
/// answered by a reset, no TLS, no QUIC Initial), returning as soon as one
/// is not refused (accepted, unreachable, timed out) or the time is up. A client that found
/// nothing listening calls it instead of sleeping out its back-off, so that
/// it connects within 25 ms of an origin that is starting (an h3m origin
/// binds its UDP port before its TCP port, so an accepted probe means both
/// are open); an origin that serves HTTP/3 only is waited out as before.
pub async fn wait_for_listener(url: &OriginUrl, within: Duration) {
    wait_for_listener_every(url, within, LISTENER_PROBE).await;
}

/// [`wait_for_listener`], knocking every `every` (for a client that knows
/// the origin is starting now, e.g. because its sender's multicast arrives).
pub async fn wait_for_listener_every(url: &OriginUrl, within: Duration, every: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    match url.resolve().await {
        Ok(addr) => {
            listener_opens(addr, deadline.saturating_duration_since(tokio::time::Instant::now()), every).await;
        }
        Err(_) => tokio::time::sleep_until(deadline).await,
    }
}

/// Knocks on `addr`'s TCP port at once, then every `every` for at most
/// `within` while it refuses: `true` once a knock is accepted, `false` when
/// one fails otherwise or the time is up.
async fn listener_opens(addr: SocketAddr, within: Duration, every: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, tokio::net::TcpStream::connect(addr)).await {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Ok(Ok(_)) => return true,
            Ok(Err(_)) | Err(_) => return false,
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return false;
        }
        tokio::time::sleep_until(deadline.min(now + every)).await;
    }
}

impl RepairClient {
    /// Connects to `url`: HTTP/3 first, then HTTP/1.1 (as configured).
    ///
    /// With both, the TCP connection for HTTP/1.1 is opened alongside the
    /// QUIC handshake, so a fallback does not start from nothing; and when
    /// TCP is refused (nothing listens: an h3m origin serves both on one
    /// port) the QUIC attempt gets only twice as long as the refusal took,
    /// plus 100 ms, instead of [`ClientConfig::connect_timeout`], which
    /// QUIC, hearing nothing back from a closed port, would otherwise wait
    /// out.
    pub async fn connect(url: &OriginUrl, config: &ClientConfig) -> Result<RepairClient, FetchError> {
        let addr = url.resolve().await?;
        let client = |transport| RepairClient { url: url.clone(), transport, request_timeout: config.request_timeout };
        if config.http3 && config.http1 {
            return raced(url, addr, config).await.map(client);
        }
        let mut failures = Vec::new();
        if config.http3 {
            match tokio::time::timeout(config.connect_timeout, connect_h3(url, addr, config)).await {
                Ok(Ok(transport)) => {
                    return Ok(RepairClient { url: url.clone(), transport, request_timeout: config.request_timeout });
                }
                Ok(Err(e)) => failures.push(e.to_string()),
                Err(_) => failures.push(format!("h3 {addr}: timed out")),
            }
        }
        if config.http1 {
            match tokio::time::timeout(config.connect_timeout, connect_h1(url, addr, config)).await {
                Ok(Ok(transport)) => {
                    return Ok(RepairClient { url: url.clone(), transport, request_timeout: config.request_timeout });
                }
                Ok(Err(e)) => failures.push(e.to_string()),
                Err(_) => failures.push(format!("http/1.1 {addr}: timed out")),
            }
        }
        Err(FetchError::Connect(failures.join("; ")))
    }

    /// The origin.
    pub fn url(&self) -> &OriginUrl {
        &self.url
    }

    /// The protocol in use.
    pub fn protocol(&self) -> Protocol {
        match self.transport {
            Transport::H3 { .. } => Protocol::Http3,
            Transport::H1(_) => Protocol::Http11,
        }
    }

    /// What the origin's [push listing](crate::listing) says of push `push_id`
    /// (`None`: the origin does not know it).
    pub async fn lookup(&self, push_id: u64) -> Result<Option<Listed>, FetchError> {
        let path = format!("{LISTING_PATH}/{push_id}");
        match self.fetch(&path, 0..MAX_LISTING_LINE).await {
            Ok(f) => {
                let text = std::str::from_utf8(&f.body).map_err(|_| bad("the listing is not UTF-8"))?;
                let mut listed = listing::parse(text).map_err(|e| bad(e.to_string()))?;
                Ok(listed.remove(&push_id))
            }
            Err(FetchError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `range` of the resource at `path` (its `:path`, as pushed). The
    /// origin may answer with fewer bytes at the end of the body (then
    /// [`Fetched::range`] says which); never with other bytes.
    pub async fn fetch(&self, path: &str, range: Range<u64>) -> Result<Fetched, FetchError> {
        let value = ByteRange::header_value(&range).ok_or_else(|| bad("empty range"))?;
        match tokio::time::timeout(self.request_timeout, self.fetch_inner(path, &range, &value)).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout),
        }
    }

    /// Opens the long-lived response at `path` (a [feed](crate::feed)):
    /// its chunks as they come. Only the head is subject to
    /// [`ClientConfig::request_timeout`]; the body runs until the origin ends
    /// it or the stream is dropped.
    pub async fn stream(&self, path: &str) -> Result<BodyStream, FetchError> {
        match tokio::time::timeout(self.request_timeout, self.stream_inner(path)).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout),
        }
    }

    async fn stream_inner(&self, path: &str) -> Result<BodyStream, FetchError> {
        let transport_err = |e: &dyn std::fmt::Display| FetchError::Transport(e.to_string());
        let whole = 0..0;
        match &self.transport {
            Transport::H3 { send_request, .. } => {
                let req = http::Request::get(format!("https://{}{path}", self.url.authority()))
                    .body(())
                    .map_err(|e| bad(e.to_string()))?;
                let mut sr = send_request.clone();
                let mut stream = sr.send_request(req).await.map_err(|e| transport_err(&e))?;
                stream.finish().await.map_err(|e| transport_err(&e))?;
                let resp = stream.recv_response().await.map_err(|e| transport_err(&e))?;
                Head::of(resp.status(), resp.headers()).expect(&whole)?;
                Ok(BodyStream { inner: BodyInner::H3(Box::new(stream)) })
            }
            Transport::H1(sender) => {
                let req = http::Request::get(path)
                    .header(header::HOST, self.url.authority())
                    .body(http_body_util::Empty::<Bytes>::new())
                    .map_err(|e| bad(e.to_string()))?;
                let mut sender = sender.lock().await;
                sender.ready().await.map_err(|e| transport_err(&e))?;
                let resp = sender.send_request(req).await.map_err(|e| transport_err(&e))?;
                Head::of(resp.status(), resp.headers()).expect(&whole)?;
                Ok(BodyStream { inner: BodyInner::H1(resp.into_body()) })
            }
        }
    }

    async fn fetch_inner(&self, path: &str, asked: &Range<u64>, range_value: &str) -> Result<Fetched, FetchError> {
        let transport_err = |e: &dyn std::fmt::Display| FetchError::Transport(e.to_string());
        match &self.transport {
            Transport::H3 { send_request, .. } => {
                let req = http::Request::get(format!("https://{}{path}", self.url.authority()))
                    .header(header::RANGE, range_value)
                    .body(())
                    .map_err(|e| bad(e.to_string()))?;
                let mut sr = send_request.clone();
                let mut stream = sr.send_request(req).await.map_err(|e| transport_err(&e))?;
                stream.finish().await.map_err(|e| transport_err(&e))?;
                let resp = stream.recv_response().await.map_err(|e| transport_err(&e))?;
                let status = resp.status();
                let head = Head::of(status, resp.headers());
                let (range, complete, skip) = head.expect(asked)?;
                let mut g = Gather::new(&range, skip, status == StatusCode::OK);
                let mut whole = g.want == 0;
                while !whole {
                    let Some(mut chunk) = stream.recv_data().await.map_err(|e| transport_err(&e))? else { break };
                    while chunk.has_remaining() && !whole {
                        let c = chunk.chunk();
                        let n = c.len();
                        whole = g.take(c)?;
                        chunk.advance(n);
                    }
                }
                if !whole {
                    return Err(bad(format!("the body ended after {} of {} bytes", g.body.len(), g.want)));
                }
                stream.stop_sending(h3::error::Code::H3_NO_ERROR);
                Ok(Fetched { range, complete, body: g.body.into(), sha256: head.sha256 })
            }
            Transport::H1(sender) => {
                use http_body_util::BodyExt;
                let req = http::Request::get(path)
                    .header(header::HOST, self.url.authority())
                    .header(header::RANGE, range_value)
                    .body(http_body_util::Empty::<Bytes>::new())
                    .map_err(|e| bad(e.to_string()))?;
                let mut sender = sender.lock().await;
                sender.ready().await.map_err(|e| transport_err(&e))?;
                let resp = sender.send_request(req).await.map_err(|e| transport_err(&e))?;
                let status = resp.status();
                let head = Head::of(status, resp.headers());
                let (range, complete, skip) = head.expect(asked)?;
                let mut g = Gather::new(&range, skip, status == StatusCode::OK);
                let mut body = resp.into_body();
                let mut whole = g.want == 0;
                // Read to the end (the connection is then ready for the next request).
                while let Some(frame) = body.frame().await {
                    let frame = frame.map_err(|e| transport_err(&e))?;
                    if let Some(data) = frame.data_ref() {
                        whole = g.take(data)?;
                    }
                }
                if !whole {
                    return Err(bad(format!("the body ended after {} of {} bytes", g.body.len(), g.want)));
                }
                Ok(Fetched { range, complete, body: g.body.into(), sha256: head.sha256 })
            }
        }
    }
}

enum BodyInner {
    H3(Box<h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>>),
    H1(hyper::body::Incoming),
}

/// A response body read as it comes ([`RepairClient::stream`]).
pub struct BodyStream {
    inner: BodyInner,
}

impl std::fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let protocol = match self.inner {
            BodyInner::H3(_) => Protocol::Http3,
            BodyInner::H1(_) => Protocol::Http11,
        };
        f.debug_struct("BodyStream").field("protocol", &protocol).finish()
    }
}

impl BodyStream {
    /// The next bytes of the body; `None` at its end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, FetchError> {
        let transport_err = |e: &dyn std::fmt::Display| FetchError::Transport(e.to_string());
        match &mut self.inner {
            BodyInner::H3(stream) => match stream.recv_data().await.map_err(|e| transport_err(&e))? {
                Some(mut buf) => Ok(Some(buf.copy_to_bytes(buf.remaining()))),
                None => Ok(None),
            },
            BodyInner::H1(body) => {
                use http_body_util::BodyExt;
                loop {
                    match body.frame().await {
                        None => return Ok(None),
                        Some(frame) => {
                            if let Ok(data) = frame.map_err(|e| transport_err(&e))?.into_data() {
                                return Ok(Some(data));
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_urls() {
        assert_eq!(
            OriginUrl::parse("https://127.0.0.1:4433").unwrap(),
            OriginUrl { host: "127.0.0.1".into(), port: 4433 }
        );
        let v6 = OriginUrl::parse("https://[fd00::1]:4433/").unwrap();
        assert_eq!(v6, OriginUrl { host: "fd00::1".into(), port: 4433 });
        assert_eq!(v6.to_string(), "https://[fd00::1]:4433");
        assert_eq!(OriginUrl::parse("https://example.com").unwrap().port, 443);
        assert_eq!(OriginUrl::from_authority("localhost:8443").unwrap().port, 8443);
        assert_eq!(OriginUrl::parse("http://x:1"), Err(UrlError::Scheme("http".into())));
        assert!(matches!(OriginUrl::parse("not a url"), Err(UrlError::Malformed(_))));
    }

    #[test]
    fn answers_are_checked_against_the_question() {
        let head = |status, cr: Option<&str>| Head {
            status,
            content_range: cr.map(str::to_owned),
            retry_after: Some("2".into()),
            sha256: None,
        };
        let asked = 100..200;
        assert_eq!(
            head(StatusCode::PARTIAL_CONTENT, Some("bytes 100-199/1000")).expect(&asked),
            Ok((100..200, Some(1000), 0))
        );
        assert_eq!(
            head(StatusCode::PARTIAL_CONTENT, Some("bytes 100-149/150")).expect(&asked),
            Ok((100..150, Some(150), 0))
        );
        assert!(matches!(
            head(StatusCode::PARTIAL_CONTENT, Some("bytes 0-99/1000")).expect(&asked),
            Err(FetchError::BadResponse(_))
        ));
        assert!(matches!(head(StatusCode::PARTIAL_CONTENT, None).expect(&asked), Err(FetchError::BadResponse(_))));
        assert_eq!(head(StatusCode::OK, None).expect(&asked), Ok((100..200, None, 100)));
        assert_eq!(
            head(StatusCode::SERVICE_UNAVAILABLE, None).expect(&asked),
            Err(FetchError::Busy { retry_after: Some(Duration::from_secs(2)) })
        );
        assert_eq!(head(StatusCode::NOT_FOUND, None).expect(&asked), Err(FetchError::NotFound));
        assert_eq!(head(StatusCode::FORBIDDEN, None).expect(&asked), Err(FetchError::Status(403)));
        let mut g = Gather::new(&(0..4), 0, false);
        assert_eq!(g.take(b"ab"), Ok(false));
        assert_eq!(g.take(b"cd"), Ok(true));
        let mut g = Gather::new(&(0..4), 0, false);
        assert!(matches!(g.take(b"abcde"), Err(FetchError::BadResponse(_))));
        let mut g = Gather::new(&(3..5), 3, true);
        assert_eq!(g.take(b"xyzABcdef"), Ok(true));
        assert_eq!(g.body, b"AB");
    }
}
