//! Unit and property tests of the IP layer: build -> parse round trips, arbitrary and truncated input,
//! extension headers, Router Alerts, and reassembly with its memory bounds.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;

use super::checksum::{Checksum, internet_checksum};
use super::proto::{self, UDP};
use super::reassembly::{
    DEFAULT_MAX_PENDING_FRAGMENT_BYTES, DEFAULT_MAX_PENDING_REASSEMBLIES, FragmentKey, Reassembler, ReassemblyLimits,
};
use super::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn build(s: &str, d: &str, fields: IpFields, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    build_udp_with(sa(s), sa(d), &fields, payload, &mut out).unwrap();
    out
}

#[test]
fn udp_round_trip_keeps_the_fields() {
    let fields = IpFields { ttl: 9, tos: 0xb8, identification: 0x1234, dont_fragment: true, ..IpFields::default() };
    let p = build("10.0.0.1:4000", "232.1.1.1:5001", fields, b"hello");
    assert_eq!(p[..10], [0x45, 0xb8, 0, 33, 0x12, 0x34, 0x40, 0, 9, 17]);
    let u = UdpPacket::parse(&p).unwrap();
    assert_eq!(
        (u.source, u.destination, u.fields, u.payload()),
        (sa("10.0.0.1:4000"), sa("232.1.1.1:5001"), fields, &b"hello"[..])
    );
    assert_eq!((u.udp_offset, u.ip_len), (20, 33));
    u.verify_checksum().unwrap();

    let fields6 = IpFields { ttl: 3, tos: 0xb8, flow_label: 0x12345, ..IpFields::default() };
    let p6 = build("[fd00::1]:4000", "[ff3e::8000:1]:5001", fields6, b"six");
    assert_eq!(p6[..4], [0x6b, 0x81, 0x23, 0x45]);
    let u = UdpPacket::parse(&p6).unwrap();
    assert_eq!((u.fields, u.payload(), u.udp_offset, u.ip_len), (fields6, &b"six"[..], 40, 51));
    u.verify_checksum().unwrap();
}

#[test]
fn router_alert_headers() {
    let ra = IpFields { ttl: 1, tos: 0xc0, router_alert: true, dont_fragment: true, ..IpFields::default() };
    let mut v4 = Vec::new();
    write_ipv4_header(&mut v4, Ipv4Addr::new(10, 8, 8, 1), Ipv4Addr::new(224, 0, 0, 22), proto::IGMP, &ra, 8);
    v4.extend_from_slice(&[0; 8]);
    assert_eq!(
        v4[..24],
        [0x46, 0xc0, 0, 32, 0, 0, 0x40, 0, 1, 2, v4[10], v4[11], 10, 8, 8, 1, 224, 0, 0, 22, 0x94, 4, 0, 0]
    );
    let p = Ipv4Packet::parse(&v4).unwrap();
    p.verify_header_checksum().unwrap();
    assert_eq!((p.router_alert(), p.payload.len(), p.options()), (Ok(true), 8, &[0x94, 4, 0, 0][..]));

    let src: Ipv6Addr = "fe80::1".parse().unwrap();
    let mut v6 = Vec::new();
    write_ipv6_header(&mut v6, src, "ff02::16".parse().unwrap(), proto::ICMPV6, &ra, 4);
    v6.extend_from_slice(&[0; 4]);
    assert_eq!(v6[..8], [0x6c, 0, 0, 0, 0, 12, 0, 1]);
    assert_eq!(v6[40..48], [58, 0, 5, 2, 0, 0, 1, 0]);
    let p = Ipv6Packet::parse(&v6).unwrap();
    let walk = p.walk().unwrap();
    assert_eq!((walk.next_header, walk.offset, walk.rest.len(), walk.router_alert()), (58, 8, 4, Ok(true)));
    // Malformed options.
    assert_eq!(ipv4_router_alert(&[0x94, 5, 0, 0]), Err(IpError::BadOption));
    assert_eq!(ipv4_router_alert(&[7, 1]), Err(IpError::BadOption));
    assert_eq!(ipv4_router_alert(&[1, 1, 0x94, 4, 0, 0, 0, 99]), Ok(true));
    assert_eq!(hop_by_hop_router_alert(&[0, 1, 3, 0, 0, 0]), Ok(false));
    assert_eq!(hop_by_hop_router_alert(&[5, 3, 0, 0]), Err(IpError::BadOption));
}

