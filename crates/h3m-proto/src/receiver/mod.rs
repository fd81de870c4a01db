//! The receiver state machine: datagrams and the current time in, events out.
//!
//! ```text
//!  handle_datagram(now, bytes) ─┐            ┌─> poll_event() -> Event
//!  handle_timeout(now) ─────────┼─ Receiver ─┤
//!  finish(now) ─────────────────┘            └─> poll_timeout() -> Option<Instant>
//! ```
//!
//! The receiver checks each packet's session ID, removes protection, reads its
//! frames, reassembles the request stream (stream 0, PUSH_PROMISE frames) and
//! each push stream, and reports every promised push: its request and response
//! headers, its body bytes at their body offsets (in arrival order, possibly
//! out of order), and how it finished.
//!
//! It is built to get right what nghq's receiver gets wrong: a push finishes as
//! complete only when every byte up to the FIN is present and every frame is
//! parsed (a FIN that overtakes earlier data changes nothing); PADDING and PING
//! may stand anywhere; RESET_STREAM is honoured; unknown HTTP/3 frames are
//! skipped; duplicates and reordering are harmless; a push stream that arrives
//! before its promise waits (bounded) for it; a lost DATA frame header makes the
//! push incomplete with the exact missing ranges.
//!
//! Memory is bounded by [`ReceiverConfig`]: concurrent pushes, buffered bytes per
//! stream and in total, header-block size, stream fragmentation. Whatever is
//! dropped is counted in [`ReceiverStats`].

mod push_stream;
mod ranges;
mod request_stream;
mod segments;
#[cfg(test)]
mod tests;

pub use ranges::{Gaps, RangeSet};

use std::collections::{BTreeSet, VecDeque};

/// Maps keyed by push and stream IDs: hashed with a per-process seed
/// (foldhash), several times cheaper than SipHash for integer keys.
type IdMap<V> = foldhash::HashMap<u64, V>;
use std::ops::Range;
use std::time::{Duration, Instant};

use crate::SessionId;
use crate::fec::FecDecoder;
use crate::frame::{Frame, FrameReader};
use crate::h3::{self, H3Frame};
use crate::packet::{self, PacketError};
use crate::protection::{NullProtection, PacketProtection};
use crate::qpack::{self, DecodeLimits, HeaderField};
use push_stream::{Item, PushStream, StreamLimits};
use request_stream::RequestStream;

/// How many finished stream and push IDs are remembered (to drop late duplicates).
const CLOSED_MEMORY: usize = 4096;

/// What one received range of a stream costs in memory (map slot and region
/// record), for [`ReceiverConfig::max_ranges_total`].
pub const RANGE_COST: usize = 48;

/// At most this many lost pushes are reported one by one at the end of a
/// session ([`Event::PushLost`]); the rest are counted in
/// [`ReceiverStats::pushes_lost`].
pub const MAX_LOST_REPORTED: u64 = 1024;

/// Most disjoint ranges of seen push IDs remembered (to name lost pushes):
/// forged promises with every other push ID would otherwise grow the set by
/// one range each.
const MAX_SEEN_RANGES: usize = 4096;

/// A receiver whose lowest packet number is below this saw the session from
/// its start (senders number from 0: h3m by default, nghq always), so the
/// pushes below the first one it saw were sent and lost, not sent before it
/// joined (see [`Receiver::saw_session_start`]).
pub const START_WINDOW: u64 = 64;

/// [`START_WINDOW`] for 1-byte packet numbers (nghq's), which wrap every 256
/// packets: a late joiner's first number falls anywhere in 0..256, so a
/// narrow window keeps the chance of taking it for one present from the
/// start to 1 in 64.
pub const START_WINDOW_1_BYTE: u64 = 4;

/// [`ReceiverConfig::max_orphan_streams`] once the session is known to carry
/// FEC (see [`Receiver::handle_repair`]).
pub const FEC_MAX_ORPHAN_STREAMS: usize = 512;

/// [`ReceiverConfig::max_concurrent_pushes`] once the session is known to
/// carry FEC: pushes that lost a datagram stay open until their group's
/// repair comes, while later ones go on arriving.
pub const FEC_MAX_CONCURRENT_PUSHES: usize = 1024;

/// How many recent packet numbers are remembered to tell replays from
/// reordered packets (as far back as FEC rebuilds datagrams).
const PN_WINDOW: u64 = 32_768;

/// Receiver settings. [`ReceiverConfig::new`] gives sensible defaults.
pub struct ReceiverConfig {
    /// The session ID every packet must carry.
    pub session_id: SessionId,
    /// Packet protection (the null protection of nghq by default).
    pub protection: Box<dyn PacketProtection>,
    /// End the session after this long without a valid packet (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Finish a push as incomplete after this long without progress on it; also
    /// how long a push stream waits for its promise.
    pub push_timeout: Duration,
    /// Most pushes in progress at once. A promise beyond it takes the slot of
    /// the push that has gone longest without progress, which finishes as
    /// [`IncompleteReason::Evicted`]: the limit bounds memory, it never refuses
    /// a new copy of a resource that earlier copies left incomplete.
    pub max_concurrent_pushes: usize,
    /// Most streams whose push is unknown (waiting for a promise or for their
    /// first bytes) at once.
    pub max_orphan_streams: usize,
    /// Most bytes held out of order for one stream.
    pub max_buffered_per_stream: usize,
    /// The memory budget for bytes held out of order across the receiver
    /// (each held fragment is charged its bytes plus a fixed overhead).
    pub max_buffered_total: usize,
    /// Most disjoint received ranges across every push stream (each costs
    /// about [`RANGE_COST`] bytes). Beyond it the most fragmented stream fails
    /// as [`IncompleteReason::ProtocolError`] (too fragmented).
    pub max_ranges_total: usize,
    /// Longest body accepted when the response announces no `content-length`;
    /// bytes beyond the announced length (or this) fail the push.
    pub max_body_len: u64,
    /// Largest HEADERS or PUSH_PROMISE frame accepted.
    pub max_header_block: usize,
    /// Most disjoint received ranges per stream (fragmentation bound).
    pub max_gaps_per_stream: usize,
    /// QPACK decoding limits.
    pub qpack_limits: DecodeLimits,
    /// Whether `connection: close` and nghq's goaway promise end the session.
    /// A driver that authenticates pushes turns this off and ends the session
    /// itself ([`Receiver::end`]) on an end signal it has verified, so a
    /// forged unsigned push cannot end it.
    pub end_signals: bool,
    /// Rebuild lost datagrams from the session's FEC repair datagrams
    /// ([`Receiver::handle_repair`], see [`crate::fec`]); the receiver then
    /// keeps recent datagrams, at most this many (`0`: no FEC).
    pub fec_window: usize,
    /// Keep push streams whose promise has not arrived until the session
    /// ends (within [`max_orphan_streams`](Self::max_orphan_streams) and the
    /// memory budget) instead of dropping them after the push timeout: a
    /// driver that can learn lost promises elsewhere (unicast repair's
    /// listing, [`Receiver::adopt_promise`]) then keeps what of them arrived.
    pub orphans_wait_for_end: bool,
    /// Hand the datagrams FEC rebuilds to the caller ([`Receiver::poll_recovered`])
    /// instead of handling them: a driver that authenticates every datagram
    /// before the receiver sees it (AMBI) checks them too, since repair
    /// datagrams are not authenticated, and hands back those that pass with
    /// [`Receiver::handle_recovered_datagram`].
    pub recovered_to_caller: bool,
}

