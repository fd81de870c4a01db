//! The seven AMT messages (RFC 7450 section 5.1), as UDP payloads.
//!
//! Every message starts with one octet whose high nibble is the version
//! (always 0) and whose low nibble is the type, so octet 0 is simply the type
//! value 0x01..0x07. Multi-octet integers are big-endian.
//!
//! [`Message::encode`] is strict: it writes exactly the RFC's octets, with
//! every reserved bit zero. [`Message::decode`] is liberal and driven by the
//! datagram length: it ignores reserved bits and tolerates trailing octets
//! after the fixed-size messages (VLC sends a 9-octet Request), but rejects a
//! non-zero version nibble, unknown types and anything shorter than the
//! message's fixed part. Variable parts (the encapsulated query, report or
//! data packet) are borrowed from the input, never copied.
//!
//! # Layouts
//!
//! Relay Discovery (type 1), gateway to discovery address, 8 octets:
//!
//! ```text
//!  0      1      2      3      4      5      6      7
//! +------+------+------+------+------+------+------+------+
//! | 0x01 |      reserved      |      Discovery Nonce      |
//! +------+------+------+------+------+------+------+------+
//! ```
//!
//! Relay Advertisement (type 2), relay to gateway, 12 or 24 octets (the
//! length, not the packet's family, gives the relay address family):
//!
//! ```text
//! +------+------+------+------+------+------+------+------+----------------------+
//! | 0x02 |      reserved      |      Discovery Nonce      | Relay Address (4/16) |
//! +------+------+------+------+------+------+------+------+----------------------+
//! ```
//!
//! Request (type 3), gateway to relay, 8 octets; P (0x01 of octet 1) asks for
//! an MLDv2 rather than an IGMPv3 query:
//!
//! ```text
//! +------+--------+------+------+------+------+------+------+
//! | 0x03 | rsv  |P| reserved    |       Request Nonce       |
//! +------+--------+------+------+------+------+------+------+
//! ```
//!
//! Membership Query (type 4), relay to gateway, 12 + query (+ 18 if G):
//! L (0x02 of octet 1) says the relay accepts no more state, G (0x01) that
//! the Gateway Port and Address trailer is present.
//!
//! ```text
//! +------+----------+---------------------+---------------+-------------------+-----------------------+
//! | 0x04 | rsv  |L|G| Response MAC (6)    | Request Nonce | General Query ... | [Port (2) Addr (16)]  |
//! +------+----------+---------------------+---------------+-------------------+-----------------------+
//!    0        1            2-7                  8-11          12..              last 18 octets if G
//! ```
//!
//! Membership Update (type 5), gateway to relay, 12 + report:
//!
//! ```text
//! +------+------+---------------------+---------------+--------------------------+
//! | 0x05 | rsv  | Response MAC (6)    | Request Nonce | IGMP/MLD report packet   |
//! +------+------+---------------------+---------------+--------------------------+
//! ```
//!
//! Multicast Data (type 6), relay to gateway, 2 + IP datagram:
//!
//! ```text
//! +------+------+------------------------------------+
//! | 0x06 | rsv  | IP multicast datagram ...          |
//! +------+------+------------------------------------+
//! ```
//!
//! Teardown (type 7), gateway to relay, 30 octets:
//!
//! ```text
//! +------+------+---------------------+---------------+------------------+-------------------------+
//! | 0x07 | rsv  | Response MAC (6)    | Request Nonce | Gateway Port (2) | Gateway IP Address (16) |
//! +------+------+---------------------+---------------+------------------+-------------------------+
//! ```
//!
//! The 16-octet Gateway IP Address holds an IPv6 address, or an IPv4 address
//! in the IPv4-compatible form `::a.b.c.d` (96 zero bits, then the IPv4
//! octets). On decoding, any address whose first 12 octets are zero is read as
//! IPv4, so the IPv6 addresses `::/96` (for instance `::1`) come back as IPv4.
//!
//! # Example
//!
//! ```
//! use h3m_amt::message::Message;
//!
//! let bytes = [0x01, 0, 0, 0, 0x0d, 0x15, 0xc0, 0xe1];
//! let msg = Message::decode(&bytes)?;
//! assert_eq!(msg, Message::RelayDiscovery { nonce: 0x0d15c0e1 });
//! let mut out = Vec::new();
//! msg.encode(&mut out);
//! assert_eq!(out, bytes);
//! # Ok::<(), h3m_amt::message::AmtError>(())
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The relay's UDP port (IANA "amt").
pub const AMT_PORT: u16 = 2268;

