//! Receiver state machine throughput on a synthetic 100 MiB session.
//!
//! The session is one 100 MiB resource in 16 KiB DATA frames (nghq's layout),
//! packetized by `SessionEncoder` into 1200-byte datagrams (about 89 000
//! packets). Each iteration feeds every datagram to a fresh `Receiver` and
//! drains its events, dropping the body bytes: this measures the sans-IO core
//! alone (packet parsing, stream reassembly, HTTP/3 framing, event output).
//!
//! Run: `cargo bench -p h3m-benches --bench receiver`. Criterion reports the
//! time per session and MiB/s; packets/s = 89 118 / time.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use h3m_proto::SessionId;
use h3m_proto::encoder::{EncoderConfig, SessionEncoder};
use h3m_proto::qpack::HeaderField;
use h3m_proto::receiver::{Event, Receiver, ReceiverConfig};

const BODY_LEN: usize = 100 << 20;

fn session(datagram_size: usize) -> (SessionId, Vec<Vec<u8>>) {
    let sid = SessionId::NGHQ_DEFAULT;
    let mut cfg = EncoderConfig::new(sid);
    cfg.max_datagram_size = datagram_size;
    cfg.data_frame_size = Some(16384);
    let mut enc = SessionEncoder::new(cfg);
    let body: Vec<u8> = (0..BODY_LEN).map(|i| (i.wrapping_mul(7) + 3) as u8).collect();
    let request = [
        HeaderField::new(":method", "GET"),
        HeaderField::new(":scheme", "https"),
        HeaderField::new(":authority", "localhost"),
        HeaderField::new(":path", "/big.bin"),
    ];
    let response = [
        HeaderField::new(":status", "200"),
        HeaderField::new("content-type", "application/octet-stream"),
        HeaderField::new("connection", "close"),
    ];
    let mut out = Vec::new();
    enc.push(&request, &response, &body, &mut out).expect("encode");
    (sid, out)
}

/// Receives the session; with `recycle`, each body buffer is given back
/// once counted (`Receiver::recycle`), as `h3m-recv` does.
fn run(sid: SessionId, datagrams: &[Vec<u8>], recycle: bool) -> u64 {
    let mut rx = Receiver::new(ReceiverConfig::new(sid));
    let now = Instant::now();
    let mut body = 0u64;
    for d in datagrams {
        rx.handle_datagram(now, d);
        while let Some(ev) = rx.poll_event() {
            if let Event::BodyData { data, .. } = ev {
                body += data.len() as u64;
                if recycle {
                    rx.recycle(data);
                }
            }
        }
    }
    assert!(rx.is_ended());
    body
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("receiver");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(BODY_LEN as u64));
    let (sid, datagrams) = session(1200);
    eprintln!("100 MiB session: {} datagrams of at most 1200 bytes", datagrams.len());
    group.bench_function("100MiB_1200B_datagrams", |b| b.iter(|| black_box(run(sid, black_box(&datagrams), false))));
    group.bench_function("100MiB_1200B_datagrams_recycled", |b| {
        b.iter(|| black_box(run(sid, black_box(&datagrams), true)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
