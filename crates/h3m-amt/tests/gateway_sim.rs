//! The gateway state machine in simulated time against a scripted relay:
//! every timer and every fault path (lost Advertisement, lost Query, relay
//! restart, NAT port change, MAC mismatch, nonce reuse, L flag, no data).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use h3m_amt::gateway::{
    Gateway, GatewayConfig, GatewayEvent, LossReason, RelayCandidate, Rng, SubscribeError, Transmit, XorShiftRng,
};
use h3m_amt::inner;
use h3m_amt::membership::{self, QueryParams, RecordType};
use h3m_amt::message::{Message, ResponseMac};

const DISCOVERY: &str = "192.52.193.1";
const RELAY: &str = "203.0.113.1";
const S: &str = "198.51.100.10";
const G1: &str = "232.1.1.1";
const G2: &str = "232.1.1.2";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn at(ip_: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip(ip_), port)
}

/// A deterministic generator; `zero_first` yields 0 once first.
struct TestRng {
    state: XorShiftRng,
    zero_first: bool,
}

impl Rng for TestRng {
    fn next_u32(&mut self) -> u32 {
        if std::mem::take(&mut self.zero_first) {
            return 0;
        }
        self.state.next_u32()
    }
}

fn gateway(config: GatewayConfig) -> Gateway {
    Gateway::new(Instant::now(), config, Box::new(TestRng { state: XorShiftRng(0x1234_5678), zero_first: false }))
}

fn anycast() -> GatewayConfig {
    GatewayConfig::new(vec![RelayCandidate { address: ip(DISCOVERY), discovery: true }])
}

fn drain(gw: &mut Gateway) -> Vec<(SocketAddr, Vec<u8>)> {
    std::iter::from_fn(|| gw.poll_transmit()).map(|Transmit { destination, payload }| (destination, payload)).collect()
}

fn events(gw: &mut Gateway) -> Vec<GatewayEvent> {
    std::iter::from_fn(|| gw.poll_event()).collect()
}

fn only(gw: &mut Gateway) -> (SocketAddr, Vec<u8>) {
    let mut t = drain(gw);
    assert_eq!(t.len(), 1, "expected one datagram, got {:?}", t.iter().map(|x| x.1[0]).collect::<Vec<_>>());
    t.remove(0)
}

fn discovery_nonce(bytes: &[u8]) -> u32 {
    match Message::decode(bytes).unwrap() {
        Message::RelayDiscovery { nonce } => nonce,
        m => panic!("expected a Relay Discovery, got {m:?}"),
    }
}

fn request(bytes: &[u8]) -> (bool, u32) {
    match Message::decode(bytes).unwrap() {
        Message::Request { mld, nonce } => (mld, nonce),
        m => panic!("expected a Request, got {m:?}"),
    }
}

fn encode(m: Message<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    m.encode(&mut v);
    v
}

fn query(nonce: u32, mac: ResponseMac, qqic: u8, qrv: u8, limit: bool, gateway: Option<SocketAddr>) -> Vec<u8> {
    let q = membership::build_query(ip("198.51.100.1"), &QueryParams { max_resp_code: 16, qrv, qqic });
    encode(Message::MembershipQuery { limit, mac, nonce, query: &q, gateway })
}

/// The records of every Update among `sent`, checking nonce and MAC.
fn updates(sent: &[(SocketAddr, Vec<u8>)], mac: ResponseMac, nonce: u32) -> Vec<(RecordType, IpAddr, Vec<IpAddr>)> {
    let mut out = Vec::new();
    for (dest, bytes) in sent {
        assert_eq!(*dest, at(RELAY, 2268));
        match Message::decode(bytes).unwrap() {
            Message::MembershipUpdate { mac: m, nonce: n, report } => {
                assert_eq!((m, n), (mac, nonce), "Update must echo the latest Query's MAC and nonce");
                let r = membership::parse_report(report).unwrap();
                out.extend(r.records.into_iter().map(|r| (r.kind, r.group, r.sources)));
            }
            m => panic!("expected an Update, got {m:?}"),
        }
    }
    out
}

fn data(s: &str, g: &str, payload: &[u8]) -> Vec<u8> {
    let mut packet = Vec::new();
    inner::build_udp(at(s, 40000), at(g, 5001), 1, payload, &mut packet).unwrap();
    encode(Message::MulticastData { packet: &packet })
}

