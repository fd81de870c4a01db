//! The origin and the client against each other on loopback: byte-exact
//! ranges over HTTP/3 and HTTP/1.1, the fallback, trust (pin, CA, wrong
//! pin), and the limits (503 + Retry-After, refused connections).

use std::sync::Arc;
use std::time::Duration;

use h3m_unicast::catalog::{Catalog, Entry, Source};
use h3m_unicast::client::{ClientConfig, FetchError, OriginUrl, Protocol, RepairClient, wait_for_listener};
use h3m_unicast::origin::{Origin, OriginConfig};
use h3m_unicast::tls::{Identity, Trust};

fn body(n: usize) -> Vec<u8> {
    (0..n as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

struct Lab {
    origin: Origin,
    pin: [u8; 32],
    body: Vec<u8>,
    _dir: tempfile::TempDir,
}

fn lab(tweak: impl FnOnce(&mut OriginConfig)) -> Lab {
    let body = body(300_000);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.bin");
    std::fs::write(&file, &body).unwrap();
    let catalog = Arc::new(Catalog::new());
    catalog.insert(
        "/mem/a%20b.txt",
        Entry { source: Source::Memory(body[..1000].to_vec().into()), content_type: None, sha256: None },
    );
    let sha256: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, &body).as_ref().try_into().unwrap();
    catalog.insert("/big.bin", Entry::file(&file, Some("application/octet-stream".into()), Some(sha256)).unwrap());
    let identity = Identity::self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
    let pin = identity.fingerprint();
    let mut config = OriginConfig::new("127.0.0.1:0".parse().unwrap(), identity);
    tweak(&mut config);
    let origin = Origin::spawn(config, catalog).unwrap();
    Lab { origin, pin, body, _dir: dir }
}

impl Lab {
    fn url(&self) -> OriginUrl {
        OriginUrl::parse(&format!("https://127.0.0.1:{}", self.origin.local_addr().port())).unwrap()
    }
}

fn quick(trust: Trust) -> ClientConfig {
    let mut c = ClientConfig::new(trust);
    c.connect_timeout = Duration::from_millis(700);
    c
}

async fn ranges_are_byte_exact(lab: &Lab, client: &RepairClient) {
    for range in [0..1u64, 1199..2400, 65_535..200_001, 299_000..300_000] {
        let got = client.fetch("/big.bin", range.clone()).await.unwrap();
        assert_eq!(got.range, range);
        assert_eq!(got.complete, Some(300_000));
        assert_eq!(&got.body[..], &lab.body[range.start as usize..range.end as usize]);
        // The whole body's digest, as the catalog knows it (repr-digest).
        assert_eq!(
            got.sha256.as_ref().map(|d| &d[..]),
            Some(ring::digest::digest(&ring::digest::SHA256, &lab.body).as_ref())
        );
    }
    // Past the end: the origin sends what exists and says so.
    let tail = client.fetch("/big.bin", 299_990..400_000).await.unwrap();
    assert_eq!((tail.range, &tail.body[..]), (299_990..300_000, &lab.body[299_990..]));
    let mem = client.fetch("/mem/a%20b.txt", 10..20).await.unwrap();
    assert_eq!((&mem.body[..], mem.sha256), (&lab.body[10..20], None), "no digest known, none announced");
    assert_eq!(client.fetch("/nope", 0..10).await, Err(FetchError::NotFound));
    assert_eq!(client.fetch("/big.bin", 300_000..300_001).await, Err(FetchError::RangeNotSatisfiable));
}

#[tokio::test]
async fn http3_ranges_are_byte_exact_and_counted() {
    let lab = lab(|_| {});
    let client = Arc::new(RepairClient::connect(&lab.url(), &quick(Trust::Pin(lab.pin))).await.unwrap());
    assert_eq!(client.protocol(), Protocol::Http3);
    ranges_are_byte_exact(&lab, &client).await;
    // Side by side on one connection.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..40u64 {
        let client = Arc::clone(&client);
        set.spawn(async move { (i, client.fetch("/big.bin", i * 7000..i * 7000 + 1200).await) });
    }
    while let Some(done) = set.join_next().await {
        let (i, got) = done.unwrap();
        let start = i as usize * 7000;
        assert_eq!(got.unwrap().body, lab.body[start..start + 1200]);
    }
    let c = lab.origin.counters();
    assert_eq!((c.partial, c.not_found, c.other, c.h3_connections, c.h1_connections), (46, 1, 1, 1, 0));
    assert_eq!(c.bytes, 1 + 1201 + 134_466 + 1000 + 10 + 10 + 40 * 1200);
}

