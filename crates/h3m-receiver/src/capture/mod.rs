//! Reading captured UDP datagrams from a file (the receiver's offline mode,
//! `h3m-recv --input CAPTURE`).
//!
//! Three formats are understood, told apart by content, never by file name:
//!
//! * **classic libpcap**, in either byte order, with microsecond
//!   (`a1b2c3d4`) or nanosecond (`a1b23c4d`) timestamps.
//! * **pcapng** (what Wireshark saves by default), read with the
//!   `pcap-parser` crate: Enhanced and Simple Packet Blocks, any number of
//!   sections and interfaces, each interface with its own link type and
//!   timestamp resolution (`if_tsresol`) and offset (`if_tsoffset`).
//! * **`.datagrams`**: a plain sequence of records, each a
//!   4-byte big-endian length followed by exactly that many bytes (one UDP
//!   payload per record), with no file header.
//!
//! Supported link types: 1 Ethernet (802.1Q / 802.1ad / QinQ VLAN
//! tags are skipped), 101, 12 and 14 raw IP (version taken from the first
//! nibble), 228 raw IPv4, 229 raw IPv6, 113 Linux cooked (SLL), 276 Linux
//! cooked v2 (SLL2), 0 BSD null/loopback (4-byte family in the capturing
//! host's byte order) and 108 OpenBSD loopback (family in network byte
//! order). IPv4 and IPv6 are decoded by the IP layer ([`h3m_net::ip`]): IPv6
//! extension headers are walked, and IP fragments (IPv4 MF/offset and the IPv6
//! Fragment header) are reassembled with bounded memory
//! ([`h3m_net::ip::reassembly`]). Only UDP is kept; everything else is counted
//! in [`CaptureStats`] and skipped.
//!
//! Nothing in this module panics on any input: every position derived from
//! the input is checked before use and no allocation is sized by an unchecked
//! length field. IPv4 header checksums and UDP checksums are deliberately not
//! verified (captures taken on the sending host often carry offloaded,
//! not-yet-computed checksums), but header lengths and length fields are
//! checked, and inconsistent packets are counted as `malformed` and skipped.
//!
//! [`read_capture`] reads a whole capture into memory; [`DatagramReader`] is
//! the iterator it is built on. [`CaptureReader`] reads a capture file (or
//! any [`std::io::Read`]) a piece at a time, in memory bounded by the largest
//! record rather than the file: what the receiver's offline mode uses.

mod datagrams;
mod decode;
mod link;
mod pcap;
mod pcapng;
mod stream;
mod window;

#[cfg(test)]
mod tests;

use std::iter::FusedIterator;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use h3m_net::ip::reassembly::{
    DEFAULT_MAX_PENDING_FRAGMENT_BYTES, DEFAULT_MAX_PENDING_REASSEMBLIES, ReassemblyLimits,
};

use decode::Decoder;
use link::Link;
use window::{Span, Window};

pub use stream::{CaptureReader, DEFAULT_CHUNK_LEN};

/// The largest UDP payload accepted in a `.datagrams` record, and the largest
/// IP payload a reassembly may produce.
pub const MAX_DATAGRAM_LEN: u32 = h3m_net::ip::reassembly::MAX_PAYLOAD_LEN as u32;

/// One UDP datagram read from a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Capture time since the Unix epoch (for a reassembled datagram: the
    /// time of the fragment that completed it); `None` for `.datagrams` files
    /// and pcapng Simple Packet Blocks.
    pub timestamp: Option<Duration>,
    /// IP source address and UDP source port; `None` for `.datagrams` files.
    pub source: Option<SocketAddr>,
    /// IP destination address (usually the multicast group) and UDP
    /// destination port; `None` for `.datagrams` files.
    pub destination: Option<SocketAddr>,
    /// The UDP payload.
    pub payload: Vec<u8>,
}

