//! The sans-IO relay and the sans-IO gateway wired together in simulated
//! time: every datagram is handed over at once, both sides' timers run when
//! due, and the test injects data at the relay. Faults: relay restart
//! mid-stream, secret rotation, L flag, NAT rebinding with the G flag, dropped
//! and delayed replies.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use h3m_amt::gateway::{Gateway, GatewayConfig, GatewayEvent, LossReason, RelayCandidate};
use h3m_amt::relay::{Faults, LeaveReason, Relay, RelayConfig, RelayEvent};

const DISCOVERY: &str = "192.52.193.1";
const RELAY: &str = "203.0.113.1";
const RELAY_B: &str = "203.0.113.5";
const GW: &str = "203.0.113.2";
const S: &str = "198.51.100.10";
const G1: &str = "232.1.1.1";
const G2: &str = "232.1.1.2";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn at(s: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip(s), port)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

use h3m_amt::gateway::XorShiftRng as TestRng;

fn payload(seq: u32) -> Vec<u8> {
    let mut p = format!("AMT-SIM seq={seq:06} ").into_bytes();
    p.extend(0u8..32);
    p
}

/// A relay process: the addresses it owns and its state machine.
struct SimRelay {
    addrs: Vec<IpAddr>,
    relay: Relay,
    events: Vec<RelayEvent>,
}

/// Periodic data injected at one relay for one group.
struct Feed {
    relay: usize,
    group: &'static str,
    every: Duration,
    next: Instant,
    seq: u32,
    /// (time, seq) of every injection.
    injected: Vec<(Instant, u32)>,
}

struct Sim {
    now: Instant,
    gw: Gateway,
    /// The gateway's address as relays see it (after NAT).
    gw_addr: SocketAddr,
    relays: Vec<SimRelay>,
    feeds: Vec<Feed>,
    /// (time, payload) of every datagram the gateway delivered.
    delivered: Vec<(Instant, Vec<u8>)>,
    /// Relay datagrams to an address that is not (any more) the gateway's.
    lost: usize,
    gw_events: Vec<(Instant, GatewayEvent)>,
}

impl Sim {
    fn new(gw_config: GatewayConfig, relays: Vec<(Vec<&str>, RelayConfig)>) -> Sim {
        let now = Instant::now();
        let relays = relays
            .into_iter()
            .enumerate()
            .map(|(i, (addrs, c))| SimRelay {
                addrs: addrs.into_iter().map(ip).collect(),
                relay: Relay::new(c, Box::new(TestRng(0x5eed_0000 + i as u32)), now),
                events: Vec::new(),
            })
            .collect();
        Sim {
            now,
            gw: Gateway::new(now, gw_config, Box::new(TestRng(0x1234_5678))),
            gw_addr: at(GW, 40001),
            relays,
            feeds: Vec::new(),
            delivered: Vec::new(),
            lost: 0,
            gw_events: Vec::new(),
        }
    }

    /// One relay listening on the anycast and the unicast address; the gateway discovers it.
    fn standard() -> Sim {
        Sim::standard_with(RelayConfig::new(&[ip(RELAY)]))
    }

    fn standard_with(config: RelayConfig) -> Sim {
        let gw = GatewayConfig::new(vec![RelayCandidate { address: ip(DISCOVERY), discovery: true }]);
        Sim::new(gw, vec![(vec![DISCOVERY, RELAY], config)])
    }

    fn relay(&mut self, i: usize) -> &mut Relay {
        &mut self.relays[i].relay
    }

    fn feed(&mut self, relay: usize, group: &'static str, every: Duration) {
        let next = self.now;
        self.feeds.push(Feed { relay, group, every, next, seq: 0, injected: Vec::new() });
    }

