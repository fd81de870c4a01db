//! The IPv4 / IPv6 / UDP layer, sans-IO: the one parser and writer of whole IP packets in h3m.
//!
//! Everything that reads or writes IP packets goes through here: the receiver's capture reader (pcap /
//! pcapng frames, with fragment reassembly), the AMT gateway and relay (the multicast datagrams inside
//! Multicast Data, the IGMP / MLD packets inside Membership Queries and Updates) and the relay's native
//! capture.
//!
//! ```text
//! IPv4:  | 0x4 IHL | TOS | Total Length | ID | flags+offset | TTL | Proto | Hdr Cksum | Src (4) | Dst (4) | options |
//! IPv6:  | 6 | TC | flow | Payload Length | Next Hdr | Hop Limit | Src (16) | Dst (16) | extension headers... |
//! UDP:   | Source Port | Destination Port | Length (8 + payload) | Checksum | payload ... |
//! ```
//!
//! Reading, from the most general to the most specific:
//!
//! - [`IpPacket::parse`] (either version), [`Ipv4Packet::parse`], [`Ipv6Packet::parse`]: the version, the
//!   header and length fields checked against the buffer; octets beyond the IP length (link padding) are
//!   left out of the payload. [`Ipv4Header::parse`] / [`Ipv6Header::parse`] read only the fixed header, for
//!   a caller that decides on the protocol or destination before anything else.
//! - [`walk_extensions`]: IPv6 extension headers (Hop-by-Hop, Routing, Destination Options, AH, Mobility,
//!   HIP, Shim6; at most [`MAX_EXTENSION_HEADERS`]) up to the first other header; [`Ipv6Fragment`] reads a
//!   Fragment header; Router Alert options are found by [`Ipv4Packet::router_alert`] and
//!   [`Ipv6Walk::router_alert`].
//! - [`UdpDatagram::parse`]: a UDP header and its length; [`verify_udp_checksum`] (a zero checksum means
//!   "none" over IPv4 and is an error over IPv6).
//! - [`UdpPacket::parse`]: the UDP datagram of an unfragmented IPv4 or IPv6 packet, its IPv4 header
//!   checksum verified.
//! - [`reassembly`]: IPv4 / IPv6 fragment reassembly with bounded memory.
//!
//! Writing: [`write_ipv4_header`], [`write_ipv6_header`] (with a Router Alert when asked) and
//! [`build_udp`] / [`build_udp_with`], with valid checksums ([`checksum`], [`pseudo_header`],
//! [`udp_checksum`]).
//!
//! Every parser takes any bytes: nothing here panics, indexes unchecked or allocates by a length field;
//! problems come back as one error type, [`IpError`].

pub mod checksum;
pub mod reassembly;

mod build;
mod error;
mod header;
mod udp;

#[cfg(test)]
mod tests;

pub use build::{IpFields, build_udp, build_udp_with, write_ipv4_header, write_ipv6_header};
pub use error::IpError;
pub use header::{
    IpPacket, Ipv4Header, Ipv4Packet, Ipv6Fragment, Ipv6Header, Ipv6Packet, Ipv6Walk, MAX_EXTENSION_HEADERS,
    hop_by_hop_router_alert, ipv4_router_alert, is_extension_header, walk_extensions,
};
pub use udp::{UdpDatagram, UdpHeader, UdpPacket, pseudo_header, udp_checksum, verify_udp_checksum};

/// IP protocol numbers (IPv4 Protocol, IPv6 Next Header) used in h3m.
pub mod proto {
    /// IPv6 Hop-by-Hop Options header.
    pub const HOP_BY_HOP: u8 = 0;
    /// IGMP.
    pub const IGMP: u8 = 2;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 Routing header.
    pub const ROUTING: u8 = 43;
    /// IPv6 Fragment header.
    pub const FRAGMENT: u8 = 44;
    /// Authentication Header.
    pub const AH: u8 = 51;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 No Next Header.
    pub const NO_NEXT_HEADER: u8 = 59;
    /// IPv6 Destination Options header.
    pub const DESTINATION_OPTIONS: u8 = 60;
    /// Mobility header.
    pub const MOBILITY: u8 = 135;
    /// Host Identity Protocol.
    pub const HIP: u8 = 139;
    /// Shim6.
    pub const SHIM6: u8 = 140;
}

/// `N` octets at `at`, if present.
fn read_array<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    read_array::<2>(bytes, at).map_or(0, u16::from_be_bytes)
}

fn truncated(what: &'static str, need: usize, have: usize) -> IpError {
    IpError::Truncated { what, need, have }
}
