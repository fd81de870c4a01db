//! Reading captured UDP datagrams from a file (the receiver's offline mode,
//! `h3m-recv --input CAPTURE`).
//!
//! Two formats are understood, told apart by content, never by file name:
//!
//! * **classic libpcap** (not pcapng, which is reported as
//!   [`CaptureError::PcapNg`]), in either byte order, with microsecond
//!   (`a1b2c3d4`) or nanosecond (`a1b23c4d`) timestamps. Supported link types:
//!   1 Ethernet (802.1Q / 802.1ad / QinQ VLAN tags are skipped), 101, 12 and 14
//!   raw IP (version taken from the first nibble), 228 raw IPv4, 229 raw IPv6,
//!   113 Linux cooked (SLL), 276 Linux cooked v2 (SLL2), 0 BSD null/loopback
//!   (4-byte family in the capturing host's byte order) and 108 OpenBSD
//!   loopback (family in network byte order). IPv4 and IPv6 are decoded, IPv6
//!   extension headers are walked, and IP fragments (IPv4 MF/offset and the
//!   IPv6 Fragment header) are reassembled with bounded memory. Only UDP is
//!   kept; everything else is counted in [`CaptureStats`] and skipped.
//! * **`.datagrams`**: a plain sequence of records, each a 4-byte big-endian
//!   length followed by exactly that many bytes (one UDP payload per record),
//!   with no file header.
//!
//! Nothing in this module panics on any input: every position derived from
//! the input is checked before use and no allocation is sized by an unchecked
//! length field. IPv4 header checksums and UDP checksums are deliberately not
//! verified (captures taken on the sending host often carry offloaded,
//! not-yet-computed checksums), but header lengths and length fields are
//! checked, and inconsistent packets are counted as `malformed` and skipped.
//!
//! [`read_capture`] reads a whole capture into memory; [`DatagramReader`] is
//! the streaming form it is built on.

use std::collections::{BTreeMap, HashMap};
use std::iter::FusedIterator;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The largest UDP payload accepted in a `.datagrams` record, and the largest
/// IP payload a reassembly may produce.
pub const MAX_DATAGRAM_LEN: u32 = 65_535;

/// Default bound on the number of IP reassemblies pending at once.
pub const DEFAULT_MAX_PENDING_REASSEMBLIES: usize = 64;

/// Default bound on the fragment bytes held by pending IP reassemblies.
pub const DEFAULT_MAX_PENDING_FRAGMENT_BYTES: usize = 256 * 1024;

/// Size of the classic pcap file header.
const PCAP_HEADER_LEN: usize = 24;
/// Size of a classic pcap record header.
const PCAP_RECORD_HEADER_LEN: usize = 16;
/// The pcapng Section Header Block type (the same in both byte orders).
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
/// IP protocol number of UDP.
const IPPROTO_UDP: u8 = 17;

/// One UDP datagram read from a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Capture time since the Unix epoch (for a reassembled datagram: the
    /// time of the fragment that completed it); `None` for `.datagrams` files.
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
}

/// Memory bounds of IP fragment reassembly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// At most this many reassemblies are pending at once; starting one more
    /// evicts the oldest.
    pub max_pending: usize,
    /// At most this many fragment payload bytes are held by pending
    /// reassemblies; the oldest are evicted to make room.
    pub max_pending_bytes: usize,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        Self { max_pending: DEFAULT_MAX_PENDING_REASSEMBLIES, max_pending_bytes: DEFAULT_MAX_PENDING_FRAGMENT_BYTES }
    }
}

/// Counters describing what a capture contained (reported as the `capture`
/// object of the JSON summary).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CaptureStats {
    /// Complete records read (pcap records, or `.datagrams` records).
    pub records: u64,
    /// UDP datagrams delivered (after reassembly and the port filter).
    pub udp_datagrams: u64,
    /// Records skipped because they were not UDP over IPv4/IPv6 (other link
    /// or network protocols, TCP, ICMP, ...).
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
    /// The file is pcapng, which is not supported.
    #[error("capture is pcapng, which is not supported; convert it with `editcap -F pcap IN OUT`")]
    PcapNg,
    /// The file is neither pcap nor a `.datagrams` file (its first record
    /// length would exceed 65535).
    #[error("unknown capture format (first bytes {first_bytes:02x?}): neither classic pcap nor .datagrams")]
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

/// Reads a capture (pcap or `.datagrams`, detected by content) held in
/// memory.
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

/// Reads a capture file (pcap or `.datagrams`, detected by content).
///
/// I/O errors are reported as [`CaptureError::Io`] naming `path`.
pub fn read_capture_file(path: &Path, opts: &ReadOptions) -> Result<Capture, CaptureError> {
    let bytes = std::fs::read(path).map_err(|source| CaptureError::Io { path: path.to_path_buf(), source })?;
    read_capture(&bytes, opts)
}

/// Streaming reader: an iterator over the UDP datagrams of a capture held in
/// memory.
///
/// Items are `Ok(datagram)` until the end of the capture or the first error;
/// after an error the iterator yields nothing more. [`stats`](Self::stats)
/// are final once the iterator has returned `None` (fragments still pending
/// at the end are counted as dropped then).
#[derive(Debug)]
pub struct DatagramReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    format: Format,
    kind: Kind,
    port: Option<u16>,
    stats: CaptureStats,
    reassembler: Reassembler,
    done: bool,
}

impl<'a> DatagramReader<'a> {
    /// Detects the format of `bytes` and checks its header, with the default
    /// [`ReassemblyLimits`].
    pub fn new(bytes: &'a [u8], opts: &ReadOptions) -> Result<Self, CaptureError> {
        Self::with_limits(bytes, opts, ReassemblyLimits::default())
    }

    /// Like [`new`](Self::new), with explicit reassembly memory bounds.
    pub fn with_limits(bytes: &'a [u8], opts: &ReadOptions, limits: ReassemblyLimits) -> Result<Self, CaptureError> {
        let (format, kind, pos) = detect(bytes)?;
        Ok(Self {
            bytes,
            pos,
            format,
            kind,
            port: opts.port,
            stats: CaptureStats::default(),
            reassembler: Reassembler::new(limits),
            done: false,
        })
    }

    /// The detected format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The counters so far.
    pub fn stats(&self) -> &CaptureStats {
        &self.stats
    }

    /// The counters, consuming the reader.
    pub fn into_stats(self) -> CaptureStats {
        self.stats
    }

    fn finish(&mut self) {
        self.done = true;
        self.reassembler.finish(&mut self.stats);
    }

    fn next_datagrams_record(&mut self) -> Option<Result<Datagram, CaptureError>> {
        let start = self.pos;
        if start >= self.bytes.len() {
            self.done = true;
            return None;
        }
        let offset = start as u64;
        let Some(len) = read_array::<4>(self.bytes, start).map(u32::from_be_bytes) else {
            self.done = true;
            return Some(Err(CaptureError::Truncated { offset }));
        };
        if len > MAX_DATAGRAM_LEN {
            self.done = true;
            return Some(Err(CaptureError::DatagramTooLong { offset, len }));
        }
        let body = start
            .checked_add(4)
            .and_then(|b| Some((b, b.checked_add(len as usize)?)))
            .and_then(|(b, e)| self.bytes.get(b..e));
        let Some(body) = body else {
            self.done = true;
            return Some(Err(CaptureError::Truncated { offset }));
        };
        self.pos = start + 4 + body.len();
        self.stats.records += 1;
        self.stats.udp_datagrams += 1;
        Some(Ok(Datagram { timestamp: None, source: None, destination: None, payload: body.to_vec() }))
    }

    fn next_pcap_record(&mut self, pcap: Pcap) -> Option<Datagram> {
        loop {
            let start = self.pos;
            if start >= self.bytes.len() {
                self.finish();
                return None;
            }
            let Some(header) = read_array::<PCAP_RECORD_HEADER_LEN>(self.bytes, start) else {
                self.stats.truncated_tail = true;
                self.finish();
                return None;
            };
            let field = |i: usize| {
                let mut b = [0u8; 4];
                b.copy_from_slice(&header[i * 4..i * 4 + 4]);
                pcap.endian.u32(b)
            };
            let (ts_sec, ts_frac, caplen, origlen) = (field(0), field(1), field(2), field(3));
            let data_start = start + PCAP_RECORD_HEADER_LEN;
            let data = data_start.checked_add(caplen as usize).and_then(|end| self.bytes.get(data_start..end));
            let Some(data) = data else {
                self.stats.truncated_tail = true;
                self.finish();
                return None;
            };
            self.pos = data_start + data.len();
            self.stats.records += 1;
            if caplen < origlen {
                self.stats.truncated_records += 1;
                continue;
            }
            let frac_nanos = if pcap.nanosecond { u64::from(ts_frac) } else { u64::from(ts_frac) * 1_000 };
            let timestamp = Duration::from_secs(u64::from(ts_sec)) + Duration::from_nanos(frac_nanos);
            if let Some(datagram) = self.packet(pcap.link, timestamp, data) {
                return Some(datagram);
            }
        }
    }

