//! The relay's tokio driver: a [`Relay`] over UDP sockets, native joins on
//! the upstream interface, native data capture, and a [`RelayHandle`] for the
//! binary and for tests.
//!
//! - **Listening**: one UDP socket per [`DriverConfig::listen`] address (the
//!   binary defaults the port to 2268). A datagram is handed to the relay with
//!   the address of the socket it arrived on, and replies go out of the socket
//!   bound to the address the relay names, so an Advertisement comes from the
//!   address its Discovery was sent to (bind specific addresses for that: a
//!   wildcard socket replies from whatever address the kernel picks).
//! - **Joins**: on [`RelayEvent::Join`] the driver joins (S,G) (SSM) or
//!   (*,G) (ASM) on the upstream interface with `h3m_net::open_receiver`; on
//!   [`RelayEvent::Leave`] it closes those sockets, which leaves.
//! - **Capture** ([`CaptureMode`]): every UDP port of a joined group is
//!   forwarded when raw sockets are permitted (`CAP_NET_RAW`). IPv4: a
//!   `SOCK_RAW`/`IPPROTO_UDP` socket bound to the upstream device delivers the
//!   whole IP packet, forwarded byte for byte (as amtrelayd `-e` does). IPv6:
//!   the raw socket delivers the UDP header and payload; the IPv6 header is
//!   rebuilt with [`inner::build_udp`] from the source address, the
//!   destination from `IPV6_PKTINFO` and hop limit 1 (the received hop limit
//!   is not reported), which keeps the UDP header and payload byte for byte.
//!   Raw sockets see every UDP packet of the interface: only multicast
//!   destinations are passed on, and the relay forwards only what some gateway
//!   wants. Raw sockets also see datagrams whose UDP checksum a sender with
//!   checksum offload left as the bare pseudo-header sum (virtual links such
//!   as veth never complete it): that checksum is completed (the only octets
//!   changed); a checksum that is simply wrong drops the datagram. Without the privilege the driver falls back to ordinary UDP
//!   sockets, one per joined channel and [`DriverConfig::capture_ports`] port,
//!   rebuilding each datagram (TTL 1) from its source and group:port; it says
//!   so in [`RelayHandle::warnings`].
//! - **Data** goes out of the listening socket the gateway's Updates arrive on.
//!
//! Nothing here is `unsafe`: the raw sockets are read through the ordinary
//! UDP socket types (recvfrom and recvmsg behave the same on them), the IPv6
//! one through `h3m_net::RecvSocket`, which reports the pktinfo destination.

use std::collections::BTreeMap;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::task::{Context, Poll};
use std::time::Instant;

use h3m_net::{Interface, MulticastConfig, NetError, RecvBatch, RecvSocket, open_receiver};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::checksum;
use crate::gateway::{Channel, Rng, SystemRng};
use crate::inner::{self, InnerError};
use crate::relay::{DataRoute, Faults, GatewaySummary, Relay, RelayConfig, RelayEvent, RelayStats};

/// Datagrams read from one socket before looking at the others.
const BATCH: usize = 64;
/// Receive buffer requested for the raw capture sockets.
const RAW_RECV_BUFFER: usize = 4 << 20;
/// Hop limit / TTL of rebuilt packets (IPv6 raw capture, port capture).
const REBUILT_TTL: u8 = 1;

/// How native multicast data is captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureMode {
    /// No native joins and no capture (injection only).
    Off,
    /// Raw sockets when permitted, else UDP sockets on the capture ports.
    Auto,
    /// Raw sockets; an error when not permitted.
    Raw,
    /// UDP sockets on the capture ports only.
    Ports,
}

/// The capture actually in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capture {
    /// Nothing is captured (no upstream interface, [`CaptureMode::Off`], or no way to).
    None,
    /// Raw sockets: every UDP port of the joined groups.
    Raw {
        /// IPv4 capture works.
        ipv4: bool,
        /// IPv6 capture works.
        ipv6: bool,
    },
    /// UDP sockets on these ports of the joined groups.
    Ports(Vec<u16>),
}

impl std::fmt::Display for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Capture::None => f.write_str("none"),
            Capture::Raw { ipv4, ipv6 } => {
                let fams: Vec<&str> = [(*ipv4, "IPv4"), (*ipv6, "IPv6")].iter().filter(|x| x.0).map(|x| x.1).collect();
                write!(f, "raw ({}), every UDP port", fams.join(" and "))
            }
            Capture::Ports(p) => {
                let ports: Vec<String> = p.iter().map(u16::to_string).collect();
                write!(f, "UDP ports {}", ports.join(", "))
            }
        }
    }
}

