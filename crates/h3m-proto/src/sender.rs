//! The sender state machine: resources in, datagrams out.
//!
//! [`Sender`] wraps a [`SessionEncoder`] with what a publisher needs around it:
//! request and response header lists built from a [`ResourceMeta`] the way
//! nghq's receiver and HTTP clients expect them, a queue of datagrams for the
//! driver to pace out, PING keep-alives well inside receivers' idle timeout, and
//! the end-of-session signal (`connection: close` on the last response, or
//! nghq's goaway promise when the end comes after the last resource).
//!
//! Like the rest of this crate it reads no clock: `now` and each resource's
//! `date` are arguments.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use crate::encoder::{EncodeError, EncoderConfig, SessionEncoder};
use crate::fec::{FecConfig, FecEncoder};
use crate::http::{date, digest, mime, path};
use crate::protection::PacketProtection;
use crate::qpack::HeaderField;

/// Sender settings.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Packetization settings (session ID, datagram size, packet numbers).
    pub encoder: EncoderConfig,
    /// Send a PING after this long without a datagram (default 5 s, well
    /// inside nghq's 60 s idle timeout).
    pub keepalive: Duration,
    /// The `:authority` of every request (default `localhost`).
    pub authority: String,
    /// Prefix of every `:path` (default `/`).
    pub path_prefix: String,
    /// While pushes are in flight, send their PUSH_PROMISE and stream head
    /// again this often ([`SessionEncoder::repeat_heads`]), so a receiver that
    /// joins late learns them; `None` (the default here, byte-identical to
    /// nghq's output) never.
    ///
    /// [`SessionEncoder::repeat_heads`]: crate::encoder::SessionEncoder::repeat_heads
    pub repeat_heads: Option<Duration>,
    /// Forward error correction: repair datagrams for the repair port
    /// ([`Sender::poll_repair`]); `None` (the default): none.
    pub fec: Option<FecConfig>,
}

impl SenderConfig {
    /// Defaults around an encoder configuration.
    pub fn new(encoder: EncoderConfig) -> Self {
        SenderConfig {
            encoder,
            keepalive: Duration::from_secs(5),
            authority: "localhost".into(),
            path_prefix: "/".into(),
            repeat_heads: None,
            fec: None,
        }
    }
}

/// What the sender needs to know about one resource.
#[derive(Debug, Clone)]
pub struct ResourceMeta {
    /// The resource's path relative to the published tree (`dir/file.txt`);
    /// percent-encoded into `:path` after the prefix.
    pub path: String,
    /// `content-type`; `None` picks one from the extension.
    pub content_type: Option<String>,
    /// The body length, when known (`content-length`).
    pub length: Option<u64>,
    /// SHA-256 of the body, when known (`digest: sha-256=...` and
    /// `repr-digest: sha-256=:...:`).
    pub sha256: Option<[u8; 32]>,
    /// The `date` header.
    pub date: SystemTime,
    /// The last resource of the session: its response carries `connection: close`.
    pub last: bool,
    /// A live resource of unknown length: the promise asks `range: bytes=0-*`
    /// and the response is `206` with `content-range: bytes 0-*/*`.
    pub live: bool,
    /// The push IDs of every copy of this resource in the session (this one
    /// included), when it is sent more than once (`--repeat`): the promise
    /// carries them as [`COPIES_HEADER`], so a receiver that lost one copy
    /// whole knows it was a copy of a resource it has.
    pub copies: Vec<u64>,
}

/// The request header listing a resource's copies (see [`ResourceMeta::copies`]):
/// push IDs, comma-separated. An h3m extension; receivers that do not know it
/// (nghq) ignore it.
pub const COPIES_HEADER: &str = "h3m-copies";

impl ResourceMeta {
    /// A resource of known length.
    pub fn file(path: impl Into<String>, length: u64, date: SystemTime) -> Self {
        ResourceMeta {
            path: path.into(),
            content_type: None,
            length: Some(length),
            sha256: None,
            date,
            last: false,
            live: false,
            copies: Vec::new(),
        }
    }
}

/// Counters of what was produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Datagrams handed out.
    pub datagrams: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Resources finished.
    pub resources: u64,
    /// Body bytes of finished resources.
    pub body_bytes: u64,
    /// Keep-alive PINGs.
    pub pings: u64,
    /// Datagrams that repeated promises and stream heads.
    pub head_repeats: u64,
    /// FEC repair datagrams handed out (not in `datagrams`).
    pub repair_datagrams: u64,
    /// Their bytes (not in `bytes`).
    pub repair_bytes: u64,
}

