//! qlog serialisation: the JSON-SEQ form (RFC 7464) of the qlog main schema
//! (draft-ietf-quic-qlog-main-schema) with the QUIC and HTTP/3 event
//! definitions (draft-ietf-quic-qlog-quic-events, draft-ietf-quic-qlog-h3-events),
//! which qvis (<https://qvis.quictools.info>) loads.
//!
//! Sans-IO: [`QlogWriter`] writes records to any [`std::io::Write`]; opening the
//! file, reading the clock and choosing the time stamps are the caller's.
//! Every record is the byte 0x1E (RS), one JSON text, and `\n`. The first record
//! is the header (`qlog_version`, `qlog_format`, `trace` with `vantage_point`
//! and `common_fields`); the rest are events with a relative `time` in
//! milliseconds, a `name` of the form `category:event` and a `data` object.
//!
//! Event names are those of qlog 0.3 (the version this header declares, and
//! the one qvis and quiche's `.sqlog` files use): `transport:` for the QUIC
//! events, which later drafts rename `quic:`, and `generic:` for the
//! warning, later `loglevel:`.
//!
//! Events written:
//! - `transport:packet_sent` / `transport:packet_received`: header (`packet_type` `1RTT`,
//!   `packet_number`), `raw.length` and the frames ([`PacketTrace`]).
//! - `http:frame_parsed` with a `push_promise` frame when a push is promised.
//! - `http:push_resolved` when a push completes (`claimed`) or ends incomplete
//!   (`abandoned`).
//! - `generic:warning` once, when the size bound is reached; nothing is written
//!   after it.

use std::io::Write;
use std::time::Instant;

use crate::SessionId;
use crate::frame::{Frame, FrameReader};
use crate::packet::{self, PacketError};
use crate::protection::PacketProtection;

/// The record separator that starts every JSON-SEQ record (RFC 7464).
pub const RECORD_SEPARATOR: u8 = 0x1E;

/// Bytes kept back for the final note written when the size bound is reached.
const NOTE_RESERVE: u64 = 256;

/// Which end of the session the trace is written at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VantagePoint {
    /// The sender (it serves the pushes).
    Server,
    /// A receiver.
    Client,
}

impl VantagePoint {
    fn as_str(self) -> &'static str {
        match self {
            VantagePoint::Server => "server",
            VantagePoint::Client => "client",
        }
    }
}

/// Whether a packet was sent or received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `transport:packet_sent`.
    Sent,
    /// `transport:packet_received`.
    Received,
}

/// One frame of a packet, as qlog shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameSummary {
    /// PADDING bytes.
    Padding {
        /// How many.
        len: usize,
    },
    /// PING.
    Ping,
    /// RESET_STREAM.
    ResetStream {
        /// The stream.
        stream_id: u64,
        /// The application error code.
        error_code: u64,
        /// The final size.
        final_size: u64,
    },
    /// STREAM.
    Stream {
        /// The stream.
        stream_id: u64,
        /// Offset of the data in the stream.
        offset: u64,
        /// Bytes of data.
        length: usize,
        /// Whether the frame ends the stream.
        fin: bool,
    },
    /// A frame h3m ignores, by type.
    Other {
        /// The frame type.
        frame_type: u64,
    },
}

impl FrameSummary {
    /// The summary of a parsed frame.
    pub fn of(frame: &Frame<'_>) -> Self {
        match *frame {
            Frame::Padding { len } => FrameSummary::Padding { len },
            Frame::Ping => FrameSummary::Ping,
            Frame::ResetStream { stream_id, error_code, final_size } => {
                FrameSummary::ResetStream { stream_id, error_code, final_size }
            }
            Frame::Stream { stream_id, offset, data, fin } => {
                FrameSummary::Stream { stream_id, offset, length: data.len(), fin }
            }
            Frame::Ignored { frame_type } => FrameSummary::Other { frame_type },
        }
    }
}

