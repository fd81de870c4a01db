//! The nghq scenarios under faults: every single datagram dropped (exhaustively),
//! and seeded shuffles and duplications. With nothing lost every body is intact;
//! a push that lost bytes is incomplete with exactly the missing ranges, and the
//! bytes that did arrive are right.

use std::collections::BTreeMap;
use std::ops::Range;

use h3m_interop::{Scenario, run, scenarios, sha256_hex};
use h3m_proto::receiver::{IncompleteReason, PushStatus, RangeSet, ReceiverConfig};
use proptest::prelude::*;
use serde_json::Value;

#[derive(Debug, PartialEq)]
enum Expect {
    Complete,
    /// The promise was lost: the receiver never hears of the push.
    Absent,
    /// The push stream's prologue was lost.
    NoStream,
    Incomplete {
        body_len: u64,
        missing: Vec<Range<u64>>,
        missing_from: Option<u64>,
    },
}

fn overlaps(lost: &[Range<u64>], r: Range<u64>) -> Vec<Range<u64>> {
    lost.iter().map(|l| l.start.max(r.start)..l.end.min(r.end)).filter(|x| x.start < x.end).collect()
}

/// What losing datagram `index` must do to each push, worked out from the
/// scenario's own decode (`expected.json`), independently of the receiver.
fn expected_after_drop(sc: &Scenario, index: usize) -> BTreeMap<u64, Expect> {
    let e = &sc.expected;
    let mut lost: BTreeMap<u64, Vec<Range<u64>>> = BTreeMap::new();
    for f in e["packets"][index]["frames"].as_array().unwrap() {
        if f["type"] == "STREAM" {
            let (off, len) = (f["offset"].as_u64().unwrap(), f["length"].as_u64().unwrap());
            lost.entry(f["stream_id"].as_u64().unwrap()).or_default().push(off..off + len);
        }
    }
    let streams: BTreeMap<u64, &Value> =
        e["streams"].as_array().unwrap().iter().map(|s| (s["stream_id"].as_u64().unwrap(), s)).collect();
    let hl = |f: &Value| f["header_hex"].as_str().unwrap().len() as u64 / 2;
    let mut out = BTreeMap::new();
    for p in sc.resources() {
        let push_id = p["push_id"].as_u64().unwrap();
        let promise = streams[&0]["h3_frames"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["push_id"].as_u64() == Some(push_id))
            .unwrap();
        let po = promise["offset"].as_u64().unwrap();
        if !overlaps(lost.get(&0).map_or(&[][..], |v| v), po..po + hl(promise) + promise["length"].as_u64().unwrap())
            .is_empty()
        {
            out.insert(push_id, Expect::Absent);
            continue;
        }
        let sid = p["push_stream"].as_u64().unwrap();
        let l = lost.get(&sid).cloned().unwrap_or_default();
        if l.is_empty() {
            out.insert(push_id, Expect::Complete);
            continue;
        }
        let s = streams[&sid];
        let frames = s["h3_frames"].as_array().unwrap();
        let prologue = frames[0]["offset"].as_u64().unwrap();
        if !overlaps(&l, 0..prologue).is_empty() {
            out.insert(push_id, Expect::NoStream);
            continue;
        }
        let mut missing = Vec::new();
        let mut from = None;
        let mut body_start = 0;
        for f in frames {
            let off = f["offset"].as_u64().unwrap();
            let (h, len) = (hl(f), f["length"].as_u64().unwrap());
            let ty = f["type"].as_u64().unwrap();
            if !overlaps(&l, off..off + h).is_empty() || (ty == 1 && !overlaps(&l, off + h..off + h + len).is_empty()) {
                from = Some(body_start);
                break;
            }
            if ty == 0 {
                for r in overlaps(&l, off + h..off + h + len) {
                    missing.push(body_start + (r.start - off - h)..body_start + (r.end - off - h));
                }
                body_start += len;
            }
        }
        let fin_lost = s["final_size"].as_u64().is_some_and(|fs| l.iter().any(|r| r.end == fs));
        if from.is_none() && fin_lost {
            from = Some(body_start);
        }
        let mut set = RangeSet::new();
        for r in missing {
            set.insert(r);
        }
        let body_len = from.unwrap_or(body_start);
        let mut missing: Vec<Range<u64>> = set.iter().collect();
        // A hole that runs into the unknown tail is reported as part of the tail.
        if let (Some(t), Some(last)) = (from, missing.last())
            && last.end >= t
        {
            from = Some(last.start.min(t));
            missing.pop();
        }
        out.insert(push_id, Expect::Incomplete { body_len, missing, missing_from: from });
    }
    out
}

