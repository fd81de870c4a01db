//! From a captured link-layer frame to a UDP datagram, through the IP layer
//! ([`h3m_net::ip`]) and its fragment reassembly, counting what is skipped.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use h3m_net::ip::reassembly::{FragmentKey, Reassembler, ReassemblyLimits};
use h3m_net::ip::{Ipv4Packet, Ipv6Fragment, Ipv6Packet, UdpDatagram, is_extension_header, proto, walk_extensions};

use super::link::{self, L3, Link};
use super::{CaptureStats, Datagram};

/// Frames to datagrams (lenient: no checksums verified).
#[derive(Debug)]
pub(super) struct Decoder {
    /// The destination port to keep, if any.
    port: Option<u16>,
    /// A second destination port to keep with it (FEC repair).
    repair_port: Option<u16>,
    pub(super) reassembler: Reassembler,
}

fn malformed(stats: &mut CaptureStats) -> Option<Datagram> {
    stats.malformed += 1;
    None
}

fn non_udp(stats: &mut CaptureStats) -> Option<Datagram> {
    stats.skipped_non_udp += 1;
    None
}

impl Decoder {
    pub(super) fn new(port: Option<u16>, repair_port: Option<u16>, limits: ReassemblyLimits) -> Self {
        Decoder { port, repair_port, reassembler: Reassembler::new(limits) }
    }

    /// Decodes one link-layer frame captured at `timestamp`.
    pub(super) fn frame(
        &mut self,
        link: Link,
        timestamp: Option<Duration>,
        frame: &[u8],
        stats: &mut CaptureStats,
    ) -> Option<Datagram> {
        match link::payload(link, frame) {
            L3::Ipv4(packet) => self.ipv4(timestamp, packet, stats),
            L3::Ipv6(packet) => self.ipv6(timestamp, packet, stats),
            L3::NotIp => non_udp(stats),
            L3::Malformed => malformed(stats),
        }
    }

    /// Counts the fragments still pending at the end of the capture as
    /// dropped.
    pub(super) fn finish(&mut self, stats: &mut CaptureStats) {
        self.reassembler.finish();
        self.sync(stats);
    }

    fn sync(&self, stats: &mut CaptureStats) {
        let c = self.reassembler.counters();
        stats.fragments = c.fragments;
        stats.reassembled = c.reassembled;
        stats.fragments_dropped = c.dropped;
    }

    /// Takes one fragment; the whole payload once complete.
    fn reassemble(
        &mut self,
        key: FragmentKey,
        offset: usize,
        more: bool,
        data: &[u8],
        stats: &mut CaptureStats,
    ) -> Option<Vec<u8>> {
        let whole = self.reassembler.insert(key, offset, more, data);
        self.sync(stats);
        whole.unwrap_or_else(|_| {
            stats.malformed += 1;
            None
        })
    }

    fn ipv4(&mut self, timestamp: Option<Duration>, packet: &[u8], stats: &mut CaptureStats) -> Option<Datagram> {
        // Link-layer padding and trailers (Ethernet padding, FCS) are cut off
        // by the total length; a packet shorter than its total length is not.
        let Ok(p) = Ipv4Packet::parse(packet) else {
            return malformed(stats);
        };
        let h = p.header;
        let (src, dst) = (IpAddr::V4(h.source), IpAddr::V4(h.destination));
        if h.protocol != proto::UDP {
            return non_udp(stats);
        }
        if !h.is_fragment() {
            return self.udp(timestamp, src, dst, p.payload, stats);
        }
        let key = FragmentKey {
            source: src,
            destination: dst,
            identification: u32::from(h.identification),
            protocol: h.protocol,
        };
        let whole = self.reassemble(key, h.fragment_offset(), h.more_fragments(), p.payload, stats)?;
        self.udp(timestamp, src, dst, &whole, stats)
    }

    fn ipv6(&mut self, timestamp: Option<Duration>, packet: &[u8], stats: &mut CaptureStats) -> Option<Datagram> {
        let Ok(p) = Ipv6Packet::parse(packet) else {
            return malformed(stats);
        };
        let (src, dst) = (IpAddr::V6(p.header.source), IpAddr::V6(p.header.destination));
        self.ipv6_chain(timestamp, src, dst, p.header.next_header, p.payload, true, stats)
    }

    /// Walks an IPv6 header chain starting with header type `next` at the
    /// start of `rest`, through atomic fragments and (`fragments_allowed`)
    /// reassembly.
    #[allow(clippy::too_many_arguments)]
    fn ipv6_chain(
        &mut self,
        timestamp: Option<Duration>,
        src: IpAddr,
        dst: IpAddr,
        mut next: u8,
        mut rest: &[u8],
        fragments_allowed: bool,
        stats: &mut CaptureStats,
    ) -> Option<Datagram> {
        loop {
            let Ok(walk) = walk_extensions(next, rest) else {
                return malformed(stats);
            };
            match walk.next_header {
                proto::UDP => return self.udp(timestamp, src, dst, walk.rest, stats),
                proto::FRAGMENT => {
                    let Ok((fragment, after)) = Ipv6Fragment::parse(walk.rest) else {
                        return malformed(stats);
                    };
                    if !fragments_allowed {
                        // A Fragment header inside a reassembled payload.
                        return malformed(stats);
                    }
                    if fragment.is_atomic() {
                        // Atomic fragment (RFC 6946): not really fragmented.
                        next = fragment.next_header;
                        rest = after;
                        continue;
                    }
                    let inner = fragment.next_header;
                    if inner != proto::UDP && !is_extension_header(inner) {
                        return non_udp(stats);
                    }
                    let key = FragmentKey {
                        source: src,
                        destination: dst,
                        identification: fragment.identification,
                        protocol: inner,
                    };
                    let whole = self.reassemble(key, fragment.offset, fragment.more_fragments, after, stats)?;
                    return self.ipv6_chain(timestamp, src, dst, inner, &whole, false, stats);
                }
                _ => return non_udp(stats),
            }
        }
    }

    fn udp(
        &mut self,
        timestamp: Option<Duration>,
        src: IpAddr,
        dst: IpAddr,
        segment: &[u8],
        stats: &mut CaptureStats,
    ) -> Option<Datagram> {
        let Ok(udp) = UdpDatagram::parse(segment) else {
            return malformed(stats);
        };
        let h = udp.header;
        if self.port.is_some_and(|port| port != h.destination_port && self.repair_port != Some(h.destination_port)) {
            stats.skipped_port += 1;
            return None;
        }
        stats.udp_datagrams += 1;
        Some(Datagram {
            timestamp,
            source: Some(SocketAddr::new(src, h.source_port)),
            destination: Some(SocketAddr::new(dst, h.destination_port)),
            payload: udp.payload.to_vec(),
        })
    }
}
