//! The Internet checksum (RFC 1071) of IPv4 headers, IGMP, ICMPv6 (MLD) and UDP: the IP layer's
//! [`h3m_net::ip::checksum`], re-exported for this crate's codecs and their users.
//!
//! ```
//! use h3m_amt::checksum::{internet_checksum, verify};
//!
//! let mut header = [
//!     0x45, 0x00, 0x00, 0x1c, 0x00, 0x00, 0x00, 0x00, 0x40, 0x11, 0x00, 0x00,
//!     0xc0, 0x00, 0x02, 0x01, 0xe8, 0x01, 0x01, 0x01,
//! ];
//! let sum = internet_checksum(&[&header]);
//! header[10..12].copy_from_slice(&sum.to_be_bytes());
//! assert!(verify(&[&header]));
//! ```

pub use h3m_net::ip::checksum::{Checksum, internet_checksum, verify};
