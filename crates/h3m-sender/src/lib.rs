//! h3m sender: publishes files, directory trees, live streams and in-memory
//! resources as HTTP/3 server pushes over multicast QUIC, paced to a rate,
//! with repetition for late joiners.
//!
//! * [`publisher::Publisher`]: the embeddable sender: open a session on a
//!   multicast socket, publish resources from memory or streams of unknown
//!   length, end the session (see `examples/publish_from_memory.rs`).
//! * [`run::run`]: `h3m-send`'s run over files, trees, standard input and
//!   watched directories, on top of the publisher.
//! * [`metrics`]: the session's counters for Prometheus (`h3m-send --metrics`).
//!
//! The sans-IO work (headers, packetization, keep-alives, session end) is
//! `h3m_proto::sender::Sender`; this crate adds the file system, the clock, the
//! socket and the pacer.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ambi_metadata;
pub mod metrics;
pub mod prefetch;
pub mod progress;
pub mod publisher;
pub mod qlog;
pub mod read_ahead;
pub mod run;
pub mod tree;
pub mod watch;
