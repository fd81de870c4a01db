//! The embeddable sender: an h3m session on a multicast socket, to which a
//! program publishes resources from memory, streams of unknown length, and
//! finally the end of the session. Independent of files on disk: `h3m-send`
//! ([`crate::run`]) is one user of it.
//!
//! The sans-IO work (headers, packetization, keep-alives, the end signal) is
//! [`h3m_proto::sender::Sender`]; a [`Publisher`] adds the socket, the pacer
//! (the peak rate the session advertises) and, when configured, packet
//! protection and push signatures.
//!
//! ```no_run
//! use h3m_sender::publisher::{Publisher, PublisherConfig};
//!
//! # async fn example() -> Result<(), h3m_sender::publisher::PublishError> {
//! let mut config = PublisherConfig::new("239.255.0.1:2000".parse().unwrap());
//! config.rate = Some(50_000_000);
//! println!("Alt-Svc: {}", config.advertisement());
//! let mut publisher = Publisher::open(&config)?;
//! publisher.publish("index.m3u8", b"#EXTM3U\n").await?;
//! let mut live = publisher.start_stream("live/feed.ts").await?;
//! publisher.write_stream(&mut live, b"first bytes").await?;
//! publisher.finish_stream(live).await?;
//! let closed = publisher.close().await?;
//! println!("{} datagrams in {:?}", closed.stats.datagrams, closed.elapsed);
//! # Ok(()) }
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use h3m_net::{Interface, MulticastConfig, Pacer, SendSocket, Warning};
use h3m_proto::SessionId;
use h3m_proto::aead::{HP_RULE_EXTENSION, PacketKeys};
use h3m_proto::altsvc::{Advertisement, Extension};
use h3m_proto::ambi::{DigestProfile, ManifestBuilder, PseudoHeader, inband};
use h3m_proto::auth::keys::{HmacArgError, load_hmac_arg};
use h3m_proto::auth::{KeyError, KeyType, PushSigner, SignPushError, SignatureAlgorithm, SignatureForms, SigningKey};
use h3m_proto::encoder::{EncodeError, EncoderConfig};
use h3m_proto::fec::FecConfig;
use h3m_proto::http::digest;
use h3m_proto::protection::NullProtection;
use h3m_proto::qpack::HeaderField;
use h3m_proto::sender::{ResourceMeta, Sender, SenderConfig, SenderStats};
use h3m_unicast::catalog::{Catalog, Entry, Source, Spool};
use h3m_unicast::feed::{Feed, FeedLimits, SubscribersRtt};

/// How a [`Publisher`] sends.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// Multicast group and port.
    pub group: SocketAddr,
    /// Source address to send from (and advertise for SSM).
    pub source: Option<IpAddr>,
    /// Outgoing interface.
    pub interface: Option<Interface>,
    /// TTL / hop limit (default 1: the datagrams stay on the link).
    pub ttl: u32,
    /// Session ID.
    pub session_id: SessionId,
    /// `:authority` of every push.
    pub authority: String,
    /// Prefix of every `:path`.
    pub path_prefix: String,
    /// Peak rate in bits/s of UDP payload; `None` sends unpaced.
    pub rate: Option<u64>,
    /// Packet protection keys (`None`: cleartext, as nghq).
    pub protection: Option<PacketKeys>,
    /// Largest datagram.
    pub max_datagram_size: usize,
    /// Packet-number length in bytes.
    pub pn_len: usize,
    /// Keep-alive interval (a PING after this much silence).
    pub keepalive: Duration,
    /// Sign every push with this key (`None`: unsigned).
    pub signer: Option<Arc<PushSigner>>,
    /// While pushes are in flight, repeat their PUSH_PROMISE and stream head
    /// this often so that receivers joining late learn them (h3m receivers
    /// only, see [`RECOMMENDED_REPEAT_HEADS`]); `None` (the default): never,
    /// byte-identical to nghq's output.
    pub repeat_heads: Option<Duration>,
    /// Forward error correction (`h3m-send --fec`): repair datagrams to the
    /// repair port, see [`h3m_proto::fec`]; `None` (the default): none.
    pub fec: Option<FecConfig>,
    /// The repair port (`None`: the group's port + 1).
    pub fec_port: Option<u16>,
    /// Unicast repair: every resource published is added to this catalog,
    /// which an [`h3m_unicast::origin::Origin`] serves (`h3m-send
    /// --repair-listen`); `None` (the default): none.
    pub catalog: Option<Arc<Catalog>>,
    /// Most datagrams per GSO send (`None`: the kernel's limit, 64; `1`: one
    /// `sendmsg` per datagram). With FEC, `None` means the interleaving depth.
    pub gso_segments: Option<usize>,
    /// Datagrams per paced batch (`None`: about 1 ms at the rate, 1 to 64).
    pub batch_datagrams: Option<usize>,
    /// Fill every datagram ([`EncoderConfig::pack`]: consecutive resources
    /// share datagrams, so small files leave in long GSO runs); `true` by
    /// default. `false`: nghq's own layout, each promise alone.
    pub pack: bool,
    /// AMBI (`h3m-send --ambi inband`): signed manifests of every datagram's
    /// digest, multicast on the side port (the FEC repair port) ahead of the
    /// datagrams they cover; `None` (the default): none.
    pub ambi: Option<AmbiConfig>,
    /// The repair origin receivers are told of in the advertisement
    /// (`repair="https://HOST:PORT"`), with the SHA-256 of its certificate
    /// (`repair-pin`) when it is self-signed.
    pub repair_origin: Option<(String, Option<[u8; 32]>)>,
    /// Where the session's counters are kept up to date for another thread
    /// (`h3m-send --metrics`, see [`crate::metrics`]); `None` (the
    /// default): nowhere.
    pub shared_stats: Option<Arc<SharedStats>>,
    /// Write a qlog trace of the datagrams sent (`h3m-send --qlog DIR`, see
    /// [`crate::qlog`]); `None` (the default): none. A trace that cannot be
    /// created is a warning, not an error.
    pub qlog: Option<crate::qlog::QlogConfig>,
}

/// The session's counters, shared with another thread: the publisher
/// stores them after each batch it sends (one uncontended lock per batch).
#[derive(Debug, Default)]
pub struct SharedStats {
    stats: std::sync::Mutex<SenderStats>,
}

impl SharedStats {
    /// The counters as last stored.
    pub fn get(&self) -> SenderStats {
        *self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, stats: SenderStats) {
        *self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = stats;
    }
}

impl PublisherConfig {
    /// Defaults for `group`: nghq's session ID, TTL 1, unpaced, cleartext,
    /// unsigned, the encoder's datagram size and packet-number length.
    pub fn new(group: SocketAddr) -> Self {
        let enc = EncoderConfig::new(SessionId::NGHQ_DEFAULT);
        let sender = SenderConfig::new(enc.clone());
        PublisherConfig {
            group,
            source: None,
            interface: None,
            ttl: 1,
            session_id: SessionId::NGHQ_DEFAULT,
            authority: sender.authority,
            path_prefix: sender.path_prefix,
            rate: None,
            protection: None,
            max_datagram_size: enc.max_datagram_size,
            pn_len: enc.pn_len,
            keepalive: sender.keepalive,
            signer: None,
            repeat_heads: None,
            fec: None,
            fec_port: None,
            catalog: None,
            ambi: None,
            repair_origin: None,
            shared_stats: None,
            qlog: None,
            gso_segments: None,
            batch_datagrams: None,
            pack: true,
        }
    }

    /// Where the repair datagrams go: the group on the repair port.
    pub fn repair_dest(&self) -> Result<SocketAddr, PublishError> {
        let port = self.fec_port.or_else(|| self.group.port().checked_add(1)).ok_or(PublishError::NoRepairPort)?;
        Ok(SocketAddr::new(self.group.ip(), port))
    }

