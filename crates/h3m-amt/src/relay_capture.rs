//! The relay's native capture, sans-IO: from a packet read off the upstream
//! interface, with its virtio-net offload header, to the IP/UDP packets
//! forwarded as Multicast Data.
//!
//! # Why the offload header
//!
//! A sender using UDP GSO (`UDP_SEGMENT`, as `h3m-send` does through
//! quinn-udp) hands the kernel one "super-packet": a single IP/UDP header
//! followed by many datagrams' payloads back to back, the IP and UDP lengths
//! covering them all and the UDP checksum left partial. A real NIC cuts it up
//! before the wire, but virtual links (veth between containers or network
//! namespaces, loopback) pass it to the receiving side whole, and only the
//! skb's GSO metadata says where the datagrams end. A raw IP socket sees the
//! super-packet as one datagram (forwarding it as is delivers only the first
//! datagram to a gateway); an `AF_PACKET` socket with `PACKET_VNET_HDR`
//! (`h3m_net::PacketCapture`) receives that metadata as a 10-octet
//! `struct virtio_net_hdr` in front of every frame:
//!
//! ```text
//! | flags (1) | gso_type (1) | hdr_len (2) | gso_size (2) | csum_start (2) | csum_offset (2) |   host byte order
//! flags: NEEDS_CSUM 1 (checksum left partial: the field at csum_start + csum_offset
//!        holds the pseudo-header sum), DATA_VALID 2 (verified)
//! gso_type: NONE 0, TCPV4 1, UDP (UFO) 3, TCPV6 4, UDP_L4 5, | ECN 0x80
//! ```
//!
//! # What [`split`] does
//!
//! Only UDP to a multicast destination is considered (anything else is
//! [`Outcome::Ignored`]); IPv6 extension headers are walked as
//! [`crate::inner::parse_udp`] does (both read the packet with
//! [`h3m_net::ip::UdpPacket::parse`]).
//!
//! - `gso_type` UDP_L4: the UDP payload is cut into `gso_size` chunks (the
//!   last one may be shorter) and each becomes a packet of its own, built by
//!   [`h3m_net::ip::build_udp_with`] with the original S, G, ports and TTL / hop limit,
//!   and valid checksums; the IPv4 TOS, DF bit and identification (+1 per
//!   segment) and the IPv6 traffic class and flow label are kept too, as the
//!   kernel's own segmentation does (IPv4 options and IPv6 extension headers
//!   are not). At most [`MAX_SEGMENTS`] segments.
//! - No GSO, `NEEDS_CSUM`: the packet byte for byte but with its UDP checksum
//!   computed (the sender's checksum offload was never run on a virtual link).
//! - Otherwise: the packet byte for byte, up to its IP length (link padding
//!   left out), as amtrelayd `-e` does; the relay's own parsing checks it.
//!
//! Headers that make no sense (unknown flags or GSO types, TCP segmentation
//! of a UDP packet, checksum offsets not pointing at the UDP checksum, a zero
//! segment size), malformed packets, fragments (there is no reassembly; an IP
//! raw socket used to see reassembled datagrams) and IPv6 jumbograms are
//! errors: the caller counts and drops them. Nothing here panics or allocates
//! once the [`Segments`] buffer has grown.

use h3m_net::ip::{self, IpError, Ipv4Header, Ipv6Header, UdpPacket, proto};

/// Octets of a `struct virtio_net_hdr`.
pub const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` is partial.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was verified.
pub const F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP`: UDP fragmentation offload (UFO), not produced by current kernels.
pub const GSO_UDP: u8 = 3;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_UDP_L4`: UDP segmentation (`UDP_SEGMENT`).
pub const GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN` (a flag on the GSO type).
pub const GSO_ECN: u8 = 0x80;
/// Most datagrams taken from one super-packet (the kernel sends at most 128 per `UDP_SEGMENT` call and
/// coalesces at most 64 by GRO).
pub const MAX_SEGMENTS: usize = 256;

/// A `struct virtio_net_hdr` (see the module documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct VnetHeader {
    /// [`F_NEEDS_CSUM`], [`F_DATA_VALID`].
    pub flags: u8,
    /// [`GSO_NONE`], [`GSO_UDP_L4`], ... possibly with [`GSO_ECN`].
    pub gso_type: u8,
    /// Length of the headers (a hint).
    pub hdr_len: u16,
    /// Payload octets per segment (GSO).
    pub gso_size: u16,
    /// Where the checksummed data starts ([`F_NEEDS_CSUM`]): the UDP header.
    pub csum_start: u16,
    /// Where the checksum field is, from `csum_start` (6 for UDP).
    pub csum_offset: u16,
}

