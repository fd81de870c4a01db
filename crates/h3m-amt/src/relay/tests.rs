//! Tests of the relay state machine.

use super::groups::state_bytes;
use super::*;
use crate::membership::build_report;
use crate::membership::{GroupRecord, QueryParams, RecordType};
use ring::hmac;
use std::time::Duration;

const RELAY4: &str = "203.0.113.1";
const RELAY6: &str = "2001:db8:113::1";
const S1: &str = "198.51.100.10";
const S2: &str = "198.51.100.11";
const G1: &str = "232.1.1.1";
const G2: &str = "232.1.1.2";
const SEED: u32 = 0x1234_5678;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn at(s: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip(s), port)
}

fn gw() -> SocketAddr {
    at("203.0.113.2", 40001)
}

fn local4() -> SocketAddr {
    at(RELAY4, 2268)
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

use crate::gateway::XorShiftRng as TestRng;

/// The `n`th secret (0 = the first) the relay draws from `TestRng(SEED)`.
fn secret(n: usize) -> [u8; 32] {
    let mut rng = TestRng(SEED);
    let mut s = [0u8; 32];
    for _ in 0..=n {
        for c in s.chunks_exact_mut(4) {
            c.copy_from_slice(&rng.next_u32().to_be_bytes());
        }
    }
    s
}

/// HMAC-SHA256(secret, ip || port || nonce), first 6 octets, computed here independently.
fn expected_mac(secret: &[u8; 32], gateway: SocketAddr, nonce: u32) -> ResponseMac {
    let mut data = match gateway.ip() {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    data.extend_from_slice(&gateway.port().to_be_bytes());
    data.extend_from_slice(&nonce.to_be_bytes());
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), &data);
    tag.as_ref()[..6].try_into().unwrap()
}

fn config() -> RelayConfig {
    RelayConfig::new(&[ip(RELAY4), ip(RELAY6)])
}

fn relay_with(config: RelayConfig) -> (Relay, Instant) {
    let t0 = Instant::now();
    (Relay::new(config, Box::new(TestRng(SEED)), t0), t0)
}

fn relay() -> (Relay, Instant) {
    relay_with(config())
}

fn drain(r: &mut Relay) -> Vec<RelayTransmit> {
    std::iter::from_fn(|| r.poll_transmit()).collect()
}

fn events(r: &mut Relay) -> Vec<RelayEvent> {
    std::iter::from_fn(|| r.poll_event()).collect()
}

fn native(r: &mut Relay) -> Vec<RelayEvent> {
    events(r).into_iter().filter(|e| matches!(e, RelayEvent::Join { .. } | RelayEvent::Leave { .. })).collect()
}

fn rec(kind: RecordType, group: &str, sources: &[&str]) -> GroupRecord {
    GroupRecord { kind, group: ip(group), sources: sources.iter().map(|s| ip(s)).collect() }
}

fn report(records: &[GroupRecord]) -> Vec<u8> {
    let v6 = records.first().is_some_and(|r| r.group.is_ipv6());
    let source = if v6 { ip("fe80::9000:1") } else { ip("0.0.0.0") };
    build_report(source, records).unwrap()
}

fn update_bytes(r: &Relay, from: SocketAddr, nonce: u32, records: &[GroupRecord]) -> Vec<u8> {
    let mac = r.response_mac(from, nonce);
    Message::MembershipUpdate { mac, nonce, report: &report(records) }.to_vec()
}

fn update(r: &mut Relay, now: Instant, from: SocketAddr, records: &[GroupRecord]) {
    let bytes = update_bytes(r, from, 77, records);
    let local = if from.is_ipv6() { at(RELAY6, 2268) } else { local4() };
    r.handle_datagram(now, local, from, &bytes);
}

fn packet(s: &str, g: &str, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    inner::build_udp(at(s, 40000), at(g, 5001), 1, payload, &mut p).unwrap();
    p
}

/// Gateways a packet from `s` to `g` goes to.
fn routes(r: &mut Relay, now: Instant, s: &str, g: &str) -> Vec<SocketAddr> {
    let mut msg = Vec::new();
    r.forward(now, &packet(s, g, b"x"), &mut msg).iter().map(|d| d.destination).collect()
}

fn channels(r: &Relay, gateway: SocketAddr) -> Vec<(Option<IpAddr>, IpAddr)> {
    r.gateway(gateway).map(|g| g.channels.iter().map(|c| (c.source, c.group)).collect()).unwrap_or_default()
}

fn ssm(s: &str, g: &str) -> (Option<IpAddr>, IpAddr) {
    (Some(ip(s)), ip(g))
}

fn asm(g: &str) -> (Option<IpAddr>, IpAddr) {
    (None, ip(g))
}

fn query_of(t: &RelayTransmit) -> (bool, ResponseMac, u32, Vec<u8>, Option<SocketAddr>) {
    match Message::decode(&t.payload).unwrap() {
        Message::MembershipQuery { limit, mac, nonce, query, gateway } => (limit, mac, nonce, query.to_vec(), gateway),
        m => panic!("expected a Query, got {m:?}"),
    }
}

fn request(r: &mut Relay, now: Instant, from: SocketAddr, nonce: u32) -> RelayTransmit {
    r.handle_datagram(now, local4(), from, &Message::Request { mld: false, nonce }.to_vec());
    let mut t = drain(r);
    assert_eq!(t.len(), 1);
    t.remove(0)
}

// ---- messages -----------------------------------------------------------

#[test]
fn discovery_is_answered_from_the_arrival_address_with_the_right_family() {
    let (mut r, t0) = relay();
    let disc = hex("01000000 0d15c0e1");
    r.handle_datagram(t0, at("192.52.193.1", 2268), gw(), &disc);
    assert_eq!(
        drain(&mut r),
        vec![RelayTransmit {
            source: at("192.52.193.1", 2268),
            destination: gw(),
            payload: hex("02000000 0d15c0e1 cb007101"),
        }]
    );
    let gw6 = at("2001:db8:113::2", 40001);
    r.handle_datagram(t0, at("2001:3::1", 2268), gw6, &hex("01000000 74b0dc51"));
    assert_eq!(
        drain(&mut r),
        vec![RelayTransmit {
            source: at("2001:3::1", 2268),
            destination: gw6,
            payload: hex("02000000 74b0dc51 20010db8011300000000000000000001"),
        }]
    );
    assert_eq!((r.stats().rx.relay_discovery, r.stats().tx.relay_advertisement), (2, 2));
}