    /// The Alt-Svc advertisement a receiver needs for this session.
    pub fn advertisement(&self) -> Advertisement {
        let mut adv = Advertisement::new("h3m-07", self.group);
        adv.source = self.source;
        adv.session_id = self.session_id;
        adv.peak_flow_rate = self.rate;
        adv.idle_timeout_ms = Some(60_000);
        if let Some(k) = &self.protection {
            adv.cipher_suite = k.suite();
            adv.key = Some(k.key().to_vec());
            adv.iv = Some(k.iv().to_vec());
            adv.extensions.push(Extension { code: HP_RULE_EXTENSION, value: None });
        }
        adv.fec = self.fec;
        adv.fec_port = self.fec.and(self.fec_port);
        if let Some(a) = &self.ambi {
            adv.ambi = Some(a.channels().into());
            adv.ambi_digest = Some(a.profile.to_string());
        }
        if let Some((url, pin)) = &self.repair_origin {
            adv.repair_origin = Some(url.clone());
            adv.repair_pin = *pin;
        }
        adv
    }
}

/// [`AmbiConfig::lead`] with the HTTPS channel, by default: while a
/// subscriber's round trip is not known ([`AmbiConfig::follow_rtt`]).
pub const HTTPS_LEAD: Duration = Duration::from_millis(10);

/// With a lead, manifests are published this many at a time (one feed
/// chunk: a wake-up of the origin and of each receiver's channel), unless
/// everything queued is to go.
pub const MANIFESTS_PER_CHUNK: usize = 4;

/// How often [`Publisher::wait_for_subscribers`] multicasts a PING.
pub const WAITING_PING: Duration = Duration::from_millis(25);

/// What a lead that follows the subscribers adds to their longest round
/// trip: the origin's and the receiver's scheduling, and the jitter of a
/// round-trip estimate.
pub const LEAD_MARGIN: Duration = Duration::from_millis(1);

/// The longest lead that follows the subscribers.
pub const MAX_RTT_LEAD: Duration = Duration::from_millis(250);

/// The lead for subscribers whose longest round trip is `rtt`: the round
/// trip bounds how much later a manifest sent over unicast arrives than a
/// datagram multicast at the same moment (its one-way time, when the
/// multicast path takes no time at all), plus [`LEAD_MARGIN`], at most
/// [`MAX_RTT_LEAD`].
pub fn rtt_lead(rtt: Duration) -> Duration {
    rtt.saturating_add(LEAD_MARGIN).min(MAX_RTT_LEAD)
}

/// How a [`Publisher`] authenticates its datagrams with AMBI: manifests of
/// every datagram's digest, ahead of the datagrams, by one channel or both.
#[derive(Debug, Clone)]
pub struct AmbiConfig {
    /// The digest profile.
    pub profile: DigestProfile,
    /// The in-band channel: manifests multicast on the side port, each
    /// signed with this key (Ed25519, ECDSA P-256 or RSA-PSS); `None`: no
    /// in-band manifests.
    pub key: Option<Arc<SigningKey>>,
    /// The HTTPS channel: manifests published to this feed, which the repair
    /// origin streams as `application/ambi` at
    /// [`h3m_proto::ambi::MANIFEST_PATH`] (see [`AmbiConfig::serve`]);
    /// `None`: none.
    pub feed: Option<Arc<Feed>>,
    /// Digests per manifest (at most 69 fit a 1200-byte datagram with
    /// 16-byte digests and an Ed25519 signature).
    pub per_manifest: usize,
    /// Manifests each digest is in (losing a fraction `p` of manifests
    /// leaves a datagram unauthenticated with probability about
    /// `p^overlap`; 1 is enough over HTTPS, which loses nothing).
    pub overlap: usize,
    /// How long after its manifest is published a datagram leaves. Over
    /// HTTPS a manifest takes longer than a datagram multicast at the same
    /// moment (unicast, through the origin); one that arrives after its
    /// datagram leaves the datagram waiting in the receiver's hold buffer,
    /// which a flood of forgeries can fill. It must exceed how much slower
    /// the unicast path is (10 ms by default with a feed; none in-band only,
    /// where manifests leave just before their batch on the same path).
    pub lead: Duration,
    /// With a feed: the lead follows its subscribers (see
    /// [`h3m_unicast::feed::Feed::subscribers_rtt`]) instead of being
    /// `lead` throughout: none while nobody subscribes (a receiver that
    /// subscribes later gets the backlog, and holds the datagrams until
    /// then anyway), [`rtt_lead`] of their longest round trip when every
    /// one is known (the HTTP/3 origin measures it), `lead` otherwise.
    pub follow_rtt: bool,
}

impl AmbiConfig {
    /// In-band only: 64 digests per manifest, each in 4 manifests.
    pub fn inband(profile: DigestProfile, key: Arc<SigningKey>) -> Self {
        AmbiConfig {
            profile,
            key: Some(key),
            feed: None,
            per_manifest: 64,
            overlap: 4,
            lead: Duration::ZERO,
            follow_rtt: false,
        }
    }

    /// HTTPS only: 64 digests per manifest, each in one manifest, published
    /// to `feed` ahead of their datagrams by the subscribers' round trip
    /// ([`AmbiConfig::follow_rtt`]; 10 ms while it is not known).
    pub fn https(profile: DigestProfile, feed: Arc<Feed>) -> Self {
        AmbiConfig {
            profile,
            key: None,
            feed: Some(feed),
            per_manifest: 64,
            overlap: 1,
            lead: HTTPS_LEAD,
            follow_rtt: true,
        }
    }

    /// A feed for the HTTPS channel, served by `catalog`'s origin at
    /// [`h3m_proto::ambi::MANIFEST_PATH`], with the session's AMBI metadata
    /// (`ietf-ambi` JSON, see [`crate::ambi_metadata`]) at
    /// [`h3m_proto::ambi::METADATA_PATH`].
    pub fn serve(catalog: &Catalog, metadata: String) -> Arc<Feed> {
        // The backlog covers a receiver's data hold (2 s) at any rate up to
        // 6 Gbit/s (about 10 MB of 16-byte digests a second): a receiver
        // whose channel (re)connects within it authenticates every datagram
        // it holds. One chunk per paced batch (about 1 ms).
        let limits = FeedLimits { backlog: 4096, backlog_bytes: 24 << 20, queue: 1024, max_subscribers: 4096 };
        let feed = Arc::new(Feed::new(h3m_proto::ambi::MEDIA_TYPE, limits));
        catalog.insert_feed(h3m_proto::ambi::MANIFEST_PATH, Arc::clone(&feed));
        catalog.insert(
            h3m_proto::ambi::METADATA_PATH,
            Entry {
                source: Source::Memory(metadata.into()),
                content_type: Some("application/yang-data+json".into()),
                sha256: None,
            },
        );
        feed
    }

    /// The signature algorithm of its in-band key, if AMBI can use it.
    pub fn algorithm(&self) -> Option<SignatureAlgorithm> {
        match self.key.as_ref()?.key_type() {
            KeyType::Ed25519 => Some(SignatureAlgorithm::Ed25519),
            KeyType::EcdsaP256 => Some(SignatureAlgorithm::EcdsaP256Sha256Fixed),
            KeyType::RsaPss => Some(SignatureAlgorithm::RsaPssSha512),
            _ => None,
        }
    }

    /// The channels, as the advertisement's `ambi` names them: `inband`,
    /// `https` or `both`.
    pub fn channels(&self) -> &'static str {
        match (self.key.is_some(), self.feed.is_some()) {
            (true, true) => "both",
            (false, true) => "https",
            _ => "inband",
        }
    }
}

