//! Response bodies: a few bytes, a range of a file read chunk by chunk (so
//! a body never sits in memory whole), or an event feed.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::mpsc;

use super::Shared;

/// File bodies are read and sent this many bytes at a time.
pub(crate) const CHUNK: usize = 32 * 1024;

/// An `/events` feed sends a comment this often when there is nothing else,
/// so proxies and browsers keep the connection.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// A response body.
#[derive(Debug)]
pub(crate) enum ServeBody {
    /// Bytes in memory (small: pages, metrics, errors), or nothing.
    Full(Option<Bytes>),
    /// `file`'s bytes from `pos` to `end`.
    File { file: File, pos: u64, end: u64, shared: Arc<Shared> },
    /// Server-Sent Events: each record's JSON as a `data:` line.
    Events { rx: mpsc::Receiver<Arc<str>>, keepalive: tokio::time::Interval, first: Option<Bytes> },
}

impl ServeBody {
    pub(crate) fn empty() -> Self {
        ServeBody::Full(None)
    }

    pub(crate) fn text(text: impl Into<String>) -> Self {
        ServeBody::Full(Some(Bytes::from(text.into())))
    }

    pub(crate) fn events(rx: mpsc::Receiver<Arc<str>>) -> Self {
        let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A first comment, so the client sees the stream open at once.
        ServeBody::Events { rx, keepalive, first: Some(Bytes::from_static(b": h3m-recv events\n\n")) }
    }
}

impl http_body::Body for ServeBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            ServeBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ServeBody::File { file, pos, end, shared } => {
                if *pos >= *end {
                    return Poll::Ready(None);
                }
                let want = CHUNK.min((*end - *pos) as usize);
                let mut buf = vec![0u8; want];
                // A read of a local file that the page cache most likely
                // holds: done in place, on the server's own thread.
                Poll::Ready(Some(match file.read_at(&mut buf, *pos) {
                    Ok(0) => Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file got shorter")),
                    Ok(n) => {
                        buf.truncate(n);
                        *pos += n as u64;
                        shared.counters.body_bytes.fetch_add(n as u64, Ordering::Relaxed);
                        Ok(Frame::data(Bytes::from(buf)))
                    }
                    Err(e) => Err(e),
                }))
            }
            ServeBody::Events { rx, keepalive, first } => {
                if let Some(b) = first.take() {
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                match rx.poll_recv(cx) {
                    Poll::Ready(Some(json)) => {
                        let mut event = String::with_capacity(json.len() + 8);
                        event.push_str("data: ");
                        event.push_str(&json);
                        event.push_str("\n\n");
                        Poll::Ready(Some(Ok(Frame::data(Bytes::from(event)))))
                    }
                    Poll::Ready(None) => Poll::Ready(None),
                    Poll::Pending => match keepalive.poll_tick(cx) {
                        Poll::Ready(_) => Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b": keepalive\n\n"))))),
                        Poll::Pending => Poll::Pending,
                    },
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ServeBody::Full(b) => b.is_none(),
            ServeBody::File { pos, end, .. } => pos >= end,
            ServeBody::Events { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ServeBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ServeBody::File { pos, end, .. } => SizeHint::with_exact(end.saturating_sub(*pos)),
            ServeBody::Events { .. } => SizeHint::default(),
        }
    }
}
