//! Native joins and data capture: opening the packet capture sockets (or
//! falling back to port capture), holding the memberships the relay asks for,
//! and reading captured packets into the relay.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use h3m_net::{CaptureFamily, CapturedFrame, MulticastConfig, PacketCapture, open_receiver};
use tokio::net::UdpSocket;

use super::{BATCH, Capture, CaptureMode, DriverConfig, DriverError, DriverEvent, RelayDriver};
use crate::gateway::Channel;
use crate::inner;
use crate::relay_capture::{self, Outcome, VNET_HDR_LEN, VnetHeader};

/// Receive buffer requested for each packet capture socket (forced beyond `net.core.rmem_max` when
/// permitted): room for about a hundred 64 KiB super-packets.
const CAPTURE_RECV_BUFFER: usize = 8 << 20;
/// Capture read buffer: the virtio-net header, a link-layer header and the largest IP packet.
const CAPTURE_BUF: usize = VNET_HDR_LEN + 128 + 40 + 65_535;
/// TTL of the datagrams rebuilt by port capture.
const REBUILT_TTL: u8 = 1;

/// What holds a native membership.
pub(super) enum Membership {
    /// Packet capture: a socket that only holds the join (closing it leaves).
    Hold { _join: std::net::UdpSocket },
    /// Port capture: one joined, read socket per port.
    Ports(Vec<(u16, UdpSocket)>),
}

/// The capture chosen and its packet sockets (empty unless [`Capture::Raw`]).
pub(super) type Opened = (Capture, Vec<PacketCapture>);

/// Opens the capture [`DriverConfig::capture`] asks for, falling back (with a
/// warning) to port capture or none when packet sockets are not permitted.
pub(super) fn open_capture(config: &DriverConfig, warnings: &mut Vec<String>) -> Result<Opened, DriverError> {
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

impl RelayDriver {
    /// Joins a channel natively as the capture in use needs (a held join or
    /// one read socket per capture port), reporting failures as events.
    pub(super) fn join(&mut self, channel: Channel) {
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
    /// Reads whatever is waiting on the packet capture sockets.
    pub(super) async fn drain_capture(&mut self) {
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
        self.data.flush(&self.listen, &mut self.counters).await;
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
                self.data.add(&self.listen, &self.message, routes, &mut self.counters).await;
            }
            Ok(outcome) => {
                if matches!(outcome, Outcome::Split(_)) {
                    self.counters.capture_split += 1;
                }
                for datagram in self.segments.iter() {
                    self.counters.captured += 1;
                    let routes = self.relay.forward(Instant::now(), datagram, &mut self.message);
                    self.data.add(&self.listen, &self.message, routes, &mut self.counters).await;
                }
            }
            Err(_) => self.counters.capture_invalid += 1,
        }
    }

    /// Reads whatever is waiting on the port capture sockets and forwards
    /// the datagrams rebuilt from them.
    pub(super) async fn drain_ports(&mut self) {
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
                            self.data.add(&self.listen, &self.message, routes, &mut self.counters).await;
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
        self.data.flush(&self.listen, &mut self.counters).await;
    }
}
