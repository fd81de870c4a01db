//! `h3m-recv`: receive the resources of an h3m (HTTP/3 over multicast QUIC)
//! session into a directory, live from a multicast group ([`h3m_receiver::live`])
//! or from a capture file ([`h3m_receiver::offline`]). See
//! [`h3m_receiver::report`] for the output format.
#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser};
use h3m_net::Interface;
use h3m_proto::SessionId;
use h3m_receiver::live::{self, LiveOptions};
use h3m_receiver::offline::{self, Options};
use h3m_receiver::report::Observer;
use h3m_receiver::serve::{ServeOptions, Server, SessionInfo};
use h3m_receiver::unicast_repair::{RepairOptions, RepairOrigin};
use h3m_receiver::verify::{self, VerifyOptions};
use h3m_unicast::tls::Trust;

const AFTER_HELP: &str = "\
Output (text): one line per resource on stdout:
  complete   PATH  BYTES bytes  sha256:HEX
  incomplete PATH  RECEIVED of LEN[+] bytes  missing a-b,c-  (REASON)
  refused    PATH  RECEIVED bytes  (REASON)
  failed     PATH  RECEIVED bytes  (REASON)
  unpromised push ID on stream STREAM
errors and a final `key=value` summary line on stderr.
With --json: one JSON object per event on stdout (push_promised, response_headers,
trailers, resource, unpromised_push, error, session_end, summary); body data is
not reported packet by packet.

Integrity and authenticity:
  A resource whose digest (digest, repr-digest or content-digest, SHA-256) does
  not match its body is not written. --require-digest refuses resources without
  one. With --trust (or --trust-hmac), a resource is written only if a response
  signature (cavage `signature` as nghq writes it, or RFC 9421
  `signature-input`/`signature`) verifies against a trusted key (or shared
  secret) and covers its path, digest and date (and the promise's cavage
  signature, if any, verifies too), and the signed time is at most --max-age
  seconds old and at most 60 s in the future (clock skew). The clock: live,
  the system clock; pcap input, the capture time of the datagram that
  completed the resource; .datagrams input, none (no freshness check) unless
  --max-age is given, then the system clock. Refusals read
  `refused: unsigned`, `refused: signature does not verify`,
  `refused: stale (date ... older than max-age N s)`, `refused: no digest`, ...

Exit status:
  0  every resource completed, was verified and was written (no unpromised push stream)
  1  at least one resource incomplete or refused, an unpromised push stream,
     or nothing received at all (wrong --session-id?)
  2  bad usage
  3  the input file is unreadable or malformed, or (live) the network failed
  4  I/O error in the output directory";

/// Receive the resources of an h3m session (HTTP/3 over multicast QUIC,
/// draft-pardue-quic-http-mcast-07, as sent by nghq) into a directory.
#[derive(Debug, Parser)]
#[command(name = "h3m-recv", version, after_help = AFTER_HELP)]
#[command(group(clap::ArgGroup::new("trusted").args(["trust", "trust_hmac"]).multiple(true)))]
struct Cli {
    #[command(flatten)]
    source: Source,

    /// The session ID (the packets' destination connection ID), in hex.
    #[arg(long, value_name = "HEX", default_value = "53657373696f6e204944", value_parser = parse_session_id)]
    session_id: SessionId,

    /// Directory the resources are written into (created if missing); each
    /// resource goes to its :path, made relative and checked.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,

    /// Print one JSON object per event instead of text lines.
    #[arg(long)]
    json: bool,

    /// Live: the group's UDP port [default: 2000]. Offline: take only UDP
    /// datagrams to this destination port (pcap input).
    #[arg(long, value_name = "P", value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,

    /// Live: join source-specifically, (S,G), with this source address.
    #[arg(long = "source", value_name = "S")]
    source_ip: Option<IpAddr>,

    /// Live: the interface to join on: a name (lo, eth0), an address
    /// (127.0.0.1) or an index.
    #[arg(long, value_name = "I")]
    interface: Option<Interface>,

