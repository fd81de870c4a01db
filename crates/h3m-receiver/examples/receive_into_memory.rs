//! Receives an h3m session into memory.
//!
//! A thread plays the sender: it encodes two resources with `h3m_proto`'s
//! sans-IO sender and multicasts them on loopback (outgoing interface
//! 127.0.0.1, TTL 1). The receiver joins the group with
//! [`h3m_receiver::live::receive`] and collects every complete, verified
//! resource in a [`MemorySink`]; it ends on the sender's end signal.
//!
//! Run: `cargo run -p h3m-receiver --example receive_into_memory`
//! (`cargo test` runs it too).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use h3m_net::{Interface, MulticastConfig};
use h3m_proto::SessionId;
use h3m_proto::encoder::EncoderConfig;
use h3m_proto::protection::NullProtection;
use h3m_proto::sender::{ResourceMeta, Sender, SenderConfig};
use h3m_receiver::live::{self, LiveOptions};
use h3m_receiver::report::Record;
use h3m_receiver::sink::MemorySink;

const FILES: [(&str, &[u8]); 2] = [("index.m3u8", b"#EXTM3U\n#EXT-X-VERSION:7\n"), ("seg-1.m4s", &[0x5a; 20_000])];

/// The sender side: every resource, then the end of the session.
fn send(group: SocketAddr, session_id: SessionId) {
    let cfg = MulticastConfig::new(group).with_interface(Interface::Addr(Ipv4Addr::LOCALHOST.into()));
    let (socket, _) = h3m_net::open_sender(&cfg).expect("a loopback multicast sender");
    let mut sender = Sender::new(SenderConfig::new(EncoderConfig::new(session_id)), Box::new(NullProtection));
    for (i, (path, body)) in FILES.iter().enumerate() {
        let mut meta = ResourceMeta::file(*path, body.len() as u64, SystemTime::now());
        meta.last = i + 1 == FILES.len();
        let id = sender.start(&meta).unwrap();
        sender.write(id, body).unwrap();
        sender.finish(id, None).unwrap();
    }
    while let Some(datagram) = sender.poll_transmit(Instant::now()) {
        while let Err(e) = socket.send_to(&datagram, group) {
            assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "send: {e}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port = 40_000 + (std::process::id() % 20_000) as u16;
    let group = SocketAddr::from(([239, 255, 42, 1], port));
    let session_id = SessionId::from_hex("e7a1").unwrap();

    let mut opts = LiveOptions::new(group, "unused");
    opts.interface = Some(Interface::Addr(Ipv4Addr::LOCALHOST.into()));
    opts.session.session_id = session_id;
    opts.session.idle_timeout = Some(Duration::from_secs(10));

    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300)); // let the receiver join first
        send(group, session_id);
    });
    let (outcome, mut sink) = live::receive(&opts, MemorySink::new(64 << 20), |event| {
        if let Record::Resource(r) = event {
            println!("{:?} {}", r.status, r.path.as_deref().unwrap_or("-"));
        }
    })
    .await;
    sender.join().unwrap();

    let received = sink.take();
    for r in &received {
        println!("{}: {} bytes", r.path.display(), r.body.len());
    }
    assert_eq!(received.len(), FILES.len(), "{outcome:?}");
    for (path, body) in FILES {
        let r = received.iter().find(|r| r.path.to_str() == Some(path)).expect(path);
        assert_eq!(r.body, body);
    }
    assert_eq!(outcome.status, h3m_receiver::ExitStatus::Success);
}
