//! DRIAD (RFC 8777) AMTRELAY RDATA parsing, its encoding round trip, and the
//! candidate ordering.
//!
//! The whole input is one RDATA: whatever `parse_rdata` accepts must encode
//! back to the same octets. The input is also read as a sequence of
//! length-prefixed RDATAs (one length octet each); the records that parse
//! are ordered with a generator seeded from the input, and the result must
//! list every address once, never an unspecified or multicast one.
#![no_main]

use std::collections::BTreeSet;

use h3m_amt::driad::{DriadAnswer, ResolvedNames, encode_rdata, order_candidates, parse_rdata};
use h3m_amt::gateway::Rng;
use libfuzzer_sys::fuzz_target;

struct Lcg(u64);

impl Rng for Lcg {
    fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 32) as u32
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(record)) = parse_rdata(data) {
        match encode_rdata(&record) {
            Ok(wire) => assert_eq!(wire, data, "re-encoding {record:?}"),
            Err(e) => panic!("parsed record does not encode: {e}: {record:?}"),
        }
    }

    let mut records = Vec::new();
    let mut rest = data;
    while let [len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        if let Ok(Some(r)) = parse_rdata(&tail[..n]) {
            records.push(r);
        }
        rest = &tail[n..];
    }
    let seed = data.iter().fold(0u64, |h, &b| h.rotate_left(5) ^ u64::from(b));
    let answer = order_candidates(&records, &ResolvedNames::new(), seed & 1 == 1, &mut Lcg(seed));
    if let DriadAnswer::Relays(candidates) = answer {
        let unique: BTreeSet<_> = candidates.iter().map(|c| c.address).collect();
        assert_eq!(unique.len(), candidates.len(), "duplicate candidates");
        assert!(candidates.iter().all(|c| !c.address.is_unspecified() && !c.address.is_multicast()));
    }
});
