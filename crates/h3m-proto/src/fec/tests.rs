use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::decoder::{DEFAULT_MAX_WINDOW, DEFAULT_REPAIR_BUDGET, REPAIR_AHEAD};
use super::*;
use crate::SessionId;

fn sid() -> SessionId {
    SessionId::from_hex("2a").unwrap()
}

/// `n` datagrams of varied length and content, numbered from `first`.
fn datagrams(first: u64, n: usize) -> Vec<(u64, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let pn = first + i as u64;
            let len = 20 + (pn as usize * 37) % 1180;
            (pn, (0..len).map(|b| (pn as usize * 31 + b * 7) as u8).collect())
        })
        .collect()
}

/// The repair datagrams for `sources` under `config`, the group closed at the end.
fn encode(config: FecConfig, sources: &[(u64, Vec<u8>)]) -> Vec<Vec<u8>> {
    let mut enc = FecEncoder::new(config, sid());
    let now = Instant::now();
    for (pn, d) in sources {
        enc.add_source(now, *pn, d);
    }
    enc.flush(now);
    std::iter::from_fn(|| enc.poll_repair(now)).collect()
}

/// Feeds the sources not in `lost` and then the repairs not in
/// `lost_repairs`; returns the decoder and the datagrams it rebuilt.
fn decode(
    sources: &[(u64, Vec<u8>)],
    lost: &dyn Fn(u64) -> bool,
    repairs: &[Vec<u8>],
    lost_repair: &dyn Fn(usize) -> bool,
) -> (FecDecoder, Vec<Vec<u8>>) {
    let mut dec = FecDecoder::new(sid(), DEFAULT_MAX_WINDOW, DEFAULT_REPAIR_BUDGET);
    for (pn, d) in sources.iter().filter(|(pn, _)| !lost(*pn)) {
        dec.add_source(*pn, d);
    }
    let mut out = Vec::new();
    for (i, r) in repairs.iter().enumerate() {
        if !lost_repair(i) {
            dec.add_repair(Instant::now(), r);
        }
        out.extend(std::iter::from_fn(|| dec.poll_recovered()).map(|(pn, d)| {
            assert_eq!(sources.iter().find(|(p, _)| *p == pn).map(|(_, s)| s), Some(&d), "packet number {pn}");
            d
        }));
    }
    (dec, out)
}

#[test]
fn lost_datagrams_come_back_byte_exact() {
    let config = FecConfig { percent: 5, block: 100, depth: 4, deadline: Duration::from_secs(1) };
    let sources = datagrams(7, 400);
    let repairs = encode(config, &sources);
    // 4 blocks of 100, 5 repair symbols each.
    assert_eq!(repairs.len(), 20);
    // Lose 5 datagrams of every block (20 consecutive: depth 4 spreads them).
    let lost = |pn: u64| (107..127).contains(&pn);
    let (dec, mut rebuilt) = decode(&sources, &lost, &repairs, &|_| false);
    rebuilt.sort_by_key(|d| sources.iter().position(|(_, s)| s == d));
    let expected: Vec<_> = sources.iter().filter(|(pn, _)| lost(*pn)).map(|(_, d)| d.clone()).collect();
    assert_eq!(rebuilt, expected);
    let s = dec.stats();
    assert_eq!((s.datagrams_recovered, s.blocks_decoded, s.blocks_unrecovered), (20, 4, 0));
    assert_eq!(s.repair_datagrams, 20);
}

#[test]
fn a_block_that_lost_more_than_its_repair_is_given_up_at_the_end() {
    let config = FecConfig { percent: 5, block: 100, depth: 1, deadline: Duration::from_secs(1) };
    let sources = datagrams(0, 100);
    let repairs = encode(config, &sources);
    let (mut dec, rebuilt) = decode(&sources, &|pn| pn < 6, &repairs, &|_| false);
    assert!(rebuilt.is_empty());
    dec.finish();
    assert_eq!((dec.stats().blocks_unrecovered, dec.stats().datagrams_recovered), (1, 0));
}