/// What qlog records of one packet: its number, its size on the wire and its
/// frames.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacketTrace {
    /// The full packet number.
    pub packet_number: u64,
    /// The datagram's length in bytes.
    pub length: usize,
    /// The frames, in order, up to the first that could not be parsed.
    pub frames: Vec<FrameSummary>,
}

impl PacketTrace {
    /// Opens a copy of `datagram` (the caller's bytes are untouched) and
    /// summarises it. `largest` is the largest packet number seen so far, for
    /// the packet-number expansion; `scratch` is reused between calls.
    pub fn open(
        datagram: &[u8],
        session_id: &SessionId,
        largest: Option<u64>,
        protection: &dyn PacketProtection,
        scratch: &mut Vec<u8>,
    ) -> Result<PacketTrace, PacketError> {
        scratch.clear();
        scratch.extend_from_slice(datagram);
        let opened = packet::open_packet(scratch, session_id, largest, protection)?;
        let frames = FrameReader::new(opened.payload).map_while(Result::ok).map(|f| FrameSummary::of(&f)).collect();
        Ok(PacketTrace { packet_number: opened.packet_number, length: datagram.len(), frames })
    }

    /// The STREAM bytes the packet carries.
    pub fn stream_bytes(&self) -> u64 {
        self.frames
            .iter()
            .map(|f| match f {
                FrameSummary::Stream { length, .. } => *length as u64,
                _ => 0,
            })
            .sum()
    }
}

/// Why a qlog record could not be written.
#[derive(Debug, thiserror::Error)]
pub enum QlogError {
    /// The output failed.
    #[error("writing qlog: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes a qlog trace as JSON-SEQ records, up to a size bound.
///
/// Once the next record would take the output past `max_bytes`, a single
/// `generic:warning` event says so and every later call writes nothing.
#[derive(Debug)]
pub struct QlogWriter {
    max_bytes: u64,
    written: u64,
    stopped: bool,
    largest_pn: Option<u64>,
    buf: Vec<u8>,
}

impl QlogWriter {
    /// A writer that stops after about `max_bytes` bytes (at least enough for
    /// the header and the final note).
    pub fn new(max_bytes: u64) -> Self {
        QlogWriter { max_bytes, written: 0, stopped: false, largest_pn: None, buf: Vec::with_capacity(512) }
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Whether the size bound was reached (nothing more is written).
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// The largest packet number traced so far, for [`PacketTrace::open`].
    pub fn largest_packet_number(&self) -> Option<u64> {
        self.largest_pn
    }

    /// Writes the header record. `reference_time_ms` is the trace's start in
    /// milliseconds since the Unix epoch; event times are relative to it.
    pub fn header(
        &mut self,
        out: &mut dyn Write,
        title: &str,
        vantage: VantagePoint,
        reference_time_ms: u64,
    ) -> Result<(), QlogError> {
        self.buf.clear();
        self.buf.push(RECORD_SEPARATOR);
        self.buf.extend_from_slice(b"{\"qlog_version\":\"0.3\",\"qlog_format\":\"JSON-SEQ\",\"title\":");
        json_string(&mut self.buf, title);
        self.buf.extend_from_slice(b",\"trace\":{\"title\":");
        json_string(&mut self.buf, title);
        let _ = writeln!(
            self.buf,
            ",\"vantage_point\":{{\"name\":\"h3m\",\"type\":\"{}\"}},\"common_fields\":{{\"time_format\":\"relative\",\
             \"reference_time\":{reference_time_ms},\"protocol_type\":[\"QUIC\",\"HTTP3\"]}}}}}}",
            vantage.as_str()
        );
        self.emit(out)
    }

    /// Writes a `transport:packet_sent` or `transport:packet_received` event at
    /// `time_ms` milliseconds after the reference time.
    pub fn packet(
        &mut self,
        out: &mut dyn Write,
        time_ms: f64,
        direction: Direction,
        trace: &PacketTrace,
    ) -> Result<(), QlogError> {
        self.largest_pn = Some(self.largest_pn.map_or(trace.packet_number, |l| l.max(trace.packet_number)));
        let name = match direction {
            Direction::Sent => "transport:packet_sent",
            Direction::Received => "transport:packet_received",
        };
        self.start_event(time_ms, name);
        let _ = write!(
            self.buf,
            "{{\"header\":{{\"packet_type\":\"1RTT\",\"packet_number\":{}}},\"raw\":{{\"length\":{}}},\"frames\":[",
            trace.packet_number, trace.length
        );
        for (i, frame) in trace.frames.iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            let _ = match *frame {
                FrameSummary::Padding { len } => {
                    write!(
                        self.buf,
                        "{{\"frame_type\":\"padding\",\"raw\":{{\"length\":{len},\"payload_length\":{len}}}}}"
                    )
                }
                FrameSummary::Ping => write!(self.buf, "{{\"frame_type\":\"ping\"}}"),
                FrameSummary::ResetStream { stream_id, error_code, final_size } => write!(
                    self.buf,
                    "{{\"frame_type\":\"reset_stream\",\"stream_id\":{stream_id},\"error_code\":{error_code},\
                     \"final_size\":{final_size}}}"
                ),
                FrameSummary::Stream { stream_id, offset, length, fin } => write!(
                    self.buf,
                    "{{\"frame_type\":\"stream\",\"stream_id\":{stream_id},\"offset\":{offset},\"length\":{length},\
                     \"fin\":{fin}}}"
                ),
                FrameSummary::Other { frame_type } => {
                    write!(self.buf, "{{\"frame_type\":\"unknown\",\"raw_frame_type\":{frame_type}}}")
                }
            };
        }
        self.buf.extend_from_slice(b"]}}\n");
        self.emit(out)
    }

