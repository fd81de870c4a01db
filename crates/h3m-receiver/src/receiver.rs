//! The embeddable receiver: one h3m session, datagrams in, verified resources
//! out to a [`ResourceSink`], typed events to poll.
//!
//! [`Session`] is I/O-free in the manner of quinn-proto's `Connection`: the
//! program reads datagrams from wherever it likes (a multicast socket of
//! [`h3m_net`], an AMT tunnel, a capture) and hands them over with the time;
//! the session assembles pushes, merges repeated copies, checks digests and
//! signatures, and commits each complete resource to its sink; what happened
//! comes back as [`Record`]s from [`Session::poll_event`] (the same records
//! `h3m-recv --json` prints). [`crate::live`] is the async driver `h3m-recv`
//! uses; [`crate::offline`] reads captures.
//!
//! ```
//! use std::time::Instant;
//! use h3m_proto::SessionId;
//! use h3m_receiver::{Session, SessionConfig, report::Record, sink::MemorySink};
//!
//! # let datagrams = h3m_receiver::receiver::example_session(SessionId::from_hex("2a").unwrap());
//! let mut session = Session::new(SessionConfig::new(SessionId::from_hex("2a")?), MemorySink::new(64 << 20));
//! for datagram in &datagrams {
//!     session.handle_datagram(Instant::now(), datagram);
//! }
//! while let Some(event) = session.poll_event() {
//!     if let Record::Resource(r) = event {
//!         println!("{} {:?}", r.path.as_deref().unwrap_or("-"), r.status);
//!     }
//! }
//! let hello = session.sink_mut().take();
//! assert_eq!(hello[0].body, b"hello, multicast\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::{Duration, Instant};

use h3m_proto::SessionId;
use h3m_proto::aead::{KeyError, PacketKeys};
use h3m_proto::altsvc::Advertisement;
use h3m_proto::receiver::{Receiver, ReceiverConfig, SessionEndReason};

use crate::capture::CaptureStats;
use crate::report::{Record, Reporter};
use crate::session::{Outcome, ReporterRef, Session as Engine};
use crate::sink::ResourceSink;
use crate::verify::{Clock, VerifyOptions};

/// Push streams without their promise kept with
/// [`SessionConfig::keep_unpromised`].
const KEPT_UNPROMISED: usize = 512;

/// How a [`Session`] receives: which session, its keys, the checks before a
/// resource is delivered, and the limits.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The session ID (the short header's connection ID).
    pub session_id: SessionId,
    /// Packet protection keys (`None`: cleartext).
    pub protection: Option<PacketKeys>,
    /// Digest and signature checks (see [`crate::verify`]).
    pub verify: VerifyOptions,
    /// Give up on a push after this long without progress.
    pub push_timeout: Duration,
    /// End the session after this long without a packet (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// The memory budget, in bytes: for bytes held out of order, and again
    /// for the bookkeeping of received ranges (each disjoint range costs about
    /// twice [`RANGE_COST`]: the receiver core's record and the session's,
    /// which the sink's out-of-order map mirrors). The default, 24 MiB, allows
    /// 262 144 ranges; beyond either bound the most fragmented push or
    /// resource is given up.
    ///
    /// [`RANGE_COST`]: h3m_proto::receiver::RANGE_COST
    pub buffer_budget: usize,
    /// FEC: most recent datagrams kept for rebuilding lost ones from the
    /// session's repair datagrams (default 20 480, about 24 MiB at most of
    /// 1200-byte datagrams; `0`: FEC off, `h3m-recv --fec off`).
    pub fec_window: usize,
    /// Keep push streams whose promise was lost until the session ends (up
    /// to 512 of them) so that a unicast repair, which learns their
    /// promises from the origin, keeps what of them arrived (`h3m-recv
    /// --repair` turns it on).
    pub keep_unpromised: bool,
    /// Write a qlog trace of the session (`h3m-recv --qlog DIR`; `None`: off).
    pub qlog: Option<crate::qlog::QlogOptions>,
}

impl SessionConfig {
    /// Defaults for session `session_id`: cleartext, no signature check, the
    /// receiver's default timeouts and budget.
    pub fn new(session_id: SessionId) -> Self {
        let defaults = ReceiverConfig::new(session_id);
        SessionConfig {
            session_id,
            protection: None,
            verify: VerifyOptions::default(),
            push_timeout: defaults.push_timeout,
            idle_timeout: defaults.idle_timeout,
            buffer_budget: defaults.max_buffered_total,
            fec_window: defaults.fec_window,
            keep_unpromised: false,
            qlog: None,
        }
    }

    /// The session an Alt-Svc `h3m` advertisement describes: its session ID,
    /// keys (an unusable key is an error, never cleartext) and idle timeout.
    pub fn from_advertisement(adv: &Advertisement) -> Result<Self, KeyError> {
        let mut config = SessionConfig::new(adv.session_id);
        config.protection = PacketKeys::from_advertisement(adv)?;
        if let Some(idle) = adv.idle_timeout_compat() {
            config.idle_timeout = Some(idle);
        }
        Ok(config)
    }

