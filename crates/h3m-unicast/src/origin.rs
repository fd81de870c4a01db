//! The repair origin: every resource of a [`Catalog`] served with byte
//! ranges over HTTP/3 (quinn + h3, UDP) and HTTP/1.1 (hyper over rustls,
//! TCP) on the same address and port.
//!
//! It runs on a thread of its own with its own single-threaded runtime, so
//! serving never delays the multicast sender's pacing and a program of any
//! shape can start one ([`Origin::spawn`]). Its load is bounded: at most
//! [`OriginConfig::max_connections`] connections (more are refused) and
//! [`OriginConfig::max_requests`] requests in progress (more are answered
//! `503` with `Retry-After`, which h3m receivers honour), HTTP/3 streams per
//! connection capped by the transport.

use crate::server_thread::ServerThread;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{StatusCode, header};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::catalog::{Catalog, ReadError};
use crate::feed::{SubscribeError, Subscription};
use crate::respond::{Answer, BodyPlan, answer};
use crate::tls::{ALPN_H3, ALPN_HTTP11, Identity, TlsError};

/// How an [`Origin`] serves.
#[derive(Debug, Clone)]
pub struct OriginConfig {
    /// The address (UDP for HTTP/3, TCP for HTTP/1.1); port 0 picks one.
    pub listen: SocketAddr,
    /// The certificate and key.
    pub identity: Identity,
    /// Requests in progress at once; beyond it: `503` + `Retry-After`.
    pub max_requests: usize,
    /// Connections at once (HTTP/3 and HTTP/1.1 together); beyond it new
    /// ones are refused.
    pub max_connections: usize,
    /// The `Retry-After` of a `503`.
    pub retry_after: Duration,
    /// HTTP/3 streams a connection may have open at once.
    pub streams_per_connection: u32,
    /// Serve HTTP/3. Off, the UDP port is held but never answers (as behind
    /// a firewall that drops UDP: clients fall back to HTTP/1.1).
    pub http3: bool,
    /// Also serve HTTP/1.1 over TLS on TCP.
    pub http1: bool,
}

impl OriginConfig {
    /// Defaults: 256 requests, 4096 connections, 64 streams each, `Retry-After: 1`, HTTP/1.1 on.
    pub fn new(listen: SocketAddr, identity: Identity) -> Self {
        OriginConfig {
            listen,
            identity,
            max_requests: 256,
            max_connections: 4096,
            retry_after: Duration::from_secs(1),
            streams_per_connection: 64,
            http3: true,
            http1: true,
        }
    }
}

/// Why an origin could not start.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    /// Binding the address failed.
    #[error("bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The runtime or the QUIC endpoint could not be made.
    #[error("origin: {0}")]
    Start(String),
}

/// What an origin did, counted as it happens.
#[derive(Debug, Default)]
struct Stats {
    requests: AtomicU64,
    ok: AtomicU64,
    partial: AtomicU64,
    not_found: AtomicU64,
    busy: AtomicU64,
    other: AtomicU64,
    bytes: AtomicU64,
    listing_bytes: AtomicU64,
    h3_connections: AtomicU64,
    h1_connections: AtomicU64,
    refused_connections: AtomicU64,
}

impl Stats {
    /// Counts body bytes sent for a resource or for the listing.
    fn sent(&self, listing: bool, n: u64) {
        let slot = if listing { &self.listing_bytes } else { &self.bytes };
        slot.fetch_add(n, Ordering::Relaxed);
    }

    fn count(&self, status: StatusCode) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let slot = match status {
            StatusCode::OK => &self.ok,
            StatusCode::PARTIAL_CONTENT => &self.partial,
            StatusCode::NOT_FOUND => &self.not_found,
            StatusCode::SERVICE_UNAVAILABLE => &self.busy,
            _ => &self.other,
        };
        slot.fetch_add(1, Ordering::Relaxed);
    }
}

/// A snapshot of an origin's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OriginCounters {
    /// Requests answered.
    pub requests: u64,
    /// `200` answers.
    pub ok: u64,
    /// `206` answers.
    pub partial: u64,
    /// `404` answers.
    pub not_found: u64,
    /// `503` answers (at the request limit).
    pub busy: u64,
    /// Other answers (`400`, `405`, `410`, `416`, `500`).
    pub other: u64,
    /// Body bytes of resources sent.
    pub bytes: u64,
    /// Bytes of the [listing](crate::listing) sent.
    pub listing_bytes: u64,
    /// HTTP/3 connections accepted.
    pub h3_connections: u64,
    /// HTTP/1.1 connections accepted.
    pub h1_connections: u64,
    /// Connections refused at the connection limit.
    pub refused_connections: u64,
}

