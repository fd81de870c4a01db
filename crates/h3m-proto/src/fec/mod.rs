//! Forward error correction over the session's datagrams: the sender adds
//! Reed-Solomon repair datagrams, and a receiver that lost up to that many
//! datagrams of a block rebuilds them, byte for byte, and handles them as
//! though they had arrived.
//!
//! # Where the repair goes
//!
//! Repair datagrams travel to the session's group on **the next UDP port**
//! (the session's port + 1, or the port the Alt-Svc advertisement names in
//! its `fec` parameter). A receiver that knows nothing of FEC, nghq's
//! included, binds only the session's port and never sees them: the session
//! on its own port stays byte-identical to one sent without FEC.
//!
//! # What is protected
//!
//! The source symbols are the session's UDP payloads exactly as sent (short
//! header, protected with `--cipher-suite`), so a lost PUSH_PROMISE, HEADERS
//! or DATA frame header comes back like a lost body byte, and a recovered
//! datagram still has to pass packet protection. The packet number
//! identifies a datagram (after header protection is removed), which is why
//! the sender numbers every datagram it sends consecutively.
//!
//! # Blocks, groups, interleaving
//!
//! The sender collects `block × depth` consecutive datagrams into a *group*
//! and deals them round-robin into `depth` *blocks* (block `i` takes the
//! packet numbers `first + i`, `first + i + depth`, ...), then sends
//! `⌈block × percent / 100⌉` repair symbols per block, the blocks' symbols
//! interleaved, while the next group's datagrams go out. A run of `depth`
//! consecutive losses (a dropped GSO batch, a short outage) costs each block
//! one datagram; an outage of `t` at a rate of `r` datagrams/s is recovered
//! when `t·r / depth` is at most the repair symbols of a block. A group also
//! closes when its first datagram is older than the deadline (live streams:
//! latency stays bounded) and when the session ends. Each repair datagram
//! names its group and block in full (see [`repair`]): the parameters are
//! announced in-band, and a receiver that joins late uses them from the next
//! group on.
//!
//! # The code
//!
//! Systematic Reed-Solomon over GF(2^16) with O(n log n) encoding and
//! decoding (the `reed-solomon-simd` crate): maximum distance separable, so
//! any `K` of a block's `K + R` symbols rebuild it, which a fountain code
//! (RaptorQ) only approaches. Measured on one core of this project's
//! machines with 1200-byte symbols, the `raptorq` crate (RFC 6330) encodes
//! at about 130 MB/s, 0.8 s of CPU per 100 MiB, more than the whole h3m
//! datapath; `reed-solomon-simd` encodes at about 2 GB/s and decodes at
//! about 0.5 GB/s (`cargo bench -p h3m-benches --bench fec` measures it
//! here). Block sizes are bounded (4096 source symbols), which interleaving
//! makes up for.

pub mod decoder;
mod direct;
pub mod encoder;
mod layout;
pub mod repair;

pub use decoder::{FecDecoder, FecStats};
pub use encoder::FecEncoder;
pub use repair::{RepairError, RepairHeader};

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// How a sender protects its datagrams (`h3m-send --fec PERCENT[,block=N][,depth=D][,deadline=MS]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FecConfig {
    /// Repair symbols per block, in percent of its source symbols (rounded up).
    pub percent: u16,
    /// Source symbols per block.
    pub block: u16,
    /// Blocks interleaved in a group.
    pub depth: u16,
    /// A group closes when its first datagram is this old.
    pub deadline: Duration,
}

impl FecConfig {
    /// `percent` repair with the default block (256), depth (16) and
    /// deadline (500 ms: a live stream's repair follows its datagrams within
    /// about twice that, and a group spans enough time for its repair to
    /// outlast a 50 ms outage, see the [module docs](self)).
    pub fn new(percent: u16) -> Self {
        FecConfig { percent, block: 256, depth: 16, deadline: Duration::from_millis(500) }
    }

    /// Source datagrams in a full group.
    pub fn group_len(&self) -> u32 {
        u32::from(self.block) * u32::from(self.depth)
    }

    /// Repair symbols for a block of `sources` source symbols: `percent` of
    /// them, rounded up, and [`SHORT_BLOCK_EXTRA`] more for a block shorter
    /// than `block` (the first group, one closed by its deadline or the
    /// session's end): the fewer datagrams a block has, the more its share of
    /// losses varies around the mean, and short blocks are few.
    pub fn repairs_for(&self, sources: u32) -> u16 {
        let mut r = (u64::from(sources) * u64::from(self.percent)).div_ceil(100).max(1);
        if sources < u32::from(self.block) {
            r += SHORT_BLOCK_EXTRA;
        }
        r.min(u64::from(repair::MAX_BLOCK_REPAIRS)) as u16
    }
}

/// Repair symbols added to each block shorter than the configured block.
pub const SHORT_BLOCK_EXTRA: u64 = 2;

/// Why an FEC setting is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FecConfigError {
    /// Not of the form `PERCENT[,block=N][,depth=D][,deadline=MS]`.
    #[error("`{0}`: expected PERCENT[,block=N][,depth=D][,deadline=MS]")]
    Syntax(String),
    /// A value out of its range.
    #[error("{what} must be in {min}..={max}, got {got}")]
    Range {
        /// Which value.
        what: &'static str,
        /// Its bounds.
        min: u64,
        /// Its bounds.
        max: u64,
        /// What was given.
        got: u64,
    },
}