/// How often open pushes' promises and heads are repeated when asked for
/// (`--repeat-heads` with no better figure): a receiver joining at any time
/// learns a push in flight within half a second (a second if one repetition
/// is lost), for one datagram per push and repetition. Off by default: nghq's
/// receiver takes each repeated PUSH_PROMISE for a new promise and, once a
/// repeated stream head overlaps the DATA frame it is reading, loses track of
/// the frame, so the push ends only at its 5 s stream timeout, with an error.
pub const RECOMMENDED_REPEAT_HEADS: Duration = Duration::from_millis(500);

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Opening the socket failed.
    #[error(transparent)]
    Net(#[from] h3m_net::NetError),
    /// Sending failed.
    #[error("send: {0}")]
    Io(#[from] std::io::Error),
    /// Encoding failed (e.g. more body than announced, an unknown push).
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Signing a push failed.
    #[error("signing: {0}")]
    Sign(#[from] SignPushError),
    /// FEC is on and the group's port is 65535, so there is no next port
    /// for the repair (set [`PublisherConfig::fec_port`]).
    #[error("no repair port after port 65535: name one (--fec-port)")]
    NoRepairPort,
    /// AMBI needs what it cannot have here.
    #[error("ambi: {0}")]
    Ambi(String),
}

/// Why `--sign-hmac KEYID=HEX|@FILE` gave no signer. Messages name the key
/// ID or the file, never the secret.
#[derive(Debug, thiserror::Error)]
pub enum HmacSignerError {
    /// The argument gave no secret.
    #[error(transparent)]
    Secret(#[from] HmacArgError),
    /// The key could not be made (or its ID cannot be written into a signature).
    #[error(transparent)]
    Signer(#[from] SignPushError),
    /// The secret is not a usable key.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// A signer of RFC 9421 `hmac-sha256` signatures for `KEYID=HEX` or
/// `KEYID=@FILE` (the file holds the secret in hex; at least 32 bytes):
/// `h3m-send --sign-hmac`. The key ID is written as `keyid`. Cavage has no
/// HMAC algorithm here, so only RFC 9421 signatures are made.
pub fn hmac_signer(arg: &str) -> Result<PushSigner, HmacSignerError> {
    let (id, secret) = load_hmac_arg(arg, |path| std::fs::read(path))?;
    Ok(PushSigner::new(SigningKey::hmac_sha256(&secret)?, id, SignatureForms::Rfc9421)?)
}

/// What a closed session sent.
#[derive(Debug, Clone, Default)]
pub struct Closed {
    /// The sender's counters.
    pub stats: SenderStats,
    /// Wall time from the first datagram to the last.
    pub elapsed: Duration,
}

/// A push whose SHA-256 (and signature) go in trailers, computed over the
/// body as it is written: a live resource of unknown length
/// ([`Publisher::start_stream`]), or a file sent as it is read, in one pass
/// ([`Publisher::start_file_trailed`]).
pub struct TrailedPush {
    push_id: u64,
    request: Vec<HeaderField>,
    response: Vec<HeaderField>,
    hasher: ring::digest::Context,
    bytes: u64,
}

/// A live resource being published: a [`TrailedPush`].
pub type LiveStream = TrailedPush;

impl std::fmt::Debug for TrailedPush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrailedPush")
            .field("push_id", &self.push_id)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl TrailedPush {
    /// Its push ID.
    pub fn push_id(&self) -> u64 {
        self.push_id
    }

    /// Body bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The SHA-256 of the body written so far.
    pub fn sha256(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.hasher.clone().finish().as_ref());
        out
    }
}

/// An h3m session being published on a multicast socket (see the
/// [module docs](self)). Each `async` method returns once what it queued
/// has been handed to the socket at the configured pace.
pub struct Publisher {
    sender: Sender,
    max_datagram_size: usize,
    signer: Option<Arc<PushSigner>>,
    socket: SendSocket,
    dest: SocketAddr,
    /// Where FEC repair goes.
    repair_dest: SocketAddr,
    repair_batch: Vec<Vec<u8>>,
    pacer: Pacer,
    batch: Vec<Vec<u8>>,
    /// Where a batch's runs are laid end to end for GSO (kept between batches).
    gso_buffer: Vec<u8>,
    batch_bytes: usize,
    first: Option<Instant>,
    last: Instant,
    warnings: Vec<Warning>,
    /// Unicast repair: the catalog the origin serves.
    catalog: Option<Arc<Catalog>>,
    /// AMBI: the manifests of the datagrams queued, and where they go.
    ambi: Option<AmbiSender>,
    ambi_batch: Vec<Vec<u8>>,
    /// Pushes in flight whose body the catalog gets as it is written.
    spools: HashMap<u64, Arc<Spool>>,
    /// The counters for another thread ([`PublisherConfig::shared_stats`]).
    shared_stats: Option<Arc<SharedStats>>,
    /// `--qlog`: the trace (dropped after a write error).
    qlog: Option<crate::qlog::SenderQlog>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("dest", &self.dest)
            .field("stats", &self.sender.stats())
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Opens the socket (joined to nothing: sending only) and starts the
    /// session. Must be called within a tokio runtime.
    pub fn open(config: &PublisherConfig) -> Result<Self, PublishError> {
        let mut mc = MulticastConfig::new(config.group);
        mc.source = config.source;
        mc.interface = config.interface.clone();
        mc.ttl = config.ttl;
        mc.send_buffer = Some(4 << 20);
        let (socket, warnings) = h3m_net::open_sender(&mc)?;
        tracing::info!(group = %config.group, session_id = %config.session_id, rate = config.rate, "sending");
        let socket = SendSocket::from_std(socket)?;
        let mut enc = EncoderConfig::new(config.session_id);
        enc.max_datagram_size = config.max_datagram_size;
        enc.pn_len = config.pn_len;
        enc.pack = config.pack;
        let mut cfg = SenderConfig::new(enc);
        cfg.authority = config.authority.clone();
        cfg.path_prefix = config.path_prefix.clone();
        cfg.keepalive = config.keepalive;
        cfg.repeat_heads = config.repeat_heads;
        cfg.fec = config.fec;
        let repair_dest = match (config.fec, &config.ambi) {
            (None, None) => config.group,
            _ => config.repair_dest()?,
        };
        let ambi = match &config.ambi {
            None => None,
            Some(a) => {
                let signer = match &a.key {
                    Some(key) => Some((
                        Arc::clone(key),
                        a.algorithm().ok_or_else(|| {
                            PublishError::Ambi("manifests are signed with Ed25519, ECDSA P-256 or RSA-PSS keys".into())
                        })?,
                    )),
                    None => None,
                };
                if signer.is_none() && a.feed.is_none() {
                    return Err(PublishError::Ambi("no manifest channel (a signing key or a feed)".into()));
                }
                if config.pn_len != 4 {
                    return Err(PublishError::Ambi(
                        "4-byte packet numbers only (the packet sequence AMBI reads)".into(),
                    ));
                }
                let local = socket.local_addr()?;
                let source = config.source.unwrap_or(local.ip());
                if source.is_unspecified() {
                    return Err(PublishError::Ambi("the source address is needed (--source)".into()));
                }
                let header = PseudoHeader {
                    source,
                    destination: config.group.ip(),
                    source_port: local.port(),
                    destination_port: config.group.port(),
                };
                let builder = ManifestBuilder::new(a.profile, header, a.per_manifest, a.overlap);
                // Signed in-band: datagrams made (and listed) a signature's
                // worth of manifests at a time.
                let refill = if signer.is_some() { inband::MAX_BATCH * builder.step() } else { 0 };
                Some(AmbiSender {
                    builder,
                    signer,
                    feed: a.feed.clone(),
                    ahead: VecDeque::new(),
                    unpublished: 0,
                    lead: a.lead,
                    lead_datagrams: lead_datagrams(a.lead, config.rate, config.max_datagram_size),
                    refill,
                    follow: (a.follow_rtt && a.feed.is_some()).then_some(a.lead),
                    rate: config.rate,
                    max_datagram_size: config.max_datagram_size,
                    closing: false,
                    completed: false,
                })
            }
        };
        if let Some(segments) = config.gso_segments {
            socket.limit_gso_segments(segments);
        }
        if let Some(fec) = config.fec {
            // The code's tables, built while the first group is collected.
            h3m_proto::fec::prewarm_in_background();
            // A GSO send crosses a veth or tunnel as one packet: one loss
            // takes all of it, at most one datagram of each interleaved block
            // unless the caller chose its own size.
            let depth = usize::from(fec.depth);
            socket.limit_gso_segments(config.gso_segments.unwrap_or(depth));
        }
        let protection = match &config.protection {
            Some(k) => k.protection(),
            None => Box::new(NullProtection),
        };
        let qlog = config.qlog.as_ref().and_then(|q| {
            let protection: Box<dyn h3m_proto::protection::PacketProtection> = match &config.protection {
                Some(k) => k.protection(),
                None => Box::new(NullProtection),
            };
            crate::qlog::SenderQlog::open(q, config.session_id, protection)
                .inspect_err(|e| tracing::warn!(error = %e, "qlog off"))
                .ok()
        });
        let size = config.max_datagram_size;
        // Pace in batches of about 1 ms at the rate (timers are ~1 ms
        // granular), at least one datagram, at most 64; allow a burst of 2 ms
        // at the rate (a 1 ms burst holds only ~85% of the rate).
        let batch_bytes = match (config.batch_datagrams, config.rate) {
            (Some(n), _) => n.clamp(1, 1024) * size,
            (None, Some(r)) => ((r / 8 / 1000) as usize).clamp(size, 64 * size),
            (None, None) => 64 * size,
        };
        let burst = config.rate.map_or(0, |r| r / 8 / 500).max(4 * size as u64).max(batch_bytes as u64);
        Ok(Publisher {
            sender: Sender::new(cfg, protection),
            max_datagram_size: size,
            signer: config.signer.clone(),
            socket,
            dest: config.group,
            repair_dest,
            repair_batch: Vec::new(),
            pacer: Pacer::with_burst(config.rate, burst),
            batch: Vec::new(),
            gso_buffer: Vec::new(),
            batch_bytes,
            first: None,
            last: Instant::now(),
            warnings,
            catalog: config.catalog.clone(),
            spools: HashMap::new(),
            ambi,
            ambi_batch: Vec::new(),
            shared_stats: config.shared_stats.clone(),
            qlog,
        })
    }

    /// What opening the socket warned about (e.g. a clamped send buffer).
    pub fn take_warnings(&mut self) -> Vec<Warning> {
        std::mem::take(&mut self.warnings)
    }

    /// The session's counters.
    pub fn stats(&self) -> SenderStats {
        self.sender.stats()
    }

    /// Wall time from the first datagram sent to the last.
    pub fn elapsed(&self) -> Duration {
        self.first.map_or(Duration::ZERO, |f| self.last - f)
    }

    /// The push ID the next resource gets.
    pub fn next_push_id(&self) -> u64 {
        self.sender.next_push_id()
    }

    /// Publishes `body` as one resource at `path` (under the configured
    /// prefix), its SHA-256 announced and, with a signer, signed. Returns its
    /// push ID.
    pub async fn publish(&mut self, path: &str, body: &[u8]) -> Result<u64, PublishError> {
        let mut meta = ResourceMeta::file(path, body.len() as u64, SystemTime::now());
        meta.sha256 = Some(sha256(body));
        let (id, _, _) = self.start_signed(&meta, Some(Source::Memory(body.to_vec().into())))?;
        self.write(id, body).await?;
        self.finish(id).await?;
        Ok(id)
    }

    /// Starts a resource described by `meta` (path, length, digest, content
    /// type, copies, whether it is the session's last); its headers are
    /// signed when there is a signer. Returns its push ID.
    ///
    /// With unicast repair, the repair origin serves the body as it is
    /// written (from a spool on disk); see [`start_file`](Self::start_file)
    /// for a body that is a file.
    pub async fn start(&mut self, meta: &ResourceMeta) -> Result<u64, PublishError> {
        Ok(self.start_signed(meta, None)?.0)
    }

    /// [`start`](Self::start) for a body that is the file `file` (as it is
    /// now): with unicast repair the origin serves it from the file, and
    /// refuses to once the file changes.
    pub async fn start_file(&mut self, meta: &ResourceMeta, file: &Path) -> Result<u64, PublishError> {
        let source = self.file_source(file)?;
        Ok(self.start_signed(meta, source)?.0)
    }

    /// [`start_file`](Self::start_file) for a body read from `file` when it
    /// was `len` bytes long and last modified at `modified` (its `stat`
    /// then): with unicast repair the origin serves the file while it is
    /// still so, and no `stat` is made now.
    pub async fn start_file_as_read(
        &mut self,
        meta: &ResourceMeta,
        file: &Path,
        len: u64,
        modified: Option<SystemTime>,
    ) -> Result<u64, PublishError> {
        let source = self.catalog.as_ref().map(|_| Entry::file_as_read(file, len, modified, None, None).source);
        Ok(self.start_signed(meta, source)?.0)
    }

    /// With unicast repair, the catalog's source for `file` as it is now.
    fn file_source(&self, file: &Path) -> Result<Option<Source>, PublishError> {
        match self.catalog {
            Some(_) => Entry::file(file, None, None).map(|e| Some(e.source)).map_err(PublishError::Io),
            None => Ok(None),
        }
    }

    /// Starts a push; with unicast repair, adds it to the catalog, served from
    /// `source` (`None`: a spool the body is written to).
    fn start_signed(
        &mut self,
        meta: &ResourceMeta,
        source: Option<Source>,
    ) -> Result<(u64, Vec<HeaderField>, Vec<HeaderField>), PublishError> {
        let mut request = self.sender.request_headers(meta);
        let mut response = self.sender.response_headers(meta);
        if let Some(signer) = &self.signer {
            signer.sign_headers(&mut request, &mut response, meta.date)?;
        }
        let id = self.sender.start_with_headers(meta, &request, &response)?;
        tracing::debug!(push_id = id, path = %meta.path, length = meta.length, live = meta.live, "push started");
        if let Some(catalog) = &self.catalog {
            let source = match source {
                Some(s) => s,
                None => {
                    let spool = Arc::new(Spool::new()?);
                    self.spools.insert(id, Arc::clone(&spool));
                    Source::Spool(spool)
                }
            };
            let field = |name: &str| request.iter().chain(&response).find(|f| f.name == name.as_bytes());
            let path = field(":path").map(|f| String::from_utf8_lossy(&f.value).into_owned()).unwrap_or_default();
            let content_type = field("content-type").map(|f| String::from_utf8_lossy(&f.value).into_owned());
            catalog.note_push(id, path.clone(), self.sender.body_offset(id));
            catalog.insert(path, Entry { source, content_type, sha256: meta.sha256 });
        }
        Ok((id, request, response))
    }

    /// Appends to push `id`'s spool, if the catalog serves it from one.
    fn spool(&mut self, id: u64, data: &[u8]) -> Result<(), PublishError> {
        if let Some(spool) = self.spools.get(&id) {
            spool.append(data)?;
        }
        Ok(())
    }

    /// Push `id` ended: its spool (if any) is complete.
    fn spool_done(&mut self, id: u64) {
        if let Some(spool) = self.spools.remove(&id) {
            spool.complete();
        }
    }

    /// Appends body bytes to push `id`, sending every full datagram.
    pub async fn write(&mut self, id: u64, data: &[u8]) -> Result<(), PublishError> {
        self.sender.write(id, data)?;
        self.spool(id, data)?;
        self.drain().await
    }

    /// Sends what push `id` has buffered now, in a short datagram if need be
    /// (live data that must not wait).
    pub async fn flush(&mut self, id: u64) -> Result<(), PublishError> {
        self.sender.flush(id)?;
        self.drain().await
    }

    /// Ends push `id` (its FIN).
    pub async fn finish(&mut self, id: u64) -> Result<(), PublishError> {
        self.sender.finish(id, None)?;
        self.spool_done(id);
        self.drain().await
    }

    /// Like [`write`](Self::write), but sends only whole batches (the
    /// datagrams of consecutive small resources then share a `sendmmsg` and a
    /// GSO buffer): the rest waits in the queue for the next resource's
    /// datagrams, [`send_queued`](Self::send_queued), [`finish`](Self::finish)
    /// or [`close`](Self::close). Nothing goes out on its own: call one of
    /// these before waiting.
    pub async fn write_batched(&mut self, id: u64, data: &[u8]) -> Result<(), PublishError> {
        self.sender.write(id, data)?;
        self.spool(id, data)?;
        self.drain_full_batches().await
    }

    /// Like [`finish`](Self::finish), sending only whole batches (see
    /// [`write_batched`](Self::write_batched)).
    pub async fn finish_batched(&mut self, id: u64) -> Result<(), PublishError> {
        self.sender.finish(id, None)?;
        self.spool_done(id);
        self.drain_full_batches().await
    }

    /// Sends everything queued.
    pub async fn send_queued(&mut self) -> Result<(), PublishError> {
        self.drain().await
    }

    /// Resets push `id`: receivers see it incomplete.
    pub async fn abort(&mut self, id: u64) -> Result<(), PublishError> {
        self.sender.abort(id)?;
        self.spools.remove(&id);
        self.drain().await
    }

    /// Starts a live resource of unknown length at `path` (`range:
    /// bytes=0-*`, a `206` response); its digest (and signature) go in
    /// trailers at [`finish_stream`](Self::finish_stream).
    pub async fn start_stream(&mut self, path: &str) -> Result<LiveStream, PublishError> {
        let mut meta = ResourceMeta::file(path, 0, SystemTime::now());
        meta.length = None;
        meta.live = true;
        let push = self.start_trailed(&meta, None)?;
        self.drain().await?;
        Ok(push)
    }

    /// Starts the file `file` (as [`start_file`](Self::start_file)) without
    /// its digest: `meta.sha256` is ignored, the SHA-256 (and signature) go in
    /// trailers. Write the body with [`write_batched`](Self::write_batched)
    /// (or [`write`](Self::write)) and hash it yourself, then
    /// [`finish_with_sha256`](Self::finish_with_sha256): the file is read once
    /// (hashed on another thread, by `h3m-send`), and its first datagram
    /// leaves without waiting for a whole pass over it.
    pub async fn start_file_trailed(&mut self, meta: &ResourceMeta, file: &Path) -> Result<TrailedPush, PublishError> {
        let mut meta = meta.clone();
        meta.sha256 = None;
        let source = self.file_source(file)?;
        self.start_trailed(&meta, source)
    }

    fn start_trailed(&mut self, meta: &ResourceMeta, source: Option<Source>) -> Result<TrailedPush, PublishError> {
        let (push_id, request, response) = self.start_signed(meta, source)?;
        Ok(TrailedPush {
            push_id,
            request,
            response,
            hasher: ring::digest::Context::new(&ring::digest::SHA256),
            bytes: 0,
        })
    }

    /// Sends `data` on a live resource at once.
    pub async fn write_stream(&mut self, stream: &mut TrailedPush, data: &[u8]) -> Result<(), PublishError> {
        stream.hasher.update(data);
        stream.bytes += data.len() as u64;
        self.sender.write(stream.push_id, data)?;
        self.spool(stream.push_id, data)?;
        self.flush(stream.push_id).await
    }

    /// Ends a [`TrailedPush`] (a live resource or a file): `digest` and
    /// `repr-digest` trailers (signed when there is a signer), then its FIN.
    /// Returns the body's SHA-256.
    pub async fn finish_stream(&mut self, stream: TrailedPush) -> Result<[u8; 32], PublishError> {
        let sha256 = stream.sha256();
        self.finish_with_sha256(stream, sha256).await
    }

    /// Ends a [`TrailedPush`] whose body the caller hashed: `sha256` goes in
    /// its trailers (signed when there is a signer), then its FIN. Returns it.
    pub async fn finish_with_sha256(
        &mut self,
        stream: TrailedPush,
        sha256: [u8; 32],
    ) -> Result<[u8; 32], PublishError> {
        let mut trailers: Vec<HeaderField> = digest::sha256_fields(&sha256).into();
        if let Some(signer) = &self.signer {
            signer.sign_trailers(&stream.request, &stream.response, &mut trailers, SystemTime::now())?;
        }
        self.sender.finish(stream.push_id, Some(&trailers))?;
        self.spool_done(stream.push_id);
        if let Some(catalog) = &self.catalog
            && let Some(path) = stream.request.iter().find(|f| f.name == b":path")
        {
            catalog.set_sha256(&String::from_utf8_lossy(&path.value), sha256);
        }
        self.drain().await?;
        Ok(sha256)
    }

    /// Waits until a keep-alive is due (cancel-safe: nothing is sent). A
    /// program with nothing to publish for a while selects on it alongside
    /// its work and then calls [`send_due`](Self::send_due), so receivers do
    /// not time the session out.
    pub async fn keepalive_due(&self) {
        match self.sender.poll_timeout() {
            Some(t) => tokio::time::sleep_until(t.into()).await,
            None => std::future::pending().await,
        }
    }

    /// Sends whatever is due now (a keep-alive, after
    /// [`keepalive_due`](Self::keepalive_due)).
    pub async fn send_due(&mut self) -> Result<(), PublishError> {
        self.drain().await
    }

    /// With AMBI over HTTPS, waits at most `within` for a receiver to
    /// subscribe to the manifests, so that receivers started first
    /// authenticate every datagram on arrival. Meanwhile it multicasts a
    /// PING every 25 ms: receivers that see the session's datagrams know
    /// its origin is up and connect at once instead of at their next knock.
    /// Returns the subscribers then and how long it waited (`None` without
    /// a feed).
    pub async fn wait_for_subscribers(&mut self, within: Duration) -> Result<Option<(usize, Duration)>, PublishError> {
        let Some(feed) = self.ambi.as_ref().and_then(|a| a.feed.clone()) else { return Ok(None) };
        let started = Instant::now();
        let mut next_ping = started;
        loop {
            let subscribers = feed.counters().subscribers;
            if subscribers > 0 || started.elapsed() >= within {
                return Ok(Some((subscribers, started.elapsed())));
            }
            if Instant::now() >= next_ping {
                self.sender.ping()?;
                self.drain().await?;
                next_ping += WAITING_PING;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Ends the session (nghq's end signal) and returns its counters.
    pub async fn close(mut self) -> Result<Closed, PublishError> {
        self.sender.close()?;
        if let Some(a) = &mut self.ambi {
            // The last datagrams get their full overlap of manifests too.
            a.closing = true;
        }
        self.drain().await?;
        // The last FEC repair, spread over the time its group took.
        while self.sender.repairs_queued() > 0 {
            let Some(at) = self.sender.poll_timeout() else { break };
            tokio::time::sleep_until(at.into()).await;
            self.drain().await?;
        }
        if let Some(q) = &mut self.qlog
            && let Err(e) = q.flush()
        {
            tracing::warn!(error = %e, "qlog");
        }
        let stats = self.sender.stats();
        tracing::info!(
            resources = stats.resources,
            datagrams = stats.datagrams,
            bytes = stats.bytes,
            head_repeats = stats.head_repeats,
            "session closed"
        );
        Ok(Closed { stats: self.sender.stats(), elapsed: self.elapsed() })
    }

    /// Sends everything the sender has queued, the packet being filled
    /// included (and any keep-alive due).
    async fn drain(&mut self) -> Result<(), PublishError> {
        self.sender.seal()?;
        self.drain_while(|_| true, true).await
    }

    /// Sends batches while a whole one is queued.
    async fn drain_full_batches(&mut self) -> Result<(), PublishError> {
        // Signing in-band, a signature's worth of manifests at a time.
        let refill = self.ambi.as_ref().map_or(0, |a| a.refill);
        let datagrams_per_batch = self.batch_bytes.div_ceil(self.max_datagram_size).max(refill).max(1);
        self.drain_while(|queued| queued >= datagrams_per_batch, false).await
    }

    /// Sends batches while `more(datagrams queued)` holds and anything is
    /// queued, each followed by the FEC repair due (paced with them). With
    /// AMBI and a lead, `publish_partial`: the manifests of every datagram
    /// made are published now, not only once they fill one.
    async fn drain_while(&mut self, more: impl Fn(usize) -> bool, publish_partial: bool) -> Result<(), PublishError> {
        loop {
            let now = Instant::now();
            // The last batch's buffers hold this one's datagrams.
            for d in self.batch.drain(..) {
                self.sender.recycle(d);
            }
            let mut bytes = 0;
            self.ambi_batch.clear();
            let ahead = self.ambi.as_ref().map_or(0, |a| a.ahead.len());
            if more(self.sender.queued() + ahead) {
                match &mut self.ambi {
                    None => {
                        while bytes < self.batch_bytes {
                            let Some(d) = self.sender.poll_transmit(now) else { break };
                            bytes += d.len();
                            self.batch.push(d);
                        }
                    }
                    Some(a) => {
                        a.follow_subscribers();
                        // Datagrams are made (and their digests listed) ahead
                        // of the batch that leaves now, and leave `lead`
                        // after their manifests.
                        let batch = self.batch_bytes.div_ceil(self.max_datagram_size);
                        // With a lead, topped up every batch; without, made
                        // `refill` at a time once fewer than a batch are left
                        // (a batch of manifests then shares one signature,
                        // and a receiver verifies it once).
                        let (topping_up, want) = if a.lead_datagrams > 0 || a.refill == 0 {
                            (true, batch + a.lead_datagrams)
                        } else {
                            (a.ahead.len() < batch, batch.max(a.refill))
                        };
                        while topping_up && a.ahead.len() < want {
                            let Some(d) = self.sender.poll_transmit(now) else { break };
                            a.builder.add(self.sender.last_packet_number() as u32, &d);
                            a.ahead.push_back((None, d));
                            a.unpublished += 1;
                        }
                        // Their manifests are published now (and they may
                        // leave `lead` later): all of them when the batch is
                        // to leave at once (no lead) or everything queued is
                        // to go, else those whole manifests list, a few at
                        // a time: a writer that adds a small file at a time
                        // then publishes a chunk per MANIFESTS_PER_CHUNK
                        // manifests, not one per file.
                        // Closing, the overlap is completed even when nothing
                        // new was made (a session whose last resource carried
                        // its end signal has sent everything already).
                        let completing = a.closing && !a.completed;
                        if (a.unpublished > 0 || completing) && (a.lead.is_zero() || publish_partial) {
                            a.publish(now, true, &mut self.ambi_batch)?;
                        } else if a.builder.ready() >= MANIFESTS_PER_CHUNK {
                            a.publish(now, false, &mut self.ambi_batch)?;
                        }
                        while bytes < self.batch_bytes {
                            match a.ahead.front() {
                                Some((Some(due), _)) if *due <= now => {}
                                _ => break,
                            }
                            let Some((_, d)) = a.ahead.pop_front() else { break };
                            bytes += d.len();
                            self.batch.push(d);
                        }
                    }
                }
            }
            // AMBI: manifests covering this batch (and those ahead), published
            // above, go out before it.
            bytes += self.ambi_batch.iter().map(Vec::len).sum::<usize>();
            self.repair_batch.clear();
            let mut repair_bytes = 0;
            while repair_bytes < self.batch_bytes {
                let Some(d) = self.sender.poll_repair(now) else { break };
                repair_bytes += d.len();
                self.repair_batch.push(d);
            }
            if self.batch.is_empty() && self.repair_batch.is_empty() && self.ambi_batch.is_empty() {
                // Datagrams waiting for their manifests' lead: wait, then go
                // on, when more is queued behind them (or all must go);
                // else the writer adds more first (a lead per chunk written
                // would cap the rate).
                let due = self.ambi.as_ref().and_then(|a| a.ahead.front().and_then(|(due, _)| *due));
                match due {
                    Some(due) if more(self.sender.queued()) => {
                        tokio::time::sleep_until(due.into()).await;
                        continue;
                    }
                    _ => return Ok(()),
                }
            }
            if let Some(at) = self.pacer.reserve(now, bytes + repair_bytes) {
                tokio::time::sleep_until(at.into()).await;
            }
            // In-band manifests one per send, never as one GSO send: through a
            // veth or a tunnel a GSO send crosses as one packet, and one loss
            // would take every manifest in it, the overlapping ones of the
            // same datagrams too (all of them at the session's end).
            for m in &self.ambi_batch {
                self.socket.send_one(self.repair_dest, m).await?;
            }
            if !self.batch.is_empty() {
                self.socket.send_batch_with(self.dest, &self.batch, &mut self.gso_buffer).await?;
                self.first.get_or_insert(now);
                if let Some(q) = &mut self.qlog
                    && let Err(e) = q.sent(now, &self.batch)
                {
                    tracing::warn!(error = %e, "qlog off");
                    self.qlog = None;
                }
            }
            if !self.repair_batch.is_empty() {
                self.socket.send_batch(self.repair_dest, &self.repair_batch).await?;
            }
            self.last = Instant::now();
            if let Some(shared) = &self.shared_stats {
                shared.set(self.sender.stats());
            }
            // With a lead, one batch per call while the writer has room to
            // add more: it tops the datagrams made ahead up before the next
            // batch, so those at the front have always waited their lead
            // (sending every due one first would empty the lead and stall
            // until the next came due).
            if self.ambi.as_ref().is_some_and(|a| !a.lead.is_zero()) && !more(self.sender.queued()) {
                return Ok(());
            }
        }
    }
}

/// AMBI, as a publisher runs it: the manifests of the datagrams queued, the
/// in-band key and algorithm, the HTTPS feed.
#[derive(Debug)]
struct AmbiSender {
    builder: ManifestBuilder,
    signer: Option<(Arc<SigningKey>, SignatureAlgorithm)>,
    feed: Option<Arc<Feed>>,
    /// Datagrams made and listed in manifests already, not sent yet, each
    /// with the time it may leave (`lead` after its manifest was published;
    /// `None` until then).
    ahead: VecDeque<(Option<Instant>, Vec<u8>)>,
    /// How many datagrams at the back of `ahead` wait for their manifests'
    /// publication.
    unpublished: usize,
    /// How long after its manifest a datagram leaves ([`AmbiConfig::lead`]).
    lead: Duration,
    /// How many datagrams [`Self::ahead`] may hold beyond the batch being
    /// sent ([`lead_datagrams`]).
    lead_datagrams: usize,
    /// Without a lead, signing in-band: datagrams made at a time, as many
    /// as [`inband::MAX_BATCH`] manifests list anew.
    refill: usize,
    /// Following the feed's subscribers ([`AmbiConfig::follow_rtt`]): the
    /// lead while their round trip is not known.
    follow: Option<Duration>,
    /// The session's rate and datagram size, for [`lead_datagrams`].
    rate: Option<u64>,
    max_datagram_size: usize,
    /// The session is ending: what is published completes every digest's
    /// overlap ([`ManifestBuilder::complete`]).
    closing: bool,
    /// The overlap was completed since `closing` was set.
    completed: bool,
}

impl AmbiSender {
    /// Publishes the manifests ready (to the feed, and signed in-band into
    /// `inband`, newest first), after a manifest of the rest with `all`, and
    /// gives the datagrams they list the time they may leave: `lead` from now.
    fn publish(&mut self, now: Instant, all: bool, inband: &mut Vec<Vec<u8>>) -> Result<(), PublishError> {
        if all && self.closing {
            self.builder.complete();
            self.completed = true;
        } else if all {
            self.builder.flush();
        }
        let listed = self.unpublished - self.builder.unlisted().min(self.unpublished);
        let first = self.ahead.len() - self.unpublished;
        let due = now + self.lead;
        for (at, _) in self.ahead.range_mut(first..first + listed) {
            *at = Some(due);
        }
        self.unpublished -= listed;
        let mut body = Vec::new();
        let mut manifests = Vec::new();
        while let Some(m) = self.builder.poll_manifest() {
            if self.feed.is_some() {
                m.write(&mut body).map_err(|e| PublishError::Ambi(e.to_string()))?;
            }
            if self.signer.is_some() {
                manifests.push(m);
            }
        }
        // In-band: the manifests signed together, one signature per
        // [`inband::MAX_BATCH`].
        if let Some((key, alg)) = &self.signer {
            let first = inband.len();
            for chunk in manifests.chunks(inband::MAX_BATCH) {
                let sealed = inband::seal_batch(chunk, key, *alg).map_err(|e| PublishError::Ambi(e.to_string()))?;
                inband.extend(sealed);
            }
            // Newest first: the newest covers the whole batch, so a receiver
            // verifies it alone and drops the older ones, which bring
            // nothing new (they are there for when it is lost).
            inband[first..].reverse();
        }
        // The manifests in one chunk, published before their datagrams leave.
        if let Some(feed) = &self.feed {
            feed.publish(body.into());
        }
        Ok(())
    }

    /// Following the feed's subscribers, the lead for those there now:
    /// none without any, [`rtt_lead`] of the longest round trip when every
    /// one is known, else the configured lead. Datagrams made already keep
    /// the time they were given.
    fn follow_subscribers(&mut self) {
        let (Some(feed), Some(configured)) = (&self.feed, self.follow) else { return };
        let lead = match feed.subscribers_rtt() {
            SubscribersRtt::None => Duration::ZERO,
            SubscribersRtt::Longest(rtt) => rtt_lead(rtt),
            SubscribersRtt::Unknown => configured,
        };
        if lead != self.lead {
            tracing::debug!(lead_us = lead.as_micros() as u64, "AMBI lead follows the subscribers");
            self.lead = lead;
            self.lead_datagrams = lead_datagrams(lead, self.rate, self.max_datagram_size);
        }
    }
}

/// How many datagrams are made ahead so that `lead` never slows a session
/// at `rate`: twice the lead's worth (at least 20 ms of it), 64 to 16 384
/// (unpaced: the most; 16 384 datagrams over a 10 ms lead keep 15 Gbit/s);
/// none without a lead.
fn lead_datagrams(lead: Duration, rate: Option<u64>, max_datagram_size: usize) -> usize {
    if lead.is_zero() {
        return 0;
    }
    let per_second = rate.map_or(u64::MAX, |bits| bits / 8 / max_datagram_size.max(1) as u64);
    let window = (2 * lead).max(Duration::from_millis(20));
    let n = u128::from(per_second).saturating_mul(window.as_micros()) / 1_000_000;
    usize::try_from(n).unwrap_or(usize::MAX).clamp(64, 16_384)
}

/// The SHA-256 of `data`.
pub use h3m_proto::http::digest::sha256;

#[cfg(test)]
mod tests {
    use super::*;
    use h3m_proto::auth::KeyType;

    #[test]
    fn the_advertisement_announces_ambi() {
        let pem =
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop/vectors/keys/ed25519.key.pem")).unwrap();
        let mut config = PublisherConfig::new("232.0.0.1:2000".parse().unwrap());
        let profile = DigestProfile::parse("blake2b/96", 1).unwrap();
        let mut ambi = AmbiConfig::inband(profile, Arc::new(SigningKey::from_pem(&pem).unwrap()));
        config.ambi = Some(ambi.clone());
        let text = config.advertisement().to_string();
        assert!(text.contains(r#"; ambi=inband; ambi-digest="blake2b/96""#), "{text}");
        let adv = h3m_proto::altsvc::parse_one(&text).unwrap();
        assert_eq!(adv.ambi_digest.as_deref(), Some("blake2b/96"));
        let catalog = Catalog::new();
        ambi.feed = Some(AmbiConfig::serve(&catalog, "{}".into()));
        assert_eq!(ambi.channels(), "both");
        config.ambi = Some(AmbiConfig { key: None, ..ambi });
        let adv = h3m_proto::altsvc::parse_one(&config.advertisement().to_string()).unwrap();
        assert_eq!(adv.ambi.as_deref(), Some("https"));
        let feed = catalog.feed(h3m_proto::ambi::MANIFEST_PATH).unwrap();
        assert_eq!(feed.content_type(), "application/ambi");
        assert!(catalog.get(h3m_proto::ambi::METADATA_PATH).is_some());
    }

    /// A publisher with AMBI over HTTPS on loopback multicast (outgoing
    /// interface 127.0.0.1, TTL 1) and its feed; with `key`, in-band too.
    fn ambi_publisher(port: u16, key: Option<&str>) -> (Publisher, Arc<Feed>) {
        let mut config = PublisherConfig::new(SocketAddr::new("239.255.77.41".parse().unwrap(), port));
        config.interface = Some(Interface::Addr("127.0.0.1".parse().unwrap()));
        config.source = Some("127.0.0.1".parse().unwrap());
        config.ttl = 1;
        config.rate = Some(2_000_000_000);
        let feed = AmbiConfig::serve(&Catalog::new(), "{}".into());
        let profile = DigestProfile::parse("sha-256/128", 1).unwrap();
        config.ambi = Some(match key {
            None => AmbiConfig::https(profile, Arc::clone(&feed)),
            Some(name) => {
                let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop/vectors/keys/");
                let pem = std::fs::read(format!("{dir}{name}")).unwrap();
                let mut both = AmbiConfig::inband(profile, Arc::new(SigningKey::from_pem(&pem).unwrap()));
                both.feed = Some(Arc::clone(&feed));
                both
            }
        });
        (Publisher::open(&config).unwrap(), feed)
    }

    fn https_publisher(port: u16) -> (Publisher, Arc<Feed>) {
        ambi_publisher(port, None)
    }

    fn manifests<C: AsRef<[u8]>>(chunks: &[C]) -> Vec<h3m_proto::ambi::Manifest> {
        let mut stream = h3m_proto::ambi::ManifestStream::new(16);
        let mut out = Vec::new();
        for c in chunks {
            stream.push(c.as_ref());
            while let Some(m) = stream.next_manifest().unwrap() {
                out.push(m);
            }
        }
        out
    }

    #[tokio::test]
    async fn the_lead_follows_the_subscribers_round_trip() {
        let (mut publisher, feed) = https_publisher(47_611);
        let a = publisher.ambi.as_mut().unwrap();
        a.follow_subscribers();
        assert_eq!((a.lead, a.lead_datagrams), (Duration::ZERO, 0), "nobody subscribes: no lead");
        let sub = feed.subscribe().unwrap();
        a.follow_subscribers();
        assert_eq!(a.lead, HTTPS_LEAD, "a round trip not known yet");
        sub.set_rtt(Duration::from_micros(300));
        a.follow_subscribers();
        assert_eq!(a.lead, Duration::from_micros(1_300));
        assert_eq!(a.lead_datagrams, lead_datagrams(Duration::from_micros(1_300), Some(2_000_000_000), 1200));
        sub.set_rtt(Duration::from_secs(3));
        a.follow_subscribers();
        assert_eq!(a.lead, MAX_RTT_LEAD);
        drop(sub);
        a.follow_subscribers();
        assert_eq!(a.lead, Duration::ZERO);
    }

    /// With both channels (one set of manifests, overlap 4), every datagram
    /// of a session, its last ones included, is in 4 manifests: losing one
    /// of them (in-band, a lost datagram) loses no authentication at the end.
    #[tokio::test]
    async fn every_datagram_to_the_session_s_end_is_in_overlap_manifests() {
        let (mut publisher, feed) = ambi_publisher(47_617, Some("ed25519.key.pem"));
        let mut sub = feed.subscribe().unwrap();
        for (i, len) in [5_000usize, 40_000, 300, 9_000].into_iter().enumerate() {
            // The last carries the session's end signal, as `h3m-send`
            // sends it: everything has left when the session closes.
            let mut meta = ResourceMeta::file(format!("f{i}.bin"), len as u64, SystemTime::now());
            meta.last = i == 3;
            let id = publisher.start(&meta).await.unwrap();
            publisher.write(id, &vec![i as u8; len]).await.unwrap();
            publisher.finish(id).await.unwrap();
        }
        assert_eq!(publisher.ambi.as_ref().unwrap().unpublished, 0, "all published before the close");
        let datagrams = publisher.close().await.unwrap().stats.datagrams as u32;
        let mut chunks = Vec::new();
        while let Ok(Some(c)) = tokio::time::timeout(Duration::from_millis(50), sub.next()).await {
            chunks.push(c);
        }
        let mut covered = vec![0usize; datagrams as usize];
        for m in manifests(&chunks) {
            for seq in m.first_packet..m.first_packet + m.count() as u32 {
                covered[seq as usize] += 1;
            }
        }
        assert!(covered.iter().all(|&n| n == 4), "{datagrams} datagrams: {covered:?}");
    }

    /// `--ambi-wait`: PINGs while nobody subscribes (receivers learn the
    /// sender is up), until the time is up; a subscriber ends the wait.
    #[tokio::test]
    async fn waiting_for_subscribers_pings_until_one_comes() {
        let (mut publisher, feed) = https_publisher(47_615);
        let (subscribers, waited) = publisher.wait_for_subscribers(Duration::from_millis(60)).await.unwrap().unwrap();
        assert_eq!(subscribers, 0);
        assert!(waited >= Duration::from_millis(60), "{waited:?}");
        let stats = publisher.stats();
        assert!(stats.pings >= 1 && stats.pings == stats.datagrams, "{stats:?}");
        let _sub = feed.subscribe().unwrap();
        let (subscribers, waited) = publisher.wait_for_subscribers(Duration::from_secs(30)).await.unwrap().unwrap();
        assert_eq!(subscribers, 1);
        assert!(waited < Duration::from_secs(30), "{waited:?}");
        assert_eq!(publisher.stats().pings, stats.pings, "no PING once someone subscribes");
    }

    /// Small files written a batch at a time (as `h3m-send` does) publish
    /// a chunk per [`MANIFESTS_PER_CHUNK`] full manifests, not one per
    /// file, and every datagram is listed once.
    #[tokio::test]
    async fn a_writer_of_small_files_publishes_a_chunk_per_few_manifests() {
        let (mut publisher, feed) = https_publisher(47_613);
        let mut sub = feed.subscribe().unwrap();
        sub.set_rtt(Duration::from_micros(200));
        let body = vec![7u8; 3_000];
        let files = 600;
        for i in 0..files {
            let meta = ResourceMeta::file(format!("f{i}.bin"), body.len() as u64, SystemTime::now());
            let id = publisher.start(&meta).await.unwrap();
            publisher.write_batched(id, &body).await.unwrap();
            publisher.finish_batched(id).await.unwrap();
        }
        let closed = publisher.close().await.unwrap();
        let datagrams = closed.stats.datagrams;
        let mut chunks = Vec::new();
        while let Ok(Some(c)) = tokio::time::timeout(Duration::from_millis(50), sub.next()).await {
            chunks.push(manifests(&[c]));
        }
        // Every datagram is listed, each once (overlap 1), in full
        // manifests of 64 but the last.
        let listed: Vec<_> = chunks.iter().flatten().collect();
        let mut covered: Vec<u32> =
            listed.iter().flat_map(|m| m.first_packet..m.first_packet + m.count() as u32).collect();
        covered.sort_unstable();
        assert_eq!(covered, (0..datagrams as u32).collect::<Vec<_>>());
        let counts: Vec<usize> = listed.iter().map(|m| m.count()).collect();
        assert!(counts.iter().rev().skip(1).all(|&n| n == 64), "{counts:?}");
        // Each chunk but the last (the session's end) holds a few of them.
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert!(sizes.iter().rev().skip(1).all(|&n| n >= MANIFESTS_PER_CHUNK), "{sizes:?}");
        assert!(sizes.len() > 1 && sizes.len() < files / 20, "{} files, {} chunks", files, sizes.len());
    }

    #[test]
    fn datagrams_made_ahead_cover_twice_the_lead() {
        let ms = Duration::from_millis;
        assert_eq!(lead_datagrams(Duration::ZERO, Some(1_000_000_000), 1200), 0);
        // 20 Mbit/s of 1200-byte datagrams: about 2083/s, 41 in 20 ms: the floor.
        assert_eq!(lead_datagrams(ms(10), Some(20_000_000), 1200), 64);
        // 1 Gbit/s: 104 166/s, 2083 in 20 ms, 4166 in 40.
        assert_eq!(lead_datagrams(ms(10), Some(1_000_000_000), 1200), 2083);
        assert_eq!(lead_datagrams(ms(20), Some(1_000_000_000), 1200), 4166);
        // Faster, or unpaced: the cap.
        assert_eq!(lead_datagrams(ms(10), Some(10_000_000_000), 1200), 16_384);
        assert_eq!(lead_datagrams(ms(10), None, 1200), 16_384);
    }

    #[test]
    fn hmac_signers() {
        let hex32 = "5a".repeat(32);
        let s = hmac_signer(&format!("shared-1={hex32}")).unwrap();
        assert_eq!(
            (s.key_id(), s.key().key_type(), s.forms()),
            ("shared-1", KeyType::HmacSha256, SignatureForms::Rfc9421)
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret.hex");
        std::fs::write(&file, format!("{hex32}\n")).unwrap();
        let from_file = hmac_signer(&format!("k={}", format_args!("@{}", file.display()))).unwrap();
        assert_eq!(from_file.key().verifying_key(), s.key().verifying_key());
        let short = hmac_signer("k=00").unwrap_err().to_string();
        assert_eq!(short, "k: HMAC-SHA256 secret of 1 bytes (at least 32 are needed)");
        assert!(matches!(
            hmac_signer(&format!("k=@{}", dir.path().join("none").display())),
            Err(HmacSignerError::Secret(HmacArgError::Io { .. }))
        ));
        assert!(matches!(hmac_signer(&format!("a\"b={hex32}")), Err(HmacSignerError::Signer(SignPushError::BadKeyId))));
        assert!(!format!("{:?}", hmac_signer("k=zz").unwrap_err()).contains("zz"));
    }
}
