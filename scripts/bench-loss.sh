#!/usr/bin/env bash
# Loss-recovery benchmark (issue 10). First the FEC encoder and decoder alone on one core (CPU per
# 100 MiB). Then, with PERF naming the side-by-side harness's run.sh (two namespaces and a veth,
# nftables random drop on both ends, 3 runs a case; it is not part of this repository), h3m beside
# UFTP, each invocation with its own lossless runs so that the ratios are same-run:
#   fec:    --fec 5 at 1% loss, --fec 15 at 5% loss;
#   repair: no FEC, the sender's repair origin (--repair-listen, a certificate made here with
#           openssl) and the receiver's --repair, at 1% and 5% loss.
# MODES="fec repair" (default both) picks them; GSO_OFF=1 turns the sender veth's segmentation
# offload off first (one drop = one datagram instead of a GSO send). Root (the harness makes
# namespaces); about 10 minutes on 2 cores for both modes (UFTP's small files at 5% take ~75 s).
# RATE sets h3m-send's --rate (default max).
set -euo pipefail
cd "$(dirname "$0")/.."
perf=${PERF:-}
modes=${MODES:-fec repair}
rate=${RATE:-max}
cargo build --release -p h3m-sender -p h3m-receiver
case " $modes " in *" fec "*) cargo bench -p h3m-benches --bench fec ;; esac
if [ -z "$perf" ] || [ ! -x "$perf" ]; then
    echo "SKIP: the side-by-side runs need PERF=/path/to/the/harness/run.sh${perf:+ ($perf is not executable)}"
    exit 0
fi
prefix=""
if [ "${GSO_OFF:-0}" = 1 ]; then
    prefix="ethtool -K {iface_tx} tx-udp-segmentation off gso off >/dev/null; "
fi
tx="exec {bin}/h3m-send --group {group} --port {port} --interface {tx_addr} --session-id {sid} --rate {rate}"
rx="exec {bin}/h3m-recv --group {group} --source {tx_addr} --port {port} --interface {rx_addr} --session-id {sid} --out {dst_dir} --idle-timeout 5"
for mode in $modes; do
    case $mode in
    fec)
        for case in "1 5" "5 15"; do
            set -- $case
            echo "== ${1}% loss, --fec $2${GSO_OFF:+ (sender GSO off)}"
            H3M_BIN_DIR=$PWD/target/release "$perf" --no-install --tools uftp,h3m --loss "$1" --set "h3m.rate=$rate" \
                --set "h3m.tx=${prefix}$tx --fec $2 {src_dir}"
        done
        ;;
    repair)
        dir=$(mktemp -d)
        trap 'rm -rf "$dir"' EXIT
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
            -keyout "$dir/origin.key" -out "$dir/origin.pem" -subj "/CN=h3m-bench" 2>/dev/null
        chmod a+r "$dir" "$dir"/*
        pin=$(openssl x509 -in "$dir/origin.pem" -outform DER | sha256sum | cut -d' ' -f1)
        for loss in 1 5; do
            echo "== ${loss}% loss, unicast repair, no FEC${GSO_OFF:+ (sender GSO off)}"
            H3M_BIN_DIR=$PWD/target/release "$perf" --no-install --tools uftp,h3m --loss "$loss" --set "h3m.rate=$rate" \
                --set "h3m.tx=${prefix}$tx --repair-listen {tx_addr}:4433 --repair-cert $dir/origin.pem --repair-key $dir/origin.key --repair-linger 60 {src_dir}" \
                --set "h3m.rx=$rx --repair https://{tx_addr}:4433 --repair-pin $pin --repair-jitter 0"
        done
        ;;
    *) echo "unknown mode $mode (fec, repair)" >&2; exit 2 ;;
    esac
done
