#!/usr/bin/env bash
# AMBI's cost on the side-by-side harness (root only; PERF=path/to/perf/run.sh):
# the `h3m` row against `h3m-ambi-inband` (signed manifests on the side port) and
# `h3m-ambi-https` (manifests streamed by the sender's origin over HTTPS),
# same run, same rate. Extra arguments go to run.sh (e.g. --runs 5, --loss 1).
#
# The rows are appended to a copy of the harness's rows.toml in a temporary
# directory, with the Ed25519 test key (interop/vectors/keys) signing the
# in-band manifests (--ambi-key / --ambi-trust: pushes carry no signature of
# their own, as in the h3m row) and a fresh self-signed origin certificate (openssl, for the
# harness's sender address 198.18.0.1) pinned by the HTTPS receiver.
# `h3m-ambi-https` runs as a broadcast does: the sender starts at once and the
# receiver holds what arrives until its channel is up (it knocks on the
# origin's port every 2 ms once the datagrams come); `h3m-ambi-https-wait`
# has the sender hold its first datagram until the receiver has subscribed
# (--ambi-wait 3, part of the end-to-end time), so every datagram is
# authenticated on arrival.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench-ambi.sh: needs root (network namespaces)"; exit 2; }
if [ -z "${PERF:-}" ] || [ ! -x "$PERF" ]; then
    echo "skipped: set PERF to the side-by-side harness's run.sh"
    exit 0
fi
RATE=${H3M_AMBI_RATE:-2G}
cargo build --release --quiet -p h3m-sender -p h3m-receiver
work=$(mktemp -d /tmp/h3m-bench-ambi.XXXXXX)
trap 'rm -rf "$work"' EXIT
keys=$(pwd)/interop/vectors/keys
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$work/key.pem" \
    -out "$work/cert.pem" -days 2 -subj /CN=h3m-bench -addext subjectAltName=IP:198.18.0.1 2>/dev/null
pin=$(openssl x509 -in "$work/cert.pem" -outform der | sha256sum | cut -d' ' -f1)
cp "$(dirname "$PERF")/rows.toml" "$work/rows.toml"
common_rx='exec {bin}/h3m-recv --group {group} --source {tx_addr} --port {port} --interface {rx_addr} --session-id {sid} --out {dst_dir} --idle-timeout 5'
common_tx='exec {bin}/h3m-send --group {group} --port {port} --interface {tx_addr} --source {tx_addr} --session-id {sid} --rate {rate}'
# One h3m row: NAME, DESC, receiver options, sender options.
row() {
    cat >> "$work/rows.toml" <<ROW

[[row]]
name = "$1"
desc = "$2, --rate {rate}"
bin_env = "H3M_BIN_DIR"
requires = ["{bin}/h3m-send", "{bin}/h3m-recv"]
done = "rx"
group = "232.0.0.1"
port = 2000
rate = "$RATE"
rx = "$common_rx $3"
tx = "$common_tx $4 {src_dir}"
ROW
}
row h3m-ambi-inband "h3m, AMBI in-band (signed manifests on the side port)" \
    "--ambi inband --ambi-trust $keys/ed25519.pub.pem" "--ambi-key $keys/ed25519.key.pem --ambi inband"
row h3m-ambi-https "h3m, AMBI over HTTPS (manifests streamed by the origin)" \
    "--ambi https://{tx_addr}:4433 --ambi-pin $pin" \
    "--ambi https --repair-listen {tx_addr}:4433 --repair-cert $work/cert.pem --repair-key $work/key.pem --repair-linger 0"
row h3m-ambi-https-wait "h3m, AMBI over HTTPS, sender waits for the subscription" \
    "--ambi https://{tx_addr}:4433 --ambi-pin $pin" \
    "--ambi https --ambi-wait 3 --repair-listen {tx_addr}:4433 --repair-cert $work/cert.pem --repair-key $work/key.pem --repair-linger 0"
H3M_BIN_DIR=$(pwd)/target/release "$PERF" --no-install --config "$work/rows.toml" \
    --tools h3m,h3m-ambi-inband,h3m-ambi-https,h3m-ambi-https-wait --set "h3m.rate=$RATE" "$@"
