//! AMBI with FEC, live over loopback multicast (group 239.255.77.15, outgoing
//! interface 127.0.0.1, TTL 1): FEC repair datagrams carry no
//! authentication, so a datagram FEC rebuilds must pass the AMBI gate like
//! one received. An attacker who sees the session can compute repair
//! datagrams over a forged copy of a datagram that a receiver lost; the
//! receiver must drop what they rebuild (counted as mismatched), and genuine
//! repair must still rebuild the datagram, which then completes the file.
//!
//! The session (a signed push), its in-band manifests (Ed25519, the test
//! key) and both sets of repair datagrams are made here with `h3m_proto`,
//! and sent from one socket to a real `h3m-recv --ambi inband --trust`.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use h3m_proto::SessionId;
use h3m_proto::ambi::{DigestProfile, ManifestBuilder, PseudoHeader, default_manifest_id, inband};
use h3m_proto::auth::{PushSigner, SignatureAlgorithm, SignatureForms, SigningKey};
use h3m_proto::encoder::EncoderConfig;
use h3m_proto::fec::FecConfig;
use h3m_proto::fec::encoder::FecEncoder;
use h3m_proto::protection::NullProtection;
use h3m_proto::sender::{ResourceMeta, Sender, SenderConfig};

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop/vectors/keys/");
const GROUP: &str = "239.255.77.15";
/// The datagram the receiver loses (a body datagram, mid-file).
const LOST: usize = 20;

struct Session {
    sid: SessionId,
    body: Vec<u8>,
    datagrams: Vec<Vec<u8>>,
}