#[test]
fn discovery_of_an_unconfigured_family_names_what_is_configured() {
    let (mut r, t0) = relay_with(RelayConfig::new(&[ip(RELAY4)]));
    let gw6 = at("2001:db8:113::2", 40001);
    r.handle_datagram(t0, at("2001:3::1", 2268), gw6, &hex("01000000 00000005"));
    assert_eq!(drain(&mut r)[0].payload, hex("02000000 00000005 cb007101"));
    // Nothing configured: the address the Discovery arrived on.
    let (mut r, t0) = relay_with(RelayConfig::default());
    r.handle_datagram(t0, at("127.0.0.2", 2268), at("127.0.0.1", 5000), &hex("01000000 00000006"));
    assert_eq!(drain(&mut r)[0].payload, hex("02000000 00000006 7f000002"));
}

#[test]
fn zero_nonces_junk_and_bad_sources_are_ignored_and_counted() {
    let (mut r, t0) = relay();
    r.handle_datagram(t0, local4(), gw(), &hex("01000000 00000000"));
    r.handle_datagram(t0, local4(), gw(), &hex("03000000 00000000"));
    r.handle_datagram(t0, local4(), gw(), &[]);
    r.handle_datagram(t0, local4(), gw(), &[0x13, 0, 0, 0, 0, 0, 0, 1]);
    r.handle_datagram(t0, local4(), gw(), &hex("0600 4500"));
    r.handle_datagram(t0, local4(), gw(), &hex("02000000 0d15c0e1 cb007101"));
    r.handle_datagram(t0, local4(), at("203.0.113.2", 0), &hex("01000000 00000001"));
    r.handle_datagram(t0, local4(), at("0.0.0.0", 5), &hex("01000000 00000001"));
    r.handle_datagram(t0, local4(), at("224.0.0.1", 5), &hex("01000000 00000001"));
    assert!(drain(&mut r).is_empty());
    let s = r.stats();
    assert_eq!((s.nonce_zero, s.malformed, s.unexpected, s.bad_source), (2, 2, 2, 3));
    assert_eq!(s.tx, MessageCounts::default());
    assert_eq!((s.rx.relay_discovery, s.rx.request, s.rx.multicast_data), (4, 1, 1));
}

#[test]
fn request_gets_a_query_with_the_hmac_the_query_and_the_g_trailer() {
    let (mut r, t0) = relay();
    r.handle_datagram(t0, local4(), gw(), &hex("03000000 5eed0001"));
    let t = drain(&mut r);
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].source, t[0].destination), (local4(), gw()));
    let mac = expected_mac(&secret(0), gw(), 0x5eed0001);
    let mut expected = vec![0x04, 0x01];
    expected.extend_from_slice(&mac);
    expected.extend_from_slice(&hex("5eed0001"));
    expected.extend_from_slice(&membership::build_query(ip(RELAY4), &DEFAULT_QUERY));
    expected.extend_from_slice(&hex("9c41 000000000000000000000000cb007102"));
    assert_eq!(t[0].payload, expected);
    // The inner query as a gateway reads it.
    let (_, _, _, q, _) = query_of(&t[0]);
    let q = membership::parse_query(&q).unwrap();
    assert_eq!(
        (q.source, q.qrv, q.qqi, q.max_resp),
        (ip(RELAY4), 2, Duration::from_secs(125), Duration::from_secs(10))
    );
    assert!(q.router_alert);
    // P flag: an MLDv2 query from the link-local query source.
    r.handle_datagram(t0, local4(), gw(), &hex("03010000 5eed0002"));
    let (limit, mac2, nonce, q, g) = query_of(&drain(&mut r)[0]);
    assert_eq!((limit, nonce, g), (false, 0x5eed0002, Some(gw())));
    assert_eq!(mac2, expected_mac(&secret(0), gw(), 0x5eed0002));
    assert_eq!(q, membership::build_query(IpAddr::V6(DEFAULT_QUERY_SOURCE_V6), &DEFAULT_QUERY));
    assert_eq!(membership::parse_query(&q).unwrap().source, ip("fe80::1"));
    assert_eq!((r.stats().rx.request, r.stats().tx.membership_query), (2, 2));
    // Requests create no state.
    assert_eq!(r.gateway_count(), 0);
}

#[test]
fn the_mac_changes_with_the_gateway_port_and_nonce() {
    let (mut r, t0) = relay();
    let macs: Vec<ResponseMac> =
        [(gw(), 1u32), (at("203.0.113.2", 40002), 1), (gw(), 2), (at("203.0.113.3", 40001), 1)]
            .into_iter()
            .map(|(g, n)| {
                let (_, mac, _, _, _) = query_of(&request(&mut r, t0, g, n));
                assert_eq!(mac, expected_mac(&secret(0), g, n));
                assert_eq!(mac, r.response_mac(g, n));
                mac
            })
            .collect();
    for i in 0..macs.len() {
        for j in i + 1..macs.len() {
            assert_ne!(macs[i], macs[j], "{i} {j}");
        }
    }
    // IPv6 gateways: 16 octets of address.
    let g6 = at("2001:db8:113::2", 40001);
    assert_eq!(r.response_mac(g6, 1), expected_mac(&secret(0), g6, 1));
    // An IPv4-mapped source is the IPv4 gateway.
    let mapped = at("::ffff:203.0.113.2", 40001);
    assert_eq!(query_of(&request(&mut r, t0, mapped, 1)).1, macs[0]);
}