#[tokio::test]
async fn http11_fallback_when_udp_is_dropped() {
    let lab = lab(|c| c.http3 = false);
    let client = RepairClient::connect(&lab.url(), &quick(Trust::Pin(lab.pin))).await.unwrap();
    assert_eq!(client.protocol(), Protocol::Http11);
    ranges_are_byte_exact(&lab, &client).await;
    let c = lab.origin.counters();
    assert_eq!((c.h3_connections, c.h1_connections, c.partial), (0, 1, 6));
}

#[tokio::test]
async fn only_the_trusted_certificate_is_accepted() {
    let lab = lab(|_| {});
    let wrong = RepairClient::connect(&lab.url(), &quick(Trust::Pin([0; 32]))).await.unwrap_err();
    assert!(matches!(wrong, FetchError::Connect(_)), "{wrong}");
    // A CA-signed origin certificate and the CA as the trust anchor.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().signed_by(&leaf_key, &issuer).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_pem, key_pem, ca_pem) = (dir.path().join("c.pem"), dir.path().join("k.pem"), dir.path().join("ca.pem"));
    std::fs::write(&cert_pem, leaf.pem()).unwrap();
    std::fs::write(&key_pem, leaf_key.serialize_pem()).unwrap();
    std::fs::write(&ca_pem, ca_cert.pem()).unwrap();
    let identity = Identity::from_pem_files(&cert_pem, &key_pem).unwrap();
    let catalog = Arc::new(Catalog::new());
    catalog.insert("/x", Entry { source: Source::Memory("xyz".into()), content_type: None, sha256: None });
    let origin = Origin::spawn(OriginConfig::new("127.0.0.1:0".parse().unwrap(), identity), catalog).unwrap();
    let url = OriginUrl::parse(&format!("https://127.0.0.1:{}", origin.local_addr().port())).unwrap();
    let ca = h3m_unicast::tls::load_certs(&ca_pem).unwrap();
    let client = RepairClient::connect(&url, &quick(Trust::Ca(ca))).await.unwrap();
    assert_eq!(client.fetch("/x", 1..3).await.unwrap().body, "yz");
    // The self-signed lab origin does not chain to that CA.
    let ca = h3m_unicast::tls::load_certs(&ca_pem).unwrap();
    assert!(matches!(RepairClient::connect(&lab.url(), &quick(Trust::Ca(ca))).await, Err(FetchError::Connect(_))));
}

#[tokio::test]
async fn over_the_request_limit_the_origin_answers_503_with_retry_after() {
    let lab = lab(|c| {
        c.max_requests = 1;
        c.retry_after = Duration::from_secs(2);
    });
    // Bodies larger than a QUIC stream's window: the origin waits for the
    // client to read while holding the request's permit.
    let large = body(3 << 20);
    lab.origin
        .catalog()
        .insert("/large", Entry { source: Source::Memory(large.clone().into()), content_type: None, sha256: None });
    let client = Arc::new(RepairClient::connect(&lab.url(), &quick(Trust::Pin(lab.pin))).await.unwrap());
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let client = Arc::clone(&client);
        set.spawn(async move { client.fetch("/large", 0..3 << 20).await });
    }
    let (mut ok, mut busy) = (0, 0);
    while let Some(done) = set.join_next().await {
        match done.unwrap() {
            Ok(f) => {
                assert!(f.body == large);
                ok += 1;
            }
            Err(FetchError::Busy { retry_after }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(2)));
                busy += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(ok >= 1 && busy >= 1, "ok {ok} busy {busy}");
    let c = lab.origin.counters();
    assert_eq!((c.partial, c.busy), (ok, busy));
}

