//! IPv4/IPv6 ASM and SSM over a veth pair between two network namespaces created (and deleted) by each
//! test. Root only: prints `SKIP: ...` otherwise. Hop limit / TTL 1 and explicit interfaces throughout.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::{Got, collect, datagram, random_port};
use h3m_net::testns::{VethLink, skip_unless_root};
use h3m_net::{Interface, MulticastConfig, RecvSocket, SendSocket, open_receiver, open_sender};

fn tx_cfg(group: SocketAddr, interface: Interface, source: Option<IpAddr>) -> MulticastConfig {
    let mut cfg = MulticastConfig::new(group).with_interface(interface);
    cfg.source = source;
    cfg.ttl = 1;
    cfg
}

fn rx_cfg(group: SocketAddr, source: Option<IpAddr>) -> MulticastConfig {
    let mut cfg = MulticastConfig::new(group).with_interface(Interface::Name(VethLink::B_IF.into()));
    cfg.source = source;
    cfg
}

fn sender(link: &VethLink, cfg: &MulticastConfig) -> SendSocket {
    let (sock, _) = link.a.run(|| open_sender(cfg)).unwrap();
    SendSocket::from_std(sock).unwrap()
}

fn receiver(link: &VethLink, cfg: &MulticastConfig) -> RecvSocket {
    let (sock, warnings) = link.b.run(|| open_receiver(cfg)).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    RecvSocket::from_std(sock).unwrap()
}

fn sorted_payloads(got: &[Got]) -> Vec<Vec<u8>> {
    let mut v: Vec<_> = got.iter().map(|g| g.payload.clone()).collect();
    v.sort();
    v
}

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

