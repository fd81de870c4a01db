//! End to end through an AMT tunnel: `h3m-send` multicasts natively in a
//! "source" namespace, `h3m-amt-relay` in a "relay" namespace joins the
//! channel on its upstream veth, and `h3m-recv --amt` in a "gateway"
//! namespace, which has no route (let alone a multicast route) to the source,
//! writes every file intact. IPv4 and IPv6 (data and tunnel), a relay
//! restart and a NAT rebinding in the middle of a transfer, `--amt auto` finding the relay
//! through DRIAD (a DNS responder inside the gateway namespace).
//!
//! ```text
//!  [src] h3m-s ---- h3m-r0 [relay] h3m-r1 ---- h3m-g [gw]
//!  10.214.1.1       10.214.1.2     10.214.2.1       10.214.2.2
//!  fd00:214:1::1    fd00:214:1::2  fd00:214:2::1    fd00:214:2::2
//! ```
//!
//! Network safety: everything happens inside the three namespaces these tests
//! create (deleted on drop, also on panic); multicast TTL 1. Needs root
//! (prints `SKIP: ...` otherwise). Only processes started here are killed, by PID.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use h3m_amt::driad::hickory_proto::op::{Message, ResponseCode};
use h3m_amt::driad::hickory_proto::rr::rdata::NULL;
use h3m_amt::driad::hickory_proto::rr::{Name, RData, Record, RecordType};
use h3m_amt::driad::{AMTRELAY, AmtRelayRecord, RelayTarget, encode_rdata, reverse_name};
use h3m_net::testns::{NetNs, skip_unless_root};

use common::*;

/// Source, relay and gateway namespaces, linked as in the module docs.
struct Lab {
    src: NetNs,
    relay: NetNs,
    gw: NetNs,
}

const SRC_V4: &str = "10.214.1.1";
const SRC_V6: &str = "fd00:214:1::1";
const RELAY_V4: &str = "10.214.2.1";
const RELAY_V6: &str = "fd00:214:2::1";

impl Lab {
    fn new() -> Lab {
        let (src, relay, gw) = (NetNs::new().unwrap(), NetNs::new().unwrap(), NetNs::new().unwrap());
        src.ip(&["link", "add", "h3m-s", "type", "veth", "peer", "name", "h3m-r0", "netns", relay.name()]).unwrap();
        relay.ip(&["link", "add", "h3m-r1", "type", "veth", "peer", "name", "h3m-g", "netns", gw.name()]).unwrap();
        for (ns, ifname, v4, v6) in [
            (&src, "h3m-s", "10.214.1.1/24", "fd00:214:1::1/64"),
            (&relay, "h3m-r0", "10.214.1.2/24", "fd00:214:1::2/64"),
            (&relay, "h3m-r1", "10.214.2.1/24", "fd00:214:2::1/64"),
            (&gw, "h3m-g", "10.214.2.2/24", "fd00:214:2::2/64"),
        ] {
            ns.ip(&["addr", "add", v4, "dev", ifname]).unwrap();
            ns.ip(&["-6", "addr", "add", v6, "dev", ifname, "nodad"]).unwrap();
            ns.ip(&["link", "set", ifname, "up"]).unwrap();
        }
        // Only the source has multicast routes; the gateway has no route to
        // the source's network at all.
        src.ip(&["route", "add", "224.0.0.0/4", "dev", "h3m-s"]).unwrap();
        src.ip(&["-6", "route", "add", "ff00::/8", "dev", "h3m-s"]).unwrap();
        Lab { src, relay, gw }
    }

    fn start_relay(&self, listen: &str, logs: &Path, name: &str) -> Proc {
        let args = ["--listen", listen, "--interface", "h3m-r0", "--stats-interval", "0"];
        let mut p = Proc::spawn(name, Some(&self.relay), &h3m_amt_relay(), &args, logs, Stdio::null());
        p.wait_bound(2268);
        p
    }
}