#[test]
fn the_previous_secret_is_accepted_after_one_rotation_and_refused_after_two() {
    let (mut r, t0) = relay();
    let old = update_bytes(&r, gw(), 5, &[rec(RecordType::AllowNewSources, G1, &[S1])]);
    r.rotate_secret(t0);
    assert_ne!(r.response_mac(gw(), 5), expected_mac(&secret(0), gw(), 5));
    assert_eq!(r.response_mac(gw(), 5), expected_mac(&secret(1), gw(), 5));
    r.handle_datagram(t0, local4(), gw(), &old);
    assert_eq!(channels(&r, gw()), vec![ssm(S1, G1)]);
    assert_eq!((r.stats().mac_previous_secret, r.stats().mac_failures), (1, 0));
    let older = update_bytes(&r, gw(), 6, &[rec(RecordType::AllowNewSources, G2, &[S1])]);
    let oldest = {
        let mac = expected_mac(&secret(0), gw(), 7);
        Message::MembershipUpdate { mac, nonce: 7, report: &report(&[rec(RecordType::AllowNewSources, G2, &[S2])]) }
            .to_vec()
    };
    r.rotate_secret(t0);
    r.handle_datagram(t0, local4(), gw(), &oldest);
    assert_eq!((r.stats().mac_previous_secret, r.stats().mac_failures), (1, 1));
    r.handle_datagram(t0, local4(), gw(), &older);
    assert_eq!((r.stats().mac_previous_secret, r.stats().mac_failures), (2, 1));
    assert_eq!(channels(&r, gw()), vec![ssm(S1, G1), ssm(S1, G2)]);
    assert_eq!(r.stats().secret_rotations, 2);
}

#[test]
fn the_secret_rotates_on_its_timer() {
    let mut c = config();
    c.secret_rotation = Some(Duration::from_secs(30));
    let (mut r, t0) = relay_with(c);
    assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    let before = r.response_mac(gw(), 1);
    r.handle_timeout(t0 + Duration::from_secs(29));
    assert_eq!(r.response_mac(gw(), 1), before);
    r.handle_timeout(t0 + Duration::from_secs(30));
    assert_eq!(r.response_mac(gw(), 1), expected_mac(&secret(1), gw(), 1));
    assert_eq!(r.stats().secret_rotations, 1);
    assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(60)));
    let (mut r, _) = relay_with(RelayConfig { secret_rotation: None, ..config() });
    assert_eq!(r.poll_timeout(), None);
    r.handle_timeout(t0 + Duration::from_secs(10_000));
    assert_eq!(r.stats().secret_rotations, 0);
}

#[test]
fn updates_need_the_mac_of_their_source_address_port_and_nonce() {
    let (mut r, t0) = relay();
    let good = update_bytes(&r, gw(), 9, &[rec(RecordType::ModeIsInclude, G1, &[S1])]);
    // Same bytes from another port, or with a flipped MAC or nonce: refused.
    r.handle_datagram(t0, local4(), at("203.0.113.2", 40002), &good);
    let mut bad = good.clone();
    bad[2] ^= 1;
    r.handle_datagram(t0, local4(), gw(), &bad);
    let mut other_nonce = good.clone();
    other_nonce[11] ^= 1;
    r.handle_datagram(t0, local4(), gw(), &other_nonce);
    assert_eq!(r.stats().mac_failures, 3);
    assert_eq!(r.gateway_count(), 0);
    assert!(events(&mut r).is_empty());
    r.handle_datagram(t0, local4(), gw(), &good);
    assert_eq!(
        events(&mut r),
        vec![
            RelayEvent::GatewayJoined { gateway: gw(), source: Some(ip(S1)), group: ip(G1) },
            RelayEvent::Join { source: Some(ip(S1)), group: ip(G1) },
        ]
    );
    assert!(drain(&mut r).is_empty(), "an Update is not answered");
    assert_eq!(r.stats().updates_applied, 1);
    assert_eq!(r.gateway(gw()).unwrap().local, local4());
    // A report that does not parse.
    let mac = r.response_mac(gw(), 9);
    r.handle_datagram(t0, local4(), gw(), &Message::MembershipUpdate { mac, nonce: 9, report: &[0x45, 0] }.to_vec());
    assert_eq!(r.stats().bad_reports, 1);
}

#[test]
fn native_joins_are_aggregated_over_gateways() {
    let (mut r, t0) = relay();
    let gw2 = at("203.0.113.3", 5000);
    update(&mut r, t0, gw(), &[rec(RecordType::AllowNewSources, G1, &[S1])]);
    update(&mut r, t0, gw2, &[rec(RecordType::AllowNewSources, G1, &[S1, S2])]);
    assert_eq!(
        native(&mut r),
        vec![
            RelayEvent::Join { source: Some(ip(S1)), group: ip(G1) },
            RelayEvent::Join { source: Some(ip(S2)), group: ip(G1) },
        ]
    );
    update(&mut r, t0, gw(), &[rec(RecordType::BlockOldSources, G1, &[S1])]);
    assert!(native(&mut r).is_empty(), "gw2 still wants (S1,G1)");
    assert_eq!(r.gateway_count(), 1, "a gateway without state is forgotten");
    update(&mut r, t0, gw2, &[rec(RecordType::ChangeToInclude, G1, &[])]);
    assert_eq!(
        native(&mut r),
        vec![
            RelayEvent::Leave { source: Some(ip(S1)), group: ip(G1) },
            RelayEvent::Leave { source: Some(ip(S2)), group: ip(G1) },
        ]
    );
    assert_eq!((r.stats().joins, r.stats().leaves), (2, 2));
    assert_eq!(r.joined().count(), 0);
}

#[test]
fn teardown_is_verified_against_the_reported_address() {
    let (mut r, t0) = relay();
    update(&mut r, t0, gw(), &[rec(RecordType::ModeIsInclude, G1, &[S1])]);
    events(&mut r);
    let new = at("203.0.113.2", 40002);
    let mac = r.response_mac(gw(), 77);
    // Wrong nonce, or an address the MAC was not made for: refused.
    r.handle_datagram(t0, local4(), new, &Message::Teardown { mac, nonce: 78, gateway: gw() }.to_vec());
    r.handle_datagram(t0, local4(), new, &Message::Teardown { mac, nonce: 77, gateway: new }.to_vec());
    assert_eq!(r.stats().mac_failures, 2);
    assert_eq!(r.gateway_count(), 1);
    // From the new address, about the old one: the old state goes.
    r.handle_datagram(t0, local4(), new, &Message::Teardown { mac, nonce: 77, gateway: gw() }.to_vec());
    assert_eq!(
        events(&mut r),
        vec![
            RelayEvent::GatewayLeft {
                gateway: gw(),
                source: Some(ip(S1)),
                group: ip(G1),
                reason: LeaveReason::Teardown
            },
            RelayEvent::Leave { source: Some(ip(S1)), group: ip(G1) },
        ]
    );
    assert_eq!((r.gateway_count(), r.stats().teardowns), (0, 1));
    r.handle_datagram(t0, local4(), new, &Message::Teardown { mac, nonce: 77, gateway: gw() }.to_vec());
    assert_eq!(r.stats().teardowns_unknown, 1);
    assert!(drain(&mut r).is_empty(), "a Teardown is not answered");
}

