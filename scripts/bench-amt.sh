#!/usr/bin/env bash
# AMT end-to-end throughput in a three-namespace lab (root only):
#
#   [src] h3m-send --(native SSM, veth)--> [relay] h3m-amt-relay --(AMT over UDP, veth)--> [gw] h3m-recv --amt
#
# For each rate in H3M_AMT_RATES (default "400M 2G max"), one file of H3M_AMT_MIB MiB (default 256) is sent
# twice: once to h3m-recv --amt in [gw] (through the relay), once to an h3m-recv joined natively on the
# relay's upstream link (the same file, sender and rate: the native baseline of the same run). Each line gives
# the receiver's goodput, whether the file arrived intact (SHA-256) and the datagrams it got; the AMT line
# also its ratio to the native one. The gateway has no route to the source: everything it gets comes through
# the relay. Nothing leaves the namespaces, which are deleted on exit (also on error).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench-amt.sh: needs root (network namespaces)"; exit 2; }
MIB=${H3M_AMT_MIB:-256}
RATES=${H3M_AMT_RATES:-"400M 2G max"}
cargo build --release --quiet -p h3m-sender -p h3m-receiver -p h3m-amt
BIN=$(pwd)/target/release

tag="h3mamt$$"
SRC=${tag}s RELAY=${tag}r GW=${tag}g
work=$(mktemp -d /dev/shm/h3m-bench-amt.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for ns in "$SRC" "$RELAY" "$GW"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

for ns in "$SRC" "$RELAY" "$GW"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n "$SRC" link add h3m-s type veth peer name h3m-r0 netns "$RELAY"
ip -n "$RELAY" link add h3m-r1 type veth peer name h3m-g netns "$GW"
ip -n "$SRC" addr add 10.214.1.1/24 dev h3m-s
ip -n "$RELAY" addr add 10.214.1.2/24 dev h3m-r0
ip -n "$RELAY" addr add 10.214.2.1/24 dev h3m-r1
ip -n "$GW" addr add 10.214.2.2/24 dev h3m-g
ip -n "$SRC" link set h3m-s up
ip -n "$RELAY" link set h3m-r0 up
ip -n "$RELAY" link set h3m-r1 up
ip -n "$GW" link set h3m-g up
ip -n "$SRC" route add 224.0.0.0/4 dev h3m-s

head -c $((MIB << 20)) /dev/urandom > "$work/file.bin"
want=$(sha256sum "$work/file.bin" | cut -d' ' -f1)

ip netns exec "$RELAY" "$BIN/h3m-amt-relay" --listen 10.214.2.1 --interface h3m-r0 --stats-interval 0 --quiet \
    >"$work/relay.log" 2>&1 &
pids+=($!)
sleep 0.5

echo "AMT lab: $MIB MiB file, 1200-byte datagrams, h3m-send (src) -> h3m-amt-relay (relay) -> h3m-recv --amt (gw);"
echo "native baseline: h3m-recv joined on the relay's upstream link (relay namespace), same run"
port=4500
# run_one MODE RATE: prints one line, sets $goodput (Mbit/s).
run_one() {
    local mode=$1 rate=$2 ns args
    port=$((port + 1))
    out="$work/out-$mode-$rate"
    if [ "$mode" = amt ]; then
        ns=$GW args=(--amt 10.214.2.1)
    else
        ns=$RELAY args=(--interface 10.214.1.2)
    fi
    : >"$work/recv.err"
    ip netns exec "$ns" "$BIN/h3m-recv" --group 232.1.1.9 --source 10.214.1.1 --port "$port" "${args[@]}" \
        --session-id a3a3 --out "$out" --idle-timeout 20 --push-timeout 5 --quiet >"$work/recv.out" 2>"$work/recv.err" &
    rpid=$!
    pids+=("$rpid")
    if [ "$mode" = amt ]; then
        for _ in $(seq 100); do grep -q "tunnel up" "$work/recv.err" 2>/dev/null && break; sleep 0.05; done
    fi
    sleep 0.3
    start=$(date +%s.%N)
    ip netns exec "$SRC" "$BIN/h3m-send" "$work/file.bin" --group 232.1.1.9 --source 10.214.1.1 --interface h3m-s \
        --port "$port" --session-id a3a3 --rate "$rate" --ttl 1 --quiet >"$work/send.out"
    status=0
    wait "$rpid" || status=$?
    end=$(date +%s.%N)
    got=$(sha256sum "$out/file.bin" 2>/dev/null | cut -d' ' -f1 || true)
    rm -rf "$out"
    secs=$(echo "$end $start" | awk '{print $1 - $2}')
    summary=$(grep "summary:" "$work/recv.err" | sed 's/.*summary: //')
    datagrams=$(echo "$summary" | tr ' ' '\n' | grep '^datagrams=' | cut -d= -f2)
    sent=$(sed -n 's/.* in \([0-9]*\) datagrams.*/\1/p' "$work/send.out")
    verdict=$([ "$got" = "$want" ] && echo "intact" || echo "NOT intact (exit $status)")
    goodput=$(awk -v b=$((MIB << 20)) -v s="$secs" 'BEGIN { printf "%.1f", b * 8 / s / 1e6 }')
    printf "  %-6s --rate %-5s goodput %7.1f Mbit/s (whole run incl. session end, %.2f s)  datagrams %s of %s  %s" \
        "$mode" "$rate" "$goodput" "$secs" "$datagrams" "$sent" "$verdict"
}
for rate in $RATES; do
    run_one native "$rate"
    native=$goodput
    echo
    run_one amt "$rate"
    awk -v a="$goodput" -v n="$native" 'BEGIN { printf "  (%.2fx native)\n", a / n }'
done
