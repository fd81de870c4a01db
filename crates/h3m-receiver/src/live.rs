//! Live mode: join a multicast group (ASM or SSM, IPv4 or IPv6) and write the
//! session's resources as they complete.
//!
//! The run ends on the session's end signal (`connection: close` on the last
//! response, or the goaway promise): at once when everything arrived intact,
//! else after a short linger for stragglers; on
//! the idle timeout (also when nothing at all arrives); or on Ctrl-C. With
//! `follow` it keeps going across sessions. Output and exit status are those of
//! the offline mode ([`crate::offline`]), with status 3 for a network failure.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use h3m_net::{Interface, MulticastConfig};
use h3m_proto::SessionId;
use h3m_proto::aead::KeyError;
use h3m_proto::altsvc::Advertisement;
use h3m_proto::receiver::SessionEndReason;

use crate::ambi::https::{ChannelEvent, ChannelTask};
use crate::ambi::{AmbiReceiver, ManifestChannel};
use crate::capture::CaptureStats;
use crate::input::{AmtRelay, Channel, Input};
use crate::receiver::SessionConfig;
use crate::report::{ErrorKind, Record, Reporter};
use crate::session::{ExitStatus, Outcome, ReporterRef, Session};
use crate::sink::ResourceSink;
use crate::unicast_repair::{AdvertisedOrigin, RepairOptions, Repairer};
use crate::verify::Clock;
use crate::writer::ResourceWriter;

/// What to receive, and how (`h3m-recv`'s live mode).
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// The multicast group and port.
    pub group: SocketAddr,
    /// The source for an SSM join; `None` joins any source.
    pub source: Option<IpAddr>,
    /// The interface to join on.
    pub interface: Option<Interface>,
    /// The session: its ID, keys, checks and limits.
    pub session: SessionConfig,
    /// The output directory ([`run`]; [`receive`] delivers to its sink instead).
    pub out_dir: PathBuf,
    /// JSON output ([`run`]).
    pub json: bool,
    /// Keep receiving across sessions.
    pub follow: bool,
    /// How long to keep listening after the session's end signal while
    /// something is incomplete (an intact session ends at once).
    pub linger: Duration,
    /// Socket receive buffer to ask for.
    pub recv_buffer: usize,
    /// UDP GRO on the multicast socket (default true; `h3m-recv --no-gro`
    /// turns it off for comparisons).
    pub gro: bool,
    /// Show progress on a terminal.
    pub progress: bool,
    /// Sync each file to disk before reporting it written ([`run`]).
    pub fsync: bool,
    /// Receive through an AMT tunnel instead of joining natively.
    pub amt: Option<AmtRelay>,
    /// The port of the session's FEC repair datagrams (default: the group's
    /// port + 1; `None`: no FEC, as with [`SessionConfig::fec_window`] 0).
    pub repair_port: Option<u16>,
    /// Unicast repair of what is still incomplete when the session ends
    /// (`h3m-recv --repair`, see [`crate::unicast_repair`]); `None`: none.
    pub repair: Option<RepairOptions>,
    /// AMBI: every datagram authenticated by a manifest (signed, or over
    /// HTTPS) before the receiver core sees it (`h3m-recv --ambi`); `None`:
    /// none.
    pub ambi: Option<crate::ambi::AmbiOptions>,
    /// The AMBI channels and digest profile the advertisement announces
    /// (`ambi`, `ambi-digest`), for `h3m-recv --ambi auto`; `None`: it
    /// announces none.
    pub advertised_ambi: Option<crate::ambi::AdvertisedAmbi>,
    /// The repair origin the advertisement names, for [`RepairOrigin::Auto`].
    ///
    /// [`RepairOrigin::Auto`]: crate::unicast_repair::RepairOrigin::Auto
    pub advertised_repair: AdvertisedOrigin,
}

