//! The HTTP/1.1 side: connections, routes, and the answers for resources.
//!
//! | request | answer |
//! | --- | --- |
//! | `GET`/`HEAD` of a complete resource | `200` (or `206` for a satisfiable `Range: bytes=...`, `416` for one past the end, `304` when `If-None-Match` names its ETag) |
//! | of a promised resource | waits until it settles, then as here; `504` after the wait timeout; `503` + `Retry-After: 1` when too many requests wait already |
//! | of one given up incomplete | `503`, `h3m-missing: 0-1199,2400-` (the missing byte ranges, inclusive; `a-` to the end; the first 64), `h3m-missing-ranges` (how many in all), `h3m-reason` |
//! | of one refused (digest, signature, unsafe) or failed | `502`, `h3m-reason` |
//! | of an unknown path | `404` |
//! | of a path that would leave the output directory (`..`, `%2e%2e`, `%2F`, NUL, ...: [`crate::paths::sanitize`]) | `400` |
//! | other methods | `405` (`OPTIONS`: `204` with the CORS fields when `--serve-cors` is on) |
//!
//! A resource's answer carries `content-type` (when its push did),
//! `content-length`, `etag` (`"` + its SHA-256 in hex + `"`), `accept-ranges:
//! bytes` and `date`. A `Range` that is not one valid byte range is ignored
//! (the whole body, `200`), as RFC 9110 allows; so is one whose `If-Range`
//! does not name the current ETag.

use std::convert::Infallible;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use h3m_unicast::range::{ByteRange, ContentRange, RangeError};
use tokio::sync::watch;

use super::body::ServeBody;
use super::index::{Complete, FileIdentity, State};
use super::{Shared, lock, metrics, status};
use crate::paths;

/// The path of the status as JSON (the page at `/` reads it).
pub const STATUS_PATH: &str = "/.well-known/h3m/status";
/// The path of the metrics.
pub const METRICS_PATH: &str = "/metrics";
/// The path of the event feed.
pub const EVENTS_PATH: &str = "/events";

/// A client has this long to send a request's head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until `stopped` turns true.
pub(crate) async fn accept_loop(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let tcp = tokio::select! {
            a = listener.accept() => match a {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little.
                    tracing::warn!("serve: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => break,
        };
        let Ok(permit) = Arc::clone(&shared.connections).try_acquire_owned() else {
            shared.counters.refused_connections.fetch_add(1, Ordering::Relaxed);
            drop(tcp);
            continue;
        };
        shared.counters.connections.fetch_add(1, Ordering::Relaxed);
        let _ = tcp.set_nodelay(true);
        let conn_shared = Arc::clone(&shared);
        let mut conn_stopped = stopped.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let shared = Arc::clone(&conn_shared);
                async move { Ok::<_, Infallible>(handle(&shared, req).await) }
            });
            let io = hyper_util::rt::TokioIo::new(tcp);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                // One bounded, flat write buffer per connection.
                .writev(false)
                .max_buf_size(64 * 1024)
                .serve_connection(io, service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = conn_stopped.changed() => {}
            }
        });
    }
}

/// The answer to one request (counted by status, with the CORS field).
pub(crate) async fn handle<B>(shared: &Arc<Shared>, req: Request<B>) -> Response<ServeBody> {
    let mut resp = route(shared, &req).await;
    shared.count(resp.status().as_u16());
    if let Some(origin) = shared.opts.cors.as_deref().and_then(|o| HeaderValue::from_str(o).ok()) {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(
                "content-range, content-length, etag, h3m-missing, h3m-missing-ranges, h3m-reason",
            ),
        );
    }
    resp
}

fn bare(status: StatusCode) -> Response<ServeBody> {
    let mut r = Response::new(ServeBody::empty());
    *r.status_mut() = status;
    r
}

