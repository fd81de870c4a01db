//! Publishes resources that are not files: a manifest built in memory and a
//! live stream of unknown length, then ends the session.
//!
//! The publisher multicasts on loopback (outgoing interface 127.0.0.1, TTL
//! 1); a receiver in the same program ([`h3m_receiver::live::receive`] into
//! a [`MemorySink`]) checks that both arrive intact.
//!
//! Run: `cargo run -p h3m-sender --example publish_from_memory`
//! (`cargo test` runs it too).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use h3m_net::Interface;
use h3m_proto::SessionId;
use h3m_receiver::live::{self, LiveOptions};
use h3m_receiver::sink::MemorySink;
use h3m_sender::publisher::{Publisher, PublisherConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port = 40_000 + (std::process::id() % 20_000) as u16;
    let group = SocketAddr::from(([239, 255, 42, 2], port));
    let lo = Interface::Addr(Ipv4Addr::LOCALHOST.into());

    let mut config = PublisherConfig::new(group);
    config.interface = Some(lo.clone());
    config.session_id = SessionId::from_hex("5e4d").unwrap();
    config.rate = Some(100_000_000);
    println!("Alt-Svc: {}", config.advertisement());

    // The receiver joins from the advertisement, on loopback.
    let mut opts = LiveOptions::from_advertisement(&config.advertisement(), "unused").unwrap();
    opts.interface = Some(lo);
    opts.session.idle_timeout = Some(Duration::from_secs(10));
    let receiving = live::receive(&opts, MemorySink::new(64 << 20), |_| {});
    let manifest = format!("{{\"segments\": {}}}\n", 3);
    let publishing = async {
        tokio::time::sleep(Duration::from_millis(300)).await; // let the receiver join first
        let mut publisher = Publisher::open(&config).unwrap();
        publisher.publish("manifest.json", manifest.as_bytes()).await.unwrap();
        let mut live = publisher.start_stream("live/feed.txt").await.unwrap();
        for i in 0..3 {
            publisher.write_stream(&mut live, format!("chunk {i}\n").as_bytes()).await.unwrap();
        }
        publisher.finish_stream(live).await.unwrap();
        publisher.close().await.unwrap()
    };
    // One task, both sides (the receiver's future stays on this thread).
    let ((outcome, mut sink), closed) = tokio::join!(receiving, publishing);
    println!("sent {} resources in {} datagrams", closed.stats.resources, closed.stats.datagrams);

    let got = sink.take();
    let body = |path: &str| got.iter().find(|r| r.path.to_str() == Some(path)).map(|r| r.body.clone());
    assert_eq!(body("manifest.json").as_deref(), Some(manifest.as_bytes()), "{outcome:?}");
    assert_eq!(body("live/feed.txt").as_deref(), Some(&b"chunk 0\nchunk 1\nchunk 2\n"[..]));
    println!("received intact: {}", got.iter().map(|r| r.path.display().to_string()).collect::<Vec<_>>().join(", "));
}
