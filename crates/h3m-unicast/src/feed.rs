//! Long-lived streaming responses: a [`Feed`] is a sequence of chunks that
//! a producer publishes as they happen (AMBI manifests, `application/ambi`)
//! and that every subscriber receives as one response body that never ends
//! while the feed is open.
//!
//! Memory is bounded whatever the subscribers do: the feed keeps the last
//! [`FeedLimits::backlog`] chunks, at most [`FeedLimits::backlog_bytes`]
//! bytes of them (a new subscriber starts with them, so what was published
//! just before it connected still reaches it), each
//! subscriber has a queue of [`FeedLimits::queue`] chunks, and a subscriber
//! whose queue is full when a chunk is published is dropped (its response
//! ends; it reconnects and starts again from the backlog) rather than
//! delaying the producer or the others. At most
//! [`FeedLimits::max_subscribers`] subscribe at once.
//!
//! [`publish`](Feed::publish) never blocks and needs no runtime, so a
//! producer on any thread can call it.
//!
//! Each subscription carries the round trip to its subscriber when the
//! server knows it ([`Subscription::set_rtt`]), so the producer can pace
//! itself to the slowest of them ([`Feed::subscribers_rtt`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

/// How much a [`Feed`] keeps and for how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedLimits {
    /// Chunks kept for new subscribers.
    pub backlog: usize,
    /// Bytes of chunks kept for new subscribers at most.
    pub backlog_bytes: usize,
    /// Chunks queued per subscriber at most (beyond: the subscriber is dropped).
    pub queue: usize,
    /// Subscribers at once.
    pub max_subscribers: usize,
}

impl Default for FeedLimits {
    /// 64 chunks (at most 1 MiB) of backlog, 1024 queued per subscriber,
    /// 1024 subscribers.
    fn default() -> Self {
        FeedLimits { backlog: 64, backlog_bytes: 1 << 20, queue: 1024, max_subscribers: 1024 }
    }
}

/// What a feed did, counted as it happens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedCounters {
    /// Chunks published.
    pub published: u64,
    /// Subscriptions accepted.
    pub subscribed: u64,
    /// Subscriptions refused at [`FeedLimits::max_subscribers`].
    pub refused: u64,
    /// Subscribers dropped because their queue was full.
    pub lagged: u64,
    /// Subscribers now.
    pub subscribers: usize,
}

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The feed has [`FeedLimits::max_subscribers`] already.
    #[error("the feed has its most subscribers")]
    Full,
}

/// The round trip to the subscribers now ([`Feed::subscribers_rtt`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribersRtt {
    /// Nobody subscribes.
    None,
    /// The longest round trip among them, every one known.
    Longest(Duration),
    /// At least one subscriber's round trip is not known (its server does
    /// not measure it, or has not yet).
    Unknown,
}

/// A round trip not known yet, in a subscription's slot.
const RTT_UNKNOWN: u64 = u64::MAX;

#[derive(Debug, Default)]
struct Inner {
    backlog: VecDeque<Bytes>,
    backlog_bytes: usize,
    /// Each subscriber's queue and round trip (microseconds, or [`RTT_UNKNOWN`]).
    subscribers: Vec<(mpsc::Sender<Bytes>, Arc<AtomicU64>)>,
    closed: bool,
    counters: FeedCounters,
}

/// A stream of chunks to any number of subscribers (see the [module
/// docs](self)).
#[derive(Debug)]
pub struct Feed {
    content_type: String,
    limits: FeedLimits,
    inner: Mutex<Inner>,
    /// Subscriptions not dropped yet (their responses still streaming,
    /// after the feed's close too).
    alive: Arc<AtomicUsize>,
}