/// The sender state machine. See the module documentation.
#[derive(Debug)]
pub struct Sender {
    cfg: SenderConfig,
    enc: SessionEncoder,
    queue: VecDeque<Vec<u8>>,
    scratch: Vec<Vec<u8>>,
    last_transmit: Option<Instant>,
    /// When open pushes' promises and heads are next repeated.
    next_repeat: Option<Instant>,
    closed: bool,
    stats: SenderStats,
    written: std::collections::HashMap<u64, u64>,
    fec: Option<FecEncoder>,
}

/// Standard base64 with padding: [`crate::encoding::base64::encode`], kept
/// at this path for callers from before the move.
pub use crate::encoding::base64::encode as base64;

impl Sender {
    /// A sender with the given packet protection.
    pub fn new(cfg: SenderConfig, protection: Box<dyn PacketProtection>) -> Self {
        let enc = SessionEncoder::with_protection(cfg.encoder.clone(), protection);
        let fec = cfg.fec.map(|f| FecEncoder::new(f, cfg.encoder.session_id));
        Sender {
            fec,
            cfg,
            enc,
            queue: VecDeque::new(),
            scratch: Vec::new(),
            last_transmit: None,
            next_repeat: None,
            closed: false,
            stats: SenderStats::default(),
            written: Default::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SenderConfig {
        &self.cfg
    }

    /// The counters.
    pub fn stats(&self) -> SenderStats {
        self.stats
    }

    /// Datagrams waiting for [`poll_transmit`](Self::poll_transmit).
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether the session has been ended.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The request header list for a resource.
    pub fn request_headers(&self, meta: &ResourceMeta) -> Vec<HeaderField> {
        let prefix = self.cfg.path_prefix.trim_end_matches('/');
        let path = format!("{prefix}/{}", path::percent_encode_path(meta.path.trim_start_matches('/')));
        let mut h = vec![
            HeaderField::new(":method", "GET"),
            HeaderField::new(":scheme", "https"),
            HeaderField::new(":authority", self.cfg.authority.as_str()),
            HeaderField::new(":path", path),
        ];
        if meta.live {
            h.push(HeaderField::new("range", "bytes=0-*"));
        }
        if meta.copies.len() > 1 {
            let list: Vec<String> = meta.copies.iter().map(u64::to_string).collect();
            h.push(HeaderField::new(COPIES_HEADER, list.join(", ")));
        }
        h
    }

    /// The push ID the next resource started will get.
    pub fn next_push_id(&self) -> u64 {
        self.enc.next_push_id()
    }

    /// The response header list for a resource.
    pub fn response_headers(&self, meta: &ResourceMeta) -> Vec<HeaderField> {
        let mut h = vec![HeaderField::new(":status", if meta.live { "206" } else { "200" })];
        let ct = meta.content_type.clone().unwrap_or_else(|| mime::content_type_for(&meta.path).to_owned());
        h.push(HeaderField::new("content-type", ct));
        if let Some(len) = meta.length {
            h.push(HeaderField::new("content-length", len.to_string()));
        }
        if meta.live {
            h.push(HeaderField::new("content-range", "bytes 0-*/*"));
        }
        h.push(HeaderField::new("date", date::format_http_date(meta.date)));
        if let Some(d) = &meta.sha256 {
            // RFC 3230 for nghq-era receivers, RFC 9530 for current ones.
            h.extend(digest::sha256_fields(d));
        }
        if meta.last {
            h.push(HeaderField::new("connection", "close"));
        }
        h
    }

    fn take_out(&mut self) {
        self.queue.extend(self.scratch.drain(..));
    }

    /// Starts a resource; returns its push ID. Its promise and headers are queued
    /// with the first body bytes.
    pub fn start(&mut self, meta: &ResourceMeta) -> Result<u64, EncodeError> {
        let request = self.request_headers(meta);
        let response = self.response_headers(meta);
        self.start_with_headers(meta, &request, &response)
    }

    /// Starts a resource with header lists the caller built, usually
    /// [`request_headers`](Self::request_headers) and
    /// [`response_headers`](Self::response_headers) with fields added (e.g.
    /// signatures, see [`crate::auth::PushSigner`]); returns its push ID.
    pub fn start_with_headers(
        &mut self,
        meta: &ResourceMeta,
        request: &[HeaderField],
        response: &[HeaderField],
    ) -> Result<u64, EncodeError> {
        let id = self.enc.open_push(request, response, meta.length)?;
        self.written.insert(id, 0);
        if meta.last {
            self.closed = true;
        }
        Ok(id)
    }

    /// Where push `push_id`'s body starts in its stream (see
    /// [`SessionEncoder::body_offset`](crate::encoder::SessionEncoder::body_offset)).
    pub fn body_offset(&self, push_id: u64) -> Option<u64> {
        self.enc.body_offset(push_id)
    }

    /// Adds body bytes; full packets are queued.
    pub fn write(&mut self, push_id: u64, data: &[u8]) -> Result<(), EncodeError> {
        self.enc.write(push_id, data, &mut self.scratch)?;
        if let Some(w) = self.written.get_mut(&push_id) {
            *w += data.len() as u64;
        }
        self.take_out();
        Ok(())
    }

    /// Queues what the resource holds now, without waiting for a full packet.
    pub fn flush(&mut self, push_id: u64) -> Result<(), EncodeError> {
        self.enc.flush(push_id, &mut self.scratch)?;
        self.take_out();
        Ok(())
    }

    /// Ends a resource (with trailers, e.g. a digest of a live body).
    pub fn finish(&mut self, push_id: u64, trailers: Option<&[HeaderField]>) -> Result<(), EncodeError> {
        self.enc.finish(push_id, trailers, &mut self.scratch)?;
        self.stats.resources += 1;
        self.stats.body_bytes += self.written.remove(&push_id).unwrap_or(0);
        self.take_out();
        Ok(())
    }

    /// Abandons a resource (its receivers report it incomplete).
    pub fn abort(&mut self, push_id: u64) -> Result<(), EncodeError> {
        self.written.remove(&push_id);
        self.enc.reset(push_id, 0x10c, &mut self.scratch)?;
        self.take_out();
        Ok(())
    }

    /// Ends the session. If no resource carried `connection: close`, queues
    /// nghq's goaway promise so receivers leave now rather than at their idle
    /// timeout.
    pub fn close(&mut self) -> Result<(), EncodeError> {
        if !self.closed {
            // The goaway seals the packet being filled first.
            self.enc.goaway(&mut self.scratch)?;
            self.take_out();
            self.closed = true;
        }
        Ok(())
    }

    /// Queues the packet being filled, if any ([`EncoderConfig::pack`]):
    /// call it before waiting, so that nothing written stays behind.
    ///
    /// [`EncoderConfig::pack`]: crate::encoder::EncoderConfig::pack
    pub fn seal(&mut self) -> Result<(), EncodeError> {
        self.enc.seal(&mut self.scratch)?;
        self.take_out();
        Ok(())
    }

    /// Queues a PING-only datagram now, after the packet being filled: a
    /// sign of life before the first push (receivers waiting to connect to
    /// the sender's origin learn that it is up).
    pub fn ping(&mut self) -> Result<(), EncodeError> {
        self.enc.ping(&mut self.scratch)?;
        self.stats.pings += 1;
        self.take_out();
        Ok(())
    }

    /// The packet number of the datagram [`poll_transmit`](Self::poll_transmit)
    /// returned last (datagrams are numbered as they are built and queued in
    /// order: the newest minus those still queued).
    pub fn last_packet_number(&self) -> u64 {
        (self.enc.next_packet_number() - 1).saturating_sub(self.queue.len() as u64)
    }

    /// The next datagram to send at `now`: queued data first (with the
    /// repeated promises and heads of open pushes queued behind it when they
    /// are due, see [`SenderConfig::repeat_heads`]), else a PING when the
    /// session has been silent for the keep-alive interval.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.repeat_heads_if_due(now);
        let d = match self.queue.pop_front() {
            Some(d) => d,
            None if !self.closed && self.last_transmit.is_some_and(|t| now >= t + self.cfg.keepalive) => {
                // A packet left being filled (see `seal`) goes out before the PING.
                self.enc.ping(&mut self.scratch).ok()?;
                self.stats.pings += 1;
                self.take_out();
                self.queue.pop_front()?
            }
            None => return None,
        };
        self.last_transmit = Some(now);
        self.stats.datagrams += 1;
        self.stats.bytes += d.len() as u64;
        if let Some(fec) = &mut self.fec {
            // Datagrams are numbered as they are built and queued in order:
            // this one is the newest minus those still queued.
            let pn = (self.enc.next_packet_number() - 1).saturating_sub(self.queue.len() as u64);
            fec.add_source(now, pn, &d);
        }
        Some(d)
    }

    /// Takes back a datagram from [`poll_transmit`](Self::poll_transmit)
    /// once it is sent, so that its buffer holds a later one (see
    /// [`SessionEncoder::recycle`](crate::encoder::SessionEncoder::recycle)).
    pub fn recycle(&mut self, datagram: Vec<u8>) {
        self.enc.recycle(datagram);
    }

    /// The next FEC repair datagram due at `now`, for the repair port (see
    /// [`crate::fec`]). Once the session is closed and its datagrams are all
    /// out, the last group closes; its repair is due over as long as the group
    /// took ([`poll_timeout`](Self::poll_timeout) says when the next is).
    pub fn poll_repair(&mut self, now: Instant) -> Option<Vec<u8>> {
        let fec = self.fec.as_mut()?;
        if self.closed && self.queue.is_empty() && self.enc.open_pushes() == 0 {
            fec.close_group_now(now);
        }
        let d = fec.poll_repair(now)?;
        self.stats.repair_datagrams += 1;
        self.stats.repair_bytes += d.len() as u64;
        Some(d)
    }

    /// Repair datagrams made and not yet handed out.
    pub fn repairs_queued(&self) -> usize {
        self.fec.as_ref().map_or(0, FecEncoder::queued)
    }

    /// When [`poll_transmit`](Self::poll_transmit) next has something (a
    /// keep-alive, a repeat of heads) if nothing else is queued, or
    /// [`poll_repair`](Self::poll_repair) does (an FEC group's deadline, a
    /// repair datagram due).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let fec = self.fec.as_ref().and_then(FecEncoder::poll_timeout);
        if self.closed || !self.queue.is_empty() {
            return fec;
        }
        let keepalive = self.last_transmit.map(|t| t + self.cfg.keepalive);
        let repeat = self.next_repeat.filter(|_| self.enc.open_pushes() > 0);
        keepalive.into_iter().chain(repeat).chain(fec).min()
    }

