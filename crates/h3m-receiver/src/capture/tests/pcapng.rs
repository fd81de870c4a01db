//! pcapng input: conversions of pcap files read back the same, interfaces
//! with their own link types and timestamp units, sections in either byte
//! order, Simple Packet Blocks, and every structural error; property tests.

use super::*;

#[path = "../../../tests/support/pcapng.rs"]
mod writer;

use writer::{Conversion, PcapNgWriter, from_pcap};

const PLAIN: Conversion = Conversion { big: false, tsresol: None, tsoffset: 0, decoy: false };

/// A pcap of a few datagrams, IPv4 and IPv6, one fragmented.
fn sample_pcap(link_type: u32, big: bool, nanos: bool) -> Vec<u8> {
    let mut w = PcapWriter::new(link_type, big, nanos);
    let frac = if nanos { 123_456_789 } else { 123_456 };
    if link_type != 229 {
        w.record(1_795_795_217, frac, &frame(link_type, &ipv4_udp(4000, 2000, b"four"), big));
        for (i, f) in fragments_v4(9, &udp_segment(4000, 2000, &[7; 100]), 48).iter().enumerate() {
            w.record(1_795_795_218 + i as u32, 5, &frame(link_type, f, big));
        }
    }
    if link_type != 228 {
        w.record(1_795_795_230, frac, &frame(link_type, &ipv6_udp(4001, 2000, b"six"), big));
    }
    w.finish()
}

fn read_ng(bytes: &[u8]) -> Capture {
    let capture = read_capture_checked(bytes, &ReadOptions::default()).unwrap();
    assert_eq!(capture.format, Format::PcapNg);
    capture
}

fn bad_pcapng(bytes: &[u8]) -> (u64, String) {
    match read_capture_checked(bytes, &ReadOptions::default()) {
        Err(CaptureError::BadPcapNg { offset, reason }) => (offset, reason),
        other => panic!("expected BadPcapNg, got {other:?}"),
    }
}

#[test]
fn converted_pcaps_read_back_the_same() {
    let conversions = [
        PLAIN,
        Conversion { big: true, ..PLAIN },
        Conversion { tsresol: Some(9), tsoffset: 1_700_000_000, ..PLAIN },
        Conversion { tsresol: Some(9), tsoffset: -5, ..PLAIN },
        Conversion { big: true, tsresol: Some(12), tsoffset: 1_795_000_000, decoy: true },
    ];
    for link_type in LINK_TYPES {
        for (big, nanos) in [(false, false), (true, false), (false, true)] {
            let pcap = sample_pcap(link_type, big, nanos);
            let want = read(&pcap);
            for how in conversions {
                if nanos && how.tsresol.unwrap_or(6) < 9 {
                    continue;
                }
                let got = read_ng(&from_pcap(&pcap, how));
                assert_eq!(got.datagrams, want.datagrams, "link {link_type} big {big} nanos {nanos} {how:?}");
                let mut stats = want.stats.clone();
                if how.decoy {
                    stats.records += 1;
                    stats.skipped_non_udp += 1;
                }
                assert_eq!(got.stats, stats, "link {link_type} {how:?}");
            }
        }
    }
}

#[test]
fn each_interface_has_its_link_type_and_timestamp_units() {
    let v4 = ipv4_udp(1, 2000, b"ether");
    let v6 = ipv6_udp(1, 2000, b"raw6");
    let mut w = PcapNgWriter::new(false);
    w.interface(1, 0, None, None); // microseconds
    w.interface(229, 0, Some(9), Some(100)); // nanoseconds, +100 s
    w.interface(101, 0, Some(0x80 | 20), None); // 2^-20 s
    w.interface(113, 0, Some(0), Some(-1)); // seconds, -1 s
    w.epb(0, 1_500_000, &frame(1, &v4, false), 0);
    w.epb(1, 2_000_000_123, &v6, 0);
    w.epb(2, (3 << 20) | (1 << 19), &ipv4_udp(1, 2000, b"raw"), 0);
    w.epb(3, 10, &frame(113, &v6, false), 0);
    let capture = read_ng(&w.finish());
    let got: Vec<_> = capture.datagrams.iter().map(|d| (d.payload.as_slice(), d.timestamp)).collect();
    assert_eq!(
        got,
        vec![
            (&b"ether"[..], Some(Duration::new(1, 500_000_000))),
            (&b"raw6"[..], Some(Duration::new(102, 123))),
            (&b"raw"[..], Some(Duration::new(3, 500_000_000))),
            (&b"raw6"[..], Some(Duration::from_secs(9))),
        ]
    );
    assert_eq!(capture.stats.records, 4);
}