impl ReceiverConfig {
    /// Defaults: 60 s idle timeout, 10 s push timeout, 256 concurrent pushes,
    /// 64 orphan streams, 16 MiB per stream and 24 MiB in total held out of
    /// order, 64 KiB header blocks, 65 536 gaps per stream and 262 144 in all
    /// (about 12 MiB), bodies of at most 4 TiB without a `content-length`.
    pub fn new(session_id: SessionId) -> Self {
        ReceiverConfig {
            session_id,
            protection: Box::new(NullProtection),
            idle_timeout: Some(Duration::from_secs(60)),
            push_timeout: Duration::from_secs(10),
            max_concurrent_pushes: 256,
            max_orphan_streams: 64,
            max_buffered_per_stream: 16 << 20,
            max_buffered_total: 24 << 20,
            max_ranges_total: 262_144,
            max_body_len: 1 << 42,
            max_header_block: 64 << 10,
            max_gaps_per_stream: 65_536,
            qpack_limits: DecodeLimits::default(),
            end_signals: true,
            fec_window: crate::fec::decoder::DEFAULT_MAX_WINDOW,
            orphans_wait_for_end: false,
            recovered_to_caller: false,
        }
    }
}

impl std::fmt::Debug for ReceiverConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverConfig")
            .field("session_id", &self.session_id)
            .field("cipher_suite", &self.protection.suite())
            .field("idle_timeout", &self.idle_timeout)
            .field("push_timeout", &self.push_timeout)
            .field("max_concurrent_pushes", &self.max_concurrent_pushes)
            .finish_non_exhaustive()
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEndReason {
    /// A response carried `connection: close` and every push has finished.
    ConnectionClose,
    /// nghq's goaway: a PUSH_PROMISE for `:path goaway` with `connection: close`.
    Goaway,
    /// No valid packet for the idle timeout.
    IdleTimeout,
    /// The driver said the input ended ([`Receiver::finish`]).
    EndOfInput,
    /// The driver was stopped (a signal: SIGINT, SIGTERM) before the end.
    Interrupted,
}

/// Why a push did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncompleteReason {
    /// No progress for the push timeout.
    Timeout,
    /// The session ended (idle timeout or end of input) first.
    SessionEnded,
    /// The sender reset the push stream.
    Reset {
        /// The RESET_STREAM error code.
        error_code: u64,
    },
    /// The sender cancelled the push (CANCEL_PUSH).
    Cancelled,
    /// The push stream's first bytes (type and push ID) never arrived.
    NoPushStream,
    /// Its slot was given to a newer push while it made no progress (the
    /// concurrent-push limit was reached).
    Evicted,
    /// The response's header block could not be decoded.
    BadHeaders(qpack::QpackError),
    /// The push stream broke the protocol.
    ProtocolError(&'static str),
}

/// How a push finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushStatus {
    /// Every body byte arrived.
    Complete,
    /// It did not; the reason says why.
    Incomplete(IncompleteReason),
}

/// The end of one push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSummary {
    /// The push ID.
    pub push_id: u64,
    /// Complete or not.
    pub status: PushStatus,
    /// The body length as far as its frames are known (the exact length when complete).
    pub body_len: u64,
    /// Body byte ranges known to be missing.
    pub missing: Vec<Range<u64>>,
    /// When set, the body's layout is unknown from this body offset on (a frame
    /// header or the end of the stream was lost): everything after it is missing.
    pub missing_from: Option<u64>,
}

impl PushSummary {
    /// Whether the push completed.
    pub fn is_complete(&self) -> bool {
        self.status == PushStatus::Complete
    }
}

/// What the receiver reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A push was promised: its request header list.
    PushPromised {
        /// The push ID.
        push_id: u64,
        /// The request headers (`:method`, `:scheme`, `:authority`, `:path`, ...).
        request: Vec<HeaderField>,
    },
    /// The response header list of a push.
    ResponseHeaders {
        /// The push ID.
        push_id: u64,
        /// The response headers (`:status`, `content-type`, ...).
        headers: Vec<HeaderField>,
    },
    /// Trailing headers after the body.
    Trailers {
        /// The push ID.
        push_id: u64,
        /// The trailer fields.
        headers: Vec<HeaderField>,
    },
    /// Body bytes of a push, at their offset in the body. Offsets may arrive in
    /// any order; no byte is reported twice.
    BodyData {
        /// The push ID.
        push_id: u64,
        /// Offset of `data` in the body.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
        /// They came in a datagram FEC rebuilt ([`crate::fec`]).
        fec: bool,
    },
    /// A push finished, complete or not.
    PushFinished(PushSummary),
    /// A push stream for this push ID arrived but its promise never did, so its
    /// request (and `:path`) is unknown; its data was dropped. Reported when the
    /// stream is given up (push timeout or [`Receiver::finish`]).
    UnpromisedPush {
        /// The push ID the stream carried.
        push_id: u64,
        /// The stream.
        stream_id: u64,
        /// Its response headers, when they arrived whole (they name no path, but
        /// a `digest` can show the push was a copy of a resource received
        /// intact).
        response: Option<Vec<HeaderField>>,
    },
    /// A push was lost whole: push IDs are sequential, and neither this one's
    /// promise nor its stream arrived although later ones did (or, from the
    /// session's start, although it lies below the first push seen: see
    /// [`Receiver::saw_session_start`]). Reported at the end of the session
    /// (at most [`MAX_LOST_REPORTED`]).
    PushLost {
        /// The push ID.
        push_id: u64,
    },
    /// A push stream whose start (stream type and push ID) never arrived, only
    /// later bytes of it: a receiver that joined during the push, or lost its
    /// first packet. Its push is unknown; its bytes were dropped.
    HeadlessStream {
        /// The stream.
        stream_id: u64,
        /// Bytes of it that arrived.
        bytes: u64,
        /// The push it most likely carried: when every push stream seen so far
        /// had the ID `base + 4 × push ID` for one `base` (as h3m's and nghq's
        /// senders number them), the push ID that fits.
        likely_push_id: Option<u64>,
    },
    /// The session ended. Reported once; datagrams fed afterwards are still
    /// processed (a late push after `connection: close` is not lost).
    SessionEnd {
        /// Why.
        reason: SessionEndReason,
    },
}

/// Counters: what arrived and what was dropped, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ReceiverStats {
    /// Datagrams given to the receiver.
    pub datagrams: u64,
    /// Datagrams accepted as packets of this session.
    pub packets: u64,
    /// Dropped: another session's ID.
    pub foreign_session: u64,
    /// Dropped: too short, long header or fixed bit clear.
    pub malformed_packets: u64,
    /// Dropped: packet protection failed.
    pub protection_failures: u64,
    /// Packets whose frames could not all be read (the frames before the error were used).
    pub frame_errors: u64,
    /// Prohibited QUIC frames skipped (ACK, CRYPTO, MAX_DATA, ...).
    pub ignored_frames: u64,
    /// PING frames.
    pub pings: u64,
    /// Packets numbered below the largest seen, arriving for the first time.
    pub reordered_packets: u64,
    /// Packets whose number had already been seen (network duplicates or
    /// replays); their frames are still read, and add nothing.
    pub replayed_packets: u64,
    /// Packet numbers skipped over (lost, or still to come out of order).
    pub packet_number_gaps: u64,
    /// STREAM bytes that had already arrived.
    pub duplicate_bytes: u64,
    /// STREAM bytes for streams already finished.
    pub late_bytes: u64,
    /// Bytes dropped because a buffer limit was reached.
    pub dropped_buffer_bytes: u64,
    /// Unidirectional streams that are not push streams (control, QPACK, grease).
    pub non_push_streams: u64,
    /// Streams of types h3m does not use (bidirectional other than 0, client uni).
    pub ignored_streams: u64,
    /// Streams dropped because too many were waiting for a promise or a start.
    pub orphan_streams_dropped: u64,
    /// Unknown or prohibited HTTP/3 frames skipped.
    pub skipped_h3_frames: u64,
    /// Header blocks (promises or responses) that failed to decode.
    pub header_errors: u64,
    /// Pushes that gave their slot to a newer one (concurrency limit).
    pub pushes_evicted: u64,
    /// Pushes lost whole (a gap in the push IDs), counted at the session end.
    pub pushes_lost: u64,
    /// Push streams whose start never arrived (see [`Event::HeadlessStream`]).
    pub headless_streams: u64,
    /// Fragments and frame starts of the request stream forgotten to stay
    /// within its bounds.
    pub request_fragments_forgotten: u64,
    /// Streams failed for fragmentation beyond the receiver-wide range budget.
    pub streams_too_fragmented: u64,
    /// Pushes failed for body bytes beyond their `content-length` (or
    /// [`ReceiverConfig::max_body_len`]).
    pub body_overruns: u64,
    /// Stream-level protocol errors.
    pub stream_errors: u64,
    /// Pushes that completed.
    pub pushes_complete: u64,
    /// Pushes that finished incomplete.
    pub pushes_incomplete: u64,
    /// Body bytes reported.
    pub body_bytes: u64,
    /// Forward error correction: repair received, datagrams rebuilt.
    pub fec: crate::fec::FecStats,
}