#[test]
fn a_whole_block_needs_no_decoding_and_late_symbols_are_skipped() {
    let config = FecConfig { percent: 10, block: 50, depth: 2, deadline: Duration::from_secs(1) };
    let sources = datagrams(1000, 100);
    let repairs = encode(config, &sources);
    let (dec, rebuilt) = decode(&sources, &|_| false, &repairs, &|_| false);
    assert!(rebuilt.is_empty());
    let s = dec.stats();
    assert_eq!((s.repair_unneeded, s.blocks_decoded), (repairs.len() as u64, 0));
}

#[test]
fn repair_arriving_before_its_sources_still_rebuilds() {
    let config = FecConfig { percent: 10, block: 40, depth: 1, deadline: Duration::from_secs(1) };
    let sources = datagrams(0, 40);
    let repairs = encode(config, &sources);
    let mut dec = FecDecoder::new(sid(), DEFAULT_MAX_WINDOW, DEFAULT_REPAIR_BUDGET);
    // Half the sources, the first repair symbol, the rest but one, the rest of the repair.
    for (pn, d) in &sources[..20] {
        dec.add_source(*pn, d);
    }
    dec.add_repair(Instant::now(), &repairs[0]);
    for (pn, d) in &sources[21..] {
        dec.add_source(*pn, d);
    }
    for r in &repairs[1..] {
        dec.add_repair(Instant::now(), r);
    }
    assert_eq!(dec.poll_recovered(), Some(sources[20].clone()));
}

/// The length of a repair datagram of session 2a for a one-datagram block.
fn repairs_len(datagram: &[u8]) -> usize {
    4 + 1 + 1 + 1 + 8 + 4 + 4 + 10 + (2 + datagram.len()).next_multiple_of(2)
}

#[test]
fn a_block_decodes_when_its_sources_arrive_after_all_its_repair() {
    // The repair port is read on its own: all of a block's repair may be
    // handled before the last of its datagrams.
    let config = FecConfig { percent: 10, block: 40, depth: 2, deadline: Duration::from_secs(1) };
    let sources = datagrams(0, 80);
    let repairs = encode(config, &sources);
    let mut dec = FecDecoder::new(sid(), DEFAULT_MAX_WINDOW, DEFAULT_REPAIR_BUDGET);
    for (pn, d) in &sources[..40] {
        dec.add_source(*pn, d);
    }
    for r in &repairs {
        dec.add_repair(Instant::now(), r);
    }
    assert_eq!(dec.poll_recovered(), None);
    // The rest but packet numbers 41 and 60 (blocks 1 and 0).
    for (pn, d) in sources[40..].iter().filter(|(pn, _)| *pn != 41 && *pn != 60) {
        dec.add_source(*pn, d);
    }
    // Each block decodes as soon as it misses no more than its repair: the
    // lost datagram comes back, with those of its block still to come.
    let got: Vec<_> = std::iter::from_fn(|| dec.poll_recovered()).collect();
    assert!(got.iter().all(|(pn, d)| sources[*pn as usize].1 == *d));
    assert!(
        got.iter().any(|(pn, _)| *pn == 41) && got.iter().any(|(pn, _)| *pn == 60),
        "{:?}",
        got.iter().map(|g| g.0).collect::<Vec<_>>()
    );
    assert_eq!(dec.stats().blocks_decoded, 2);
}