/// The IPv4 anycast Relay Discovery address (from 192.52.193.0/24).
pub const ANYCAST_V4: Ipv4Addr = Ipv4Addr::new(192, 52, 193, 1);

/// The IPv6 anycast Relay Discovery address (from 2001:3::/32).
pub const ANYCAST_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 3, 0, 0, 0, 0, 0, 1);

/// The 48-bit Response MAC a relay puts in a Membership Query; opaque to the
/// gateway, which echoes it in Updates and Teardowns.
pub type ResponseMac = [u8; 6];

/// Request: the P flag (mask of octet 1): the gateway wants an MLDv2 query.
pub const P_FLAG: u8 = 0x01;
/// Membership Query: the L flag (mask of octet 1): the relay takes no more state.
pub const L_FLAG: u8 = 0x02;
/// Membership Query: the G flag (mask of octet 1): the gateway address trailer is present.
pub const G_FLAG: u8 = 0x01;
/// Length of the Gateway Port + Gateway IP Address fields (Query with G, Teardown).
pub const GATEWAY_FIELDS_LEN: usize = 18;

/// The AMT message type (low nibble of octet 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageType {
    /// Relay Discovery (1).
    RelayDiscovery = 1,
    /// Relay Advertisement (2).
    RelayAdvertisement = 2,
    /// Request (3).
    Request = 3,
    /// Membership Query (4).
    MembershipQuery = 4,
    /// Membership Update (5).
    MembershipUpdate = 5,
    /// Multicast Data (6).
    MulticastData = 6,
    /// Teardown (7).
    Teardown = 7,
}

impl MessageType {
    /// The type with wire value `value`, if any.
    pub const fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => MessageType::RelayDiscovery,
            2 => MessageType::RelayAdvertisement,
            3 => MessageType::Request,
            4 => MessageType::MembershipQuery,
            5 => MessageType::MembershipUpdate,
            6 => MessageType::MulticastData,
            7 => MessageType::Teardown,
            _ => return None,
        })
    }

    /// The shortest valid message of this type (its fixed part; a Membership
    /// Query with the G flag needs 18 more).
    pub const fn min_len(self) -> usize {
        match self {
            MessageType::RelayDiscovery | MessageType::Request => 8,
            MessageType::RelayAdvertisement | MessageType::MembershipQuery | MessageType::MembershipUpdate => 12,
            MessageType::MulticastData => 2,
            MessageType::Teardown => 30,
        }
    }

    /// The RFC's name of the message.
    pub const fn name(self) -> &'static str {
        match self {
            MessageType::RelayDiscovery => "Relay Discovery",
            MessageType::RelayAdvertisement => "Relay Advertisement",
            MessageType::Request => "Request",
            MessageType::MembershipQuery => "Membership Query",
            MessageType::MembershipUpdate => "Membership Update",
            MessageType::MulticastData => "Multicast Data",
            MessageType::Teardown => "Teardown",
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<u8> for MessageType {
    type Error = AmtError;

    fn try_from(value: u8) -> Result<Self, AmtError> {
        MessageType::from_u8(value).ok_or(AmtError::UnknownType(value))
    }
}

/// Why a datagram is not a valid AMT message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmtError {
    /// The datagram has no octets at all.
    #[error("empty AMT datagram")]
    Empty,
    /// The version nibble (high 4 bits of octet 0) is not 0.
    #[error("unsupported AMT version {0} (only version 0 exists)")]
    BadVersion(u8),
    /// The type nibble is not one of 1..=7.
    #[error("unknown AMT message type {0}")]
    UnknownType(u8),
    /// The datagram is shorter than the message's fixed part.
    #[error("truncated {message}: {len} octets, at least {min} needed")]
    Truncated {
        /// The message type octet 0 announced.
        message: MessageType,
        /// The datagram's length.
        len: usize,
        /// The least length this message (with its flags) needs.
        min: usize,
    },
    /// A Relay Advertisement that is neither 12 (IPv4) nor 24 (IPv6) octets.
    #[error("Relay Advertisement of {0} octets (12 for an IPv4 relay or 24 for IPv6 expected)")]
    BadAdvertisementLength(usize),
}