    /// Hands every queued datagram over until nothing moves.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(t) = self.gw.poll_transmit() {
                moved = true;
                if let Some(r) = self.relays.iter_mut().find(|r| r.addrs.contains(&t.destination.ip())) {
                    r.relay.handle_datagram(self.now, t.destination, self.gw_addr, &t.payload);
                }
            }
            for r in &mut self.relays {
                while let Some(t) = r.relay.poll_transmit() {
                    moved = true;
                    assert!(r.addrs.contains(&t.source.ip()), "a relay sends from its own addresses");
                    if t.destination != self.gw_addr {
                        self.lost += 1;
                    } else if let Some(d) = self.gw.handle_datagram(self.now, t.source, &t.payload) {
                        self.delivered.push((self.now, d.payload.to_vec()));
                    }
                }
                r.events.extend(std::iter::from_fn(|| r.relay.poll_event()));
            }
            let now = self.now;
            self.gw_events.extend(std::iter::from_fn(|| self.gw.poll_event()).map(|e| (now, e)));
            if !moved {
                break;
            }
        }
    }

    /// Runs every timer and feed up to and including `end`.
    fn run_until(&mut self, end: Instant) {
        self.pump();
        for _ in 0..10_000_000 {
            let next = [self.gw.poll_timeout()]
                .into_iter()
                .chain(self.relays.iter().map(|r| r.relay.poll_timeout()))
                .chain(self.feeds.iter().map(|f| Some(f.next)))
                .flatten()
                .min();
            let Some(next) = next.filter(|n| *n <= end) else {
                self.now = end;
                return;
            };
            self.now = next.max(self.now);
            let now = self.now;
            if self.gw.poll_timeout().is_some_and(|t| t <= now) {
                self.gw.handle_timeout(now);
            }
            for r in &mut self.relays {
                if r.relay.poll_timeout().is_some_and(|t| t <= now) {
                    r.relay.handle_timeout(now);
                }
            }
            for f in &mut self.feeds {
                if f.next <= now {
                    let relay = &mut self.relays[f.relay].relay;
                    relay.inject(now, at(S, 40000), at(f.group, 5001), 1, &payload(f.seq)).unwrap();
                    f.injected.push((now, f.seq));
                    f.seq += 1;
                    f.next = now + f.every;
                }
            }
            self.pump();
        }
        panic!("simulation does not advance");
    }

    /// Runs in 10 ms steps until the gateway is established (at most `limit`).
    fn run_until_established(&mut self, limit: Duration) {
        let end = self.now + limit;
        while !self.gw.is_established() {
            assert!(self.now < end, "not established within {limit:?}");
            self.run_for(ms(10));
        }
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until(end);
    }

    /// Sequence numbers delivered for feed payloads, in order.
    fn delivered_seqs(&self) -> Vec<u32> {
        self.delivered
            .iter()
            .map(|(_, p)| {
                let text = std::str::from_utf8(&p[..19]).unwrap();
                let seq: u32 = text["AMT-SIM seq=".len()..18].parse().unwrap();
                assert_eq!(p, &payload(seq), "byte-exact payload");
                seq
            })
            .collect()
    }
}

#[test]
fn a_full_session_delivers_injected_data_and_leaves_cleanly() {
    let mut sim = Sim::standard();
    let t0 = sim.now;
    sim.gw.subscribe(t0, Some(ip(S)), ip(G1)).unwrap();
    sim.pump();
    assert!(sim.gw.is_established(), "zero-latency handshake");
    assert_eq!(sim.gw.relay(), Some(at(RELAY, 2268)));
    assert_eq!(
        sim.relays[0].events,
        vec![
            RelayEvent::GatewayJoined { gateway: at(GW, 40001), source: Some(ip(S)), group: ip(G1) },
            RelayEvent::Join { source: Some(ip(S)), group: ip(G1) },
        ]
    );
    let g = sim.relay(0).gateway(at(GW, 40001)).unwrap();
    assert_eq!(g.local, at(RELAY, 2268), "Updates go to the advertised address");
    // Ten minutes of data, one packet a second, through refreshes.
    sim.feed(0, G1, secs(1));
    sim.run_for(secs(600));
    let injected = sim.feeds[0].injected.len();
    assert_eq!(injected, 601);
    assert_eq!(sim.delivered_seqs(), (0..601).collect::<Vec<u32>>());
    let st = sim.relay(0).stats().clone();
    assert_eq!((st.rx.relay_discovery, st.tx.relay_advertisement), (1, 1));
    assert_eq!(st.rx.request, 1 + 600 / 25, "a refresh every 25 s");
    assert_eq!(st.tx.membership_query, st.rx.request);
    assert_eq!((st.mac_failures, st.expired, st.data_no_subscriber), (0, 0, 0));
    assert_eq!((st.data_packets, st.tx.multicast_data), (601, 601));
    // Leave: the BLOCK report reaches the relay, which leaves natively.
    sim.feeds.clear();
    sim.relays[0].events.clear();
    let now = sim.now;
    sim.gw.unsubscribe(now, Some(ip(S)), ip(G1));
    sim.pump();
    assert_eq!(
        sim.relays[0].events,
        vec![
            RelayEvent::GatewayLeft {
                gateway: at(GW, 40001),
                source: Some(ip(S)),
                group: ip(G1),
                reason: LeaveReason::Report
            },
            RelayEvent::Leave { source: Some(ip(S)), group: ip(G1) },
        ]
    );
    assert_eq!(sim.relay(0).gateway_count(), 0);
    assert_eq!(sim.lost, 0);
}

