//! Tests of the capture reader: a small pcap builder, every link type, IP
//! decoding and reassembly through captures, `.datagrams` files, file-level
//! errors, and property tests; pcapng in [`pcapng`].

use super::*;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

mod pcapng;

// ---------------------------------------------------------------
// A small test-only pcap builder.
// ---------------------------------------------------------------

const LINK_TYPES: [u32; 10] = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276];

struct PcapWriter {
    big: bool,
    out: Vec<u8>,
}

impl PcapWriter {
    fn new(link_type: u32, big: bool, nanos: bool) -> Self {
        let mut w = Self { big, out: Vec::new() };
        w.u32(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 });
        w.u16(2);
        w.u16(4);
        w.u32(0);
        w.u32(0);
        w.u32(262_144);
        w.u32(link_type);
        w
    }

    fn u32(&mut self, v: u32) {
        let b = if self.big { v.to_be_bytes() } else { v.to_le_bytes() };
        self.out.extend_from_slice(&b);
    }

    fn u16(&mut self, v: u16) {
        let b = if self.big { v.to_be_bytes() } else { v.to_le_bytes() };
        self.out.extend_from_slice(&b);
    }

    fn record(&mut self, sec: u32, frac: u32, data: &[u8]) -> &mut Self {
        self.record_with_len(sec, frac, data, data.len() as u32)
    }

    fn record_with_len(&mut self, sec: u32, frac: u32, data: &[u8], len: u32) -> &mut Self {
        self.u32(sec);
        self.u32(frac);
        self.u32(data.len() as u32);
        self.u32(len);
        self.out.extend_from_slice(data);
        self
    }

    fn finish(&self) -> Vec<u8> {
        self.out.clone()
    }
}

const V4_SRC: [u8; 4] = [10, 200, 0, 1];
const V4_DST: [u8; 4] = [232, 0, 0, 1];

fn v6_src() -> Ipv6Addr {
    "fd00:200::1".parse().unwrap()
}

fn v6_dst() -> Ipv6Addr {
    "ff3e::8000:1".parse().unwrap()
}

fn udp_segment(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(&src_port.to_be_bytes());
    s.extend_from_slice(&dst_port.to_be_bytes());
    s.extend_from_slice(&((payload.len() + 8) as u16).to_be_bytes());
    s.extend_from_slice(&[0, 0]);
    s.extend_from_slice(payload);
    s
}

fn ipv4(id: u16, protocol: u8, more: bool, offset: usize, body: &[u8]) -> Vec<u8> {
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&((body.len() + 20) as u16).to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    let fo = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
    p.extend_from_slice(&fo.to_be_bytes());
    p.extend_from_slice(&[1, protocol, 0, 0]);
    p.extend_from_slice(&V4_SRC);
    p.extend_from_slice(&V4_DST);
    p.extend_from_slice(body);
    p
}

fn ipv4_udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    ipv4(1, 17, false, 0, &udp_segment(src_port, dst_port, payload))
}

fn ipv6(next: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(body.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, 1]);
    p.extend_from_slice(&v6_src().octets());
    p.extend_from_slice(&v6_dst().octets());
    p.extend_from_slice(body);
    p
}

fn ipv6_udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    ipv6(17, &udp_segment(src_port, dst_port, payload))
}

/// An 8-byte extension header (hop-by-hop / destination options) with
/// PadN.
fn ext8(next: u8) -> [u8; 8] {
    [next, 0, 1, 4, 0, 0, 0, 0]
}

fn frag6(next: u8, offset: usize, more: bool, id: u32) -> [u8; 8] {
    let fo = offset as u16 | u16::from(more);
    let [a, b] = fo.to_be_bytes();
    let [c, d, e, f] = id.to_be_bytes();
    [next, 0, a, b, c, d, e, f]
}

/// Splits `data` into pieces of `chunk` bytes: (offset, more, piece).
fn split(data: &[u8], chunk: usize) -> Vec<(usize, bool, Vec<u8>)> {
    let n = data.len().div_ceil(chunk).max(1);
    (0..n)
        .map(|i| {
            let start = i * chunk;
            let end = (start + chunk).min(data.len());
            (start, i + 1 < n, data[start..end].to_vec())
        })
        .collect()
}

fn fragments_v4(id: u16, segment: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    split(segment, chunk).into_iter().map(|(offset, more, piece)| ipv4(id, 17, more, offset, &piece)).collect()
}

fn fragments_v6(id: u32, hop_by_hop: bool, inner: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    split(inner, chunk)
        .into_iter()
        .map(|(offset, more, piece)| {
            let mut body = Vec::new();
            if hop_by_hop {
                body.extend_from_slice(&ext8(44));
            }
            body.extend_from_slice(&frag6(17, offset, more, id));
            body.extend_from_slice(&piece);
            ipv6(if hop_by_hop { 0 } else { 44 }, &body)
        })
        .collect()
}

