//! Sending crafted datagrams to a receiver over loopback multicast.

use std::time::Duration;

/// Sends `datagrams` to `group` over loopback multicast (outgoing interface
/// 127.0.0.1, TTL 1), a millisecond apart.
pub fn send_on_loopback(group: std::net::SocketAddr, datagrams: &[Vec<u8>]) {
    use h3m_net::{Interface, MulticastConfig, open_sender};
    let cfg = MulticastConfig::new(group).with_interface(Interface::Addr("127.0.0.1".parse().unwrap()));
    let (socket, _) = open_sender(&cfg).unwrap();
    for d in datagrams {
        loop {
            match socket.send_to(d, group) {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => panic!("send to {group}: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
