//! The multicast IP/UDP datagram inside a Multicast Data message.
//!
//! A relay forwards each native multicast packet whole: IPv4 or IPv6 header,
//! UDP header, payload. [`parse_udp`] validates it and borrows the payload
//! without copying or allocating (it runs once per data packet);
//! [`build_udp`] synthesises one (a relay, or a test injecting data). Both are
//! the IP layer's ([`h3m_net::ip`]: [`UdpPacket::parse`], [`build_udp`]) with
//! the rules of Multicast Data on top.
//!
//! ```text
//! IPv4:  | 0x4 IHL | TOS | Total Length | ID | flags+offset | TTL | 17 | Hdr Cksum | Src (4) | Dst (4) | options |
//! IPv6:  | 6 | TC | flow | Payload Length | Next Hdr | Hop Limit | Src (16) | Dst (16) | extension headers... |
//! UDP:   | Source Port | Destination Port | Length (8 + payload) | Checksum | payload ... |
//! ```
//!
//! Rules applied by [`parse_udp`]:
//!
//! - IPv4: any IHL from 5, header checksum verified, Total Length between the
//!   header length and the buffer length (octets beyond it are ignored).
//! - IPv6: extension headers (Hop-by-Hop, Routing, Destination Options, AH,
//!   ...) are skipped (at most [`MAX_EXTENSION_HEADERS`]); octets beyond the
//!   Payload Length are ignored; a jumbogram (Payload Length 0) is not
//!   supported.
//! - Fragments (IPv4 MF or a non-zero offset, an IPv6 Fragment header) are
//!   refused: the gateway does not reassemble.
//! - The destination must be a multicast address; the UDP length must fit the
//!   IP payload; octets after the UDP length are ignored; the UDP checksum is
//!   verified (a zero checksum means "none" in IPv4 and is invalid in IPv6).

use std::net::SocketAddr;

use h3m_net::ip::UdpPacket;

/// Why an inner packet is not an acceptable multicast UDP datagram: the IP
/// layer's error ([`h3m_net::ip::IpError`]).
pub use h3m_net::ip::IpError as InnerError;
pub use h3m_net::ip::{MAX_EXTENSION_HEADERS, build_udp};

/// A multicast UDP datagram decapsulated from Multicast Data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InnerDatagram<'a> {
    /// Source address and port (S).
    pub source: SocketAddr,
    /// Destination group and port (G).
    pub destination: SocketAddr,
    /// IPv4 TTL or IPv6 hop limit as received.
    pub ttl: u8,
    /// The UDP payload.
    pub payload: &'a [u8],
}

