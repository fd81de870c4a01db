//! Turning resources into h3m datagrams: the packetizing core of a sender.
//!
//! [`SessionEncoder`] lays each resource out the way nghq's receiver accepts
//! (nghq-wire.md §12.1): a PUSH_PROMISE on stream 0, then a new
//! server-initiated unidirectional stream holding `0x01`, the push ID, one
//! HEADERS frame, the body in DATA frames, optional trailing HEADERS, and a FIN
//! (also for empty bodies). Every datagram is one short-header packet of at
//! most `max_datagram_size` bytes, filled as far as the data allows.
//!
//! Bodies are streamed: [`SessionEncoder::open_push`], then any number of
//! [`write`](SessionEncoder::write) calls, then [`finish`](SessionEncoder::finish).
//! Only less than one packet of a push is ever held. When the body length is
//! declared up front the body goes in one DATA frame (or frames of
//! `data_frame_size`), so a lost packet leaves a hole whose place is known;
//! bodies of unknown length get one DATA frame per write.
//!
//! The promise travels alone in the datagram just before the first bytes of its
//! push stream (nghq's layout), so that losing any one datagram leaves a trace
//! the receiver can report: a push stream without its promise, or a promise
//! without its push stream.
//!
//! With [`EncoderConfig::pack`] every datagram is filled instead: a
//! resource's last bytes, the next one's promise and that one's first stream
//! bytes share a packet (a packet holds STREAM frames of several streams, which
//! nghq's receiver parses frame by frame). A tree of 10 KiB files then takes
//! about a sixth fewer datagrams, all of one size, so they leave in long GSO
//! runs instead of two sends per file. The packet being filled is held until
//! it is full or [`SessionEncoder::seal`] sends it; every other kind of packet
//! (a reset, a repeated head, a PING, the goaway) seals it first, and so does
//! [`SessionEncoder::flush`].

use crate::SessionId;
use crate::frame;
use crate::h3;
use crate::packet;
use crate::protection::{NullProtection, PacketProtection, ProtectionError};
use crate::qpack::{self, HeaderField};
use crate::varint;

/// Settings of a [`SessionEncoder`].
#[derive(Debug, Clone)]
pub struct EncoderConfig {
    /// The session ID written into every packet.
    pub session_id: SessionId,
    /// The largest UDP payload produced (default 1200: no IPv6 fragmentation,
    /// room for AMT encapsulation).
    pub max_datagram_size: usize,
    /// The encoded packet-number length, 1 to 4 bytes, fixed for the session.
    pub pn_len: usize,
    /// The first packet number.
    pub first_packet_number: u64,
    /// Most body bytes per DATA frame; `None` puts a declared-length body in one
    /// DATA frame (nghq's `-s`) and each write of an undeclared one in its own.
    pub data_frame_size: Option<u64>,
    /// The first push stream ID (3, 7, 11, ... ; nghq starts at 7).
    pub first_push_stream: u64,
    /// Fill every datagram: the next resource's promise and first stream bytes
    /// follow the last bytes of the one before in the same packet, which is
    /// sent once full or when [`SessionEncoder::seal`] is called (see the
    /// [module docs](self)). `false` (the default) is nghq's layout.
    pub pack: bool,
}

impl EncoderConfig {
    /// Defaults for `session_id`: 1200-byte datagrams, 4-byte packet numbers,
    /// one DATA frame per declared body, push streams from 3.
    pub fn new(session_id: SessionId) -> Self {
        EncoderConfig {
            session_id,
            max_datagram_size: 1200,
            pn_len: 4,
            first_packet_number: 0,
            data_frame_size: None,
            first_push_stream: 3,
            pack: false,
        }
    }
}

/// Why a resource could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// `max_datagram_size` leaves no room for stream data.
    #[error("datagram size {0} is too small for a packet with stream data")]
    DatagramTooSmall(usize),
    /// A value outgrew its varint (2^62 streams, pushes or bytes).
    #[error("stream, push or offset space exhausted")]
    Exhausted,
    /// No open push has this ID.
    #[error("push {0} is not open")]
    UnknownPush(u64),
    /// More body bytes than the declared length.
    #[error("push {push_id}: body longer than the declared {declared} bytes")]
    BodyTooLong {
        /// The push.
        push_id: u64,
        /// The declared length.
        declared: u64,
    },
    /// Fewer body bytes than the declared length at `finish`.
    #[error("push {push_id}: body ended at {written} of the declared {declared} bytes")]
    BodyTooShort {
        /// The push.
        push_id: u64,
        /// Bytes written.
        written: u64,
        /// The declared length.
        declared: u64,
    },
    /// Packet protection failed.
    #[error("packet protection: {0}")]
    Protection(#[from] ProtectionError),
}

