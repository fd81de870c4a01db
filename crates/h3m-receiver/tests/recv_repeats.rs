//! Repeated copies of a resource (`h3m-send --repeat`): copies that each lost
//! different packets complete the resource together, a copy of a resource
//! already written is recognised and not written again, and a copy whose body
//! does not match its digest is never written.

use std::time::UNIX_EPOCH;

use h3m_proto::SessionId;
use h3m_proto::encoder::EncoderConfig;
use h3m_proto::protection::NullProtection;
use h3m_proto::sender::{ResourceMeta, Sender, SenderConfig};
use h3m_receiver::offline::{self, ExitStatus, Options};

#[path = "support/datagrams_file.rs"]
mod datagrams_file;

const SID: &str = "5e55";

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
    out
}

/// `copies` copies of one resource, datagrams per copy.
fn copies(body: &[u8], copies: usize, announced: [u8; 32]) -> Vec<Vec<Vec<u8>>> {
    let mut sender =
        Sender::new(SenderConfig::new(EncoderConfig::new(SessionId::from_hex(SID).unwrap())), Box::new(NullProtection));
    let now = std::time::Instant::now();
    (0..copies)
        .map(|i| {
            let mut meta = ResourceMeta::file("media/seg.bin", body.len() as u64, UNIX_EPOCH);
            meta.sha256 = Some(announced);
            meta.last = i + 1 == copies;
            let id = sender.start(&meta).unwrap();
            sender.write(id, body).unwrap();
            sender.finish(id, None).unwrap();
            std::iter::from_fn(|| sender.poll_transmit(now)).collect()
        })
        .collect()
}

fn run(datagrams: &[Vec<u8>]) -> (offline::Outcome, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("session.datagrams");
    datagrams_file::write(&input, datagrams);
    let mut opts = Options::new(&input, dir.path().join("out"));
    opts.session.session_id = SessionId::from_hex(SID).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let outcome = offline::run(&opts, &mut out, &mut err);
    (outcome, dir, String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn lossy_copies_complete_each_other_and_an_intact_repeat_is_not_rewritten() {
    let body: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let c = copies(&body, 4, sha256(&body));
    let n = c[0].len();
    assert!(n > 100);
    // Copy k loses every datagram whose index is k mod 3, except the first two (the
    // promise, then the stream's start, which says which push the stream is), so
    // no copy is whole but together they are.
    let mut wire = Vec::new();
    for (k, copy) in c[..3].iter().enumerate() {
        wire.extend(copy.iter().enumerate().filter(|(i, _)| *i <= 1 || i % 3 != k).map(|(_, d)| d.clone()));
    }
    let (outcome, dir, stdout) = run(&wire);
    assert_eq!(outcome.status, ExitStatus::Success, "{stdout}");
    assert_eq!(std::fs::read(dir.path().join("out/media/seg.bin")).unwrap(), body);
    assert_eq!(outcome.resources.len(), 1, "one record for the resource: {stdout}");
    // It says how it completed: from two copies merged (the third came after).
    assert_eq!(outcome.resources[0].copies, 2, "{stdout}");
    assert_eq!(outcome.summary.as_ref().unwrap().resources_merged, 1);

    // Copies 1 and 2 already hold every byte between them, so the file is written
    // during copy 2; copy 3, and a fourth intact copy, are recognised as repeats
    // of a resource already written and not written again.
    wire.extend(c[3].iter().cloned());
    let (outcome, _dir, stdout) = run(&wire);
    assert_eq!(outcome.status, ExitStatus::Success, "{stdout}");
    assert_eq!(outcome.resources.len(), 1, "{stdout}");
    let s = outcome.summary.unwrap();
    assert_eq!(s.resources_repeated, 2, "{s:?}");
}

#[test]
fn copies_that_never_cover_the_body_are_reported_with_the_union_missing() {
    let body = vec![7u8; 50_000];
    let c = copies(&body, 3, sha256(&body));
    // All copies lose the same datagram (index 5): that range stays missing.
    // The third also loses the start of its stream (index 1): it never learns
    // which resource it carries, and is judged at the end.
    let wire: Vec<Vec<u8>> = c
        .iter()
        .enumerate()
        .flat_map(|(k, copy)| copy.iter().enumerate().filter(move |(i, _)| *i != 5 && !(k == 2 && *i == 1)))
        .map(|(_, d)| d.clone())
        .collect();
    let (outcome, dir, stdout) = run(&wire);
    assert_eq!(outcome.status, ExitStatus::Incomplete, "{stdout}");
    assert_eq!(outcome.resources.len(), 1, "{stdout}");
    let r = &outcome.resources[0];
    assert!(!r.complete);
    assert_eq!(r.missing.len(), 1, "{stdout}");
    let [a, b] = r.missing[0];
    assert!(a > 0 && b > a && b - a < 1200, "one datagram's worth: {a}..{b}");
    assert!(!dir.path().join("out/media/seg.bin").exists());
    // One resource is incomplete, not one per copy: one count, one line.
    assert_eq!(outcome.summary.unwrap().resources_incomplete, 1);
    assert_eq!(stdout.lines().filter(|l| l.starts_with("incomplete ")).count(), 1, "{stdout}");
}

/// Copies of a tree: `copies` rounds, each sending every body in order;
/// datagrams per round per resource.
fn tree_copies(bodies: &[Vec<u8>], copies: usize) -> Vec<Vec<Vec<Vec<u8>>>> {
    let mut sender =
        Sender::new(SenderConfig::new(EncoderConfig::new(SessionId::from_hex(SID).unwrap())), Box::new(NullProtection));
    let now = std::time::Instant::now();
    (0..copies)
        .map(|round| {
            bodies
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    let mut meta = ResourceMeta::file(format!("tree/{i}.bin"), body.len() as u64, UNIX_EPOCH);
                    meta.sha256 = Some(sha256(body));
                    meta.last = round + 1 == copies && i + 1 == bodies.len();
                    let id = sender.start(&meta).unwrap();
                    sender.write(id, body).unwrap();
                    sender.finish(id, None).unwrap();
                    std::iter::from_fn(|| sender.poll_transmit(now)).collect()
                })
                .collect()
        })
        .collect()
}

