//! The HTTPS manifest channel: the sender's origin streams the session's
//! manifests as one `application/ambi` response that never ends
//! (`h3m-send --ambi https`); TLS authenticates them.
//!
//! A task reads the stream, cuts it into manifests
//! ([`ManifestStream`]) and hands them to the receive loop through a bounded
//! queue (the loop reads it as it reads datagrams). It disconnects when the
//! stream sends what is not a manifest of this session's stream
//! (malformed, another stream identifier) and reconnects after a failure or
//! a loss with exponential back-off: 1 s, doubling up to 30 s, each delay
//! shortened by a random part of up to half so that receivers that lost the
//! origin together do not come back together; back to 1 s once a
//! connection brought a manifest. A receiver that has never had a manifest
//! tries again after 125–250 ms for its first 2 s (the data hold: what it
//! receives meanwhile waits on the channel), and sooner when the origin's
//! port refused it and starts to listen meanwhile (probed every 25 ms, see
//! [`h3m_unicast::client::wait_for_listener`]; every 2 ms once the
//! session's datagrams arrive: their sender is up, so its
//! origin is starting too), so one started just before its sender
//! authenticates from the first datagram on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use h3m_proto::ambi::{DigestProfile, MANIFEST_PATH, Manifest, ManifestStream};
use h3m_unicast::client::{
    ClientConfig, LISTENER_PROBE, OriginUrl, Protocol, RepairClient, UrlError, wait_for_listener_every,
};
use h3m_unicast::tls::Trust;
use tokio::sync::{Notify, mpsc};

/// Where the manifests are and how the origin is trusted.
#[derive(Debug, Clone)]
pub struct HttpsChannel {
    /// The origin.
    pub url: OriginUrl,
    /// The path of the manifest stream.
    pub path: String,
    /// How the origin's certificate is trusted.
    pub trust: Trust,
    /// The first delay before reconnecting (doubling up to [`Self::max_backoff`]).
    pub first_backoff: Duration,
    /// The longest delay before reconnecting.
    pub max_backoff: Duration,
    /// How often a receiver that has had no manifest yet knocks on the
    /// origin's closed port ([`LISTENER_PROBE`]); once the session's
    /// datagrams arrive, every [`KNOCK_WHILE_DATA`].
    pub knock_every: Duration,
}

/// How often the origin's port is knocked on while the session's datagrams
/// arrive and no manifest has: the sender is up and its origin is starting.
pub const KNOCK_WHILE_DATA: Duration = Duration::from_millis(2);

impl HttpsChannel {
    /// `https://HOST[:PORT][/PATH]` (no path: [`MANIFEST_PATH`]), trusted by `trust`.
    pub fn parse(url: &str, trust: Trust) -> Result<HttpsChannel, UrlError> {
        let origin = OriginUrl::parse(url)?;
        let path = url
            .trim()
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| u.path_and_query().map(|p| p.as_str().to_owned()))
            .filter(|p| p != "/" && !p.is_empty())
            .unwrap_or_else(|| MANIFEST_PATH.to_owned());
        Ok(HttpsChannel::at(origin, path, trust))
    }

    /// The stream at `path` of `url`, default back-off.
    pub fn at(url: OriginUrl, path: String, trust: Trust) -> HttpsChannel {
        HttpsChannel {
            url,
            path,
            trust,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            knock_every: LISTENER_PROBE,
        }
    }
}

impl std::fmt::Display for HttpsChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.url, self.path)
    }
}

/// What the channel did.
#[derive(Debug)]
pub enum ChannelEvent {
    /// Connected and streaming, by this protocol.
    Connected(Protocol),
    /// A manifest.
    Manifest(Manifest),
    /// It failed or was lost (why); it tries again after `retry_in`.
    Lost {
        /// Why.
        reason: String,
        /// When it tries again.
        retry_in: Duration,
    },
}

/// Manifests queued between the task and the receive loop at most (the task
/// waits beyond: the stream is read no faster than the loop takes them).
const QUEUE: usize = 1024;