#[test]
fn every_single_datagram_drop_is_reported_exactly() {
    let mut runs = 0;
    let mut incomplete_seen = 0;
    for sc in scenarios() {
        let payloads: BTreeMap<u64, Vec<u8>> = sc
            .resources()
            .iter()
            .filter_map(|p| {
                let file = p["payload_file"].as_str()?;
                Some((p["push_id"].as_u64()?, std::fs::read(h3m_interop::vectors_dir().join(file)).ok()?))
            })
            .collect();
        for i in 0..sc.datagrams.len() {
            let mut dgrams = sc.datagrams.clone();
            dgrams.remove(i);
            let out = run(ReceiverConfig::new(sc.session_id()), &dgrams);
            let expect = expected_after_drop(&sc, i);
            for (push_id, want) in &expect {
                let ctx = format!("{} without datagram {i}, push {push_id}", sc.name);
                match want {
                    Expect::Absent => {
                        assert!(!out.pushes.contains_key(push_id), "{ctx}");
                        assert!(out.unpromised.contains(push_id), "{ctx}: its stream must be reported unpromised");
                        continue;
                    }
                    Expect::Complete => {
                        let got = &out.pushes[push_id];
                        assert!(got.summary.as_ref().unwrap().is_complete(), "{ctx}: {:?}", got.summary);
                        if let Some(payload) = payloads.get(push_id) {
                            assert_eq!(&got.body, payload, "{ctx}");
                        }
                        continue;
                    }
                    Expect::NoStream => {
                        let s = out.pushes[push_id].summary.clone().unwrap();
                        assert_eq!(s.status, PushStatus::Incomplete(IncompleteReason::NoPushStream), "{ctx}");
                        assert_eq!((s.body_len, s.missing_from), (0, Some(0)), "{ctx}");
                    }
                    Expect::Incomplete { body_len, missing, missing_from } => {
                        let got = &out.pushes[push_id];
                        let s = got.summary.clone().unwrap();
                        assert_eq!(s.status, PushStatus::Incomplete(IncompleteReason::SessionEnded), "{ctx}");
                        assert_eq!(&s.missing, missing, "{ctx}");
                        assert_eq!(&s.missing_from, missing_from, "{ctx}");
                        assert_eq!(s.body_len, *body_len, "{ctx}");
                        // Every byte that was reported is the right byte.
                        if let Some(payload) = payloads.get(push_id) {
                            let mut holes = RangeSet::new();
                            for r in missing {
                                holes.insert(r.clone());
                            }
                            holes.insert(missing_from.unwrap_or(u64::MAX)..u64::MAX);
                            for (at, (a, b)) in got.body.iter().zip(payload).enumerate() {
                                if holes.gaps(at as u64..at as u64 + 1).len() == 1 {
                                    assert_eq!(a, b, "{ctx}: byte {at}");
                                }
                            }
                        }
                    }
                }
                incomplete_seen += 1;
            }
            runs += 1;
        }
    }
    // One run per datagram of the 18 captures.
    assert_eq!(runs, 599);
    eprintln!("{incomplete_seen} damaged pushes checked");
    assert!(incomplete_seen > 400, "{incomplete_seen} damaged pushes checked");
}

/// A deterministic xorshift generator so a seed names one exact fault pattern.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn assert_intact(sc: &Scenario, dgrams: &[Vec<u8>], what: &str) {
    let out = run(ReceiverConfig::new(sc.session_id()), dgrams);
    for p in sc.resources() {
        let id = p["push_id"].as_u64().unwrap();
        let got = out.pushes.get(&id).unwrap_or_else(|| panic!("{} {what}: push {id} missing", sc.name));
        assert!(got.summary.as_ref().unwrap().is_complete(), "{} {what}: push {id} {:?}", sc.name, got.summary);
        assert_eq!(sha256_hex(&got.body), p["body_sha256"].as_str().unwrap(), "{} {what}: push {id}", sc.name);
    }
    assert_eq!(out.pushes.len(), sc.resources().len());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn shuffled_and_duplicated_sessions_arrive_intact(which in 0usize..18, seed in 1u64.., dups in 0usize..40) {
        let all = scenarios();
        let sc = &all[which];
        let mut rng = Rng(seed);
        let mut dgrams = sc.datagrams.clone();
        for _ in 0..dups {
            let d = dgrams[rng.below(dgrams.len())].clone();
            let at = rng.below(dgrams.len() + 1);
            dgrams.insert(at, d);
        }
        for i in (1..dgrams.len()).rev() {
            dgrams.swap(i, rng.below(i + 1));
        }
        assert_intact(sc, &dgrams, &format!("seed {seed}, {dups} duplicates"));
    }
}

#[test]
fn fully_reversed_sessions_arrive_intact() {
    for sc in scenarios() {
        let mut d = sc.datagrams.clone();
        d.reverse();
        assert_intact(&sc, &d, "reversed");
        let doubled: Vec<Vec<u8>> = sc.datagrams.iter().flat_map(|d| [d.clone(), d.clone()]).collect();
        assert_intact(&sc, &doubled, "every datagram twice");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// With a push timeout shorter than the datagram spacing, timers fire all
    /// the time: whatever completes is intact, and (checked in `run`) every due
    /// timer is consumed.
    #[test]
    fn timers_firing_mid_session_never_spin_or_corrupt(which in 0usize..18, seed in 1u64..) {
        let all = scenarios();
        let sc = &all[which];
        let mut rng = Rng(seed);
        let mut dgrams = sc.datagrams.clone();
        for i in (1..dgrams.len()).rev() {
            dgrams.swap(i, rng.below(i + 1));
        }
        let mut cfg = ReceiverConfig::new(sc.session_id());
        cfg.push_timeout = std::time::Duration::from_millis(2);
        let out = run(cfg, &dgrams);
        for p in sc.resources() {
            let id = p["push_id"].as_u64().unwrap();
            if let Some(got) = out.pushes.get(&id)
                && got.summary.as_ref().is_some_and(|s| s.is_complete())
            {
                prop_assert_eq!(sha256_hex(&got.body), p["body_sha256"].as_str().unwrap());
            }
        }
    }
}
