//! IGMPv3 (RFC 3376) and MLDv2 (RFC 3810) queries and reports, as the whole
//! IP packets AMT carries inside Membership Queries and Updates.
//!
//! The relay plays the multicast router (the querier) and the gateway the
//! host: the relay's [`build_query`] output travels in a Membership Query and
//! the gateway reads it with [`parse_query`]; the gateway answers with
//! [`build_report`] / [`build_reports`] inside Membership Updates and the relay
//! reads them with [`parse_report`].
//!
//! Parsing checks every length field against the buffer, the IPv4 header
//! checksum and the IGMP / ICMPv6 checksum (the latter over the IPv6
//! pseudo-header). It is liberal where real peers differ: a missing Router
//! Alert is accepted and reported ([`GeneralQuery::router_alert`]), TTL / hop
//! limit are not enforced, unknown record types and auxiliary data are
//! skipped. Building is strict and produces what Linux sends.
//!
//! # Packets built here
//!
//! IPv4 (report; a query differs in destination 224.0.0.1, DF clear and the
//! IGMP part):
//!
//! ```text
//! +------+------+-------------+-------------+-------------+
//! | 0x46 | 0xc0 | Total Len   | ID = 0      | 0x4000 (DF) |   IHL 6, TOS 0xc0
//! +------+------+-------------+-------------+-------------+
//! | TTL 1| 2    | Hdr Cksum   | Source (4)  | 224.0.0.22  |   protocol 2 = IGMP
//! +------+------+-------------+-------------+-------------+
//! | 94 04 00 00 (Router Alert)|
//! +---------------------------+
//! IGMPv3 report:  0x22 | rsv | checksum (2) | rsv (2) | number of records (2) | records...
//! IGMPv3 query:   0x11 | MRC | checksum (2) | group (4) | rsv S QRV | QQIC | N (2) | sources...
//! record:         type | aux len | N (2) | group (4) | sources (4 x N) | aux (4 x aux len)
//! ```
//!
//! IPv6 (report; a query goes to ff02::1 with ICMPv6 type 130):
//!
//! ```text
//! +-------------------------------+---------------------+------+------+
//! | 6 | TC 0 | flow 0             | Payload Len         | NH 0 | HL 1 |
//! +-------------------------------+---------------------+------+------+
//! | Source (16, link-local)       | Destination ff02::16 (16)          |
//! +------+------+-------------------------------+--------------------+
//! | NH 58| 0    | 05 02 00 00 (Router Alert MLD) | 01 00 (PadN)      |   Hop-by-Hop, 8 octets
//! +------+------+-------------------------------+--------------------+
//! MLDv2 report:  143 | 0 | checksum (2) | rsv (2) | number of records (2) | records...
//! MLDv2 query:   130 | 0 | checksum (2) | MRC (2) | rsv (2) | group (16) | rsv S QRV | QQIC | N (2) | sources...
//! record:        type | aux len | N (2) | group (16) | sources (16 x N) | aux (4 x aux len)
//! ```
//!
//! The ICMPv6 checksum covers the pseudo-header (source, destination,
//! upper-layer length as 32 bits, three zero octets, next header 58).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use h3m_net::ip::checksum::Checksum;
use h3m_net::ip::{self, IpError, IpFields, IpPacket, proto};

pub use h3m_net::ip::MAX_EXTENSION_HEADERS;

/// 224.0.0.1, all systems: destination of IGMP general queries.
pub const ALL_SYSTEMS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 1);
/// 224.0.0.22, all IGMPv3-capable routers: destination of IGMPv3 reports.
pub const ALL_IGMPV3_ROUTERS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 22);
/// ff02::1, all nodes: destination of MLD general queries.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// ff02::16, all MLDv2-capable routers: destination of MLDv2 reports.
pub const ALL_MLDV2_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16);
/// IGMP membership query type.
pub const IGMP_QUERY: u8 = 0x11;
/// IGMPv3 membership report type.
pub const IGMPV3_REPORT: u8 = 0x22;
/// ICMPv6 type of an MLD query.
pub const MLD_QUERY: u8 = 130;
/// ICMPv6 type of an MLDv2 report.
pub const MLDV2_REPORT: u8 = 143;
/// The IGMP/MLD default Query Interval, used when a query's QQIC is 0.
pub const DEFAULT_QQI: Duration = Duration::from_secs(125);
const IPV4_REPORT_OVERHEAD: usize = 24 + 8;
const IPV6_REPORT_OVERHEAD: usize = 40 + 8 + 8;

/// IGMPv3 / MLDv2 group record type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordType {
    /// MODE_IS_INCLUDE (current state: receive only from the sources).
    ModeIsInclude = 1,
    /// MODE_IS_EXCLUDE (current state: receive from all but the sources).
    ModeIsExclude = 2,
    /// CHANGE_TO_INCLUDE_MODE (TO_IN; empty source list = leave the group).
    ChangeToInclude = 3,
    /// CHANGE_TO_EXCLUDE_MODE (TO_EX; empty source list = any-source join).
    ChangeToExclude = 4,
    /// ALLOW_NEW_SOURCES (SSM join).
    AllowNewSources = 5,
    /// BLOCK_OLD_SOURCES (SSM leave).
    BlockOldSources = 6,
}

impl RecordType {
    /// The record type with wire value `value`, if known.
    pub const fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => RecordType::ModeIsInclude,
            2 => RecordType::ModeIsExclude,
            3 => RecordType::ChangeToInclude,
            4 => RecordType::ChangeToExclude,
            5 => RecordType::AllowNewSources,
            6 => RecordType::BlockOldSources,
            _ => return None,
        })
    }

    /// `true` for the EXCLUDE-mode types (IS_EX, TO_EX), whose source lists
    /// RFC 3376 4.2.16 truncates rather than splits.
    pub const fn is_exclude(self) -> bool {
        matches!(self, RecordType::ModeIsExclude | RecordType::ChangeToExclude)
    }
}

/// One group record of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    /// The record type.
    pub kind: RecordType,
    /// The multicast group.
    pub group: IpAddr,
    /// The source list (same family as `group`).
    pub sources: Vec<IpAddr>,
}

/// An IGMPv3 or MLDv2 query as a host (the AMT gateway) sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneralQuery {
    /// The querier's IP source address.
    pub source: IpAddr,
    /// The queried group; unspecified (0.0.0.0 / ::) for a general query.
    pub group: IpAddr,
    /// Maximum Response Time, decoded (IGMPv3: code in 1/10 s; MLDv2: ms).
    pub max_resp: Duration,
    /// S flag: suppress router-side processing.
    pub s_flag: bool,
    /// Querier's Robustness Variable (0: not given, use the default).
    pub qrv: u8,
    /// Querier's Query Interval Code, raw.
    pub qqic: u8,
    /// The Query Interval from `qqic` (float form for >= 128); 0 gives
    /// [`DEFAULT_QQI`] (125 s).
    pub qqi: Duration,
    /// Sources of a group-and-source-specific query.
    pub sources: Vec<IpAddr>,
    /// The packet carried a Router Alert option (IPv4) / Hop-by-Hop option (IPv6).
    pub router_alert: bool,
}

