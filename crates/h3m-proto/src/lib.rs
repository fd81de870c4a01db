//! # h3m-proto
//!
//! The sans-IO core of h3m, HTTP/3 over multicast QUIC as profiled by
//! draft-pardue-quic-http-mcast-07 (ALPN `h3m-07`) and spoken by BBC R&D's nghq.
//!
//! Nothing in this crate opens a socket, spawns a task or reads a clock: datagrams
//! and the current time go in as arguments, events and datagrams come out.
//!
//! Layers, bottom up:
//! - [`varint`]: QUIC variable-length integers (RFC 9000 §16).
//! - [`session_id`]: the session ID carried as the destination connection ID.
//! - [`packet`]: short-header packets, packet-number truncation and expansion,
//!   and the packet-protection seam ([`protection`]; AEAD suites in [`aead`]).
//! - [`frame`]: QUIC frames (STREAM, PADDING, PING, RESET_STREAM, the rest recognised).
//! - [`h3`]: HTTP/3 frames as used by h3m (draft-29 type space plus DATA_WITH_OFFSET).
//! - [`qpack`]: static-table QPACK with Huffman, both directions.
//! - [`altsvc`]: the Alt-Svc `h3m-NN` session advertisement.
//! - [`receiver`]: the receiver state machine, datagrams in, events out.
//! - [`encoder`]: resources into datagrams, the packetizing core of a sender.
//! - [`sender`]: the sender state machine: header conventions, keep-alives, session end.
//! - [`qlog`]: qlog (JSON-SEQ) records of packets, frames and pushes.
//!
//! Beside them: [`encoding`] (base64), [`http`] (dates, digest fields,
//! content types, percent-encoding, structured fields) and [`auth`] (content
//! signatures), which the layers above share.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod aead;
pub mod altsvc;
pub mod ambi;
pub mod auth;
pub mod encoder;
pub mod encoding;
pub mod fec;
pub mod frame;
pub mod h3;
pub mod http;
pub mod packet;
pub mod protection;
pub mod qlog;
pub mod qpack;
pub mod receiver;
pub mod sender;
pub mod session_id;
pub mod varint;

pub use session_id::{SessionId, SessionIdError};
