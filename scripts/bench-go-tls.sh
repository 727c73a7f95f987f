#!/usr/bin/env bash
# What probing Go's crypto/tls costs a Go program (issue 5): a Go HTTPS client makes N
# keep-alive GETs to a Go HTTPS server (tests/live/go_tls.go, one binary for both, so both are
# probed) with capture off, attached but filtered out (another port: the uprobes still fire,
# each a trap into the kernel), and capturing. The runs alternate, so each round's
# differences are measured under the same load. Needs root, go and openssl. Not run by CI.
#     bash scripts/bench-go-tls.sh [requests per run, default 20000] [rounds, default 3]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-20000}"
rounds="${2:-3}"
port=18890
cargo build --release -q -p l7tap-cli
bin=target/release/l7tap
work="$(mktemp -d)"
trap 'kill "${cap:-0}" "${srv:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
GOCACHE="$work/cache" GOPATH="$work/gopath" GO111MODULE=off \
    go build -o "$work/go_tls" tests/live/go_tls.go
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2> /dev/null
"$work/go_tls" server "$port" "$work/cert.pem" "$work/key.pem" > "$work/server.out" &
srv=$!
for _ in $(seq 100); do grep -q ready "$work/server.out" && break; sleep 0.05; done

run() { "$work/go_tls" bench "https://127.0.0.1:$port" "$n"; }
. scripts/capture-ctl.sh

echo "round  off_us  filtered_us  capturing_us  filtered/off  capturing/off  (per request, both sides)"
for r in $(seq "$rounds"); do
    off="$(run)"
    capture --port 1
    filtered="$(run)"
    stop
    capture --port "$port"
    capturing="$(run)"
    stop
    awk -v r="$r" -v a="$off" -v b="$filtered" -v c="$capturing" 'BEGIN {
        printf "%5d  %6.1f  %11.1f  %12.1f  %12.2f  %13.2f\n", r, a / 1000, b / 1000, c / 1000, b / a, c / a }'
done
grep -o 'Go TLS: [^;]*' "$work/capture.err" || true
grep counters "$work/capture.err" | tr ' ' '\n' | grep -E '^(records|bpf_tls_events|bpf_tls_no_socket|bpf_ring_full_events)=' | tr '\n' ' '
echo