    /// The qlog trace [`qlog`](Self::qlog) asks for, if its file can be created.
    pub(crate) fn open_qlog(&self) -> Option<Box<h3m_proto::qlog::QlogTrace>> {
        self.qlog.as_ref().and_then(|q| crate::qlog::open_receiver(q, &self.session_id))
    }

    /// The sans-IO receiver this configuration describes.
    pub(crate) fn receiver(&self) -> Receiver {
        let mut config = ReceiverConfig::new(self.session_id);
        if let Some(keys) = &self.protection {
            config.protection = keys.protection();
        }
        config.push_timeout = self.push_timeout;
        config.idle_timeout = self.idle_timeout;
        config.max_buffered_total = self.buffer_budget;
        config.max_ranges_total = self.buffer_budget / (2 * h3m_proto::receiver::RANGE_COST);
        config.fec_window = self.fec_window;
        if self.keep_unpromised {
            config.orphans_wait_for_end = true;
            config.max_orphan_streams = config.max_orphan_streams.max(KEPT_UNPROMISED);
        }
        Receiver::new(config)
    }
}

/// One h3m session received into a [`ResourceSink`] (see the
/// [module docs](self)).
pub struct Session<S: ResourceSink> {
    engine: Engine<'static, 'static, S>,
    datagrams: u64,
}

impl<S: ResourceSink> std::fmt::Debug for Session<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("datagrams", &self.datagrams).finish_non_exhaustive()
    }
}

impl<S: ResourceSink> Session<S> {
    /// A session delivering into `sink`. Signature freshness (`max_age`) is
    /// judged against the system clock.
    pub fn new(config: SessionConfig, sink: S) -> Self {
        let mut engine = Engine::with_reporter(config.receiver(), sink, ReporterRef::Owned(Reporter::queue()));
        engine.set_qlog(config.open_qlog());
        engine.set_verify(config.verify);
        engine.set_clock(Clock::System);
        Session { engine, datagrams: 0 }
    }

    /// Handles one UDP payload received at `now`. Datagrams of other
    /// sessions and malformed ones are counted and dropped.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        self.datagrams += 1;
        self.engine.receive(now, datagram);
        self.engine.drain();
    }

    /// Handles one datagram received on the session's repair port (FEC, see
    /// [`h3m_proto::fec`]) at `now`: the datagrams it rebuilds are handled
    /// as received.
    pub fn handle_repair(&mut self, now: Instant, datagram: &[u8]) {
        self.engine.receiver.handle_repair(now, datagram);
        self.engine.drain();
    }

    /// Runs the timers due at `now` (push and idle timeouts).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.engine.receiver.handle_timeout(now);
        self.engine.drain();
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.engine.receiver.poll_timeout()
    }

    /// The next event, oldest first: resources delivered or given up, losses,
    /// errors, the session's end.
    pub fn poll_event(&mut self) -> Option<Record> {
        self.engine.reporter.next_record()
    }

    /// Whether the session has ended (its end signal, the idle timeout, or
    /// [`end`](Self::end)).
    pub fn is_ended(&self) -> bool {
        self.engine.receiver.is_ended()
    }

    /// Ends the session now (the program stops listening): what is still
    /// incomplete is reported so.
    pub fn end(&mut self, now: Instant) {
        if !self.engine.receiver.is_ended() {
            self.engine.receiver.end(now, SessionEndReason::Interrupted);
            self.engine.drain();
        }
    }

    /// The sink.
    pub fn sink(&self) -> &S {
        &self.engine.writer
    }

    /// The sink, e.g. to take the resources a [`MemorySink`](crate::sink::MemorySink) holds.
    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.engine.writer
    }

    /// The receiver's counters so far.
    pub fn stats(&self) -> &h3m_proto::receiver::ReceiverStats {
        self.engine.receiver.stats()
    }

    /// Settles the session (every resource reported, losses judged) and
    /// returns the outcome, with the sink. The summary is the last event.
    pub fn finish(mut self, now: Instant) -> (Outcome, S, Vec<Record>) {
        self.engine.receiver.finish(now);
        self.engine.drain();
        let stats = CaptureStats { records: self.datagrams, udp_datagrams: self.datagrams, ..CaptureStats::default() };
        let (outcome, sink, mut reporter) = self.engine.finish_parts(stats);
        let events = std::iter::from_fn(|| reporter.next_record()).collect();
        (outcome, sink, events)
    }
}

/// The datagrams of a small session (`/hello.txt`, then the end signal), for
/// documentation examples.
#[doc(hidden)]
pub fn example_session(session_id: SessionId) -> Vec<Vec<u8>> {
    use h3m_proto::encoder::EncoderConfig;
    use h3m_proto::protection::NullProtection;
    use h3m_proto::sender::{ResourceMeta, Sender, SenderConfig};
    let mut sender = Sender::new(SenderConfig::new(EncoderConfig::new(session_id)), Box::new(NullProtection));
    let body = b"hello, multicast\n";
    let mut meta = ResourceMeta::file("hello.txt", body.len() as u64, std::time::SystemTime::now());
    meta.last = true;
    let id = sender.start(&meta).expect("a fresh sender starts a push");
    sender.write(id, body).expect("the body fits its length");
    sender.finish(id, None).expect("the push is open");
    let now = Instant::now();
    std::iter::from_fn(|| sender.poll_transmit(now)).collect()
}