/// The detected format of a capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Classic libpcap.
    Pcap {
        /// The link type of the file header (with the FCS bits, 26..=31,
        /// masked off).
        link_type: u32,
        /// Whether timestamps have nanosecond (rather than microsecond)
        /// resolution.
        nanosecond: bool,
    },
    /// pcapng (link types and timestamp resolutions are per interface).
    PcapNg,
    /// A sequence of 4-byte big-endian length-prefixed UDP payloads.
    Datagrams,
}

/// What to take from a capture.
#[derive(Debug, Default, Clone)]
pub struct ReadOptions {
    /// Keep only UDP datagrams with this destination port (others are counted
    /// in [`CaptureStats::skipped_port`]). `None` keeps every UDP datagram.
    /// `.datagrams` files carry no ports, so the filter does not apply to
    /// them.
    pub port: Option<u16>,
    /// With `port`: also keep datagrams to this port (the session's FEC
    /// repair port).
    pub repair_port: Option<u16>,
}

/// Counters describing what a capture contained (reported as the `capture`
/// object of the JSON summary).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CaptureStats {
    /// Complete records read (pcap records, pcapng packet blocks, or
    /// `.datagrams` records).
    pub records: u64,
    /// UDP datagrams delivered (after reassembly and the port filter).
    pub udp_datagrams: u64,
    /// Records skipped because they were not UDP over IPv4/IPv6 (other link
    /// or network protocols, TCP, ICMP, pcapng interfaces of an unsupported
    /// link type, ...).
    pub skipped_non_udp: u64,
    /// UDP datagrams skipped by the port filter.
    pub skipped_port: u64,
    /// Records (or reassembled datagrams) skipped because a header was cut
    /// short or a length field was inconsistent.
    pub malformed: u64,
    /// Records skipped because they were captured truncated (caplen < len).
    pub truncated_records: u64,
    /// Whether the file ended inside a record (reading stopped there).
    pub truncated_tail: bool,
    /// Well-formed IP fragments of UDP-carrying packets taken into
    /// reassembly.
    pub fragments: u64,
    /// Datagrams completed by reassembly.
    pub reassembled: u64,
    /// Fragments discarded: exact duplicates, fragments of reassemblies
    /// abandoned because of overlapping or inconsistent fragments, evicted by
    /// the memory bounds, or still incomplete at the end of the capture.
    pub fragments_dropped: u64,
}

/// A whole capture read into memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    /// The detected format.
    pub format: Format,
    /// The UDP datagrams, in capture order (a reassembled datagram sits where
    /// its last fragment was captured).
    pub datagrams: Vec<Datagram>,
    /// What the capture contained.
    pub stats: CaptureStats,
}

/// Why a capture could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The file could not be read.
    #[error("cannot read capture {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is empty.
    #[error("capture is empty")]
    Empty,
    /// The pcapng structure is broken (a block that does not parse, an
    /// unknown byte order, a packet of an undefined interface, an unusable
    /// timestamp resolution, ...).
    #[error("malformed pcapng at offset {offset}: {reason}")]
    BadPcapNg {
        /// Byte offset of the offending block.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The file is neither pcap, pcapng nor a `.datagrams` file (its first
    /// record length would exceed 65535).
    #[error("unknown capture format (first bytes {first_bytes:02x?}): neither pcap, pcapng nor .datagrams")]
    UnknownFormat {
        /// The first four bytes of the file.
        first_bytes: [u8; 4],
    },
    /// The pcap link type is not supported.
    #[error("unsupported pcap link type {0}")]
    UnsupportedLinkType(u32),
    /// The pcap file header is unusable.
    #[error("bad pcap header: {0}")]
    BadHeader(String),
    /// A `.datagrams` file ends inside the record starting at `offset`.
    #[error(".datagrams file ends inside the record at offset {offset}")]
    Truncated {
        /// Byte offset of the incomplete record (its length field).
        offset: u64,
    },
    /// A `.datagrams` record is longer than 65535 bytes.
    #[error(".datagrams record at offset {offset} is {len} bytes long (at most 65535)")]
    DatagramTooLong {
        /// Byte offset of the record (its length field).
        offset: u64,
        /// The record's length field.
        len: u32,
    },
}