const MAC1: ResponseMac = [0x93, 0xe0, 0x29, 0xca, 0x96, 0xeb];
const MAC2: ResponseMac = [0xff, 0xed, 0x48, 0xed, 0x33, 0x4d];

/// Runs discovery and the first Request/Query; returns the gateway at `t0`,
/// established, with the Query's nonce. QQIC 20 s, QRV 2.
fn established(t0: Instant) -> (Gateway, u32) {
    let mut gw = gateway(anycast());
    gw.subscribe(t0, Some(ip(S)), ip(G1)).unwrap();
    let (dest, disc) = only(&mut gw);
    assert_eq!(dest, at(DISCOVERY, 2268));
    let dn = discovery_nonce(&disc);
    let adv = encode(Message::RelayAdvertisement { nonce: dn, relay: ip(RELAY) });
    assert!(gw.handle_datagram(t0, at(DISCOVERY, 2268), &adv).is_none());
    let (dest, req) = only(&mut gw);
    assert_eq!(dest, at(RELAY, 2268));
    let (mld, rn) = request(&req);
    assert!(!mld, "IPv4 channels ask for an IGMPv3 query (P=0)");
    gw.handle_datagram(t0, at(RELAY, 2268), &query(rn, MAC1, 20, 2, false, None));
    let sent = drain(&mut gw);
    assert_eq!(updates(&sent, MAC1, rn), vec![(RecordType::ModeIsInclude, ip(G1), vec![ip(S)])]);
    assert_eq!(
        events(&mut gw),
        vec![
            GatewayEvent::RelayDiscovered { discovery: ip(DISCOVERY), relay: ip(RELAY) },
            GatewayEvent::Connected { relay: at(RELAY, 2268) }
        ]
    );
    assert!(gw.is_established());
    (gw, rn)
}

#[test]
fn full_handshake_then_data_for_subscribed_channels_only() {
    let t0 = Instant::now();
    let (mut gw, _) = established(t0);
    let d = data(S, G1, b"AMT-VECTOR seq=0000 ");
    let got = gw.handle_datagram(t0, at(RELAY, 2268), &d).expect("subscribed data is delivered");
    assert_eq!(got.payload, b"AMT-VECTOR seq=0000 ");
    assert_eq!((got.source, got.destination), (at(S, 40000), at(G1, 5001)));
    // Another group, another source, another relay: dropped and counted.
    assert!(gw.handle_datagram(t0, at(RELAY, 2268), &data(S, G2, b"x")).is_none());
    assert!(gw.handle_datagram(t0, at(RELAY, 2268), &data("198.51.100.11", G1, b"x")).is_none());
    assert!(gw.handle_datagram(t0, at("203.0.113.9", 2268), &d).is_none());
    // Junk and messages a gateway never receives.
    assert!(gw.handle_datagram(t0, at(RELAY, 2268), &[0x06]).is_none());
    assert!(gw.handle_datagram(t0, at(RELAY, 2268), &[0x1f, 0, 0, 0]).is_none());
    assert!(gw.handle_datagram(t0, at(RELAY, 2268), &encode(Message::RelayDiscovery { nonce: 5 })).is_none());
    let st = gw.stats();
    assert_eq!((st.data_packets, st.data_bytes), (1, 20));
    assert_eq!(st.data_unsubscribed, 2);
    assert_eq!(st.wrong_source, 1);
    assert_eq!(st.malformed, 2);
    assert_eq!(st.unexpected_type, 1);
    assert!(drain(&mut gw).is_empty(), "data and junk trigger no sends");
}

#[test]
fn data_before_the_tunnel_exists_is_dropped() {
    let t0 = Instant::now();
    let mut gw = gateway(anycast());
    assert!(gw.handle_datagram(t0, at(RELAY, 2268), &data(S, G1, b"x")).is_none());
    gw.subscribe(t0, Some(ip(S)), ip(G1)).unwrap();
    assert!(gw.handle_datagram(t0, at(RELAY, 2268), &data(S, G1, b"x")).is_none());
    assert_eq!(gw.stats().out_of_phase, 2);
}

#[test]
fn nothing_is_sent_without_a_subscription_and_bad_channels_are_refused() {
    let t0 = Instant::now();
    let mut gw = gateway(anycast());
    assert_eq!(gw.poll_timeout(), None);
    assert!(drain(&mut gw).is_empty());
    assert_eq!(gw.subscribe(t0, Some(ip(S)), ip(S)), Err(SubscribeError::NotMulticast(ip(S))));
    assert_eq!(
        gw.subscribe(t0, Some(ip("2001:db8::1")), ip(G1)),
        Err(SubscribeError::BadSource { address: ip("2001:db8::1"), group: ip(G1) })
    );
    assert!(drain(&mut gw).is_empty());
}

