//! The multicast IP/UDP datagram inside a Multicast Data message.
//!
//! A relay forwards each native multicast packet whole: IPv4 or IPv6 header,
//! UDP header, payload. [`parse_udp`] validates it and borrows the payload
//! without copying or allocating (it runs once per data packet);
//! [`build_udp`] synthesises one (a relay, or a test injecting data).
//!
//! ```text
//! IPv4:  | 0x4 IHL | TOS | Total Length | ID | flags+offset | TTL | 17 | Hdr Cksum | Src (4) | Dst (4) | options |
//! IPv6:  | 6 | TC | flow | Payload Length | Next Hdr | Hop Limit | Src (16) | Dst (16) | extension headers... |
//! UDP:   | Source Port | Destination Port | Length (8 + payload) | Checksum | payload ... |
//! ```
//!
//! The UDP checksum covers a pseudo-header: IPv4 source, destination, zero,
//! protocol 17 and the UDP length; IPv6 source, destination, the UDP length as
//! 32 bits, three zero octets and next header 17. A zero UDP checksum means
//! "none" in IPv4 and is invalid in IPv6; a computed 0 is sent as 0xffff.
//!
//! Rules applied by [`parse_udp`]:
//!
//! - IPv4: any IHL from 5, header checksum verified, Total Length between the
//!   header length and the buffer length (octets beyond it are ignored).
//! - IPv6: Hop-by-Hop, Routing and Destination Options headers are skipped (at
//!   most [`MAX_EXTENSION_HEADERS`]); octets beyond the Payload Length are
//!   ignored; a jumbogram (Payload Length 0) is not supported.
//! - Fragments (IPv4 MF or a non-zero offset, an IPv6 Fragment header) are
//!   refused: the gateway does not reassemble.
//! - The destination must be a multicast address; the UDP length must fit the
//!   IP payload; octets after the UDP length are ignored.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::checksum::{self, Checksum};

/// IPv6 extension headers skipped before giving up.
pub const MAX_EXTENSION_HEADERS: usize = 8;

const UDP: u8 = 17;

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

/// Why an inner packet is not an acceptable multicast UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InnerError {
    /// No octets at all.
    #[error("empty inner packet")]
    Empty,
    /// The IP version nibble is neither 4 nor 6.
    #[error("inner IP version {0} (4 or 6 expected)")]
    UnknownVersion(u8),
    /// A header runs past the end of the data.
    #[error("truncated {what}: {have} octets, {need} needed")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Octets needed.
        need: usize,
        /// Octets available.
        have: usize,
    },
    /// IPv4 Internet Header Length below 5 words.
    #[error("IPv4 header length of {0} words (at least 5 expected)")]
    BadHeaderLength(u8),
    /// IPv4 Total Length (or 40 + IPv6 Payload Length) is shorter than the
    /// header or longer than the buffer, or an IPv6 jumbogram.
    #[error("IP length field gives {total} octets but the packet has {len}")]
    BadLength {
        /// Length according to the IP header.
        total: usize,
        /// Octets in the buffer.
        len: usize,
    },
    /// The IPv4 header checksum does not verify.
    #[error("bad inner IPv4 header checksum")]
    HeaderChecksum,
    /// The packet is a fragment (not reassembled here).
    #[error("inner packet is a fragment")]
    Fragment,
    /// The upper-layer protocol is not UDP.
    #[error("inner packet carries protocol {0}, not UDP")]
    NotUdp(u8),
    /// The destination is not a multicast address.
    #[error("inner destination {0} is not multicast")]
    NotMulticast(IpAddr),
    /// Too many IPv6 extension headers before UDP.
    #[error("more than {MAX_EXTENSION_HEADERS} IPv6 extension headers")]
    TooManyExtensionHeaders,
    /// The UDP length is below 8 or beyond the IP payload.
    #[error("UDP length {udp} does not fit the {available} octets of IP payload")]
    BadUdpLength {
        /// The UDP header's length field.
        udp: usize,
        /// Octets of IP payload.
        available: usize,
    },
    /// The UDP checksum does not verify.
    #[error("bad inner UDP checksum")]
    UdpChecksum,
    /// An IPv6 UDP datagram with a zero checksum.
    #[error("zero UDP checksum in an IPv6 datagram")]
    ZeroUdpChecksum,
    /// Source and destination of different families ([`build_udp`]).
    #[error("source {from} and destination {to} are of different families")]
    FamilyMismatch {
        /// The source given.
        from: SocketAddr,
        /// The destination given.
        to: SocketAddr,
    },
    /// The payload does not fit one IP datagram ([`build_udp`]).
    #[error("UDP payload of {0} octets does not fit one IP datagram")]
    PayloadTooLarge(usize),
}