/// A promised push in progress.
#[derive(Debug)]
struct Push {
    stream_id: Option<u64>,
    /// Its key in [`Receiver::streamed`] (pushes with a stream).
    queued_at: Option<Instant>,
    /// What its response headers said about its body, once they came.
    response: Option<ResponseFacts>,
    /// The most body bytes it may have (`content-length`, else the config's cap).
    max_body: u64,
    last_activity: Instant,
}

/// What a push's response headers say about its body (kept instead of the
/// headers themselves, which go out in [`Event::ResponseHeaders`]).
#[derive(Debug, Clone, Copy)]
struct ResponseFacts {
    /// Its `content-length`.
    content_length: Option<u64>,
    /// Whether they declare an empty body ([`declares_empty_body`]).
    declares_empty: bool,
}

impl ResponseFacts {
    fn of(headers: &[HeaderField]) -> Self {
        let content_length = content_length(headers);
        // A declared length decides; only without one is the digest looked at.
        let declares_empty = match content_length {
            Some(len) => len == 0,
            None => declares_empty_body(headers),
        };
        ResponseFacts { content_length, declares_empty }
    }
}

/// Which of the last [`PN_WINDOW`] packet numbers (up to the largest) were
/// seen: a bitmap indexed by packet number modulo the window.
#[derive(Debug, Default)]
struct PnWindow {
    bits: Vec<u64>,
}

impl PnWindow {
    /// Records `pn` given the largest number seen before it; `false` when it
    /// had been seen (or is too old to tell, which counts as seen).
    fn record(&mut self, largest: Option<u64>, pn: u64) -> bool {
        if self.bits.is_empty() {
            self.bits = vec![0; (PN_WINDOW / 64) as usize];
        }
        let bit = |n: u64| ((n % PN_WINDOW / 64) as usize, 1u64 << (n % 64));
        match largest {
            Some(l) if pn <= l => {
                if pn + PN_WINDOW <= l {
                    return false;
                }
                let (w, m) = bit(pn);
                let fresh = self.bits[w] & m == 0;
                self.bits[w] |= m;
                fresh
            }
            _ => {
                // Numbers between the old largest and `pn` were not seen.
                let from = largest.map_or(pn, |l| l + 1);
                if pn - from >= PN_WINDOW {
                    self.bits.iter_mut().for_each(|w| *w = 0);
                } else {
                    for n in from..pn {
                        let (w, m) = bit(n);
                        self.bits[w] &= !m;
                    }
                }
                let (w, m) = bit(pn);
                self.bits[w] |= m;
                true
            }
        }
    }
}

/// Body buffers [`Receiver::recycle`] keeps at most.
pub const MAX_SPARE_BUFFERS: usize = 64;

/// The largest buffer [`Receiver::recycle`] keeps, in bytes (a datagram's
/// worth and more).
pub const MAX_SPARE_CAPACITY: usize = 4096;

/// The receiver state machine. See the module documentation.
pub struct Receiver {
    config: ReceiverConfig,
    /// What a push stream's bytes gave, kept between calls for its memory
    /// (see `drive_stream`).
    items: Vec<Item>,
    /// Body buffers given back ([`Receiver::recycle`]), filled again with
    /// the next stream bytes instead of allocating.
    spare: Vec<Vec<u8>>,
    largest_pn: Option<u64>,
    last_packet: Option<Instant>,
    request: RequestStream,
    streams: IdMap<PushStream>,
    pushes: IdMap<Push>,
    closed_streams: BTreeSet<u64>,
    finished_pushes: BTreeSet<u64>,
    /// Every push ID seen (promised, cancelled or carried by a stream), at
    /// most [`MAX_SEEN_RANGES`] disjoint ranges of them: beyond, the lowest
    /// range is forgotten and the hole above it counted lost at once.
    seen_push_ids: RangeSet,
    /// Push IDs below this are no longer recorded in `seen_push_ids`.
    seen_floor: u64,
    /// The lowest push ID ever seen (never forgotten, unlike `seen_push_ids`).
    lowest_push_id: Option<u64>,
    /// The lowest packet number seen and the length it was sent with.
    lowest_pn: Option<(u64, usize)>,
    /// Lost pushes in the holes forgotten from `seen_push_ids`, added to
    /// [`ReceiverStats::pushes_lost`] at the session end.
    lost_forgotten: u64,
    /// Packet numbers seen in the window below the largest.
    recent_pns: PnWindow,
    /// `stream ID − 4 × push ID` of the push streams seen: `Some(Some(b))`
    /// while every one agreed on `b`, `Some(None)` once two disagreed.
    stream_base: Option<Option<u64>>,
    buffered_total: usize,
    ranges_total: usize,
    closing: Option<SessionEndReason>,
    ended: bool,
    events: VecDeque<Event>,
    stats: ReceiverStats,
    scratch: Vec<u8>,
    /// A datagram FEC rebuilt is being handled.
    recovering: bool,
    /// Rebuilt datagrams for the caller ([`ReceiverConfig::recovered_to_caller`]).
    recovered_out: VecDeque<(u64, Vec<u8>)>,
    /// FEC: recent datagrams and repair symbols (`None`: FEC off).
    fec: Option<Box<FecDecoder>>,
    /// What [`poll_timeout`](Self::poll_timeout) returns: the earliest timer,
    /// computed by [`handle_timeout`](Self::handle_timeout) and lowered
    /// whenever a timer is armed in between (timers otherwise only move
    /// later), so that polling it costs nothing per datagram however many
    /// pushes and streams are open. It may be earlier than the earliest timer,
    /// never later: a driver at worst calls `handle_timeout` once too early.
    timer_hint: Option<Instant>,
    /// The promised pushes with no stream yet, by `(last_activity, push ID)`:
    /// the first is the victim of the concurrent-push limit, found without
    /// scanning every push.
    streamless: BTreeSet<(Instant, u64)>,
    /// The promised pushes with a stream, by `(last progress when queued, push
    /// ID)`: a lazily updated queue (progress only moves a push later, so a
    /// key is at most its true value) from which the victim of the
    /// concurrent-push limit is found without scanning every push.
    streamed: BTreeSet<(Instant, u64)>,
    /// Streams that named a push not promised (yet), as `(push ID, stream
    /// ID)`: the streams a new promise may find waiting, without a scan.
    waiting: BTreeSet<(u64, u64)>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").field("config", &self.config).field("stats", &self.stats).finish_non_exhaustive()
    }
}

/// Whether a header list holds `name` with exactly `value` (names compared exactly,
/// values case-insensitively).
fn has_field(fields: &[HeaderField], name: &[u8], value: &[u8]) -> bool {
    fields.iter().any(|f| f.name == name && f.value.eq_ignore_ascii_case(value))
}

