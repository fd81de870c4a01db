//! Opening configured multicast sockets (blocking-agnostic `std` sockets, set non-blocking).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::os::fd::AsFd;

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};

use crate::error::{BufferKind, NetError, Warning, buffer_clamped};
use crate::iface::Interface;
use crate::sys;

/// Receive buffer requested by [`MulticastConfig::new`]: 8 MiB.
pub const DEFAULT_RECV_BUFFER: usize = 8 << 20;

/// Where and how to send or receive one multicast flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MulticastConfig {
    /// The group address and UDP port.
    pub group: SocketAddr,
    /// The sender's address: `Some` makes a receiver join source-specifically (SSM, (S,G)) and binds a
    /// sender to it; `None` is any-source multicast (ASM, (*,G)) and a wildcard-bound sender.
    pub source: Option<IpAddr>,
    /// The interface to send on / join on. `None` lets the routing table decide (for a sender with a
    /// `source`, the interface owning the source address is used).
    pub interface: Option<Interface>,
    /// Multicast TTL (IPv4) or hop limit (IPv6). Default 1: the datagrams do not leave the link.
    pub ttl: u32,
    /// Whether the sender's own host receives its datagrams (`IP_MULTICAST_LOOP`). Default true.
    /// Note: on `lo` delivery happens regardless, because transmitting on `lo` is receiving.
    pub loopback: bool,
    /// Receive buffer to request (receivers only); `None` keeps the kernel default.
    pub recv_buffer: Option<usize>,
    /// Send buffer to request (senders only); `None` keeps the kernel default.
    pub send_buffer: Option<usize>,
    /// Also set `SO_REUSEPORT` on receivers (they always get `SO_REUSEADDR`, which is enough for any number
    /// of sockets to share group:port and each get a copy). Default **false**: on Linux (seen on 6.18), IPv4
    /// UDP early demux picks the one socket whose source filter matches and then re-selects within the
    /// `SO_REUSEPORT` group by flow hash *without* re-checking the filter, so with mixed SSM/ASM joins (or
    /// joins on different interfaces) on one group:port a datagram can go to the wrong socket only. Set it
    /// only to share a port with a program that uses `SO_REUSEPORT` alone.
    pub reuse_port: bool,
    /// UDP GRO on receivers ([`crate::RecvSocket::open`]): the kernel coalesces a burst of equal-size
    /// datagrams into one buffer, split again in user space. Default true; false reads one datagram per
    /// buffer (`recvmmsg` alone), for comparisons (`h3m-recv --no-gro`).
    pub gro: bool,
}

impl MulticastConfig {
    /// ASM on the routing table's interface, TTL 1, loopback on, an 8 MiB receive buffer request and the
    /// default send buffer.
    pub fn new(group: SocketAddr) -> Self {
        MulticastConfig {
            group,
            source: None,
            interface: None,
            ttl: 1,
            loopback: true,
            recv_buffer: Some(DEFAULT_RECV_BUFFER),
            send_buffer: None,
            reuse_port: false,
            gro: true,
        }
    }

    /// Sets the SSM source (builder style).
    pub fn with_source(mut self, source: IpAddr) -> Self {
        self.source = Some(source);
        self
    }

    /// Sets the interface (builder style).
    pub fn with_interface(mut self, interface: Interface) -> Self {
        self.interface = Some(interface);
        self
    }

    fn validate(&self) -> Result<(), NetError> {
        let group = self.group.ip();
        if !group.is_multicast() {
            return Err(NetError::Config(format!("{group} is not a multicast address")));
        }
        if let Some(src) = self.source
            && src.is_ipv4() != group.is_ipv4()
        {
            return Err(NetError::Config(format!("source {src} and group {group} are of different address families")));
        }
        if let Some(src) = self.source
            && (src.is_multicast() || src.is_unspecified())
        {
            return Err(NetError::Config(format!("source {src} must be a unicast address")));
        }
        if self.ttl > 255 {
            return Err(NetError::Config(format!("TTL {} is above 255", self.ttl)));
        }
        Ok(())
    }
}

/// IPv6 multicast scopes 1 (interface-local) and 2 (link-local) need an interface (scope id) to bind.
fn v6_group_needs_scope(group: &Ipv6Addr) -> bool {
    matches!(group.octets()[1] & 0x0f, 1 | 2)
}