#[tokio::test]
async fn over_the_connection_limit_connections_are_refused() {
    let lab = lab(|c| {
        c.max_connections = 1;
        c.http1 = false;
    });
    let first = RepairClient::connect(&lab.url(), &quick(Trust::Pin(lab.pin))).await.unwrap();
    let second = RepairClient::connect(&lab.url(), &quick(Trust::Pin(lab.pin))).await;
    assert!(matches!(second, Err(FetchError::Connect(_))));
    assert_eq!(first.fetch("/big.bin", 0..10).await.unwrap().body, lab.body[..10]);
    assert_eq!(lab.origin.counters().refused_connections, 1);
}

#[tokio::test]
async fn shutdown_returns_while_a_vanished_client_is_still_connected() {
    let lab = lab(|_| {});
    let client = RepairClient::connect(&lab.url(), &quick(Trust::Pin(lab.pin))).await.unwrap();
    assert_eq!(client.fetch("/big.bin", 0..10).await.unwrap().body, lab.body[..10]);
    // The peer goes away without closing (as a killed receiver does).
    std::mem::forget(client);
    let started = std::time::Instant::now();
    lab.origin.shutdown();
    assert!(started.elapsed() < Duration::from_secs(5), "shutdown took {:?}", started.elapsed());
}

#[tokio::test]
async fn the_listing_names_each_push_and_is_counted_apart() {
    let lab = lab(|_| {});
    let catalog = lab.origin.catalog();
    catalog.note_push(4, "/big.bin", Some(60));
    catalog.note_push(5, "/mem/a%20b.txt", None);
    catalog.note_push(6, "/gone", None);
    let client = RepairClient::connect(&lab.url(), &quick(Trust::Pin(lab.pin))).await.unwrap();
    let f = client.fetch(h3m_unicast::listing::LISTING_PATH, 0..1 << 20).await.unwrap();
    let text = std::str::from_utf8(&f.body).unwrap();
    let big = format!("4 300000 {} 60 /big.bin\n", hex::encode(ring::digest::digest(&ring::digest::SHA256, &lab.body)));
    assert_eq!(text, format!("{big}5 1000 - - /mem/a%20b.txt\n6 - - - /gone\n"));
    let listed = h3m_unicast::listing::parse(text).unwrap();
    assert_eq!(listed[&5].length, Some(1000));
    assert_eq!(client.lookup(4).await.unwrap(), Some(listed[&4].clone()));
    assert_eq!(client.lookup(7).await.unwrap(), None);
    let one = big.len() as u64;
    let c = lab.origin.counters();
    assert_eq!((c.bytes, c.listing_bytes, c.not_found), (0, text.len() as u64 + one, 1));
}