/// A push whose stream is being written.
#[derive(Debug)]
struct OpenPush {
    push_id: u64,
    stream_id: u64,
    /// Stream bytes already packetized.
    offset: u64,
    /// Stream bytes not yet packetized (less than a packet between calls).
    pending: Vec<u8>,
    /// The encoded promise STREAM frame (stream 0 at its offset): sent alone
    /// before the stream's first bytes, and again by
    /// [`SessionEncoder::repeat_heads`].
    promise: Vec<u8>,
    /// Whether the promise went out.
    promise_sent: bool,
    declared: Option<u64>,
    body_written: u64,
    /// Bytes left in the DATA frame being written.
    frame_left: u64,
    /// The stream's first bytes (type, push ID, HEADERS and the first DATA
    /// frame's header once written), for [`SessionEncoder::repeat_heads`].
    head: Vec<u8>,
    /// The stream offset of the body's first byte, when the body is one DATA
    /// frame (a declared length): see [`SessionEncoder::body_offset`].
    body_offset: Option<u64>,
}

/// Packetizes resources into datagrams for one session.
pub struct SessionEncoder {
    cfg: EncoderConfig,
    protection: Box<dyn PacketProtection>,
    next_pn: u64,
    next_push_id: u64,
    next_stream_id: u64,
    request_offset: u64,
    open: Vec<OpenPush>,
    payload: Vec<u8>,
    /// Datagram buffers given back by the caller once sent
    /// ([`recycle`](Self::recycle)), reused for the next datagrams.
    spare: Vec<Vec<u8>>,
    /// The frames of the packet being filled: held between calls with
    /// [`EncoderConfig::pack`], sealed as each is made without.
    packed: Vec<u8>,
}

/// Datagram buffers kept for reuse at most (a few GSO batches' worth).
const MAX_SPARE: usize = 256;

impl std::fmt::Debug for SessionEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionEncoder")
            .field("cfg", &self.cfg)
            .field("next_pn", &self.next_pn)
            .field("next_push_id", &self.next_push_id)
            .finish_non_exhaustive()
    }
}

impl SessionEncoder {
    /// An encoder without packet protection.
    pub fn new(cfg: EncoderConfig) -> Self {
        Self::with_protection(cfg, Box::new(NullProtection))
    }