/// Reads a capture (pcap, pcapng or `.datagrams`, detected by content) held
/// in memory.
///
/// Errors are fatal problems of the file as a whole; problems of single
/// packets are counted in [`Capture::stats`] and skipped.
pub fn read_capture(bytes: &[u8], opts: &ReadOptions) -> Result<Capture, CaptureError> {
    let mut reader = DatagramReader::new(bytes, opts)?;
    let mut datagrams = Vec::new();
    for datagram in reader.by_ref() {
        datagrams.push(datagram?);
    }
    Ok(Capture { format: reader.format(), datagrams, stats: reader.into_stats() })
}

/// Reads a capture file (pcap, pcapng or `.datagrams`, detected by content).
///
/// I/O errors are reported as [`CaptureError::Io`] naming `path`.
pub fn read_capture_file(path: &Path, opts: &ReadOptions) -> Result<Capture, CaptureError> {
    let bytes = std::fs::read(path).map_err(|source| CaptureError::Io { path: path.to_path_buf(), source })?;
    read_capture(&bytes, opts)
}

/// One step through a capture file.
enum Record<'a> {
    /// A captured link-layer frame (pcap, pcapng).
    Frame {
        /// Its link type.
        link: Link,
        /// Its capture time, if the record has one.
        timestamp: Option<Duration>,
        /// The frame.
        data: &'a [u8],
    },
    /// A UDP payload as such (`.datagrams`).
    Udp(Datagram),
    /// Nothing to decode (already counted where it needs to be).
    Skip,
    /// The window ends inside the next record and the file goes on: read more.
    More,
    /// The end of the file (a cut-off last record is flagged in the stats).
    End,
}

/// At `at`, where a record would start: [`Record::End`] at the end of the
/// file, [`Record::More`] when the window does not say yet; `None` when bytes
/// follow (the record is there to read).
fn record_start<'a>(w: Window<'a>, at: usize) -> Option<Record<'a>> {
    match w.is_end(at) {
        Some(true) => Some(Record::End),
        Some(false) => None,
        None => Some(Record::More),
    }
}

/// Where the records come from.
#[derive(Debug)]
enum Source {
    Pcap(pcap::Reader),
    PcapNg(pcapng::Reader),
    Datagrams(datagrams::Reader),
}

impl Source {
    /// The file offset of the next record: the bytes before it are done with.
    fn pos(&self) -> usize {
        match self {
            Source::Pcap(r) => r.pos(),
            Source::PcapNg(r) => r.pos(),
            Source::Datagrams(r) => r.pos(),
        }
    }

    fn next<'a>(&mut self, w: Window<'a>, stats: &mut CaptureStats) -> Result<Record<'a>, CaptureError> {
        match self {
            Source::Pcap(r) => Ok(r.next(w, stats)),
            Source::PcapNg(r) => r.next(w, stats),
            Source::Datagrams(r) => r.next(w, stats),
        }
    }
}

/// What [`Parser::step`] found.
enum Step {
    /// The next datagram, or the error that ends the capture.
    Item(Result<Datagram, CaptureError>),
    /// The window ends inside the next record: read more of the file.
    More,
    /// The end of the capture (or of the iteration, after an error).
    Done,
}

/// The format-independent state of a capture being read: the format's
/// reader, the IP decoder with its reassembly, the counters.
#[derive(Debug)]
struct Parser {
    format: Format,
    source: Source,
    stats: CaptureStats,
    decoder: Decoder,
    done: bool,
}

impl Parser {
    /// Detects the format from the start of the file; `None`: the window does
    /// not hold enough of it yet.
    fn detect(w: Window<'_>, opts: &ReadOptions, limits: ReassemblyLimits) -> Result<Option<Parser>, CaptureError> {
        Ok(detect(w)?.map(|(format, source)| Parser {
            format,
            source,
            stats: CaptureStats::default(),
            decoder: Decoder::new(opts.port, opts.repair_port, limits),
            done: false,
        }))
    }