#[test]
fn copies_repair_more_incomplete_resources_than_there_are_push_slots() {
    // Regression (hardening item 1): incomplete first copies held their
    // concurrent-push slots (256), so the promises of the second copies were
    // refused (`too_many_pushes`) and never merged: `--repeat` failed under loss.
    let bodies: Vec<Vec<u8>> = (0..300u32)
        .map(|i| (0..4_000u32).map(|j| (j.wrapping_mul(31).wrapping_add(i * 7) % 251) as u8).collect())
        .collect();
    let rounds = tree_copies(&bodies, 2);
    let mut wire = Vec::new();
    // Round 1: every resource loses one datagram in the middle of its body.
    for group in &rounds[0] {
        assert!(group.len() >= 4, "{} datagrams", group.len());
        let lost = group.len() - 2;
        wire.extend(group.iter().enumerate().filter(|(i, _)| *i != lost).map(|(_, d)| d.clone()));
    }
    for group in &rounds[1] {
        wire.extend(group.iter().cloned());
    }
    let (outcome, dir, stdout) = run(&wire);
    assert_eq!(outcome.status, ExitStatus::Success, "{stdout}");
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(&std::fs::read(dir.path().join(format!("out/tree/{i}.bin"))).unwrap(), body, "tree/{i}.bin");
    }
    let s = outcome.summary.unwrap();
    assert_eq!((s.resources_complete, s.resources_incomplete), (300, 0), "{s:?}");
}

#[test]
fn a_body_that_does_not_match_its_digest_is_not_written() {
    let body = b"the genuine bytes".to_vec();
    let c = copies(&body, 1, sha256(b"something else"));
    let (outcome, dir, stdout) = run(&c[0]);
    assert_eq!(outcome.status, ExitStatus::Incomplete, "{stdout}");
    assert!(stdout.contains("digest mismatch"), "{stdout}");
    assert!(outcome.errors.iter().any(|e| e.message.contains("digest mismatch")));
    assert_eq!(std::fs::read_dir(dir.path().join("out")).unwrap().count(), 0, "nothing written, no temp file");
}

#[test]
fn a_copy_without_its_promise_is_recognised_by_its_digest() {
    let body: Vec<u8> = (0..20_000u32).map(|i| (i % 199) as u8).collect();
    let c = copies(&body, 2, sha256(&body));
    // Copy 2 lost its promise (its first datagram): its stream's response headers
    // carry the digest of the resource copy 1 delivered, so it is just a repeat.
    let wire: Vec<Vec<u8>> = c[0].iter().chain(&c[1][1..]).cloned().collect();
    let (outcome, _dir, stdout) = run(&wire);
    assert_eq!(outcome.status, ExitStatus::Success, "{stdout}");
    assert!(outcome.unpromised.is_empty(), "{stdout}");
    assert_eq!(outcome.summary.unwrap().resources_repeated, 1);
    // The only copy lost its promise: nothing is known to have arrived intact.
    let (outcome, dir, stdout) = run(&c[0][1..]);
    assert_eq!(outcome.status, ExitStatus::Incomplete, "{stdout}");
    assert_eq!(outcome.unpromised.len(), 1, "{stdout}");
    assert!(stdout.contains("unpromised push 0 on stream 3"), "{stdout}");
    assert_eq!(std::fs::read_dir(dir.path().join("out")).unwrap().count(), 0);
}

