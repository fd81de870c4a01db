//! Capture reading: classic pcap and pcapng (every link type, IPv4/IPv6,
//! fragments) and `.datagrams` files, detected by content.
//!
//! The input is a whole capture file, read with `read_capture` and the default
//! options, then again with a port filter (2000, the vectors' port). Checks:
//! the counters agree with what was returned, payloads fit a UDP datagram,
//! `.datagrams` files carry no addresses (pcap and pcapng datagrams do, and a
//! timestamp but for pcapng Simple Packet Blocks), the port filter keeps
//! exactly the datagrams to that port. The streaming `CaptureReader`, fed the
//! same bytes a few at a time (a chunk length taken from the first byte, and
//! 4096), gives exactly what `read_capture` gives: the same datagrams, format
//! and counters, or the same error.
#![no_main]

use std::path::Path;

use h3m_receiver::capture::{
    Capture, CaptureError, CaptureReader, Format, MAX_DATAGRAM_LEN, ReadOptions, ReassemblyLimits, read_capture,
};
use libfuzzer_sys::fuzz_target;

const PORT: u16 = 2000;

/// `data` through the streaming reader, `chunk_len` bytes at a time.
fn streamed(data: &[u8], chunk_len: usize) -> Result<Capture, CaptureError> {
    let opts = ReadOptions::default();
    let mut reader = CaptureReader::with_limits(data, Path::new("fuzz"), &opts, ReassemblyLimits::default(), chunk_len)?;
    let mut datagrams = Vec::new();
    for d in reader.by_ref() {
        datagrams.push(d?);
    }
    Ok(Capture { format: reader.format(), datagrams, stats: reader.into_stats() })
}

fuzz_target!(|data: &[u8]| {
    let whole = read_capture(data, &ReadOptions::default());
    let first_chunk = usize::from(data.first().copied().unwrap_or(0) % 64) + 1;
    for chunk_len in [first_chunk, 4096] {
        match (&whole, streamed(data, chunk_len)) {
            (Ok(w), Ok(s)) => assert_eq!(w, &s, "chunks of {chunk_len}"),
            (Err(w), Err(s)) => assert_eq!(w.to_string(), s.to_string(), "chunks of {chunk_len}"),
            (w, s) => panic!("chunks of {chunk_len}: whole {w:?}, streamed {s:?}"),
        }
    }
    let Ok(all) = whole else {
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

    let filtered = read_capture(data, &ReadOptions { port: Some(PORT), repair_port: None }).expect("the same file reads again");
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
