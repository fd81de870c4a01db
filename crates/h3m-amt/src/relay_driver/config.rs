//! Driver settings ([`DriverConfig`], [`CaptureMode`]), the capture actually
//! in use ([`Capture`]) and why the driver could not start ([`DriverError`]).

use std::io;
use std::net::SocketAddr;

use h3m_net::{Interface, NetError};

use crate::inner::InnerError;
use crate::relay::RelayConfig;

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
    /// Events buffered per [`RelayHandle::events`](crate::relay_driver::RelayHandle::events) receiver before the oldest are lost.
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
