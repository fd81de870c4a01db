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
//!   forwarded when packet sockets are permitted (`CAP_NET_RAW`): one
//!   [`h3m_net::PacketCapture`] per IP version, an `AF_PACKET` socket bound
//!   to the upstream interface with a kernel filter passing only multicast
//!   UDP, and `PACKET_VNET_HDR`, so each packet comes with the kernel's
//!   offload metadata. That is the point: a sender using UDP GSO (`h3m-send`
//!   does) emits "super-packets", one IP/UDP header over many datagrams, which
//!   veth and loopback deliver unsegmented; a raw IP socket (what this driver
//!   used to read) sees one datagram, and a gateway would get only the first
//!   of each batch. [`relay_capture::split`] cuts a super-packet at the
//!   metadata's segment size into datagrams with valid checksums, completes
//!   the checksum a sender's offload left partial on a plain packet, and
//!   passes every other packet byte for byte (as amtrelayd `-e` does). Only
//!   arriving packets are captured (a sender on the relay host itself is seen
//!   when its packets arrive on the upstream interface, e.g. with `lo` as the
//!   upstream). Packets that make no sense are counted
//!   ([`DriverStats::capture_invalid`]) and dropped. Without the privilege the
//!   driver falls back to ordinary UDP sockets, one per joined channel and
//!   [`DriverConfig::capture_ports`] port, rebuilding each datagram (TTL 1)
//!   from its source and group:port (the kernel has segmented and checksummed
//!   by then); it says so in [`RelayHandle::warnings`].
//! - **Data** goes out of the listening socket the gateway's Updates arrive on.
//!
//! Nothing here is `unsafe`: the packet sockets come from h3m-net.

use std::collections::BTreeMap;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::task::{Context, Poll};
use std::time::Instant;

use h3m_net::{CaptureFamily, CapturedFrame, Interface, MulticastConfig, NetError, PacketCapture, open_receiver};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::gateway::{Channel, Rng, SystemRng};
use crate::inner::{self, InnerError};
use crate::relay::{DataRoute, Faults, GatewaySummary, Relay, RelayConfig, RelayEvent, RelayStats};
use crate::relay_capture::{self, Outcome, Segments, VNET_HDR_LEN, VnetHeader};

/// Datagrams read from one socket before looking at the others.
const BATCH: usize = 64;
/// Receive buffer requested for each packet capture socket (forced beyond `net.core.rmem_max` when
/// permitted): room for about a hundred 64 KiB super-packets.
const CAPTURE_RECV_BUFFER: usize = 8 << 20;
/// Capture read buffer: the virtio-net header, a link-layer header and the largest IP packet.
const CAPTURE_BUF: usize = VNET_HDR_LEN + 128 + 40 + 65_535;
/// TTL of the datagrams rebuilt by port capture.
const REBUILT_TTL: u8 = 1;

/// How native multicast data is captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureMode {
    /// No native joins and no capture (injection only).
    Off,
    /// Packet sockets (every UDP port) when permitted, else UDP sockets on the capture ports.
    Auto,
    /// Packet sockets (`AF_PACKET`, every UDP port); an error when not permitted.
    Raw,
    /// UDP sockets on the capture ports only.
    Ports,
}

/// The capture actually in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capture {
    /// Nothing is captured (no upstream interface, [`CaptureMode::Off`], or no way to).
    None,
    /// Packet sockets (`AF_PACKET` with offload metadata): every UDP port of the joined groups.
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
                write!(f, "raw (AF_PACKET, {}), every UDP port", fams.join(" and "))
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
    /// Ports captured when packet sockets are not used.
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
    /// The heap the membership state is charged for ([`Relay::state_bytes`]),
    /// against [`RelayConfig::max_state_bytes`](crate::relay::RelayConfig::max_state_bytes).
    pub state_bytes: usize,
    /// Channels joined on the upstream interface.
    pub memberships: usize,
    /// The capture in use.
    pub capture: Capture,
    /// Native multicast datagrams captured and handed to the relay (a GSO super-packet counts as the
    /// datagrams it is split into).
    pub captured: u64,
    /// GSO super-packets split into datagrams.
    pub capture_split: u64,
    /// Captured packets dropped as malformed or unsupported (bad offload header, truncated, fragment,
    /// datagram that could not be rebuilt by port capture).
    pub capture_invalid: u64,
    /// Packets the kernel dropped before the packet sockets were read (receive buffer full).
    pub capture_drops: u64,
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

    /// Problems met at start that did not stop the driver (e.g. no packet sockets).
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
    /// Packet capture: a socket that only holds the join (closing it leaves).
    Hold { _join: std::net::UdpSocket },
    /// Port capture: one joined, read socket per port.
    Ports(Vec<(u16, UdpSocket)>),
}

