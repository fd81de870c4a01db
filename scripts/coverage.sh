#!/usr/bin/env bash
# Line coverage per crate with cargo-tarpaulin (ptrace engine: the rustup llvm-tools component cannot be
# downloaded on these machines). Runs the workspace's tests (lib, bins, integration tests, examples; no
# doctests, no benches package; fuzz/ is a workspace of its own and never built) under tarpaulin, writes
# target/tarpaulin/lcov.info, and prints covered/coverable lines and % for each crate and the workspace.
#
# Counted: the lines of each crate's src/ (test functions and #[cfg(test)] modules are not counted, tarpaulin's
# default --ignore-tests; tests/ and examples/ are not counted). A crate's lines count as covered when any
# test of the workspace runs them (h3m-proto is also covered by the receiver's and sender's tests).
# Not followed: the processes the tests spawn (h3m-recv, h3m-send, h3m-amt-relay via CARGO_BIN_EXE_*), so
# code that only those runs reach (src/bin/*.rs, h3m-sender's run.rs) counts as uncovered; add
# `--exclude-files 'crates/*/src/bin/*'` to leave the binaries' mains out. tarpaulin's --follow-exec is no
# way out: it segfaults h3m-sender's cli test print_alt_svc_carries_a_fresh_key_for_every_session and leaves
# the test binaries that spawn the binaries stopped under ptrace, so the run never ends.
#
# Skipped under tarpaulin (both pass under cargo test), as the ptrace engine breaks them on every run, also
# with --test-threads=1:
# - interop's proptest shuffled_and_duplicated_sessions_arrive_intact: a return value comes back corrupted
#   (its xorshift `x % n` yields n: "index out of bounds: the len is 4 but the index is 4"). The same
#   scenarios still run in its other fault tests.
# - h3m-amt's relay_loopback loopback_ipv6_relay_recovers_from_a_restart: the test binary gets SIGSEGV in
#   GwPump::run_until; tarpaulin then loses track of the processes, and the suites after it (gateway_sim,
#   h3m-net's loopback and lib tests) run untraced and count nothing.
# A test that fails does not stop the run (--no-fail-fast): its coverage up to the failure counts, and the
# failed tests and crashed test binaries are listed after the table. Known flaky (also under plain cargo
# test, more often under tarpaulin): e2e_netns ipv4/ipv6_ssm_and_wrong_source (a receiver that bound its
# port but got nothing before its 5 s idle timeout).
#
# Takes: ~6 min for the tests of the whole workspace once built; the first run builds everything again with
# tarpaulin's RUSTFLAGS into target/tarpaulin (~10 min more on 2 cores; later runs reuse it, and the normal
# target/debug build is not touched). `-p h3m-proto`: ~1 min once built. Run as root so the
# network-namespace tests run (else they SKIP and h3m-net's namespace code counts as uncovered).
#
# Usage: scripts/coverage.sh [-p CRATE]... [--files CRATE] [--report] [TARPAULIN-ARGS...] [-- TEST-ARGS...]
#   -p, --package CRATE  only this crate's tests (repeatable; faster); the table lists only these crates
#   --files CRATE        also list CRATE's files, lowest coverage first, with their uncovered line counts
#   --report             do not run anything: print the table(s) from the last target/tarpaulin/lcov.info
#   other arguments      passed to cargo tarpaulin (e.g. `--test netns`; after `--`: to the test binaries)
# Output: target/tarpaulin/lcov.info (per line hits) and target/tarpaulin/tarpaulin.log (the run's output).
# Exit status: 0 after printing the table (also when tests failed: they are listed as warnings); 1 if
# tarpaulin wrote no report; 2 if cargo-tarpaulin is not installed.
# Install: cargo install cargo-tarpaulin --locked   (0.37.5 builds with rustc 1.95; ~6 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd -P)
out_dir=target/tarpaulin
lcov="$out_dir/lcov.info"

packages=()
files_crate=""
report_only=0
passthrough=()
while [ $# -gt 0 ]; do
    case "$1" in
        -p | --package) packages+=("${2:?$1 needs a crate name}"); shift 2 ;;
        --package=*) packages+=("${1#*=}"); shift ;;
        --files) files_crate="${2:?--files needs a crate name}"; shift 2 ;;
        --report) report_only=1; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) passthrough+=("$1"); shift ;;
    esac
done

