#!/usr/bin/env bash
# The main job, end to end: send the sample files (plus a generated 32 MiB
# "video segment") once over loopback multicast with h3m-send, receive them with
# h3m-recv, and check every file arrived byte for byte.
#
# Traffic stays on this machine: the group is in 239.255.0.0/16 (organisation-
# local scope), the outgoing interface is 127.0.0.1 and the TTL is 1.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet -p h3m-sender -p h3m-receiver
bin=target/release

work=$(mktemp -d "${TMPDIR:-/tmp}/h3m-demo.XXXXXX")
recv_pid=
cleanup() {
    [ -n "$recv_pid" ] && kill "$recv_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cp -r samples "$work/send"
mkdir -p "$work/send/video"
# 32 MiB of deterministic bytes standing in for a media segment.
head -c $((32 << 20)) /dev/zero | tr '\0' 'h' | sed 's/hhhhhhhh/h3m-demo/g' > "$work/send/video/segment-0001.m4s"

group=239.255.42.42
port=$((20000 + RANDOM % 20000))
session=$(printf '%08x' $((RANDOM * RANDOM)))

echo "== receiver: joining $group:$port on lo, session $session"
"$bin/h3m-recv" --group "$group" --port "$port" --interface 127.0.0.1 \
    --session-id "$session" --out "$work/recv" --idle-timeout 15 &
recv_pid=$!
sleep 0.3

echo "== sender: publishing $(find "$work/send" -type f | wc -l) files"
"$bin/h3m-send" "$work/send" --group "$group" --port "$port" --interface 127.0.0.1 \
    --session-id "$session" --rate 800M --print-alt-svc --quiet

status=0
wait "$recv_pid" || status=$?
recv_pid=

echo "== check"
if diff -r "$work/send" "$work/recv" >/dev/null; then
    echo "all $(find "$work/recv" -type f | wc -l) files arrived byte for byte (receiver exit status $status)"
else
    echo "MISMATCH between sent and received trees" >&2
    diff -r "$work/send" "$work/recv" >&2 || true
    exit 1
fi
exit "$status"
