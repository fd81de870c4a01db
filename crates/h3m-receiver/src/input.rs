//! Where live mode's datagrams come from: a native multicast socket, or an
//! AMT tunnel through a relay (RFC 7450) when the network does not route
//! multicast to us.
//!
//! Both hand the receiver the UDP payloads of the session's (S,G) and port;
//! the tunnel also runs the AMT gateway (discovery, membership, refreshes,
//! recovery) while it waits, and reports what it does as log lines.

use std::io;
use std::net::{IpAddr, SocketAddr};

use h3m_amt::driad::{DriadOptions, DriadResolver, relay_candidates};
use h3m_amt::gateway::{GatewayConfig, GatewayEvent, GatewayStats, LossReason, RelayCandidate, SubscribeError};
use h3m_amt::tunnel::Tunnel;
use h3m_net::{MulticastConfig, NetError, RecvBatch, RecvSocket, Warning};

/// Where to find an AMT relay (`h3m-recv --amt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmtRelay {
    /// Send a Relay Discovery to this address (a relay, or a discovery
    /// address that advertises one) and use the relay it names.
    Address(IpAddr),
    /// Look the source up with DRIAD (RFC 8777), then try the anycast
    /// discovery address of the group's family.
    Auto {
        /// The DNS server for DRIAD (`None`: the system's).
        dns: Option<SocketAddr>,
    },
}

impl std::str::FromStr for AmtRelay {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(AmtRelay::Auto { dns: None });
        }
        let ip = s.strip_prefix('[').and_then(|x| x.strip_suffix(']')).unwrap_or(s);
        match ip.parse::<IpAddr>() {
            Ok(a) if !a.is_unspecified() && !a.is_multicast() => Ok(AmtRelay::Address(a)),
            _ => Err(format!("`{s}` is neither `auto` nor a unicast IP address")),
        }
    }
}

impl AmtRelay {
    /// The gateway configuration: relay candidates in the order the issue of
    /// record fixes (configured address; else DRIAD, then anycast).
    pub async fn gateway_config(&self, source: Option<IpAddr>, group: IpAddr) -> GatewayConfig {
        let candidates = match self {
            AmtRelay::Address(a) => vec![RelayCandidate { address: *a, discovery: true }],
            AmtRelay::Auto { dns } => {
                let options = DriadOptions::default();
                let resolver = match dns {
                    Some(server) => DriadResolver::from_name_servers(&[*server], options),
                    None => DriadResolver::from_system_conf(options),
                };
                match resolver {
                    Ok(r) => relay_candidates(None, source, group.is_ipv6(), &r).await,
                    Err(e) => {
                        eprintln!("h3m-recv: amt: no DRIAD lookup ({e}); trying the anycast addresses");
                        vec![RelayCandidate::anycast(group.is_ipv6()), RelayCandidate::anycast(!group.is_ipv6())]
                    }
                }
            }
        };
        GatewayConfig::new(candidates)
    }
}

/// A source of the session's UDP payloads.
#[derive(Debug)]
pub enum Input {
    /// A socket joined to the group natively.
    Native {
        /// The joined socket.
        socket: RecvSocket,
        /// Its receive batch.
        batch: RecvBatch,
    },
    /// An AMT tunnel subscribed to the group.
    Amt {
        /// The tunnel.
        tunnel: Box<Tunnel>,
        /// Only datagrams to this UDP port are the session's.
        port: u16,
        /// Datagrams of the channel to other ports (not ours).
        other_ports: u64,
    },
}

impl Input {
    /// Joins natively as `mc` says.
    pub fn native(mc: &MulticastConfig) -> Result<(Input, Vec<Warning>), NetError> {
        let (socket, warnings) = RecvSocket::open(mc)?;
        Ok((Input::Native { socket, batch: RecvBatch::new() }, warnings))
    }

    /// Subscribes to (`source`, `group`) through an AMT tunnel to the relays
    /// of `config` (tried in order).
    pub fn amt(config: GatewayConfig, source: Option<IpAddr>, group: SocketAddr) -> Result<Input, SubscribeError> {
        let mut tunnel = Box::new(Tunnel::new(config));
        tunnel.subscribe(source, group.ip())?;
        Ok(Input::Amt { tunnel, port: group.port(), other_ports: 0 })
    }

    /// Waits for the next datagrams and hands each UDP payload to `f`; returns
    /// how many were handed over.
    pub async fn recv(&mut self, f: &mut dyn FnMut(&[u8])) -> io::Result<usize> {
        match self {
            Input::Native { socket, batch } => {
                socket.recv_batch(batch).await?;
                let mut n = 0;
                for d in batch.iter() {
                    f(d.payload);
                    n += 1;
                }
                Ok(n)
            }
            Input::Amt { tunnel, port, other_ports } => {
                let mut n = 0;
                tunnel
                    .recv_batch(&mut |d| {
                        if d.destination.port() == *port {
                            f(d.payload);
                            n += 1;
                        } else {
                            *other_ports += 1;
                        }
                    })
                    .await?;
                Ok(n)
            }
        }
    }

    /// Log lines about the tunnel (relay found, connected, lost, ...), in order.
    pub fn log_lines(&mut self) -> Vec<String> {
        let Input::Amt { tunnel, .. } = self else { return Vec::new() };
        let mut lines: Vec<String> = tunnel.take_warnings().into_iter().map(|w| format!("warning: amt: {w}")).collect();
        lines.extend(std::iter::from_fn(|| tunnel.poll_event()).map(|e| describe(&e)));
        lines
    }

    /// The tunnel's counters (`None` for native reception).
    pub fn amt_stats(&self) -> Option<&GatewayStats> {
        match self {
            Input::Amt { tunnel, .. } => Some(tunnel.gateway().stats()),
            Input::Native { .. } => None,
        }
    }

    /// Leaves the group (an AMT tunnel tells the relay).
    pub async fn close(self) {
        if let Input::Amt { tunnel, .. } = self {
            let _ = tunnel.close().await;
        }
    }
}

fn describe(e: &GatewayEvent) -> String {
    match e {
        GatewayEvent::RelayDiscovered { discovery, relay } => format!("amt: {discovery} advertised relay {relay}"),
        GatewayEvent::Connected { relay } => format!("amt: tunnel up with relay {relay}"),
        GatewayEvent::RelayLost { relay, reason: LossReason::NoQuery } => {
            format!("amt: relay {relay} stopped answering; looking for a relay again")
        }
        GatewayEvent::RelayLost { relay, reason: LossReason::Limit } => {
            format!("amt: relay {relay} is overloaded (L flag); trying another")
        }
        GatewayEvent::DiscoveryFailed { candidate } => format!("amt: no relay advertisement from {candidate}"),
        GatewayEvent::GatewayAddressChanged { old, new } => {
            format!("amt: our address as the relay sees it changed from {old} to {new} (NAT); old tunnel torn down")
        }
        GatewayEvent::DataAbsent { idle } => {
            format!("amt: no data for {:.1} s; asking the relay again", idle.as_secs_f64())
        }
    }
}
