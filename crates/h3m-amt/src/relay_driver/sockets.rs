//! The listening sockets: opening them, picking the one a reply or data goes
//! out of, sending data to gateways, and waiting until any socket is readable.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use h3m_net::PacketCapture;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::capture::Membership;
use super::stats::Counters;
use crate::gateway::Channel;
use crate::relay::DataRoute;

/// A listening socket and the address it is bound to (port resolved).
pub(super) struct Listener {
    pub(super) local: SocketAddr,
    pub(super) socket: UdpSocket,
}

/// A non-blocking UDP socket bound to `addr` (IPv6 sockets are IPv6-only).
pub(super) fn listen_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

/// The listening socket to send from: the one bound to `source`, else a
/// wildcard one of its family and port, else any of its family.
pub(super) fn pick(listen: &[Listener], source: SocketAddr) -> Option<&UdpSocket> {
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

pub(super) async fn send_data(listen: &[Listener], message: &[u8], routes: &[DataRoute], counters: &mut Counters) {
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
pub(super) fn poll_io(
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