/// Waits until `needle` appears in the process's stderr (e.g. the tunnel is up).
fn wait_stderr(p: &mut Proc, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let (out, err) = p.logs();
        if err.contains(needle) {
            return;
        }
        if let Some(status) = p.child().try_wait().expect("try_wait") {
            panic!("{} exited early ({status}) before {needle:?}:\n--- stdout:\n{out}\n--- stderr:\n{err}", p.name);
        }
        assert!(Instant::now() < deadline, "no {needle:?} from {} within {timeout:?}:\n{err}", p.name);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `h3m-recv --amt ...` in the gateway namespace and waits for the tunnel.
fn start_amt_receiver(lab: &Lab, group: &str, source: &str, amt: &[&str], port: u16, out: &Path, logs: &Path) -> Proc {
    let port = port.to_string();
    let out = out.to_string_lossy().into_owned();
    let mut args = vec![
        "--group",
        group,
        "--source",
        source,
        "--port",
        &port,
        "--session-id",
        "a3a3",
        "--out",
        &out,
        "--idle-timeout",
        "30",
    ];
    args.extend_from_slice(amt);
    let mut p = Proc::spawn("h3m-recv", Some(&lab.gw), &recv_bin(), &args, logs, Stdio::null());
    wait_stderr(&mut p, "tunnel up", Duration::from_secs(10));
    // The relay joins natively as soon as our report arrives; give its IGMP/MLD
    // report a moment on the upstream veth.
    std::thread::sleep(Duration::from_millis(300));
    p
}

fn send_args(group: &str, source: &str, port: u16, tree: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec![tree.to_string_lossy().into_owned()];
    for x in [
        "--group",
        group,
        "--source",
        source,
        "--interface",
        "h3m-s",
        "--port",
        &port.to_string(),
        "--session-id",
        "a3a3",
        "--ttl",
        "1",
        "--quiet",
    ] {
        a.push(x.to_owned());
    }
    a.extend(extra.iter().map(|s| (*s).to_owned()));
    a
}

fn small_tree(root: &Path, seed: u64) -> BTreeMap<String, (u64, String)> {
    let mut rng = Rng(seed);
    write_file(root, "empty.bin", b"");
    write_file(root, "one.bin", b"1");
    write_file(root, "dir/seg-0001.m4s", &rng.bytes(300_000));
    write_file(root, "dir/nested/index.m3u8", b"#EXTM3U\n#EXT-X-VERSION:7\n");
    write_file(root, "big.bin", &rng.bytes(3 << 20));
    tree_digests(root)
}

/// One transfer through a fresh lab: a random tree, an output directory, a
/// port, and the logs of every process.
struct Run {
    lab: Lab,
    logs: tempfile::TempDir,
    tree: PathBuf,
    expected: BTreeMap<String, (u64, String)>,
    out: PathBuf,
    port: u16,
}

impl Run {
    fn new() -> Run {
        let lab = Lab::new();
        let logs = logs_dir();
        let tree = logs.path().join("tree");
        let expected = small_tree(&tree, random_u64());
        let out = logs.path().join("out");
        Run { lab, tree, expected, out, port: random_port(), logs }
    }

    fn logs(&self) -> &Path {
        self.logs.path()
    }

    fn relay(&self, listen: &str, name: &str) -> Proc {
        self.lab.start_relay(listen, self.logs(), name)
    }

    /// `h3m-recv --group G --source S` plus `amt` in the gateway namespace, once its tunnel is up.
    fn receive(&self, group: &str, source: &str, amt: &[&str]) -> Proc {
        start_amt_receiver(&self.lab, group, source, amt, self.port, &self.out, self.logs())
    }

    /// `h3m-send` of the tree in the source namespace, with further options.
    fn send(&self, group: &str, source: &str, extra: &[&str]) -> Proc {
        let args = send_args(group, source, self.port, &self.tree, extra);
        Proc::spawn("h3m-send", Some(&self.lab.src), &h3m_send(), &args, self.logs(), Stdio::null())
    }

    /// Waits for the sender (it must succeed) and the receiver, which must have
    /// written every file intact.
    fn finish(&self, tx: Proc, recv: Proc) -> (Finished, Report) {
        let sent = tx.wait(Duration::from_secs(90));
        assert_eq!(sent.code, Some(0), "{}", show(&sent));
        let f = recv.wait(Duration::from_secs(60));
        let r = assert_all_intact(&f, &self.expected, &self.out);
        (f, r)
    }
}

fn tunnel_transfer(test: &str, group: &str, source: &str, relay: &str, extra: &[&str]) -> Finished {
    let _serial = serial();
    let run = Run::new();
    let _relay = run.relay(relay, "h3m-amt-relay");
    let mut args = vec!["--amt", relay];
    args.extend_from_slice(extra);
    let recv = run.receive(group, source, &args);
    let tx = run.send(group, source, &["--rate", "50M"]);
    let (f, r) = run.finish(tx, recv);
    assert_eq!(r.count("dropped_protection"), 0, "{test}");
    f
}

#[test]
fn ipv4_session_through_an_ipv4_tunnel() {
    if !skip_unless_root("ipv4_session_through_an_ipv4_tunnel") {
        tunnel_transfer("ipv4_session_through_an_ipv4_tunnel", "232.1.1.1", SRC_V4, RELAY_V4, &[]);
    }
}

#[test]
fn ipv6_session_through_an_ipv6_tunnel() {
    if !skip_unless_root("ipv6_session_through_an_ipv6_tunnel") {
        tunnel_transfer("ipv6_session_through_an_ipv6_tunnel", "ff3e::8000:1", SRC_V6, RELAY_V6, &[]);
    }
}

/// Also: with `--log-level`, the tunnel's lines are `tracing` events in an
/// `amt_tunnel` span that names the relay, inside the session's span.
#[test]
fn ipv4_session_through_an_ipv6_tunnel() {
    if skip_unless_root("ipv4_session_through_an_ipv6_tunnel") {
        return;
    }
    let logged = ["--log-level", "h3m_receiver=info", "--log-format", "json"];
    let f = tunnel_transfer("ipv4_session_through_an_ipv6_tunnel", "232.1.1.2", SRC_V4, RELAY_V6, &logged);
    let events: Vec<serde_json::Value> = f.stderr.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let up = events
        .iter()
        .find(|e| e["fields"]["message"].as_str().is_some_and(|m| m.contains("tunnel up")))
        .unwrap_or_else(|| panic!("no tunnel-up event:\n{}", f.stderr));
    assert_eq!(up["target"], "h3m_receiver::amt");
    assert_eq!(up["span"]["name"], "amt_tunnel");
    assert_eq!(up["span"]["relay"], format!("[{RELAY_V6}]:2268"));
    let spans: Vec<&str> = up["spans"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(spans, ["session", "amt_tunnel"]);
}

/// In-band AMBI through the tunnel: the manifests (side port) ride the same
/// channel ahead of the datagrams they cover, so a gateway with no return
/// path authenticates every datagram on arrival; a receiver trusting
/// another manifest key writes nothing.
#[test]
fn ambi_in_band_authenticates_every_datagram_through_the_tunnel() {
    const TEST: &str = "ambi_in_band_authenticates_every_datagram_through_the_tunnel";
    if skip_unless_root(TEST) {
        return;
    }
    let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop/vectors/keys/");
    let _serial = serial();
    let run = Run::new();
    let _relay = run.relay(RELAY_V4, "h3m-amt-relay");
    let trust = format!("{keys}ed25519.pub.pem");
    let recv = run.receive("232.1.1.6", SRC_V4, &["--amt", RELAY_V4, "--ambi", "inband", "--ambi-trust", &trust]);
    let key = format!("{keys}ed25519.key.pem");
    let tx = run.send("232.1.1.6", SRC_V4, &["--rate", "50M", "--ambi", "inband", "--ambi-key", &key]);
    let (f, r) = run.finish(tx, recv);
    assert!(r.count("ambi_manifests") > 0, "{}", show(&f));
    assert_eq!(r.count("ambi_authenticated"), r.count("datagrams"), "{}", show(&f));
    assert_eq!(r.count("ambi_on_arrival"), r.count("datagrams"), "manifests ahead: {}", show(&f));
    assert_eq!(r.count("ambi_mismatched") + r.count("ambi_expired"), 0, "{}", show(&f));

    // The same session to a gateway trusting another key: nothing written.
    let run = Run::new();
    let _relay = run.relay(RELAY_V4, "h3m-amt-relay");
    let other = format!("{keys}other-ed25519.pub.pem");
    let recv = run.receive("232.1.1.6", SRC_V4, &["--amt", RELAY_V4, "--ambi", "inband", "--ambi-trust", &other]);
    let tx = run.send("232.1.1.6", SRC_V4, &["--rate", "50M", "--ambi", "inband", "--ambi-key", &key]);
    let sent = tx.wait(Duration::from_secs(90));
    assert_eq!(sent.code, Some(0), "{}", show(&sent));
    let f = recv.wait(Duration::from_secs(60));
    let r = Report::parse(&f);
    assert!(r.complete.is_empty() && tree_digests(&run.out).is_empty(), "{}", show(&f));
    assert_eq!(r.count("ambi_authenticated"), 0, "{}", show(&f));
    assert!(r.count("ambi_manifests_bad_signature") > 0, "{}", show(&f));
}

#[test]
fn fec_repair_comes_through_the_tunnel_and_rebuilds_what_the_tunnel_lost() {
    // The sender's repair datagrams (port + 1) ride the same (S,G) channel:
    // the gateway hands them to the receiver's FEC, which rebuilds the
    // datagrams a 2% drop of the tunnel's AMT Data messages took.
    const TEST: &str = "fec_repair_comes_through_the_tunnel_and_rebuilds_what_the_tunnel_lost";
    if skip_unless_root(TEST) {
        return;
    }
    if !nft_available() {
        eprintln!("SKIP: {TEST}: `nft` not found (apt-get install nftables)");
        return;
    }
    let _serial = serial();
    let run = Run::new();
    let _relay = run.relay(RELAY_V4, "h3m-amt-relay");
    let recv = run.receive("232.1.1.5", SRC_V4, &["--amt", RELAY_V4]);
    nft_in(
        &run.lab.gw,
        "table inet h3mamtloss {\n  chain in {\n    type filter hook input priority 0;\n    \
         udp sport 2268 numgen random mod 100 < 2 drop\n  }\n}\n",
    );
    let tx = run.send("232.1.1.5", SRC_V4, &["--rate", "20M", "--fec", "20"]);
    let (f, r) = run.finish(tx, recv);
    assert!(r.count("fec_repair") > 0, "no repair through the tunnel: {}", show(&f));
    assert!(r.count("fec_recovered") > 0, "nothing rebuilt: {}", show(&f));
    assert_eq!(r.count("amt_other_ports"), 0, "{}", show(&f));
}

#[test]
fn relay_restart_mid_transfer_is_survived_with_repeat() {
    if skip_unless_root("relay_restart_mid_transfer_is_survived_with_repeat") {
        return;
    }
    let _serial = serial();
    let run = Run::new();
    let relay = run.relay(RELAY_V4, "h3m-amt-relay-1");
    let recv = run.receive("232.1.1.3", SRC_V4, &["--amt", RELAY_V4]);
    // About 3.4 MiB per pass at 12 Mbit/s: 2.4 s a pass, five passes.
    let tx = run.send("232.1.1.3", SRC_V4, &["--rate", "12M", "--repeat", "5"]);
    std::thread::sleep(Duration::from_millis(1200));
    // The relay process dies mid-pass (SIGKILL: no goodbye of any kind) and a
    // new one, with a new secret and no state, starts a second later.
    drop(relay);
    std::thread::sleep(Duration::from_secs(1));
    let _relay2 = run.relay(RELAY_V4, "h3m-amt-relay-2");
    let (f, r) = run.finish(tx, recv);
    // The restart really cut the flow: the gateway's watchdog noticed and the
    // new relay was asked again (its log says so).
    assert!(f.stderr.contains("amt: no data for"), "the gateway should report the gap:\n{}", f.stderr);
    assert!(r.count("repeated") > 0, "later passes were needed and recognised as repeats:\n{}", show(&f));
}

/// A one-record authoritative DNS responder on 127.0.0.1 inside `ns`:
/// AMTRELAY for `source`'s reverse name naming `relay` (precedence 10, D bit
/// clear: the gateway sends it a Relay Discovery). Returns its address and a
/// query counter; it runs until the test process ends.
fn driad_responder(ns: &NetNs, source: IpAddr, relay: Ipv4Addr) -> (SocketAddr, Arc<AtomicUsize>) {
    let socket = ns.run(|| std::net::UdpSocket::bind("127.0.0.1:0")).unwrap();
    let address = socket.local_addr().unwrap();
    let queries = Arc::new(AtomicUsize::new(0));
    let counter = queries.clone();
    let owner = Name::from_ascii(reverse_name(source)).unwrap();
    let rdata =
        encode_rdata(&AmtRelayRecord { precedence: 10, discovery_optional: false, relay: RelayTarget::Ipv4(relay) })
            .unwrap();
    let record =
        Record::from_rdata(owner, 60, RData::Unknown { code: RecordType::from(AMTRELAY), rdata: NULL::with(rdata) });
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((len, peer)) = socket.recv_from(&mut buf) {
            let Ok(query) = Message::from_vec(&buf[..len]) else { continue };
            counter.fetch_add(1, Ordering::Relaxed);
            let mut response = Message::response(query.metadata.id, query.metadata.op_code);
            response.metadata.authoritative = true;
            if let Some(q) = query.queries.first() {
                response.add_query(q.clone());
                if q.query_type == RecordType::from(AMTRELAY) && q.name == record.name {
                    response.add_answer(record.clone());
                } else {
                    response.metadata.response_code = ResponseCode::NXDomain;
                }
            }
            if let Ok(bytes) = response.to_vec() {
                let _ = socket.send_to(&bytes, peer);
            }
        }
    });
    (address, queries)
}

