//! DRIAD lookups against a tiny authoritative DNS responder on 127.0.0.1
//! (random port). The zone mirrors the lab's BIND zone of the captures
//! (`driad-dns.pcap`), plus a CNAME into another zone, NXDOMAIN, NODATA and
//! an unknown relay type. No other DNS server is ever asked.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use h3m_amt::driad::hickory_proto::op::{Message, ResponseCode};
use h3m_amt::driad::hickory_proto::rr::rdata::{A, AAAA, CNAME, NULL, PTR};
use h3m_amt::driad::hickory_proto::rr::{Name, RData, Record, RecordType};
use h3m_amt::driad::{
    AMTRELAY, AmtRelayRecord, DriadAnswer, DriadError, DriadOptions, DriadResolver, RelayTarget, encode_rdata, lookup,
    lookup_records, relay_candidates, reverse_name,
};
use h3m_amt::gateway::{RelayCandidate, Rng};
use tokio::net::UdpSocket;

/// A deterministic generator for the load-balancing shuffle.
struct TestRng(u64);

impl Rng for TestRng {
    fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 32) as u32
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn amtrelay(owner: &str, precedence: u8, d: bool, relay: RelayTarget) -> Record {
    let rdata = encode_rdata(&AmtRelayRecord { precedence, discovery_optional: d, relay }).unwrap();
    raw_amtrelay(owner, rdata)
}

fn raw_amtrelay(owner: &str, rdata: Vec<u8>) -> Record {
    let code = RecordType::from(AMTRELAY);
    Record::from_rdata(name(owner), 300, RData::Unknown { code, rdata: NULL::with(rdata) })
}

fn v4(s: &str) -> RelayTarget {
    RelayTarget::Ipv4(s.parse().unwrap())
}

fn v6(s: &str) -> RelayTarget {
    RelayTarget::Ipv6(s.parse().unwrap())
}

/// The lab zone of the captures and a few extra names.
fn zone() -> Vec<Record> {
    let r10 = reverse_name(ip("198.51.100.10"));
    let r11 = reverse_name(ip("198.51.100.11"));
    let r12 = reverse_name(ip("198.51.100.12"));
    let r13 = reverse_name(ip("198.51.100.13"));
    let r21 = reverse_name(ip("198.51.100.21"));
    let r22 = reverse_name(ip("198.51.100.22"));
    let r6 = reverse_name(ip("2001:db8:100::10"));
    vec![
        amtrelay(&r10, 10, false, v4("203.0.113.1")),
        amtrelay(&r10, 20, false, v6("2001:db8:113::1")),
        amtrelay(&r10, 128, true, RelayTarget::Name("relays.amt.test.".into())),
        Record::from_rdata(name("relays.amt.test."), 300, RData::A(A(ip4("203.0.113.5")))),
        Record::from_rdata(name("relays.amt.test."), 300, RData::AAAA(AAAA("2001:db8:113::5".parse().unwrap()))),
        amtrelay(&r11, 0, false, RelayTarget::None),
        amtrelay(&r12, 10, false, v4("203.0.113.1")),
        amtrelay(&r12, 10, false, v4("203.0.113.9")),
        // Akamai-style: the reverse name is a CNAME into a delegated zone,
        // which this responder does not chase itself (hickory must).
        Record::from_rdata(name(&r13), 300, RData::CNAME(CNAME(name("13.relays.delegated.test.")))),
        amtrelay("13.relays.delegated.test.", 5, true, v4("203.0.113.13")),
        // NODATA for AMTRELAY: the name exists with another type.
        Record::from_rdata(name(&r21), 300, RData::PTR(PTR(name("host21.amt.test.")))),
        // An unknown relay type (5) next to a valid record.
        raw_amtrelay(&r22, vec![5, 5, 0xde, 0xad, 0xbe, 0xef]),
        amtrelay(&r22, 30, false, v4("203.0.113.22")),
        amtrelay(&r6, 10, false, v6("2001:db8:113::1")),
    ]
}

fn ip4(s: &str) -> std::net::Ipv4Addr {
    s.parse().unwrap()
}

fn lower(n: &Name) -> String {
    n.to_ascii().to_ascii_lowercase()
}

