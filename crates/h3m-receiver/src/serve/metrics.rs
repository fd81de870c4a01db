//! `/metrics`: the receiver's and the server's counters in the Prometheus
//! text exposition format (version 0.0.4), written with
//! [`h3m_unicast::metrics::Exposition`].
//!
//! Receiver counters (from the live counters, and the summary at the end):
//! `h3m_receiver_datagrams_total`, `h3m_receiver_packets_total`,
//! `h3m_receiver_body_bytes_total`, `h3m_receiver_dropped_total{reason}`,
//! `h3m_receiver_packet_number_gaps_total`,
//! `h3m_receiver_reordered_packets_total`, `h3m_receiver_pushes_total{status}`,
//! `h3m_receiver_resources_total{status}` (`resource` records seen:
//! complete, incomplete, refused, failed), `h3m_receiver_resources_pending`,
//! `h3m_receiver_promises_total`, `h3m_receiver_fec_*_total`,
//! `h3m_receiver_sessions_ended_total` and, through AMT,
//! `h3m_receiver_amt_*_total`. Server counters:
//! `h3m_serve_requests_total{code}`, `h3m_serve_body_bytes_total`,
//! `h3m_serve_waiting`, `h3m_serve_connections`,
//! `h3m_serve_connections_total`, `h3m_serve_connections_refused_total`,
//! `h3m_serve_event_feeds`, `h3m_serve_events_dropped_total`.

use std::sync::atomic::Ordering;

use h3m_unicast::metrics::Exposition;

use super::{Shared, lock};

/// The exposition of a server's counters.
pub(crate) fn render(shared: &Shared) -> String {
    let (stats, sessions_ended) = {
        let live = lock(&shared.live);
        (live.stats.clone(), live.sessions_ended)
    };
    let (counters, pending) = {
        let index = lock(&shared.index);
        (index.counters(), index.len().1)
    };
    let r = &stats.receiver;
    let mut e = Exposition::new();
    let c = "counter";
    e.single("h3m_receiver_datagrams_total", c, "UDP datagrams read (session and side port).", stats.datagrams);
    e.single("h3m_receiver_packets_total", c, "Datagrams accepted as packets of the session.", r.packets);
    e.single("h3m_receiver_body_bytes_total", c, "Body bytes received.", r.body_bytes);
    e.family("h3m_receiver_dropped_total", c, "Datagrams or packets dropped, by reason.");
    for (reason, n) in [
        ("foreign_session", r.foreign_session),
        ("malformed", r.malformed_packets),
        ("protection", r.protection_failures),
        ("replayed", r.replayed_packets),
        ("frame_error", r.frame_errors),
        ("header_error", r.header_errors),
        ("orphan_stream", r.orphan_streams_dropped),
    ] {
        e.sample("h3m_receiver_dropped_total", &[("reason", reason)], n);
    }
    e.single("h3m_receiver_dropped_buffer_bytes_total", c, "Bytes dropped at a buffer limit.", r.dropped_buffer_bytes);
    e.single(
        "h3m_receiver_packet_number_gaps_total",
        c,
        "Packet numbers skipped over (lost, or still to come out of order).",
        r.packet_number_gaps,
    );
    e.single("h3m_receiver_reordered_packets_total", c, "Packets that arrived out of order.", r.reordered_packets);
    e.single("h3m_receiver_duplicate_bytes_total", c, "Stream bytes that had already arrived.", r.duplicate_bytes);
    e.family("h3m_receiver_pushes_total", c, "Pushes finished, by outcome.");
    for (status, n) in [
        ("complete", r.pushes_complete),
        ("incomplete", r.pushes_incomplete),
        ("evicted", r.pushes_evicted),
        ("lost", r.pushes_lost),
        ("headless", r.headless_streams),
    ] {
        e.sample("h3m_receiver_pushes_total", &[("status", status)], n);
    }
    e.single("h3m_receiver_promises_total", c, "Push promises reported.", counters.promised);
    e.family("h3m_receiver_resources_total", c, "Resources reported, by status.");
    for (status, n) in [
        ("complete", counters.complete),
        ("incomplete", counters.incomplete),
        ("refused", counters.refused),
        ("failed", counters.failed),
    ] {
        e.sample("h3m_receiver_resources_total", &[("status", status)], n);
    }
    e.single("h3m_receiver_resources_pending", "gauge", "Resources promised and not settled.", pending as u64);
    let f = &r.fec;
    e.single("h3m_receiver_fec_repair_datagrams_total", c, "FEC repair datagrams received.", f.repair_datagrams);
    e.single("h3m_receiver_fec_recovered_datagrams_total", c, "Datagrams FEC rebuilt.", f.datagrams_recovered);
    e.single("h3m_receiver_fec_blocks_decoded_total", c, "FEC blocks rebuilt.", f.blocks_decoded);
    e.single(
        "h3m_receiver_fec_blocks_unrecovered_total",
        c,
        "FEC blocks that lost more than their repair could rebuild.",
        f.blocks_unrecovered,
    );
    e.single("h3m_receiver_sessions_ended_total", c, "Sessions that ended.", sessions_ended);
    if let Some(a) = stats.amt {
        e.single("h3m_receiver_amt_discoveries_total", c, "AMT Relay Discoveries sent.", a.discoveries_sent);
        e.single("h3m_receiver_amt_advertisements_total", c, "AMT Relay Advertisements accepted.", a.advertisements);
        e.single("h3m_receiver_amt_requests_total", c, "AMT Requests sent.", a.requests_sent);
        e.single("h3m_receiver_amt_queries_total", c, "AMT Membership Queries accepted.", a.queries);
        e.single("h3m_receiver_amt_relays_lost_total", c, "AMT relays given up.", a.relays_lost);
        e.single("h3m_receiver_amt_data_total", c, "AMT data datagrams delivered.", a.data_packets);
        e.single("h3m_receiver_amt_data_invalid_total", c, "AMT data dropped as invalid.", a.data_invalid);
    }
    e.family("h3m_serve_requests_total", c, "HTTP answers, by status code.");
    for (code, n) in lock(&shared.counters.by_status).iter() {
        e.sample("h3m_serve_requests_total", &[("code", &code.to_string())], *n);
    }
    let sc = &shared.counters;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    e.single("h3m_serve_body_bytes_total", c, "Resource body bytes sent.", get(&sc.body_bytes));
    e.single("h3m_serve_waiting", "gauge", "Requests waiting for a promised resource.", shared.waiting() as u64);
    e.single("h3m_serve_connections", "gauge", "Connections open.", shared.open_connections() as u64);
    e.single("h3m_serve_connections_total", c, "Connections accepted.", get(&sc.connections));
    e.single(
        "h3m_serve_connections_refused_total",
        c,
        "Connections closed at once at the connection limit.",
        get(&sc.refused_connections),
    );
    let feeds = lock(&shared.subscribers).iter().filter(|tx| !tx.is_closed()).count();
    e.single("h3m_serve_event_feeds", "gauge", "/events feeds open.", feeds as u64);
    e.single("h3m_serve_events_dropped_total", c, "Records a slow /events feed missed.", get(&sc.events_dropped));
    e.finish()
}