    /// An encoder with the given packet protection.
    pub fn with_protection(cfg: EncoderConfig, protection: Box<dyn PacketProtection>) -> Self {
        SessionEncoder {
            next_pn: cfg.first_packet_number,
            next_stream_id: cfg.first_push_stream,
            cfg,
            protection,
            next_push_id: 0,
            request_offset: 0,
            open: Vec::new(),
            payload: Vec::new(),
            spare: Vec::new(),
            packed: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EncoderConfig {
        &self.cfg
    }

    /// The push ID the next resource gets.
    pub fn next_push_id(&self) -> u64 {
        self.next_push_id
    }

    /// The packet number the next datagram gets.
    pub fn next_packet_number(&self) -> u64 {
        self.next_pn
    }

    /// Pushes opened and not yet finished.
    pub fn open_pushes(&self) -> usize {
        self.open.len()
    }

    fn packet_overhead(&self) -> usize {
        1 + self.cfg.session_id.len() + self.cfg.pn_len.clamp(1, 4) + self.protection.tag_len()
    }

    /// The largest frame payload a packet can carry.
    fn frame_room(&self) -> usize {
        self.cfg.max_datagram_size.saturating_sub(self.packet_overhead())
    }

    /// Takes back a datagram this encoder made, once it is sent: its buffer
    /// holds one of the next (no allocation per datagram). Buffers too small
    /// for a datagram, and those beyond a few batches' worth, are dropped.
    pub fn recycle(&mut self, mut datagram: Vec<u8>) {
        if self.spare.len() < MAX_SPARE && datagram.capacity() >= self.cfg.max_datagram_size {
            datagram.clear();
            self.spare.push(datagram);
        }
    }

    /// Sends the packet being filled ([`EncoderConfig::pack`]), if any: the
    /// caller is about to wait, or wants everything out.
    pub fn seal(&mut self, out: &mut Vec<Vec<u8>>) -> Result<(), EncodeError> {
        if self.packed.is_empty() {
            return Ok(());
        }
        std::mem::swap(&mut self.payload, &mut self.packed);
        self.packed.clear();
        self.emit_payload(out)
    }

    /// Seals the packet being filled as a full one: padded to the datagram
    /// size (a STREAM frame's length field can come out a byte shorter than
    /// reckoned), so that full datagrams are all of one size and leave in
    /// one GSO run.
    fn seal_full(&mut self, out: &mut Vec<Vec<u8>>) -> Result<(), EncodeError> {
        let room = self.frame_room();
        if self.packed.len() < room {
            frame::encode_padding(room - self.packed.len(), &mut self.packed);
        }
        self.seal(out)
    }

    /// Whether a packet is being filled (see [`seal`](Self::seal)).
    pub fn has_unsealed(&self) -> bool {
        !self.packed.is_empty()
    }

    /// Seals `self.payload` into a datagram.
    fn emit_payload(&mut self, out: &mut Vec<Vec<u8>>) -> Result<(), EncodeError> {
        let mut dgram = self.spare.pop().unwrap_or_else(|| Vec::with_capacity(self.cfg.max_datagram_size));
        packet::write_packet(
            &mut dgram,
            &self.cfg.session_id,
            self.next_pn,
            self.cfg.pn_len,
            &self.payload,
            self.protection.as_ref(),
        )?;
        self.next_pn += 1;
        out.push(dgram);
        Ok(())
    }

    fn index(&self, push_id: u64) -> Result<usize, EncodeError> {
        self.open.iter().position(|p| p.push_id == push_id).ok_or(EncodeError::UnknownPush(push_id))
    }

    /// Opens a push: queues its promise and its stream prologue and HEADERS.
    /// `body_len` declares the body length when known. Returns the push ID.
    pub fn open_push(
        &mut self,
        request: &[HeaderField],
        response: &[HeaderField],
        body_len: Option<u64>,
    ) -> Result<u64, EncodeError> {
        let push_id = self.next_push_id;
        let stream_id = self.next_stream_id;
        if stream_id > varint::MAX - 4 || push_id >= varint::MAX {
            return Err(EncodeError::Exhausted);
        }
        let mut section = Vec::new();
        qpack::encode_field_section(request, &mut section);
        let mut promise = Vec::new();
        h3::encode_frame(&h3::H3Frame::PushPromise { push_id, field_section: &section }, &mut promise)
            .map_err(|_| EncodeError::Exhausted)?;
        let mut promise_frame = Vec::with_capacity(promise.len() + 16);
        frame::encode_stream(0, self.request_offset, &promise, false, true, &mut promise_frame)
            .map_err(|_| EncodeError::Exhausted)?;
        if promise_frame.len() > self.frame_room() {
            return Err(EncodeError::DatagramTooSmall(self.cfg.max_datagram_size));
        }
        self.request_offset += promise.len() as u64;

        let mut pending = Vec::with_capacity(self.frame_room() * 2);
        varint::encode(h3::PUSH_STREAM_TYPE, &mut pending).map_err(|_| EncodeError::Exhausted)?;
        varint::encode(push_id, &mut pending).map_err(|_| EncodeError::Exhausted)?;
        section.clear();
        qpack::encode_field_section(response, &mut section);
        h3::encode_frame(&h3::H3Frame::Headers(&section), &mut pending).map_err(|_| EncodeError::Exhausted)?;
        let body_offset = match body_len {
            Some(d) if self.cfg.data_frame_size.is_none_or(|f| f >= d) => {
                let mut header = Vec::new();
                h3::encode_header(h3::DATA, d, &mut header).map_err(|_| EncodeError::Exhausted)?;
                Some((pending.len() + header.len()) as u64)
            }
            _ => None,
        };
        self.open.push(OpenPush {
            push_id,
            stream_id,
            offset: 0,
            head: pending.clone(),
            pending,
            promise: promise_frame,
            promise_sent: false,
            declared: body_len,
            body_written: 0,
            frame_left: 0,
            body_offset,
        });
        self.next_push_id += 1;
        self.next_stream_id += 4;
        Ok(push_id)
    }

    /// Where push `push_id`'s body starts in its stream, when the body is one
    /// DATA frame (a declared length): a receiver that lost the stream's
    /// first bytes can place the rest with it. `None` for a body of unknown
    /// length or in several frames, or a push not open.
    pub fn body_offset(&self, push_id: u64) -> Option<u64> {
        self.open.iter().find(|p| p.push_id == push_id).and_then(|p| p.body_offset)
    }

    /// Appends body bytes to a push, emitting every full packet.
    pub fn write(&mut self, push_id: u64, mut data: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), EncodeError> {
        let i = self.index(push_id)?;
        let frame_size = self.cfg.data_frame_size.unwrap_or(u64::MAX).max(1);
        let p = &mut self.open[i];
        if let Some(declared) = p.declared
            && p.body_written + data.len() as u64 > declared
        {
            return Err(EncodeError::BodyTooLong { push_id, declared });
        }
        while !data.is_empty() {
            if p.frame_left == 0 {
                let n = match p.declared {
                    Some(d) => (d - p.body_written).min(frame_size),
                    None => (data.len() as u64).min(frame_size),
                };
                let at = p.pending.len();
                h3::encode_header(h3::DATA, n, &mut p.pending).map_err(|_| EncodeError::Exhausted)?;
                if p.body_written == 0 {
                    // The first DATA frame's header belongs to the head: with
                    // a declared length it maps every later body byte.
                    p.head.extend_from_slice(&p.pending[at..]);
                }
                p.frame_left = n;
            }
            let take = (p.frame_left.min(data.len() as u64)) as usize;
            p.pending.extend_from_slice(&data[..take]);
            p.frame_left -= take as u64;
            p.body_written += take as u64;
            data = &data[take..];
        }
        self.emit_full(i, out)
    }

    /// Emits packets from push `i`'s pending bytes; with `flush_all` also the
    /// last partial packet (carrying FIN when `fin`), which when packing stays
    /// open for what follows.
    fn emit_stream(&mut self, i: usize, flush_all: bool, fin: bool, out: &mut Vec<Vec<u8>>) -> Result<(), EncodeError> {
        let room = self.frame_room();
        let pack = self.cfg.pack;
        let mut consumed = 0;
        loop {
            if !self.open[i].promise_sent {
                // The promise goes first in the packet being filled.
                if self.packed.len() + self.open[i].promise.len() > room {
                    self.seal_full(out)?;
                }
                self.packed.extend_from_slice(&self.open[i].promise);
                if !pack {
                    // Unpacked, it goes alone, just before the stream's first
                    // bytes, as nghq sends it: one lost datagram then loses
                    // either the promise (the receiver reports an unpromised
                    // push stream) or the stream start (it reports the
                    // promised push incomplete), never both.
                    self.seal(out)?;
                }
                self.open[i].promise_sent = true;
            }
            let (stream_id, offset) = (self.open[i].stream_id, self.open[i].offset);
            let left = self.open[i].pending.len() - consumed;
            // Unpacked, every packet is sealed as it is made: this one starts empty.
            let used = self.packed.len();
            let header = frame::stream_header_len(stream_id, offset, room - used, true);
            if used > 0 && room - used <= header {
                // No room for a byte of this stream: the packet is done.
                self.seal_full(out)?;
                continue;
            }
            let space = (room - used).saturating_sub(header);
            if space == 0 {
                return Err(EncodeError::DatagramTooSmall(self.cfg.max_datagram_size));
            }
            let full = left >= space;
            if !full && !flush_all {
                break;
            }
            let take = left.min(space);
            let last = flush_all && take == left;
            let frame = &self.open[i].pending[consumed..consumed + take];
            frame::encode_stream(stream_id, offset, frame, fin && last, true, &mut self.packed)
                .map_err(|_| EncodeError::Exhausted)?;
            self.open[i].offset += take as u64;
            consumed += take;
            if !pack {
                self.seal(out)?;
            } else if full {
                self.seal_full(out)?;
            }
            if last {
                break;
            }
        }
        self.open[i].pending.drain(..consumed);
        Ok(())
    }

    fn emit_full(&mut self, i: usize, out: &mut Vec<Vec<u8>>) -> Result<(), EncodeError> {
        self.emit_stream(i, false, false, out)
    }

    /// Sends what a push holds now in a short packet (live streams: data is
    /// not held back waiting for a full packet).
    pub fn flush(&mut self, push_id: u64, out: &mut Vec<Vec<u8>>) -> Result<(), EncodeError> {
        let i = self.index(push_id)?;
        if !self.open[i].pending.is_empty() || !self.open[i].promise_sent {
            self.emit_stream(i, true, false, out)?;
        }
        self.seal(out)
    }

    /// Ends a push: optional trailing HEADERS, the rest of its bytes, and FIN.
    pub fn finish(
        &mut self,
        push_id: u64,
        trailers: Option<&[HeaderField]>,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), EncodeError> {
        let i = self.index(push_id)?;
        let p = &mut self.open[i];
        if let Some(declared) = p.declared
            && p.body_written < declared
        {
            return Err(EncodeError::BodyTooShort { push_id, written: p.body_written, declared });
        }
        if p.declared == Some(0) || (p.declared.is_none() && p.body_written == 0) {
            // An explicit empty DATA frame: nghq's receiver accepts it (s18).
            h3::encode_header(h3::DATA, 0, &mut p.pending).map_err(|_| EncodeError::Exhausted)?;
        }
        if let Some(t) = trailers {
            let mut section = Vec::new();
            qpack::encode_field_section(t, &mut section);
            h3::encode_frame(&h3::H3Frame::Headers(&section), &mut p.pending).map_err(|_| EncodeError::Exhausted)?;
        }
        self.emit_stream(i, true, true, out)?;
        self.open.remove(i);
        Ok(())
    }

    /// Abandons a push with RESET_STREAM. (nghq's receiver mishandles this
    /// frame; use it only with h3m receivers.)
    pub fn reset(&mut self, push_id: u64, error_code: u64, out: &mut Vec<Vec<u8>>) -> Result<(), EncodeError> {
        let i = self.index(push_id)?;
        self.seal(out)?;
        let p = self.open.remove(i);
        self.payload.clear();
        if !p.promise_sent {
            self.payload.extend_from_slice(&p.promise);
        }
        frame::encode_reset_stream(p.stream_id, error_code, p.offset, &mut self.payload)
            .map_err(|_| EncodeError::Exhausted)?;
        self.emit_payload(out)
    }

    /// Encodes one whole resource (open, write, finish). Returns the push ID.
    pub fn push(
        &mut self,
        request: &[HeaderField],
        response: &[HeaderField],
        body: &[u8],
        out: &mut Vec<Vec<u8>>,
    ) -> Result<u64, EncodeError> {
        let id = self.open_push(request, response, Some(body.len() as u64))?;
        self.write(id, body, out)?;
        self.finish(id, None, out)?;
        Ok(id)
    }

    /// nghq's end-of-session signal: a PUSH_PROMISE for `:path goaway` with
    /// `connection: close`, which h3m and nghq receivers recognise. No push
    /// stream follows.
    pub fn goaway(&mut self, out: &mut Vec<Vec<u8>>) -> Result<(), EncodeError> {
        let request = [
            HeaderField::new(":method", "GET"),
            HeaderField::new(":scheme", "http"),
            HeaderField::new(":path", "goaway"),
            HeaderField::new("connection", "close"),
        ];
        self.seal(out)?;
        let push_id = self.next_push_id;
        let mut section = Vec::new();
        qpack::encode_field_section(&request, &mut section);
        let mut promise = Vec::new();
        h3::encode_frame(&h3::H3Frame::PushPromise { push_id, field_section: &section }, &mut promise)
            .map_err(|_| EncodeError::Exhausted)?;
        self.payload.clear();
        frame::encode_stream(0, self.request_offset, &promise, false, true, &mut self.payload)
            .map_err(|_| EncodeError::Exhausted)?;
        self.request_offset += promise.len() as u64;
        self.next_push_id += 1;
        self.emit_payload(out)
    }

    /// Sends again, for every open push whose promise already went out, its
    /// PUSH_PROMISE (the same STREAM frame of stream 0, at its offset) and its
    /// stream's head (type, push ID, response HEADERS and the first DATA
    /// frame's header, at offset 0), so that a receiver that joins while the
    /// push is in flight learns the push and can place the body bytes that
    /// follow. To an h3m receiver that has them they are duplicate stream
    /// bytes, which it discards. Not for nghq's receiver: it takes each
    /// repeated PUSH_PROMISE for a new promise and, once a repeated head
    /// overlaps the DATA frame it is reading, loses track of that frame (the
    /// push then ends only at its stream timeout). One datagram per push when
    /// both fit, more otherwise; returns how many datagrams were made.
    pub fn repeat_heads(&mut self, out: &mut Vec<Vec<u8>>) -> Result<usize, EncodeError> {
        let room = self.frame_room();
        self.seal(out)?;
        let before = out.len();
        for i in 0..self.open.len() {
            let p = &self.open[i];
            if !p.promise_sent {
                continue; // not sent yet
            }
            let (stream_id, promise, head) = (p.stream_id, p.promise.clone(), p.head.clone());
            self.payload.clear();
            self.payload.extend_from_slice(&promise);
            let mut at = 0;
            while at < head.len() {
                let header = frame::stream_header_len(stream_id, at as u64, room, true);
                let mut space = room.saturating_sub(self.payload.len() + header);
                if space == 0 && !self.payload.is_empty() {
                    self.emit_payload(out)?;
                    self.payload.clear();
                    space = room.saturating_sub(header);
                }
                if space == 0 {
                    return Err(EncodeError::DatagramTooSmall(self.cfg.max_datagram_size));
                }
                let take = space.min(head.len() - at);
                frame::encode_stream(stream_id, at as u64, &head[at..at + take], false, true, &mut self.payload)
                    .map_err(|_| EncodeError::Exhausted)?;
                at += take;
                if at < head.len() {
                    self.emit_payload(out)?;
                    self.payload.clear();
                }
            }
            if !self.payload.is_empty() {
                self.emit_payload(out)?;
            }
        }
        Ok(out.len() - before)
    }

    /// A PING-only datagram (keep-alive).
    pub fn ping(&mut self, out: &mut Vec<Vec<u8>>) -> Result<(), EncodeError> {
        self.seal(out)?;
        self.payload.clear();
        frame::encode_ping(&mut self.payload);
        self.emit_payload(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receiver::{Event, PushStatus, Receiver, ReceiverConfig, SessionEndReason};
    use std::time::Instant;

    /// Finished pushes (ID, body, status).
    type Finished = Vec<(u64, Vec<u8>, PushStatus)>;

    fn receive(sid: SessionId, dgrams: &[Vec<u8>]) -> (Finished, Vec<SessionEndReason>) {
        let mut rx = Receiver::new(ReceiverConfig::new(sid));
        let now = Instant::now();
        for d in dgrams {
            rx.handle_datagram(now, d);
        }
        rx.finish(now);
        let mut bodies: std::collections::BTreeMap<u64, Vec<u8>> = Default::default();
        let mut done = Vec::new();
        let mut ends = Vec::new();
        while let Some(ev) = rx.poll_event() {
            match ev {
                Event::BodyData { push_id, offset, data, .. } => {
                    let b = bodies.entry(push_id).or_default();
                    b.resize(b.len().max(offset as usize + data.len()), 0);
                    b[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
                }
                Event::PushFinished(s) => {
                    done.push((s.push_id, bodies.remove(&s.push_id).unwrap_or_default(), s.status))
                }
                Event::SessionEnd { reason } => ends.push(reason),
                _ => {}
            }
        }
        (done, ends)
    }

    fn req(path: &str) -> Vec<HeaderField> {
        vec![HeaderField::new(":method", "GET"), HeaderField::new(":path", path)]
    }

    #[test]
    fn streamed_declared_and_undeclared_bodies_decode() {
        let sid = SessionId::from_hex("cafe").unwrap();
        for frame_size in [None, Some(1000)] {
            let mut cfg = EncoderConfig::new(sid);
            cfg.data_frame_size = frame_size;
            let mut enc = SessionEncoder::new(cfg);
            let body: Vec<u8> = (0..50_000u32).map(|i| (i * 7) as u8).collect();
            let resp = vec![HeaderField::new(":status", "200")];
            let mut out = Vec::new();
            let a = enc.open_push(&req("/a"), &resp, Some(body.len() as u64)).unwrap();
            for chunk in body.chunks(777) {
                enc.write(a, chunk, &mut out).unwrap();
            }
            enc.finish(a, None, &mut out).unwrap();
            let b = enc.open_push(&req("/live"), &resp, None).unwrap();
            for chunk in body.chunks(5000) {
                enc.write(b, chunk, &mut out).unwrap();
                enc.flush(b, &mut out).unwrap();
            }
            enc.finish(b, Some(&[HeaderField::new("digest", "x")]), &mut out).unwrap();
            let e = enc.push(&req("/empty"), &resp, b"", &mut out).unwrap();
            enc.goaway(&mut out).unwrap();
            assert!(out.iter().all(|d| d.len() <= 1200));
            let (done, ends) = receive(sid, &out);
            assert_eq!(
                done,
                vec![
                    (a, body.clone(), PushStatus::Complete),
                    (b, body.clone(), PushStatus::Complete),
                    (e, vec![], PushStatus::Complete)
                ]
            );
            assert_eq!(ends, vec![SessionEndReason::Goaway]);
        }
    }

    /// The stream IDs of a datagram's STREAM frames, in order (PADDING left out).
    fn stream_ids(d: &[u8], sid_len: usize) -> Vec<u64> {
        crate::frame::FrameReader::new(&d[1 + sid_len + 4..])
            .filter_map(|f| match f.unwrap() {
                crate::frame::Frame::Stream { stream_id, .. } => Some(stream_id),
                crate::frame::Frame::Padding { .. } => None,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn packed_datagrams_are_full_and_carry_every_resource_byte_for_byte() {
        let sid = SessionId::from_hex("cafe").unwrap();
        let resp = vec![HeaderField::new(":status", "200")];
        let sizes = [10_240usize, 0, 1, 10_240, 1_150, 1_151, 1_152, 5_000, 0, 3, 20_000, 10_240];
        let bodies: Vec<Vec<u8>> =
            sizes.iter().enumerate().map(|(k, &n)| (0..n).map(|i| (i * 31 + k * 7) as u8).collect()).collect();
        let (mut plain, mut packed) = (Vec::new(), Vec::new());
        for pack in [false, true] {
            let mut cfg = EncoderConfig::new(sid);
            cfg.pack = pack;
            let mut enc = SessionEncoder::new(cfg);
            let out = if pack { &mut packed } else { &mut plain };
            let mut ids = Vec::new();
            for (k, body) in bodies.iter().enumerate() {
                let id = enc.open_push(&req(&format!("/f{k}")), &resp, Some(body.len() as u64)).unwrap();
                for chunk in body.chunks(4096) {
                    enc.write(id, chunk, out).unwrap();
                }
                // One with trailers, as a file hashed while it is sent.
                let trailers = [HeaderField::new("digest", "x")];
                enc.finish(id, (k == 4).then_some(&trailers[..]), out).unwrap();
                ids.push(id);
            }
            assert_eq!(enc.has_unsealed(), pack, "the last packet is held until sealed");
            enc.seal(out).unwrap();
            assert!(!enc.has_unsealed());
            enc.goaway(out).unwrap();
            let (done, ends) = receive(sid, out);
            let want: Finished =
                ids.iter().zip(&bodies).map(|(&id, b)| (id, b.clone(), PushStatus::Complete)).collect();
            assert_eq!(done, want, "pack: {pack}");
            assert_eq!(ends, vec![SessionEndReason::Goaway]);
        }
        // All full but the sealed one and the goaway, and fewer than one or
        // two short datagrams per resource.
        let full = packed.iter().filter(|d| d.len() == 1200).count();
        assert_eq!(full, packed.len() - 2, "{:?}", packed.iter().map(Vec::len).collect::<Vec<_>>());
        assert!(packed.len() < plain.len() - sizes.len(), "{} packed, {} not", packed.len(), plain.len());
        // A resource's last bytes, the next one's promise and its first bytes share a datagram.
        assert!(packed.iter().any(|d| {
            let ids = stream_ids(d, 2);
            ids.len() >= 3 && ids.windows(3).any(|w| w[0] != 0 && w[1] == 0 && w[2] != 0 && w[2] != w[0])
        }));
    }

    #[test]
    fn packing_seals_before_a_reset_a_repeated_head_a_flush_and_a_ping() {
        let sid = SessionId::from_hex("cafe").unwrap();
        let resp = vec![HeaderField::new(":status", "200")];
        let mut cfg = EncoderConfig::new(sid);
        cfg.pack = true;
        let mut enc = SessionEncoder::new(cfg);
        let mut out = Vec::new();
        let a = enc.push(&req("/a"), &resp, &[1u8; 3000], &mut out).unwrap();
        let sealed_before = out.len();
        let b = enc.open_push(&req("/b"), &resp, Some(10)).unwrap();
        enc.write(b, b"01234", &mut out).unwrap();
        enc.reset(b, 0x10c, &mut out).unwrap();
        assert_eq!(out.len(), sealed_before + 2, "a's tail sealed, then the reset");
        let c = enc.open_push(&req("/c"), &resp, None).unwrap();
        enc.write(c, b"live", &mut out).unwrap();
        enc.flush(c, &mut out).unwrap();
        assert!(!enc.has_unsealed(), "a flush sends what it has at once");
        let n = enc.repeat_heads(&mut out).unwrap();
        assert_eq!(n, 1, "c's promise and head, nothing sealed in between");
        enc.write(c, b" more", &mut out).unwrap();
        enc.finish(c, None, &mut out).unwrap();
        assert!(enc.has_unsealed());
        let before_ping = out.len();
        enc.ping(&mut out).unwrap();
        assert_eq!(out.len(), before_ping + 2, "c's tail, then the PING");
        enc.goaway(&mut out).unwrap();
        let (done, _) = receive(sid, &out);
        assert_eq!(done[0], (a, vec![1u8; 3000], PushStatus::Complete));
        assert_eq!(
            done.iter().find(|d| d.0 == c).map(|d| (d.1.clone(), d.2.clone())),
            Some((b"live more".to_vec(), PushStatus::Complete))
        );
        assert!(done.iter().any(|d| d.0 == b && d.2 != PushStatus::Complete), "{done:?}");
    }

    #[test]
    fn promise_goes_alone_before_the_stream() {
        let mut enc = SessionEncoder::new(EncoderConfig::new(SessionId::EMPTY));
        let mut out = Vec::new();
        enc.push(&req("/a"), &[HeaderField::new(":status", "200")], b"hi", &mut out).unwrap();
        assert_eq!(out.len(), 2, "the promise, then headers, body and FIN");
        let frames = |d: &[u8]| {
            crate::frame::FrameReader::new(&d[5..])
                .map(|f| match f.unwrap() {
                    crate::frame::Frame::Stream { stream_id, .. } => stream_id,
                    other => panic!("{other:?}"),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!((frames(&out[0]), frames(&out[1])), (vec![0], vec![3]));
    }

    #[test]
    fn recycled_buffers_hold_the_next_datagrams_byte_for_byte() {
        let sid = SessionId::new(&[0x2a; 8]).unwrap();
        let body: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let (mut fresh, mut reused) =
            (SessionEncoder::new(EncoderConfig::new(sid)), SessionEncoder::new(EncoderConfig::new(sid)));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        fresh.push(&req("/a"), &[], &body, &mut a).unwrap();
        reused.push(&req("/a"), &[], &body, &mut b).unwrap();
        assert_eq!(a, b);
        // The second push's datagrams in the first push's buffers: the same
        // bytes as from an encoder that allocates each.
        let buffers: Vec<*const u8> = b.iter().map(|d| d.as_ptr()).collect();
        for d in b.drain(..) {
            reused.recycle(d);
        }
        reused.recycle(Vec::new()); // too small to hold a datagram: dropped
        fresh.push(&req("/b"), &[], &body[..3000], &mut a).unwrap();
        reused.push(&req("/b"), &[], &body[..3000], &mut b).unwrap();
        assert_eq!(a[a.len() - b.len()..], b[..]);
        assert!(b.iter().all(|d| buffers.contains(&d.as_ptr())), "each one in a recycled buffer");
    }

    #[test]
    fn declared_lengths_are_enforced() {
        let mut enc = SessionEncoder::new(EncoderConfig::new(SessionId::EMPTY));
        let mut out = Vec::new();
        let id = enc.open_push(&req("/a"), &[], Some(3)).unwrap();
        assert_eq!(enc.write(id, b"abcd", &mut out), Err(EncodeError::BodyTooLong { push_id: id, declared: 3 }));
        enc.write(id, b"ab", &mut out).unwrap();
        assert_eq!(
            enc.finish(id, None, &mut out),
            Err(EncodeError::BodyTooShort { push_id: id, written: 2, declared: 3 })
        );
        assert_eq!(enc.write(99, b"", &mut out), Err(EncodeError::UnknownPush(99)));
    }

    #[test]
    fn reset_push_is_reported_incomplete() {
        let sid = SessionId::EMPTY;
        let mut enc = SessionEncoder::new(EncoderConfig::new(sid));
        let mut out = Vec::new();
        let id = enc.open_push(&req("/a"), &[HeaderField::new(":status", "200")], Some(10_000)).unwrap();
        enc.write(id, &[7; 5000], &mut out).unwrap();
        enc.reset(id, 0x10c, &mut out).unwrap();
        let (done, _) = receive(sid, &out);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].2, PushStatus::Incomplete(crate::receiver::IncompleteReason::Reset { error_code: 0x10c }));
    }

    #[test]
    fn tiny_datagrams_are_refused() {
        let mut cfg = EncoderConfig::new(SessionId::EMPTY);
        cfg.max_datagram_size = 8;
        let mut enc = SessionEncoder::new(cfg);
        let mut out = Vec::new();
        assert_eq!(enc.push(&[], &[], b"x", &mut out), Err(EncodeError::DatagramTooSmall(8)));
    }
}