// ---- record semantics -----------------------------------------------------

#[test]
fn include_mode_records() {
    use RecordType::*;
    let (mut r, t0) = relay();
    update(&mut r, t0, gw(), &[rec(ModeIsInclude, G1, &[S1])]);
    assert_eq!(channels(&r, gw()), vec![ssm(S1, G1)]);
    update(&mut r, t0, gw(), &[rec(AllowNewSources, G1, &[S2])]);
    assert_eq!(channels(&r, gw()), vec![ssm(S1, G1), ssm(S2, G1)]);
    assert_eq!(routes(&mut r, t0, S2, G1), vec![gw()]);
    assert_eq!(routes(&mut r, t0, "198.51.100.12", G1), vec![]);
    update(&mut r, t0, gw(), &[rec(BlockOldSources, G1, &[S1])]);
    assert_eq!(channels(&r, gw()), vec![ssm(S2, G1)]);
    assert_eq!(routes(&mut r, t0, S1, G1), vec![]);
    // TO_IN(B) leaves exactly B.
    update(&mut r, t0, gw(), &[rec(ChangeToInclude, G1, &[S1])]);
    assert_eq!(channels(&r, gw()), vec![ssm(S1, G1)]);
    // TO_IN{} drops the group.
    update(&mut r, t0, gw(), &[rec(ChangeToInclude, G1, &[])]);
    assert_eq!(r.gateway_count(), 0);
    let ev = events(&mut r);
    assert_eq!(ev.iter().filter(|e| matches!(e, RelayEvent::GatewayJoined { .. })).count(), 3);
    assert_eq!(ev.iter().filter(|e| matches!(e, RelayEvent::GatewayLeft { .. })).count(), 3);
    assert_eq!(ev.last(), Some(&RelayEvent::Leave { source: Some(ip(S1)), group: ip(G1) }));
}

#[test]
fn exclude_mode_records() {
    use RecordType::*;
    let (mut r, t0) = relay();
    // IS_EX{} and TO_EX{}: any-source joins.
    update(&mut r, t0, gw(), &[rec(ModeIsExclude, G1, &[]), rec(ChangeToExclude, G2, &[])]);
    assert_eq!(channels(&r, gw()), vec![asm(G1), asm(G2)]);
    assert_eq!(
        native(&mut r),
        vec![RelayEvent::Join { source: None, group: ip(G1) }, RelayEvent::Join { source: None, group: ip(G2) }]
    );
    assert_eq!(routes(&mut r, t0, S1, G1), vec![gw()]);
    // BLOCK in EXCLUDE mode excludes; ALLOW takes it back.
    update(&mut r, t0, gw(), &[rec(BlockOldSources, G1, &[S1])]);
    assert_eq!(routes(&mut r, t0, S1, G1), vec![]);
    assert_eq!(routes(&mut r, t0, S2, G1), vec![gw()]);
    update(&mut r, t0, gw(), &[rec(AllowNewSources, G1, &[S1])]);
    assert_eq!(routes(&mut r, t0, S1, G1), vec![gw()]);
    // TO_EX(B): everything but B. IS_IN in EXCLUDE mode un-excludes.
    update(&mut r, t0, gw(), &[rec(ChangeToExclude, G1, &[S1])]);
    assert_eq!(routes(&mut r, t0, S1, G1), vec![]);
    update(&mut r, t0, gw(), &[rec(ModeIsInclude, G1, &[S1])]);
    assert_eq!(routes(&mut r, t0, S1, G1), vec![gw()]);
    // IS_EX(A) in EXCLUDE(X,Y): EXCLUDE(A-Y, Y*A).
    update(&mut r, t0, gw(), &[rec(ChangeToExclude, G2, &[S1])]);
    update(&mut r, t0, gw(), &[rec(ModeIsExclude, G2, &[S1, S2])]);
    assert_eq!(routes(&mut r, t0, S1, G2), vec![], "S1 stays excluded");
    assert_eq!(routes(&mut r, t0, S2, G2), vec![gw()], "S2 joins X (a timer), still forwarded");
    // TO_IN(B) from EXCLUDE mode: exactly INCLUDE(B).
    update(&mut r, t0, gw(), &[rec(ChangeToInclude, G2, &[S2])]);
    assert_eq!(channels(&r, gw()), vec![asm(G1), ssm(S2, G2)]);
    assert_eq!(routes(&mut r, t0, S1, G2), vec![]);
    assert!(native(&mut r).contains(&RelayEvent::Leave { source: None, group: ip(G2) }));
}

#[test]
fn is_ex_in_include_mode_keeps_the_common_sources_on_their_timers() {
    use RecordType::*;
    let (mut r, t0) = relay();
    let gmi = config().group_membership_interval();
    update(&mut r, t0, gw(), &[rec(ModeIsInclude, G1, &[S1, S2])]);
    let t1 = t0 + Duration::from_secs(100);
    // INCLUDE(A={S1,S2}) + IS_EX(B={S1,S3}) -> EXCLUDE(X={S1}, Y={S3}); S2 deleted.
    update(&mut r, t1, gw(), &[rec(ModeIsExclude, G1, &[S1, "198.51.100.13"])]);
    assert_eq!(channels(&r, gw()), vec![asm(G1)]);
    assert_eq!(routes(&mut r, t1, "198.51.100.13", G1), vec![]);
    assert_eq!(routes(&mut r, t1, S2, G1), vec![gw()], "EXCLUDE forwards what it does not exclude");
    // S1's timer still ends at t0 + GMI: then it moves to the exclude list.
    r.handle_timeout(t0 + gmi);
    assert_eq!(routes(&mut r, t0 + gmi, S1, G1), vec![]);
    assert_eq!(routes(&mut r, t0 + gmi, S2, G1), vec![gw()]);
    // The group timer (t1 + GMI) ends EXCLUDE mode; X is empty: the group goes.
    r.handle_timeout(t1 + gmi);
    assert_eq!(r.gateway_count(), 0);
}