impl std::str::FromStr for FecConfig {
    type Err = FecConfigError;

    fn from_str(s: &str) -> Result<Self, FecConfigError> {
        let syntax = || FecConfigError::Syntax(s.to_string());
        let mut parts = s.split(',');
        let percent: u64 = parts.next().and_then(|p| p.trim().trim_end_matches('%').parse().ok()).ok_or_else(syntax)?;
        let mut config = FecConfig::new(0);
        let range = |what, min: u64, max: u64, got: u64| {
            if (min..=max).contains(&got) { Ok(got) } else { Err(FecConfigError::Range { what, min, max, got }) }
        };
        config.percent = range("percent", 1, 100, percent)? as u16;
        for part in parts {
            let (key, value) = part.split_once('=').ok_or_else(syntax)?;
            let value: u64 = value.trim().trim_end_matches("ms").parse().map_err(|_| syntax())?;
            match key.trim() {
                "block" => config.block = range("block", 1, u64::from(repair::MAX_BLOCK_SOURCES), value)? as u16,
                "depth" => config.depth = range("depth", 1, u64::from(repair::MAX_DEPTH), value)? as u16,
                "deadline" => config.deadline = Duration::from_millis(range("deadline", 1, 60_000, value)?),
                _ => return Err(syntax()),
            }
        }
        Ok(config)
    }
}

impl std::fmt::Display for FecConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},block={},depth={},deadline={}", self.percent, self.block, self.depth, self.deadline.as_millis())
    }
}

/// Builds the code's lookup tables now: a one-time cost for the whole
/// process (about 10 ms of one core) that the first group's encode or
/// decode would otherwise pay in the middle of the datapath. A driver that
/// will use FEC calls [`prewarm_in_background`] at start.
pub fn prewarm() {
    // A round trip through the smallest block touches every table the
    // encoder and the decoder use.
    let shards = [[1u8; 64], [2u8; 64]];
    if let Ok(recovery) = reed_solomon_simd::encode(2, 1, shards) {
        let _ = reed_solomon_simd::decode(2, 1, [(0, &shards[0])], [(0, &recovery[0])]);
    }
    TABLES.store(TABLES_BUILT, Ordering::Release);
}

/// Builds the code's tables on a thread of its own (`h3m-fec-tables`).
/// Until they are built, a [`FecDecoder`] leaves the blocks it could decode
/// waiting (see [`FecDecoder::poll_timeout`]) rather than build the tables
/// itself in the middle of the receive loop; they decode at the first call
/// after. Does nothing once the tables are built or being built.
pub fn prewarm_in_background() {
    if TABLES.load(Ordering::Acquire) != TABLES_UNASKED
        || TABLES.compare_exchange(TABLES_UNASKED, TABLES_BUILDING, Ordering::AcqRel, Ordering::Acquire).is_err()
    {
        return;
    }
    if std::thread::Builder::new().name("h3m-fec-tables".into()).spawn(prewarm).is_err() {
        // No thread (and no second try): whoever decodes first builds them.
        TABLES.store(TABLES_INLINE, Ordering::Release);
    }
}

/// Whether [`prewarm_in_background`]'s thread is building the tables now
/// (a decode would wait for it).
pub(crate) fn tables_being_built() -> bool {
    TABLES.load(Ordering::Acquire) == TABLES_BUILDING
}

/// Where the code's tables are: not asked for, being built by
/// [`prewarm_in_background`], built, or left to the first decode (no
/// thread could start).
static TABLES: AtomicU8 = AtomicU8::new(TABLES_UNASKED);
const TABLES_UNASKED: u8 = 0;
const TABLES_BUILDING: u8 = 1;
const TABLES_BUILT: u8 = 2;
const TABLES_INLINE: u8 = 3;

/// Bytes of the length prefix of a source symbol.
const LEN_PREFIX: usize = 2;

/// The symbol length of a block whose longest datagram is `longest` bytes:
/// the length prefix plus the datagram, rounded up to even.
fn symbol_len_for(longest: usize) -> usize {
    (LEN_PREFIX + longest).next_multiple_of(2)
}

/// Writes the source symbol of `datagram` into `out` (`symbol_len` bytes).
fn write_source_symbol(datagram: &[u8], symbol_len: usize, out: &mut Vec<u8>) {
    start_source_symbol(datagram, out);
    out.resize(symbol_len, 0);
}

/// Writes the start of the source symbol of `datagram` into `out`: its
/// length prefix and the datagram, without the padding.
fn start_source_symbol(datagram: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&(datagram.len() as u16).to_be_bytes());
    out.extend_from_slice(datagram);
}

/// The datagram inside a rebuilt source symbol, if its length prefix fits.
fn datagram_of_symbol(symbol: &[u8]) -> Option<&[u8]> {
    let len = usize::from(u16::from_be_bytes([*symbol.first()?, *symbol.get(1)?]));
    symbol.get(LEN_PREFIX..LEN_PREFIX + len)
}

#[cfg(test)]
mod tests;