/// A short plain-text answer.
pub(crate) fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<ServeBody> {
    let mut r = Response::new(ServeBody::text(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn plain(status: StatusCode, body: String) -> Response<ServeBody> {
    text(status, "text/plain; charset=utf-8", body)
}

async fn route<B>(shared: &Arc<Shared>, req: &Request<B>) -> Response<ServeBody> {
    let method = req.method();
    if method == Method::OPTIONS && shared.opts.cors.is_some() {
        let mut r = bare(StatusCode::NO_CONTENT);
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, HEAD"));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("range, if-none-match, if-range"));
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
        return r;
    }
    if method != Method::GET && method != Method::HEAD {
        let mut r = bare(StatusCode::METHOD_NOT_ALLOWED);
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let head = method == Method::HEAD;
    let mut resp = match req.uri().path() {
        "/" => text(StatusCode::OK, "text/html; charset=utf-8", status::PAGE.to_owned()),
        METRICS_PATH => text(StatusCode::OK, h3m_unicast::metrics::CONTENT_TYPE, metrics::render(shared)),
        STATUS_PATH => text(StatusCode::OK, "application/json", status::json(shared)),
        EVENTS_PATH if head => {
            let mut r = bare(StatusCode::OK);
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            return r;
        }
        EVENTS_PATH => match shared.subscribe() {
            Some(rx) => {
                let mut r = Response::new(ServeBody::events(rx));
                let h = r.headers_mut();
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                return r;
            }
            None => busy("too many event feeds"),
        },
        path => return resource(shared, req, path, head).await,
    };
    if head {
        // The length of what GET would send, no body.
        let len = http_body::Body::size_hint(resp.body()).exact().unwrap_or(0);
        resp.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        *resp.body_mut() = ServeBody::empty();
    }
    resp
}

/// `503` + `Retry-After: 1`: at a limit.
fn busy(why: &str) -> Response<ServeBody> {
    let mut r = plain(StatusCode::SERVICE_UNAVAILABLE, format!("busy: {why}\n"));
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// The answer for a resource's path, waiting for it while it is pending.
async fn resource<B>(shared: &Arc<Shared>, req: &Request<B>, path: &str, head: bool) -> Response<ServeBody> {
    let rel = match paths::sanitize(path.as_bytes()) {
        Ok(rel) => rel,
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("refused path: {e}\n")),
    };
    let deadline = tokio::time::Instant::now() + shared.opts.wait_timeout;
    // Held while waiting: the waiter budget.
    let mut permit = None;
    loop {
        let (notify, settled) = {
            let index = lock(&shared.index);
            let Some(entry) = index.get(&rel) else {
                return plain(StatusCode::NOT_FOUND, "not received\n".into());
            };
            match &entry.state {
                State::Pending => (Arc::clone(&entry.notify), None),
                state => (Arc::clone(&entry.notify), Some((state.clone(), entry.content_type.clone()))),
            }
        };
        if let Some((state, content_type)) = settled {
            return settled_answer(shared, req, &rel, state, content_type, head);
        }
        if permit.is_none() {
            match Arc::clone(&shared.waiters).try_acquire_owned() {
                Ok(p) => permit = Some(p),
                Err(_) => return busy("too many requests waiting"),
            }
        }
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // Settled between the look and the registration? Look again.
        let still_pending =
            lock(&shared.index).get(&rel).is_some_and(|e| e.state == State::Pending && Arc::ptr_eq(&e.notify, &notify));
        if !still_pending {
            continue;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return plain(StatusCode::GATEWAY_TIMEOUT, "promised, not complete yet\n".into());
        }
    }
}

fn reason_value(reason: &str) -> HeaderValue {
    let clean: String = reason.chars().filter(|c| c.is_ascii() && !c.is_ascii_control()).take(200).collect();
    HeaderValue::from_str(&clean).unwrap_or(HeaderValue::from_static("-"))
}

fn settled_answer<B>(
    shared: &Arc<Shared>,
    req: &Request<B>,
    rel: &Path,
    state: State,
    content_type: Option<String>,
    head: bool,
) -> Response<ServeBody> {
    match state {
        State::Complete(c) => file_answer(shared, req.headers(), rel, &c, content_type, head),
        State::Incomplete { missing, ranges, received, reason } => {
            let mut r = plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("incomplete: {received} bytes received, missing {missing} ({reason})\n"),
            );
            let h = r.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&missing)
                && !missing.is_empty()
            {
                h.insert("h3m-missing", v);
            }
            if ranges > 0 {
                // The list holds the first 64 ranges; this says how many there are.
                h.insert("h3m-missing-ranges", HeaderValue::from(ranges));
            }
            h.insert("h3m-reason", reason_value(&reason));
            r
        }
        State::Refused { reason } => {
            let mut r = plain(StatusCode::BAD_GATEWAY, format!("not written: {reason}\n"));
            r.headers_mut().insert("h3m-reason", reason_value(&reason));
            r
        }
        State::Pending => bare(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// Whether an `If-None-Match` value names `etag` (or is `*`); weak
/// comparison, as RFC 9110 §13.1.2 asks.
fn none_match(value: &str, etag: &str) -> bool {
    value.split(',').map(str::trim).any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// The answer for a complete resource: its file, whole or a range.
fn file_answer(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    rel: &Path,
    c: &Complete,
    content_type: Option<String>,
    head: bool,
) -> Response<ServeBody> {
    let root = &shared.opts.out_dir;
    // Only a real file under real directories (no symlink planted since).
    if paths::check_parents(root, rel).is_err() {
        return plain(StatusCode::NOT_FOUND, "not available\n".into());
    }
    let file = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(root.join(rel)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return plain(StatusCode::NOT_FOUND, "removed from the output directory\n".into());
        }
        Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, format!("open: {e}\n")),
    };
    match file.metadata() {
        Ok(m) if m.is_file() && m.len() == c.len && c.identity.is_none_or(|id| id == FileIdentity::of(&m)) => {}
        // Being replaced by a newer version this very moment, or changed behind our back.
        _ => {
            let mut r = plain(StatusCode::SERVICE_UNAVAILABLE, "changing\n".into());
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
    }
    let etag = format!("\"{}\"", hex::encode(c.sha256));
    let mut out = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, v);
    }
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| none_match(v, &etag)) {
        let mut r = bare(StatusCode::NOT_MODIFIED);
        *r.headers_mut() = out;
        return r;
    }
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(ct) = content_type.as_deref().and_then(|ct| HeaderValue::from_str(ct).ok()) {
        out.insert(header::CONTENT_TYPE, ct);
    }
    let if_range_ok = headers.get(header::IF_RANGE).is_none_or(|v| v.to_str().is_ok_and(|v| v.trim() == etag));
    let range = headers
        .get(header::RANGE)
        .filter(|_| if_range_ok)
        .and_then(|v| v.to_str().ok())
        .map(ByteRange::parse)
        .and_then(|r: Result<ByteRange, RangeError>| r.ok());
    let (status, span) = match range {
        None => (StatusCode::OK, 0..c.len),
        Some(r) => match r.resolve(c.len) {
            Some(span) => {
                if let Ok(v) = HeaderValue::from_str(&ContentRange::header_value(&span, Some(c.len))) {
                    out.insert(header::CONTENT_RANGE, v);
                }
                (StatusCode::PARTIAL_CONTENT, span)
            }
            None => {
                let mut r = bare(StatusCode::RANGE_NOT_SATISFIABLE);
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", c.len)) {
                    out.insert(header::CONTENT_RANGE, v);
                }
                *r.headers_mut() = out;
                return r;
            }
        },
    };
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(span.end - span.start));
    let body = if head {
        ServeBody::empty()
    } else {
        ServeBody::File { file, pos: span.start, end: span.end, shared: Arc::clone(shared) }
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = out;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_lists() {
        let etag = "\"ab\"";
        assert!(none_match("\"ab\"", etag));
        assert!(none_match("\"x\", W/\"ab\"", etag));
        assert!(none_match("*", etag));
        assert!(!none_match("\"abc\"", etag));
        assert!(!none_match("", etag));
    }
}
