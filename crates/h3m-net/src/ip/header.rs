//! IPv4 and IPv6 headers, IPv6 extension headers and Router Alert options.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::proto::{AH, HOP_BY_HOP};
use super::{IpError, be16, read_array, truncated};

/// IPv6 extension headers [`walk_extensions`] steps over before giving up.
pub const MAX_EXTENSION_HEADERS: usize = 8;

/// The fixed 20 octets of an IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Header {
    /// Internet Header Length in 32-bit words (not checked here: see [`Ipv4Packet::parse`]).
    pub ihl: u8,
    /// Type of service (DSCP and ECN).
    pub tos: u8,
    /// Total Length: header and payload.
    pub total_len: u16,
    /// Identification.
    pub identification: u16,
    /// Flags (3 bits) and fragment offset (13 bits, in 8-octet units).
    pub flags_fragment: u16,
    /// Time to live.
    pub ttl: u8,
    /// Protocol of the payload.
    pub protocol: u8,
    /// Header checksum.
    pub checksum: u16,
    /// Source address.
    pub source: Ipv4Addr,
    /// Destination address.
    pub destination: Ipv4Addr,
}

impl Ipv4Header {
    /// Octets of the fixed header.
    pub const LEN: usize = 20;

    /// Reads the fixed header at the start of `packet`, checking only that it is there and that the
    /// version is 4.
    pub fn parse(packet: &[u8]) -> Result<Ipv4Header, IpError> {
        let h = read_array::<20>(packet, 0).ok_or(truncated("IPv4 header", 20, packet.len()))?;
        if h[0] >> 4 != 4 {
            return Err(IpError::UnknownVersion(h[0] >> 4));
        }
        Ok(Ipv4Header {
            ihl: h[0] & 0x0f,
            tos: h[1],
            total_len: be16(&h, 2),
            identification: be16(&h, 4),
            flags_fragment: be16(&h, 6),
            ttl: h[8],
            protocol: h[9],
            checksum: be16(&h, 10),
            source: Ipv4Addr::new(h[12], h[13], h[14], h[15]),
            destination: Ipv4Addr::new(h[16], h[17], h[18], h[19]),
        })
    }

    /// The header length in octets (IHL x 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.ihl) * 4
    }

    /// The Don't Fragment flag.
    pub fn dont_fragment(&self) -> bool {
        self.flags_fragment & 0x4000 != 0
    }

    /// The More Fragments flag.
    pub fn more_fragments(&self) -> bool {
        self.flags_fragment & 0x2000 != 0
    }

    /// The fragment offset in octets.
    pub fn fragment_offset(&self) -> usize {
        usize::from(self.flags_fragment & 0x1fff) * 8
    }

    /// Whether this is a fragment (More Fragments set or a non-zero offset).
    pub fn is_fragment(&self) -> bool {
        self.flags_fragment & 0x3fff != 0
    }
}

/// An IPv4 packet whose header and length fields agree with the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<'a> {
    /// The fixed header.
    pub header: Ipv4Header,
    /// The whole header, options included.
    pub header_bytes: &'a [u8],
    /// The payload, up to the Total Length (octets beyond it, such as link padding, are left out).
    pub payload: &'a [u8],
}

impl<'a> Ipv4Packet<'a> {
    /// Parses the IPv4 packet at the start of `packet`: version 4, an IHL of at least 5 within the buffer,
    /// a Total Length between the header length and the buffer length. Nothing else is checked (see
    /// [`Ipv4Packet::verify_header_checksum`]).
    pub fn parse(packet: &'a [u8]) -> Result<Ipv4Packet<'a>, IpError> {
        let header = Ipv4Header::parse(packet)?;
        let len = packet.len();
        if header.ihl < 5 {
            return Err(IpError::BadHeaderLength(header.ihl));
        }
        let hlen = header.header_len();
        let header_bytes = packet.get(..hlen).ok_or(truncated("IPv4 header with options", hlen, len))?;
        let total = usize::from(header.total_len);
        if total < hlen || total > len {
            return Err(IpError::BadLength { total, len });
        }
        Ok(Ipv4Packet { header, header_bytes, payload: packet.get(hlen..total).unwrap_or_default() })
    }

    /// The options (the header after its first 20 octets).
    pub fn options(&self) -> &'a [u8] {
        self.header_bytes.get(Ipv4Header::LEN..).unwrap_or_default()
    }

    /// [`IpError::HeaderChecksum`] unless the header checksum verifies.
    pub fn verify_header_checksum(&self) -> Result<(), IpError> {
        if checksum::verify(&[self.header_bytes]) { Ok(()) } else { Err(IpError::HeaderChecksum) }
    }

    /// Whether the options hold a Router Alert ([`ipv4_router_alert`]).
    pub fn router_alert(&self) -> Result<bool, IpError> {
        ipv4_router_alert(self.options())
    }
}

