//! One server-initiated unidirectional stream: the push-stream prologue
//! (`0x01`, push ID), then HEADERS, DATA (or DATA_WITH_OFFSET) and other frames.
//!
//! The parser walks frame headers in stream order. Once a DATA frame's header is
//! known, every byte of its payload maps to a body offset, so payload bytes are
//! handed out as soon as they arrive, in any order, and never buffered. Only
//! bytes beyond the last known frame boundary wait in [`Segments`] until the
//! bytes before them arrive.

use std::collections::BTreeMap;
use std::ops::Range;

use super::ranges::RangeSet;
use super::segments::Segments;
use crate::h3::{self, FrameHeader};
use crate::varint;

/// Where the parser is in the stream's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Waiting for the stream-type varint.
    StreamType,
    /// Waiting for the push ID.
    PushId,
    /// Walking HTTP/3 frames.
    Frames,
    /// Not a push stream (control, QPACK or unknown type): ignored.
    NotPush,
}

/// What parsing produced, for the receiver to act on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Item {
    /// The stream carries this push ID.
    PushId(u64),
    /// A HEADERS frame's field section (the first is the response, later ones trailers).
    HeaderBlock { trailers: bool, block: Vec<u8> },
    /// Body bytes at a body offset.
    Body { offset: u64, data: Vec<u8> },
    /// The stream is not a push stream.
    NotPush(u64),
}

/// A fatal problem with the stream's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamError {
    FinalSizeChanged,
    DataBeyondFinalSize,
    HeaderBlockTooLarge,
    DataBeforeHeaders,
    BadDataWithOffset,
    MixedDataFrames,
    TooFragmented,
    FrameOverrunsFin,
    BodyBeyondLength,
}

impl StreamError {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::FinalSizeChanged => "FIN at two different final sizes",
            Self::DataBeyondFinalSize => "data beyond the final size",
            Self::HeaderBlockTooLarge => "HEADERS frame larger than the limit",
            Self::DataBeforeHeaders => "DATA before HEADERS",
            Self::BadDataWithOffset => "DATA_WITH_OFFSET shorter than its offset field",
            Self::MixedDataFrames => "DATA and DATA_WITH_OFFSET on one stream",
            Self::TooFragmented => "too many gaps in the stream",
            Self::FrameOverrunsFin => "a frame runs past the end of the stream",
            Self::BodyBeyondLength => "body bytes beyond the announced content-length",
        }
    }
}

/// A frame payload whose place is known: body bytes, or bytes to skip.
#[derive(Debug, Clone, Copy)]
struct Region {
    end: u64,
    body_start: Option<u64>,
}

/// Limits for one stream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamLimits {
    pub max_buffered: usize,
    pub max_header_block: usize,
    pub max_gaps: usize,
}

#[derive(Debug)]
pub(crate) struct PushStream {
    received: RangeSet,
    pending: Segments,
    cursor: u64,
    pub(crate) stage: Stage,
    regions: BTreeMap<u64, Region>,
    final_size: Option<u64>,
    pub(crate) push_id: Option<u64>,
    pub(crate) headers_seen: bool,
    body_extent: u64,
    /// With DATA_WITH_OFFSET frames (which may overlap or leave holes): the body
    /// ranges handed out, so no byte is handed out twice.
    dwo_delivered: Option<RangeSet>,
    /// Whether a DATA frame was seen (DATA and DATA_WITH_OFFSET must not mix).
    plain_data: bool,
    pub(crate) last_activity: std::time::Instant,
    /// Bytes dropped because a buffer limit was reached.
    pub(crate) dropped_bytes: u64,
    pub(crate) skipped_frames: u64,
}

impl PushStream {
    pub(crate) fn new(now: std::time::Instant) -> Self {
        PushStream {
            received: RangeSet::new(),
            pending: Segments::default(),
            cursor: 0,
            stage: Stage::StreamType,
            regions: BTreeMap::new(),
            final_size: None,
            push_id: None,
            headers_seen: false,
            body_extent: 0,
            dwo_delivered: None,
            plain_data: false,
            last_activity: now,
            dropped_bytes: 0,
            skipped_frames: 0,
        }
    }

    /// The memory held bytes cost (see [`Segments::footprint`]).
    pub(crate) fn buffered(&self) -> usize {
        self.pending.footprint()
    }

