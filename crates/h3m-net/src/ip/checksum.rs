//! The Internet checksum (RFC 1071).
//!
//! IPv4 headers, IGMP, ICMPv6 (MLD) and UDP all protect their bytes with the
//! 16-bit one's complement of the one's complement sum of the data taken as
//! big-endian 16-bit words. The data is often split across several buffers (a
//! pseudo-header, then a header, then a payload); [`internet_checksum`] takes
//! the pieces as they are and treats them as one concatenated byte string, so
//! a piece of odd length shifts the word alignment of the next piece exactly
//! as the concatenation would.
//!
//! ```
//! use h3m_net::ip::checksum::internet_checksum;
//!
//! // An IPv4 header with its checksum field (octets 10-11) zeroed...
//! let mut header = [
//!     0x45, 0x00, 0x00, 0x1c, 0x00, 0x00, 0x00, 0x00, 0x40, 0x11, 0x00, 0x00,
//!     0xc0, 0x00, 0x02, 0x01, 0xe8, 0x01, 0x01, 0x01,
//! ];
//! let sum = internet_checksum(&[&header]);
//! header[10..12].copy_from_slice(&sum.to_be_bytes());
//! // ...and verification: the checksum over the whole, checksum included, is 0.
//! assert_eq!(internet_checksum(&[&header[..7], &header[7..]]), 0);
//! ```

/// An incremental Internet checksum: feed any number of byte strings with
/// [`Checksum::add`], then read the result with [`Checksum::finish`].
///
/// Equivalent to [`internet_checksum`] over the concatenation of everything
/// added; useful when the pieces are not available as one slice list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checksum {
    /// Sum of big-endian 32-bit words (congruent, modulo 0xffff, to the sum
    /// of 16-bit words); folded after each piece so it cannot overflow.
    sum: u64,
    /// The bytes added so far have odd length: the next byte is the low
    /// octet of a 16-bit word.
    odd: bool,
}

impl Checksum {
    /// An empty checksum (of no bytes).
    pub const fn new() -> Self {
        Checksum { sum: 0, odd: false }
    }

    /// Appends `data` to the checksummed byte string.
    pub fn add(&mut self, data: &[u8]) -> &mut Self {
        let mut data = data;
        if self.odd {
            let Some((&first, rest)) = data.split_first() else { return self };
            self.sum += u64::from(first);
            self.odd = false;
            data = rest;
        }
        // Bounded blocks keep the 64-bit accumulator far from overflow
        // whatever the input size.
        for block in data.chunks(1 << 20) {
            let mut words = block.chunks_exact(4);
            for w in &mut words {
                self.sum += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
            }
            match *words.remainder() {
                [] => {}
                [a] => {
                    self.sum += u64::from(a) << 8;
                    self.odd = true;
                }
                [a, b] => self.sum += u64::from(u16::from_be_bytes([a, b])),
                [a, b, c] => {
                    self.sum += u64::from(u16::from_be_bytes([a, b])) + (u64::from(c) << 8);
                    self.odd = true;
                }
                _ => {}
            }
            self.sum = (self.sum & 0xffff_ffff) + (self.sum >> 32);
        }
        self
    }

    /// The checksum of everything added: the one's complement of the folded
    /// one's complement sum, ready to store in a checksum field. A byte string
    /// that includes its own correct checksum gives 0.
    pub fn finish(&self) -> u16 {
        let mut sum = self.sum;
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        // `sum` <= 0xffff here, so the cast keeps every bit.
        !(sum as u16)
    }
}

/// The RFC 1071 Internet checksum over the concatenation of `parts`.
///
/// To fill a checksum field, compute this with the field zeroed and store the
/// result big-endian. To verify, compute it over the data including the field:
/// the result is 0 when the data is intact (see [`verify`]).
pub fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut c = Checksum::new();
    for part in parts {
        c.add(part);
    }
    c.finish()
}

/// `true` when `parts`, which include their checksum field, check out
/// (their Internet checksum is 0).
pub fn verify(parts: &[&[u8]]) -> bool {
    internet_checksum(parts) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The textbook RFC 1071 loop, 16 bits at a time, for comparison.
    fn reference(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        let mut i = 0;
        while i + 1 < data.len() {
            sum += u32::from(u16::from_be_bytes([data[i], data[i + 1]]));
            i += 2;
        }
        if i < data.len() {
            sum += u32::from(data[i]) << 8;
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of 0001 f203 f4f5 f6f7 is ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(internet_checksum(&[&data]), !0xddf2);
    }

    #[test]
    fn empty_and_zero() {
        assert_eq!(internet_checksum(&[]), 0xffff);
        assert_eq!(internet_checksum(&[&[], &[]]), 0xffff);
        assert_eq!(internet_checksum(&[&[0, 0, 0]]), 0xffff);
    }

    #[test]
    fn captured_ipv4_header_verifies() {
        // The encapsulated query of the amt.md 3.4 example (checksum d536).
        let h = [
            0x46, 0x00, 0x00, 0x24, 0x45, 0x67, 0x00, 0x00, 0x01, 0x02, 0xd5, 0x36, 0xc6, 0x33, 0x64, 0x01, 0xe0, 0x00,
            0x00, 0x01, 0x94, 0x04, 0x00, 0x00,
        ];
        assert!(verify(&[&h]));
        let mut zeroed = h;
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(internet_checksum(&[&zeroed]), 0xd536);
        // The IGMPv3 query after it (checksum ecdb).
        let igmp = [0x11, 0x10, 0x00, 0x00, 0, 0, 0, 0, 0x02, 0x14, 0x00, 0x00];
        assert_eq!(internet_checksum(&[&igmp]), 0xecdb);
    }

    #[test]
    fn odd_length_parts() {
        let data: Vec<u8> = (0u8..=22).map(|b| b.wrapping_mul(37).wrapping_add(5)).collect();
        let whole = internet_checksum(&[&data]);
        assert_eq!(whole, reference(&data));
        // Every split into three parts, including odd and empty ones.
        for i in 0..=data.len() {
            for j in i..=data.len() {
                assert_eq!(internet_checksum(&[&data[..i], &data[i..j], &data[j..]]), whole, "split {i} {j}");
            }
        }
        // Many one-byte parts.
        let singles: Vec<&[u8]> = data.chunks(1).collect();
        assert_eq!(internet_checksum(&singles), whole);
        // An odd part followed by an empty one and then more data.
        assert_eq!(internet_checksum(&[&[0xab], &[], &[0xcd]]), !0xabcd);
    }

    #[test]
    fn incremental_matches() {
        let mut c = Checksum::new();
        c.add(&[1, 2, 3]).add(&[4, 5]);
        assert_eq!(c.finish(), internet_checksum(&[&[1, 2, 3, 4, 5]]));
    }

    proptest! {
        #[test]
        fn matches_reference(data in proptest::collection::vec(any::<u8>(), 0..300), cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6)) {
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
            points.sort_unstable();
            let mut parts = Vec::new();
            let mut at = 0;
            for p in points {
                parts.push(&data[at..p]);
                at = p;
            }
            parts.push(&data[at..]);
            prop_assert_eq!(internet_checksum(&parts), reference(&data));
        }

        #[test]
        fn inserting_checksum_verifies(mut data in proptest::collection::vec(any::<u8>(), 2..200)) {
            data[0] = 0;
            data[1] = 0;
            let c = internet_checksum(&[&data]);
            data[..2].copy_from_slice(&c.to_be_bytes());
            prop_assert!(verify(&[&data]));
        }
    }
}
