#!/usr/bin/env bash
# Live video over h3m, played in a browser.
#
#   scripts/demo-video.sh [--amt] [--seconds 20] [--http-port 8080]
#   scripts/demo-video.sh [--amt] --check SCREENSHOT.png [--work DIR]
#
# ffmpeg (Debian's) encodes a test pattern with a running clock into a live
# DASH presentation (1 s segments, live profile, in real time); h3m-send
# --watch publishes each segment and each new manifest the moment ffmpeg
# renames it into place, together with a player page and dash.js (from npm,
# installed into demo/video/node_modules by this script); h3m-recv --serve
# receives them and serves them to the browser, its status page beside the
# video. With --amt the receiver has no multicast of its own: h3m-amt-relay
# joins the channel and h3m-recv --amt tunnels it (RFC 7450).
#
# Interactive (default): open the printed URL; Ctrl-C ends it.
# --check PNG: drives headless Chromium (demo/video/check.mjs) to the page,
# requires 3 s of playback with no player error, saves the screenshot, waits
# for the encoder to finish and checks every file arrived byte for byte.
# Exit status 0 passed, 1 failed, 3 a prerequisite is missing (ffmpeg,
# node/npm, chromium; the message names it).
#
# Traffic stays on this machine: group 239.255.x.x (organisation-local), the
# outgoing interface 127.0.0.1, TTL 1; the relay listens on 127.42.0.1 (a
# loopback address) and the HTTP server on 127.0.0.1.
# H3M_BIN_DIR: where h3m-send, h3m-recv and h3m-amt-relay are (default: built
# here, release). CHROMIUM: the browser (default /usr/bin/chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

amt=0 check= work= seconds=20 http_port=
while [ $# -gt 0 ]; do
    case "$1" in
        --amt) amt=1 ;;
        --check) check=$2; shift ;;
        --work) work=$2; shift ;;
        --seconds) seconds=$2; shift ;;
        --http-port) http_port=$2; shift ;;
        -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
        *) echo "demo-video.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

missing() { echo "demo-video.sh: SKIP: $1" >&2; exit 3; }
command -v ffmpeg >/dev/null 2>&1 || missing "ffmpeg not found (apt-get install ffmpeg)"
command -v npm >/dev/null 2>&1 || missing "npm not found (Node.js)"
chromium=${CHROMIUM:-/usr/bin/chromium}
if [ -n "$check" ] && [ ! -x "$chromium" ]; then
    missing "$chromium not found (apt-get install chromium, or set CHROMIUM)"
fi

