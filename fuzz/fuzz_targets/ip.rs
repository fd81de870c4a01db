//! The IP layer (`h3m_net::ip`) on its own: parsing, writing and reassembly.
//!
//! The input is tried as an IP packet (`IpPacket::parse`, `UdpPacket::parse`,
//! `walk_extensions` from its first octet) and as a sequence of fragments
//! `[id % 4] [offset in 8-octet units] [more: bit 0] [len] [len octets]` fed
//! to a `Reassembler` with small limits. Checks: nothing panics; lengths and
//! offsets stay inside the input; a parsed UDP datagram rebuilt with
//! `build_udp_with` (its addresses, ports, header fields and payload) parses
//! back equal with a valid checksum; the reassembler never holds more than its
//! limits and never completes a payload larger than them; its counters add up.
#![no_main]

use h3m_net::ip::reassembly::{FragmentKey, Reassembler, ReassemblyLimits};
use h3m_net::ip::{IpPacket, UdpPacket, build_udp_with, proto, walk_extensions};
use libfuzzer_sys::fuzz_target;

const LIMITS: ReassemblyLimits = ReassemblyLimits { max_pending: 3, max_pending_bytes: 2048 };

fuzz_target!(|data: &[u8]| {
    if let Ok(ip) = IpPacket::parse(data) {
        assert!(ip.header_len() <= ip.total_len() && ip.total_len() <= data.len());
    }
    if let Ok(p) = UdpPacket::parse(data) {
        assert!(p.udp_offset + p.udp.bytes.len() <= p.ip_len && p.ip_len <= data.len());
        let mut out = Vec::new();
        if build_udp_with(p.source, p.destination, &p.fields, p.payload(), &mut out).is_ok() {
            let again = UdpPacket::parse(&out).expect("a rebuilt datagram parses");
            assert_eq!((again.source, again.destination, again.fields), (p.source, p.destination, p.fields));
            assert_eq!(again.payload(), p.payload());
            again.verify_checksum().expect("a rebuilt datagram has a valid checksum");
        }
        let _ = p.verify_checksum();
    }
    if let Some((&next, rest)) = data.split_first()
        && let Ok(walk) = walk_extensions(next, rest)
    {
        assert_eq!(walk.offset + walk.rest.len(), rest.len());
        let _ = walk.router_alert();
    }

    let mut r = Reassembler::new(LIMITS);
    let mut rest = data;
    while let [id, offset, flags, len, tail @ ..] = rest {
        let (piece, after) = tail.split_at(usize::from(*len).min(tail.len()));
        rest = after;
        let key = FragmentKey {
            source: [10, 0, 0, 1].into(),
            destination: [232, 0, 0, 1].into(),
            identification: u32::from(id % 4),
            protocol: proto::UDP,
        };
        if let Ok(Some(whole)) = r.insert(key, usize::from(*offset) * 8, flags & 1 != 0, piece) {
            assert!(whole.len() <= LIMITS.max_pending_bytes);
        }
        assert!(r.pending() <= LIMITS.max_pending && r.pending_bytes() <= LIMITS.max_pending_bytes);
    }
    let before = r.counters();
    r.finish();
    let after = r.counters();
    assert_eq!((after.fragments, after.reassembled), (before.fragments, before.reassembled));
    assert!(after.dropped + after.reassembled <= after.fragments);
    assert_eq!((r.pending(), r.pending_bytes()), (0, 0));
});