fn truncated(what: &'static str, need: usize, have: usize) -> InnerError {
    InnerError::Truncated { what, need, have }
}

/// Parses and validates the IPv4 or IPv6 multicast UDP datagram of a
/// Multicast Data message; the payload is borrowed from `packet`.
///
/// See the module documentation for the rules. The UDP checksum is verified
/// when non-zero (IPv4) and always (IPv6).
pub fn parse_udp(packet: &[u8]) -> Result<InnerDatagram<'_>, InnerError> {
    let &first = packet.first().ok_or(InnerError::Empty)?;
    match first >> 4 {
        4 => parse_v4(packet),
        6 => parse_v6(packet),
        v => Err(InnerError::UnknownVersion(v)),
    }
}

fn parse_v4(packet: &[u8]) -> Result<InnerDatagram<'_>, InnerError> {
    let len = packet.len();
    let h: &[u8; 20] = packet.first_chunk().ok_or(truncated("IPv4 header", 20, len))?;
    let ihl = h[0] & 0x0f;
    if ihl < 5 {
        return Err(InnerError::BadHeaderLength(ihl));
    }
    let hlen = usize::from(ihl) * 4;
    let header = packet.get(..hlen).ok_or(truncated("IPv4 header with options", hlen, len))?;
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if total < hlen || total > len {
        return Err(InnerError::BadLength { total, len });
    }
    if !checksum::verify(&[header]) {
        return Err(InnerError::HeaderChecksum);
    }
    if u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0 {
        return Err(InnerError::Fragment);
    }
    if h[9] != UDP {
        return Err(InnerError::NotUdp(h[9]));
    }
    let src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
    let dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
    if !dst.is_multicast() {
        return Err(InnerError::NotMulticast(IpAddr::V4(dst)));
    }
    let segment = packet.get(hlen..total).unwrap_or_default();
    let (sport, dport, payload) = parse_udp_header(segment, &h[12..20], false)?;
    Ok(InnerDatagram {
        source: SocketAddr::new(IpAddr::V4(src), sport),
        destination: SocketAddr::new(IpAddr::V4(dst), dport),
        ttl: h[8],
        payload,
    })
}

fn parse_v6(packet: &[u8]) -> Result<InnerDatagram<'_>, InnerError> {
    let len = packet.len();
    let h: &[u8; 40] = packet.first_chunk().ok_or(truncated("IPv6 header", 40, len))?;
    let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let total = 40 + plen;
    if plen == 0 || total > len {
        return Err(InnerError::BadLength { total, len });
    }
    let mut next = h[6];
    let mut rest = packet.get(40..total).unwrap_or_default();
    let mut headers = 0;
    while next != UDP {
        match next {
            0 | 43 | 60 => {
                headers += 1;
                if headers > MAX_EXTENSION_HEADERS {
                    return Err(InnerError::TooManyExtensionHeaders);
                }
                let have = rest.len();
                let &[nh, l] = rest.first_chunk().ok_or(truncated("IPv6 extension header", 2, have))?;
                let n = (usize::from(l) + 1) * 8;
                rest = rest.get(n..).ok_or(truncated("IPv6 extension header", n, have))?;
                next = nh;
            }
            44 => return Err(InnerError::Fragment),
            other => return Err(InnerError::NotUdp(other)),
        }
    }
    let mut d = [0u8; 16];
    d.copy_from_slice(&h[24..40]);
    let dst = Ipv6Addr::from(d);
    if !dst.is_multicast() {
        return Err(InnerError::NotMulticast(IpAddr::V6(dst)));
    }
    let mut s = [0u8; 16];
    s.copy_from_slice(&h[8..24]);
    let (sport, dport, payload) = parse_udp_header(rest, &h[8..40], true)?;
    Ok(InnerDatagram {
        source: SocketAddr::new(IpAddr::V6(Ipv6Addr::from(s)), sport),
        destination: SocketAddr::new(IpAddr::V6(dst), dport),
        ttl: h[7],
        payload,
    })
}

