//! Turning resources into h3m datagrams: the packetizing core of a sender.
//!
//! [`SessionEncoder`] lays each resource out the way nghq's receiver accepts
//! (nghq-wire.md §12.1): a PUSH_PROMISE on stream 0 in its own STREAM frame,
//! then a new server-initiated unidirectional stream holding `0x01`, the push
//! ID, one HEADERS frame, the body in DATA frames, and a FIN (also for empty
//! bodies). Each datagram is one short-header packet of at most
//! `max_datagram_size` bytes. Pacing, repetition and file handling belong to the
//! sender built on top of it.

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
    /// Body bytes per DATA frame; `None` puts each body in one DATA frame
    /// (nghq's `-s`: a lost packet then leaves a hole, never an unknown layout).
    pub data_frame_size: Option<usize>,
    /// The first push stream ID (3, 7, 11, ... ; nghq starts at 7).
    pub first_push_stream: u64,
}

impl EncoderConfig {
    /// Defaults for `session_id`: 1200-byte datagrams, 4-byte packet numbers,
    /// one DATA frame per body, push streams from 3.
    pub fn new(session_id: SessionId) -> Self {
        EncoderConfig {
            session_id,
            max_datagram_size: 1200,
            pn_len: 4,
            first_packet_number: 0,
            data_frame_size: None,
            first_push_stream: 3,
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
    /// Packet protection failed.
    #[error("packet protection: {0}")]
    Protection(#[from] ProtectionError),
}

/// Packetizes resources into datagrams for one session.
pub struct SessionEncoder {
    cfg: EncoderConfig,
    protection: Box<dyn PacketProtection>,
    next_pn: u64,
    next_push_id: u64,
    next_stream_id: u64,
    request_offset: u64,
}

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
        }
    }

    /// The push ID the next resource gets.
    pub fn next_push_id(&self) -> u64 {
        self.next_push_id
    }

    /// The packet number the next datagram gets.
    pub fn next_packet_number(&self) -> u64 {
        self.next_pn
    }

    fn packet_overhead(&self) -> usize {
        1 + self.cfg.session_id.len() + self.cfg.pn_len.clamp(1, 4) + self.protection.tag_len()
    }

    fn emit(&mut self, payload: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), EncodeError> {
        let mut dgram = Vec::with_capacity(self.cfg.max_datagram_size);
        packet::write_packet(
            &mut dgram,
            &self.cfg.session_id,
            self.next_pn,
            self.cfg.pn_len,
            payload,
            self.protection.as_ref(),
        )?;
        self.next_pn += 1;
        out.push(dgram);
        Ok(())
    }

    /// Writes `bytes` of `stream_id` from `offset` as STREAM frames, one per
    /// datagram, FIN on the last when `fin`.
    fn emit_stream(
        &mut self,
        stream_id: u64,
        mut offset: u64,
        bytes: &[u8],
        fin: bool,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), EncodeError> {
        let room = self.cfg.max_datagram_size.saturating_sub(self.packet_overhead());
        let mut rest = bytes;
        let mut payload = Vec::with_capacity(room);
        loop {
            // The length field is sized for a full packet, an upper bound.
            let header = frame::stream_header_len(stream_id, offset, room, true);
            let take = room.checked_sub(header).filter(|&n| n > 0 || rest.is_empty());
            let Some(take) = take else { return Err(EncodeError::DatagramTooSmall(self.cfg.max_datagram_size)) };
            let take = take.min(rest.len());
            let last = take == rest.len();
            payload.clear();
            frame::encode_stream(stream_id, offset, &rest[..take], fin && last, true, &mut payload)
                .map_err(|_| EncodeError::Exhausted)?;
            self.emit(&payload, out)?;
            offset += take as u64;
            rest = &rest[take..];
            if last {
                return Ok(());
            }
        }
    }

    /// Encodes one resource: its promise on stream 0, then its push stream.
    /// Returns the push ID used.
    pub fn push(
        &mut self,
        request: &[HeaderField],
        response: &[HeaderField],
        body: &[u8],
        out: &mut Vec<Vec<u8>>,
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
        let request_offset = self.request_offset;
        self.emit_stream(0, request_offset, &promise, false, out)?;
        self.request_offset += promise.len() as u64;

        let mut stream = Vec::with_capacity(body.len() + 64);
        varint::encode(h3::PUSH_STREAM_TYPE, &mut stream).map_err(|_| EncodeError::Exhausted)?;
        varint::encode(push_id, &mut stream).map_err(|_| EncodeError::Exhausted)?;
        section.clear();
        qpack::encode_field_section(response, &mut section);
        h3::encode_frame(&h3::H3Frame::Headers(&section), &mut stream).map_err(|_| EncodeError::Exhausted)?;
        let chunk = self.cfg.data_frame_size.unwrap_or(usize::MAX).max(1);
        if body.is_empty() {
            h3::encode_frame(&h3::H3Frame::Data(&[]), &mut stream).map_err(|_| EncodeError::Exhausted)?;
        }
        for part in body.chunks(chunk) {
            h3::encode_frame(&h3::H3Frame::Data(part), &mut stream).map_err(|_| EncodeError::Exhausted)?;
        }
        self.emit_stream(stream_id, 0, &stream, true, out)?;
        self.next_push_id += 1;
        self.next_stream_id += 4;
        Ok(push_id)
    }

    /// A PING-only datagram (keep-alive).
    pub fn ping(&mut self, out: &mut Vec<Vec<u8>>) -> Result<(), EncodeError> {
        let mut payload = Vec::new();
        frame::encode_ping(&mut payload);
        self.emit(&payload, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receiver::{Event, Receiver, ReceiverConfig};
    use std::time::Instant;

    #[test]
    fn encoded_session_decodes() {
        let sid = SessionId::from_hex("cafe").unwrap();
        let mut cfg = EncoderConfig::new(sid);
        cfg.data_frame_size = Some(1000);
        let mut enc = SessionEncoder::new(cfg);
        let body: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let req = vec![HeaderField::new(":method", "GET"), HeaderField::new(":path", "/a")];
        let resp = vec![HeaderField::new(":status", "200"), HeaderField::new("connection", "close")];
        let mut out = Vec::new();
        assert_eq!(enc.push(&req, &resp, &body, &mut out), Ok(0));
        assert!(out.iter().all(|d| d.len() <= 1200));
        let mut rx = Receiver::new(ReceiverConfig::new(sid));
        let now = Instant::now();
        for d in &out {
            rx.handle_datagram(now, d);
        }
        let mut got = vec![0u8; body.len()];
        let mut finished = false;
        while let Some(ev) = rx.poll_event() {
            match ev {
                Event::BodyData { offset, data, .. } => {
                    got[offset as usize..offset as usize + data.len()].copy_from_slice(&data)
                }
                Event::PushFinished(s) => finished = s.is_complete() && s.body_len == 5000,
                _ => {}
            }
        }
        assert!(finished);
        assert_eq!(got, body);
        assert!(rx.is_ended());
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
