//! IPv4 multicast on `lo` in the caller's namespace. Safety: every sender sets the outgoing multicast
//! interface to 127.0.0.1 (or `lo`) and TTL 1, and sends only to 239.255.0.0/16 groups.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::{Got, collect, datagram, random_group_v4};
use h3m_net::{
    BufferKind, Interface, MulticastConfig, RecvBatch, RecvSocket, SendSocket, Warning, open_receiver, open_sender,
};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn sender_cfg(group: SocketAddr) -> MulticastConfig {
    let mut cfg = MulticastConfig::new(group).with_interface(Interface::Addr(LOCALHOST));
    cfg.ttl = 1;
    cfg
}

fn receiver_cfg(group: SocketAddr) -> MulticastConfig {
    MulticastConfig::new(group).with_interface(Interface::Name("lo".into()))
}

/// Checks that `got` is exactly the multiset `sent` (byte-exact) and that every datagram came to `group`.
fn assert_same_set(sent: &[Vec<u8>], got: &[Got], group: SocketAddr) {
    assert_eq!(got.len(), sent.len(), "datagram count");
    let mut want: HashMap<&[u8], usize> = HashMap::new();
    for d in sent {
        *want.entry(d.as_slice()).or_default() += 1;
    }
    for g in got {
        let n = want
            .get_mut(g.payload.as_slice())
            .unwrap_or_else(|| panic!("unexpected datagram of {} bytes", g.payload.len()));
        assert!(*n > 0, "duplicate datagram");
        *n -= 1;
        if let Some(dst) = g.destination {
            assert_eq!(dst, group.ip());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asm_gso_1000_datagrams() {
    let group = random_group_v4();
    let (rx, warnings) = RecvSocket::open(&receiver_cfg(group)).unwrap();
    for w in &warnings {
        println!("receiver warning: {w}");
    }
    let (tx, _) = SendSocket::open(&sender_cfg(group)).unwrap();
    println!("gso segments for 1200 B: {}, receiver gro segments: {}", tx.gso_segments(1200), rx.gro_segments());
    assert!(tx.gso_segments(1200) <= 54);

    let sent: Vec<Vec<u8>> = (0..1000).map(|i| datagram(1, i, 1200)).collect();
    let start = Instant::now();
    let receiver = tokio::spawn(async move {
        let got = collect(&rx, 1000, Duration::from_secs(10)).await;
        (got, Instant::now(), rx)
    });
    tx.send_batch(group, &sent).await.unwrap();
    let sent_at = start.elapsed();
    let (got, done, rx) = receiver.await.unwrap();
    let elapsed = done - start;
    println!(
        "1000 x 1200 B: sent in {:?} ({:.0} datagrams/s), all received after {:?} ({:.0} datagrams/s)",
        sent_at,
        1000.0 / sent_at.as_secs_f64(),
        elapsed,
        got.len() as f64 / elapsed.as_secs_f64()
    );
    assert_same_set(&sent, &got, group);
    assert!(got.iter().all(|g| g.source.ip() == LOCALHOST));
    // Nothing extra arrives afterwards.
    let extra = collect(&rx, 1, Duration::from_millis(100)).await;
    assert!(extra.is_empty(), "{} unexpected extra datagrams", extra.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_sizes_and_send_one() {
    let group = random_group_v4();
    let (rx, _) = RecvSocket::open(&receiver_cfg(group)).unwrap();
    let (tx, _) = SendSocket::open(&sender_cfg(group)).unwrap();
    let sizes = [1200, 1200, 1200, 800, 1200, 1200, 0, 100, 100, 100, 100, 1500, 7, 65_000, 1200];
    let mut sent: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &s)| datagram(2, i as u64, s)).collect();
    tx.send_batch(group, &sent).await.unwrap();
    let one = datagram(3, 99, 333);
    tx.send_one(group, &one).await.unwrap();
    sent.push(one);
    let got = collect(&rx, sent.len(), Duration::from_secs(5)).await;
    assert_same_set(&sent, &got, group);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gso_many_runs_with_short_tails() {
    // 3 x (200 datagrams of 1000 B + one of 10 B): runs longer than the GSO cap, tails in the middle.
    let group = random_group_v4();
    let (rx, _) = RecvSocket::open(&receiver_cfg(group)).unwrap();
    let (tx, _) = SendSocket::open(&sender_cfg(group)).unwrap();
    let mut sent = Vec::new();
    for r in 0..3u64 {
        for i in 0..200 {
            sent.push(datagram(4, r * 1000 + i, 1000));
        }
        sent.push(datagram(4, r * 1000 + 999, 10));
    }
    let receiver = tokio::spawn(async move { collect(&rx, 603, Duration::from_secs(5)).await });
    tx.send_batch(group, &sent).await.unwrap();
    assert_same_set(&sent, &receiver.await.unwrap(), group);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_batch_without_gso() {
    let group = random_group_v4();
    let (rx, _) = RecvSocket::open(&receiver_cfg(group)).unwrap();
    let (tx, _) = SendSocket::open(&sender_cfg(group)).unwrap();
    tx.disable_gso();
    assert_eq!(tx.gso_segments(1200), 1);
    let sent: Vec<Vec<u8>> = (0..300).map(|i| datagram(11, i, 1200)).collect();
    let receiver = tokio::spawn(async move { collect(&rx, 300, Duration::from_secs(5)).await });
    tx.send_batch(group, &sent).await.unwrap();
    assert_same_set(&sent, &receiver.await.unwrap(), group);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssm_right_source_receives_wrong_source_does_not() {
    let group = random_group_v4();
    let (right, _) = RecvSocket::open(&receiver_cfg(group).with_source(LOCALHOST)).unwrap();
    let (wrong, _) = RecvSocket::open(&receiver_cfg(group).with_source(IpAddr::from([127, 0, 0, 9]))).unwrap();
    let (tx, _) = SendSocket::open(&sender_cfg(group).with_source(LOCALHOST)).unwrap();
    assert_eq!(tx.local_addr().unwrap().ip(), LOCALHOST);
    let sent: Vec<Vec<u8>> = (0..20).map(|i| datagram(5, i, 500)).collect();
    tx.send_batch(group, &sent).await.unwrap();
    let got = collect(&right, 20, Duration::from_secs(5)).await;
    assert_same_set(&sent, &got, group);
    let got = collect(&wrong, 1, Duration::from_millis(300)).await;
    assert!(got.is_empty(), "SSM join for source 127.0.0.9 received {} datagrams from 127.0.0.1", got.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multicast_all_off_isolates_groups_on_one_port() {
    let a = random_group_v4();
    let mut b = random_group_v4();
    b.set_port(a.port());
    if b.ip() == a.ip() {
        b.set_ip(IpAddr::from([239, 255, 254, 253]));
    }
    let (sock_a, _) = open_receiver(&receiver_cfg(a)).unwrap();
    assert!(!socket2::SockRef::from(&sock_a).multicast_all_v4().unwrap(), "IP_MULTICAST_ALL must be 0");
    let rx_a = RecvSocket::from_std(sock_a).unwrap();
    let (rx_b, _) = RecvSocket::open(&receiver_cfg(b)).unwrap();
    let (tx, _) = SendSocket::open(&sender_cfg(b)).unwrap();
    let sent: Vec<Vec<u8>> = (0..10).map(|i| datagram(6, i, 200)).collect();
    tx.send_batch(b, &sent).await.unwrap();
    assert_same_set(&sent, &collect(&rx_b, 10, Duration::from_secs(5)).await, b);
    let leaked = collect(&rx_a, 1, Duration::from_millis(300)).await;
    assert!(leaked.is_empty(), "socket joined to {a} received {} datagrams sent to {b}", leaked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_recv_batch_would_block_when_empty() {
    let group = random_group_v4();
    let (rx, _) = RecvSocket::open(&receiver_cfg(group)).unwrap();
    let mut batch = RecvBatch::new();
    let e = rx.try_recv_batch(&mut batch).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
    assert!(batch.is_empty());
}

#[test]
fn absurd_receive_buffer_is_reported_clamped() {
    // 1.5 GiB: above rmem_max for an unprivileged process, and above the kernel's INT_MAX/2 cap even
    // when forced with SO_RCVBUFFORCE as root. The kernel only records the limit; nothing is allocated.
    let mut cfg = receiver_cfg(random_group_v4());
    cfg.recv_buffer = Some(1536 << 20);
    let (_sock, warnings) = open_receiver(&cfg).unwrap();
    let w = warnings
        .iter()
        .find(|w| matches!(w, Warning::BufferClamped { buffer: BufferKind::Receive, .. }))
        .expect("a BufferClamped warning");
    println!("{w}");
    let Warning::BufferClamped { requested, got, sysctl, .. } = w else { unreachable!() };
    assert_eq!(*requested, 1536 << 20);
    assert!(*got < *requested);
    assert_eq!(*sysctl, "net.core.rmem_max");
}

#[test]
fn default_receive_buffer_request() {
    // 8 MiB is granted as root (forced); unprivileged, a warning must say so if rmem_max is lower.
    let (sock, warnings) = open_receiver(&receiver_cfg(random_group_v4())).unwrap();
    let reported = socket2::SockRef::from(&sock).recv_buffer_size().unwrap();
    let clamped = warnings.iter().any(|w| matches!(w, Warning::BufferClamped { .. }));
    println!("8 MiB requested: kernel reports {reported} (clamped warning: {clamped})");
    assert_eq!(clamped, reported / 2 < 8 << 20);
}

#[test]
fn send_buffer_option() {
    let mut cfg = sender_cfg(random_group_v4());
    cfg.send_buffer = Some(1 << 20);
    let (sock, warnings) = open_sender(&cfg).unwrap();
    let reported = socket2::SockRef::from(&sock).send_buffer_size().unwrap();
    assert!(reported >= 2 << 20 || !warnings.is_empty(), "reported {reported}, warnings {warnings:?}");
}