#[test]
fn nonces_are_never_zero() {
    let t0 = Instant::now();
    let mut gw = Gateway::new(t0, anycast(), Box::new(TestRng { state: XorShiftRng(99), zero_first: true }));
    gw.subscribe(t0, Some(ip(S)), ip(G1)).unwrap();
    let (_, disc) = only(&mut gw);
    assert_ne!(discovery_nonce(&disc), 0);
}

#[test]
fn lost_advertisements_are_retried_with_backoff_and_fresh_nonces_then_the_next_candidate() {
    let t0 = Instant::now();
    let mut config = GatewayConfig::new(vec![
        RelayCandidate { address: ip(DISCOVERY), discovery: true },
        RelayCandidate { address: ip("2001:3::1"), discovery: true },
    ]);
    config.discovery_attempts = 3;
    let mut gw = gateway(config);
    gw.subscribe(t0, Some(ip(S)), ip(G1)).unwrap();
    let mut nonces = vec![discovery_nonce(&only(&mut gw).1)];
    let mut last = t0;
    for n in 1..3u32 {
        let due = gw.poll_timeout().unwrap();
        let wait = due - last;
        // RFC 7450: random in [1 s, min(1 s x 2^n, 120 s)].
        assert!(wait >= Duration::from_secs(1) && wait <= Duration::from_secs(1 << (n - 1)), "{n}: {wait:?}");
        gw.handle_timeout(due - Duration::from_millis(1));
        assert!(drain(&mut gw).is_empty(), "nothing before the timer is due");
        gw.handle_timeout(due);
        let (dest, disc) = only(&mut gw);
        assert_eq!(dest, at(DISCOVERY, 2268));
        nonces.push(discovery_nonce(&disc));
        last = due;
    }
    assert_eq!(nonces.len(), 3);
    assert!(nonces[0] != nonces[1] && nonces[1] != nonces[2], "fresh nonce per Discovery: {nonces:x?}");
    // An Advertisement echoing an old nonce, or from elsewhere, is ignored.
    let stale = encode(Message::RelayAdvertisement { nonce: nonces[0], relay: ip(RELAY) });
    gw.handle_datagram(last, at(DISCOVERY, 2268), &stale);
    let spoofed = encode(Message::RelayAdvertisement { nonce: nonces[2], relay: ip(RELAY) });
    gw.handle_datagram(last, at("203.0.113.66", 2268), &spoofed);
    assert_eq!((gw.stats().nonce_mismatch, gw.stats().wrong_source), (1, 1));
    assert!(drain(&mut gw).is_empty());
    // Third attempt unanswered: the next candidate.
    let due = gw.poll_timeout().unwrap();
    gw.handle_timeout(due);
    let (dest, _) = only(&mut gw);
    assert_eq!(dest, at("2001:3::1", 2268));
    assert_eq!(events(&mut gw), vec![GatewayEvent::DiscoveryFailed { candidate: ip(DISCOVERY) }]);
}

#[test]
fn a_whole_round_without_answers_backs_off_before_starting_again() {
    let t0 = Instant::now();
    let mut config = anycast();
    config.discovery_attempts = 1;
    let mut gw = gateway(config);
    gw.subscribe(t0, Some(ip(S)), ip(G1)).unwrap();
    only(&mut gw);
    let due = gw.poll_timeout().unwrap();
    gw.handle_timeout(due);
    assert!(drain(&mut gw).is_empty(), "a backoff separates rounds");
    let next = gw.poll_timeout().unwrap();
    assert!(next - due >= Duration::from_secs(1) && next - due <= Duration::from_secs(2));
    gw.handle_timeout(next);
    assert_eq!(only(&mut gw).0, at(DISCOVERY, 2268));
}