# dash.js and playwright-core, pinned by demo/video/package-lock.json.
web=$root/demo/video
if [ ! -f "$web/node_modules/dashjs/dist/dash.all.min.js" ] || [ ! -d "$web/node_modules/playwright-core" ]; then
    (cd "$web" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
        || missing "npm ci in demo/video failed (no access to the npm registry?)"
fi

if [ -z "${H3M_BIN_DIR:-}" ]; then
    cargo build --release --quiet -p h3m-sender -p h3m-receiver -p h3m-amt
    H3M_BIN_DIR=$root/target/release
fi
bin=$H3M_BIN_DIR

if [ -z "$work" ]; then
    work=$(mktemp -d "${TMPDIR:-/tmp}/h3m-video.XXXXXX")
    keep_work=0
else
    mkdir -p "$work"
    keep_work=1
fi
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    [ "$keep_work" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

src=$work/src out=$work/out logs=$work/logs
rm -rf "$src" "$out" "$logs"
mkdir -p "$src/media" "$out" "$logs"
cp "$web/player.html" "$src/player.html"
cp "$web/node_modules/dashjs/dist/dash.all.min.js" "$src/dash.all.min.js"

group=239.255.$((RANDOM % 250 + 1)).$((RANDOM % 250 + 1))
port=$((20000 + RANDOM % 20000))
[ -n "$http_port" ] || http_port=$((40000 + RANDOM % 20000))
session=$(printf '%08x' $((RANDOM * RANDOM + 1)))
relay=127.42.0.1

if [ "$amt" = 1 ]; then
    echo "== relay: h3m-amt-relay on $relay:2268, joining channels on lo"
    "$bin/h3m-amt-relay" --listen "$relay" --interface lo --capture ports --port "$port" \
        --stats-interval 0 >"$logs/relay.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 50); do
        grep -q "listening\|relay" "$logs/relay.log" 2>/dev/null && break
        sleep 0.1
    done
    via=(--source 127.0.0.1 --amt "$relay")
    how="through AMT (relay $relay)"
else
    via=(--source 127.0.0.1 --interface 127.0.0.1)
    how="natively"
fi

echo "== receiver: $group:$port $how, serving http://127.0.0.1:$http_port/"
"$bin/h3m-recv" --group "$group" --port "$port" "${via[@]}" --session-id "$session" \
    --out "$out" --serve "127.0.0.1:$http_port" --serve-timeout 5 --json \
    >"$logs/recv.jsonl" 2>"$logs/recv.log" &
recv_pid=$!
pids+=("$recv_pid")
for _ in $(seq 100); do
    # Listening yet? (bash's /dev/tcp: no HTTP client needed)
    (exec 3<>"/dev/tcp/127.0.0.1/$http_port") 2>/dev/null && break
    sleep 0.1
done
if [ "$amt" = 1 ]; then
    # The tunnel is up once the gateway has its relay's membership query answered.
    sleep 1
fi

echo "== sender: h3m-send --watch $src (group $group:$port, TTL 1 on lo)"
"$bin/h3m-send" "$src" --watch --group "$group" --port "$port" --interface 127.0.0.1 \
    --source 127.0.0.1 --ttl 1 --session-id "$session" --rate 50M --repeat-heads 0.5 \
    >"$logs/send.log" 2>&1 &
send_pid=$!
pids+=("$send_pid")

echo "== encoder: ffmpeg, ${seconds} s of 640x360 test pattern with a clock, live DASH, 1 s segments"
# The wall clock at encoding (drawtext, with a font) against the clock beside
# the player shows the delay; without a font the pattern's own timer stays.
font=$(fc-match -f '%{file}' monospace 2>/dev/null || true)
vf="format=yuv420p"
if [ -n "$font" ] && ffmpeg -hide_banner -filters 2>/dev/null | grep drawtext >/dev/null; then
    vf="drawtext=fontfile=$font:text='h3m %{localtime\\:%H\\\\\\:%M\\\\\\:%S} frame %{n}':x=20:y=h-48:fontsize=28:fontcolor=white:box=1:boxcolor=black@0.6,$vf"
fi
ffmpeg -hide_banner -loglevel error -re -f lavfi -i "testsrc2=size=640x360:rate=25" -t "$seconds" \
    -vf "$vf" -c:v libx264 -preset veryfast -tune zerolatency -profile:v main \
    -g 25 -keyint_min 25 -sc_threshold 0 -b:v 800k \
    -f dash -seg_duration 1 -use_template 1 -use_timeline 0 -window_size 0 -remove_at_exit 0 \
    -init_seg_name 'init-$RepresentationID$.m4s' -media_seg_name 'seg-$RepresentationID$-$Number%05d$.m4s' \
    "$src/media/manifest.mpd" 2>"$logs/ffmpeg.log" &
ffmpeg_pid=$!
pids+=("$ffmpeg_pid")

url="http://127.0.0.1:$http_port/player.html"
if [ -z "$check" ]; then
    echo
    echo "   open $url"
    echo "   (status page http://127.0.0.1:$http_port/, metrics /metrics; Ctrl-C ends)"
    echo
    wait "$ffmpeg_pid" || true
    echo "== encoder done; still serving what arrived under $out until Ctrl-C"
    wait "$recv_pid" || true
    exit 0
fi

# --check: wait for the page, the player and a few segments to have arrived.
for _ in $(seq 150); do
    [ -f "$out/player.html" ] && [ -f "$out/media/manifest.mpd" ] \
        && [ "$(find "$out/media" -name 'seg-*' | wc -l)" -ge 3 ] && break
    sleep 0.1
done
echo "== browser: headless Chromium at $url"
status=0
result=$(node "$web/check.mjs" "$url" "$check" 3 30) || status=$?
echo "$result" | tee "$logs/check.json"
echo "== waiting for the encoder to finish"
wait "$ffmpeg_pid" || { echo "ffmpeg failed:" >&2; cat "$logs/ffmpeg.log" >&2; status=1; }
sleep 1.5 # the last segment and manifest: --watch sees them, the receiver writes them
kill -INT "$send_pid" 2>/dev/null || true
wait "$send_pid" 2>/dev/null || true
sleep 0.5
kill -TERM "$recv_pid" 2>/dev/null || true
wait "$recv_pid" 2>/dev/null || true
if diff -r "$src" "$out" >"$logs/diff.txt" 2>&1; then
    echo "== all $(find "$out" -type f | wc -l) files arrived byte for byte ($how)"
else
    echo "== MISMATCH between the published and the received trees:" >&2
    cat "$logs/diff.txt" >&2
    status=1
fi
exit "$status"
