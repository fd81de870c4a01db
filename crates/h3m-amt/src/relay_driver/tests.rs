//! Tests of the driver's socket choice and of its batched data sends.

use std::time::Duration;

use tokio::net::UdpSocket;

use super::*;
use crate::relay::DataRoute;

#[tokio::test]
async fn replies_leave_from_the_socket_of_their_source_address() {
    let a = listen_socket("127.0.0.1:0".parse().unwrap()).unwrap();
    let b = listen_socket("127.0.0.2:0".parse().unwrap()).unwrap();
    let w = listen_socket("0.0.0.0:0".parse().unwrap()).unwrap();
    let (la, lb, lw) = (a.local_addr().unwrap(), b.local_addr().unwrap(), w.local_addr().unwrap());
    let listen =
        vec![Listener { local: la, socket: a }, Listener { local: lb, socket: b }, Listener { local: lw, socket: w }];
    let local = |s: &h3m_net::SendSocket| s.local_addr().unwrap();
    assert_eq!(pick(&listen, lb).map(local), Some(lb));
    assert_eq!(pick(&listen, la).map(local), Some(la));
    assert_eq!(pick(&listen, SocketAddr::new([127, 0, 0, 9].into(), lw.port())).map(local), Some(lw));
    assert_eq!(pick(&listen, "127.0.0.9:1".parse().unwrap()).map(local), Some(la), "same family");
    assert!(pick(&listen, "[::1]:1".parse().unwrap()).is_none());
}

/// Every datagram waiting on `s`, in order.
async fn received(s: &UdpSocket) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), s.recv(&mut buf)).await {
        got.push(buf[..n].to_vec());
    }
    got
}

#[tokio::test]
async fn data_to_each_gateway_arrives_as_queued_whatever_the_runs() {
    let relay = listen_socket("127.0.0.1:0".parse().unwrap()).unwrap();
    let source = relay.local_addr().unwrap();
    let listen = vec![Listener { local: source, socket: relay }];
    // Buffers that hold all of it (forced beyond rmem_max as root): nothing
    // is read until everything is sent.
    let gateway = || {
        let (s, _) = h3m_net::open_unicast("127.0.0.1:0".parse().unwrap(), Some(4 << 20)).unwrap();
        UdpSocket::from_std(s).unwrap()
    };
    let (g1, g2) = (gateway(), gateway());
    let routes = [
        DataRoute { source, destination: g1.local_addr().unwrap() },
        DataRoute { source, destination: g2.local_addr().unwrap() },
    ];
    // Runs of equal sizes, a shorter one closing a run, a longer one opening
    // the next, more than one GSO send's worth (53 of 1230 bytes), and a
    // lone message.
    let mut sizes = vec![1230; 60];
    sizes.extend([700, 1230, 1230, 1500, 1500, 1500, 40]);
    let messages: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| vec![i as u8; n]).collect();
    let mut batches = DataBatches::default();
    let mut counters = super::stats::Counters::default();
    for m in &messages {
        batches.add(&listen, m, &routes, &mut counters).await;
    }
    batches.flush(&listen, &mut counters).await;
    assert_eq!(counters.send_errors, 0);
    // (length, fill byte) of each datagram: byte-exact, and short to print.
    let shape = |v: &[Vec<u8>]| -> Vec<(usize, u8)> {
        v.iter().map(|d| (d.len(), if d.iter().all(|&b| Some(&b) == d.first()) { d[0] } else { 255 })).collect()
    };
    assert_eq!(shape(&received(&g1).await), shape(&messages));
    assert_eq!(shape(&received(&g2).await), shape(&messages));
    // Nothing is left to send.
    batches.flush(&listen, &mut counters).await;
    assert!(received(&g1).await.is_empty());
}
