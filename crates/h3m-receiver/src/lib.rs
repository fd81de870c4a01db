//! h3m receiver library: reading captures, writing received resources safely,
//! and the `h3m-recv` command.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod capture;
pub mod digest;
pub mod input;
pub mod live;
pub mod offline;
pub mod paths;
pub mod progress;
pub mod report;
mod session;
pub mod verify;
pub mod writer;