/// Validates the UDP header of `segment`; `addrs` is source || destination
/// as they appear in the IP header (for the pseudo-header).
fn parse_udp_header<'a>(segment: &'a [u8], addrs: &[u8], v6: bool) -> Result<(u16, u16, &'a [u8]), InnerError> {
    let available = segment.len();
    let u: &[u8; 8] = segment.first_chunk().ok_or(truncated("UDP header", 8, available))?;
    let ulen = u16::from_be_bytes([u[4], u[5]]);
    let udp = usize::from(ulen);
    if udp < 8 || udp > available {
        return Err(InnerError::BadUdpLength { udp, available });
    }
    let datagram = segment.get(..udp).unwrap_or_default();
    let sum = u16::from_be_bytes([u[6], u[7]]);
    if sum == 0 {
        if v6 {
            return Err(InnerError::ZeroUdpChecksum);
        }
    } else {
        let mut c = Checksum::new();
        c.add(addrs);
        let [l0, l1] = ulen.to_be_bytes();
        if v6 {
            c.add(&[0, 0, l0, l1, 0, 0, 0, UDP]);
        } else {
            c.add(&[0, UDP, l0, l1]);
        }
        c.add(datagram);
        if c.finish() != 0 {
            return Err(InnerError::UdpChecksum);
        }
    }
    Ok((u16::from_be_bytes([u[0], u[1]]), u16::from_be_bytes([u[2], u[3]]), datagram.get(8..).unwrap_or_default()))
}

/// Appends an IPv4 (IHL 5, ID 0, DF clear) or IPv6 (no extension headers)
/// UDP datagram from `source` to `destination` with hop limit `ttl`, with
/// valid header and UDP checksums.
///
/// The destination need not be multicast here (but [`parse_udp`] only accepts
/// multicast). Errors when the families differ or the payload does not fit the
/// 16-bit length fields; `out` is unchanged then.
pub fn build_udp(
    source: SocketAddr,
    destination: SocketAddr,
    ttl: u8,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), InnerError> {
    let udp_len = 8 + payload.len();
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = u16::try_from(20 + udp_len).map_err(|_| InnerError::PayloadTooLarge(payload.len()))?;
            out.reserve(usize::from(total));
            let at = out.len();
            out.extend_from_slice(&[0x45, 0]);
            out.extend_from_slice(&total.to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 0, ttl, UDP, 0, 0]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
            let hsum = checksum::internet_checksum(&[out.get(at..).unwrap_or_default()]);
            if let Some(f) = out.get_mut(at + 10..at + 12) {
                f.copy_from_slice(&hsum.to_be_bytes());
            }
            let mut pseudo = [0u8; 12];
            pseudo[..4].copy_from_slice(&s.octets());
            pseudo[4..8].copy_from_slice(&d.octets());
            pseudo[9] = UDP;
            pseudo[10..].copy_from_slice(&(udp_len as u16).to_be_bytes());
            push_udp(out, &pseudo, source.port(), destination.port(), payload);
            Ok(())
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let plen = u16::try_from(udp_len).map_err(|_| InnerError::PayloadTooLarge(payload.len()))?;
            out.reserve(40 + udp_len);
            out.extend_from_slice(&[0x60, 0, 0, 0]);
            out.extend_from_slice(&plen.to_be_bytes());
            out.extend_from_slice(&[UDP, ttl]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
            let mut pseudo = [0u8; 40];
            pseudo[..16].copy_from_slice(&s.octets());
            pseudo[16..32].copy_from_slice(&d.octets());
            pseudo[32..36].copy_from_slice(&(udp_len as u32).to_be_bytes());
            pseudo[39] = UDP;
            push_udp(out, &pseudo, source.port(), destination.port(), payload);
            Ok(())
        }
        _ => Err(InnerError::FamilyMismatch { from: source, to: destination }),
    }
}

fn push_udp(out: &mut Vec<u8>, pseudo: &[u8], sport: u16, dport: u16, payload: &[u8]) {
    let len = (8 + payload.len()) as u16;
    let mut h = [0u8; 8];
    h[..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..6].copy_from_slice(&len.to_be_bytes());
    let sum = match checksum::internet_checksum(&[pseudo, &h, payload]) {
        0 => 0xffff,
        s => s,
    };
    h[6..].copy_from_slice(&sum.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;
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