    /// Queues the promises and heads of the open pushes again when due.
    fn repeat_heads_if_due(&mut self, now: Instant) {
        let Some(every) = self.cfg.repeat_heads else { return };
        if self.enc.open_pushes() == 0 {
            self.next_repeat = None;
            return;
        }
        match self.next_repeat {
            None => self.next_repeat = Some(now + every),
            Some(due) if now >= due => {
                // An encoding error here would have failed the push's own
                // datagrams first; a repeat is best effort.
                if let Ok(n) = self.enc.repeat_heads(&mut self.scratch) {
                    self.stats.head_repeats += n as u64;
                }
                self.take_out();
                self.next_repeat = Some(now + every);
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SessionId;
    use crate::protection::NullProtection;
    use crate::receiver::{Event, Receiver, ReceiverConfig, SessionEndReason};
    use std::time::UNIX_EPOCH;

    fn sender() -> Sender {
        Sender::new(SenderConfig::new(EncoderConfig::new(SessionId::NGHQ_DEFAULT)), Box::new(NullProtection))
    }

    #[test]
    fn headers_follow_the_conventions() {
        let mut s = sender();
        s.cfg.path_prefix = "/media/".into();
        let mut meta = ResourceMeta::file("sub dir/a.txt", 13, UNIX_EPOCH);
        meta.sha256 = Some([0; 32]);
        meta.last = true;
        let names = |h: Vec<HeaderField>| {
            h.into_iter()
                .map(|f| format!("{}: {}", String::from_utf8(f.name).unwrap(), String::from_utf8(f.value).unwrap()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(s.request_headers(&meta)),
            [":method: GET", ":scheme: https", ":authority: localhost", ":path: /media/sub%20dir/a.txt"]
        );
        assert_eq!(
            names(s.response_headers(&meta)),
            [
                ":status: 200",
                "content-type: text/plain; charset=UTF-8",
                "content-length: 13",
                "date: Thu, 01 Jan 1970 00:00:00 GMT",
                "digest: sha-256=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                "repr-digest: sha-256=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:",
                "connection: close",
            ]
        );
    }

    #[test]
    fn keepalive_pings_then_goaway_ends_the_session() {
        let mut s = sender();
        let t0 = Instant::now();
        let id = s.start(&ResourceMeta::file("a.bin", 3, UNIX_EPOCH)).unwrap();
        s.write(id, b"abc").unwrap();
        s.finish(id, None).unwrap();
        let mut out = Vec::new();
        while let Some(d) = s.poll_transmit(t0) {
            out.push(d);
        }
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(5)));
        assert!(s.poll_transmit(t0 + Duration::from_secs(4)).is_none());
        out.push(s.poll_transmit(t0 + Duration::from_secs(5)).expect("a PING"));
        assert_eq!(s.stats().pings, 1);
        s.close().unwrap();
        out.push(s.poll_transmit(t0 + Duration::from_secs(6)).expect("goaway"));
        assert!(s.poll_transmit(t0 + Duration::from_secs(60)).is_none(), "no PING after the end");

        let mut rx = Receiver::new(ReceiverConfig::new(SessionId::NGHQ_DEFAULT));
        for d in &out {
            rx.handle_datagram(t0, d);
        }
        let mut ended = None;
        while let Some(e) = rx.poll_event() {
            if let Event::SessionEnd { reason } = e {
                ended = Some(reason);
            }
        }
        assert_eq!(ended, Some(SessionEndReason::Goaway));
        assert_eq!(rx.stats().pings, 1);
    }

    /// Sends `body` as one push, 10 KB written at a time with the datagrams of
    /// each write sent 1 ms apart (as a paced publisher does); returns the
    /// datagrams and the time after the last.
    fn paced_push(s: &mut Sender, body: &[u8], t0: Instant) -> Vec<Vec<u8>> {
        let mut meta = ResourceMeta::file("late.bin", body.len() as u64, UNIX_EPOCH);
        meta.sha256 = Some(crate::http::digest::sha256(body));
        let id = s.start(&meta).unwrap();
        let mut out = Vec::new();
        let mut now = t0;
        for chunk in body.chunks(10_000) {
            s.write(id, chunk).unwrap();
            while let Some(d) = s.poll_transmit(now) {
                out.push(d);
                now += Duration::from_millis(1);
            }
        }
        s.finish(id, None).unwrap();
        while let Some(d) = s.poll_transmit(now) {
            out.push(d);
            now += Duration::from_millis(1);
        }
        out
    }

    /// What a receiver that joins after `skip` datagrams makes of them:
    /// whether it learned the push, the body bytes it got (checked against
    /// `body`), and the push's missing ranges.
    fn late_joiner(datagrams: &[Vec<u8>], skip: usize, body: &[u8]) -> (bool, u64, Vec<std::ops::Range<u64>>) {
        let mut rx = Receiver::new(ReceiverConfig::new(SessionId::NGHQ_DEFAULT));
        let t0 = Instant::now();
        for d in &datagrams[skip..] {
            rx.handle_datagram(t0, d);
        }
        rx.finish(t0);
        let (mut promised, mut got, mut missing) = (false, 0, Vec::new());
        while let Some(e) = rx.poll_event() {
            match e {
                Event::PushPromised { .. } => promised = true,
                Event::BodyData { offset, data, .. } => {
                    assert_eq!(&body[offset as usize..offset as usize + data.len()], &data[..]);
                    got += data.len() as u64;
                }
                Event::PushFinished(summary) => missing = summary.missing,
                _ => {}
            }
        }
        (promised, got, missing)
    }

    #[test]
    fn repeated_heads_let_a_late_joiner_learn_the_push_and_place_its_tail() {
        let body: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let t0 = Instant::now();
        // Without repetition a receiver that missed the first 40 datagrams
        // (promise and stream head among them) never learns the push.
        let plain = paced_push(&mut sender(), &body, t0);
        let (promised, got, _) = late_joiner(&plain, 40, &body);
        assert!(!promised);
        assert_eq!(got, 0);
        // Repeated every 20 ms, the promise and head reach it, and every body
        // byte it saw is placed: it misses exactly the prefix sent before it
        // joined.
        let mut s = sender();
        s.cfg.repeat_heads = Some(Duration::from_millis(20));
        let repeated = paced_push(&mut s, &body, t0);
        assert!(s.stats().head_repeats >= 5, "{:?}", s.stats());
        assert_eq!(repeated.len() as u64, plain.len() as u64 + s.stats().head_repeats);
        let (promised, got, missing) = late_joiner(&repeated, 40, &body);
        assert!(promised);
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert_eq!(missing[0].start, 0);
        assert_eq!(missing[0].end + got, body.len() as u64);
        assert!(got > 150_000, "{got}");
        // A receiver there from the start gets the body whole: the repeats are
        // duplicates to it.
        let (promised, got, missing) = late_joiner(&repeated, 0, &body);
        assert!(promised && missing.is_empty());
        assert_eq!(got, body.len() as u64);
        // Nothing is repeated once no push is open.
        assert_eq!(
            s.poll_timeout(),
            Some(t0 + Duration::from_millis(plain.len() as u64 + s.stats().head_repeats - 1) + Duration::from_secs(5))
        );
    }
    /// With FEC on, a receiver that lost the session's first datagrams (the
    /// promise and headers among them), a burst and scattered datagrams gets
    /// every resource whole from the repair datagrams, through AES-128-GCM
    /// packet protection; without the repair it gets nothing whole.
    #[test]
    fn fec_rebuilds_lost_promises_heads_and_body_through_packet_protection() {
        // 1-byte packet numbers too (nghq's): a rebuilt datagram hundreds of
        // numbers old still opens, since its number is known.
        for pn_len in [4, 1] {
            fec_round_trip(pn_len);
        }
    }

    fn fec_round_trip(pn_len: usize) {
        use crate::aead::PacketKeys;
        use crate::fec::FecConfig;
        use crate::protection::CipherSuite;
        let keys = PacketKeys::new(CipherSuite::Aes128Gcm, &[3; 16], &[5; 12]).unwrap();
        let mut enc = EncoderConfig::new(SessionId::NGHQ_DEFAULT);
        enc.pn_len = pn_len;
        let mut cfg = SenderConfig::new(enc);
        cfg.fec = Some(FecConfig { percent: 10, block: 64, depth: 8, deadline: Duration::from_secs(1) });
        let mut s = Sender::new(cfg, keys.protection());
        let bodies: Vec<Vec<u8>> =
            (0..3u32).map(|r| (0..150_000u32).map(|i| (i * 7 + r * 13) as u8).collect()).collect();
        let t0 = Instant::now();
        let (mut sent, mut repair) = (Vec::new(), Vec::new());
        for (r, body) in bodies.iter().enumerate() {
            let meta = ResourceMeta::file(format!("f{r}"), body.len() as u64, UNIX_EPOCH);
            let id = s.start(&meta).unwrap();
            s.write(id, body).unwrap();
            s.finish(id, None).unwrap();
            sent.extend(std::iter::from_fn(|| s.poll_transmit(t0)));
            repair.extend(std::iter::from_fn(|| s.poll_repair(t0)));
        }
        s.close().unwrap();
        sent.extend(std::iter::from_fn(|| s.poll_transmit(t0)));
        // The last group closes once everything is out; its repair is due
        // over the time the group took (at most the deadline, 1 s).
        for at in [t0 + Duration::from_secs(2), t0 + Duration::from_secs(4)] {
            repair.extend(std::iter::from_fn(|| s.poll_repair(at)));
        }
        assert_eq!(s.stats().repair_datagrams, repair.len() as u64);
        // One short group (under 400 datagrams, fewer than 512): 8 blocks of
        // 48 to 50, each with ⌈10%⌉ = 5 repair symbols and 2 for a short block.
        assert!((385..400).contains(&sent.len()), "{}", sent.len());
        assert_eq!(repair.len(), 56);
        // Lost: the first 3 datagrams, a burst of 8, every 37th.
        let lost = |i: usize| i < 3 || (200..208).contains(&i) || i.is_multiple_of(37);
        let receive = |with_repair: bool| {
            let mut rc = ReceiverConfig::new(SessionId::NGHQ_DEFAULT);
            rc.protection = keys.protection();
            let mut rx = Receiver::new(rc);
            for (_, d) in sent.iter().enumerate().filter(|(i, _)| !lost(*i)) {
                rx.handle_datagram(t0, d);
            }
            if with_repair {
                for r in &repair {
                    rx.handle_repair(t0, r);
                }
            }
            rx.finish(t0);
            let mut got: Vec<Vec<u8>> = vec![Vec::new(); 3];
            let mut complete = 0;
            while let Some(e) = rx.poll_event() {
                match e {
                    Event::BodyData { push_id, offset, data, .. } => {
                        let b = &mut got[push_id as usize];
                        b.resize(b.len().max(offset as usize + data.len()), 0);
                        b[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
                    }
                    Event::PushFinished(summary) if summary.status == crate::receiver::PushStatus::Complete => {
                        complete += 1
                    }
                    _ => {}
                }
            }
            (complete, got, rx.stats().clone())
        };
        let (complete, _, stats) = receive(false);
        assert_eq!((complete, stats.fec.datagrams_recovered), (0, 0));
        let (complete, got, stats) = receive(true);
        assert_eq!(complete, 3, "{stats:?}");
        assert_eq!(got, bodies);
        let lost_count = (0..sent.len()).filter(|&i| lost(i)).count() as u64;
        assert_eq!(stats.fec.datagrams_recovered, lost_count);
        assert_eq!((stats.protection_failures, stats.fec.blocks_unrecovered), (0, 0));
    }

    #[test]
    fn rebuilt_datagrams_go_to_the_caller_when_asked() {
        use crate::fec::FecConfig;
        let mut cfg = SenderConfig::new(EncoderConfig::new(SessionId::NGHQ_DEFAULT));
        cfg.fec = Some(FecConfig { percent: 10, block: 64, depth: 8, deadline: Duration::from_secs(1) });
        let mut s = Sender::new(cfg, Box::new(crate::protection::NullProtection));
        let body: Vec<u8> = (0..200_000u32).map(|i| (i * 11) as u8).collect();
        let t0 = Instant::now();
        let id = s.start(&ResourceMeta::file("f", body.len() as u64, UNIX_EPOCH)).unwrap();
        s.write(id, &body).unwrap();
        s.finish(id, None).unwrap();
        s.close().unwrap();
        let sent: Vec<Vec<u8>> = std::iter::from_fn(|| s.poll_transmit(t0)).collect();
        let mut repair: Vec<Vec<u8>> = Vec::new();
        for at in [t0, t0 + Duration::from_secs(2), t0 + Duration::from_secs(4)] {
            repair.extend(std::iter::from_fn(|| s.poll_repair(at)));
        }
        let lost = |i: usize| i == 1 || i.is_multiple_of(29);
        let mut rc = ReceiverConfig::new(SessionId::NGHQ_DEFAULT);
        rc.recovered_to_caller = true;
        let mut rx = Receiver::new(rc);
        for (_, d) in sent.iter().enumerate().filter(|(i, _)| !lost(*i)) {
            rx.handle_datagram(t0, d);
        }
        for r in &repair {
            rx.handle_repair(t0, r);
        }
        // The last blocks decode once their deferral ends.
        rx.handle_timeout(t0 + crate::fec::decoder::DEFER_LIMIT + Duration::from_millis(1));
        // Every lost datagram comes out byte for byte, none handled yet.
        let mut rebuilt: Vec<(u64, Vec<u8>)> = std::iter::from_fn(|| rx.poll_recovered()).collect();
        rebuilt.sort();
        let expected: Vec<(u64, Vec<u8>)> =
            sent.iter().enumerate().filter(|(i, _)| lost(*i)).map(|(i, d)| (i as u64, d.clone())).collect();
        let pns = |v: &[(u64, Vec<u8>)]| v.iter().map(|(pn, _)| *pn).collect::<Vec<_>>();
        assert_eq!(pns(&rebuilt), pns(&expected));
        assert!(rebuilt == expected, "a rebuilt datagram differs from the one sent");
        let stats = rx.stats().clone();
        assert_eq!(stats.fec.datagrams_recovered, expected.len() as u64);
        assert_eq!(stats.packets, (sent.len() - expected.len()) as u64, "none handled before it is handed back");
        // Handed back, they complete the push, reported as rebuilt.
        for (pn, d) in &rebuilt {
            rx.handle_recovered_datagram(t0, *pn, d);
        }
        rx.finish(t0);
        let (mut got, mut fec_bytes, mut complete) = (vec![0u8; body.len()], 0, false);
        while let Some(e) = rx.poll_event() {
            match e {
                Event::BodyData { offset, data, fec, .. } => {
                    got[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
                    fec_bytes += if fec { data.len() } else { 0 };
                }
                Event::PushFinished(summary) => complete = summary.status == crate::receiver::PushStatus::Complete,
                _ => {}
            }
        }
        assert!(complete);
        assert_eq!(got, body);
        assert!(fec_bytes > 0, "bytes released by a rebuilt datagram are reported as rebuilt");
        assert_eq!(rx.stats().packets, sent.len() as u64);
    }
}
/// FEC across sessions as a publisher sends them (repair polled after each
/// datagram) and receivers see them: random or bursty loss, repair read
/// ahead of the datagrams it covers.
#[cfg(test)]
mod fec_loss {
    use super::*;
    use crate::SessionId;
    use crate::fec::FecConfig;
    use crate::protection::NullProtection;
    use crate::receiver::{Event, PushStatus, Receiver, ReceiverConfig, ReceiverStats};

    /// A xorshift generator.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Sends `lens` as resources with `fec`, a datagram every `gap`;
    /// returns the datagrams in order, `true` for repair.
    fn send(fec: FecConfig, lens: &[usize], gap: Duration) -> Vec<(bool, Vec<u8>)> {
        let mut cfg = SenderConfig::new(EncoderConfig::new(SessionId::NGHQ_DEFAULT));
        cfg.fec = Some(fec);
        let mut s = Sender::new(cfg, Box::new(NullProtection));
        let t0 = Instant::now();
        let mut sent = Vec::new();
        for (r, &len) in lens.iter().enumerate() {
            let body: Vec<u8> = (0..len).map(|i| (i * 7 + r) as u8).collect();
            let mut meta = ResourceMeta::file(format!("f{r}"), len as u64, std::time::UNIX_EPOCH);
            meta.last = r + 1 == lens.len();
            let id = s.start(&meta).unwrap();
            s.write(id, &body).unwrap();
            s.finish(id, None).unwrap();
            loop {
                let now = t0 + gap * sent.len() as u32;
                let Some(d) = s.poll_transmit(now) else { break };
                sent.push((false, d));
                while let Some(d) = s.poll_repair(now) {
                    sent.push((true, d));
                }
            }
        }
        s.close().unwrap();
        let end = t0 + gap * sent.len() as u32;
        while let Some(d) = s.poll_transmit(end) {
            sent.push((false, d));
        }
        // The last group's repair is due over the time the group took.
        for at in [end, end + Duration::from_secs(2)] {
            while let Some(d) = s.poll_repair(at) {
                sent.push((true, d));
            }
        }
        sent
    }

    /// Receives what `lost` leaves, each repair datagram handled `ahead`
    /// datagrams earlier than sent (its port read first); returns the
    /// pushes complete and the counters.
    fn receive(sent: &[(bool, Vec<u8>)], lost: &mut dyn FnMut(usize) -> bool, ahead: usize) -> (usize, ReceiverStats) {
        // (when handled, repair first at a tie, index as sent)
        let mut order: Vec<(usize, bool, usize)> =
            sent.iter().enumerate().map(|(i, d)| (if d.0 { i.saturating_sub(ahead) } else { i }, !d.0, i)).collect();
        order.sort();
        let mut rx = Receiver::new(ReceiverConfig::new(SessionId::NGHQ_DEFAULT));
        let t0 = Instant::now();
        for (_, _, i) in order {
            let (repair, d) = &sent[i];
            if lost(i) {
                continue;
            }
            if *repair { rx.handle_repair(t0, d) } else { rx.handle_datagram(t0, d) }
        }
        // Counted before the input ends: each resource completes as its
        // datagrams (received or rebuilt) arrive, not when the session ends.
        let mut complete = 0;
        while let Some(e) = rx.poll_event() {
            if let Event::PushFinished(sm) = e {
                assert_eq!(sm.status, PushStatus::Complete, "{sm:?}\n{:?}", rx.stats());
                complete += 1;
            }
        }
        (complete, rx.stats().clone())
    }

    #[test]
    fn fec_15_delivers_a_big_file_and_149_small_ones_through_5_percent_loss() {
        let mut rng = Rng(12345);
        let lens: Vec<usize> =
            (0..150).map(|r| if r == 0 { 6 << 20 } else { 1000 + (rng.next() % 19000) as usize }).collect();
        let sent = send(FecConfig::new(15), &lens, Duration::from_micros(10));
        let (complete, stats) = receive(&sent, &mut |_| rng.next() % 100 < 5, 0);
        assert_eq!(complete, lens.len());
        assert!(stats.packet_number_gaps > 100, "{stats:?}");
        assert!(stats.fec.datagrams_recovered >= stats.packet_number_gaps, "{stats:?}");
    }

    #[test]
    fn fec_5_delivers_1000_small_files_through_bursts_with_repair_read_ahead() {
        // As on the perf harness: 1000 × 10 KiB at about 2 Gbit/s, 1% of
        // GSO sends (16 datagrams) lost, the repair port's datagrams handled
        // as sent, or up to 12 000 datagrams (a receive buffer's backlog)
        // before the session's they cover.
        let lens = vec![10 << 10; 1000];
        let sent = send(FecConfig::new(5), &lens, Duration::from_nanos(4_800));
        let mut rng = Rng(99);
        let bursts: Vec<bool> = (0..sent.len() / 16 + 1).map(|_| rng.next() % 100 < 1).collect();
        for ahead in [0, 3000, 12_000, 1_000_000] {
            let (complete, stats) = receive(&sent, &mut |i| bursts[i / 16], ahead);
            assert_eq!(complete, lens.len(), "{stats:?}");
            assert_eq!(stats.fec.blocks_unrecovered, 0, "ahead {ahead}: {stats:?}");
            assert!(stats.packet_number_gaps >= 64, "{stats:?}");
        }
    }
}