/// One decoded AMT message; variable parts borrow from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// Relay Discovery: a gateway looks for a relay.
    RelayDiscovery {
        /// Discovery Nonce (non-zero in practice: amtrelayd ignores 0).
        nonce: u32,
    },
    /// Relay Advertisement: the relay address to use.
    RelayAdvertisement {
        /// Discovery Nonce echoed from the Relay Discovery.
        nonce: u32,
        /// The relay's unicast address (family from the message length).
        relay: IpAddr,
    },
    /// Request: asks the relay for a Membership Query.
    Request {
        /// P flag: ask for an MLDv2 (IPv6) query instead of IGMPv3.
        mld: bool,
        /// Request Nonce, fresh for every Request.
        nonce: u32,
    },
    /// Membership Query: the relay's answer to a Request.
    MembershipQuery {
        /// L flag: the relay is overloaded and accepts no more state.
        limit: bool,
        /// Response MAC to echo in Updates.
        mac: ResponseMac,
        /// Request Nonce echoed from the Request.
        nonce: u32,
        /// The encapsulated IGMPv3/MLDv2 general query, a whole IP packet.
        query: &'a [u8],
        /// G flag trailer: the gateway's address and port as the relay saw them.
        gateway: Option<SocketAddr>,
    },
    /// Membership Update: the gateway's report.
    MembershipUpdate {
        /// Response MAC from the Query.
        mac: ResponseMac,
        /// Request Nonce from the Query.
        nonce: u32,
        /// The encapsulated IGMPv3/MLDv2 report, a whole IP packet.
        report: &'a [u8],
    },
    /// Multicast Data: one multicast IP datagram, relayed as received.
    MulticastData {
        /// The complete IPv4 or IPv6 datagram.
        packet: &'a [u8],
    },
    /// Teardown: the gateway asks the relay to drop a stale tunnel.
    Teardown {
        /// Response MAC of the tunnel being torn down.
        mac: ResponseMac,
        /// Request Nonce of that tunnel.
        nonce: u32,
        /// The old gateway address and port the relay reported.
        gateway: SocketAddr,
    },
}