#[test]
fn mldv2_records_over_an_ipv6_tunnel() {
    use RecordType::*;
    let (mut r, t0) = relay();
    let g6 = at("2001:db8:113::2", 40001);
    let (s, g) = ("2001:db8:100::10", "ff3e::8000:1");
    update(&mut r, t0, g6, &[rec(ModeIsInclude, g, &[s])]);
    assert_eq!(channels(&r, g6), vec![ssm(s, g)]);
    assert_eq!(r.gateway(g6).unwrap().local, at(RELAY6, 2268));
    update(&mut r, t0, g6, &[rec(ChangeToExclude, "ff3e::8000:2", &[])]);
    update(&mut r, t0, g6, &[rec(BlockOldSources, g, &[s])]);
    assert_eq!(channels(&r, g6), vec![asm("ff3e::8000:2")]);
    // IPv4 records from the same gateway are fine too (families are independent).
    update(&mut r, t0, g6, &[rec(AllowNewSources, G1, &[S1])]);
    assert_eq!(channels(&r, g6), vec![ssm(S1, G1), asm("ff3e::8000:2")]);
}

#[test]
fn invalid_and_oversized_records_are_refused() {
    use RecordType::*;
    let mut c = config();
    c.max_sources_per_record = 2;
    c.max_channels_per_gateway = 3;
    let (mut r, t0) = relay_with(c);
    update(
        &mut r,
        t0,
        gw(),
        &[
            rec(AllowNewSources, "224.0.0.251", &[S1]),
            rec(AllowNewSources, G1, &[S1, S2, "198.51.100.12"]),
            rec(AllowNewSources, G1, &[S1, S2]),
            rec(AllowNewSources, G2, &[S1, S2]),
            rec(AllowNewSources, "232.1.1.3", &[S1]),
        ],
    );
    assert_eq!(channels(&r, gw()), vec![ssm(S1, G1), ssm(S2, G1), ssm(S1, "232.1.1.3")]);
    let s = r.stats();
    assert_eq!((s.invalid_records, s.refused_sources, s.refused_channels), (1, 1, 1));
    // Reducing is always allowed, then there is room again.
    update(&mut r, t0, gw(), &[rec(BlockOldSources, G1, &[S2]), rec(AllowNewSources, G2, &[S2])]);
    assert_eq!(channels(&r, gw()), vec![ssm(S1, G1), ssm(S2, G2), ssm(S1, "232.1.1.3")]);
    // Unicast group, source of the other family, multicast source (build_report refuses
    // mixed families, so hand-build those records through MLD: ff02::1 is link scope).
    update(&mut r, t0, at("2001:db8:113::2", 1), &[rec(AllowNewSources, "ff02::1:3", &["2001:db8::1"])]);
    update(&mut r, t0, gw(), &[rec(AllowNewSources, "198.51.100.1", &[S1])]);
    update(&mut r, t0, gw(), &[rec(AllowNewSources, "232.1.1.9", &["232.1.1.1"])]);
    assert_eq!(r.stats().invalid_records, 4);
}

#[test]
fn gateways_beyond_the_limit_are_refused_and_told_so_with_the_l_flag() {
    let (mut r, t0) = relay_with(RelayConfig { max_gateways: 1, ..config() });
    let gw2 = at("203.0.113.3", 5000);
    assert!(!query_of(&request(&mut r, t0, gw2, 3)).0, "room for one");
    update(&mut r, t0, gw(), &[rec(RecordType::AllowNewSources, G1, &[S1])]);
    update(&mut r, t0, gw2, &[rec(RecordType::AllowNewSources, G1, &[S1])]);
    assert_eq!((r.gateway_count(), r.stats().refused_gateways), (1, 1));
    assert!(query_of(&request(&mut r, t0, gw2, 4)).0, "full: L flag for a new gateway");
    assert!(!query_of(&request(&mut r, t0, gw(), 5)).0, "no L flag for the known one");
    assert_eq!(r.stats().limited_queries, 1);
}

#[test]
fn gateways_beyond_the_per_address_limit_are_refused_while_other_addresses_are_admitted() {
    let (mut r, t0) = relay_with(RelayConfig { max_gateways_per_source: 2, ..config() });
    let host = |port| at("203.0.113.2", port);
    let other = at("203.0.113.3", 40001);
    for port in [1000, 1001] {
        update(&mut r, t0, host(port), &[rec(RecordType::AllowNewSources, G1, &[S1])]);
    }
    assert!(query_of(&request(&mut r, t0, host(1002), 1)).0, "the address is full: L flag");
    assert!(!query_of(&request(&mut r, t0, host(1000), 2)).0, "no L flag for a known gateway");
    assert!(!query_of(&request(&mut r, t0, other, 3)).0, "another address has room");
    update(&mut r, t0, host(1002), &[rec(RecordType::AllowNewSources, G1, &[S1])]);
    update(&mut r, t0, other, &[rec(RecordType::AllowNewSources, G1, &[S1])]);
    assert_eq!(r.gateway(host(1002)), None);
    assert_eq!(channels(&r, other), vec![ssm(S1, G1)]);
    let s = r.stats();
    assert_eq!((r.gateway_count(), s.refused_gateways_per_source, s.refused_gateways), (3, 1, 0));
    assert_eq!(s.limited_queries, 1);
    // A known gateway of the full address still updates.
    update(&mut r, t0, host(1000), &[rec(RecordType::AllowNewSources, G2, &[S1])]);
    assert_eq!(channels(&r, host(1000)), vec![ssm(S1, G1), ssm(S1, G2)]);
    // One leaves (TO_IN{} drops every group): the address has room again.
    update(&mut r, t0, host(1001), &[rec(RecordType::ChangeToInclude, G1, &[])]);
    assert_eq!(r.gateway(host(1001)), None);
    update(&mut r, t0, host(1002), &[rec(RecordType::AllowNewSources, G1, &[S1])]);
    assert_eq!(channels(&r, host(1002)), vec![ssm(S1, G1)]);
    assert_eq!(r.stats().refused_gateways_per_source, 1);
    // Teardown and restart release the count too.
    r.restart(t0);
    for port in [1003, 1004] {
        update(&mut r, t0, host(port), &[rec(RecordType::AllowNewSources, G1, &[S1])]);
    }
    assert_eq!((r.gateway_count(), r.stats().refused_gateways_per_source), (2, 1));
}

