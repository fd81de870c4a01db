//! Capture reading: classic pcap and pcapng (every link type, IPv4/IPv6,
//! fragments) and `.datagrams` files, detected by content.
//!
//! The input is a whole capture file, read with `read_capture` and the default
//! options, then again with a port filter (2000, the vectors' port). Checks:
//! the counters agree with what was returned, payloads fit a UDP datagram,
//! `.datagrams` files carry no addresses (pcap and pcapng datagrams do, and a
//! timestamp but for pcapng Simple Packet Blocks), the port filter keeps
//! exactly the datagrams to that port.
#![no_main]

use h3m_receiver::capture::{Format, MAX_DATAGRAM_LEN, ReadOptions, read_capture};
use libfuzzer_sys::fuzz_target;

const PORT: u16 = 2000;

fuzz_target!(|data: &[u8]| {
    let Ok(all) = read_capture(data, &ReadOptions::default()) else {
        return;
    };
    assert_eq!(all.stats.udp_datagrams, all.datagrams.len() as u64);
    assert_eq!(all.stats.skipped_port, 0);
    for d in &all.datagrams {
        assert!(d.payload.len() <= MAX_DATAGRAM_LEN as usize);
        if all.format == Format::Datagrams {
            assert!(d.timestamp.is_none() && d.source.is_none() && d.destination.is_none());
        } else {
            assert!(d.source.is_some() && d.destination.is_some());
            assert!(d.timestamp.is_some() || all.format == Format::PcapNg);
        }
    }

    let filtered = read_capture(data, &ReadOptions { port: Some(PORT) }).expect("the same file reads again");
    assert_eq!(filtered.format, all.format);
    assert_eq!(filtered.stats.udp_datagrams, filtered.datagrams.len() as u64);
    let expected: Vec<_> = if all.format == Format::Datagrams {
        all.datagrams.clone()
    } else {
        all.datagrams.iter().filter(|d| d.destination.is_some_and(|a| a.port() == PORT)).cloned().collect()
    };
    assert_eq!(filtered.datagrams, expected);
    assert_eq!(filtered.stats.skipped_port + filtered.stats.udp_datagrams, all.stats.udp_datagrams);
});