/// Driver settings.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// The relay state machine's settings.
    pub relay: RelayConfig,
    /// Addresses (and ports) to listen on; at least one.
    pub listen: Vec<SocketAddr>,
    /// Where to join and capture natively; `None`: nowhere (injection only).
    pub upstream: Option<Interface>,
    /// How to capture.
    pub capture: CaptureMode,
    /// Ports captured when raw sockets are not used.
    pub capture_ports: Vec<u16>,
    /// Events buffered per [`RelayHandle::events`] receiver before the oldest are lost.
    pub event_capacity: usize,
}

impl DriverConfig {
    /// Listening on `listen`, no upstream, [`CaptureMode::Auto`], no capture ports.
    pub fn new(relay: RelayConfig, listen: Vec<SocketAddr>) -> Self {
        DriverConfig {
            relay,
            listen,
            upstream: None,
            capture: CaptureMode::Auto,
            capture_ports: Vec::new(),
            event_capacity: 1024,
        }
    }
}

/// Why the driver could not start, or a handle's request failed.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// [`DriverConfig::listen`] is empty.
    #[error("no address to listen on")]
    NoListen,
    /// A listening socket could not be opened.
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        error: io::Error,
    },
    /// The upstream interface does not resolve.
    #[error("upstream interface: {0}")]
    Interface(#[source] NetError),
    /// Capture was asked for without an upstream interface, or ports capture without ports.
    #[error("{0}")]
    CaptureConfig(&'static str),
    /// A capture socket could not be opened ([`CaptureMode::Raw`]).
    #[error("cannot open the {what} capture socket: {error}")]
    Capture {
        /// Which one.
        what: &'static str,
        /// The error.
        #[source]
        error: io::Error,
    },
    /// The datagram to inject could not be built.
    #[error("cannot inject: {0}")]
    Inject(#[from] InnerError),
    /// The driver is not running any more.
    #[error("the relay driver has stopped")]
    Stopped,
}

/// What the driver reports to [`RelayHandle::events`] receivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverEvent {
    /// An event of the relay state machine (after the driver acted on it).
    Relay(RelayEvent),
    /// A native join failed (the channel stays wanted; data will not come).
    JoinFailed {
        /// S, or `None` for (*,G).
        source: Option<IpAddr>,
        /// G.
        group: IpAddr,
        /// What went wrong.
        error: String,
    },
}

/// Counters of the relay and of the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverStats {
    /// The state machine's counters.
    pub relay: RelayStats,
    /// Gateways with state.
    pub gateways: usize,
    /// Channels the relay wants joined.
    pub channels: usize,
    /// Channels joined on the upstream interface.
    pub memberships: usize,
    /// The capture in use.
    pub capture: Capture,
    /// Native multicast packets captured.
    pub captured: u64,
    /// Captured packets that could not be rebuilt (IPv6 or port capture).
    pub capture_invalid: u64,
    /// Native joins that failed.
    pub join_errors: u64,
    /// Datagrams the kernel refused to send (or no socket for the source address).
    pub send_errors: u64,
    /// Receive errors.
    pub recv_errors: u64,
}

enum Command {
    Inject {
        source: SocketAddr,
        group: SocketAddr,
        ttl: u8,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<usize, InnerError>>,
    },
    SetFaults(Faults, oneshot::Sender<()>),
    Restart(oneshot::Sender<()>),
    RotateSecret(oneshot::Sender<()>),
    Stats(oneshot::Sender<DriverStats>),
    Gateways(oneshot::Sender<Vec<GatewaySummary>>),
    Shutdown(oneshot::Sender<DriverStats>),
}

/// Controls a running driver (cheap to clone). The driver stops when
/// [`RelayHandle::shutdown`] is called or every handle is dropped.
#[derive(Debug, Clone)]
pub struct RelayHandle {
    commands: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<DriverEvent>,
    local: Vec<SocketAddr>,
    capture: Capture,
    warnings: Vec<String>,
}

impl RelayHandle {
    /// The addresses the listening sockets are bound to (ports resolved).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }

    /// The capture in use.
    pub fn capture(&self) -> &Capture {
        &self.capture
    }