    /// Live: receive through an AMT tunnel (RFC 7450) instead of joining
    /// natively: RELAY is the address to send the Relay Discovery to, or
    /// `auto` for a DRIAD lookup of --source (RFC 8777), then the anycast
    /// discovery address (192.52.193.1 or 2001:3::1).
    #[arg(long, value_name = "RELAY|auto")]
    amt: Option<h3m_receiver::input::AmtRelay>,

    /// Live, with --amt auto: the DNS server for the DRIAD lookup
    /// (ADDR or ADDR:PORT) [default: the system's].
    #[arg(long, value_name = "ADDR[:PORT]", value_parser = parse_dns_server)]
    amt_dns: Option<SocketAddr>,

    /// Live: keep receiving across sessions instead of ending with the first.
    #[arg(long)]
    follow: bool,

    /// Live: seconds to keep listening after the session's end signal while
    /// something is incomplete or lost (a session that arrived intact ends at once).
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "0.3")]
    linger: Duration,

    /// FEC repair (see h3m-send --fec): `auto` listens on the repair port
    /// (--fec-port, the advertisement's, else the session's port + 1; in a
    /// capture: datagrams to that port with --port, else those that begin
    /// as repair does) and rebuilds lost datagrams when the session carries
    /// repair; `off` ignores repair.
    #[arg(long, value_name = "auto|off", default_value = "auto")]
    fec: FecMode,

    /// The FEC repair port [default: the advertisement's, else --port + 1].
    #[arg(long, value_name = "PORT")]
    fec_port: Option<u16>,

    /// Live: unicast repair: when the session ends, fetch exactly the missing
    /// byte ranges of each incomplete resource (one with a digest) from the
    /// sender's repair origin (h3m-send --repair-listen) over HTTP/3, else
    /// HTTP/1.1, and write it once its whole body verifies. `auto`: the
    /// origin the advertisement names (--alt-svc), else the pushes'
    /// :authority; or https://HOST:PORT.
    #[arg(long, value_name = "auto|URL")]
    repair: Option<RepairOrigin>,

    /// Trust the repair origin's certificate if it chains to one in this PEM
    /// file [default: the advertised repair-pin for the advertised origin,
    /// else the system's root certificates].
    #[arg(long, value_name = "CERT.pem", requires = "repair", conflicts_with = "repair_pin")]
    repair_ca: Option<PathBuf>,

    /// Trust exactly the repair origin certificate with this SHA-256 (hex, as
    /// h3m-send prints it for a self-signed one).
    #[arg(long, value_name = "SHA256", requires = "repair", value_parser = parse_pin)]
    repair_pin: Option<[u8; 32]>,

    /// Seconds within which the repair starts, at random (so many receivers
    /// do not ask at once).
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = parse_secs, requires = "repair")]
    repair_jitter: Duration,

    /// Most body bits/s fetched by the repair (50M, 1G, ...; `unpaced`: no cap).
    #[arg(long, value_name = "RATE", default_value = "50M", value_parser = parse_rate, requires = "repair")]
    repair_rate: Rate,

    /// Live: AMBI (draft-ietf-mboned-ambi): a datagram reaches the receiver
    /// only once an authenticated manifest lists its digest; everything else
    /// is dropped and counted (`ambi_*` in the summary). `inband`: manifests
    /// multicast on the side port, signed by a --trust key (see h3m-send
    /// --ambi; or by an --ambi-trust key). `https://HOST:PORT[/PATH]`: manifests streamed by the
    /// sender's origin (default path /.well-known/h3m/ambi), authenticated
    /// by TLS (--ambi-pin, --ambi-ca, else the advertised repair-pin, else
    /// the system's roots); reconnected with back-off when lost. `auto`: as
    /// the --alt-svc advertisement announces (`ambi=inband|https|both`;
    /// with `both`, in-band when --trust is given); an error if it
    /// announces none.
    #[arg(long, value_name = "auto|inband|URL", value_parser = parse_ambi_mode)]
    ambi: Option<AmbiMode>,

    /// AMBI over HTTPS: trust exactly the origin certificate with this
    /// SHA-256 (hex, as h3m-send prints it for a self-signed one).
    #[arg(long, value_name = "SHA256", requires = "ambi", value_parser = parse_pin, conflicts_with = "ambi_ca")]
    ambi_pin: Option<[u8; 32]>,

    /// AMBI over HTTPS: trust the origin's certificate if it chains to one
    /// in this PEM file.
    #[arg(long, value_name = "CERT.pem", requires = "ambi")]
    ambi_ca: Option<PathBuf>,

    /// The AMBI digest profile, as the sender's --ambi-digest [default: the
    /// advertisement's, else sha-256/128].
    #[arg(long, value_name = "ALG[/BITS]", requires = "ambi")]
    ambi_digest: Option<String>,

    /// AMBI in-band: trust manifests signed with this key (PEM public key or
    /// certificate; repeatable) [default: the --trust keys]. With it and no
    /// --trust, datagrams are authenticated but pushes need no signature of
    /// their own (h3m-send --ambi-key without --sign).
    #[arg(long, value_name = "KEY.pem", requires = "ambi")]
    ambi_trust: Vec<PathBuf>,

    /// Live: no progress line on a terminal.
    #[arg(long)]
    quiet: bool,

    #[command(flatten)]
    log: h3m_net::logging::LogArgs,

    /// Sync each file (and its directory) to disk before reporting it written.
    #[arg(long)]
    fsync: bool,

    /// Give up on a push after this many seconds without progress [default: 10].
    #[arg(long, value_name = "SECS", value_parser = parse_positive_secs)]
    push_timeout: Option<Duration>,

    /// Memory budget in MiB for bytes held out of order (body fragments, the
    /// request stream) and, again, for the received ranges of fragmented
    /// bodies (24 MiB: 262 144 ranges); beyond it the most fragmented push is
    /// given up.
    #[arg(long, value_name = "MIB", default_value = "24", value_parser = clap::value_parser!(u32).range(1..=65536))]
    max_buffer_mib: u32,

    /// Socket receive buffer in MiB to ask the kernel for (beyond
    /// net.core.rmem_max when the receiver has CAP_NET_ADMIN; a clamp is
    /// reported). It absorbs the bursts a busy receiver falls behind by: at
    /// 6 Gbit/s (`h3m-send --rate max`) 16 MiB or more. [default: 64, or
    /// 100 ms of the --alt-svc's peak-flow-rate when more, up to 1024]
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u32).range(1..=2047))]
    recv_buffer_mib: Option<u32>,

    /// Read one datagram per receive buffer (recvmmsg without UDP GRO), for
    /// comparisons; GRO is on by default.
    #[arg(long)]
    no_gro: bool,

    /// End the session after this many seconds without a packet; 0 never [default: 60].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    idle_timeout: Option<Duration>,

    /// Write only resources signed by one of these keys: a PEM public key or
    /// certificate (every key in the file is trusted). Repeatable.
    #[arg(long, value_name = "KEY.pem")]
    trust: Vec<PathBuf>,

    /// Also trust RFC 9421 `hmac-sha256` signatures made with this shared
    /// secret: KEYID=HEX, or KEYID=@FILE with the secret in hex in FILE (at
    /// least 32 bytes; the key ID labels it). Repeatable; works like --trust.
    #[arg(long, value_name = "KEYID=HEX|@FILE")]
    trust_hmac: Vec<String>,

    /// With --trust or --trust-hmac: the oldest accepted signature, in
    /// seconds before the clock [default: 300]. For .datagrams input it also
    /// turns on the freshness check, against the system clock.
    #[arg(long, value_name = "SECS", value_parser = parse_max_age, requires = "trusted")]
    max_age: Option<Duration>,

    /// Refuse (do not write) a resource that announces no SHA-256 digest.
    #[arg(long)]
    require_digest: bool,

    /// Serve what is received over HTTP/1.1 on ADDR:PORT: each resource at
    /// its :path (ranges, ETag, If-None-Match; a promised one is answered
    /// when it completes, 504 after --serve-timeout; 503 with h3m-missing
    /// when given up incomplete; 404 unknown), /metrics (Prometheus), / (a
    /// status page), /events (the --json records as Server-Sent Events).
    /// Live, it implies --follow, and it keeps serving after the run ends
    /// (also with --input) until Ctrl-C.
    #[arg(long, value_name = "ADDR:PORT")]
    serve: Option<SocketAddr>,

    /// With --serve: how long a request for a promised resource waits for it.
    #[arg(long, value_name = "SECS", value_parser = parse_positive_secs, default_value = "10", requires = "serve")]
    serve_timeout: Duration,

    /// With --serve: the Access-Control-Allow-Origin of every answer (`*` or
    /// an origin such as `https://player.example`).
    #[arg(long, value_name = "ORIGIN", requires = "serve")]
    serve_cors: Option<String>,

    /// Write a qlog trace (JSON-SEQ: packets received with their frames,
    /// push promises and results) to DIR/SESSIONID-receiver.sqlog; open
    /// it in qvis at qvis.quictools.info.
    #[arg(long, value_name = "DIR")]
    qlog: Option<PathBuf>,

    /// With --qlog: stop logging (with a final note) once the file reaches
    /// this many MiB.
    #[arg(long, value_name = "MIB", default_value = "1024", requires = "qlog",
          value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    qlog_max_mib: u64,
}