#[test]
fn sections_reset_interfaces_and_byte_order() {
    let mut w = PcapNgWriter::new(false);
    w.interface(229, 0, None, None);
    w.epb(0, 1, &ipv6_udp(1, 2, b"first"), 0);
    w.section(true);
    w.interface(1, 0, Some(9), None);
    w.epb(0, 2, &frame(1, &ipv4_udp(1, 2, b"second"), true), 0);
    let capture = read_ng(&w.finish());
    let payloads: Vec<_> = capture.datagrams.iter().map(|d| d.payload.clone()).collect();
    assert_eq!(payloads, vec![b"first".to_vec(), b"second".to_vec()]);
    assert_eq!(capture.datagrams[1].timestamp, Some(Duration::from_nanos(2)));
    // Interface 1 of the first section is gone in the second.
    w.epb(1, 3, &ipv6_udp(1, 2, b"x"), 0);
    let (_, reason) = bad_pcapng(&w.finish());
    assert!(reason.contains("interface 1"), "{reason}");
}

#[test]
fn simple_packets_truncation_and_unsupported_links() {
    let p = ipv4_udp(1, 2, b"simple");
    let mut w = PcapNgWriter::new(false);
    w.interface(101, 30, None, None);
    w.interface(147, 0, None, None);
    w.spb(&p[..30], p.len() as u32); // cut by the snap length
    w.spb(&ipv4_udp(1, 2, b"x"), 29); // fits
    w.epb(0, 7, &p[..20], p.len() as u32); // captured short
    w.epb(1, 7, b"whatever", 8); // unsupported link type
    w.block(4, &[0, 0, 0, 0]); // name resolution: skipped
    w.block(0x1234, b"unknown"); // unknown block: skipped
    let capture = read_ng(&w.finish());
    assert_eq!(capture.datagrams.len(), 1);
    assert_eq!((capture.datagrams[0].payload.as_slice(), capture.datagrams[0].timestamp), (&b"x"[..], None));
    let stats = &capture.stats;
    assert_eq!((stats.records, stats.truncated_records, stats.skipped_non_udp), (4, 2, 1));
}

#[test]
fn truncated_tail_stops_cleanly() {
    let mut w = PcapNgWriter::new(false);
    w.interface(101, 0, None, None);
    w.epb(0, 1, &ipv4_udp(1, 2, b"one"), 0);
    let first = w.finish().len();
    w.epb(0, 2, &ipv4_udp(1, 2, b"two"), 0);
    let bytes = w.finish();
    for cut in [first + 1, first + 7, first + 8, bytes.len() - 1] {
        let capture = read_ng(&bytes[..cut]);
        assert_eq!(capture.datagrams.len(), 1, "cut at {cut}");
        assert!(capture.stats.truncated_tail);
    }
    // Only the section header: an empty capture.
    let capture = read_ng(&PcapNgWriter::new(true).finish());
    assert_eq!((capture.datagrams.len(), capture.stats.clone()), (0, CaptureStats::default()));
}