fn field<'a>(fields: &'a [HeaderField], name: &[u8]) -> Option<&'a [u8]> {
    fields.iter().find(|f| f.name == name).map(|f| f.value.as_slice())
}

/// The `content-length` of a header list, if present and a number.
fn content_length(fields: &[HeaderField]) -> Option<u64> {
    std::str::from_utf8(field(fields, b"content-length")?).ok()?.trim().parse().ok()
}

/// The push ID a push stream's first bytes carry (stream type, push ID), if
/// they are whole.
fn push_stream_start(data: &[u8]) -> Option<u64> {
    let (stream_type, n) = crate::varint::decode(data).ok()?;
    if stream_type != h3::PUSH_STREAM_TYPE {
        return None;
    }
    crate::varint::decode(data.get(n..)?).ok().map(|(push_id, _)| push_id)
}

/// Whether response headers state that the body is empty: `content-length: 0`, or
/// digest fields (`digest`, `repr-digest`, as [`crate::http::digest`] reads
/// them) that agree on the SHA-256 of nothing.
pub fn declares_empty_body(headers: &[HeaderField]) -> bool {
    if field(headers, b"content-length").is_some_and(|v| v.trim_ascii() == b"0") {
        return true;
    }
    let empty = crate::http::digest::sha256(b"");
    crate::http::digest::announced_consistent(headers) == crate::http::digest::Announced::Sha256(empty)
}

