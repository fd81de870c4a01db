//! DRIAD (RFC 8777) against real BIND 9.18 answers captured in the lab
//! (`vectors/amt/driad-dns.pcap`, `driad-then-amt.pcap`; see
//! `vectors/amt/MANIFEST.md`): every AMTRELAY RDATA decodes to the records
//! the zone held and re-encodes to the same octets, and the candidate order
//! matches what the lab's gateway did.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use h3m_amt::driad::hickory_proto::op::{Message, ResponseCode};
use h3m_amt::driad::hickory_proto::rr::{RData, RecordType};
use h3m_amt::driad::{
    AMTRELAY, AmtRelayRecord, DriadAnswer, RelayTarget, ResolvedNames, encode_rdata, order_candidates, parse_rdata,
    reverse_name,
};
use h3m_amt::gateway::{RelayCandidate, Rng};
use h3m_receiver::capture::{Datagram, ReadOptions, read_capture_file};

fn amt_vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors/amt")
}

fn datagrams(file: &str) -> Vec<Datagram> {
    read_capture_file(&amt_vectors().join(file), &ReadOptions::default()).unwrap().datagrams
}

/// The DNS responses (from port 53) of a capture.
fn dns_responses(file: &str) -> Vec<Message> {
    datagrams(file)
        .iter()
        .filter(|d| d.source.map(|s| s.port()) == Some(53))
        .map(|d| Message::from_vec(&d.payload).unwrap())
        .collect()
}

/// AMTRELAY RDATA per owner name (lower case, trailing dot), in answer order.
fn amtrelay_rdata(responses: &[Message]) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut out: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for m in responses {
        for r in &m.answers {
            if let RData::Unknown { code, rdata } = &r.data
                && u16::from(*code) == AMTRELAY
            {
                out.entry(r.name.to_ascii().to_ascii_lowercase()).or_default().push(rdata.anything.clone());
            }
        }
    }
    out
}

fn decode_all(rdatas: &[Vec<u8>]) -> Vec<AmtRelayRecord> {
    rdatas
        .iter()
        .map(|d| {
            let r = parse_rdata(d).unwrap().unwrap();
            assert_eq!(&encode_rdata(&r).unwrap(), d, "re-encoding {r:?}");
            r
        })
        .collect()
}

fn rec(precedence: u8, discovery_optional: bool, relay: RelayTarget) -> AmtRelayRecord {
    AmtRelayRecord { precedence, discovery_optional, relay }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn set(records: Vec<AmtRelayRecord>) -> BTreeSet<String> {
    records.iter().map(|r| format!("{r:?}")).collect()
}

struct SeededRng(u64);

impl Rng for SeededRng {
    fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 32) as u32
    }
}

#[test]
fn every_captured_amtrelay_rdata_decodes() {
    let responses = dns_responses("driad-dns.pcap");
    assert_eq!(responses.len(), 7);
    let by_owner = amtrelay_rdata(&responses);
    let owners: BTreeSet<&str> = by_owner.keys().map(String::as_str).collect();
    let r10 = reverse_name(ip("198.51.100.10"));
    let r11 = reverse_name(ip("198.51.100.11"));
    let r12 = reverse_name(ip("198.51.100.12"));
    let r6 = reverse_name(ip("2001:db8:100::10"));
    assert_eq!(owners, BTreeSet::from([r10.as_str(), r11.as_str(), r12.as_str(), r6.as_str()]));

    assert_eq!(
        set(decode_all(&by_owner[&r10])),
        set(vec![
            rec(10, false, RelayTarget::Ipv4("203.0.113.1".parse().unwrap())),
            rec(20, false, RelayTarget::Ipv6("2001:db8:113::1".parse().unwrap())),
            rec(128, true, RelayTarget::Name("relays.amt.test.".into())),
        ])
    );
    assert_eq!(decode_all(&by_owner[&r11]), [rec(0, false, RelayTarget::None)]);
    // .12 was asked twice (with and without RD): the same pair both times.
    let r12_records = decode_all(&by_owner[&r12]);
    assert_eq!(r12_records.len(), 4);
    assert_eq!(
        set(r12_records),
        set(vec![
            rec(10, false, RelayTarget::Ipv4("203.0.113.1".parse().unwrap())),
            rec(10, false, RelayTarget::Ipv4("203.0.113.9".parse().unwrap())),
        ])
    );
    assert_eq!(decode_all(&by_owner[&r6]), [rec(10, false, RelayTarget::Ipv6("2001:db8:113::1".parse().unwrap()))]);
}

#[test]
fn captured_query_names_are_the_reverse_names() {
    let responses = dns_responses("driad-dns.pcap");
    let asked: BTreeSet<String> = responses
        .iter()
        .filter(|m| m.queries[0].query_type == RecordType::from(AMTRELAY))
        .map(|m| m.queries[0].name.to_ascii())
        .collect();
    let want: BTreeSet<String> = ["198.51.100.10", "198.51.100.11", "198.51.100.12", "2001:db8:100::10"]
        .into_iter()
        .map(|s| reverse_name(ip(s)))
        .collect();
    assert_eq!(asked, want);
    assert!(responses.iter().all(|m| m.metadata.response_code == ResponseCode::NoError));
}