/// Parameters of the general query a relay sends ([`build_query`]).
///
/// The codes go on the wire unchanged: `max_resp_code` is IGMPv3's 8-bit Max
/// Resp Code (1/10 s units, float form >= 128) in an IPv4 query, and the value
/// of MLDv2's 16-bit Maximum Response Code (milliseconds) in an IPv6 query.
/// (amtrelayd sends 16 in IPv4, 1.6 s, and 100 in IPv6, 0.1 s.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryParams {
    /// Max Resp Code (see above).
    pub max_resp_code: u8,
    /// Querier's Robustness Variable (values above 7 are sent as 0, RFC 3376 4.1.6).
    pub qrv: u8,
    /// Querier's Query Interval Code (seconds, float form >= 128).
    pub qqic: u8,
}

/// A parsed IGMPv3 / MLDv2 report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The reporting host's IP source address.
    pub source: IpAddr,
    /// Its group records (records of unknown type are left out).
    pub records: Vec<GroupRecord>,
}

/// Why a membership packet could not be parsed or built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// The IP layer's complaint ([`h3m_net::ip`] parses the IPv4/IPv6
    /// header, options and extension headers): empty, unknown version,
    /// truncated, bad lengths or checksum, a fragment, ...; also `Truncated`
    /// for the IGMP/MLD fields.
    #[error(transparent)]
    Ip(#[from] IpError),
    /// The upper-layer protocol is not IGMP (IPv4) / ICMPv6 (IPv6).
    #[error("protocol {0} is not IGMP over IPv4 or ICMPv6 over IPv6")]
    UnexpectedProtocol(u8),
    /// The IGMP / ICMPv6 type is not the query or report expected.
    #[error("IGMP/ICMPv6 message type {0} is not the expected query or report")]
    UnexpectedType(u8),
    /// An IGMPv1/v2 or MLDv1 query (by its length), not IGMPv3 / MLDv2.
    #[error("IGMPv1/v2 or MLDv1 query; only IGMPv3 and MLDv2 are supported")]
    OldVersionQuery,
    /// The IGMP / ICMPv6 checksum does not verify.
    #[error("bad IGMP/ICMPv6 checksum")]
    Checksum,
    /// An address of the other family than the report's source.
    #[error("address {0} is not of the report source's family")]
    FamilyMismatch(IpAddr),
    /// An MLD report source that is not link-local (RFC 3810 5).
    #[error("MLD report source {0} is not link-local (fe80::/10)")]
    NotLinkLocal(Ipv6Addr),
    /// A record with more sources than the 16-bit count can say.
    #[error("{0} sources in one group record (at most 65535)")]
    TooManySources(usize),
    /// The report exceeds the IP length limit.
    #[error("report of {0} octets exceeds the IP length limit")]
    TooLarge(usize),
    /// `max_packet_len` cannot hold even one (minimal) record.
    #[error("maximum packet length {max} is too small: a report needs {need} octets")]
    MaxLenTooSmall {
        /// The requested maximum.
        max: usize,
        /// The smallest report that would carry the record.
        need: usize,
    },
}

// ---- codes ------------------------------------------------------------------

/// Decodes an 8-bit IGMPv3 Max Resp Code or an IGMPv3/MLDv2 QQIC (RFC 3376
/// 4.1.1 and 4.1.7, RFC 3810 5.1.9): below 128 the value itself, else
/// `(mant | 0x10) << (exp + 3)` with `exp = (code >> 4) & 7`, `mant = code & 0xf`.
pub fn decode_code(code: u8) -> u32 {
    if code < 128 { u32::from(code) } else { (u32::from(code & 0x0f) | 0x10) << (u32::from((code >> 4) & 7) + 3) }
}

/// Encodes a value (seconds for QQIC, tenths for IGMP Max Resp) as the largest
/// 8-bit code whose [`decode_code`] does not exceed it (values above 31744
/// give 0xff).
pub fn encode_code(value: u32) -> u8 {
    if value < 128 {
        return value as u8;
    }
    for exp in (0u8..8).rev() {
        let shift = u32::from(exp) + 3;
        let mant = value >> shift;
        if mant >= 0x10 {
            return 0x80 | (exp << 4) | (mant.min(0x1f) as u8 & 0x0f);
        }
    }
    0x7f
}

/// Decodes MLDv2's 16-bit Maximum Response Code into milliseconds (RFC 3810
/// 5.1.3): below 32768 the value itself, else `(mant | 0x1000) << (exp + 3)`
/// with `exp = (code >> 12) & 7`, `mant = code & 0xfff`.
pub fn decode_mld_code(code: u16) -> u32 {
    if code < 32768 {
        u32::from(code)
    } else {
        (u32::from(code & 0x0fff) | 0x1000) << (u32::from((code >> 12) & 7) + 3)
    }
}

fn qqi(qqic: u8) -> Duration {
    match decode_code(qqic) {
        0 => DEFAULT_QQI,
        s => Duration::from_secs(u64::from(s)),
    }
}

// ---- IP layer -----------------------------------------------------------------

/// The IP layer of a membership packet, down to the IGMP / ICMPv6 message.
struct IpLayer<'a> {
    source: IpAddr,
    destination: IpAddr,
    router_alert: bool,
    /// The IGMP or ICMPv6 message (up to the IP length).
    body: &'a [u8],
}

fn truncated(what: &'static str, need: usize, have: usize) -> MembershipError {
    MembershipError::Ip(IpError::Truncated { what, need, have })
}

/// Parses the IP header(s) with the IP layer ([`h3m_net::ip`]); `exact`: the
/// IP length must equal the packet length.
fn parse_ip(packet: &[u8], exact: bool) -> Result<IpLayer<'_>, MembershipError> {
    let ip = IpPacket::parse(packet)?;
    let (total, len) = (ip.total_len(), packet.len());
    if exact && total != len {
        return Err(MembershipError::Ip(IpError::BadLength { total, len }));
    }
    let (router_alert, body) = match ip {
        IpPacket::V4(p) => {
            p.verify_header_checksum()?;
            if p.header.is_fragment() {
                return Err(MembershipError::Ip(IpError::Fragment));
            }
            if p.header.protocol != proto::IGMP {
                return Err(MembershipError::UnexpectedProtocol(p.header.protocol));
            }
            (p.router_alert()?, p.payload)
        }
        IpPacket::V6(p) => {
            let walk = p.walk()?;
            let router_alert = walk.router_alert()?;
            match walk.next_header {
                proto::ICMPV6 => (router_alert, walk.rest),
                proto::FRAGMENT => return Err(MembershipError::Ip(IpError::Fragment)),
                other => return Err(MembershipError::UnexpectedProtocol(other)),
            }
        }
    };
    Ok(IpLayer { source: ip.source(), destination: ip.destination(), router_alert, body })
}

