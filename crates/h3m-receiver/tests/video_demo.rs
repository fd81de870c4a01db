//! The video demo, played in a real browser (issue 12, item 7):
//! `scripts/demo-video.sh --check` encodes a live DASH presentation with
//! ffmpeg, publishes it with `h3m-send --watch` as the encoder writes it,
//! receives it with `h3m-recv --serve` (natively, then through
//! `h3m-amt-relay` + `h3m-recv --amt`), and drives headless Chromium to the
//! player page. Asserted here: the video's `currentTime` advanced by at least
//! 3 s with no player or page error, the screenshot is a PNG of the page, and
//! every published file (page, dash.js, manifest, every segment) arrived
//! byte for byte.
//!
//! Needs ffmpeg, Node.js with npm (the script installs dash.js and
//! playwright-core from npm into `demo/video/node_modules`) and Chromium
//! (`/usr/bin/chromium` or `$CHROMIUM`); `.ci/run` installs them. Where one is
//! missing the test prints `SKIP: ...` naming it.
//!
//! Network safety: loopback only (group 239.255.x.x, outgoing interface
//! 127.0.0.1, TTL 1; the relay on 127.42.0.1); the script ends only the
//! processes it started.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Runs the demo's check; `None` when a prerequisite is missing (skipped).
fn run_demo(amt: bool) -> Option<(tempfile::TempDir, serde_json::Value)> {
    let _serial = serial();
    let relay = h3m_amt_relay();
    let bin_dir = relay.parent().expect("binary directory").to_path_buf();
    assert!(bin_dir.join("h3m-send").exists() && bin_dir.join("h3m-recv").exists());
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("demo.png");
    let work = dir.path().join("work");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/demo-video.sh");
    let mut cmd = Command::new(&script);
    cmd.arg("--check").arg(&shot).arg("--work").arg(&work).args(["--seconds", "15"]).env("H3M_BIN_DIR", &bin_dir);
    if amt {
        cmd.arg("--amt");
    }
    let out = cmd.output().expect("run scripts/demo-video.sh");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.code() == Some(3) {
        eprintln!("SKIP: {}", stderr.trim());
        return None;
    }
    let logs = logs_of(&work.join("logs"));
    assert!(out.status.success(), "demo-video.sh failed ({}):\n{stdout}\n{stderr}\n{logs}", out.status);
    let check = std::fs::read_to_string(work.join("logs/check.json")).expect("check.json");
    let result: serde_json::Value = serde_json::from_str(check.trim()).expect("the browser check's JSON line");
    Some((dir, result))
}

fn logs_of(dir: &Path) -> String {
    let mut all = String::new();
    for name in ["recv.log", "send.log", "relay.log", "ffmpeg.log", "diff.txt"] {
        if let Ok(text) = std::fs::read_to_string(dir.join(name)) {
            all += &format!("--- {name}\n{}\n", text.lines().rev().take(30).collect::<Vec<_>>().join("\n"));
        }
    }
    all
}

fn assert_played_and_delivered(dir: &Path, result: &serde_json::Value) {
    // The browser played at least 3 s of the stream, with no error.
    let advanced = result["advanced"].as_f64().expect("advanced");
    assert!(advanced >= 3.0, "{result}");
    assert!(result["start"].as_f64().expect("start") > 0.0, "{result}");
    assert_eq!(result["errors"], serde_json::json!([]), "{result}");
    assert_eq!(result["page_errors"], serde_json::json!([]), "{result}");
    assert!(result["segments"].as_u64().expect("segments") >= 3, "{result}");

    // The screenshot: a PNG of the page's viewport (1400 x 720).
    let png = std::fs::read(dir.join("demo.png")).expect("screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[12..16], b"IHDR");
    let (w, h) =
        (u32::from_be_bytes(png[16..20].try_into().unwrap()), u32::from_be_bytes(png[20..24].try_into().unwrap()));
    assert_eq!((w, h), (1400, 720));

    // Every published file arrived byte for byte: the page, dash.js, the
    // final manifest and all 15 segments with their initialisation segment.
    let sent = tree_digests(&dir.join("work/src"));
    let received = tree_digests(&dir.join("work/out"));
    assert_eq!(received, sent);
    let segments = sent.keys().filter(|k| k.starts_with("media/seg-")).count();
    assert!(segments >= 15, "{segments} segments: {:?}", sent.keys());
    for name in ["player.html", "dash.all.min.js", "media/manifest.mpd", "media/init-0.m4s"] {
        assert!(sent.contains_key(name), "{name} missing from {:?}", sent.keys());
    }
}

#[test]
fn a_live_dash_stream_plays_in_chromium_from_h3m_recv_serve() {
    if let Some((dir, result)) = run_demo(false) {
        assert_played_and_delivered(dir.path(), &result);
    }
}

#[test]
fn the_same_stream_plays_through_an_amt_tunnel() {
    if let Some((dir, result)) = run_demo(true) {
        assert_played_and_delivered(dir.path(), &result);
        let relay = std::fs::read_to_string(dir.path().join("work/logs/relay.log")).unwrap();
        assert!(relay.contains("joined"), "{relay}");
        let recv = std::fs::read_to_string(dir.path().join("work/logs/recv.log")).unwrap();
        assert!(recv.contains("tunnel up"), "{recv}");
    }
}