fn is_v6_link_local_unicast(ip: &Ipv6Addr) -> bool {
    (ip.segments()[0] & 0xffc0) == 0xfe80
}

fn new_socket(group: &SocketAddr) -> Result<Socket, NetError> {
    let socket =
        Socket::new(Domain::for_address(*group), Type::DGRAM, Some(Protocol::UDP)).map_err(NetError::Socket)?;
    if group.is_ipv6() {
        socket.set_only_v6(true).map_err(NetError::opt("IPV6_V6ONLY"))?;
    }
    Ok(socket)
}

fn bind(socket: &Socket, addr: SocketAddr) -> Result<(), NetError> {
    socket.bind(&SockAddr::from(addr)).map_err(|error| NetError::Bind { addr, error })
}

/// Requests a buffer size: first `SO_*BUFFORCE` (works with CAP_NET_ADMIN, e.g. as root), then the plain
/// option (capped by the sysctl). Reads the result back and warns when the kernel granted less.
fn set_buffer(socket: &Socket, kind: BufferKind, bytes: usize, warnings: &mut Vec<Warning>) -> Result<(), NetError> {
    let recv = kind == BufferKind::Receive;
    let capped = bytes.min(i32::MAX as usize);
    if sys::force_buffer_size(socket.as_fd(), recv, capped).is_err() {
        let r = if recv { socket.set_recv_buffer_size(capped) } else { socket.set_send_buffer_size(capped) };
        r.map_err(NetError::opt(if recv { "SO_RCVBUF" } else { "SO_SNDBUF" }))?;
    }
    let reported = if recv { socket.recv_buffer_size() } else { socket.send_buffer_size() }
        .map_err(NetError::opt(if recv { "SO_RCVBUF (read back)" } else { "SO_SNDBUF (read back)" }))?;
    if let Some(got) = buffer_clamped(bytes, reported) {
        let sysctl = if recv { "net.core.rmem_max" } else { "net.core.wmem_max" };
        warnings.push(Warning::BufferClamped { buffer: kind, requested: bytes, got, sysctl });
    }
    Ok(())
}

fn iface_index(interface: Option<&Interface>) -> Result<u32, NetError> {
    interface.map_or(Ok(0), Interface::index)
}

/// Opens a unicast UDP socket bound to `local` (port 0: any), non-blocking, with a receive buffer of
/// `recv_buffer` bytes when given (`SO_RCVBUFFORCE` first, as for multicast receivers; a clamp is a
/// warning). For unicast tunnels that carry a multicast stream, such as an AMT gateway's.
pub fn open_unicast(local: SocketAddr, recv_buffer: Option<usize>) -> Result<(UdpSocket, Vec<Warning>), NetError> {
    let socket = new_socket(&local)?;
    let mut warnings = Vec::new();
    if let Some(bytes) = recv_buffer {
        set_buffer(&socket, BufferKind::Receive, bytes, &mut warnings)?;
    }
    bind(&socket, local)?;
    socket.set_nonblocking(true).map_err(NetError::opt("O_NONBLOCK"))?;
    Ok((socket.into(), warnings))
}