/// What every task of an origin shares.
#[derive(Debug)]
struct Shared {
    catalog: Arc<Catalog>,
    stats: Stats,
    requests: Arc<Semaphore>,
    connections: Arc<Semaphore>,
    retry_after: u64,
}

impl Shared {
    /// The answer to a request, or `503` at the request limit; the permit
    /// is held while the body goes out.
    fn answer(&self, req: &http::request::Parts) -> (Answer, Option<OwnedSemaphorePermit>) {
        let permit = Arc::clone(&self.requests).try_acquire_owned().ok();
        let a = match &permit {
            Some(_) => {
                let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
                answer(&self.catalog, &req.method, path, req.headers.get(header::RANGE))
            }
            None => Answer::busy(self.retry_after),
        };
        self.stats.count(a.status);
        (a, permit)
    }
}

/// What a request for a [feed](crate::feed::Feed)'s path gets.
enum FeedAnswer {
    /// `200`, the feed's chunks as the body (`None` for `HEAD`).
    Stream(http::HeaderMap, Option<Subscription>),
    /// An error status (`503` at the subscriber limit, `405`, `410` closed).
    Status(StatusCode),
}

impl Shared {
    /// The answer to a request for a feed's path; `None`: not a feed.
    fn feed(&self, req: &http::request::Parts) -> Option<FeedAnswer> {
        let feed = self.catalog.feed(req.uri.path())?;
        let a = if req.method != http::Method::GET && req.method != http::Method::HEAD {
            FeedAnswer::Status(StatusCode::METHOD_NOT_ALLOWED)
        } else {
            let mut headers = http::HeaderMap::new();
            if let Ok(ct) = http::HeaderValue::from_str(feed.content_type()) {
                headers.insert(header::CONTENT_TYPE, ct);
            }
            headers.insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
            if req.method == http::Method::HEAD {
                FeedAnswer::Stream(headers, None)
            } else {
                match feed.subscribe() {
                    Ok(s) => FeedAnswer::Stream(headers, Some(s)),
                    Err(SubscribeError::Full) => FeedAnswer::Status(StatusCode::SERVICE_UNAVAILABLE),
                }
            }
        };
        self.stats.count(match &a {
            FeedAnswer::Stream(..) => StatusCode::OK,
            FeedAnswer::Status(s) => *s,
        });
        Some(a)
    }
}

/// A running origin; dropping it (or [`shutdown`](Self::shutdown)) stops it.
#[derive(Debug)]
pub struct Origin {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    thread: ServerThread,
}

