#!/usr/bin/env bash
# Live interop with nghq's example programs, between two network namespaces
# joined by a veth (10.200.0.1/24 sender side, 10.200.0.2/24 receiver side, as
# for the captures: docs nghq-wire.md §14):
#
#   (a) nghq's multicast-receiver (SSM join of (10.200.0.1, 232.0.0.1)) against
#       our h3m-send: its stdout must show every file's path (it prints `P>` /
#       `H>` header lines and text bodies; it writes no files);
#   (b) our h3m-recv (--group 232.0.0.1 --source 10.200.0.1) against nghq's
#       multicast-sender: every file must arrive byte for byte.
#
# Environment:
#   NGHQ_BIN_DIR     directory holding nghq's built `multicast-sender` and
#                    `multicast-receiver` (nghq/examples); without it: SKIP.
#   NGHQ_SENDER_CWD  directory to start multicast-sender in (an OpenSSL build
#                    looks for sender.key there); default: a scratch directory.
#   H3M_SEND_EXTRA      more h3m-send arguments for (a), e.g. `--fec 5` (repair on port+1, which nghq never binds).
#   H3M_SEND, H3M_RECV  our binaries [default: <repo>/target/debug/h3m-{send,recv}].
#   H3M_PN_LEN       h3m-send's packet-number length, 1-4 [default: 1, as nghq].
#
# Needs root (namespaces). All traffic stays inside the two namespaces this
# script creates (TTL 1); they are deleted on exit, also on failure or Ctrl-C.
# Exit status: 0 passed or skipped, 1 failed, 2 setup problem.
set -euo pipefail

skip() {
    echo "SKIP: $*"
    exit 0
}

if [ -z "${NGHQ_BIN_DIR:-}" ]; then
    skip "NGHQ_BIN_DIR not set (point it at nghq's examples directory)"
fi
nghq_send="$NGHQ_BIN_DIR/multicast-sender"
nghq_recv="$NGHQ_BIN_DIR/multicast-receiver"
if [ ! -x "$nghq_send" ] || [ ! -x "$nghq_recv" ]; then
    skip "NGHQ_BIN_DIR=$NGHQ_BIN_DIR has no executable multicast-sender and multicast-receiver (point it at nghq's examples directory)"
fi
if [ "$(id -u)" != 0 ]; then
    skip "needs root (network namespaces)"
fi
command -v ip >/dev/null || skip "iproute2 \`ip\` not found"

repo=$(cd "$(dirname "$0")/../.." && pwd)
h3m_send=${H3M_SEND:-$repo/target/debug/h3m-send}
h3m_recv=${H3M_RECV:-$repo/target/debug/h3m-recv}
for b in "$h3m_send" "$h3m_recv"; do
    if [ ! -x "$b" ]; then
        echo "nghq_live: $b not found: run \`cargo build -p h3m-sender -p h3m-receiver\` (or set H3M_SEND / H3M_RECV)" >&2
        exit 2
    fi
done

# nghq's defaults (nghq-wire.md §11): both example programs use them.
group=232.0.0.1
port=2000
session=53657373696f6e204944 # "Session ID"
snd_addr=10.200.0.1
rcv_addr=10.200.0.2

ns_snd=h3m-nghq-snd-$$
ns_rcv=h3m-nghq-rcv-$$
work=$(mktemp -d "${TMPDIR:-/tmp}/h3m-nghq-live.XXXXXX")
pids=()

cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    ip netns del "$ns_snd" 2>/dev/null || true
    ip netns del "$ns_rcv" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_snd() { ip netns exec "$ns_snd" "$@"; }

# Waits until process $1 (inside a namespace) has a UDP socket on port $2.
wait_bound() {
    local pid=$1 hex i
    hex=$(printf ':%04X' "$2")
    for i in $(seq 1 100); do
        if ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        if awk -v h="$hex" 'NR > 1 && substr($2, length($2) - 4) == h { found = 1 } END { exit !found }' \
            "/proc/$pid/net/udp" "/proc/$pid/net/udp6" 2>/dev/null; then
            sleep 0.2
            return 0
        fi
        sleep 0.1
    done
    return 1
}

echo "== namespaces $ns_snd ($snd_addr) and $ns_rcv ($rcv_addr), veth nghqs0/nghqr0"
ip netns add "$ns_snd"
ip netns add "$ns_rcv"
# Created inside the sender namespace with its peer moved straight into the
# receiver's: nothing appears in the caller's namespace.
ip -n "$ns_snd" link add nghqs0 type veth peer name nghqr0 netns "$ns_rcv"
for spec in "$ns_snd nghqs0 $snd_addr fd00:200::1" "$ns_rcv nghqr0 $rcv_addr fd00:200::2"; do
    read -r ns dev v4 v6 <<<"$spec"
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$v4/24" dev "$dev"
    ip -n "$ns" -6 addr add "$v6/64" dev "$dev" nodad
    ip -n "$ns" link set "$dev" up
    ip -n "$ns" route add 224.0.0.0/4 dev "$dev"
done

failed=0 # number of failed checks
fail() {
    echo "FAIL: $*" >&2
    failed=$((failed + 1))
}

# ---------------------------------------------------------------------------
# (a) h3m-send -> nghq multicast-receiver
# ---------------------------------------------------------------------------
echo "== (a) h3m-send -> nghq multicast-receiver"
src_a="$work/a-src"
mkdir -p "$src_a/sub"
marker="h3m-to-nghq-$$-$RANDOM"
printf 'hello from h3m-send\n%s\n' "$marker" >"$src_a/hello.txt"
printf '<!doctype html><title>h3m</title><p>page</p>\n' >"$src_a/page.html"
head -c 100000 /dev/urandom >"$src_a/data.bin"
printf 'a note in a sub-directory\n' >"$src_a/sub/note.txt"