/// Scans IPv4 options for a Router Alert (type 148, length 4); [`IpError::BadOption`] when an option
/// overruns the options.
pub fn ipv4_router_alert(mut options: &[u8]) -> Result<bool, IpError> {
    let mut ra = false;
    while let Some(&kind) = options.first() {
        match kind {
            0 => break,
            1 => options = options.get(1..).unwrap_or_default(),
            _ => {
                let l = usize::from(*options.get(1).ok_or(IpError::BadOption)?);
                if l < 2 || l > options.len() {
                    return Err(IpError::BadOption);
                }
                ra |= kind == 0x94 && l == 4;
                options = options.get(l..).unwrap_or_default();
            }
        }
    }
    Ok(ra)
}

/// The fixed 40 octets of an IPv6 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Header {
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
    /// Payload Length: extension headers and upper layer (0 for a jumbogram).
    pub payload_len: u16,
    /// Next Header: the first extension header or the upper-layer protocol.
    pub next_header: u8,
    /// Hop limit.
    pub hop_limit: u8,
    /// Source address.
    pub source: Ipv6Addr,
    /// Destination address.
    pub destination: Ipv6Addr,
}

impl Ipv6Header {
    /// Octets of the fixed header.
    pub const LEN: usize = 40;

    /// Reads the fixed header at the start of `packet`, checking only that it is there and that the
    /// version is 6.
    pub fn parse(packet: &[u8]) -> Result<Ipv6Header, IpError> {
        let h = read_array::<40>(packet, 0).ok_or(truncated("IPv6 header", 40, packet.len()))?;
        if h[0] >> 4 != 6 {
            return Err(IpError::UnknownVersion(h[0] >> 4));
        }
        let word = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        let addr = |at: usize| Ipv6Addr::from(read_array::<16>(&h, at).unwrap_or_default());
        Ok(Ipv6Header {
            traffic_class: (word >> 20) as u8,
            flow_label: word & 0x000f_ffff,
            payload_len: be16(&h, 4),
            next_header: h[6],
            hop_limit: h[7],
            source: addr(8),
            destination: addr(24),
        })
    }
}

/// An IPv6 packet whose Payload Length agrees with the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Packet<'a> {
    /// The fixed header.
    pub header: Ipv6Header,
    /// The payload (extension headers and upper layer), up to the Payload Length; empty for a jumbogram.
    pub payload: &'a [u8],
}

impl<'a> Ipv6Packet<'a> {
    /// Parses the IPv6 packet at the start of `packet`: version 6 and 40 + Payload Length within the
    /// buffer (octets beyond it are left out).
    pub fn parse(packet: &'a [u8]) -> Result<Ipv6Packet<'a>, IpError> {
        let header = Ipv6Header::parse(packet)?;
        let total = Ipv6Header::LEN + usize::from(header.payload_len);
        let len = packet.len();
        if total > len {
            return Err(IpError::BadLength { total, len });
        }
        Ok(Ipv6Packet { header, payload: packet.get(Ipv6Header::LEN..total).unwrap_or_default() })
    }

    /// Walks the extension headers of the payload ([`walk_extensions`]).
    pub fn walk(&self) -> Result<Ipv6Walk<'a>, IpError> {
        walk_extensions(self.header.next_header, self.payload)
    }
}

/// An IPv4 or IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpPacket<'a> {
    /// IPv4.
    V4(Ipv4Packet<'a>),
    /// IPv6.
    V6(Ipv6Packet<'a>),
}

impl<'a> IpPacket<'a> {
    /// Parses an IPv4 or IPv6 packet, by its version nibble: [`IpError::Empty`],
    /// [`IpError::UnknownVersion`], or as [`Ipv4Packet::parse`] / [`Ipv6Packet::parse`].
    pub fn parse(packet: &'a [u8]) -> Result<IpPacket<'a>, IpError> {
        let &first = packet.first().ok_or(IpError::Empty)?;
        match first >> 4 {
            4 => Ipv4Packet::parse(packet).map(IpPacket::V4),
            6 => Ipv6Packet::parse(packet).map(IpPacket::V6),
            v => Err(IpError::UnknownVersion(v)),
        }
    }

    /// The source address.
    pub fn source(&self) -> IpAddr {
        match self {
            IpPacket::V4(p) => IpAddr::V4(p.header.source),
            IpPacket::V6(p) => IpAddr::V6(p.header.source),
        }
    }

    /// The destination address.
    pub fn destination(&self) -> IpAddr {
        match self {
            IpPacket::V4(p) => IpAddr::V4(p.header.destination),
            IpPacket::V6(p) => IpAddr::V6(p.header.destination),
        }
    }

    /// The header length: IPv4 with options, IPv6 without extension headers.
    pub fn header_len(&self) -> usize {
        match self {
            IpPacket::V4(p) => p.header_bytes.len(),
            IpPacket::V6(_) => Ipv6Header::LEN,
        }
    }

    /// The packet's length according to its header.
    pub fn total_len(&self) -> usize {
        match self {
            IpPacket::V4(p) => usize::from(p.header.total_len),
            IpPacket::V6(p) => Ipv6Header::LEN + p.payload.len(),
        }
    }
}

/// Whether [`walk_extensions`] steps over header type `next`: Hop-by-Hop (0), Routing (43), Destination
/// Options (60), Authentication Header (51), Mobility (135), HIP (139) and Shim6 (140); not the Fragment
/// header (44).
pub fn is_extension_header(next: u8) -> bool {
    matches!(next, 0 | 43 | 51 | 60 | 135 | 139 | 140)
}

/// Where [`walk_extensions`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Walk<'a> {
    /// The first header type not walked: the upper-layer protocol, a Fragment header (44), No Next
    /// Header (59), ...
    pub next_header: u8,
    /// That header and everything after it.
    pub rest: &'a [u8],
    /// Octets of extension headers walked.
    pub offset: usize,
    /// The options of a Hop-by-Hop header at the start of the chain (the only place RFC 8200 allows it).
    pub hop_by_hop: Option<&'a [u8]>,
}

impl Ipv6Walk<'_> {
    /// Whether the Hop-by-Hop options hold a Router Alert ([`hop_by_hop_router_alert`]); `false` without
    /// a Hop-by-Hop header.
    pub fn router_alert(&self) -> Result<bool, IpError> {
        self.hop_by_hop.map_or(Ok(false), hop_by_hop_router_alert)
    }
}

