//! The session's bookkeeping: what became of each push, the resources being
//! assembled from copies, the exact tallies, and the limits on all of them.

use super::*;

/// What became of a push.
#[derive(Debug)]
pub(super) enum Fate {
    /// Waiting for its response headers to pick its resource.
    Pending,
    /// Its body goes to this resource.
    Into(u64),
    /// A copy of a resource already written intact: ignored.
    Repeat,
    /// Its resource was written while it was still arriving: the rest is ignored.
    Done,
    /// Not written: refused `:path` (`refused: ...`) or failed (reason, I/O or not).
    Dead { status: ResourceStatus, reason: String },
}

#[derive(Debug)]
pub(super) struct PushState {
    /// The request headers (kept only when signatures are checked).
    pub(super) request: Vec<HeaderField>,
    /// The `:path` as sent.
    pub(super) raw_path: Option<Vec<u8>>,
    /// The sanitised relative path.
    pub(super) rel: Option<PathBuf>,
    /// Body bytes received.
    pub(super) received: u64,
    /// The push IDs of the resource's copies its promise listed (`h3m-copies`).
    pub(super) copies: Vec<u64>,
    /// The promise's `:authority`.
    pub(super) authority: Option<Vec<u8>>,
    pub(super) fate: Fate,
}

/// At most this many copy IDs are taken from one promise.
pub(super) const MAX_COPIES: usize = 64;

/// The push IDs an `h3m-copies` request header lists.
pub(super) fn copies_of(request: &[HeaderField]) -> Vec<u64> {
    field(request, h3m_proto::sender::COPIES_HEADER.as_bytes())
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).take(MAX_COPIES).collect())
        .unwrap_or_default()
}

/// A resource being assembled from one or more pushes.
#[derive(Debug)]
pub(super) struct Resource {
    pub(super) raw_path: Option<Vec<u8>>,
    pub(super) rel: PathBuf,
    /// The SHA-256 its response headers announce (its identity with the path).
    pub(super) sha256: Option<[u8; 32]>,
    /// The SHA-256 a copy's trailers announce (a live body's), when the
    /// headers had none: checked at commit like a header digest.
    pub(super) trailer_sha256: Option<[u8; 32]>,
    /// The body length, from `content-length` or a complete push.
    pub(super) length: Option<u64>,
    /// Body bytes written so far.
    pub(super) have: RangeSet,
    /// Pushes still delivering into it.
    pub(super) active: usize,
    /// Pushes that contributed.
    pub(super) copies: usize,
    /// Body bytes written from datagrams FEC rebuilt.
    pub(super) fec_bytes: u64,
    /// Body bytes written from the repair origin.
    pub(super) repair_bytes: u64,
    /// Whether a unicast repair was tried (it is held for one only once).
    pub(super) repair_tried: bool,
    /// The `:authority` of its first promise (where `--repair auto` asks).
    pub(super) authority: Option<Vec<u8>>,
    /// The last finished push's summary.
    pub(super) last: Option<PushSummary>,
    pub(super) first_push: u64,
    /// When a copy last delivered into it (see [`Session::clock_tick`]).
    pub(super) touched: u64,
    /// Push IDs of its copies, as the promises listed them.
    pub(super) copy_ids: Vec<u64>,
    /// The header lists of its copies, by push ID (kept only when signatures
    /// are checked, at most [`MAX_COPY_HEADERS`]).
    pub(super) copy_headers: Vec<CopyHeaders>,
}

impl Resource {
    /// The digest its body must match, as the session announced it (headers,
    /// else trailers), if it did.
    pub(super) fn digest(&self) -> Option<[u8; 32]> {
        self.sha256.or(self.trailer_sha256)
    }
}

/// What a copy of a resource said about it, for the signature check.
#[derive(Debug)]
pub(super) struct CopyHeaders {
    pub(super) push_id: u64,
    pub(super) request: Vec<HeaderField>,
    pub(super) response: Vec<HeaderField>,
    pub(super) trailers: Vec<HeaderField>,
}

/// At most this many copies' header lists are kept per resource.
pub(super) const MAX_COPY_HEADERS: usize = 16;

/// At most this many records of each kind (resources, errors, unpromised
/// pushes) are kept for the [`Outcome`]; the summary counts them all.
pub const MAX_RETAINED_RECORDS: usize = 10_000;

/// At most this many resources are assembled at once (each holds an open
/// partial file); beyond it the one untouched longest, with no push
/// delivering into it, is reported incomplete (`evicted`) to make room.
pub const MAX_ASSEMBLING: usize = 512;

/// At most this many incomplete resources are held at the end of a session
/// for unicast repair (their temporary files closed meanwhile); beyond it
/// they are reported incomplete at once.
pub const MAX_HELD_FOR_REPAIR: usize = 4096;

/// At most this many judgements are deferred to the end of the session
/// (copies without response headers, unpromised streams); beyond it they are
/// reported at once.
pub(super) const MAX_DEFERRED: usize = 4096;

/// At most this many distinct names are remembered to count incomplete
/// resources once each (and written paths to recognise repeats).
pub(super) const MAX_NAMES: usize = 65_536;

/// Exact counts of what was reported, whatever was retained.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) complete: u64,
    /// Complete resources assembled from more than one copy.
    pub(super) merged: u64,
    /// Complete resources with bytes from the repair origin, and those bytes.
    pub(super) repaired: u64,
    pub(super) repaired_bytes: u64,
    pub(super) incomplete: u64,
    pub(super) refused: u64,
    pub(super) failed: u64,
    pub(super) bytes_written: u64,
    pub(super) settled: u64,
    pub(super) unpromised: u64,
    pub(super) lost: u64,
    pub(super) headless: u64,
    pub(super) io_errors: u64,
    /// Errors of the input (the network, the capture file): exit 3.
    pub(super) input_errors: u64,
    pub(super) errors: u64,
    /// Names reported incomplete (counted once each).
    pub(super) incomplete_names: std::collections::HashSet<Vec<u8>>,
}

pub(super) fn field<'a>(fields: &'a [HeaderField], name: &[u8]) -> Option<&'a [u8]> {
    fields.iter().find(|f| f.name == name).map(|f| f.value.as_slice())
}

pub(super) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The relative path a record's name stands for.
pub(super) fn name_path(name: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(name))
}

/// Writes the bytes of `data` (at body offset `offset`) that `have` lacks
/// into resource `id` of `writer`; returns how many were written.
pub(super) fn write_missing<S: ResourceSink>(
    writer: &mut S,
    id: u64,
    have: &RangeSet,
    offset: u64,
    data: &[u8],
) -> Result<u64, WriteError> {
    let end = offset + data.len() as u64;
    let mut written = 0;
    for gap in have.gaps_within(offset..end) {
        let part = &data[(gap.start - offset) as usize..(gap.end - offset) as usize];
        writer.write(id, gap.start, part)?;
        written += part.len() as u64;
    }
    Ok(written)
}

/// Adds `range` to `have`, keeping `ranges_held` (the session's count of
/// disjoint ranges across resources) in step.
pub(super) fn note_held(have: &mut RangeSet, range: std::ops::Range<u64>, ranges_held: &mut usize) {
    let before = have.range_count();
    have.insert(range);
    *ranges_held = (*ranges_held + have.range_count()).saturating_sub(before);
}