# Started as a simple command (not through a function), so $! is the program's own PID: `ip netns exec`
# execs in place.
ip netns exec "$ns_rcv" timeout 60 "$nghq_recv" "$group" "$snd_addr" >"$work/a-nghq.out" 2>"$work/a-nghq.err" &
nghq_recv_pid=$!
pids+=("$nghq_recv_pid")
if ! wait_bound "$nghq_recv_pid" "$port"; then
    fail "(a) nghq's multicast-receiver did not start"
    cat "$work/a-nghq.err" >&2
else
    # Paced: nghq's example receiver keeps the default socket buffer (§9, §12.1 item 11). At 1 Mbit/s
    # data.bin's push is open for most of a second, so anything h3m-send does while a push is in flight
    # by default (it must not repeat promises or stream heads: nghq takes a repeated promise for a new
    # one and then never closes the push on its FIN) shows as a receiver that does not exit 0.
    in_snd "$h3m_send" "$src_a" --group "$group" --port "$port" --source "$snd_addr" --interface nghqs0 \
        --session-id "$session" --pn-len "${H3M_PN_LEN:-1}" --rate 1M --ttl 1 --quiet ${H3M_SEND_EXTRA:-} ||
        fail "(a) h3m-send failed (exit $?)"
    status=0
    wait "$nghq_recv_pid" || status=$?
    echo "   multicast-receiver exit status $status (124: killed by the 60 s timeout)"
    [ "$status" = 0 ] || fail "(a) nghq's multicast-receiver exited $status, not 0 after the session's end"
    for path in data.bin hello.txt page.html sub/note.txt; do
        if grep -qF -- "$path" "$work/a-nghq.out"; then
            echo "   seen: $path"
        else
            fail "(a) nghq's receiver output does not show $path"
        fi
    done
    if grep -qF -- "$marker" "$work/a-nghq.out"; then
        echo "   seen: the body of hello.txt"
    else
        echo "   note: the body of hello.txt (text/plain) was not printed" >&2
    fi
    if [ "$failed" != 0 ]; then
        echo "--- multicast-receiver stdout:" >&2
        cat "$work/a-nghq.out" >&2
        echo "--- multicast-receiver stderr:" >&2
        tail -50 "$work/a-nghq.err" >&2
    fi
fi

# ---------------------------------------------------------------------------
# (b) nghq multicast-sender -> h3m-recv
# ---------------------------------------------------------------------------
echo "== (b) nghq multicast-sender -> h3m-recv"
# A flat directory: nghq's example sender marks the last entry of *every*
# directory `connection: close` (§8), and sends no FIN for empty files (§13),
# so neither sub-directories nor empty files would make a fair test.
src_b="$work/b-src"
mkdir -p "$src_b"
printf 'hello from nghq\n' >"$src_b/hello.txt"
head -c 300000 /dev/urandom >"$src_b/data.bin"
printf '{"from": "nghq", "to": "h3m"}\n' >"$src_b/info.json"
printf 'non-ASCII name\n' >"$src_b/café.txt"
out_b="$work/b-out"

ip netns exec "$ns_rcv" "$h3m_recv" --group "$group" --source "$snd_addr" --port "$port" --interface nghqr0 \
    --session-id "$session" --out "$out_b" --idle-timeout 15 --quiet \
    >"$work/b-h3m.out" 2>"$work/b-h3m.err" &
h3m_recv_pid=$!
pids+=("$h3m_recv_pid")
failed_before_b=$failed
if ! wait_bound "$h3m_recv_pid" "$port"; then
    fail "(b) h3m-recv did not start"
    cat "$work/b-h3m.err" >&2
else
    (cd "${NGHQ_SENDER_CWD:-$work}" && in_snd timeout 60 "$nghq_send" "$group" "$snd_addr" "$src_b") \
        >"$work/b-nghq.out" 2>"$work/b-nghq.err" || fail "(b) nghq's multicast-sender failed (exit $?)"
    status=0
    wait "$h3m_recv_pid" || status=$?
    echo "   h3m-recv exit status $status"
    cat "$work/b-h3m.out"
    [ "$status" = 0 ] || fail "(b) h3m-recv exited $status"
    for f in "$src_b"/*; do
        name=$(basename "$f")
        if [ ! -f "$out_b/$name" ]; then
            fail "(b) $name was not written"
        elif ! cmp -s "$f" "$out_b/$name"; then
            fail "(b) $name differs"
        else
            echo "   intact: $name ($(stat -c %s "$f") bytes)"
        fi
    done
    extra=$(cd "$out_b" 2>/dev/null && find . -mindepth 1 -not -type d | sed 's|^\./||' | sort)
    want=$(cd "$src_b" && find . -mindepth 1 -not -type d | sed 's|^\./||' | sort)
    [ "$extra" = "$want" ] || fail "(b) the output directory holds other files: $extra"
    if [ "$failed" != "$failed_before_b" ]; then
        echo "--- h3m-recv stderr:" >&2
        cat "$work/b-h3m.err" >&2
        echo "--- multicast-sender stderr:" >&2
        tail -50 "$work/b-nghq.err" >&2
    fi
fi

if [ "$failed" != 0 ]; then
    echo "nghq_live: FAILED" >&2
    exit 1
fi
echo "nghq_live: passed"
