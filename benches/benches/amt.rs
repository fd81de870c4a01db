//! AMT data-path rates, in process (no sockets): what one core can
//! decapsulate as a gateway and encapsulate as a relay.
//!
//! - `gateway_decapsulate`: an established [`Gateway`] takes 10 000 Multicast
//!   Data messages, each an IPv4 UDP datagram with a 1200-byte payload (an h3m
//!   packet), checks the relay's address, the inner IPv4 and UDP headers and
//!   checksums and the (S,G) subscription, and hands the payload back.
//! - `relay_encapsulate`: what a relay does per native packet and gateway:
//!   build the inner IPv4/UDP datagram (checksums included) and wrap it in a
//!   Multicast Data message.
//!
//! Run: `cargo bench -p h3m-benches --bench amt`. Criterion prints the time per
//! 10 000 packets with packets/s (`elements`) and MiB/s of UDP payload.

use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use h3m_amt::gateway::{Gateway, GatewayConfig, RelayCandidate, Rng};
use h3m_amt::inner;
use h3m_amt::membership::{self, QueryParams};
use h3m_amt::message::Message;

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
    let mut gw = Gateway::new(config, Box::new(Counter(7)));
    gw.subscribe(now, Some(source), group).unwrap();
    let req = gw.poll_transmit().unwrap();
    let Ok(Message::Request { nonce, .. }) = Message::decode(&req.payload) else { panic!("no Request") };
    let q = membership::build_query("10.0.0.1".parse().unwrap(), &QueryParams { max_resp_code: 100, qrv: 2, qqic: 125 });
    let mut m = Vec::new();
    Message::MembershipQuery { limit: false, mac: [1; 6], nonce, query: &q, gateway: None }.encode(&mut m);
    gw.handle_datagram(now, relay, &m);
    while gw.poll_transmit().is_some() {}
    assert!(gw.is_established());
    gw
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
    let payloads: Vec<Vec<u8>> =
        (0..PACKETS).map(|i| (0..PAYLOAD).map(|j| (i * 31 + j) as u8).collect()).collect();

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
        let mut out = Vec::with_capacity(2048);
        let mut packet = Vec::with_capacity(2048);
        group.bench_function("relay_encapsulate", |b| {
            b.iter(|| {
                let mut bytes = 0usize;
                for p in &payloads {
                    packet.clear();
                    inner::build_udp(s, g, 1, p, &mut packet).unwrap();
                    out.clear();
                    Message::MulticastData { packet: &packet }.encode(&mut out);
                    bytes += out.len();
                }
                black_box(bytes)
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
