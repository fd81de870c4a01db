//! pcapng input end to end. Every nghq vector's `.pcap`, written as pcapng
//! (no converter is needed: `support/pcapng.rs` writes the records of the pcap
//! as Enhanced Packet Blocks, in either byte order, with other timestamp
//! units and offsets, behind an interface of another link type), reads as the
//! same datagrams with the same capture times, and `h3m-recv --input` on it
//! writes byte-identical output; malformed pcapng exits 3 with a message
//! naming the offset, never a panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use h3m_receiver::capture::{Format, ReadOptions, read_capture, read_capture_file};
use serde_json::Value;

#[path = "support/pcapng.rs"]
mod pcapng;

use pcapng::{Conversion, PcapNgWriter, from_pcap};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop/vectors/nghq");
const BIN: &str = env!("CARGO_BIN_EXE_h3m-recv");
const SCENARIOS: usize = 18;

/// The ways a pcap is written as pcapng here.
const CONVERSIONS: [Conversion; 4] = [
    // What `editcap -F pcapng` writes: little-endian, microseconds.
    Conversion { big: false, tsresol: None, tsoffset: 0, decoy: false },
    Conversion { big: true, tsresol: Some(9), tsoffset: 0, decoy: false },
    Conversion { big: false, tsresol: Some(9), tsoffset: 1_500_000_000, decoy: true },
    Conversion { big: true, tsresol: Some(7), tsoffset: -3_600, decoy: true },
];

fn pcaps() -> Vec<PathBuf> {
    let mut pcaps: Vec<PathBuf> = std::fs::read_dir(VECTORS)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "pcap"))
        .collect();
    pcaps.sort();
    assert_eq!(pcaps.len(), SCENARIOS);
    pcaps
}

/// Session ID and port of a scenario, from its `expected.json`.
fn session_and_port(pcap: &Path) -> (String, u16) {
    let json: Value = serde_json::from_slice(&std::fs::read(pcap.with_extension("expected.json")).unwrap()).unwrap();
    (json["session_id_hex"].as_str().unwrap().to_owned(), u16::try_from(json["port"].as_u64().unwrap()).unwrap())
}

/// Every file under `dir` with its content.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.insert(path.strip_prefix(base).unwrap().to_owned(), std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn h3m_recv(input: &Path, out: &Path, args: &[&str]) -> Output {
    Command::new(BIN).arg("--input").arg(input).arg("--out").arg(out).args(args).output().unwrap()
}

#[test]
fn every_vector_as_pcapng_reads_the_same_datagrams() {
    for pcap in pcaps() {
        let want = read_capture_file(&pcap, &ReadOptions::default()).unwrap();
        for how in CONVERSIONS {
            let got = read_capture(&from_pcap(&std::fs::read(&pcap).unwrap(), how), &ReadOptions::default())
                .unwrap_or_else(|e| panic!("{}: {how:?}: {e}", pcap.display()));
            assert_eq!(got.format, Format::PcapNg);
            assert_eq!(got.datagrams, want.datagrams, "{}: {how:?}", pcap.display());
            let mut stats = want.stats.clone();
            if how.decoy {
                stats.records += 1;
                stats.skipped_non_udp += 1;
            }
            assert_eq!(got.stats, stats, "{}: {how:?}", pcap.display());
        }
    }
}

#[test]
fn h3m_recv_writes_byte_identical_output_from_pcapng() {
    let tmp = tempfile::tempdir().unwrap();
    for (i, pcap) in pcaps().into_iter().enumerate() {
        let (sid, port) = session_and_port(&pcap);
        let port = port.to_string();
        let args = ["--session-id", sid.as_str(), "--port", port.as_str()];
        let how = CONVERSIONS[i % CONVERSIONS.len()];
        let ng = tmp.path().join(format!("{i}.pcapng"));
        std::fs::write(&ng, from_pcap(&std::fs::read(&pcap).unwrap(), how)).unwrap();
        let (out_pcap, out_ng) = (tmp.path().join(format!("{i}-pcap")), tmp.path().join(format!("{i}-ng")));
        let a = h3m_recv(&pcap, &out_pcap, &args);
        let b = h3m_recv(&ng, &out_ng, &args);
        let name = pcap.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(a.status.code(), Some(0), "{name}: {}", String::from_utf8_lossy(&a.stderr));
        assert_eq!(b.status.code(), a.status.code(), "{name}: {}", String::from_utf8_lossy(&b.stderr));
        assert!(!b.stdout.is_empty(), "{name}");
        assert_eq!(b.stdout, a.stdout, "{name}: stdout");
        let summary = |o: &Output| String::from_utf8_lossy(&o.stderr).lines().last().map(str::to_owned);
        assert_eq!(summary(&b), summary(&a), "{name}: summary");
        let (fa, fb) = (files(&out_pcap), files(&out_ng));
        assert!(!fa.is_empty(), "{name}");
        assert!(fb == fa, "{name}: the written files differ");
    }
}

