//! Where `h3m-send` puts a file's digest, over loopback multicast: a file over
//! 1 MiB sent once is hashed as it is sent (on the read-ahead thread), its
//! SHA-256 in trailers and none in its headers; `--digest-first` puts it in
//! the headers and sends no trailers; `--repeat` always announces it up
//! front (receivers match copies by it); with `--repair-listen` it is in the
//! trailers too, and the origin announces it once the file is sent (a
//! receiver that lost the trailers verifies a repaired body by it); a small
//! file always has it in its headers.
//! Every body arrives byte for byte and matches the digest announced.
//!
//! Network safety: groups 239.255.77.34-37, outgoing interface 127.0.0.1, TTL 1.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use h3m_proto::SessionId;
use h3m_proto::http::digest::announced_sha256;
use h3m_proto::qpack::HeaderField;
use h3m_proto::receiver::{Event, Receiver, ReceiverConfig};

/// What one push looked like on the wire.
#[derive(Default, Debug)]
struct Push {
    path: String,
    headers: Vec<HeaderField>,
    trailers: Option<Vec<HeaderField>>,
    body: Vec<u8>,
    complete: bool,
}

/// Sends `files` with `extra` arguments to 239.255.77.`octet` and returns every push, in push ID order.
/// At 50 Mbit/s: this unoptimised receiver, with the default socket buffer, keeps up on a busy machine
/// (at 200 Mbit/s it once fell behind while other tests ran).
fn send_and_collect(octet: u8, files: &[&std::path::Path], extra: &[&str]) -> Vec<Push> {
    let group = Ipv4Addr::new(239, 255, 77, octet);
    let port = 31_000 + (std::process::id() % 20_000) as u16 + u16::from(octet);
    let socket = UdpSocket::bind((group, port)).expect("bind");
    socket.join_multicast_v4(&group, &Ipv4Addr::LOCALHOST).expect("join on 127.0.0.1");
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_h3m-send"))
        .args(files)
        .args(["--group", &group.to_string(), "--port", &port.to_string(), "--interface", "127.0.0.1"])
        .args(["--ttl", "1", "--session-id", "0a0e", "--rate", "50M", "--quiet"])
        .args(extra)
        .spawn()
        .expect("start h3m-send");
    let mut rx = Receiver::new(ReceiverConfig::new(SessionId::new(&[0x0a, 0x0e]).unwrap()));
    let mut pushes: BTreeMap<u64, Push> = BTreeMap::new();
    let mut buf = vec![0u8; 65_536];
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut exited = None;
    while Instant::now() < deadline {
        match socket.recv(&mut buf) {
            Ok(n) => rx.handle_datagram(Instant::now(), &buf[..n]),
            Err(_) if exited.is_some() => break,
            Err(_) => {}
        }
        if exited.is_none() {
            exited = child.try_wait().unwrap();
        }
        while let Some(event) = rx.poll_event() {
            match event {
                Event::PushPromised { push_id, request } => {
                    let path = request.iter().find(|f| f.name == b":path").expect(":path");
                    pushes.entry(push_id).or_default().path = String::from_utf8(path.value.clone()).unwrap();
                }
                Event::ResponseHeaders { push_id, headers } => pushes.entry(push_id).or_default().headers = headers,
                Event::Trailers { push_id, headers } => pushes.entry(push_id).or_default().trailers = Some(headers),
                Event::BodyData { push_id, offset, data, .. } => {
                    let body = &mut pushes.entry(push_id).or_default().body;
                    let end = offset as usize + data.len();
                    if body.len() < end {
                        body.resize(end, 0);
                    }
                    body[offset as usize..end].copy_from_slice(&data);
                }
                Event::PushFinished(s) => pushes.entry(s.push_id).or_default().complete = s.is_complete(),
                _ => {}
            }
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "h3m-send failed: {status}");
    pushes.into_values().collect()
}

fn sha256(data: &[u8]) -> [u8; 32] {
    h3m_proto::http::digest::sha256(data)
}

fn files() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf, Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let big_body: Vec<u8> = (0..(2 << 20) + 777).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let small_body = b"a small file, read whole".to_vec();
    let big = dir.path().join("big.bin");
    let small = dir.path().join("small.txt");
    std::fs::write(&big, &big_body).unwrap();
    std::fs::write(&small, &small_body).unwrap();
    (dir, big, small, big_body, small_body)
}

#[test]
fn a_big_file_sent_once_has_its_digest_in_trailers() {
    let (_dir, big, small, big_body, small_body) = files();
    let pushes = send_and_collect(34, &[&big, &small], &[]);
    assert_eq!(pushes.len(), 2, "{pushes:?}");
    let (b, s) = (&pushes[0], &pushes[1]);
    assert_eq!((b.path.as_str(), s.path.as_str()), ("/big.bin", "/small.txt"));
    assert!(b.complete && s.complete);
    assert_eq!(b.body, big_body);
    assert_eq!(announced_sha256(&b.headers), None, "no digest before the body");
    assert_eq!(
        b.headers.iter().find(|f| f.name == b"content-length").map(|f| f.value.clone()),
        Some(b"2097929".to_vec())
    );
    assert_eq!(announced_sha256(b.trailers.as_deref().expect("trailers")), Some(sha256(&big_body)));
    assert_eq!(s.body, small_body);
    assert_eq!(announced_sha256(&s.headers), Some(sha256(&small_body)));
    assert!(s.trailers.is_none());
}

