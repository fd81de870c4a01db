//! Link layers: from a captured frame to its IPv4 or IPv6 packet.

use super::read_array;

/// A supported link type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Link {
    Ethernet,
    /// Raw IP, version from the first nibble.
    Raw,
    Raw4,
    Raw6,
    Sll,
    Sll2,
    /// BSD null: 4-byte address family in the capturing host's byte order.
    Null,
    /// OpenBSD loopback: 4-byte address family in network byte order.
    Loop,
}

impl Link {
    /// The link of a pcap / pcapng link type (`LINKTYPE_*`), if supported.
    pub(super) fn from_link_type(link_type: u32) -> Option<Link> {
        Some(match link_type {
            1 => Link::Ethernet,
            101 | 12 | 14 => Link::Raw,
            228 => Link::Raw4,
            229 => Link::Raw6,
            113 => Link::Sll,
            276 => Link::Sll2,
            0 => Link::Null,
            108 => Link::Loop,
            _ => return None,
        })
    }
}

/// A link-layer frame's network-layer content.
pub(super) enum L3<'a> {
    Ipv4(&'a [u8]),
    Ipv6(&'a [u8]),
    NotIp,
    Malformed,
}

/// The network-layer content of `frame`.
pub(super) fn payload(link: Link, frame: &[u8]) -> L3<'_> {
    match link {
        Link::Ethernet => match (read_array::<2>(frame, 12), frame.get(14..)) {
            (Some(ethertype), Some(rest)) => by_ethertype(u16::from_be_bytes(ethertype), rest),
            _ => L3::Malformed,
        },
        Link::Raw => match frame.first() {
            Some(b) if b >> 4 == 4 => L3::Ipv4(frame),
            Some(b) if b >> 4 == 6 => L3::Ipv6(frame),
            _ => L3::Malformed,
        },
        Link::Raw4 => L3::Ipv4(frame),
        Link::Raw6 => L3::Ipv6(frame),
        Link::Sll => match (read_array::<2>(frame, 14), frame.get(16..)) {
            (Some(protocol), Some(rest)) => by_ethertype(u16::from_be_bytes(protocol), rest),
            _ => L3::Malformed,
        },
        Link::Sll2 => match (read_array::<2>(frame, 0), frame.get(20..)) {
            (Some(protocol), Some(rest)) => by_ethertype(u16::from_be_bytes(protocol), rest),
            _ => L3::Malformed,
        },
        Link::Null | Link::Loop => {
            let (Some(family), Some(rest)) = (read_array::<4>(frame, 0), frame.get(4..)) else {
                return L3::Malformed;
            };
            let family = if link == Link::Loop {
                u32::from_be_bytes(family)
            } else {
                // Host byte order of the capturing machine, which need not be
                // the file's: families are small, so a value with high bits
                // set is the other byte order.
                let le = u32::from_le_bytes(family);
                if le > 0xffff { le.swap_bytes() } else { le }
            };
            match family {
                2 => L3::Ipv4(rest),
                // Linux, NetBSD/OpenBSD, FreeBSD, Darwin.
                10 | 24 | 28 | 30 => L3::Ipv6(rest),
                _ => L3::NotIp,
            }
        }
    }
}

/// Dispatches on an EtherType, skipping VLAN tags.
fn by_ethertype(mut ethertype: u16, mut rest: &[u8]) -> L3<'_> {
    loop {
        match ethertype {
            0x0800 => return L3::Ipv4(rest),
            0x86dd => return L3::Ipv6(rest),
            // 802.1Q, 802.1ad, legacy QinQ: 2 bytes TCI, 2 bytes EtherType.
            0x8100 | 0x88a8 | 0x9100 => {
                let (Some(inner), Some(after)) = (read_array::<2>(rest, 2), rest.get(4..)) else {
                    return L3::Malformed;
                };
                ethertype = u16::from_be_bytes(inner);
                rest = after;
            }
            _ => return L3::NotIp,
        }
    }
}