#[test]
fn channels_beyond_the_global_limit_are_refused_across_gateways() {
    use RecordType::*;
    let (mut r, t0) = relay_with(RelayConfig { max_channels: 3, ..config() });
    let gw2 = at("203.0.113.3", 5000);
    update(&mut r, t0, gw(), &[rec(AllowNewSources, G1, &[S1, S2])]);
    assert_eq!(r.channel_count(), 2);
    // gw2: the first record fits (3), the second (TO_EX{} of G2: one more) does not.
    update(&mut r, t0, gw2, &[rec(AllowNewSources, G1, &[S1]), rec(ChangeToExclude, G2, &[])]);
    assert_eq!(channels(&r, gw2), vec![ssm(S1, G1)]);
    assert_eq!((r.channel_count(), r.stats().refused_channels_global, r.stats().refused_channels), (3, 1, 0));
    // A new gateway whose only record is refused leaves no state.
    let gw3 = at("203.0.113.4", 5000);
    update(&mut r, t0, gw3, &[rec(AllowNewSources, G2, &[S1])]);
    assert_eq!((r.gateway(gw3), r.gateway_count()), (None, 2));
    assert_eq!(r.stats().refused_channels_global, 2);
    // Refreshing what is held and shrinking are always allowed; then there is room.
    update(&mut r, t0, gw(), &[rec(ModeIsInclude, G1, &[S1, S2])]);
    update(&mut r, t0, gw(), &[rec(BlockOldSources, G1, &[S2])]);
    update(&mut r, t0, gw3, &[rec(AllowNewSources, G2, &[S1])]);
    assert_eq!(channels(&r, gw3), vec![ssm(S1, G2)]);
    assert_eq!((r.channel_count(), r.stats().refused_channels_global), (3, 2));
    // Expiry gives the count back.
    let gmi = r.config().group_membership_interval();
    r.handle_timeout(t0 + gmi);
    assert_eq!((r.channel_count(), r.gateway_count()), (0, 0));
}

#[test]
fn the_memory_budget_refuses_gateways_and_records_beyond_it() {
    use RecordType::*;
    // Room for one gateway with one group of two channels, and nothing more.
    let budget = GATEWAY_STATE_BYTES + GROUP_STATE_BYTES + 2 * CHANNEL_STATE_BYTES;
    let (mut r, t0) = relay_with(RelayConfig { max_state_bytes: budget, ..config() });
    update(&mut r, t0, gw(), &[rec(AllowNewSources, G1, &[S1])]);
    assert_eq!(r.state_bytes(), GATEWAY_STATE_BYTES + GROUP_STATE_BYTES + CHANNEL_STATE_BYTES);
    // A second group does not fit; a second source in the same group does.
    update(&mut r, t0, gw(), &[rec(AllowNewSources, G2, &[S1]), rec(AllowNewSources, G1, &[S2])]);
    assert_eq!(channels(&r, gw()), vec![ssm(S1, G1), ssm(S2, G1)]);
    assert_eq!((r.state_bytes(), r.stats().refused_budget), (budget, 1));
    // A new gateway does not fit: refused, and its Request gets the L flag.
    let gw2 = at("203.0.113.3", 5000);
    assert!(query_of(&request(&mut r, t0, gw2, 9)).0);
    update(&mut r, t0, gw2, &[rec(AllowNewSources, G1, &[S1])]);
    assert_eq!((r.gateway(gw2), r.stats().refused_budget), (None, 2));
    let s = r.stats();
    assert_eq!((s.refused_gateways, s.refused_gateways_per_source, s.refused_channels_global), (0, 0, 0));
    // Teardown frees the budget.
    let mac = r.response_mac(gw(), 77);
    r.handle_datagram(t0, local4(), gw(), &Message::Teardown { mac, nonce: 77, gateway: gw() }.to_vec());
    assert_eq!(r.state_bytes(), 0);
    update(&mut r, t0, gw2, &[rec(AllowNewSources, G1, &[S1])]);
    assert_eq!(channels(&r, gw2), vec![ssm(S1, G1)]);
}

#[test]
fn the_default_limits() {
    let c = RelayConfig::default();
    assert_eq!((c.max_gateways, c.max_gateways_per_source, c.max_channels_per_gateway), (10_000, 64, 1024));
    assert_eq!((c.max_channels, c.max_state_bytes), (100_000, 32 << 20));
    // The default gateways and channels (in few groups) fit the default budget.
    assert!(state_bytes(10_000, 10_000, 100_000) <= c.max_state_bytes);
}

// ---- expiry -------------------------------------------------------------

#[test]
fn state_expires_at_the_group_membership_interval_unless_refreshed() {
    let (mut r, t0) = relay_with(RelayConfig { secret_rotation: None, ..config() });
    let gmi = r.config().group_membership_interval();
    assert_eq!(gmi, Duration::from_secs(260));
    update(&mut r, t0, gw(), &[rec(RecordType::ModeIsInclude, G1, &[S1, S2])]);
    events(&mut r);
    assert_eq!(r.poll_timeout(), Some(t0 + gmi));
    // A refresh of S1 only, later.
    let t1 = t0 + Duration::from_secs(25);
    update(&mut r, t1, gw(), &[rec(RecordType::ModeIsInclude, G1, &[S1])]);
    assert_eq!(r.poll_timeout(), Some(t0 + gmi));
    r.handle_timeout(t0 + gmi - Duration::from_millis(1));
    assert!(events(&mut r).is_empty());
    assert_eq!(routes(&mut r, t0 + gmi - Duration::from_millis(1), S2, G1), vec![gw()]);
    // Forwarding stops at the deadline even before the timer runs.
    assert_eq!(routes(&mut r, t0 + gmi, S2, G1), vec![]);
    r.handle_timeout(t0 + gmi);
    assert_eq!(
        events(&mut r),
        vec![
            RelayEvent::GatewayLeft {
                gateway: gw(),
                source: Some(ip(S2)),
                group: ip(G1),
                reason: LeaveReason::Expired
            },
            RelayEvent::Leave { source: Some(ip(S2)), group: ip(G1) },
        ]
    );
    assert_eq!(r.poll_timeout(), Some(t1 + gmi));
    r.handle_timeout(t1 + gmi);
    assert_eq!(r.gateway_count(), 0);
    assert_eq!(r.stats().expired, 2);
    assert_eq!(r.poll_timeout(), None);
}

