#!/usr/bin/env bash
# Many connections, or a new connection per request, under `l7tap capture` (issue 5): nginx
# (one worker, access log on: the independent count) and wrk on loopback; prints the requests
# nginx logged, the records l7tap gave on each side, the counters that moved and l7tap's
# memory. Needs root, nginx-light and wrk (Debian). Not run by CI.
#     bash scripts/bench-connections.sh [connections, default 8] [close]
# With "close", every request has a connection of its own (Connection: close).
set -euo pipefail
cd "$(dirname "$0")/.."
conns="${1:-8}"
close="${2:-}"
port=18790
cargo build --release -q -p l7tap-cli
bin=target/release/l7tap
. scripts/nginx-work.sh
work="$(nginx_work "$port" -e "s/worker_connections 64/worker_connections 4096/")"
ulimit -n 8192 2>/dev/null || true
nginx -c "$work/nginx.conf" & ngx=$!
trap 'kill $ngx 2>/dev/null || true; if [ -n "${KEEP:-}" ]; then cp "$work"/access.log "$work"/records.jsonl "$KEEP"/; fi; rm -rf "$work"' EXIT
# The readiness check asks for /ready, which the count leaves out.
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/ready" && break; sleep 0.1; done
"$bin" capture --port "$port" --format json > "$work/records.jsonl" 2> "$work/capture.err" & cap=$!
for _ in $(seq 100); do grep -q "capturing" "$work/capture.err" 2>/dev/null && break; sleep 0.1; done
hdr=()
if [ "$close" = close ]; then hdr=(-H "Connection: close"); fi
wrk -t1 -c"$conns" -d3s "${hdr[@]}" "http://127.0.0.1:$port/index.html" > "$work/wrk.txt"
mem="$(grep -E 'VmHWM' "/proc/$cap/status" | awk '{print $2 " " $3}')"
sleep 1
kill -INT $cap; wait $cap || true
echo "connections=$conns ${close:+(one per request)}"
echo "nginx_logged=$(grep -c '"uri":"/index.html"' "$work/access.log") wrk_completed=$(awk '/requests in/ {print $1}' "$work/wrk.txt")"
echo "records_client=$(grep -c '"comm":"wrk"' "$work/records.jsonl" || true) records_server=$(grep -c '"comm":"nginx"' "$work/records.jsonl" || true)"
echo "l7tap_peak_rss=$mem"
grep -o '[a-z_]*=[1-9][0-9]*' "$work/capture.err" | tr '\n' ' '
echo
