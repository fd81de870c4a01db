//! Where live mode's datagrams come from: a native multicast socket, or an
//! AMT tunnel through a relay (RFC 7450) when the network does not route
//! multicast to us.
//!
//! Both hand the receiver the UDP payloads of the session's (S,G) and port;
//! the tunnel also runs the AMT gateway (discovery, membership, refreshes,
//! recovery) while it waits, and reports what it does as log lines.

use std::io;
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

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
                        tracing::warn!(target: "h3m_receiver::amt", error = %e, "no DRIAD lookup; trying the anycast addresses");
                        eprintln!("h3m-recv: amt: no DRIAD lookup ({e}); trying the anycast addresses");
                        vec![RelayCandidate::anycast(group.is_ipv6()), RelayCandidate::anycast(!group.is_ipv6())]
                    }
                }
            }
        };
        GatewayConfig::new(candidates)
    }
}

/// Which port of the session a datagram came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The session's port: its packets.
    Session,
    /// The repair port: FEC repair datagrams ([`h3m_proto::fec`]) and
    /// in-band AMBI manifests ([`h3m_proto::ambi::inband`]), told apart by
    /// their first bytes.
    Repair,
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
        /// The socket on the repair port, with its batch (`None`: no FEC).
        repair: Option<Box<(RecvSocket, RecvBatch)>>,
        /// Hand over what waits on the side port before each batch of the
        /// session's datagrams (AMBI: manifests are sent ahead of the data
        /// they cover) instead of after (FEC: repair after its data).
        side_first: bool,
    },
    /// An AMT tunnel subscribed to the group.
    Amt {
        /// The tunnel.
        tunnel: Box<Tunnel>,
        /// Only datagrams to this UDP port are the session's.
        port: u16,
        /// Datagrams to this port are its FEC repair (`None`: no FEC).
        repair_port: Option<u16>,
        /// Datagrams of the channel to other ports (not ours).
        other_ports: u64,
    },
}

/// Most batches of the side port read before each batch of the session's
/// with AMBI (in-band manifests, a fraction of the session's traffic): this
/// bounds how long the session's socket waits. FEC repair is read one batch
/// after each, so that a flood on the repair port takes no more turns than
/// the session.
const SIDE_BATCHES: usize = 16;

impl Input {
    /// Joins natively as `mc` says; with `repair_port`, also joins on that
    /// port for FEC repair (if that fails, the warning says so and the
    /// session is received without repair).
    pub fn native(mc: &MulticastConfig, repair_port: Option<u16>) -> Result<(Input, Vec<String>), NetError> {
        let (socket, warnings) = RecvSocket::open(mc)?;
        let mut warnings: Vec<String> = warnings.iter().map(Warning::to_string).collect();
        let repair = repair_port.and_then(|port| {
            let mut rc = mc.clone();
            rc.group.set_port(port);
            // As large as the session's: the repair of a group comes in
            // bursts while the receiver may still be busy with its datagrams.
            match RecvSocket::open(&rc) {
                Ok((socket, w)) => {
                    warnings.extend(w.iter().map(Warning::to_string));
                    Some(Box::new((socket, RecvBatch::new())))
                }
                Err(e) => {
                    warnings.push(format!("no FEC repair: joining on port {port}: {e}"));
                    None
                }
            }
        });
        Ok((Input::Native { socket, batch: RecvBatch::new(), repair, side_first: false }, warnings))
    }

    /// Subscribes to (`source`, `group`) through an AMT tunnel to the relays
    /// of `config` (tried in order); datagrams to `repair_port` are FEC repair.
    /// The tunnel's socket asks for a `recv_buffer`-byte receive buffer.
    pub fn amt(
        config: GatewayConfig,
        source: Option<IpAddr>,
        group: SocketAddr,
        repair_port: Option<u16>,
        recv_buffer: usize,
    ) -> Result<Input, SubscribeError> {
        let mut tunnel = Box::new(Tunnel::new(config).recv_buffer(Some(recv_buffer)));
        tunnel.subscribe(source, group.ip())?;
        Ok(Input::Amt { tunnel, port: group.port(), repair_port, other_ports: 0 })
    }