impl LiveOptions {
    /// Defaults around a group: nghq's session ID, 60 s idle timeout.
    pub fn new(group: SocketAddr, out_dir: impl Into<PathBuf>) -> Self {
        LiveOptions {
            group,
            source: None,
            interface: None,
            session: SessionConfig::new(SessionId::NGHQ_DEFAULT),
            out_dir: out_dir.into(),
            json: false,
            follow: false,
            linger: Duration::from_millis(300),
            recv_buffer: DEFAULT_RECV_BUFFER,
            gro: true,
            progress: false,
            fsync: false,
            amt: None,
            repair_port: group.port().checked_add(1),
            repair: None,
            ambi: None,
            advertised_ambi: None,
            advertised_repair: AdvertisedOrigin::default(),
        }
    }

    /// The session an Alt-Svc `h3m` advertisement describes: group and port,
    /// source (SSM), session ID, keys (an unusable key is an error, never
    /// cleartext) and idle timeout.
    pub fn from_advertisement(adv: &Advertisement, out_dir: impl Into<PathBuf>) -> Result<Self, KeyError> {
        let mut opts = LiveOptions::new(adv.group, out_dir);
        opts.source = adv.source;
        opts.recv_buffer = recv_buffer_for(adv.peak_flow_rate);
        opts.session = SessionConfig::from_advertisement(adv)?;
        opts.repair_port = adv.repair_port();
        opts.advertised_repair = AdvertisedOrigin { url: adv.repair_origin.clone(), pin: adv.repair_pin };
        opts.advertised_ambi = adv.ambi.as_ref().map(|channels| crate::ambi::AdvertisedAmbi {
            channels: channels.clone(),
            digest: adv.ambi_digest.clone().unwrap_or_else(|| "sha-256/128".into()),
        });
        Ok(opts)
    }
}

/// The socket receive buffer [`LiveOptions::new`] asks for: 64 MiB, enough
/// for the bursts a 2-vCPU receiver falls behind by at 8 Gbit/s.
pub const DEFAULT_RECV_BUFFER: usize = 64 << 20;

/// The receive buffer for a session advertised at `peak_flow_rate` bits/s:
/// 100 ms of it when that is more than [`DEFAULT_RECV_BUFFER`], at most 1 GiB.
pub fn recv_buffer_for(peak_flow_rate: Option<u64>) -> usize {
    let tenth_of_a_second = peak_flow_rate.map_or(0, |bits| bits / 80);
    usize::try_from(tenth_of_a_second).unwrap_or(usize::MAX).clamp(DEFAULT_RECV_BUFFER, 1 << 30)
}

/// Receives until the session ends (see the module documentation), writing
/// each resource into [`LiveOptions::out_dir`] and printing what happens to
/// `out` and `err` as `h3m-recv` does.
pub async fn run(opts: &LiveOptions, out: &mut dyn Write, err: &mut dyn Write) -> Outcome {
    run_inner(opts, out, err, None).await
}

/// [`run`], with `observer` seeing every record and the live counters as
/// they happen (see [`crate::report::Observer`]; `h3m-recv --serve`).
pub async fn run_observed(
    opts: &LiveOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
    observer: Box<dyn crate::report::Observer>,
) -> Outcome {
    run_inner(opts, out, err, Some(observer)).await
}

async fn run_inner(
    opts: &LiveOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
    observer: Option<Box<dyn crate::report::Observer>>,
) -> Outcome {
    let mut reporter = Reporter::new(opts.json, out, err);
    if let Some(observer) = observer {
        reporter.set_observer(observer);
    }
    let outcome = match ResourceWriter::new(&opts.out_dir) {
        Ok(w) => {
            let writer = w.with_fsync(opts.fsync);
            for stale in writer.remove_stale_partials() {
                tracing::info!(path = %stale.display(), "removed a stale partial file");
                eprintln!("h3m-recv: removed {} (left by a receiver no longer running)", stale.display());
            }
            drive(opts, writer, ReporterRef::Borrowed(&mut reporter), &mut |_| {}).await.0
        }
        Err(e) => Outcome::fatal(
            &mut reporter,
            ErrorKind::OutputDir,
            format!("output directory: {e}"),
            ExitStatus::OutputError,
        ),
    };
    reporter.flush();
    outcome
}

