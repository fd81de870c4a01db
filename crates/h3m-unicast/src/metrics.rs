//! Metrics for Prometheus: a writer of the text exposition format (version
//! 0.0.4), by hand (`# HELP`, `# TYPE`, then one `name{label="value"} N`
//! line per sample; the format is small enough not to need a crate), and
//! [`MetricsServer`], a plain HTTP/1.1 server of one `/metrics` page
//! (`h3m-send --metrics`; `h3m-recv --serve` has its own server).
//!
//! ```
//! use std::sync::Arc;
//! use h3m_unicast::metrics::{Exposition, MetricsServer};
//!
//! let server = MetricsServer::spawn("127.0.0.1:0".parse()?, Arc::new(|| {
//!     let mut e = Exposition::new();
//!     e.single("app_up", "gauge", "Whether it runs.", 1);
//!     e.finish()
//! }))?;
//! println!("curl http://{}/metrics", server.local_addr());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::server_thread::ServerThread;
use std::convert::Infallible;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;
use tokio::sync::{Semaphore, watch};

/// A text exposition being written.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// An empty one.
    pub fn new() -> Self {
        Exposition::default()
    }

    /// Starts a metric family: its `# HELP` and `# TYPE` lines (`kind`:
    /// `counter`, `gauge`, ...).
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", help.replace('\\', "\\\\").replace('\n', "\\n"));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// One sample; label values are escaped (`\\`, `\"`, `\n`).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                let _ = write!(self.text, "{k}=\"{v}\"");
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// A family of one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// The text.
    pub fn finish(self) -> String {
        self.text
    }
}

/// The `Content-Type` of the text exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Connections a [`MetricsServer`] serves at once (more are closed).
pub const MAX_CONNECTIONS: usize = 64;

/// What renders the exposition, on each request.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Why a metrics server could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Binding the address failed.
    #[error("bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The thread or its runtime could not be started.
    #[error("metrics: {0}")]
    Start(String),
}

/// A running `/metrics` server on a thread of its own (so a scrape never
/// delays the program's own work); dropping it stops it.
pub struct MetricsServer {
    local_addr: SocketAddr,
    thread: ServerThread,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer").field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// Binds `listen` (TCP) and serves `GET /metrics` with what `render`
    /// returns; `/` says where the metrics are, anything else is `404`.
    pub fn spawn(listen: SocketAddr, render: Render) -> Result<MetricsServer, MetricsError> {
        let bind_err = |addr, source| MetricsError::Bind { addr, source };
        let tcp = std::net::TcpListener::bind(listen).map_err(|e| bind_err(listen, e))?;
        let local_addr = tcp.local_addr().map_err(|e| bind_err(listen, e))?;
        tcp.set_nonblocking(true).map_err(|e| bind_err(local_addr, e))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| MetricsError::Start(e.to_string()))?;
        let (stop, stopped) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("h3m-metrics".into())
            .spawn(move || {
                rt.block_on(async move {
                    if let Ok(listener) = tokio::net::TcpListener::from_std(tcp) {
                        serve(listener, render, stopped).await;
                    }
                })
            })
            .map_err(|e| MetricsError::Start(e.to_string()))?;
        tracing::info!(%local_addr, "metrics on /metrics");
        Ok(MetricsServer { local_addr, thread: ServerThread::new(stop, thread) })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving and waits for the thread.
    pub fn shutdown(mut self) {
        self.thread.stop();
    }
}

fn answer(render: &Render, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (method, path) {
        (&Method::GET | &Method::HEAD, "/metrics") => (StatusCode::OK, CONTENT_TYPE, render()),
        (&Method::GET | &Method::HEAD, "/") => (StatusCode::OK, "text/plain", "metrics: /metrics\n".to_owned()),
        (&Method::GET | &Method::HEAD, _) => (StatusCode::NOT_FOUND, "text/plain", "not found\n".to_owned()),
        _ => (StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET or HEAD\n".to_owned()),
    };
    let body = if method == Method::HEAD { Bytes::new() } else { Bytes::from(body) };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

async fn serve(listener: tokio::net::TcpListener, render: Render, mut stopped: watch::Receiver<bool>) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let tcp = tokio::select! {
            a = listener.accept() => match a {
                Ok((tcp, _)) => tcp,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => break,
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else { continue };
        let render = Arc::clone(&render);
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let resp = answer(&render, req.method(), req.uri().path());
                async move { Ok::<_, Infallible>(resp) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
            tokio::select! {
                _ = conn => {}
                _ = stopped.changed() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write as _};

    #[test]
    fn exposition_format() {
        let mut e = Exposition::new();
        e.family("x_total", "counter", "What x\ncounts.");
        e.sample("x_total", &[("reason", "a\"b\\c\nd"), ("k", "v")], 7);
        e.single("y", "gauge", "Y.", 0);
        assert_eq!(
            e.finish(),
            "# HELP x_total What x\\ncounts.\n# TYPE x_total counter\nx_total{reason=\"a\\\"b\\\\c\\nd\",k=\"v\"} 7\n\
             # HELP y Y.\n# TYPE y gauge\ny 0\n"
        );
    }

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        write!(tcp, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        tcp.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_what_render_returns_on_each_scrape() {
        let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let c = Arc::clone(&count);
        let render: Render = Arc::new(move || {
            let mut e = Exposition::new();
            e.single("scrapes_total", "counter", "Scrapes.", c.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1);
            e.finish()
        });
        let server = MetricsServer::spawn("127.0.0.1:0".parse().unwrap(), render).unwrap();
        let addr = server.local_addr();
        let first = get(addr, "/metrics");
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        assert!(first.contains("content-type: text/plain; version=0.0.4"), "{first}");
        assert!(first.ends_with("\nscrapes_total 1\n"), "{first}");
        assert!(get(addr, "/metrics").ends_with("\nscrapes_total 2\n"));
        assert!(get(addr, "/other").starts_with("HTTP/1.1 404"));
        server.shutdown();
        assert!(std::net::TcpStream::connect(addr).is_err());
    }
}
