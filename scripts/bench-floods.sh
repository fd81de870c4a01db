#!/usr/bin/env bash
# Receiver and relay floods: the "Done when" line of the flood benchmark in one command.
#
# Receiver: the real release h3m-recv, whole stack (receiver core, session layer, partial files, records,
# rate-limited report), one process per scenario, fed a forged .datagrams capture with --input (generated
# into a temporary directory by benches/benches/receiver_floods.rs, removed afterwards): 1 M promises
# (consecutive and every-other push IDs, and each with 1 body byte), 256 pushes x 65 536 one-byte DATA
# fragments (with and without their DATA frame header), 100 k orphan push streams, 100 k streams claiming
# one push, 1 M stream-0 fragments far ahead (1 in 4 replayed); a genuine push follows every flood and must
# still be written. Each scenario prints the datagrams, h3m-recv's exit code and summary counters, its peak
# RSS (ru_maxrss = VmHWM, from wait4) and user+sys CPU per datagram, gross and net of a baseline run on the
# same datagrams under another session ID (reading the capture, streamed, + the session-ID check). Fails when a run is over
# 64 MiB peak RSS or 2 us CPU per datagram (gross), or the genuine push was not written.
# Then, unless scenarios are named or --no-amt is given, the AMT relay floods (scripts/bench-floods-amt.sh).
#
#   scripts/bench-floods.sh [--no-amt] [SCENARIO...]
#       H3M_FLOOD_PROMISES=N (1 M)  H3M_FLOOD_PUSHES=N (256)  H3M_FLOOD_FRAGMENTS=N (65 536 per push)
#       H3M_FLOOD_ORPHANS=N (100 k)  H3M_FLOOD_STREAM0=N (1 M)  H3M_FLOOD_CHANNELS=N (AMT, 2 M)
#   Quick run: H3M_FLOOD_PROMISES=50000 H3M_FLOOD_FRAGMENTS=1024 H3M_FLOOD_ORPHANS=10000 \
#              H3M_FLOOD_STREAM0=50000 H3M_FLOOD_CHANNELS=100000 scripts/bench-floods.sh
set -euo pipefail
cd "$(dirname "$0")/.."
amt=1
scenarios=()
for a in "$@"; do
    case "$a" in
        --no-amt) amt=0 ;;
        -*) echo "usage: $0 [--no-amt] [SCENARIO...]" >&2; exit 2 ;;
        *) scenarios+=("$a") ;;
    esac
done
if [ ${#scenarios[@]} -gt 0 ]; then
    amt=0
else
    scenarios=(promises promises-sparse promises-pushed fragments fragments-held orphans claims stream0)
fi
cargo build --quiet --release -p h3m-receiver
cargo bench --quiet -p h3m-benches --bench receiver_floods --no-run
status=0
for s in "${scenarios[@]}"; do
    cargo bench --quiet -p h3m-benches --bench receiver_floods -- "$s" || status=1
done
if [ "$amt" = 1 ]; then
    scripts/bench-floods-amt.sh || status=1
fi
if [ "$status" != 0 ]; then
    echo "bench-floods: over budget (see FAIL lines above)" >&2
fi
exit "$status"
