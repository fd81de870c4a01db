//! FEC through the embeddable receiver: lost datagrams rebuilt from the repair
//! port, resources reported with how they completed.

use std::time::{Duration, Instant, SystemTime};

use h3m_proto::SessionId;
use h3m_proto::encoder::EncoderConfig;
use h3m_proto::fec::FecConfig;
use h3m_proto::http::digest::sha256;
use h3m_proto::protection::NullProtection;
use h3m_proto::sender::{ResourceMeta, Sender, SenderConfig};
use h3m_receiver::report::Record;
use h3m_receiver::sink::MemorySink;
use h3m_receiver::{Session, SessionConfig};

#[path = "support/datagrams_file.rs"]
mod datagrams_file;

#[test]
fn resources_say_whether_fec_rebuilt_any_of_their_bytes() {
    let sid = SessionId::from_hex("2a").unwrap();
    let mut cfg = SenderConfig::new(EncoderConfig::new(sid));
    cfg.fec = Some(FecConfig { percent: 20, block: 32, depth: 4, deadline: Duration::from_secs(1) });
    let mut sender = Sender::new(cfg, Box::new(NullProtection));
    let bodies: Vec<Vec<u8>> = (0..2u8).map(|r| (0..60_000u32).map(|i| (i as u8) ^ r).collect()).collect();
    let t0 = Instant::now();
    let mut sent = Vec::new();
    for (r, body) in bodies.iter().enumerate() {
        let mut meta = ResourceMeta::file(format!("f{r}.bin"), body.len() as u64, SystemTime::now());
        meta.sha256 = Some(sha256(body));
        meta.last = r == 1;
        let id = sender.start(&meta).unwrap();
        sender.write(id, body).unwrap();
        sender.finish(id, None).unwrap();
        sent.push(std::iter::from_fn(|| sender.poll_transmit(t0)).collect::<Vec<_>>());
    }
    sender.close().unwrap();
    let tail: Vec<_> = std::iter::from_fn(|| sender.poll_transmit(t0)).collect();
    sent.last_mut().unwrap().extend(tail);
    let mut repair = Vec::new();
    for at in [t0 + Duration::from_secs(2), t0 + Duration::from_secs(4)] {
        repair.extend(std::iter::from_fn(|| sender.poll_repair(at)));
    }
    assert!(!repair.is_empty());
    let mut session = Session::new(SessionConfig::new(sid), MemorySink::new(1 << 20));
    // The second resource loses its fifth and tenth datagrams; the first loses none.
    for (r, datagrams) in sent.iter().enumerate() {
        for (i, d) in datagrams.iter().enumerate() {
            if !(r == 1 && (i == 4 || i == 9)) {
                session.handle_datagram(t0, d);
            }
        }
    }
    for d in &repair {
        session.handle_repair(t0, d);
    }
    let mut records = Vec::new();
    while let Some(e) = session.poll_event() {
        if let Record::Resource(r) = e {
            records.push(r);
        }
    }
    records.sort_by_key(|r| r.push_id);
    let got: Vec<_> = records.iter().map(|r| (r.complete, r.completed_by, r.fec_bytes > 0)).collect();
    assert_eq!(got, vec![(true, Some("multicast"), false), (true, Some("fec"), true)]);
    // Two datagrams of body: at most two packets' worth of bytes rebuilt.
    assert!(records[1].fec_bytes <= 2 * 1200, "{}", records[1].fec_bytes);
    assert!(records[1].text_line().ends_with(&format!("  fec:{}", records[1].fec_bytes)), "{}", records[1].text_line());
    assert_eq!(session.stats().fec.datagrams_recovered, 2);
    let bodies_got: Vec<Vec<u8>> = session.sink_mut().take().into_iter().map(|r| r.body).collect();
    assert_eq!(bodies_got, bodies);
}

/// Writes `datagrams` as a `.datagrams` capture and receives it offline.
fn offline(datagrams: &[&[u8]], fec_off: bool) -> (h3m_receiver::offline::Outcome, String) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("session.datagrams");
    datagrams_file::write(&input, datagrams);
    let mut opts = h3m_receiver::offline::Options::new(&input, dir.path().join("out"));
    opts.session.session_id = SessionId::from_hex("2a").unwrap();
    if fec_off {
        opts.session.fec_window = 0;
    }
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let outcome = h3m_receiver::offline::run(&opts, &mut out, &mut err);
    (outcome, String::from_utf8_lossy(&err).into_owned())
}

#[test]
fn a_capture_of_a_session_with_repair_is_rebuilt_offline() {
    // A `.datagrams` file holds no ports: repair datagrams are told by their
    // first bytes. With `--fec off` the same capture loses its file.
    let sid = SessionId::from_hex("2a").unwrap();
    let mut cfg = SenderConfig::new(EncoderConfig::new(sid));
    cfg.fec = Some(FecConfig { percent: 10, block: 64, depth: 4, deadline: Duration::from_secs(1) });
    let mut sender = Sender::new(cfg, Box::new(NullProtection));
    let body: Vec<u8> = (0..400_000u32).map(|i| (i * 13) as u8).collect();
    let mut meta = ResourceMeta::file("capture.bin", body.len() as u64, SystemTime::now());
    meta.sha256 = Some(sha256(&body));
    meta.last = true;
    let id = sender.start(&meta).unwrap();
    sender.write(id, &body).unwrap();
    sender.finish(id, None).unwrap();
    sender.close().unwrap();
    let t0 = Instant::now();
    let mut capture: Vec<Vec<u8>> = Vec::new();
    while let Some(d) = sender.poll_transmit(t0) {
        capture.push(d);
    }
    let sources = capture.len();
    for at in [t0 + Duration::from_secs(2), t0 + Duration::from_secs(4)] {
        capture.extend(std::iter::from_fn(|| sender.poll_repair(at)));
    }
    // Every 25th datagram of the session lost.
    let kept: Vec<&[u8]> =
        capture.iter().enumerate().filter(|(i, _)| *i >= sources || i % 25 != 7).map(|(_, d)| d.as_slice()).collect();
    let (outcome, err) = offline(&kept, false);
    assert_eq!(outcome.status.code(), 0, "{err}");
    assert!(err.contains(" fec_recovered="), "{err}");
    let (outcome, err) = offline(&kept, true);
    assert_eq!(outcome.status.code(), 1, "{err}");
}