/// `copies` copies of one resource sent by a paced sender that repeats open
/// pushes' promises and stream heads every `repeat_ms` (none when 0): 10 KB
/// written at a time, datagrams 1 ms apart. Datagrams per copy.
fn paced_copies(body: &[u8], copies: usize, repeat_ms: u64) -> Vec<Vec<Vec<u8>>> {
    let mut cfg = SenderConfig::new(EncoderConfig::new(SessionId::from_hex(SID).unwrap()));
    cfg.repeat_heads = (repeat_ms > 0).then(|| std::time::Duration::from_millis(repeat_ms));
    let mut sender = Sender::new(cfg, Box::new(NullProtection));
    let mut now = std::time::Instant::now();
    (0..copies)
        .map(|i| {
            let mut meta = ResourceMeta::file("media/late.bin", body.len() as u64, UNIX_EPOCH);
            meta.sha256 = Some(sha256(body));
            meta.last = i + 1 == copies;
            let id = sender.start(&meta).unwrap();
            let mut out = Vec::new();
            for chunk in body.chunks(10_000) {
                sender.write(id, chunk).unwrap();
                while let Some(d) = sender.poll_transmit(now) {
                    out.push(d);
                    now += std::time::Duration::from_millis(1);
                }
            }
            sender.finish(id, None).unwrap();
            out.extend(std::iter::from_fn(|| sender.poll_transmit(now)));
            out
        })
        .collect()
}

#[test]
fn a_late_joiner_completes_from_the_tail_it_saw_and_the_next_copy() {
    // A receiver joins after the first 60 datagrams of copy 1 (its promise and
    // stream head among them), and loses the second half of copy 2. With the
    // sender repeating promises and heads, copy 1's tail is placed and merged
    // with copy 2's head: the file is written. Without, copy 1 is a stream it
    // cannot place and the file is incomplete.
    let body: Vec<u8> = (0..200_000u32).map(|i| (i * 17 % 253) as u8).collect();
    for (repeat_ms, written) in [(20, true), (0, false)] {
        let c = paced_copies(&body, 2, repeat_ms);
        let mut wire: Vec<Vec<u8>> = c[0][60..].to_vec();
        wire.extend(c[1][..c[1].len() / 2].iter().cloned());
        let (outcome, dir, stdout) = run(&wire);
        let file = std::fs::read(dir.path().join("out/media/late.bin"));
        if written {
            assert_eq!(file.unwrap(), body, "{stdout}");
            assert_eq!(outcome.status, ExitStatus::Success, "{stdout}");
            assert!(stdout.starts_with("complete   media/late.bin  200000 bytes"), "{stdout}");
        } else {
            assert!(file.is_err(), "{stdout}");
            assert_eq!(outcome.status, ExitStatus::Incomplete, "{stdout}");
            assert!(stdout.lines().any(|l| l.starts_with("incomplete media/late.bin  ")), "{stdout}");
        }
    }
}

#[test]
fn a_repeat_that_lost_its_stream_start_is_judged_once_as_a_repeat() {
    // Copy 2's promise arrives but its stream's first datagram (type, push ID,
    // headers) is lost: the push never gets its stream, and the rest of the
    // stream is headless. Both are the same copy of a resource copy 1 wrote:
    // one repeat, no loss, exit 0. (It was also reported as a headless stream,
    // exit 1.)
    let body: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 249) as u8).collect();
    let c = copies(&body, 2, sha256(&body));
    let mut wire = c[0].clone();
    wire.extend(c[1].iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, d)| d.clone()));
    let (outcome, dir, stdout) = run(&wire);
    assert_eq!(outcome.status, ExitStatus::Success, "{stdout}");
    assert_eq!(std::fs::read(dir.path().join("out/media/seg.bin")).unwrap(), body);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let summary = outcome.summary.unwrap();
    assert_eq!((summary.headless_streams, summary.resources_incomplete), (0, 0));
    assert_eq!(summary.resources_repeated, 1);
}