impl Receiver {
    /// A receiver for one session.
    pub fn new(config: ReceiverConfig) -> Self {
        let fec = (config.fec_window > 0).then(|| {
            Box::new(FecDecoder::new(config.session_id, config.fec_window, crate::fec::decoder::DEFAULT_REPAIR_BUDGET))
        });
        Receiver {
            config,
            items: Vec::new(),
            spare: Vec::new(),
            largest_pn: None,
            last_packet: None,
            request: RequestStream::default(),
            streams: IdMap::default(),
            pushes: IdMap::default(),
            closed_streams: BTreeSet::new(),
            finished_pushes: BTreeSet::new(),
            seen_push_ids: RangeSet::new(),
            seen_floor: 0,
            lowest_push_id: None,
            lowest_pn: None,
            lost_forgotten: 0,
            recent_pns: PnWindow::default(),
            stream_base: None,
            buffered_total: 0,
            ranges_total: 0,
            closing: None,
            ended: false,
            events: VecDeque::new(),
            stats: ReceiverStats::default(),
            scratch: Vec::new(),
            recovering: false,
            recovered_out: VecDeque::new(),
            fec,
            timer_hint: None,
            streamless: BTreeSet::new(),
            streamed: BTreeSet::new(),
            waiting: BTreeSet::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ReceiverConfig {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> &ReceiverStats {
        &self.stats
    }

    /// Sets [`ReceiverConfig::end_signals`].
    pub fn set_end_signals(&mut self, honour: bool) {
        self.config.end_signals = honour;
    }

    /// Sets [`ReceiverConfig::recovered_to_caller`].
    pub fn set_recovered_to_caller(&mut self, to_caller: bool) {
        self.config.recovered_to_caller = to_caller;
    }

    /// Starts over for the next session on the same input (a sender that
    /// restarted): all protocol state is reset, the configuration and the
    /// counters are kept. Call [`finish`](Self::finish) first.
    pub fn next_session(&mut self) {
        let placeholder = Receiver::new(ReceiverConfig::new(SessionId::EMPTY));
        let Receiver { config, stats, .. } = std::mem::replace(self, placeholder);
        *self = Receiver::new(config);
        self.stats = stats;
    }

    /// Bytes currently held out of order.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered_total
    }

    /// Pushes promised and not yet finished.
    pub fn active_pushes(&self) -> usize {
        self.pushes.len()
    }

    /// Whether the session has ended (see [`Event::SessionEnd`]).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Gives back the buffer of an [`Event::BodyData`] once its bytes are
    /// used: the receiver fills it with later stream bytes instead of
    /// allocating a buffer for each datagram's. Optional. At most
    /// [`MAX_SPARE_BUFFERS`] are kept, of at most [`MAX_SPARE_CAPACITY`]
    /// bytes each (the memory budget counts a held segment's bytes, so a
    /// larger buffer holding a few would be under-counted).
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.spare.len() < MAX_SPARE_BUFFERS && (1..=MAX_SPARE_CAPACITY).contains(&buf.capacity()) {
            buf.clear();
            self.spare.push(buf);
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called
    /// (possibly a little early; never late). Costs O(1).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer_hint
    }

    /// Lowers [`Self::timer_hint`] to `at`: a timer was armed.
    fn arm(&mut self, at: Instant) {
        self.timer_hint = Some(self.timer_hint.map_or(at, |h| h.min(at)));
    }

    /// The earliest timer, exactly (costs a pass over pushes and streams).
    fn earliest_timer(&self) -> Option<Instant> {
        let idle = match (self.last_packet, self.config.idle_timeout) {
            (Some(t), Some(d)) if !self.ended => Some(t + d),
            _ => None,
        };
        let pushes = self.pushes.values().map(|p| self.push_deadline(p));
        let orphan_timeout = (!self.config.orphans_wait_for_end).then_some(self.config.push_timeout);
        let orphans =
            orphan_timeout.into_iter().flat_map(|t| self.orphan_streams().map(move |(_, s)| s.last_activity + t));
        let fec = self.fec.as_ref().and_then(|f| f.poll_timeout());
        idle.into_iter().chain(pushes).chain(orphans).chain(fec).min()
    }

    /// When a push times out: the push timeout after the later of its own and
    /// its stream's last progress.
    fn push_deadline(&self, push: &Push) -> Instant {
        self.activity(push) + self.config.push_timeout
    }

    /// The later of a push's own and its stream's last progress.
    fn activity(&self, push: &Push) -> Instant {
        let stream_activity = push.stream_id.and_then(|id| self.streams.get(&id)).map(|s| s.last_activity);
        stream_activity.map_or(push.last_activity, |s| s.max(push.last_activity))
    }

    /// The push with a stream that went longest without progress (then the
    /// lowest push ID), from the lazy queue [`Self::streamed`]: entries found
    /// out of date are queued again at their true place.
    fn least_active_streamed(&mut self) -> Option<u64> {
        while let Some((at, id)) = self.streamed.pop_first() {
            let Some(push) = self.pushes.get(&id) else { continue };
            let now = self.activity(push);
            if now <= at {
                return Some(id);
            }
            self.streamed.insert((now, id));
            if let Some(push) = self.pushes.get_mut(&id) {
                push.queued_at = Some(now);
            }
        }
        None
    }

    /// Streams no promised push claims (yet).
    fn orphan_streams(&self) -> impl Iterator<Item = (&u64, &PushStream)> {
        self.streams.iter().filter(|(_, s)| s.push_id.is_none_or(|p| !self.pushes.contains_key(&p)))
    }

    /// Processes one UDP payload received at `now`.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        self.handle_numbered(now, datagram, None);
        // A datagram can complete an FEC block whose repair came first.
        if self.fec.as_ref().is_some_and(|f| f.has_recovered()) {
            self.handle_recovered(now);
        }
    }

    /// [`handle_datagram`](Self::handle_datagram), with the packet number
    /// known beforehand for a datagram FEC rebuilt (however old it is, a
    /// short packet number then expands to it).
    fn handle_numbered(&mut self, now: Instant, datagram: &[u8], known_pn: Option<u64>) {
        self.stats.datagrams += 1;
        let mut buf = std::mem::take(&mut self.scratch);
        let largest = known_pn.or(self.largest_pn);
        let opened = if self.config.protection.suite() == crate::protection::CipherSuite::Null {
            // Nothing to undo: read where it lies.
            packet::read_unprotected(datagram, &self.config.session_id, largest)
        } else {
            buf.clear();
            buf.extend_from_slice(datagram);
            packet::open_packet(&mut buf, &self.config.session_id, largest, self.config.protection.as_ref())
        };
        match opened {
            Ok(p) => {
                self.stats.packets += 1;
                self.last_packet = Some(now);
                if let Some(idle) = self.config.idle_timeout.filter(|_| !self.ended) {
                    self.arm(now + idle);
                }
                let pn = p.packet_number;
                if self.lowest_pn.is_none_or(|(lowest, _)| pn < lowest) {
                    self.lowest_pn = Some((pn, p.pn_len));
                }
                let first_time = self.recent_pns.record(self.largest_pn, pn);
                match self.largest_pn {
                    Some(l) if pn <= l && !first_time => self.stats.replayed_packets += 1,
                    Some(l) if pn <= l => self.stats.reordered_packets += 1,
                    Some(l) => self.stats.packet_number_gaps += pn - l - 1,
                    None => {}
                }
                self.largest_pn = Some(self.largest_pn.map_or(pn, |l| l.max(pn)));
                // Blocks may wait for the code's tables (a look every millisecond).
                let fec_due = self.fec.as_mut().and_then(|fec| {
                    fec.add_source(pn, datagram);
                    fec.poll_timeout()
                });
                if let Some(at) = fec_due {
                    self.arm(at);
                }
                let payload = p.payload;
                for frame in FrameReader::new(payload) {
                    match frame {
                        Ok(f) => self.handle_frame(now, f),
                        Err(_) => {
                            self.stats.frame_errors += 1;
                            break;
                        }
                    }
                }
            }
            Err(PacketError::SessionIdMismatch) => self.stats.foreign_session += 1,
            Err(PacketError::Protection(_)) => self.stats.protection_failures += 1,
            Err(_) => self.stats.malformed_packets += 1,
        }
        self.scratch = buf;
    }

    /// Processes one FEC repair datagram received at `now` (from the repair
    /// port): the datagrams it lets the receiver rebuild are handled as
    /// though they had just arrived.
    pub fn handle_repair(&mut self, now: Instant, datagram: &[u8]) {
        let Some(fec) = &mut self.fec else { return };
        fec.add_repair(now, datagram);
        let due = fec.poll_timeout();
        if fec.stats().repair_datagrams == 1 {
            // The session carries FEC: a lost promise or stream start may
            // come back a group or two later, with many streams waiting.
            self.request.expect_repair();
            self.config.max_orphan_streams = self.config.max_orphan_streams.max(FEC_MAX_ORPHAN_STREAMS);
            self.config.max_concurrent_pushes = self.config.max_concurrent_pushes.max(FEC_MAX_CONCURRENT_PUSHES);
        }
        if let Some(at) = due {
            self.arm(at);
        }
        self.handle_recovered(now);
    }

    /// Handles the datagrams the FEC decoder rebuilt (or queues them for the
    /// caller, [`ReceiverConfig::recovered_to_caller`]).
    fn handle_recovered(&mut self, now: Instant) {
        while let Some((pn, d)) = self.fec.as_mut().and_then(|f| f.poll_recovered()) {
            if self.config.recovered_to_caller {
                // The decoder yields at most a window's worth at a time and
                // the caller takes them after every call: a bound, not a limit.
                if self.recovered_out.len() < self.config.fec_window.max(1) {
                    self.recovered_out.push_back((pn, d));
                }
                continue;
            }
            self.recovering = true;
            self.handle_numbered(now, &d, Some(pn));
            self.recovering = false;
        }
        if let Some(fec) = &self.fec {
            self.stats.fec = *fec.stats();
        }
    }

    /// The next datagram FEC rebuilt, with its packet number, when
    /// [`ReceiverConfig::recovered_to_caller`] is set (take them after every
    /// call that hands the receiver a datagram, a repair datagram or a
    /// timeout, and at the end).
    pub fn poll_recovered(&mut self) -> Option<(u64, Vec<u8>)> {
        self.recovered_out.pop_front()
    }

    /// A datagram FEC rebuilt ([`poll_recovered`](Self::poll_recovered))
    /// that the caller has checked: handled as though it had just arrived,
    /// its body bytes reported as rebuilt (`fec`).
    pub fn handle_recovered_datagram(&mut self, now: Instant, packet_number: u64, datagram: &[u8]) {
        self.recovering = true;
        self.handle_numbered(now, datagram, Some(packet_number));
        self.recovering = false;
    }

    /// Rebuilds what the repair held allows, then gives up FEC blocks
    /// still waiting (the session is ending). [`finish`](Self::finish) does
    /// this first; with [`ReceiverConfig::recovered_to_caller`] call it
    /// before, so that what it rebuilds can be checked and handed back
    /// while the pushes are still open.
    pub fn finish_fec(&mut self, now: Instant) {
        if let Some(fec) = &mut self.fec {
            fec.finish();
            self.handle_recovered(now);
        }
    }

    fn handle_frame(&mut self, now: Instant, frame: Frame<'_>) {
        match frame {
            Frame::Padding { .. } => {}
            Frame::Ping => self.stats.pings += 1,
            Frame::Ignored { .. } => self.stats.ignored_frames += 1,
            Frame::ResetStream { stream_id, error_code, .. } => self.on_reset(now, stream_id, error_code),
            Frame::Stream { stream_id, offset, data, fin } => match stream_id {
                0 => self.on_request_data(now, offset, data),
                id if id % 4 == 3 => self.on_push_stream_data(now, id, offset, data, fin),
                _ => self.stats.ignored_streams += 1,
            },
        }
    }

    fn budget(&self) -> usize {
        self.config.max_buffered_total.saturating_sub(self.buffered_total)
    }

    fn on_request_data(&mut self, now: Instant, offset: u64, data: &[u8]) {
        let before = self.request.buffered();
        let dropped = self.request.on_data(offset, data, self.config.max_buffered_per_stream, self.budget());
        self.stats.dropped_buffer_bytes += dropped as u64;
        let mut frames = Vec::new();
        self.stats.header_errors += self.request.poll_frames(self.config.max_header_block as u64, &mut frames) as u64;
        self.request.discard_unreachable();
        self.stats.request_fragments_forgotten = self.request.evicted;
        self.buffered_total = (self.buffered_total + self.request.buffered()).saturating_sub(before);
        for f in frames {
            match h3::decode_payload(f.frame_type, &f.payload) {
                Ok(H3Frame::PushPromise { push_id, field_section }) => {
                    match qpack::decode_field_section(field_section, &self.config.qpack_limits) {
                        Ok(request) => self.on_promise(now, push_id, request),
                        Err(_) => self.stats.header_errors += 1,
                    }
                }
                Ok(H3Frame::CancelPush(push_id)) => {
                    self.saw_push_id(push_id);
                    self.finish_push(push_id, Some(IncompleteReason::Cancelled));
                }
                _ => self.stats.skipped_h3_frames += 1,
            }
        }
        self.maybe_end_session();
    }

    fn on_promise(&mut self, now: Instant, push_id: u64, request: Vec<HeaderField>) {
        if self.pushes.contains_key(&push_id) || self.finished_pushes.contains(&push_id) {
            return;
        }
        self.saw_push_id(push_id);
        if field(&request, b":path") == Some(b"goaway") && has_field(&request, b"connection", b"close") {
            if self.config.end_signals {
                self.closing.get_or_insert(SessionEndReason::Goaway);
            }
            return;
        }
        self.events.push_back(Event::PushPromised { push_id, request });
        while self.pushes.len() >= self.config.max_concurrent_pushes.max(1) {
            // The slot of the push that went longest without progress (one with
            // no stream yet first): memory stays bounded, and a new copy of a
            // resource is never turned away by stalled earlier copies.
            // Pushes with no stream come first, ordered by their last activity
            // (that is their deadline) then push ID: the first of `streamless`.
            let victim = match self.streamless.first() {
                Some(&(_, id)) => Some(id),
                None => self.least_active_streamed(),
            };
            let Some(victim) = victim else { break };
            self.stats.pushes_evicted += 1;
            self.finish_push(victim, Some(IncompleteReason::Evicted));
        }
        // The push stream may have come first (the lowest-numbered one if
        // several claim the push: the others are dropped, one stream per push).
        let claiming: Vec<u64> = self.waiting.range((push_id, 0)..=(push_id, u64::MAX)).map(|&(_, s)| s).collect();
        for &s in &claiming {
            self.waiting.remove(&(push_id, s));
        }
        let stream_id = claiming.first().copied();
        for &duplicate in claiming.iter().skip(1) {
            self.stats.stream_errors += 1;
            self.close_stream(duplicate);
        }
        let max_body = self.config.max_body_len;
        let mut push = Push { stream_id, queued_at: None, response: None, max_body, last_activity: now };
        self.arm(self.push_deadline(&push));
        if stream_id.is_none() {
            self.streamless.insert((now, push_id));
        } else {
            let at = self.activity(&push);
            push.queued_at = Some(at);
            self.streamed.insert((at, push_id));
        }
        self.pushes.insert(push_id, push);
        if let Some(id) = stream_id {
            // The push stream came first: parse what it holds.
            self.drive_stream(now, id, None);
        }
    }

    fn stream_limits(&self) -> StreamLimits {
        StreamLimits {
            max_buffered: self.config.max_buffered_per_stream,
            max_header_block: self.config.max_header_block,
            max_gaps: self.config.max_gaps_per_stream,
        }
    }

    fn on_push_stream_data(&mut self, now: Instant, stream_id: u64, offset: u64, data: &[u8], fin: bool) {
        if self.closed_streams.contains(&stream_id) {
            self.stats.late_bytes += data.len() as u64;
            return;
        }
        if !self.streams.contains_key(&stream_id) {
            // A stream whose first bytes name a promised push that has no
            // stream yet is not an orphan: a flood of orphans must not turn
            // it away (at most one such stream per promised push).
            let claims = (offset == 0).then(|| push_stream_start(data)).flatten();
            let claimed = claims.and_then(|p| self.pushes.get(&p)).is_some_and(|p| p.stream_id.is_none());
            if !claimed && self.orphan_streams().count() >= self.config.max_orphan_streams {
                self.stats.orphan_streams_dropped += 1;
                self.stats.dropped_buffer_bytes += data.len() as u64;
                return;
            }
            self.streams.insert(stream_id, PushStream::new(now));
            self.arm(now + self.config.push_timeout);
        }
        self.drive_stream(now, stream_id, Some((offset, data, fin)));
    }

    /// Feeds bytes (if any) to a push stream, parses, and acts on the results.
    fn drive_stream(&mut self, now: Instant, stream_id: u64, input: Option<(u64, &[u8], bool)>) {
        let limits = self.stream_limits();
        let budget = self.budget();
        let Some(stream) = self.streams.get_mut(&stream_id) else { return };
        let before = stream.buffered();
        let ranges_before = stream.range_count();
        let dropped_before = stream.dropped_bytes;
        let skipped_before = stream.skipped_frames;
        // The last call's vector, empty: no allocation per datagram.
        let mut items = std::mem::take(&mut self.items);
        let mut result = Ok(());
        if let Some((offset, data, fin)) = input {
            stream.last_activity = now;
            result = stream.on_data(offset, data, fin, &limits, budget, &mut self.spare, &mut items);
        }
        let linked = |s: &PushStream, pushes: &IdMap<Push>| s.push_id.is_some_and(|p| pushes.contains_key(&p));
        if result.is_ok() {
            // First pass may discover the push ID; a second parses frames once linked.
            result = stream.advance(linked(stream, &self.pushes), &limits, &mut items);
            if result.is_ok() && linked(stream, &self.pushes) {
                result = stream.advance(true, &limits, &mut items);
            }
        }
        let after = stream.buffered();
        let ranges_after = stream.range_count();
        let body_extent = stream.body_extent();
        self.stats.dropped_buffer_bytes += stream.dropped_bytes - dropped_before;
        self.stats.skipped_h3_frames += stream.skipped_frames - skipped_before;
        self.buffered_total = (self.buffered_total + after).saturating_sub(before);
        self.ranges_total = (self.ranges_total + ranges_after).saturating_sub(ranges_before);
        let push_id = stream.push_id;
        let max_body = push_id.and_then(|p| self.pushes.get(&p)).map_or(self.config.max_body_len, |p| p.max_body);
        if result.is_ok() && body_extent > max_body {
            result = Err(push_stream::StreamError::BodyBeyondLength);
        }
        for item in items.drain(..) {
            match item {
                Item::PushId(p) => {
                    self.saw_push_id(p);
                    let base = p.checked_mul(4).and_then(|x| stream_id.checked_sub(x));
                    self.stream_base = match self.stream_base {
                        None => Some(base),
                        Some(b) if b == base => Some(b),
                        Some(_) => Some(None),
                    };
                    if self.finished_pushes.contains(&p) {
                        self.close_stream(stream_id);
                        self.stats.late_bytes += input.map_or(0, |(_, d, _)| d.len() as u64);
                        return;
                    }
                    // Linked streams were parsed on above; an unlinked one waits for its promise.
                    if let Some(push) = self.pushes.get_mut(&p) {
                        let previous = push.stream_id.replace(stream_id);
                        if previous.is_none() {
                            self.streamless.remove(&(push.last_activity, p));
                        }
                        push.last_activity = now;
                        if let Some(at) = push.queued_at.replace(now) {
                            self.streamed.remove(&(at, p));
                        }
                        self.streamed.insert((now, p));
                        if let Some(old) = previous.filter(|&s| s != stream_id) {
                            // A second stream for one push (H3_ID_ERROR in RFC 9114
                            // §4.6): the newer one is kept, the older one dropped, so
                            // streams claiming a promised push cannot pile up.
                            self.stats.stream_errors += 1;
                            self.close_stream(old);
                        }
                    } else {
                        self.waiting.insert((p, stream_id));
                    }
                }
                Item::NotPush(_) => {
                    self.stats.non_push_streams += 1;
                    self.close_stream(stream_id);
                }
                Item::HeaderBlock { trailers, block } => {
                    let Some(p) = push_id else { continue };
                    match qpack::decode_field_section(&block, &self.config.qpack_limits) {
                        Ok(headers) if trailers => self.events.push_back(Event::Trailers { push_id: p, headers }),
                        Ok(headers) => {
                            if self.config.end_signals && has_field(&headers, b"connection", b"close") {
                                self.closing.get_or_insert(SessionEndReason::ConnectionClose);
                            }
                            if let Some(push) = self.pushes.get_mut(&p) {
                                let facts = ResponseFacts::of(&headers);
                                if let Some(cl) = facts.content_length {
                                    push.max_body = push.max_body.min(cl);
                                }
                                push.response = Some(facts);
                            }
                            self.events.push_back(Event::ResponseHeaders { push_id: p, headers });
                        }
                        Err(e) => {
                            self.stats.header_errors += 1;
                            self.finish_push(p, Some(IncompleteReason::BadHeaders(e)));
                            return;
                        }
                    }
                }
                Item::Body { offset, mut data } => {
                    let Some(p) = push_id else { continue };
                    let max_body = self.pushes.get(&p).map_or(max_body, |push| push.max_body);
                    if offset.saturating_add(data.len() as u64) > max_body {
                        // Never hand out bytes past the announced length.
                        data.truncate(max_body.saturating_sub(offset) as usize);
                        if result.is_ok() {
                            result = Err(push_stream::StreamError::BodyBeyondLength);
                        }
                    }
                    if data.is_empty() {
                        continue;
                    }
                    self.stats.body_bytes += data.len() as u64;
                    self.events.push_back(Event::BodyData { push_id: p, offset, data, fec: self.recovering });
                }
            }
        }
        self.items = items;
        if let Some(p) = push_id.filter(|p| self.pushes.contains_key(p)) {
            if let Some(push) = self.pushes.get_mut(&p) {
                if push.stream_id.is_none() && self.streamless.remove(&(push.last_activity, p)) {
                    self.streamless.insert((now, p));
                }
                push.last_activity = now;
            }
            match result {
                Err(e) => {
                    self.stats.stream_errors += 1;
                    if e == push_stream::StreamError::BodyBeyondLength {
                        self.stats.body_overruns += 1;
                    }
                    self.finish_push(p, Some(IncompleteReason::ProtocolError(e.describe())));
                }
                Ok(()) => {
                    if self.streams.get(&stream_id).is_some_and(|s| s.is_complete()) {
                        self.finish_push(p, None);
                    }
                }
            }
        } else if result.is_err() {
            self.stats.stream_errors += 1;
            self.close_stream(stream_id);
        }
        self.enforce_range_budget();
        self.maybe_end_session();
    }

    /// Fails the most fragmented streams while the receiver holds more
    /// received ranges than its budget allows.
    fn enforce_range_budget(&mut self) {
        while self.ranges_total > self.config.max_ranges_total {
            let Some((&id, s)) = self.streams.iter().max_by_key(|(_, s)| s.range_count()) else {
                self.ranges_total = 0;
                return;
            };
            self.stats.streams_too_fragmented += 1;
            self.stats.stream_errors += 1;
            match s.push_id.filter(|p| self.pushes.contains_key(p)) {
                Some(p) => self.finish_push(
                    p,
                    Some(IncompleteReason::ProtocolError(push_stream::StreamError::TooFragmented.describe())),
                ),
                None => self.close_stream(id),
            }
        }
    }

    fn on_reset(&mut self, _now: Instant, stream_id: u64, error_code: u64) {
        let Some(push_id) = self.streams.get(&stream_id).and_then(|s| s.push_id) else {
            if self.streams.contains_key(&stream_id) {
                self.close_stream(stream_id);
            }
            return;
        };
        if self.pushes.contains_key(&push_id) {
            self.finish_push(push_id, Some(IncompleteReason::Reset { error_code }));
        } else {
            self.close_stream(stream_id);
        }
        self.maybe_end_session();
    }

    fn close_stream(&mut self, stream_id: u64) {
        if let Some(mut s) = self.streams.remove(&stream_id) {
            if let Some(p) = s.push_id {
                self.waiting.remove(&(p, stream_id));
            }
            self.ranges_total = self.ranges_total.saturating_sub(s.range_count());
            self.buffered_total = self.buffered_total.saturating_sub(s.release());
        }
        self.closed_streams.insert(stream_id);
        while self.closed_streams.len() > CLOSED_MEMORY {
            self.closed_streams.pop_first();
        }
    }

    fn emit_finished(&mut self, summary: PushSummary) {
        if summary.is_complete() {
            self.stats.pushes_complete += 1;
        } else {
            self.stats.pushes_incomplete += 1;
        }
        self.finished_pushes.insert(summary.push_id);
        while self.finished_pushes.len() > CLOSED_MEMORY {
            self.finished_pushes.pop_first();
        }
        self.events.push_back(Event::PushFinished(summary));
    }

    /// Ends a push: complete when `reason` is `None` (and the stream says so),
    /// otherwise incomplete with the missing ranges.
    fn finish_push(&mut self, push_id: u64, reason: Option<IncompleteReason>) {
        let Some(push) = self.pushes.remove(&push_id) else { return };
        if push.stream_id.is_none() {
            self.streamless.remove(&(push.last_activity, push_id));
        }
        if let Some(at) = push.queued_at {
            self.streamed.remove(&(at, push_id));
        }
        let stream = push.stream_id.and_then(|id| self.streams.get(&id));
        let content_length = push.response.and_then(|r| r.content_length);
        let summary = match (stream, reason) {
            (Some(s), None) if s.is_complete() => PushSummary {
                push_id,
                status: PushStatus::Complete,
                body_len: s.body_extent(),
                missing: Vec::new(),
                missing_from: None,
            },
            (Some(s), reason) => {
                let empty_ok = s.ends_after_headers() && push.response.is_some_and(|r| r.declares_empty);
                if empty_ok && matches!(reason, Some(IncompleteReason::Timeout | IncompleteReason::SessionEnded)) {
                    PushSummary {
                        push_id,
                        status: PushStatus::Complete,
                        body_len: 0,
                        missing: Vec::new(),
                        missing_from: None,
                    }
                } else {
                    let (mut missing, mut from) = s.missing();
                    if let (Some(f), Some(cl)) = (from, content_length) {
                        if cl > f {
                            missing.push(f..cl);
                        }
                        from = None;
                    }
                    // Bytes announced beyond the content-length (or the body
                    // maximum) were refused: they are not part of the body.
                    let limit = push.max_body;
                    missing.retain_mut(|r| {
                        r.end = r.end.min(limit);
                        r.start < r.end
                    });
                    let from = from.filter(|&f| f < limit);
                    let status = PushStatus::Incomplete(reason.unwrap_or(IncompleteReason::SessionEnded));
                    PushSummary { push_id, status, body_len: s.body_extent().min(limit), missing, missing_from: from }
                }
            }
            (None, reason) => {
                let reason = match reason {
                    Some(IncompleteReason::Timeout | IncompleteReason::SessionEnded) | None => {
                        IncompleteReason::NoPushStream
                    }
                    Some(r) => r,
                };
                PushSummary {
                    push_id,
                    status: PushStatus::Incomplete(reason),
                    body_len: 0,
                    missing: content_length.into_iter().map(|cl| 0..cl).collect(),
                    missing_from: if content_length.is_some() { None } else { Some(0) },
                }
            }
        };
        if let Some(id) = push.stream_id {
            self.close_stream(id);
        }
        self.emit_finished(summary);
    }

    fn maybe_end_session(&mut self) {
        if !self.ended
            && self.pushes.is_empty()
            && let Some(reason) = self.closing
        {
            self.end_session(reason);
        }
    }

    fn end_session(&mut self, reason: SessionEndReason) {
        if !self.ended {
            self.ended = true;
            self.report_lost_pushes();
            self.events.push_back(Event::SessionEnd { reason });
        }
    }

    /// Records a push ID as seen, within [`MAX_SEEN_RANGES`].
    fn saw_push_id(&mut self, push_id: u64) {
        self.lowest_push_id = Some(self.lowest_push_id.map_or(push_id, |l| l.min(push_id)));
        if push_id < self.seen_floor {
            return;
        }
        self.seen_push_ids.insert(push_id..push_id.saturating_add(1));
        if self.seen_push_ids.range_count() > MAX_SEEN_RANGES {
            let lowest_two = {
                let mut ranges = self.seen_push_ids.iter();
                (ranges.next(), ranges.next())
            };
            if let (Some(lowest), Some(next)) = lowest_two {
                self.lost_forgotten = self.lost_forgotten.saturating_add(next.start - lowest.end);
                self.seen_floor = next.start;
                self.seen_push_ids.remove_below(next.start);
            }
        }
    }

    /// Whether this receiver saw the session from its start: its lowest
    /// packet number is below [`START_WINDOW`] ([`START_WINDOW_1_BYTE`] if
    /// that packet's number was sent in one byte). Then pushes below the
    /// lowest push ID seen count as lost at the session's end; otherwise the
    /// receiver joined late and they were sent before it listened. A sender
    /// that numbers its packets from elsewhere than 0 always looks joined late.
    pub fn saw_session_start(&self) -> bool {
        self.lowest_pn.is_some_and(|(pn, len)| pn < if len == 1 { START_WINDOW_1_BYTE } else { START_WINDOW })
    }

    /// The highest push ID seen (a promise or a push stream's start), if any.
    /// Pushes after it that were lost whole leave no trace unless the
    /// session's end signal (which names the last push) arrives.
    pub fn highest_push_id(&self) -> Option<u64> {
        self.seen_push_ids.iter().next_back().map(|r| r.end - 1)
    }

    /// Reports the holes in the push IDs seen (a push whose promise and
    /// stream were both lost), up to [`MAX_LOST_REPORTED`]; counts them all.
    fn report_lost_pushes(&mut self) {
        self.stats.pushes_lost = self.stats.pushes_lost.saturating_add(std::mem::take(&mut self.lost_forgotten));
        let Some(first) = self.seen_push_ids.iter().next() else { return };
        // Push IDs start at 0: from the session's start, those below the
        // lowest seen were lost too (the first datagrams, where a packed
        // session puts its first small files whole).
        let before_first = match self.lowest_push_id {
            Some(lowest) if self.saw_session_start() => 0..lowest,
            _ => 0..0,
        };
        let holes = self.seen_push_ids.gaps(first.start..self.seen_push_ids.max_end());
        let mut reported = 0;
        for hole in std::iter::once(before_first).filter(|h| !h.is_empty()).chain(holes) {
            self.stats.pushes_lost = self.stats.pushes_lost.saturating_add(hole.end - hole.start);
            for push_id in hole {
                if reported >= MAX_LOST_REPORTED {
                    break;
                }
                reported += 1;
                self.events.push_back(Event::PushLost { push_id });
            }
        }
    }

    /// Fires the timers due at `now`: push timeouts, orphan streams, idle timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        // FEC first: what it rebuilds may complete pushes about to time out.
        if let Some(fec) = &mut self.fec {
            fec.handle_timeout(now);
            self.handle_recovered(now);
        }
        let timeout = self.config.push_timeout;
        let mut due: Vec<u64> =
            self.pushes.iter().filter(|(_, p)| self.push_deadline(p) <= now).map(|(&id, _)| id).collect();
        due.sort_unstable();
        for id in due {
            self.finish_push(id, Some(IncompleteReason::Timeout));
        }
        let stale: Vec<u64> = self
            .orphan_streams()
            .filter(|(_, s)| !self.config.orphans_wait_for_end && s.last_activity + timeout <= now)
            .map(|(&id, _)| id)
            .collect();
        self.drop_orphans(stale);
        if let (Some(last), Some(idle)) = (self.last_packet, self.config.idle_timeout)
            && !self.ended
            && last + idle <= now
        {
            self.finish_fec(now);
            self.finish_all();
            self.end_session(SessionEndReason::IdleTimeout);
        }
        self.maybe_end_session();
        self.timer_hint = self.earliest_timer();
    }