#[test]
fn relay_restart_mid_stream_recovers_within_the_gateways_timers() {
    let mut sim = Sim::standard();
    let t0 = sim.now;
    sim.gw.subscribe(t0, Some(ip(S)), ip(G1)).unwrap();
    sim.pump();
    let every = ms(100);
    sim.feed(0, G1, every);
    sim.run_for(secs(5));
    let before = sim.delivered.len();
    assert_eq!(before, sim.feeds[0].injected.len(), "nothing lost before the restart");
    let restart = sim.now;
    sim.relay(0).restart(restart);
    sim.pump();
    assert_eq!(sim.relays[0].events.last(), Some(&RelayEvent::Leave { source: Some(ip(S)), group: ip(G1) }));
    sim.run_for(secs(60));
    // The first datagram after the restart, and the bound the gateway's
    // timers give: the data watchdog (no data for `data_timeout`) sends a
    // Request at once; the relay answers; the Update restores the state.
    let (recovered, _) = sim.delivered[before];
    let watchdog = GatewayConfig::new(vec![]).data_timeout.unwrap();
    assert!(recovered > restart);
    assert!(recovered - restart <= watchdog + every, "recovered after {:?}", recovered - restart);
    let ev: Vec<&GatewayEvent> = sim.gw_events.iter().map(|(_, e)| e).collect();
    assert!(ev.iter().any(|e| matches!(e, GatewayEvent::DataAbsent { .. })), "{ev:?}");
    // Everything injected from the recovery on arrives, in order, byte-exact.
    let after: Vec<u32> = sim.feeds[0].injected.iter().filter(|(t, _)| *t >= recovered).map(|(_, s)| *s).collect();
    let seqs = sim.delivered_seqs();
    assert_eq!(seqs[before..], after[..]);
    // And nothing from the dead interval (the relay had no subscriber then).
    let lost = sim.feeds[0].injected.iter().filter(|(t, _)| *t > restart && *t < recovered).count() as u64;
    assert_eq!(sim.relay(0).stats().data_no_subscriber, lost);
    assert_eq!(
        sim.relays[0].events.iter().filter(|e| matches!(e, RelayEvent::Join { .. })).count(),
        2,
        "joined again after the restart"
    );
    assert_eq!(sim.relay(0).stats().restarts, 1);
}

#[test]
fn secret_rotation_loses_nothing() {
    let config = RelayConfig { secret_rotation: Some(secs(30)), ..RelayConfig::new(&[ip(RELAY)]) };
    let mut sim = Sim::standard_with(config);
    let t0 = sim.now;
    sim.gw.subscribe(t0, Some(ip(S)), ip(G1)).unwrap();
    sim.pump();
    sim.feed(0, G1, ms(500));
    // A new channel right after a rotation: its Update carries a MAC of the
    // previous secret (the last Query was at 25 s, the rotation at 30 s).
    sim.run_until(t0 + secs(31));
    let now = sim.now;
    sim.gw.subscribe(now, Some(ip(S)), ip(G2)).unwrap();
    sim.feed(0, G2, ms(700));
    sim.run_until(t0 + secs(600));
    let st = sim.relay(0).stats().clone();
    assert_eq!(st.secret_rotations, 20);
    assert_eq!(st.mac_failures, 0);
    assert!(st.mac_previous_secret >= 1, "{st:?}");
    let injected = sim.feeds[0].injected.len() + sim.feeds[1].injected.len();
    assert_eq!(sim.delivered.len(), injected, "no loss");
    assert_eq!(st.data_no_subscriber, 0);
    sim.delivered_seqs();
    assert_eq!(
        sim.relay(0).gateway(at(GW, 40001)).unwrap().channels.len(),
        2,
        "both channels held through 20 rotations"
    );
}