/// Answers one query from `zone` like an authoritative server without
/// cross-zone CNAME chasing.
fn answer(query: &Message, zone: &[Record]) -> Message {
    let mut response = Message::response(query.metadata.id, query.metadata.op_code);
    response.metadata.authoritative = true;
    response.metadata.recursion_desired = query.metadata.recursion_desired;
    let Some(q) = query.queries.first() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response;
    };
    response.add_query(q.clone());
    let qname = lower(&q.name);
    let at_name: Vec<&Record> = zone.iter().filter(|r| lower(&r.name) == qname).collect();
    let matching: Vec<Record> =
        at_name.iter().filter(|r| r.record_type() == q.query_type).map(|r| (*r).clone()).collect();
    if !matching.is_empty() {
        response.add_answers(matching);
    } else if let Some(cname) = at_name.iter().find(|r| r.record_type() == RecordType::CNAME) {
        response.add_answer((*cname).clone());
    } else if at_name.is_empty() {
        response.metadata.response_code = ResponseCode::NXDomain;
    }
    response
}

/// Starts the responder; returns its address and a query counter.
async fn start_responder() -> (SocketAddr, Arc<AtomicUsize>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let zone = zone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((len, peer)) = socket.recv_from(&mut buf).await else { return };
            let Ok(query) = Message::from_vec(&buf[..len]) else { continue };
            counter.fetch_add(1, Ordering::Relaxed);
            let Ok(bytes) = answer(&query, &zone).to_vec() else { continue };
            let _ = socket.send_to(&bytes, peer).await;
        }
    });
    (address, count)
}

/// Short timeouts: a lost answer costs milliseconds, not seconds.
fn test_options() -> DriadOptions {
    let mut o = DriadOptions::default();
    o.query_timeout = Duration::from_millis(500);
    o.attempts = 2;
    o.retry_base = Duration::from_millis(10);
    o.retry_max = Duration::from_millis(20);
    o
}

fn resolver(server: SocketAddr, seed: u64) -> DriadResolver {
    DriadResolver::from_name_servers(&[server], test_options()).unwrap().with_rng(Box::new(TestRng(seed)))
}

fn cand(s: &str, discovery: bool) -> RelayCandidate {
    RelayCandidate { address: ip(s), discovery }
}

fn anycast(ipv6_first: bool) -> [RelayCandidate; 2] {
    [RelayCandidate::anycast(ipv6_first), RelayCandidate::anycast(!ipv6_first)]
}

/// Guards against a hang (not a timing assertion).
async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f).await.expect("DRIAD lookup did not finish")
}

#[tokio::test]
async fn all_relay_types_in_precedence_order() {
    let (server, queries) = start_responder().await;
    let r = resolver(server, 1);
    let records = bounded(lookup_records(ip("198.51.100.10"), &r)).await.unwrap();
    assert_eq!(records.len(), 3);
    assert!(records.contains(&AmtRelayRecord {
        precedence: 128,
        discovery_optional: true,
        relay: RelayTarget::Name("relays.amt.test.".into())
    }));
    let answer = bounded(lookup(ip("198.51.100.10"), &r)).await.unwrap();
    assert_eq!(
        answer,
        DriadAnswer::Relays(vec![
            cand("203.0.113.1", true),
            cand("2001:db8:113::1", true),
            // relays.amt.test. (D=1): both its addresses, IPv4 (the source's family) first.
            cand("203.0.113.5", false),
            cand("2001:db8:113::5", false),
        ])
    );
    let candidates = bounded(relay_candidates(None, Some(ip("198.51.100.10")), false, &r)).await;
    let mut want = answer.candidates().to_vec();
    want.extend(anycast(false));
    assert_eq!(candidates, want);
    // A configured relay comes first (as a discovery address).
    let candidates = bounded(relay_candidates(Some(ip("192.0.2.77")), Some(ip("198.51.100.10")), false, &r)).await;
    assert_eq!(candidates[0], cand("192.0.2.77", true));
    assert_eq!(&candidates[1..], &want[..]);
    assert!(queries.load(Ordering::Relaxed) >= 3);
}

#[tokio::test]
async fn ipv6_source_and_family_preference() {
    let (server, _) = start_responder().await;
    let r = resolver(server, 2);
    let answer = bounded(lookup(ip("2001:db8:100::10"), &r)).await.unwrap();
    assert_eq!(answer, DriadAnswer::Relays(vec![cand("2001:db8:113::1", true)]));
    let candidates = bounded(relay_candidates(None, Some(ip("2001:db8:100::10")), true, &r)).await;
    let mut want = vec![cand("2001:db8:113::1", true)];
    want.extend(anycast(true));
    assert_eq!(candidates, want);
    // An IPv6 group puts IPv6 first within the type-3 name's precedence.
    let candidates = bounded(relay_candidates(None, Some(ip("198.51.100.10")), true, &r)).await;
    assert_eq!(candidates[2..4], [cand("2001:db8:113::5", false), cand("203.0.113.5", false)]);
}