#[test]
fn a_short_group_closes_on_its_deadline_with_one_block_per_datagram() {
    let config = FecConfig { percent: 50, block: 10, depth: 8, deadline: Duration::from_millis(100) };
    let mut enc = FecEncoder::new(config, sid());
    let t0 = Instant::now();
    let sources = datagrams(3, 3);
    for (pn, d) in &sources {
        enc.add_source(t0, *pn, d);
    }
    assert_eq!(enc.poll_timeout(), Some(t0 + Duration::from_millis(100)));
    assert!(enc.poll_repair(t0 + Duration::from_millis(99)).is_none());
    // The deadline closes the group; its repair is due over the next 100 ms:
    // three blocks of one datagram, one repair symbol each (a copy) and two
    // more for blocks that short, 9 in all.
    let t1 = t0 + Duration::from_millis(100);
    let first = enc.poll_repair(t1).unwrap();
    assert_eq!(first.len(), repairs_len(&sources[0].1));
    assert_eq!(enc.poll_timeout(), Some(t1 + Duration::from_millis(100) / 9));
    assert!(enc.poll_repair(t1 + Duration::from_millis(11)).is_none());
    let mut repairs: Vec<_> = std::iter::from_fn(|| enc.poll_repair(t1 + Duration::from_millis(100))).collect();
    repairs.insert(0, first);
    assert_eq!(repairs.len(), 9);
    let (h, _) = RepairHeader::parse(&repairs[1]).unwrap();
    assert_eq!((h.group_first, h.group_len, h.depth, h.block, h.sources()), (3, 3, 8, 1, 1));
    let (_, rebuilt) = decode(&sources, &|pn| pn == 4, &repairs, &|_| false);
    assert_eq!(rebuilt, vec![sources[1].1.clone()]);
    assert_eq!(enc.poll_timeout(), None);
}

#[test]
fn a_gap_in_packet_numbers_closes_the_group() {
    let config = FecConfig { percent: 10, block: 10, depth: 1, deadline: Duration::from_secs(1) };
    let mut enc = FecEncoder::new(config, sid());
    let now = Instant::now();
    for (pn, d) in datagrams(0, 3).iter().chain(&datagrams(10, 2)) {
        enc.add_source(now, *pn, d);
    }
    let groups = |enc: &mut FecEncoder| {
        let all: Vec<_> = std::iter::from_fn(|| enc.poll_repair(now)).collect();
        all.iter()
            .map(|d| RepairHeader::parse(d).map(|(h, _)| (h.group_first, h.group_len)).unwrap())
            .collect::<Vec<_>>()
    };
    // One block of 3: one repair symbol and two for a short block.
    assert_eq!(groups(&mut enc), vec![(0, 3); 3]);
    enc.flush(now);
    assert_eq!(groups(&mut enc), vec![(10, 2); 3]);
}

#[test]
fn junk_and_foreign_repair_is_counted_and_memory_stays_bounded() {
    let mut dec = FecDecoder::new(sid(), 4096, 1 << 20);
    // Before any repair only a session's first 2048 datagrams are kept.
    let sources = datagrams(0, 2048);
    for (pn, d) in &sources {
        dec.add_source(*pn, d);
    }
    let before = dec.held_bytes();
    // Forged symbols for 20 000 blocks of one datagram each.
    for g in 0..20_000u64 {
        let h = RepairHeader {
            session_id: sid(),
            group_first: g % 2000,
            group_len: 1,
            full_group_len: 1,
            depth: 1,
            block: 0,
            repair_count: 2,
            repair_index: 0,
            symbol_len: 1000,
        };
        let mut d = Vec::new();
        h.write(&[0xab; 1000], &mut d);
        dec.add_repair(Instant::now(), &d);
        dec.add_repair(Instant::now(), &d[..40]);
        let mut foreign = Vec::new();
        RepairHeader { session_id: SessionId::from_hex("2b").unwrap(), ..h }.write(&[0; 1000], &mut foreign);
        dec.add_repair(Instant::now(), &foreign);
    }
    let s = *dec.stats();
    assert_eq!((s.repair_malformed, s.repair_foreign), (20_000, 20_000));
    // Each block held its one datagram: nothing to rebuild, nothing kept.
    assert_eq!(s.datagrams_recovered, 0);
    assert!(dec.held_bytes() <= before + (1 << 20), "{} > {}", dec.held_bytes(), before);
}

#[test]
fn a_tampered_symbol_never_yields_a_datagram_longer_than_its_symbol() {
    let config = FecConfig { percent: 10, block: 20, depth: 1, deadline: Duration::from_secs(1) };
    let sources = datagrams(0, 20);
    let mut repairs = encode(config, &sources);
    let last = repairs[0].len() - 1;
    repairs[0][last] ^= 0xff;
    let (dec, rebuilt) = decode(&sources, &|pn| pn == 5, &repairs, &|_| false);
    // The rebuilt datagram is wrong (packet protection or the digest catches
    // that later) but is bounded by the block's symbol.
    assert_eq!(rebuilt.len() + dec.stats().repair_malformed as usize, 1);
    assert!(rebuilt.iter().all(|d| d.len() <= 1200));
}

