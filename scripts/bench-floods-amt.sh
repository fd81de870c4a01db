#!/usr/bin/env bash
# AMT relay membership floods, in process (no sockets, no root): 2 M channel requests (valid Membership
# Updates) from one gateway, from one IP address on 2 000 ports, from 2 000 addresses, from 500 addresses x
# 4 ports, and into one shared group. Each scenario runs in its own process and prints what the relay
# admitted and refused, its heap against its state estimate and budget, the peak RSS (VmHWM) and the CPU
# time per Update. Fails when the relay went over its budget.
#
#   scripts/bench-floods-amt.sh [SCENARIO...]     (H3M_FLOOD_CHANNELS=N changes the 2 M)
set -euo pipefail
cd "$(dirname "$0")/.."
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(one-gateway one-ip many-ips ips-and-ports shared-group)
cargo bench --quiet -p h3m-benches --bench amt_floods --no-run
for s in "${scenarios[@]}"; do
    cargo bench --quiet -p h3m-benches --bench amt_floods -- "$s"
done
