//! `h3m-send`: publish files, directory trees or standard input to a multicast
//! group as HTTP/3 pushes (draft-pardue-quic-http-mcast-07, h3m-07).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use h3m_net::Interface;
use h3m_proto::SessionId;
use h3m_proto::aead::PacketKeys;
use h3m_proto::ambi::{DigestProfile, default_manifest_id};
use h3m_proto::auth::{PushSigner, SignatureForms, SigningKey};
use h3m_proto::fec::FecConfig;
use h3m_proto::protection::CipherSuite;
use h3m_sender::metrics;
use h3m_sender::publisher::SharedStats;
use h3m_sender::publisher::{AmbiConfig, PublisherConfig};
use h3m_sender::run::{SendOptions, advertisement, run};
use h3m_sender::tree::Ignore;
use h3m_unicast::catalog::Catalog;
use h3m_unicast::client::OriginUrl;
use h3m_unicast::metrics::MetricsServer;
use h3m_unicast::origin::{Origin, OriginConfig};
use h3m_unicast::tls::Identity;

/// Publish files, directory trees or a live stream over multicast QUIC (h3m-07).
///
/// Exit status: 0 every file sent intact; 1 a file skipped (gone or
/// unreadable) or reset (it shrank while being sent), or a runtime error
/// (socket, file); 2 bad usage.
#[derive(Parser, Debug)]
#[command(name = "h3m-send", version)]
struct Args {
    /// Files and directories to publish (directories recursively, sorted).
    paths: Vec<PathBuf>,
    /// Multicast group [default: 232.0.0.1, or ff3e::8000:1 with -6].
    #[arg(long)]
    group: Option<IpAddr>,
    /// Use IPv6 defaults.
    #[arg(short = '6')]
    ipv6: bool,
    /// UDP port.
    #[arg(long, default_value_t = 2000)]
    port: u16,
    /// Source address to send from (receivers join (S,G) with it).
    #[arg(long)]
    source: Option<IpAddr>,
    /// Outgoing interface: a name (lo, eth0), an address (127.0.0.1) or an index.
    #[arg(long)]
    interface: Option<Interface>,
    /// TTL / hop limit.
    #[arg(long, default_value_t = 1)]
    ttl: u32,
    /// Session ID in hex, or `none` [default: nghq's, "Session ID"].
    #[arg(long, default_value = "53657373696f6e204944", value_parser = parse_session_id)]
    session_id: SessionId,
    /// :authority of every request [default: the --repair-listen address,
    /// else localhost].
    #[arg(long)]
    authority: Option<String>,
    /// Prefix of every :path.
    #[arg(long, default_value = "/")]
    path_prefix: String,
    /// Peak rate in bits/s of UDP payload (10M, 1.5G, 800k); `max` is 6G, the
    /// fastest rate a receiver sharing a 2-vCPU VM with the sender keeps
    /// without loss (with a receive buffer of 16 MiB or more); `unpaced`
    /// does not pace at all.
    #[arg(long, default_value = "10M", value_parser = parse_rate)]
    rate: Rate,
    /// Send the whole set N times (new push IDs each time), for late joiners and loss.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Cycle the set forever (with --watch, new files join the cycle) until
    /// Ctrl-C or --duration: receivers that join late, or lose packets, complete
    /// every file from a later cycle.
    #[arg(long, conflicts_with_all = ["repeat", "stdin"])]
    carousel: bool,
    /// Hash each file before sending it and announce its SHA-256 in the
    /// response headers. By default a file over 1 MiB is hashed as it is
    /// sent and its digest goes in trailers (one pass over the file; its
    /// first datagram leaves at once); receivers verify either. With --repeat
    /// or --carousel digests are always in the headers; with --repair-listen
    /// the origin announces each file's digest with what it serves.
    #[arg(long)]
    digest_first: bool,
    /// Unicast repair: serve every published resource (live ones as they
    /// grow) with byte ranges over HTTP/3 (UDP) and HTTP/1.1 (TCP, TLS) at
    /// ADDR:PORT, for receivers started with --repair. It keeps serving after
    /// the multicast session ends, until Ctrl-C or --repair-linger. The
    /// origin and, when self-signed, its certificate's SHA-256 are printed and
    /// advertised (Alt-Svc `repair`, `repair-pin`).
    #[arg(long, value_name = "ADDR:PORT")]
    repair_listen: Option<SocketAddr>,
    /// The repair origin's certificate chain (PEM) [default: a self-signed
    /// certificate made at start-up].
    #[arg(long, value_name = "CERT.pem", requires_all = ["repair_key", "repair_listen"])]
    repair_cert: Option<PathBuf>,
    /// The private key of --repair-cert (PEM).
    #[arg(long, value_name = "KEY.pem", requires = "repair_cert")]
    repair_key: Option<PathBuf>,
    /// Seconds the repair origin keeps serving after the multicast session
    /// ends [default: until Ctrl-C].
    #[arg(long, value_name = "SECS", value_parser = parse_secs, requires = "repair_listen")]
    repair_linger: Option<Duration>,
    /// Serve the session's counters (datagrams, bytes, resources, repeats,
    /// FEC repair, the configured rate) in Prometheus text format at
    /// `http://ADDR:PORT/metrics` while it runs.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<SocketAddr>,
    /// Write a qlog trace (JSON-SEQ: every datagram sent with its packet
    /// number and frames) to DIR/SESSIONID-sender.sqlog; open it in qvis
    /// at qvis.quictools.info.
    #[arg(long, value_name = "DIR")]
    qlog: Option<PathBuf>,
    /// With --qlog: stop logging (with a final note) once the file reaches
    /// this many MiB.
    #[arg(long, value_name = "MIB", default_value = "1024", requires = "qlog",
          value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    qlog_max_mib: u64,
    /// Seconds between repetitions of the PUSH_PROMISE and response headers of
    /// the pushes in flight, so an h3m receiver joining late learns them (0.5
    /// is a good figure); 0 never, the default: nghq's receiver mishandles the
    /// repeats (each repeated promise is delivered as a new one).
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = parse_secs)]
    repeat_heads: Duration,
    /// Forward error correction: PERCENT repair datagrams per block (e.g. 5;
    /// 15 for 5% loss), to the next UDP port, where receivers that know no
    /// FEC (nghq's) never look. block=N source datagrams per block (256),
    /// depth=D blocks interleaved (16: a run of D losses costs each block
    /// one), deadline=MS before a group closes (500: bounds the latency of live
    /// streams' repair; a group must span an outage about 8 times to outlast it at 15%).
    #[arg(long, value_name = "PERCENT[,block=N][,depth=D][,deadline=MS]")]
    fec: Option<FecConfig>,
    /// The repair port (default: --port + 1).
    #[arg(long, requires = "fec")]
    fec_port: Option<u16>,
    /// Keep running and publish each new or changed file once it is complete.
    #[arg(long)]
    watch: bool,
    /// Seconds between looks at the tree with --watch (where inotify is
    /// unavailable, and for file PATHs).
    #[arg(long, default_value = "0.5", value_parser = parse_secs)]
    watch_interval: Duration,
    /// With --watch, never publish files or directories inside a PATH whose
    /// name matches this glob (`*`, `?`); repeatable; giving any replaces the
    /// defaults (`--ignore ''` ignores nothing).
    #[arg(long, value_name = "GLOB", default_values = h3m_sender::tree::DEFAULT_IGNORE, requires = "watch")]
    ignore: Vec<String>,
    /// Publish standard input as one live resource at --path.
    #[arg(long, requires = "path")]
    stdin: bool,
    /// The path of the --stdin resource.
    #[arg(long)]
    path: Option<String>,
    /// Largest UDP payload in bytes.
    #[arg(long, default_value_t = 1200, value_parser = clap::value_parser!(u16).range(64..=65_507))]
    max_datagram_size: u16,
    /// Most datagrams per GSO send (1: one sendmsg per datagram, for
    /// comparisons) [default: the kernel's limit, 64; with --fec, its depth,
    /// so that a lost send costs each interleaved block one datagram].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    gso_segments: Option<u16>,
    /// Datagrams per paced batch: the burst the socket gets at once
    /// [default: about 1 ms at --rate, 1 to 64].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    batch: Option<u16>,
    /// One resource per datagram, each promise alone (nghq's own layout).
    /// By default every datagram is filled: a file's last bytes, the next
    /// one's promise and its first bytes share one, so a tree of small files
    /// takes fewer datagrams, all full, sent in long GSO runs.
    #[arg(long)]
    no_pack: bool,
    /// Packet-number length in bytes (1-4).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=4))]
    pn_len: u8,
    /// Seconds between keep-alive PINGs when idle.
    #[arg(long, default_value = "5", value_parser = parse_secs)]
    keepalive: Duration,
    /// Stop --watch, --stdin or --carousel after this many seconds.
    #[arg(long, value_parser = parse_secs)]
    duration: Option<Duration>,
    /// Print the Alt-Svc line a receiver needs, then send. With a cipher suite
    /// it carries the session's key and IV: hand it to receivers privately.
    #[arg(long)]
    print_alt_svc: bool,
    /// Protect packets with this TLS cipher suite: 1301 (AES-128-GCM), 1302
    /// (AES-256-GCM) or 1303 (ChaCha20-Poly1305); 0000 sends cleartext, as nghq.
    #[arg(long, default_value = "0000")]
    cipher_suite: CipherSuite,
    /// The session key in hex [default: fresh random bytes for each session].
    #[arg(long, requires = "iv", value_parser = parse_hex)]
    key: Option<Hex>,
    /// The session IV in hex (12 bytes) [default: fresh random bytes].
    #[arg(long, requires = "key", value_parser = parse_hex)]
    iv: Option<Hex>,
    /// Sign every push with this private key (PEM: PKCS#8 RSA, ECDSA P-256
    /// or Ed25519; or PKCS#1 `RSA PRIVATE KEY`; or SEC 1 `EC PRIVATE KEY`).
    #[arg(long, value_name = "KEY.pem")]
    sign: Option<PathBuf>,
    /// The key ID written into signatures [default: the --sign file's name,
    /// as nghq writes its certificate's].
    #[arg(long, value_name = "ID", requires = "sign")]
    key_id: Option<String>,
    /// Signature form: `cavage` (nghq's `signature` headers on the promise and
    /// the response), `rfc9421` (`signature-input` + `signature` on the
    /// response) or `both`. Cavage algorithm names: rsa-sha256, ec-sha256,
    /// ed25519.
    #[arg(long, value_name = "FORM", default_value = "cavage", requires = "sign")]
    signature: SignatureForms,
    /// Sign every push with an HMAC-SHA256 shared secret instead: KEYID=HEX,
    /// or KEYID=@FILE with the secret in hex in FILE (at least 32 bytes).
    /// RFC 9421 signatures only (`alg="hmac-sha256"`, `keyid` KEYID); the
    /// receiver needs `--trust-hmac` with the same secret.
    #[arg(long, value_name = "KEYID=HEX|@FILE", conflicts_with = "sign")]
    sign_hmac: Option<String>,
    /// AMBI (draft-ietf-mboned-ambi): manifests of every datagram's digest
    /// ahead of the datagrams, so `h3m-recv --ambi` lets nothing
    /// unauthenticated through. `inband` multicasts them on the side port
    /// (--fec-port, else --port + 1), signed with the --ambi-key or --sign
    /// key (Ed25519, ECDSA P-256 or RSA-PSS); `https` streams them from the repair origin
    /// (--repair-listen) as application/ambi at /.well-known/h3m/ambi, with
    /// the ietf-ambi metadata at /.well-known/h3m/ambi.json (TLS
    /// authenticates them: no signature); `both`. 4-byte packet numbers
    /// and a --source; with --cipher-suite the digests cover the protected
    /// datagrams as sent.
    #[arg(long, value_name = "inband|https|both")]
    ambi: Option<AmbiMode>,
    /// AMBI in-band: sign manifests with this private key (Ed25519, ECDSA
    /// P-256 or RSA-PSS) [default: the --sign key]. Without --sign, pushes
    /// then carry no signature of their own: every datagram is
    /// authenticated by the manifests (receivers: --ambi-trust).
    #[arg(long, value_name = "KEY.pem", requires = "ambi")]
    ambi_key: Option<PathBuf>,
    /// AMBI digest profile: sha-256 or blake2b, truncated to BITS (64 to
    /// the hash's size) [default: sha-256/128].
    #[arg(long, value_name = "ALG[/BITS]", default_value = "sha-256/128", requires = "ambi")]
    ambi_digest: String,
    /// AMBI: manifests each digest is in (losing a fraction p of manifests
    /// leaves a datagram unauthenticated with probability about p^N)
    /// [default: 4 with in-band manifests, 1 over HTTPS only].
    #[arg(long, value_name = "N", requires = "ambi")]
    ambi_overlap: Option<usize>,
    /// AMBI over HTTPS: milliseconds between publishing a manifest and
    /// sending its datagrams; more than the unicast path to receivers is
    /// slower than the multicast one (a manifest that arrives after its
    /// datagram leaves it exposed to a flood of forgeries) [default: with
    /// https or both, the subscribers' longest round trip plus 1 ms (none
    /// while nobody subscribes, 10 while a round trip is not known, as over
    /// HTTP/1.1); 0 inband].
    #[arg(long, value_name = "MS", requires = "ambi")]
    ambi_lead: Option<u64>,
    /// AMBI over HTTPS: before the first push, wait until a receiver
    /// subscribes to the manifest stream, at most SECS (for deliveries to
    /// receivers started first: they then authenticate every datagram on
    /// arrival); meanwhile a PING every 25 ms tells receivers that the
    /// sender, so its origin, is up.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, requires = "ambi")]
    ambi_wait: Option<Duration>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    log: h3m_net::logging::LogArgs,
}