#[test]
fn config_parses_and_refuses_what_it_cannot_do() {
    let c: FecConfig = "5".parse().unwrap();
    assert_eq!(c, FecConfig::new(5));
    let c: FecConfig = "15,block=1000,depth=32,deadline=50ms".parse().unwrap();
    assert_eq!((c.percent, c.block, c.depth, c.deadline), (15, 1000, 32, Duration::from_millis(50)));
    assert_eq!(c.to_string().parse::<FecConfig>(), Ok(c));
    assert_eq!("0".parse::<FecConfig>(), Err(FecConfigError::Range { what: "percent", min: 1, max: 100, got: 0 }));
    assert_eq!(
        "5,block=5000".parse::<FecConfig>(),
        Err(FecConfigError::Range { what: "block", min: 1, max: 4096, got: 5000 })
    );
    assert_eq!("5,size=3".parse::<FecConfig>(), Err(FecConfigError::Syntax("5,size=3".into())));
    assert_eq!("x".parse::<FecConfig>(), Err(FecConfigError::Syntax("x".into())));
    assert_eq!(FecConfig::new(5).repairs_for(512), 26);
    // Short blocks (fewer than `block` datagrams) get two more.
    assert_eq!(FecConfig::new(5).repairs_for(1), 3);
    assert_eq!(FecConfig::new(5).repairs_for(100), 7);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any loss pattern that leaves every block at most its repair count
    /// short is rebuilt in full, and what comes back is exactly what was
    /// lost; with repair symbols lost too, what comes back is still only
    /// what was lost.
    #[test]
    fn any_recoverable_loss_is_rebuilt_exactly(
        n in 1usize..600,
        block in 1u16..80,
        depth in 1u16..12,
        percent in 1u16..40,
        loss in proptest::collection::vec(0u8..8, 600),
        repair_loss in proptest::collection::vec(0u8..6, 1200),
        lose_repair in any::<bool>(),
    ) {
        let config = FecConfig { percent, block, depth, deadline: Duration::from_secs(1) };
        let first = 1u64 << 40;
        let sources = datagrams(first, n);
        let repairs = encode(config, &sources);
        let lost = |pn: u64| loss[(pn - first) as usize] == 0;
        let lost_repair = |i: usize| lose_repair && repair_loss[i % 1200] == 0;
        let (mut dec, mut rebuilt) = decode(&sources, &lost, &repairs, &lost_repair);
        dec.finish();
        rebuilt.extend(std::iter::from_fn(|| dec.poll_recovered()).map(|(_, d)| d));
        let truly_lost: Vec<_> = sources.iter().filter(|(pn, _)| lost(*pn)).map(|(_, d)| d.clone()).collect();
        for d in &rebuilt {
            prop_assert!(truly_lost.contains(d));
        }
        prop_assert_eq!(dec.stats().datagrams_recovered as usize, rebuilt.len());
        // Which blocks lost more than their repair?
        let group = config.group_len() as usize;
        let mut beyond = false;
        for g in (0..n).step_by(group) {
            let len = group.min(n - g);
            for b in 0..(depth as usize).min(len) {
                let k = (len - b).div_ceil(depth as usize);
                let lost_here = (0..k).filter(|j| lost(first + (g + b + j * depth as usize) as u64)).count();
                beyond |= lost_here > config.repairs_for(k as u32) as usize;
            }
        }
        if !beyond && !lose_repair {
            let mut got = rebuilt.clone();
            got.sort();
            let mut want = truly_lost.clone();
            want.sort();
            prop_assert_eq!(got, want);
            prop_assert_eq!(dec.stats().blocks_unrecovered, 0);
        }
    }

    #[test]
    fn random_repair_datagrams_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200), pn in 0u64..100) {
        let mut dec = FecDecoder::new(sid(), 64, 4096);
        dec.add_source(pn, &data);
        let mut d = b"h3mF\x01\x01\x2a".to_vec();
        d.extend_from_slice(&data);
        dec.add_repair(Instant::now(), &d);
        dec.add_repair(Instant::now(), &data);
        while dec.poll_recovered().is_some() {}
        dec.finish();
    }
}

