//! `h3m-monitor --once`: two sessions watched on loopback, one sent to, one
//! silent; the sent one is reported up with its packets, the silent one
//! down, and the exit status says one is down.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Proc, SendSpec, Side, send_bin, sender_args};

/// A port for this test run (the process ID spreads parallel runs apart).
fn port(offset: u16) -> u16 {
    30_000 + (std::process::id() % 10_000) as u16 + offset
}

#[test]
fn once_reports_the_sent_session_up_and_the_silent_one_down() {
    let _guard = common::serial();
    let sender = send_bin();
    let dir = tempfile::tempdir().unwrap();
    let (live_port, silent_port) = (port(0), port(1));
    let config = dir.path().join("sessions.conf");
    std::fs::write(
        &config,
        format!(
            "# one Alt-Svc line, one KEY=VALUE line\n\
             name=live interface=127.0.0.1 h3m-07=\"239.255.91.1:{live_port}\"; session-id=0a0d\n\
             group=239.255.91.2:{silent_port} session-id=0b0e interface=127.0.0.1 name=silent\n"
        ),
    )
    .unwrap();
    let mut monitor = Proc::spawn(
        "h3m-monitor",
        None,
        std::path::Path::new(env!("CARGO_BIN_EXE_h3m-monitor")),
        &[config.to_str().unwrap(), "--once", "3", "--interval", "1"],
        dir.path(),
        Stdio::null(),
    );
    monitor.wait_bound(live_port);
    monitor.wait_bound(silent_port);
    let body = dir.path().join("body.bin");
    std::fs::write(&body, vec![0x5a; 64 * 1024]).unwrap();
    let spec = SendSpec {
        side: Side { ns: None, interface: "127.0.0.1" },
        group: "239.255.91.1",
        port: live_port,
        source: None,
        session_id: "0a0d",
        rate: "10M",
        extra: vec![body.to_str().unwrap().to_owned()],
    };
    let send = Proc::spawn("h3m-send", None, &sender, &sender_args(&spec), dir.path(), Stdio::null());
    let sent = send.wait(Duration::from_secs(20));
    assert_eq!(sent.code, Some(0), "h3m-send failed: {}", sent.stderr);
    let f = monitor.wait(Duration::from_secs(20));
    assert_eq!(f.code, Some(1), "one session is down: exit 1\n--- stdout:\n{}\n--- stderr:\n{}", f.stdout, f.stderr);
    let lines: Vec<serde_json::Value> =
        f.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect();
    let finals: Vec<&serde_json::Value> = lines.iter().filter(|l| l["event"] == "final").collect();
    assert_eq!(finals.len(), 2, "one final line per session:\n{}", f.stdout);
    let live = finals.iter().find(|l| l["name"] == "live").expect("live's final line");
    let silent = finals.iter().find(|l| l["name"] == "silent").expect("silent's final line");
    assert_eq!(live["up"], true, "{}", f.stdout);
    assert!(live["datagrams"].as_u64().unwrap() > 0, "{}", f.stdout);
    assert!(live["bytes"].as_u64().unwrap() > 64 * 1024, "{}", f.stdout);
    assert_eq!(live["lost"], 0, "{}", f.stdout);
    assert!(live["last_seen_ms_ago"].as_u64().is_some());
    assert_eq!(live["group"], format!("239.255.91.1:{live_port}"));
    assert_eq!(silent["up"], false, "{}", f.stdout);
    assert_eq!(silent["datagrams"], 0);
    assert!(silent["last_seen_ms_ago"].is_null());
    // The live one's going up was reported as it happened.
    assert!(lines.iter().any(|l| l["event"] == "change" && l["name"] == "live" && l["up"] == true), "{}", f.stdout);
    // Status lines every second.
    assert!(lines.iter().filter(|l| l["event"] == "status").count() >= 2, "{}", f.stdout);
}

#[test]
fn a_bad_configuration_exits_2_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sessions.conf");
    std::fs::write(&config, "# fine so far\ngroup=239.255.91.3:2000\ngroup=10.0.0.1:2000\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_h3m-monitor"))
        .args([config.to_str().unwrap(), "--once", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 3: bad group `10.0.0.1:2000`"), "{stderr}");
    assert!(out.stdout.is_empty());
}