    /// Problems met at start that did not stop the driver (e.g. no raw sockets).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// A receiver of every event from now on.
    pub fn events(&self) -> broadcast::Receiver<DriverEvent> {
        self.events.subscribe()
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, DriverError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).map_err(|_| DriverError::Stopped)?;
        rx.await.map_err(|_| DriverError::Stopped)
    }

    /// Sends `payload` as a UDP datagram from `source` to `group` (hop limit
    /// `ttl`) to every gateway that wants it, as if captured natively; returns
    /// how many gateways that is.
    pub async fn inject(
        &self,
        source: SocketAddr,
        group: SocketAddr,
        ttl: u8,
        payload: &[u8],
    ) -> Result<usize, DriverError> {
        let payload = payload.to_vec();
        Ok(self.ask(|reply| Command::Inject { source, group, ttl, payload, reply }).await??)
    }

    /// Sets the faults ([`Relay::set_faults`]).
    pub async fn set_faults(&self, faults: Faults) -> Result<(), DriverError> {
        self.ask(|reply| Command::SetFaults(faults, reply)).await
    }

    /// Restarts the relay: state forgotten, new secret ([`Relay::restart`]).
    pub async fn restart(&self) -> Result<(), DriverError> {
        self.ask(Command::Restart).await
    }

    /// Rotates the MAC secret now ([`Relay::rotate_secret`]).
    pub async fn rotate_secret(&self) -> Result<(), DriverError> {
        self.ask(Command::RotateSecret).await
    }

    /// The counters.
    pub async fn stats(&self) -> Result<DriverStats, DriverError> {
        self.ask(Command::Stats).await
    }

    /// The gateways with state.
    pub async fn gateways(&self) -> Result<Vec<GatewaySummary>, DriverError> {
        self.ask(Command::Gateways).await
    }

    /// Stops the driver (native memberships are left, nothing is sent to
    /// gateways) and returns the final counters.
    pub async fn shutdown(&self) -> Result<DriverStats, DriverError> {
        self.ask(Command::Shutdown).await
    }
}

struct Listener {
    local: SocketAddr,
    socket: UdpSocket,
}

/// What holds a native membership.
enum Membership {
    /// Raw capture: a socket that only holds the join (closing it leaves).
    Hold { _join: std::net::UdpSocket },
    /// Port capture: one joined, read socket per port.
    Ports(Vec<(u16, UdpSocket)>),
}

#[derive(Debug, Default)]
struct Counters {
    captured: u64,
    capture_invalid: u64,
    join_errors: u64,
    send_errors: u64,
    recv_errors: u64,
}

/// The driver's task: run it with [`RelayDriver::run`] (or use [`spawn`]).
pub struct RelayDriver {
    relay: Relay,
    listen: Vec<Listener>,
    upstream: Option<Interface>,
    capture: Capture,
    raw_v4: Option<UdpSocket>,
    raw_v6: Option<(RecvSocket, Box<RecvBatch>)>,
    joins: BTreeMap<Channel, Membership>,
    commands: mpsc::UnboundedReceiver<Command>,
    events: broadcast::Sender<DriverEvent>,
    buf: Vec<u8>,
    packet: Vec<u8>,
    message: Vec<u8>,
    counters: Counters,
}

impl std::fmt::Debug for RelayDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayDriver")
            .field("relay", &self.relay)
            .field("listen", &self.listen.iter().map(|l| l.local).collect::<Vec<_>>())
            .field("capture", &self.capture)
            .finish_non_exhaustive()
    }
}

/// Opens the sockets (in the calling thread's network namespace; inside a
/// tokio runtime) and returns the driver to run and its handle.
pub fn bind(config: DriverConfig) -> Result<(RelayDriver, RelayHandle), DriverError> {
    bind_with_rng(config, Box::new(SystemRng::default()))
}

/// [`bind`] with a given random source for the MAC secrets.
pub fn bind_with_rng(
    config: DriverConfig,
    rng: Box<dyn Rng + Send>,
) -> Result<(RelayDriver, RelayHandle), DriverError> {
    if config.listen.is_empty() {
        return Err(DriverError::NoListen);
    }
    match (config.capture, &config.upstream) {
        (CaptureMode::Raw | CaptureMode::Ports, None) => {
            return Err(DriverError::CaptureConfig("capture needs an upstream interface"));
        }
        (CaptureMode::Ports, Some(_)) if config.capture_ports.is_empty() => {
            return Err(DriverError::CaptureConfig("ports capture needs at least one capture port"));
        }
        _ => {}
    }
    let mut listen = Vec::with_capacity(config.listen.len());
    for &addr in &config.listen {
        let socket = listen_socket(addr).map_err(|error| DriverError::Listen { addr, error })?;
        let local = socket.local_addr().map_err(|error| DriverError::Listen { addr, error })?;
        listen.push(Listener { local, socket });
    }
    let mut warnings = Vec::new();
    let (capture, raw_v4, raw_v6) = open_capture(&config, &mut warnings)?;
    let (commands_tx, commands) = mpsc::unbounded_channel();
    let (events, _) = broadcast::channel(config.event_capacity.max(1));
    let handle = RelayHandle {
        commands: commands_tx,
        events: events.clone(),
        local: listen.iter().map(|l| l.local).collect(),
        capture: capture.clone(),
        warnings,
    };
    let driver = RelayDriver {
        relay: Relay::new(config.relay, rng, Instant::now()),
        listen,
        upstream: config.upstream,
        capture,
        raw_v4,
        raw_v6,
        joins: BTreeMap::new(),
        commands,
        events,
        buf: vec![0; 65_536],
        packet: Vec::with_capacity(65_536),
        message: Vec::with_capacity(65_536),
        counters: Counters::default(),
    };
    Ok((driver, handle))
}

