//! The real relay driver with an in-process gateway (the sans-IO `Gateway`
//! over a tokio UDP socket, pumped by the test).
//!
//! - Loopback (no root): the relay listens on 127.0.0.1 and 127.0.0.2 (or
//!   ::1), the gateway discovers it, and data injected through the handle
//!   arrives byte-exact; a restart mid-stream is recovered from.
//! - Network namespaces (root; `SKIP: ...` otherwise): a native multicast
//!   sender (TTL 1) in a "source" namespace, the relay in a second one joining
//!   natively on its upstream veth and capturing (packet sockets, or UDP
//!   ports), the gateway in a third; IPv4 and IPv6 outer. A sender using UDP
//!   GSO too: the veth hands the relay each batch as one super-packet, which
//!   must reach the gateway as the datagrams it was made of.
//!
//! Network safety: datagrams go only to 127.0.0.0/8 and ::1, or stay inside
//! the namespaces these tests create (deleted on drop, also on panic);
//! multicast TTL / hop limit 1.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use h3m_amt::gateway::{Gateway, GatewayConfig, RelayCandidate, SystemRng};
use h3m_amt::relay::{Faults, RelayConfig, RelayEvent};
use h3m_amt::relay_driver::{Capture, CaptureMode, DriverConfig, DriverEvent, RelayHandle, bind, spawn};
use h3m_net::testns::{NetNs, skip_unless_root};
use h3m_net::{Interface, MulticastConfig, SendSocket, open_sender};
use tokio::net::UdpSocket;

const S: &str = "198.51.100.10";
const G: &str = "232.1.1.1";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn at(s: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip(s), port)
}

fn payload(seq: u32) -> Vec<u8> {
    let mut p = format!("AMT-VECTOR seq={seq:04} ").into_bytes();
    p.extend(0u8..32);
    p
}

/// A received inner datagram, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    source: SocketAddr,
    destination: SocketAddr,
    ttl: u8,
    payload: Vec<u8>,
}

/// The sans-IO gateway over one UDP socket.
struct GwPump {
    gw: Gateway,
    socket: UdpSocket,
    buf: Vec<u8>,
    got: Vec<Got>,
}

impl GwPump {
    fn new(config: GatewayConfig, socket: UdpSocket) -> GwPump {
        GwPump {
            gw: Gateway::new(Instant::now(), config, Box::new(SystemRng::default())),
            socket,
            buf: vec![0; 65_536],
            got: Vec::new(),
        }
    }

    /// Drives the gateway until `done` holds (checked after every step) or `limit` passes.
    async fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&GwPump) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            while let Some(t) = self.gw.poll_transmit() {
                self.socket.send_to(&t.payload, t.destination).await.expect("send");
            }
            if done(self) {
                return true;
            }
            let timer = self.gw.poll_timeout();
            tokio::select! {
                r = self.socket.recv_from(&mut self.buf) => {
                    let (n, from) = r.expect("recv");
                    let from = SocketAddr::new(from.ip().to_canonical(), from.port());
                    if let Some(d) = self.gw.handle_datagram(Instant::now(), from, &self.buf[..n]) {
                        self.got.push(Got {
                            source: d.source,
                            destination: d.destination,
                            ttl: d.ttl,
                            payload: d.payload.to_vec(),
                        });
                    }
                }
                () = sleep_until(timer) => self.gw.handle_timeout(Instant::now()),
                () = tokio::time::sleep_until(deadline) => return false,
            }
        }
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// Starts a relay listening on `first:P` and `second:P` (the same free port P).
fn start_two(first: &str, second: &str, advertise: &str) -> (RelayHandle, u16) {
    for _ in 0..20 {
        let port = std::net::UdpSocket::bind(at(first, 0)).unwrap().local_addr().unwrap().port();
        let config = DriverConfig::new(RelayConfig::new(&[ip(advertise)]), vec![at(first, port), at(second, port)]);
        if let Ok(h) = spawn(config) {
            return (h, port);
        }
    }
    panic!("no free port pair");
}

fn gateway_config(discovery: &str, port: u16) -> GatewayConfig {
    let mut c = GatewayConfig::new(vec![RelayCandidate { address: ip(discovery), discovery: true }]);
    c.relay_port = port;
    c
}