#[test]
fn a_block_waiting_for_datagrams_that_never_come_decodes_after_the_defer_limit() {
    // The block's last datagrams were lost and nothing newer arrives (the
    // end of a session, a pause in a live stream): its repair came, so it
    // decodes once it has waited DEFER_LIMIT.
    let config = FecConfig { percent: 20, block: 20, depth: 1, deadline: Duration::from_secs(1) };
    let sources = datagrams(0, 20);
    let repairs = encode(config, &sources);
    let mut dec = FecDecoder::new(sid(), DEFAULT_MAX_WINDOW, DEFAULT_REPAIR_BUDGET);
    for (pn, d) in &sources[..18] {
        dec.add_source(*pn, d);
    }
    let t0 = Instant::now();
    for r in &repairs {
        dec.add_repair(t0, r);
    }
    assert_eq!(dec.poll_recovered(), None);
    assert_eq!(dec.poll_timeout(), Some(t0 + super::decoder::DEFER_LIMIT));
    dec.handle_timeout(t0 + super::decoder::DEFER_LIMIT - Duration::from_millis(1));
    assert_eq!(dec.poll_recovered(), None);
    dec.handle_timeout(t0 + super::decoder::DEFER_LIMIT);
    let got: Vec<_> = std::iter::from_fn(|| dec.poll_recovered()).collect();
    assert_eq!(got, sources[18..].to_vec());
    assert_eq!(dec.poll_timeout(), None);
}

#[test]
fn a_session_without_repair_keeps_only_its_first_datagrams() {
    let mut dec = FecDecoder::new(sid(), DEFAULT_MAX_WINDOW, DEFAULT_REPAIR_BUDGET);
    for (pn, d) in datagrams(0, 10_000) {
        dec.add_source(pn, &d);
    }
    let first = dec.held_bytes();
    assert!(first <= super::decoder::INITIAL_WINDOW * 1200, "{first}");
    for (pn, d) in datagrams(10_000, 10_000) {
        dec.add_source(pn, &d);
    }
    assert_eq!(dec.held_bytes(), first, "nothing more kept without repair");
}

#[test]
fn repair_read_far_ahead_of_a_backlog_is_kept_until_its_sources_come() {
    // A receiver behind by ~6 windows: it has handled datagram 0 only when
    // the repair of datagrams 40 000.. arrives (its data socket holds the rest).
    let config = FecConfig { percent: 10, block: 40, depth: 1, deadline: Duration::from_secs(1) };
    let first = 40_000;
    let sources = datagrams(first, 40);
    let repairs = encode(config, &sources);
    let mut dec = FecDecoder::new(sid(), 4096, DEFAULT_REPAIR_BUDGET);
    let early = datagrams(0, 1);
    dec.add_source(early[0].0, &early[0].1);
    for r in &repairs {
        dec.add_repair(Instant::now(), r);
    }
    assert_eq!(dec.stats().repair_unneeded, 0, "kept, not dropped as outside the window");
    for (pn, d) in sources.iter().filter(|(pn, _)| *pn != first + 7) {
        dec.add_source(*pn, d);
    }
    assert_eq!(dec.poll_recovered(), Some(sources[7].clone()));
    // Beyond REPAIR_AHEAD it is not kept.
    let far = datagrams(first + REPAIR_AHEAD + 1_000, 40);
    let before = dec.stats().repair_unneeded;
    dec.add_repair(Instant::now(), &encode(config, &far)[0]);
    assert_eq!(dec.stats().repair_unneeded, before + 1);
}