/// Checks the IGMP checksum (IPv4) or the ICMPv6 checksum with pseudo-header.
fn verify_upper(ip: &IpLayer<'_>) -> bool {
    let mut c = if ip.source.is_ipv6() {
        ip::pseudo_header(ip.source, ip.destination, proto::ICMPV6, ip.body.len())
    } else {
        Checksum::new()
    };
    c.add(ip.body);
    c.finish() == 0
}

// ---- queries ------------------------------------------------------------------

/// Parses the IGMPv3 (IPv4) or MLDv2 (IPv6) query a relay encapsulates in a
/// Membership Query.
///
/// Checks the IPv4 header (length, checksum, not a fragment, protocol 2) or
/// the IPv6 header and its extension headers (up to ICMPv6), the IGMP/ICMPv6
/// checksum, the message type and the source count. A missing Router Alert is
/// accepted (`router_alert: false`); the IP length may be shorter than the
/// buffer (trailing octets are ignored).
pub fn parse_query(packet: &[u8]) -> Result<GeneralQuery, MembershipError> {
    let ip = parse_ip(packet, false)?;
    let body = ip.body;
    let have = body.len();
    match ip.source {
        IpAddr::V4(_) => {
            let m: &[u8; 8] = body.first_chunk().ok_or(truncated("IGMP message", 8, have))?;
            if !verify_upper(&ip) {
                return Err(MembershipError::Checksum);
            }
            if m[0] != IGMP_QUERY {
                return Err(MembershipError::UnexpectedType(m[0]));
            }
            if have == 8 {
                return Err(MembershipError::OldVersionQuery);
            }
            let q: &[u8; 12] = body.first_chunk().ok_or(truncated("IGMPv3 query", 12, have))?;
            let n = usize::from(u16::from_be_bytes([q[10], q[11]]));
            let sources = body
                .get(12..12 + 4 * n)
                .ok_or(truncated("IGMPv3 query sources", 12 + 4 * n, have))?
                .chunks_exact(4)
                .map(|a| IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])))
                .collect();
            Ok(GeneralQuery {
                source: ip.source,
                group: IpAddr::V4(Ipv4Addr::new(q[4], q[5], q[6], q[7])),
                max_resp: Duration::from_millis(u64::from(decode_code(q[1])) * 100),
                s_flag: q[8] & 0x08 != 0,
                qrv: q[8] & 0x07,
                qqic: q[9],
                qqi: qqi(q[9]),
                sources,
                router_alert: ip.router_alert,
            })
        }
        IpAddr::V6(_) => {
            let m: &[u8; 4] = body.first_chunk().ok_or(truncated("ICMPv6 message", 4, have))?;
            if !verify_upper(&ip) {
                return Err(MembershipError::Checksum);
            }
            if m[0] != MLD_QUERY {
                return Err(MembershipError::UnexpectedType(m[0]));
            }
            if have == 24 {
                return Err(MembershipError::OldVersionQuery);
            }
            let q: &[u8; 28] = body.first_chunk().ok_or(truncated("MLDv2 query", 28, have))?;
            let n = usize::from(u16::from_be_bytes([q[26], q[27]]));
            let sources = body
                .get(28..28 + 16 * n)
                .ok_or(truncated("MLDv2 query sources", 28 + 16 * n, have))?
                .chunks_exact(16)
                .map(ipv6_from)
                .collect();
            let mut group = [0u8; 16];
            group.copy_from_slice(&q[8..24]);
            Ok(GeneralQuery {
                source: ip.source,
                group: IpAddr::V6(Ipv6Addr::from(group)),
                max_resp: Duration::from_millis(u64::from(decode_mld_code(u16::from_be_bytes([q[4], q[5]])))),
                s_flag: q[24] & 0x08 != 0,
                qrv: q[24] & 0x07,
                qqic: q[25],
                qqi: qqi(q[25]),
                sources,
                router_alert: ip.router_alert,
            })
        }
    }
}

fn ipv6_from(a: &[u8]) -> IpAddr {
    let mut b = [0u8; 16];
    if a.len() == 16 {
        b.copy_from_slice(a);
    }
    IpAddr::V6(Ipv6Addr::from(b))
}

/// Builds the general query a relay encapsulates in a Membership Query, from
/// `source` (the relay's "tunnel address"; its family selects the protocol).
///
/// IPv4: IHL 6 with Router Alert `94040000`, TOS 0xc0, ID 0, DF clear, TTL 1,
/// destination 224.0.0.1, IGMPv3 query type 0x11 for group 0, S flag 0, no
/// sources. IPv6: hop limit 1, Hop-by-Hop (Router Alert 0 + PadN), destination
/// ff02::1, MLDv2 query (ICMPv6 130) for group ::, S flag 0, no sources.
/// Checksums are valid. See [`QueryParams`] for the codes.
pub fn build_query(source: IpAddr, params: &QueryParams) -> Vec<u8> {
    let qrv = if params.qrv > 7 { 0 } else { params.qrv };
    match source {
        IpAddr::V4(src) => {
            let mut out = Vec::with_capacity(36);
            push_ipv4_header(&mut out, 12, false, src, ALL_SYSTEMS);
            let at = out.len();
            out.extend_from_slice(&[IGMP_QUERY, params.max_resp_code, 0, 0, 0, 0, 0, 0, qrv, params.qqic, 0, 0]);
            fill_checksum(&mut out, at, 2, Checksum::new());
            out
        }
        IpAddr::V6(src) => {
            let mut out = Vec::with_capacity(76);
            push_ipv6_header(&mut out, 28, src, ALL_NODES);
            let at = out.len();
            out.extend_from_slice(&[MLD_QUERY, 0, 0, 0, 0, params.max_resp_code, 0, 0]);
            out.extend_from_slice(&[0; 16]);
            out.extend_from_slice(&[qrv, params.qqic, 0, 0]);
            fill_checksum(&mut out, at, 2, mld_pseudo_header(src, ALL_NODES, 28));
            out
        }
    }
}

// ---- reports ------------------------------------------------------------------

