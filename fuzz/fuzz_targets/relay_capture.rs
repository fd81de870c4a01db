//! The relay's capture splitter: a virtio-net header (the first 10 octets)
//! and a captured IP packet (the rest), as an AF_PACKET socket with
//! `PACKET_VNET_HDR` delivers them.
//!
//! `relay_capture::split` never panics; whatever it produces is forwardable:
//! a `Whole(n)` prefix of the packet, or packets in `Segments` that each parse
//! as a multicast UDP datagram with valid checksums (`inner::parse_udp`), all
//! with the source and group of the first, at most `MAX_SEGMENTS` of them,
//! and for a split, payloads of `gso_size` octets but the last.
#![no_main]

use h3m_amt::inner::parse_udp;
use h3m_amt::relay_capture::{MAX_SEGMENTS, Outcome, Segments, VnetHeader, split};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(vnet) = VnetHeader::parse(data) else { return };
    assert_eq!(VnetHeader::parse(&vnet.to_bytes()), Some(vnet));
    let packet = &data[10..];
    let mut out = Segments::new();
    match split(&vnet, packet, &mut out) {
        Ok(Outcome::Ignored) | Err(_) => {}
        Ok(Outcome::Whole(n)) => assert!(n <= packet.len()),
        Ok(Outcome::ChecksumCompleted) => {
            assert_eq!(out.len(), 1);
            let p = out.iter().next().unwrap();
            parse_udp(p).expect("a completed packet parses");
        }
        Ok(Outcome::Split(n)) => {
            assert_eq!(n, out.len());
            assert!((1..=MAX_SEGMENTS).contains(&n));
            let parsed: Vec<_> = out.iter().map(|p| parse_udp(p).expect("every segment parses")).collect();
            for (i, d) in parsed.iter().enumerate() {
                assert_eq!((d.source, d.destination), (parsed[0].source, parsed[0].destination));
                if i + 1 < parsed.len() {
                    assert_eq!(d.payload.len(), usize::from(vnet.gso_size));
                } else {
                    assert!(d.payload.len() <= usize::from(vnet.gso_size));
                }
            }
        }
    }
});