#[test]
fn lost_queries_are_retried_then_the_relay_is_rediscovered() {
    let t0 = Instant::now();
    let mut config = anycast();
    config.request_retries = 2;
    let mut gw = gateway(config);
    gw.subscribe(t0, Some(ip(S)), ip(G1)).unwrap();
    let dn = discovery_nonce(&only(&mut gw).1);
    gw.handle_datagram(t0, at(DISCOVERY, 2268), &encode(Message::RelayAdvertisement { nonce: dn, relay: ip(RELAY) }));
    let mut nonces = vec![request(&only(&mut gw).1).1];
    for _ in 0..2 {
        let due = gw.poll_timeout().unwrap();
        gw.handle_timeout(due);
        let (dest, req) = only(&mut gw);
        assert_eq!(dest, at(RELAY, 2268));
        nonces.push(request(&req).1);
    }
    assert!(nonces[0] != nonces[1] && nonces[1] != nonces[2]);
    // A Query for a superseded Request is stale.
    gw.handle_datagram(t0, at(RELAY, 2268), &query(nonces[0], MAC1, 20, 2, false, None));
    assert_eq!(gw.stats().nonce_mismatch, 1);
    assert!(!gw.is_established());
    let due = gw.poll_timeout().unwrap();
    gw.handle_timeout(due);
    let (dest, disc) = only(&mut gw);
    assert_eq!(dest, at(DISCOVERY, 2268));
    discovery_nonce(&disc);
    assert_eq!(
        events(&mut gw).last(),
        Some(&GatewayEvent::RelayLost { relay: ip(RELAY), reason: LossReason::NoQuery })
    );
}

#[test]
fn refresh_runs_at_the_querys_interval_capped_by_the_nat_keepalive() {
    for (qqic, expect) in [(20u8, 20u64), (125, 25), (0, 25), (10, 10)] {
        let t0 = Instant::now();
        let mut gw = gateway(anycast());
        gw.subscribe(t0, Some(ip(S)), ip(G1)).unwrap();
        let dn = discovery_nonce(&only(&mut gw).1);
        gw.handle_datagram(
            t0,
            at(DISCOVERY, 2268),
            &encode(Message::RelayAdvertisement { nonce: dn, relay: ip(RELAY) }),
        );
        let (_, rn) = request(&only(&mut gw).1);
        gw.handle_datagram(t0, at(RELAY, 2268), &query(rn, MAC1, qqic, 2, false, None));
        drain(&mut gw);
        // Keep data flowing so the watchdog stays quiet.
        let mut t = t0;
        let refresh = t0 + Duration::from_secs(expect);
        while t + Duration::from_secs(1) < refresh {
            t += Duration::from_secs(1);
            gw.handle_datagram(t, at(RELAY, 2268), &data(S, G1, b"x")).unwrap();
            if gw.poll_timeout().is_some_and(|d| d <= t) {
                gw.handle_timeout(t);
            }
            assert!(drain(&mut gw).is_empty(), "qqic {qqic}: nothing before the refresh ({:?})", t - t0);
        }
        assert_eq!(gw.poll_timeout(), Some(refresh), "qqic {qqic}");
        gw.handle_timeout(refresh);
        let (_, n2) = request(&only(&mut gw).1);
        assert_ne!(n2, rn, "a refresh uses a new nonce");
    }
}

#[test]
fn a_replayed_query_with_an_old_nonce_is_ignored_and_updates_use_the_newest_mac() {
    let t0 = Instant::now();
    let (mut gw, n1) = established(t0);
    let t1 = t0 + Duration::from_secs(20);
    gw.handle_datagram(t1 - Duration::from_secs(1), at(RELAY, 2268), &data(S, G1, b"x"));
    gw.handle_timeout(t1);
    let (_, n2) = request(&only(&mut gw).1);
    // The old Query again (replay, or a duplicate): no Update.
    gw.handle_datagram(t1, at(RELAY, 2268), &query(n1, MAC1, 20, 2, false, None));
    assert!(drain(&mut gw).is_empty());
    assert_eq!(gw.stats().nonce_mismatch, 1);
    // The relay rotated its secret: a new MAC comes with the new nonce.
    gw.handle_datagram(t1, at(RELAY, 2268), &query(n2, MAC2, 20, 2, false, None));
    let sent = drain(&mut gw);
    assert_eq!(updates(&sent, MAC2, n2), vec![(RecordType::ModeIsInclude, ip(G1), vec![ip(S)])]);
    // Replaying the now-answered nonce changes nothing either.
    gw.handle_datagram(t1, at(RELAY, 2268), &query(n2, MAC1, 20, 2, false, None));
    assert!(drain(&mut gw).is_empty());
    assert_eq!(gw.stats().nonce_mismatch, 2);
    // A later join carries the newest pair.
    gw.subscribe(t1, Some(ip(S)), ip(G2)).unwrap();
    assert_eq!(updates(&drain(&mut gw), MAC2, n2), vec![(RecordType::AllowNewSources, ip(G2), vec![ip(S)])]);
}

