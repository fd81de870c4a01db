//! Ground truth for the capture reader: every nghq scenario's `.pcap` must
//! yield exactly the records of its `.datagrams` file, with timestamps and
//! addresses that agree with its `.expected.json`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use h3m_receiver::capture::{Format, ReadOptions, read_capture, read_capture_file};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop/vectors/nghq");

/// An independent parser of the `.datagrams` format, as the ground truth.
fn parse_datagrams(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        assert!(rest.len() >= 4, "ground-truth file cut inside a length");
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        assert!(rest.len() >= 4 + len, "ground-truth file cut inside a record");
        out.push(rest[4..4 + len].to_vec());
        rest = &rest[4 + len..];
    }
    out
}

/// The raw value of the first `"key": value` in `json` (quotes removed).
fn json_value<'a>(json: &'a str, key: &str) -> &'a str {
    let needle = format!("\"{key}\":");
    let at = json.find(&needle).unwrap_or_else(|| panic!("key {key} not found"));
    let rest = json[at + needle.len()..].trim_start();
    if let Some(quoted) = rest.strip_prefix('"') {
        &quoted[..quoted.find('"').unwrap()]
    } else {
        let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-')).unwrap_or(rest.len());
        &rest[..end]
    }
}

/// Every `"key": number` in `json`, in order.
fn json_numbers(json: &str, key: &str) -> Vec<u64> {
    let needle = format!("\"{key}\":");
    json.match_indices(&needle)
        .map(|(at, _)| {
            let rest = &json[at + needle.len()..];
            let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            rest[..end].parse().unwrap()
        })
        .collect()
}

fn scenarios() -> Vec<PathBuf> {
    let mut pcaps: Vec<PathBuf> = std::fs::read_dir(VECTORS)
        .expect("vectors directory")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "pcap"))
        .collect();
    pcaps.sort();
    pcaps
}

fn sibling(pcap: &Path, extension: &str) -> PathBuf {
    pcap.with_extension(extension)
}

#[test]
fn every_pcap_matches_its_datagrams_file() {
    let mut checked = 0;
    for pcap_path in scenarios() {
        let name = pcap_path.file_stem().unwrap().to_string_lossy().into_owned();
        let json = std::fs::read_to_string(sibling(&pcap_path, "expected.json")).unwrap();
        let truth = parse_datagrams(&std::fs::read(sibling(&pcap_path, "datagrams")).unwrap());

        let capture = read_capture_file(&pcap_path, &ReadOptions::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let link_type: u32 = json_value(&json, "linktype").parse().unwrap();
        assert_eq!(capture.format, Format::Pcap { link_type, nanosecond: false }, "{name}");

        // Same count, same bytes, same order.
        assert_eq!(capture.datagrams.len(), truth.len(), "{name}: datagram count");
        for (i, (got, want)) in capture.datagrams.iter().zip(&truth).enumerate() {
            assert!(got.payload == *want, "{name}: datagram {i} differs");
        }

        // Addresses and ports from the scenario description.
        let group: IpAddr = json_value(&json, "group").parse().unwrap();
        let source: IpAddr = json_value(&json, "source").parse().unwrap();
        let port: u16 = json_value(&json, "port").parse().unwrap();
        let src_ports = json_numbers(&json, "src_port");
        let times_us = json_numbers(&json, "time_us");
        assert_eq!(src_ports.len(), truth.len(), "{name}");
        let first = capture.datagrams[0].timestamp.expect("timestamp");
        for (i, datagram) in capture.datagrams.iter().enumerate() {
            let ts = datagram.timestamp.unwrap_or_else(|| panic!("{name}: no timestamp"));
            assert!(ts > Duration::from_secs(1_500_000_000), "{name}: {ts:?}");
            assert_eq!((ts - first).as_micros(), u128::from(times_us[i]), "{name}: datagram {i} time");
            let destination = datagram.destination.expect("destination");
            assert_eq!(destination.ip(), group, "{name}: group");
            assert_eq!(destination.port(), port, "{name}: port");
            let src = datagram.source.expect("source");
            assert_eq!(src.ip(), source, "{name}: source");
            assert_eq!(u64::from(src.port()), src_ports[i], "{name}: source port");
        }

        // Counters.
        let stats = &capture.stats;
        let frames: u64 = json_value(&json, "link_frames").parse().unwrap();
        let udp: u64 = json_value(&json, "udp_datagrams").parse().unwrap();
        let fragmented = json.matches("\"ip_fragmented\":true").count() as u64;
        assert_eq!(stats.records, frames, "{name}");
        assert_eq!(stats.udp_datagrams, udp, "{name}");
        assert_eq!(stats.reassembled, fragmented, "{name}");
        assert_eq!(stats.fragments_dropped, 0, "{name}");
        assert_eq!(stats.malformed, 0, "{name}");
        assert_eq!(stats.skipped_non_udp, 0, "{name}");
        assert_eq!(stats.truncated_records, 0, "{name}");
        assert!(!stats.truncated_tail, "{name}");

        // The port filter keeps everything on the right port, nothing else.
        let bytes = std::fs::read(&pcap_path).unwrap();
        let same = read_capture(&bytes, &ReadOptions { port: Some(port), repair_port: None }).unwrap();
        assert_eq!(same.datagrams, capture.datagrams, "{name}");
        let other = read_capture(&bytes, &ReadOptions { port: Some(port.wrapping_add(1)), repair_port: None }).unwrap();
        assert!(other.datagrams.is_empty(), "{name}");
        assert_eq!(other.stats.skipped_port, udp, "{name}");

        checked += 1;
    }
    assert_eq!(checked, 18, "number of scenarios checked");
}

#[test]
fn every_datagrams_file_reads_back_as_itself() {
    let mut checked = 0;
    for pcap_path in scenarios() {
        let path = sibling(&pcap_path, "datagrams");
        let bytes = std::fs::read(&path).unwrap();
        let truth = parse_datagrams(&bytes);
        let capture = read_capture_file(&path, &ReadOptions::default()).unwrap();
        assert_eq!(capture.format, Format::Datagrams, "{}", path.display());
        assert_eq!(capture.datagrams.len(), truth.len());
        for (got, want) in capture.datagrams.iter().zip(&truth) {
            assert!(got.payload == *want);
            assert_eq!(got.timestamp, None);
            assert_eq!(got.source, None);
            assert_eq!(got.destination, None);
        }
        assert_eq!(capture.stats.records, truth.len() as u64);
        assert_eq!(capture.stats.udp_datagrams, truth.len() as u64);
        // The port filter does not apply to .datagrams files.
        let filtered = read_capture(&bytes, &ReadOptions { port: Some(1), repair_port: None }).unwrap();
        assert_eq!(filtered.datagrams, capture.datagrams);
        checked += 1;
    }
    assert_eq!(checked, 18, "number of scenarios checked");
}