impl<'a> Message<'a> {
    /// Decodes one UDP payload.
    ///
    /// Liberal: reserved bits are ignored, fixed-size messages (Discovery,
    /// Request, Teardown) may carry trailing octets, and the Query's G flag
    /// decides whether its last 18 octets are the gateway address trailer.
    /// The encapsulated packets are not inspected (see
    /// [`crate::membership`] and [`crate::inner`]).
    pub fn decode(buf: &'a [u8]) -> Result<Message<'a>, AmtError> {
        let &first = buf.first().ok_or(AmtError::Empty)?;
        let version = first >> 4;
        if version != 0 {
            return Err(AmtError::BadVersion(version));
        }
        let message = MessageType::try_from(first & 0x0f)?;
        let truncated = |min: usize| AmtError::Truncated { message, len: buf.len(), min };
        match message {
            MessageType::RelayDiscovery => {
                let h: &[u8; 8] = buf.first_chunk().ok_or_else(|| truncated(8))?;
                Ok(Message::RelayDiscovery { nonce: u32::from_be_bytes([h[4], h[5], h[6], h[7]]) })
            }
            MessageType::RelayAdvertisement => {
                let h: &[u8; 8] = buf.first_chunk().ok_or_else(|| truncated(12))?;
                let nonce = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                let relay = match buf.get(8..) {
                    Some(&[a, b, c, d]) => IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
                    Some(rest) => match <[u8; 16]>::try_from(rest) {
                        Ok(a) => IpAddr::V6(Ipv6Addr::from(a)),
                        Err(_) if buf.len() < 12 => return Err(truncated(12)),
                        Err(_) => return Err(AmtError::BadAdvertisementLength(buf.len())),
                    },
                    None => return Err(truncated(12)),
                };
                Ok(Message::RelayAdvertisement { nonce, relay })
            }
            MessageType::Request => {
                let h: &[u8; 8] = buf.first_chunk().ok_or_else(|| truncated(8))?;
                Ok(Message::Request { mld: h[1] & P_FLAG != 0, nonce: u32::from_be_bytes([h[4], h[5], h[6], h[7]]) })
            }
            MessageType::MembershipQuery => {
                let (h, rest): (&[u8; 12], &[u8]) = buf.split_first_chunk().ok_or_else(|| truncated(12))?;
                let (mac, nonce) = mac_nonce(h);
                let limit = h[1] & L_FLAG != 0;
                let (query, gateway) = if h[1] & G_FLAG != 0 {
                    let (query, trailer): (&[u8], &[u8; GATEWAY_FIELDS_LEN]) =
                        rest.split_last_chunk().ok_or_else(|| truncated(12 + GATEWAY_FIELDS_LEN))?;
                    (query, Some(decode_gateway(trailer)))
                } else {
                    (rest, None)
                };
                Ok(Message::MembershipQuery { limit, mac, nonce, query, gateway })
            }
            MessageType::MembershipUpdate => {
                let (h, report): (&[u8; 12], &[u8]) = buf.split_first_chunk().ok_or_else(|| truncated(12))?;
                let (mac, nonce) = mac_nonce(h);
                Ok(Message::MembershipUpdate { mac, nonce, report })
            }
            MessageType::MulticastData => {
                let (_, packet): (&[u8; 2], &[u8]) = buf.split_first_chunk().ok_or_else(|| truncated(2))?;
                Ok(Message::MulticastData { packet })
            }
            MessageType::Teardown => {
                let (h, rest): (&[u8; 12], &[u8]) = buf.split_first_chunk().ok_or_else(|| truncated(30))?;
                let trailer: &[u8; GATEWAY_FIELDS_LEN] = rest.first_chunk().ok_or_else(|| truncated(30))?;
                let (mac, nonce) = mac_nonce(h);
                Ok(Message::Teardown { mac, nonce, gateway: decode_gateway(trailer) })
            }
        }
    }

    /// Appends the message's exact RFC encoding to `out` (reserved bits zero,
    /// no trailing octets); [`Message::encoded_len`] octets.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        let t = self.message_type() as u8;
        match *self {
            Message::RelayDiscovery { nonce } => {
                out.extend_from_slice(&[t, 0, 0, 0]);
                out.extend_from_slice(&nonce.to_be_bytes());
            }
            Message::RelayAdvertisement { nonce, relay } => {
                out.extend_from_slice(&[t, 0, 0, 0]);
                out.extend_from_slice(&nonce.to_be_bytes());
                match relay {
                    IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                    IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
                }
            }
            Message::Request { mld, nonce } => {
                out.extend_from_slice(&[t, if mld { P_FLAG } else { 0 }, 0, 0]);
                out.extend_from_slice(&nonce.to_be_bytes());
            }
            Message::MembershipQuery { limit, mac, nonce, query, gateway } => {
                let flags = if limit { L_FLAG } else { 0 } | if gateway.is_some() { G_FLAG } else { 0 };
                out.extend_from_slice(&[t, flags]);
                out.extend_from_slice(&mac);
                out.extend_from_slice(&nonce.to_be_bytes());
                out.extend_from_slice(query);
                if let Some(g) = gateway {
                    encode_gateway(g, out);
                }
            }
            Message::MembershipUpdate { mac, nonce, report } => {
                out.extend_from_slice(&[t, 0]);
                out.extend_from_slice(&mac);
                out.extend_from_slice(&nonce.to_be_bytes());
                out.extend_from_slice(report);
            }
            Message::MulticastData { packet } => {
                out.extend_from_slice(&[t, 0]);
                out.extend_from_slice(packet);
            }
            Message::Teardown { mac, nonce, gateway } => {
                out.extend_from_slice(&[t, 0]);
                out.extend_from_slice(&mac);
                out.extend_from_slice(&nonce.to_be_bytes());
                encode_gateway(gateway, out);
            }
        }
    }

    /// The number of octets [`Message::encode`] appends.
    pub fn encoded_len(&self) -> usize {
        match *self {
            Message::RelayDiscovery { .. } | Message::Request { .. } => 8,
            Message::RelayAdvertisement { relay: IpAddr::V4(_), .. } => 12,
            Message::RelayAdvertisement { relay: IpAddr::V6(_), .. } => 24,
            Message::MembershipQuery { query, gateway, .. } => {
                12 + query.len() + if gateway.is_some() { GATEWAY_FIELDS_LEN } else { 0 }
            }
            Message::MembershipUpdate { report, .. } => 12 + report.len(),
            Message::MulticastData { packet } => 2 + packet.len(),
            Message::Teardown { .. } => 12 + GATEWAY_FIELDS_LEN,
        }
    }