/// Parses the IGMPv3 (IPv4) or MLDv2 (IPv6) report a gateway encapsulates in
/// a Membership Update (relay side).
///
/// Checks as [`parse_query`] does, and additionally that the IP length equals
/// the packet length exactly (amtrelayd's rule: the Update carries exactly one
/// packet). Records of unknown type are skipped, auxiliary data is skipped.
pub fn parse_report(packet: &[u8]) -> Result<Report, MembershipError> {
    let ip = parse_ip(packet, true)?;
    let body = ip.body;
    let have = body.len();
    let v6 = ip.source.is_ipv6();
    let (what, expected) = if v6 { ("MLDv2 report", MLDV2_REPORT) } else { ("IGMPv3 report", IGMPV3_REPORT) };
    let h: &[u8; 8] = body.first_chunk().ok_or(truncated(what, 8, have))?;
    if !verify_upper(&ip) {
        return Err(MembershipError::Checksum);
    }
    if h[0] != expected {
        return Err(MembershipError::UnexpectedType(h[0]));
    }
    let count = usize::from(u16::from_be_bytes([h[6], h[7]]));
    let alen = if v6 { 16 } else { 4 };
    let mut rest = body.get(8..).unwrap_or_default();
    let mut records = Vec::with_capacity(count.min(rest.len() / (4 + alen)));
    for _ in 0..count {
        let rh = rest.get(..4 + alen).ok_or(truncated("group record", 4 + alen, rest.len()))?;
        let (kind, aux, n) = (rh[0], usize::from(rh[1]), usize::from(u16::from_be_bytes([rh[2], rh[3]])));
        let size = 4 + alen + n * alen + aux * 4;
        let record = rest.get(..size).ok_or(truncated("group record", size, rest.len()))?;
        rest = rest.get(size..).unwrap_or_default();
        let Some(kind) = RecordType::from_u8(kind) else { continue };
        let addr = |a: &[u8]| {
            if v6 { ipv6_from(a) } else { IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])) }
        };
        let group = addr(record.get(4..4 + alen).unwrap_or_default());
        let sources =
            record.get(4 + alen..4 + alen + n * alen).unwrap_or_default().chunks_exact(alen).map(addr).collect();
        records.push(GroupRecord { kind, group, sources });
    }
    Ok(Report { source: ip.source, records })
}

/// Checks the family of every address and the MLD link-local rule.
fn check_records(source: IpAddr, records: &[GroupRecord]) -> Result<(), MembershipError> {
    if let IpAddr::V6(s) = source
        && s.segments()[0] & 0xffc0 != 0xfe80
    {
        return Err(MembershipError::NotLinkLocal(s));
    }
    for r in records {
        for a in std::iter::once(&r.group).chain(&r.sources) {
            if a.is_ipv6() != source.is_ipv6() {
                return Err(MembershipError::FamilyMismatch(*a));
            }
        }
        if r.sources.len() > usize::from(u16::MAX) {
            return Err(MembershipError::TooManySources(r.sources.len()));
        }
    }
    Ok(())
}

/// (fixed overhead, record header, per-source) octets of a report.
fn sizes(v6: bool) -> (usize, usize, usize) {
    if v6 { (IPV6_REPORT_OVERHEAD, 20, 16) } else { (IPV4_REPORT_OVERHEAD, 8, 4) }
}

/// Largest packet the IP length field allows.
fn ip_limit(v6: bool) -> usize {
    if v6 { 40 + 65535 } else { 65535 }
}

/// Builds one IGMPv3 (IPv4 `source`) or MLDv2 (IPv6 `source`) report holding
/// `records`, as Linux sends it (gateway side).
///
/// IPv4: IHL 6 with Router Alert, TOS 0xc0, ID 0, DF, TTL 1, destination
/// 224.0.0.22, IGMPv3 type 0x22. IPv6: `source` must be link-local; hop limit
/// 1, Hop-by-Hop Router Alert (MLD) + PadN, destination ff02::16, ICMPv6 143
/// with the pseudo-header checksum. Every record address must be of the
/// source's family. Errors if the packet would exceed the IP length limit
/// (use [`build_reports`] to split).
pub fn build_report(source: IpAddr, records: &[GroupRecord]) -> Result<Vec<u8>, MembershipError> {
    check_records(source, records)?;
    let (overhead, rec, per) = sizes(source.is_ipv6());
    let len = overhead + records.iter().map(|r| rec + per * r.sources.len()).sum::<usize>();
    if len > ip_limit(source.is_ipv6()) {
        return Err(MembershipError::TooLarge(len));
    }
    Ok(write_report(source, records, len))
}

