//! The sender's side: datagrams in (with their packet numbers), repair
//! datagrams out (see the [module docs](super)).

use std::collections::VecDeque;
use std::time::Instant;

use reed_solomon_simd::ReedSolomonEncoder;

use super::repair::{RepairHeader, block_sources};
use super::{FecConfig, LEN_PREFIX, start_source_symbol, symbol_len_for};
use crate::SessionId;

/// Most datagrams in the first group of a session: within what a receiver
/// keeps before it knows the session carries FEC
/// ([`super::decoder::INITIAL_WINDOW`]), with room for reordering.
pub const FIRST_GROUP_LEN: u32 = super::decoder::INITIAL_WINDOW as u32 / 2;

/// Collects a session's datagrams into groups and makes their repair
/// datagrams. Sans-IO: the caller hands over each datagram it sends
/// ([`add_source`](Self::add_source)), the time, and takes the repair
/// datagrams ([`poll_repair`](Self::poll_repair)) to send to the repair port.
pub struct FecEncoder {
    config: FecConfig,
    session_id: SessionId,
    /// The group being collected: its first packet number and when it began.
    group: Option<(u64, Instant)>,
    /// Its datagrams, in packet-number order, each as the start of its
    /// source symbol (length prefix and datagram; the padding is added when
    /// its block is encoded, so each datagram is copied once here).
    sources: Vec<Vec<u8>>,
    /// Spent source buffers, for reuse.
    spare: Vec<Vec<u8>>,
    /// Repair datagrams with the time each is due: a group's repair is
    /// spread over as long as the group took to send (at most the
    /// deadline), so an outage takes only part of it.
    repairs: VecDeque<(Instant, Vec<u8>)>,
    rs: Option<ReedSolomonEncoder>,
    stats: FecEncoderStats,
}

/// What an [`FecEncoder`] has made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FecEncoderStats {
    /// Groups closed.
    pub groups: u64,
    /// Blocks encoded.
    pub blocks: u64,
    /// Blocks the code could not encode (sizes it does not support): sent
    /// without repair.
    pub blocks_failed: u64,
    /// Repair datagrams made.
    pub repair_datagrams: u64,
    /// Their bytes.
    pub repair_bytes: u64,
}