/// `--rate`: bits/s, `None` for `unpaced`.
type Rate = Option<u64>;

/// Bytes given in hex on the command line.
type Hex = Vec<u8>;

/// `--ambi`: how manifests travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AmbiMode {
    /// Multicast on the session's side port, signed.
    Inband,
    /// Streamed by the repair origin over HTTPS.
    Https,
    /// Both.
    Both,
}

fn parse_session_id(text: &str) -> Result<SessionId, String> {
    SessionId::parse_strict(text).map_err(|e| e.to_string())
}

fn parse_rate(text: &str) -> Result<Rate, String> {
    h3m_net::parse_rate(text).map_err(|e| e.to_string())
}

fn parse_secs(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err("not a number of seconds".to_owned()),
    }
}

fn parse_hex(text: &str) -> Result<Hex, String> {
    hex::decode(text.strip_prefix("0x").unwrap_or(text)).map_err(|_| "not an even number of hex digits".to_owned())
}

/// A running repair origin, with its certificate's SHA-256 when self-signed.
type StartedOrigin = (Origin, Option<[u8; 32]>);

/// Starts the repair origin: its identity from the PEM files, else
/// self-signed (then its fingerprint is returned for the advertisement).
fn start_origin(
    listen: SocketAddr,
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
) -> Result<StartedOrigin, Box<dyn std::error::Error>> {
    let (identity, pin) = match (cert, key) {
        (Some(c), Some(k)) => (Identity::from_pem_files(c, k)?, None),
        _ => {
            let id = Identity::self_signed(&[listen.ip().to_string(), "localhost".into()])?;
            let pin = id.fingerprint();
            (id, Some(pin))
        }
    };
    let origin = Origin::spawn(OriginConfig::new(listen, identity), std::sync::Arc::new(Catalog::new()))?;
    Ok((origin, pin))
}

