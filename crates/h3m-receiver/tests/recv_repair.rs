//! Unicast repair of a file whose digest travels in its trailers (what
//! `h3m-send` does with a file over 1 MiB sent once, repair origin or not),
//! on loopback against an origin in this process: the trailers and part of
//! the body are lost, so the session announced no digest the receiver holds.
//! The origin's `repr-digest` verifies the repaired body: an origin that
//! announces none gets nothing written, one that serves other bytes than it
//! announces gets nothing written, and either run exits 1.
//!
//! Network safety: group 239.255.71.9, outgoing interface 127.0.0.1, TTL 1;
//! the origin listens on 127.0.0.1.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use h3m_proto::SessionId;
use h3m_proto::encoder::EncoderConfig;
use h3m_proto::frame::{Frame, FrameReader};
use h3m_proto::protection::NullProtection;
use h3m_proto::sender::{ResourceMeta, Sender, SenderConfig};
use h3m_unicast::catalog::{Catalog, Entry, Source};
use h3m_unicast::origin::{Origin, OriginConfig};
use h3m_unicast::tls::Identity;

#[path = "support/loopback.rs"]
mod loopback;
use loopback::send_on_loopback;

const BIN: &str = env!("CARGO_BIN_EXE_h3m-recv");

fn sha256(data: &[u8]) -> [u8; 32] {
    h3m_proto::http::digest::sha256(data)
}

fn session_id() -> SessionId {
    SessionId::new(&[0x7e, 0xa1, (std::process::id() >> 8) as u8, std::process::id() as u8]).unwrap()
}

/// The session's datagrams: `body` as `/big.bin`, its length in the headers
/// and its digest only in the trailers, the session's last resource.
fn trailed_session(body: &[u8]) -> Vec<Vec<u8>> {
    let mut s = Sender::new(SenderConfig::new(EncoderConfig::new(session_id())), Box::new(NullProtection));
    let mut meta = ResourceMeta::file("big.bin", body.len() as u64, SystemTime::now());
    meta.last = true;
    let id = s.start(&meta).unwrap();
    s.write(id, body).unwrap();
    let b64 = h3m_proto::sender::base64(&sha256(body));
    let trailers = [h3m_proto::qpack::HeaderField::new("repr-digest", format!("sha-256=:{b64}:"))];
    s.finish(id, Some(&trailers)).unwrap();
    let now = Instant::now();
    std::iter::from_fn(|| s.poll_transmit(now)).collect()
}

/// The indices of the datagrams carrying push stream data (not the request
/// stream's promise), in order.
fn push_stream_datagrams(datagrams: &[Vec<u8>]) -> Vec<usize> {
    let sid = session_id();
    (0..datagrams.len())
        .filter(|&i| {
            let mut d = datagrams[i].clone();
            let p = h3m_proto::packet::open_packet(&mut d, &sid, None, &NullProtection).unwrap();
            FrameReader::new(p.payload).any(|f| matches!(f, Ok(Frame::Stream { stream_id, .. }) if stream_id != 0))
        })
        .collect()
}

/// What one run left: exit code, stdout, stderr, and the origin's counters.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    served_bytes: u64,
}

/// Starts an origin serving `served` as `/big.bin` with digest `announced`,
/// then a receiver repairing from it, then sends `datagrams` to the receiver.
fn run(tmp: &Path, name: &str, datagrams: &[Vec<u8>], served: &[u8], announced: Option<[u8; 32]>) -> Run {
    let catalog = Arc::new(Catalog::new());
    let entry = Entry { source: Source::Memory(served.to_vec().into()), content_type: None, sha256: announced };
    catalog.insert("/big.bin", entry);
    let identity = Identity::self_signed(&["127.0.0.1".into()]).unwrap();
    let pin = hex::encode(identity.fingerprint());
    let origin = Origin::spawn(OriginConfig::new("127.0.0.1:0".parse().unwrap(), identity), catalog).unwrap();
    let port = 30_000 + (std::process::id() % 20_000) as u16;
    let group: SocketAddr = format!("239.255.71.9:{port}").parse().unwrap();
    let url = format!("https://127.0.0.1:{}", origin.local_addr().port());
    let child = Command::new(BIN)
        .args(["--group", "239.255.71.9", "--port", &port.to_string(), "--interface", "127.0.0.1"])
        .args(["--session-id", &session_id().to_hex(), "--idle-timeout", "5", "--linger", "0.3"])
        .args(["--repair", &url, "--repair-pin", &pin, "--repair-jitter", "0"])
        .arg("--out")
        .arg(tmp.join(name))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    send_on_loopback(group, datagrams);
    let o = child.wait_with_output().unwrap();
    let served_bytes = origin.counters().bytes;
    origin.shutdown();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Run { code: o.status.code(), stdout: text(&o.stdout), stderr: text(&o.stderr), served_bytes }
}

#[test]
fn a_body_whose_trailers_were_lost_is_repaired_and_verified_by_the_origins_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let body: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    let all = trailed_session(&body);
    let pushed = push_stream_datagrams(&all);
    assert!(pushed.len() > 200, "{} push datagrams", pushed.len());
    // Lost: ten datagrams of the body, and the last two of the push stream
    // (the end of the body, the trailers and the FIN).
    let lost: Vec<usize> = pushed[50..60].iter().chain(&pushed[pushed.len() - 2..]).copied().collect();
    let kept: Vec<Vec<u8>> =
        all.iter().enumerate().filter(|(i, _)| !lost.contains(i)).map(|(_, d)| d.clone()).collect();
    let missing: usize = lost.iter().map(|&i| all[i].len()).sum();

    // The origin announces the digest: the repaired body is verified and written.
    let r = run(tmp.path(), "ok", &kept, &body, Some(sha256(&body)));
    let show = format!("{}{}", r.stdout, r.stderr);
    assert_eq!(r.code, Some(0), "{show}");
    assert_eq!(std::fs::read(tmp.path().join("ok/big.bin")).unwrap(), body, "{show}");
    assert!(r.stdout.lines().any(|l| l.starts_with("complete") && l.contains("big.bin")), "{show}");
    assert!(r.stderr.contains("repaired=1 "), "{show}");
    // Only what was lost was asked for: less than the lost datagrams held.
    assert!(r.served_bytes > 0 && r.served_bytes < missing as u64, "served {} for {missing} lost", r.served_bytes);

    // The origin announces no digest: nothing to verify by, nothing written.
    let r = run(tmp.path(), "none", &kept, &body, None);
    let show = format!("{}{}", r.stdout, r.stderr);
    assert_eq!(r.code, Some(1), "{show}");
    assert!(!tmp.path().join("none/big.bin").exists(), "{show}");
    assert!(r.stdout.contains("no digest to verify the body by"), "{show}");

    // The origin serves other bytes than the digest it announces: refused.
    let mut tampered = body.clone();
    for b in &mut tampered {
        *b ^= 0x5a;
    }
    let r = run(tmp.path(), "tampered", &kept, &tampered, Some(sha256(&body)));
    let show = format!("{}{}", r.stdout, r.stderr);
    assert_eq!(r.code, Some(1), "{show}");
    assert!(!tmp.path().join("tampered/big.bin").exists(), "{show}");
    assert!(r.stdout.contains("digest mismatch"), "{show}");
}