#[test]
fn amt_auto_finds_the_relay_with_driad() {
    if skip_unless_root("amt_auto_finds_the_relay_with_driad") {
        return;
    }
    let _serial = serial();
    let run = Run::new();
    let (dns, queries) = driad_responder(&run.lab.gw, SRC_V4.parse().unwrap(), RELAY_V4.parse().unwrap());
    let _relay = run.relay(RELAY_V4, "h3m-amt-relay");
    let recv = run.receive("232.1.1.4", SRC_V4, &["--amt", "auto", "--amt-dns", &dns.to_string()]);
    assert!(queries.load(Ordering::Relaxed) >= 1, "the receiver asked the DNS");
    let tx = run.send("232.1.1.4", SRC_V4, &["--rate", "50M"]);
    let (f, _) = run.finish(tx, recv);
    assert!(f.stderr.contains(&format!("advertised relay {RELAY_V4}")), "{}", f.stderr);
}

/// Whether TX checksum offload is on for `dev` in `ns` (`ethtool -k`); `None`
/// when ethtool is missing or says nothing about it.
fn tx_checksumming(ns: &NetNs, dev: &str) -> Option<bool> {
    let out =
        std::process::Command::new("ip").args(["netns", "exec", ns.name(), "ethtool", "-k", dev]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("tx-checksumming:"))?;
    Some(line.split_whitespace().nth(1)? == "on")
}