#[tokio::test]
async fn equal_precedence_load_balances() {
    let (server, _) = start_responder().await;
    let mut orders = BTreeSet::new();
    for seed in 0..16 {
        let r = resolver(server, seed);
        let answer = bounded(lookup(ip("198.51.100.12"), &r)).await.unwrap();
        let order: Vec<IpAddr> = answer.candidates().iter().map(|c| c.address).collect();
        assert_eq!(order.len(), 2);
        orders.insert(order);
    }
    assert_eq!(orders.len(), 2, "both orders over 16 seeds");
}

#[tokio::test]
async fn cname_is_followed() {
    let (server, _) = start_responder().await;
    let r = resolver(server, 3);
    let answer = bounded(lookup(ip("198.51.100.13"), &r)).await.unwrap();
    assert_eq!(answer, DriadAnswer::Relays(vec![cand("203.0.113.13", false)]));
    let candidates = bounded(relay_candidates(None, Some(ip("198.51.100.13")), false, &r)).await;
    assert_eq!(candidates[0], cand("203.0.113.13", false));
}

#[tokio::test]
async fn type_zero_means_no_relay() {
    let (server, _) = start_responder().await;
    let r = resolver(server, 4);
    assert_eq!(bounded(lookup(ip("198.51.100.11"), &r)).await.unwrap(), DriadAnswer::NoRelay);
    // relay_candidates drops DRIAD's part and keeps the fallbacks.
    let candidates = bounded(relay_candidates(Some(ip("192.0.2.77")), Some(ip("198.51.100.11")), false, &r)).await;
    let mut want = vec![cand("192.0.2.77", true)];
    want.extend(anycast(false));
    assert_eq!(candidates, want);
}

#[tokio::test]
async fn unknown_relay_type_is_ignored() {
    let (server, _) = start_responder().await;
    let r = resolver(server, 5);
    let answer = bounded(lookup(ip("198.51.100.22"), &r)).await.unwrap();
    assert_eq!(answer, DriadAnswer::Relays(vec![cand("203.0.113.22", true)]));
}

#[tokio::test]
async fn nxdomain_and_nodata_fall_back_to_anycast() {
    let (server, queries) = start_responder().await;
    let r = resolver(server, 6);
    for source in ["198.51.100.20", "198.51.100.21", "2001:db8:100::99"] {
        let answer = bounded(lookup(ip(source), &r)).await.unwrap();
        assert_eq!(answer, DriadAnswer::Relays(vec![]), "{source}");
        let ipv6 = ip(source).is_ipv6();
        let candidates = bounded(relay_candidates(None, Some(ip(source)), ipv6, &r)).await;
        assert_eq!(candidates, anycast(ipv6), "{source}");
    }
    assert!(queries.load(Ordering::Relaxed) >= 3);
    // No source (any-source multicast): no DNS at all.
    let before = queries.load(Ordering::Relaxed);
    assert_eq!(bounded(relay_candidates(None, None, false, &r)).await, anycast(false));
    assert_eq!(queries.load(Ordering::Relaxed), before);
}

#[tokio::test]
async fn silent_server_is_bounded_and_falls_back() {
    // Bound but never read: every query times out.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server = silent.local_addr().unwrap();
    let mut options = test_options();
    options.query_timeout = Duration::from_millis(100);
    let r = DriadResolver::from_name_servers(&[server], options).unwrap();
    match bounded(lookup(ip("198.51.100.10"), &r)).await {
        Err(DriadError::Dns { name, attempts, .. }) => {
            assert_eq!(name, "10.100.51.198.in-addr.arpa.");
            assert_eq!(attempts, 2);
        }
        other => panic!("expected a DNS failure, got {other:?}"),
    }
    let candidates = bounded(relay_candidates(Some(ip("192.0.2.77")), Some(ip("198.51.100.10")), false, &r)).await;
    let mut want = vec![cand("192.0.2.77", true)];
    want.extend(anycast(false));
    assert_eq!(candidates, want);
    drop(silent);
}
