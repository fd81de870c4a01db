//! Unicast repair (`h3m-recv --repair`): what the multicast session left
//! incomplete is fetched from the sender's repair origin
//! (draft-pardue-quic-http-mcast §7.2), exactly the missing byte ranges,
//! over HTTP/3 (HTTP/1.1 if UDP fails), then verified and written like any
//! resource (whole body, SHA-256, signatures with `--trust`).
//!
//! So that thousands of receivers do not stampede the origin, each starts
//! after a random delay within [`RepairOptions::jitter`], fetches at most
//! [`RepairOptions::rate`], keeps at most [`RepairOptions::concurrency`]
//! requests in flight, and honours `503` + `Retry-After`.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use h3m_proto::qpack::HeaderField;
use h3m_unicast::client::{ClientConfig, FetchError, Fetched, OriginUrl, RepairClient, UrlError};
use h3m_unicast::listing::Listed;
use h3m_unicast::tls::Trust;

use crate::session::{RepairWant, Session};
use crate::sink::ResourceSink;

/// Where to repair from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepairOrigin {
    /// The advertisement's `repair` origin, else each push's `:authority`.
    Auto,
    /// This origin.
    Url(OriginUrl),
}

impl std::str::FromStr for RepairOrigin {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<Self, UrlError> {
        if s == "auto" { Ok(RepairOrigin::Auto) } else { OriginUrl::parse(s).map(RepairOrigin::Url) }
    }
}

/// How to repair (`h3m-recv --repair*`).
#[derive(Debug, Clone)]
pub struct RepairOptions {
    /// The origin.
    pub origin: RepairOrigin,
    /// How its certificate is trusted (`None`: the advertised pin for the
    /// advertised origin, else the system's roots).
    pub trust: Option<Trust>,
    /// The first request waits a random time up to this (default 2 s).
    pub jitter: Duration,
    /// Most bits/s of body to ask for (`None`: no cap; default 50 Mbit/s).
    pub rate: Option<u64>,
    /// Requests in flight at once (default 16).
    pub concurrency: usize,
    /// Largest range asked for in one request (default 1 MiB).
    pub max_request: u64,
    /// How a connection is made (timeouts, protocols).
    pub client: ClientConfig,
}

impl RepairOptions {
    /// Defaults for `origin`.
    pub fn new(origin: RepairOrigin) -> Self {
        RepairOptions {
            origin,
            trust: None,
            jitter: Duration::from_secs(2),
            rate: Some(50_000_000),
            concurrency: 16,
            max_request: 1 << 20,
            client: ClientConfig::new(Trust::System),
        }
    }
}

/// What the session's advertisement says of its repair origin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdvertisedOrigin {
    /// `repair`: the origin.
    pub url: Option<String>,
    /// `repair-pin`: its certificate's SHA-256.
    pub pin: Option<[u8; 32]>,
}

/// Connects to `url` once for everyone sharing `cell`.
async fn connect_once(cell: &ClientCell, url: &OriginUrl, config: &ClientConfig) -> Result<Arc<RepairClient>, String> {
    cell.get_or_init(|| async {
        match RepairClient::connect(url, config).await {
            Ok(c) => {
                tracing::info!(origin = %url, protocol = c.protocol().name(), "repair origin connected");
                eprintln!("h3m-recv: repair: {} over {}", url, c.protocol().name());
                Ok(Arc::new(c))
            }
            Err(e) => {
                tracing::warn!(origin = %url, error = %e, "repair origin unreachable");
                eprintln!("h3m-recv: repair: {url}: {e}");
                Err(format!("{url}: {e}"))
            }
        }
    })
    .await
    .clone()
}

/// How many times a request is tried when the origin is busy (`503`).
const BUSY_ATTEMPTS: u32 = 8;
/// How many times a request is tried after a transport error or timeout.
const TRANSPORT_ATTEMPTS: u32 = 3;

/// One request: bytes `range` of held resource `want`.
#[derive(Debug, Clone)]
struct Job {
    want: usize,
    range: Range<u64>,
    /// The length is unknown: the answer says whether more follows.
    open_ended: bool,
}

/// A held resource's repair in progress.
#[derive(Debug)]
struct WantState {
    want: RepairWant,
    origin: Option<OriginUrl>,
    jobs_left: usize,
    failure: Option<String>,
}

