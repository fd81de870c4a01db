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
//!   of each batch. [`relay_capture::split`](crate::relay_capture::split) cuts a super-packet at the
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

mod capture;
mod config;
mod handle;
mod sockets;
mod stats;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use h3m_net::{Interface, PacketCapture};
use tokio::sync::{broadcast, mpsc};

pub use self::config::{Capture, CaptureMode, DriverConfig, DriverError};
pub use self::handle::{DriverEvent, RelayHandle};
pub use self::stats::DriverStats;

use self::capture::{Membership, open_capture};
use self::handle::Command;
use self::sockets::{DataBatches, Listener, listen_socket, pick, poll_io};
use self::stats::Counters;
use crate::gateway::{Channel, Rng, SystemRng};
use crate::relay::{Relay, RelayEvent};
use crate::relay_capture::Segments;

/// Datagrams read from one socket before looking at the others.
const BATCH: usize = 64;

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
    /// AMT Data gathered into GSO sends per gateway, sent after each read.
    data: DataBatches,
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
        data: DataBatches::default(),
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
/// What woke the driver's loop.
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
    /// Sends what the relay queued and acts on its events.
    async fn flush(&mut self) {
        while let Some(t) = self.relay.poll_transmit() {
            let sent = match pick(&self.listen, t.source) {
                Some(s) => s.send_one(t.destination, &t.payload).await,
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
    /// Reads whatever is waiting on every socket.
    async fn drain(&mut self) {
        for i in 0..self.listen.len() {
            for _ in 0..BATCH {
                let l = &self.listen[i];
                match l.socket.get_ref().try_recv_from(&mut self.buf) {
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
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}
