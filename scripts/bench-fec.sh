#!/usr/bin/env bash
# FEC benchmark (issue 10): the encoder and decoder alone on one core (CPU per 100 MiB), then, with
# PERF naming the side-by-side harness's run.sh (two namespaces and a veth, nftables random drop on
# both ends, 3 runs a case; it is not part of this repository), h3m-send --fec beside UFTP: --fec 5 at
# 1% loss and --fec 15 at 5% loss, each invocation with its own lossless runs so that the ratios are
# same-run. GSO_OFF=1 turns the sender veth's segmentation offload off first (one drop = one datagram
# instead of a GSO send of up to `depth` datagrams). Root (the harness makes namespaces); about
# 4 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
perf=${PERF:-}
cargo build --release -p h3m-sender -p h3m-receiver
cargo bench -p h3m-benches --bench fec
if [ -z "$perf" ] || [ ! -x "$perf" ]; then
    echo "SKIP: the side-by-side runs need PERF=/path/to/the/harness/run.sh${perf:+ ($perf is not executable)}"
    exit 0
fi
prefix=""
if [ "${GSO_OFF:-0}" = 1 ]; then
    prefix="ethtool -K {iface_tx} tx-udp-segmentation off gso off >/dev/null; "
fi
for case in "1 5" "5 15"; do
    set -- $case
    echo "== ${1}% loss, --fec $2${GSO_OFF:+ (sender GSO off)}"
    H3M_BIN_DIR=$PWD/target/release "$perf" --no-install --tools uftp,h3m --loss "$1" \
        --set "h3m.tx=${prefix}exec {bin}/h3m-send --group {group} --port {port} --interface {tx_addr} --session-id {sid} --rate {rate} --fec $2 {src_dir}"
done