/// One signed push of 60 000 bytes (`connection: close`) in datagrams with
/// 4-byte packet numbers.
fn session() -> Session {
    let sid = SessionId::from_hex("a4b1").unwrap();
    let key = SigningKey::from_pem(&std::fs::read(format!("{KEYS}ed25519.key.pem")).unwrap()).unwrap();
    let signer = PushSigner::new(key, "ed25519", SignatureForms::Cavage).unwrap();
    let mut s = Sender::new(SenderConfig::new(EncoderConfig::new(sid)), Box::new(NullProtection));
    let body: Vec<u8> = (0..60_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let date = SystemTime::now();
    let mut meta = ResourceMeta::file("/clip.bin", body.len() as u64, date);
    meta.sha256 = Some(h3m_proto::http::digest::sha256(&body));
    meta.last = true;
    let (mut req, mut resp) = (s.request_headers(&meta), s.response_headers(&meta));
    assert!(signer.sign_headers(&mut req, &mut resp, date).unwrap());
    let id = s.start_with_headers(&meta, &req, &resp).unwrap();
    s.write(id, &body).unwrap();
    s.finish(id, None).unwrap();
    let now = Instant::now();
    let datagrams: Vec<Vec<u8>> = std::iter::from_fn(|| s.poll_transmit(now)).collect();
    assert!(datagrams.len() > LOST + 10, "{} datagrams", datagrams.len());
    Session { sid, body, datagrams }
}

/// Repair datagrams over `datagrams` (one group: 10 % of a block of 64).
fn repair(sid: SessionId, datagrams: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let config = FecConfig { percent: 10, block: 64, depth: 1, deadline: Duration::from_secs(1) };
    let mut enc = FecEncoder::new(config, sid);
    let now = Instant::now();
    for (pn, d) in datagrams.iter().enumerate() {
        enc.add_source(now, pn as u64, d);
    }
    enc.flush(now);
    let later = now + Duration::from_secs(5);
    let out: Vec<Vec<u8>> = std::iter::from_fn(|| enc.poll_repair(later)).collect();
    assert!(!out.is_empty());
    out
}

/// The sender's in-band manifests of every datagram sent from `source`.
fn manifests(s: &Session, source: SocketAddr, port: u16) -> Vec<Vec<u8>> {
    let key = SigningKey::from_pem(&std::fs::read(format!("{KEYS}ed25519.key.pem")).unwrap()).unwrap();
    let profile = DigestProfile::parse("sha-256/128", default_manifest_id(&s.sid)).unwrap();
    let header = PseudoHeader {
        source: source.ip(),
        destination: GROUP.parse::<IpAddr>().unwrap(),
        source_port: source.port(),
        destination_port: port,
    };
    let mut b = ManifestBuilder::new(profile, header, 64, 4);
    for (pn, d) in s.datagrams.iter().enumerate() {
        b.add(pn as u32, d);
    }
    b.flush();
    std::iter::from_fn(|| b.poll_manifest())
        .map(|m| inband::seal(&m, &key, SignatureAlgorithm::Ed25519).unwrap())
        .collect()
}

fn loopback_socket(port: u16) -> UdpSocket {
    use h3m_net::{Interface, MulticastConfig, open_sender};
    let group = SocketAddr::new(GROUP.parse().unwrap(), port);
    let mut cfg = MulticastConfig::new(group).with_interface(Interface::Addr("127.0.0.1".parse().unwrap()));
    cfg.source = Some("127.0.0.1".parse().unwrap());
    let (socket, _) = open_sender(&cfg).unwrap();
    socket.set_nonblocking(false).unwrap();
    socket
}

fn send(socket: &UdpSocket, port: u16, datagrams: &[Vec<u8>]) {
    let to = SocketAddr::new(GROUP.parse().unwrap(), port);
    for d in datagrams {
        socket.send_to(d, to).unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Runs the receiver while the session is sent without datagram [`LOST`],
/// followed by `repair_of` 's repair datagrams.
fn run(out: &Path, forged_repair: bool) -> (Output, Vec<u8>) {
    let s = session();
    let port = 31_000 + (std::process::id() % 10_000) as u16 * 2 + u16::from(forged_repair) * 4;
    let socket = loopback_socket(port);
    let source = socket.local_addr().unwrap();
    assert_ne!(source.port(), 0);
    let trust = format!("{KEYS}ed25519.pub.pem");
    let port_s = port.to_string();
    let recv = Command::new(env!("CARGO_BIN_EXE_h3m-recv"))
        .args(["--group", GROUP, "--source", "127.0.0.1", "--port", &port_s, "--interface", "127.0.0.1"])
        .args(["--session-id", "a4b1", "--ambi", "inband", "--trust", &trust])
        .args(["--idle-timeout", "3", "--push-timeout", "2", "--out"])
        .arg(out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    // Repair over a copy whose lost datagram says something else (same
    // length, same header: only body bytes differ).
    let mut copy = s.datagrams.clone();
    let forged_at = copy[LOST].len() - 100;
    for b in &mut copy[LOST][forged_at..] {
        *b ^= 0x5a;
    }
    let repairs = if forged_repair { repair(s.sid, &copy) } else { repair(s.sid, &s.datagrams) };
    send(&socket, port + 1, &manifests(&s, source, port));
    let received: Vec<Vec<u8>> =
        s.datagrams.iter().enumerate().filter(|(i, _)| *i != LOST).map(|(_, d)| d.clone()).collect();
    send(&socket, port, &received);
    send(&socket, port + 1, &repairs);
    (recv.wait_with_output().unwrap(), s.body)
}

fn count(stderr: &str, key: &str) -> u64 {
    let at = stderr.find(&format!(" {key}=")).unwrap_or_else(|| panic!("no {key}: {stderr}"));
    stderr[at + key.len() + 2..].split(' ').next().unwrap().trim().parse().unwrap()
}

#[test]
fn a_datagram_rebuilt_from_forged_repair_is_dropped_by_the_gate() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let (o, _) = run(&out, true);
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    // FEC rebuilt the forged datagram; the gate refused it: the file is
    // incomplete (one datagram missing), not refused for a wrong digest.
    assert_eq!(count(&stderr, "fec_recovered"), 1, "{stderr}");
    assert_eq!(count(&stderr, "ambi_mismatched"), 1, "{stderr}");
    assert_eq!(count(&stderr, "ambi_authenticated"), session().datagrams.len() as u64 - 1, "{stderr}");
    assert!(stdout.lines().any(|l| l.starts_with("incomplete") && l.contains("clip.bin")), "{stdout}");
    assert!(!stdout.contains("digest mismatch"), "a forged byte reached the core: {stdout}");
    assert!(!out.join("clip.bin").exists());
    assert_eq!(o.status.code(), Some(1), "{stdout}{stderr}");
}

#[test]
fn genuine_repair_rebuilds_through_the_gate() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let (o, body) = run(&out, false);
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(std::fs::read(out.join("clip.bin")).unwrap(), body);
    assert_eq!(count(&stderr, "fec_recovered"), 1, "{stderr}");
    assert_eq!(count(&stderr, "ambi_mismatched"), 0, "{stderr}");
    // The rebuilt datagram was authenticated as well.
    assert_eq!(count(&stderr, "ambi_authenticated"), session().datagrams.len() as u64, "{stderr}");
    assert!(stdout.lines().any(|l| l.starts_with("complete") && l.contains(" fec:")), "{stdout}");
}
