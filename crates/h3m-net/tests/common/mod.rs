//! Shared helpers for h3m-net's integration tests.
#![allow(dead_code)]

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use h3m_net::{RecvBatch, RecvSocket};

/// A random u64 (std's per-process random hasher keys, plus the time).
pub fn random() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        Instant::now().elapsed().as_nanos() ^ std::time::SystemTime::now().elapsed().map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// A random port in 20000..60000.
pub fn random_port() -> u16 {
    20_000 + (random() % 40_000) as u16
}

/// A random group in 239.255.0.0/16 (administratively scoped, never routed here anyway: TTL 1, lo).
pub fn random_group_v4() -> SocketAddr {
    let r = random();
    SocketAddr::new(IpAddr::from([239, 255, (r >> 8) as u8, (r as u8).max(1)]), random_port())
}

/// Datagram `i` of `size` bytes tagged `tag`: 8-byte big-endian index, the tag, then a pattern.
pub fn datagram(tag: u8, i: u64, size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size);
    v.extend_from_slice(&i.to_be_bytes());
    v.push(tag);
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(tag);
    while v.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    v.truncate(size);
    v
}

/// One received datagram, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    pub payload: Vec<u8>,
    pub source: SocketAddr,
    pub destination: Option<IpAddr>,
}

/// Receives until `want` datagrams arrived or `timeout` passed.
pub async fn collect(sock: &RecvSocket, want: usize, timeout: Duration) -> Vec<Got> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut batch = RecvBatch::new();
    let mut out = Vec::new();
    while out.len() < want {
        match tokio::time::timeout_at(deadline, sock.recv_batch(&mut batch)).await {
            Err(_) => break,
            Ok(r) => {
                r.expect("recv_batch");
            }
        }
        out.extend(batch.iter().map(|d| Got {
            payload: d.payload.to_vec(),
            source: d.source,
            destination: d.destination,
        }));
    }
    out
}