/// The gaps of a want as requests of at most `max` bytes; an open-ended gap
/// (`end == u64::MAX`) becomes one request of `max` bytes.
fn jobs_for(want: usize, gaps: &[Range<u64>], max: u64) -> Vec<Job> {
    let max = max.max(1);
    let mut jobs = Vec::new();
    for gap in gaps {
        if gap.end == u64::MAX {
            jobs.push(Job { want, range: gap.start..gap.start.saturating_add(max), open_ended: true });
            continue;
        }
        let mut at = gap.start;
        while at < gap.end {
            let end = gap.end.min(at.saturating_add(max));
            jobs.push(Job { want, range: at..end, open_ended: false });
            at = end;
        }
    }
    jobs
}

/// A random delay in `0..=max`.
fn jitter(max: Duration) -> Duration {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    if max.is_zero() || ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        return Duration::ZERO;
    }
    max.mul_f64(u64::from_le_bytes(b) as f64 / u64::MAX as f64)
}

/// Fetches one range, retrying while the origin is busy (after its
/// `Retry-After`, else 1 s) and after transport failures.
async fn fetch(client: Arc<RepairClient>, path: String, range: Range<u64>) -> Result<Fetched, FetchError> {
    let (mut busy, mut broken) = (0, 0);
    loop {
        match client.fetch(&path, range.clone()).await {
            Err(FetchError::Busy { retry_after }) if busy + 1 < BUSY_ATTEMPTS => {
                busy += 1;
                tokio::time::sleep(retry_after.unwrap_or(Duration::from_secs(1))).await;
            }
            Err(FetchError::Transport(_) | FetchError::Timeout) if broken + 1 < TRANSPORT_ATTEMPTS => {
                broken += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// A connection to an origin, made once by whichever task needs it first.
type ClientCell = Arc<tokio::sync::OnceCell<Result<Arc<RepairClient>, String>>>;

/// What a lookup of a push in the origin's listing found.
type LookupResult = (u64, Result<Option<Listed>, String>);

/// The most lookups in flight at once.
const MAX_LOOKUPS: usize = 16;

/// The most pushes looked up in one session: streams that turn up without
/// a promise cost one small request each, and forged ones must not make a
/// receiver ask without end (about 6 MiB of answers kept at most).
const MAX_LOOKED_UP: usize = 65_536;

/// A session's unicast repair: one connection per origin (made when first
/// needed; a failure is kept), lookups of lost promises in the origin's
/// listing (each push once, during the session as soon as a stream turns
/// up without its promise, so the stream's bytes are kept), the jitter
/// (waited once, before the first range is asked for). Its futures may be
/// dropped at any await (Ctrl-C): what is not repaired stays held and is
/// reported incomplete at the end.
pub(crate) struct Repairer<'a> {
    opts: &'a RepairOptions,
    advertised_url: Option<OriginUrl>,
    pin: Option<[u8; 32]>,
    clients: HashMap<OriginUrl, ClientCell>,
    /// Pushes looked up (or being): what the listing says of them.
    listed: HashMap<u64, Option<Listed>>,
    lookups: tokio::task::JoinSet<LookupResult>,
    jittered: bool,
}

impl<'a> Repairer<'a> {
    /// A repair as `opts` say, with what the advertisement said of the origin.
    pub(crate) fn new(opts: &'a RepairOptions, advertised: &AdvertisedOrigin) -> Self {
        Repairer {
            opts,
            advertised_url: advertised.url.as_deref().and_then(|u| OriginUrl::parse(u).ok()),
            pin: advertised.pin,
            clients: HashMap::new(),
            listed: HashMap::new(),
            lookups: tokio::task::JoinSet::new(),
            jittered: false,
        }
    }

    /// The origin of a resource promised with `authority`.
    fn origin_for(&self, authority: Option<&str>) -> Option<OriginUrl> {
        match &self.opts.origin {
            RepairOrigin::Url(u) => Some(u.clone()),
            RepairOrigin::Auto => {
                self.advertised_url.clone().or_else(|| authority.and_then(|a| OriginUrl::from_authority(a).ok()))
            }
        }
    }

    /// Waits the random delay, once.
    async fn jitter(&mut self) {
        if !self.jittered {
            self.jittered = true;
            let delay = jitter(self.opts.jitter);
            tracing::info!(delay_ms = delay.as_millis() as u64, "unicast repair starts");
            tokio::time::sleep(delay).await;
        }
    }

    /// The connection to `url`, made by the first to ask (from any task).
    fn client_cell(&mut self, url: &OriginUrl) -> (ClientCell, ClientConfig) {
        let mut config = self.opts.client.clone();
        config.trust = match (&self.opts.trust, self.pin) {
            (Some(t), _) => t.clone(),
            (None, Some(pin)) if self.advertised_url.as_ref() == Some(url) => Trust::Pin(pin),
            (None, _) => Trust::System,
        };
        (Arc::clone(self.clients.entry(url.clone()).or_default()), config)
    }

    /// The connection to `url`.
    async fn client(&mut self, url: &OriginUrl) -> Result<Arc<RepairClient>, String> {
        let (cell, config) = self.client_cell(url);
        connect_once(&cell, url, &config).await
    }

    /// Starts looking up, in the origin's listing, the pushes whose streams
    /// wait for a lost promise (each push once): see
    /// [`next_lookup`](Self::next_lookup).
    pub(crate) fn start_lookups<S: ResourceSink>(&mut self, session: &Session<'_, '_, S>) {
        if !session.receiver.has_unpromised() {
            return;
        }
        self.look_up(session, session.receiver.unpromised_push_ids());
    }

    /// Starts looking up `ids` not yet looked up (within [`MAX_LOOKUPS`] in
    /// flight; the rest at a later call).
    fn look_up<S: ResourceSink>(&mut self, session: &Session<'_, '_, S>, ids: Vec<u64>) {
        let Some(url) = self.origin_for(session.authority_seen().as_deref()) else { return };
        for id in ids {
            if self.lookups.len() >= MAX_LOOKUPS || self.listed.len() >= MAX_LOOKED_UP {
                break;
            }
            if self.listed.contains_key(&id) {
                continue;
            }
            self.listed.insert(id, None);
            let (cell, config) = self.client_cell(&url);
            let url = url.clone();
            self.lookups.spawn(async move {
                let client = match connect_once(&cell, &url, &config).await {
                    Ok(c) => c,
                    Err(e) => return (id, Err(e)),
                };
                (id, client.lookup(id).await.map_err(|e| e.to_string()))
            });
        }
    }

    /// Whether lookups are in flight.
    pub(crate) fn looking_up(&self) -> bool {
        !self.lookups.is_empty()
    }

    /// The next lookup to finish (pending forever when none is in flight).
    pub(crate) async fn next_lookup(&mut self) -> LookupResult {
        match self.lookups.join_next().await {
            Some(Ok(r)) => r,
            Some(Err(e)) => (u64::MAX, Err(e.to_string())),
            None => std::future::pending().await,
        }
    }

    /// A lookup finished: a push still waiting for its promise gets it.
    pub(crate) fn on_lookup<S: ResourceSink>(&mut self, session: &mut Session<'_, '_, S>, (id, result): LookupResult) {
        let listed = match result {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(push_id = id, "listing lookup failed: {e}");
                None
            }
        };
        self.listed.insert(id, listed.clone());
        if let Some(l) = listed
            && session.receiver.unpromised_push_ids().contains(&id)
        {
            let authority = session.authority_seen().unwrap_or_default();
            let request = vec![
                HeaderField::new(":method", "GET"),
                HeaderField::new(":scheme", "https"),
                HeaderField::new(":authority", authority.as_str()),
                HeaderField::new(":path", l.path.as_str()),
            ];
            session.receiver.adopt_promise(Instant::now(), id, request);
            session.drain();
        }
    }

    /// Looks up `ids` and waits for every lookup.
    async fn look_up_all<S: ResourceSink>(&mut self, session: &mut Session<'_, '_, S>, ids: &[u64]) {
        loop {
            let todo: Vec<u64> = ids.iter().copied().filter(|id| !self.listed.contains_key(id)).collect();
            self.look_up(session, todo);
            if !self.looking_up() {
                return;
            }
            let r = self.next_lookup().await;
            self.on_lookup(session, r);
        }
    }

    /// Before the session's pushes are finished: the push streams still
    /// waiting for their lost PUSH_PROMISE get the promise the listing
    /// gives, so what of them arrived is kept and only the rest is fetched.
    ///
    /// Streams whose own first bytes were lost (headless) are placed by the
    /// body offset the listing gives, into a resource held for the repair.
    pub(crate) async fn adopt_unpromised<S: ResourceSink>(&mut self, session: &mut Session<'_, '_, S>) {
        let waiting = session.receiver.unpromised_push_ids();
        let headless = session.receiver.headless_streams();
        let ids: Vec<u64> = waiting.iter().copied().chain(headless.iter().filter_map(|h| h.1)).collect();
        self.look_up_all(session, &ids).await;
        for (stream_id, push_id) in headless {
            let Some(push_id) = push_id else { continue };
            let Some(Some(l)) = self.listed.get(&push_id).cloned() else { continue };
            let (Some(body_offset), Some(_)) = (l.body_offset, l.length) else { continue };
            if let Some(id) = session.adopt(push_id, &l.path, l.length, l.sha256) {
                let segments = session.receiver.take_headless(stream_id);
                session.place_headless(id, body_offset, &segments);
            }
        }
    }

    /// Repairs every resource the session holds (after
    /// [`Session::settle_all`]), with the pushes it never learnt found in
    /// the listing.
    pub(crate) async fn run<S: ResourceSink>(&mut self, session: &mut Session<'_, '_, S>) {
        let orphans = session.orphan_push_ids();
        self.look_up_all(session, &orphans).await;
        for id in orphans {
            if let Some(Some(l)) = self.listed.get(&id).cloned() {
                session.adopt(id, &l.path, l.length, l.sha256);
            }
        }
        self.jitter().await;
        let mut states: Vec<WantState> = session
            .repair_wants()
            .into_iter()
            .map(|want| {
                let origin = self.origin_for(want.authority.as_deref());
                WantState { want, origin, jobs_left: 0, failure: None }
            })
            .collect();
        let mut clients = Vec::with_capacity(states.len());
        for s in &states {
            clients.push(match &s.origin {
                Some(url) => Some(self.client(url).await),
                None => None,
            });
        }
        let mut queue = std::collections::VecDeque::new();
        for (i, (s, client)) in states.iter_mut().zip(&clients).enumerate() {
            match client {
                None => s.failure = Some("no repair origin known (no advertisement, no :authority)".into()),
                Some(Err(e)) => s.failure = Some(e.clone()),
                Some(Ok(_)) => {
                    let jobs = jobs_for(i, &s.want.gaps, self.opts.max_request);
                    s.jobs_left = jobs.len();
                    queue.extend(jobs);
                }
            }
        }
        for s in &states {
            if s.jobs_left == 0 {
                session.repair_done(s.want.id, s.failure.clone());
            }
        }
        let opts = self.opts;
        let mut pacer = h3m_net::Pacer::with_burst(opts.rate, opts.max_request.max(64 * 1024));
        let mut in_flight = tokio::task::JoinSet::new();
        loop {
            // Start what the concurrency and the rate allow.
            while in_flight.len() < opts.concurrency.max(1) {
                let Some(job) = queue.pop_front() else { break };
                let len = (job.range.end - job.range.start) as usize;
                if let Some(at) = pacer.reserve(Instant::now(), len) {
                    tokio::time::sleep_until(at.into()).await;
                }
                let Some(Ok(client)) = &clients[job.want] else { continue };
                let (client, path) = (Arc::clone(client), states[job.want].want.path.clone());
                in_flight.spawn(async move {
                    let result = fetch(client, path, job.range.clone()).await;
                    (job, result)
                });
            }
            let Some(done) = in_flight.join_next().await else { break };
            let Ok((job, result)) = done else { continue };
            let s = &mut states[job.want];
            s.jobs_left -= 1;
            match result {
                Ok(f) => {
                    if session.repair_data(s.want.id, f.range.start, &f.body, f.complete, f.sha256) {
                        // A body of unknown length goes on past this answer.
                        if job.open_ended && f.complete.is_some_and(|c| c > f.range.end) {
                            let next = f.range.end..f.range.end.saturating_add(opts.max_request);
                            queue.push_back(Job { want: job.want, range: next, open_ended: true });
                            s.jobs_left += 1;
                        }
                    } else {
                        s.failure.get_or_insert_with(|| "the resource could not be written".into());
                    }
                }
                Err(e) => {
                    s.failure.get_or_insert_with(|| format!("{}-{}: {e}", job.range.start, job.range.end - 1));
                }
            }
            if s.jobs_left == 0 {
                session.repair_done(s.want.id, s.failure.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_become_bounded_requests() {
        let jobs = jobs_for(0, &[0..10, 100..350, 400..u64::MAX], 100);
        let ranges: Vec<_> = jobs.iter().map(|j| (j.range.clone(), j.open_ended)).collect();
        assert_eq!(
            ranges,
            vec![(0..10, false), (100..200, false), (200..300, false), (300..350, false), (400..500, true)]
        );
    }

    #[test]
    fn origins_parse() {
        assert_eq!("auto".parse::<RepairOrigin>(), Ok(RepairOrigin::Auto));
        assert_eq!(
            "https://127.0.0.1:4433".parse::<RepairOrigin>(),
            Ok(RepairOrigin::Url(OriginUrl { host: "127.0.0.1".into(), port: 4433 }))
        );
        assert!("ftp://x".parse::<RepairOrigin>().is_err());
    }

    #[test]
    fn jitter_stays_within_its_bound() {
        for _ in 0..100 {
            assert!(jitter(Duration::from_millis(50)) <= Duration::from_millis(50));
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}
