//! Measurements, not checks (`#[ignore]`; run with `cargo test -p h3m-net --test throughput -- --ignored
//! --nocapture`). Loopback only: outgoing interface 127.0.0.1, TTL 1, 239.255.0.0/16.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{datagram, random_group_v4};
use h3m_net::{Interface, MulticastConfig, Pacer, RecvBatch, RecvSocket, SendSocket};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn pair() -> (SendSocket, RecvSocket, std::net::SocketAddr) {
    let group = random_group_v4();
    let (rx, _) = RecvSocket::open(&MulticastConfig::new(group).with_interface(Interface::Name("lo".into()))).unwrap();
    let (tx, _) =
        SendSocket::open(&MulticastConfig::new(group).with_interface(Interface::Addr(IpAddr::V4(Ipv4Addr::LOCALHOST))))
            .unwrap();
    (tx, rx, group)
}

/// Counts datagrams until `stop` is set and the socket stays quiet for 200 ms.
fn spawn_counter(rx: RecvSocket, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(usize, Instant)> {
    tokio::spawn(async move {
        let mut batch = RecvBatch::new();
        let mut n = 0;
        let mut last = Instant::now();
        loop {
            match tokio::time::timeout(Duration::from_millis(200), rx.recv_batch(&mut batch)).await {
                Ok(r) => {
                    n += r.unwrap();
                    last = Instant::now();
                }
                Err(_) if stop.load(Ordering::Relaxed) => return (n, last),
                Err(_) => {}
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement"]
async fn loopback_gso_throughput() {
    let total = env_usize("H3M_N", 200_000);
    let (tx, rx, group) = pair().await;
    let stop = Arc::new(AtomicBool::new(false));
    let counter = spawn_counter(rx, stop.clone());
    let chunk: Vec<Vec<u8>> = (0..1080).map(|i| datagram(7, i, 1200)).collect();
    let start = Instant::now();
    let mut sent = 0;
    while sent < total {
        tx.send_batch(group, &chunk).await.unwrap();
        sent += chunk.len();
    }
    let send_time = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (received, last) = counter.await.unwrap();
    println!(
        "GSO x{}: sent {sent} x 1200 B in {send_time:?} = {:.0} datagrams/s ({:.2} Gbit/s); received {received} \
         ({:.1}%) at {:.0} datagrams/s",
        tx.gso_segments(1200),
        sent as f64 / send_time.as_secs_f64(),
        sent as f64 * 1200.0 * 8.0 / send_time.as_secs_f64() / 1e9,
        received as f64 * 100.0 / sent as f64,
        received as f64 / (last - start).as_secs_f64(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement"]
async fn loopback_send_one_throughput() {
    let total = env_usize("H3M_N", 100_000);
    let (tx, rx, group) = pair().await;
    let stop = Arc::new(AtomicBool::new(false));
    let counter = spawn_counter(rx, stop.clone());
    let d = datagram(8, 0, 1200);
    let start = Instant::now();
    for _ in 0..total {
        tx.send_one(group, &d).await.unwrap();
    }
    let send_time = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (received, _) = counter.await.unwrap();
    println!(
        "send_one: {total} x 1200 B in {send_time:?} = {:.0} datagrams/s; received {received}",
        total as f64 / send_time.as_secs_f64()
    );
}

/// Real-clock pacing with tokio timers: batches of `batch_ms` worth at `rate`, for about one second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement"]
async fn pacer_real_clock() {
    let rate = 200_000_000u64;
    let (tx, rx, group) = pair().await;
    let stop = Arc::new(AtomicBool::new(false));
    let counter = spawn_counter(rx, stop.clone());
    for (burst_ms, batch_ms) in [(1.0, 1.0), (1.0, 0.5), (2.0, 1.0), (4.0, 1.0)] {
        let per_ms = (rate / 8 / 1000) as f64;
        let batch_n = ((per_ms * batch_ms) / 1200.0).round().max(1.0) as usize;
        let batch: Vec<Vec<u8>> = (0..batch_n as u64).map(|i| datagram(9, i, 1200)).collect();
        let mut pacer = Pacer::with_burst(Some(rate), (per_ms * burst_ms) as u64);
        let start = Instant::now();
        let mut bytes = 0u64;
        while start.elapsed() < Duration::from_secs(1) {
            pacer.pace(batch_n * 1200).await;
            tx.send_batch(group, &batch).await.unwrap();
            bytes += (batch_n * 1200) as u64;
        }
        let achieved = bytes as f64 * 8.0 / start.elapsed().as_secs_f64();
        println!(
            "pacer {rate} bit/s, burst {burst_ms} ms, batches of {batch_ms} ms ({batch_n} datagrams): achieved {:.1}%",
            achieved * 100.0 / rate as f64
        );
    }
    stop.store(true, Ordering::Relaxed);
    let _ = counter.await;
}
