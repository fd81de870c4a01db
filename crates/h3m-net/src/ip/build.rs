//! Writing IPv4 / IPv6 headers and whole UDP datagrams, with valid checksums.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::checksum::internet_checksum;
use super::proto::{HOP_BY_HOP, UDP};
use super::{IpError, udp_checksum};

/// The IPv4 Router Alert option (RFC 2113): type 148, length 4, value 0.
const IPV4_ROUTER_ALERT: [u8; 4] = [0x94, 0x04, 0x00, 0x00];
/// A Hop-by-Hop header after its next-header octet: length 0, Router Alert (type 5, length 2, value 0 =
/// MLD), PadN (type 1, length 0).
const HOP_BY_HOP_ROUTER_ALERT: [u8; 7] = [0, 5, 2, 0, 0, 1, 0];

/// The header fields a writer sets besides addresses, protocol and lengths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct IpFields {
    /// IPv4 TTL / IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 type of service / IPv6 traffic class (DSCP and ECN).
    pub tos: u8,
    /// IPv4 identification (not in IPv6 headers).
    pub identification: u16,
    /// IPv4 Don't Fragment flag.
    pub dont_fragment: bool,
    /// IPv6 flow label (its low 20 bits).
    pub flow_label: u32,
    /// A Router Alert: the IPv4 option (IHL 6) or, in IPv6, a Hop-by-Hop header with the Router Alert
    /// option for MLD (value 0) and PadN, 8 octets.
    pub router_alert: bool,
}

impl IpFields {
    /// Only a TTL / hop limit; everything else zero.
    pub const fn with_ttl(ttl: u8) -> IpFields {
        IpFields { ttl, tos: 0, identification: 0, dont_fragment: false, flow_label: 0, router_alert: false }
    }
}

/// Appends an IPv4 header (IHL 5, or 6 with a Router Alert) for `payload_len` octets of `protocol`, with
/// its checksum. The fragment offset and More Fragments flag are 0; the Total Length saturates at 65535
/// (callers check sizes first).
pub fn write_ipv4_header(
    out: &mut Vec<u8>,
    source: Ipv4Addr,
    destination: Ipv4Addr,
    protocol: u8,
    fields: &IpFields,
    payload_len: usize,
) {
    let at = out.len();
    let hlen: usize = if fields.router_alert { 24 } else { 20 };
    let total = hlen.saturating_add(payload_len).min(usize::from(u16::MAX)) as u16;
    out.extend_from_slice(&[0x40 | (hlen / 4) as u8, fields.tos]);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&fields.identification.to_be_bytes());
    out.extend_from_slice(&if fields.dont_fragment { [0x40, 0] } else { [0, 0] });
    out.extend_from_slice(&[fields.ttl, protocol, 0, 0]);
    out.extend_from_slice(&source.octets());
    out.extend_from_slice(&destination.octets());
    if fields.router_alert {
        out.extend_from_slice(&IPV4_ROUTER_ALERT);
    }
    let sum = internet_checksum(&[out.get(at..).unwrap_or_default()]);
    if let Some(field) = out.get_mut(at + 10..at + 12) {
        field.copy_from_slice(&sum.to_be_bytes());
    }
}

/// Appends an IPv6 header (with a Router Alert: and a Hop-by-Hop header) for `payload_len` octets of
/// `next_header`. The Payload Length saturates at 65535 (callers check sizes first).
pub fn write_ipv6_header(
    out: &mut Vec<u8>,
    source: Ipv6Addr,
    destination: Ipv6Addr,
    next_header: u8,
    fields: &IpFields,
    payload_len: usize,
) {
    let extension = if fields.router_alert { 8 } else { 0 };
    let plen = payload_len.saturating_add(extension).min(usize::from(u16::MAX)) as u16;
    let word = 0x6000_0000 | (u32::from(fields.tos) << 20) | (fields.flow_label & 0x000f_ffff);
    out.extend_from_slice(&word.to_be_bytes());
    out.extend_from_slice(&plen.to_be_bytes());
    out.extend_from_slice(&[if fields.router_alert { HOP_BY_HOP } else { next_header }, fields.ttl]);
    out.extend_from_slice(&source.octets());
    out.extend_from_slice(&destination.octets());
    if fields.router_alert {
        out.push(next_header);
        out.extend_from_slice(&HOP_BY_HOP_ROUTER_ALERT);
    }
}

/// Appends an IPv4 (IHL 5, ID 0, DF clear) or IPv6 (no extension headers) UDP datagram from `source` to
/// `destination` with hop limit `ttl`, with valid header and UDP checksums ([`build_udp_with`]).
pub fn build_udp(
    source: SocketAddr,
    destination: SocketAddr,
    ttl: u8,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), IpError> {
    build_udp_with(source, destination, &IpFields::with_ttl(ttl), payload, out)
}

/// Appends an IPv4 or IPv6 UDP datagram from `source` to `destination` with the header `fields`, with
/// valid header and UDP checksums (a computed 0 sent as 0xffff).
///
/// The destination need not be multicast. Errors ([`IpError::FamilyMismatch`],
/// [`IpError::PayloadTooLarge`] when the IP or UDP length field cannot hold it) leave `out` unchanged.
pub fn build_udp_with(
    source: SocketAddr,
    destination: SocketAddr,
    fields: &IpFields,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), IpError> {
    let udp_len = 8 + payload.len();
    let too_large = IpError::PayloadTooLarge(payload.len());
    let ra = usize::from(fields.router_alert);
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = 20 + 4 * ra + udp_len;
            u16::try_from(total).map_err(|_| too_large)?;
            out.reserve(total);
            write_ipv4_header(out, s, d, UDP, fields, udp_len);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            u16::try_from(8 * ra + udp_len).map_err(|_| too_large)?;
            out.reserve(40 + 8 * ra + udp_len);
            write_ipv6_header(out, s, d, UDP, fields, udp_len);
        }
        _ => return Err(IpError::FamilyMismatch { from: source, to: destination }),
    }
    let mut h = [0u8; 8];
    h[..2].copy_from_slice(&source.port().to_be_bytes());
    h[2..4].copy_from_slice(&destination.port().to_be_bytes());
    h[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    let at = out.len();
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let sum = udp_checksum(source.ip(), destination.ip(), out.get(at..).unwrap_or_default());
    if let Some(field) = out.get_mut(at + 6..at + 8) {
        field.copy_from_slice(&sum.to_be_bytes());
    }
    Ok(())
}