/// Where the datagrams come from.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct Source {
    /// Read the datagrams from a capture file: classic pcap, or `.datagrams`
    /// (4-byte big-endian length + payload records).
    #[arg(long, value_name = "CAPTURE")]
    input: Option<PathBuf>,

    /// Live: join this multicast group (IPv4 or IPv6).
    #[arg(long, value_name = "G")]
    group: Option<IpAddr>,

    /// Live: take the group, port, source, session ID and idle timeout from an
    /// Alt-Svc advertisement, e.g. 'h3m-07="232.0.0.1:2000"; session-id=2a'.
    #[arg(long, value_name = "ADVERTISEMENT")]
    alt_svc: Option<String>,
}

fn parse_dns_server(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| format!("`{text}` is not an address or address:port"))
}

fn parse_pin(text: &str) -> Result<[u8; 32], String> {
    h3m_unicast::tls::parse_pin(text).map_err(|e| e.to_string())
}

/// `--ambi`: where manifests come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AmbiMode {
    /// As the advertisement announces.
    Auto,
    /// Multicast on the session's side port, signed.
    Inband,
    /// Streamed over HTTPS from this URL.
    Https(String),
}

fn parse_ambi_mode(text: &str) -> Result<AmbiMode, String> {
    match text {
        "auto" => Ok(AmbiMode::Auto),
        "inband" => Ok(AmbiMode::Inband),
        url => match h3m_unicast::client::OriginUrl::parse(url) {
            Ok(_) => Ok(AmbiMode::Https(url.to_owned())),
            Err(e) => Err(format!("auto, inband or an https URL: {e}")),
        },
    }
}