#[derive(Debug, Default)]
struct Counters {
    captured: u64,
    capture_split: u64,
    capture_invalid: u64,
    capture_drops: u64,
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
    capture_sockets: Vec<PacketCapture>,
    joins: BTreeMap<Channel, Membership>,
    commands: mpsc::UnboundedReceiver<Command>,
    events: broadcast::Sender<DriverEvent>,
    buf: Vec<u8>,
    frame: Vec<u8>,
    segments: Segments,
    packet_buf: Vec<u8>,
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
    let (capture, capture_sockets) = open_capture(&config, &mut warnings)?;
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
        capture_sockets,
        joins: BTreeMap::new(),
        commands,
        events,
        buf: vec![0; 65_536],
        frame: Vec::new(),
        segments: Segments::new(),
        packet_buf: Vec::with_capacity(65_536),
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

type Opened = (Capture, Vec<PacketCapture>);

fn open_capture(config: &DriverConfig, warnings: &mut Vec<String>) -> Result<Opened, DriverError> {
    let Some(upstream) = &config.upstream else { return Ok((Capture::None, Vec::new())) };
    let ifindex = upstream.index().map_err(DriverError::Interface)?;
    let ports = || {
        let mut p = config.capture_ports.clone();
        p.sort_unstable();
        p.dedup();
        p
    };
    match config.capture {
        CaptureMode::Off => return Ok((Capture::None, Vec::new())),
        CaptureMode::Ports => return Ok((Capture::Ports(ports()), Vec::new())),
        CaptureMode::Raw | CaptureMode::Auto => {}
    }
    let v4 = match (PacketCapture::open(ifindex, CaptureFamily::V4, CAPTURE_RECV_BUFFER), config.capture) {
        (Ok(s), _) => s,
        (Err(error), CaptureMode::Raw) => return Err(DriverError::Capture { what: "IPv4 packet", error }),
        (Err(error), _) => {
            let why = if error.kind() == io::ErrorKind::PermissionDenied {
                "packet sockets are not permitted (needs CAP_NET_RAW)".to_owned()
            } else {
                format!("cannot open a packet socket: {error}")
            };
            if config.capture_ports.is_empty() {
                warnings.push(format!("{why}, and no capture port is given: no native data will be forwarded"));
                return Ok((Capture::None, Vec::new()));
            }
            let p = ports();
            let list: Vec<String> = p.iter().map(u16::to_string).collect();
            warnings.push(format!("{why}: capturing only UDP ports {} of the joined groups", list.join(", ")));
            return Ok((Capture::Ports(p), Vec::new()));
        }
    };
    let mut sockets = vec![v4];
    match (PacketCapture::open(ifindex, CaptureFamily::V6, CAPTURE_RECV_BUFFER), config.capture) {
        (Ok(s), _) => sockets.push(s),
        (Err(error), CaptureMode::Raw) => return Err(DriverError::Capture { what: "IPv6 packet", error }),
        (Err(error), _) => {
            warnings.push(format!("cannot open the IPv6 packet capture socket ({error}): no native IPv6 data"));
        }
    }
    let ipv6 = sockets.len() == 2;
    Ok((Capture::Raw { ipv4: true, ipv6 }, sockets))
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
                let io = poll_fn(|cx| poll_io(cx, &self.listen, &self.capture_sockets, &self.joins));
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
                    let stats = self.stats();
                    let _ = reply.send(stats);
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
                let stats = self.stats();
                let _ = reply.send(stats);
            }
            Command::Gateways(reply) => {
                let _ = reply.send(self.relay.gateways());
            }
            Command::Shutdown(reply) => {
                let stats = self.stats();
                let _ = reply.send(stats);
            }
        }
    }

    fn stats(&mut self) -> DriverStats {
        for p in &self.capture_sockets {
            // The kernel counts since the previous read.
            self.counters.capture_drops += p.drops().unwrap_or(0);
        }
        DriverStats {
            relay: self.relay.stats().clone(),
            gateways: self.relay.gateway_count(),
            channels: self.relay.joined().count(),
            state_bytes: self.relay.state_bytes(),
            memberships: self.joins.len(),
            capture: self.capture.clone(),
            captured: self.counters.captured,
            capture_split: self.counters.capture_split,
            capture_invalid: self.counters.capture_invalid,
            capture_drops: self.counters.capture_drops,
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
        self.drain_capture().await;
        self.drain_ports().await;
    }

    async fn drain_capture(&mut self) {
        if !self.capture_sockets.is_empty() && self.frame.len() < CAPTURE_BUF {
            self.frame.resize(CAPTURE_BUF, 0);
        }
        for i in 0..self.capture_sockets.len() {
            for _ in 0..BATCH {
                match self.capture_sockets[i].try_recv(&mut self.frame) {
                    Ok(frame) => self.forward_captured(frame).await,
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

    /// Forwards the datagram(s) of the frame now in `self.frame`.
    async fn forward_captured(&mut self, f: CapturedFrame) {
        let bytes = self.frame.get(..f.len).unwrap_or_default();
        let vnet = VnetHeader::parse(bytes).and_then(|h| h.after_link_header(f.network_offset));
        let packet = bytes.get(VNET_HDR_LEN + f.network_offset..);
        let (Some(vnet), Some(packet), false) = (vnet, packet, f.truncated) else {
            self.counters.capture_invalid += 1;
            return;
        };
        match relay_capture::split(&vnet, packet, &mut self.segments) {
            Ok(Outcome::Ignored) => {}
            Ok(Outcome::Whole(len)) => {
                self.counters.captured += 1;
                let packet = packet.get(..len).unwrap_or_default();
                let routes = self.relay.forward(Instant::now(), packet, &mut self.message);
                send_data(&self.listen, &self.message, routes, &mut self.counters).await;
            }
            Ok(outcome) => {
                if matches!(outcome, Outcome::Split(_)) {
                    self.counters.capture_split += 1;
                }
                for datagram in self.segments.iter() {
                    self.counters.captured += 1;
                    let routes = self.relay.forward(Instant::now(), datagram, &mut self.message);
                    send_data(&self.listen, &self.message, routes, &mut self.counters).await;
                }
            }
            Err(_) => self.counters.capture_invalid += 1,
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
                            self.packet_buf.clear();
                            let to = SocketAddr::new(channel.group, *port);
                            let from = SocketAddr::new(from.ip().to_canonical(), from.port());
                            let payload = self.buf.get(..n).unwrap_or_default();
                            if inner::build_udp(from, to, REBUILT_TTL, payload, &mut self.packet_buf).is_err() {
                                self.counters.capture_invalid += 1;
                                continue;
                            }
                            let routes = self.relay.forward(Instant::now(), &self.packet_buf, &mut self.message);
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
    capture: &[PacketCapture],
    joins: &BTreeMap<Channel, Membership>,
) -> Poll<()> {
    let mut ready = false;
    for c in capture {
        // An error (none expected) is ready too: the read reports it.
        ready |= c.poll_recv_ready(cx).is_ready();
    }
    let mut poll = |s: &UdpSocket| ready |= s.poll_recv_ready(cx).is_ready();
    for l in listen {
        poll(&l.socket);
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