/// Walks the extension headers starting with header type `next` at the start of `payload` (see
/// [`is_extension_header`]; the AH length is in 4-octet units minus 2, the others' in 8-octet units minus
/// 1), at most [`MAX_EXTENSION_HEADERS`] of them.
pub fn walk_extensions(next: u8, payload: &[u8]) -> Result<Ipv6Walk<'_>, IpError> {
    let (mut next, mut rest, mut hop_by_hop) = (next, payload, None);
    let mut headers = 0;
    while is_extension_header(next) {
        headers += 1;
        if headers > MAX_EXTENSION_HEADERS {
            return Err(IpError::TooManyExtensionHeaders);
        }
        let have = rest.len();
        let [inner, len] = read_array::<2>(rest, 0).ok_or(truncated("IPv6 extension header", 2, have))?;
        let n = if next == AH { (usize::from(len) + 2) * 4 } else { (usize::from(len) + 1) * 8 };
        if n > have {
            return Err(truncated("IPv6 extension header", n, have));
        }
        let (header, after) = rest.split_at(n);
        if next == HOP_BY_HOP && headers == 1 {
            hop_by_hop = Some(header.get(2..).unwrap_or_default());
        }
        next = inner;
        rest = after;
    }
    Ok(Ipv6Walk { next_header: next, rest, offset: payload.len() - rest.len(), hop_by_hop })
}

/// Scans Hop-by-Hop options for a Router Alert (type 5, length 2); [`IpError::BadOption`] when an option
/// overruns the options.
pub fn hop_by_hop_router_alert(mut options: &[u8]) -> Result<bool, IpError> {
    let mut ra = false;
    while let Some(&kind) = options.first() {
        if kind == 0 {
            options = options.get(1..).unwrap_or_default();
            continue;
        }
        let l = usize::from(*options.get(1).ok_or(IpError::BadOption)?);
        let end = 2 + l;
        if end > options.len() {
            return Err(IpError::BadOption);
        }
        ra |= kind == 5 && l == 2;
        options = options.get(end..).unwrap_or_default();
    }
    Ok(ra)
}

/// An IPv6 Fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Fragment {
    /// The header type of the fragmentable part.
    pub next_header: u8,
    /// The fragment's offset in the fragmentable part, in octets.
    pub offset: usize,
    /// The More Fragments flag.
    pub more_fragments: bool,
    /// Identification.
    pub identification: u32,
}

impl Ipv6Fragment {
    /// Octets of a Fragment header.
    pub const LEN: usize = 8;

    /// Reads the Fragment header at the start of `rest`; returns it with what follows.
    pub fn parse(rest: &[u8]) -> Result<(Ipv6Fragment, &[u8]), IpError> {
        let f = read_array::<8>(rest, 0).ok_or(truncated("IPv6 fragment header", 8, rest.len()))?;
        let offset_field = be16(&f, 2);
        let fragment = Ipv6Fragment {
            next_header: f[0],
            offset: usize::from(offset_field & 0xfff8),
            more_fragments: offset_field & 1 != 0,
            identification: u32::from_be_bytes([f[4], f[5], f[6], f[7]]),
        };
        Ok((fragment, rest.get(8..).unwrap_or_default()))
    }

    /// An atomic fragment (RFC 6946: offset 0, no more fragments) is not really fragmented.
    pub fn is_atomic(&self) -> bool {
        self.offset == 0 && !self.more_fragments
    }
}
