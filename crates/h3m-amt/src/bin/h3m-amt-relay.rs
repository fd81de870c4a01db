//! `h3m-amt-relay`: an AMT relay (RFC 7450).
//!
//! Listens for gateways on UDP (port 2268 unless given), answers discovery,
//! issues Response MACs from a rotating secret, tracks each gateway's
//! IGMPv3/MLDv2 memberships, joins the wanted (S,G)s natively on the upstream
//! interface and forwards their traffic to the gateways as Multicast Data.
//!
//! Exit status: 0 after SIGINT/SIGTERM, 2 for usage errors, 3 when a socket
//! cannot be opened, 1 for anything else.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use h3m_amt::membership::{QueryParams, encode_code};
use h3m_amt::message::AMT_PORT;
use h3m_amt::relay::{DEFAULT_QUERY, LeaveReason, RelayConfig, RelayEvent};
use h3m_amt::relay_driver::{CaptureMode, DriverConfig, DriverError, DriverEvent, DriverStats, RelayHandle, spawn};
use h3m_net::Interface;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::broadcast::error::RecvError;

const NAME: &str = "h3m-amt-relay";

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CaptureArg {
    /// Packet capture (AF_PACKET, needs CAP_NET_RAW: every UDP port of a joined group) when permitted, else the --port ports.
    Auto,
    /// Packet capture only (an error without CAP_NET_RAW).
    Raw,
    /// UDP sockets on the --port ports only.
    Ports,
    /// No native joins or capture.
    Off,
}

/// AMT relay (RFC 7450): tunnels native multicast to AMT gateways.
#[derive(Debug, Parser)]
#[command(name = NAME, version, after_help = "Exit status: 0 after SIGINT/SIGTERM, 2 usage error, 3 socket error.")]
struct Args {
    /// Address to listen on, port 2268 unless given (an IPv6 address with a port in square brackets);
    /// repeat for e.g. the anycast discovery address and the unicast relay address.
    #[arg(long, required = true, value_name = "ADDR[:PORT]", value_parser = parse_listen)]
    listen: Vec<SocketAddr>,
    /// Upstream interface (name, address or index) to join and receive multicast on.
    #[arg(long, value_name = "UPSTREAM")]
    interface: Interface,
    /// Relay address Advertisements name, one per family [default: the first --listen
    /// address of each family outside the AMT anycast prefixes].
    #[arg(long, value_name = "ADDR")]
    advertise: Vec<IpAddr>,
    /// Query Interval sent to gateways (QQIC), seconds.
    #[arg(long, value_name = "SECS", default_value_t = 125, value_parser = clap::value_parser!(u32).range(1..=31744))]
    query_interval: u32,
    /// Robustness Variable sent to gateways (QRV).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=7))]
    qrv: u8,
    /// MAC secret rotation period, seconds (0: never); keep it above the query interval.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    secret_rotation: u64,
    /// UDP port to capture when packet capture is not permitted (repeatable).
    #[arg(long = "port", value_name = "P")]
    ports: Vec<u16>,
    /// How to capture native data.
    #[arg(long, value_enum, default_value_t = CaptureArg::Auto)]
    capture: CaptureArg,
    /// Most gateways with state.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_gateways: u64,
    /// Most gateways with state from one IP address (any port).
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    max_gateways_per_source: u64,
    /// Most channels across all gateways.
    #[arg(long, value_name = "N", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_channels: u64,
    /// Most channels per gateway.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    max_channels_per_gateway: u64,
    /// Memory budget of the membership state, MiB: gateways and channels beyond it are refused.
    #[arg(long, value_name = "MIB", default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    max_state_mib: u64,
    /// Log only errors and warnings (no per-gateway lines, no periodic stats).
    #[arg(long)]
    quiet: bool,
    /// Seconds between stats lines (0: none).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    stats_interval: u64,
    #[command(flatten)]
    log: h3m_net::logging::LogArgs,
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bare = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(s);
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, AMT_PORT))
        .map_err(|_| format!("`{s}` is not ADDR or ADDR:PORT (an IPv6 address with a port: [ADDR]:PORT)"))
}

