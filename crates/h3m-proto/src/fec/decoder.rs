//! The receiver's side: keeps the recent datagrams by packet number, collects
//! repair symbols per block, and rebuilds the lost datagrams of a block once
//! it holds as many repair symbols as the block misses (see the
//! [module docs](super)).
//!
//! Memory is bounded whatever arrives: the window of recent datagrams has a
//! fixed number of slots ([`FecDecoder::new`]'s `max_window`; 2048 until the
//! first repair datagram names the group size), repair symbols held for
//! blocks not yet decodable have a byte budget, and blocks whose datagrams
//! have left the window are given up (counted in
//! [`FecStats::blocks_unrecovered`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use reed_solomon_simd::ReedSolomonDecoder;

use super::datagram_of_symbol;
use super::direct::{DirectDecoder, MAX_DIRECT};
use super::layout::{place, place_source, placed_len, read_back};
use super::repair::RepairHeader;
use super::write_source_symbol;
use crate::SessionId;

/// Window slots before the first repair datagram (about 2.4 MiB of
/// 1200-byte datagrams): enough to cover the first group's datagrams that
/// arrive before its repair is known to exist. Only a session's first
/// datagrams are kept before then.
pub const INITIAL_WINDOW: usize = 2048;
/// Default most datagrams kept (three default groups and more: configured
/// groups up to about 6 800 datagrams fit whole).
pub const DEFAULT_MAX_WINDOW: usize = 20_480;
/// Default budget for repair symbols of blocks not yet decodable.
pub const DEFAULT_REPAIR_BUDGET: usize = 16 << 20;

/// What a held repair symbol costs the budget beyond its bytes: its `Vec`
/// and index, and at most its block's entries in the pending map, the
/// pending groups and the give-up order. Forged repair with the smallest
/// symbols (2 bytes) for ever new blocks is then held to the budget in
/// entries too, not only in symbol bytes.
const SYMBOL_OVERHEAD: usize = 192;
/// Longest a decodable block waits for the receiver to reach its last
/// datagram before it decodes anyway.
pub const DEFER_LIMIT: Duration = Duration::from_millis(200);
/// How often blocks waiting for the code's tables look whether they are
/// built (when no datagram comes to make them look).
pub const TABLES_POLL: Duration = Duration::from_millis(1);

/// How far (in packet numbers) beyond the largest datagram handled a repair
/// datagram's block may end and still be kept: a receiver that falls behind
/// reads the repair port (a twentieth of the traffic) ahead of the backlog in
/// its data socket's receive buffer, which holds up to ~55 000 datagrams at
/// the default 64 MiB. What is kept stays within the repair budget.
pub const REPAIR_AHEAD: u64 = 1 << 18;
/// Finished blocks remembered, so their late repair symbols are skipped.
const DONE_REMEMBERED: usize = 8192;

/// FEC counters of a receiver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct FecStats {
    /// Repair datagrams of this session received.
    pub repair_datagrams: u64,
    /// Repair datagrams dropped as malformed or inconsistent with their block.
    pub repair_malformed: u64,
    /// Repair datagrams of other sessions.
    pub repair_foreign: u64,
    /// Repair symbols not needed (their block was whole or already rebuilt).
    pub repair_unneeded: u64,
    /// Datagrams rebuilt and handed to the receiver.
    pub datagrams_recovered: u64,
    /// Blocks that needed decoding and were rebuilt.
    pub blocks_decoded: u64,
    /// Blocks that lost more than their repair could rebuild (or whose
    /// datagrams left the window first): the sum of the four below.
    pub blocks_unrecovered: u64,
    /// Of those: still short of repair when the session ended.
    pub unrecovered_at_end: u64,
    /// Of those: given up when their datagrams left the window.
    pub unrecovered_window: u64,
    /// Of those: given up to keep within the repair budget.
    pub unrecovered_budget: u64,
    /// Of those: the code failed (inconsistent symbols: forged or stale).
    pub decode_failures: u64,
    /// Datagrams the window holds at most now.
    pub window: u64,
}

/// A block that lost datagrams, collecting repair symbols.
struct PendingBlock {
    header: RepairHeader,
    /// Datagrams it missed when last counted.
    missing: u32,
    repairs: Vec<(u16, Vec<u8>)>,
}

/// One slot of the window: the datagram with packet number `pn`.
#[derive(Default)]
struct Slot {
    pn: Option<u64>,
    data: Vec<u8>,
}