impl VnetHeader {
    /// Reads the header from the first [`VNET_HDR_LEN`] octets of `bytes`, in host byte order (legacy
    /// virtio, which is what `PACKET_VNET_HDR` delivers).
    pub fn parse(bytes: &[u8]) -> Option<VnetHeader> {
        let b: &[u8; VNET_HDR_LEN] = bytes.first_chunk()?;
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(VnetHeader {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    /// The header's octets (the inverse of [`VnetHeader::parse`]).
    pub fn to_bytes(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        for (i, v) in [(2, self.hdr_len), (4, self.gso_size), (6, self.csum_start), (8, self.csum_offset)] {
            b[i..i + 2].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }

    /// The header with its offsets counted from the network header rather than from the start of the
    /// frame, `link_len` octets earlier (the link-layer header a packet socket delivers); `None` when a
    /// partial checksum would start inside the link-layer header.
    pub fn after_link_header(self, link_len: usize) -> Option<VnetHeader> {
        let link = u16::try_from(link_len).ok()?;
        let mut h = self;
        h.hdr_len = h.hdr_len.saturating_sub(link);
        if h.flags & F_NEEDS_CSUM != 0 {
            h.csum_start = h.csum_start.checked_sub(link)?;
        }
        Some(h)
    }
}

/// Why a captured packet is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    /// The virtio-net header makes no sense (for this packet).
    #[error("bad virtio-net header: {0}")]
    VnetHeader(&'static str),
    /// The IP or UDP header is malformed or truncated.
    #[error("malformed captured packet: {0}")]
    Malformed(&'static str),
    /// Valid but not forwarded (fragments, jumbograms, UFO).
    #[error("unsupported captured packet: {0}")]
    Unsupported(&'static str),
    /// A super-packet of more than [`MAX_SEGMENTS`] segments.
    #[error("super-packet of {0} segments (at most {MAX_SEGMENTS})")]
    TooManySegments(usize),
}

/// What to forward for one captured packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not UDP to a multicast destination: nothing.
    Ignored,
    /// The first `.0` octets of the packet, as they are.
    Whole(usize),
    /// The one packet now in the [`Segments`]: the packet with its UDP checksum completed.
    ChecksumCompleted,
    /// The `.0` packets now in the [`Segments`]: the datagrams of a super-packet.
    Split(usize),
}

/// Reusable storage for the packets [`split`] builds.
#[derive(Debug, Clone, Default)]
pub struct Segments {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl Segments {
    /// Empty (allocates on first use).
    pub fn new() -> Self {
        Segments::default()
    }

    /// Number of packets.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// No packets.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The packets, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(self.ends.iter().copied()).map(|(s, e)| self.buf.get(s..e).unwrap_or_default())
    }

    /// Forgets the packets (keeps the memory).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }

    fn seal(&mut self) {
        self.ends.push(self.buf.len());
    }
}

/// The IP layer's complaint as a [`CaptureError::Malformed`].
fn malformed(e: IpError) -> CaptureError {
    CaptureError::Malformed(match e {
        IpError::Empty => "empty packet",
        IpError::UnknownVersion(_) => "neither IPv4 nor IPv6",
        IpError::Truncated { what, .. } => what,
        IpError::BadHeaderLength(_) => "bad IPv4 header length",
        IpError::BadLength { .. } => "IP length field beyond the packet",
        IpError::HeaderChecksum => "bad IPv4 header checksum",
        IpError::TooManyExtensionHeaders => "too many IPv6 extension headers",
        IpError::BadUdpLength { .. } => "bad UDP length",
        _ => "malformed IP packet",
    })
}

/// Finds the UDP datagram of an IPv4 or IPv6 multicast packet; `Ok(None)` when it is not one.
///
/// The protocol (IPv4) and destination are looked at first, in the fixed header, so that what is not
/// ours is ignored whatever the rest of it looks like.
fn locate(packet: &[u8]) -> Result<Option<UdpPacket<'_>>, CaptureError> {
    let &first = packet.first().ok_or(CaptureError::Malformed("empty packet"))?;
    let v6 = match first >> 4 {
        4 => {
            let h = Ipv4Header::parse(packet).map_err(malformed)?;
            if h.protocol != proto::UDP || !h.destination.is_multicast() {
                return Ok(None);
            }
            false
        }
        6 => {
            let h = Ipv6Header::parse(packet).map_err(malformed)?;
            if !h.destination.is_multicast() {
                return Ok(None);
            }
            if h.payload_len == 0 {
                return Err(CaptureError::Unsupported("IPv6 jumbogram"));
            }
            true
        }
        _ => return Err(CaptureError::Malformed("neither IPv4 nor IPv6")),
    };
    match UdpPacket::parse(packet) {
        Ok(p) => Ok(Some(p)),
        Err(IpError::NotUdp(_)) => Ok(None),
        Err(IpError::Fragment) => Err(CaptureError::Unsupported(if v6 { "IPv6 fragment" } else { "IPv4 fragment" })),
        Err(e) => Err(malformed(e)),
    }
}

/// Turns one captured IP packet and its virtio-net header (offsets counted from the IP header: see
/// [`VnetHeader::after_link_header`]) into what to forward; see the module documentation. `out` is cleared
/// first and holds the packets to forward for [`Outcome::ChecksumCompleted`] and [`Outcome::Split`].
pub fn split(vnet: &VnetHeader, packet: &[u8], out: &mut Segments) -> Result<Outcome, CaptureError> {
    out.clear();
    if vnet.flags & !(F_NEEDS_CSUM | F_DATA_VALID) != 0 {
        return Err(CaptureError::VnetHeader("unknown flags"));
    }
    let gso = vnet.gso_type & !GSO_ECN;
    if !matches!(gso, GSO_NONE | GSO_TCPV4 | GSO_UDP | GSO_TCPV6 | GSO_UDP_L4) {
        return Err(CaptureError::VnetHeader("unknown GSO type"));
    }
    let Some(p) = locate(packet)? else { return Ok(Outcome::Ignored) };
    let needs_csum = vnet.flags & F_NEEDS_CSUM != 0;
    if needs_csum && (usize::from(vnet.csum_start) != p.udp_offset || vnet.csum_offset != 6) {
        return Err(CaptureError::VnetHeader("checksum offsets do not point at the UDP checksum"));
    }
    match gso {
        GSO_NONE => {
            if vnet.gso_size != 0 {
                return Err(CaptureError::VnetHeader("segment size without GSO"));
            }
            if !needs_csum {
                return Ok(Outcome::Whole(p.ip_len));
            }
            let sum = ip::udp_checksum(p.source.ip(), p.destination.ip(), p.udp.bytes);
            out.buf.extend_from_slice(packet.get(..p.ip_len).unwrap_or_default());
            if let Some(field) = out.buf.get_mut(p.udp_offset + 6..p.udp_offset + 8) {
                field.copy_from_slice(&sum.to_be_bytes());
            }
            out.seal();
            Ok(Outcome::ChecksumCompleted)
        }
        GSO_UDP_L4 => {
            let size = usize::from(vnet.gso_size);
            if size == 0 {
                return Err(CaptureError::VnetHeader("GSO with a zero segment size"));
            }
            let payload = p.payload();
            if payload.is_empty() {
                return Err(CaptureError::Malformed("GSO packet without payload"));
            }
            let n = payload.len().div_ceil(size);
            if n > MAX_SEGMENTS {
                return Err(CaptureError::TooManySegments(n));
            }
            for (i, chunk) in payload.chunks(size).enumerate() {
                // The kernel's own segmentation: IPv4 identification + 1 per segment.
                let fields =
                    ip::IpFields { identification: p.fields.identification.wrapping_add(i as u16), ..p.fields };
                if ip::build_udp_with(p.source, p.destination, &fields, chunk, &mut out.buf).is_err() {
                    out.clear();
                    return Err(CaptureError::Malformed("segment does not fit a datagram"));
                }
                out.seal();
            }
            Ok(Outcome::Split(n))
        }
        GSO_UDP => Err(CaptureError::Unsupported("UDP fragmentation offload")),
        _ => Err(CaptureError::VnetHeader("TCP segmentation of a UDP packet")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::{self, Checksum};
    use crate::inner::{self, parse_udp};
    use h3m_net::ip::proto::UDP;
    use proptest::prelude::*;
    use std::net::SocketAddr;

    fn be16(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn build(s: &str, d: &str, ttl: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = Vec::new();
        inner::build_udp(sa(s), sa(d), ttl, payload, &mut p).unwrap();
        p
    }

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    /// What a sender with checksum offload leaves in the UDP checksum field: the folded pseudo-header sum.
    fn make_partial(p: &mut [u8], udp_at: usize) {
        let v6 = p[0] >> 4 == 6;
        let ulen = be16(p, udp_at + 4);
        let mut c = Checksum::new();
        if v6 {
            c.add(&p[8..40]).add(&u32::from(ulen).to_be_bytes()).add(&[0, 0, 0, UDP]);
        } else {
            c.add(&p[12..20]).add(&[0, UDP]).add(&ulen.to_be_bytes());
        }
        p[udp_at + 6..udp_at + 8].copy_from_slice(&(!c.finish()).to_be_bytes());
    }

    /// A GSO super-packet as the kernel hands it over: one header, `payload` whole, the checksum partial.
    fn super_packet(s: &str, d: &str, ttl: u8, payload: &[u8], gso_size: u16) -> (VnetHeader, Vec<u8>) {
        let mut p = build(s, d, ttl, payload);
        let udp_at = if p[0] >> 4 == 6 { 40 } else { 20 };
        make_partial(&mut p, udp_at);
        let vnet = VnetHeader {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_UDP_L4,
            hdr_len: udp_at as u16 + 8,
            gso_size,
            csum_start: udp_at as u16,
            csum_offset: 6,
        };
        (vnet, p)
    }

    fn ok(vnet: &VnetHeader, p: &[u8]) -> (Outcome, Vec<Vec<u8>>) {
        let mut out = Segments::new();
        let o = split(vnet, p, &mut out).unwrap();
        (o, out.iter().map(<[u8]>::to_vec).collect())
    }

    fn err(vnet: &VnetHeader, p: &[u8]) -> CaptureError {
        let mut out = Segments::new();
        let e = split(vnet, p, &mut out).unwrap_err();
        assert!(out.is_empty());
        e
    }

    #[test]
    fn header_parse_roundtrip_and_link_offset() {
        let h = VnetHeader { flags: 1, gso_type: 5, hdr_len: 42, gso_size: 1200, csum_start: 34, csum_offset: 6 };
        let b = h.to_bytes();
        assert_eq!(VnetHeader::parse(&b), Some(h));
        assert_eq!(VnetHeader::parse(&b[..9]), None);
        // As read on veth: 14 octets of Ethernet before the IPv4 header.
        let ip = h.after_link_header(14).unwrap();
        assert_eq!((ip.csum_start, ip.csum_offset, ip.hdr_len, ip.gso_size), (20, 6, 28, 1200));
        assert_eq!(h.after_link_header(35), None, "checksum inside the link-layer header");
        assert_eq!(h.after_link_header(1 << 20), None);
        let none = VnetHeader { flags: 0, ..Default::default() };
        assert_eq!(none.after_link_header(14), Some(none), "offsets unused without NEEDS_CSUM");
    }

    #[test]
    fn ipv4_super_packet_split_with_a_short_last_segment() {
        let data = payload(10 * 1200 + 132);
        let (vnet, mut p) = super_packet("10.0.0.1:4000", "232.1.1.1:5001", 7, &data, 1200);
        // TOS, DF and an identification to carry over.
        p[1] = 0xb8;
        p[4..6].copy_from_slice(&0xfffeu16.to_be_bytes());
        p[6] = 0x40;
        p[10..12].fill(0);
        let sum = checksum::internet_checksum(&[&p[..20]]);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        let (o, segs) = ok(&vnet, &p);
        assert_eq!(o, Outcome::Split(11));
        assert_eq!(segs.len(), 11);
        let mut joined = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let d = parse_udp(s).unwrap();
            assert_eq!((d.source, d.destination, d.ttl), (sa("10.0.0.1:4000"), sa("232.1.1.1:5001"), 7));
            assert_eq!(d.payload.len(), if i == 10 { 132 } else { 1200 });
            assert_eq!(s[1], 0xb8, "TOS");
            assert_eq!(be16(s, 4), 0xfffeu16.wrapping_add(i as u16), "identification");
            assert_eq!(s[6..8], [0x40, 0], "DF, no fragment offset");
            joined.extend_from_slice(d.payload);
        }
        assert_eq!(joined, data);
        // An exact multiple: no short segment.
        let (vnet, p) = super_packet("10.0.0.1:4000", "232.1.1.1:5001", 1, &payload(3 * 500), 500);
        let (o, segs) = ok(&vnet, &p);
        assert_eq!(o, Outcome::Split(3));
        assert!(segs.iter().all(|s| parse_udp(s).unwrap().payload.len() == 500));
        // Fewer octets than one segment: one datagram, as sent.
        let (vnet, p) = super_packet("10.0.0.1:4000", "232.1.1.1:5001", 1, b"tiny", 1200);
        let (o, segs) = ok(&vnet, &p);
        assert_eq!((o, segs), (Outcome::Split(1), vec![build("10.0.0.1:4000", "232.1.1.1:5001", 1, b"tiny")]));
    }

    #[test]
    fn ipv6_super_packet_with_extension_headers_is_split() {
        let data = payload(4 * 1000 + 1);
        let (_, base) = super_packet("[fd00::1]:4000", "[ff3e::8000:1]:5001", 3, &data, 1000);
        // Hop-by-Hop (8 octets) then Destination Options (16) before UDP; traffic class and flow label set.
        let mut p = base[..40].to_vec();
        p[0..4].copy_from_slice(&[0x6b, 0x81, 0x23, 0x45]);
        p[6] = 0;
        p[4..6].copy_from_slice(&((base.len() - 40 + 24) as u16).to_be_bytes());
        p.extend_from_slice(&[60, 0, 5, 2, 0, 0, 1, 0]);
        p.extend_from_slice(&[UDP, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        p.extend_from_slice(&base[40..]);
        let vnet = VnetHeader {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_UDP_L4 | GSO_ECN,
            gso_size: 1000,
            csum_start: 64,
            csum_offset: 6,
            ..Default::default()
        };
        let (o, segs) = ok(&vnet, &p);
        assert_eq!(o, Outcome::Split(5));
        let mut joined = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let d = parse_udp(s).unwrap();
            assert_eq!((d.source, d.destination, d.ttl), (sa("[fd00::1]:4000"), sa("[ff3e::8000:1]:5001"), 3));
            assert_eq!(d.payload.len(), if i == 4 { 1 } else { 1000 });
            assert_eq!(s[..4], [0x6b, 0x81, 0x23, 0x45], "traffic class and flow label");
            assert_eq!(s[6], UDP, "extension headers are not repeated");
            joined.extend_from_slice(d.payload);
        }
        assert_eq!(joined, data);
        // The checksum offsets must point at the UDP header behind the extension headers.
        assert!(matches!(err(&VnetHeader { csum_start: 40, ..vnet }, &p), CaptureError::VnetHeader(_)));
        // Without NEEDS_CSUM (coalesced by GRO, checksums verified): split all the same.
        let gro = VnetHeader { flags: F_DATA_VALID, csum_start: 0, csum_offset: 0, ..vnet };
        assert_eq!(ok(&gro, &p).1, segs);
    }

    #[test]
    fn partial_checksum_is_completed() {
        for (s, d, udp_at) in [("10.0.0.1:4000", "232.1.1.1:5001", 20), ("[fd00::1]:4000", "[ff3e::8000:1]:5001", 40)] {
            for len in [0, 1, 2, 3, 1200] {
                let original = build(s, d, 1, &payload(len));
                let mut p = original.clone();
                make_partial(&mut p, udp_at);
                let vnet =
                    VnetHeader { flags: F_NEEDS_CSUM, csum_start: udp_at as u16, csum_offset: 6, ..Default::default() };
                assert_eq!(ok(&vnet, &p), (Outcome::ChecksumCompleted, vec![original.clone()]), "{s} {len}");
                // The bytes in the field do not matter, the datagram does.
                p[udp_at + 6] ^= 0x5a;
                assert_eq!(ok(&vnet, &p).1, vec![original]);
            }
        }
        // A checksum computed as zero is sent as 0xffff (IPv4: 0 would mean "none").
        let mut p = build("10.0.0.1:4000", "232.1.1.1:5001", 1, &[0, 0]);
        let sum = be16(&p, 26);
        p[28..30].copy_from_slice(&sum.to_be_bytes());
        let fixed = ok(&VnetHeader { flags: F_NEEDS_CSUM, csum_start: 20, csum_offset: 6, ..Default::default() }, &p);
        assert_eq!(be16(&fixed.1[0], 26), 0xffff);
        assert!(parse_udp(&fixed.1[0]).is_ok());
    }

    #[test]
    fn plain_packets_are_forwarded_whole_without_link_padding() {
        let p = build("10.0.0.1:4000", "232.1.1.1:5001", 1, b"x");
        let mut padded = p.clone();
        padded.resize(46, 0);
        for flags in [0, F_DATA_VALID] {
            let vnet = VnetHeader { flags, ..Default::default() };
            assert_eq!(ok(&vnet, &padded), (Outcome::Whole(p.len()), vec![]));
        }
        let p6 = build("[fd00::1]:4000", "[ff3e::8000:1]:5001", 1, b"payload");
        assert_eq!(ok(&VnetHeader::default(), &p6).0, Outcome::Whole(p6.len()));
        // A wrong checksum goes through: the relay's parser refuses it.
        let mut bad = p.clone();
        bad[28] ^= 1;
        assert_eq!(ok(&VnetHeader::default(), &bad).0, Outcome::Whole(p.len()));
    }

    #[test]
    fn non_multicast_and_non_udp_are_ignored() {
        let none = VnetHeader::default();
        let unicast = build("10.0.0.1:4000", "10.0.0.2:5001", 1, b"x");
        assert_eq!(ok(&none, &unicast).0, Outcome::Ignored);
        let mut tcp = build("10.0.0.1:4000", "232.1.1.1:5001", 1, b"x");
        tcp[9] = 6;
        assert_eq!(ok(&none, &tcp).0, Outcome::Ignored);
        // TCP segmentation metadata on a TCP packet is not ours to judge.
        let tso = VnetHeader { gso_type: GSO_TCPV4, gso_size: 1400, ..none };
        assert_eq!(ok(&tso, &tcp).0, Outcome::Ignored);
        let unicast6 = build("[fd00::1]:4000", "[fd00::2]:5001", 1, b"x");
        assert_eq!(ok(&none, &unicast6).0, Outcome::Ignored);
        // An MLD report: Hop-by-Hop, then ICMPv6.
        let mut mld = build("[fe80::1]:0", "[ff02::16]:0", 1, &[0; 20]);
        mld[6] = 0;
        mld[40] = 58;
        mld[41] = 0;
        assert_eq!(ok(&none, &mld).0, Outcome::Ignored);
    }

    #[test]
    fn garbage_headers_and_packets_are_errors() {
        let data = payload(3000);
        let (vnet, p) = super_packet("10.0.0.1:4000", "232.1.1.1:5001", 1, &data, 1200);
        let bad_header = |h: VnetHeader| assert!(matches!(err(&h, &p), CaptureError::VnetHeader(_)), "{h:?}");
        bad_header(VnetHeader { flags: 4, ..vnet });
        bad_header(VnetHeader { flags: 0xff, ..vnet });
        bad_header(VnetHeader { gso_type: 7, ..vnet });
        bad_header(VnetHeader { gso_type: 0x42, ..vnet });
        bad_header(VnetHeader { gso_type: GSO_TCPV4, ..vnet });
        bad_header(VnetHeader { gso_type: GSO_TCPV6, ..vnet });
        bad_header(VnetHeader { gso_size: 0, ..vnet });
        bad_header(VnetHeader { csum_start: 21, ..vnet });
        bad_header(VnetHeader { csum_start: u16::MAX, ..vnet });
        bad_header(VnetHeader { csum_offset: 16, ..vnet });
        bad_header(VnetHeader { gso_type: GSO_NONE, ..vnet });
        assert_eq!(
            err(&VnetHeader { gso_type: GSO_UDP, ..vnet }, &p),
            CaptureError::Unsupported("UDP fragmentation offload")
        );
        assert_eq!(err(&VnetHeader { gso_size: 10, ..vnet }, &p), CaptureError::TooManySegments(300));
        // Malformed or truncated packets.
        let malformed = |q: &[u8]| assert!(matches!(err(&vnet, q), CaptureError::Malformed(_)), "{q:?}");
        malformed(&[]);
        malformed(&p[..19]);
        malformed(&p[..p.len() - 1]);
        malformed(&[0x20; 40]);
        let mut q = p.clone();
        q[0] = 0x44;
        malformed(&q);
        let mut q = p.clone();
        q[8] ^= 1;
        malformed(&q); // header checksum
        let mut q = p.clone();
        q[24..26].copy_from_slice(&7u16.to_be_bytes());
        malformed(&q); // UDP length below 8
        let empty = super_packet("10.0.0.1:4000", "232.1.1.1:5001", 1, b"", 1200);
        malformed(&empty.1);
        let mut frag = p.clone();
        frag[6] = 0x20;
        frag[10..12].fill(0);
        let sum = checksum::internet_checksum(&[&frag[..20]]);
        frag[10..12].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(err(&vnet, &frag), CaptureError::Unsupported("IPv4 fragment"));
        let (v6, p6) = super_packet("[fd00::1]:4000", "[ff3e::1]:5001", 1, &data, 1200);
        let mut jumbo = p6.clone();
        jumbo[4..6].fill(0);
        assert_eq!(err(&v6, &jumbo), CaptureError::Unsupported("IPv6 jumbogram"));
        let mut frag6 = p6.clone();
        frag6[6] = 44;
        assert_eq!(err(&v6, &frag6), CaptureError::Unsupported("IPv6 fragment"));
        let mut over = super_packet("[fd00::1]:4000", "[ff3e::1]:5001", 1, &data[..100], 50).1;
        over[6] = 60;
        over[41] = 0xff;
        assert!(matches!(err(&v6, &over), CaptureError::Malformed(_)));
        assert!(matches!(err(&v6, &p6[..39]), CaptureError::Malformed(_)));
    }

    use crate::inner::strategies::mcast_pair;

    fn gso_header(csum_start: u16, gso_size: u16) -> VnetHeader {
        VnetHeader { flags: F_NEEDS_CSUM, gso_type: GSO_UDP_L4, hdr_len: 0, gso_size, csum_start, csum_offset: 6 }
    }

    proptest! {
        #[test]
        fn never_panics(header in any::<[u8; VNET_HDR_LEN]>(), bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let mut out = Segments::new();
            let vnet = VnetHeader::parse(&header).unwrap();
            let _ = split(&vnet, &bytes, &mut out);
            // Also with a plausible IP start.
            let mut ip = bytes.clone();
            if let Some(b) = ip.first_mut() {
                *b = 0x45;
            }
            let _ = split(&vnet, &ip, &mut out);
            let _ = vnet.after_link_header(bytes.len());
        }

        #[test]
        fn corrupted_super_packets_never_panic(
            (s, d) in mcast_pair(), len in 1usize..3000, size in 1u16..1500,
            at in any::<prop::sample::Index>(), flip in 1u8..=255, header in any::<[u8; VNET_HDR_LEN]>(),
        ) {
            let mut p = Vec::new();
            inner::build_udp(s, d, 1, &payload(len), &mut p).unwrap();
            let udp_at = if s.is_ipv6() { 40 } else { 20 };
            let vnet = gso_header(udp_at, size);
            let i = at.index(p.len());
            p[i] ^= flip;
            let mut out = Segments::new();
            let _ = split(&vnet, &p, &mut out);
            let _ = split(&VnetHeader::parse(&header).unwrap(), &p, &mut out);
        }

        #[test]
        fn every_segment_is_a_valid_datagram_and_together_they_are_the_payload(
            (s, d) in mcast_pair(), ttl in any::<u8>(), len in 1usize..4000, size in 1u16..1500,
        ) {
            let data = payload(len);
            let mut p = Vec::new();
            inner::build_udp(s, d, ttl, &data, &mut p).unwrap();
            let udp_at = if s.is_ipv6() { 40 } else { 20 };
            make_partial(&mut p, udp_at);
            let vnet = gso_header(udp_at as u16, size);
            let mut out = Segments::new();
            match split(&vnet, &p, &mut out) {
                Ok(Outcome::Split(n)) => {
                    prop_assert_eq!(n, len.div_ceil(usize::from(size)));
                    prop_assert_eq!(out.len(), n);
                    let mut joined = Vec::new();
                    for seg in out.iter() {
                        let got = parse_udp(seg).unwrap();
                        prop_assert_eq!((got.source, got.destination, got.ttl), (s, d, ttl));
                        prop_assert!(got.payload.len() <= usize::from(size));
                        joined.extend_from_slice(got.payload);
                    }
                    prop_assert_eq!(joined, data);
                }
                Err(CaptureError::TooManySegments(n)) => prop_assert!(n > MAX_SEGMENTS),
                other => prop_assert!(false, "{:?}", other),
            }
        }
    }
}
