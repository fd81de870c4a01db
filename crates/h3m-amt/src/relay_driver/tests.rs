//! Tests of the driver's socket choice.

use tokio::net::UdpSocket;

use super::*;

#[tokio::test]
async fn replies_leave_from_the_socket_of_their_source_address() {
    let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let b = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let w = UdpSocket::bind("0.0.0.0:0").await.unwrap();
    let (la, lb, lw) = (a.local_addr().unwrap(), b.local_addr().unwrap(), w.local_addr().unwrap());
    let listen =
        vec![Listener { local: la, socket: a }, Listener { local: lb, socket: b }, Listener { local: lw, socket: w }];
    let local = |s: &UdpSocket| s.local_addr().unwrap();
    assert_eq!(pick(&listen, lb).map(local), Some(lb));
    assert_eq!(pick(&listen, la).map(local), Some(la));
    assert_eq!(pick(&listen, SocketAddr::new([127, 0, 0, 9].into(), lw.port())).map(local), Some(lw));
    assert_eq!(pick(&listen, "127.0.0.9:1".parse().unwrap()).map(local), Some(la), "same family");
    assert!(pick(&listen, "[::1]:1".parse().unwrap()).is_none());
}
