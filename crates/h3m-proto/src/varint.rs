//! QUIC variable-length integers (RFC 9000 §16).
//!
//! The two high bits of the first byte give the encoded length (1, 2, 4 or 8
//! bytes); the remaining bits, big-endian, give the value. Values go up to
//! 2^62 - 1. Decoding accepts non-minimal encodings (as RFC 9000 requires);
//! encoding is always minimal.

/// The largest value a varint can hold, 2^62 - 1.
pub const MAX: u64 = (1 << 62) - 1;

/// Why a varint could not be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VarIntError {
    /// The input ended inside the integer.
    #[error("input ends inside a variable-length integer")]
    Truncated,
    /// The value is above 2^62 - 1.
    #[error("value {0} does not fit a variable-length integer")]
    TooLarge(u64),
}

/// The number of bytes the minimal encoding of `value` takes.
///
/// Values above [`MAX`] report 8 (callers that encode check the bound).
pub const fn encoded_len(value: u64) -> usize {
    if value < 1 << 6 {
        1
    } else if value < 1 << 14 {
        2
    } else if value < 1 << 30 {
        4
    } else {
        8
    }
}

/// Reads a varint from the front of `buf`; returns the value and the bytes used.
#[inline]
pub fn decode(buf: &[u8]) -> Result<(u64, usize), VarIntError> {
    let first = *buf.first().ok_or(VarIntError::Truncated)?;
    let len = 1usize << (first >> 6);
    let bytes = buf.get(..len).ok_or(VarIntError::Truncated)?;
    let mut value = u64::from(first & 0x3f);
    for &b in &bytes[1..] {
        value = (value << 8) | u64::from(b);
    }
    Ok((value, len))
}

/// Appends the minimal encoding of `value` to `out`.
pub fn encode(value: u64, out: &mut Vec<u8>) -> Result<(), VarIntError> {
    if value > MAX {
        return Err(VarIntError::TooLarge(value));
    }
    match encoded_len(value) {
        1 => out.push(value as u8),
        2 => out.extend_from_slice(&((value as u16) | 0x4000).to_be_bytes()),
        4 => out.extend_from_slice(&((value as u32) | 0x8000_0000).to_be_bytes()),
        _ => out.extend_from_slice(&(value | 0xc000_0000_0000_0000).to_be_bytes()),
    }
    Ok(())
}

/// A cursor over a byte slice that reads varints and fixed fields.
///
/// Every read is bounds-checked; a short input is an error, never a panic.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader positioned at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// How many bytes have been consumed.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The unread bytes.
    pub fn remaining(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Whether every byte has been consumed.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Reads one varint.
    pub fn varint(&mut self) -> Result<u64, VarIntError> {
        let (v, n) = decode(self.remaining())?;
        self.pos += n;
        Ok(v)
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, VarIntError> {
        let b = *self.remaining().first().ok_or(VarIntError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    /// Reads `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], VarIntError> {
        let rest = self.remaining();
        if n > rest.len() {
            return Err(VarIntError::Truncated);
        }
        self.pos += n;
        Ok(&rest[..n])
    }

    /// Reads `n` bytes where `n` came off the wire as a `u64`.
    pub fn bytes_u64(&mut self, n: u64) -> Result<&'a [u8], VarIntError> {
        let n = usize::try_from(n).map_err(|_| VarIntError::Truncated)?;
        self.bytes(n)
    }

    /// Consumes the rest of the input.
    pub fn rest(&mut self) -> &'a [u8] {
        let r = self.remaining();
        self.pos = self.buf.len();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("hex digits")
    }

    #[test]
    fn rfc9000_a1_vectors() {
        for (wire, value) in
            [("c2197c5eff14e88c", 151_288_809_941_952_652u64), ("9d7f3e7d", 494_878_333), ("7bbd", 15_293), ("25", 37)]
        {
            let bytes = hex(wire);
            assert_eq!(decode(&bytes), Ok((value, bytes.len())));
            let mut out = Vec::new();
            encode(value, &mut out).unwrap();
            assert_eq!(out, bytes);
        }
        // Non-minimal encodings decode; re-encoding is minimal.
        assert_eq!(decode(&hex("4025")), Ok((37, 2)));
    }

    #[test]
    fn bounds() {
        assert_eq!(decode(&[]), Err(VarIntError::Truncated));
        assert_eq!(decode(&[0x40]), Err(VarIntError::Truncated));
        assert_eq!(decode(&[0xc0, 0, 0, 0, 0, 0, 0]), Err(VarIntError::Truncated));
        assert_eq!(encode(MAX + 1, &mut Vec::new()), Err(VarIntError::TooLarge(MAX + 1)));
        let mut out = Vec::new();
        encode(MAX, &mut out).unwrap();
        assert_eq!(decode(&out), Ok((MAX, 8)));
    }

    proptest! {
        #[test]
        fn round_trip(v in 0..=MAX, tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut out = Vec::new();
            encode(v, &mut out).unwrap();
            prop_assert_eq!(out.len(), encoded_len(v));
            out.extend_from_slice(&tail);
            prop_assert_eq!(decode(&out), Ok((v, encoded_len(v))));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..10)) {
            let _ = decode(&bytes);
        }
    }
}
