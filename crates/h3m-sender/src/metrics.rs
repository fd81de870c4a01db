//! The session's counters for Prometheus (`h3m-send --metrics ADDR:PORT`):
//! the text exposition of [`SenderStats`], served by
//! [`h3m_unicast::metrics::MetricsServer`] from the
//! [`SharedStats`](crate::publisher::SharedStats) the publisher keeps up to
//! date.
//!
//! Counters: `h3m_sender_datagrams_total`, `h3m_sender_bytes_total` (UDP
//! payload), `h3m_sender_resources_total` (pushes finished, each copy of
//! `--repeat` or `--carousel` counted), `h3m_sender_body_bytes_total`,
//! `h3m_sender_pings_total`, `h3m_sender_head_repeats_total` (datagrams
//! repeating promises and stream heads, `--repeat-heads`),
//! `h3m_sender_fec_repair_datagrams_total`, `h3m_sender_fec_repair_bytes_total`;
//! gauges: `h3m_sender_rate_limit_bits_per_second` (`--rate`; 0 unpaced)
//! and `h3m_sender_uptime_seconds`.

use std::time::Duration;

use h3m_proto::sender::SenderStats;
use h3m_unicast::metrics::Exposition;

/// The exposition of a session's counters; `rate` is the configured peak
/// rate in bits/s (`None`: unpaced), `uptime` how long the sender has run.
pub fn render(stats: &SenderStats, rate: Option<u64>, uptime: Duration) -> String {
    let mut e = Exposition::new();
    let c = "counter";
    e.single("h3m_sender_datagrams_total", c, "Datagrams sent (repair not included).", stats.datagrams);
    e.single("h3m_sender_bytes_total", c, "UDP payload bytes sent (repair not included).", stats.bytes);
    e.single("h3m_sender_resources_total", c, "Pushes finished (every copy counted).", stats.resources);
    e.single("h3m_sender_body_bytes_total", c, "Body bytes of the pushes finished.", stats.body_bytes);
    e.single("h3m_sender_pings_total", c, "Keep-alive PINGs sent.", stats.pings);
    e.single(
        "h3m_sender_head_repeats_total",
        c,
        "Datagrams repeating promises and stream heads (--repeat-heads).",
        stats.head_repeats,
    );
    e.single("h3m_sender_fec_repair_datagrams_total", c, "FEC repair datagrams sent.", stats.repair_datagrams);
    e.single("h3m_sender_fec_repair_bytes_total", c, "FEC repair bytes sent.", stats.repair_bytes);
    e.single(
        "h3m_sender_rate_limit_bits_per_second",
        "gauge",
        "The configured peak rate of UDP payload (0: unpaced).",
        rate.unwrap_or(0),
    );
    e.single("h3m_sender_uptime_seconds", "gauge", "Seconds since the sender started.", uptime.as_secs());
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_is_exposed() {
        let stats = SenderStats {
            datagrams: 10,
            bytes: 12_000,
            resources: 2,
            body_bytes: 11_000,
            pings: 1,
            head_repeats: 3,
            repair_datagrams: 4,
            repair_bytes: 4_800,
        };
        let text = render(&stats, Some(10_000_000), Duration::from_secs(7));
        for line in [
            "h3m_sender_datagrams_total 10",
            "h3m_sender_bytes_total 12000",
            "h3m_sender_resources_total 2",
            "h3m_sender_body_bytes_total 11000",
            "h3m_sender_pings_total 1",
            "h3m_sender_head_repeats_total 3",
            "h3m_sender_fec_repair_datagrams_total 4",
            "h3m_sender_fec_repair_bytes_total 4800",
            "h3m_sender_rate_limit_bits_per_second 10000000",
            "h3m_sender_uptime_seconds 7",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
        assert_eq!(text.lines().filter(|l| l.starts_with("# TYPE")).count(), 10);
    }
}