#[test]
fn extension_headers_are_walked() {
    // Hop-by-Hop (8) -> Routing (8) -> Destination Options (16) -> AH (12) -> UDP.
    let mut body = vec![43, 0, 1, 4, 0, 0, 0, 0];
    body.extend_from_slice(&[60, 0, 0, 0, 0, 0, 0, 0]);
    body.extend_from_slice(&[51, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    body.extend_from_slice(&[17, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    body.extend_from_slice(b"udp...");
    let w = walk_extensions(0, &body).unwrap();
    assert_eq!((w.next_header, w.offset, w.rest), (UDP, 44, &b"udp..."[..]));
    assert_eq!(w.hop_by_hop, Some(&[1, 4, 0, 0, 0, 0][..]));
    // Nothing to walk.
    let w = walk_extensions(UDP, b"x").unwrap();
    assert_eq!((w.next_header, w.offset, w.hop_by_hop), (UDP, 0, None));
    // A Fragment header stops the walk.
    assert_eq!(walk_extensions(60, &[44, 0, 0, 0, 0, 0, 0, 0, 17]).unwrap().next_header, 44);
    // Truncated, too many.
    assert_eq!(walk_extensions(0, &[17]), Err(IpError::Truncated { what: "IPv6 extension header", need: 2, have: 1 }));
    assert_eq!(
        walk_extensions(51, &[17, 2, 0, 0]),
        Err(IpError::Truncated { what: "IPv6 extension header", need: 16, have: 4 })
    );
    let chain = |n: usize| -> Vec<u8> {
        (0..n).flat_map(|i| [if i + 1 == n { UDP } else { 60 }, 0, 1, 4, 0, 0, 0, 0]).collect()
    };
    assert_eq!(walk_extensions(60, &chain(MAX_EXTENSION_HEADERS + 1)), Err(IpError::TooManyExtensionHeaders));
    assert_eq!(walk_extensions(60, &chain(MAX_EXTENSION_HEADERS)).unwrap().next_header, UDP);
    // Fragment headers.
    let (f, rest) = Ipv6Fragment::parse(&[17, 0, 0x05, 0x01, 0xde, 0xad, 0xbe, 0xef, 1]).unwrap();
    assert_eq!(f, Ipv6Fragment { next_header: 17, offset: 0x500, more_fragments: true, identification: 0xdead_beef });
    assert_eq!((rest, f.is_atomic()), (&[1][..], false));
    assert!(Ipv6Fragment::parse(&[17, 0, 0, 0, 0, 0, 0, 7]).unwrap().0.is_atomic());
    assert!(Ipv6Fragment::parse(&[17; 7]).is_err());
}

#[test]
fn header_and_length_errors() {
    let p = build("10.0.0.1:1", "239.1.2.3:2", IpFields::with_ttl(1), b"hello");
    assert_eq!(IpPacket::parse(&[]), Err(IpError::Empty));
    assert_eq!(IpPacket::parse(&[0x15]), Err(IpError::UnknownVersion(1)));
    assert_eq!(Ipv4Packet::parse(&[0x60; 20]), Err(IpError::UnknownVersion(6)));
    assert_eq!(Ipv6Packet::parse(&[0x45; 40]), Err(IpError::UnknownVersion(4)));
    let mut ihl = p.clone();
    ihl[0] = 0x44;
    assert_eq!(Ipv4Packet::parse(&ihl), Err(IpError::BadHeaderLength(4)));
    ihl[0] = 0x4f;
    assert_eq!(
        Ipv4Packet::parse(&ihl),
        Err(IpError::Truncated { what: "IPv4 header with options", need: 60, have: 33 })
    );
    // Link padding after the Total Length is left out.
    let mut padded = p.clone();
    padded.resize(60, 0xee);
    assert_eq!(Ipv4Packet::parse(&padded).unwrap().payload, &p[20..]);
    assert_eq!(UdpPacket::parse(&padded).unwrap().payload(), b"hello");
    // Fragments and other protocols are not UDP packets.
    let mut frag = p.clone();
    frag[6] = 0x20;
    frag[10..12].fill(0);
    let sum = internet_checksum(&[&frag[..20]]);
    frag[10..12].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(UdpPacket::parse(&frag), Err(IpError::Fragment));
    let h = Ipv4Packet::parse(&frag).unwrap().header;
    assert!(h.more_fragments() && h.is_fragment() && !h.dont_fragment());
    let mut bad = p.clone();
    bad[8] ^= 1;
    assert_eq!(UdpPacket::parse(&bad), Err(IpError::HeaderChecksum));
    // UDP lengths.
    assert_eq!(UdpDatagram::parse(&[0; 7]), Err(IpError::Truncated { what: "UDP header", need: 8, have: 7 }));
    assert_eq!(UdpDatagram::parse(&[0, 1, 0, 2, 0, 7, 0, 0]), Err(IpError::BadUdpLength { udp: 7, available: 8 }));
    assert_eq!(UdpDatagram::parse(&[0, 1, 0, 2, 0, 9, 0, 0]), Err(IpError::BadUdpLength { udp: 9, available: 8 }));
    // IPv6: jumbogram, fragment, not UDP.
    let p6 = build("[fd00::1]:1", "[ff3e::1]:2", IpFields::with_ttl(1), b"x");
    let mut jumbo = p6.clone();
    jumbo[4..6].fill(0);
    assert_eq!(UdpPacket::parse(&jumbo), Err(IpError::BadLength { total: 40, len: 49 }));
    let mut f6 = p6.clone();
    f6[6] = 44;
    assert_eq!(UdpPacket::parse(&f6), Err(IpError::Fragment));
    f6[6] = 58;
    assert_eq!(UdpPacket::parse(&f6), Err(IpError::NotUdp(58)));
}

#[test]
fn udp_checksum_rules() {
    let p = build("10.0.0.1:1", "239.1.2.3:2", IpFields::with_ttl(1), b"hello");
    let (s, d) = (sa("10.0.0.1:1").ip(), sa("239.1.2.3:2").ip());
    verify_udp_checksum(s, d, &p[20..]).unwrap();
    assert_eq!(udp_checksum(s, d, &p[20..]), u16::from_be_bytes([p[26], p[27]]));
    let mut zero = p[20..].to_vec();
    zero[6..8].fill(0);
    verify_udp_checksum(s, d, &zero).unwrap();
    let v6: IpAddr = "ff3e::1".parse().unwrap();
    assert_eq!(verify_udp_checksum("fd00::1".parse().unwrap(), v6, &zero), Err(IpError::ZeroUdpChecksum));
    let mut flipped = p[20..].to_vec();
    flipped[9] ^= 1;
    assert_eq!(verify_udp_checksum(s, d, &flipped), Err(IpError::UdpChecksum));
    // The mixed-family pseudo-header is the IPv6 one with the IPv4-mapped address.
    let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
    assert_eq!(pseudo_header(s, v6, UDP, 9).finish(), pseudo_header(mapped, v6, UDP, 9).finish());
    // A computed zero is sent as 0xffff.
    let probe = build("10.0.0.1:1", "239.0.0.1:2", IpFields::with_ttl(1), &[0, 0]);
    let p = build("10.0.0.1:1", "239.0.0.1:2", IpFields::with_ttl(1), &probe[26..28]);
    assert_eq!(p[26..28], [0xff, 0xff]);
    assert!(UdpPacket::parse(&p).unwrap().verify_checksum().is_ok());
}

/// The largest payload each family and Router Alert choice fits, and that one
/// octet more is refused without touching the buffer (the plain cases are
/// `h3m_amt::inner`'s tests).
#[test]
fn size_limits_with_router_alerts() {
    let ra = IpFields { router_alert: true, ..IpFields::default() };
    for (s, d, max) in [("10.0.0.1:1", "239.0.0.1:2", 65535 - 32), ("[fe80::1]:1", "[ff02::16]:2", 65535 - 16)] {
        let payload = vec![0x5a; max + 1];
        let mut out = vec![9];
        let refused = build_udp_with(sa(s), sa(d), &ra, &payload, &mut out);
        assert_eq!((refused, out.len()), (Err(IpError::PayloadTooLarge(max + 1)), 1), "{s}");
        build_udp_with(sa(s), sa(d), &ra, &payload[1..], &mut out).unwrap();
        let p = UdpPacket::parse(&out[1..]).unwrap();
        assert_eq!((p.payload().len(), p.fields.router_alert), (max, false), "{s}");
    }
    let mixed = build_udp_with(sa("[::1]:1"), sa("10.0.0.1:2"), &ra, b"", &mut Vec::new());
    assert!(matches!(mixed, Err(IpError::FamilyMismatch { .. })));
}

// ---- reassembly ------------------------------------------------------------

fn key(id: u32) -> FragmentKey {
    FragmentKey {
        source: sa("10.0.0.1:0").ip(),
        destination: sa("232.0.0.1:0").ip(),
        identification: id,
        protocol: UDP,
    }
}

#[test]
fn reassembly_bounds_and_errors() {
    let mut r = Reassembler::new(ReassemblyLimits::default());
    assert_eq!(r.insert(key(1), 0, true, &[0; 12]), Err(IpError::BadFragment { offset: 0, len: 12, more: true }));
    assert!(r.insert(key(1), 8, true, &[]).is_err());
    assert!(r.insert(key(1), 65528, false, &[0; 16]).is_err());
    assert_eq!(r.counters().fragments, 0);
    // Eviction by count: the 65th reassembly evicts the first.
    for id in 0..=DEFAULT_MAX_PENDING_REASSEMBLIES as u32 {
        assert_eq!(r.insert(key(id), 0, true, &[id as u8; 8]), Ok(None));
        assert!(r.is_consistent());
    }
    assert_eq!((r.pending(), r.counters().dropped), (DEFAULT_MAX_PENDING_REASSEMBLIES, 1));
    assert_eq!(r.insert(key(64), 8, false, &[1]), Ok(Some([[64; 8].as_slice(), &[1]].concat())));
    r.finish();
    assert_eq!((r.pending(), r.pending_bytes()), (0, 0));
    assert_eq!(r.counters().dropped, 1 + 63);
    // Eviction by bytes.
    let mut r = Reassembler::new(ReassemblyLimits::default());
    for id in 0..5 {
        r.insert(key(id), 0, true, &vec![0; 60_000]).unwrap();
        assert!(r.pending_bytes() <= DEFAULT_MAX_PENDING_FRAGMENT_BYTES);
    }
    assert_eq!((r.pending(), r.counters().dropped), (4, 1));
    // A fragment bigger than the whole budget.
    let mut r = Reassembler::new(ReassemblyLimits { max_pending: 4, max_pending_bytes: 16 });
    assert_eq!(r.insert(key(1), 0, true, &[0; 24]), Ok(None));
    assert_eq!(r.counters().dropped, 1);
    let mut r = Reassembler::new(ReassemblyLimits { max_pending: 0, max_pending_bytes: 1 << 20 });
    assert_eq!(r.insert(key(1), 0, true, &[0; 8]), Ok(None));
    assert_eq!((r.pending(), r.counters().dropped), (0, 1));
}

// ---- properties ------------------------------------------------------------

fn endpoint_pair() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>(), any::<[u8; 4]>(), any::<u16>()).prop_map(|(s, sp, d, dp)| {
            (SocketAddr::new(IpAddr::V4(s.into()), sp), SocketAddr::new(IpAddr::V4(d.into()), dp))
        }),
        (any::<[u8; 16]>(), any::<u16>(), any::<[u8; 16]>(), any::<u16>()).prop_map(|(s, sp, d, dp)| {
            (SocketAddr::new(IpAddr::V6(s.into()), sp), SocketAddr::new(IpAddr::V6(d.into()), dp))
        }),
    ]
}

fn fields() -> impl Strategy<Value = IpFields> {
    (any::<u8>(), any::<u8>(), any::<u16>(), any::<bool>(), 0u32..1 << 20).prop_map(
        |(ttl, tos, identification, dont_fragment, flow_label)| IpFields {
            ttl,
            tos,
            identification,
            dont_fragment,
            flow_label,
            router_alert: false,
        },
    )
}

/// What [`UdpPacket::fields`] keeps of `f` for the family of `v6`.
fn kept(f: IpFields, v6: bool) -> IpFields {
    if v6 { IpFields { identification: 0, dont_fragment: false, ..f } } else { IpFields { flow_label: 0, ..f } }
}

fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

proptest! {
    #[test]
    fn build_parse_round_trip(
        (s, d) in endpoint_pair(), f in fields(), payload in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut out = Vec::new();
        build_udp_with(s, d, &f, &payload, &mut out).unwrap();
        let u = UdpPacket::parse(&out).unwrap();
        prop_assert_eq!((u.source, u.destination, u.payload()), (s, d, &payload[..]));
        prop_assert_eq!(u.fields, kept(f, s.is_ipv6()));
        prop_assert_eq!(u.ip_len, out.len());
        u.verify_checksum().unwrap();
        // The generic parsers agree.
        let ip = IpPacket::parse(&out).unwrap();
        prop_assert_eq!((ip.source(), ip.destination(), ip.total_len()), (s.ip(), d.ip(), out.len()));
        prop_assert_eq!(ip.header_len(), u.udp_offset);
    }

    #[test]
    fn truncations_are_errors(
        (s, d) in endpoint_pair(), payload in prop::collection::vec(any::<u8>(), 0..100), cut in any::<prop::sample::Index>(),
    ) {
        let mut out = Vec::new();
        build_udp(s, d, 1, &payload, &mut out).unwrap();
        let cut = cut.index(out.len());
        prop_assert!(UdpPacket::parse(&out[..cut]).is_err());
        prop_assert!(IpPacket::parse(&out[..cut]).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), next in any::<u8>()) {
        let _ = IpPacket::parse(&bytes);
        let _ = Ipv4Header::parse(&bytes);
        let _ = Ipv6Header::parse(&bytes);
        if let Ok(u) = UdpPacket::parse(&bytes) {
            let _ = u.verify_checksum();
            prop_assert!(u.udp_offset + u.udp.bytes.len() <= u.ip_len && u.ip_len <= bytes.len());
        }
        if let Ok(w) = walk_extensions(next, &bytes) {
            prop_assert_eq!(w.offset + w.rest.len(), bytes.len());
            let _ = w.router_alert();
        }
        let _ = Ipv6Fragment::parse(&bytes);
        let _ = UdpDatagram::parse(&bytes);
        let _ = ipv4_router_alert(&bytes);
        let _ = hop_by_hop_router_alert(&bytes);
        // With a plausible version nibble.
        for first in [0x45, 0x46, 0x60] {
            let mut b = bytes.clone();
            if let Some(x) = b.first_mut() {
                *x = first;
            }
            let _ = UdpPacket::parse(&b);
        }
    }

    #[test]
    fn corruption_is_caught_or_harmless(
        (s, d) in endpoint_pair(), payload in prop::collection::vec(any::<u8>(), 1..100),
        at in any::<prop::sample::Index>(), flip in 1u8..=255,
    ) {
        let mut out = Vec::new();
        build_udp(s, d, 9, &payload, &mut out).unwrap();
        let i = at.index(out.len());
        out[i] ^= flip;
        if let Ok(u) = UdpPacket::parse(&out)
            && u.verify_checksum().is_ok()
        {
            prop_assert_eq!((u.source, u.destination, u.payload()), (s, d, &payload[..]), "octet {}", i);
        }
    }

    #[test]
    fn fragments_reassemble_in_any_order(
        payload in prop::collection::vec(any::<u8>(), 1..3000), units in 1usize..200, seed in any::<u64>(),
        duplicate in any::<prop::sample::Index>(),
    ) {
        let chunk = units * 8;
        let mut pieces: Vec<(usize, bool, &[u8])> =
            payload.chunks(chunk).enumerate().map(|(i, p)| (i * chunk, (i + 1) * chunk < payload.len(), p)).collect();
        // An exact duplicate is harmless.
        pieces.push(pieces[duplicate.index(pieces.len())]);
        shuffle(&mut pieces, seed);
        let mut r = Reassembler::new(ReassemblyLimits::default());
        let mut done = Vec::new();
        for (offset, more, data) in &pieces {
            if let Some(whole) = r.insert(key(7), *offset, *more, data).unwrap() {
                done.push(whole);
            }
            prop_assert!(r.is_consistent());
        }
        // The duplicate of a one-piece packet completes a second time; nothing else does.
        prop_assert_eq!(done.len(), if pieces.len() == 2 { 2 } else { 1 });
        prop_assert_eq!(r.counters().reassembled, done.len() as u64);
        prop_assert!(done.iter().all(|whole| whole == &payload));
    }

    #[test]
    fn random_fragments_stay_within_bounds(
        frags in prop::collection::vec((0u32..6, 0usize..40, any::<bool>(), 0usize..64), 0..200),
        max_pending in 0usize..5, max_pending_bytes in 0usize..512,
    ) {
        let mut r = Reassembler::new(ReassemblyLimits { max_pending, max_pending_bytes });
        for (id, offset, more, len) in frags {
            let data = vec![id as u8; len];
            if let Ok(Some(whole)) = r.insert(key(id), offset * 8, more, &data) {
                prop_assert!(whole.len() <= max_pending_bytes);
            }
            prop_assert!(r.is_consistent());
        }
        let c = r.counters();
        r.finish();
        let end = r.counters();
        prop_assert_eq!(end.fragments, c.fragments);
        prop_assert!(end.dropped + end.reassembled <= end.fragments);
        prop_assert_eq!(r.pending_bytes(), 0);
    }
}

#[test]
fn checksum_state_is_incremental() {
    let mut c = Checksum::new();
    c.add(&[1, 2, 3]);
    assert_eq!(c.finish(), internet_checksum(&[&[1, 2, 3]]));
}
