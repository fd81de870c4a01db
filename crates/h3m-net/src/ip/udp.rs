//! UDP: headers, checksums (with the IPv4 / IPv6 pseudo-header) and the UDP datagram of an IP packet.
//!
//! The UDP checksum covers a pseudo-header: IPv4 source, destination, zero, protocol 17 and the UDP
//! length; IPv6 source, destination, the UDP length as 32 bits, three zero octets and next header 17. A
//! zero UDP checksum means "none" in IPv4 and is invalid in IPv6; a computed 0 is sent as 0xffff.

use std::net::{IpAddr, SocketAddr};

use super::checksum::Checksum;
use super::proto::{FRAGMENT, UDP};
use super::{IpError, IpFields, IpPacket, Ipv6Header, be16, truncated};

/// A UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpHeader {
    /// Source port.
    pub source_port: u16,
    /// Destination port.
    pub destination_port: u16,
    /// Length of header and payload.
    pub length: u16,
    /// Checksum (0: none, over IPv4).
    pub checksum: u16,
}

impl UdpHeader {
    /// Octets of a UDP header.
    pub const LEN: usize = 8;
}

/// A UDP datagram: its header and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    /// The header.
    pub header: UdpHeader,
    /// Header and payload: the UDP length's worth of octets.
    pub bytes: &'a [u8],
    /// The payload.
    pub payload: &'a [u8],
}

impl<'a> UdpDatagram<'a> {
    /// Reads the UDP datagram at the start of `segment` (the IP payload from the UDP header on): the
    /// header must be there and its length between 8 and the segment length (octets after it are left
    /// out). A UDP length of 0 (IPv6 jumbograms) is not supported. The checksum is not verified (see
    /// [`verify_udp_checksum`]).
    pub fn parse(segment: &'a [u8]) -> Result<UdpDatagram<'a>, IpError> {
        let available = segment.len();
        if available < UdpHeader::LEN {
            return Err(truncated("UDP header", UdpHeader::LEN, available));
        }
        let header = UdpHeader {
            source_port: be16(segment, 0),
            destination_port: be16(segment, 2),
            length: be16(segment, 4),
            checksum: be16(segment, 6),
        };
        let udp = usize::from(header.length);
        let bytes =
            segment.get(..udp).filter(|_| udp >= UdpHeader::LEN).ok_or(IpError::BadUdpLength { udp, available })?;
        Ok(UdpDatagram { header, bytes, payload: bytes.get(UdpHeader::LEN..).unwrap_or_default() })
    }
}

fn v6_octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// The checksum state after the pseudo-header for `len` octets of `protocol` from `source` to
/// `destination`: IPv4 (both addresses IPv4) source, destination, zero, protocol, length as 16 bits; else
/// IPv6 (an IPv4 address in its IPv4-mapped form) source, destination, length as 32 bits, three zero
/// octets, protocol.
pub fn pseudo_header(source: IpAddr, destination: IpAddr, protocol: u8, len: usize) -> Checksum {
    let mut c = Checksum::new();
    match (source, destination) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let len = (len as u16).to_be_bytes();
            c.add(&s.octets()).add(&d.octets()).add(&[0, protocol, len[0], len[1]]);
        }
        (s, d) => {
            c.add(&v6_octets(s)).add(&v6_octets(d)).add(&(len as u32).to_be_bytes()).add(&[0, 0, 0, protocol]);
        }
    }
    c
}

/// The UDP checksum of `datagram` (header and payload; its checksum field taken as zero) from `source` to
/// `destination`, ready for the checksum field: a computed 0 is given as 0xffff.
pub fn udp_checksum(source: IpAddr, destination: IpAddr, datagram: &[u8]) -> u16 {
    let mut c = pseudo_header(source, destination, UDP, datagram.len());
    c.add(datagram.get(..6).unwrap_or(datagram)).add(&[0, 0]).add(datagram.get(8..).unwrap_or_default());
    match c.finish() {
        0 => 0xffff,
        s => s,
    }
}