/// Wraps an IP packet in the link layer of `link_type`. `host_big` is
/// the byte order of the BSD null family field.
fn frame(link_type: u32, ip: &[u8], host_big: bool) -> Vec<u8> {
    let v6 = ip.first().is_some_and(|b| b >> 4 == 6);
    let ethertype: [u8; 2] = if v6 { [0x86, 0xdd] } else { [0x08, 0x00] };
    let mut f = Vec::new();
    match link_type {
        1 => {
            f.extend_from_slice(&[0x01, 0x00, 0x5e, 0, 0, 1, 2, 0, 0, 0, 0, 1]);
            f.extend_from_slice(&ethertype);
        }
        12 | 14 | 101 | 228 | 229 => {}
        113 => {
            f.extend_from_slice(&[0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
            f.extend_from_slice(&ethertype);
        }
        276 => {
            f.extend_from_slice(&ethertype);
            f.extend_from_slice(&[0, 0, 0, 0, 0, 3, 0, 1, 2, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
        }
        0 => {
            let family: u32 = if v6 { 30 } else { 2 };
            f.extend_from_slice(&if host_big { family.to_be_bytes() } else { family.to_le_bytes() });
        }
        108 => {
            let family: u32 = if v6 { 24 } else { 2 };
            f.extend_from_slice(&family.to_be_bytes());
        }
        _ => unreachable!(),
    }
    f.extend_from_slice(ip);
    f
}

fn read(bytes: &[u8]) -> Capture {
    read_capture_checked(bytes, &ReadOptions::default()).unwrap()
}

/// [`read_capture`], checking that [`CaptureReader`] reads the same.
fn read_capture_checked(bytes: &[u8], opts: &ReadOptions) -> Result<Capture, CaptureError> {
    let whole = read_capture(bytes, opts);
    assert_streamed_alike(bytes, opts, &whole);
    whole
}

/// The chunk lengths the streaming reader is checked with: one byte at a
/// time, odd lengths that cut headers and records anywhere, and the default.
const CHUNK_LENS: [usize; 5] = [1, 3, 17, 100, DEFAULT_CHUNK_LEN];

/// Reads `bytes` with [`CaptureReader`], `chunk_len` bytes at a time.
fn read_streamed(bytes: &[u8], opts: &ReadOptions, chunk_len: usize) -> Result<Capture, CaptureError> {
    let path = Path::new("streamed");
    let mut reader = CaptureReader::with_limits(bytes, path, opts, ReassemblyLimits::default(), chunk_len)?;
    let mut datagrams = Vec::new();
    for item in reader.by_ref() {
        datagrams.push(item?);
    }
    assert!(reader.next().is_none(), "fused");
    Ok(Capture { format: reader.format(), datagrams, stats: reader.into_stats() })
}

/// The streaming reader gives what reading the whole file gave: the same
/// datagrams, counters and format, or the same error (offsets included).
fn assert_streamed_alike(bytes: &[u8], opts: &ReadOptions, whole: &Result<Capture, CaptureError>) {
    for chunk_len in CHUNK_LENS {
        match (whole, read_streamed(bytes, opts, chunk_len)) {
            (Ok(whole), Ok(streamed)) => assert_eq!(whole, &streamed, "chunks of {chunk_len}"),
            (Err(whole), Err(streamed)) => {
                assert_eq!(whole.to_string(), streamed.to_string(), "chunks of {chunk_len}")
            }
            (whole, streamed) => panic!("chunks of {chunk_len}: whole {whole:?}, streamed {streamed:?}"),
        }
    }
}

fn datagrams_file(records: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(&(r.len() as u32).to_be_bytes());
        out.extend_from_slice(r);
    }
    out
}

fn v4_addr(port: u16, ip: [u8; 4]) -> Option<SocketAddr> {
    Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
}

fn v6_addr(port: u16, ip: Ipv6Addr) -> Option<SocketAddr> {
    Some(SocketAddr::new(IpAddr::V6(ip), port))
}

// ---------------------------------------------------------------
// Link types, byte orders, timestamps.
// ---------------------------------------------------------------

#[test]
fn every_link_type_in_both_byte_orders() {
    for link_type in LINK_TYPES {
        for big in [false, true] {
            let mut w = PcapWriter::new(link_type, big, false);
            let mut expected = Vec::new();
            if link_type != 229 {
                w.record(100, 5, &frame(link_type, &ipv4_udp(4000, 2000, b"four"), big));
                expected.push((b"four".to_vec(), v4_addr(4000, V4_SRC), v4_addr(2000, V4_DST)));
            }
            if link_type != 228 {
                w.record(101, 6, &frame(link_type, &ipv6_udp(4001, 2000, b"six"), big));
                expected.push((b"six".to_vec(), v6_addr(4001, v6_src()), v6_addr(2000, v6_dst())));
            }
            let capture = read(&w.finish());
            assert_eq!(capture.format, Format::Pcap { link_type, nanosecond: false });
            let got: Vec<_> = capture.datagrams.iter().map(|d| (d.payload.clone(), d.source, d.destination)).collect();
            assert_eq!(got, expected, "link type {link_type}, big {big}");
            assert_eq!(capture.stats.records, expected.len() as u64);
            assert_eq!(capture.stats.udp_datagrams, expected.len() as u64);
        }
    }
}

#[test]
fn bsd_null_family_in_either_host_order() {
    for file_big in [false, true] {
        for host_big in [false, true] {
            let mut w = PcapWriter::new(0, file_big, false);
            w.record(1, 0, &frame(0, &ipv4_udp(1, 2, b"a"), host_big));
            w.record(1, 0, &frame(0, &ipv6_udp(1, 2, b"b"), host_big));
            // Linux AF_INET6 = 10 and an unknown family.
            let mut linux6 = 10u32.to_le_bytes().to_vec();
            linux6.extend_from_slice(&ipv6_udp(1, 2, b"c"));
            w.record(1, 0, &linux6);
            let mut other = 17u32.to_le_bytes().to_vec();
            other.extend_from_slice(&ipv4_udp(1, 2, b"d"));
            w.record(1, 0, &other);
            let capture = read(&w.finish());
            let payloads: Vec<_> = capture.datagrams.iter().map(|d| d.payload.clone()).collect();
            assert_eq!(payloads, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
            assert_eq!(capture.stats.skipped_non_udp, 1);
        }
    }
}

#[test]
fn microsecond_and_nanosecond_timestamps() {
    for big in [false, true] {
        let mut w = PcapWriter::new(1, big, false);
        w.record(1_795_795_217, 700_943, &frame(1, &ipv4_udp(1, 2, b"x"), big));
        let capture = read(&w.finish());
        assert_eq!(capture.datagrams[0].timestamp, Some(Duration::new(1_795_795_217, 700_943_000)));

        let mut w = PcapWriter::new(1, big, true);
        w.record(1_795_795_217, 700_943_123, &frame(1, &ipv4_udp(1, 2, b"x"), big));
        let capture = read(&w.finish());
        assert_eq!(capture.format, Format::Pcap { link_type: 1, nanosecond: true });
        assert_eq!(capture.datagrams[0].timestamp, Some(Duration::new(1_795_795_217, 700_943_123)));
    }
    // Out-of-range fractions are carried over, not a panic.
    let mut w = PcapWriter::new(101, false, false);
    w.record(u32::MAX, u32::MAX, &ipv4_udp(1, 2, b"x"));
    let capture = read(&w.finish());
    assert_eq!(
        capture.datagrams[0].timestamp,
        Some(Duration::from_secs(u64::from(u32::MAX)) + Duration::from_micros(u64::from(u32::MAX)))
    );
}

#[test]
fn fcs_bits_of_link_type_are_masked() {
    let mut w = PcapWriter::new(0x1400_0001, false, false);
    w.record(1, 0, &frame(1, &ipv4_udp(1, 2, b"x"), false));
    let capture = read(&w.finish());
    assert_eq!(capture.format, Format::Pcap { link_type: 1, nanosecond: false });
    assert_eq!(capture.datagrams.len(), 1);
}

#[test]
fn vlan_tags_are_skipped() {
    let ip = ipv4_udp(1, 2000, b"tagged");
    let mac = [0x01, 0x00, 0x5e, 0, 0, 1, 2, 0, 0, 0, 0, 1];
    let mut w = PcapWriter::new(1, false, false);
    for tags in [&[0x8100u16][..], &[0x88a8, 0x8100], &[0x9100, 0x8100], &[0x8100, 0x8100, 0x8100]] {
        let mut f = mac.to_vec();
        for tag in tags {
            f.extend_from_slice(&tag.to_be_bytes());
            f.extend_from_slice(&[0x00, 0x2a]);
        }
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&ip);
        w.record(1, 0, &f);
    }
    // A tag cut short is malformed.
    let mut cut = mac.to_vec();
    cut.extend_from_slice(&[0x81, 0x00, 0x00]);
    w.record(1, 0, &cut);
    let capture = read(&w.finish());
    assert_eq!(capture.datagrams.len(), 4);
    assert!(capture.datagrams.iter().all(|d| d.payload == b"tagged"));
    assert_eq!(capture.stats.malformed, 1);
}

#[test]
fn ethernet_padding_and_trailer_are_trimmed() {
    let mut f = frame(1, &ipv4_udp(1, 2, b"hi"), false);
    f.resize(60, 0xee); // minimum frame size padding
    f.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]); // FCS
    let mut g = frame(1, &ipv6_udp(1, 2, b""), false);
    g.extend_from_slice(&[0xee; 10]);
    let mut w = PcapWriter::new(1, false, false);
    w.record(1, 0, &f).record(1, 0, &g);
    let capture = read(&w.finish());
    assert_eq!(capture.datagrams[0].payload, b"hi");
    assert_eq!(capture.datagrams[1].payload, b"");
}

// ---------------------------------------------------------------
// Non-UDP and malformed packets.
// ---------------------------------------------------------------

#[test]
fn non_udp_is_counted_and_skipped() {
    let mut w = PcapWriter::new(1, false, false);
    // TCP over IPv4.
    w.record(1, 0, &frame(1, &ipv4(1, 6, false, 0, &[0; 20]), false));
    // ICMPv6.
    w.record(1, 0, &frame(1, &ipv6(58, &[128, 0, 0, 0]), false));
    // IPv6 with no next header after a destination options header.
    w.record(1, 0, &frame(1, &ipv6(60, &ext8(59)), false));
    // ARP.
    let mut arp = vec![0xff; 12];
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    w.record(1, 0, &arp);
    // A non-first fragment of TCP.
    w.record(1, 0, &frame(1, &ipv4(2, 6, false, 8, &[0; 8]), false));
    // IPv6 fragment of ICMPv6.
    let mut body = frag6(58, 0, true, 9).to_vec();
    body.extend_from_slice(&[0; 8]);
    w.record(1, 0, &frame(1, &ipv6(44, &body), false));
    // And one good datagram.
    w.record(1, 0, &frame(1, &ipv4_udp(1, 2, b"ok"), false));
    let capture = read(&w.finish());
    assert_eq!(capture.datagrams.len(), 1);
    assert_eq!(capture.stats.skipped_non_udp, 6);
    assert_eq!(capture.stats.records, 7);
    assert_eq!(capture.stats.fragments, 0);
    assert_eq!(capture.stats.malformed, 0);
}

#[test]
fn inconsistent_headers_are_malformed() {
    let good4 = ipv4_udp(1, 2, b"payload");
    let good6 = ipv6_udp(1, 2, b"payload");
    let mut bad: Vec<Vec<u8>> = Vec::new();
    // IHL < 5.
    let mut p = good4.clone();
    p[0] = 0x44;
    bad.push(p);
    // IHL beyond the total length.
    let mut p = good4.clone();
    p[0] = 0x4f;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    bad.push(p);
    // Total length beyond the captured bytes.
    let mut p = good4.clone();
    p[2..4].copy_from_slice(&((good4.len() + 1) as u16).to_be_bytes());
    bad.push(p);
    // UDP length beyond the IP payload.
    let mut p = good4.clone();
    p[24..26].copy_from_slice(&100u16.to_be_bytes());
    bad.push(p);
    // UDP length below 8.
    let mut p = good4.clone();
    p[24..26].copy_from_slice(&7u16.to_be_bytes());
    bad.push(p);
    // IPv4 header cut.
    bad.push(good4[..19].to_vec());
    // Version 4 on the outside, 6 inside.
    let mut p = good4.clone();
    p[0] = 0x65;
    bad.push(p);
    // IPv6 payload length beyond the captured bytes.
    let mut p = good6.clone();
    p[4..6].copy_from_slice(&100u16.to_be_bytes());
    bad.push(p);
    // IPv6 header cut.
    bad.push(good6[..39].to_vec());
    // IPv6 extension header running past the end.
    let mut body = ext8(17).to_vec();
    body[1] = 3;
    bad.push(ipv6(0, &body));
    // IPv6 UDP header cut.
    bad.push(ipv6(17, &[0; 7]));

    let mut w = PcapWriter::new(1, false, false);
    for p in &bad {
        let ethertype =
            if p.first().is_some_and(|b| b >> 4 == 6) || p.len() == 39 { [0x86, 0xdd] } else { [0x08, 0x00] };
        let mut f = vec![0; 12];
        f.extend_from_slice(&ethertype);
        f.extend_from_slice(p);
        w.record(1, 0, &f);
    }
    // Ethernet header cut.
    w.record(1, 0, &[0; 13]);
    let capture = read(&w.finish());
    assert!(capture.datagrams.is_empty());
    assert_eq!(capture.stats.malformed, bad.len() as u64 + 1);

    // Raw IP with an unknown version, and an empty raw packet.
    let mut w = PcapWriter::new(101, false, false);
    w.record(1, 0, &[0x50; 30]).record(1, 0, &[]);
    assert_eq!(read(&w.finish()).stats.malformed, 2);
}

#[test]
fn ipv6_extension_headers_are_walked() {
    let udp = udp_segment(7, 2000, b"deep");
    let mut body = ext8(43).to_vec(); // hop-by-hop -> routing
    body.extend_from_slice(&[60, 0, 0, 0, 0, 0, 0, 0]); // routing -> dest opts
    body.extend_from_slice(&[51, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // dest opts (16) -> AH
    body.extend_from_slice(&[17, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // AH (12 bytes) -> UDP
    body.extend_from_slice(&udp);
    let mut w = PcapWriter::new(229, false, false);
    w.record(1, 0, &ipv6(0, &body));
    // An atomic fragment (offset 0, M = 0) is not a fragment.
    let mut atomic = frag6(17, 0, false, 5).to_vec();
    atomic.extend_from_slice(&udp);
    w.record(2, 0, &ipv6(44, &atomic));
    let capture = read(&w.finish());
    assert_eq!(capture.datagrams.len(), 2);
    assert!(capture.datagrams.iter().all(|d| d.payload == b"deep"));
    assert_eq!(capture.stats.fragments, 0);
}

// ---------------------------------------------------------------
// Reassembly.
// ---------------------------------------------------------------

#[test]
fn ipv4_fragments_out_of_order() {
    let payload: Vec<u8> = (0..3000u32).map(|i| (i * 7 + 3) as u8).collect();
    let segment = udp_segment(5000, 2000, &payload);
    let frags = fragments_v4(77, &segment, 1480);
    assert_eq!(frags.len(), 3);
    let mut w = PcapWriter::new(1, true, false);
    w.record(10, 0, &frame(1, &frags[2], false));
    w.record(11, 0, &frame(1, &ipv4_udp(1, 2000, b"between"), false));
    w.record(12, 0, &frame(1, &frags[0], false));
    w.record(13, 0, &frame(1, &frags[1], false));
    let capture = read(&w.finish());
    assert_eq!(capture.datagrams.len(), 2);
    assert_eq!(capture.datagrams[0].payload, b"between");
    let whole = &capture.datagrams[1];
    assert_eq!(whole.payload, payload);
    assert_eq!(whole.timestamp, Some(Duration::from_secs(13)));
    assert_eq!(whole.source, v4_addr(5000, V4_SRC));
    assert_eq!(whole.destination, v4_addr(2000, V4_DST));
    let stats = &capture.stats;
    assert_eq!(stats.fragments, 3);
    assert_eq!(stats.reassembled, 1);
    assert_eq!(stats.fragments_dropped, 0);
    assert_eq!(stats.udp_datagrams, 2);
    assert_eq!(stats.records, 4);
}

#[test]
fn ipv6_fragments_with_extension_headers() {
    let payload: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
    // The fragmentable part starts with a destination options header.
    let mut inner = ext8(17).to_vec();
    inner.extend_from_slice(&udp_segment(6000, 2000, &payload));
    let frags: Vec<Vec<u8>> = split(&inner, 1232)
        .into_iter()
        .map(|(offset, more, piece)| {
            let mut body = ext8(44).to_vec(); // hop-by-hop first
            body.extend_from_slice(&frag6(60, offset, more, 0xdead_beef));
            body.extend_from_slice(&piece);
            ipv6(0, &body)
        })
        .collect();
    assert_eq!(frags.len(), 3);
    let mut w = PcapWriter::new(1, false, false);
    for (i, k) in [1usize, 2, 0].into_iter().enumerate() {
        w.record(20 + i as u32, 0, &frame(1, &frags[k], false));
    }
    let capture = read(&w.finish());
    assert_eq!(capture.datagrams.len(), 1);
    let d = &capture.datagrams[0];
    assert_eq!(d.payload, payload);
    assert_eq!(d.timestamp, Some(Duration::from_secs(22)));
    assert_eq!(d.source, v6_addr(6000, v6_src()));
    assert_eq!(d.destination, v6_addr(2000, v6_dst()));
    assert_eq!(capture.stats.fragments, 3);
    assert_eq!(capture.stats.reassembled, 1);
}

#[test]
fn same_id_different_protocol_or_address_are_separate() {
    let a = udp_segment(1, 2000, &[0xaa; 40]);
    let b = udp_segment(1, 2000, &[0xbb; 40]);
    let fa = fragments_v4(9, &a, 24);
    let fb = fragments_v6(9, false, &b, 24);
    let mut w = PcapWriter::new(101, false, false);
    for i in 0..fa.len().max(fb.len()) {
        if let Some(f) = fa.get(i) {
            w.record(1, 0, f);
        }
        if let Some(f) = fb.get(i) {
            w.record(1, 0, f);
        }
    }
    let capture = read(&w.finish());
    assert_eq!(capture.datagrams.len(), 2);
    assert_eq!(capture.datagrams[0].payload, vec![0xaa; 40]);
    assert_eq!(capture.datagrams[1].payload, vec![0xbb; 40]);
}

#[test]
fn overlapping_fragments_are_rejected() {
    let segment = udp_segment(1, 2000, &[0x55; 40]); // 48 bytes
    let mut w = PcapWriter::new(101, false, false);
    w.record(1, 0, &ipv4(3, 17, true, 0, &segment[..24]));
    w.record(2, 0, &ipv4(3, 17, true, 16, &segment[16..40])); // overlaps 16..24
    w.record(3, 0, &ipv4(3, 17, false, 40, &segment[40..]));
    w.record(4, 0, &ipv4(3, 17, true, 24, &segment[24..40]));
    let capture = read(&w.finish());
    assert!(capture.datagrams.is_empty(), "nothing is made of overlaps");
    let stats = &capture.stats;
    assert_eq!(stats.fragments, 4);
    assert_eq!(stats.reassembled, 0);
    // Two abandoned with the overlap, two left incomplete at the end.
    assert_eq!(stats.fragments_dropped, 4);

    // Same with IPv6, the overlap arriving last.
    let inner = udp_segment(1, 2000, &[0x66; 40]);
    let mut w = PcapWriter::new(229, false, false);
    let f = |offset: usize, more: bool, piece: &[u8]| {
        let mut body = frag6(17, offset, more, 4).to_vec();
        body.extend_from_slice(piece);
        ipv6(44, &body)
    };
    w.record(1, 0, &f(0, true, &inner[..16]));
    w.record(1, 0, &f(32, false, &inner[32..]));
    w.record(1, 0, &f(8, true, &inner[8..24]));
    let capture = read(&w.finish());
    assert!(capture.datagrams.is_empty());
    assert_eq!(capture.stats.fragments_dropped, 3);
}

#[test]
fn contradicting_last_fragments_are_rejected() {
    let segment = udp_segment(1, 2000, &[0x55; 40]);
    let mut w = PcapWriter::new(101, false, false);
    w.record(1, 0, &ipv4(3, 17, false, 40, &segment[40..]));
    w.record(1, 0, &ipv4(3, 17, false, 24, &segment[24..32])); // ends before data seen
    w.record(1, 0, &ipv4(4, 17, true, 16, &segment[16..32]));
    w.record(1, 0, &ipv4(4, 17, false, 8, &segment[8..16])); // last ends inside data
    w.record(1, 0, &ipv4(5, 17, false, 16, &segment[16..24]));
    w.record(1, 0, &ipv4(5, 17, true, 16, &segment[16..40])); // beyond the known end
    let capture = read(&w.finish());
    assert!(capture.datagrams.is_empty());
    assert_eq!(capture.stats.fragments, 6);
    assert_eq!(capture.stats.fragments_dropped, 6);
}

#[test]
fn exact_duplicate_fragments_are_ignored() {
    let segment = udp_segment(1, 2000, &[0x77; 40]);
    let frags = fragments_v4(8, &segment, 16);
    let mut w = PcapWriter::new(101, false, false);
    w.record(1, 0, &frags[0]);
    w.record(1, 0, &frags[0]);
    w.record(1, 0, &frags[1]);
    w.record(1, 0, &frags[2]);
    w.record(1, 0, &frags[2]); // starts a new reassembly, never completed
    let capture = read(&w.finish());
    assert_eq!(capture.datagrams.len(), 1);
    assert_eq!(capture.datagrams[0].payload, vec![0x77; 40]);
    assert_eq!(capture.stats.fragments, 5);
    assert_eq!(capture.stats.fragments_dropped, 2);
}

#[test]
fn bad_fragments_are_malformed() {
    let mut w = PcapWriter::new(101, false, false);
    // Non-last fragment whose length is not a multiple of 8.
    w.record(1, 0, &ipv4(1, 17, true, 0, &[0; 12]));
    // Empty non-last fragment.
    w.record(1, 0, &ipv4(2, 17, true, 8, &[]));
    // Ends beyond 65535.
    w.record(1, 0, &ipv4(3, 17, false, 65528, &[0; 16]));
    // A Fragment header inside a reassembled IPv6 payload.
    let mut inner = ext8(44).to_vec();
    inner.extend_from_slice(&frag6(17, 0, false, 1));
    inner.extend_from_slice(&udp_segment(1, 2, b"x"));
    let mut w6 = PcapWriter::new(229, false, false);
    for p in fragments_v6(1, false, &inner, 8) {
        let mut p = p;
        p[40] = 60; // the fragment header's next header: destination options
        w6.record(1, 0, &p);
    }
    let capture = read(&w.finish());
    assert_eq!(capture.stats.malformed, 3);
    assert_eq!(capture.stats.fragments, 0);
    let capture = read(&w6.finish());
    assert!(capture.datagrams.is_empty());
    assert_eq!(capture.stats.reassembled, 1);
    assert_eq!(capture.stats.malformed, 1);
}

#[test]
fn eviction_by_count() {
    let mut w = PcapWriter::new(101, false, false);
    let segment = |id: u16| udp_segment(1, 2000, &[id as u8; 16]);
    let first = |id: u16| ipv4(id, 17, true, 0, &segment(id)[..16]);
    let last = |id: u16| ipv4(id, 17, false, 16, &segment(id)[16..]);
    for id in 0..=64u16 {
        w.record(1, 0, &first(id)); // the 65th evicts id 0
    }
    w.record(2, 0, &last(0)); // too late: starts a new one, evicting id 1
    w.record(3, 0, &last(64));
    let capture = read(&w.finish());
    assert_eq!(capture.datagrams.len(), 1);
    assert_eq!(capture.datagrams[0].payload, [64u8; 16]);
    let stats = &capture.stats;
    assert_eq!(stats.fragments, 67);
    assert_eq!(stats.reassembled, 1);
    // 2 evicted + 63 incomplete at the end.
    assert_eq!(stats.fragments_dropped, 65);
}

#[test]
fn eviction_by_bytes() {
    // Each first fragment holds 60000 bytes: four fit in 256 KiB, five
    // do not.
    let segment = |id: u16| udp_segment(1, 2000, &vec![id as u8; 60_000]);
    let mut w = PcapWriter::new(101, false, false);
    for id in 0..5u16 {
        w.record(1, 0, &ipv4(id, 17, true, 0, &segment(id)[..60_000]));
    }
    w.record(2, 0, &ipv4(0, 17, false, 60_000, &segment(0)[60_000..]));
    w.record(3, 0, &ipv4(4, 17, false, 60_000, &segment(4)[60_000..]));
    let mut reader = DatagramReader::new(&w.out, &ReadOptions::default()).unwrap();
    let mut got = Vec::new();
    while let Some(d) = reader.next() {
        assert!(reader.parser.decoder.reassembler.pending_bytes() <= DEFAULT_MAX_PENDING_FRAGMENT_BYTES);
        got.push(d.unwrap());
    }
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, vec![4u8; 60_000]);
    let stats = reader.stats();
    assert_eq!(stats.fragments, 7);
    assert_eq!(stats.reassembled, 1);
    assert_eq!(stats.fragments_dropped, 5);
}

#[test]
fn custom_reassembly_limits() {
    let segment = udp_segment(1, 2000, &[1; 40]);
    let frags = fragments_v4(1, &segment, 16);
    let mut w = PcapWriter::new(101, false, false);
    for f in &frags {
        w.record(1, 0, f);
    }
    let bytes = w.finish();
    let run = |limits| {
        let mut reader = DatagramReader::with_limits(&bytes, &ReadOptions::default(), limits).unwrap();
        let n = reader.by_ref().count();
        (n, reader.into_stats())
    };
    // Nothing may be pending: every fragment is dropped.
    let (n, stats) = run(ReassemblyLimits { max_pending: 0, max_pending_bytes: 1 << 20 });
    assert_eq!((n, stats.fragments_dropped), (0, 3));
    // Too few bytes for the whole datagram: abandoned.
    let (n, stats) = run(ReassemblyLimits { max_pending: 4, max_pending_bytes: 20 });
    assert_eq!(n, 0);
    assert_eq!(stats.fragments_dropped, 3);
    // Just enough.
    let (n, stats) = run(ReassemblyLimits { max_pending: 1, max_pending_bytes: 48 });
    assert_eq!((n, stats.fragments_dropped, stats.reassembled), (1, 0, 1));
}

// ---------------------------------------------------------------
// Filtering and record-level problems.
// ---------------------------------------------------------------

#[test]
fn port_filter_matches_destination_port() {
    let mut w = PcapWriter::new(1, false, false);
    w.record(1, 0, &frame(1, &ipv4_udp(9, 2000, b"a"), false));
    w.record(1, 0, &frame(1, &ipv4_udp(2000, 2001, b"b"), false));
    w.record(1, 0, &frame(1, &ipv6_udp(9, 2000, b"c"), false));
    let bytes = w.finish();
    let capture = read_capture_checked(&bytes, &ReadOptions { port: Some(2000), repair_port: None }).unwrap();
    let payloads: Vec<_> = capture.datagrams.iter().map(|d| d.payload.clone()).collect();
    assert_eq!(payloads, vec![b"a".to_vec(), b"c".to_vec()]);
    assert_eq!(capture.stats.skipped_port, 1);
    assert_eq!(capture.stats.udp_datagrams, 2);
    assert_eq!(read(&bytes).datagrams.len(), 3);
    // The FEC repair port is kept with the session's, with its port.
    let capture = read_capture_checked(&bytes, &ReadOptions { port: Some(2000), repair_port: Some(2001) }).unwrap();
    let ports: Vec<_> = capture.datagrams.iter().map(|d| d.destination.map(|a| a.port())).collect();
    assert_eq!(ports, vec![Some(2000), Some(2001), Some(2000)]);
    assert_eq!(capture.stats.skipped_port, 0);
}

#[test]
fn truncated_records_are_counted_and_skipped() {
    let f = frame(1, &ipv4_udp(1, 2, b"full"), false);
    let mut w = PcapWriter::new(1, false, false);
    w.record_with_len(1, 0, &f[..30], f.len() as u32);
    w.record(2, 0, &f);
    let capture = read(&w.finish());
    assert_eq!(capture.datagrams.len(), 1);
    assert_eq!(capture.stats.records, 2);
    assert_eq!(capture.stats.truncated_records, 1);
    assert!(!capture.stats.truncated_tail);
}

#[test]
fn truncated_tail_stops_cleanly() {
    let f = frame(1, &ipv4_udp(1, 2, b"full"), false);
    let mut w = PcapWriter::new(1, false, false);
    w.record(1, 0, &f).record(2, 0, &f);
    let bytes = w.finish();
    let second = 24 + 16 + f.len();
    for cut in [second + 1, second + 15, second + 16, bytes.len() - 1] {
        let capture = read(&bytes[..cut]);
        assert_eq!(capture.datagrams.len(), 1, "cut at {cut}");
        assert_eq!(capture.stats.records, 1);
        assert!(capture.stats.truncated_tail);
    }
    // A header-only file is a valid, empty capture.
    let capture = read(&bytes[..24]);
    assert!(capture.datagrams.is_empty());
    assert_eq!(capture.stats, CaptureStats::default());
    // A record claiming 4 GiB.
    let mut huge = bytes[..24].to_vec();
    huge.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    assert!(read(&huge).stats.truncated_tail);
}

#[test]
fn incomplete_reassembly_at_end_is_dropped() {
    let frags = fragments_v4(1, &udp_segment(1, 2, &[0; 40]), 16);
    let mut w = PcapWriter::new(101, false, false);
    w.record(1, 0, &frags[0]).record(1, 0, &frags[1]);
    let capture = read(&w.finish());
    assert!(capture.datagrams.is_empty());
    assert_eq!(capture.stats.fragments, 2);
    assert_eq!(capture.stats.fragments_dropped, 2);
}

// ---------------------------------------------------------------
// .datagrams files.
// ---------------------------------------------------------------

#[test]
fn datagrams_file_reads_back() {
    let big = vec![0xab; 65_535];
    let bytes = datagrams_file(&[b"one", b"", &big, b"\x40\x00"]);
    let capture = read(&bytes);
    assert_eq!(capture.format, Format::Datagrams);
    let payloads: Vec<&[u8]> = capture.datagrams.iter().map(|d| d.payload.as_slice()).collect();
    assert_eq!(payloads, vec![&b"one"[..], b"", &big, b"\x40\x00"]);
    assert!(capture.datagrams.iter().all(|d| d.timestamp.is_none() && d.source.is_none() && d.destination.is_none()));
    assert_eq!(capture.stats.records, 4);
    assert_eq!(capture.stats.udp_datagrams, 4);
}

#[test]
fn truncated_datagrams_file_is_an_exact_error() {
    let bytes = datagrams_file(&[b"hello", b"world!"]);
    // Cut inside the second record's payload and length field.
    for cut in [9 + 5, 9 + 4, 9 + 1] {
        match read_capture_checked(&bytes[..cut], &ReadOptions::default()) {
            Err(CaptureError::Truncated { offset: 9 }) => {}
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    // Cut inside the first record.
    for cut in [1, 3, 4, 8] {
        match read_capture_checked(&bytes[..cut], &ReadOptions::default()) {
            Err(CaptureError::Truncated { offset: 0 }) => {}
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    // The streaming reader yields what came before, then the error,
    // then nothing.
    let mut reader = DatagramReader::new(&bytes[..12], &ReadOptions::default()).unwrap();
    assert_eq!(reader.next().unwrap().unwrap().payload, b"hello");
    assert!(matches!(reader.next(), Some(Err(CaptureError::Truncated { offset: 9 }))));
    assert!(reader.next().is_none());
}

#[test]
fn overlong_datagram_record_is_an_error() {
    let mut bytes = datagrams_file(&[b"ok"]);
    bytes.extend_from_slice(&65_536u32.to_be_bytes());
    bytes.extend_from_slice(&[0; 16]);
    match read_capture_checked(&bytes, &ReadOptions::default()) {
        Err(CaptureError::DatagramTooLong { offset: 6, len: 65_536 }) => {}
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------
// File-level errors.
// ---------------------------------------------------------------

#[test]
fn file_level_errors() {
    let opts = ReadOptions::default();
    assert!(matches!(read_capture_checked(&[], &opts), Err(CaptureError::Empty)));

    let mut pcapng = vec![0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a];
    pcapng.extend_from_slice(&[0; 16]);
    let err = read_capture_checked(&pcapng, &opts).unwrap_err();
    assert!(matches!(err, CaptureError::BadPcapNg { offset: 0, .. }), "{err}");
    assert!(err.to_string().contains("pcapng"));

    let err = read_capture_checked(b"GET / HTTP/1.1\r\n", &opts).unwrap_err();
    assert!(matches!(err, CaptureError::UnknownFormat { first_bytes: [b'G', b'E', b'T', b' '] }));
    // A first "record" longer than 65535 is not a .datagrams file.
    assert!(matches!(read_capture_checked(&[0, 1, 0, 0, 0], &opts), Err(CaptureError::UnknownFormat { .. })));

    for big in [false, true] {
        let w = PcapWriter::new(147, big, false);
        assert!(matches!(read_capture_checked(&w.finish(), &opts), Err(CaptureError::UnsupportedLinkType(147))));
        let header = PcapWriter::new(1, big, true).finish();
        for cut in [4, 23] {
            assert!(matches!(read_capture_checked(&header[..cut], &opts), Err(CaptureError::BadHeader(_))));
        }
        let mut bad_version = header.clone();
        bad_version[4..6].copy_from_slice(&[1, 1]);
        assert!(matches!(read_capture_checked(&bad_version, &opts), Err(CaptureError::BadHeader(_))));
    }
}

/// A reader that fails after `ok` bytes.
#[derive(Debug)]
struct FailingAfter<'a> {
    bytes: &'a [u8],
    ok: usize,
}

impl std::io::Read for FailingAfter<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.ok == 0 {
            return Err(std::io::Error::other("disk on fire"));
        }
        let n = out.len().min(self.ok).min(self.bytes.len());
        out[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        self.ok -= n;
        Ok(n)
    }
}

#[test]
fn a_read_error_mid_file_ends_the_stream_with_an_io_error_naming_the_file() {
    let bytes = datagrams_file(&[b"hello", b"world!"]);
    let input = FailingAfter { bytes: &bytes, ok: 10 };
    let path = Path::new("/captures/x.datagrams");
    let opts = ReadOptions::default();
    let mut reader = CaptureReader::with_limits(input, path, &opts, ReassemblyLimits::default(), 4).unwrap();
    assert_eq!(reader.next().unwrap().unwrap().payload, b"hello");
    match reader.next() {
        Some(Err(CaptureError::Io { path: p, source })) => {
            assert_eq!(p, path);
            assert_eq!(source.to_string(), "disk on fire");
        }
        other => panic!("{other:?}"),
    }
    assert!(reader.next().is_none());
    // Failing before the format is known fails the open.
    let input = FailingAfter { bytes: &bytes, ok: 0 };
    let err = CaptureReader::new(input, path, &opts).unwrap_err();
    assert!(matches!(err, CaptureError::Io { .. }), "{err}");
}

#[test]
fn a_long_capture_is_read_in_bounded_memory() {
    // 64 MiB of 1 000-byte datagrams, generated as it is read.
    struct Generated {
        left: usize,
        record: Vec<u8>,
        at: usize,
    }
    impl std::io::Read for Generated {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let mut n = 0;
            while n < out.len() && self.left > 0 {
                let take = (self.record.len() - self.at).min(out.len() - n);
                out[n..n + take].copy_from_slice(&self.record[self.at..self.at + take]);
                n += take;
                self.at += take;
                if self.at == self.record.len() {
                    self.at = 0;
                    self.left -= 1;
                }
            }
            Ok(n)
        }
    }
    let count = 64 * 1024 * 1024 / 1004;
    let record = datagrams_file(&[&[0x5a; 1000]]);
    let input = Generated { left: count, record, at: 0 };
    let mut reader = CaptureReader::new(input, Path::new("generated"), &ReadOptions::default()).unwrap();
    let mut seen = 0;
    let mut most_held = 0;
    while let Some(item) = reader.next() {
        assert_eq!(item.unwrap().payload, [0x5a; 1000]);
        seen += 1;
        most_held = most_held.max(reader.held_bytes());
    }
    assert_eq!(seen, count);
    assert_eq!(reader.stats().udp_datagrams, count as u64);
    assert!(most_held <= 2 * stream::DEFAULT_CHUNK_LEN, "held {most_held} bytes");
}

#[test]
fn read_capture_file_reports_the_path() {
    let missing = Path::new("/nonexistent/h3m-capture-test.pcap");
    let err = read_capture_file(missing, &ReadOptions::default()).unwrap_err();
    match &err {
        CaptureError::Io { path, source } => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("/nonexistent/h3m-capture-test.pcap"));

    let path = std::env::temp_dir().join(format!("h3m-capture-{}.bin", std::process::id()));
    let mut w = PcapWriter::new(1, false, false);
    w.record(1, 0, &frame(1, &ipv4_udp(1, 2, b"file"), false));
    std::fs::write(&path, w.finish()).unwrap();
    let capture = read_capture_file(&path, &ReadOptions::default());
    std::fs::remove_file(&path).unwrap();
    assert_eq!(capture.unwrap().datagrams[0].payload, b"file");
}

// ---------------------------------------------------------------
// Property tests.
// ---------------------------------------------------------------

/// One datagram of a generated capture.
#[derive(Debug, Clone)]
struct Spec {
    v6: bool,
    payload: Vec<u8>,
    src_port: u16,
    dst_port: u16,
    /// Fragment size in 8-byte units (None: not fragmented).
    chunk: Option<usize>,
    hop_by_hop: bool,
    shuffle: u64,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..3000),
        any::<u16>(),
        any::<u16>(),
        prop::option::of(1usize..200),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(v6, payload, src_port, dst_port, chunk, hop_by_hop, shuffle)| Spec {
            v6,
            payload,
            src_port,
            dst_port,
            chunk,
            hop_by_hop,
            shuffle,
        })
}

fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let j = (seed % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// Builds a pcap of `specs`; returns it with the expected datagrams.
fn build(link_type: u32, big: bool, nanos: bool, specs: &[Spec]) -> (Vec<u8>, Vec<Datagram>, u64) {
    let mut w = PcapWriter::new(link_type, big, nanos);
    let mut expected = Vec::new();
    let mut fragmented = 0;
    let mut t = 0u32;
    for (i, s) in specs.iter().enumerate() {
        let v6 = match link_type {
            228 => false,
            229 => true,
            _ => s.v6,
        };
        let segment = udp_segment(s.src_port, s.dst_port, &s.payload);
        let mut packets = match s.chunk {
            Some(units) if units * 8 < segment.len() => {
                fragmented += 1;
                if v6 {
                    fragments_v6(i as u32, s.hop_by_hop, &segment, units * 8)
                } else {
                    fragments_v4(i as u16, &segment, units * 8)
                }
            }
            _ if v6 && s.hop_by_hop => {
                let mut body = ext8(17).to_vec();
                body.extend_from_slice(&segment);
                vec![ipv6(0, &body)]
            }
            _ if v6 => vec![ipv6(17, &segment)],
            _ => vec![ipv4(i as u16, 17, false, 0, &segment)],
        };
        shuffle(&mut packets, s.shuffle);
        for p in &packets {
            t += 1;
            w.record(t, 999, &frame(link_type, p, big));
        }
        let frac = if nanos { 999 } else { 999_000 };
        let (source, destination) = if v6 {
            (v6_addr(s.src_port, v6_src()), v6_addr(s.dst_port, v6_dst()))
        } else {
            (v4_addr(s.src_port, V4_SRC), v4_addr(s.dst_port, V4_DST))
        };
        expected.push(Datagram {
            timestamp: Some(Duration::new(u64::from(t), frac)),
            source,
            destination,
            payload: s.payload.clone(),
        });
    }
    (w.finish(), expected, fragmented)
}

/// Reads `bytes` with the streaming reader, checking the reassembly
/// bounds after every step.
fn read_checked(bytes: &[u8]) -> Result<Capture, CaptureError> {
    let capture = read_checked_whole(bytes);
    assert_streamed_alike(bytes, &ReadOptions::default(), &capture);
    capture
}

fn read_checked_whole(bytes: &[u8]) -> Result<Capture, CaptureError> {
    let mut reader = DatagramReader::new(bytes, &ReadOptions::default())?;
    let mut datagrams = Vec::new();
    while let Some(item) = reader.next() {
        datagrams.push(item?);
        let r = &reader.parser.decoder.reassembler;
        assert!(r.pending() <= DEFAULT_MAX_PENDING_REASSEMBLIES);
        assert!(r.pending_bytes() <= DEFAULT_MAX_PENDING_FRAGMENT_BYTES);
    }
    let stats = reader.stats().clone();
    assert_eq!(stats.udp_datagrams, datagrams.len() as u64);
    assert!(stats.fragments_dropped + stats.reassembled <= stats.fragments);
    Ok(Capture { format: reader.format(), datagrams, stats })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_captures_read_back(
        link in prop::sample::select(LINK_TYPES.to_vec()),
        big in any::<bool>(),
        nanos in any::<bool>(),
        specs in prop::collection::vec(spec(), 0..8),
    ) {
        let (bytes, expected, fragmented) = build(link, big, nanos, &specs);
        let capture = read_checked(&bytes).unwrap();
        prop_assert_eq!(capture.format, Format::Pcap { link_type: link, nanosecond: nanos });
        prop_assert_eq!(&capture.datagrams, &expected);
        prop_assert_eq!(capture.stats.reassembled, fragmented);
        prop_assert_eq!(capture.stats.fragments_dropped, 0);
        prop_assert_eq!(capture.stats.malformed, 0);
        prop_assert_eq!(capture.stats.skipped_non_udp, 0);
    }

    #[test]
    fn mutated_captures_never_panic(
        link in prop::sample::select(LINK_TYPES.to_vec()),
        big in any::<bool>(),
        specs in prop::collection::vec(spec(), 1..5),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
        cut in any::<prop::sample::Index>(),
    ) {
        let (mut bytes, _, _) = build(link, big, false, &specs);
        for (at, value) in edits {
            // Keep the file header so the packet decoders are reached.
            let at = 24 + at.index(bytes.len() - 24);
            bytes[at] = value;
        }
        let cut = 24 + cut.index(bytes.len() - 23);
        let capture = read_checked(&bytes[..cut]).unwrap();
        prop_assert!(capture.stats.records <= bytes.len() as u64);
    }

    #[test]
    fn random_records_never_panic(
        link in prop::sample::select(LINK_TYPES.to_vec()),
        big in any::<bool>(),
        records in prop::collection::vec(
            (any::<u16>(), prop::collection::vec(any::<u8>(), 0..200)), 0..20),
        tail in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut w = PcapWriter::new(link, big, false);
        for (prefix, body) in &records {
            // Give the link layer and IP a fair chance: a plausible link
            // header or IP version nibble, then random bytes.
            let mut data = match link {
                1 => {
                    let mut f = vec![0; 12];
                    f.extend_from_slice(if prefix % 2 == 0 { &[0x08, 0x00] } else { &[0x86, 0xdd] });
                    f
                }
                _ => Vec::new(),
            };
            data.push(if prefix % 3 == 0 { 0x45 } else { 0x60 });
            data.extend_from_slice(body);
            w.record(u32::from(*prefix), 0, &data);
        }
        let mut bytes = w.finish();
        bytes.extend_from_slice(&tail);
        read_checked(&bytes).unwrap();
    }

    #[test]
    fn random_bytes_after_pcap_header_never_panic(
        link in prop::sample::select(LINK_TYPES.to_vec()),
        big in any::<bool>(),
        nanos in any::<bool>(),
        body in prop::collection::vec(any::<u8>(), 0..2000),
    ) {
        let mut bytes = PcapWriter::new(link, big, nanos).finish();
        bytes.extend_from_slice(&body);
        read_checked(&bytes).unwrap();
    }

    #[test]
    fn random_bytes_as_datagrams_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..2000),
    ) {
        let _ = read_checked(&bytes);
    }

    #[test]
    fn random_datagram_records_read_back(
        records in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..20),
        cut in any::<prop::sample::Index>(),
    ) {
        let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let bytes = datagrams_file(&slices);
        let capture = read_checked(&bytes).unwrap();
        let payloads: Vec<Vec<u8>> = capture.datagrams.into_iter().map(|d| d.payload).collect();
        prop_assert_eq!(&payloads, &records);
        // Any proper cut is either a clean record boundary or Truncated.
        let cut = cut.index(bytes.len());
        match read_checked(&bytes[..cut]) {
            Ok(c) => prop_assert!(c.datagrams.len() < records.len()),
            Err(CaptureError::Truncated { offset }) => prop_assert!(offset < cut as u64),
            Err(CaptureError::Empty) => prop_assert_eq!(cut, 0),
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }
}