    /// The message's type.
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::RelayDiscovery { .. } => MessageType::RelayDiscovery,
            Message::RelayAdvertisement { .. } => MessageType::RelayAdvertisement,
            Message::Request { .. } => MessageType::Request,
            Message::MembershipQuery { .. } => MessageType::MembershipQuery,
            Message::MembershipUpdate { .. } => MessageType::MembershipUpdate,
            Message::MulticastData { .. } => MessageType::MulticastData,
            Message::Teardown { .. } => MessageType::Teardown,
        }
    }

    /// The message's encoding as a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out
    }
}

/// Response MAC (octets 2-7) and Request Nonce (8-11).
fn mac_nonce(h: &[u8; 12]) -> (ResponseMac, u32) {
    ([h[2], h[3], h[4], h[5], h[6], h[7]], u32::from_be_bytes([h[8], h[9], h[10], h[11]]))
}

/// Gateway Port (2 octets) + Gateway IP Address (16 octets; IPv4-compatible
/// form, 96 zero bits first, for IPv4).
fn decode_gateway(t: &[u8; GATEWAY_FIELDS_LEN]) -> SocketAddr {
    let port = u16::from_be_bytes([t[0], t[1]]);
    let ip = match t[2..] {
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, a, b, c, d] => IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
        _ => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&t[2..]);
            IpAddr::V6(Ipv6Addr::from(a))
        }
    };
    SocketAddr::new(ip, port)
}

