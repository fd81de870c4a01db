//! Test support for running h3m against the captured nghq sessions in
//! `vectors/nghq/` (copied from the project's reference material; each scenario
//! has a `.pcap`, a `.datagrams` file, an `.expected.json` decode and payloads).
//!
//! The tests themselves live in `tests/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use h3m_proto::SessionId;
use h3m_proto::receiver::{Event, PushSummary, Receiver, ReceiverConfig, SessionEndReason};
use h3m_receiver::capture::{ReadOptions, read_capture_file};
use serde_json::Value;

/// The folder holding the nghq vectors.
pub fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors/nghq")
}

/// One captured scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Its name, e.g. `s01-hello-v4`.
    pub name: String,
    /// The parsed `.expected.json`.
    pub expected: Value,
    /// The UDP payloads, in capture order.
    pub datagrams: Vec<Vec<u8>>,
}

impl Scenario {
    /// The session ID the scenario uses.
    pub fn session_id(&self) -> SessionId {
        SessionId::from_hex(self.expected["session_id_hex"].as_str().expect("session_id_hex")).expect("valid id")
    }

    /// The pushes of `expected.json` that are resources (nghq's goaway promise is not).
    pub fn resources(&self) -> Vec<&Value> {
        self.expected["pushes"].as_array().expect("pushes").iter().filter(|p| p["path"] != "goaway").collect()
    }
}

/// Every scenario, in name order.
pub fn scenarios() -> Vec<Scenario> {
    let mut names: Vec<String> = std::fs::read_dir(vectors_dir())
        .expect("vectors dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".expected.json").map(str::to_owned))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let dir = vectors_dir();
            let expected: Value =
                serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.expected.json"))).expect("json"))
                    .expect("valid json");
            let capture = read_capture_file(&dir.join(format!("{name}.datagrams")), &ReadOptions::default())
                .expect("datagrams file");
            let datagrams = capture.datagrams.into_iter().map(|d| d.payload).collect();
            Scenario { name, expected, datagrams }
        })
        .collect()
}

/// What a receiver made of one push.
#[derive(Debug, Clone, Default)]
pub struct PushResult {
    /// The promise's header list.
    pub request: Vec<(String, String)>,
    /// The response header list.
    pub response: Option<Vec<(String, String)>>,
    /// The body, assembled from the reported offsets (holes are zeros).
    pub body: Vec<u8>,
    /// How it finished.
    pub summary: Option<PushSummary>,
}

/// What a receiver made of a whole session.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Every promised push by push ID.
    pub pushes: BTreeMap<u64, PushResult>,
    /// Push IDs reported as unpromised.
    pub unpromised: Vec<u64>,
    /// Push IDs reported lost whole (neither promise nor stream arrived).
    pub lost: Vec<u64>,
    /// Streams reported headless (their start never arrived).
    pub headless: Vec<u64>,
    /// The session-end reasons reported (at most one is expected).
    pub session_ends: Vec<SessionEndReason>,
    /// The receiver's counters at the end.
    pub stats: h3m_proto::receiver::ReceiverStats,
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

/// Runs a receiver over `datagrams` (1 ms apart), then ends the input.
///
/// Panics if the receiver reports a body byte twice or an event for a push it
/// never promised: both are receiver bugs.
pub fn run(config: ReceiverConfig, datagrams: &[Vec<u8>]) -> Outcome {
    let mut rx = Receiver::new(config);
    let mut out = Outcome::default();
    let mut seen: BTreeMap<u64, h3m_proto::receiver::RangeSet> = BTreeMap::new();
    let start = Instant::now();
    let mut now = start;
    let mut drain = |rx: &mut Receiver, out: &mut Outcome| {
        while let Some(ev) = rx.poll_event() {
            match ev {
                Event::PushPromised { push_id, request } => {
                    let prev = out.pushes.insert(
                        push_id,
                        PushResult {
                            request: request.iter().map(|f| (text(&f.name), text(&f.value))).collect(),
                            ..PushResult::default()
                        },
                    );
                    assert!(prev.is_none(), "push {push_id} promised twice");
                }
                Event::ResponseHeaders { push_id, headers } => {
                    let p = out.pushes.get_mut(&push_id).expect("headers for a promised push");
                    p.response = Some(headers.iter().map(|f| (text(&f.name), text(&f.value))).collect());
                }
                Event::Trailers { .. } => {}
                Event::BodyData { push_id, offset, data, .. } => {
                    let p = out.pushes.get_mut(&push_id).expect("body for a promised push");
                    let end = offset + data.len() as u64;
                    let set = seen.entry(push_id).or_default();
                    let gaps = set.gaps(offset..end);
                    let fresh = gaps.len() == 1 && gaps[0] == (offset..end);
                    assert!(fresh || data.is_empty(), "byte reported twice");
                    set.insert(offset..end);
                    if p.body.len() < end as usize {
                        p.body.resize(end as usize, 0);
                    }
                    p.body[offset as usize..end as usize].copy_from_slice(&data);
                }
                Event::PushFinished(s) => {
                    let p = out.pushes.get_mut(&s.push_id).expect("finish of a promised push");
                    assert!(p.summary.is_none(), "push finished twice");
                    p.summary = Some(s);
                }
                Event::UnpromisedPush { push_id, .. } => out.unpromised.push(push_id),
                Event::PushLost { push_id } => out.lost.push(push_id),
                Event::HeadlessStream { stream_id, .. } => out.headless.push(stream_id),
                Event::SessionEnd { reason } => out.session_ends.push(reason),
            }
        }
    };
    for d in datagrams {
        now += Duration::from_millis(1);
        if rx.poll_timeout().is_some_and(|t| t <= now) {
            rx.handle_timeout(now);
            // A due timer must be consumed, or a driver would spin.
            assert!(rx.poll_timeout().is_none_or(|t| t > now), "timer still due after handle_timeout");
        }
        rx.handle_datagram(now, d);
        drain(&mut rx, &mut out);
    }
    rx.finish(now);
    drain(&mut rx, &mut out);
    out.stats = rx.stats().clone();
    out
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

/// A header list from `expected.json` (`[[name, value], ...]`).
pub fn header_list(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .expect("header list")
        .iter()
        .map(|p| (p[0].as_str().expect("name").to_owned(), p[1].as_str().expect("value").to_owned()))
        .collect()
}