#[test]
fn a_flood_of_tiny_forged_symbols_for_new_blocks_is_held_to_the_budget_in_blocks_too() {
    // 2-byte symbols (the smallest) for 100 000 distinct blocks, all within
    // the repair-ahead range of a receiver that has handled datagram 0.
    let budget = 1 << 20;
    let mut dec = FecDecoder::new(sid(), 4096, budget);
    dec.add_source(0, &datagrams(0, 1)[0].1);
    for g in 0..100_000u64 {
        let h = RepairHeader {
            session_id: sid(),
            group_first: 1 + g,
            group_len: 2,
            full_group_len: 2,
            depth: 1,
            block: 0,
            repair_count: 1,
            repair_index: 0,
            symbol_len: 2,
        };
        let mut d = Vec::new();
        h.write(&[0, 1], &mut d);
        dec.add_repair(Instant::now(), &d);
    }
    // Each pending block costs at least 2 + 192 of the budget.
    assert!(dec.pending_blocks() <= budget / 194, "{} blocks pending", dec.pending_blocks());
    assert!(dec.stats().unrecovered_budget > 0, "older blocks were given up for the budget");
}

/// While another thread builds the code's tables a block that could decode
/// waits (no decode on the caller's thread), with a timer a millisecond on;
/// at the first call after they are built it decodes, byte for byte; at the
/// end of the session it decodes regardless, and so it does, tables or not,
/// once two thirds of the window came after its group began (its datagrams
/// would soon leave the window).
#[test]
fn blocks_wait_for_the_tables_being_built_then_decode() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static BUILDING: AtomicBool = AtomicBool::new(true);
    let config = FecConfig { percent: 5, block: 100, depth: 4, deadline: Duration::from_secs(1) };
    let sources = datagrams(7, 400);
    let repairs = encode(config, &sources);
    let lost = |pn: u64| (107..127).contains(&pn);
    for case in ["built", "end of session", "window"] {
        BUILDING.store(true, Ordering::SeqCst);
        let mut dec = FecDecoder::new(sid(), DEFAULT_MAX_WINDOW, DEFAULT_REPAIR_BUDGET);
        dec.set_tables_probe(|| BUILDING.load(Ordering::SeqCst));
        let t0 = Instant::now();
        for (pn, d) in sources.iter().filter(|(pn, _)| !lost(*pn)) {
            dec.add_source(*pn, d);
        }
        for r in &repairs {
            dec.add_repair(t0, r);
        }
        assert!(dec.poll_recovered().is_none());
        assert_eq!(dec.stats().blocks_decoded, 0);
        assert_eq!(dec.poll_timeout(), Some(t0 + decoder::TABLES_POLL));
        // Still being built: the timer changes nothing.
        dec.handle_timeout(t0 + decoder::TABLES_POLL);
        assert!(dec.poll_recovered().is_none());
        match case {
            "built" => {
                BUILDING.store(false, Ordering::SeqCst);
                dec.handle_timeout(t0 + 2 * decoder::TABLES_POLL);
                assert_eq!(dec.poll_timeout(), None);
            }
            "end of session" => dec.finish(),
            _ => {
                // The window keeps its first size (three groups of 400 and
                // the depth need fewer slots): datagrams up to two thirds of
                // it after the group's first (7) leave the blocks waiting,
                // the next decodes them.
                let limit = (decoder::INITIAL_WINDOW * 2 / 3) as u64;
                let next = datagrams(407, (7 + limit - 407 + 1) as usize);
                let (last, before) = next.split_last().unwrap();
                for (pn, d) in before {
                    dec.add_source(*pn, d);
                }
                assert!(dec.poll_recovered().is_none(), "too early");
                assert_eq!(last.0, 7 + limit);
                dec.add_source(last.0, &last.1);
            }
        }
        let mut rebuilt: Vec<_> = std::iter::from_fn(|| dec.poll_recovered()).collect();
        rebuilt.sort_by_key(|(pn, _)| *pn);
        let expected: Vec<_> = sources.iter().filter(|(pn, _)| lost(*pn)).cloned().collect();
        assert_eq!(rebuilt, expected, "{case}");
        assert_eq!((dec.stats().blocks_decoded, dec.stats().blocks_unrecovered), (4, 0));
    }
}