/// Receives until the session ends into `sink`, calling `on_event` with each
/// event (the typed records `h3m-recv --json` prints) as it happens; returns
/// the outcome and the sink. Nothing is printed. The future is not `Send`:
/// run it on the task that awaits it (`tokio::join!` with other work) or on a
/// `tokio::task::LocalSet`.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use h3m_receiver::{live, report::Record, sink::MemorySink};
///
/// let opts = live::LiveOptions::from_advertisement(
///     &h3m_proto::altsvc::parse_one(r#"h3m-07="239.255.0.1:2000"; session-id=2a"#)?,
///     "unused",
/// )?;
/// let (outcome, mut sink) = live::receive(&opts, MemorySink::new(256 << 20), |event| {
///     if let Record::Resource(r) = event {
///         eprintln!("{:?} {:?}", r.status, r.path);
///     }
/// })
/// .await;
/// for resource in sink.take() {
///     println!("{}: {} bytes", resource.path.display(), resource.body.len());
/// }
/// # let _ = outcome; Ok(()) }
/// ```
pub async fn receive<S: ResourceSink>(opts: &LiveOptions, sink: S, mut on_event: impl FnMut(Record)) -> (Outcome, S) {
    let mut forward = |reporter: &mut Reporter<'static>| {
        while let Some(record) = reporter.next_record() {
            on_event(record);
        }
    };
    drive(opts, sink, ReporterRef::Owned(Reporter::queue()), &mut forward).await
}

/// Joins the group natively, or subscribes through an AMT relay.
async fn open_input(opts: &LiveOptions) -> Result<Input, String> {
    match &opts.amt {
        None => {
            let mut mc = MulticastConfig::new(opts.group);
            mc.source = opts.source;
            mc.interface = opts.interface.clone();
            mc.recv_buffer = Some(opts.recv_buffer);
            mc.gro = opts.gro;
            let (input, warnings) =
                Input::native(&mc, repair_port(opts)).map_err(|e| format!("join {}: {e}", opts.group))?;
            for w in warnings {
                tracing::warn!("{w}");
                eprintln!("h3m-recv: warning: {w}");
            }
            Ok(input)
        }
        Some(relay) => {
            let config = relay.gateway_config(opts.source, opts.group.ip()).await;
            Input::amt(config, opts.source, opts.group, repair_port(opts), opts.recv_buffer)
                .map_err(|e| format!("amt subscribe {}: {e}", opts.group))
        }
    }
}

/// Whether the session holds everything it was sent: all intact, and every
/// packet number skipped over arrived later.
fn nothing_missing<S: ResourceSink>(session: &Session<'_, '_, S>) -> bool {
    let stats = session.receiver.stats();
    session.all_intact() && stats.packet_number_gaps <= stats.reordered_packets
}

/// The side port to listen on (FEC repair, AMBI manifests): none when FEC
/// and AMBI are off.
fn repair_port(opts: &LiveOptions) -> Option<u16> {
    opts.repair_port.filter(|_| opts.session.fec_window > 0 || opts.ambi.is_some())
}

