#!/usr/bin/env bash
# The offload study (issue 13): where h3m's speed comes from, one table per path, each against the raw UDP
# probes of the same run.
#
# 1. veth between two namespaces: one invocation of the side-by-side harness (PERF=path/to/perf/run.sh, the
#    one this repository is benchmarked with; without it this part is skipped), 100 MiB, RUNS runs a row
#    (default 3): the `raw` (sendmmsg/recvmmsg) and `raw-gso` (GSO/GRO) probes next to h3m-send --rate max
#    with GSO sends of 1, 4, 16 and 64 datagrams (--gso-segments), paced batches of 8, 64 and 256 datagrams
#    (--batch), receive buffers of 4, 16 and 64 MiB (--recv-buffer-mib), recvmmsg without GRO (--no-gro),
#    AES-128-GCM packet protection, and 1400-byte datagrams.
# 2. loopback: scripts/bench-loopback.sh at --rate max (h3m next to the send_to and GSO ceilings of lo).
# 3. the AMT relay's forwarding to 1, 10 and 100 gateways: `cargo bench -p h3m-benches --bench amt -- relay_forward`
#    (AMT=0 skips it), and AMT end to end against native: scripts/bench-amt.sh at --rate max.
#
# Root only (namespaces). Takes about 4 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench-offload.sh: needs root (network namespaces)"; exit 2; }
RUNS=${RUNS:-3}
cargo build --release --quiet -p h3m-sender -p h3m-receiver -p h3m-amt
BIN=$(pwd)/target/release

echo "== 1. veth (the side-by-side harness), 100 MiB, $RUNS runs a row =="
if [ -z "${PERF:-}" ] || [ ! -x "$PERF" ]; then
    echo "skipped: set PERF to the side-by-side harness's run.sh"
else
    rows=$(mktemp /tmp/h3m-offload-rows.XXXXXX.toml)
    trap 'rm -f "$rows" "$rows.log"' EXIT
    # The harness's own rows (raw, raw-gso, ...), then h3m's variants.
    cp "$(dirname "$PERF")/rows.toml" "$rows"
    port=3100
    row() { # row NAME TX_EXTRA RX_EXTRA [RX_BASE]
        port=$((port + 10))
        local rx_base=${4:-"--group {group} --source {tx_addr} --port {port} --interface {rx_addr} --session-id {sid}"}
        cat >>"$rows" <<EOF

[[row]]
name = "$1"
desc = "tx --rate max $2; rx $3"
bin_env = "H3M_BIN_DIR"
requires = ["{bin}/h3m-send", "{bin}/h3m-recv"]
payloads = ["big"]
done = "rx"
group = "232.0.$((port % 250)).1"
port = $port
rx = "exec {bin}/h3m-recv $rx_base --out {dst_dir} --idle-timeout 5 $3"
tx = "exec {bin}/h3m-send --group {group} --port {port} --interface {tx_addr} --session-id {sid} --rate max $2 {src_dir}"
EOF
    }
    row h3m-max "" ""
    for n in 1 4 16; do row "h3m-gso$n" "--gso-segments $n" ""; done
    for n in 8 256; do row "h3m-batch$n" "--batch $n" ""; done
    for n in 4 16; do row "h3m-rcvbuf$n" "" "--recv-buffer-mib $n"; done
    row h3m-nogro "" "--no-gro"
    row h3m-1400 "--max-datagram-size 1400" ""
    key=000102030405060708090a0b0c0d0e0f iv=101112131415161718191a1b
    row h3m-aes128 "--cipher-suite 1301 --key $key --iv $iv" "" \
        "--alt-svc 'h3m-07=\\\"{group}:{port}\\\"; session-id={sid}; cipher-suite=1301; key=$key; iv=$iv' --source {tx_addr} --interface {rx_addr}"
    H3M_BIN_DIR=$BIN "$PERF" --no-install --config "$rows" --payloads big --runs "$RUNS" \
        --tools 'raw,raw-gso,h3m-*' 2>&1 | tee "$rows.log" | grep -E '^\| (raw|h3m)|^\| row|^\|---' || tail -5 "$rows.log"
fi

echo
echo "== 2. loopback, 256 MiB, --rate max =="
H3M_BENCH_RATE=max H3M_BENCH_MIB=256 scripts/bench-loopback.sh 2>&1 | sed -n '/== medians/,$p'

if [ "${AMT:-1}" != 0 ]; then
    echo
    echo "== 3. AMT relay forwarding (one core, before the sends) =="
    cargo bench -p h3m-benches --bench amt -- relay_forward 2>&1 | grep -E "^amt_|time:|thrpt:"
    echo
    echo "== 3b. AMT end to end against native, 256 MiB =="
    H3M_AMT_RATES="max" scripts/bench-amt.sh 2>&1 | tail -2
fi