#[test]
fn the_l_flag_moves_the_gateway_to_the_next_relay() {
    let gw = GatewayConfig::new(vec![
        RelayCandidate { address: ip(RELAY), discovery: false },
        RelayCandidate { address: ip(RELAY_B), discovery: false },
    ]);
    let mut sim = Sim::new(
        gw,
        vec![(vec![RELAY], RelayConfig::new(&[ip(RELAY)])), (vec![RELAY_B], RelayConfig::new(&[ip(RELAY_B)]))],
    );
    let t0 = sim.now;
    sim.relay(0).set_faults(t0, Faults { limit_next_query: true, ..Faults::default() });
    sim.gw.subscribe(t0, Some(ip(S)), ip(G1)).unwrap();
    sim.pump();
    assert_eq!(sim.gw.relay(), Some(at(RELAY_B, 2268)));
    assert!(sim.gw.is_established());
    assert!(
        sim.gw_events
            .iter()
            .any(|(_, e)| *e == GatewayEvent::RelayLost { relay: ip(RELAY), reason: LossReason::Limit })
    );
    assert_eq!(sim.relay(0).stats().limited_queries, 1);
    assert_eq!(sim.relay(0).stats().rx.membership_update, 0, "no Update to the limited relay");
    sim.feed(1, G1, secs(1));
    sim.run_for(secs(120));
    assert_eq!(sim.delivered.len(), sim.feeds[0].injected.len());
    sim.delivered_seqs();
    assert_eq!(sim.relay(0).gateway_count(), 0);
    assert_eq!(sim.relay(1).gateway_count(), 1);
    assert_eq!(sim.relay(0).stats().rx.request, 1, "relay A is held down: not asked again");
}

#[test]
fn nat_rebinding_is_reported_with_the_g_flag_and_the_old_state_torn_down() {
    let mut sim = Sim::standard();
    let t0 = sim.now;
    sim.gw.subscribe(t0, Some(ip(S)), ip(G1)).unwrap();
    sim.pump();
    sim.feed(0, G1, ms(200));
    sim.run_for(secs(10));
    let before = sim.delivered.len();
    assert_eq!(before, sim.feeds[0].injected.len());
    // The NAT gives the gateway a new public port.
    let old = sim.gw_addr;
    let new = at(GW, 50000);
    sim.gw_addr = new;
    sim.run_for(secs(60));
    let changed = sim
        .gw_events
        .iter()
        .find(|(_, e)| matches!(e, GatewayEvent::GatewayAddressChanged { .. }))
        .cloned()
        .expect("the gateway saw its new address in the G trailer");
    assert_eq!(changed.1, GatewayEvent::GatewayAddressChanged { old, new });
    let st = sim.relay(0).stats().clone();
    assert_eq!((st.teardowns, st.mac_failures), (1, 0));
    let gws: Vec<SocketAddr> = sim.relay(0).gateways().iter().map(|g| g.address).collect();
    assert_eq!(gws, vec![new], "the old state is gone, the new one is there");
    assert!(sim.relays[0].events.contains(&RelayEvent::GatewayLeft {
        gateway: old,
        source: Some(ip(S)),
        group: ip(G1),
        reason: LeaveReason::Teardown
    }));
    // Data went to the dead binding until the change, and to the new port after it.
    assert!(sim.lost > 0);
    // (The datagram injected at the very instant of the change, before the
    // Query reached the gateway, went to the old binding.)
    let after: Vec<u32> = sim.feeds[0].injected.iter().filter(|(t, _)| *t > changed.0).map(|(_, s)| *s).collect();
    let seqs = sim.delivered_seqs();
    assert_eq!(seqs[before..], after[..]);
    assert_eq!(sim.relay(0).gateway(new).unwrap().data_messages, after.len() as u64);
}