/// [`bind`], then runs the driver on a new tokio task.
pub fn spawn(config: DriverConfig) -> Result<RelayHandle, DriverError> {
    let (driver, handle) = bind(config)?;
    tokio::spawn(driver.run());
    Ok(handle)
}

fn listen_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

fn open_raw(domain: Domain, device: &str) -> io::Result<Socket> {
    let s = Socket::new(domain, Type::RAW, Some(Protocol::UDP))?;
    s.bind_device(Some(device.as_bytes()))?;
    // Best effort: a larger buffer rides out bursts.
    let _ = s.set_recv_buffer_size(RAW_RECV_BUFFER);
    s.set_nonblocking(true)?;
    Ok(s)
}

type Opened = (Capture, Option<UdpSocket>, Option<(RecvSocket, Box<RecvBatch>)>);

fn open_capture(config: &DriverConfig, warnings: &mut Vec<String>) -> Result<Opened, DriverError> {
    let Some(upstream) = &config.upstream else { return Ok((Capture::None, None, None)) };
    upstream.index().map_err(DriverError::Interface)?;
    let device = upstream.name().map_err(DriverError::Interface)?;
    let ports = || {
        let mut p = config.capture_ports.clone();
        p.sort_unstable();
        p.dedup();
        p
    };
    match config.capture {
        CaptureMode::Off => return Ok((Capture::None, None, None)),
        CaptureMode::Ports => return Ok((Capture::Ports(ports()), None, None)),
        CaptureMode::Raw | CaptureMode::Auto => {}
    }
    let v4 = open_raw(Domain::IPV4, &device).and_then(|s| UdpSocket::from_std(s.into()));
    let v4 = match (v4, config.capture) {
        (Ok(s), _) => s,
        (Err(error), CaptureMode::Raw) => return Err(DriverError::Capture { what: "raw IPv4", error }),
        (Err(error), _) => {
            let why = if error.kind() == io::ErrorKind::PermissionDenied {
                "raw sockets are not permitted (needs CAP_NET_RAW)".to_owned()
            } else {
                format!("cannot open a raw socket: {error}")
            };
            if config.capture_ports.is_empty() {
                warnings.push(format!("{why}, and no capture port is given: no native data will be forwarded"));
                return Ok((Capture::None, None, None));
            }
            let p = ports();
            let list: Vec<String> = p.iter().map(u16::to_string).collect();
            warnings.push(format!("{why}: capturing only UDP ports {} of the joined groups", list.join(", ")));
            return Ok((Capture::Ports(p), None, None));
        }
    };
    let v6 = open_raw(Domain::IPV6, &device).and_then(|s| RecvSocket::from_std(s.into()));
    let v6 = match (v6, config.capture) {
        (Ok(s), _) => Some((s, Box::new(RecvBatch::new()))),
        (Err(error), CaptureMode::Raw) => return Err(DriverError::Capture { what: "raw IPv6", error }),
        (Err(error), _) => {
            warnings.push(format!("cannot open the raw IPv6 capture socket ({error}): no native IPv6 data"));
            None
        }
    };
    Ok((Capture::Raw { ipv4: true, ipv6: v6.is_some() }, Some(v4), v6))
}

enum Wake {
    Command(Option<Command>),
    Io,
    Timer,
}

