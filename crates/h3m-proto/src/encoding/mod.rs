//! Byte-to-text encodings shared by every layer: [`base64`] (the `base64`
//! crate with h3m's strictness and error offsets). Hex is the `hex` crate,
//! used directly.

pub mod base64;
