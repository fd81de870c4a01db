//! Rebuilding a few lost datagrams of a block by solving for them.
//!
//! `reed_solomon_simd`'s decoder pays a fixed cost of about half a
//! millisecond per block (it evaluates the erasure locator over all 65 536
//! field elements) whether a block lost one datagram or a hundred: at 1%
//! random loss nearly every block pays it, and it was nearly all of the
//! decoding time. A block that lost `m` symbols, `m` small, is rebuilt here
//! instead from the code's linearity:
//!
//! 1. Every repair symbol is a linear combination of the source symbols,
//!    `repair_i = Σ_j c_ij · source_j` over GF(2^16), column by column. The
//!    coefficients of a block size come from one encode of unit columns
//!    (source `j` holds the field's one in column `j`), kept per block size.
//! 2. Encoding the block with its lost symbols set to zero gives what the
//!    held symbols contribute; XORed with the received repair symbols, it
//!    leaves `d_i = Σ_{j lost} c_ij · source_j`.
//! 3. The `m × m` system of the chosen repair symbols is solved by
//!    Gauss-Jordan elimination (the code is MDS: every such system is
//!    regular), and each lost symbol is a combination of the `d_i`.
//!
//! That is one encode (the sender's cost) and `m²` multiply-adds of a
//! symbol, instead of a decode. Symbols are handled in the code's own
//! layout ([`super::layout::place`]), so that multiplications by the engine
//! pair the same bytes as the code does. The field arithmetic is the code's
//! own (its exponent and logarithm tables), so nothing here depends on how
//! the field is represented.

use reed_solomon_simd::ReedSolomonEncoder;
use reed_solomon_simd::engine::tables::{self, ExpLog};
use reed_solomon_simd::engine::{DefaultEngine, Engine, GF_MODULUS};

/// Most lost symbols a block rebuilds here; beyond, the code's own decoder
/// (its fixed cost is then small beside `m²` multiply-adds).
pub(super) const MAX_DIRECT: usize = 24;

/// Solves for lost symbols (see the module docs).
pub(super) struct DirectDecoder {
    engine: DefaultEngine,
    exp_log: &'static ExpLog,
    encoder: Option<ReedSolomonEncoder>,
    /// Coefficients `c_ij` of one block size: `(k, r)` and `r × k` elements.
    coefficients: Option<((usize, usize), Vec<u16>)>,
    /// Zeros standing in for lost symbols.
    zeros: Vec<u8>,
    /// A product being formed.
    product: Vec<[u8; 64]>,
}

impl std::fmt::Debug for DirectDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectDecoder").field("block", &self.coefficients.as_ref().map(|c| c.0)).finish()
    }
}

impl DirectDecoder {
    pub(super) fn new() -> Self {
        DirectDecoder {
            engine: DefaultEngine::new(),
            exp_log: tables::get_exp_log(),
            encoder: None,
            coefficients: None,
            zeros: Vec::new(),
            product: Vec::new(),
        }
    }

    /// Rebuilds the lost symbols of a block of `k` source and `r` repair
    /// symbols, all `width` bytes (a multiple of 64) in the code's layout.
    /// `sources[j]` is source `j`, `None` where lost; `repairs` are as many
    /// `(index, symbol)` as sources are lost. Pushes the rebuilt symbols to
    /// `out` in the order of the lost positions. False (nothing pushed)
    /// when the code refuses the sizes or the system is singular (symbols
    /// not of this code).
    pub(super) fn rebuild(
        &mut self,
        (k, r, width): (usize, usize, usize),
        sources: &[Option<&[u8]>],
        repairs: &[(usize, &[u8])],
        out: &mut Vec<Vec<u8>>,
    ) -> bool {
        let lost: Vec<usize> = (0..k).filter(|&j| sources[j].is_none()).collect();
        let m = lost.len();
        if m == 0 || m != repairs.len() || width % 64 != 0 || repairs.iter().any(|(i, s)| *i >= r || s.len() != width) {
            return false;
        }
        let Some(c) = self.coefficients(k, r) else { return false };
        // The system: rows are the chosen repair symbols, columns the lost.
        let mut system: Vec<u16> = repairs.iter().flat_map(|(i, _)| lost.iter().map(move |&j| c[i * k + j])).collect();
        let Some(inverse) = invert(&mut system, m, self.exp_log) else { return false };
        // d_i: the received repair symbols minus what the held sources make.
        self.zeros.clear();
        self.zeros.resize(width, 0);
        let encoder = match self.encoder.as_mut() {
            Some(e) => e.reset(k, r, width).map(|()| e),
            None => ReedSolomonEncoder::new(k, r, width).map(|e| self.encoder.insert(e)),
        };
        let Ok(encoder) = encoder else { return false };
        for s in sources {
            if encoder.add_original_shard(s.unwrap_or(&self.zeros)).is_err() {
                return false;
            }
        }
        let Ok(held) = encoder.encode() else { return false };
        let mut d: Vec<Vec<[u8; 64]>> = Vec::with_capacity(m);
        for (i, symbol) in repairs {
            let Some(partial) = held.recovery(*i) else { return false };
            d.push(
                symbol
                    .chunks_exact(64)
                    .zip(partial.chunks_exact(64))
                    .map(|(a, b)| std::array::from_fn(|x| a[x] ^ b[x]))
                    .collect(),
            );
        }
        // Each lost symbol: Σ_a inverse[b][a] · d_a.
        let chunks = width / 64;
        for b in 0..m {
            let mut symbol = vec![[0u8; 64]; chunks];
            for (a, da) in d.iter().enumerate() {
                let factor = inverse[b * m + a];
                if factor == 0 {
                    continue;
                }
                self.product.clear();
                self.product.extend_from_slice(da);
                self.engine.mul(&mut self.product, self.exp_log.log[usize::from(factor)]);
                for (s, p) in symbol.iter_mut().zip(&self.product) {
                    for x in 0..64 {
                        s[x] ^= p[x];
                    }
                }
            }
            out.push(symbol.into_flattened());
        }
        true
    }

