//! `h3m-recv` on every nghq vector, from the `.pcap` and from the `.datagrams`
//! file, in text and JSON mode, and once through the library: every resource
//! of `expected.json` is written byte for byte at its path, nothing else is.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use h3m_proto::SessionId;
use h3m_receiver::offline::{self, ExitStatus, Options};
use h3m_receiver::report::ResourceStatus;
use serde_json::Value;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop/vectors/nghq");
const BIN: &str = env!("CARGO_BIN_EXE_h3m-recv");
const SCENARIOS: usize = 18;

/// A push of `expected.json` that is a resource (has a payload file).
#[derive(Debug)]
struct Resource {
    push_id: u64,
    path: String,
    rel: String,
    body_len: u64,
    sha256: String,
    payload: Vec<u8>,
}

#[derive(Debug)]
struct Scenario {
    name: String,
    session_id: String,
    port: u16,
    resources: Vec<Resource>,
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

fn scenarios() -> Vec<Scenario> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(VECTORS)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".expected.json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|file| {
            let json: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
            let name = file.file_name().unwrap().to_str().unwrap().trim_end_matches(".expected.json").to_owned();
            let resources = json["pushes"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["payload_file"].is_string())
                .map(|p| {
                    let path = p["path"].as_str().unwrap().to_owned();
                    let payload = std::fs::read(Path::new(VECTORS).join(p["payload_file"].as_str().unwrap())).unwrap();
                    Resource {
                        push_id: p["push_id"].as_u64().unwrap(),
                        rel: path.trim_start_matches('/').to_owned(),
                        path,
                        body_len: p["body_len"].as_u64().unwrap(),
                        sha256: p["body_sha256"].as_str().unwrap().to_owned(),
                        payload,
                    }
                })
                .collect();
            Scenario {
                name,
                session_id: json["session_id_hex"].as_str().unwrap().to_owned(),
                port: u16::try_from(json["port"].as_u64().unwrap()).unwrap(),
                resources,
            }
        })
        .collect()
}

/// Every entry under `dir`, relative, directories with a trailing `/`.
fn tree(dir: &Path) -> BTreeSet<String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                out.insert(format!("{rel}/"));
                walk(base, &path, out);
            } else {
                out.insert(rel);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// The files and directories a scenario must leave in the output directory.
fn expected_tree(scn: &Scenario) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for r in &scn.resources {
        out.insert(r.rel.clone());
        let mut parent = Path::new(&r.rel).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            out.insert(format!("{}/", p.display()));
            parent = p.parent();
        }
    }
    out
}

fn check_files(scn: &Scenario, out: &Path) {
    assert_eq!(tree(out), expected_tree(scn), "{}: files in the output directory", scn.name);
    for r in &scn.resources {
        let got = std::fs::read(out.join(&r.rel)).unwrap();
        assert_eq!(got.len() as u64, r.body_len, "{} {}", scn.name, r.path);
        assert_eq!(sha256_hex(&got), r.sha256, "{} {}", scn.name, r.path);
        assert!(got == r.payload, "{} {}: content differs from the payload file", scn.name, r.path);
    }
}

fn run_bin(scn: &Scenario, ext: &str, out: &Path, json: bool) -> Output {
    let input = Path::new(VECTORS).join(format!("{}.{ext}", scn.name));
    let mut cmd = Command::new(BIN);
    cmd.arg("--input").arg(&input).arg("--session-id").arg(&scn.session_id).arg("--out").arg(out);
    cmd.arg("--port").arg(scn.port.to_string());
    if json {
        cmd.arg("--json");
    }
    cmd.output().unwrap()
}

fn text_mode(ext: &str) {
    let scenarios = scenarios();
    let mut checked = 0;
    for scn in &scenarios {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let output = run_bin(scn, ext, &out, false);
        let stdout = String::from_utf8(output.stdout).unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(0), "{}.{ext}: stderr {stderr}", scn.name);
        let mut lines: Vec<&str> = stdout.lines().collect();
        lines.sort();
        let mut expected: Vec<String> = scn
            .resources
            .iter()
            .map(|r| format!("complete   {}  {} bytes  sha256:{}", r.rel, r.body_len, r.sha256))
            .collect();
        expected.sort();
        assert_eq!(lines, expected, "{}.{ext}: stdout", scn.name);
        let summary = stderr.lines().last().unwrap();
        assert!(summary.starts_with("h3m-recv: summary: "), "{summary}");
        assert!(summary.contains(&format!(" complete={} incomplete=0 refused=0", scn.resources.len())), "{summary}");
        assert!(summary.ends_with(" exit=0"), "{summary}");
        check_files(scn, &out);
        checked += 1;
    }
    assert_eq!(checked, SCENARIOS);
}

