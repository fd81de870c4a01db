//! FEC repair datagrams: `RepairHeader::parse` (what parses writes back to
//! the same bytes) and the decoder fed the input as repair and as a source
//! datagram, then as repair behind a valid magic and version (panics and
//! memory only: the decoder's window and repair budget are small here).
#![no_main]

use std::time::Instant;

use h3m_proto::SessionId;
use h3m_proto::fec::{FecDecoder, RepairHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((h, symbol)) = RepairHeader::parse(data) {
        let mut again = Vec::new();
        h.write(symbol, &mut again);
        assert_eq!(again, data);
    }
    let sid = SessionId::from_hex("2a").expect("hex");
    let mut dec = FecDecoder::new(sid, 256, 1 << 16);
    for (i, chunk) in data.chunks(64).enumerate() {
        dec.add_source(i as u64, chunk);
    }
    let mut framed = b"h3mF\x01\x01\x2a".to_vec();
    framed.extend_from_slice(data);
    dec.add_repair(Instant::now(), &framed);
    dec.add_repair(Instant::now(), data);
    while dec.poll_recovered().is_some() {}
    dec.finish();
    assert!(dec.held_bytes() <= 256 * 4096 + (1 << 16));
});