impl Origin {
    /// Binds the address and starts serving `catalog` on a thread of its own.
    pub fn spawn(config: OriginConfig, catalog: Arc<Catalog>) -> Result<Origin, OriginError> {
        let bind_err = |addr, source| OriginError::Bind { addr, source };
        let udp = std::net::UdpSocket::bind(config.listen).map_err(|e| bind_err(config.listen, e))?;
        let local_addr = udp.local_addr().map_err(|e| bind_err(config.listen, e))?;
        let tcp = if config.http1 {
            let t = std::net::TcpListener::bind(local_addr).map_err(|e| bind_err(local_addr, e))?;
            t.set_nonblocking(true).map_err(|e| bind_err(local_addr, e))?;
            Some(t)
        } else {
            None
        };
        let h3_tls = config.identity.server_config(ALPN_H3)?;
        let h1_tls = config.identity.server_config(ALPN_HTTP11)?;
        let quic_crypto = quinn::crypto::rustls::QuicServerConfig::try_from(h3_tls)
            .map_err(|e| OriginError::Start(format!("quic tls: {e}")))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic_crypto));
        let mut transport = quinn::TransportConfig::default();
        transport.max_concurrent_bidi_streams(config.streams_per_connection.into());
        transport.max_idle_timeout(Some(Duration::from_secs(30).try_into().expect("30 s is a valid idle timeout")));
        server.transport_config(Arc::new(transport));
        let shared = Arc::new(Shared {
            catalog,
            stats: Stats::default(),
            requests: Arc::new(Semaphore::new(config.max_requests.max(1))),
            connections: Arc::new(Semaphore::new(config.max_connections.max(1))),
            retry_after: config.retry_after.as_secs().max(1),
        });
        let (stop, stopped) = watch::channel(false);
        let http3 = config.http3;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let task_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("h3m-origin".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(OriginError::Start(e.to_string())));
                        return;
                    }
                };
                rt.block_on(async move {
                    let runtime = match quinn::default_runtime() {
                        Some(r) => r,
                        None => {
                            let _ = ready_tx.send(Err(OriginError::Start("no async runtime for quinn".into())));
                            return;
                        }
                    };
                    let endpoint =
                        match quinn::Endpoint::new(quinn::EndpointConfig::default(), Some(server), udp, runtime) {
                            Ok(e) => e,
                            Err(e) => {
                                let _ = ready_tx.send(Err(OriginError::Bind { addr: local_addr, source: e }));
                                return;
                            }
                        };
                    let tcp = match tcp.map(tokio::net::TcpListener::from_std).transpose() {
                        Ok(t) => t,
                        Err(e) => {
                            let _ = ready_tx.send(Err(OriginError::Bind { addr: local_addr, source: e }));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    let h1 = tcp.map(|t| {
                        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(h1_tls));
                        tokio::spawn(serve_h1(t, acceptor, Arc::clone(&task_shared), stopped.clone()))
                    });
                    if http3 {
                        serve_h3(endpoint, task_shared, stopped).await;
                    } else {
                        let mut stopped = stopped;
                        let _ = stopped.changed().await;
                    }
                    if let Some(h) = h1 {
                        h.abort();
                    }
                });
            })
            .map_err(|e| OriginError::Start(e.to_string()))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(OriginError::Start("the origin thread ended".into())),
        }
        tracing::info!(%local_addr, "repair origin serving (HTTP/3{})", if config.http1 { " and HTTP/1.1" } else { "" });
        Ok(Origin { local_addr, shared, thread: ServerThread::new(stop, thread) })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The catalog it serves.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.shared.catalog
    }

    /// Its counters so far.
    pub fn counters(&self) -> OriginCounters {
        let s = &self.shared.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        OriginCounters {
            requests: get(&s.requests),
            ok: get(&s.ok),
            partial: get(&s.partial),
            not_found: get(&s.not_found),
            busy: get(&s.busy),
            other: get(&s.other),
            bytes: get(&s.bytes),
            listing_bytes: get(&s.listing_bytes),
            h3_connections: get(&s.h3_connections),
            h1_connections: get(&s.h1_connections),
            refused_connections: get(&s.refused_connections),
        }
    }

    /// Stops serving (connections are closed) and waits for the thread.
    pub fn shutdown(mut self) {
        self.thread.stop();
    }
}

async fn serve_h3(endpoint: quinn::Endpoint, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i { Some(i) => i, None => break },
            _ = stopped.changed() => break,
        };
        let Ok(permit) = Arc::clone(&shared.connections).try_acquire_owned() else {
            shared.stats.refused_connections.fetch_add(1, Ordering::Relaxed);
            incoming.refuse();
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _permit = permit;
            let Ok(conn) = incoming.await else { return };
            shared.stats.h3_connections.fetch_add(1, Ordering::Relaxed);
            let quic = conn.clone();
            let Ok(mut h3) = h3::server::Connection::<_, Bytes>::new(h3_quinn::Connection::new(conn)).await else {
                return;
            };
            while let Ok(Some(resolver)) = h3.accept().await {
                let (shared, quic) = (Arc::clone(&shared), quic.clone());
                tokio::spawn(async move {
                    let Ok((req, mut stream)) = resolver.resolve_request().await else { return };
                    let (parts, ()) = req.into_parts();
                    if let Some(f) = shared.feed(&parts) {
                        stream_feed_h3(&mut stream, f, &shared, &quic).await;
                        return;
                    }
                    let (a, _permit) = shared.answer(&parts);
                    let mut resp = http::Response::new(());
                    *resp.status_mut() = a.status;
                    *resp.headers_mut() = a.headers;
                    if stream.send_response(resp).await.is_err() {
                        return;
                    }
                    let listing = a.listing;
                    if let Some(mut body) = a.body {
                        loop {
                            match body.next_chunk() {
                                Ok(Some(chunk)) => {
                                    let n = chunk.len() as u64;
                                    if stream.send_data(chunk).await.is_err() {
                                        return;
                                    }
                                    shared.stats.sent(listing, n);
                                }
                                Ok(None) => break,
                                Err(e) => {
                                    tracing::warn!(path = %parts.uri, "repair origin: {e}");
                                    stream.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
                                    return;
                                }
                            }
                        }
                    }
                    let _ = stream.finish().await;
                });
            }
        });
    }
    endpoint.close(0u32.into(), b"origin closed");
    // Long enough for the close to reach the clients (they learn at once,
    // not at their idle timeout).
    let _ = tokio::time::timeout(Duration::from_millis(500), endpoint.wait_idle()).await;
}