/// The A/AAAA answers for `relays.amt.test.` in the capture.
fn captured_relay_addresses(responses: &[Message]) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for m in responses {
        for r in &m.answers {
            if r.name.to_ascii().eq_ignore_ascii_case("relays.amt.test.") {
                match &r.data {
                    RData::A(a) => out.push(IpAddr::V4(a.0)),
                    RData::AAAA(a) => out.push(IpAddr::V6(a.0)),
                    _ => {}
                }
            }
        }
    }
    out
}

#[test]
fn captured_answers_order_into_candidates() {
    let responses = dns_responses("driad-dns.pcap");
    let by_owner = amtrelay_rdata(&responses);
    let relays = captured_relay_addresses(&responses);
    assert_eq!(relays, [ip("203.0.113.1"), ip("2001:db8:113::1")]);
    let mut resolved = ResolvedNames::new();
    resolved.insert("relays.amt.test.".into(), relays);

    // .10: precedence 10, 20, then the name (D=1). The name's addresses are
    // already listed (with D=0) at better precedences, so they keep those.
    let records = decode_all(&by_owner[&reverse_name(ip("198.51.100.10"))]);
    let answer = order_candidates(&records, &resolved, false, &mut SeededRng(1));
    assert_eq!(
        answer,
        DriadAnswer::Relays(vec![
            RelayCandidate { address: ip("203.0.113.1"), discovery: true },
            RelayCandidate { address: ip("2001:db8:113::1"), discovery: true },
        ])
    );
    // Without the first two records, the name's addresses are used directly (D=1).
    let name_only: Vec<_> = records.iter().filter(|r| r.precedence == 128).cloned().collect();
    let answer = order_candidates(&name_only, &resolved, true, &mut SeededRng(1));
    assert_eq!(
        answer.candidates(),
        [
            RelayCandidate { address: ip("2001:db8:113::1"), discovery: false },
            RelayCandidate { address: ip("203.0.113.1"), discovery: false },
        ]
    );

    // .11: type 0, no relay.
    let records = decode_all(&by_owner[&reverse_name(ip("198.51.100.11"))]);
    assert_eq!(order_candidates(&records, &resolved, false, &mut SeededRng(1)), DriadAnswer::NoRelay);

    // .12: the equal-precedence pair that crashed libmcrx's driad.py; both orders occur.
    let records = decode_all(&by_owner[&reverse_name(ip("198.51.100.12"))]);
    let orders: BTreeSet<Vec<IpAddr>> = (0..32)
        .map(|seed| {
            let answer = order_candidates(&records, &resolved, false, &mut SeededRng(seed));
            answer.candidates().iter().map(|c| c.address).collect()
        })
        .collect();
    assert_eq!(
        orders,
        BTreeSet::from([vec![ip("203.0.113.1"), ip("203.0.113.9")], vec![ip("203.0.113.9"), ip("203.0.113.1")]])
    );

    // The IPv6 source.
    let records = decode_all(&by_owner[&reverse_name(ip("2001:db8:100::10"))]);
    let answer = order_candidates(&records, &resolved, true, &mut SeededRng(1));
    assert_eq!(answer.candidates(), [RelayCandidate { address: ip("2001:db8:113::1"), discovery: true }]);
}

#[test]
fn driad_then_amt_discovers_at_the_first_candidate() {
    let all = datagrams("driad-then-amt.pcap");
    let responses: Vec<Message> = all
        .iter()
        .filter(|d| d.source.map(|s| s.port()) == Some(53))
        .map(|d| Message::from_vec(&d.payload).unwrap())
        .collect();
    assert_eq!(responses.len(), 1);
    let by_owner = amtrelay_rdata(&responses);
    let records = decode_all(&by_owner[&reverse_name(ip("198.51.100.10"))]);
    assert_eq!(records.len(), 3);
    let answer = order_candidates(&records, &ResolvedNames::new(), false, &mut SeededRng(7));
    let first = answer.candidates()[0];
    assert_eq!(first, RelayCandidate { address: ip("203.0.113.1"), discovery: true });

    // D=0, so the lab gateway sent a Relay Discovery (type 1, 8 octets) to
    // that address right after the DNS answer, and the relay advertised itself.
    let dns_at = all.iter().position(|d| d.source.map(|s| s.port()) == Some(53)).unwrap();
    let amt: Vec<&Datagram> = all[dns_at + 1..].iter().collect();
    let discovery = amt[0];
    assert_eq!(discovery.destination, Some(SocketAddr::new(first.address, 2268)));
    assert_eq!((discovery.payload.len(), discovery.payload[0]), (8, 1));
    let advertisement = amt[1];
    assert_eq!(advertisement.source, Some(SocketAddr::new(first.address, 2268)));
    assert_eq!(advertisement.payload[0], 2);
    assert_eq!(&advertisement.payload[8..], &[203, 0, 113, 1]);
}