/// Rebuilds lost datagrams from repair datagrams (see the [module docs](self)).
pub struct FecDecoder {
    session_id: SessionId,
    window: Vec<Slot>,
    max_window: usize,
    largest: Option<u64>,
    pending: foldhash::HashMap<(u64, u16), PendingBlock>,
    /// Groups with pending blocks: first packet number to (length, depth,
    /// pending blocks), so an arriving datagram finds its block.
    pending_groups: std::collections::BTreeMap<u64, (u32, u16, usize)>,
    /// Blocks that could decode but whose last datagram is newer than any
    /// received (their repair came first): `(last packet number, block)`.
    /// Decoding them then would hand the receiver datagrams from its future
    /// (streams before their promises); they wait until it catches up.
    deferred: std::collections::BTreeSet<(u64, (u64, u16))>,
    /// When each deferred block was deferred: after [`DEFER_LIMIT`] it
    /// decodes anyway (the datagrams it waits for were lost, the last of a
    /// session or of a pause in a live stream).
    deferred_at: VecDeque<(Instant, (u64, u16))>,
    /// The time of the latest call that gave one.
    clock: Option<Instant>,
    /// A repair datagram of the session arrived: datagrams are kept.
    active: bool,
    /// Datagrams seen while not active: the first [`INITIAL_WINDOW`] are
    /// kept (the first group's repair may be read after them), later ones
    /// not (a session without FEC costs nothing more).
    seen_inactive: usize,
    order: VecDeque<(u64, u16)>,
    done: foldhash::HashSet<(u64, u16)>,
    done_order: VecDeque<(u64, u16)>,
    held: usize,
    budget: usize,
    recovered: VecDeque<(u64, Vec<u8>)>,
    rs: Option<ReedSolomonDecoder>,
    /// Rebuilds blocks that lost a few datagrams (made at the first).
    direct: Option<Box<DirectDecoder>>,
    /// Blocks that could decode while another thread built the code's
    /// tables ([`super::prewarm_in_background`]): they decode at the first
    /// call after (a set: a block is in it once, however often its repair
    /// comes).
    waiting_tables: foldhash::HashSet<(u64, u16)>,
    /// Whether another thread builds the code's tables now
    /// ([`super::tables_being_built`]; a test's own in tests).
    tables_being_built: fn() -> bool,
    symbol: Vec<u8>,
    /// A block's symbols in the code's layout, for `direct`.
    placed: Vec<u8>,
    stats: FecStats,
}

