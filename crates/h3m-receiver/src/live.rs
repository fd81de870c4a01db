//! Live mode: join a multicast group (ASM or SSM, IPv4 or IPv6) and write the
//! session's resources as they complete.
//!
//! The run ends on the session's end signal (`connection: close` on the last
//! response, or the goaway promise), after a short linger for stragglers; on
//! the idle timeout (also when nothing at all arrives); or on Ctrl-C. With
//! `follow` it keeps going across sessions. Output and exit status are those of
//! the offline mode ([`crate::offline`]), with status 3 for a network failure.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use h3m_net::{Interface, MulticastConfig};
use h3m_proto::SessionId;
use h3m_proto::aead::PacketKeys;
use h3m_proto::receiver::{Receiver, ReceiverConfig, SessionEndReason};

use crate::capture::CaptureStats;
use crate::input::{AmtRelay, Input};
use crate::report::{ErrorKind, Reporter};
use crate::session::{ExitStatus, Outcome, Session};
use crate::verify::{Clock, VerifyOptions};
use crate::writer::ResourceWriter;

/// What to receive.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// The multicast group and port.
    pub group: SocketAddr,
    /// The source for an SSM join; `None` joins any source.
    pub source: Option<IpAddr>,
    /// The interface to join on.
    pub interface: Option<Interface>,
    /// The session ID.
    pub session_id: SessionId,
    /// The output directory.
    pub out_dir: PathBuf,
    /// JSON output.
    pub json: bool,
    /// The receiver's push timeout.
    pub push_timeout: Duration,
    /// The memory budget, in bytes, for body and request-stream bytes held
    /// out of order (see [`ReceiverConfig::max_buffered_total`]).
    pub buffer_budget: usize,
    /// End after this long without a packet (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Keep receiving across sessions.
    pub follow: bool,
    /// How long to keep listening after the session's end signal.
    pub linger: Duration,
    /// Socket receive buffer to ask for.
    pub recv_buffer: usize,
    /// Show progress on a terminal.
    pub progress: bool,
    /// Sync each file to disk before reporting it written.
    pub fsync: bool,
    /// Packet protection keys (`None`: cleartext). Checked when built
    /// ([`PacketKeys::new`]), so a bad key is an error there, never a
    /// receiver that accepts cleartext.
    pub protection: Option<PacketKeys>,
    /// Receive through an AMT tunnel instead of joining natively.
    pub amt: Option<AmtRelay>,
    /// Digest and signature checks (see [`crate::verify`]; freshness against
    /// the system clock).
    pub verify: VerifyOptions,
}

impl LiveOptions {
    /// Defaults around a group: nghq's session ID, 60 s idle timeout.
    pub fn new(group: SocketAddr, out_dir: impl Into<PathBuf>) -> Self {
        let defaults = ReceiverConfig::new(SessionId::NGHQ_DEFAULT);
        LiveOptions {
            group,
            source: None,
            interface: None,
            session_id: SessionId::NGHQ_DEFAULT,
            out_dir: out_dir.into(),
            json: false,
            push_timeout: defaults.push_timeout,
            buffer_budget: defaults.max_buffered_total,
            idle_timeout: defaults.idle_timeout,
            follow: false,
            linger: Duration::from_millis(300),
            recv_buffer: 16 << 20,
            progress: false,
            fsync: false,
            protection: None,
            amt: None,
            verify: VerifyOptions::default(),
        }
    }

    fn receiver(&self) -> Receiver {
        let mut config = ReceiverConfig::new(self.session_id);
        if let Some(keys) = &self.protection {
            config.protection = keys.protection();
        }
        config.push_timeout = self.push_timeout;
        config.idle_timeout = self.idle_timeout;
        config.max_buffered_total = self.buffer_budget;
        Receiver::new(config)
    }
}

/// Receives until the session ends (see the module documentation).
pub async fn run(opts: &LiveOptions, out: &mut dyn Write, err: &mut dyn Write) -> Outcome {
    let mut reporter = Reporter::new(opts.json, out, err);
    let outcome = run_with(opts, &mut reporter).await;
    reporter.flush();
    outcome
}