/// Longest the origin waits, after the session, for its AMBI subscribers to
/// be sent the last manifests.
const AMBI_DRAIN: Duration = Duration::from_secs(2);
/// Then, for the transport to deliver what their responses sent last.
const AMBI_FLUSH: Duration = Duration::from_millis(100);

/// Least the origin stays up after the session for receivers that subscribe
/// only then: one whose connection took longer than a short session gets
/// the manifests kept (the feed's backlog) and the end.
const AMBI_LATE: Duration = Duration::from_millis(500);

/// Ends the manifest feed after the session: every subscriber gets what is
/// queued for it and the end of its response before the origin may stop (a
/// `--repair-linger` of 0 cut the last manifests off, and the datagrams they
/// cover expired unauthenticated at the receivers), and for [`AMBI_LATE`] a
/// receiver that subscribes only now gets the backlog (a one-file session
/// ended before its receiver connected, which then wrote nothing).
fn drain_manifest_feed(feed: &h3m_unicast::feed::Feed) {
    feed.close();
    let started = std::time::Instant::now();
    while (feed.streaming() > 0 || started.elapsed() < AMBI_LATE) && started.elapsed() < AMBI_DRAIN {
        std::thread::sleep(Duration::from_millis(5));
    }
    if feed.streaming() > 0 {
        eprintln!(
            "h3m-send: AMBI: {} subscriber(s) still reading the manifests after {AMBI_DRAIN:?}",
            feed.streaming()
        );
    }
    std::thread::sleep(AMBI_FLUSH);
}