    /// Writes an `http:frame_parsed` event for the PUSH_PROMISE of `push_id`
    /// with its `:path`.
    pub fn push_promised(
        &mut self,
        out: &mut dyn Write,
        time_ms: f64,
        push_id: u64,
        path: &str,
    ) -> Result<(), QlogError> {
        self.start_event(time_ms, "http:frame_parsed");
        let _ = write!(
            self.buf,
            "{{\"stream_id\":0,\"frame\":{{\"frame_type\":\"push_promise\",\"push_id\":{push_id},\"headers\":[{{\"name\":\":path\",\"value\":"
        );
        json_string(&mut self.buf, path);
        self.buf.extend_from_slice(b"}]}}}\n");
        self.emit(out)
    }

    /// Writes an `http:push_resolved` event: `complete` pushes are `claimed`,
    /// the others `abandoned`.
    pub fn push_resolved(
        &mut self,
        out: &mut dyn Write,
        time_ms: f64,
        push_id: u64,
        complete: bool,
    ) -> Result<(), QlogError> {
        self.start_event(time_ms, "http:push_resolved");
        let decision = if complete { "claimed" } else { "abandoned" };
        let _ = writeln!(self.buf, "{{\"push_id\":{push_id},\"decision\":\"{decision}\"}}}}");
        self.emit(out)
    }

    fn start_event(&mut self, time_ms: f64, name: &str) {
        self.buf.clear();
        self.buf.push(RECORD_SEPARATOR);
        let time = if time_ms.is_finite() && time_ms >= 0.0 { time_ms } else { 0.0 };
        let _ = write!(self.buf, "{{\"time\":{time:.3},\"name\":\"{name}\",\"data\":");
    }