#[test]
fn joins_and_leaves_are_reported_qrv_times_one_interval_apart() {
    let t0 = Instant::now();
    let (mut gw, n) = established(t0);
    gw.subscribe(t0, Some(ip(S)), ip(G2)).unwrap();
    assert_eq!(updates(&drain(&mut gw), MAC1, n), vec![(RecordType::AllowNewSources, ip(G2), vec![ip(S)])]);
    // Counted subscriptions: a second subscriber sends nothing.
    gw.subscribe(t0, Some(ip(S)), ip(G2)).unwrap();
    assert!(drain(&mut gw).is_empty());
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(gw.poll_timeout(), Some(t1));
    gw.handle_timeout(t1);
    assert_eq!(updates(&drain(&mut gw), MAC1, n), vec![(RecordType::AllowNewSources, ip(G2), vec![ip(S)])]);
    // QRV 2: no third copy.
    gw.handle_timeout(t1 + Duration::from_secs(1));
    assert!(drain(&mut gw).is_empty());
    gw.unsubscribe(t1, Some(ip(S)), ip(G2));
    assert!(drain(&mut gw).is_empty(), "one subscriber is left");
    gw.unsubscribe(t1, Some(ip(S)), ip(G2));
    assert_eq!(updates(&drain(&mut gw), MAC1, n), vec![(RecordType::BlockOldSources, ip(G2), vec![ip(S)])]);
    // Data of the left channel is no longer delivered.
    assert!(gw.handle_datagram(t1, at(RELAY, 2268), &data(S, G2, b"x")).is_none());
    assert!(gw.handle_datagram(t1, at(RELAY, 2268), &data(S, G1, b"x")).is_some());
}

#[test]
fn a_leave_cancels_the_pending_repeats_of_its_join() {
    let t0 = Instant::now();
    let (mut gw, n) = established(t0);
    gw.subscribe(t0, Some(ip(S)), ip(G2)).unwrap();
    drain(&mut gw);
    gw.unsubscribe(t0, Some(ip(S)), ip(G2));
    drain(&mut gw);
    gw.handle_timeout(t0 + Duration::from_secs(1));
    assert_eq!(updates(&drain(&mut gw), MAC1, n), vec![(RecordType::BlockOldSources, ip(G2), vec![ip(S)])]);
}

#[test]
fn current_state_reports_cover_every_channel_in_one_update() {
    let t0 = Instant::now();
    let (mut gw, _) = established(t0);
    gw.subscribe(t0, Some(ip(S)), ip(G2)).unwrap();
    gw.subscribe(t0, Some(ip("198.51.100.11")), ip(G1)).unwrap();
    gw.subscribe(t0, None, ip("239.1.2.3")).unwrap();
    let t1 = t0 + Duration::from_secs(20);
    gw.handle_datagram(t1, at(RELAY, 2268), &data(S, G1, b"x"));
    gw.handle_timeout(t1);
    // The refresh Request (among late repeats of the joins' state changes).
    let sent = drain(&mut gw);
    let n2 = sent
        .iter()
        .find_map(|(_, b)| match Message::decode(b) {
            Ok(Message::Request { nonce, .. }) => Some(nonce),
            _ => None,
        })
        .expect("a refresh Request");
    gw.handle_datagram(t1, at(RELAY, 2268), &query(n2, MAC2, 20, 2, false, None));
    let sent = drain(&mut gw);
    assert_eq!(sent.len(), 1, "one Update for all channels");
    assert_eq!(
        updates(&sent, MAC2, n2),
        vec![
            (RecordType::ModeIsInclude, ip(G1), vec![ip(S), ip("198.51.100.11")]),
            (RecordType::ModeIsInclude, ip(G2), vec![ip(S)]),
            (RecordType::ModeIsExclude, ip("239.1.2.3"), vec![]),
        ]
    );
}