/// Answers a feed request over HTTP/3: the head, then every chunk until the
/// feed ends (or the client goes). The subscription carries the
/// connection's round-trip estimate, updated with every chunk.
async fn stream_feed_h3(
    stream: &mut h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>,
    answer: FeedAnswer,
    shared: &Shared,
    quic: &quinn::Connection,
) {
    let (status, headers, subscription) = match answer {
        FeedAnswer::Stream(h, s) => (StatusCode::OK, h, s),
        FeedAnswer::Status(s) => (s, http::HeaderMap::new(), None),
    };
    let mut resp = http::Response::new(());
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    if stream.send_response(resp).await.is_err() {
        return;
    }
    if let Some(mut sub) = subscription {
        sub.set_rtt(quic.rtt());
        while let Some(chunk) = sub.next().await {
            let n = chunk.len() as u64;
            if stream.send_data(chunk).await.is_err() {
                return;
            }
            shared.stats.sent(false, n);
            sub.set_rtt(quic.rtt());
        }
    }
    let _ = stream.finish().await;
}

async fn serve_h1(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let (tcp, _) = tokio::select! {
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            _ = stopped.changed() => break,
        };
        let Ok(permit) = Arc::clone(&shared.connections).try_acquire_owned() else {
            shared.stats.refused_connections.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let (acceptor, shared) = (acceptor.clone(), Arc::clone(&shared));
        tokio::spawn(async move {
            let _permit = permit;
            let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await else { return };
            shared.stats.h1_connections.fetch_add(1, Ordering::Relaxed);
            let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let shared = Arc::clone(&shared);
                async move {
                    let (parts, _) = req.into_parts();
                    if let Some(f) = shared.feed(&parts) {
                        let (status, headers, subscription) = match f {
                            FeedAnswer::Stream(h, s) => (StatusCode::OK, h, s),
                            FeedAnswer::Status(s) => (s, http::HeaderMap::new(), None),
                        };
                        let body = AnswerBody::Feed { subscription, shared };
                        let mut resp = http::Response::new(body);
                        *resp.status_mut() = status;
                        *resp.headers_mut() = headers;
                        return Ok::<_, Infallible>(resp);
                    }
                    let (a, permit) = shared.answer(&parts);
                    let mut resp = http::Response::new(AnswerBody::Plan(PlanBody {
                        plan: a.body,
                        listing: a.listing,
                        shared,
                        _permit: permit,
                    }));
                    *resp.status_mut() = a.status;
                    *resp.headers_mut() = a.headers;
                    Ok(resp)
                }
            });
            let io = hyper_util::rt::TokioIo::new(tls);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        });
    }
}

/// An HTTP/1.1 response body: a resource's bytes, or a feed's chunks.
enum AnswerBody {
    /// Read from the catalog chunk by chunk.
    Plan(PlanBody),
    /// A feed's chunks as they are published (none: `HEAD` or an error).
    Feed { subscription: Option<Subscription>, shared: Arc<Shared> },
}

impl http_body::Body for AnswerBody {
    type Data = Bytes;
    type Error = ReadError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, ReadError>>> {
        match self.get_mut() {
            AnswerBody::Plan(p) => Pin::new(p).poll_frame(cx),
            AnswerBody::Feed { subscription: None, .. } => Poll::Ready(None),
            AnswerBody::Feed { subscription: Some(s), shared } => s.poll_next(cx).map(|c| {
                c.map(|chunk| {
                    shared.stats.sent(false, chunk.len() as u64);
                    Ok(http_body::Frame::data(chunk))
                })
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            AnswerBody::Plan(p) => http_body::Body::is_end_stream(p),
            AnswerBody::Feed { subscription, .. } => subscription.is_none(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            AnswerBody::Plan(p) => http_body::Body::size_hint(p),
            AnswerBody::Feed { subscription: None, .. } => http_body::SizeHint::with_exact(0),
            AnswerBody::Feed { subscription: Some(_), .. } => http_body::SizeHint::default(),
        }
    }
}

/// An HTTP/1.1 response body read from the catalog chunk by chunk.
struct PlanBody {
    plan: Option<BodyPlan>,
    listing: bool,
    shared: Arc<Shared>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl http_body::Body for PlanBody {
    type Data = Bytes;
    type Error = ReadError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, ReadError>>> {
        let this = self.get_mut();
        let Some(plan) = this.plan.as_mut() else { return Poll::Ready(None) };
        Poll::Ready(match plan.next_chunk() {
            Ok(Some(chunk)) => {
                this.shared.stats.sent(this.listing, chunk.len() as u64);
                Some(Ok(http_body::Frame::data(chunk)))
            }
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        })
    }

    fn is_end_stream(&self) -> bool {
        self.plan.as_ref().is_none_or(|p| p.remaining() == 0)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.plan.as_ref().map_or(0, BodyPlan::remaining))
    }
}