#[test]
fn digest_first_puts_it_in_the_headers() {
    let (_dir, big, _small, big_body, _) = files();
    let pushes = send_and_collect(35, &[&big], &["--digest-first"]);
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    assert!(pushes[0].complete);
    assert_eq!(pushes[0].body, big_body);
    assert_eq!(announced_sha256(&pushes[0].headers), Some(sha256(&big_body)));
    assert!(pushes[0].trailers.is_none());
}

#[test]
fn copies_announce_it_up_front() {
    let (_dir, big, _small, big_body, _) = files();
    let pushes = send_and_collect(36, &[&big], &["--repeat", "2"]);
    assert_eq!(pushes.len(), 2, "{pushes:?}");
    for p in &pushes {
        assert!(p.complete);
        assert_eq!(p.body, big_body);
        assert_eq!(announced_sha256(&p.headers), Some(sha256(&big_body)));
        assert!(p.trailers.is_none());
    }
}

#[test]
fn with_unicast_repair_it_is_in_the_trailers_and_the_origin_announces_it() {
    let (_dir, big, _small, big_body, _) = files();
    let port = 41_000 + (std::process::id() % 20_000) as u16;
    let listen = format!("127.0.0.1:{port}");
    let pushes = send_and_collect(37, &[&big], &["--repair-listen", &listen, "--repair-linger", "0"]);
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    assert!(pushes[0].complete);
    assert_eq!(pushes[0].body, big_body);
    assert_eq!(announced_sha256(&pushes[0].headers), None, "hashed as sent: no wait before the first datagram");
    assert_eq!(pushes[0].trailers.as_deref().and_then(announced_sha256), Some(sha256(&big_body)));
}

#[test]
fn the_origin_learns_a_trailed_files_digest_when_it_is_sent() {
    use h3m_sender::publisher::{Publisher, PublisherConfig};
    use h3m_unicast::catalog::Catalog;
    let (_dir, big, _small, big_body, _) = files();
    let port = 32_000 + (std::process::id() % 20_000) as u16;
    let mut config = PublisherConfig::new((Ipv4Addr::new(239, 255, 77, 38), port).into());
    config.interface = Some(h3m_net::Interface::Addr(Ipv4Addr::LOCALHOST.into()));
    config.rate = Some(200_000_000);
    let catalog = std::sync::Arc::new(Catalog::new());
    config.catalog = Some(std::sync::Arc::clone(&catalog));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut publisher = Publisher::open(&config).unwrap();
        let meta = h3m_proto::sender::ResourceMeta::file("big.bin", big_body.len() as u64, std::time::UNIX_EPOCH);
        let mut push = publisher.start_file_trailed(&meta, &big).await.unwrap();
        let served = catalog.get("/big.bin").expect("in the catalog from its first datagram");
        assert_eq!(served.sha256, None, "not known before the body is sent");
        publisher.write_stream(&mut push, &big_body).await.unwrap();
        assert_eq!(publisher.finish_stream(push).await.unwrap(), sha256(&big_body));
        publisher.close().await.unwrap();
    });
    assert_eq!(catalog.get("/big.bin").and_then(|e| e.sha256), Some(sha256(&big_body)));
}

/// The origin serves a file published as read (`start_file_as_read`, as
/// `h3m-send` publishes every small file) while it is as it was read, and
/// refuses it once it is not: a file changed between its read (the bytes
/// multicast) and its publication is not served as its new bytes.
#[test]
fn the_origin_serves_a_file_as_it_was_read_and_refuses_it_changed() {
    use h3m_sender::publisher::{Publisher, PublisherConfig};
    use h3m_unicast::catalog::{Catalog, ReadError};
    let dir = tempfile::tempdir().unwrap();
    let (kept, changed) = (dir.path().join("kept.txt"), dir.path().join("changed.txt"));
    std::fs::write(&kept, b"as read").unwrap();
    std::fs::write(&changed, b"as read").unwrap();
    let stamp = |f: &std::path::Path| {
        let m = std::fs::metadata(f).unwrap();
        (m.len(), m.modified().ok())
    };
    let (kept_stamp, read_stamp) = (stamp(&kept), stamp(&changed));
    // Changed after it was read, before it is published.
    std::fs::write(&changed, b"changed since it was read").unwrap();
    let port = 33_000 + (std::process::id() % 20_000) as u16;
    let mut config = PublisherConfig::new((Ipv4Addr::new(239, 255, 77, 39), port).into());
    config.interface = Some(h3m_net::Interface::Addr(Ipv4Addr::LOCALHOST.into()));
    let catalog = std::sync::Arc::new(Catalog::new());
    config.catalog = Some(std::sync::Arc::clone(&catalog));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut publisher = Publisher::open(&config).unwrap();
        for (name, file, (len, modified)) in [("kept.txt", &kept, kept_stamp), ("changed.txt", &changed, read_stamp)] {
            let mut meta = h3m_proto::sender::ResourceMeta::file(name, len, std::time::UNIX_EPOCH);
            meta.sha256 = Some(sha256(b"as read"));
            let id = publisher.start_file_as_read(&meta, file, len, modified).await.unwrap();
            publisher.write(id, b"as read").await.unwrap();
            publisher.finish(id).await.unwrap();
        }
        publisher.close().await.unwrap();
    });
    let kept = catalog.get("/kept.txt").expect("published");
    assert_eq!(kept.reader().unwrap().read_at(0, 100).unwrap(), &b"as read"[..]);
    let changed = catalog.get("/changed.txt").expect("published");
    assert!(matches!(changed.reader(), Err(ReadError::Changed)), "served as it is now");
}