#[test]
fn relay_restart_is_survived_icmp_makes_retries_prompt_and_the_new_relay_learns_the_channels() {
    let t0 = Instant::now();
    let (mut gw, _) = established(t0);
    // The relay process dies: the refresh Request meets ICMP port unreachable.
    let t1 = t0 + Duration::from_secs(20);
    gw.handle_datagram(t1 - Duration::from_secs(1), at(RELAY, 2268), &data(S, G1, b"x"));
    gw.handle_timeout(t1);
    let (_, n_lost) = request(&only(&mut gw).1);
    gw.handle_unreachable(t1);
    let retry = gw.poll_timeout().unwrap();
    assert!(retry - t1 <= Duration::from_secs(1), "retry within 1 s of an ICMP error, not {:?}", retry - t1);
    gw.handle_timeout(retry);
    let (_, n_new) = request(&only(&mut gw).1);
    assert_ne!(n_lost, n_new);
    // The restarted relay (new secret, no state) answers; the gateway reports
    // its channels at once and data flows again.
    gw.handle_datagram(retry, at(RELAY, 2268), &query(n_new, MAC2, 20, 2, false, None));
    assert_eq!(updates(&drain(&mut gw), MAC2, n_new), vec![(RecordType::ModeIsInclude, ip(G1), vec![ip(S)])]);
    assert!(gw.handle_datagram(retry, at(RELAY, 2268), &data(S, G1, b"back")).is_some());
    assert_eq!(gw.stats().unreachable, 1);
}

#[test]
fn nat_rebinding_reported_with_the_g_flag_sends_a_teardown_with_the_old_values() {
    let t0 = Instant::now();
    let mut gw = gateway(anycast());
    gw.subscribe(t0, Some(ip(S)), ip(G1)).unwrap();
    let dn = discovery_nonce(&only(&mut gw).1);
    gw.handle_datagram(t0, at(DISCOVERY, 2268), &encode(Message::RelayAdvertisement { nonce: dn, relay: ip(RELAY) }));
    let (_, n1) = request(&only(&mut gw).1);
    let before = at("203.0.113.2", 40001);
    gw.handle_datagram(t0, at(RELAY, 2268), &query(n1, MAC1, 20, 2, false, Some(before)));
    drain(&mut gw);
    events(&mut gw);
    // Same address on the next refresh: no Teardown.
    let t1 = t0 + Duration::from_secs(20);
    gw.handle_datagram(t1, at(RELAY, 2268), &data(S, G1, b"x"));
    gw.handle_timeout(t1);
    let (_, n2) = request(&only(&mut gw).1);
    gw.handle_datagram(t1, at(RELAY, 2268), &query(n2, MAC2, 20, 2, false, Some(before)));
    assert_eq!(updates(&drain(&mut gw), MAC2, n2).len(), 1);
    // The NAT moved us to another port.
    let t2 = t1 + Duration::from_secs(20);
    gw.handle_datagram(t2, at(RELAY, 2268), &data(S, G1, b"x"));
    gw.handle_timeout(t2);
    let (_, n3) = request(&only(&mut gw).1);
    let after = at("203.0.113.2", 40002);
    gw.handle_datagram(t2, at(RELAY, 2268), &query(n3, MAC1, 20, 2, false, Some(after)));
    let sent = drain(&mut gw);
    assert_eq!(sent.len(), 2, "Teardown then Update");
    assert_eq!(
        Message::decode(&sent[0].1).unwrap(),
        Message::Teardown { mac: MAC2, nonce: n2, gateway: before },
        "the Teardown carries the old MAC, nonce and address"
    );
    assert_eq!(updates(&sent[1..], MAC1, n3).len(), 1);
    assert_eq!(events(&mut gw), vec![GatewayEvent::GatewayAddressChanged { old: before, new: after }]);
    assert_eq!(gw.stats().teardowns_sent, 1);
}