impl std::fmt::Debug for FecDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FecDecoder")
            .field("window", &self.window.len())
            .field("pending", &self.pending.len())
            .field("held", &self.held)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl FecDecoder {
    /// A decoder for `session_id` keeping at most `max_window` datagrams and
    /// `repair_budget` bytes of repair symbols.
    pub fn new(session_id: SessionId, max_window: usize, repair_budget: usize) -> Self {
        FecDecoder {
            session_id,
            window: Vec::new(),
            max_window: max_window.max(1),
            largest: None,
            pending: Default::default(),
            pending_groups: Default::default(),
            deferred: Default::default(),
            deferred_at: VecDeque::new(),
            clock: None,
            active: false,
            seen_inactive: 0,
            order: VecDeque::new(),
            done: Default::default(),
            done_order: VecDeque::new(),
            held: 0,
            budget: repair_budget,
            recovered: VecDeque::new(),
            rs: None,
            direct: None,
            waiting_tables: Default::default(),
            tables_being_built: super::tables_being_built,
            symbol: Vec::new(),
            placed: Vec::new(),
            stats: FecStats::default(),
        }
    }

    /// Whether another thread builds the code's tables, as the test says.
    #[cfg(test)]
    pub(crate) fn set_tables_probe(&mut self, probe: fn() -> bool) {
        self.tables_being_built = probe;
    }

    /// The counters.
    pub fn stats(&self) -> &FecStats {
        &self.stats
    }

    /// Bytes held: the window's datagrams and the pending repair symbols
    /// (each charged its bookkeeping too).
    pub fn held_bytes(&self) -> usize {
        self.window.iter().map(|s| s.data.capacity()).sum::<usize>() + self.held
    }

    /// Blocks waiting for more symbols or for their datagrams.
    pub fn pending_blocks(&self) -> usize {
        self.pending.len()
    }

    /// Keeps the datagram numbered `pn` (as received, before packet
    /// protection is removed) for the blocks it belongs to.
    pub fn add_source(&mut self, pn: u64, datagram: &[u8]) {
        if !self.active {
            if self.seen_inactive >= INITIAL_WINDOW {
                return;
            }
            self.seen_inactive += 1;
        }
        if self.window.is_empty() {
            self.resize(INITIAL_WINDOW.min(self.max_window));
        }
        self.largest = Some(self.largest.map_or(pn, |l| l.max(pn)));
        let n = self.window.len() as u64;
        let slot = &mut self.window[(pn % n) as usize];
        // A slot holding a newer datagram: this one is outside the window.
        if slot.pn.is_none_or(|old| old <= pn) {
            let fresh = slot.pn != Some(pn);
            slot.pn = Some(pn);
            slot.data.clear();
            slot.data.extend_from_slice(datagram);
            if fresh {
                self.source_arrived(pn);
            }
        }
        // Blocks that waited for the receiver to reach their last datagram
        // (counted with this one in the window, so it is not rebuilt).
        let largest = self.largest.unwrap_or(pn);
        while let Some(&(last, key)) = self.deferred.first() {
            if last > largest {
                break;
            }
            self.deferred.pop_first();
            self.try_decode(key);
        }
        self.decode_waiting();
    }

    /// A datagram of a block waiting for repair arrived after its repair
    /// (the repair port is read on its own): the block may now decode.
    fn source_arrived(&mut self, pn: u64) {
        let Some((&first, &(len, depth, _))) = self.pending_groups.range(..=pn).next_back() else { return };
        if pn >= first + u64::from(len) {
            return;
        }
        let key = (first, ((pn - first) % u64::from(depth)) as u16);
        let Some(p) = self.pending.get_mut(&key) else { return };
        p.missing = p.missing.saturating_sub(1);
        if p.repairs.len() as u32 >= p.missing {
            self.try_decode(key);
        }
    }

    /// Handles a repair datagram; datagrams it lets the decoder rebuild
    /// become available from [`poll_recovered`](Self::poll_recovered).
    pub fn add_repair(&mut self, now: Instant, datagram: &[u8]) {
        self.clock = Some(now);
        self.decode_waiting();
        let (header, symbol) = match RepairHeader::parse(datagram) {
            Ok(x) => x,
            Err(_) => {
                self.stats.repair_malformed += 1;
                return;
            }
        };
        if header.session_id != self.session_id {
            self.stats.repair_foreign += 1;
            return;
        }
        self.stats.repair_datagrams += 1;
        self.active = true;
        // A group's last repair comes while the next group goes out, and a
        // busy receiver reads the repair port ahead of its backlog: three
        // groups.
        let wanted = (3 * header.full_group_len as usize + usize::from(header.depth)).min(self.max_window);
        if wanted > self.window.len() {
            self.resize(wanted);
        }
        let key = (header.group_first, header.block);
        if self.done.contains(&key) {
            self.stats.repair_unneeded += 1;
            return;
        }
        self.forget_stale();
        match self.pending.get_mut(&key) {
            Some(p) => {
                let h = &p.header;
                let consistent = (h.group_len, h.depth, h.repair_count, h.symbol_len)
                    == (header.group_len, header.depth, header.repair_count, header.symbol_len);
                if !consistent || p.repairs.iter().any(|(i, _)| *i == header.repair_index) {
                    self.stats.repair_malformed += 1;
                    return;
                }
            }
            None => {
                if self.outside_window(&header) {
                    self.stats.repair_unneeded += 1;
                    return;
                }
                let missing = self.missing(&header);
                if missing == 0 {
                    self.stats.repair_unneeded += 1;
                    self.finish_block(key);
                    return;
                }
                self.pending.insert(key, PendingBlock { header, missing, repairs: Vec::new() });
                self.pending_groups.entry(header.group_first).or_insert((header.group_len, header.depth, 0)).2 += 1;
                self.order.push_back(key);
            }
        }
        let p = self.pending.get_mut(&key).expect("inserted above");
        p.repairs.push((header.repair_index, symbol.to_vec()));
        self.held += symbol.len() + SYMBOL_OVERHEAD;
        // Count again when the symbols may suffice, when the block's last
        // symbol arrives, and now and then (sources may arrive after the
        // first repair symbol: the repair port is read on its own).
        let held = p.repairs.len() as u32;
        if held >= p.missing || header.repair_index + 1 == header.repair_count || held.is_power_of_two() {
            self.try_decode(key);
        }
        while self.held > self.budget {
            let Some(oldest) = self.order.pop_front() else { break };
            if self.pending.contains_key(&oldest) {
                self.give_up(oldest);
                self.stats.unrecovered_budget += 1;
            }
        }
    }

    /// The next rebuilt datagram with its packet number, to be handled as
    /// though received.
    pub fn poll_recovered(&mut self) -> Option<(u64, Vec<u8>)> {
        self.recovered.pop_front()
    }

    /// When a deferred block is next due to decode anyway, or (every
    /// [`TABLES_POLL`]) whether the code's tables are built for the blocks
    /// that wait for them.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let deferred = self.deferred_at.front().map(|(at, _)| *at + DEFER_LIMIT);
        let tables = self.clock.filter(|_| !self.waiting_tables.is_empty()).map(|c| c + TABLES_POLL);
        deferred.into_iter().chain(tables).min()
    }

    /// Decodes the deferred blocks that waited [`DEFER_LIMIT`] by `now`,
    /// and those that waited for the code's tables once they are built.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock = Some(now);
        self.decode_waiting();
        while let Some(&(at, key)) = self.deferred_at.front() {
            if at + DEFER_LIMIT > now {
                break;
            }
            self.deferred_at.pop_front();
            let last = self.pending.get(&key).map(|p| p.header.last_pn());
            if let Some(last) = last
                && self.deferred.remove(&(last, key))
            {
                self.settle(key, false);
            }
        }
    }

    /// Whether rebuilt datagrams wait for [`poll_recovered`](Self::poll_recovered).
    pub fn has_recovered(&self) -> bool {
        !self.recovered.is_empty()
    }

    /// Decodes what the symbols held allow, then gives up every block still
    /// waiting for repair (the session ended).
    pub fn finish(&mut self) {
        // Nothing more will arrive: what can decode, decodes now.
        self.largest = Some(u64::MAX);
        self.deferred.clear();
        self.deferred_at.clear();
        self.waiting_tables.clear();
        let keys: Vec<_> = self.order.drain(..).filter(|k| self.pending.contains_key(k)).collect();
        for key in keys {
            // Now, tables built or not.
            self.settle(key, false);
            if self.pending.contains_key(&key) {
                self.give_up(key);
                self.stats.unrecovered_at_end += 1;
            }
        }
    }

    /// [`settle`](Self::settle), waiting for the receiver to reach the
    /// block's last datagram before decoding.
    fn try_decode(&mut self, key: (u64, u16)) {
        self.settle(key, true);
    }

    /// Counts what the block misses again; finishes it when it misses
    /// nothing, decodes it when its symbols suffice (with `wait`, only once
    /// the receiver has reached its last datagram; until then it is
    /// deferred).
    fn settle(&mut self, key: (u64, u16), wait: bool) {
        let Some(p) = self.pending.get(&key) else { return };
        let header = p.header;
        let missing = self.missing(&header);
        let p = self.pending.get_mut(&key).expect("pending");
        p.missing = missing;
        if missing == 0 {
            self.drop_pending(key);
            self.finish_block(key);
        } else if p.repairs.len() as u32 >= missing {
            let last = header.last_pn();
            if !wait || self.largest.is_some_and(|l| l >= last) {
                if wait && (self.tables_being_built)() {
                    self.waiting_tables.insert(key);
                } else {
                    self.decode(key);
                }
            } else if self.deferred.insert((last, key))
                && let Some(now) = self.clock
            {
                self.deferred_at.push_back((now, key));
            }
        }
    }

    /// Decodes the blocks that waited for the code's tables once they are
    /// built, and before then a block whose datagrams would soon leave the
    /// window (two thirds of it came after the block's group began): it
    /// waits for the tables on this thread rather than be lost.
    fn decode_waiting(&mut self) {
        if self.waiting_tables.is_empty() {
            return;
        }
        let building = (self.tables_being_built)();
        let largest = self.largest.unwrap_or(0);
        let limit = (self.window.len() as u64 * 2 / 3).max(1);
        let due: Vec<_> = if building {
            // Only those whose datagrams would soon leave the window.
            self.waiting_tables.iter().copied().filter(|k| largest.saturating_sub(k.0) >= limit).collect()
        } else {
            self.waiting_tables.iter().copied().collect()
        };
        for key in due {
            self.waiting_tables.remove(&key);
            self.settle(key, !building);
        }
    }

    /// Sets the window to `slots` slots, keeping what fits.
    fn resize(&mut self, slots: usize) {
        self.stats.window = slots as u64;
        let old = std::mem::take(&mut self.window);
        self.window = (0..slots).map(|_| Slot::default()).collect();
        for slot in old {
            if let Some(pn) = slot.pn {
                let new = &mut self.window[(pn % slots as u64) as usize];
                if new.pn.is_none_or(|p| p < pn) {
                    *new = slot;
                }
            }
        }
    }

    /// Whether the window holds the datagram numbered `pn`.
    fn holds(&self, pn: u64) -> Option<&[u8]> {
        let n = self.window.len() as u64;
        if n == 0 {
            return None;
        }
        let slot = &self.window[(pn % n) as usize];
        (slot.pn == Some(pn)).then_some(slot.data.as_slice())
    }

    /// Whether the block's datagrams lie outside the window (too old to be
    /// held, or more than a window beyond anything received): nothing to
    /// rebuild them against.
    fn outside_window(&self, h: &RepairHeader) -> bool {
        // Before any datagram, repair read ahead of its datagrams waits for them.
        let Some(largest) = self.largest else { return false };
        let low = largest.saturating_sub(self.window.len() as u64 - 1);
        let ahead = (self.window.len() as u64).max(REPAIR_AHEAD);
        h.source_pn(0) < low || h.last_pn() > largest.saturating_add(ahead)
    }

    /// Source datagrams of the block the window does not hold.
    fn missing(&self, h: &RepairHeader) -> u32 {
        (0..h.sources()).filter(|&j| self.holds(h.source_pn(j)).is_none()).count() as u32
    }

    /// Rebuilds the block's missing datagrams: by solving for them when they
    /// are few (see [`super::direct`]), else with the code's decoder.
    fn decode(&mut self, key: (u64, u16)) {
        let ok = match self.rebuild_directly(key) {
            Some(ok) => ok,
            None => self.rebuild_with_decoder(key),
        };
        self.drop_pending(key);
        if ok {
            self.stats.blocks_decoded += 1;
        } else {
            self.stats.blocks_unrecovered += 1;
            self.stats.decode_failures += 1;
        }
        self.finish_block(key);
    }

    /// Rebuilds the block's missing datagrams with the code's decoder: false
    /// when the symbols are not of the code (forged or stale).
    fn rebuild_with_decoder(&mut self, key: (u64, u16)) -> bool {
        let p = self.pending.get(&key).expect("pending");
        let h = p.header;
        let (k, r, len) = (h.sources() as usize, usize::from(h.repair_count), usize::from(h.symbol_len));
        let rs = match self.rs.as_mut() {
            Some(rs) => rs.reset(k, r, len).map(|()| rs),
            None => ReedSolomonDecoder::new(k, r, len).map(|rs| self.rs.insert(rs)),
        };
        let mut ok = rs.is_ok();
        let mut missing = Vec::new();
        if let Ok(rs) = rs {
            for j in 0..k {
                let pn = h.source_pn(j as u32);
                let n = self.window.len() as u64;
                let slot = &self.window[(pn % n) as usize];
                if slot.pn != Some(pn) {
                    missing.push(j);
                    continue;
                }
                if slot.data.len() + 2 > len {
                    // Longer than the block's symbols: not the datagram the
                    // sender encoded (a forgery, or a stale slot).
                    ok = false;
                    break;
                }
                write_source_symbol(&slot.data, len, &mut self.symbol);
                ok &= rs.add_original_shard(j, &self.symbol).is_ok();
            }
            for (i, symbol) in &p.repairs {
                if ok {
                    ok = rs.add_recovery_shard(usize::from(*i), symbol).is_ok();
                }
            }
            if ok {
                match rs.decode() {
                    Ok(result) => {
                        for j in &missing {
                            match result.restored_original(*j).and_then(datagram_of_symbol) {
                                Some(d) => {
                                    self.recovered.push_back((h.source_pn(*j as u32), d.to_vec()));
                                    self.stats.datagrams_recovered += 1;
                                }
                                None => self.stats.repair_malformed += 1,
                            }
                        }
                    }
                    Err(_) => ok = false,
                }
            }
        }
        ok
    }

    /// Rebuilds the block's missing datagrams by solving for them: `None`
    /// when this path does not apply (more lost than [`MAX_DIRECT`], or the
    /// sizes), `Some(false)` when the symbols are not of the code (a held
    /// datagram longer than the block's symbols, a singular system).
    fn rebuild_directly(&mut self, key: (u64, u16)) -> Option<bool> {
        let p = self.pending.get(&key)?;
        let h = p.header;
        let (k, r, len) = (h.sources() as usize, usize::from(h.repair_count), usize::from(h.symbol_len));
        let slot_of = |j: usize| {
            let pn = h.source_pn(j as u32);
            let slot = &self.window[(pn % self.window.len() as u64) as usize];
            (slot.pn == Some(pn)).then_some(slot)
        };
        let lost: Vec<usize> = (0..k).filter(|&j| slot_of(j).is_none()).collect();
        let m = lost.len();
        if m == 0 || m > MAX_DIRECT || p.repairs.len() < m {
            return None;
        }
        // The held sources, then the `m` repair symbols used, in the code's
        // layout, one after the other.
        let w = placed_len(len);
        self.placed.clear();
        self.placed.resize((k + m) * w, 0);
        for j in 0..k {
            let Some(slot) = slot_of(j) else { continue };
            if slot.data.len() + 2 > len {
                // Longer than the block's symbols: not the datagram the
                // sender encoded (a forgery, or a stale slot).
                return Some(false);
            }
            place_source(&slot.data, len, &mut self.placed[j * w..(j + 1) * w]);
        }
        for (a, (_, symbol)) in p.repairs[..m].iter().enumerate() {
            place(symbol, &mut self.placed[(k + a) * w..(k + a + 1) * w]);
        }
        let placed = |x: usize| &self.placed[x * w..(x + 1) * w];
        let repairs: Vec<(usize, &[u8])> =
            p.repairs[..m].iter().enumerate().map(|(a, (i, _))| (usize::from(*i), placed(k + a))).collect();
        let mut is_lost = vec![false; k];
        for &j in &lost {
            is_lost[j] = true;
        }
        let sources: Vec<Option<&[u8]>> = (0..k).map(|j| (!is_lost[j]).then(|| placed(j))).collect();
        let direct = self.direct.get_or_insert_with(|| Box::new(DirectDecoder::new()));
        let mut rebuilt = Vec::with_capacity(lost.len());
        if !direct.rebuild((k, r, w), &sources, &repairs, &mut rebuilt) {
            return None;
        }
        for (j, symbol) in lost.iter().zip(&rebuilt) {
            read_back(symbol, len, &mut self.symbol);
            match datagram_of_symbol(&self.symbol) {
                Some(d) => {
                    self.recovered.push_back((h.source_pn(*j as u32), d.to_vec()));
                    self.stats.datagrams_recovered += 1;
                }
                None => self.stats.repair_malformed += 1,
            }
        }
        Some(true)
    }

    /// Gives up a pending block.
    fn give_up(&mut self, key: (u64, u16)) {
        self.drop_pending(key);
        self.stats.blocks_unrecovered += 1;
        self.finish_block(key);
    }

    /// Removes a pending block and releases its symbols.
    fn drop_pending(&mut self, key: (u64, u16)) {
        if let Some(p) = self.pending.remove(&key) {
            self.held -= p.repairs.iter().map(|(_, s)| s.len() + SYMBOL_OVERHEAD).sum::<usize>();
            if let Some(g) = self.pending_groups.get_mut(&key.0) {
                g.2 -= 1;
                if g.2 == 0 {
                    self.pending_groups.remove(&key.0);
                }
            }
        }
    }

    /// Remembers that the block is finished.
    fn finish_block(&mut self, key: (u64, u16)) {
        if self.done.insert(key) {
            self.done_order.push_back(key);
            if self.done_order.len() > DONE_REMEMBERED
                && let Some(old) = self.done_order.pop_front()
            {
                self.done.remove(&old);
            }
        }
    }

    /// Gives up pending blocks whose first datagram has left the window.
    fn forget_stale(&mut self) {
        let Some(largest) = self.largest else { return };
        let low = largest.saturating_sub(self.window.len() as u64 - 1);
        while let Some(&key) = self.order.front() {
            match self.pending.get(&key) {
                None => {
                    self.order.pop_front();
                }
                Some(p) if p.header.source_pn(0) < low => {
                    self.order.pop_front();
                    self.give_up(key);
                    self.stats.unrecovered_window += 1;
                }
                Some(_) => break,
            }
        }
    }
}