#[tokio::test]
async fn loopback_session_delivers_injected_data_byte_exact() {
    let (relay, port) = start_two("127.0.0.1", "127.0.0.2", "127.0.0.2");
    assert_eq!(relay.local_addrs(), &[at("127.0.0.1", port), at("127.0.0.2", port)]);
    assert_eq!(relay.capture(), &Capture::None);
    let mut events = relay.events();
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let gw_addr = socket.local_addr().unwrap();
    let mut gw = GwPump::new(gateway_config("127.0.0.1", port), socket);
    gw.gw.subscribe(Instant::now(), Some(ip(S)), ip(G)).unwrap();
    // The Advertisement must come from 127.0.0.1 (the gateway checks) and name 127.0.0.2.
    assert!(gw.run_until(Duration::from_secs(20), |g| g.gw.is_established()).await, "{:?}", gw.gw.stats());
    assert_eq!(gw.gw.relay(), Some(at("127.0.0.2", port)));
    // The Update has landed once the relay reports the join.
    let join = async {
        loop {
            match events.recv().await.unwrap() {
                DriverEvent::Relay(RelayEvent::Join { source, group }) => return (source, group),
                e => assert!(matches!(e, DriverEvent::Relay(RelayEvent::GatewayJoined { .. })), "{e:?}"),
            }
        }
    };
    let joined = tokio::time::timeout(Duration::from_secs(20), join).await.expect("the relay joins");
    assert_eq!(joined, (Some(ip(S)), ip(G)));
    let gws = relay.gateways().await.unwrap();
    assert_eq!(gws.len(), 1);
    assert_eq!((gws[0].address, gws[0].local), (gw_addr, at("127.0.0.2", port)));
    for seq in 0..20 {
        assert_eq!(relay.inject(at(S, 40000), at(G, 5001), 1, &payload(seq)).await.unwrap(), 1);
    }
    // Not subscribed: goes nowhere.
    assert_eq!(relay.inject(at(S, 40000), at("232.1.1.2", 5001), 1, b"x").await.unwrap(), 0);
    assert!(gw.run_until(Duration::from_secs(20), |g| g.got.len() >= 20).await, "{:?}", gw.gw.stats());
    let expected: Vec<Got> = (0..20)
        .map(|seq| Got { source: at(S, 40000), destination: at(G, 5001), ttl: 1, payload: payload(seq) })
        .collect();
    assert_eq!(gw.got, expected);
    let stats = relay.shutdown().await.unwrap();
    assert_eq!((stats.relay.rx.relay_discovery, stats.relay.tx.relay_advertisement), (1, 1));
    assert_eq!((stats.relay.data_packets, stats.relay.tx.multicast_data), (20, 20));
    assert_eq!((stats.send_errors, stats.recv_errors, stats.gateways), (0, 0, 1));
    assert!(relay.stats().await.is_err(), "stopped");
}