impl RelayDriver {
    /// The addresses the listening sockets are bound to.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listen.iter().map(|l| l.local).collect()
    }

    /// Runs until [`RelayHandle::shutdown`] or until every handle is dropped.
    pub async fn run(mut self) {
        loop {
            self.flush().await;
            let deadline = self.relay.poll_timeout();
            let wake = {
                let io = poll_fn(|cx| poll_io(cx, &self.listen, &self.raw_v4, &self.raw_v6, &self.joins));
                tokio::select! {
                    c = self.commands.recv() => Wake::Command(c),
                    () = io => Wake::Io,
                    () = sleep_until(deadline) => Wake::Timer,
                }
            };
            match wake {
                Wake::Command(None) => break,
                Wake::Command(Some(Command::Shutdown(reply))) => {
                    self.flush().await;
                    self.joins.clear();
                    let _ = reply.send(self.stats());
                    break;
                }
                Wake::Command(Some(c)) => self.command(c),
                Wake::Io => self.drain().await,
                Wake::Timer => self.relay.handle_timeout(Instant::now()),
            }
        }
    }

    fn command(&mut self, c: Command) {
        let now = Instant::now();
        match c {
            Command::Inject { source, group, ttl, payload, reply } => {
                let _ = reply.send(self.relay.inject(now, source, group, ttl, &payload));
            }
            Command::SetFaults(f, reply) => {
                self.relay.set_faults(now, f);
                let _ = reply.send(());
            }
            Command::Restart(reply) => {
                self.relay.restart(now);
                let _ = reply.send(());
            }
            Command::RotateSecret(reply) => {
                self.relay.rotate_secret(now);
                let _ = reply.send(());
            }
            Command::Stats(reply) => {
                let _ = reply.send(self.stats());
            }
            Command::Gateways(reply) => {
                let _ = reply.send(self.relay.gateways());
            }
            Command::Shutdown(reply) => {
                let _ = reply.send(self.stats());
            }
        }
    }

    fn stats(&self) -> DriverStats {
        DriverStats {
            relay: self.relay.stats().clone(),
            gateways: self.relay.gateway_count(),
            channels: self.relay.joined().count(),
            memberships: self.joins.len(),
            capture: self.capture.clone(),
            captured: self.counters.captured,
            capture_invalid: self.counters.capture_invalid,
            join_errors: self.counters.join_errors,
            send_errors: self.counters.send_errors,
            recv_errors: self.counters.recv_errors,
        }
    }

    /// Sends what the relay queued and acts on its events.
    async fn flush(&mut self) {
        while let Some(t) = self.relay.poll_transmit() {
            let sent = match pick(&self.listen, t.source) {
                Some(s) => s.send_to(&t.payload, t.destination).await.map(|_| ()),
                None => Err(io::Error::from(io::ErrorKind::AddrNotAvailable)),
            };
            if sent.is_err() {
                self.counters.send_errors += 1;
            }
        }
        while let Some(e) = self.relay.poll_event() {
            match e {
                RelayEvent::Join { source, group } => self.join(Channel { source, group }),
                RelayEvent::Leave { source, group } => {
                    self.joins.remove(&Channel { source, group });
                }
                _ => {}
            }
            let _ = self.events.send(DriverEvent::Relay(e));
        }
    }

    fn join(&mut self, channel: Channel) {
        let Some(upstream) = &self.upstream else { return };
        let config = |port: u16| MulticastConfig {
            source: channel.source,
            interface: Some(upstream.clone()),
            ..MulticastConfig::new(SocketAddr::new(channel.group, port))
        };
        let mut errors = Vec::new();
        let membership = match &self.capture {
            Capture::None => return,
            Capture::Raw { .. } => {
                // Only holds the join: bound to an unused port, small buffer.
                let cfg = MulticastConfig { recv_buffer: None, ..config(0) };
                match open_receiver(&cfg) {
                    Ok((s, _)) => Some(Membership::Hold { _join: s }),
                    Err(e) => {
                        errors.push(e.to_string());
                        None
                    }
                }
            }
            Capture::Ports(ports) => {
                let mut sockets = Vec::new();
                for &port in ports {
                    match open_receiver(&config(port))
                        .map_err(|e| e.to_string())
                        .and_then(|(s, _)| UdpSocket::from_std(s).map_err(|e| format!("registering the socket: {e}")))
                    {
                        Ok(s) => sockets.push((port, s)),
                        Err(e) => errors.push(format!("port {port}: {e}")),
                    }
                }
                (!sockets.is_empty()).then_some(Membership::Ports(sockets))
            }
        };
        if let Some(m) = membership {
            self.joins.insert(channel, m);
        }
        for error in errors {
            self.counters.join_errors += 1;
            let _ = self.events.send(DriverEvent::JoinFailed { source: channel.source, group: channel.group, error });
        }
    }

    /// Reads whatever is waiting on every socket.
    async fn drain(&mut self) {
        for i in 0..self.listen.len() {
            for _ in 0..BATCH {
                let l = &self.listen[i];
                match l.socket.try_recv_from(&mut self.buf) {
                    Ok((n, from)) => {
                        let data = self.buf.get(..n).unwrap_or_default();
                        self.relay.handle_datagram(Instant::now(), l.local, from, data);
                    }
                    Err(e) => {
                        if e.kind() != io::ErrorKind::WouldBlock {
                            self.counters.recv_errors += 1;
                        }
                        break;
                    }
                }
            }
        }
        self.drain_raw().await;
        self.drain_ports().await;
    }

    async fn drain_raw(&mut self) {
        if let Some(raw) = &self.raw_v4 {
            for _ in 0..BATCH {
                match raw.try_recv_from(&mut self.buf) {
                    Ok((n, _)) => {
                        let packet = self.buf.get(..n).unwrap_or_default();
                        if !is_ipv4_multicast(packet) {
                            continue;
                        }
                        self.counters.captured += 1;
                        let packet = match check_ipv4_udp(packet) {
                            Some(UdpSum::Valid) => packet,
                            Some(UdpSum::Partial(sum)) => {
                                // Byte for byte, but with the checksum the sender's offload left undone.
                                self.packet.clear();
                                self.packet.extend_from_slice(packet);
                                let at = usize::from(packet[0] & 0x0f) * 4 + 6;
                                if let Some(f) = self.packet.get_mut(at..at + 2) {
                                    f.copy_from_slice(&sum.to_be_bytes());
                                }
                                &self.packet
                            }
                            None => {
                                self.counters.capture_invalid += 1;
                                continue;
                            }
                        };
                        let routes = self.relay.forward(Instant::now(), packet, &mut self.message);
                        send_data(&self.listen, &self.message, routes, &mut self.counters).await;
                    }
                    Err(e) => {
                        if e.kind() != io::ErrorKind::WouldBlock {
                            self.counters.recv_errors += 1;
                        }
                        break;
                    }
                }
            }
        }
        if let Some((raw, batch)) = &mut self.raw_v6 {
            match raw.try_recv_batch(batch) {
                Ok(_) => {
                    for d in batch.iter() {
                        let Some(dst @ IpAddr::V6(g)) = d.destination else { continue };
                        if !g.is_multicast() {
                            continue;
                        }
                        self.counters.captured += 1;
                        self.packet.clear();
                        if rebuild_v6(d.source.ip(), dst, d.payload, &mut self.packet).is_err() {
                            self.counters.capture_invalid += 1;
                            continue;
                        }
                        let routes = self.relay.forward(Instant::now(), &self.packet, &mut self.message);
                        send_data(&self.listen, &self.message, routes, &mut self.counters).await;
                    }
                }
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        self.counters.recv_errors += 1;
                    }
                }
            }
        }
    }

    async fn drain_ports(&mut self) {
        for (channel, m) in &self.joins {
            let Membership::Ports(sockets) = m else { continue };
            // An (S,G) socket's datagrams also reach the (*,G) socket of the
            // same port: take them from that one only.
            let shadowed =
                channel.source.is_some() && self.joins.contains_key(&Channel { source: None, group: channel.group });
            for (port, socket) in sockets {
                for _ in 0..BATCH {
                    match socket.try_recv_from(&mut self.buf) {
                        Ok((n, from)) => {
                            if shadowed {
                                continue;
                            }
                            self.counters.captured += 1;
                            self.packet.clear();
                            let to = SocketAddr::new(channel.group, *port);
                            let from = SocketAddr::new(from.ip().to_canonical(), from.port());
                            let payload = self.buf.get(..n).unwrap_or_default();
                            if inner::build_udp(from, to, REBUILT_TTL, payload, &mut self.packet).is_err() {
                                self.counters.capture_invalid += 1;
                                continue;
                            }
                            let routes = self.relay.forward(Instant::now(), &self.packet, &mut self.message);
                            send_data(&self.listen, &self.message, routes, &mut self.counters).await;
                        }
                        Err(e) => {
                            if e.kind() != io::ErrorKind::WouldBlock {
                                self.counters.recv_errors += 1;
                            }
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// Whether a raw IPv4 read is an IPv4 packet to a multicast group.
fn is_ipv4_multicast(packet: &[u8]) -> bool {
    match packet.get(16..20) {
        Some(&[a, b, c, d]) => packet[0] >> 4 == 4 && Ipv4Addr::new(a, b, c, d).is_multicast(),
        _ => false,
    }
}

/// What the UDP checksum of a captured datagram says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UdpSum {
    /// It verifies (or is absent: zero).
    Valid,
    /// It holds only the pseudo-header sum: the sender's checksum offload
    /// left it for the NIC, which a virtual link (veth) never ran. The value
    /// is the correct checksum.
    Partial(u16),
}

/// The checksum state of `udp` (header + payload, exactly the UDP length)
/// under `pseudo`; `None`: corrupt.
fn udp_sum(pseudo: &[u8], udp: &[u8]) -> Option<UdpSum> {
    let field = u16::from_be_bytes([*udp.get(6)?, *udp.get(7)?]);
    if field == 0 || checksum::verify(&[pseudo, udp]) {
        return Some(UdpSum::Valid);
    }
    // Partial: the field is the (uncomplemented) folded pseudo-header sum.
    let partial = !checksum::internet_checksum(&[pseudo]);
    let same = field == partial || (field | partial == 0xffff && field & partial == 0);
    if !same {
        return None;
    }
    let sum = match checksum::internet_checksum(&[pseudo, &udp[..6], &[0, 0], &udp[8..]]) {
        0 => 0xffff,
        s => s,
    };
    Some(UdpSum::Partial(sum))
}

/// Checks a raw IPv4 capture: IPv4, UDP, lengths consistent; the state of its UDP checksum.
fn check_ipv4_udp(packet: &[u8]) -> Option<UdpSum> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
    if ihl < 20 || *packet.get(9)? != 17 || total > packet.len() || total < ihl + 8 {
        return None;
    }
    let udp = packet.get(ihl..total)?;
    let ulen = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    let udp = udp.get(..ulen).filter(|_| ulen >= 8)?;
    let mut pseudo = [0u8; 12];
    pseudo[..8].copy_from_slice(packet.get(12..20)?);
    pseudo[9] = 17;
    pseudo[10..].copy_from_slice(&udp[4..6]);
    udp_sum(&pseudo, udp)
}

/// Rebuilds the IPv6 packet around what a raw IPv6 UDP socket delivers (UDP
/// header + payload): source from recvfrom, destination from pktinfo. The
/// original checksum must verify (or be a partial offload sum): the rebuilt
/// packet gets a fresh one.
fn rebuild_v6(source: IpAddr, destination: IpAddr, udp: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (source, destination) else { return Err(()) };
    let h: &[u8; 8] = udp.first_chunk().ok_or(())?;
    let (sport, dport) = (u16::from_be_bytes([h[0], h[1]]), u16::from_be_bytes([h[2], h[3]]));
    let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let udp = udp.get(..len).filter(|_| len >= 8).ok_or(())?;
    let mut pseudo = [0u8; 40];
    pseudo[..16].copy_from_slice(&s.octets());
    pseudo[16..32].copy_from_slice(&d.octets());
    pseudo[32..36].copy_from_slice(&(len as u32).to_be_bytes());
    pseudo[39] = 17;
    udp_sum(&pseudo, udp).ok_or(())?;
    let payload = udp.get(8..).ok_or(())?;
    inner::build_udp(SocketAddr::new(source, sport), SocketAddr::new(destination, dport), REBUILT_TTL, payload, out)
        .map_err(|_| ())
}

/// The listening socket to send from: the one bound to `source`, else a
/// wildcard one of its family and port, else any of its family.
fn pick(listen: &[Listener], source: SocketAddr) -> Option<&UdpSocket> {
    listen
        .iter()
        .find(|l| l.local == source)
        .or_else(|| {
            listen.iter().find(|l| {
                l.local.is_ipv6() == source.is_ipv6()
                    && l.local.port() == source.port()
                    && l.local.ip().is_unspecified()
            })
        })
        .or_else(|| listen.iter().find(|l| l.local.is_ipv6() == source.is_ipv6()))
        .map(|l| &l.socket)
}

async fn send_data(listen: &[Listener], message: &[u8], routes: &[DataRoute], counters: &mut Counters) {
    for r in routes {
        let sent = match pick(listen, r.source) {
            Some(s) => s.send_to(message, r.destination).await.map(|_| ()),
            None => Err(io::Error::from(io::ErrorKind::AddrNotAvailable)),
        };
        if sent.is_err() {
            counters.send_errors += 1;
        }
    }
}

/// Ready when any socket has something to read.
fn poll_io(
    cx: &mut Context<'_>,
    listen: &[Listener],
    raw_v4: &Option<UdpSocket>,
    raw_v6: &Option<(RecvSocket, Box<RecvBatch>)>,
    joins: &BTreeMap<Channel, Membership>,
) -> Poll<()> {
    let mut ready = false;
    let mut poll = |s: &UdpSocket| ready |= s.poll_recv_ready(cx).is_ready();
    for l in listen {
        poll(&l.socket);
    }
    if let Some(s) = raw_v4 {
        poll(s);
    }
    if let Some((s, _)) = raw_v6 {
        poll(s.get_ref());
    }
    for m in joins.values() {
        if let Membership::Ports(sockets) = m {
            for (_, s) in sockets {
                poll(s);
            }
        }
    }
    if ready { Poll::Ready(()) } else { Poll::Pending }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet_v4(payload: &[u8]) -> Vec<u8> {
        let mut p = Vec::new();
        inner::build_udp("10.0.0.1:4000".parse().unwrap(), "232.1.1.1:5001".parse().unwrap(), 1, payload, &mut p)
            .unwrap();
        p
    }

    /// What a sender with checksum offload puts in the field: the folded pseudo-header sum.
    fn partial_v4(p: &mut [u8]) {
        let mut pseudo = [0u8; 12];
        pseudo[..8].copy_from_slice(&p[12..20]);
        pseudo[9] = 17;
        pseudo[10..].copy_from_slice(&p[24..26]);
        let partial = !checksum::internet_checksum(&[&pseudo]);
        p[26..28].copy_from_slice(&partial.to_be_bytes());
    }

    #[test]
    fn ipv4_checksums_valid_partial_and_corrupt() {
        let p = packet_v4(b"hello, relay");
        assert_eq!(check_ipv4_udp(&p), Some(UdpSum::Valid));
        let good = u16::from_be_bytes([p[26], p[27]]);
        let mut q = p.clone();
        partial_v4(&mut q);
        assert_eq!(check_ipv4_udp(&q), Some(UdpSum::Partial(good)));
        let mut zero = p.clone();
        zero[26..28].fill(0);
        assert_eq!(check_ipv4_udp(&zero), Some(UdpSum::Valid), "zero: no checksum (IPv4)");
        let mut bad = p.clone();
        bad[30] ^= 0x40;
        assert_eq!(check_ipv4_udp(&bad), None);
        // Not UDP, truncated, inconsistent lengths.
        let mut tcp = p.clone();
        tcp[9] = 6;
        assert_eq!(check_ipv4_udp(&tcp), None);
        assert_eq!(check_ipv4_udp(&p[..20]), None);
        assert_eq!(check_ipv4_udp(&p[..p.len() - 1]), None);
        assert_eq!(check_ipv4_udp(&[]), None);
        assert!(is_ipv4_multicast(&p));
        let mut uni = p.clone();
        uni[16] = 10;
        assert!(!is_ipv4_multicast(&uni));
        assert!(!is_ipv4_multicast(&p[..19]));
    }

    #[test]
    fn ipv6_rebuild_keeps_the_udp_datagram() {
        let (s, d) = (IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, 1]), IpAddr::from([0xff3e, 0, 0, 0, 0, 0, 0x8000, 1]));
        let mut original = Vec::new();
        inner::build_udp(SocketAddr::new(s, 4000), SocketAddr::new(d, 5001), 1, b"payload", &mut original).unwrap();
        let udp = &original[40..];
        let mut out = Vec::new();
        rebuild_v6(s, d, udp, &mut out).unwrap();
        assert_eq!(out, original, "same header fields: identical");
        // A partial checksum is recomputed, a corrupt one refused, short input refused.
        let mut pseudo = [0u8; 40];
        pseudo[..16].copy_from_slice(&original[8..24]);
        pseudo[16..32].copy_from_slice(&original[24..40]);
        pseudo[32..36].copy_from_slice(&(udp.len() as u32).to_be_bytes());
        pseudo[39] = 17;
        let mut partial = udp.to_vec();
        partial[6..8].copy_from_slice(&(!checksum::internet_checksum(&[&pseudo])).to_be_bytes());
        out.clear();
        rebuild_v6(s, d, &partial, &mut out).unwrap();
        assert_eq!(out, original);
        let mut bad = udp.to_vec();
        bad[9] ^= 1;
        assert!(rebuild_v6(s, d, &bad, &mut Vec::new()).is_err());
        assert!(rebuild_v6(s, d, &udp[..7], &mut Vec::new()).is_err());
        assert!(rebuild_v6(s, d, &udp[..udp.len() - 1], &mut Vec::new()).is_err());
        assert!(rebuild_v6(IpAddr::from([10, 0, 0, 1]), d, udp, &mut Vec::new()).is_err());
    }

    #[tokio::test]
    async fn replies_leave_from_the_socket_of_their_source_address() {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.2:0").await.unwrap();
        let w = UdpSocket::bind("0.0.0.0:0").await.unwrap();
        let (la, lb, lw) = (a.local_addr().unwrap(), b.local_addr().unwrap(), w.local_addr().unwrap());
        let listen = vec![
            Listener { local: la, socket: a },
            Listener { local: lb, socket: b },
            Listener { local: lw, socket: w },
        ];
        let local = |s: &UdpSocket| s.local_addr().unwrap();
        assert_eq!(pick(&listen, lb).map(local), Some(lb));
        assert_eq!(pick(&listen, la).map(local), Some(la));
        assert_eq!(pick(&listen, SocketAddr::new([127, 0, 0, 9].into(), lw.port())).map(local), Some(lw));
        assert_eq!(pick(&listen, "127.0.0.9:1".parse().unwrap()).map(local), Some(la), "same family");
        assert!(pick(&listen, "[::1]:1".parse().unwrap()).is_none());
    }
}
