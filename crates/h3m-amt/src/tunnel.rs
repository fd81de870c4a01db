//! The gateway's tokio driver: a [`Gateway`] over UDP sockets, handing
//! decapsulated datagrams to the caller. No tun device, no raw socket, no root.
//!
//! One socket per address family (opened when first needed, so the source
//! port the relay's MAC covers stays the same for the life of the tunnel). The
//! socket is connected to the peer it talks to (the discovery address, then
//! the relay), which makes the kernel report ICMP unreachable errors to us:
//! they reach the state machine as [`Gateway::handle_unreachable`], so a
//! restarting relay is retried within a second instead of after a backoff.
//!
//! The caller drives everything through [`Tunnel::recv_batch`]: while it
//! waits, the tunnel answers queries, refreshes, retries and rediscovers.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use h3m_net::{RecvBatch, RecvSocket};

use crate::gateway::{Gateway, GatewayConfig, GatewayEvent, Rng, SubscribeError, SystemRng};
use crate::inner::InnerDatagram;

/// Most `recvmmsg` calls per [`Tunnel::recv_batch`] call (each takes up to
/// 32 buffers, each up to 64 KiB of GRO-coalesced AMT Data).
const READS: usize = 2;

struct Peer {
    /// `recvmmsg` + UDP GRO (a relay sending AMT Data with GSO, as
    /// `h3m-amt-relay` does, is read a super-datagram at a time); requests
    /// go out of its tokio socket.
    socket: RecvSocket,
    connected: Option<SocketAddr>,
}

/// An AMT tunnel: the [`Gateway`] state machine plus its sockets.
pub struct Tunnel {
    gateway: Gateway,
    bind_v4: Ipv4Addr,
    bind_v6: Ipv6Addr,
    v4: Option<Peer>,
    v6: Option<Peer>,
    batch: RecvBatch,
    send_errors: u64,
    recv_buffer: Option<usize>,
    warnings: Vec<String>,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel").field("gateway", &self.gateway).finish_non_exhaustive()
    }
}

impl Tunnel {
    /// A tunnel with the system CSPRNG, binding to any local address.
    pub fn new(config: GatewayConfig) -> Self {
        Self::with_rng(config, Box::new(SystemRng::default()))
    }

    /// A tunnel with a given random source (tests).
    pub fn with_rng(config: GatewayConfig, rng: Box<dyn Rng + Send>) -> Self {
        Tunnel {
            gateway: Gateway::new(std::time::Instant::now(), config, rng),
            bind_v4: Ipv4Addr::UNSPECIFIED,
            bind_v6: Ipv6Addr::UNSPECIFIED,
            v4: None,
            v6: None,
            batch: RecvBatch::new(),
            send_errors: 0,
            recv_buffer: Some(h3m_net::DEFAULT_RECV_BUFFER),
            warnings: Vec::new(),
        }
    }

    /// Binds the tunnel's sockets to this local address (its family only).
    pub fn bind(mut self, local: IpAddr) -> Self {
        match local {
            IpAddr::V4(a) => self.bind_v4 = a,
            IpAddr::V6(a) => self.bind_v6 = a,
        }
        self
    }

    /// Asks for this socket receive buffer (`None`: the system default). The
    /// default is the multicast receivers' ([`h3m_net::DEFAULT_RECV_BUFFER`]):
    /// a relay forwards bursts as fast as they arrive.
    pub fn recv_buffer(mut self, bytes: Option<usize>) -> Self {
        self.recv_buffer = bytes;
        self
    }

    /// Socket warnings so far (e.g. a receive buffer clamped by the kernel), taken.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// The state machine (counters, relay, channels).
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// Datagrams the kernel refused to send (also reported to the gateway as unreachable).
    pub fn send_errors(&self) -> u64 {
        self.send_errors
    }

    /// The local address of the socket of a family, once it is open.
    pub fn local_addr(&self, ipv6: bool) -> Option<SocketAddr> {
        let p = if ipv6 { &self.v6 } else { &self.v4 };
        p.as_ref().and_then(|p| p.socket.local_addr().ok())
    }

    /// Subscribes to (S,G) (`source: None`: any source). The tunnel starts
    /// (discovery) on the first subscription; messages go out on the next
    /// [`Tunnel::recv_batch`] or [`Tunnel::flush`].
    pub fn subscribe(&mut self, source: Option<IpAddr>, group: IpAddr) -> Result<(), SubscribeError> {
        self.gateway.subscribe(Instant::now(), source, group)
    }