/// The AMBI options `--ambi MODE` and its companions give, with what the
/// advertisement says (`opts`).
fn ambi_options(
    mode: AmbiMode,
    digest: &Option<String>,
    pin: Option<[u8; 32]>,
    ca: &Option<PathBuf>,
    manifest_keys: Vec<h3m_proto::auth::VerifyingKey>,
    opts: &live::LiveOptions,
) -> Result<h3m_receiver::ambi::AmbiOptions, String> {
    use h3m_receiver::ambi::{AmbiOptions, ManifestChannel, https::HttpsChannel};
    let advertised = opts.advertised_ambi.as_ref();
    let trust_keys = if manifest_keys.is_empty() { opts.session.verify.trust.clone() } else { manifest_keys };
    let tls_trust = || -> Result<Trust, String> {
        Ok(match (ca, pin, opts.advertised_repair.pin) {
            (Some(path), _, _) => Trust::Ca(h3m_unicast::tls::load_certs(path).map_err(|e| format!("--ambi-ca {e}"))?),
            (None, Some(pin), _) | (None, None, Some(pin)) => Trust::Pin(pin),
            (None, None, None) => Trust::System,
        })
    };
    let inband = || -> Result<ManifestChannel, String> {
        if trust_keys.is_empty() {
            return Err("--ambi inband: manifests are signed; give --ambi-trust or --trust KEY.pem".into());
        }
        Ok(ManifestChannel::Inband { trust: trust_keys.clone() })
    };
    let channel = match mode {
        AmbiMode::Inband => inband()?,
        AmbiMode::Https(url) => {
            ManifestChannel::Https(HttpsChannel::parse(&url, tls_trust()?).map_err(|e| e.to_string())?)
        }
        AmbiMode::Auto => match advertised {
            None => {
                return Err(
                    "--ambi auto: the advertisement announces no AMBI (ambi=...); give --ambi inband or URL".into()
                );
            }
            Some(a) if a.inband() && (!a.https() || !trust_keys.is_empty()) => inband()?,
            Some(_) => {
                let Some(origin) = &opts.advertised_repair.url else {
                    return Err("--ambi auto: the advertisement names no origin (repair=...) for its manifests".into());
                };
                let url = h3m_unicast::client::OriginUrl::parse(origin).map_err(|e| e.to_string())?;
                ManifestChannel::Https(HttpsChannel::at(url, h3m_proto::ambi::MANIFEST_PATH.into(), tls_trust()?))
            }
        },
    };
    let digest =
        digest.clone().or_else(|| advertised.map(|a| a.digest.clone())).unwrap_or_else(|| "sha-256/128".into());
    let id = h3m_proto::ambi::default_manifest_id(&opts.session.session_id);
    let profile = h3m_proto::ambi::DigestProfile::parse(&digest, id).map_err(|e| format!("--ambi-digest: {e}"))?;
    Ok(AmbiOptions { profile, channel })
}