/// Opens a sender socket for `cfg`: bound to `source` (port 0) when given, else to the wildcard address;
/// outgoing multicast interface, TTL / hop limit, loopback and send buffer set; non-blocking.
///
/// Returns the socket and any [`Warning`]s (e.g. a clamped send buffer).
pub fn open_sender(cfg: &MulticastConfig) -> Result<(UdpSocket, Vec<Warning>), NetError> {
    cfg.validate()?;
    let mut warnings = Vec::new();
    let socket = new_socket(&cfg.group)?;
    // The interface: explicit, else the one owning the source address (if any).
    let interface = cfg.interface.clone().or(cfg.source.map(Interface::Addr));

    match cfg.group {
        SocketAddr::V4(_) => {
            let local = SocketAddr::new(cfg.source.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), 0);
            bind(&socket, local)?;
            match &interface {
                None => {}
                Some(Interface::Addr(IpAddr::V4(a))) => {
                    socket.set_multicast_if_v4(a).map_err(NetError::opt("IP_MULTICAST_IF"))?;
                }
                Some(other) => {
                    let index = other.index()?;
                    sys::set_multicast_if_v4_index(socket.as_fd(), index).map_err(NetError::opt("IP_MULTICAST_IF"))?;
                }
            }
            socket.set_multicast_ttl_v4(cfg.ttl).map_err(NetError::opt("IP_MULTICAST_TTL"))?;
            socket.set_multicast_loop_v4(cfg.loopback).map_err(NetError::opt("IP_MULTICAST_LOOP"))?;
        }
        SocketAddr::V6(_) => {
            let index = iface_index(interface.as_ref())?;
            let local = match cfg.source {
                Some(IpAddr::V6(src)) => {
                    let scope = if is_v6_link_local_unicast(&src) { index } else { 0 };
                    SocketAddr::V6(SocketAddrV6::new(src, 0, 0, scope))
                }
                _ => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
            };
            bind(&socket, local)?;
            if index != 0 {
                socket.set_multicast_if_v6(index).map_err(NetError::opt("IPV6_MULTICAST_IF"))?;
            } else if v6_group_needs_scope(match &cfg.group.ip() {
                IpAddr::V6(g) => g,
                IpAddr::V4(_) => unreachable!(),
            }) {
                return Err(NetError::Config(format!(
                    "group {} is interface/link scoped: set an interface",
                    cfg.group
                )));
            }
            socket.set_multicast_hops_v6(cfg.ttl).map_err(NetError::opt("IPV6_MULTICAST_HOPS"))?;
            socket.set_multicast_loop_v6(cfg.loopback).map_err(NetError::opt("IPV6_MULTICAST_LOOP"))?;
        }
    }
    if let Some(bytes) = cfg.send_buffer {
        set_buffer(&socket, BufferKind::Send, bytes, &mut warnings)?;
    }
    socket.set_nonblocking(true).map_err(NetError::opt("O_NONBLOCK"))?;
    Ok((socket.into(), warnings))
}

/// Opens a receiver socket for `cfg`: bound to group:port with `SO_REUSEADDR` (+ `SO_REUSEPORT` if
/// [`MulticastConfig::reuse_port`]),
/// `IP(V6)_MULTICAST_ALL` cleared, receive buffer requested, joined (ASM, or SSM when `source` is set) on
/// the interface; non-blocking.
///
/// Returns the socket and any [`Warning`]s (e.g. a clamped receive buffer).
pub fn open_receiver(cfg: &MulticastConfig) -> Result<(UdpSocket, Vec<Warning>), NetError> {
    cfg.validate()?;
    let mut warnings = Vec::new();
    let socket = new_socket(&cfg.group)?;
    socket.set_reuse_address(true).map_err(NetError::opt("SO_REUSEADDR"))?;
    if cfg.reuse_port {
        socket.set_reuse_port(true).map_err(NetError::opt("SO_REUSEPORT"))?;
    }
    let all = match cfg.group {
        SocketAddr::V4(_) => socket.set_multicast_all_v4(false),
        SocketAddr::V6(_) => socket.set_multicast_all_v6(false),
    };
    if let Err(e) = all {
        warnings.push(Warning::MulticastAllUnsupported { error: e.to_string() });
    }
    if let Some(bytes) = cfg.recv_buffer {
        set_buffer(&socket, BufferKind::Receive, bytes, &mut warnings)?;
    }

    let iface_text = cfg.interface.as_ref().map(Interface::to_string);
    let join_err =
        |error| NetError::Join { group: cfg.group.ip(), ssm_source: cfg.source, interface: iface_text.clone(), error };
    match (cfg.group, cfg.source) {
        (SocketAddr::V4(g), source) => {
            bind(&socket, cfg.group)?;
            let group = g.ip();
            match source {
                None => {
                    let iface = match &cfg.interface {
                        None => InterfaceIndexOrAddress::Address(Ipv4Addr::UNSPECIFIED),
                        Some(Interface::Addr(IpAddr::V4(a))) => InterfaceIndexOrAddress::Address(*a),
                        Some(other) => InterfaceIndexOrAddress::Index(other.index()?),
                    };
                    socket.join_multicast_v4_n(group, &iface).map_err(join_err)?;
                }
                Some(IpAddr::V4(src)) => match &cfg.interface {
                    None => socket.join_ssm_v4(&src, group, &Ipv4Addr::UNSPECIFIED).map_err(join_err)?,
                    Some(iface) => match iface.ipv4()? {
                        Some(addr) => socket.join_ssm_v4(&src, group, &addr).map_err(join_err)?,
                        // An interface without an IPv4 address: join by index instead.
                        None => {
                            sys::join_source_group(socket.as_fd(), IpAddr::V4(*group), IpAddr::V4(src), iface.index()?)
                                .map_err(join_err)?
                        }
                    },
                },
                Some(IpAddr::V6(_)) => unreachable!("validated"),
            }
        }
        (SocketAddr::V6(g), source) => {
            let index = iface_index(cfg.interface.as_ref())?;
            if v6_group_needs_scope(g.ip()) && index == 0 {
                return Err(NetError::Config(format!("group {} is interface/link scoped: set an interface", g.ip())));
            }
            let scope = if v6_group_needs_scope(g.ip()) { index } else { 0 };
            bind(&socket, sys_scope(cfg.group, scope))?;
            match source {
                None => socket.join_multicast_v6(g.ip(), index).map_err(join_err)?,
                Some(src) => {
                    sys::join_source_group(socket.as_fd(), IpAddr::V6(*g.ip()), src, index).map_err(join_err)?
                }
            }
        }
    }
    socket.set_nonblocking(true).map_err(NetError::opt("O_NONBLOCK"))?;
    Ok((socket.into(), warnings))
}