    /// The coefficients `c_ij` (row `i`, column `j`) of blocks of `k` source
    /// and `r` repair symbols: one encode of unit columns, kept.
    fn coefficients(&mut self, k: usize, r: usize) -> Option<&[u16]> {
        if self.coefficients.as_ref().is_none_or(|(size, _)| *size != (k, r)) {
            let one = self.exp_log.exp[0];
            let width = k.div_ceil(32) * 64;
            let mut encoder = ReedSolomonEncoder::new(k, r, width).ok()?;
            let mut unit = vec![0u8; width];
            for j in 0..k {
                let at = j / 32 * 64 + j % 32;
                unit[at] = one as u8;
                unit[at + 32] = (one >> 8) as u8;
                encoder.add_original_shard(&unit).ok()?;
                unit[at] = 0;
                unit[at + 32] = 0;
            }
            let result = encoder.encode().ok()?;
            let mut c = Vec::with_capacity(r * k);
            for symbol in result.recovery_iter() {
                c.extend((0..k).map(|j| {
                    let at = j / 32 * 64 + j % 32;
                    u16::from(symbol[at]) | u16::from(symbol[at + 32]) << 8
                }));
            }
            self.coefficients = Some(((k, r), c));
        }
        self.coefficients.as_ref().map(|(_, c)| c.as_slice())
    }
}

/// The product of two field elements.
fn mul(a: u16, b: u16, t: &ExpLog) -> u16 {
    if a == 0 || b == 0 { 0 } else { tables::mul(a, t.log[usize::from(b)], &t.exp, &t.log) }
}

/// The inverse of a non-zero field element.
fn inv(a: u16, t: &ExpLog) -> u16 {
    let log = t.log[usize::from(a)];
    t.exp[usize::from((GF_MODULUS - log) % GF_MODULUS)]
}

