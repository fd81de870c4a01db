#!/usr/bin/env bash
# Runs every fuzz target for a short while, starting from its committed seeds.
#
#   bash fuzz/smoke.sh                 # 20 s per target
#   FUZZ_SECONDS=120 bash fuzz/smoke.sh
#   bash fuzz/smoke.sh receiver qpack_decode   # only these targets
#
# Each target's working corpus is fuzz/corpus/<target> (gitignored): the seeds
# are copied into it, and what libFuzzer finds stays there for the next run.
# Crashing inputs land in fuzz/artifacts/<target>/ (gitignored too).
# Exits non-zero if any target crashed or failed to build.
set -uo pipefail

cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-20}"
all_targets=(packet_open h3_frames qpack_decode altsvc_parse receiver capture ip amt_message relay_capture driad_rdata auth_parse fec_repair unicast_fields ambi_manifest)
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=("${all_targets[@]}")
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked || cargo install cargo-fuzz || exit 1
fi

# cargo fuzz passes -Z flags to rustc; stable rustc accepts them with this set.
export RUSTC_BOOTSTRAP=1

echo "building fuzz targets" >&2
cargo fuzz build || exit 1

failed=()
for t in "${targets[@]}"; do
    if [ ! -f "fuzz/fuzz_targets/$t.rs" ]; then
        echo "no such target: $t" >&2
        failed+=("$t")
        continue
    fi
    corpus="fuzz/corpus/$t"
    mkdir -p "$corpus"
    if [ -d "fuzz/seeds/$t" ]; then
        cp -n fuzz/seeds/"$t"/* "$corpus"/ 2>/dev/null || true
    fi
    log="fuzz/corpus/$t.log"
    echo "== $t: ${seconds}s (log $log)" >&2
    if cargo fuzz run "$t" "$corpus" -- -max_total_time="$seconds" >"$log" 2>&1; then
        grep -E '^(#[0-9]+[[:space:]]+DONE|Done [0-9]+ runs)' "$log" | tail -n 2 >&2
    else
        echo "!! $t FAILED (full log: $log):" >&2
        grep -E -A2 "panicked at|^==[0-9]+== ?ERROR" "$log" | head -n 12 >&2
        grep -E "Test unit written to|^Error:" "$log" >&2
        failed+=("$t")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz smoke: failed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz smoke: all ${#targets[@]} targets ran ${seconds}s without a crash" >&2