#[tokio::test]
async fn loopback_ipv6_relay_recovers_from_a_restart() {
    let relay = spawn(DriverConfig::new(RelayConfig::new(&[ip("::1")]), vec![at("::1", 0)])).unwrap();
    let port = relay.local_addrs()[0].port();
    let socket = UdpSocket::bind("[::1]:0").await.unwrap();
    let mut config = gateway_config("::1", port);
    config.data_timeout = Some(Duration::from_millis(500));
    let mut gw = GwPump::new(config, socket);
    gw.gw.subscribe(Instant::now(), Some(ip(S)), ip(G)).unwrap();
    assert!(gw.run_until(Duration::from_secs(20), |g| g.gw.is_established()).await);
    // Data all along, from another task.
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (relay, stop) = (relay.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seq = 0u32;
            while !stop.load(Ordering::Relaxed) {
                relay.inject(at(S, 40000), at(G, 5001), 1, &payload(seq)).await.unwrap();
                seq += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seq
        })
    };
    assert!(gw.run_until(Duration::from_secs(20), |g| g.got.len() >= 10).await);
    relay.restart().await.unwrap();
    let at_restart = gw.got.len();
    // Recovery: the gateway's data watchdog asks again, the relay learns the channel again.
    assert!(gw.run_until(Duration::from_secs(30), |g| g.got.len() >= at_restart + 10).await, "{:?}", gw.gw.stats());
    stop.store(true, Ordering::Relaxed);
    let sent = feeder.await.unwrap();
    let seqs: Vec<u32> = gw
        .got
        .iter()
        .map(|g| {
            let seq: u32 = std::str::from_utf8(&g.payload[15..19]).unwrap().parse().unwrap();
            assert_eq!(g.payload, payload(seq), "byte-exact");
            assert_eq!((g.source, g.destination), (at(S, 40000), at(G, 5001)));
            seq
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order, no duplicates: {seqs:?}");
    assert!(*seqs.last().unwrap() < sent);
    let stats = relay.shutdown().await.unwrap();
    assert_eq!(stats.relay.restarts, 1);
    assert_eq!(stats.relay.joins, 2, "joined again after the restart");
    assert!(gw.gw.stats().watchdog_fired >= 1);
}

#[tokio::test]
async fn faults_through_the_handle() {
    let relay = spawn(DriverConfig::new(RelayConfig::new(&[ip("127.0.0.1")]), vec![at("127.0.0.1", 0)])).unwrap();
    let port = relay.local_addrs()[0].port();
    relay.set_faults(Faults { drop_replies: 2, ..Faults::default() }).await.unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut gw = GwPump::new(gateway_config("127.0.0.1", port), socket);
    gw.gw.subscribe(Instant::now(), Some(ip(S)), ip(G)).unwrap();
    assert!(gw.run_until(Duration::from_secs(30), |g| g.gw.is_established()).await);
    assert_eq!(gw.gw.stats().discoveries_sent, 3, "two Advertisements dropped");
    relay.rotate_secret().await.unwrap();
    let stats = relay.stats().await.unwrap();
    assert_eq!((stats.relay.replies_dropped, stats.relay.secret_rotations), (2, 1));
    relay.shutdown().await.unwrap();
    // A second shutdown: the driver is gone.
    assert!(relay.shutdown().await.is_err());
}

#[tokio::test]
async fn bad_driver_configs_are_refused() {
    let config = DriverConfig::new(RelayConfig::default(), vec![]);
    assert!(matches!(bind(config), Err(h3m_amt::relay_driver::DriverError::NoListen)));
    let mut config = DriverConfig::new(RelayConfig::default(), vec![at("127.0.0.1", 0)]);
    config.capture = CaptureMode::Raw;
    assert!(matches!(bind(config), Err(h3m_amt::relay_driver::DriverError::CaptureConfig(_))));
    let mut config = DriverConfig::new(RelayConfig::default(), vec![at("127.0.0.1", 0)]);
    config.upstream = Some(Interface::Name("h3m-nonexist0".into()));
    assert!(matches!(bind(config), Err(h3m_amt::relay_driver::DriverError::Interface(_))));
    let config = DriverConfig::new(RelayConfig::default(), vec![at("192.0.2.1", 0)]);
    assert!(matches!(bind(config), Err(h3m_amt::relay_driver::DriverError::Listen { .. })));
}

// ---------------------------------------------------------------------------
// Network namespaces: a real native sender, native joins, capture
// ---------------------------------------------------------------------------

/// Addresses of the three-namespace lab (source -- relay -- gateway).
struct Lab {
    src: NetNs,
    relay: NetNs,
    gw: NetNs,
}

impl Lab {
    fn new() -> Lab {
        let lab = Lab { src: NetNs::new().unwrap(), relay: NetNs::new().unwrap(), gw: NetNs::new().unwrap() };
        lab.src.ip(&["link", "add", "s0", "type", "veth", "peer", "name", "r0", "netns", lab.relay.name()]).unwrap();
        lab.relay.ip(&["link", "add", "r1", "type", "veth", "peer", "name", "g0", "netns", lab.gw.name()]).unwrap();
        for (ns, dev, v4, v6) in [
            (&lab.src, "s0", "10.214.1.1/24", "fd00:214:1::1/64"),
            (&lab.relay, "r0", "10.214.1.2/24", "fd00:214:1::2/64"),
            (&lab.relay, "r1", "10.214.2.1/24", "fd00:214:2::1/64"),
            (&lab.gw, "g0", "10.214.2.2/24", "fd00:214:2::2/64"),
        ] {
            ns.ip(&["addr", "add", v4, "dev", dev]).unwrap();
            ns.ip(&["-6", "addr", "add", v6, "dev", dev, "nodad"]).unwrap();
            ns.ip(&["link", "set", dev, "up"]).unwrap();
        }
        lab
    }
}

/// Sets the flag when dropped (stops the sender thread, also on panic).
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A relay in the lab's relay namespace, upstream `r0`, listening on `listen`.
fn lab_relay(lab: &Lab, listen: SocketAddr, capture: CaptureMode) -> (RelayHandle, std::thread::JoinHandle<()>) {
    let mut config = DriverConfig::new(RelayConfig::new(&[listen.ip()]), vec![listen]);
    config.upstream = Some(Interface::Name("r0".into()));
    config.capture = capture;
    config.capture_ports = vec![5001];
    let (tx, rx) = std::sync::mpsc::channel();
    // Threads inherit the namespace of the thread that creates them.
    let thread = lab.relay.run(move || {
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                match bind(config) {
                    Ok((driver, handle)) => {
                        tx.send(Ok(handle)).unwrap();
                        driver.run().await;
                    }
                    Err(e) => tx.send(Err(e.to_string())).unwrap(),
                }
            });
        })
    });
    let handle = rx.recv().unwrap().unwrap_or_else(|e| panic!("relay: {e}"));
    (handle, thread)
}

