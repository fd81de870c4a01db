#!/usr/bin/env bash
# Loopback throughput benchmark: h3m-send --rate unpaced -> h3m-recv (1 GiB file, 1200-byte datagrams) next to the
# raw UDP ceilings (send_to, GSO) of the same path, 3 runs each, medians. What each number means: the header
# of benches/benches/loopback.rs. Linux; multicast on lo only (239.255.0.0/16, interface 127.0.0.1, TTL 1).
# Takes about 30 s on 2 cores and needs ~2.2 GiB free in /dev/shm.
# Environment: H3M_BENCH_MIB (file size, default 1024), H3M_BENCH_REPS (default 3), H3M_BENCH_RATE (default unpaced).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p h3m-sender -p h3m-receiver
cargo bench -p h3m-benches --bench loopback
