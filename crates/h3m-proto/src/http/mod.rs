//! HTTP helpers shared by the sender, the receiver and [`crate::auth`]:
//! nothing here knows about signatures or sessions.
//!
//! - [`date`]: HTTP dates (RFC 9110 §5.6.7), every form recipients must read
//!   plus nghq's space-padded day.
//! - [`digest`]: the body-digest fields (`digest`, `repr-digest`,
//!   `content-digest`), read and written.
//! - [`mime`]: a content type from a file name.
//! - [`path`]: percent-encoding a `:path` and the strict percent-decoder.
//! - [`sf`]: structured field values (RFC 9651), parsed and serialized.

pub mod date;
pub mod digest;
pub mod mime;
pub mod path;
pub mod sf;