fn encode_gateway(g: SocketAddr, out: &mut Vec<u8>) {
    out.extend_from_slice(&g.port().to_be_bytes());
    match g.ip() {
        IpAddr::V4(a) => {
            out.extend_from_slice(&[0; 12]);
            out.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// Decodes, checks the value, and checks the re-encoding is byte-identical.
    fn roundtrip(bytes: &[u8], expected: Message<'_>) {
        let m = Message::decode(bytes).unwrap();
        assert_eq!(m, expected);
        assert_eq!(m.encoded_len(), bytes.len());
        let mut out = vec![0xaa];
        m.encode(&mut out);
        assert_eq!(&out[1..], bytes, "re-encoding of {m:?}");
    }

    const MAC: ResponseMac = [0x93, 0xe0, 0x29, 0xca, 0x96, 0xeb];

    #[test]
    fn constants() {
        assert_eq!(AMT_PORT, 2268);
        assert_eq!(ANYCAST_V4.to_string(), "192.52.193.1");
        assert_eq!(ANYCAST_V6.to_string(), "2001:3::1");
        for v in 1..=7u8 {
            assert_eq!(MessageType::from_u8(v).unwrap() as u8, v);
        }
        assert_eq!(MessageType::from_u8(0), None);
        assert_eq!(MessageType::from_u8(8), None);
        assert_eq!(MessageType::try_from(9), Err(AmtError::UnknownType(9)));
    }

    #[test]
    fn relay_discovery() {
        roundtrip(&hex("01000000 0d15c0e1"), Message::RelayDiscovery { nonce: 0x0d15c0e1 });
        roundtrip(&hex("01000000 00000000"), Message::RelayDiscovery { nonce: 0 });
    }

    #[test]
    fn relay_advertisement() {
        roundtrip(
            &hex("02000000 0d15c0e1 cb007101"),
            Message::RelayAdvertisement { nonce: 0x0d15c0e1, relay: "203.0.113.1".parse().unwrap() },
        );
        roundtrip(
            &hex("02000000 74b0dc51 20010db8011300000000000000000001"),
            Message::RelayAdvertisement { nonce: 0x74b0dc51, relay: "2001:db8:113::1".parse().unwrap() },
        );
    }

    #[test]
    fn request_and_p_flag() {
        roundtrip(&hex("03000000 5eed0001"), Message::Request { mld: false, nonce: 0x5eed0001 });
        roundtrip(&hex("03010000 5eed00f1"), Message::Request { mld: true, nonce: 0x5eed00f1 });
        // The Linux kernel's P position (0x80) and other reserved bits are not P.
        for octet1 in [0x80u8, 0x40, 0x02, 0xfe] {
            let b = [3, octet1, 0xff, 0xff, 0, 0, 0, 7];
            assert_eq!(Message::decode(&b), Ok(Message::Request { mld: false, nonce: 7 }), "{octet1:#x}");
        }
        assert_eq!(Message::decode(&[3, 0xff, 0, 0, 0, 0, 0, 7]), Ok(Message::Request { mld: true, nonce: 7 }));
        // VLC's 9-octet Request (one trailing zero) is accepted; we send 8.
        let vlc = hex("03000000 12345678 00");
        let m = Message::decode(&vlc).unwrap();
        assert_eq!(m, Message::Request { mld: false, nonce: 0x12345678 });
        assert_eq!(m.to_vec(), &vlc[..8]);
    }

    const INNER_QUERY: &str = "46000024 45670000 0102d536 c6336401 e0000001 94040000 1110ecdb 00000000 02140000";

    #[test]
    fn membership_query() {
        let bytes = hex(&format!("0400 93e029ca96eb 5eed0001 {INNER_QUERY}"));
        let inner = hex(INNER_QUERY);
        assert_eq!(inner.len(), 36);
        roundtrip(
            &bytes,
            Message::MembershipQuery { limit: false, mac: MAC, nonce: 0x5eed0001, query: &inner, gateway: None },
        );
    }

    #[test]
    fn membership_query_flags() {
        let inner = hex(INNER_QUERY);
        let v4: SocketAddr = "203.0.113.2:40001".parse().unwrap();
        // L only.
        let l = hex(&format!("0402 93e029ca96eb 5eed0001 {INNER_QUERY}"));
        roundtrip(
            &l,
            Message::MembershipQuery { limit: true, mac: MAC, nonce: 0x5eed0001, query: &inner, gateway: None },
        );
        // G: trailer with port 40001 and ::203.0.113.2.
        let g = hex(&format!("0401 93e029ca96eb 5eed0001 {INNER_QUERY} 9c41 000000000000000000000000cb007102"));
        roundtrip(
            &g,
            Message::MembershipQuery { limit: false, mac: MAC, nonce: 0x5eed0001, query: &inner, gateway: Some(v4) },
        );
        // L and G, IPv6 gateway address.
        let v6: SocketAddr = "[2001:db8:113::2]:2268".parse().unwrap();
        let lg = hex(&format!("0403 93e029ca96eb 5eed0001 {INNER_QUERY} 08dc 20010db8011300000000000000000002"));
        roundtrip(
            &lg,
            Message::MembershipQuery { limit: true, mac: MAC, nonce: 0x5eed0001, query: &inner, gateway: Some(v6) },
        );
        // The kernel's L/G positions (0x40/0x80) and other reserved bits are ignored.
        for octet1 in [0x80u8, 0x40, 0xc0, 0xfc] {
            let mut b = hex(&format!("0400 93e029ca96eb 5eed0001 {INNER_QUERY}"));
            b[1] = octet1;
            let m = Message::decode(&b).unwrap();
            assert_eq!(
                m,
                Message::MembershipQuery { limit: false, mac: MAC, nonce: 0x5eed0001, query: &inner, gateway: None },
                "{octet1:#x}"
            );
            assert_eq!(m.to_vec()[1], 0);
        }
        // G set but fewer than 18 octets after the header.
        let short = hex("0401 93e029ca96eb 5eed0001 0102030405060708090a0b0c0d0e0f1011");
        assert_eq!(
            Message::decode(&short),
            Err(AmtError::Truncated { message: MessageType::MembershipQuery, len: 29, min: 30 })
        );
        // G set with exactly the trailer: empty query.
        let bare = hex("0401 93e029ca96eb 5eed0001 9c41 000000000000000000000000cb007102");
        roundtrip(
            &bare,
            Message::MembershipQuery { limit: false, mac: MAC, nonce: 0x5eed0001, query: &[], gateway: Some(v4) },
        );
    }

    #[test]
    fn membership_update() {
        let report =
            "46c0002c 00004000 0102c7f2 cb007102 e0000016 94040000 2200c9bc 00000001 01000001 e8010101 c633640a";
        let bytes = hex(&format!("0500 93e029ca96eb 5eed0001 {report}"));
        let inner = hex(report);
        roundtrip(&bytes, Message::MembershipUpdate { mac: MAC, nonce: 0x5eed0001, report: &inner });
        // Reserved octet 1 ignored.
        let mut odd = bytes.clone();
        odd[1] = 0xff;
        assert_eq!(Message::decode(&odd), Message::decode(&bytes));
    }

    #[test]
    fn multicast_data() {
        roundtrip(&hex("0600 4500"), Message::MulticastData { packet: &[0x45, 0x00] });
        roundtrip(&hex("0600"), Message::MulticastData { packet: &[] });
        assert_eq!(Message::decode(&hex("06ff 45")), Ok(Message::MulticastData { packet: &[0x45] }));
    }

    #[test]
    fn teardown() {
        let bytes = hex("0700 93e029ca96eb 5eed0001 9c41 000000000000000000000000cb007102");
        roundtrip(
            &bytes,
            Message::Teardown { mac: MAC, nonce: 0x5eed0001, gateway: "203.0.113.2:40001".parse().unwrap() },
        );
        let v6 = hex("0700 93e029ca96eb 5eed0001 9c41 fe800000000000000000000000000001");
        roundtrip(&v6, Message::Teardown { mac: MAC, nonce: 0x5eed0001, gateway: "[fe80::1]:40001".parse().unwrap() });
        // Trailing octets tolerated.
        let mut long = bytes.clone();
        long.extend_from_slice(&[0, 0]);
        assert_eq!(Message::decode(&long), Message::decode(&bytes));
    }

    #[test]
    fn errors() {
        assert_eq!(Message::decode(&[]), Err(AmtError::Empty));
        assert_eq!(Message::decode(&hex("11000000 0d15c0e1")), Err(AmtError::BadVersion(1)));
        assert_eq!(Message::decode(&hex("f3")), Err(AmtError::BadVersion(15)));
        assert_eq!(Message::decode(&hex("00000000 00000000")), Err(AmtError::UnknownType(0)));
        assert_eq!(Message::decode(&hex("08")), Err(AmtError::UnknownType(8)));
        assert_eq!(Message::decode(&hex("0f000000")), Err(AmtError::UnknownType(15)));
        let t = |message, len, min| Err(AmtError::Truncated { message, len, min });
        assert_eq!(Message::decode(&hex("01000000 0d15c0")), t(MessageType::RelayDiscovery, 7, 8));
        assert_eq!(Message::decode(&hex("01")), t(MessageType::RelayDiscovery, 1, 8));
        assert_eq!(Message::decode(&hex("02000000 0d15c0e1 cb0071")), t(MessageType::RelayAdvertisement, 11, 12));
        assert_eq!(Message::decode(&hex("02000000")), t(MessageType::RelayAdvertisement, 4, 12));
        assert_eq!(Message::decode(&hex("03010000 5eed00")), t(MessageType::Request, 7, 8));
        assert_eq!(Message::decode(&hex("0400 93e029ca96eb 5eed00")), t(MessageType::MembershipQuery, 11, 12));
        assert_eq!(Message::decode(&hex("0500 93e029ca96eb")), t(MessageType::MembershipUpdate, 8, 12));
        assert_eq!(Message::decode(&hex("06")), t(MessageType::MulticastData, 1, 2));
        assert_eq!(
            Message::decode(&hex("0700 93e029ca96eb 5eed0001 9c41 000000000000000000000000cb0071")),
            t(MessageType::Teardown, 29, 30)
        );
        assert_eq!(Message::decode(&hex("0700 93e029ca96eb")), t(MessageType::Teardown, 8, 30));
        for len in [13usize, 16, 20, 23, 25, 40] {
            let mut b = hex("02000000 0d15c0e1");
            b.resize(len, 0);
            assert_eq!(Message::decode(&b), Err(AmtError::BadAdvertisementLength(len)));
        }
    }

    #[test]
    fn error_texts() {
        assert_eq!(
            AmtError::Truncated { message: MessageType::Teardown, len: 29, min: 30 }.to_string(),
            "truncated Teardown: 29 octets, at least 30 needed"
        );
        assert_eq!(AmtError::BadVersion(1).to_string(), "unsupported AMT version 1 (only version 0 exists)");
        assert_eq!(AmtError::UnknownType(8).to_string(), "unknown AMT message type 8");
        assert!(AmtError::BadAdvertisementLength(13).to_string().contains("13 octets"));
    }

    #[test]
    fn gateway_address_forms() {
        // ::/96 reads as IPv4 (IPv4-compatible form); IPv4-mapped stays IPv6.
        let mapped = hex("0700 000000000000 00000001 0001 00000000000000000000ffffcb007102");
        let Message::Teardown { gateway, .. } = Message::decode(&mapped).unwrap() else { panic!() };
        assert_eq!(gateway, "[::ffff:203.0.113.2]:1".parse().unwrap());
        let zero = hex("0700 000000000000 00000001 0000 00000000000000000000000000000000");
        let Message::Teardown { gateway, .. } = Message::decode(&zero).unwrap() else { panic!() };
        assert_eq!(gateway, "0.0.0.0:0".parse().unwrap());
    }

    // ---- property tests --------------------------------------------------

    fn ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|a| IpAddr::V4(a.into())),
            // ::/96 would come back as IPv4 (see the module docs).
            any::<[u8; 16]>().prop_filter("not ::/96", |a| a[..12] != [0; 12]).prop_map(|a| IpAddr::V6(a.into())),
        ]
    }

    fn sock() -> impl Strategy<Value = SocketAddr> {
        (ip(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(ip, port))
    }

    /// Owned form of a message so proptest can generate the borrowed parts.
    #[derive(Debug, Clone)]
    enum Owned {
        Discovery(u32),
        Advertisement(u32, IpAddr),
        Request(bool, u32),
        Query(bool, ResponseMac, u32, Vec<u8>, Option<SocketAddr>),
        Update(ResponseMac, u32, Vec<u8>),
        Data(Vec<u8>),
        Teardown(ResponseMac, u32, SocketAddr),
    }

    impl Owned {
        fn message(&self) -> Message<'_> {
            match self {
                Owned::Discovery(nonce) => Message::RelayDiscovery { nonce: *nonce },
                Owned::Advertisement(nonce, relay) => Message::RelayAdvertisement { nonce: *nonce, relay: *relay },
                Owned::Request(mld, nonce) => Message::Request { mld: *mld, nonce: *nonce },
                Owned::Query(limit, mac, nonce, query, gateway) => {
                    Message::MembershipQuery { limit: *limit, mac: *mac, nonce: *nonce, query, gateway: *gateway }
                }
                Owned::Update(mac, nonce, report) => Message::MembershipUpdate { mac: *mac, nonce: *nonce, report },
                Owned::Data(packet) => Message::MulticastData { packet },
                Owned::Teardown(mac, nonce, gateway) => {
                    Message::Teardown { mac: *mac, nonce: *nonce, gateway: *gateway }
                }
            }
        }
    }

    fn owned() -> impl Strategy<Value = Owned> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..100);
        prop_oneof![
            any::<u32>().prop_map(Owned::Discovery),
            (any::<u32>(), ip()).prop_map(|(n, a)| Owned::Advertisement(n, a)),
            (any::<bool>(), any::<u32>()).prop_map(|(p, n)| Owned::Request(p, n)),
            (any::<bool>(), any::<ResponseMac>(), any::<u32>(), bytes(), proptest::option::of(sock()))
                .prop_map(|(l, m, n, q, g)| Owned::Query(l, m, n, q, g)),
            (any::<ResponseMac>(), any::<u32>(), bytes()).prop_map(|(m, n, r)| Owned::Update(m, n, r)),
            bytes().prop_map(Owned::Data),
            (any::<ResponseMac>(), any::<u32>(), sock()).prop_map(|(m, n, g)| Owned::Teardown(m, n, g)),
        ]
    }

    proptest! {
        #[test]
        fn encode_decode_roundtrip(o in owned()) {
            let m = o.message();
            let bytes = m.to_vec();
            prop_assert_eq!(bytes.len(), m.encoded_len());
            prop_assert_eq!(bytes[0], m.message_type() as u8);
            prop_assert_eq!(Message::decode(&bytes), Ok(m));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(m) = Message::decode(&bytes) {
                // Whatever decodes re-encodes to something that decodes the same.
                let again = m.to_vec();
                prop_assert_eq!(Message::decode(&again), Ok(m));
                prop_assert!(again.len() <= bytes.len());
            }
        }

        #[test]
        fn decode_typed_prefix(t in 1u8..=7, rest in proptest::collection::vec(any::<u8>(), 0..60)) {
            let mut bytes = vec![t];
            bytes.extend_from_slice(&rest);
            match Message::decode(&bytes) {
                Ok(m) => {
                    prop_assert_eq!(m.message_type() as u8, t);
                    let again = m.to_vec();
                    prop_assert_eq!(Message::decode(&again), Ok(m));
                }
                Err(AmtError::Truncated { message, len, min }) => {
                    prop_assert_eq!(message as u8, t);
                    prop_assert_eq!(len, bytes.len());
                    prop_assert!(len < min);
                }
                Err(AmtError::BadAdvertisementLength(len)) => prop_assert_eq!(t, 2, "{}", len),
                Err(e) => prop_assert!(false, "unexpected {:?}", e),
            }
        }
    }
}
