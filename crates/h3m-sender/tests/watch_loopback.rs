//! `h3m-send --watch` over loopback multicast while an encoder-like writer
//! writes each segment as `.seg-N.tmp` and renames it to `seg-N.m4s`: the
//! receiver (the library's state machine on a joined socket) gets exactly the
//! final names, each once and byte for byte, and never a temporary name.
//!
//! Network safety: the group is 239.255.77.33, the outgoing interface
//! 127.0.0.1, TTL 1.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use h3m_proto::SessionId;
use h3m_proto::receiver::{Event, Receiver, ReceiverConfig};

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 77, 33);

fn sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data).as_ref().to_vec()
}

/// Segment `n`'s bytes (distinct per segment, not all one value).
fn segment(n: usize) -> Vec<u8> {
    (0..20_000 + 3_000 * n).map(|i| (i * 31 + n * 7) as u8).collect()
}

/// What the receiver got: `:path` -> (times promised, body of a complete push).
#[derive(Default)]
struct Received {
    promised: BTreeMap<String, usize>,
    complete: BTreeMap<String, Vec<u8>>,
}

/// Feeds every datagram to the receiver until `done` holds or `deadline`.
fn receive(
    socket: &UdpSocket,
    rx: &mut Receiver,
    got: &mut Received,
    paths: &mut BTreeMap<u64, String>,
    bodies: &mut BTreeMap<u64, Vec<u8>>,
    deadline: Instant,
    done: impl Fn(&Received) -> bool,
) {
    let mut buf = vec![0u8; 65_536];
    while !done(got) && Instant::now() < deadline {
        let Ok(n) = socket.recv(&mut buf) else { continue };
        rx.handle_datagram(Instant::now(), &buf[..n]);
        while let Some(event) = rx.poll_event() {
            match event {
                Event::PushPromised { push_id, request } => {
                    let path = request.iter().find(|f| f.name == b":path").expect(":path");
                    let path = String::from_utf8(path.value.clone()).unwrap();
                    *got.promised.entry(path.clone()).or_default() += 1;
                    paths.insert(push_id, path);
                }
                Event::BodyData { push_id, offset, data, .. } => {
                    let body = bodies.entry(push_id).or_default();
                    let end = offset as usize + data.len();
                    if body.len() < end {
                        body.resize(end, 0);
                    }
                    body[offset as usize..end].copy_from_slice(&data);
                }
                Event::PushFinished(summary) if summary.is_complete() => {
                    let body = bodies.remove(&summary.push_id).unwrap_or_default();
                    got.complete.insert(paths[&summary.push_id].clone(), body);
                }
                _ => {}
            }
        }
    }
}

#[test]
fn watch_publishes_renamed_segments_once_under_their_final_names() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    std::fs::create_dir_all(&live).unwrap();
    let init = b"init segment".to_vec();
    std::fs::write(live.join("init.mp4"), &init).unwrap();
    let port = 30_000 + (std::process::id() % 30_000) as u16;
    let socket = UdpSocket::bind((GROUP, port)).expect("bind");
    socket.join_multicast_v4(&GROUP, &Ipv4Addr::LOCALHOST).expect("join on 127.0.0.1");
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();

    let sender = Command::new(env!("CARGO_BIN_EXE_h3m-send"))
        .arg(&live)
        .args(["--watch", "--watch-interval", "0.05", "--duration", "60"])
        .args(["--group", &GROUP.to_string(), "--port", &port.to_string(), "--interface", "127.0.0.1"])
        .args(["--ttl", "1", "--session-id", "0a0e", "--rate", "50M", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start h3m-send");
    let stop = |sender: &std::process::Child| {
        // SIGINT to the process this test started, by its PID: it ends the session (goaway) and exits.
        let _ = Command::new("kill").args(["-INT", &sender.id().to_string()]).status();
    };

    let mut rx = Receiver::new(ReceiverConfig::new(SessionId::from_hex("0a0e").unwrap()));
    let (mut got, mut paths, mut bodies) = (Received::default(), BTreeMap::new(), BTreeMap::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    // init.mp4 is published from the first listing, after the watch started.
    receive(&socket, &mut rx, &mut got, &mut paths, &mut bodies, deadline, |g| g.complete.contains_key("/init.mp4"));
    if !got.complete.contains_key("/init.mp4") {
        stop(&sender);
        let out = sender.wait_with_output().unwrap();
        panic!("init.mp4 never arrived: {}", String::from_utf8_lossy(&out.stderr));
    }

    const SEGMENTS: usize = 4;
    let writer_dir = live.clone();
    let writer = std::thread::spawn(move || {
        for n in 1..=SEGMENTS {
            let tmp = writer_dir.join(format!(".seg-{n}.tmp"));
            let data = segment(n);
            // Written in pieces, then left whole under its temporary name for longer
            // than the polling interval (a poller would publish it), then renamed.
            let mut f = std::fs::File::create(&tmp).unwrap();
            for piece in data.chunks(8_000) {
                std::io::Write::write_all(&mut f, piece).unwrap();
                f.sync_data().unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
            drop(f);
            std::thread::sleep(Duration::from_millis(200));
            std::fs::rename(&tmp, writer_dir.join(format!("seg-{n}.m4s"))).unwrap();
        }
    });
    receive(&socket, &mut rx, &mut got, &mut paths, &mut bodies, deadline, |g| {
        (1..=SEGMENTS).all(|n| g.complete.contains_key(&format!("/seg-{n}.m4s")))
    });
    writer.join().unwrap();
    // Anything else the sender would publish has had time to go out: let it, then stop it.
    receive(&socket, &mut rx, &mut got, &mut paths, &mut bodies, Instant::now() + Duration::from_millis(500), |_| {
        false
    });
    stop(&sender);
    let out = sender.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    let mut want: Vec<String> = (1..=SEGMENTS).map(|n| format!("/seg-{n}.m4s")).collect();
    want.insert(0, "/init.mp4".into());
    let promised: Vec<(&str, usize)> = got.promised.iter().map(|(p, n)| (p.as_str(), *n)).collect();
    let want_promised: Vec<(&str, usize)> = want.iter().map(|p| (p.as_str(), 1)).collect();
    assert_eq!(promised, want_promised, "every final name exactly once, no temporary name; stderr: {stderr}");
    assert_eq!(got.complete.keys().cloned().collect::<Vec<_>>(), want);
    assert_eq!(sha256(&got.complete["/init.mp4"]), sha256(&init));
    for n in 1..=SEGMENTS {
        assert_eq!(sha256(&got.complete[&format!("/seg-{n}.m4s")]), sha256(&segment(n)), "seg-{n}.m4s");
    }
}
