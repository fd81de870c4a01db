//! h3m receiver: receives HTTP/3-over-multicast-QUIC sessions
//! (draft-pardue-quic-http-mcast, nghq's `h3m-07`) into files, memory or a
//! sink of your own, and the `h3m-recv` command.
//!
//! * [`Session`]: one session, I/O-free: hand it datagrams and the time,
//!   poll typed events ([`report::Record`]), find each complete, verified
//!   resource in its [`sink::ResourceSink`] ([`sink::MemorySink`], or the
//!   output directory's [`writer::ResourceWriter`]).
//! * [`live::receive`]: the async driver: joins the group (ASM or SSM, IPv4
//!   or IPv6, natively or through an AMT relay) and runs a session into a
//!   sink until it ends. [`live::run`] is `h3m-recv`'s live mode.
//! * [`offline::run`]: a session from a capture (pcap or `.datagrams`).
//! * [`serve::Server`]: the receiver as a local origin (`h3m-recv --serve`):
//!   every resource received served over HTTP/1.1, with metrics, a status
//!   page and the event feed.
//! * [`monitor`]: stream monitoring (`h3m-monitor`): which of a list of
//!   sessions are up, with rate, loss and last packet, as JSON lines and on
//!   `/metrics`.
//!
//! Receiving a session into memory:
//!
//! ```no_run
//! use h3m_receiver::{live, sink::MemorySink};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let adv = h3m_proto::altsvc::parse_one(r#"h3m-07="239.255.0.1:2000"; session-id=2a"#)?;
//! let opts = live::LiveOptions::from_advertisement(&adv, ".")?;
//! let (outcome, mut sink) = live::receive(&opts, MemorySink::new(256 << 20), |_event| {}).await;
//! for resource in sink.take() {
//!     println!("{}: {} bytes", resource.path.display(), resource.body.len());
//! }
//! println!("{:?}", outcome.status);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ambi;
pub mod capture;
pub mod digest;
pub mod file_worker;
pub mod input;
pub mod live;
pub mod monitor;
pub mod offline;
pub mod paths;
pub mod progress;
pub mod qlog;
pub mod receiver;
pub mod report;
pub mod serve;
mod session;
pub mod sink;
pub mod unicast_repair;
pub mod verify;
pub mod writer;

pub use receiver::{Session, SessionConfig};
pub use session::{ExitStatus, Outcome};
