//! h3m's unicast HTTP side, for receivers with a return path: the **repair
//! origin** a sender runs beside its multicast session, and the **client** a
//! receiver uses to fetch exactly the bytes it lost
//! (draft-pardue-quic-http-mcast §7.2, unicast repair).
//!
//! * [`catalog`]: what is served: each published resource by its `:path`
//!   (memory, a file as published, or a live stream's spool).
//! * [`origin`]: the server: HTTP/3 (quinn + h3) and HTTP/1.1 (hyper) over
//!   rustls on one address, byte ranges, bounded connections and requests
//!   (`503` + `Retry-After` beyond).
//! * [`client`]: [`RepairClient`](client::RepairClient): HTTP/3 first,
//!   HTTP/1.1 fallback, every answer checked against the range asked for.
//! * [`tls`]: certificates: PEM files or a self-signed one with its SHA-256
//!   fingerprint, and how a client trusts the origin (CA, pin, system).
//! * [`listing`]: the session's pushes (push ID, `:path`, length, SHA-256),
//!   for receivers that lost a promise.
//! * [`feed`]: long-lived streaming responses (AMBI manifests,
//!   `application/ambi`), bounded whatever the subscribers do.
//! * [`range`]: the `Range`, `Content-Range` and `Retry-After` fields.
//! * [`metrics`]: the Prometheus text exposition, and a `/metrics` server.
//! * [`server_thread`]: the thread each server runs on, and its stop switch.
//!
//! ```no_run
//! use std::sync::Arc;
//! use h3m_unicast::catalog::{Catalog, Entry, Source};
//! use h3m_unicast::client::{ClientConfig, OriginUrl, RepairClient};
//! use h3m_unicast::origin::{Origin, OriginConfig};
//! use h3m_unicast::tls::{Identity, Trust};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let catalog = Arc::new(Catalog::new());
//! catalog.insert("/hello.txt", Entry { source: Source::Memory("hello".into()), content_type: None, sha256: None });
//! let identity = Identity::self_signed(&["localhost".into()])?;
//! let pin = identity.fingerprint();
//! let origin = Origin::spawn(OriginConfig::new("127.0.0.1:0".parse()?, identity), catalog)?;
//! let url = OriginUrl::parse(&format!("https://127.0.0.1:{}", origin.local_addr().port()))?;
//! let client = RepairClient::connect(&url, &ClientConfig::new(Trust::Pin(pin))).await?;
//! assert_eq!(client.fetch("/hello.txt", 1..4).await?.body, "ell");
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod catalog;
pub mod client;
pub mod feed;
pub mod listing;
pub mod metrics;
pub mod origin;
pub mod range;
pub mod repr_digest;
mod respond;
pub mod server_thread;
pub mod tls;