fn sys_scope(addr: SocketAddr, scope_id: u32) -> SocketAddr {
    match addr {
        SocketAddr::V6(mut v6) => {
            v6.set_scope_id(scope_id);
            SocketAddr::V6(v6)
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        assert!(v6_group_needs_scope(&"ff02::1".parse().unwrap()));
        assert!(v6_group_needs_scope(&"ff32::8000:1".parse().unwrap()));
        assert!(!v6_group_needs_scope(&"ff15::1".parse().unwrap()));
        assert!(!v6_group_needs_scope(&"ff3e::8000:1".parse().unwrap()));
        assert!(is_v6_link_local_unicast(&"fe80::1".parse().unwrap()));
        assert!(!is_v6_link_local_unicast(&"fd00::1".parse().unwrap()));
    }

    #[test]
    fn validation() {
        let cfg = MulticastConfig::new("10.0.0.1:5000".parse().unwrap());
        assert!(matches!(open_receiver(&cfg), Err(NetError::Config(_))));
        let cfg = MulticastConfig::new("239.1.2.3:5000".parse().unwrap()).with_source("::1".parse().unwrap());
        assert!(matches!(open_sender(&cfg), Err(NetError::Config(_))));
        let mut cfg = MulticastConfig::new("239.1.2.3:5000".parse().unwrap());
        cfg.ttl = 256;
        assert!(matches!(open_sender(&cfg), Err(NetError::Config(_))));
        let cfg = MulticastConfig::new("[ff02::1:2]:5000".parse().unwrap());
        assert!(matches!(open_receiver(&cfg), Err(NetError::Config(_))));
    }

    #[test]
    fn sender_options_on_loopback() {
        let mut cfg = MulticastConfig::new("239.255.3.4:5000".parse().unwrap()).with_interface("lo".parse().unwrap());
        cfg.ttl = 1;
        let (sock, _w) = open_sender(&cfg).unwrap();
        let s2 = socket2::SockRef::from(&sock);
        assert_eq!(s2.multicast_ttl_v4().unwrap(), 1);
        // By name: set by index through ip_mreqn, so reading IP_MULTICAST_IF back gives the (unset) address.
        assert_eq!(s2.multicast_if_v4().unwrap(), Ipv4Addr::UNSPECIFIED);
        // By address: read back as that address.
        let cfg = cfg.with_interface("127.0.0.1".parse().unwrap());
        let (sock, _w) = open_sender(&cfg).unwrap();
        assert_eq!(socket2::SockRef::from(&sock).multicast_if_v4().unwrap(), Ipv4Addr::LOCALHOST);
    }
}