#[test]
fn exclude_mode_expires_into_include_mode_with_the_requested_sources() {
    use RecordType::*;
    let (mut r, t0) = relay_with(RelayConfig { secret_rotation: None, ..config() });
    let gmi = r.config().group_membership_interval();
    update(&mut r, t0, gw(), &[rec(ModeIsExclude, G1, &[])]);
    let t1 = t0 + Duration::from_secs(60);
    update(&mut r, t1, gw(), &[rec(AllowNewSources, G1, &[S1])]);
    events(&mut r);
    r.handle_timeout(t0 + gmi);
    assert_eq!(channels(&r, gw()), vec![ssm(S1, G1)]);
    assert_eq!(
        events(&mut r),
        vec![
            RelayEvent::GatewayLeft { gateway: gw(), source: None, group: ip(G1), reason: LeaveReason::Expired },
            RelayEvent::Leave { source: None, group: ip(G1) },
            RelayEvent::GatewayJoined { gateway: gw(), source: Some(ip(S1)), group: ip(G1) },
            RelayEvent::Join { source: Some(ip(S1)), group: ip(G1) },
        ]
    );
    r.handle_timeout(t1 + gmi);
    assert_eq!(r.gateway_count(), 0);
}

#[test]
fn the_gmi_follows_the_query_parameters() {
    let c = RelayConfig { query: QueryParams { max_resp_code: 16, qrv: 3, qqic: 20 }, ..config() };
    assert_eq!(c.group_membership_interval(), Duration::from_millis(61_600));
    let c = RelayConfig { query: QueryParams { max_resp_code: 0, qrv: 0, qqic: 0 }, ..config() };
    assert_eq!(c.group_membership_interval(), Duration::from_secs(250));
}

// ---- data -----------------------------------------------------------------

#[test]
fn forward_writes_one_message_for_every_subscribed_gateway() {
    let (mut r, t0) = relay();
    let gw2 = at("203.0.113.3", 5000);
    let gw6 = at("2001:db8:113::2", 40001);
    update(&mut r, t0, gw(), &[rec(RecordType::AllowNewSources, G1, &[S1])]);
    update(&mut r, t0, gw2, &[rec(RecordType::ChangeToExclude, G1, &[])]);
    update(&mut r, t0, gw6, &[rec(RecordType::AllowNewSources, G1, &[S1]), rec(RecordType::ChangeToExclude, G1, &[])]);
    let p = packet(S1, G1, b"AMT-VECTOR seq=0000 ");
    let mut msg = vec![0xee; 3];
    let routes = r.forward(t0, &p, &mut msg).to_vec();
    let mut expected = vec![6, 0];
    expected.extend_from_slice(&p);
    assert_eq!(msg, expected);
    assert_eq!(
        routes,
        vec![
            DataRoute { source: local4(), destination: gw() },
            DataRoute { source: local4(), destination: gw2 },
            DataRoute { source: at(RELAY6, 2268), destination: gw6 },
        ],
        "one copy per gateway, even subscribed to both (S,G) and (*,G)"
    );
    // Another source: the (*,G) gateways only.
    let other: Vec<SocketAddr> = r.forward(t0, &packet(S2, G1, b"y"), &mut msg).iter().map(|d| d.destination).collect();
    assert_eq!(other, vec![gw2, gw6]);
    // Nobody, junk.
    assert!(r.forward(t0, &packet(S1, G2, b"z"), &mut msg).is_empty());
    assert!(msg.is_empty());
    assert!(r.forward(t0, &p[..10], &mut msg).is_empty());
    let s = r.stats();
    assert_eq!((s.data_packets, s.data_bytes, s.tx.multicast_data), (2, (p.len() + 29) as u64, 5));
    assert_eq!((s.data_no_subscriber, s.data_invalid), (1, 1));
    let g = r.gateway(gw()).unwrap();
    assert_eq!((g.data_messages, g.data_bytes), (1, expected.len() as u64));
}

#[test]
fn inject_builds_the_datagram_and_queues_the_messages() {
    let (mut r, t0) = relay();
    update(&mut r, t0, gw(), &[rec(RecordType::AllowNewSources, G1, &[S1])]);
    assert_eq!(r.inject(t0, at(S1, 40000), at(G1, 5001), 1, b"hello"), Ok(1));
    let t = drain(&mut r);
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].source, t[0].destination), (local4(), gw()));
    let Message::MulticastData { packet } = Message::decode(&t[0].payload).unwrap() else { panic!() };
    assert_eq!(packet, &self::packet(S1, G1, b"hello")[..]);
    let d = inner::parse_udp(packet).unwrap();
    assert_eq!((d.source, d.destination, d.ttl, d.payload), (at(S1, 40000), at(G1, 5001), 1, &b"hello"[..]));
    assert_eq!(r.inject(t0, at(S2, 40000), at(G1, 5001), 1, b"x"), Ok(0));
    assert!(r.inject(t0, at(S1, 1), at("ff3e::1", 1), 1, b"x").is_err());
    assert_eq!(r.stats().injected, 2);
}

// ---- faults -----------------------------------------------------------------

#[test]
fn fault_drop_replies() {
    let (mut r, t0) = relay();
    r.set_faults(t0, Faults { drop_replies: 2, ..Faults::default() });
    r.handle_datagram(t0, local4(), gw(), &hex("01000000 00000001"));
    r.handle_datagram(t0, local4(), gw(), &hex("03000000 00000002"));
    assert!(drain(&mut r).is_empty());
    assert_eq!(r.faults().drop_replies, 0);
    r.handle_datagram(t0, local4(), gw(), &hex("01000000 00000003"));
    assert_eq!(drain(&mut r).len(), 1);
    assert_eq!((r.stats().replies_dropped, r.stats().tx.relay_advertisement), (2, 1));
}

