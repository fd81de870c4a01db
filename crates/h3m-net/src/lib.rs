//! Multicast UDP for h3m (HTTP/3 over multicast QUIC), Linux.
//!
//! * [`open_sender`] / [`open_receiver`]: `std` sockets configured from a [`MulticastConfig`] — outgoing
//!   interface, TTL / hop limit and loopback for senders; `SO_REUSEADDR`/`SO_REUSEPORT`, cleared
//!   `IP_MULTICAST_ALL`, an 8 MiB receive buffer (forced when permitted) and an ASM (*,G) or SSM (S,G) join
//!   for receivers, IPv4 and IPv6. Problems that do not stop the socket come back as [`Warning`]s.
//! * [`SendSocket`] / [`RecvSocket`]: tokio wrappers doing GSO batched sends and recvmmsg + GRO receives
//!   through quinn-udp, with an allocation-free [`RecvBatch`].
//! * [`PacketCapture`]: an `AF_PACKET` capture of an interface's multicast UDP with each frame's
//!   virtio-net offload header (GSO segment size, pending checksum), for an AMT relay.
//! * [`DirEvents`]: inotify on tokio (files closed after writing, entries renamed in), for `--watch`.
//! * [`ip`]: the sans-IO IPv4 / IPv6 / UDP layer: parsing (extension headers, Router Alerts, checksums),
//!   fragment reassembly with bounded memory, and writing packets with valid checksums.
//! * [`Pacer`]: a sans-IO token bucket in bits/s; [`parse_rate`] reads `"10M"`, `"1.5G"`, `"max"`, `"unpaced"`.
//! * `testns` (feature `test-support`): network-namespace and veth helpers for tests.
//! * `logging` (feature `logging`): the binaries' `--log-level` / `--log-format` on standard error.
#![warn(missing_docs)]
#![deny(unsafe_code)]

mod error;
mod iface;
mod inotify;
mod io;
pub mod ip;
#[cfg(feature = "logging")]
pub mod logging;
mod pacer;
mod packet;
mod priority;
mod rate;
mod signals;
mod socket;
#[allow(unsafe_code)]
mod sys;
#[cfg(feature = "test-support")]
pub mod testns;

pub use error::{BufferKind, NetError, Warning, buffer_clamped};
pub use iface::Interface;
pub use inotify::{DirEvent, DirEventKind, DirEvents, WatchId, parse_events};
pub use io::{DEFAULT_SLOT_SIZE, MAX_UDP_PAYLOAD, RecvBatch, RecvDatagram, RecvSocket, SendSocket};
pub use pacer::Pacer;
pub use packet::{CaptureFamily, CapturedFrame, PacketCapture, VIRTIO_NET_HDR_LEN};
pub use priority::lower_thread_priority;
pub use quinn_udp::BATCH_SIZE;
pub use rate::{MAX_KEPT_RATE, ParseRateError, parse_rate};
pub use signals::interrupted;
pub use socket::{DEFAULT_RECV_BUFFER, MulticastConfig, open_receiver, open_sender, open_unicast};
