//! The one error type of the IP layer.

use std::net::{IpAddr, SocketAddr};

use super::MAX_EXTENSION_HEADERS;

/// Why bytes are not an acceptable IP packet, UDP datagram or fragment, or why one cannot be built.
///
/// Parsers report what they check; callers add their own rules (multicast destinations, no fragments,
/// an expected protocol) with the variants meant for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IpError {
    /// No octets at all.
    #[error("empty IP packet")]
    Empty,
    /// The IP version nibble is not the one expected (4 or 6).
    #[error("IP version {0} (4 or 6 expected)")]
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
    /// IPv4 Total Length (or 40 + IPv6 Payload Length) is shorter than the header or longer than the
    /// buffer (or, where the caller requires it, differs from it), or an IPv6 jumbogram.
    #[error("IP length field gives {total} octets but the packet has {len}")]
    BadLength {
        /// Length according to the IP header.
        total: usize,
        /// Octets in the buffer.
        len: usize,
    },
    /// The IPv4 header checksum does not verify.
    #[error("bad IPv4 header checksum")]
    HeaderChecksum,
    /// An IPv4 option or IPv6 Hop-by-Hop option overruns its header.
    #[error("malformed IP option")]
    BadOption,
    /// Too many IPv6 extension headers.
    #[error("more than {MAX_EXTENSION_HEADERS} IPv6 extension headers")]
    TooManyExtensionHeaders,
    /// The packet is a fragment (where fragments are not taken).
    #[error("IP packet is a fragment")]
    Fragment,
    /// A fragment that cannot be part of a valid packet: it ends beyond 65535 octets, or it is not the
    /// last one and is empty or not a multiple of 8 octets long.
    #[error("IP fragment at offset {offset} of {len} octets (more: {more}) cannot be reassembled")]
    BadFragment {
        /// Its offset in the original payload.
        offset: usize,
        /// Its length.
        len: usize,
        /// Its More Fragments flag.
        more: bool,
    },
    /// The upper-layer protocol is not UDP.
    #[error("IP packet carries protocol {0}, not UDP")]
    NotUdp(u8),
    /// The destination is not a multicast address (where only multicast is taken).
    #[error("destination {0} is not multicast")]
    NotMulticast(IpAddr),
    /// The UDP length is below 8 or beyond the IP payload.
    #[error("UDP length {udp} does not fit the {available} octets of IP payload")]
    BadUdpLength {
        /// The UDP header's length field.
        udp: usize,
        /// Octets of IP payload.
        available: usize,
    },
    /// The UDP checksum does not verify.
    #[error("bad UDP checksum")]
    UdpChecksum,
    /// An IPv6 UDP datagram with a zero checksum.
    #[error("zero UDP checksum in an IPv6 datagram")]
    ZeroUdpChecksum,
    /// Source and destination of different families (building).
    #[error("source {from} and destination {to} are of different families")]
    FamilyMismatch {
        /// The source given.
        from: SocketAddr,
        /// The destination given.
        to: SocketAddr,
    },
    /// The payload does not fit one IP datagram (building).
    #[error("UDP payload of {0} octets does not fit one IP datagram")]
    PayloadTooLarge(usize),
}
