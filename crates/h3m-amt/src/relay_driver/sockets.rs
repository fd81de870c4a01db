//! The listening sockets: opening them, picking the one a reply or data goes
//! out of, sending data to gateways (gathered into GSO sends, [`DataBatches`]),
//! and waiting until any socket is readable.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use h3m_net::{PacketCapture, SendSocket};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::capture::Membership;
use super::stats::Counters;
use crate::gateway::Channel;
use crate::relay::DataRoute;

/// A listening socket and the address it is bound to (port resolved).
pub(super) struct Listener {
    pub(super) local: SocketAddr,
    /// Read through its tokio socket ([`SendSocket::get_ref`]); data leaves
    /// with GSO.
    pub(super) socket: SendSocket,
}

/// A non-blocking UDP socket bound to `addr` (IPv6 sockets are IPv6-only).
pub(super) fn listen_socket(addr: SocketAddr) -> io::Result<SendSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    SendSocket::from_std(s.into())
}

/// The listening socket to send from: the one bound to `source`, else a
/// wildcard one of its family and port, else any of its family.
pub(super) fn pick(listen: &[Listener], source: SocketAddr) -> Option<&SendSocket> {
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

/// AMT Data messages waiting to leave, gathered per route (listening socket
/// and gateway) into runs of equal-size messages, each run one GSO send:
/// a sender's GSO burst, cut into datagrams by the capture, leaves for each
/// gateway as one `sendmsg` instead of one per datagram. The driver flushes
/// after each read of its sockets, so nothing waits longer than that.
#[derive(Debug, Default)]
pub(super) struct DataBatches {
    /// By (source, destination); at most one per route of the gateways served.
    index: HashMap<(SocketAddr, SocketAddr), usize>,
    batches: Vec<Batch>,
}

/// One route's run: `count` messages of `segment` bytes, the last maybe shorter.
#[derive(Debug)]
struct Batch {
    source: SocketAddr,
    destination: SocketAddr,
    segment: usize,
    count: usize,
    /// A shorter message ended the run.
    closed: bool,
    contents: Vec<u8>,
}

impl DataBatches {
    /// Queues `message` for every route, sending a route's run first when
    /// `message` cannot join it (other size, or the run is full).
    pub(super) async fn add(
        &mut self,
        listen: &[Listener],
        message: &[u8],
        routes: &[DataRoute],
        counters: &mut Counters,
    ) {
        for r in routes {
            let i = match self.index.get(&(r.source, r.destination)) {
                Some(&i) => i,
                None => {
                    self.batches.push(Batch {
                        source: r.source,
                        destination: r.destination,
                        segment: 0,
                        count: 0,
                        closed: false,
                        contents: Vec::new(),
                    });
                    self.index.insert((r.source, r.destination), self.batches.len() - 1);
                    self.batches.len() - 1
                }
            };
            let b = &mut self.batches[i];
            let full = pick(listen, b.source).map_or(1, |s| s.gso_segments(b.segment.max(1)));
            if b.count > 0 && (b.closed || message.len() > b.segment || b.count >= full) {
                send(listen, b, counters).await;
            }
            if b.count == 0 {
                b.segment = message.len();
            }
            b.closed = message.len() < b.segment;
            b.contents.extend_from_slice(message);
            b.count += 1;
        }
    }

    /// Sends every run.
    pub(super) async fn flush(&mut self, listen: &[Listener], counters: &mut Counters) {
        for b in &mut self.batches {
            if b.count > 0 {
                send(listen, b, counters).await;
            }
        }
        // Routes come and go with gateways: keep only a few idle runs' buffers.
        if self.batches.len() > 4096 {
            self.batches.clear();
            self.index.clear();
        }
    }
}

async fn send(listen: &[Listener], b: &mut Batch, counters: &mut Counters) {
    let sent = match pick(listen, b.source) {
        Some(s) => s.send_segments(b.destination, &b.contents, b.segment).await,
        None => Err(io::Error::from(io::ErrorKind::AddrNotAvailable)),
    };
    if sent.is_err() {
        counters.send_errors += b.count as u64;
    }
    b.contents.clear();
    b.count = 0;
    b.closed = false;
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
        poll(l.socket.get_ref());
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
