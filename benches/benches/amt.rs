//! AMT data-path rates, in process (no sockets): what one core can
//! decapsulate as a gateway and encapsulate as a relay.
//!
//! - `gateway_decapsulate`: an established [`Gateway`] takes 10 000 Multicast
//!   Data messages, each an IPv4 UDP datagram with a 1200-byte payload (an h3m
//!   packet), checks the relay's address, the inner IPv4 and UDP headers and
//!   checksums and the (S,G) subscription, and hands the payload back.
//! - `relay_forward_1` / `_10` / `_100`: a [`Relay`] with 1, 10 or 100
//!   gateways subscribed to the channel takes each native packet (a whole
//!   IPv4/UDP datagram), checks it, looks up the subscribers and writes one
//!   Multicast Data message plus the list of destinations (the sends, GSO
//!   batches per gateway in the driver, are the socket's cost and not
//!   measured here).
//!
//! Run: `cargo bench -p h3m-benches --bench amt`. Criterion prints the time per
//! 10 000 packets with packets/s (`elements`) and MiB/s of UDP payload.

use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use h3m_amt::gateway::{Gateway, GatewayConfig, RelayCandidate, Rng};
use h3m_amt::inner;
use h3m_amt::membership::{self, GroupRecord, QueryParams, RecordType};
use h3m_amt::message::Message;
use h3m_amt::relay::{Relay, RelayConfig};

const PACKETS: usize = 10_000;
const PAYLOAD: usize = 1200;

struct Counter(u32);

impl Rng for Counter {
    fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        self.0
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A gateway that has finished discovery and the first Request/Query.
fn established(relay: SocketAddr, source: IpAddr, group: IpAddr) -> Gateway {
    let now = Instant::now();
    let mut config = GatewayConfig::new(vec![RelayCandidate { address: relay.ip(), discovery: false }]);
    config.data_timeout = None;
    let mut gw = Gateway::new(Instant::now(), config, Box::new(Counter(7)));
    gw.subscribe(now, Some(source), group).unwrap();
    let req = gw.poll_transmit().unwrap();
    let Ok(Message::Request { nonce, .. }) = Message::decode(&req.payload) else { panic!("no Request") };
    let q =
        membership::build_query("10.0.0.1".parse().unwrap(), &QueryParams { max_resp_code: 100, qrv: 2, qqic: 125 });
    let mut m = Vec::new();
    Message::MembershipQuery { limit: false, mac: [1; 6], nonce, query: &q, gateway: None }.encode(&mut m);
    gw.handle_datagram(now, relay, &m);
    while gw.poll_transmit().is_some() {}
    assert!(gw.is_established());
    gw
}

/// A relay with `n` gateways subscribed to (S,G) through real Updates.
fn relay_with(n: usize, relay: SocketAddr, source: IpAddr, group: IpAddr) -> Relay {
    let now = Instant::now();
    let mut r = Relay::new(RelayConfig::new(&[relay.ip()]), Box::new(Counter(3)), now);
    let record = GroupRecord { kind: RecordType::ModeIsInclude, group, sources: vec![source] };
    let report = membership::build_report("0.0.0.0".parse().unwrap(), &[record]).unwrap();
    for i in 0..n {
        let gw = SocketAddr::new(IpAddr::from([10, 9, (i / 250) as u8, (i % 250) as u8 + 1]), 40_000);
        let nonce = 1000 + i as u32;
        let mac = r.response_mac(gw, nonce);
        let mut m = Vec::new();
        Message::MembershipUpdate { mac, nonce, report: &report }.encode(&mut m);
        r.handle_datagram(now, relay, gw, &m);
    }
    while r.poll_transmit().is_some() {}
    while r.poll_event().is_some() {}
    assert_eq!(r.gateway_count(), n);
    r
}

fn multicast_data(source: SocketAddr, group: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut packet = Vec::new();
    inner::build_udp(source, group, 1, payload, &mut packet).unwrap();
    let mut m = Vec::with_capacity(packet.len() + 2);
    Message::MulticastData { packet: &packet }.encode(&mut m);
    m
}

fn bench(c: &mut Criterion) {
    let relay = addr("203.0.113.1:2268");
    let (s, g) = (addr("198.51.100.10:40000"), addr("232.1.1.1:2000"));
    let messages: Vec<Vec<u8>> = (0..PACKETS)
        .map(|i| {
            let payload: Vec<u8> = (0..PAYLOAD).map(|j| (i * 31 + j) as u8).collect();
            multicast_data(s, g, &payload)
        })
        .collect();
    let payloads: Vec<Vec<u8>> = (0..PACKETS).map(|i| (0..PAYLOAD).map(|j| (i * 31 + j) as u8).collect()).collect();

    for (name, throughput) in
        [("packets", Throughput::Elements(PACKETS as u64)), ("payload", Throughput::Bytes((PACKETS * PAYLOAD) as u64))]
    {
        let mut group = c.benchmark_group(format!("amt_{name}"));
        group.throughput(throughput);
        let mut gw = established(relay, s.ip(), g.ip());
        let now = Instant::now();
        group.bench_function("gateway_decapsulate", |b| {
            b.iter(|| {
                let mut bytes = 0usize;
                for m in &messages {
                    if let Some(d) = gw.handle_datagram(now, relay, m) {
                        bytes += d.payload.len();
                    }
                }
                assert_eq!(bytes, PACKETS * PAYLOAD);
                black_box(bytes)
            })
        });
        let packets: Vec<Vec<u8>> = payloads
            .iter()
            .map(|p| {
                let mut packet = Vec::new();
                inner::build_udp(s, g, 1, p, &mut packet).unwrap();
                packet
            })
            .collect();
        for gateways in [1usize, 10, 100] {
            let mut relay_sm = relay_with(gateways, relay, s.ip(), g.ip());
            let mut out = Vec::with_capacity(2048);
            group.bench_function(format!("relay_forward_{gateways}"), |b| {
                b.iter(|| {
                    let mut routes = 0usize;
                    for p in &packets {
                        routes += relay_sm.forward(now, p, &mut out).len();
                    }
                    assert_eq!(routes, PACKETS * gateways);
                    black_box(routes)
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