#[test]
fn dropped_replies_are_retried() {
    // Three Advertisements lost: the gateway retries (and starts a new round).
    let mut sim = Sim::standard();
    let t0 = sim.now;
    sim.relay(0).set_faults(t0, Faults { drop_replies: 3, ..Faults::default() });
    sim.gw.subscribe(t0, Some(ip(S)), ip(G1)).unwrap();
    sim.run_until_established(secs(30));
    assert_eq!(sim.relay(0).stats().replies_dropped, 3);
    assert_eq!(sim.gw.stats().discoveries_sent, 4);
    // Two Queries lost: Requests are retried with fresh nonces.
    let gw = GatewayConfig::new(vec![RelayCandidate { address: ip(RELAY), discovery: false }]);
    let mut sim = Sim::new(gw, vec![(vec![RELAY], RelayConfig::new(&[ip(RELAY)]))]);
    let t0 = sim.now;
    sim.relay(0).set_faults(t0, Faults { drop_replies: 2, ..Faults::default() });
    sim.gw.subscribe(t0, Some(ip(S)), ip(G1)).unwrap();
    sim.run_until_established(secs(30));
    assert_eq!(sim.gw.stats().requests_sent, 3);
    assert_eq!(sim.relay(0).stats().rx.request, 3);
    sim.feed(0, G1, secs(1));
    sim.run_for(secs(10));
    assert_eq!(sim.delivered.len(), sim.feeds[0].injected.len());
}

#[test]
fn delayed_replies_are_waited_out() {
    // Every reply 1.5 s late: Requests are retried (fresh nonces), stale
    // Queries are ignored, and the handshake completes once a retry waits long enough.
    let gw = GatewayConfig::new(vec![RelayCandidate { address: ip(RELAY), discovery: false }]);
    let mut sim = Sim::new(gw, vec![(vec![RELAY], RelayConfig::new(&[ip(RELAY)]))]);
    let t0 = sim.now;
    sim.relay(0).set_faults(t0, Faults { delay_replies: Some(ms(1500)), ..Faults::default() });
    sim.gw.subscribe(t0, Some(ip(S)), ip(G1)).unwrap();
    sim.run_for(secs(60));
    assert!(sim.gw.is_established());
    assert!(sim.relay(0).stats().replies_delayed >= 1);
    assert!(sim.gw.stats().nonce_mismatch >= 1, "a Query for a superseded Request is stale");
    sim.feed(0, G1, secs(1));
    sim.run_for(secs(10));
    assert_eq!(sim.delivered.len(), sim.feeds[0].injected.len());
    sim.delivered_seqs();
}

#[test]
fn an_update_with_a_stale_mac_is_refused_and_the_next_cycle_repairs_it() {
    let mut sim = Sim::standard();
    let t0 = sim.now;
    sim.gw.subscribe(t0, Some(ip(S)), ip(G1)).unwrap();
    sim.pump();
    sim.run_until_established(secs(5));
    // The relay changes its secret twice in a row (e.g. a restart elsewhere in
    // a cluster): the gateway's MAC is now unknown to it.
    let now = sim.now;
    sim.relay(0).rotate_secret(now);
    sim.relay(0).rotate_secret(now);
    // A join now carries the stale MAC: refused (MAC mismatch), nothing joined.
    sim.gw.subscribe(now, Some(ip(S)), ip(G2)).unwrap();
    sim.pump();
    assert!(sim.relay(0).stats().mac_failures >= 1, "{:?}", sim.relay(0).stats());
    sim.feed(0, G2, ms(250));
    sim.run_for(ms(500));
    assert!(sim.delivered.is_empty(), "the refused join brings no data");
    // The refresh (at most 25 s) or the watchdog asks again: a fresh Query,
    // a fresh MAC, a current-state report with both channels, data flows.
    sim.run_for(secs(30));
    let seqs = sim.delivered_seqs();
    assert!(!seqs.is_empty(), "the channel is repaired");
    let first = sim.delivered[0].0 - t0;
    assert!(first <= secs(26), "repaired by the next cycle, not later: {first:?}");
    assert_eq!(sim.relay(0).gateway(at(GW, 40001)).unwrap().channels.len(), 2);
}