/// Writes a report of the precomputed length `len` (records already checked).
fn write_report(source: IpAddr, records: &[GroupRecord], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let (src6, upper) = match source {
        IpAddr::V4(s) => {
            push_ipv4_header(&mut out, len - 24, true, s, ALL_IGMPV3_ROUTERS);
            (None, len - 24)
        }
        IpAddr::V6(s) => {
            push_ipv6_header(&mut out, len - 48, s, ALL_MLDV2_ROUTERS);
            (Some(s), len - 48)
        }
    };
    let at = out.len();
    let kind = if src6.is_some() { MLDV2_REPORT } else { IGMPV3_REPORT };
    out.extend_from_slice(&[kind, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&(records.len() as u16).to_be_bytes());
    for r in records {
        out.extend_from_slice(&[r.kind as u8, 0]);
        out.extend_from_slice(&(r.sources.len() as u16).to_be_bytes());
        for a in std::iter::once(&r.group).chain(&r.sources) {
            match a {
                IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
            }
        }
    }
    let sum = src6.map_or_else(Checksum::new, |s| mld_pseudo_header(s, ALL_MLDV2_ROUTERS, upper));
    fill_checksum(&mut out, at, 2, sum);
    out
}

/// Builds as many reports as needed so that each is at most `max_packet_len`
/// octets (gateway side), keeping the records in order.
///
/// Records are packed greedily. A record too large for a packet of its own is
/// split over several packets following RFC 3376 4.2.16: INCLUDE-type records
/// (IS_IN, ALLOW, BLOCK) are split into records of the same type with parts
/// of the source list; a TO_IN is split into a TO_IN with the first part and
/// ALLOWs with the rest (several TO_INs would each replace the state); an
/// EXCLUDE-type record (IS_EX, TO_EX) keeps only the sources that fit and the
/// rest are not reported. No records give no packets.
pub fn build_reports(
    source: IpAddr,
    records: &[GroupRecord],
    max_packet_len: usize,
) -> Result<Vec<Vec<u8>>, MembershipError> {
    check_records(source, records)?;
    let v6 = source.is_ipv6();
    let (overhead, rec, per) = sizes(v6);
    let max = max_packet_len.min(ip_limit(v6));
    // Each packet: its records and its length.
    let mut packets: Vec<(Vec<GroupRecord>, usize)> = Vec::new();
    let mut current: Vec<GroupRecord> = Vec::new();
    let mut current_len = overhead;
    for r in records {
        let need = overhead + rec + per * r.sources.len().min(1);
        if need > max {
            return Err(MembershipError::MaxLenTooSmall { max: max_packet_len, need });
        }
        let mut r = r.clone();
        if r.kind.is_exclude() {
            // Keep as many sources as fit one packet; the rest go unreported.
            r.sources.truncate(max.saturating_sub(overhead + rec) / per);
        }
        let size = rec + per * r.sources.len();
        if current_len + size <= max {
            current.push(r);
            current_len += size;
            continue;
        }
        if overhead + size <= max {
            packets.push((std::mem::take(&mut current), current_len));
            current.push(r);
            current_len = overhead + size;
            continue;
        }
        // Too big for any packet (an INCLUDE-type record): split the source list.
        let mut sources: &[IpAddr] = &r.sources;
        let mut kind = r.kind;
        while !sources.is_empty() {
            let room = max.saturating_sub(current_len + rec) / per;
            if room == 0 {
                packets.push((std::mem::take(&mut current), current_len));
                current_len = overhead;
                continue;
            }
            let (part, rest) = sources.split_at(room.min(sources.len()));
            current.push(GroupRecord { kind, group: r.group, sources: part.to_vec() });
            current_len += rec + per * part.len();
            if kind == RecordType::ChangeToInclude {
                kind = RecordType::AllowNewSources;
            }
            sources = rest;
        }
    }
    if !current.is_empty() {
        packets.push((current, current_len));
    }
    Ok(packets.into_iter().filter(|(r, _)| !r.is_empty()).map(|(r, len)| write_report(source, &r, len)).collect())
}

// ---- writing helpers ----------------------------------------------------------

/// IPv4 header with Router Alert (IHL 6), TOS 0xc0, ID 0, TTL 1, protocol 2,
/// for `payload` octets after it; DF set for reports.
fn push_ipv4_header(out: &mut Vec<u8>, payload: usize, dont_fragment: bool, src: Ipv4Addr, dst: Ipv4Addr) {
    let fields = IpFields { ttl: 1, tos: 0xc0, dont_fragment, router_alert: true, ..IpFields::default() };
    ip::write_ipv4_header(out, src, dst, proto::IGMP, &fields, payload);
}

/// IPv6 header (hop limit 1, next header Hop-by-Hop) plus the 8-octet
/// Hop-by-Hop header with Router Alert (MLD); `upper` ICMPv6 octets follow.
fn push_ipv6_header(out: &mut Vec<u8>, upper: usize, src: Ipv6Addr, dst: Ipv6Addr) {
    let fields = IpFields { ttl: 1, router_alert: true, ..IpFields::default() };
    ip::write_ipv6_header(out, src, dst, proto::ICMPV6, &fields, upper);
}

/// The checksum state after the ICMPv6 pseudo-header.
fn mld_pseudo_header(src: Ipv6Addr, dst: Ipv6Addr, upper: usize) -> Checksum {
    ip::pseudo_header(IpAddr::V6(src), IpAddr::V6(dst), proto::ICMPV6, upper)
}

/// Adds `out[at..]` to `sum` (the pseudo-header, if any) and stores the
/// checksum at `out[at + field..]`.
fn fill_checksum(out: &mut [u8], at: usize, field: usize, mut sum: Checksum) {
    let Some(region) = out.get_mut(at..) else { return };
    let sum = sum.add(region).finish();
    if let Some(f) = region.get_mut(field..field + 2) {
        f.copy_from_slice(&sum.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::{self, internet_checksum};
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// amtrelayd's IGMPv3 general query (amt.md 3.4).
    const AMTRELAYD_QUERY: &str = "46000024 45670000 0102d536 c6336401 e0000001 94040000 1110ecdb 00000000 02140000";
    /// The probe's IS_IN{198.51.100.10} report for 232.1.1.1 (amt.md 3.5).
    const PROBE_REPORT: &str =
        "46c0002c 00004000 0102c7f2 cb007102 e0000016 94040000 2200c9bc 00000001 01000001 e8010101 c633640a";

    #[test]
    fn codes() {
        assert_eq!(decode_code(0), 0);
        assert_eq!(decode_code(16), 16);
        assert_eq!(decode_code(127), 127);
        assert_eq!(decode_code(128), 0x10 << 3);
        assert_eq!(decode_code(0x8f), 0x1f << 3);
        assert_eq!(decode_code(0xff), 0x1f << 10);
        assert_eq!(decode_code(0xa5), 0x15 << 5);
        for c in 0..=255u8 {
            assert_eq!(encode_code(decode_code(c)), c, "{c}");
        }
        assert_eq!(encode_code(129), 128); // 128 is the largest code value <= 129
        assert_eq!(encode_code(1_000_000), 0xff);
        assert_eq!(decode_mld_code(100), 100);
        assert_eq!(decode_mld_code(32767), 32767);
        assert_eq!(decode_mld_code(0x8000), 0x1000 << 3);
        assert_eq!(decode_mld_code(0xffff), 0x1fff << 10);
    }

    #[test]
    fn amtrelayd_ipv4_query() {
        let q = parse_query(&hex(AMTRELAYD_QUERY)).unwrap();
        assert_eq!(
            q,
            GeneralQuery {
                source: ip("198.51.100.1"),
                group: ip("0.0.0.0"),
                max_resp: Duration::from_millis(1600),
                s_flag: false,
                qrv: 2,
                qqic: 20,
                qqi: Duration::from_secs(20),
                sources: vec![],
                router_alert: true,
            }
        );
        // Our builder gives the same IGMP part; the IP header differs only in
        // TOS (0xc0 vs 0) and ID (0 vs 0x4567), hence the header checksum.
        let ours = build_query(ip("198.51.100.1"), &QueryParams { max_resp_code: 16, qrv: 2, qqic: 20 });
        let theirs = hex(AMTRELAYD_QUERY);
        assert_eq!(ours.len(), theirs.len());
        assert_eq!(ours[24..], theirs[24..]);
        assert_eq!(ours[..10], hex("46c00024 00000000 0102")[..]);
        assert_eq!(ours[12..24], hex("c6336401 e0000001 94040000")[..]);
        assert!(checksum::verify(&[&ours[..24]]));
        assert_eq!(parse_query(&ours).unwrap(), q);
    }

    #[test]
    fn amtrelayd_ipv6_query_rebuilt() {
        // amtrelayd's MLD query (amt.md 3.4): fe80::1 -> ff02::1, MRC 100, S=1, QRV 0, QQIC 5.
        let ours = build_query(ip("fe80::1"), &QueryParams { max_resp_code: 100, qrv: 0, qqic: 5 });
        assert_eq!(ours.len(), 40 + 8 + 28);
        assert_eq!(ours[..8], hex("60000000 00240001")[..]);
        assert_eq!(ours[24..40], ALL_NODES.octets());
        assert_eq!(ours[40..48], hex("3a00 05020000 0100")[..]);
        let q = parse_query(&ours).unwrap();
        assert_eq!(q.source, ip("fe80::1"));
        assert_eq!(q.group, ip("::"));
        assert_eq!(q.max_resp, Duration::from_millis(100));
        assert_eq!((q.s_flag, q.qrv, q.qqic, q.qqi), (false, 0, 5, Duration::from_secs(5)));
        assert!(q.router_alert);
    }

    #[test]
    fn query_variants() {
        let base = hex(AMTRELAYD_QUERY);
        // Trailing octets after the IP total length are ignored.
        let mut long = base.clone();
        long.extend_from_slice(&[0xde, 0xad]);
        assert_eq!(parse_query(&long), parse_query(&base));
        // No Router Alert (IHL 5): accepted, router_alert false.
        let mut plain = build_without_ra(&base);
        let q = parse_query(&plain).unwrap();
        assert!(!q.router_alert);
        assert_eq!(q.qrv, 2);
        // Corrupt IGMP checksum.
        plain[22] ^= 1;
        assert_eq!(parse_query(&plain), Err(MembershipError::Checksum));
        // Corrupt IP checksum.
        let mut bad = base.clone();
        bad[11] ^= 1;
        assert_eq!(parse_query(&bad), Err(MembershipError::Ip(IpError::HeaderChecksum)));
        // QQIC 0 -> 125 s; float forms.
        for (qqic, secs) in [(0u8, 125u64), (128, 128), (0xff, 31744)] {
            let p = build_query(ip("10.0.0.1"), &QueryParams { max_resp_code: 0xff, qrv: 9, qqic });
            let q = parse_query(&p).unwrap();
            assert_eq!(q.qqi, Duration::from_secs(secs));
            assert_eq!(q.qrv, 0, "QRV above 7 goes out as 0");
            assert_eq!(q.max_resp, Duration::from_millis(31744 * 100));
        }
    }

    /// The same IGMP query behind a 20-octet header.
    fn build_without_ra(with_ra: &[u8]) -> Vec<u8> {
        let mut p = with_ra[..20].to_vec();
        p[0] = 0x45;
        p[2..4].copy_from_slice(&32u16.to_be_bytes());
        p[10] = 0;
        p[11] = 0;
        let c = internet_checksum(&[&p]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(&with_ra[24..]);
        p
    }

    #[test]
    fn query_errors() {
        let base = hex(AMTRELAYD_QUERY);
        assert_eq!(parse_query(&[]), Err(MembershipError::Ip(IpError::Empty)));
        assert_eq!(parse_query(&[0x55]), Err(MembershipError::Ip(IpError::UnknownVersion(5))));
        assert_eq!(
            parse_query(&base[..19]),
            Err(MembershipError::Ip(IpError::Truncated { what: "IPv4 header", need: 20, have: 19 }))
        );
        assert_eq!(
            parse_query(&base[..22]),
            Err(MembershipError::Ip(IpError::Truncated { what: "IPv4 header with options", need: 24, have: 22 }))
        );
        assert_eq!(parse_query(&base[..30]), Err(MembershipError::Ip(IpError::BadLength { total: 36, len: 30 })));
        let mut ihl4 = base.clone();
        ihl4[0] = 0x44;
        assert_eq!(parse_query(&ihl4), Err(MembershipError::Ip(IpError::BadHeaderLength(4))));
        // IGMPv2 query (8 octets).
        let v2 = reframe_v4(&base, &hex("11100000 00000000"), 2);
        assert_eq!(parse_query(&fix_igmp(v2)), Err(MembershipError::OldVersionQuery));
        // A report is not a query.
        assert_eq!(parse_query(&hex(PROBE_REPORT)), Err(MembershipError::UnexpectedType(0x22)));
        // Not IGMP.
        let udp = reframe_v4(&base, &hex("11100000 00000000 02140000"), 17);
        assert_eq!(parse_query(&udp), Err(MembershipError::UnexpectedProtocol(17)));
        // A source count beyond the data.
        let many = fix_igmp(reframe_v4(&base, &hex("11100000 00000000 02140002 0a000001"), 2));
        assert_eq!(
            parse_query(&many),
            Err(MembershipError::Ip(IpError::Truncated { what: "IGMPv3 query sources", need: 20, have: 16 }))
        );
        // Fragment.
        let mut frag = reframe_v4(&base, &hex("1110ecdb 00000000 02140000"), 2);
        frag[6] = 0x20;
        refresh_ip_checksum(&mut frag);
        assert_eq!(parse_query(&frag), Err(MembershipError::Ip(IpError::Fragment)));
        // Malformed option (length 0).
        let mut opt = base.clone();
        opt[21] = 0;
        refresh_ip_checksum(&mut opt);
        assert_eq!(parse_query(&opt), Err(MembershipError::Ip(IpError::BadOption)));
    }

    /// `base`'s 24-octet IPv4 header (RA) with a new protocol and upper part.
    fn reframe_v4(base: &[u8], upper: &[u8], protocol: u8) -> Vec<u8> {
        let mut p = base[..24].to_vec();
        p[9] = protocol;
        p[2..4].copy_from_slice(&((24 + upper.len()) as u16).to_be_bytes());
        p.extend_from_slice(upper);
        refresh_ip_checksum(&mut p);
        p
    }

    fn refresh_ip_checksum(p: &mut [u8]) {
        let hl = usize::from(p[0] & 0xf) * 4;
        p[10] = 0;
        p[11] = 0;
        let c = internet_checksum(&[&p[..hl]]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }

    fn fix_igmp(mut p: Vec<u8>) -> Vec<u8> {
        let hl = usize::from(p[0] & 0xf) * 4;
        p[hl + 2] = 0;
        p[hl + 3] = 0;
        let c = internet_checksum(&[&p[hl..]]);
        p[hl + 2..hl + 4].copy_from_slice(&c.to_be_bytes());
        p
    }

    #[test]
    fn probe_report_byte_for_byte() {
        let records = vec![GroupRecord {
            kind: RecordType::ModeIsInclude,
            group: ip("232.1.1.1"),
            sources: vec![ip("198.51.100.10")],
        }];
        let built = build_report(ip("203.0.113.2"), &records).unwrap();
        assert_eq!(built, hex(PROBE_REPORT));
        let r = parse_report(&built).unwrap();
        assert_eq!(r, Report { source: ip("203.0.113.2"), records });
    }

    /// The Linux kernel's IGMPv3 ALLOW{S} report from 10.8.8.1, tunnelled by
    /// amtgwd (amt-v4-tunnel frame 9).
    const LINUX_IGMP_ALLOW: &str =
        "46c0002c 00004000 0102f1ec 0a080801 e0000016 94040000 2200c5bc 00000001 05000001 e8010101 c633640a";
    /// The Linux kernel's MLDv2 ALLOW{S} report from fe80::9000:1 (amt-v6-tunnel frame 13).
    const LINUX_MLD_ALLOW: &str = "60000000 00340001 fe800000 00000000 00000000 90000001 ff020000 00000000
        00000000 00000016 3a000502 00000100 8f002ff2 00000001 05000001 ff3e0000 00000000 00000000 80000001
        20010db8 01000000 00000000 00000010";

    #[test]
    fn linux_reports_byte_for_byte() {
        let igmp = hex(LINUX_IGMP_ALLOW);
        let r = parse_report(&igmp).unwrap();
        let allow4 = vec![GroupRecord {
            kind: RecordType::AllowNewSources,
            group: ip("232.1.1.1"),
            sources: vec![ip("198.51.100.10")],
        }];
        assert_eq!(r, Report { source: ip("10.8.8.1"), records: allow4.clone() });
        assert_eq!(build_report(ip("10.8.8.1"), &allow4).unwrap(), igmp);
        let mld = hex(LINUX_MLD_ALLOW);
        let r = parse_report(&mld).unwrap();
        let allow6 = vec![GroupRecord {
            kind: RecordType::AllowNewSources,
            group: ip("ff3e::8000:1"),
            sources: vec![ip("2001:db8:100::10")],
        }];
        assert_eq!(r, Report { source: ip("fe80::9000:1"), records: allow6.clone() });
        assert_eq!(build_report(ip("fe80::9000:1"), &allow6).unwrap(), mld);
        assert_eq!(build_reports(ip("fe80::9000:1"), &allow6, 1280).unwrap(), vec![mld.clone()]);
        // The MLD checksum covers the pseudo-header: a different source breaks it.
        let mut moved = mld.clone();
        moved[23] ^= 1;
        assert_eq!(parse_report(&moved), Err(MembershipError::Checksum));
        // amtgwd's tunnelled Router Solicitation (amt-v6-tunnel frame 15).
        let rs = hex("60000000 00083aff fe800000 00000000 00000000 90000001 ff020000 00000000 00000000 00000002
            8500ed35 00000000");
        assert_eq!(parse_report(&rs), Err(MembershipError::UnexpectedType(133)));
    }

    #[test]
    fn mld_report_layout() {
        let records = vec![GroupRecord {
            kind: RecordType::AllowNewSources,
            group: ip("ff3e::8000:1"),
            sources: vec![ip("2001:db8:100::10")],
        }];
        let built = build_report(ip("fe80::9000:1"), &records).unwrap();
        assert_eq!(built.len(), 40 + 8 + 8 + 20 + 16);
        assert_eq!(built[..8], hex("60000000 00340001")[..]);
        assert_eq!(built[24..40], ALL_MLDV2_ROUTERS.octets());
        assert_eq!(built[40..48], hex("3a00 05020000 0100")[..]);
        assert_eq!(built[48], 143);
        assert_eq!(built[54..56], [0, 1]);
        assert_eq!(built[56..60], [5, 0, 0, 1]);
        assert_eq!(parse_report(&built).unwrap(), Report { source: ip("fe80::9000:1"), records });
    }

    #[test]
    fn report_errors() {
        let g4 = GroupRecord { kind: RecordType::AllowNewSources, group: ip("232.1.1.1"), sources: vec![] };
        assert_eq!(
            build_report(ip("fe80::1"), std::slice::from_ref(&g4)),
            Err(MembershipError::FamilyMismatch(ip("232.1.1.1")))
        );
        let mixed =
            GroupRecord { kind: RecordType::AllowNewSources, group: ip("232.1.1.1"), sources: vec![ip("2001:db8::1")] };
        assert_eq!(build_report(ip("10.0.0.1"), &[mixed]), Err(MembershipError::FamilyMismatch(ip("2001:db8::1"))));
        assert_eq!(
            build_report(ip("2001:db8::2"), &[]),
            Err(MembershipError::NotLinkLocal("2001:db8::2".parse().unwrap()))
        );
        assert!(build_report(ip("febf::1"), &[]).is_ok());
        assert!(build_report(ip("fec0::1"), &[]).is_err());
        // The amtrelayd rule: total length must equal the packet length.
        let mut long = hex(PROBE_REPORT);
        long.push(0);
        assert_eq!(parse_report(&long), Err(MembershipError::Ip(IpError::BadLength { total: 44, len: 45 })));
        let mut bad = hex(PROBE_REPORT);
        bad[43] ^= 0x80;
        assert_eq!(parse_report(&bad), Err(MembershipError::Checksum));
        // A query is not a report.
        let q = build_query(ip("10.0.0.1"), &QueryParams { max_resp_code: 1, qrv: 2, qqic: 3 });
        assert_eq!(parse_report(&q), Err(MembershipError::UnexpectedType(IGMP_QUERY)));
        // Record count beyond the data.
        let mut more = hex(PROBE_REPORT);
        more[31] = 2;
        let more = fix_igmp(more);
        assert_eq!(
            parse_report(&more),
            Err(MembershipError::Ip(IpError::Truncated { what: "group record", need: 8, have: 0 }))
        );
    }

    #[test]
    fn report_skips_unknown_records_and_aux() {
        // Record 1: type 9 (unknown) with 1 aux word; record 2: BLOCK{S} with 1 aux word.
        let igmp = hex("22000000 00000002 09010000 e8010101 aabbccdd 06010001 e8010102 c633640a 11223344");
        let p = fix_igmp(reframe_v4(&hex(PROBE_REPORT), &igmp, 2));
        let r = parse_report(&p).unwrap();
        assert_eq!(
            r.records,
            vec![GroupRecord {
                kind: RecordType::BlockOldSources,
                group: ip("232.1.1.2"),
                sources: vec![ip("198.51.100.10")]
            }]
        );
    }

    fn srcs4(n: usize) -> Vec<IpAddr> {
        (0..n).map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i as u32))).collect()
    }

    #[test]
    fn build_reports_splits() {
        let records: Vec<GroupRecord> = (0..10u8)
            .map(|i| GroupRecord {
                kind: RecordType::ModeIsInclude,
                group: IpAddr::V4(Ipv4Addr::new(232, 1, 1, i)),
                sources: srcs4(3),
            })
            .collect();
        // Each record is 8 + 12 = 20 octets; 32 + 3 * 20 = 92.
        let packets = build_reports(ip("10.0.0.1"), &records, 92).unwrap();
        assert_eq!(packets.iter().map(Vec::len).collect::<Vec<_>>(), vec![92, 92, 92, 52]);
        let back: Vec<GroupRecord> = packets.iter().flat_map(|p| parse_report(p).unwrap().records).collect();
        assert_eq!(back, records);
        assert_eq!(build_reports(ip("10.0.0.1"), &records, 100_000).unwrap().len(), 1);
        assert_eq!(build_reports(ip("10.0.0.1"), &[], 100).unwrap(), Vec::<Vec<u8>>::new());
        assert_eq!(
            build_reports(ip("10.0.0.1"), &records, 43),
            Err(MembershipError::MaxLenTooSmall { max: 43, need: 44 })
        );
    }

    #[test]
    fn build_reports_splits_sources() {
        let big = |kind| GroupRecord { kind, group: ip("232.1.1.1"), sources: srcs4(10) };
        // 32 + 8 + 4 * 4 = 56: four sources per packet.
        let parts = |kind| -> Vec<GroupRecord> {
            build_reports(ip("10.0.0.1"), &[big(kind)], 56)
                .unwrap()
                .iter()
                .inspect(|p| assert!(p.len() <= 56))
                .flat_map(|p| parse_report(p).unwrap().records)
                .collect()
        };
        let allow = parts(RecordType::AllowNewSources);
        assert_eq!(allow.iter().map(|r| r.sources.len()).collect::<Vec<_>>(), vec![4, 4, 2]);
        assert!(allow.iter().all(|r| r.kind == RecordType::AllowNewSources));
        assert_eq!(allow.iter().flat_map(|r| r.sources.clone()).collect::<Vec<_>>(), srcs4(10));
        let to_in = parts(RecordType::ChangeToInclude);
        assert_eq!(
            to_in.iter().map(|r| r.kind).collect::<Vec<_>>(),
            vec![RecordType::ChangeToInclude, RecordType::AllowNewSources, RecordType::AllowNewSources]
        );
        let to_ex = parts(RecordType::ChangeToExclude);
        assert_eq!(
            to_ex,
            vec![GroupRecord { kind: RecordType::ChangeToExclude, group: ip("232.1.1.1"), sources: srcs4(4) }]
        );
        // A big record after a small one fills the rest of the first packet.
        let small = GroupRecord { kind: RecordType::ModeIsInclude, group: ip("232.1.1.9"), sources: srcs4(1) };
        let packets = build_reports(ip("10.0.0.1"), &[small.clone(), big(RecordType::BlockOldSources)], 60).unwrap();
        let recs: Vec<Vec<GroupRecord>> = packets.iter().map(|p| parse_report(p).unwrap().records).collect();
        assert_eq!(recs[0][0], small);
        assert_eq!(recs[0][1].sources.len(), 2);
        assert_eq!(recs.iter().flatten().skip(1).flat_map(|r| r.sources.clone()).collect::<Vec<_>>(), srcs4(10));
        // An EXCLUDE record after a small one: truncated to what fits a whole
        // packet, not to the first packet's leftover space.
        let packets = build_reports(ip("10.0.0.1"), &[small.clone(), big(RecordType::ChangeToExclude)], 60).unwrap();
        let recs: Vec<Vec<GroupRecord>> = packets.iter().map(|p| parse_report(p).unwrap().records).collect();
        assert_eq!(
            recs,
            vec![
                vec![small.clone()],
                vec![GroupRecord { kind: RecordType::ChangeToExclude, group: ip("232.1.1.1"), sources: srcs4(5) }]
            ]
        );
        // Too small for one record with one source.
        assert_eq!(
            build_reports(ip("10.0.0.1"), &[big(RecordType::AllowNewSources)], 43),
            Err(MembershipError::MaxLenTooSmall { max: 43, need: 44 })
        );
    }

    // ---- property tests ----------------------------------------------------

    fn v4() -> impl Strategy<Value = IpAddr> {
        any::<[u8; 4]>().prop_map(|a| IpAddr::V4(a.into()))
    }
    fn v6() -> impl Strategy<Value = IpAddr> {
        any::<[u8; 16]>().prop_map(|a| IpAddr::V6(a.into()))
    }
    fn kind() -> impl Strategy<Value = RecordType> {
        (1u8..=6).prop_map(|k| RecordType::from_u8(k).unwrap())
    }
    fn records(addr: fn() -> BoxedStrategy<IpAddr>) -> impl Strategy<Value = Vec<GroupRecord>> {
        proptest::collection::vec(
            (kind(), addr(), proptest::collection::vec(addr(), 0..6)).prop_map(|(kind, group, sources)| GroupRecord {
                kind,
                group,
                sources,
            }),
            0..8,
        )
    }
    fn link_local() -> impl Strategy<Value = IpAddr> {
        any::<[u16; 8]>().prop_map(|mut s| {
            s[0] = 0xfe80 | (s[0] & 0x3f);
            IpAddr::V6(Ipv6Addr::from(s))
        })
    }
    fn report_case() -> impl Strategy<Value = (IpAddr, Vec<GroupRecord>)> {
        prop_oneof![(v4(), records(|| v4().boxed())), (link_local(), records(|| v6().boxed()))]
    }

    proptest! {
        #[test]
        fn report_roundtrip((source, recs) in report_case()) {
            let p = build_report(source, &recs).unwrap();
            prop_assert_eq!(parse_report(&p).unwrap(), Report { source, records: recs });
        }

        #[test]
        fn reports_split_roundtrip((source, recs) in report_case(), max in 100usize..400) {
            let packets = build_reports(source, &recs, max).unwrap();
            let mut back = Vec::new();
            for p in &packets {
                prop_assert!(p.len() <= max);
                let r = parse_report(p).unwrap();
                prop_assert_eq!(r.source, source);
                prop_assert!(!r.records.is_empty());
                back.extend(r.records);
            }
            // Without splitting (every record fits), the records come back as they went in.
            let (overhead, rec, per) = sizes(source.is_ipv6());
            if recs.iter().all(|r| overhead + rec + per * r.sources.len() <= max) {
                prop_assert_eq!(back, recs);
            } else {
                // Same groups in order (consecutive duplicates from splitting merged).
                let mut groups: Vec<IpAddr> = back.iter().map(|r| r.group).collect();
                groups.dedup();
                let mut want: Vec<IpAddr> = recs.iter().map(|r| r.group).collect();
                want.dedup();
                prop_assert_eq!(groups, want);
            }
        }

        #[test]
        fn query_roundtrip(source in prop_oneof![v4(), v6()], mrc in any::<u8>(), qrv in 0u8..=7, qqic in any::<u8>()) {
            let p = build_query(source, &QueryParams { max_resp_code: mrc, qrv, qqic });
            let q = parse_query(&p).unwrap();
            let max_resp = if source.is_ipv4() {
                Duration::from_millis(u64::from(decode_code(mrc)) * 100)
            } else {
                Duration::from_millis(u64::from(mrc))
            };
            let group = if source.is_ipv4() { ip("0.0.0.0") } else { ip("::") };
            let qqi = if qqic == 0 { DEFAULT_QQI } else { Duration::from_secs(u64::from(decode_code(qqic))) };
            prop_assert_eq!(q, GeneralQuery {
                source, group, max_resp, s_flag: false, qrv, qqic, qqi, sources: vec![], router_alert: true
            });
        }

        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_query(&bytes);
            let _ = parse_report(&bytes);
        }

        #[test]
        fn parsers_never_panic_on_mutated(
            which in 0usize..3, at in any::<prop::sample::Index>(), val in any::<u8>(), cut in any::<prop::sample::Index>()
        ) {
            let base = match which {
                0 => hex(AMTRELAYD_QUERY),
                1 => hex(PROBE_REPORT),
                _ => build_report(ip("fe80::1"), &[GroupRecord {
                    kind: RecordType::ModeIsInclude, group: ip("ff3e::1"), sources: vec![ip("2001:db8::1")]
                }]).unwrap(),
            };
            let mut b = base.clone();
            let i = at.index(b.len());
            b[i] = val;
            b.truncate(cut.index(b.len() + 1));
            let _ = parse_query(&b);
            let _ = parse_report(&b);
        }
    }
}