/// Turns TX checksum offload off for `dev` in `ns` (`ethtool -K DEV tx off`):
/// the kernel then fills in every UDP checksum before the packet leaves. On a
/// veth with offload on, a locally sent datagram keeps a partial checksum (the
/// "hardware" never fills it in), and a relay that captures the peer with
/// AF_PACKET and forwards byte for byte (amtrelayd `-e`) would forward it so:
/// every gateway then drops it for a bad checksum.
fn tx_checksum_off(ns: &NetNs, dev: &str) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns.name(), "ethtool", "-K", dev, "tx", "off"])
        .output()
        .map_err(|e| format!("ip netns exec ... ethtool: {e}"))?;
    if !out.status.success() {
        return Err(format!("ethtool -K {dev} tx off: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    match tx_checksumming(ns, dev) {
        Some(false) => Ok(()),
        other => Err(format!("ethtool -k {dev} still reports tx-checksumming {other:?}")),
    }
}

/// The lab's source veth starts with TX checksum offload on (what made the
/// interop test below fail) and [`tx_checksum_off`] turns it off.
#[test]
fn tx_checksum_offload_can_be_turned_off_on_the_source_veth() {
    let test = "tx_checksum_offload_can_be_turned_off_on_the_source_veth";
    if skip_unless_root(test) {
        return;
    }
    let lab = Lab::new();
    let Some(before) = tx_checksumming(&lab.src, "h3m-s") else {
        eprintln!("SKIP: {test}: ethtool not found (it is needed to change checksum offload)");
        return;
    };
    assert!(before, "a veth offloads TX checksums by default");
    tx_checksum_off(&lab.src, "h3m-s").unwrap();
    assert_eq!(tx_checksumming(&lab.src, "h3m-s"), Some(false));
}

/// Optional interop: our gateway (`h3m-recv --amt`) against another relay,
/// e.g. amtrelayd (GrumpyOldTroll/amtrelayd), given as `AMT_RELAY_BIN`. It is
/// started in the relay namespace with amtrelayd's command line (see
/// the AMT notes (amt.md §12) of the reference material): `-d -e -n inet -l inet -c h3m-r0 -a RELAY -r
/// RELAY -s 10.214.1.2`. amtrelayd captures with AF_PACKET and forwards what
/// it sees byte for byte (`-e`), so the source's veth is told to segment in
/// software (`gso_max_segs 1`; otherwise it would forward GSO super-packets
/// whole) and to compute UDP checksums in software (`ethtool -K h3m-s tx
/// off`; otherwise it would forward checksums never filled in, which our
/// gateway drops as `data_bad_checksum`). Needs ethtool.
#[test]
fn interop_with_another_relay_from_amt_relay_bin() {
    let test = "interop_with_another_relay_from_amt_relay_bin";
    let Some(bin) = std::env::var_os("AMT_RELAY_BIN") else {
        eprintln!("SKIP: {test}: AMT_RELAY_BIN not set (point it at an amtrelayd binary to run this test)");
        return;
    };
    if skip_unless_root(test) {
        return;
    }
    let _serial = serial();
    let run = Run::new();
    run.lab.src.ip(&["link", "set", "h3m-s", "gso_max_segs", "1"]).unwrap();
    if let Err(e) = tx_checksum_off(&run.lab.src, "h3m-s") {
        panic!("{test}: cannot turn TX checksum offload off on the source veth (install ethtool): {e}");
    }
    let args =
        ["-d", "-e", "-n", "inet", "-l", "inet", "-c", "h3m-r0", "-a", RELAY_V4, "-r", RELAY_V4, "-s", "10.214.1.2"];
    let mut relay = Proc::spawn("amtrelayd", Some(&run.lab.relay), Path::new(&bin), &args, run.logs(), Stdio::null());
    relay.wait_bound(2268);
    let recv = run.receive("232.1.1.5", SRC_V4, &["--amt", RELAY_V4]);
    let tx = run.send("232.1.1.5", SRC_V4, &["--rate", "20M"]);
    run.finish(tx, recv);
}

/// The local UDP port of process `pid`'s socket connected to `peer` (IPv4),
/// from `/proc/<pid>/net/udp` (the process's own namespace view).
fn local_port_towards(pid: u32, peer: SocketAddr) -> Option<u16> {
    let IpAddr::V4(ip) = peer.ip() else { return None };
    let remote = format!("{:08X}:{:04X}", u32::from_le_bytes(ip.octets()), peer.port());
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/udp")).ok()?;
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&remote.as_str()))
            .then(|| f.get(1).and_then(|a| a.rsplit(':').next()).and_then(|p| u16::from_str_radix(p, 16).ok()))
            .flatten()
    })
}