/// Parses and validates the IPv4 or IPv6 multicast UDP datagram of a
/// Multicast Data message; the payload is borrowed from `packet`.
///
/// See the module documentation for the rules.
pub fn parse_udp(packet: &[u8]) -> Result<InnerDatagram<'_>, InnerError> {
    let p = UdpPacket::parse(packet)?;
    let group = p.destination.ip();
    if !group.is_multicast() {
        return Err(InnerError::NotMulticast(group));
    }
    p.verify_checksum()?;
    Ok(InnerDatagram { source: p.source, destination: p.destination, ttl: p.fields.ttl, payload: p.payload() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum;
    use h3m_net::ip::proto::UDP;
    use proptest::prelude::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn vector_payload(seq: u32) -> Vec<u8> {
        let mut p = format!("AMT-VECTOR seq={seq:04} ").into_bytes();
        p.extend(0u8..32);
        p
    }

    fn build(s: &str, d: &str, ttl: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        build_udp(sa(s), sa(d), ttl, payload, &mut out).unwrap();
        out
    }

    fn refresh_ip_checksum(p: &mut [u8]) {
        let hl = usize::from(p[0] & 0xf) * 4;
        p[10] = 0;
        p[11] = 0;
        let c = checksum::internet_checksum(&[&p[..hl]]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }

    #[test]
    fn vector_checksums() {
        // MANIFEST: IPv4 seq 0 has UDP checksum 0xa99f, IPv6 seq 0 0x0ed7.
        let v4 = build("198.51.100.10:40000", "232.1.1.1:5001", 1, &vector_payload(0));
        assert_eq!(v4.len(), 80);
        assert_eq!(v4[26..28], [0xa9, 0x9f]);
        let d = parse_udp(&v4).unwrap();
        assert_eq!(
            d,
            InnerDatagram {
                source: sa("198.51.100.10:40000"),
                destination: sa("232.1.1.1:5001"),
                ttl: 1,
                payload: &vector_payload(0)
            }
        );
        let v6 = build("[2001:db8:100::10]:40000", "[ff3e::8000:1]:5001", 1, &vector_payload(0));
        assert_eq!(v6.len(), 100);
        assert_eq!(v6[46..48], [0x0e, 0xd7]);
        assert_eq!(parse_udp(&v6).unwrap().payload, &vector_payload(0)[..]);
    }

    #[test]
    fn ipv4_options_trailing_and_zero_checksum() {
        let base = build("10.0.0.1:1", "239.1.2.3:2", 7, b"hello");
        // Zero UDP checksum is accepted over IPv4.
        let mut zero = base.clone();
        zero[26] = 0;
        zero[27] = 0;
        assert_eq!(parse_udp(&zero).unwrap().payload, b"hello");
        // Trailing octets beyond the total length are ignored.
        let mut long = base.clone();
        long.extend_from_slice(&[1, 2, 3]);
        assert_eq!(parse_udp(&long), parse_udp(&base));
        // IHL 6 with a Router Alert option.
        let mut opt = base[..20].to_vec();
        opt[0] = 0x46;
        opt[2..4].copy_from_slice(&((base.len() + 4) as u16).to_be_bytes());
        opt.extend_from_slice(&[0x94, 4, 0, 0]);
        opt.extend_from_slice(&base[20..]);
        refresh_ip_checksum(&mut opt);
        let d = parse_udp(&opt).unwrap();
        assert_eq!((d.ttl, d.payload), (7, &b"hello"[..]));
    }

    #[test]
    fn ipv4_errors() {
        let base = build("10.0.0.1:1", "239.1.2.3:2", 1, b"hello");
        assert_eq!(parse_udp(&[]), Err(InnerError::Empty));
        assert_eq!(parse_udp(&[0x15]), Err(InnerError::UnknownVersion(1)));
        assert_eq!(parse_udp(&base[..19]), Err(InnerError::Truncated { what: "IPv4 header", need: 20, have: 19 }));
        assert_eq!(parse_udp(&base[..30]), Err(InnerError::BadLength { total: 33, len: 30 }));
        let mut ihl = base.clone();
        ihl[0] = 0x43;
        assert_eq!(parse_udp(&ihl), Err(InnerError::BadHeaderLength(3)));
        let mut hs = base.clone();
        hs[8] = 2;
        assert_eq!(parse_udp(&hs), Err(InnerError::HeaderChecksum));
        for (flags, name) in [([0x20u8, 0], "MF"), ([0, 1], "offset"), ([0x1f, 0xff], "max offset")] {
            let mut f = base.clone();
            f[6..8].copy_from_slice(&flags);
            refresh_ip_checksum(&mut f);
            assert_eq!(parse_udp(&f), Err(InnerError::Fragment), "{name}");
        }
        let mut df = base.clone();
        df[6] = 0x40;
        refresh_ip_checksum(&mut df);
        assert!(parse_udp(&df).is_ok(), "DF is not a fragment");
        let mut tcp = base.clone();
        tcp[9] = 6;
        refresh_ip_checksum(&mut tcp);
        assert_eq!(parse_udp(&tcp), Err(InnerError::NotUdp(6)));
        let uni = build("10.0.0.1:1", "10.0.0.2:2", 1, b"hello");
        assert_eq!(parse_udp(&uni), Err(InnerError::NotMulticast("10.0.0.2".parse().unwrap())));
        let mut us = base.clone();
        us[30] ^= 1;
        assert_eq!(parse_udp(&us), Err(InnerError::UdpChecksum));
        let mut ul = base.clone();
        ul[24..26].copy_from_slice(&14u16.to_be_bytes());
        assert_eq!(parse_udp(&ul), Err(InnerError::BadUdpLength { udp: 14, available: 13 }));
        ul[24..26].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(parse_udp(&ul), Err(InnerError::BadUdpLength { udp: 7, available: 13 }));
        // IP total length covering only part of the UDP header.
        let mut short = base[..24].to_vec();
        short[2..4].copy_from_slice(&24u16.to_be_bytes());
        refresh_ip_checksum(&mut short);
        assert_eq!(parse_udp(&short), Err(InnerError::Truncated { what: "UDP header", need: 8, have: 4 }));
    }

    #[test]
    fn ipv6_extension_headers() {
        let base = build("[2001:db8::1]:1000", "[ff3e::1]:2000", 3, b"payload");
        // Insert Hop-by-Hop and Destination Options headers before UDP.
        let mut p = base[..40].to_vec();
        p[6] = 0; // Hop-by-Hop
        p[4..6].copy_from_slice(&((base.len() - 40 + 8 + 16) as u16).to_be_bytes());
        p.extend_from_slice(&[60, 0, 5, 2, 0, 0, 1, 0]); // -> Destination Options
        p.extend_from_slice(&[UDP, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        p.extend_from_slice(&base[40..]);
        let d = parse_udp(&p).unwrap();
        assert_eq!(
            (d.source, d.destination, d.ttl, d.payload),
            (sa("[2001:db8::1]:1000"), sa("[ff3e::1]:2000"), 3, &b"payload"[..])
        );
        // Fragment header.
        let mut f = p.clone();
        f[40] = 44;
        assert_eq!(parse_udp(&f), Err(InnerError::Fragment));
        let mut f = base.clone();
        f[6] = 44;
        assert_eq!(parse_udp(&f), Err(InnerError::Fragment));
        // Not UDP.
        let mut t = base.clone();
        t[6] = 58;
        assert_eq!(parse_udp(&t), Err(InnerError::NotUdp(58)));
        // Too many extension headers (each a Destination Options header pointing to the next).
        let mut many = base[..40].to_vec();
        many[6] = 60;
        let n = MAX_EXTENSION_HEADERS + 1;
        many[4..6].copy_from_slice(&((n * 8 + base.len() - 40) as u16).to_be_bytes());
        for i in 0..n {
            many.extend_from_slice(&[if i + 1 == n { UDP } else { 60 }, 0, 1, 4, 0, 0, 0, 0]);
        }
        many.extend_from_slice(&base[40..]);
        assert_eq!(parse_udp(&many), Err(InnerError::TooManyExtensionHeaders));
        // Extension header overrunning the payload.
        let mut over = base.clone();
        over[6] = 0;
        over[41] = 10;
        assert_eq!(parse_udp(&over), Err(InnerError::Truncated { what: "IPv6 extension header", need: 88, have: 15 }));
    }

    #[test]
    fn ipv6_errors() {
        let base = build("[2001:db8::1]:1000", "[ff3e::1]:2000", 3, b"payload");
        assert_eq!(parse_udp(&base[..39]), Err(InnerError::Truncated { what: "IPv6 header", need: 40, have: 39 }));
        assert_eq!(parse_udp(&base[..50]), Err(InnerError::BadLength { total: 55, len: 50 }));
        let mut jumbo = base.clone();
        jumbo[4] = 0;
        jumbo[5] = 0;
        assert_eq!(parse_udp(&jumbo), Err(InnerError::BadLength { total: 40, len: 55 }));
        let mut zero = base.clone();
        zero[46] = 0;
        zero[47] = 0;
        assert_eq!(parse_udp(&zero), Err(InnerError::ZeroUdpChecksum));
        let mut bad = base.clone();
        bad[50] ^= 0x40;
        assert_eq!(parse_udp(&bad), Err(InnerError::UdpChecksum));
        let uni = build("[2001:db8::1]:1000", "[2001:db8::2]:2000", 3, b"x");
        assert_eq!(parse_udp(&uni), Err(InnerError::NotMulticast("2001:db8::2".parse().unwrap())));
        let mut long = base.clone();
        long.push(0);
        assert_eq!(parse_udp(&long), parse_udp(&base));
    }

    #[test]
    fn build_errors() {
        let mut out = vec![1];
        assert_eq!(
            build_udp(sa("10.0.0.1:1"), sa("[ff3e::1]:2"), 1, b"", &mut out),
            Err(InnerError::FamilyMismatch { from: sa("10.0.0.1:1"), to: sa("[ff3e::1]:2") })
        );
        let big = vec![0u8; 65535 - 28 + 1];
        assert_eq!(
            build_udp(sa("10.0.0.1:1"), sa("239.0.0.1:2"), 1, &big, &mut out),
            Err(InnerError::PayloadTooLarge(big.len()))
        );
        assert!(build_udp(sa("10.0.0.1:1"), sa("239.0.0.1:2"), 1, &big[1..], &mut out).is_ok());
        assert_eq!(parse_udp(&out[1..]).unwrap().payload.len(), 65535 - 28);
        out.truncate(1);
        let big6 = vec![0u8; 65535 - 8 + 1];
        assert_eq!(
            build_udp(sa("[::1]:1"), sa("[ff3e::1]:2"), 1, &big6, &mut out),
            Err(InnerError::PayloadTooLarge(big6.len()))
        );
        assert_eq!(out, vec![1]);
        assert!(build_udp(sa("[::1]:1"), sa("[ff3e::1]:2"), 1, &big6[1..], &mut out).is_ok());
        assert_eq!(out[0], 1, "appends");
        assert_eq!(parse_udp(&out[1..]).unwrap().payload.len(), 65535 - 8);
    }

    #[test]
    fn computed_zero_checksum_sent_as_ffff() {
        // Find a payload whose checksum computes to 0 by solving for two octets.
        let s = sa("10.0.0.1:1");
        let d = sa("239.0.0.1:2");
        let mut probe = Vec::new();
        build_udp(s, d, 1, &[0, 0], &mut probe).unwrap();
        let sum = u16::from_be_bytes([probe[26], probe[27]]);
        // Adding `sum` as a payload word makes the one's complement sum 0xffff, checksum 0.
        let payload = sum.to_be_bytes();
        let mut out = Vec::new();
        build_udp(s, d, 1, &payload, &mut out).unwrap();
        assert_eq!(out[26..28], [0xff, 0xff]);
        assert_eq!(parse_udp(&out).unwrap().payload, payload);
    }

    use super::strategies::mcast_pair;

    proptest! {
        #[test]
        fn udp_roundtrip((s, d) in mcast_pair(), ttl in any::<u8>(), payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut out = Vec::new();
            build_udp(s, d, ttl, &payload, &mut out).unwrap();
            let got = parse_udp(&out).unwrap();
            prop_assert_eq!(got, InnerDatagram { source: s, destination: d, ttl, payload: &payload });
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_udp(&bytes);
        }

        #[test]
        fn corruption_detected_or_harmless(
            (s, d) in mcast_pair(), payload in proptest::collection::vec(any::<u8>(), 1..100),
            at in any::<prop::sample::Index>(), flip in 1u8..=255
        ) {
            let mut out = Vec::new();
            build_udp(s, d, 9, &payload, &mut out).unwrap();
            let i = at.index(out.len());
            out[i] ^= flip;
            // A single corrupted octet is either caught or leaves the datagram's
            // meaning intact (an IPv4 UDP checksum turned into 0 = "none", the
            // unprotected IPv6 traffic class, flow label and hop limit).
            if let Ok(got) = parse_udp(&out) {
                prop_assert_eq!((got.source, got.destination, got.payload), (s, d, &payload[..]), "octet {}", i);
                if got.ttl != 9 {
                    prop_assert!(s.is_ipv6() && i == 7);
                }
            }
        }
    }
}

/// Proptest strategies shared by this crate's tests.
#[cfg(test)]
pub(crate) mod strategies {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use proptest::prelude::*;

    /// A (source, multicast group) pair, IPv4 or IPv6, with ports.
    pub(crate) fn mcast_pair() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>(), 224u8..=239, any::<[u8; 3]>(), any::<u16>()).prop_map(
                |(s, sp, g0, g, gp)| {
                    (
                        SocketAddr::new(IpAddr::V4(s.into()), sp),
                        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(g0, g[0], g[1], g[2])), gp),
                    )
                }
            ),
            (any::<[u8; 16]>(), any::<u16>(), any::<[u8; 15]>(), any::<u16>()).prop_map(|(s, sp, g, gp)| {
                let mut ga = [0xffu8; 16];
                ga[1..].copy_from_slice(&g);
                (SocketAddr::new(IpAddr::V6(s.into()), sp), SocketAddr::new(IpAddr::V6(ga.into()), gp))
            }),
        ]
    }
}