    /// Writes the record in `buf`, or the final note when it would pass the bound.
    fn emit(&mut self, out: &mut dyn Write) -> Result<(), QlogError> {
        if self.stopped {
            return Ok(());
        }
        let len = self.buf.len() as u64;
        if self.written > 0 && self.written + len + NOTE_RESERVE > self.max_bytes {
            self.stopped = true;
            let time = last_time(&self.buf);
            self.buf.clear();
            self.buf.push(RECORD_SEPARATOR);
            let _ = writeln!(
                self.buf,
                "{{\"time\":{time},\"name\":\"generic:warning\",\"data\":{{\"code\":\"h3m_qlog_size_limit\",\
                 \"message\":\"qlog size limit of {} bytes reached; nothing more is logged\"}}}}",
                self.max_bytes
            );
        }
        out.write_all(&self.buf)?;
        self.written += self.buf.len() as u64;
        Ok(())
    }
}

/// A [`QlogWriter`] with its output and its start: what a sender or receiver
/// keeps while it logs. Times are given as [`Instant`]s and written relative to
/// `start`.
pub struct QlogTrace {
    writer: QlogWriter,
    out: Box<dyn Write + Send>,
    start: Instant,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for QlogTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QlogTrace").field("writer", &self.writer).field("start", &self.start).finish_non_exhaustive()
    }
}

impl QlogTrace {
    /// Starts a trace: writes the header record to `out`. `reference_time_ms`
    /// (milliseconds since the Unix epoch) is the wall-clock time of `start`.
    pub fn new(
        mut out: Box<dyn Write + Send>,
        title: &str,
        vantage: VantagePoint,
        start: Instant,
        reference_time_ms: u64,
        max_bytes: u64,
    ) -> Result<Self, QlogError> {
        let mut writer = QlogWriter::new(max_bytes);
        writer.header(&mut out, title, vantage, reference_time_ms)?;
        Ok(QlogTrace { writer, out, start, scratch: Vec::new() })
    }

    fn ms(&self, now: Instant) -> f64 {
        now.saturating_duration_since(self.start).as_secs_f64() * 1000.0
    }

    /// The writer (bytes written, whether it stopped).
    pub fn writer(&self) -> &QlogWriter {
        &self.writer
    }

    /// Logs a datagram of the session sent or received at `now`. A datagram
    /// that does not open as a packet of the session is not logged.
    pub fn datagram(
        &mut self,
        now: Instant,
        direction: Direction,
        datagram: &[u8],
        session_id: &SessionId,
        protection: &dyn PacketProtection,
    ) -> Result<(), QlogError> {
        if self.writer.is_stopped() {
            return Ok(());
        }
        let largest = self.writer.largest_packet_number();
        let Ok(trace) = PacketTrace::open(datagram, session_id, largest, protection, &mut self.scratch) else {
            return Ok(());
        };
        let ms = self.ms(now);
        self.writer.packet(&mut self.out, ms, direction, &trace)
    }

    /// Logs a push promise ([`QlogWriter::push_promised`]).
    pub fn push_promised(&mut self, now: Instant, push_id: u64, path: &str) -> Result<(), QlogError> {
        let ms = self.ms(now);
        self.writer.push_promised(&mut self.out, ms, push_id, path)
    }

    /// Logs a finished push ([`QlogWriter::push_resolved`]).
    pub fn push_resolved(&mut self, now: Instant, push_id: u64, complete: bool) -> Result<(), QlogError> {
        let ms = self.ms(now);
        self.writer.push_resolved(&mut self.out, ms, push_id, complete)
    }

    /// Flushes the output.
    pub fn flush(&mut self) -> Result<(), QlogError> {
        self.out.flush()?;
        Ok(())
    }
}

/// The `time` field of an event record in `buf` (as written), or `0`.
fn last_time(buf: &[u8]) -> String {
    let text = std::str::from_utf8(buf).unwrap_or("");
    text.strip_prefix("\u{1e}{\"time\":")
        .and_then(|rest| rest.split(',').next())
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
        .unwrap_or("0")
        .to_owned()
}

/// Appends `s` as a JSON string.
fn json_string(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    for c in s.chars() {
        match c {
            '"' => buf.extend_from_slice(b"\\\""),
            '\\' => buf.extend_from_slice(b"\\\\"),
            '\n' => buf.extend_from_slice(b"\\n"),
            '\r' => buf.extend_from_slice(b"\\r"),
            '\t' => buf.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(buf, "\\u{:04x}", c as u32);
            }
            c => {
                let mut tmp = [0u8; 4];
                buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
            }
        }
    }
    buf.push(b'"');
}

#[cfg(test)]
mod tests;