/// Waits `for_` after the multicast session (`None`: until Ctrl-C or SIGTERM)
/// while the repair origin serves late repairs.
async fn linger(for_: Option<Duration>) {
    match for_ {
        Some(d) => {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = h3m_net::interrupted() => {}
            }
        }
        None => h3m_net::interrupted().await,
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let usage = |msg: String| {
        eprintln!("h3m-send: {msg}");
        ExitCode::from(2)
    };
    if let Err(e) = args.log.init() {
        return usage(e.to_string());
    }
    let group = args.group.unwrap_or(if args.ipv6 || args.source.is_some_and(|s| s.is_ipv6()) {
        "ff3e::8000:1".parse().expect("constant")
    } else {
        "232.0.0.1".parse().expect("constant")
    });
    let suite = args.cipher_suite;
    let protection = match (suite, &args.key, &args.iv) {
        (CipherSuite::Null, None, None) => None,
        (CipherSuite::Null, _, _) => return usage("--key/--iv need a --cipher-suite other than 0000".into()),
        (suite, Some(key), Some(iv)) => match PacketKeys::new(suite, key, iv) {
            Ok(keys) => Some(keys),
            Err(e) => return usage(format!("--key/--iv: {e}")),
        },
        (suite, _, _) => match PacketKeys::generate(suite, &ring::rand::SystemRandom::new()) {
            Ok(k) => Some(k),
            Err(e) => {
                eprintln!("h3m-send: {e}");
                return ExitCode::from(1);
            }
        },
    };
    if args.paths.is_empty() && !args.stdin && !args.watch {
        return usage("nothing to publish: give PATHs, --stdin --path P, or --watch PATH".into());
    }
    if !group.is_multicast() {
        return usage(format!("--group {group}: not a multicast address"));
    }
    let signer = match &args.sign {
        None => None,
        Some(path) => {
            let key = match std::fs::read(path) {
                Ok(text) => match SigningKey::from_pem(&text) {
                    Ok(k) => k,
                    Err(e) => return usage(format!("--sign {}: {e}", path.display())),
                },
                Err(e) => return usage(format!("--sign {}: {e}", path.display())),
            };
            let key_id = args.key_id.clone().unwrap_or_else(|| {
                path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
            });
            match PushSigner::new(key, key_id, args.signature) {
                Ok(s) => Some(std::sync::Arc::new(s)),
                Err(e) => return usage(format!("--key-id: {e}")),
            }
        }
    };
    let signer = match &args.sign_hmac {
        Some(arg) => match h3m_sender::publisher::hmac_signer(arg) {
            Ok(s) => Some(std::sync::Arc::new(s)),
            Err(e) => return usage(format!("--sign-hmac {e}")),
        },
        None => signer,
    };
    let mut publisher = PublisherConfig::new(SocketAddr::new(group, args.port));
    publisher.source = args.source;
    publisher.interface = args.interface;
    publisher.ttl = args.ttl;
    publisher.session_id = args.session_id;
    let origin = match args.repair_listen.map(|listen| start_origin(listen, &args.repair_cert, &args.repair_key)) {
        Some(Ok(o)) => Some(o),
        Some(Err(e)) => {
            eprintln!("h3m-send: --repair-listen: {e}");
            return ExitCode::from(1);
        }
        None => None,
    };
    if let Some((origin, pin)) = &origin {
        let url = OriginUrl { host: origin.local_addr().ip().to_string(), port: origin.local_addr().port() };
        eprintln!(
            "h3m-send: repair origin {url} (HTTP/3, HTTP/1.1){}",
            pin.map(|p| format!(", self-signed certificate sha256 {}", hex::encode(p))).unwrap_or_default()
        );
        publisher.catalog = Some(std::sync::Arc::clone(origin.catalog()));
        publisher.repair_origin = Some((url.to_string(), *pin));
    }
    publisher.authority = match (args.authority, &origin) {
        (Some(a), _) => a,
        (None, Some((o, _))) => {
            OriginUrl { host: o.local_addr().ip().to_string(), port: o.local_addr().port() }.authority()
        }
        (None, None) => "localhost".into(),
    };
    publisher.path_prefix = args.path_prefix;
    publisher.rate = args.rate;
    publisher.protection = protection;
    publisher.max_datagram_size = usize::from(args.max_datagram_size);
    publisher.gso_segments = args.gso_segments.map(usize::from);
    publisher.batch_datagrams = args.batch.map(usize::from);
    publisher.pack = !args.no_pack;
    publisher.pn_len = usize::from(args.pn_len);
    publisher.keepalive = args.keepalive.max(Duration::from_millis(50));
    publisher.signer = signer;
    publisher.fec = args.fec;
    publisher.fec_port = args.fec_port;
    publisher.repeat_heads = (!args.repeat_heads.is_zero()).then(|| args.repeat_heads.max(Duration::from_millis(10)));
    if let Some(mode) = args.ambi {
        let id = default_manifest_id(&args.session_id);
        let profile = match DigestProfile::parse(&args.ambi_digest, id) {
            Ok(p) => p,
            Err(e) => return usage(format!("--ambi-digest: {e}")),
        };
        let (flag, manifest_key) = match (&args.ambi_key, &args.sign) {
            (Some(k), _) => ("--ambi-key", Some(k)),
            (None, k) => ("--sign", k.as_ref()),
        };
        let key = match (mode, manifest_key) {
            (AmbiMode::Https, _) => None,
            (_, None) => {
                return usage("--ambi inband and both sign manifests: give --ambi-key or --sign KEY.pem".into());
            }
            (_, Some(path)) => match std::fs::read(path).map(|t| SigningKey::from_pem(&t)) {
                Ok(Ok(k)) => Some(std::sync::Arc::new(k)),
                Ok(Err(e)) => return usage(format!("{flag} {}: {e}", path.display())),
                Err(e) => return usage(format!("{flag} {}: {e}", path.display())),
            },
        };
        let feed = match (mode, &origin) {
            (AmbiMode::Inband, _) => None,
            (_, None) => return usage("--ambi https and both stream manifests from --repair-listen's origin".into()),
            (_, Some((origin, _))) => {
                let url = OriginUrl { host: origin.local_addr().ip().to_string(), port: origin.local_addr().port() };
                let Some(source) = args.source else {
                    return usage("--ambi needs --source (the pseudo-header names it)".into());
                };
                let metadata = h3m_sender::ambi_metadata::AmbiMetadata {
                    source,
                    group: publisher.group,
                    profile: &profile,
                    transport: &format!("{url}{}", h3m_proto::ambi::MANIFEST_PATH),
                    session_id_len: args.session_id.len(),
                    data_hold: Duration::from_secs(2),
                    digest_hold: Duration::from_secs(10),
                };
                Some(AmbiConfig::serve(origin.catalog(), metadata.to_json()))
            }
        };
        let mut ambi = match (key, feed) {
            (Some(key), None) => AmbiConfig::inband(profile, key),
            (Some(key), Some(feed)) => AmbiConfig {
                feed: Some(feed),
                lead: h3m_sender::publisher::HTTPS_LEAD,
                follow_rtt: true,
                ..AmbiConfig::inband(profile, key)
            },
            (None, Some(feed)) => AmbiConfig::https(profile, feed),
            (None, None) => return usage("--ambi: no manifest channel".into()),
        };
        if let Some(n) = args.ambi_overlap {
            ambi.overlap = n.max(1);
        }
        if let Some(ms) = args.ambi_lead {
            ambi.lead = Duration::from_millis(ms);
            ambi.follow_rtt = false;
        }
        if ambi.key.is_some() && ambi.algorithm().is_none() {
            return usage(format!("--ambi: the {flag} key must be Ed25519, ECDSA P-256 or RSA-PSS"));
        }
        publisher.ambi = Some(ambi);
    }
    if let Some(dir) = &args.qlog {
        let mut q = h3m_sender::qlog::QlogConfig::new(dir);
        q.max_bytes = args.qlog_max_mib << 20;
        publisher.qlog = Some(q);
    }
    let metrics = match args.metrics {
        Some(listen) => {
            let shared = std::sync::Arc::new(SharedStats::default());
            publisher.shared_stats = Some(std::sync::Arc::clone(&shared));
            let (rate, started) = (publisher.rate, std::time::Instant::now());
            let render = std::sync::Arc::new(move || metrics::render(&shared.get(), rate, started.elapsed()));
            match MetricsServer::spawn(listen, render) {
                Ok(server) => {
                    eprintln!("h3m-send: metrics on http://{}/metrics", server.local_addr());
                    Some(server)
                }
                Err(e) => {
                    eprintln!("h3m-send: --metrics {e}");
                    return ExitCode::from(1);
                }
            }
        }
        None => None,
    };
    let opts = SendOptions {
        publisher,
        paths: args.paths,
        repeat: args.repeat,
        carousel: args.carousel,
        watch: args.watch,
        watch_interval: args.watch_interval.max(Duration::from_millis(10)),
        stdin_path: args.stdin.then(|| args.path.clone().unwrap_or_default()),
        progress: !args.quiet,
        duration: args.duration,
        ignore: if args.watch { Ignore::new(args.ignore) } else { Ignore::none() },
        digest_first: args.digest_first,
        ambi_wait: args.ambi_wait,
    };
    if args.print_alt_svc {
        println!("Alt-Svc: {}", advertisement(&opts));
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("h3m-send: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match rt.block_on(run(&opts)) {
        Ok(s) => {
            println!(
                "sent {} resources, {} body bytes in {} datagrams ({} bytes), {:.3} s, {:.1} Mbit/s",
                s.stats.resources,
                s.stats.body_bytes,
                s.stats.datagrams,
                s.stats.bytes,
                s.elapsed.as_secs_f64(),
                s.rate_bps() / 1e6
            );
            if s.stats.repair_datagrams > 0 {
                println!("fec: {} repair datagrams ({} bytes)", s.stats.repair_datagrams, s.stats.repair_bytes);
            }
            if s.skipped.is_empty() {
                ExitCode::SUCCESS
            } else {
                let names: Vec<String> = s.skipped.iter().map(|k| k.file.display().to_string()).collect();
                eprintln!("h3m-send: {} not sent intact: {}", names.len(), names.join(", "));
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("h3m-send: {e}");
            ExitCode::from(1)
        }
    };
    if let Some((origin, _)) = origin {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        if let Some(feed) = opts.publisher.ambi.as_ref().and_then(|a| a.feed.as_ref()) {
            drain_manifest_feed(feed);
        }
        rt.block_on(linger(args.repair_linger));
        let c = origin.counters();
        println!(
            "repair origin: {} requests ({} partial, {} busy, {} not found), {} bytes, listing {} bytes, {} HTTP/3 and {} HTTP/1.1 connections",
            c.requests, c.partial, c.busy, c.not_found, c.bytes, c.listing_bytes, c.h3_connections, c.h1_connections
        );
        origin.shutdown();
    }
    drop(metrics);
    code
}