#[test]
fn pcapng_capture_times_drive_the_push_timeout() {
    // s10 spans 9.5 ms of capture time: a 0.5 ms push timeout fires within it,
    // whatever the timestamp units and offset of the pcapng interface.
    let tmp = tempfile::tempdir().unwrap();
    let pcap = Path::new(VECTORS).join("s10-wrap400k-v4.pcap");
    for (i, how) in CONVERSIONS.into_iter().enumerate() {
        let ng = tmp.path().join(format!("s10-{i}.pcapng"));
        std::fs::write(&ng, from_pcap(&std::fs::read(&pcap).unwrap(), how)).unwrap();
        let out = tmp.path().join(format!("out-{i}"));
        let output = h3m_recv(&ng, &out, &["--push-timeout", "0.0005"]);
        assert_eq!(output.status.code(), Some(1), "{how:?}");
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert!(stdout.starts_with("incomplete wrap400k.bin  "), "{how:?}: {stdout}");
        assert!(stdout.trim_end().ends_with("(timeout)"), "{how:?}: {stdout}");
        assert!(files(&out).is_empty());
    }
}

#[test]
fn malformed_pcapng_exits_3_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let pcap = std::fs::read(Path::new(VECTORS).join("s01-hello-v4.pcap")).unwrap();
    let good = from_pcap(&pcap, CONVERSIONS[0]);
    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    cases.push(("cut-header", good[..20].to_vec(), "at offset 0: file ends inside the section header block"));
    let mut bom = good.clone();
    bom[8..12].copy_from_slice(b"abcd");
    cases.push(("bom", bom, "at offset 0: unknown byte-order magic"));
    let mut w = PcapNgWriter::new(false);
    w.interface(1, 0, None, None).epb(3, 0, b"x", 1);
    cases.push(("interface", w.finish(), "packet of interface 3, but the section describes 1"));
    let mut w = PcapNgWriter::new(true);
    w.interface(1, 0, Some(0x80 | 70), None);
    cases.push(("tsresol", w.finish(), "if_tsresol 0xc6 does not fit 64 bits"));
    for (name, bytes, message) in cases {
        let input = tmp.path().join(format!("{name}.pcapng"));
        std::fs::write(&input, bytes).unwrap();
        let out = tmp.path().join(format!("out-{name}"));
        let output = h3m_recv(&input, &out, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(3), "{name}: {stderr}");
        assert!(stderr.contains("malformed pcapng at offset "), "{name}: {stderr}");
        assert!(stderr.contains(message), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert!(output.stdout.is_empty(), "{name}");
        assert!(files(&out).is_empty(), "{name}");
    }
    // A block that does not parse after good ones: the capture is read as a
    // stream, so what came before it is received (and what completed is
    // written), then the run ends with exit 3 naming the block.
    let mut trailer = good.clone();
    let n = trailer.len();
    trailer[n - 1] ^= 0x40;
    let input = tmp.path().join("trailer.pcapng");
    std::fs::write(&input, trailer).unwrap();
    let out = tmp.path().join("out-trailer");
    let output = h3m_recv(&input, &out, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{stdout}{stderr}");
    let last_block = n - u32::from_le_bytes(good[n - 4..].try_into().unwrap()) as usize;
    let message = format!("malformed pcapng at offset {last_block}: enhanced packet block does not parse");
    assert!(stderr.contains(&message), "{message}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Its one datagram before the bad block promised hello.txt; the body was
    // in the block that does not parse.
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["incomplete hello.txt  0 of 0+ bytes  missing 0-  (no_push_stream)"]
    );
    assert!(stderr.contains(" datagrams=1 "), "{stderr}");
    assert!(files(&out).is_empty());
    // A file cut inside its last block is read up to there, and says so.
    let out = tmp.path().join("out-tail");
    let input = tmp.path().join("tail.pcapng");
    std::fs::write(&input, &good[..good.len() - 2]).unwrap();
    let output = h3m_recv(&input, &out, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.lines().last().unwrap().contains("capture_truncated_tail=true"), "{stderr}");
}