    /// Decodes one link-layer frame.
    fn packet(&mut self, link: Link, timestamp: Duration, frame: &[u8]) -> Option<Datagram> {
        match link_payload(link, frame) {
            L3::Ipv4(packet) => self.ipv4(timestamp, packet),
            L3::Ipv6(packet) => self.ipv6(timestamp, packet),
            L3::NotIp => {
                self.stats.skipped_non_udp += 1;
                None
            }
            L3::Malformed => self.malformed(),
        }
    }

    fn malformed(&mut self) -> Option<Datagram> {
        self.stats.malformed += 1;
        None
    }

    fn non_udp(&mut self) -> Option<Datagram> {
        self.stats.skipped_non_udp += 1;
        None
    }

    fn ipv4(&mut self, timestamp: Duration, packet: &[u8]) -> Option<Datagram> {
        let Some(header) = read_array::<20>(packet, 0) else {
            return self.malformed();
        };
        let version = header[0] >> 4;
        let header_len = usize::from(header[0] & 0x0f) * 4;
        let total_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if version != 4 || header_len < 20 || total_len < header_len {
            return self.malformed();
        }
        // Link-layer padding and trailers (Ethernet padding, FCS) are cut off
        // by the total length; a packet shorter than its total length is not.
        let Some(payload) = packet.get(header_len..total_len) else {
            return self.malformed();
        };
        let id = u16::from_be_bytes([header[4], header[5]]);
        let flags_offset = u16::from_be_bytes([header[6], header[7]]);
        let more_fragments = flags_offset & 0x2000 != 0;
        let offset = usize::from(flags_offset & 0x1fff) * 8;
        let protocol = header[9];
        let src = IpAddr::V4(Ipv4Addr::new(header[12], header[13], header[14], header[15]));
        let dst = IpAddr::V4(Ipv4Addr::new(header[16], header[17], header[18], header[19]));
        if protocol != IPPROTO_UDP {
            return self.non_udp();
        }
        if !more_fragments && offset == 0 {
            return self.udp(timestamp, src, dst, payload);
        }
        let key = FragKey { src, dst, id: u32::from(id), protocol };
        let whole = self.reassembler.insert(key, offset, more_fragments, payload, &mut self.stats)?;
        self.udp(timestamp, src, dst, &whole)
    }

    fn ipv6(&mut self, timestamp: Duration, packet: &[u8]) -> Option<Datagram> {
        let Some(header) = read_array::<40>(packet, 0) else {
            return self.malformed();
        };
        if header[0] >> 4 != 6 {
            return self.malformed();
        }
        let payload_len = usize::from(u16::from_be_bytes([header[4], header[5]]));
        let Some(payload) = packet.get(40..40 + payload_len) else {
            return self.malformed();
        };
        let mut src = [0u8; 16];
        src.copy_from_slice(&header[8..24]);
        let mut dst = [0u8; 16];
        dst.copy_from_slice(&header[24..40]);
        let src = IpAddr::V6(Ipv6Addr::from(src));
        let dst = IpAddr::V6(Ipv6Addr::from(dst));
        self.ipv6_chain(timestamp, src, dst, header[6], payload, true)
    }

    /// Walks an IPv6 header chain starting with header type `next` at the
    /// start of `rest`.
    fn ipv6_chain(
        &mut self,
        timestamp: Duration,
        src: IpAddr,
        dst: IpAddr,
        mut next: u8,
        mut rest: &[u8],
        fragments_allowed: bool,
    ) -> Option<Datagram> {
        loop {
            match next {
                IPPROTO_UDP => return self.udp(timestamp, src, dst, rest),
                // Fragment header.
                44 => {
                    let Some(fragment) = read_array::<8>(rest, 0) else {
                        return self.malformed();
                    };
                    if !fragments_allowed {
                        // A Fragment header inside a reassembled payload.
                        return self.malformed();
                    }
                    rest = rest.get(8..).unwrap_or_default();
                    let inner = fragment[0];
                    let offset_field = u16::from_be_bytes([fragment[2], fragment[3]]);
                    let offset = usize::from(offset_field & 0xfff8);
                    let more_fragments = offset_field & 1 != 0;
                    if offset == 0 && !more_fragments {
                        // Atomic fragment (RFC 6946): not really fragmented.
                        next = inner;
                        continue;
                    }
                    if !ipv6_may_lead_to_udp(inner) {
                        return self.non_udp();
                    }
                    let key = FragKey {
                        src,
                        dst,
                        id: u32::from_be_bytes([fragment[4], fragment[5], fragment[6], fragment[7]]),
                        protocol: inner,
                    };
                    let whole = self.reassembler.insert(key, offset, more_fragments, rest, &mut self.stats)?;
                    return self.ipv6_chain(timestamp, src, dst, inner, &whole, false);
                }
                // Hop-by-hop, Routing, Destination Options, Mobility, HIP,
                // Shim6: length in 8-octet units, not counting the first 8.
                0 | 43 | 60 | 135 | 139 | 140 => {
                    let Some([inner, len]) = read_array::<2>(rest, 0) else {
                        return self.malformed();
                    };
                    let Some(after) = rest.get((usize::from(len) + 1) * 8..) else {
                        return self.malformed();
                    };
                    next = inner;
                    rest = after;
                }
                // Authentication Header: length in 4-octet units, minus 2.
                51 => {
                    let Some([inner, len]) = read_array::<2>(rest, 0) else {
                        return self.malformed();
                    };
                    let Some(after) = rest.get((usize::from(len) + 2) * 4..) else {
                        return self.malformed();
                    };
                    next = inner;
                    rest = after;
                }
                _ => return self.non_udp(),
            }
        }
    }

    fn udp(&mut self, timestamp: Duration, src: IpAddr, dst: IpAddr, segment: &[u8]) -> Option<Datagram> {
        let Some(header) = read_array::<8>(segment, 0) else {
            return self.malformed();
        };
        let src_port = u16::from_be_bytes([header[0], header[1]]);
        let dst_port = u16::from_be_bytes([header[2], header[3]]);
        let udp_len = usize::from(u16::from_be_bytes([header[4], header[5]]));
        // A UDP length of 0 (IPv6 jumbograms) is not supported.
        let Some(payload) = segment.get(8..udp_len) else {
            return self.malformed();
        };
        if self.port.is_some_and(|port| port != dst_port) {
            self.stats.skipped_port += 1;
            return None;
        }
        self.stats.udp_datagrams += 1;
        Some(Datagram {
            timestamp: Some(timestamp),
            source: Some(SocketAddr::new(src, src_port)),
            destination: Some(SocketAddr::new(dst, dst_port)),
            payload: payload.to_vec(),
        })
    }
}

impl Iterator for DatagramReader<'_> {
    type Item = Result<Datagram, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.kind {
            Kind::Datagrams => self.next_datagrams_record(),
            Kind::Pcap(pcap) => self.next_pcap_record(pcap).map(Ok),
        }
    }
}

impl FusedIterator for DatagramReader<'_> {}

/// Whether an IPv6 next-header value inside a fragment can still lead to a
/// UDP header (UDP itself or an extension header we walk).
fn ipv6_may_lead_to_udp(next: u8) -> bool {
    matches!(next, IPPROTO_UDP | 0 | 43 | 51 | 60 | 135 | 139 | 140)
}

