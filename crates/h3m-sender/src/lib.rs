//! h3m sender: publishes files, directory trees and live streams as HTTP/3
//! server pushes over multicast QUIC, paced to a rate, with repetition for late
//! joiners. The `h3m-send` binary is a thin CLI over [`run::run`].
//!
//! The sans-IO work (headers, packetization, keep-alives, session end) is
//! `h3m_proto::sender::Sender`; this crate adds the file system, the clock, the
//! socket and the pacer.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod progress;
pub mod run;
pub mod tree;
pub mod watch;