/// The channel's task, on a thread of its own with its own runtime (so
/// that a receive loop busy with a flood of datagrams never delays the
/// manifests it needs); dropping it stops the task and waits for the thread.
#[derive(Debug)]
pub(crate) struct ChannelTask {
    events: mpsc::Receiver<ChannelEvent>,
    data: Arc<DataSignal>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ChannelTask {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.events.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl ChannelTask {
    /// Starts reading `channel` for manifests of `profile`.
    pub(crate) fn spawn(channel: &HttpsChannel, profile: DigestProfile) -> ChannelTask {
        let (tx, events) = mpsc::channel(QUEUE);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let channel = channel.clone();
        let data = Arc::new(DataSignal::default());
        let signal = Arc::clone(&data);
        let thread = std::thread::Builder::new()
            .name("h3m-ambi-https".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let reason = format!("no runtime for the channel: {e}");
                        let _ = tx.blocking_send(ChannelEvent::Lost { reason, retry_in: Duration::MAX });
                        return;
                    }
                };
                rt.block_on(async move {
                    tokio::select! {
                        _ = run(channel, profile, tx, &signal) => {}
                        _ = stopped => {}
                    }
                });
            })
            .ok();
        ChannelTask { events, data, stop: Some(stop), thread }
    }

    /// What the receive loop tells when the session's datagrams arrive.
    pub(crate) fn data_signal(&self) -> Arc<DataSignal> {
        Arc::clone(&self.data)
    }

    /// The next event (`None` once the task ended).
    pub(crate) async fn next(&mut self) -> Option<ChannelEvent> {
        self.events.recv().await
    }
}

/// The receive loop's word to the channel that the session's datagrams
/// arrive: their sender is up, so its origin is starting too, and the
/// channel knocks on its port every [`KNOCK_WHILE_DATA`] instead of every
/// [`HttpsChannel::knock_every`] until it connects. A forged datagram
/// (anyone who knows the session ID, on an any-source group) sets it too: a
/// receiver then knocks on a closed port at most 500 times a second, only
/// in its first 2 s ([`EAGER`]), and a port that accepts stops the knocks.
#[derive(Debug, Default)]
pub(crate) struct DataSignal {
    arrived: AtomicBool,
    notify: Notify,
}

impl DataSignal {
    /// A datagram of the session arrived (cheap after the first).
    pub(crate) fn arrived(&self) {
        if !self.arrived.load(Ordering::Relaxed) && !self.arrived.swap(true, Ordering::Relaxed) {
            self.notify.notify_one();
        }
    }

    fn seen(&self) -> bool {
        self.arrived.load(Ordering::Relaxed)
    }
}

/// How long a connection attempt runs before the session's first datagram
/// (its sender up, its origin starting) makes the receiver start it again,
/// knocking faster: a younger one is left to finish.
const STALE_ATTEMPT: Duration = Duration::from_millis(5);

/// How long a receiver that never connected yet tries every quarter of the
/// first back-off (its datagrams wait meanwhile, at most 2 s).
const EAGER: Duration = Duration::from_secs(2);

async fn run(channel: HttpsChannel, profile: DigestProfile, tx: mpsc::Sender<ChannelEvent>, data: &DataSignal) {
    let started = tokio::time::Instant::now();
    let mut ever_connected = false;
    let mut delay = channel.first_backoff;
    loop {
        let (brought_any, reason) = match stream_manifests(&channel, &profile, &tx, data).await {
            Ok(()) => return, // the receive loop is gone
            Err(e) => e,
        };
        ever_connected |= brought_any;
        if brought_any {
            delay = channel.first_backoff;
        }
        // Before the first manifest, and for the data hold, it tries again
        // soon: everything received meanwhile waits on it.
        let eager = !ever_connected && started.elapsed() < EAGER;
        let retry_in = jittered(if eager { channel.first_backoff / 4 } else { delay });
        tracing::debug!(%channel, %reason, ?retry_in, "AMBI manifest channel lost");
        if tx.send(ChannelEvent::Lost { reason, retry_in }).await.is_err() {
            return;
        }
        if eager {
            // The origin may be starting: connect as soon as it listens,
            // knocking often once the session's datagrams say it is.
            let until = tokio::time::Instant::now() + retry_in;
            if !data.seen() {
                tokio::select! {
                    _ = wait_for_listener_every(&channel.url, retry_in, channel.knock_every) => continue,
                    _ = data.notify.notified() => {}
                }
            }
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            wait_for_listener_every(&channel.url, left, KNOCK_WHILE_DATA).await;
        } else {
            tokio::time::sleep(retry_in).await;
            delay = (delay * 2).min(channel.max_backoff);
        }
    }
}