    /// Waits for the next datagrams and hands each UDP payload to `f` with
    /// the port it came to and its source; returns how many were handed over.
    pub async fn recv(&mut self, f: &mut dyn FnMut(Channel, SocketAddr, &[u8])) -> io::Result<usize> {
        match self {
            Input::Native { socket, batch, repair: None, .. } => {
                socket.recv_batch(batch).await?;
                Ok(Self::deliver(batch, Channel::Session, f))
            }
            Input::Native { socket, batch, repair: Some(repair), side_first } => {
                let (repair, repair_batch) = &mut **repair;
                // Both waits are cancel-safe: a datagram is taken only by the
                // branch that completes.
                // The session's datagrams first (repair handled before the
                // datagrams it covers only rebuilds them needlessly), then
                // whatever repair is waiting, so that a busy session socket
                // never starves the repair one.
                tokio::select! {
                    biased;
                    r = socket.recv_batch(batch) => {
                        r?;
                        if *side_first {
                            let m = Self::deliver_waiting(repair, repair_batch, SIDE_BATCHES, f)?;
                            return Ok(m + Self::deliver(batch, Channel::Session, f));
                        }
                        let n = Self::deliver(batch, Channel::Session, f);
                        Ok(n + Self::deliver_waiting(repair, repair_batch, 1, f)?)
                    }
                    r = repair.recv_batch(repair_batch) => r.map(|_| Self::deliver(repair_batch, Channel::Repair, f)),
                }
            }
            Input::Amt { tunnel, port, repair_port, other_ports } => {
                let mut n = 0;
                tunnel
                    .recv_batch(&mut |d| {
                        let to = d.destination.port();
                        if to == *port {
                            f(Channel::Session, d.source, d.payload);
                            n += 1;
                        } else if Some(to) == *repair_port {
                            f(Channel::Repair, d.source, d.payload);
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

    /// Hands over the side port's datagrams already waiting on `socket`
    /// (without waiting), at most `batches` receive batches of them;
    /// returns how many.
    fn deliver_waiting(
        socket: &RecvSocket,
        batch: &mut RecvBatch,
        batches: usize,
        f: &mut dyn FnMut(Channel, SocketAddr, &[u8]),
    ) -> io::Result<usize> {
        // Not `try_recv_batch`: its readiness flag is only refreshed when the
        // runtime polls for events, which a socket that is never idle delays.
        // AMBI: everything waiting, not one batch: in-band manifests come one
        // datagram each, and a batch of the session's (up to a GRO buffer
        // a slot) needs many more of them than one batch of the side port
        // holds; those left over would hold its datagrams until the next.
        let mut n = 0;
        for _ in 0..batches {
            match socket.recv_batch_now(batch) {
                Ok(0) => break,
                Ok(_) => n += Self::deliver(batch, Channel::Repair, f),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// Hands each datagram of `batch` to `f`; returns how many.
    fn deliver(batch: &RecvBatch, channel: Channel, f: &mut dyn FnMut(Channel, SocketAddr, &[u8])) -> usize {
        let mut n = 0;
        for d in batch.iter() {
            f(channel, d.source, d.payload);
            n += 1;
        }
        n
    }

    /// Hands over the side port's waiting datagrams before each batch of the
    /// session's (AMBI manifests ahead of their data), not after (FEC).
    pub fn set_side_first(&mut self, first: bool) {
        if let Input::Native { side_first, .. } = self {
            *side_first = first;
        }
    }

    /// Log lines about the tunnel (relay found, connected, lost, ...), in order.
    pub fn log_lines(&mut self) -> Vec<String> {
        let Input::Amt { tunnel, .. } = self else { return Vec::new() };
        let mut lines: Vec<String> = tunnel.take_warnings().into_iter().map(|w| format!("warning: amt: {w}")).collect();
        while let Some(e) = tunnel.poll_event() {
            lines.push(describe(&e, tunnel.gateway().stats()));
        }
        lines
    }

    /// The relay the AMT tunnel uses now (`None` for native reception, or
    /// while no relay is known).
    pub fn amt_relay(&self) -> Option<SocketAddr> {
        match self {
            Input::Amt { tunnel, .. } => tunnel.gateway().relay(),
            _ => None,
        }
    }

    /// The tunnel's counters (`None` for native reception).
    pub fn amt_stats(&self) -> Option<&GatewayStats> {
        match self {
            Input::Amt { tunnel, .. } => Some(tunnel.gateway().stats()),
            Input::Native { .. } => None,
        }
    }

    /// The tunnel's counters as the summary reports them (`None` for native reception).
    pub fn amt_counters(&self) -> Option<AmtCounters> {
        match self {
            Input::Amt { tunnel, other_ports, .. } => {
                Some(AmtCounters::new(tunnel.gateway().stats(), *other_ports, tunnel.send_errors()))
            }
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

/// What the AMT tunnel did, for the summary: the `amt` object of the JSON
/// summary and the `amt_*` fields of the summary line, so that a receiver that
/// got nothing through a relay says why (no relay answered, data dropped as
/// invalid or with bad checksums, ...).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AmtCounters {
    /// Relay Discoveries sent.
    pub discoveries_sent: u64,
    /// Relay Advertisements accepted.
    pub advertisements: u64,
    /// Requests sent.
    pub requests_sent: u64,
    /// Membership Queries accepted (the tunnel was set up or refreshed).
    pub queries: u64,
    /// Queries with the L flag (relay overloaded).
    pub limited_queries: u64,
    /// Relays given up.
    pub relays_lost: u64,
    /// Times the no-data watchdog fired.
    pub watchdog_fired: u64,
    /// Datagrams of the subscribed channels delivered (any UDP port).
    pub data_packets: u64,
    /// Of those, datagrams to another UDP port than the session's (not passed on).
    pub data_other_ports: u64,
    /// Data for channels not subscribed to.
    pub data_unsubscribed: u64,
    /// Data whose inner packet was not a valid multicast UDP datagram.
    pub data_invalid: u64,
    /// Of `data_invalid`: bad IPv4 header or UDP checksums.
    pub data_bad_checksum: u64,
    /// Messages from an address other than the relay's.
    pub wrong_source: u64,
    /// Datagrams that were not AMT messages.
    pub malformed: u64,
    /// ICMP unreachable errors.
    pub unreachable: u64,
    /// Datagrams the kernel refused to send.
    pub send_errors: u64,
}

impl AmtCounters {
    /// From the gateway's counters and the tunnel's.
    pub fn new(s: &GatewayStats, other_ports: u64, send_errors: u64) -> Self {
        AmtCounters {
            discoveries_sent: s.discoveries_sent,
            advertisements: s.advertisements,
            requests_sent: s.requests_sent,
            queries: s.queries,
            limited_queries: s.limit_queries,
            relays_lost: s.relays_lost,
            watchdog_fired: s.watchdog_fired,
            data_packets: s.data_packets,
            data_other_ports: other_ports,
            data_unsubscribed: s.data_unsubscribed,
            data_invalid: s.data_invalid,
            data_bad_checksum: s.data_bad_checksum,
            wrong_source: s.wrong_source,
            malformed: s.malformed,
            unreachable: s.unreachable,
            send_errors,
        }
    }

    /// The `amt_*` fields of the summary line, each with a leading space: the
    /// handshake and data counters always, the rest when not zero.
    pub fn summary_fields(&self) -> String {
        let mut out = format!(
            " amt_advertisements={} amt_queries={} amt_data={} amt_data_invalid={} amt_bad_checksum={}",
            self.advertisements, self.queries, self.data_packets, self.data_invalid, self.data_bad_checksum
        );
        let extra = [
            ("amt_other_ports", self.data_other_ports),
            ("amt_unsubscribed", self.data_unsubscribed),
            ("amt_wrong_source", self.wrong_source),
            ("amt_malformed", self.malformed),
            ("amt_limited_queries", self.limited_queries),
            ("amt_relays_lost", self.relays_lost),
            ("amt_watchdog", self.watchdog_fired),
            ("amt_unreachable", self.unreachable),
            ("amt_send_errors", self.send_errors),
        ];
        for (key, value) in extra.iter().filter(|(_, v)| *v > 0) {
            out.push_str(&format!(" {key}={value}"));
        }
        out
    }
}

/// The log line of a gateway event; `stats` (the gateway's counters now) says
/// why data may be missing.
fn describe(e: &GatewayEvent, stats: &GatewayStats) -> String {
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
            let what = match idle {
                Some(idle) => format!("no data for {:.1} s", idle.as_secs_f64()),
                None => "no data received yet".to_string(),
            };
            let why = match (stats.data_invalid, stats.data_bad_checksum) {
                (0, _) => String::new(),
                (n, 0) => format!(" ({n} invalid datagrams from the relay dropped)"),
                (n, c) => format!(" ({n} invalid datagrams from the relay dropped, {c} with bad checksums)"),
            };
            format!("amt: {what}{why}; asking the relay again")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A native input on loopback (group 239.255.77.`octet`, port `port`,
    /// side port `port + 1`, `side_first` as given) that has `waiting`
    /// side-port datagrams (of 100, 101, ... bytes: all different, so that no
    /// GRO coalesces them, a slot each) and then one session datagram
    /// (`session`) waiting; what one `recv` hands over, by channel and length.
    async fn one_recv_after_side_datagrams(
        octet: u8,
        port: u16,
        side_first: bool,
        waiting: usize,
    ) -> Vec<(Channel, usize)> {
        use h3m_net::{Interface, MulticastConfig, open_sender};
        let group: SocketAddr = (std::net::Ipv4Addr::new(239, 255, 77, octet), port).into();
        let lo = Interface::Addr("127.0.0.1".parse().unwrap());
        let (mut input, _) =
            Input::native(&MulticastConfig::new(group).with_interface(lo.clone()), Some(port + 1)).unwrap();
        input.set_side_first(side_first);
        let (tx, _) = open_sender(&MulticastConfig::new(group).with_interface(lo)).unwrap();
        let side: SocketAddr = (group.ip(), port + 1).into();
        for i in 0..waiting {
            tx.send_to(&vec![b's'; 100 + i], side).unwrap();
        }
        tx.send_to(b"session", group).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let mut got = Vec::new();
        let n = input.recv(&mut |channel, _, payload: &[u8]| got.push((channel, payload.len()))).await.unwrap();
        assert_eq!(n, got.len());
        got
    }

    /// A session datagram arrives after more side-port datagrams than one
    /// receive batch holds (in-band manifests, one datagram each): with
    /// `side_first`, one `recv` hands every one of them over before it.
    #[tokio::test]
    async fn everything_waiting_on_the_side_port_goes_before_the_session_s_batch() {
        let waiting = 3 * h3m_net::BATCH_SIZE + 5;
        let port = 20_000 + (std::process::id() % 20_000) as u16;
        let got = one_recv_after_side_datagrams(19, port, true, waiting).await;
        let expected: Vec<(Channel, usize)> =
            (0..waiting).map(|i| (Channel::Repair, 100 + i)).chain([(Channel::Session, 7)]).collect();
        assert_eq!(got, expected);
    }

    /// FEC (no `side_first`): the repair waiting is read after the session's
    /// batch, one batch of it a turn, so that a flood on the repair port
    /// takes no more turns than the session.
    #[tokio::test]
    async fn fec_repair_is_read_after_the_session_s_batch_one_batch_a_turn() {
        let port = 40_000 + (std::process::id() % 20_000) as u16;
        let got = one_recv_after_side_datagrams(20, port, false, 2 * h3m_net::BATCH_SIZE).await;
        let expected: Vec<(Channel, usize)> = [(Channel::Session, 7)]
            .into_iter()
            .chain((0..h3m_net::BATCH_SIZE).map(|i| (Channel::Repair, 100 + i)))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn the_watchdog_line_says_when_nothing_ever_arrived_and_why_data_was_dropped() {
        let mut stats = GatewayStats::default();
        let never = GatewayEvent::DataAbsent { idle: None };
        assert_eq!(describe(&never, &stats), "amt: no data received yet; asking the relay again");
        let idle = GatewayEvent::DataAbsent { idle: Some(Duration::from_millis(4250)) };
        assert_eq!(describe(&idle, &stats), "amt: no data for 4.2 s; asking the relay again");
        stats.data_invalid = 7;
        assert_eq!(
            describe(&never, &stats),
            "amt: no data received yet (7 invalid datagrams from the relay dropped); asking the relay again"
        );
        stats.data_bad_checksum = 5;
        assert_eq!(
            describe(&idle, &stats),
            "amt: no data for 4.2 s (7 invalid datagrams from the relay dropped, 5 with bad checksums); \
             asking the relay again"
        );
    }

    #[test]
    fn amt_counters_in_the_summary_line() {
        let stats = GatewayStats {
            advertisements: 1,
            queries: 3,
            data_packets: 10,
            data_invalid: 4,
            data_bad_checksum: 4,
            relays_lost: 1,
            ..GatewayStats::default()
        };
        let c = AmtCounters::new(&stats, 2, 0);
        assert_eq!(
            c.summary_fields(),
            " amt_advertisements=1 amt_queries=3 amt_data=10 amt_data_invalid=4 amt_bad_checksum=4 \
             amt_other_ports=2 amt_relays_lost=1"
        );
        assert_eq!(
            AmtCounters::default().summary_fields(),
            " amt_advertisements=0 amt_queries=0 amt_data=0 amt_data_invalid=0 amt_bad_checksum=0"
        );
    }
}