/// A stateless NAT in the gateway namespace: datagrams from local port
/// `private` to the relay leave from `public`, replies to `public` come back
/// to `private`, and anything the relay still sends to `private` directly is
/// dropped (the old mapping is gone, as after a NAT rebinding).
fn nat_rebind_ruleset(private: u16, public: u16) -> String {
    format!(
        "table ip h3m_nat {{
  chain raw_out {{ type filter hook output priority raw; ip daddr {RELAY_V4} udp dport 2268 notrack; }}
  chain raw_pre {{ type filter hook prerouting priority raw; ip saddr {RELAY_V4} udp sport 2268 notrack; }}
  chain out {{ type filter hook output priority mangle; ip daddr {RELAY_V4} udp dport 2268 udp sport {private} udp sport set {public}; }}
  chain pre {{
    type filter hook prerouting priority mangle;
    ip saddr {RELAY_V4} udp sport 2268 udp dport {private} drop;
    ip saddr {RELAY_V4} udp sport 2268 udp dport {public} udp dport set {private};
  }}
}}
"
    )
}

#[test]
fn nat_rebinding_mid_transfer_is_survived() {
    let test = "nat_rebinding_mid_transfer_is_survived";
    if skip_unless_root(test) {
        return;
    }
    if !nft_available() {
        eprintln!("SKIP: {test}: nft (nftables) is not installed");
        return;
    }
    let _serial = serial();
    let run = Run::new();
    let _relay = run.relay(RELAY_V4, "h3m-amt-relay");
    let recv = run.receive("232.1.1.6", SRC_V4, &["--amt", RELAY_V4]);
    let private = local_port_towards(recv.pid(), SocketAddr::new(RELAY_V4.parse().unwrap(), 2268))
        .expect("the receiver's tunnel socket");
    let public = if private == 40_002 { 40_003 } else { 40_002 };
    // About 3.4 MiB per pass at 12 Mbit/s: 2.4 s a pass, six passes.
    let tx = run.send("232.1.1.6", SRC_V4, &["--rate", "12M", "--repeat", "6"]);
    std::thread::sleep(Duration::from_millis(1200));
    nft_in(&run.lab.gw, &nat_rebind_ruleset(private, public));
    let (f, _) = run.finish(tx, recv);
    // The relay reported the new address (G flag); the gateway tore the old
    // tunnel down and carried on.
    let changed = format!("changed from 10.214.2.2:{private} to 10.214.2.2:{public}");
    assert!(f.stderr.contains(&changed), "expected {changed:?} in:\n{}", f.stderr);
}