/// ASM over the veth: `n` datagrams of `size` bytes via send_batch (GSO), all received byte-exact.
async fn asm_over_veth(group: SocketAddr, interface: impl FnOnce(&VethLink) -> Interface, n: u64, size: usize) {
    let link = VethLink::new().unwrap();
    let interface = interface(&link);
    let rx = receiver(&link, &rx_cfg(group, None));
    let tx = sender(&link, &tx_cfg(group, interface, None));
    let sent: Vec<Vec<u8>> = (0..n).map(|i| datagram(10, i, size)).collect();
    let want = sent.len();
    let receiving = tokio::spawn(async move { collect(&rx, want, Duration::from_secs(10)).await });
    tx.send_batch(group, &sent).await.unwrap();
    let got = receiving.await.unwrap();
    assert_eq!(got.len(), sent.len());
    assert_eq!(sorted_payloads(&got), sorted(sent));
    assert!(got.iter().all(|g| g.destination.is_none_or(|d| d == group.ip())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_asm_over_veth() {
    if skip_unless_root("ipv6_asm_over_veth") {
        return;
    }
    let group: SocketAddr = format!("[ff15::4833:1]:{}", random_port()).parse().unwrap();
    asm_over_veth(group, |_| Interface::Name(VethLink::A_IF.into()), 500, 1200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_asm_link_scope_over_veth() {
    if skip_unless_root("ipv6_asm_link_scope_over_veth") {
        return;
    }
    // ff12:: is link-scoped: the receiver binds with the interface as scope id.
    let group: SocketAddr = format!("[ff12::4833:2]:{}", random_port()).parse().unwrap();
    asm_over_veth(group, |_| Interface::Addr(IpAddr::V6(VethLink::A_V6)), 100, 1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_asm_over_veth_interface_by_index() {
    if skip_unless_root("ipv4_asm_over_veth_interface_by_index") {
        return;
    }
    let group: SocketAddr = format!("239.255.83.1:{}", random_port()).parse().unwrap();
    // An index makes the sender use ip_mreqn for IP_MULTICAST_IF (the index is namespace-local).
    let by_index = |link: &VethLink| Interface::Index(link.a.if_index(VethLink::A_IF).unwrap());
    asm_over_veth(group, by_index, 1000, 1200).await;
}

/// SSM: the receiver joins (right, G). Phase 1: the wrong source sends first, then the right one; only the
/// right datagrams arrive. Phase 2: an ASM control receiver proves the wrong sender's datagrams do reach
/// the host, while the SSM socket still gets none of them.
async fn ssm_over_veth(link: VethLink, group: SocketAddr, right: IpAddr, wrong: IpAddr) {
    let rx = receiver(&link, &rx_cfg(group, Some(right)));
    let tx_right = sender(&link, &tx_cfg(group, Interface::Name(VethLink::A_IF.into()), Some(right)));
    let tx_wrong = sender(&link, &tx_cfg(group, Interface::Name(VethLink::A_IF.into()), Some(wrong)));
    assert_eq!(tx_wrong.local_addr().unwrap().ip(), wrong);

    let wrong_data: Vec<Vec<u8>> = (0..50).map(|i| datagram(20, i, 700)).collect();
    let right_data: Vec<Vec<u8>> = (0..50).map(|i| datagram(21, i, 700)).collect();
    tx_wrong.send_batch(group, &wrong_data).await.unwrap();
    tx_right.send_batch(group, &right_data).await.unwrap();
    let got = collect(&rx, 50, Duration::from_secs(5)).await;
    assert!(got.iter().all(|g| g.source.ip() == right), "a datagram from the wrong source got through");
    assert_eq!(sorted_payloads(&got), sorted(right_data));
    assert!(collect(&rx, 1, Duration::from_millis(300)).await.is_empty());

    let control = receiver(&link, &rx_cfg(group, None));
    tx_wrong.send_batch(group, &wrong_data[..10]).await.unwrap();
    let seen = collect(&control, 10, Duration::from_secs(5)).await;
    assert_eq!(seen.len(), 10, "the ASM control receiver must see the wrong source's datagrams");
    assert!(seen.iter().all(|g| g.source.ip() == wrong));
    let leaked = collect(&rx, 1, Duration::from_millis(300)).await;
    assert!(leaked.is_empty(), "SSM receiver for {right} got {} datagrams from {wrong}", leaked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_ssm_over_veth() {
    if skip_unless_root("ipv6_ssm_over_veth") {
        return;
    }
    let link = VethLink::new().unwrap();
    link.add_address_a("fd00:213::3/64").unwrap();
    let group: SocketAddr = format!("[ff3e::4833:1]:{}", random_port()).parse().unwrap();
    ssm_over_veth(link, group, IpAddr::V6(VethLink::A_V6), "fd00:213::3".parse().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_ssm_over_veth() {
    if skip_unless_root("ipv4_ssm_over_veth") {
        return;
    }
    let link = VethLink::new().unwrap();
    link.add_address_a("10.213.0.3/24").unwrap();
    let group: SocketAddr = format!("232.1.2.3:{}", random_port()).parse().unwrap();
    ssm_over_veth(link, group, IpAddr::V4(VethLink::A_V4), "10.213.0.3".parse().unwrap()).await;
}

#[test]
fn namespaces_are_deleted_on_drop_and_on_panic() {
    if skip_unless_root("namespaces_are_deleted_on_drop_and_on_panic") {
        return;
    }
    let exists = |name: &str| std::path::Path::new(&format!("/run/netns/{name}")).exists();
    let link = VethLink::new().unwrap();
    let (a, b) = (link.a.name().to_owned(), link.b.name().to_owned());
    assert!(exists(&a) && exists(&b));
    // Only lo and the veth end are inside.
    let names = link.b.run(|| std::fs::read_dir("/sys/class/net").unwrap().count());
    assert!(names >= 2);
    drop(link);
    assert!(!exists(&a) && !exists(&b));

    let names = std::sync::Mutex::new(Vec::new());
    let caught = std::panic::catch_unwind(|| {
        let link = VethLink::new().unwrap();
        names.lock().unwrap().extend([link.a.name().to_owned(), link.b.name().to_owned()]);
        link.a.run(|| panic!("boom"));
    });
    assert!(caught.is_err());
    let names = names.into_inner().unwrap_or_else(|e| e.into_inner());
    assert_eq!(names.len(), 2);
    for name in names {
        assert!(!exists(&name), "{name} leaked after a panic");
    }
}

/// An SSM (right, G) socket and an ASM (*, G) socket share group:port; the wrong source sends from 16
/// different source ports (16 flow hashes). Default config (no SO_REUSEPORT): the ASM socket gets every
/// datagram and the SSM one none. With `reuse_port`, the misdeliveries caused by IPv4 early demux +
/// reuseport re-selection are only counted and printed (they depend on the flow hash).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssm_and_asm_share_a_port() {
    if skip_unless_root("ssm_and_asm_share_a_port") {
        return;
    }
    let link = VethLink::new().unwrap();
    link.add_address_a("10.213.0.3/24").unwrap();
    link.add_address_a("fd00:213::3/64").unwrap();
    let cases = [
        ("232.1.2.4", IpAddr::V4(VethLink::A_V4), "10.213.0.3"),
        ("ff3e::4833:4", IpAddr::V6(VethLink::A_V6), "fd00:213::3"),
    ];
    for (group, right, wrong) in cases {
        let wrong: IpAddr = wrong.parse().unwrap();
        for reuse_port in [false, true] {
            let group = SocketAddr::new(group.parse().unwrap(), random_port());
            let mut ssm_cfg = rx_cfg(group, Some(right));
            ssm_cfg.reuse_port = reuse_port;
            let mut asm_cfg = rx_cfg(group, None);
            asm_cfg.reuse_port = reuse_port;
            let ssm = receiver(&link, &ssm_cfg);
            let asm = receiver(&link, &asm_cfg);
            for i in 0..16 {
                let tx = sender(&link, &tx_cfg(group, Interface::Name(VethLink::A_IF.into()), Some(wrong)));
                tx.send_one(group, &datagram(30, i, 100)).await.unwrap();
            }
            let at_asm = collect(&asm, 16, Duration::from_secs(2)).await.len();
            let at_ssm = collect(&ssm, 16, Duration::from_millis(300)).await.len();
            println!(
                "{group} reuse_port={reuse_port}: of 16 wrong-source datagrams, ASM socket got {at_asm}, SSM socket got {at_ssm}"
            );
            if !reuse_port {
                assert_eq!((at_asm, at_ssm), (16, 0));
            }
        }
    }
}