/// `N` bytes at `at`, if present.
fn read_array<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    fn u32(self, b: [u8; 4]) -> u32 {
        match self {
            Endian::Little => u32::from_le_bytes(b),
            Endian::Big => u32::from_be_bytes(b),
        }
    }

    fn u16(self, b: [u8; 2]) -> u16 {
        match self {
            Endian::Little => u16::from_le_bytes(b),
            Endian::Big => u16::from_be_bytes(b),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Ethernet,
    /// Raw IP, version from the first nibble.
    Raw,
    Raw4,
    Raw6,
    Sll,
    Sll2,
    /// BSD null: 4-byte address family in the capturing host's byte order.
    Null,
    /// OpenBSD loopback: 4-byte address family in network byte order.
    Loop,
}

impl Link {
    fn from_link_type(link_type: u32) -> Option<Link> {
        Some(match link_type {
            1 => Link::Ethernet,
            101 | 12 | 14 => Link::Raw,
            228 => Link::Raw4,
            229 => Link::Raw6,
            113 => Link::Sll,
            276 => Link::Sll2,
            0 => Link::Null,
            108 => Link::Loop,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pcap {
    endian: Endian,
    nanosecond: bool,
    link: Link,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pcap(Pcap),
    Datagrams,
}

/// Detects the format; returns it with the offset of the first record.
fn detect(bytes: &[u8]) -> Result<(Format, Kind, usize), CaptureError> {
    if bytes.is_empty() {
        return Err(CaptureError::Empty);
    }
    let Some(magic) = read_array::<4>(bytes, 0) else {
        // Too short for any pcap magic: a .datagrams file cut inside its
        // first length field; reported when the record is read.
        return Ok((Format::Datagrams, Kind::Datagrams, 0));
    };
    let (endian, nanosecond) = match magic {
        [0xa1, 0xb2, 0xc3, 0xd4] => (Endian::Big, false),
        [0xd4, 0xc3, 0xb2, 0xa1] => (Endian::Little, false),
        [0xa1, 0xb2, 0x3c, 0x4d] => (Endian::Big, true),
        [0x4d, 0x3c, 0xb2, 0xa1] => (Endian::Little, true),
        PCAPNG_MAGIC => return Err(CaptureError::PcapNg),
        _ => {
            if u32::from_be_bytes(magic) > MAX_DATAGRAM_LEN {
                return Err(CaptureError::UnknownFormat { first_bytes: magic });
            }
            return Ok((Format::Datagrams, Kind::Datagrams, 0));
        }
    };
    let Some(header) = read_array::<PCAP_HEADER_LEN>(bytes, 0) else {
        return Err(CaptureError::BadHeader(format!(
            "file header truncated: {} of {PCAP_HEADER_LEN} bytes",
            bytes.len()
        )));
    };
    let major = endian.u16([header[4], header[5]]);
    let minor = endian.u16([header[6], header[7]]);
    if major != 2 {
        return Err(CaptureError::BadHeader(format!("unsupported pcap version {major}.{minor} (expected 2.x)")));
    }
    // Bits 26..=31 of the link type field may carry FCS information.
    let link_type = endian.u32([header[20], header[21], header[22], header[23]]) & 0x03ff_ffff;
    let Some(link) = Link::from_link_type(link_type) else {
        return Err(CaptureError::UnsupportedLinkType(link_type));
    };
    Ok((Format::Pcap { link_type, nanosecond }, Kind::Pcap(Pcap { endian, nanosecond, link }), PCAP_HEADER_LEN))
}

/// A link-layer frame's network-layer content.
enum L3<'a> {
    Ipv4(&'a [u8]),
    Ipv6(&'a [u8]),
    NotIp,
    Malformed,
}

fn link_payload(link: Link, frame: &[u8]) -> L3<'_> {
    match link {
        Link::Ethernet => match (read_array::<2>(frame, 12), frame.get(14..)) {
            (Some(ethertype), Some(rest)) => by_ethertype(u16::from_be_bytes(ethertype), rest),
            _ => L3::Malformed,
        },
        Link::Raw => match frame.first() {
            Some(b) if b >> 4 == 4 => L3::Ipv4(frame),
            Some(b) if b >> 4 == 6 => L3::Ipv6(frame),
            _ => L3::Malformed,
        },
        Link::Raw4 => L3::Ipv4(frame),
        Link::Raw6 => L3::Ipv6(frame),
        Link::Sll => match (read_array::<2>(frame, 14), frame.get(16..)) {
            (Some(protocol), Some(rest)) => by_ethertype(u16::from_be_bytes(protocol), rest),
            _ => L3::Malformed,
        },
        Link::Sll2 => match (read_array::<2>(frame, 0), frame.get(20..)) {
            (Some(protocol), Some(rest)) => by_ethertype(u16::from_be_bytes(protocol), rest),
            _ => L3::Malformed,
        },
        Link::Null | Link::Loop => {
            let (Some(family), Some(rest)) = (read_array::<4>(frame, 0), frame.get(4..)) else {
                return L3::Malformed;
            };
            let family = if link == Link::Loop {
                u32::from_be_bytes(family)
            } else {
                // Host byte order of the capturing machine, which need not be
                // the file's: families are small, so a value with high bits
                // set is the other byte order.
                let le = u32::from_le_bytes(family);
                if le > 0xffff { le.swap_bytes() } else { le }
            };
            match family {
                2 => L3::Ipv4(rest),
                // Linux, NetBSD/OpenBSD, FreeBSD, Darwin.
                10 | 24 | 28 | 30 => L3::Ipv6(rest),
                _ => L3::NotIp,
            }
        }
    }
}

/// Dispatches on an EtherType, skipping VLAN tags.
fn by_ethertype(mut ethertype: u16, mut rest: &[u8]) -> L3<'_> {
    loop {
        match ethertype {
            0x0800 => return L3::Ipv4(rest),
            0x86dd => return L3::Ipv6(rest),
            // 802.1Q, 802.1ad, legacy QinQ: 2 bytes TCI, 2 bytes EtherType.
            0x8100 | 0x88a8 | 0x9100 => {
                let (Some(inner), Some(after)) = (read_array::<2>(rest, 2), rest.get(4..)) else {
                    return L3::Malformed;
                };
                ethertype = u16::from_be_bytes(inner);
                rest = after;
            }
            _ => return L3::NotIp,
        }
    }
}

/// Identifies the fragments of one IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FragKey {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    protocol: u8,
}

/// One pending reassembly.
#[derive(Debug)]
struct Pending {
    /// Creation order, for eviction.
    seq: u64,
    /// Non-empty, non-overlapping pieces sorted by offset.
    pieces: Vec<(usize, Vec<u8>)>,
    /// Payload length, once the last fragment has been seen.
    total: Option<usize>,
    /// Sum of the pieces' lengths.
    bytes: usize,
    /// Fragments accepted so far.
    count: u64,
}

/// Bounded-memory IP fragment reassembly.
#[derive(Debug)]
struct Reassembler {
    limits: ReassemblyLimits,
    pending: HashMap<FragKey, Pending>,
    /// Creation order of the pending reassemblies.
    order: BTreeMap<u64, FragKey>,
    next_seq: u64,
    /// Sum of the pending reassemblies' bytes.
    bytes: usize,
}

impl Reassembler {
    fn new(limits: ReassemblyLimits) -> Self {
        Self { limits, pending: HashMap::new(), order: BTreeMap::new(), next_seq: 0, bytes: 0 }
    }

    fn remove(&mut self, key: &FragKey) -> Option<Pending> {
        let entry = self.pending.remove(key)?;
        self.order.remove(&entry.seq);
        self.bytes -= entry.bytes;
        Some(entry)
    }

    /// Drops a reassembly, counting its fragments (and `extra` more) as
    /// dropped.
    fn abandon(&mut self, key: &FragKey, extra: u64, stats: &mut CaptureStats) {
        let count = self.remove(key).map_or(0, |entry| entry.count);
        stats.fragments_dropped += count + extra;
    }

    /// Evicts the oldest reassembly other than `keep`; false if there is none.
    fn evict_oldest(&mut self, keep: &FragKey, stats: &mut CaptureStats) -> bool {
        let Some(key) = self.order.values().find(|&key| key != keep).copied() else {
            return false;
        };
        self.abandon(&key, 0, stats);
        true
    }

    /// Takes one fragment whose payload `data` sits at `offset` of the
    /// original payload; returns the whole payload once complete.
    fn insert(
        &mut self,
        key: FragKey,
        offset: usize,
        more: bool,
        data: &[u8],
        stats: &mut CaptureStats,
    ) -> Option<Vec<u8>> {
        let end = offset + data.len();
        if end > MAX_DATAGRAM_LEN as usize || (more && (data.is_empty() || !data.len().is_multiple_of(8))) {
            stats.malformed += 1;
            return None;
        }
        stats.fragments += 1;
        if data.len() > self.limits.max_pending_bytes {
            stats.fragments_dropped += 1;
            return None;
        }

        if let Some(entry) = self.pending.get(&key) {
            let mut consistent = match entry.total {
                Some(total) => {
                    if more {
                        end <= total
                    } else {
                        end == total
                    }
                }
                None => more || entry.pieces.last().is_none_or(|(o, d)| o + d.len() <= end),
            };
            if !more && entry.total == Some(end) && data.is_empty() {
                // A repeated empty last fragment.
                stats.fragments_dropped += 1;
                return None;
            }
            for (o, d) in &entry.pieces {
                if *o < end && offset < o + d.len() {
                    if *o == offset && d.as_slice() == data {
                        // An exact duplicate: harmless, ignore it.
                        stats.fragments_dropped += 1;
                        return None;
                    }
                    consistent = false;
                }
            }
            if !consistent {
                // Overlapping or contradicting fragments (RFC 5722): give up
                // on the whole packet.
                self.abandon(&key, 1, stats);
                return None;
            }
        } else {
            while self.pending.len() >= self.limits.max_pending {
                if !self.evict_oldest(&key, stats) {
                    // max_pending is 0.
                    stats.fragments_dropped += 1;
                    return None;
                }
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            self.order.insert(seq, key);
            self.pending.insert(key, Pending { seq, pieces: Vec::new(), total: None, bytes: 0, count: 0 });
        }

        while self.bytes + data.len() > self.limits.max_pending_bytes {
            if !self.evict_oldest(&key, stats) {
                // Only this reassembly is left and it cannot grow: give up.
                self.abandon(&key, 1, stats);
                return None;
            }
        }

        let entry = self.pending.get_mut(&key)?;
        if !more {
            entry.total = Some(end);
        }
        if !data.is_empty() {
            let at = entry.pieces.partition_point(|(o, _)| *o < offset);
            entry.pieces.insert(at, (offset, data.to_vec()));
        }
        entry.bytes += data.len();
        entry.count += 1;
        self.bytes += data.len();

        if entry.total != Some(entry.bytes) {
            return None;
        }
        // No overlaps and as many bytes as the total: the pieces tile it.
        let entry = self.remove(&key)?;
        let mut whole = Vec::with_capacity(entry.bytes);
        for (_, piece) in entry.pieces {
            whole.extend_from_slice(&piece);
        }
        stats.reassembled += 1;
        Some(whole)
    }

    /// Counts the fragments of incomplete reassemblies as dropped.
    fn finish(&mut self, stats: &mut CaptureStats) {
        for entry in self.pending.values() {
            stats.fragments_dropped += entry.count;
        }
        self.pending.clear();
        self.order.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // ---------------------------------------------------------------
    // A small test-only pcap builder.
    // ---------------------------------------------------------------

    const LINK_TYPES: [u32; 10] = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276];

    struct PcapWriter {
        big: bool,
        out: Vec<u8>,
    }

    impl PcapWriter {
        fn new(link_type: u32, big: bool, nanos: bool) -> Self {
            let mut w = Self { big, out: Vec::new() };
            w.u32(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 });
            w.u16(2);
            w.u16(4);
            w.u32(0);
            w.u32(0);
            w.u32(262_144);
            w.u32(link_type);
            w
        }

        fn u32(&mut self, v: u32) {
            let b = if self.big { v.to_be_bytes() } else { v.to_le_bytes() };
            self.out.extend_from_slice(&b);
        }

        fn u16(&mut self, v: u16) {
            let b = if self.big { v.to_be_bytes() } else { v.to_le_bytes() };
            self.out.extend_from_slice(&b);
        }

        fn record(&mut self, sec: u32, frac: u32, data: &[u8]) -> &mut Self {
            self.record_with_len(sec, frac, data, data.len() as u32)
        }

        fn record_with_len(&mut self, sec: u32, frac: u32, data: &[u8], len: u32) -> &mut Self {
            self.u32(sec);
            self.u32(frac);
            self.u32(data.len() as u32);
            self.u32(len);
            self.out.extend_from_slice(data);
            self
        }

        fn finish(&self) -> Vec<u8> {
            self.out.clone()
        }
    }

    const V4_SRC: [u8; 4] = [10, 200, 0, 1];
    const V4_DST: [u8; 4] = [232, 0, 0, 1];

    fn v6_src() -> Ipv6Addr {
        "fd00:200::1".parse().unwrap()
    }

    fn v6_dst() -> Ipv6Addr {
        "ff3e::8000:1".parse().unwrap()
    }

    fn udp_segment(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
        let mut s = Vec::new();
        s.extend_from_slice(&src_port.to_be_bytes());
        s.extend_from_slice(&dst_port.to_be_bytes());
        s.extend_from_slice(&((payload.len() + 8) as u16).to_be_bytes());
        s.extend_from_slice(&[0, 0]);
        s.extend_from_slice(payload);
        s
    }

    fn ipv4(id: u16, protocol: u8, more: bool, offset: usize, body: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&((body.len() + 20) as u16).to_be_bytes());
        p.extend_from_slice(&id.to_be_bytes());
        let fo = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
        p.extend_from_slice(&fo.to_be_bytes());
        p.extend_from_slice(&[1, protocol, 0, 0]);
        p.extend_from_slice(&V4_SRC);
        p.extend_from_slice(&V4_DST);
        p.extend_from_slice(body);
        p
    }

    fn ipv4_udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
        ipv4(1, 17, false, 0, &udp_segment(src_port, dst_port, payload))
    }

    fn ipv6(next: u8, body: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(body.len() as u16).to_be_bytes());
        p.extend_from_slice(&[next, 1]);
        p.extend_from_slice(&v6_src().octets());
        p.extend_from_slice(&v6_dst().octets());
        p.extend_from_slice(body);
        p
    }

    fn ipv6_udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
        ipv6(17, &udp_segment(src_port, dst_port, payload))
    }

    /// An 8-byte extension header (hop-by-hop / destination options) with
    /// PadN.
    fn ext8(next: u8) -> [u8; 8] {
        [next, 0, 1, 4, 0, 0, 0, 0]
    }

    fn frag6(next: u8, offset: usize, more: bool, id: u32) -> [u8; 8] {
        let fo = offset as u16 | u16::from(more);
        let [a, b] = fo.to_be_bytes();
        let [c, d, e, f] = id.to_be_bytes();
        [next, 0, a, b, c, d, e, f]
    }

    /// Splits `data` into pieces of `chunk` bytes: (offset, more, piece).
    fn split(data: &[u8], chunk: usize) -> Vec<(usize, bool, Vec<u8>)> {
        let n = data.len().div_ceil(chunk).max(1);
        (0..n)
            .map(|i| {
                let start = i * chunk;
                let end = (start + chunk).min(data.len());
                (start, i + 1 < n, data[start..end].to_vec())
            })
            .collect()
    }

    fn fragments_v4(id: u16, segment: &[u8], chunk: usize) -> Vec<Vec<u8>> {
        split(segment, chunk).into_iter().map(|(offset, more, piece)| ipv4(id, 17, more, offset, &piece)).collect()
    }

    fn fragments_v6(id: u32, hop_by_hop: bool, inner: &[u8], chunk: usize) -> Vec<Vec<u8>> {
        split(inner, chunk)
            .into_iter()
            .map(|(offset, more, piece)| {
                let mut body = Vec::new();
                if hop_by_hop {
                    body.extend_from_slice(&ext8(44));
                }
                body.extend_from_slice(&frag6(17, offset, more, id));
                body.extend_from_slice(&piece);
                ipv6(if hop_by_hop { 0 } else { 44 }, &body)
            })
            .collect()
    }

    /// Wraps an IP packet in the link layer of `link_type`. `host_big` is
    /// the byte order of the BSD null family field.
    fn frame(link_type: u32, ip: &[u8], host_big: bool) -> Vec<u8> {
        let v6 = ip.first().is_some_and(|b| b >> 4 == 6);
        let ethertype: [u8; 2] = if v6 { [0x86, 0xdd] } else { [0x08, 0x00] };
        let mut f = Vec::new();
        match link_type {
            1 => {
                f.extend_from_slice(&[0x01, 0x00, 0x5e, 0, 0, 1, 2, 0, 0, 0, 0, 1]);
                f.extend_from_slice(&ethertype);
            }
            12 | 14 | 101 | 228 | 229 => {}
            113 => {
                f.extend_from_slice(&[0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
                f.extend_from_slice(&ethertype);
            }
            276 => {
                f.extend_from_slice(&ethertype);
                f.extend_from_slice(&[0, 0, 0, 0, 0, 3, 0, 1, 2, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
            }
            0 => {
                let family: u32 = if v6 { 30 } else { 2 };
                f.extend_from_slice(&if host_big { family.to_be_bytes() } else { family.to_le_bytes() });
            }
            108 => {
                let family: u32 = if v6 { 24 } else { 2 };
                f.extend_from_slice(&family.to_be_bytes());
            }
            _ => unreachable!(),
        }
        f.extend_from_slice(ip);
        f
    }

    fn read(bytes: &[u8]) -> Capture {
        read_capture(bytes, &ReadOptions::default()).unwrap()
    }

    fn datagrams_file(records: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            out.extend_from_slice(&(r.len() as u32).to_be_bytes());
            out.extend_from_slice(r);
        }
        out
    }

    fn v4_addr(port: u16, ip: [u8; 4]) -> Option<SocketAddr> {
        Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
    }

    fn v6_addr(port: u16, ip: Ipv6Addr) -> Option<SocketAddr> {
        Some(SocketAddr::new(IpAddr::V6(ip), port))
    }

    // ---------------------------------------------------------------
    // Link types, byte orders, timestamps.
    // ---------------------------------------------------------------

    #[test]
    fn every_link_type_in_both_byte_orders() {
        for link_type in LINK_TYPES {
            for big in [false, true] {
                let mut w = PcapWriter::new(link_type, big, false);
                let mut expected = Vec::new();
                if link_type != 229 {
                    w.record(100, 5, &frame(link_type, &ipv4_udp(4000, 2000, b"four"), big));
                    expected.push((b"four".to_vec(), v4_addr(4000, V4_SRC), v4_addr(2000, V4_DST)));
                }
                if link_type != 228 {
                    w.record(101, 6, &frame(link_type, &ipv6_udp(4001, 2000, b"six"), big));
                    expected.push((b"six".to_vec(), v6_addr(4001, v6_src()), v6_addr(2000, v6_dst())));
                }
                let capture = read(&w.finish());
                assert_eq!(capture.format, Format::Pcap { link_type, nanosecond: false });
                let got: Vec<_> =
                    capture.datagrams.iter().map(|d| (d.payload.clone(), d.source, d.destination)).collect();
                assert_eq!(got, expected, "link type {link_type}, big {big}");
                assert_eq!(capture.stats.records, expected.len() as u64);
                assert_eq!(capture.stats.udp_datagrams, expected.len() as u64);
            }
        }
    }

    #[test]
    fn bsd_null_family_in_either_host_order() {
        for file_big in [false, true] {
            for host_big in [false, true] {
                let mut w = PcapWriter::new(0, file_big, false);
                w.record(1, 0, &frame(0, &ipv4_udp(1, 2, b"a"), host_big));
                w.record(1, 0, &frame(0, &ipv6_udp(1, 2, b"b"), host_big));
                // Linux AF_INET6 = 10 and an unknown family.
                let mut linux6 = 10u32.to_le_bytes().to_vec();
                linux6.extend_from_slice(&ipv6_udp(1, 2, b"c"));
                w.record(1, 0, &linux6);
                let mut other = 17u32.to_le_bytes().to_vec();
                other.extend_from_slice(&ipv4_udp(1, 2, b"d"));
                w.record(1, 0, &other);
                let capture = read(&w.finish());
                let payloads: Vec<_> = capture.datagrams.iter().map(|d| d.payload.clone()).collect();
                assert_eq!(payloads, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
                assert_eq!(capture.stats.skipped_non_udp, 1);
            }
        }
    }

    #[test]
    fn microsecond_and_nanosecond_timestamps() {
        for big in [false, true] {
            let mut w = PcapWriter::new(1, big, false);
            w.record(1_795_795_217, 700_943, &frame(1, &ipv4_udp(1, 2, b"x"), big));
            let capture = read(&w.finish());
            assert_eq!(capture.datagrams[0].timestamp, Some(Duration::new(1_795_795_217, 700_943_000)));

            let mut w = PcapWriter::new(1, big, true);
            w.record(1_795_795_217, 700_943_123, &frame(1, &ipv4_udp(1, 2, b"x"), big));
            let capture = read(&w.finish());
            assert_eq!(capture.format, Format::Pcap { link_type: 1, nanosecond: true });
            assert_eq!(capture.datagrams[0].timestamp, Some(Duration::new(1_795_795_217, 700_943_123)));
        }
        // Out-of-range fractions are carried over, not a panic.
        let mut w = PcapWriter::new(101, false, false);
        w.record(u32::MAX, u32::MAX, &ipv4_udp(1, 2, b"x"));
        let capture = read(&w.finish());
        assert_eq!(
            capture.datagrams[0].timestamp,
            Some(Duration::from_secs(u64::from(u32::MAX)) + Duration::from_micros(u64::from(u32::MAX)))
        );
    }

    #[test]
    fn fcs_bits_of_link_type_are_masked() {
        let mut w = PcapWriter::new(0x1400_0001, false, false);
        w.record(1, 0, &frame(1, &ipv4_udp(1, 2, b"x"), false));
        let capture = read(&w.finish());
        assert_eq!(capture.format, Format::Pcap { link_type: 1, nanosecond: false });
        assert_eq!(capture.datagrams.len(), 1);
    }

    #[test]
    fn vlan_tags_are_skipped() {
        let ip = ipv4_udp(1, 2000, b"tagged");
        let mac = [0x01, 0x00, 0x5e, 0, 0, 1, 2, 0, 0, 0, 0, 1];
        let mut w = PcapWriter::new(1, false, false);
        for tags in [&[0x8100u16][..], &[0x88a8, 0x8100], &[0x9100, 0x8100], &[0x8100, 0x8100, 0x8100]] {
            let mut f = mac.to_vec();
            for tag in tags {
                f.extend_from_slice(&tag.to_be_bytes());
                f.extend_from_slice(&[0x00, 0x2a]);
            }
            f.extend_from_slice(&[0x08, 0x00]);
            f.extend_from_slice(&ip);
            w.record(1, 0, &f);
        }
        // A tag cut short is malformed.
        let mut cut = mac.to_vec();
        cut.extend_from_slice(&[0x81, 0x00, 0x00]);
        w.record(1, 0, &cut);
        let capture = read(&w.finish());
        assert_eq!(capture.datagrams.len(), 4);
        assert!(capture.datagrams.iter().all(|d| d.payload == b"tagged"));
        assert_eq!(capture.stats.malformed, 1);
    }

    #[test]
    fn ethernet_padding_and_trailer_are_trimmed() {
        let mut f = frame(1, &ipv4_udp(1, 2, b"hi"), false);
        f.resize(60, 0xee); // minimum frame size padding
        f.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]); // FCS
        let mut g = frame(1, &ipv6_udp(1, 2, b""), false);
        g.extend_from_slice(&[0xee; 10]);
        let mut w = PcapWriter::new(1, false, false);
        w.record(1, 0, &f).record(1, 0, &g);
        let capture = read(&w.finish());
        assert_eq!(capture.datagrams[0].payload, b"hi");
        assert_eq!(capture.datagrams[1].payload, b"");
    }

    // ---------------------------------------------------------------
    // Non-UDP and malformed packets.
    // ---------------------------------------------------------------

    #[test]
    fn non_udp_is_counted_and_skipped() {
        let mut w = PcapWriter::new(1, false, false);
        // TCP over IPv4.
        w.record(1, 0, &frame(1, &ipv4(1, 6, false, 0, &[0; 20]), false));
        // ICMPv6.
        w.record(1, 0, &frame(1, &ipv6(58, &[128, 0, 0, 0]), false));
        // IPv6 with no next header after a destination options header.
        w.record(1, 0, &frame(1, &ipv6(60, &ext8(59)), false));
        // ARP.
        let mut arp = vec![0xff; 12];
        arp.extend_from_slice(&[0x08, 0x06]);
        arp.extend_from_slice(&[0; 28]);
        w.record(1, 0, &arp);
        // A non-first fragment of TCP.
        w.record(1, 0, &frame(1, &ipv4(2, 6, false, 8, &[0; 8]), false));
        // IPv6 fragment of ICMPv6.
        let mut body = frag6(58, 0, true, 9).to_vec();
        body.extend_from_slice(&[0; 8]);
        w.record(1, 0, &frame(1, &ipv6(44, &body), false));
        // And one good datagram.
        w.record(1, 0, &frame(1, &ipv4_udp(1, 2, b"ok"), false));
        let capture = read(&w.finish());
        assert_eq!(capture.datagrams.len(), 1);
        assert_eq!(capture.stats.skipped_non_udp, 6);
        assert_eq!(capture.stats.records, 7);
        assert_eq!(capture.stats.fragments, 0);
        assert_eq!(capture.stats.malformed, 0);
    }

    #[test]
    fn inconsistent_headers_are_malformed() {
        let good4 = ipv4_udp(1, 2, b"payload");
        let good6 = ipv6_udp(1, 2, b"payload");
        let mut bad: Vec<Vec<u8>> = Vec::new();
        // IHL < 5.
        let mut p = good4.clone();
        p[0] = 0x44;
        bad.push(p);
        // IHL beyond the total length.
        let mut p = good4.clone();
        p[0] = 0x4f;
        p[2..4].copy_from_slice(&40u16.to_be_bytes());
        bad.push(p);
        // Total length beyond the captured bytes.
        let mut p = good4.clone();
        p[2..4].copy_from_slice(&((good4.len() + 1) as u16).to_be_bytes());
        bad.push(p);
        // UDP length beyond the IP payload.
        let mut p = good4.clone();
        p[24..26].copy_from_slice(&100u16.to_be_bytes());
        bad.push(p);
        // UDP length below 8.
        let mut p = good4.clone();
        p[24..26].copy_from_slice(&7u16.to_be_bytes());
        bad.push(p);
        // IPv4 header cut.
        bad.push(good4[..19].to_vec());
        // Version 4 on the outside, 6 inside.
        let mut p = good4.clone();
        p[0] = 0x65;
        bad.push(p);
        // IPv6 payload length beyond the captured bytes.
        let mut p = good6.clone();
        p[4..6].copy_from_slice(&100u16.to_be_bytes());
        bad.push(p);
        // IPv6 header cut.
        bad.push(good6[..39].to_vec());
        // IPv6 extension header running past the end.
        let mut body = ext8(17).to_vec();
        body[1] = 3;
        bad.push(ipv6(0, &body));
        // IPv6 UDP header cut.
        bad.push(ipv6(17, &[0; 7]));

        let mut w = PcapWriter::new(1, false, false);
        for p in &bad {
            let ethertype =
                if p.first().is_some_and(|b| b >> 4 == 6) || p.len() == 39 { [0x86, 0xdd] } else { [0x08, 0x00] };
            let mut f = vec![0; 12];
            f.extend_from_slice(&ethertype);
            f.extend_from_slice(p);
            w.record(1, 0, &f);
        }
        // Ethernet header cut.
        w.record(1, 0, &[0; 13]);
        let capture = read(&w.finish());
        assert!(capture.datagrams.is_empty());
        assert_eq!(capture.stats.malformed, bad.len() as u64 + 1);

        // Raw IP with an unknown version, and an empty raw packet.
        let mut w = PcapWriter::new(101, false, false);
        w.record(1, 0, &[0x50; 30]).record(1, 0, &[]);
        assert_eq!(read(&w.finish()).stats.malformed, 2);
    }

    #[test]
    fn ipv6_extension_headers_are_walked() {
        let udp = udp_segment(7, 2000, b"deep");
        let mut body = ext8(43).to_vec(); // hop-by-hop -> routing
        body.extend_from_slice(&[60, 0, 0, 0, 0, 0, 0, 0]); // routing -> dest opts
        body.extend_from_slice(&[51, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // dest opts (16) -> AH
        body.extend_from_slice(&[17, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // AH (12 bytes) -> UDP
        body.extend_from_slice(&udp);
        let mut w = PcapWriter::new(229, false, false);
        w.record(1, 0, &ipv6(0, &body));
        // An atomic fragment (offset 0, M = 0) is not a fragment.
        let mut atomic = frag6(17, 0, false, 5).to_vec();
        atomic.extend_from_slice(&udp);
        w.record(2, 0, &ipv6(44, &atomic));
        let capture = read(&w.finish());
        assert_eq!(capture.datagrams.len(), 2);
        assert!(capture.datagrams.iter().all(|d| d.payload == b"deep"));
        assert_eq!(capture.stats.fragments, 0);
    }

    // ---------------------------------------------------------------
    // Reassembly.
    // ---------------------------------------------------------------

    #[test]
    fn ipv4_fragments_out_of_order() {
        let payload: Vec<u8> = (0..3000u32).map(|i| (i * 7 + 3) as u8).collect();
        let segment = udp_segment(5000, 2000, &payload);
        let frags = fragments_v4(77, &segment, 1480);
        assert_eq!(frags.len(), 3);
        let mut w = PcapWriter::new(1, true, false);
        w.record(10, 0, &frame(1, &frags[2], false));
        w.record(11, 0, &frame(1, &ipv4_udp(1, 2000, b"between"), false));
        w.record(12, 0, &frame(1, &frags[0], false));
        w.record(13, 0, &frame(1, &frags[1], false));
        let capture = read(&w.finish());
        assert_eq!(capture.datagrams.len(), 2);
        assert_eq!(capture.datagrams[0].payload, b"between");
        let whole = &capture.datagrams[1];
        assert_eq!(whole.payload, payload);
        assert_eq!(whole.timestamp, Some(Duration::from_secs(13)));
        assert_eq!(whole.source, v4_addr(5000, V4_SRC));
        assert_eq!(whole.destination, v4_addr(2000, V4_DST));
        let stats = &capture.stats;
        assert_eq!(stats.fragments, 3);
        assert_eq!(stats.reassembled, 1);
        assert_eq!(stats.fragments_dropped, 0);
        assert_eq!(stats.udp_datagrams, 2);
        assert_eq!(stats.records, 4);
    }

    #[test]
    fn ipv6_fragments_with_extension_headers() {
        let payload: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
        // The fragmentable part starts with a destination options header.
        let mut inner = ext8(17).to_vec();
        inner.extend_from_slice(&udp_segment(6000, 2000, &payload));
        let frags: Vec<Vec<u8>> = split(&inner, 1232)
            .into_iter()
            .map(|(offset, more, piece)| {
                let mut body = ext8(44).to_vec(); // hop-by-hop first
                body.extend_from_slice(&frag6(60, offset, more, 0xdead_beef));
                body.extend_from_slice(&piece);
                ipv6(0, &body)
            })
            .collect();
        assert_eq!(frags.len(), 3);
        let mut w = PcapWriter::new(1, false, false);
        for (i, k) in [1usize, 2, 0].into_iter().enumerate() {
            w.record(20 + i as u32, 0, &frame(1, &frags[k], false));
        }
        let capture = read(&w.finish());
        assert_eq!(capture.datagrams.len(), 1);
        let d = &capture.datagrams[0];
        assert_eq!(d.payload, payload);
        assert_eq!(d.timestamp, Some(Duration::from_secs(22)));
        assert_eq!(d.source, v6_addr(6000, v6_src()));
        assert_eq!(d.destination, v6_addr(2000, v6_dst()));
        assert_eq!(capture.stats.fragments, 3);
        assert_eq!(capture.stats.reassembled, 1);
    }

    #[test]
    fn same_id_different_protocol_or_address_are_separate() {
        let a = udp_segment(1, 2000, &[0xaa; 40]);
        let b = udp_segment(1, 2000, &[0xbb; 40]);
        let fa = fragments_v4(9, &a, 24);
        let fb = fragments_v6(9, false, &b, 24);
        let mut w = PcapWriter::new(101, false, false);
        for i in 0..fa.len().max(fb.len()) {
            if let Some(f) = fa.get(i) {
                w.record(1, 0, f);
            }
            if let Some(f) = fb.get(i) {
                w.record(1, 0, f);
            }
        }
        let capture = read(&w.finish());
        assert_eq!(capture.datagrams.len(), 2);
        assert_eq!(capture.datagrams[0].payload, vec![0xaa; 40]);
        assert_eq!(capture.datagrams[1].payload, vec![0xbb; 40]);
    }

    #[test]
    fn overlapping_fragments_are_rejected() {
        let segment = udp_segment(1, 2000, &[0x55; 40]); // 48 bytes
        let mut w = PcapWriter::new(101, false, false);
        w.record(1, 0, &ipv4(3, 17, true, 0, &segment[..24]));
        w.record(2, 0, &ipv4(3, 17, true, 16, &segment[16..40])); // overlaps 16..24
        w.record(3, 0, &ipv4(3, 17, false, 40, &segment[40..]));
        w.record(4, 0, &ipv4(3, 17, true, 24, &segment[24..40]));
        let capture = read(&w.finish());
        assert!(capture.datagrams.is_empty(), "nothing is made of overlaps");
        let stats = &capture.stats;
        assert_eq!(stats.fragments, 4);
        assert_eq!(stats.reassembled, 0);
        // Two abandoned with the overlap, two left incomplete at the end.
        assert_eq!(stats.fragments_dropped, 4);

        // Same with IPv6, the overlap arriving last.
        let inner = udp_segment(1, 2000, &[0x66; 40]);
        let mut w = PcapWriter::new(229, false, false);
        let f = |offset: usize, more: bool, piece: &[u8]| {
            let mut body = frag6(17, offset, more, 4).to_vec();
            body.extend_from_slice(piece);
            ipv6(44, &body)
        };
        w.record(1, 0, &f(0, true, &inner[..16]));
        w.record(1, 0, &f(32, false, &inner[32..]));
        w.record(1, 0, &f(8, true, &inner[8..24]));
        let capture = read(&w.finish());
        assert!(capture.datagrams.is_empty());
        assert_eq!(capture.stats.fragments_dropped, 3);
    }

    #[test]
    fn contradicting_last_fragments_are_rejected() {
        let segment = udp_segment(1, 2000, &[0x55; 40]);
        let mut w = PcapWriter::new(101, false, false);
        w.record(1, 0, &ipv4(3, 17, false, 40, &segment[40..]));
        w.record(1, 0, &ipv4(3, 17, false, 24, &segment[24..32])); // ends before data seen
        w.record(1, 0, &ipv4(4, 17, true, 16, &segment[16..32]));
        w.record(1, 0, &ipv4(4, 17, false, 8, &segment[8..16])); // last ends inside data
        w.record(1, 0, &ipv4(5, 17, false, 16, &segment[16..24]));
        w.record(1, 0, &ipv4(5, 17, true, 16, &segment[16..40])); // beyond the known end
        let capture = read(&w.finish());
        assert!(capture.datagrams.is_empty());
        assert_eq!(capture.stats.fragments, 6);
        assert_eq!(capture.stats.fragments_dropped, 6);
    }

    #[test]
    fn exact_duplicate_fragments_are_ignored() {
        let segment = udp_segment(1, 2000, &[0x77; 40]);
        let frags = fragments_v4(8, &segment, 16);
        let mut w = PcapWriter::new(101, false, false);
        w.record(1, 0, &frags[0]);
        w.record(1, 0, &frags[0]);
        w.record(1, 0, &frags[1]);
        w.record(1, 0, &frags[2]);
        w.record(1, 0, &frags[2]); // starts a new reassembly, never completed
        let capture = read(&w.finish());
        assert_eq!(capture.datagrams.len(), 1);
        assert_eq!(capture.datagrams[0].payload, vec![0x77; 40]);
        assert_eq!(capture.stats.fragments, 5);
        assert_eq!(capture.stats.fragments_dropped, 2);
    }

    #[test]
    fn bad_fragments_are_malformed() {
        let mut w = PcapWriter::new(101, false, false);
        // Non-last fragment whose length is not a multiple of 8.
        w.record(1, 0, &ipv4(1, 17, true, 0, &[0; 12]));
        // Empty non-last fragment.
        w.record(1, 0, &ipv4(2, 17, true, 8, &[]));
        // Ends beyond 65535.
        w.record(1, 0, &ipv4(3, 17, false, 65528, &[0; 16]));
        // A Fragment header inside a reassembled IPv6 payload.
        let mut inner = ext8(44).to_vec();
        inner.extend_from_slice(&frag6(17, 0, false, 1));
        inner.extend_from_slice(&udp_segment(1, 2, b"x"));
        let mut w6 = PcapWriter::new(229, false, false);
        for p in fragments_v6(1, false, &inner, 8) {
            let mut p = p;
            p[40] = 60; // the fragment header's next header: destination options
            w6.record(1, 0, &p);
        }
        let capture = read(&w.finish());
        assert_eq!(capture.stats.malformed, 3);
        assert_eq!(capture.stats.fragments, 0);
        let capture = read(&w6.finish());
        assert!(capture.datagrams.is_empty());
        assert_eq!(capture.stats.reassembled, 1);
        assert_eq!(capture.stats.malformed, 1);
    }

    #[test]
    fn eviction_by_count() {
        let mut w = PcapWriter::new(101, false, false);
        let segment = |id: u16| udp_segment(1, 2000, &[id as u8; 16]);
        let first = |id: u16| ipv4(id, 17, true, 0, &segment(id)[..16]);
        let last = |id: u16| ipv4(id, 17, false, 16, &segment(id)[16..]);
        for id in 0..=64u16 {
            w.record(1, 0, &first(id)); // the 65th evicts id 0
        }
        w.record(2, 0, &last(0)); // too late: starts a new one, evicting id 1
        w.record(3, 0, &last(64));
        let capture = read(&w.finish());
        assert_eq!(capture.datagrams.len(), 1);
        assert_eq!(capture.datagrams[0].payload, [64u8; 16]);
        let stats = &capture.stats;
        assert_eq!(stats.fragments, 67);
        assert_eq!(stats.reassembled, 1);
        // 2 evicted + 63 incomplete at the end.
        assert_eq!(stats.fragments_dropped, 65);
    }

    #[test]
    fn eviction_by_bytes() {
        // Each first fragment holds 60000 bytes: four fit in 256 KiB, five
        // do not.
        let segment = |id: u16| udp_segment(1, 2000, &vec![id as u8; 60_000]);
        let mut w = PcapWriter::new(101, false, false);
        for id in 0..5u16 {
            w.record(1, 0, &ipv4(id, 17, true, 0, &segment(id)[..60_000]));
        }
        w.record(2, 0, &ipv4(0, 17, false, 60_000, &segment(0)[60_000..]));
        w.record(3, 0, &ipv4(4, 17, false, 60_000, &segment(4)[60_000..]));
        let mut reader = DatagramReader::new(&w.out, &ReadOptions::default()).unwrap();
        let mut got = Vec::new();
        while let Some(d) = reader.next() {
            assert!(reader.reassembler.bytes <= DEFAULT_MAX_PENDING_FRAGMENT_BYTES);
            got.push(d.unwrap());
        }
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].payload, vec![4u8; 60_000]);
        let stats = reader.stats();
        assert_eq!(stats.fragments, 7);
        assert_eq!(stats.reassembled, 1);
        assert_eq!(stats.fragments_dropped, 5);
    }

    #[test]
    fn custom_reassembly_limits() {
        let segment = udp_segment(1, 2000, &[1; 40]);
        let frags = fragments_v4(1, &segment, 16);
        let mut w = PcapWriter::new(101, false, false);
        for f in &frags {
            w.record(1, 0, f);
        }
        let bytes = w.finish();
        let run = |limits| {
            let mut reader = DatagramReader::with_limits(&bytes, &ReadOptions::default(), limits).unwrap();
            let n = reader.by_ref().count();
            (n, reader.into_stats())
        };
        // Nothing may be pending: every fragment is dropped.
        let (n, stats) = run(ReassemblyLimits { max_pending: 0, max_pending_bytes: 1 << 20 });
        assert_eq!((n, stats.fragments_dropped), (0, 3));
        // Too few bytes for the whole datagram: abandoned.
        let (n, stats) = run(ReassemblyLimits { max_pending: 4, max_pending_bytes: 20 });
        assert_eq!(n, 0);
        assert_eq!(stats.fragments_dropped, 3);
        // Just enough.
        let (n, stats) = run(ReassemblyLimits { max_pending: 1, max_pending_bytes: 48 });
        assert_eq!((n, stats.fragments_dropped, stats.reassembled), (1, 0, 1));
    }

    // ---------------------------------------------------------------
    // Filtering and record-level problems.
    // ---------------------------------------------------------------

    #[test]
    fn port_filter_matches_destination_port() {
        let mut w = PcapWriter::new(1, false, false);
        w.record(1, 0, &frame(1, &ipv4_udp(9, 2000, b"a"), false));
        w.record(1, 0, &frame(1, &ipv4_udp(2000, 2001, b"b"), false));
        w.record(1, 0, &frame(1, &ipv6_udp(9, 2000, b"c"), false));
        let bytes = w.finish();
        let capture = read_capture(&bytes, &ReadOptions { port: Some(2000) }).unwrap();
        let payloads: Vec<_> = capture.datagrams.iter().map(|d| d.payload.clone()).collect();
        assert_eq!(payloads, vec![b"a".to_vec(), b"c".to_vec()]);
        assert_eq!(capture.stats.skipped_port, 1);
        assert_eq!(capture.stats.udp_datagrams, 2);
        assert_eq!(read(&bytes).datagrams.len(), 3);
    }

    #[test]
    fn truncated_records_are_counted_and_skipped() {
        let f = frame(1, &ipv4_udp(1, 2, b"full"), false);
        let mut w = PcapWriter::new(1, false, false);
        w.record_with_len(1, 0, &f[..30], f.len() as u32);
        w.record(2, 0, &f);
        let capture = read(&w.finish());
        assert_eq!(capture.datagrams.len(), 1);
        assert_eq!(capture.stats.records, 2);
        assert_eq!(capture.stats.truncated_records, 1);
        assert!(!capture.stats.truncated_tail);
    }

    #[test]
    fn truncated_tail_stops_cleanly() {
        let f = frame(1, &ipv4_udp(1, 2, b"full"), false);
        let mut w = PcapWriter::new(1, false, false);
        w.record(1, 0, &f).record(2, 0, &f);
        let bytes = w.finish();
        let second = 24 + 16 + f.len();
        for cut in [second + 1, second + 15, second + 16, bytes.len() - 1] {
            let capture = read(&bytes[..cut]);
            assert_eq!(capture.datagrams.len(), 1, "cut at {cut}");
            assert_eq!(capture.stats.records, 1);
            assert!(capture.stats.truncated_tail);
        }
        // A header-only file is a valid, empty capture.
        let capture = read(&bytes[..24]);
        assert!(capture.datagrams.is_empty());
        assert_eq!(capture.stats, CaptureStats::default());
        // A record claiming 4 GiB.
        let mut huge = bytes[..24].to_vec();
        huge.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(read(&huge).stats.truncated_tail);
    }

    #[test]
    fn incomplete_reassembly_at_end_is_dropped() {
        let frags = fragments_v4(1, &udp_segment(1, 2, &[0; 40]), 16);
        let mut w = PcapWriter::new(101, false, false);
        w.record(1, 0, &frags[0]).record(1, 0, &frags[1]);
        let capture = read(&w.finish());
        assert!(capture.datagrams.is_empty());
        assert_eq!(capture.stats.fragments, 2);
        assert_eq!(capture.stats.fragments_dropped, 2);
    }

    // ---------------------------------------------------------------
    // .datagrams files.
    // ---------------------------------------------------------------

    #[test]
    fn datagrams_file_reads_back() {
        let big = vec![0xab; 65_535];
        let bytes = datagrams_file(&[b"one", b"", &big, b"\x40\x00"]);
        let capture = read(&bytes);
        assert_eq!(capture.format, Format::Datagrams);
        let payloads: Vec<&[u8]> = capture.datagrams.iter().map(|d| d.payload.as_slice()).collect();
        assert_eq!(payloads, vec![&b"one"[..], b"", &big, b"\x40\x00"]);
        assert!(
            capture.datagrams.iter().all(|d| d.timestamp.is_none() && d.source.is_none() && d.destination.is_none())
        );
        assert_eq!(capture.stats.records, 4);
        assert_eq!(capture.stats.udp_datagrams, 4);
    }

    #[test]
    fn truncated_datagrams_file_is_an_exact_error() {
        let bytes = datagrams_file(&[b"hello", b"world!"]);
        // Cut inside the second record's payload and length field.
        for cut in [9 + 5, 9 + 4, 9 + 1] {
            match read_capture(&bytes[..cut], &ReadOptions::default()) {
                Err(CaptureError::Truncated { offset: 9 }) => {}
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
        // Cut inside the first record.
        for cut in [1, 3, 4, 8] {
            match read_capture(&bytes[..cut], &ReadOptions::default()) {
                Err(CaptureError::Truncated { offset: 0 }) => {}
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
        // The streaming reader yields what came before, then the error,
        // then nothing.
        let mut reader = DatagramReader::new(&bytes[..12], &ReadOptions::default()).unwrap();
        assert_eq!(reader.next().unwrap().unwrap().payload, b"hello");
        assert!(matches!(reader.next(), Some(Err(CaptureError::Truncated { offset: 9 }))));
        assert!(reader.next().is_none());
    }

    #[test]
    fn overlong_datagram_record_is_an_error() {
        let mut bytes = datagrams_file(&[b"ok"]);
        bytes.extend_from_slice(&65_536u32.to_be_bytes());
        bytes.extend_from_slice(&[0; 16]);
        match read_capture(&bytes, &ReadOptions::default()) {
            Err(CaptureError::DatagramTooLong { offset: 6, len: 65_536 }) => {}
            other => panic!("{other:?}"),
        }
    }

    // ---------------------------------------------------------------
    // File-level errors.
    // ---------------------------------------------------------------

    #[test]
    fn file_level_errors() {
        let opts = ReadOptions::default();
        assert!(matches!(read_capture(&[], &opts), Err(CaptureError::Empty)));

        let mut pcapng = vec![0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a];
        pcapng.extend_from_slice(&[0; 16]);
        let err = read_capture(&pcapng, &opts).unwrap_err();
        assert!(matches!(err, CaptureError::PcapNg));
        assert!(err.to_string().contains("pcapng"));

        let err = read_capture(b"GET / HTTP/1.1\r\n", &opts).unwrap_err();
        assert!(matches!(err, CaptureError::UnknownFormat { first_bytes: [b'G', b'E', b'T', b' '] }));
        // A first "record" longer than 65535 is not a .datagrams file.
        assert!(matches!(read_capture(&[0, 1, 0, 0, 0], &opts), Err(CaptureError::UnknownFormat { .. })));

        for big in [false, true] {
            let w = PcapWriter::new(147, big, false);
            assert!(matches!(read_capture(&w.finish(), &opts), Err(CaptureError::UnsupportedLinkType(147))));
            let header = PcapWriter::new(1, big, true).finish();
            for cut in [4, 23] {
                assert!(matches!(read_capture(&header[..cut], &opts), Err(CaptureError::BadHeader(_))));
            }
            let mut bad_version = header.clone();
            bad_version[4..6].copy_from_slice(&[1, 1]);
            assert!(matches!(read_capture(&bad_version, &opts), Err(CaptureError::BadHeader(_))));
        }
    }

    #[test]
    fn read_capture_file_reports_the_path() {
        let missing = Path::new("/nonexistent/h3m-capture-test.pcap");
        let err = read_capture_file(missing, &ReadOptions::default()).unwrap_err();
        match &err {
            CaptureError::Io { path, source } => {
                assert_eq!(path, missing);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("/nonexistent/h3m-capture-test.pcap"));

        let path = std::env::temp_dir().join(format!("h3m-capture-{}.bin", std::process::id()));
        let mut w = PcapWriter::new(1, false, false);
        w.record(1, 0, &frame(1, &ipv4_udp(1, 2, b"file"), false));
        std::fs::write(&path, w.finish()).unwrap();
        let capture = read_capture_file(&path, &ReadOptions::default());
        std::fs::remove_file(&path).unwrap();
        assert_eq!(capture.unwrap().datagrams[0].payload, b"file");
    }

    // ---------------------------------------------------------------
    // Property tests.
    // ---------------------------------------------------------------

    /// One datagram of a generated capture.
    #[derive(Debug, Clone)]
    struct Spec {
        v6: bool,
        payload: Vec<u8>,
        src_port: u16,
        dst_port: u16,
        /// Fragment size in 8-byte units (None: not fragmented).
        chunk: Option<usize>,
        hop_by_hop: bool,
        shuffle: u64,
    }

    fn spec() -> impl Strategy<Value = Spec> {
        (
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 0..3000),
            any::<u16>(),
            any::<u16>(),
            prop::option::of(1usize..200),
            any::<bool>(),
            any::<u64>(),
        )
            .prop_map(|(v6, payload, src_port, dst_port, chunk, hop_by_hop, shuffle)| Spec {
                v6,
                payload,
                src_port,
                dst_port,
                chunk,
                hop_by_hop,
                shuffle,
            })
    }

    fn shuffle<T>(items: &mut [T], mut seed: u64) {
        for i in (1..items.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let j = (seed % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }

    /// Builds a pcap of `specs`; returns it with the expected datagrams.
    fn build(link_type: u32, big: bool, nanos: bool, specs: &[Spec]) -> (Vec<u8>, Vec<Datagram>, u64) {
        let mut w = PcapWriter::new(link_type, big, nanos);
        let mut expected = Vec::new();
        let mut fragmented = 0;
        let mut t = 0u32;
        for (i, s) in specs.iter().enumerate() {
            let v6 = match link_type {
                228 => false,
                229 => true,
                _ => s.v6,
            };
            let segment = udp_segment(s.src_port, s.dst_port, &s.payload);
            let mut packets = match s.chunk {
                Some(units) if units * 8 < segment.len() => {
                    fragmented += 1;
                    if v6 {
                        fragments_v6(i as u32, s.hop_by_hop, &segment, units * 8)
                    } else {
                        fragments_v4(i as u16, &segment, units * 8)
                    }
                }
                _ if v6 && s.hop_by_hop => {
                    let mut body = ext8(17).to_vec();
                    body.extend_from_slice(&segment);
                    vec![ipv6(0, &body)]
                }
                _ if v6 => vec![ipv6(17, &segment)],
                _ => vec![ipv4(i as u16, 17, false, 0, &segment)],
            };
            shuffle(&mut packets, s.shuffle);
            for p in &packets {
                t += 1;
                w.record(t, 999, &frame(link_type, p, big));
            }
            let frac = if nanos { 999 } else { 999_000 };
            let (source, destination) = if v6 {
                (v6_addr(s.src_port, v6_src()), v6_addr(s.dst_port, v6_dst()))
            } else {
                (v4_addr(s.src_port, V4_SRC), v4_addr(s.dst_port, V4_DST))
            };
            expected.push(Datagram {
                timestamp: Some(Duration::new(u64::from(t), frac)),
                source,
                destination,
                payload: s.payload.clone(),
            });
        }
        (w.finish(), expected, fragmented)
    }

    /// Reads `bytes` with the streaming reader, checking the reassembly
    /// bounds after every step.
    fn read_checked(bytes: &[u8]) -> Result<Capture, CaptureError> {
        let mut reader = DatagramReader::new(bytes, &ReadOptions::default())?;
        let mut datagrams = Vec::new();
        while let Some(item) = reader.next() {
            datagrams.push(item?);
            let r = &reader.reassembler;
            assert!(r.pending.len() <= DEFAULT_MAX_PENDING_REASSEMBLIES);
            assert!(r.bytes <= DEFAULT_MAX_PENDING_FRAGMENT_BYTES);
            assert_eq!(r.bytes, r.pending.values().map(|e| e.bytes).sum::<usize>());
            assert_eq!(r.order.len(), r.pending.len());
        }
        let stats = reader.stats().clone();
        assert_eq!(stats.udp_datagrams, datagrams.len() as u64);
        assert!(stats.fragments_dropped + stats.reassembled <= stats.fragments);
        Ok(Capture { format: reader.format(), datagrams, stats })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn random_captures_read_back(
            link in prop::sample::select(LINK_TYPES.to_vec()),
            big in any::<bool>(),
            nanos in any::<bool>(),
            specs in prop::collection::vec(spec(), 0..8),
        ) {
            let (bytes, expected, fragmented) = build(link, big, nanos, &specs);
            let capture = read_checked(&bytes).unwrap();
            prop_assert_eq!(capture.format, Format::Pcap { link_type: link, nanosecond: nanos });
            prop_assert_eq!(&capture.datagrams, &expected);
            prop_assert_eq!(capture.stats.reassembled, fragmented);
            prop_assert_eq!(capture.stats.fragments_dropped, 0);
            prop_assert_eq!(capture.stats.malformed, 0);
            prop_assert_eq!(capture.stats.skipped_non_udp, 0);
        }

        #[test]
        fn mutated_captures_never_panic(
            link in prop::sample::select(LINK_TYPES.to_vec()),
            big in any::<bool>(),
            specs in prop::collection::vec(spec(), 1..5),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
            cut in any::<prop::sample::Index>(),
        ) {
            let (mut bytes, _, _) = build(link, big, false, &specs);
            for (at, value) in edits {
                // Keep the file header so the packet decoders are reached.
                let at = 24 + at.index(bytes.len() - 24);
                bytes[at] = value;
            }
            let cut = 24 + cut.index(bytes.len() - 23);
            let capture = read_checked(&bytes[..cut]).unwrap();
            prop_assert!(capture.stats.records <= bytes.len() as u64);
        }

        #[test]
        fn random_records_never_panic(
            link in prop::sample::select(LINK_TYPES.to_vec()),
            big in any::<bool>(),
            records in prop::collection::vec(
                (any::<u16>(), prop::collection::vec(any::<u8>(), 0..200)), 0..20),
            tail in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut w = PcapWriter::new(link, big, false);
            for (prefix, body) in &records {
                // Give the link layer and IP a fair chance: a plausible link
                // header or IP version nibble, then random bytes.
                let mut data = match link {
                    1 => {
                        let mut f = vec![0; 12];
                        f.extend_from_slice(if prefix % 2 == 0 { &[0x08, 0x00] } else { &[0x86, 0xdd] });
                        f
                    }
                    _ => Vec::new(),
                };
                data.push(if prefix % 3 == 0 { 0x45 } else { 0x60 });
                data.extend_from_slice(body);
                w.record(u32::from(*prefix), 0, &data);
            }
            let mut bytes = w.finish();
            bytes.extend_from_slice(&tail);
            read_checked(&bytes).unwrap();
        }

        #[test]
        fn random_bytes_after_pcap_header_never_panic(
            link in prop::sample::select(LINK_TYPES.to_vec()),
            big in any::<bool>(),
            nanos in any::<bool>(),
            body in prop::collection::vec(any::<u8>(), 0..2000),
        ) {
            let mut bytes = PcapWriter::new(link, big, nanos).finish();
            bytes.extend_from_slice(&body);
            read_checked(&bytes).unwrap();
        }

        #[test]
        fn random_bytes_as_datagrams_never_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..2000),
        ) {
            let _ = read_checked(&bytes);
        }

        #[test]
        fn random_datagram_records_read_back(
            records in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..20),
            cut in any::<prop::sample::Index>(),
        ) {
            let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
            let bytes = datagrams_file(&slices);
            let capture = read_checked(&bytes).unwrap();
            let payloads: Vec<Vec<u8>> = capture.datagrams.into_iter().map(|d| d.payload).collect();
            prop_assert_eq!(&payloads, &records);
            // Any proper cut is either a clean record boundary or Truncated.
            let cut = cut.index(bytes.len());
            match read_checked(&bytes[..cut]) {
                Ok(c) => prop_assert!(c.datagrams.len() < records.len()),
                Err(CaptureError::Truncated { offset }) => prop_assert!(offset < cut as u64),
                Err(CaptureError::Empty) => prop_assert_eq!(cut, 0),
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }
    }
}