    /// Bytes held waiting for earlier bytes.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.pending.bytes()
    }

    /// Disjoint ranges tracked (received bytes, open frame regions, delivered
    /// DATA_WITH_OFFSET ranges): the stream's share of the range budget.
    pub(crate) fn range_count(&self) -> usize {
        self.received.range_count() + self.regions.len() + self.dwo_delivered.as_ref().map_or(0, RangeSet::range_count)
    }

    /// Stream bytes that arrived.
    pub(crate) fn received_bytes(&self) -> u64 {
        self.received.covered()
    }

    /// Whether the stream's type and push ID never arrived.
    pub(crate) fn stage_is_start(&self) -> bool {
        matches!(self.stage, Stage::StreamType | Stage::PushId)
    }

    /// Takes every held byte, at its stream offset (a headless stream's
    /// bytes, for a driver that learnt where its body starts).
    pub(crate) fn take_pending(&mut self) -> Vec<(u64, Vec<u8>)> {
        self.pending.take(0..u64::MAX)
    }

    /// Drops every held byte; returns the memory they cost (see [`buffered`](Self::buffered)).
    pub(crate) fn release(&mut self) -> usize {
        let footprint = self.pending.footprint();
        self.pending.clear();
        footprint
    }

    /// Takes a STREAM frame's bytes. `budget` is how many more bytes may be held
    /// across the whole receiver. Bytes held or handed out go in buffers from
    /// `spare` while it has any (see `Receiver::recycle`). Items go to `out`.
    #[allow(clippy::too_many_arguments)] // the receiver's limits, budget, spare buffers and output
    pub(crate) fn on_data(
        &mut self,
        offset: u64,
        data: &[u8],
        fin: bool,
        limits: &StreamLimits,
        budget: usize,
        spare: &mut Vec<Vec<u8>>,
        out: &mut Vec<Item>,
    ) -> Result<(), StreamError> {
        let end = offset + data.len() as u64;
        if fin {
            match self.final_size {
                Some(fs) if fs != end => return Err(StreamError::FinalSizeChanged),
                _ => self.final_size = Some(end),
            }
        }
        if self.final_size.is_some_and(|fs| end > fs || self.received.max_end() > fs) {
            return Err(StreamError::DataBeyondFinalSize);
        }
        if self.stage == Stage::NotPush {
            return Ok(());
        }
        let mut budget = budget;
        for gap in self.received.gaps_within(offset..end) {
            let bytes = &data[(gap.start - offset) as usize..(gap.end - offset) as usize];
            self.place(gap.start, bytes, limits, &mut budget, spare, out);
        }
        if self.received.range_count() > limits.max_gaps {
            return Err(StreamError::TooFragmented);
        }
        Ok(())
    }

    fn place(
        &mut self,
        at: u64,
        bytes: &[u8],
        limits: &StreamLimits,
        budget: &mut usize,
        spare: &mut Vec<Vec<u8>>,
        out: &mut Vec<Item>,
    ) {
        let end = at + bytes.len() as u64;
        let below = end.min(self.cursor);
        if at < below {
            // Already-parsed territory: only region payloads can be new here.
            self.deliver_into_regions(at, &bytes[..(below - at) as usize], spare, out);
            self.received.insert(at..below);
            self.prune_regions(at..below);
        }
        if end > self.cursor {
            let from = at.max(self.cursor);
            let chunk = &bytes[(from - at) as usize..];
            if self.pending.bytes() + chunk.len() > limits.max_buffered || chunk.len() > *budget {
                self.dropped_bytes += chunk.len() as u64;
                return;
            }
            *budget -= chunk.len();
            // A buffer the caller gave back (see `Receiver::recycle`), else a new one.
            let mut held = spare.pop().unwrap_or_default();
            held.extend_from_slice(chunk);
            self.pending.insert(from, held);
            self.received.insert(from..end);
        }
    }

    fn deliver_into_regions(&mut self, at: u64, bytes: &[u8], spare: &mut Vec<Vec<u8>>, out: &mut Vec<Item>) {
        let end = at + bytes.len() as u64;
        let first = self.regions.range(..=at).next_back().map(|(&k, _)| k).unwrap_or(at);
        // Almost always one region: held inline, the rest in a vector.
        let (mut found, mut more) = (None, Vec::new());
        for (&start, region) in self.regions.range(first..end) {
            let lo = start.max(at);
            let hi = region.end.min(end);
            if let (true, Some(body_start)) = (lo < hi, region.body_start) {
                let part = (body_start + (lo - start), (lo - at) as usize..(hi - at) as usize);
                match found {
                    None => found = Some(part),
                    Some(_) => more.push(part),
                }
            }
        }
        for (offset, range) in found.into_iter().chain(more) {
            // A buffer the caller gave back (see `Receiver::recycle`), else a new one.
            let mut body = spare.pop().unwrap_or_default();
            body.extend_from_slice(&bytes[range]);
            self.emit_body(offset, body, out);
        }
    }

    /// Hands out body bytes, minus any already handed out (only
    /// DATA_WITH_OFFSET frames can overlap).
    fn emit_body(&mut self, offset: u64, data: Vec<u8>, out: &mut Vec<Item>) {
        let Some(delivered) = &mut self.dwo_delivered else {
            out.push(Item::Body { offset, data });
            return;
        };
        let end = offset + data.len() as u64;
        for gap in delivered.gaps(offset..end) {
            let part = data[(gap.start - offset) as usize..(gap.end - offset) as usize].to_vec();
            out.push(Item::Body { offset: gap.start, data: part });
        }
        delivered.insert(offset..end);
    }

    fn prune_regions(&mut self, touched: Range<u64>) {
        let first = self.regions.range(..=touched.start).next_back().map(|(&k, _)| k).unwrap_or(touched.start);
        let done: Vec<u64> = self
            .regions
            .range(first..touched.end)
            .filter(|(start, r)| self.received.contains(**start..r.end))
            .map(|(&k, _)| k)
            .collect();
        for k in done {
            self.regions.remove(&k);
        }
    }

    /// Enters a frame payload `start..end`: hands out any held bytes inside it
    /// and moves the cursor to its end.
    fn enter_region(&mut self, start: u64, end: u64, body_start: Option<u64>, out: &mut Vec<Item>) {
        for (off, data) in self.pending.take(start..end) {
            if let Some(bs) = body_start {
                self.emit_body(bs + (off - start), data, out);
            }
        }
        if !self.received.contains(start..end) {
            self.regions.insert(start, Region { end, body_start });
        }
        self.cursor = end;
    }

    /// Parses as far as the held bytes allow. Frames are walked only once
    /// `linked` (the push's promise is known), so nothing is handed out for an
    /// unpromised push.
    pub(crate) fn advance(
        &mut self,
        linked: bool,
        limits: &StreamLimits,
        out: &mut Vec<Item>,
    ) -> Result<(), StreamError> {
        loop {
            match self.stage {
                Stage::NotPush => return Ok(()),
                Stage::StreamType | Stage::PushId => {
                    let mut peek = [0u8; 8];
                    let held = self.pending.peek(self.cursor, &mut peek);
                    let Ok((value, n)) = varint::decode(&peek[..held]) else { return Ok(()) };
                    self.cursor += n as u64;
                    if self.stage == Stage::StreamType {
                        if value != h3::PUSH_STREAM_TYPE {
                            self.stage = Stage::NotPush;
                            self.pending.clear();
                            out.push(Item::NotPush(value));
                            return Ok(());
                        }
                        self.stage = Stage::PushId;
                    } else {
                        self.push_id = Some(value);
                        self.stage = Stage::Frames;
                        out.push(Item::PushId(value));
                    }
                    self.pending.discard_below(self.cursor);
                }
                Stage::Frames => {
                    if !linked {
                        return Ok(());
                    }
                    let mut peek = [0u8; 16];
                    let held = self.pending.peek(self.cursor, &mut peek);
                    let Some(h) = FrameHeader::parse(&peek[..held]) else { return Ok(()) };
                    let payload_start = self.cursor + h.header_len as u64;
                    let Some(end) = payload_start.checked_add(h.length).filter(|&e| e <= varint::MAX) else {
                        return Err(StreamError::FrameOverrunsFin);
                    };
                    if self.final_size.is_some_and(|fs| end > fs) {
                        return Err(StreamError::FrameOverrunsFin);
                    }
                    match h.frame_type {
                        h3::DATA => {
                            if !self.headers_seen {
                                return Err(StreamError::DataBeforeHeaders);
                            }
                            if self.dwo_delivered.is_some() {
                                return Err(StreamError::MixedDataFrames);
                            }
                            self.plain_data = true;
                            let body_start = self.body_extent;
                            self.body_extent += h.length;
                            self.enter_region(payload_start, end, Some(body_start), out);
                        }
                        h3::DATA_WITH_OFFSET => {
                            if !self.headers_seen {
                                return Err(StreamError::DataBeforeHeaders);
                            }
                            if self.plain_data {
                                return Err(StreamError::MixedDataFrames);
                            }
                            let off_peek = self.pending.contiguous(payload_start, 8.min(h.length as usize));
                            let Ok((body_start, n)) = varint::decode(&off_peek) else {
                                if (off_peek.len() as u64) < h.length.min(8) {
                                    return Ok(()); // wait for the offset field
                                }
                                return Err(StreamError::BadDataWithOffset);
                            };
                            let data_start = payload_start + n as u64;
                            let data_len = end - data_start;
                            let body_end = body_start.checked_add(data_len).ok_or(StreamError::BadDataWithOffset)?;
                            self.body_extent = self.body_extent.max(body_end);
                            self.dwo_delivered.get_or_insert_with(RangeSet::new);
                            self.pending.discard_below(data_start);
                            self.enter_region(data_start, end, Some(body_start), out);
                        }
                        h3::HEADERS => {
                            if h.length > limits.max_header_block as u64 {
                                return Err(StreamError::HeaderBlockTooLarge);
                            }
                            let block = self.pending.contiguous(payload_start, h.length as usize);
                            if (block.len() as u64) < h.length {
                                return Ok(());
                            }
                            out.push(Item::HeaderBlock { trailers: self.headers_seen, block });
                            self.headers_seen = true;
                            self.cursor = end;
                        }
                        _ => {
                            self.skipped_frames += 1;
                            self.enter_region(payload_start, end, None, out);
                        }
                    }
                    self.pending.discard_below(self.cursor);
                }
            }
        }
    }

    /// The first HEADERS frame's field section, if the stream holds it whole at
    /// its parse position (a stream whose promise never came stops there).
    pub(crate) fn held_response_block(&self, max: usize) -> Option<Vec<u8>> {
        if self.stage != Stage::Frames || self.headers_seen {
            return None;
        }
        let h = FrameHeader::parse(&self.pending.contiguous(self.cursor, 16))?;
        if h.frame_type != h3::HEADERS || h.length > max as u64 {
            return None;
        }
        let block = self.pending.contiguous(self.cursor + h.header_len as u64, h.length as usize);
        (block.len() as u64 == h.length).then_some(block)
    }

    /// Whether every byte up to the FIN is here and parsed, ending on a frame boundary.
    pub(crate) fn is_complete(&self) -> bool {
        self.stage == Stage::Frames
            && self.headers_seen
            && self.final_size == Some(self.cursor)
            && self.received.contains(0..self.cursor)
            && self.dwo_delivered.as_ref().is_none_or(|c| c.contains(0..self.body_extent))
    }

    /// Whether the stream holds exactly a push prologue and one HEADERS frame,
    /// with nothing after it and no FIN: nghq's way of sending an empty file.
    pub(crate) fn ends_after_headers(&self) -> bool {
        self.stage == Stage::Frames
            && self.headers_seen
            && self.body_extent == 0
            && self.final_size.is_none()
            && self.received.contains(0..self.cursor)
            && self.received.max_end() == self.cursor
    }

    /// The body length known from parsed frames.
    pub(crate) fn body_extent(&self) -> u64 {
        self.body_extent
    }

    /// Body ranges known to be missing, and the body offset from which the
    /// layout is unknown (a frame header, or the FIN, never arrived).
    pub(crate) fn missing(&self) -> (Vec<Range<u64>>, Option<u64>) {
        let mut ranges = Vec::new();
        if let Some(delivered) = &self.dwo_delivered {
            // Frames may overlap: what was handed out is the whole truth.
            ranges.extend(delivered.gaps(0..self.body_extent));
        } else {
            for (&start, r) in &self.regions {
                if let Some(bs) = r.body_start {
                    for gap in self.received.gaps(start..r.end) {
                        ranges.push(bs + (gap.start - start)..bs + (gap.end - start));
                    }
                }
            }
        }
        ranges.sort_by_key(|r| r.start);
        let mut merged = RangeSet::new();
        for r in ranges {
            merged.insert(r);
        }
        // Every frame header up to the FIN parsed: holes can only be inside payloads.
        let layout_done = self.stage == Stage::Frames && self.final_size == Some(self.cursor);
        let mut ranges: Vec<Range<u64>> = merged.iter().collect();
        let mut tail = (!layout_done).then_some(self.body_extent);
        // A hole running into the unknown tail is part of it.
        if let (Some(t), Some(last)) = (tail, ranges.last())
            && last.end >= t
        {
            tail = Some(last.start.min(t));
            ranges.pop();
        }
        (ranges, tail)
    }
}