/// A feed (a long-lived response) over HTTP/3 and over HTTP/1.1: the
/// backlog first, then chunks as they are published, byte for byte; closing
/// the feed ends the body; a full feed answers 503; a closed one serves its
/// backlog, then the end.
#[tokio::test]
async fn a_feed_streams_its_chunks_over_both_protocols() {
    use h3m_unicast::feed::{Feed, FeedLimits};
    let feed = Arc::new(Feed::new(
        "application/ambi",
        FeedLimits { backlog: 2, backlog_bytes: 1 << 20, queue: 64, max_subscribers: 2 },
    ));
    let lab = lab(|_| {});
    lab.origin.catalog().insert_feed("/.well-known/h3m/ambi", Arc::clone(&feed));
    for c in [&b"zero"[..], b"one", b"two"] {
        feed.publish(bytes::Bytes::from_static(c));
    }
    let mut bodies = Vec::new();
    for http3 in [true, false] {
        let mut config = quick(Trust::Pin(lab.pin));
        config.http3 = http3;
        let client = RepairClient::connect(&lab.url(), &config).await.unwrap();
        assert_eq!(client.protocol(), if http3 { Protocol::Http3 } else { Protocol::Http11 });
        let stream = client.stream("/.well-known/h3m/ambi").await.unwrap();
        bodies.push((client, stream));
    }
    // Both subscribed: the limit refuses a third.
    let third = RepairClient::connect(&lab.url(), &quick(Trust::Pin(lab.pin))).await.unwrap();
    assert!(matches!(third.stream("/.well-known/h3m/ambi").await, Err(FetchError::Busy { .. })));
    let expected: Vec<u8> = (0..200u32).flat_map(|i| i.to_be_bytes()).collect();
    for chunk in expected.chunks(40) {
        feed.publish(bytes::Bytes::copy_from_slice(chunk));
    }
    feed.close();
    for (client, mut stream) in bodies {
        let mut got = Vec::new();
        let read = async {
            while let Some(c) = stream.next_chunk().await.unwrap() {
                got.extend_from_slice(&c);
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read).await.expect("the body ends when the feed closes");
        assert_eq!(got, [&b"onetwo"[..], &expected].concat(), "{:?}", client.protocol());
    }
    // Closed: a subscriber that comes now gets the backlog (the last 2
    // chunks), then the end of the body.
    let mut late = third.stream("/.well-known/h3m/ambi").await.unwrap();
    let mut got = Vec::new();
    let read = async {
        while let Some(c) = late.next_chunk().await.unwrap() {
            got.extend_from_slice(&c);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.expect("the backlog, then the end");
    assert_eq!(got, expected[expected.len() - 80..]);
    let c = feed.counters();
    assert_eq!((c.subscribed, c.refused, c.published), (3, 1, 3 + 20));
}

/// Nothing listens: TCP is refused at once, and the QUIC attempt is not
/// waited out (30 s here) but given a short grace, so a client that retries
/// (the AMBI channel, a repair) learns the origin is down at once.
#[tokio::test]
async fn connecting_where_nothing_listens_fails_without_waiting_out_the_timeout() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = OriginUrl::parse(&format!("https://{free}")).unwrap();
    let mut config = ClientConfig::new(Trust::System);
    config.connect_timeout = Duration::from_secs(30);
    let attempt = tokio::time::timeout(Duration::from_secs(10), RepairClient::connect(&url, &config)).await;
    match attempt {
        Ok(Err(FetchError::Connect(why))) => assert!(why.contains("h3") && why.contains("tcp"), "{why}"),
        Ok(other) => panic!("{other:?}"),
        Err(_) => panic!("the QUIC attempt was waited out"),
    }
}

/// An origin that starts while a client is trying (an AMBI channel started
/// just before its sender): waiting for its listener ends as it opens, and a
/// connection attempt that began before it opened is run again at once
/// (its QUIC Initial went to a closed port) instead of failing.
#[tokio::test]
async fn a_client_connects_to_an_origin_that_starts_while_it_tries() {
    let start_origin_at = |addr: std::net::SocketAddr, after: Duration| {
        let identity = Identity::self_signed(&["127.0.0.1".into()]).unwrap();
        let pin = identity.fingerprint();
        let origin = tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let mut config = OriginConfig::new(addr, identity);
            config.listen = addr;
            Origin::spawn(config, Arc::new(Catalog::new())).unwrap()
        });
        (origin, pin)
    };
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = |addr| OriginUrl::parse(&format!("https://{addr}")).unwrap();

    // Nothing listens: the wait takes the whole time.
    let addr = free();
    let started = std::time::Instant::now();
    wait_for_listener(&url(addr), Duration::from_millis(200)).await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    // The origin starts 60 ms into a wait of 10 s: the wait ends then.
    let (origin, pin) = start_origin_at(addr, Duration::from_millis(60));
    let started = std::time::Instant::now();
    wait_for_listener(&url(addr), Duration::from_secs(10)).await;
    assert!(started.elapsed() < Duration::from_secs(5), "waited {:?}", started.elapsed());
    let origin = origin.await.unwrap();
    let client = RepairClient::connect(&url(addr), &quick(Trust::Pin(pin))).await.unwrap();
    assert_eq!(client.protocol(), Protocol::Http3);
    drop(client);
    origin.shutdown();

    // The origin starts 30 ms after a connection attempt began (TCP was
    // refused, QUIC's first packet lost): the attempt still connects, over
    // HTTP/3, with no retry by the caller.
    let addr = free();
    let (origin, pin) = start_origin_at(addr, Duration::from_millis(30));
    let mut config = quick(Trust::Pin(pin));
    config.connect_timeout = Duration::from_secs(30);
    let client = RepairClient::connect(&url(addr), &config).await.unwrap();
    assert_eq!(client.protocol(), Protocol::Http3);
    origin.await.unwrap().shutdown();
}