/// The live loop: opens the input, feeds the session, runs its timers, ends
/// on its end signal (after the linger), the idle timeout or a signal;
/// `after` runs after each batch of datagrams and timer.
async fn drive<'r, 'w, S: ResourceSink>(
    opts: &LiveOptions,
    sink: S,
    reporter: ReporterRef<'r, 'w>,
    after: &mut dyn FnMut(&mut Reporter<'w>),
) -> (Outcome, S) {
    use tracing::Instrument;
    let span = tracing::info_span!(
        "session",
        group = %opts.group,
        source = ?opts.source,
        session_id = %opts.session.session_id,
        amt = opts.amt.is_some()
    );
    drive_in_span(opts, sink, reporter, after).instrument(span).await
}

async fn drive_in_span<'r, 'w, S: ResourceSink>(
    opts: &LiveOptions,
    sink: S,
    mut reporter: ReporterRef<'r, 'w>,
    after: &mut dyn FnMut(&mut Reporter<'w>),
) -> (Outcome, S) {
    let mut input = match open_input(opts).await {
        Ok(mut input) => {
            input.set_side_first(opts.ambi.is_some());
            input
        }
        Err(message) => {
            return (Outcome::fatal(&mut reporter, ErrorKind::Network, message, ExitStatus::BadInput), sink);
        }
    };
    // The AMT tunnel's counters reach the summary through this slot.
    let amt_slot = reporter.amt_slot();
    let mut config = opts.session.clone();
    config.keep_unpromised |= opts.repair.is_some();
    let mut session = Session::with_reporter(config.receiver(), sink, reporter);
    session.set_verify(opts.session.verify.clone());
    session.set_clock(Clock::System);
    session.set_qlog(config.open_qlog());
    session.set_hold_for_repair(opts.repair.is_some());
    session.set_commit_later(true);
    let mut counters = CaptureStats::default();
    let started = Instant::now();
    let mut got_any = false;
    let mut linger_until: Option<Instant> = None;
    let mut progress = crate::progress::Progress::new(opts.progress);
    let interrupted = h3m_net::interrupted();
    tokio::pin!(interrupted);
    // With unicast repair: lost promises are looked up as soon as their
    // streams turn up, and the repair runs at the end.
    let mut repairer = opts.repair.as_ref().map(|r| Repairer::new(r, &opts.advertised_repair));
    let mut last_datagram = Instant::now();
    let mut ambi = opts
        .ambi
        .as_ref()
        .map(|a| AmbiReceiver::new(a, opts.group, opts.session.session_id.len(), opts.session.protection.as_ref()));
    // AMBI over HTTPS: the manifest stream, read by a task of its own.
    // Under AMBI, datagrams FEC rebuilds pass the gate too (repair datagrams
    // are not authenticated): the core hands them over instead of handling them.
    session.receiver.set_recovered_to_caller(ambi.is_some());
    let mut manifest_channel = opts.ambi.as_ref().and_then(|a| match &a.channel {
        ManifestChannel::Https(c) => Some((c.to_string(), ChannelTask::spawn(c, a.profile))),
        ManifestChannel::Inband { .. } => None,
    });
    // The channel knocks on its origin's port more often once the session's
    // datagrams arrive (their sender, and so its origin, is up).
    let data_signal = manifest_channel.as_ref().map(|(_, task)| task.data_signal());
    loop {
        let now = Instant::now();
        // Before the first packet the receiver has no idle timer: the run has one.
        let idle_start = (!got_any).then(|| opts.session.idle_timeout.map(|d| started + d)).flatten();
        // With repair, after the end signal a silence of the linger means
        // nothing more is coming: what is still open is incomplete, and
        // repaired (without repair, open pushes get their push timeout).
        let quiet_end =
            session.receiver.closing().filter(|_| opts.repair.is_some()).map(|_| last_datagram + opts.linger);
        let gate_timer = ambi.as_ref().and_then(AmbiReceiver::poll_timeout);
        let commits = session.commits_due(now);
        let wake = [session.receiver.poll_timeout(), idle_start, linger_until, quiet_end, gate_timer, commits]
            .into_iter()
            .flatten()
            .min();
        let sleep = async {
            match wake {
                Some(t) => tokio::time::sleep_until(t.max(now).into()).await,
                None => std::future::pending().await,
            }
        };
        enum Wake {
            Data(std::io::Result<usize>),
            Timer,
            Interrupted,
            Lookup((u64, Result<Option<h3m_unicast::listing::Listed>, String>)),
            Manifests(Option<ChannelEvent>),
        }
        let wake = {
            // One clock read per batch, taken when its first datagram is handed over.
            let mut batch_time = None;
            let mut deliver = |channel: Channel, source: SocketAddr, payload: &[u8]| {
                counters.records += 1;
                counters.udp_datagrams += 1;
                let now = *batch_time.get_or_insert_with(Instant::now);
                match (channel, ambi.as_mut()) {
                    (Channel::Session, None) => session.receive(now, payload),
                    (Channel::Repair, Some(a)) if crate::ambi::is_manifest(payload) => {
                        a.on_manifest_datagram(now, payload)
                    }
                    (Channel::Session, Some(a)) => {
                        if let Some(signal) = &data_signal {
                            signal.arrived();
                        }
                        // Authentic on arrival: straight to the core (no copy).
                        if a.on_session(now, source, payload) == h3m_proto::ambi::Admission::Release {
                            session.receive(now, payload);
                        }
                    }
                    (Channel::Repair, _) => {
                        // The FEC code's tables, built on a thread of their own once the
                        // session turns out to carry repair (once: a load after the first).
                        h3m_proto::fec::prewarm_in_background();
                        session.receiver.handle_repair(now, payload)
                    }
                }
                // Only what the gate released reaches the core, with its arrival time.
                if let Some(a) = ambi.as_mut() {
                    pump_gate(a, &mut session, now);
                }
                session.drain();
                // Only a packet of this session starts the receiver's own idle timer.
                got_any |= session.receiver.stats().packets > 0;
                last_datagram = now;
            };
            let looking_up = repairer.as_ref().is_some_and(|r| r.looking_up());
            let lookup = async {
                match repairer.as_mut() {
                    Some(r) => r.next_lookup().await,
                    None => std::future::pending().await,
                }
            };
            let manifests = async {
                match manifest_channel.as_mut() {
                    Some((_, task)) => task.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // Manifests first: those a batch of datagrams needs are then known.
                biased;
                e = manifests => Wake::Manifests(e),
                r = input.recv(&mut deliver) => Wake::Data(r),
                _ = sleep => Wake::Timer,
                _ = &mut interrupted => Wake::Interrupted,
                r = lookup, if looking_up => Wake::Lookup(r),
            }
        };
        let lines = input.log_lines();
        if !lines.is_empty() {
            // The tunnel's lines in an `amt_tunnel` span naming its relay.
            let relay = input.amt_relay().map(|r| r.to_string());
            let _tunnel =
                tracing::info_span!(target: "h3m_receiver::amt", "amt_tunnel", relay = relay.as_deref()).entered();
            for line in lines {
                tracing::info!(target: "h3m_receiver::amt", "{line}");
                eprintln!("h3m-recv: {line}");
            }
        }
        match wake {
            Wake::Data(Ok(_)) => {
                progress.update(session.receiver.stats().body_bytes, session.settled_count() as usize);
                if let Some(r) = repairer.as_mut() {
                    r.start_lookups(&session);
                }
            }
            Wake::Manifests(Some(event)) => {
                if let Some(((url, _), a)) = manifest_channel.as_ref().zip(ambi.as_mut()) {
                    match &event {
                        ChannelEvent::Connected(protocol) => {
                            tracing::info!(channel = %url, protocol = protocol.name(), "AMBI manifest channel up");
                            eprintln!("h3m-recv: AMBI manifests from {url} ({})", protocol.name());
                        }
                        ChannelEvent::Lost { reason, retry_in } => eprintln!(
                            "h3m-recv: AMBI manifest channel {url}: {reason}; again in {:.1} s",
                            retry_in.as_secs_f64()
                        ),
                        ChannelEvent::Manifest(_) => {}
                    }
                    let now = Instant::now();
                    a.on_channel_event(now, event);
                    pump_gate(a, &mut session, now);
                    session.drain();
                }
            }
            Wake::Manifests(None) => manifest_channel = None,
            Wake::Lookup(result) => {
                if let Some(r) = repairer.as_mut() {
                    r.on_lookup(&mut session, result);
                    r.start_lookups(&session);
                }
            }
            Wake::Data(Err(e)) => {
                session.run_error(ErrorKind::Network, format!("receive: {e}"));
                break;
            }
            Wake::Timer => {
                let now = Instant::now();
                if let Some(a) = ambi.as_mut() {
                    a.handle_timeout(now);
                }
                if linger_until.is_some_and(|t| t <= now) {
                    break;
                }
                if idle_start.is_some_and(|t| t <= now) {
                    finish_fec_through_gate(ambi.as_mut(), &mut session);
                    session.receiver.end(now, SessionEndReason::IdleTimeout);
                    session.drain();
                    break;
                }
                if let Some(reason) = session.receiver.closing()
                    && let Some(repairer) = repairer.as_mut()
                    && last_datagram + opts.linger <= now
                {
                    // Streams still waiting for a lost promise get it first
                    // (ending drops them).
                    tokio::select! {
                        _ = repairer.adopt_unpromised(&mut session) => {}
                        _ = &mut interrupted => {}
                    }
                    finish_fec_through_gate(ambi.as_mut(), &mut session);
                    session.receiver.end(Instant::now(), reason);
                    session.drain();
                    if !opts.follow {
                        break;
                    }
                }
                session.receiver.handle_timeout(now);
                if let Some(a) = ambi.as_mut() {
                    pump_gate(a, &mut session, now);
                }
                session.drain();
            }
            Wake::Interrupted => {
                if !session.receiver.is_ended() {
                    finish_fec_through_gate(ambi.as_mut(), &mut session);
                    session.receiver.end(Instant::now(), SessionEndReason::Interrupted);
                    session.drain();
                }
                break;
            }
        }
        after(&mut session.reporter);
        session.reporter.observe_stats(|| crate::report::LiveStats {
            receiver: session.receiver.stats().clone(),
            datagrams: counters.udp_datagrams,
            amt: input.amt_counters(),
        });
        // The lines of this batch, in one write.
        session.reporter.flush();
        if session.receiver.is_ended() && !opts.follow && nothing_missing(&session) {
            // Everything promised arrived intact and every skipped packet
            // number came later (reordered, or rebuilt by FEC): no straggler
            // to wait for, lingering or not.
            break;
        }
        if session.receiver.is_ended() && linger_until.is_none() {
            if opts.follow {
                // Settle this session (and repair it), start listening for the next.
                if let Some(repairer) = repairer.as_mut() {
                    tokio::select! {
                        _ = repairer.adopt_unpromised(&mut session) => {}
                        _ = &mut interrupted => {}
                    }
                }
                finish_fec_through_gate(ambi.as_mut(), &mut session);
                session.next_session();
                if let Some(repairer) = repairer.as_mut() {
                    tokio::select! {
                        _ = repairer.run(&mut session) => {}
                        _ = &mut interrupted => {}
                    }
                    session.release_held();
                    session.set_hold_for_repair(true);
                    session.reporter.flush();
                }
                // Push IDs start again with the next session.
                repairer = opts.repair.as_ref().map(|r| Repairer::new(r, &opts.advertised_repair));
                got_any = false;
            } else {
                linger_until = Some(Instant::now() + opts.linger);
            }
        }
    }
    progress.finish();
    amt_slot.set(input.amt_counters());
    input.close().await;
    if let Some(repairer) = repairer.as_mut() {
        // Streams whose promise was lost get it from the origin's listing.
        tokio::select! {
            _ = repairer.adopt_unpromised(&mut session) => {}
            _ = &mut interrupted => {}
        }
    }
    finish_fec_through_gate(ambi.as_mut(), &mut session);
    session.receiver.finish(Instant::now());
    session.drain();
    if let Some(repairer) = repairer.as_mut() {
        // What is still incomplete is held, then repaired.
        session.settle_all();
        tokio::select! {
            _ = repairer.run(&mut session) => {}
            _ = &mut interrupted => {}
        }
    }
    session.ambi = ambi.as_ref().map(AmbiReceiver::counters);
    let (outcome, sink, mut reporter) = session.finish_parts(counters);
    // The last events (the summary), for `receive`'s callback.
    after(&mut reporter);
    (outcome, sink)
}

/// Under AMBI: the datagrams FEC rebuilt go through the gate as received
/// ones do, and what the gate releases reaches the core (rebuilt ones as
/// rebuilt), until neither has anything more.
fn pump_gate<S: crate::sink::ResourceSink>(a: &mut AmbiReceiver, session: &mut Session<'_, '_, S>, now: Instant) {
    loop {
        let mut moved = false;
        while let Some((pn, d)) = session.receiver.poll_recovered() {
            a.on_recovered(now, pn, &d);
            moved = true;
        }
        while let Some(r) = a.poll_released() {
            match a.take_recovered(r.seq) {
                Some(pn) => session.receive_recovered(r.arrival, pn, &r.datagram),
                None => session.receive(r.arrival, &r.datagram),
            }
            moved = true;
        }
        if !moved {
            break;
        }
    }
}

/// Under AMBI, before the receiver closes its pushes (a session's end, the
/// next session): what FEC can still rebuild goes through the gate while
/// the pushes are open (`Receiver::end` and `finish` rebuild it too, but
/// hand it to the caller only once they have closed them).
fn finish_fec_through_gate<S: crate::sink::ResourceSink>(
    ambi: Option<&mut AmbiReceiver>,
    session: &mut Session<'_, '_, S>,
) {
    if let Some(a) = ambi {
        let now = Instant::now();
        session.receiver.finish_fec(now);
        pump_gate(a, session, now);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_receive_buffer_holds_a_tenth_of_a_second_of_the_advertised_rate() {
        use super::{DEFAULT_RECV_BUFFER, recv_buffer_for};
        assert_eq!(recv_buffer_for(None), DEFAULT_RECV_BUFFER);
        assert_eq!(recv_buffer_for(Some(2_000_000_000)), DEFAULT_RECV_BUFFER);
        assert_eq!(recv_buffer_for(Some(40_000_000_000)), 500_000_000);
        assert_eq!(recv_buffer_for(Some(u64::MAX)), 1 << 30);
    }

    use super::*;
    use h3m_proto::aead::{KeyError, PacketKeys};
    use h3m_proto::encoder::{EncoderConfig, SessionEncoder};
    use h3m_proto::protection::CipherSuite;
    use h3m_proto::qpack::HeaderField;

    /// A library caller with a malformed key gets the error, not a receiver;
    /// with good keys the receiver drops (and counts) every cleartext packet.
    #[test]
    fn keys_are_checked_and_the_receiver_never_falls_back_to_cleartext() {
        let (key, iv) = ([7u8; 16], [9u8; 12]);
        assert_eq!(
            PacketKeys::new(CipherSuite::Aes128Gcm, &key[..8], &iv).map(|_| ()),
            Err(KeyError::KeyLength { expected: 16, got: 8 })
        );
        let keys = PacketKeys::new(CipherSuite::Aes128Gcm, &key, &iv).unwrap();
        let mut opts = LiveOptions::new("239.255.0.1:2000".parse().unwrap(), "/nonexistent");
        opts.session.session_id = SessionId::from_hex("2a").unwrap();
        opts.session.protection = Some(keys.clone());
        let (req, resp) = ([HeaderField::new(":path", "/f")], [HeaderField::new(":status", "200")]);
        let mut forged = Vec::new();
        SessionEncoder::new(EncoderConfig::new(opts.session.session_id))
            .push(&req, &resp, b"forged", &mut forged)
            .unwrap();
        let mut sealed = Vec::new();
        SessionEncoder::with_protection(EncoderConfig::new(opts.session.session_id), keys.protection())
            .push(&req, &resp, b"genuine", &mut sealed)
            .unwrap();
        let mut rx = opts.session.receiver();
        let now = Instant::now();
        for d in &forged {
            rx.handle_datagram(now, d);
        }
        assert_eq!((rx.stats().protection_failures, rx.stats().packets), (forged.len() as u64, 0));
        assert!(rx.poll_event().is_none());
        for d in &sealed {
            rx.handle_datagram(now, d);
        }
        assert_eq!(rx.stats().packets, sealed.len() as u64);
    }
}