#[test]
fn the_l_flag_holds_the_relay_down_and_moves_on() {
    let t0 = Instant::now();
    let mut config = GatewayConfig::new(vec![
        RelayCandidate { address: ip(RELAY), discovery: false },
        RelayCandidate { address: ip("203.0.113.7"), discovery: false },
    ]);
    config.limit_hold_down = Duration::from_secs(600);
    let mut gw = gateway(config);
    gw.subscribe(t0, Some(ip(S)), ip(G1)).unwrap();
    // D bit set: Requests go to the relay directly, no Discovery.
    let (dest, req) = only(&mut gw);
    assert_eq!(dest, at(RELAY, 2268));
    let (_, n) = request(&req);
    gw.handle_datagram(t0, at(RELAY, 2268), &query(n, MAC1, 20, 2, true, None));
    let (dest, req) = only(&mut gw);
    assert_eq!(dest, at("203.0.113.7", 2268), "no Update to the limited relay; the next one is asked");
    assert_eq!(events(&mut gw), vec![GatewayEvent::RelayLost { relay: ip(RELAY), reason: LossReason::Limit }]);
    assert_eq!(gw.stats().limit_queries, 1);
    // The second relay is limited too: both are held down, so the gateway waits
    // for the first release (t0 + 600 s) before asking again.
    let (_, n) = request(&req);
    gw.handle_datagram(t0, at("203.0.113.7", 2268), &query(n, MAC1, 20, 2, true, None));
    assert!(drain(&mut gw).is_empty());
    assert_eq!(gw.poll_timeout(), Some(t0 + Duration::from_secs(600)));
    gw.handle_timeout(t0 + Duration::from_secs(600));
    assert_eq!(only(&mut gw).0, at(RELAY, 2268));
}

#[test]
fn the_watchdog_probes_the_relay_when_data_stops_and_stays_quiet_while_it_flows() {
    let t0 = Instant::now();
    let mut config = anycast();
    config.data_timeout = Some(Duration::from_secs(4));
    config.nat_keepalive = Duration::from_secs(600);
    let mut gw = gateway(config);
    gw.subscribe(t0, Some(ip(S)), ip(G1)).unwrap();
    let dn = discovery_nonce(&only(&mut gw).1);
    gw.handle_datagram(t0, at(DISCOVERY, 2268), &encode(Message::RelayAdvertisement { nonce: dn, relay: ip(RELAY) }));
    let (_, n) = request(&only(&mut gw).1);
    gw.handle_datagram(t0, at(RELAY, 2268), &query(n, MAC1, 255, 2, false, None));
    drain(&mut gw);
    events(&mut gw);
    // Data every 500 ms for 30 s: the watchdog never fires.
    let mut t = t0;
    for _ in 0..60 {
        t += Duration::from_millis(500);
        while let Some(due) = gw.poll_timeout().filter(|d| *d <= t) {
            gw.handle_timeout(due);
        }
        gw.handle_datagram(t, at(RELAY, 2268), &data(S, G1, b"x")).unwrap();
    }
    assert_eq!(gw.stats().watchdog_fired, 0);
    assert!(drain(&mut gw).is_empty());
    // The relay silently dropped our state (e.g. it rejected an Update's MAC
    // after a secret change): data stops. 4 s after the last data (the first
    // expiry's range [4 s, 4 s x 2^0]) a fresh Request goes out.
    let fired = loop {
        let due = gw.poll_timeout().unwrap();
        assert!(due <= t + Duration::from_secs(4), "deadline counts from the last data: {:?}", due - t);
        gw.handle_timeout(due);
        if gw.stats().watchdog_fired > 0 {
            break due;
        }
    };
    assert_eq!(fired - t, Duration::from_secs(4));
    let (_, n2) = request(&only(&mut gw).1);
    assert_eq!(events(&mut gw), vec![GatewayEvent::DataAbsent { idle: Some(Duration::from_secs(4)) }]);
    gw.handle_datagram(fired, at(RELAY, 2268), &query(n2, MAC2, 255, 2, false, None));
    assert_eq!(updates(&drain(&mut gw), MAC2, n2).len(), 1, "the channels are reported again");
    assert_eq!(gw.stats().watchdog_fired, 1);
}

#[test]
fn the_watchdog_says_when_no_data_ever_arrived() {
    let t0 = Instant::now();
    let mut config = anycast();
    config.data_timeout = Some(Duration::from_secs(4));
    config.nat_keepalive = Duration::from_secs(600);
    let mut gw = gateway(config);
    gw.subscribe(t0, Some(ip(S)), ip(G1)).unwrap();
    let dn = discovery_nonce(&only(&mut gw).1);
    gw.handle_datagram(t0, at(DISCOVERY, 2268), &encode(Message::RelayAdvertisement { nonce: dn, relay: ip(RELAY) }));
    let (_, n) = request(&only(&mut gw).1);
    gw.handle_datagram(t0, at(RELAY, 2268), &query(n, MAC1, 255, 2, false, None));
    drain(&mut gw);
    events(&mut gw);
    while gw.stats().watchdog_fired == 0 {
        let due = gw.poll_timeout().unwrap();
        gw.handle_timeout(due);
    }
    assert_eq!(events(&mut gw), vec![GatewayEvent::DataAbsent { idle: None }]);
}