async fn run_with(opts: &LiveOptions, reporter: &mut Reporter<'_>) -> Outcome {
    let mut input = match &opts.amt {
        None => {
            let mut mc = MulticastConfig::new(opts.group);
            mc.source = opts.source;
            mc.interface = opts.interface.clone();
            mc.recv_buffer = Some(opts.recv_buffer);
            match Input::native(&mc) {
                Ok((input, warnings)) => {
                    for w in warnings {
                        eprintln!("h3m-recv: warning: {w}");
                    }
                    input
                }
                Err(e) => {
                    return Outcome::fatal(
                        reporter,
                        ErrorKind::Network,
                        format!("join {}: {e}", opts.group),
                        ExitStatus::BadInput,
                    );
                }
            }
        }
        Some(relay) => {
            let config = relay.gateway_config(opts.source, opts.group.ip()).await;
            match Input::amt(config, opts.source, opts.group) {
                Ok(input) => input,
                Err(e) => {
                    return Outcome::fatal(
                        reporter,
                        ErrorKind::Network,
                        format!("amt subscribe {}: {e}", opts.group),
                        ExitStatus::BadInput,
                    );
                }
            }
        }
    };
    let writer = match ResourceWriter::new(&opts.out_dir) {
        Ok(w) => w.with_fsync(opts.fsync),
        Err(e) => {
            return Outcome::fatal(
                reporter,
                ErrorKind::OutputDir,
                format!("output directory: {e}"),
                ExitStatus::OutputError,
            );
        }
    };
    for stale in writer.remove_stale_partials() {
        eprintln!("h3m-recv: removed {} (left by a receiver no longer running)", stale.display());
    }
    // The AMT tunnel's counters reach the summary through this slot.
    let amt_slot = reporter.amt_slot();
    let mut session = Session::new(opts.receiver(), writer, reporter);
    session.set_verify(opts.verify.clone());
    session.set_clock(Clock::System);
    let mut counters = CaptureStats::default();
    let started = Instant::now();
    let mut got_any = false;
    let mut linger_until: Option<Instant> = None;
    let mut progress = crate::progress::Progress::new(opts.progress);
    // SIGINT and SIGTERM both stop the run cleanly: temporary files removed,
    // every resource reported, the summary printed.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminate = async move {
        match sigterm.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(terminate);
    loop {
        let now = Instant::now();
        // Before the first packet the receiver has no idle timer: the run has one.
        let idle_start = (!got_any).then(|| opts.idle_timeout.map(|d| started + d)).flatten();
        let wake = [session.receiver.poll_timeout(), idle_start, linger_until].into_iter().flatten().min();
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
        }
        let wake = {
            // One clock read per batch, taken when its first datagram is handed over.
            let mut batch_time = None;
            let mut deliver = |payload: &[u8]| {
                counters.records += 1;
                counters.udp_datagrams += 1;
                let now = *batch_time.get_or_insert_with(Instant::now);
                session.receiver.handle_datagram(now, payload);
                session.drain();
                // Only a packet of this session starts the receiver's own idle timer.
                got_any |= session.receiver.stats().packets > 0;
            };
            tokio::select! {
                r = input.recv(&mut deliver) => Wake::Data(r),
                _ = sleep => Wake::Timer,
                _ = &mut ctrl_c => Wake::Interrupted,
                _ = &mut terminate => Wake::Interrupted,
            }
        };
        for line in input.log_lines() {
            eprintln!("h3m-recv: {line}");
        }
        match wake {
            Wake::Data(Ok(_)) => progress.update(session.receiver.stats().body_bytes, session.settled_count() as usize),
            Wake::Data(Err(e)) => {
                session.run_error(ErrorKind::Network, format!("receive: {e}"));
                break;
            }
            Wake::Timer => {
                let now = Instant::now();
                if linger_until.is_some_and(|t| t <= now) {
                    break;
                }
                if idle_start.is_some_and(|t| t <= now) {
                    session.receiver.end(now, SessionEndReason::IdleTimeout);
                    session.drain();
                    break;
                }
                session.receiver.handle_timeout(now);
                session.drain();
            }
            Wake::Interrupted => {
                if !session.receiver.is_ended() {
                    session.receiver.end(Instant::now(), SessionEndReason::Interrupted);
                    session.drain();
                }
                break;
            }
        }
        if session.receiver.is_ended() && linger_until.is_none() {
            if opts.follow {
                // Settle this session, start listening for the next.
                session.next_session();
                got_any = false;
            } else {
                linger_until = Some(Instant::now() + opts.linger);
            }
        }
    }
    progress.finish();
    amt_slot.set(input.amt_counters());
    input.close().await;
    session.receiver.finish(Instant::now());
    session.drain();
    session.finish(counters)
}

#[cfg(test)]
mod tests {
    use super::*;
    use h3m_proto::aead::KeyError;
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
        opts.session_id = SessionId::from_hex("2a").unwrap();
        opts.protection = Some(keys.clone());
        let (req, resp) = ([HeaderField::new(":path", "/f")], [HeaderField::new(":status", "200")]);
        let mut forged = Vec::new();
        SessionEncoder::new(EncoderConfig::new(opts.session_id)).push(&req, &resp, b"forged", &mut forged).unwrap();
        let mut sealed = Vec::new();
        SessionEncoder::with_protection(EncoderConfig::new(opts.session_id), keys.protection())
            .push(&req, &resp, b"genuine", &mut sealed)
            .unwrap();
        let mut rx = opts.receiver();
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