    fn step(&mut self, w: Window<'_>) -> Step {
        if self.done {
            return Step::Done;
        }
        loop {
            match self.source.next(w, &mut self.stats) {
                Ok(Record::Frame { link, timestamp, data }) => {
                    if let Some(d) = self.decoder.frame(link, timestamp, data, &mut self.stats) {
                        return Step::Item(Ok(d));
                    }
                }
                Ok(Record::Udp(d)) => return Step::Item(Ok(d)),
                Ok(Record::Skip) => {}
                Ok(Record::More) => return Step::More,
                Ok(Record::End) => {
                    self.done = true;
                    self.decoder.finish(&mut self.stats);
                    return Step::Done;
                }
                Err(e) => {
                    self.done = true;
                    return Step::Item(Err(e));
                }
            }
        }
    }
}

/// Streaming reader: an iterator over the UDP datagrams of a capture held in
/// memory.
///
/// Items are `Ok(datagram)` until the end of the capture or the first error;
/// after an error the iterator yields nothing more. [`stats`](Self::stats)
/// are final once the iterator has returned `None` (fragments still pending
/// at the end are counted as dropped then). [`CaptureReader`] does the same
/// for a file read a piece at a time.
#[derive(Debug)]
pub struct DatagramReader<'a> {
    bytes: &'a [u8],
    parser: Parser,
}

impl<'a> DatagramReader<'a> {
    /// Detects the format of `bytes` and checks its header, with the default
    /// [`ReassemblyLimits`].
    pub fn new(bytes: &'a [u8], opts: &ReadOptions) -> Result<Self, CaptureError> {
        Self::with_limits(bytes, opts, ReassemblyLimits::default())
    }

    /// Like [`new`](Self::new), with explicit reassembly memory bounds.
    pub fn with_limits(bytes: &'a [u8], opts: &ReadOptions, limits: ReassemblyLimits) -> Result<Self, CaptureError> {
        // A whole file never asks for more.
        let parser = Parser::detect(Window::whole(bytes), opts, limits)?.ok_or(CaptureError::Empty)?;
        Ok(Self { bytes, parser })
    }

    /// The detected format.
    pub fn format(&self) -> Format {
        self.parser.format
    }

    /// The counters so far.
    pub fn stats(&self) -> &CaptureStats {
        &self.parser.stats
    }

    /// The counters, consuming the reader.
    pub fn into_stats(self) -> CaptureStats {
        self.parser.stats
    }
}

impl Iterator for DatagramReader<'_> {
    type Item = Result<Datagram, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.parser.step(Window::whole(self.bytes)) {
            Step::Item(item) => Some(item),
            // A whole file never asks for more.
            Step::More | Step::Done => None,
        }
    }
}

impl FusedIterator for DatagramReader<'_> {}

/// Detects the format; `None`: the window does not hold enough of the file.
fn detect(w: Window<'_>) -> Result<Option<(Format, Source)>, CaptureError> {
    match w.is_end(0) {
        Some(true) => return Err(CaptureError::Empty),
        Some(false) => {}
        None => return Ok(None),
    }
    let magic = match w.array::<4>(0) {
        Ok(magic) => magic,
        Err(Span::More) => return Ok(None),
        // Too short for any magic: a .datagrams file cut inside its first
        // length field; reported when the record is read.
        Err(_) => return Ok(Some((Format::Datagrams, Source::Datagrams(datagrams::Reader::default())))),
    };
    if magic == pcapng::MAGIC {
        return Ok(pcapng::Reader::new(w)?.map(|r| (Format::PcapNg, Source::PcapNg(r))));
    }
    if let Some(found) = pcap::Reader::detect(magic, w) {
        return Ok(found?.map(|(format, reader)| (format, Source::Pcap(reader))));
    }
    if u32::from_be_bytes(magic) > MAX_DATAGRAM_LEN {
        return Err(CaptureError::UnknownFormat { first_bytes: magic });
    }
    Ok(Some((Format::Datagrams, Source::Datagrams(datagrams::Reader::default()))))
}

/// `N` bytes at `at`, if present.
fn read_array<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}
