#!/usr/bin/env bash
# Packet-protection benchmark: h3m-send -> h3m-recv goodput on loopback for cipher suites 0000 (null), 1301
# (AES-128-GCM), 1302 (AES-256-GCM) and 1303 (ChaCha20-Poly1305), interleaved rounds, medians and the ratio of
# each suite to null measured in the same run; then each suite's seal/open cost per 1200-byte packet in process.
# What each number means: the header of benches/benches/protection.rs. Linux; multicast on lo only
# (239.255.0.0/16, interface 127.0.0.1, TTL 1). Takes about 40 s on 2 cores and needs ~0.5 GiB free in /dev/shm.
# Environment: H3M_BENCH_BYTES (file size, bytes or with a K/M/G suffix, default 256M), H3M_BENCH_RATE
# (h3m-send --rate, default 2G), H3M_BENCH_REPS (rounds, default 3), H3M_BENCH_SUITES (default
# 0000,1301,1302,1303), H3M_BENCH_INPROC_MS (time per in-process figure, default 300).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p h3m-sender -p h3m-receiver
cargo bench -p h3m-benches --bench protection