#[test]
fn structural_errors() {
    let shb = PcapNgWriter::new(false).finish();
    // Cut inside the section header block.
    for cut in [4, 11, 12, shb.len() - 1] {
        assert_eq!(bad_pcapng(&shb[..cut]).0, 0, "cut at {cut}");
    }
    // Unknown byte-order magic, bad version.
    let mut bom = shb.clone();
    bom[8] = 0x11;
    assert!(bad_pcapng(&bom).1.contains("byte-order"));
    let mut version = shb.clone();
    version[12] = 2;
    assert!(bad_pcapng(&version).1.contains("version 2.0"));
    // Block lengths below 12 or not a multiple of 4, and inconsistent ones.
    for len in [8u32, 13] {
        let mut b = shb.clone();
        b.extend_from_slice(&6u32.to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&[0; 16]);
        assert_eq!(bad_pcapng(&b).0, shb.len() as u64);
    }
    let mut w = PcapNgWriter::new(false);
    w.interface(101, 0, None, None).epb(0, 1, &ipv4_udp(1, 2, b"x"), 0);
    let good = w.finish();
    let mut trailer = good.clone();
    let n = trailer.len();
    trailer[n - 4] ^= 4; // trailing length differs from the leading one
    assert!(bad_pcapng(&trailer).1.contains("enhanced packet block does not parse"));
    let mut caplen = good.clone();
    // The EPB's captured length field: 28 octets of header, 29 of packet
    // padded to 32, 4 of trailing length; the field is 20 octets in.
    let epb = good.len() - (28 + 32 + 4) + 20;
    caplen[epb..epb + 4].copy_from_slice(&1000u32.to_le_bytes());
    let (offset, reason) = bad_pcapng(&caplen);
    assert!(reason.contains("enhanced packet block"), "{reason} at {offset}");
    // Packets of undefined interfaces, simple packets without interfaces.
    let mut w = PcapNgWriter::new(false);
    w.epb(0, 1, b"x", 1);
    assert!(bad_pcapng(&w.finish()).1.contains("packet of interface 0, but the section describes 0"));
    let mut w = PcapNgWriter::new(false);
    w.spb(b"x", 1);
    assert!(bad_pcapng(&w.finish()).1.contains("without interfaces"));
    // Timestamp resolutions beyond 64 bits, timestamps before 1970.
    for tsresol in [20, 0x80 | 64] {
        let mut w = PcapNgWriter::new(true);
        w.interface(101, 0, Some(tsresol), None);
        assert!(bad_pcapng(&w.finish()).1.contains("if_tsresol"), "{tsresol:#x}");
    }
    let mut w = PcapNgWriter::new(false);
    w.interface(101, 0, Some(0x80 | 63), Some(i64::MIN)).epb(0, u64::MAX, &ipv4_udp(1, 2, b"x"), 0);
    assert!(bad_pcapng(&w.finish()).1.contains("timestamp out of range"));
    // The message names the format and the offset.
    let err = read_capture_checked(&bom, &ReadOptions::default()).unwrap_err().to_string();
    assert!(err.starts_with("malformed pcapng at offset 0: "), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn mutated_pcapng_never_panics(
        link in prop::sample::select(LINK_TYPES.to_vec()),
        big in any::<bool>(),
        decoy in any::<bool>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..16),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = from_pcap(&sample_pcap(link, big, false), Conversion { big, decoy, ..PLAIN });
        let n = bytes.len();
        for (at, value) in edits {
            // Keep the section header so the blocks are reached.
            bytes[28 + at.index(n - 28)] = value;
        }
        let cut = cut.index(n + 1);
        if let Ok(capture) = read_checked(&bytes[..cut]) {
            prop_assert!(capture.stats.records <= cut as u64);
        }
    }

    #[test]
    fn random_blocks_never_panic(
        big in any::<bool>(),
        blocks in prop::collection::vec((0u32..8, prop::collection::vec(any::<u8>(), 0..80)), 0..12),
        tail in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut w = PcapNgWriter::new(big);
        w.interface(1, 0, None, None);
        for (block_type, body) in &blocks {
            w.block(*block_type, body);
        }
        let mut bytes = w.finish();
        bytes.extend_from_slice(&tail);
        let _ = read_checked(&bytes);
    }

    #[test]
    fn random_bytes_after_the_section_header_never_panic(
        big in any::<bool>(), body in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut bytes = PcapNgWriter::new(big).finish();
        bytes.extend_from_slice(&body);
        let _ = read_checked(&bytes);
    }
}