/// The well-known anycast discovery prefixes (192.52.193.0/24, 2001:3::/32).
fn is_amt_anycast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.octets()[..3] == [192, 52, 193],
        IpAddr::V6(a) => a.segments()[..2] == [0x2001, 3],
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("{NAME}: {msg}");
    eprintln!("Try '{NAME} --help' for more information.");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = args.log.init() {
        return usage(&e.to_string());
    }
    let mut advertise: Vec<IpAddr> = Vec::new();
    for a in &args.advertise {
        if a.is_unspecified() || a.is_multicast() {
            return usage(&format!("--advertise {a}: not a unicast address"));
        }
        if advertise.iter().any(|b| b.is_ipv4() == a.is_ipv4()) {
            return usage("--advertise: at most one address per family");
        }
        advertise.push(*a);
    }
    for l in &args.listen {
        let ip = l.ip();
        if ip.is_multicast() {
            return usage(&format!("--listen {l}: not a unicast address"));
        }
        if !ip.is_unspecified() && !is_amt_anycast(ip) && !advertise.iter().any(|b| b.is_ipv4() == ip.is_ipv4()) {
            advertise.push(ip);
        }
    }
    if advertise.is_empty() {
        return usage("no relay address to advertise: give --advertise or a unicast --listen address");
    }
    if let Err(e) = args.interface.index() {
        return usage(&format!("--interface {}: {e}", args.interface));
    }
    let mut relay = RelayConfig::new(&advertise);
    relay.query = QueryParams { qrv: args.qrv, qqic: encode_code(args.query_interval), ..DEFAULT_QUERY };
    relay.secret_rotation = (args.secret_rotation > 0).then(|| Duration::from_secs(args.secret_rotation));
    relay.max_gateways = usize::try_from(args.max_gateways).unwrap_or(usize::MAX);
    relay.max_gateways_per_source = usize::try_from(args.max_gateways_per_source).unwrap_or(usize::MAX);
    relay.max_channels = usize::try_from(args.max_channels).unwrap_or(usize::MAX);
    relay.max_channels_per_gateway = usize::try_from(args.max_channels_per_gateway).unwrap_or(usize::MAX);
    relay.max_state_bytes = usize::try_from(args.max_state_mib << 20).unwrap_or(usize::MAX);
    let mut config = DriverConfig::new(relay, args.listen.clone());
    config.upstream = Some(args.interface.clone());
    config.capture_ports = args.ports.clone();
    config.capture = match args.capture {
        CaptureArg::Auto => CaptureMode::Auto,
        CaptureArg::Raw => CaptureMode::Raw,
        CaptureArg::Ports => CaptureMode::Ports,
        CaptureArg::Off => CaptureMode::Off,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{NAME}: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(args, config, advertise))
}