#[test]
fn fault_delay_replies() {
    let (mut r, t0) = relay_with(RelayConfig { secret_rotation: None, ..config() });
    let d = Duration::from_millis(1500);
    r.set_faults(t0, Faults { delay_replies: Some(d), ..Faults::default() });
    r.handle_datagram(t0, local4(), gw(), &hex("01000000 00000001"));
    let t1 = t0 + Duration::from_millis(100);
    r.handle_datagram(t1, local4(), gw(), &hex("01000000 00000002"));
    assert!(drain(&mut r).is_empty());
    assert_eq!(r.poll_timeout(), Some(t0 + d));
    r.handle_timeout(t0 + d);
    assert_eq!(drain(&mut r)[0].payload, hex("02000000 00000001 cb007101"));
    assert_eq!(r.poll_timeout(), Some(t1 + d));
    r.handle_timeout(t1 + d);
    assert_eq!(drain(&mut r)[0].payload, hex("02000000 00000002 cb007101"));
    assert_eq!((r.stats().replies_delayed, r.poll_timeout()), (2, None));
}

#[test]
fn fault_silent() {
    let (mut r, t0) = relay();
    update(&mut r, t0, gw(), &[rec(RecordType::AllowNewSources, G1, &[S1])]);
    r.set_faults(t0, Faults { silent: true, ..Faults::default() });
    r.handle_datagram(t0, local4(), gw(), &hex("01000000 00000001"));
    update(&mut r, t0, gw(), &[rec(RecordType::AllowNewSources, G2, &[S1])]);
    assert_eq!(r.inject(t0, at(S1, 1), at(G1, 1), 1, b"x"), Ok(0));
    assert!(drain(&mut r).is_empty());
    assert_eq!((r.stats().ignored_silent, r.stats().data_silenced), (2, 1));
    assert_eq!(channels(&r, gw()), vec![ssm(S1, G1)], "state is kept");
    r.set_faults(t0, Faults::default());
    assert_eq!(r.inject(t0, at(S1, 1), at(G1, 1), 1, b"x"), Ok(1));
}

#[test]
fn fault_restart_forgets_everything_and_changes_the_secret() {
    let (mut r, t0) = relay();
    let gw2 = at("203.0.113.3", 5000);
    update(&mut r, t0, gw(), &[rec(RecordType::AllowNewSources, G1, &[S1])]);
    update(&mut r, t0, gw2, &[rec(RecordType::ChangeToExclude, G2, &[])]);
    let stale = update_bytes(&r, gw(), 5, &[rec(RecordType::AllowNewSources, G2, &[S1])]);
    r.rotate_secret(t0);
    events(&mut r);
    r.set_faults(t0, Faults { delay_replies: Some(Duration::from_secs(1)), ..Faults::default() });
    r.handle_datagram(t0, local4(), gw(), &hex("01000000 00000001"));
    r.set_faults(t0, Faults { restart: true, ..Faults::default() });
    assert!(!r.faults().restart, "one shot");
    assert_eq!(
        native(&mut r),
        vec![
            RelayEvent::Leave { source: Some(ip(S1)), group: ip(G1) },
            RelayEvent::Leave { source: None, group: ip(G2) }
        ]
    );
    assert_eq!((r.gateway_count(), r.joined().count(), r.stats().restarts), (0, 0, 1));
    assert_eq!(r.poll_timeout(), Some(t0 + DEFAULT_SECRET_ROTATION), "delayed replies are dropped");
    // Neither the current nor the previous secret of before still works.
    r.handle_datagram(t0, local4(), gw(), &stale);
    assert_eq!(r.stats().mac_failures, 1);
    assert_eq!(r.response_mac(gw(), 1), expected_mac(&secret(2), gw(), 1));
    // A new handshake works.
    update(&mut r, t0, gw(), &[rec(RecordType::AllowNewSources, G1, &[S1])]);
    assert_eq!(channels(&r, gw()), vec![ssm(S1, G1)]);
}

#[test]
fn fault_limit_next_query() {
    let (mut r, t0) = relay();
    r.set_faults(t0, Faults { limit_next_query: true, ..Faults::default() });
    let t = request(&mut r, t0, gw(), 1);
    assert_eq!(t.payload[1], 0x03, "L and G");
    assert!(query_of(&t).0);
    assert!(!query_of(&request(&mut r, t0, gw(), 2)).0, "one shot");
    assert_eq!(r.stats().limited_queries, 1);
}

#[test]
fn fault_gateway_flag_and_fake_address() {
    let (mut r, t0) = relay_with(RelayConfig { gateway_address: false, ..config() });
    assert_eq!(query_of(&request(&mut r, t0, gw(), 1)).4, None);
    let fake = at("192.0.2.99", 1234);
    r.set_faults(t0, Faults { gateway_flag: GatewayFlag::Next, fake_gateway_address: Some(fake), ..Faults::default() });
    let t = request(&mut r, t0, gw(), 2);
    assert_eq!(t.payload[1], 0x01);
    assert_eq!(t.payload[t.payload.len() - 18..], hex("04d2 000000000000000000000000c0000263"));
    assert_eq!(query_of(&t).4, Some(fake));
    assert_eq!(query_of(&request(&mut r, t0, gw(), 3)).4, None, "Next is one shot");
    assert_eq!(r.faults().gateway_flag, GatewayFlag::Config);
    r.set_faults(t0, Faults { gateway_flag: GatewayFlag::Always, ..Faults::default() });
    assert_eq!(query_of(&request(&mut r, t0, gw(), 4)).4, Some(gw()));
    assert_eq!(query_of(&request(&mut r, t0, gw(), 5)).4, Some(gw()));
    let (mut r, t0) = relay();
    r.set_faults(t0, Faults { gateway_flag: GatewayFlag::Never, ..Faults::default() });
    assert_eq!(query_of(&request(&mut r, t0, gw(), 6)).4, None);
}

#[test]
fn fault_rotate_secret() {
    let (mut r, t0) = relay();
    let before = r.response_mac(gw(), 1);
    r.set_faults(t0, Faults { rotate_secret: true, ..Faults::default() });
    assert_ne!(r.response_mac(gw(), 1), before);
    assert_eq!((r.stats().secret_rotations, r.faults().rotate_secret), (1, false));
}