/// A rate in bits/s; `None`: no cap.
#[derive(Debug, Clone, Copy)]
struct Rate(Option<u64>);

fn parse_rate(text: &str) -> Result<Rate, String> {
    h3m_net::parse_rate(text).map(Rate).map_err(|e| e.to_string())
}

fn parse_session_id(text: &str) -> Result<SessionId, String> {
    SessionId::parse_strict(text).map_err(|e| e.to_string())
}

/// `--fec`: use FEC repair when the session carries it, or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FecMode {
    /// Listen on the repair port and rebuild lost datagrams.
    Auto,
    /// Ignore repair.
    Off,
}

fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text.parse().map_err(|_| format!("`{text}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{text}` is not a usable number of seconds"))
}

fn parse_positive_secs(text: &str) -> Result<Duration, String> {
    let d = parse_secs(text)?;
    if d.is_zero() { Err("the push timeout must be more than 0 seconds".to_owned()) } else { Ok(d) }
}

fn parse_max_age(text: &str) -> Result<Duration, String> {
    let d = parse_secs(text)?;
    if d.is_zero() { Err("the maximum age must be more than 0 seconds".to_owned()) } else { Ok(d) }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let usage = |msg: String| {
        eprintln!("h3m-recv: {msg}");
        ExitCode::from(offline::ExitStatus::Usage.code())
    };
    if let Err(e) = cli.log.init() {
        return usage(e.to_string());
    }
    let mut verify = VerifyOptions { max_age: cli.max_age, require_digest: cli.require_digest, ..Default::default() };
    for path in &cli.trust {
        match verify::load_trust_file(path) {
            Ok(keys) => verify.trust.extend(keys),
            Err(e) => return usage(format!("--trust {e}")),
        }
    }
    for arg in &cli.trust_hmac {
        match verify::load_trust_hmac(arg) {
            Ok(key) => verify.trust.push(key),
            Err(e) => return usage(format!("--trust-hmac {e}")),
        }
    }
    // The session: from the advertisement when given, then the flags.
    let mut opts = match (cli.source.group, &cli.source.alt_svc, &cli.source.input) {
        (_, _, Some(_)) => {
            // Offline: only the session part is used.
            let mut opts = LiveOptions::new(SocketAddr::from(([239, 0, 0, 0], 2000)), &cli.out);
            opts.session.session_id = cli.session_id;
            opts
        }
        (None, Some(text), None) => {
            let adv = match h3m_proto::altsvc::parse_one(text) {
                Ok(a) => a,
                Err(e) => return usage(format!("--alt-svc: {e}")),
            };
            match LiveOptions::from_advertisement(&adv, &cli.out) {
                Ok(opts) => opts,
                Err(e) => return usage(format!("--alt-svc: {e}")),
            }
        }
        (Some(g), _, _) => {
            let mut opts = LiveOptions::new(SocketAddr::new(g, cli.port.unwrap_or(2000)), &cli.out);
            opts.session.session_id = cli.session_id;
            opts
        }
        (None, None, None) => return usage("give --input, --group or --alt-svc".into()),
    };
    opts.session.verify = verify;
    opts.session.buffer_budget = (cli.max_buffer_mib as usize) << 20;
    if let Some(mib) = cli.recv_buffer_mib {
        opts.recv_buffer = (mib as usize) << 20;
    }
    opts.gro = !cli.no_gro;
    if cli.fec == FecMode::Off {
        // No window, no repair socket (live) and repair datagrams ignored (captures).
        opts.session.fec_window = 0;
    }
    if let Some(t) = cli.push_timeout {
        opts.session.push_timeout = t;
    }
    if let Some(t) = cli.idle_timeout {
        opts.session.idle_timeout = (!t.is_zero()).then_some(t);
    }
    if let Some(dir) = &cli.qlog {
        let mut q = h3m_receiver::qlog::QlogOptions::new(dir);
        q.max_bytes = cli.qlog_max_mib << 20;
        opts.session.qlog = Some(q);
    }
    let server = match cli.serve {
        Some(listen) => {
            let mut serve = ServeOptions::new(listen, &cli.out);
            serve.wait_timeout = cli.serve_timeout;
            serve.cors = cli.serve_cors.clone();
            if let Some(cors) = &serve.cors
                && http::HeaderValue::from_str(cors).is_err()
            {
                return usage(format!("--serve-cors: `{cors}` is not a header value"));
            }
            serve.session = SessionInfo {
                group: match &cli.source.input {
                    Some(input) => input.display().to_string(),
                    None => opts.group.to_string(),
                },
                source: cli.source_addr().or(opts.source).map(|s| s.to_string()),
                session_id: opts.session.session_id.to_string(),
                amt: cli.amt.as_ref().map(|a| match a {
                    h3m_receiver::input::AmtRelay::Address(ip) => ip.to_string(),
                    h3m_receiver::input::AmtRelay::Auto { .. } => "auto (DRIAD, then anycast)".to_owned(),
                }),
            };
            match Server::spawn(serve) {
                Ok(server) => {
                    eprintln!("h3m-recv: serving on http://{}/", server.local_addr());
                    Some(server)
                }
                Err(e) => {
                    eprintln!("h3m-recv: --serve {e}");
                    return ExitCode::from(offline::ExitStatus::BadInput.code());
                }
            }
        }
        None => None,
    };
    let observer = || server.as_ref().map(|s| Box::new(s.feed()) as Box<dyn Observer>);
    if let Some(input) = cli.source.input {
        let mut offline = Options::new(input, cli.out);
        offline.session = opts.session;
        offline.json = cli.json;
        offline.port = cli.port;
        offline.repair_port = cli.fec_port;
        offline.fsync = cli.fsync;
        let stderr = std::io::stderr();
        let outcome = offline::run_observed(&offline, &mut buffered_stdout(), &mut stderr.lock(), observer());
        if server.is_some() {
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(serve_until_interrupted("capture read")),
                Err(e) => eprintln!("h3m-recv: {e}"),
            }
        }
        return ExitCode::from(outcome.status.code());
    }
    if !opts.group.ip().is_multicast() {
        return usage(format!("{} is not a multicast group", opts.group.ip()));
    }
    opts.source = cli.source_addr().or(opts.source);
    opts.interface = cli.interface;
    opts.json = cli.json;
    // A local origin keeps listening for the next sessions.
    opts.follow = cli.follow || server.is_some();
    opts.fsync = cli.fsync;
    opts.linger = cli.linger;
    opts.progress = !cli.quiet && !cli.json;
    if let Some(port) = cli.fec_port {
        opts.repair_port = Some(port);
    }
    if let Some(origin) = cli.repair {
        let mut repair = RepairOptions::new(origin);
        repair.jitter = cli.repair_jitter;
        repair.rate = cli.repair_rate.0;
        repair.trust = match (&cli.repair_ca, cli.repair_pin) {
            (Some(path), _) => match h3m_unicast::tls::load_certs(path) {
                Ok(certs) => Some(Trust::Ca(certs)),
                Err(e) => return usage(format!("--repair-ca {e}")),
            },
            (None, Some(pin)) => Some(Trust::Pin(pin)),
            (None, None) => None,
        };
        opts.repair = Some(repair);
    }
    if let Some(mode) = cli.ambi {
        let mut manifest_keys = Vec::new();
        for path in &cli.ambi_trust {
            match h3m_receiver::verify::load_trust_file(path) {
                Ok(keys) => manifest_keys.extend(keys),
                Err(e) => return usage(format!("--ambi-trust {e}")),
            }
        }
        match ambi_options(mode, &cli.ambi_digest, cli.ambi_pin, &cli.ambi_ca, manifest_keys, &opts) {
            Ok(a) => opts.ambi = Some(a),
            Err(e) => return usage(e),
        }
    }
    opts.amt = match (cli.amt, cli.amt_dns) {
        (Some(h3m_receiver::input::AmtRelay::Auto { .. }), dns) => Some(h3m_receiver::input::AmtRelay::Auto { dns }),
        (Some(relay), None) => Some(relay),
        (Some(_), Some(_)) => return usage("--amt-dns needs --amt auto".into()),
        (None, Some(_)) => return usage("--amt-dns needs --amt auto".into()),
        (None, None) => None,
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("h3m-recv: {e}");
            return ExitCode::from(offline::ExitStatus::BadInput.code());
        }
    };
    let stderr = std::io::stderr();
    let outcome = rt.block_on(async {
        let outcome = match observer() {
            Some(observer) => live::run_observed(&opts, &mut buffered_stdout(), &mut stderr.lock(), observer).await,
            None => live::run(&opts, &mut buffered_stdout(), &mut stderr.lock()).await,
        };
        let interrupted = outcome.summary.as_ref().and_then(|s| s.session_end) == Some("interrupted");
        if server.is_some() && !interrupted {
            serve_until_interrupted("reception ended").await;
        }
        outcome
    });
    ExitCode::from(outcome.status.code())
}

/// Keeps serving (the server runs on its own thread) until SIGINT or SIGTERM.
async fn serve_until_interrupted(what: &str) {
    let interrupted = h3m_net::interrupted();
    tokio::pin!(interrupted);
    // Polled once first: the signal handlers are in place before the line says so.
    tokio::select! {
        biased;
        _ = &mut interrupted => return,
        _ = std::future::ready(()) => {}
    }
    eprintln!("h3m-recv: {what}; still serving until interrupted (Ctrl-C)");
    interrupted.await;
}

/// Standard output, buffered: the per-resource lines of one receive batch go
/// out in one write (the live loop flushes after each batch, so a line is
/// never held back longer than the batch that produced it).
fn buffered_stdout() -> std::io::BufWriter<std::io::StdoutLock<'static>> {
    std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock())
}

impl Cli {
    fn source_addr(&self) -> Option<IpAddr> {
        self.source_ip
    }
}
