//! `--log-level` / `--log-format`: the libraries' `tracing` events on stderr,
//! off by default (the user-facing lines are the same either way), JSON lines
//! with the session and push spans' fields, and a bad filter is a usage error.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_h3m-recv");
const VECTOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop/vectors/nghq/s01-hello-v4.pcap");

fn recv(out: &Path, extra: &[&str]) -> Output {
    let session =
        serde_json::from_slice::<Value>(&std::fs::read(Path::new(VECTOR).with_extension("expected.json")).unwrap())
            .unwrap()["session_id_hex"]
            .as_str()
            .unwrap()
            .to_owned();
    Command::new(BIN)
        .args(["--input", VECTOR, "--session-id", &session, "--out"])
        .arg(out)
        .args(extra)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

#[test]
fn diagnostics_are_off_by_default_and_json_lines_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = recv(&tmp.path().join("a"), &[]);
    assert_eq!(plain.status.code(), Some(0));
    let plain_err = String::from_utf8_lossy(&plain.stderr);
    assert_eq!(plain_err.lines().count(), 1, "only the summary: {plain_err}");

    let logged = recv(&tmp.path().join("b"), &["--log-level", "debug", "--log-format", "json"]);
    assert_eq!(logged.status.code(), Some(0));
    // The user-facing output is unchanged.
    assert_eq!(logged.stdout, plain.stdout);
    let stderr = String::from_utf8_lossy(&logged.stderr);
    let events: Vec<Value> = stderr.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let written: Vec<&Value> = events.iter().filter(|e| e["fields"]["message"] == "resource written").collect();
    assert_eq!(written.len(), 1, "{stderr}");
    assert_eq!(written[0]["level"], "DEBUG");
    assert_eq!(written[0]["fields"]["push_id"], 0);
    // The :path as nghq sent it (its sender doubles the slash).
    assert_eq!(written[0]["fields"]["path"], "//hello.txt");
    // In the push's span, inside the session's.
    assert_eq!(written[0]["span"]["name"], "push");
    assert_eq!(written[0]["span"]["push_id"], 0);
    let spans = written[0]["spans"].as_array().expect("the span list");
    assert_eq!(spans.iter().map(|s| s["name"].as_str().unwrap()).collect::<Vec<_>>(), ["session", "push"]);
    assert!(spans[0]["input"].as_str().unwrap().ends_with("s01-hello-v4.pcap"));
    let ended = events.iter().find(|e| e["fields"]["message"] == "session ended").expect("a session-end event");
    assert_eq!(ended["level"], "INFO");
    // The summary line is still the last one.
    assert!(stderr.lines().last().unwrap().starts_with("h3m-recv: summary: "), "{stderr}");

    // A filter by target keeps other targets quiet.
    let quiet = recv(&tmp.path().join("c"), &["--log-level", "h3m_net=debug", "--log-format", "json"]);
    assert_eq!(String::from_utf8_lossy(&quiet.stderr).lines().count(), 1);
}

#[test]
fn a_misspelt_level_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let o = recv(&tmp.path().join("out"), &["--log-level", "debgu"]);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("--log-level") && stderr.contains("neither a level nor an h3m target"), "{stderr}");
    let o = recv(&tmp.path().join("out"), &["--log-format", "yaml"]);
    assert_eq!(o.status.code(), Some(2));
}
