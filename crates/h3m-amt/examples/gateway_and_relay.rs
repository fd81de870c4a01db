//! An AMT gateway and relay (RFC 7450), both sans-IO, wired together in
//! memory: the gateway discovers the relay, sets up the tunnel, joins an
//! (S,G) channel, and receives a multicast datagram the relay tunnels to it.
//! No socket is opened: the program hands each side's datagrams to the other,
//! as a driver hands them to a UDP socket ([`h3m_amt::tunnel::Tunnel`] is the
//! gateway's real driver, `h3m-amt-relay` the relay's).
//!
//! Run: `cargo run -p h3m-amt --example gateway_and_relay` (`cargo test` runs it too).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use h3m_amt::gateway::{Gateway, GatewayConfig, GatewayEvent, RelayCandidate, XorShiftRng};
use h3m_amt::relay::{Relay, RelayConfig};

fn main() {
    let relay_ip: IpAddr = "203.0.113.1".parse().unwrap();
    let gateway_addr: SocketAddr = "198.51.100.2:40001".parse().unwrap();
    let (source, group): (IpAddr, IpAddr) = ("192.0.2.10".parse().unwrap(), "232.1.1.1".parse().unwrap());
    let mut now = Instant::now();

    let mut relay = Relay::new(RelayConfig::new(&[relay_ip]), Box::new(XorShiftRng(0x5eed)), now);
    let candidates = vec![RelayCandidate { address: relay_ip, discovery: true }];
    let mut gateway = Gateway::new(now, GatewayConfig::new(candidates), Box::new(XorShiftRng(0x1234)));
    gateway.subscribe(now, Some(source), group).expect("a valid (S,G)");

    let mut delivered = Vec::new();
    let mut injected = false;
    for _ in 0..100 {
        // Hand every datagram over until nothing moves.
        loop {
            let mut moved = false;
            while let Some(t) = gateway.poll_transmit() {
                moved = true;
                relay.handle_datagram(now, t.destination, gateway_addr, &t.payload);
            }
            while let Some(t) = relay.poll_transmit() {
                moved = true;
                if let Some(d) = gateway.handle_datagram(now, t.source, &t.payload) {
                    delivered.push(d.payload.to_vec());
                }
            }
            if !moved {
                break;
            }
        }
        for event in std::iter::from_fn(|| gateway.poll_event()) {
            match event {
                GatewayEvent::RelayDiscovered { relay, .. } => println!("discovered relay {relay}"),
                GatewayEvent::Connected { relay } => println!("tunnel up with {relay}"),
                other => println!("{other:?}"),
            }
        }
        if gateway.is_established() && !injected {
            // A multicast datagram reaches the relay's upstream interface.
            let from = SocketAddr::new(source, 40000);
            relay.inject(now, from, SocketAddr::new(group, 5001), 1, b"hello through the tunnel").unwrap();
            injected = true;
        }
        if !delivered.is_empty() {
            break;
        }
        now += Duration::from_millis(10);
        if gateway.poll_timeout().is_some_and(|t| t <= now) {
            gateway.handle_timeout(now);
        }
        if relay.poll_timeout().is_some_and(|t| t <= now) {
            relay.handle_timeout(now);
        }
    }
    assert_eq!(delivered, [b"hello through the tunnel".to_vec()]);
    println!("delivered: {}", String::from_utf8_lossy(&delivered[0]));
    println!("gateway: {:?}", gateway.stats());
}