/// `delay` shortened by a random part of up to half.
fn jittered(delay: Duration) -> Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let spread = u64::from(nanos.wrapping_mul(2_654_435_761) % 1024);
    delay - delay / 2 * spread as u32 / 1024
}

/// One connection: manifests until it ends. `Ok(())`: the receiver is
/// gone; `Err((brought a manifest, why it ended))`.
async fn stream_manifests(
    channel: &HttpsChannel,
    profile: &DigestProfile,
    tx: &mpsc::Sender<ChannelEvent>,
    data: &DataSignal,
) -> Result<(), (bool, String)> {
    let mut config = ClientConfig::new(channel.trust.clone());
    config.listener_probe = if data.seen() { KNOCK_WHILE_DATA } else { channel.knock_every };
    config.request_timeout = Duration::from_secs(5);
    config.connect_timeout = Duration::from_secs(2);
    // An origin that vanishes without closing is noticed within 6 s.
    config.idle_timeout = Duration::from_secs(6);
    let connect = RepairClient::connect(&channel.url, &config);
    let client = if data.seen() {
        connect.await
    } else {
        // Begun before the session's datagrams arrived, an attempt knocks
        // on the origin's port every `knock_every`: when they arrive, one
        // that has run a while (on a port closed when it began) gives way to
        // one that knocks every KNOCK_WHILE_DATA.
        let began = tokio::time::Instant::now();
        tokio::pin!(connect);
        loop {
            tokio::select! {
                r = &mut connect => break r,
                // Told once: a young attempt goes on undisturbed.
                () = data.notify.notified() => {
                    if began.elapsed() >= STALE_ATTEMPT {
                        return Err((false, "the session's datagrams arrive: connecting again at once".into()));
                    }
                }
            }
        }
    }
    .map_err(|e| (false, e.to_string()))?;
    let mut body = client.stream(&channel.path).await.map_err(|e| (false, e.to_string()))?;
    tx.send(ChannelEvent::Connected(client.protocol())).await.map_err(|_| (false, String::new()))?;
    let mut reader = ManifestStream::new(profile.digest_len());
    let mut brought = false;
    loop {
        let chunk = match body.next_chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => return Err((brought, "the origin ended the stream".into())),
            Err(e) => return Err((brought, e.to_string())),
        };
        reader.push(&chunk);
        loop {
            let m = match reader.next_manifest() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => return Err((brought, format!("not a manifest ({e}): disconnected"))),
            };
            if m.stream_id != profile.manifest_id {
                let why =
                    format!("manifest stream {} where {} was expected: disconnected", m.stream_id, profile.manifest_id);
                return Err((brought, why));
            }
            brought = true;
            if tx.send(ChannelEvent::Manifest(m)).await.is_err() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_origin_and_the_path() {
        let c = HttpsChannel::parse("https://127.0.0.1:4433", Trust::System).unwrap();
        assert_eq!((c.url.port, c.path.as_str()), (4433, MANIFEST_PATH));
        let c = HttpsChannel::parse("https://[fd00::1]:8443/s1.ambi", Trust::System).unwrap();
        assert_eq!((c.url.host.as_str(), c.path.as_str()), ("fd00::1", "/s1.ambi"));
        assert_eq!(c.to_string(), "https://[fd00::1]:8443/s1.ambi");
        assert!(HttpsChannel::parse("http://127.0.0.1/x", Trust::System).is_err());
    }

    use h3m_unicast::catalog::Catalog;
    use h3m_unicast::feed::{Feed, FeedLimits};
    use h3m_unicast::origin::{Origin, OriginConfig};
    use h3m_unicast::tls::Identity;
    use std::net::SocketAddr;
    use std::sync::Arc;

    fn manifest(stream_id: u32, seq: u32) -> Manifest {
        Manifest {
            stream_id,
            sequence: seq,
            first_packet: seq * 4,
            tlvs: Vec::new(),
            digests: vec![seq as u8; 4 * 16],
            digest_len: 16,
        }
    }

    fn wire(m: &Manifest) -> bytes::Bytes {
        let mut out = Vec::new();
        m.write(&mut out).unwrap();
        out.into()
    }

    /// An origin on `addr` (port 0: any) serving a fresh feed at the
    /// manifest path.
    fn origin(addr: SocketAddr, identity: &Identity) -> (Origin, Arc<Feed>) {
        let catalog = Arc::new(Catalog::new());
        let feed = Arc::new(Feed::new(h3m_proto::ambi::MEDIA_TYPE, FeedLimits::default()));
        catalog.insert_feed(MANIFEST_PATH, Arc::clone(&feed));
        (Origin::spawn(OriginConfig::new(addr, identity.clone()), catalog).unwrap(), feed)
    }

    async fn next(task: &mut ChannelTask) -> ChannelEvent {
        tokio::time::timeout(Duration::from_secs(10), task.next()).await.expect("an event").expect("the task runs")
    }

    /// Manifests flow; the origin goes down (lost, back-off) and comes back
    /// on the same port (reconnected, manifests flow again); a manifest of
    /// another stream disconnects the channel, which then reconnects.
    #[tokio::test]
    async fn the_channel_reconnects_after_a_loss_and_refuses_another_stream() {
        let identity = Identity::self_signed(&["127.0.0.1".into()]).unwrap();
        let (first, feed) = origin("127.0.0.1:0".parse().unwrap(), &identity);
        let addr = first.local_addr();
        let mut channel = HttpsChannel::parse(&format!("https://{addr}"), Trust::Pin(identity.fingerprint())).unwrap();
        channel.first_backoff = Duration::from_millis(100);
        let profile = DigestProfile::parse("sha-256/128", 9).unwrap();
        let mut task = ChannelTask::spawn(&channel, profile);
        // Published before the channel connected: the backlog brings it.
        feed.publish(wire(&manifest(9, 0)));
        assert!(matches!(next(&mut task).await, ChannelEvent::Connected(Protocol::Http3)));
        feed.publish([wire(&manifest(9, 1)), wire(&manifest(9, 2))].concat().into());
        // Cut anywhere: one manifest in two chunks.
        let third = wire(&manifest(9, 3));
        feed.publish(third.slice(..7));
        feed.publish(third.slice(7..));
        for seq in 0..4 {
            match next(&mut task).await {
                ChannelEvent::Manifest(m) => assert_eq!(m, manifest(9, seq)),
                other => panic!("{other:?}"),
            }
        }
        first.shutdown();
        let ChannelEvent::Lost { retry_in, .. } = next(&mut task).await else { panic!("not lost") };
        assert!(retry_in <= Duration::from_millis(100), "back to the first back-off after manifests: {retry_in:?}");
        let (second, feed) = origin(addr, &identity);
        feed.publish(wire(&manifest(9, 4)));
        // Failed attempts until the origin answers, each back-off longer.
        let mut lost = 0;
        loop {
            match next(&mut task).await {
                ChannelEvent::Connected(_) => break,
                ChannelEvent::Lost { .. } => lost += 1,
                other => panic!("{other:?}"),
            }
        }
        assert!(
            matches!(next(&mut task).await, ChannelEvent::Manifest(m) if m == manifest(9, 4)),
            "after {lost} failures"
        );
        feed.publish(wire(&manifest(7, 5)));
        match next(&mut task).await {
            ChannelEvent::Lost { reason, .. } => assert!(reason.contains("manifest stream 7 where 9"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // It comes back (and the backlog repeats the foreign manifest: lost again).
        assert!(matches!(next(&mut task).await, ChannelEvent::Connected(_)));
        second.shutdown();
    }

    /// A receiver whose origin was not up waits out a long back-off (its
    /// knocks far apart), unless the session's datagrams arrive: then it
    /// knocks every 2 ms and connects as soon as the origin listens.
    #[tokio::test]
    async fn datagrams_arriving_make_the_channel_connect_as_soon_as_the_origin_listens() {
        let identity = Identity::self_signed(&["127.0.0.1".into()]).unwrap();
        let (first, _) = origin("127.0.0.1:0".parse().unwrap(), &identity);
        let addr = first.local_addr();
        first.shutdown();
        let mut channel = HttpsChannel::parse(&format!("https://{addr}"), Trust::Pin(identity.fingerprint())).unwrap();
        // Without the signal: the next attempt 5-10 s after the first failed.
        channel.first_backoff = Duration::from_secs(40);
        channel.knock_every = Duration::from_secs(30);
        let profile = DigestProfile::parse("sha-256/128", 9).unwrap();
        let mut task = ChannelTask::spawn(&channel, profile);
        assert!(matches!(next(&mut task).await, ChannelEvent::Lost { .. }));
        // Past the knock that starts the wait; then the origin comes up.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (second, feed) = origin(addr, &identity);
        feed.publish(wire(&manifest(9, 0)));
        task.data_signal().arrived();
        let connected = tokio::time::timeout(Duration::from_secs(3), task.next()).await;
        assert!(matches!(connected, Ok(Some(ChannelEvent::Connected(_)))), "{connected:?}");
        assert!(matches!(next(&mut task).await, ChannelEvent::Manifest(m) if m == manifest(9, 0)));
        second.shutdown();
    }

    /// An attempt under way on a port that does not answer (QUIC's first
    /// packet unanswered, TCP refused, knocks 30 s apart) when the
    /// session's datagrams arrive gives way to one that knocks every 2 ms.
    #[tokio::test]
    async fn an_attempt_under_way_when_datagrams_arrive_starts_again() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        let identity = Identity::self_signed(&["127.0.0.1".into()]).unwrap();
        let mut channel = HttpsChannel::parse(&format!("https://{addr}"), Trust::Pin(identity.fingerprint())).unwrap();
        channel.first_backoff = Duration::from_secs(40);
        channel.knock_every = Duration::from_secs(30);
        let profile = DigestProfile::parse("sha-256/128", 9).unwrap();
        let mut task = ChannelTask::spawn(&channel, profile);
        // The attempt's QUIC Initial arrives: it is under way; past STALE_ATTEMPT, datagrams arrive.
        let mut buf = [0u8; 2048];
        silent.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let (n, _) = silent.recv_from(&mut buf).unwrap();
        assert!(n >= 1200, "a QUIC Initial is padded to 1200 bytes: {n}");
        tokio::time::sleep(STALE_ATTEMPT * 4).await;
        task.data_signal().arrived();
        match next(&mut task).await {
            ChannelEvent::Lost { reason, .. } => {
                assert_eq!(reason, "the session's datagrams arrive: connecting again at once");
            }
            other => panic!("{other:?}"),
        }
        drop(silent);
        let (origin, feed) = origin(addr, &identity);
        feed.publish(wire(&manifest(9, 0)));
        let connected = tokio::time::timeout(Duration::from_secs(3), task.next()).await;
        assert!(matches!(connected, Ok(Some(ChannelEvent::Connected(_)))), "{connected:?}");
        origin.shutdown();
    }

    #[test]
    fn back_off_is_shortened_by_at_most_half() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(8));
            assert!(d > Duration::from_secs(4) && d <= Duration::from_secs(8), "{d:?}");
        }
    }
}