async fn run(args: Args, config: DriverConfig, advertise: Vec<IpAddr>) -> ExitCode {
    let handle = match spawn(config) {
        Ok(h) => h,
        Err(e @ (DriverError::CaptureConfig(_) | DriverError::NoListen)) => return usage(&e.to_string()),
        Err(e) => {
            eprintln!("{NAME}: {e}");
            return ExitCode::from(3);
        }
    };
    let (mut int, mut term) = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("{NAME}: cannot handle signals: {e}");
            let _ = handle.shutdown().await;
            return ExitCode::from(1);
        }
    };
    let listen: Vec<String> = handle.local_addrs().iter().map(SocketAddr::to_string).collect();
    let adv: Vec<String> = advertise.iter().map(IpAddr::to_string).collect();
    eprintln!(
        "{NAME}: listening on {}, advertising {}, upstream {}, capture {}",
        listen.join(" "),
        adv.join(" "),
        args.interface,
        handle.capture()
    );
    for w in handle.warnings() {
        eprintln!("{NAME}: warning: {w}");
    }
    let mut events = handle.events();
    let period = Duration::from_secs(args.stats_interval.max(1));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let stats_on = args.stats_interval > 0 && !args.quiet;
    loop {
        tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = tick.tick(), if stats_on => {
                if let Ok(s) = handle.stats().await {
                    eprintln!("{NAME}: {}", stats_line(&s));
                }
            }
            e = events.recv() => match e {
                Ok(e) => log_event(&e, args.quiet, &args.interface),
                Err(RecvError::Lagged(n)) => {
                    if !args.quiet {
                        eprintln!("{NAME}: ({n} log lines skipped)");
                    }
                }
                Err(RecvError::Closed) => {
                    eprintln!("{NAME}: the relay stopped");
                    return ExitCode::from(1);
                }
            },
        }
    }
    match handle_shutdown(&handle).await {
        Some(s) if !args.quiet => eprintln!("{NAME}: stopped; {}", stats_line(&s)),
        _ => {}
    }
    ExitCode::SUCCESS
}

async fn handle_shutdown(handle: &RelayHandle) -> Option<DriverStats> {
    handle.shutdown().await.ok()
}

fn channel(source: Option<IpAddr>, group: IpAddr) -> String {
    match source {
        Some(s) => format!("({s}, {group})"),
        None => format!("(*, {group})"),
    }
}

fn log_event(e: &DriverEvent, quiet: bool, upstream: &Interface) {
    let line = match e {
        DriverEvent::JoinFailed { source, group, error } => {
            eprintln!("{NAME}: error: cannot join {} on {upstream}: {error}", channel(*source, *group));
            return;
        }
        _ if quiet => return,
        DriverEvent::Relay(RelayEvent::Join { source, group }) => {
            format!("join {} on {upstream}", channel(*source, *group))
        }
        DriverEvent::Relay(RelayEvent::Leave { source, group }) => {
            format!("leave {} on {upstream}", channel(*source, *group))
        }
        DriverEvent::Relay(RelayEvent::GatewayJoined { gateway, source, group }) => {
            format!("gateway {gateway} joined {}", channel(*source, *group))
        }
        DriverEvent::Relay(RelayEvent::GatewayLeft { gateway, source, group, reason }) => {
            let why = match reason {
                LeaveReason::Report => "report",
                LeaveReason::Expired => "expired",
                LeaveReason::Teardown => "teardown",
                LeaveReason::Restart => "restart",
            };
            format!("gateway {gateway} left {} ({why})", channel(*source, *group))
        }
    };
    eprintln!("{NAME}: {line}");
}

fn stats_line(s: &DriverStats) -> String {
    let r = &s.relay;
    format!(
        "gateways {} channels {} joined {} | rx discovery {} request {} update {} teardown {} | \
         tx advertisement {} query {} data {} | data packets {} bytes {} no-subscriber {} captured {} | \
         mac-failures {} malformed {} refused {} (gateways {} per-address {} budget {} channels {} global {} \
         sources {}) state {} KiB | send-errors {} join-errors {}",
        s.gateways,
        s.channels,
        s.memberships,
        r.rx.relay_discovery,
        r.rx.request,
        r.rx.membership_update,
        r.rx.teardown,
        r.tx.relay_advertisement,
        r.tx.membership_query,
        r.tx.multicast_data,
        r.data_packets,
        r.data_bytes,
        r.data_no_subscriber,
        s.captured,
        r.mac_failures,
        r.malformed,
        r.refused_gateways
            + r.refused_gateways_per_source
            + r.refused_budget
            + r.refused_channels
            + r.refused_channels_global
            + r.refused_sources,
        r.refused_gateways,
        r.refused_gateways_per_source,
        r.refused_budget,
        r.refused_channels,
        r.refused_channels_global,
        r.refused_sources,
        s.state_bytes / 1024,
        s.send_errors,
        s.join_errors,
    )
}
