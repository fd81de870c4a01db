#!/usr/bin/env bash
# FEC benchmark (issue 10): the encoder and decoder alone on one core (CPU per 100 MiB), then
# h3m-send --fec beside UFTP on the ../shared/perf namespace harness (veth between two namespaces,
# nftables random drop on both ends, 3 runs a case): --fec 5 at 1% loss and --fec 15 at 5% loss, each
# invocation with its own lossless runs so that the ratios are same-run. Set PERF=/path/to/run.sh if
# the harness lives elsewhere; GSO_OFF=1 turns the sender veth's segmentation offload off first (one
# drop = one datagram instead of a GSO send of up to `depth` datagrams). Root (the harness makes
# namespaces); about 4 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
perf=${PERF:-../shared/perf/run.sh}
cargo build --release -p h3m-sender -p h3m-receiver
cargo bench -p h3m-benches --bench fec
if [ ! -x "$perf" ]; then
    echo "SKIP: $perf not found (set PERF to the harness's run.sh)"
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
