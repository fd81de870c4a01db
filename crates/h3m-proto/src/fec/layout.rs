//! The code's layout of a symbol, for working on it chunk by chunk.
//!
//! The code works on 16-bit field elements, column by column, in chunks of
//! 64 bytes: element `x` of a chunk pairs byte `x` (low) with byte `x + 32`
//! (high). A symbol whose length is not a multiple of 64 bytes has its last,
//! partial chunk paired from its two halves instead. [`place`] writes a
//! symbol the way the code lays it out internally (whole chunks as they
//! are, the partial chunk's halves at offsets 0 and 32 of a 64-byte chunk,
//! the rest zero), so that the engine's chunk operations (multiplication by
//! a field element) pair the same bytes as the code does; zero columns stay
//! zero through the code's linear operations. [`read_back`] undoes it.

/// Bytes a symbol of `len` bytes takes once placed: whole 64-byte chunks.
pub(super) fn placed_len(len: usize) -> usize {
    len.next_multiple_of(64)
}

/// Writes `symbol` into `out` (`placed_len(symbol.len())` bytes), laid out as
/// the code lays out a shard of its length.
pub(super) fn place(symbol: &[u8], out: &mut [u8]) {
    let whole = symbol.len() / 64 * 64;
    let tail = symbol.len() - whole;
    out[..whole].copy_from_slice(&symbol[..whole]);
    if tail > 0 {
        let chunk = &mut out[whole..whole + 64];
        chunk.fill(0);
        let half = tail / 2;
        chunk[..half].copy_from_slice(&symbol[whole..whole + half]);
        chunk[32..32 + half].copy_from_slice(&symbol[whole + half..]);
    }
}

/// [`place`] for the source symbol of `datagram` (its length prefix, the
/// datagram, zeros up to `len` bytes), written straight into `out`
/// (`placed_len(len)` bytes) without forming the symbol first.
pub(super) fn place_source(datagram: &[u8], len: usize, out: &mut [u8]) {
    let prefix = (datagram.len() as u16).to_be_bytes();
    let whole = len / 64 * 64;
    if whole > 0 {
        // The whole chunks, as they are (a symbol shorter than a chunk is
        // all tail).
        let head = (super::LEN_PREFIX + datagram.len()).min(whole);
        out[..super::LEN_PREFIX].copy_from_slice(&prefix);
        out[super::LEN_PREFIX..head].copy_from_slice(&datagram[..head - super::LEN_PREFIX]);
        out[head..whole].fill(0);
    }
    let tail = len - whole;
    if tail > 0 {
        let half = tail / 2;
        let chunk = &mut out[whole..whole + 64];
        chunk.fill(0);
        // Symbol byte `t`: the prefix, the datagram, then zeros.
        let byte_at = |t: usize| match t.checked_sub(super::LEN_PREFIX) {
            None => prefix[t],
            Some(d) => datagram.get(d).copied().unwrap_or(0),
        };
        for t in whole..len {
            let byte = byte_at(t);
            let at = t - whole;
            chunk[if at < half { at } else { 32 + at - half }] = byte;
        }
    }
}

/// Reads back into `out` a symbol of `len` bytes that [`place`] laid out in
/// `placed`.
pub(super) fn read_back(placed: &[u8], len: usize, out: &mut Vec<u8>) {
    let whole = len / 64 * 64;
    let half = (len - whole) / 2;
    out.clear();
    out.extend_from_slice(&placed[..whole]);
    if half > 0 {
        out.extend_from_slice(&placed[whole..whole + half]);
        out.extend_from_slice(&placed[whole + 32..whole + 32 + half]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_symbol_is_placed_as_place_would() {
        for len in [2usize, 4, 62, 64, 66, 126, 128, 1202, 1216] {
            for dlen in [0usize, 1, 2, 30, 61, 62, 63, 64, 100, 1200, 1214] {
                if dlen + 2 > len {
                    continue;
                }
                let d: Vec<u8> = (0..dlen).map(|b| b as u8 ^ 0xa5).collect();
                let mut symbol = Vec::new();
                crate::fec::write_source_symbol(&d, len, &mut symbol);
                let mut want = vec![0xee; placed_len(len)];
                place(&symbol, &mut want);
                let mut got = vec![0x77; placed_len(len)];
                place_source(&d, len, &mut got);
                assert_eq!(got, want, "len {len}, datagram {dlen}");
            }
        }
    }

    #[test]
    fn place_and_read_back_round_trip() {
        for len in [2, 30, 62, 64, 66, 126, 128, 1202, 1216] {
            let s: Vec<u8> = (0..len).map(|b| b as u8 ^ 0x5a).collect();
            let mut placed = vec![0xee; placed_len(len)];
            place(&s, &mut placed);
            let mut back = Vec::new();
            read_back(&placed, len, &mut back);
            assert_eq!(back, s, "len {len}");
        }
    }
}