/// Inverts the `m × m` matrix `a` (row-major, destroyed) by Gauss-Jordan
/// elimination: `None` when it is singular.
fn invert(a: &mut [u16], m: usize, t: &ExpLog) -> Option<Vec<u16>> {
    let one = t.exp[0];
    let mut inverse = vec![0u16; m * m];
    for i in 0..m {
        inverse[i * m + i] = one;
    }
    for col in 0..m {
        let pivot = (col..m).find(|&row| a[row * m + col] != 0)?;
        if pivot != col {
            for x in 0..m {
                a.swap(pivot * m + x, col * m + x);
                inverse.swap(pivot * m + x, col * m + x);
            }
        }
        let scale = inv(a[col * m + col], t);
        for x in 0..m {
            a[col * m + x] = mul(a[col * m + x], scale, t);
            inverse[col * m + x] = mul(inverse[col * m + x], scale, t);
        }
        for row in (0..m).filter(|&row| row != col) {
            let f = a[row * m + col];
            if f == 0 {
                continue;
            }
            for x in 0..m {
                a[row * m + x] ^= mul(f, a[col * m + x], t);
                inverse[row * m + x] ^= mul(f, inverse[col * m + x], t);
            }
        }
    }
    Some(inverse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fec::layout::{place, placed_len, read_back};

    fn symbols(count: usize, len: usize, seed: u8) -> Vec<Vec<u8>> {
        (0..count).map(|i| (0..len).map(|b| ((i * 131 + b * 7) as u8) ^ seed).collect()).collect()
    }

    /// A block of `k` source symbols of `len` bytes, encoded with `r` repair
    /// symbols: the sources, then the sources and the repair symbols in the
    /// code's layout, and their width.
    #[allow(clippy::type_complexity)]
    fn encoded_block(k: usize, r: usize, len: usize, seed: u8) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Vec<u8>>, usize) {
        let sources = symbols(k, len, seed);
        let mut enc = ReedSolomonEncoder::new(k, r, len).unwrap();
        for s in &sources {
            enc.add_original_shard(s).unwrap();
        }
        let w = placed_len(len);
        let placed = |s: &[u8]| {
            let mut p = vec![0u8; w];
            place(s, &mut p);
            p
        };
        let placed_sources = sources.iter().map(|s| placed(s)).collect();
        let placed_repairs = enc.encode().unwrap().recovery_iter().map(placed).collect();
        (sources, placed_sources, placed_repairs, w)
    }

    /// Lost symbols rebuilt by solving match the sources, for symbol lengths
    /// with and without a partial last chunk, several loss patterns and
    /// choices of repair symbols, and block sizes not a multiple of 32.
    #[test]
    fn rebuilt_symbols_match_the_lost_sources() {
        let mut dd = DirectDecoder::new();
        for (k, r) in [(256usize, 13usize), (40, 6), (3, 2), (1, 2)] {
            for len in [1202usize, 1216, 66, 2] {
                let (sources, placed_sources, placed_repairs, w) = encoded_block(k, r, len, (k + len) as u8);
                let patterns: Vec<Vec<usize>> = vec![vec![0], vec![k - 1], (0..r.min(k)).collect(), vec![k / 2, k - 1]];
                for mut lost in patterns {
                    lost.dedup();
                    if lost.len() > r {
                        continue;
                    }
                    for choice in [(0..lost.len()).collect::<Vec<_>>(), (r - lost.len()..r).collect()] {
                        let held: Vec<Option<&[u8]>> =
                            (0..k).map(|j| (!lost.contains(&j)).then(|| placed_sources[j].as_slice())).collect();
                        let chosen: Vec<(usize, &[u8])> =
                            choice.iter().map(|&i| (i, placed_repairs[i].as_slice())).collect();
                        let mut out = Vec::new();
                        assert!(dd.rebuild((k, r, w), &held, &chosen, &mut out), "k {k} r {r} len {len} {lost:?}");
                        let mut back = Vec::new();
                        for (x, &j) in lost.iter().enumerate() {
                            read_back(&out[x], len, &mut back);
                            assert_eq!(back, sources[j], "k {k} r {r} len {len} lost {lost:?} choice {choice:?}");
                        }
                    }
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Any block size, symbol length, loss pattern within the repair
        /// count and choice of repair symbols: the rebuilt symbols are the
        /// lost ones, byte for byte.
        #[test]
        fn any_loss_within_the_repair_is_rebuilt(
            k in 1usize..300,
            r in 1usize..30,
            half_len in 1usize..700,
            seed in proptest::prelude::any::<u64>(),
        ) {
            let len = 2 * half_len;
            let mut x = seed | 1;
            let mut next = move |bound: usize| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % bound as u64) as usize
            };
            let (sources, placed_sources, placed_repairs, w) = encoded_block(k, r, len, seed as u8);
            let m = 1 + next(r.min(k).min(MAX_DIRECT));
            let mut lost: Vec<usize> = Vec::new();
            while lost.len() < m {
                let j = next(k);
                if !lost.contains(&j) {
                    lost.push(j);
                }
            }
            lost.sort_unstable();
            let mut chosen_idx: Vec<usize> = Vec::new();
            while chosen_idx.len() < m {
                let i = next(r);
                if !chosen_idx.contains(&i) {
                    chosen_idx.push(i);
                }
            }
            let held: Vec<Option<&[u8]>> =
                (0..k).map(|j| (!lost.contains(&j)).then(|| placed_sources[j].as_slice())).collect();
            let chosen: Vec<(usize, &[u8])> = chosen_idx.iter().map(|&i| (i, placed_repairs[i].as_slice())).collect();
            let mut out = Vec::new();
            proptest::prop_assert!(DirectDecoder::new().rebuild((k, r, w), &held, &chosen, &mut out));
            let mut back = Vec::new();
            for (x, &j) in lost.iter().enumerate() {
                read_back(&out[x], len, &mut back);
                proptest::prop_assert_eq!(&back, &sources[j]);
            }
        }
    }

    #[test]
    fn inconsistent_requests_are_refused() {
        let mut dd = DirectDecoder::new();
        let s = vec![0u8; 64];
        let held: Vec<Option<&[u8]>> = vec![None, Some(&s)];
        let mut out = Vec::new();
        // Fewer repair symbols than lost, a width not of 64-byte chunks, an index beyond r.
        assert!(!dd.rebuild((2, 2, 64), &held, &[], &mut out));
        assert!(!dd.rebuild((2, 2, 62), &held, &[(0, &s[..62])], &mut out));
        assert!(!dd.rebuild((2, 2, 64), &held, &[(2, &s)], &mut out));
        assert!(out.is_empty());
    }
}