fn json_mode(ext: &str) {
    let scenarios = scenarios();
    let mut checked = 0;
    for scn in &scenarios {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let output = run_bin(scn, ext, &out, true);
        assert_eq!(output.status.code(), Some(0), "{}.{ext}", scn.name);
        let stdout = String::from_utf8(output.stdout).unwrap();
        let records: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let of = |event: &str| records.iter().filter(|r| r["event"] == event).collect::<Vec<_>>();
        let resources = of("resource");
        assert_eq!(resources.len(), scn.resources.len(), "{}.{ext}: resource records", scn.name);
        assert_eq!(of("push_promised").len(), scn.resources.len(), "{}.{ext}", scn.name);
        assert!(of("error").is_empty() && of("unpromised_push").is_empty(), "{}.{ext}", scn.name);
        assert_eq!(of("session_end").len(), 1, "{}.{ext}", scn.name);
        for r in &scn.resources {
            let rec = resources.iter().find(|x| x["push_id"] == r.push_id).expect("resource record");
            let file = out.join(&r.rel);
            assert_eq!(rec["status"], "complete");
            assert_eq!(rec["complete"], true);
            assert_eq!(rec["path"], r.path.as_str());
            assert_eq!(rec["file"], file.to_str().unwrap());
            assert_eq!(rec["bytes"], r.body_len);
            assert_eq!(rec["body_len"], r.body_len);
            assert_eq!(rec["sha256"], r.sha256.as_str());
            assert_eq!(rec["missing"], serde_json::json!([]));
            assert!(rec["missing_from"].is_null() && rec["reason"].is_null());
        }
        let summary = records.last().unwrap();
        assert_eq!(summary["event"], "summary");
        assert_eq!(summary["exit_status"], 0);
        assert_eq!(summary["resources_complete"], scn.resources.len());
        assert_eq!(summary["bytes_written"], scn.resources.iter().map(|r| r.body_len).sum::<u64>());
        check_files(scn, &out);
        checked += 1;
    }
    assert_eq!(checked, SCENARIOS);
}

#[test]
fn vectors_pcap_text() {
    text_mode("pcap");
}

#[test]
fn vectors_datagrams_text() {
    text_mode("datagrams");
}

#[test]
fn vectors_pcap_json() {
    json_mode("pcap");
}

#[test]
fn vectors_datagrams_json() {
    json_mode("datagrams");
}

#[test]
fn vectors_through_the_library() {
    let scenarios = scenarios();
    assert_eq!(scenarios.len(), SCENARIOS);
    for scn in &scenarios {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let mut opts = Options::new(Path::new(VECTORS).join(format!("{}.pcap", scn.name)), &out);
        opts.session.session_id = SessionId::from_hex(&scn.session_id).unwrap();
        opts.port = Some(scn.port);
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let outcome = offline::run(&opts, &mut stdout, &mut stderr);
        assert_eq!(outcome.status, ExitStatus::Success, "{}", scn.name);
        assert!(outcome.errors.is_empty() && outcome.unpromised.is_empty());
        assert_eq!(outcome.resources.len(), scn.resources.len(), "{}", scn.name);
        for r in &scn.resources {
            let rec = outcome.resources.iter().find(|x| x.push_id == r.push_id).unwrap();
            assert_eq!(rec.status, ResourceStatus::Complete);
            assert_eq!(rec.sha256.as_deref(), Some(r.sha256.as_str()));
            assert_eq!(rec.file.as_deref(), out.join(&r.rel).to_str());
        }
        let summary = outcome.summary.unwrap();
        assert_eq!(summary.resources_complete, scn.resources.len() as u64);
        assert_eq!(String::from_utf8(stdout).unwrap().lines().count(), scn.resources.len());
        check_files(scn, &out);
    }
    // Special cases named in the vectors' manifest.
    let find = |name: &str| scenarios.iter().find(|s| s.name.starts_with(name)).unwrap();
    assert_eq!(find("s02").resources[0].body_len, 0);
    assert_eq!(find("s12").resources.len(), 2);
    assert_eq!(find("s14").resources.len(), 2);
}

#[test]
fn pcap_timestamps_drive_the_push_timeout() {
    // s10 spans 9.5 ms of capture time: a 0.5 ms push timeout fires within it
    // for the pcap, never for the `.datagrams` file (no timestamps).
    let tmp = tempfile::tempdir().unwrap();
    let run = |ext: &str, out: &Path| {
        Command::new(BIN)
            .arg("--input")
            .arg(Path::new(VECTORS).join(format!("s10-wrap400k-v4.{ext}")))
            .arg("--out")
            .arg(out)
            .args(["--push-timeout", "0.0005"])
            .output()
            .unwrap()
    };
    let out = tmp.path().join("pcap");
    let output = run("pcap", &out);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.starts_with("incomplete wrap400k.bin  ") && stdout.trim_end().ends_with("(timeout)"), "{stdout}");
    assert!(tree(&out).is_empty());
    let out = tmp.path().join("datagrams");
    assert_eq!(run("datagrams", &out).status.code(), Some(0));
    assert_eq!(tree(&out), BTreeSet::from(["wrap400k.bin".to_owned()]));
}