/// Verifies the checksum of `datagram` (header and payload) from `source` to `destination`: a zero
/// checksum is "none" over IPv4 and [`IpError::ZeroUdpChecksum`] over IPv6; a wrong one is
/// [`IpError::UdpChecksum`].
pub fn verify_udp_checksum(source: IpAddr, destination: IpAddr, datagram: &[u8]) -> Result<(), IpError> {
    let v6 = source.is_ipv6() || destination.is_ipv6();
    if be16(datagram, 6) == 0 {
        return if v6 { Err(IpError::ZeroUdpChecksum) } else { Ok(()) };
    }
    let mut c = pseudo_header(source, destination, UDP, datagram.len());
    c.add(datagram);
    if c.finish() == 0 { Ok(()) } else { Err(IpError::UdpChecksum) }
}

/// The UDP datagram of an unfragmented IPv4 or IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPacket<'a> {
    /// Source address and port.
    pub source: SocketAddr,
    /// Destination address and port.
    pub destination: SocketAddr,
    /// The IP header fields a copy of the packet would keep: TTL / hop limit, TOS / traffic class, IPv4
    /// identification and DF flag, IPv6 flow label (options and extension headers are not kept).
    pub fields: IpFields,
    /// Where the UDP header starts in the packet.
    pub udp_offset: usize,
    /// The IP packet's length according to its header.
    pub ip_len: usize,
    /// The UDP datagram.
    pub udp: UdpDatagram<'a>,
}

impl<'a> UdpPacket<'a> {
    /// Parses `packet` as an IPv4 or IPv6 UDP datagram.
    ///
    /// As [`IpPacket::parse`], then IPv4: header checksum verified, not a fragment, protocol UDP; IPv6: not
    /// a jumbogram (a Payload Length of 0 is [`IpError::BadLength`]), extension headers walked
    /// ([`super::walk_extensions`]), no Fragment header, UDP next; then [`UdpDatagram::parse`]. The UDP
    /// checksum is not verified ([`UdpPacket::verify_checksum`]), nor is the destination's kind.
    pub fn parse(packet: &'a [u8]) -> Result<UdpPacket<'a>, IpError> {
        let ip = IpPacket::parse(packet)?;
        let (fields, udp_offset, segment) = match ip {
            IpPacket::V4(p) => {
                let h = &p.header;
                p.verify_header_checksum()?;
                if h.is_fragment() {
                    return Err(IpError::Fragment);
                }
                if h.protocol != UDP {
                    return Err(IpError::NotUdp(h.protocol));
                }
                let fields = IpFields {
                    ttl: h.ttl,
                    tos: h.tos,
                    identification: h.identification,
                    dont_fragment: h.dont_fragment(),
                    ..IpFields::default()
                };
                (fields, p.header_bytes.len(), p.payload)
            }
            IpPacket::V6(p) => {
                let h = &p.header;
                if h.payload_len == 0 {
                    return Err(IpError::BadLength { total: Ipv6Header::LEN, len: packet.len() });
                }
                let walk = p.walk()?;
                match walk.next_header {
                    UDP => {}
                    FRAGMENT => return Err(IpError::Fragment),
                    other => return Err(IpError::NotUdp(other)),
                }
                let fields = IpFields {
                    ttl: h.hop_limit,
                    tos: h.traffic_class,
                    flow_label: h.flow_label,
                    ..IpFields::default()
                };
                (fields, Ipv6Header::LEN + walk.offset, walk.rest)
            }
        };
        let udp = UdpDatagram::parse(segment)?;
        Ok(UdpPacket {
            source: SocketAddr::new(ip.source(), udp.header.source_port),
            destination: SocketAddr::new(ip.destination(), udp.header.destination_port),
            fields,
            udp_offset,
            ip_len: ip.total_len(),
            udp,
        })
    }

    /// Verifies the UDP checksum ([`verify_udp_checksum`]).
    pub fn verify_checksum(&self) -> Result<(), IpError> {
        verify_udp_checksum(self.source.ip(), self.destination.ip(), self.udp.bytes)
    }

    /// The UDP payload.
    pub fn payload(&self) -> &'a [u8] {
        self.udp.payload
    }
}