impl std::fmt::Debug for FecEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FecEncoder")
            .field("config", &self.config)
            .field("group", &self.group)
            .field("sources", &self.sources.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl FecEncoder {
    /// An encoder for session `session_id`.
    pub fn new(config: FecConfig, session_id: SessionId) -> Self {
        FecEncoder {
            config,
            session_id,
            group: None,
            sources: Vec::new(),
            spare: Vec::new(),
            repairs: VecDeque::new(),
            rs: None,
            stats: FecEncoderStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &FecConfig {
        &self.config
    }

    /// What has been made so far.
    pub fn stats(&self) -> FecEncoderStats {
        self.stats
    }

    /// Adds the datagram numbered `pn`, sent at `now`. Packet numbers must
    /// follow each other; a gap closes the group first.
    pub fn add_source(&mut self, now: Instant, pn: u64, datagram: &[u8]) {
        if let Some((first, _)) = self.group
            && first + self.sources.len() as u64 != pn
        {
            self.close_group(now, false);
        }
        self.group.get_or_insert((pn, now));
        let mut buf = self.spare.pop().unwrap_or_default();
        start_source_symbol(datagram, &mut buf);
        self.sources.push(buf);
        if self.sources.len() as u32 >= self.group_limit() {
            self.close_group(now, false);
        }
    }

    /// Datagrams the open group takes: the first group of a session stops
    /// at [`FIRST_GROUP_LEN`], so that its repair (which tells receivers
    /// the session carries FEC and how much to keep) comes while they still
    /// hold its datagrams.
    fn group_limit(&self) -> u32 {
        let full = self.config.group_len();
        if self.stats.groups == 0 { full.min(FIRST_GROUP_LEN) } else { full }
    }

    /// When the open group's deadline falls, or the next repair datagram is
    /// due, whichever is first.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let deadline = self.group.map(|(_, started)| started + self.config.deadline);
        deadline.into_iter().chain(self.repairs.front().map(|(at, _)| *at)).min()
    }

    /// Closes the open group if its deadline has passed at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.group.is_some_and(|(_, started)| now >= started + self.config.deadline) {
            self.close_group(now, false);
        }
    }

    /// Closes the open group at `now` and makes all its repair due at once
    /// (the session ends).
    pub fn flush(&mut self, now: Instant) {
        self.close_group(now, true);
        for (at, _) in &mut self.repairs {
            *at = (*at).min(now);
        }
    }

    /// Closes the open group at `now`, its repair due over as long as the
    /// group took, as when it fills (the session ends: a burst of the last
    /// repair would be the easiest to lose whole).
    pub fn close_group_now(&mut self, now: Instant) {
        self.close_group(now, false);
    }

    /// The next repair datagram due at `now` (after closing the open group if
    /// its deadline has passed).
    pub fn poll_repair(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.handle_timeout(now);
        if self.repairs.front().is_some_and(|(at, _)| *at <= now) {
            return self.repairs.pop_front().map(|(_, d)| d);
        }
        None
    }

    /// Repair datagrams waiting.
    pub fn queued(&self) -> usize {
        self.repairs.len()
    }

    /// Encodes every block of the open group and queues their repair
    /// datagrams, the blocks' symbols interleaved, due over the time the
    /// group took (`at_once`: all due now).
    fn close_group(&mut self, now: Instant, at_once: bool) {
        let Some((first, started)) = self.group.take() else { return };
        let span = if at_once { std::time::Duration::ZERO } else { (now - started).min(self.config.deadline) };
        let n = self.sources.len() as u32;
        let depth = self.config.depth.max(1);
        // With fewer datagrams than the depth, each block holds one.
        let blocks = u32::from(depth).min(n) as u16;
        let mut per_block: Vec<Vec<Vec<u8>>> = Vec::with_capacity(usize::from(blocks));
        for block in 0..blocks {
            per_block.push(self.encode_block(first, n, depth, block));
        }
        let most = per_block.iter().map(Vec::len).max().unwrap_or(0);
        let total = per_block.iter().map(Vec::len).sum::<usize>().max(1) as u32;
        let mut index = 0;
        for r in 0..most {
            for block in &mut per_block {
                if let Some(d) = block.get_mut(r) {
                    self.stats.repair_bytes += d.len() as u64;
                    self.stats.repair_datagrams += 1;
                    let due = now + span * index / total;
                    // Never before one queued earlier.
                    let due = self.repairs.back().map_or(due, |(last, _)| due.max(*last));
                    self.repairs.push_back((due, std::mem::take(d)));
                    index += 1;
                }
            }
        }
        self.stats.groups += 1;
        self.spare.append(&mut self.sources);
    }

    /// The repair datagrams of block `block` of the group.
    fn encode_block(&mut self, first: u64, n: u32, depth: u16, block: u16) -> Vec<Vec<u8>> {
        let k = block_sources(n, depth, block);
        let member = |j: u32| (u32::from(block) + j * u32::from(depth)) as usize;
        let longest = (0..k).map(|j| self.sources[member(j)].len() - LEN_PREFIX).max().unwrap_or(0);
        let symbol_len = symbol_len_for(longest);
        let r = self.config.repairs_for(k);
        let rs = match self.rs.as_mut() {
            Some(rs) => rs.reset(k as usize, usize::from(r), symbol_len).map(|()| rs),
            None => ReedSolomonEncoder::new(k as usize, usize::from(r), symbol_len).map(|rs| self.rs.insert(rs)),
        };
        let rs = match rs {
            Ok(rs) => rs,
            Err(_) => {
                // Only sizes the configuration rules out (checked by FromStr).
                self.stats.blocks_failed += 1;
                return Vec::new();
            }
        };
        for j in 0..k {
            let symbol = &mut self.sources[member(j)];
            symbol.resize(symbol_len, 0);
            rs.add_original_shard(&symbol[..]).expect("k shards of symbol_len bytes");
        }
        let result = rs.encode().expect("all original shards added");
        let mut header = RepairHeader {
            session_id: self.session_id,
            group_first: first,
            group_len: n,
            full_group_len: self.config.group_len().max(n),
            depth,
            block,
            repair_count: r,
            repair_index: 0,
            symbol_len: symbol_len as u16,
        };
        self.stats.blocks += 1;
        result
            .recovery_iter()
            .enumerate()
            .map(|(i, symbol)| {
                header.repair_index = i as u16;
                let mut d = Vec::new();
                header.write(symbol, &mut d);
                d
            })
            .collect()
    }
}