/// Source in `src` sends `payload(seq)` to group:5001 every 20 ms (TTL 1 on
/// `s0`) until stopped; returns the sender's address.
fn lab_sender(
    lab: &Lab,
    source: IpAddr,
    group: IpAddr,
    stop: Arc<AtomicBool>,
) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let dest = SocketAddr::new(group, 5001);
    let cfg = MulticastConfig::new(dest).with_source(source).with_interface(Interface::Name("s0".into()));
    let socket = lab.src.run(|| open_sender(&cfg)).unwrap().0;
    socket.set_nonblocking(false).unwrap();
    let from = socket.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(60);
        let mut seq = 0;
        while !stop.load(Ordering::Relaxed) && Instant::now() < until {
            // Errors (none expected) only cost datagrams; the receiving side asserts.
            let _ = socket.send_to(&payload(seq), dest);
            seq += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    (from, thread)
}

fn netns_case(test: &str, outer_v6: bool, data_v6: bool, capture: CaptureMode) {
    if skip_unless_root(test) {
        return;
    }
    let lab = Lab::new();
    let (relay_addr, gw_bind) =
        if outer_v6 { ("fd00:214:2::1", "[fd00:214:2::2]:0") } else { ("10.214.2.1", "10.214.2.2:0") };
    let (source, group) = if data_v6 { ("fd00:214:1::1", "ff3e::8000:1") } else { ("10.214.1.1", "232.1.2.3") };
    let (relay, relay_thread) = lab_relay(&lab, at(relay_addr, 2268), capture);
    match capture {
        CaptureMode::Raw => assert_eq!(relay.capture(), &Capture::Raw { ipv4: true, ipv6: true }),
        _ => assert_eq!(relay.capture(), &Capture::Ports(vec![5001])),
    }
    let gw_socket = lab.gw.run(|| std::net::UdpSocket::bind(gw_bind)).unwrap();
    gw_socket.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopOnDrop(stop.clone());
    let (sender, sender_thread) = lab_sender(&lab, ip(source), ip(group), stop.clone());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut events = relay.events();
        let socket = UdpSocket::from_std(gw_socket).unwrap();
        let mut gw =
            GwPump::new(GatewayConfig::new(vec![RelayCandidate { address: ip(relay_addr), discovery: true }]), socket);
        gw.gw.subscribe(Instant::now(), Some(ip(source)), ip(group)).unwrap();
        let ok = gw.run_until(Duration::from_secs(30), |g| g.got.len() >= 10).await;
        let stats = relay.stats().await.unwrap();
        assert!(ok, "gateway {:?}\nrelay {stats:?}", gw.gw.stats());
        stop.store(true, Ordering::Relaxed);
        for g in &gw.got {
            let seq: u32 = std::str::from_utf8(&g.payload[15..19]).unwrap().parse().unwrap();
            assert_eq!(g.payload, payload(seq), "byte-exact");
            assert_eq!((g.source, g.destination, g.ttl), (sender, SocketAddr::new(ip(group), 5001), 1));
        }
        assert_eq!((stats.memberships, stats.join_errors, stats.send_errors), (1, 0, 0));
        assert!(stats.captured >= 10);
        let mut saw_join = false;
        while let Ok(e) = events.try_recv() {
            saw_join |= e == DriverEvent::Relay(RelayEvent::Join { source: Some(ip(source)), group: ip(group) });
        }
        assert!(saw_join || stats.relay.joins == 1);
        let final_stats = relay.shutdown().await.unwrap();
        assert_eq!(final_stats.relay.mac_failures, 0);
    });
    sender_thread.join().unwrap();
    relay_thread.join().unwrap();
}

#[test]
fn netns_ipv4_outer_raw_capture() {
    netns_case("netns_ipv4_outer_raw_capture", false, false, CaptureMode::Raw);
}

#[test]
fn netns_ipv6_outer_raw_capture() {
    netns_case("netns_ipv6_outer_raw_capture", true, true, CaptureMode::Raw);
}

