//! AMT (RFC 7450) codecs: the seven messages, and the IGMPv3/MLDv2 and
//! IP/UDP packets they carry.
//!
//! The input is one UDP payload, decoded with `Message::decode`. A Membership
//! Query's encapsulated packet goes to `parse_query`, an Update's to
//! `parse_report`, a Multicast Data packet to `parse_udp`; the input itself is
//! also tried as each of those packets. Checks: nothing panics; a decoded
//! message re-encodes to at most the input's length and decodes to the same
//! value; a parsed report rebuilt with `build_report` and a parsed datagram
//! rebuilt with `build_udp` parse back to the same value.
#![no_main]

use h3m_amt::inner::{self, InnerDatagram};
use h3m_amt::membership::{self, DEFAULT_QQI, GeneralQuery, Report};
use h3m_amt::message::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data) {
        let mut out = Vec::new();
        m.encode(&mut out);
        assert_eq!(out.len(), m.encoded_len());
        assert!(out.len() <= data.len(), "encoding longer than the input");
        assert_eq!(out[0], m.message_type() as u8);
        assert_eq!(Message::decode(&out), Ok(m), "re-encoded message decodes differently");
        match m {
            Message::MembershipQuery { query, .. } => query_checks(query),
            Message::MembershipUpdate { report, .. } => report_checks(report),
            Message::MulticastData { packet } => udp_checks(packet),
            _ => {}
        }
    }
    query_checks(data);
    report_checks(data);
    udp_checks(data);
});

fn query_checks(packet: &[u8]) {
    if let Ok(q) = membership::parse_query(packet) {
        check_query(&q);
    }
}

fn check_query(q: &GeneralQuery) {
    assert!(q.qrv <= 7);
    assert_eq!(q.source.is_ipv4(), q.group.is_ipv4());
    assert!(q.sources.iter().all(|s| s.is_ipv4() == q.source.is_ipv4()));
    if q.qqic == 0 {
        assert_eq!(q.qqi, DEFAULT_QQI);
    } else {
        assert_eq!(q.qqi.as_secs(), u64::from(membership::decode_code(q.qqic)));
    }
}

fn report_checks(packet: &[u8]) {
    let Ok(r) = membership::parse_report(packet) else { return };
    assert!(r.records.iter().all(|g| g.group.is_ipv4() == r.source.is_ipv4()));
    // A non-link-local IPv6 source or an oversized report is refused by the
    // builder; anything else round-trips.
    if let Ok(rebuilt) = membership::build_report(r.source, &r.records) {
        let again: Report = membership::parse_report(&rebuilt).expect("rebuilt report parses");
        assert_eq!(again, r);
        if let Ok(split) = membership::build_reports(r.source, &r.records, 576) {
            for p in &split {
                assert!(p.len() <= 576);
                membership::parse_report(p).expect("split report parses");
            }
        }
    }
}

fn udp_checks(packet: &[u8]) {
    let Ok(d) = inner::parse_udp(packet) else { return };
    assert!(d.destination.ip().is_multicast());
    let mut out = Vec::new();
    inner::build_udp(d.source, d.destination, d.ttl, d.payload, &mut out).expect("a parsed datagram rebuilds");
    let again: InnerDatagram<'_> = inner::parse_udp(&out).expect("rebuilt datagram parses");
    assert_eq!(again, d);
}