impl Feed {
    /// An open feed whose responses are of `content_type`.
    pub fn new(content_type: impl Into<String>, limits: FeedLimits) -> Feed {
        let limits = FeedLimits { queue: limits.queue.max(1), ..limits };
        Feed {
            content_type: content_type.into(),
            limits,
            inner: Mutex::new(Inner::default()),
            alive: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The `content-type` of its responses.
    pub fn content_type(&self) -> &str {
        &self.content_type
    }

    /// Sends `chunk` to every subscriber (dropping those whose queue is
    /// full) and keeps it in the backlog. Never blocks.
    pub fn publish(&self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        let mut inner = self.inner();
        if inner.closed {
            return;
        }
        inner.counters.published += 1;
        let before = inner.subscribers.len();
        inner.subscribers.retain(|(s, _)| s.try_send(chunk.clone()).is_ok());
        let dropped = before - inner.subscribers.len();
        inner.counters.lagged += dropped as u64;
        inner.backlog_bytes += chunk.len();
        inner.backlog.push_back(chunk);
        while inner.backlog.len() > self.limits.backlog || inner.backlog_bytes > self.limits.backlog_bytes {
            let Some(old) = inner.backlog.pop_front() else { break };
            inner.backlog_bytes -= old.len();
        }
    }

    /// A new subscription: the backlog, then every chunk published from now
    /// on; once the feed is closed, the backlog and then the end (a
    /// subscriber that connects just after a short session still gets what
    /// it needs, while the server runs).
    pub fn subscribe(&self) -> Result<Subscription, SubscribeError> {
        let mut inner = self.inner();
        inner.subscribers.retain(|(s, _)| !s.is_closed());
        // Once closed, the subscriptions still streaming count.
        let held = if inner.closed { self.alive.load(Ordering::Relaxed) } else { inner.subscribers.len() };
        if held >= self.limits.max_subscribers {
            inner.counters.refused += 1;
            return Err(SubscribeError::Full);
        }
        let (tx, rx) = mpsc::channel(self.limits.backlog + self.limits.queue);
        for chunk in &inner.backlog {
            // The channel has room for the whole backlog.
            let _ = tx.try_send(chunk.clone());
        }
        let rtt = Arc::new(AtomicU64::new(RTT_UNKNOWN));
        if !inner.closed {
            inner.subscribers.push((tx, Arc::clone(&rtt)));
        }
        inner.counters.subscribed += 1;
        self.alive.fetch_add(1, Ordering::Relaxed);
        Ok(Subscription { rx, alive: Arc::clone(&self.alive), rtt })
    }

    /// The round trip to the subscribers now: none, the longest (every one
    /// known), or unknown.
    pub fn subscribers_rtt(&self) -> SubscribersRtt {
        let mut inner = self.inner();
        inner.subscribers.retain(|(s, _)| !s.is_closed());
        let mut longest = None;
        for (_, rtt) in &inner.subscribers {
            match rtt.load(Ordering::Relaxed) {
                RTT_UNKNOWN => return SubscribersRtt::Unknown,
                us => longest = longest.max(Some(us)),
            }
        }
        longest.map_or(SubscribersRtt::None, |us| SubscribersRtt::Longest(Duration::from_micros(us)))
    }

    /// Subscriptions still held: after [`close`](Self::close), those whose
    /// responses have not yet sent everything queued for them.
    pub fn streaming(&self) -> usize {
        self.alive.load(Ordering::Relaxed)
    }

    /// Ends every subscription (each gets what is queued for it, then the
    /// end of its response); a subscription made after gets the backlog,
    /// then the end.
    pub fn close(&self) {
        let mut inner = self.inner();
        inner.closed = true;
        inner.subscribers.clear();
    }

    /// Its counters so far.
    pub fn counters(&self) -> FeedCounters {
        let mut inner = self.inner();
        inner.subscribers.retain(|(s, _)| !s.is_closed());
        FeedCounters { subscribers: inner.subscribers.len(), ..inner.counters }
    }
}

/// One subscriber's chunks, in publication order; it ends when the feed is
/// closed or dropped this subscriber for lagging.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<Bytes>,
    alive: Arc<AtomicUsize>,
    rtt: Arc<AtomicU64>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.alive.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Subscription {
    /// The next chunk; `None` at the end.
    pub async fn next(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }

    /// Records the round trip to this subscriber (its server's estimate, as
    /// it changes), for [`Feed::subscribers_rtt`].
    pub fn set_rtt(&self, rtt: Duration) {
        let us = u64::try_from(rtt.as_micros()).unwrap_or(RTT_UNKNOWN - 1).min(RTT_UNKNOWN - 1);
        self.rtt.store(us, Ordering::Relaxed);
    }

    /// The next chunk, polled (for a response body).
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        self.rx.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(s: &mut Subscription) -> Vec<Bytes> {
        std::iter::from_fn(|| s.rx.try_recv().ok()).collect()
    }

    #[test]
    fn subscribers_get_the_backlog_then_what_follows() {
        let feed =
            Feed::new("application/ambi", FeedLimits { backlog: 2, backlog_bytes: 100, queue: 8, max_subscribers: 4 });
        feed.publish(Bytes::from_static(b"a"));
        let mut early = feed.subscribe().unwrap();
        feed.publish(Bytes::from_static(b"b"));
        feed.publish(Bytes::from_static(b"c"));
        let mut late = feed.subscribe().unwrap();
        feed.publish(Bytes::from_static(b"d"));
        assert_eq!(drain(&mut early), [&b"a"[..], b"b", b"c", b"d"]);
        assert_eq!(drain(&mut late), [&b"b"[..], b"c", b"d"], "the backlog keeps the last 2");
        feed.close();
        assert_eq!(early.rx.try_recv(), Err(mpsc::error::TryRecvError::Disconnected));
        // Closed: a new subscription gets the backlog, then the end.
        let mut after = feed.subscribe().unwrap();
        assert_eq!(drain(&mut after), [&b"c"[..], b"d"]);
        assert_eq!(after.rx.try_recv(), Err(mpsc::error::TryRecvError::Disconnected));
    }

    #[test]
    fn a_lagging_subscriber_is_dropped_and_the_rest_go_on() {
        let feed = Feed::new("x", FeedLimits { backlog: 0, backlog_bytes: 0, queue: 3, max_subscribers: 2 });
        let mut slow = feed.subscribe().unwrap();
        let mut fast = feed.subscribe().unwrap();
        assert_eq!(feed.subscribe().unwrap_err(), SubscribeError::Full);
        for i in 0..10u8 {
            feed.publish(Bytes::from(vec![i]));
            assert_eq!(drain(&mut fast), [Bytes::from(vec![i])]);
        }
        assert_eq!(drain(&mut slow).len(), 3, "its queue, then nothing");
        assert_eq!(slow.rx.try_recv(), Err(mpsc::error::TryRecvError::Disconnected));
        let c = feed.counters();
        assert_eq!((c.published, c.subscribed, c.refused, c.lagged, c.subscribers), (10, 2, 1, 1, 1));
        drop(fast);
        assert_eq!(feed.counters().subscribers, 0);
        assert!(feed.subscribe().is_ok(), "a dropped subscriber's place is free again");
    }

    #[test]
    fn memory_is_bounded_under_a_flood_of_chunks() {
        let feed = Feed::new("x", FeedLimits { backlog: 4, backlog_bytes: 200, queue: 16, max_subscribers: 8 });
        let subs: Vec<_> = (0..8).map(|_| feed.subscribe().unwrap()).collect();
        for _ in 0..100_000 {
            feed.publish(Bytes::from_static(&[0; 64]));
        }
        let inner = feed.inner();
        assert_eq!((inner.backlog.len(), inner.backlog_bytes), (3, 192), "200 bytes hold 3 chunks");
        drop(inner);
        assert_eq!(feed.counters().subscribers, 0, "none read: all dropped");
        drop(subs);
    }

    #[test]
    fn the_subscribers_round_trip_is_the_longest_once_every_one_is_known() {
        let feed = Feed::new("x", FeedLimits::default());
        assert_eq!(feed.subscribers_rtt(), SubscribersRtt::None);
        let a = feed.subscribe().unwrap();
        assert_eq!(feed.subscribers_rtt(), SubscribersRtt::Unknown);
        a.set_rtt(Duration::from_micros(300));
        assert_eq!(feed.subscribers_rtt(), SubscribersRtt::Longest(Duration::from_micros(300)));
        let b = feed.subscribe().unwrap();
        assert_eq!(feed.subscribers_rtt(), SubscribersRtt::Unknown, "b's is not known");
        b.set_rtt(Duration::from_millis(40));
        assert_eq!(feed.subscribers_rtt(), SubscribersRtt::Longest(Duration::from_millis(40)));
        b.set_rtt(Duration::from_micros(100));
        assert_eq!(feed.subscribers_rtt(), SubscribersRtt::Longest(Duration::from_micros(300)), "as it changes");
        drop(a);
        assert_eq!(feed.subscribers_rtt(), SubscribersRtt::Longest(Duration::from_micros(100)), "a is gone");
        b.set_rtt(Duration::MAX);
        assert_eq!(feed.subscribers_rtt(), SubscribersRtt::Longest(Duration::from_micros(RTT_UNKNOWN - 1)));
        drop(b);
        assert_eq!(feed.subscribers_rtt(), SubscribersRtt::None);
    }

    /// Closed, a feed lets each subscriber read what was queued for it,
    /// then the end; it counts the subscriptions still held until then.
    #[test]
    fn a_closed_feed_delivers_what_was_queued_then_ends() {
        let feed = Feed::new("x", FeedLimits::default());
        let mut a = feed.subscribe().unwrap();
        let mut b = feed.subscribe().unwrap();
        feed.publish(Bytes::from_static(b"m1"));
        feed.publish(Bytes::from_static(b"m2"));
        assert_eq!(feed.streaming(), 2);
        feed.close();
        feed.publish(Bytes::from_static(b"late"));
        // A subscriber after the close: the backlog, then the end.
        let mut late = feed.subscribe().unwrap();
        assert_eq!(feed.streaming(), 3);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let read = |s: &mut Subscription| {
            rt.block_on(async {
                let mut v = Vec::new();
                while let Some(c) = s.next().await {
                    v.push(c);
                }
                v
            })
        };
        assert_eq!(read(&mut a), vec![Bytes::from_static(b"m1"), Bytes::from_static(b"m2")]);
        assert_eq!(feed.streaming(), 3, "a is read to its end but still held");
        drop(a);
        assert_eq!(feed.streaming(), 2);
        assert_eq!(read(&mut b).len(), 2);
        drop(b);
        assert_eq!(read(&mut late), vec![Bytes::from_static(b"m1"), Bytes::from_static(b"m2")]);
        drop(late);
        assert_eq!(feed.streaming(), 0);
    }
}