#[test]
fn inner_datagrams_with_bad_checksums_are_counted_apart() {
    let t0 = Instant::now();
    let (mut gw, _) = established(t0);
    let good = data(S, G1, b"payload");
    // Message header (2) + IPv4 header (20): the UDP checksum is at 28..30.
    let mut bad_udp = good.clone();
    bad_udp[28] ^= 0x55;
    // (What a relay forwards when the source's NIC was to fill in the UDP
    // checksum and never did.) And a bad IPv4 header checksum.
    let mut bad_ip = good.clone();
    bad_ip[2 + 10] ^= 0x01;
    assert!(gw.handle_datagram(t0, at(RELAY, 2268), &bad_udp).is_none());
    assert!(gw.handle_datagram(t0, at(RELAY, 2268), &bad_ip).is_none());
    // Not a checksum problem: a truncated inner packet.
    assert!(gw.handle_datagram(t0, at(RELAY, 2268), &good[..20]).is_none());
    assert!(gw.handle_datagram(t0, at(RELAY, 2268), &good).is_some());
    let st = gw.stats();
    assert_eq!((st.data_invalid, st.data_bad_checksum, st.data_packets), (3, 2, 1));
}

#[test]
fn leave_all_reports_every_channel_and_never_tears_down() {
    let t0 = Instant::now();
    let (mut gw, n) = established(t0);
    gw.subscribe(t0, None, ip("239.1.2.3")).unwrap();
    drain(&mut gw);
    gw.leave_all(t0);
    let sent = drain(&mut gw);
    assert_eq!(sent.len(), 2, "QRV (2) copies");
    let recs = updates(&sent[..1], MAC1, n);
    assert_eq!(
        recs,
        vec![
            (RecordType::ChangeToInclude, ip("239.1.2.3"), vec![]),
            (RecordType::BlockOldSources, ip(G1), vec![ip(S)])
        ]
    );
    assert_eq!(sent[0], sent[1]);
    assert_eq!(gw.poll_timeout(), None);
    assert_eq!(gw.stats().teardowns_sent, 0);
}

#[test]
fn ipv6_channels_over_an_ipv6_tunnel_ask_for_mldv2() {
    let t0 = Instant::now();
    let mut gw = gateway(GatewayConfig::new(vec![RelayCandidate::anycast(true)]));
    gw.subscribe(t0, Some(ip("2001:db8:100::10")), ip("ff3e::8000:1")).unwrap();
    let (dest, disc) = only(&mut gw);
    assert_eq!(dest, at("2001:3::1", 2268));
    let dn = discovery_nonce(&disc);
    let relay6 = ip("2001:db8:113::1");
    gw.handle_datagram(t0, at("2001:3::1", 2268), &encode(Message::RelayAdvertisement { nonce: dn, relay: relay6 }));
    let (dest, req) = only(&mut gw);
    assert_eq!(dest, SocketAddr::new(relay6, 2268));
    let (mld, n) = request(&req);
    assert!(mld, "P=1 when every channel is IPv6");
    let q = membership::build_query(ip("fe80::1"), &QueryParams { max_resp_code: 100, qrv: 0, qqic: 5 });
    let qm = encode(Message::MembershipQuery { limit: false, mac: MAC1, nonce: n, query: &q, gateway: None });
    gw.handle_datagram(t0, SocketAddr::new(relay6, 2268), &qm);
    let (_, upd) = only(&mut gw);
    let Message::MembershipUpdate { report, .. } = Message::decode(&upd).unwrap() else { panic!() };
    let r = membership::parse_report(report).unwrap();
    assert!(matches!(r.source, IpAddr::V6(a) if a.segments()[0] == 0xfe80), "link-local MLD source");
    assert_eq!(r.records[0].sources, vec![ip("2001:db8:100::10")]);
    let mut packet = Vec::new();
    inner::build_udp(
        SocketAddr::new(ip("2001:db8:100::10"), 40000),
        SocketAddr::new(ip("ff3e::8000:1"), 5001),
        1,
        b"v6",
        &mut packet,
    )
    .unwrap();
    let d = encode(Message::MulticastData { packet: &packet });
    assert_eq!(gw.handle_datagram(t0, SocketAddr::new(relay6, 2268), &d).unwrap().payload, b"v6");
}