#[test]
fn netns_ipv6_data_in_ipv4_outer_raw_capture() {
    netns_case("netns_ipv6_data_in_ipv4_outer_raw_capture", false, true, CaptureMode::Raw);
}

#[test]
fn netns_ipv4_outer_port_capture() {
    netns_case("netns_ipv4_outer_port_capture", false, false, CaptureMode::Ports);
}

/// Datagram `i` of the GSO batch: 1200 octets, distinct.
fn gso_payload(i: usize) -> Vec<u8> {
    let mut p = format!("GSO-VECTOR seq={i:04} ").into_bytes();
    p.extend((p.len()..1200).map(|j| ((i * 31 + j) % 251) as u8));
    p
}

/// One `UDP_SEGMENT` send of 20 datagrams from the source namespace, once the
/// relay has joined for the gateway: all 20 arrive, byte-exact and in order.
fn netns_gso_case(test: &str, outer_v6: bool, data_v6: bool) {
    if skip_unless_root(test) {
        return;
    }
    const N: usize = 20;
    let lab = Lab::new();
    let (relay_addr, gw_bind) =
        if outer_v6 { ("fd00:214:2::1", "[fd00:214:2::2]:0") } else { ("10.214.2.1", "10.214.2.2:0") };
    let (source, group) = if data_v6 { ("fd00:214:1::1", "ff3e::8000:1") } else { ("10.214.1.1", "232.1.2.3") };
    let (relay, relay_thread) = lab_relay(&lab, at(relay_addr, 2268), CaptureMode::Raw);
    assert_eq!(relay.capture(), &Capture::Raw { ipv4: true, ipv6: true });
    let gw_socket = lab.gw.run(|| std::net::UdpSocket::bind(gw_bind)).unwrap();
    gw_socket.set_nonblocking(true).unwrap();
    let dest = at(group, 5001);
    let cfg = MulticastConfig::new(dest).with_source(ip(source)).with_interface(Interface::Name("s0".into()));
    let sender_socket = lab.src.run(|| open_sender(&cfg)).unwrap().0;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut events = relay.events();
        let sender = SendSocket::from_std(sender_socket).unwrap();
        let from = sender.local_addr().unwrap();
        assert!(sender.gso_segments(1200) >= N, "UDP GSO available: {} segments", sender.gso_segments(1200));
        let socket = UdpSocket::from_std(gw_socket).unwrap();
        let mut gw =
            GwPump::new(GatewayConfig::new(vec![RelayCandidate { address: ip(relay_addr), discovery: true }]), socket);
        gw.gw.subscribe(Instant::now(), Some(ip(source)), ip(group)).unwrap();
        assert!(gw.run_until(Duration::from_secs(30), |g| g.gw.is_established()).await, "{:?}", gw.gw.stats());
        // The Update is out; the Join event says the relay applied it.
        let join = async {
            loop {
                if let DriverEvent::Relay(RelayEvent::Join { .. }) = events.recv().await.unwrap() {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), join).await.expect("the relay joins");
        let contents: Vec<u8> = (0..N).flat_map(gso_payload).collect();
        sender.send_segments(dest, &contents, 1200).await.unwrap();
        let ok = gw.run_until(Duration::from_secs(20), |g| g.got.len() >= N).await;
        let stats = relay.stats().await.unwrap();
        assert!(ok, "gateway got {} of {N}: {:?}\nrelay {stats:?}", gw.got.len(), gw.gw.stats());
        let expected: Vec<Got> =
            (0..N).map(|i| Got { source: from, destination: dest, ttl: 1, payload: gso_payload(i) }).collect();
        assert_eq!(gw.got, expected);
        assert!(stats.capture_split >= 1, "the batch reached the relay as a super-packet: {stats:?}");
        assert_eq!((stats.captured, stats.capture_invalid, stats.send_errors), (N as u64, 0, 0), "{stats:?}");
        assert_eq!((stats.relay.data_packets, stats.relay.data_invalid), (N as u64, 0));
        relay.shutdown().await.unwrap();
    });
    relay_thread.join().unwrap();
}

#[test]
fn netns_gso_batch_ipv4_is_split_into_its_datagrams() {
    netns_gso_case("netns_gso_batch_ipv4_is_split_into_its_datagrams", false, false);
}

#[test]
fn netns_gso_batch_ipv6_is_split_into_its_datagrams() {
    netns_gso_case("netns_gso_batch_ipv6_is_split_into_its_datagrams", true, true);
}
