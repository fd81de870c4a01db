//! AMT (Automatic Multicast Tunneling, RFC 7450) for h3m.
//!
//! Receivers on networks that do not route multicast reach an h3m session
//! through an AMT relay: the relay joins (S,G) natively and unicasts every
//! packet to the gateway inside a Multicast Data message.
//!
//! - [`message`]: the seven AMT messages; strict encoding, length-driven decoding.
//! - [`membership`]: IGMPv3 / MLDv2 reports and general queries, as whole IP packets.
//! - [`inner`]: the IPv4/IPv6 + UDP datagrams carried in Multicast Data.
//! - [`checksum`]: the Internet checksum shared by those codecs.
//! - [`gateway`]: the gateway state machine (discovery, Request/Query/Update, timers, faults).
//! - [`tunnel`]: the gateway's tokio driver, handing decapsulated datagrams to the caller.
//! - [`relay`]: the relay state machine (discovery, stateless MACs, membership state, data plane, faults).
//! - [`relay_capture`]: native capture, sans-IO (GSO super-packets split, partial checksums completed).
//! - [`relay_driver`]: the relay's tokio driver (listening sockets, native joins and capture, test handle).
//! - [`driad`]: DRIAD (RFC 8777), finding relays for a source from DNS AMTRELAY records.
//!
//! The codecs and state machines are sans-IO (no sockets, no clocks: time is
//! an argument); the drivers are thin tokio layers over them.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod checksum;
pub mod driad;
pub mod gateway;
pub mod inner;
pub mod membership;
pub mod message;
pub mod relay;
pub mod relay_capture;
pub mod relay_driver;
pub mod tunnel;