    /// Gives up streams that no promised push claims.
    fn drop_orphans(&mut self, mut ids: Vec<u64>) {
        ids.sort_unstable();
        for id in ids {
            self.stats.orphan_streams_dropped += 1;
            if let Some(s) = self.streams.get(&id) {
                self.stats.dropped_buffer_bytes += s.pending_bytes() as u64;
                if let Some(push_id) = s.push_id {
                    let response = s
                        .held_response_block(self.config.max_header_block)
                        .and_then(|b| qpack::decode_field_section(&b, &self.config.qpack_limits).ok());
                    self.events.push_back(Event::UnpromisedPush { push_id, stream_id: id, response });
                } else if s.stage_is_start() && s.received_bytes() > 0 {
                    self.stats.headless_streams += 1;
                    let likely_push_id = self.likely_push_id(id);
                    self.events.push_back(Event::HeadlessStream {
                        stream_id: id,
                        bytes: s.received_bytes(),
                        likely_push_id,
                    });
                }
            }
            self.close_stream(id);
        }
    }

    fn finish_all(&mut self) {
        let mut ids: Vec<u64> = self.pushes.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.finish_push(id, Some(IncompleteReason::SessionEnded));
        }
    }

    /// Ends the session now for `reason` (a driver's own timer, e.g. an idle
    /// timeout before any packet arrived): every push still open finishes.
    pub fn end(&mut self, now: Instant, reason: SessionEndReason) {
        self.finish_fec(now);
        self.finish_all();
        let orphans: Vec<u64> = self.streams.keys().copied().collect();
        self.drop_orphans(orphans);
        self.end_session(reason);
        self.timer_hint = self.earliest_timer();
    }

    /// The end signal seen, if any, while pushes are still open (the session
    /// ends when they finish; a driver that knows no more is coming, e.g.
    /// after a silence, ends it with [`end`](Self::end)).
    pub fn closing(&self) -> Option<SessionEndReason> {
        self.closing.filter(|_| !self.ended)
    }

    /// Whether a push stream waits for its PUSH_PROMISE (cheap; see
    /// [`unpromised_push_ids`](Self::unpromised_push_ids)).
    pub fn has_unpromised(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Push IDs of the push streams that arrived without their PUSH_PROMISE
    /// and still wait for it (their data is held, within the limits).
    pub fn unpromised_push_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.waiting.iter().map(|&(push_id, _)| push_id).collect();
        ids.dedup();
        ids
    }

    /// The push a stream most likely carries: when every push stream seen so
    /// far had the ID `base + 4 × push ID` for one `base`, the push ID that fits.
    fn likely_push_id(&self, stream_id: u64) -> Option<u64> {
        self.stream_base.flatten().and_then(|b| stream_id.checked_sub(b)).filter(|d| d % 4 == 0).map(|d| d / 4)
    }

    /// Streams whose start (type and push ID) never arrived, only later
    /// bytes, with the push each most likely carries (see
    /// [`Event::HeadlessStream`]); their bytes are held, within the limits.
    pub fn headless_streams(&self) -> Vec<(u64, Option<u64>)> {
        let mut out: Vec<(u64, Option<u64>)> = self
            .streams
            .iter()
            .filter(|(_, s)| s.push_id.is_none() && s.stage_is_start() && s.received_bytes() > 0)
            .map(|(&id, _)| (id, self.likely_push_id(id)))
            .collect();
        out.sort_unstable();
        out
    }

    /// Takes headless stream `stream_id`'s bytes, at their stream offsets, and
    /// forgets the stream (no [`Event::HeadlessStream`] for it): a driver
    /// that learnt where its body starts places them itself.
    pub fn take_headless(&mut self, stream_id: u64) -> Vec<(u64, Vec<u8>)> {
        let Some(s) = self.streams.get_mut(&stream_id) else { return Vec::new() };
        if s.push_id.is_some() || !s.stage_is_start() {
            return Vec::new();
        }
        let taken = s.take_pending();
        self.close_stream(stream_id);
        taken
    }

    /// A promise the driver learnt elsewhere (the repair origin's listing of
    /// the session's pushes) for push `push_id`, whose own PUSH_PROMISE was
    /// lost: its waiting stream is claimed and parsed as if the promise had
    /// arrived. Ignored for a push already promised or finished.
    pub fn adopt_promise(&mut self, now: Instant, push_id: u64, request: Vec<HeaderField>) {
        self.on_promise(now, push_id, request);
        self.timer_hint = self.earliest_timer();
    }

    /// The input has ended (end of a capture file, or the driver is stopping):
    /// every push still open finishes, and the session ends if it had not.
    pub fn finish(&mut self, now: Instant) {
        self.finish_fec(now);
        self.finish_all();
        let orphans: Vec<u64> = self.streams.keys().copied().collect();
        self.drop_orphans(orphans);
        let reason = self.closing.unwrap_or(SessionEndReason::EndOfInput);
        self.end_session(reason);
        self.timer_hint = self.earliest_timer();
    }
}