# Workspace members: "<dir> <package name>" per line (benches is not measured).
members=$(for manifest in crates/*/Cargo.toml interop/Cargo.toml; do
    name=$(awk '/^\[/{sec=$0} sec=="[package]" && /^name *=/{gsub(/[" ]/,"",$0); sub(/^name=/,""); print; exit}' "$manifest")
    echo "$(dirname "$manifest") $name"
done)

if [ "$report_only" = 0 ]; then
    if ! cargo tarpaulin --version >/dev/null 2>&1; then
        echo "cargo-tarpaulin is not installed. Install it with:" >&2
        echo "    cargo install cargo-tarpaulin --locked" >&2
        exit 2
    fi
    [ "$(id -u)" = 0 ] || echo "warning: not root: the network-namespace tests will SKIP" >&2

    scope=(--workspace --exclude h3m-benches)
    if [ ${#packages[@]} -gt 0 ]; then
        scope=()
        for p in "${packages[@]}"; do scope+=(-p "$p"); done
    fi
    mkdir -p "$out_dir"
    rm -f "$lcov"
    log="$out_dir/tarpaulin.log"
    start=$(date +%s)
    # Test-binary arguments (after the caller's `--`, if any): skip what the ptrace engine breaks (see above).
    test_args=(
        --skip shuffled_and_duplicated_sessions_arrive_intact
        --skip loopback_ipv6_relay_recovers_from_a_restart
    )
    has_dashdash=0
    for a in ${passthrough[@]+"${passthrough[@]}"}; do [ "$a" = -- ] && has_dashdash=1; done
    [ "$has_dashdash" = 1 ] || passthrough+=(--)
    set +e
    cargo tarpaulin --engine ptrace "${scope[@]}" \
        --target-dir "$out_dir" --skip-clean \
        --ignore-tests --timeout 600 --no-fail-fast --color never \
        --exclude-files 'fuzz/*' --exclude-files 'benches/*' \
        --out Lcov --output-dir "$out_dir" \
        "${passthrough[@]}" "${test_args[@]}" 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    set -e
    elapsed=$(( $(date +%s) - start ))
    echo "tarpaulin: exit status $status after $((elapsed / 60)) min $((elapsed % 60)) s"
    if [ ! -s "$lcov" ]; then
        echo "error: tarpaulin wrote no $lcov (see $log)" >&2
        exit 1
    fi
else
    status=0
    [ -s "$lcov" ] || { echo "error: no $lcov: run scripts/coverage.sh first" >&2; exit 1; }
fi

only=""
[ ${#packages[@]} -gt 0 ] && only=" ${packages[*]} "

# One line per source file: "<crate> <file relative to the repo root> <covered> <coverable>", counted from the
# DA records (tarpaulin writes absolute paths; lines of a file listed twice are merged).
per_file=$(awk -v root="$root/" -v members="$members" '
    BEGIN {
        n = split(members, m, "\n")
        for (i = 1; i <= n; i++) { split(m[i], f, " "); dir[i] = f[1] "/src/"; name[i] = f[2] }
    }
    /^SF:/ { file = substr($0, 4); if (index(file, root) == 1) file = substr(file, length(root) + 1); next }
    /^DA:/ {
        split(substr($0, 4), d, ",")
        key = file SUBSEP d[1]
        if (!(key in seen)) { seen[key] = 1; total[file]++ }
        if (d[2] > 0 && !(key in hit)) { hit[key] = 1; covered[file]++ }
    }
    END {
        for (file in total) {
            crate = ""
            for (i = 1; i <= n; i++) if (index(file, dir[i]) == 1) crate = name[i]
            if (crate != "") print crate, file, covered[file] + 0, total[file]
        }
    }' "$lcov" | sort)

pct() { awk -v c="$1" -v t="$2" 'BEGIN { if (t > 0) printf "%.2f", 100 * c / t; else printf "-" }'; }

echo
echo "Line coverage (tarpaulin, ptrace), $(date -u +%Y-%m-%d) $(git rev-parse --short HEAD 2>/dev/null || true)"
printf '%-14s %9s %10s %8s\n' crate covered coverable '%'
sum_c=0
sum_t=0
while read -r _dir name; do
    [ -n "$only" ] && [[ "$only" != *" $name "* ]] && continue
    read -r c t < <(awk -v crate="$name" '$1 == crate { c += $3; t += $4 } END { print c + 0, t + 0 }' <<<"$per_file")
    printf '%-14s %9d %10d %8s\n' "$name" "$c" "$t" "$(pct "$c" "$t")"
    sum_c=$((sum_c + c))
    sum_t=$((sum_t + t))
done <<<"$members"
label="workspace"
[ -n "$only" ] && label="total"
printf '%-14s %9d %10d %8s\n' "$label" "$sum_c" "$sum_t" "$(pct "$sum_c" "$sum_t")"

if [ -n "$files_crate" ]; then
    echo
    echo "$files_crate: files by coverage, lowest first"
    printf '%-56s %9s %10s %9s %8s\n' file covered coverable uncovered '%'
    awk -v crate="$files_crate" '$1 == crate {
            printf "%-56s %9d %10d %9d %8.2f\n", $2, $3, $4, $4 - $3, ($4 > 0 ? 100 * $3 / $4 : 100)
        }' <<<"$per_file" | sort -k5,5n -k4,4nr
fi

if [ "$report_only" = 0 ] && [ "$status" != 0 ]; then
    # Which tests failed, and which test binaries ended without their `test result:` line (crashed, or
    # tarpaulin lost track of them): their coverage is partial.
    problems=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | awk '
        / running \/.*\/debug\/deps\// {
            if (bin != "" && !done) print "  no test result (crashed or lost): " bin
            bin = $NF; sub(/.*\//, "", bin); sub(/-[0-9a-f]+$/, "", bin); done = 0; next
        }
        / running \/.*\/debug\/examples\// { if (bin != "" && !done) print "  no test result (crashed or lost): " bin; bin = ""; next }
        /^test result:/ { done = 1 }
        /^test .* FAILED$/ { print "  failed: " bin " " $2 }
        /segfault|SIGSEGV|SIGILL/ { print "  " bin ": " $0 }
        END { if (bin != "" && !done) print "  no test result (crashed or lost): " bin }')
    echo
    echo "warning: tarpaulin exited with status $status; the numbers above miss what these did not run:" >&2
    echo "${problems:-  (nothing found in $log)}" >&2
fi
exit 0