    /// Drops a subscription (see [`Gateway::unsubscribe`]).
    pub fn unsubscribe(&mut self, source: Option<IpAddr>, group: IpAddr) {
        self.gateway.unsubscribe(Instant::now(), source, group);
    }

    /// The next event of the state machine.
    pub fn poll_event(&mut self) -> Option<GatewayEvent> {
        self.gateway.poll_event()
    }

    /// Sends everything the state machine has queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        while let Some(t) = self.gateway.poll_transmit() {
            let ipv6 = t.destination.is_ipv6();
            let bind = if ipv6 { IpAddr::V6(self.bind_v6) } else { IpAddr::V4(self.bind_v4) };
            let slot = if ipv6 { &mut self.v6 } else { &mut self.v4 };
            if slot.is_none() {
                let opened = h3m_net::open_unicast(SocketAddr::new(bind, 0), self.recv_buffer)
                    .map_err(io::Error::other)
                    .and_then(|(s, w)| Ok((RecvSocket::from_std(s)?, w)));
                match opened {
                    Ok((socket, warnings)) => {
                        self.warnings.extend(warnings.iter().map(ToString::to_string));
                        *slot = Some(Peer { socket, connected: None });
                    }
                    Err(_) => {
                        // No socket of this family (e.g. IPv6 disabled): like
                        // an unreachable relay, the gateway moves on.
                        self.send_errors += 1;
                        self.gateway.handle_unreachable(Instant::now());
                        continue;
                    }
                }
            }
            let Some(peer) = slot.as_mut() else { continue };
            let sent = async {
                if peer.connected != Some(t.destination) {
                    peer.socket.get_ref().connect(t.destination).await?;
                    peer.connected = Some(t.destination);
                }
                peer.socket.get_ref().send(&t.payload).await
            }
            .await;
            if sent.is_err() {
                // Refused, unreachable, no route: the gateway's retries and
                // rediscovery handle it.
                self.send_errors += 1;
                self.gateway.handle_unreachable(Instant::now());
            }
        }
        Ok(())
    }

    /// Runs the tunnel until at least one datagram of a subscribed channel
    /// arrives, then hands it (and any others already waiting, up to a batch)
    /// to `deliver`; or until the gateway has an event for
    /// [`Tunnel::poll_event`]. Returns how many datagrams were delivered
    /// (possibly 0 with an event). Cancel-safe: dropping the future loses no state.
    pub async fn recv_batch(&mut self, deliver: &mut dyn FnMut(InnerDatagram<'_>)) -> io::Result<usize> {
        loop {
            self.flush().await?;
            if self.gateway.has_events() {
                return Ok(0);
            }
            let deadline = self.gateway.poll_timeout();
            let v4 = self.v4.as_ref().map(|p| &p.socket);
            let v6 = self.v6.as_ref().map(|p| &p.socket);
            let ready = tokio::select! {
                r = readable(v4) => r.map(|_| false),
                r = readable(v6) => r.map(|_| true),
                _ = sleep_until(deadline) => {
                    self.gateway.handle_timeout(Instant::now());
                    continue;
                }
            };
            let ipv6 = match ready {
                Ok(f) => f,
                Err(e) => return Err(e),
            };
            let mut delivered = 0;
            for _ in 0..READS {
                let Some(peer) = (if ipv6 { &self.v6 } else { &self.v4 }) else { break };
                match peer.socket.try_recv_batch(&mut self.batch) {
                    Ok(_) => {
                        let now = Instant::now();
                        for d in self.batch.iter() {
                            let from = SocketAddr::new(d.source.ip().to_canonical(), d.source.port());
                            if let Some(d) = self.gateway.handle_datagram(now, from, d.payload) {
                                deliver(d);
                                delivered += 1;
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if is_unreachable(&e) => {
                        self.gateway.handle_unreachable(Instant::now());
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            if delivered > 0 {
                return Ok(delivered);
            }
        }
    }

    /// Leaves every channel (reports sent now) and closes the sockets.
    pub async fn close(mut self) -> io::Result<()> {
        self.gateway.leave_all(Instant::now());
        self.flush().await
    }
}

async fn readable(socket: Option<&RecvSocket>) -> io::Result<()> {
    match socket {
        Some(s) => s.get_ref().readable().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// Errors a connected UDP socket reports for an ICMP error from the peer.
fn is_unreachable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    )
}
