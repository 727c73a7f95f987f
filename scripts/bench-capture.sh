#!/usr/bin/env bash
# nginx + wrk on loopback with and without `l7tap capture` (issue 5): requests/s ratio and
# records received vs requests sent. Needs root, nginx-light and wrk (Debian). Not run by CI.
#     bash scripts/bench-capture.sh [seconds per run, default 5] [rounds, default 2]
# PIN=1: nginx and wrk share CPU 0 and l7tap gets CPU 1 (the agent with a core of its own;
# without it, all three share both cores).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
rounds="${2:-2}"
port=18680
cargo build --release -q -p l7tap-cli
bin=target/release/l7tap
app=() agent=()
if [ "${PIN:-0}" = 1 ]; then
    app=(taskset -c 0)
    agent=(taskset -c 1)
fi
. scripts/nginx-work.sh
# One worker, no access log: the web server is the same in both runs.
work="$(nginx_work "$port" -e 's#access_log [^ ]*access.log l7;##')"
"${app[@]}" nginx -c "$work/nginx.conf" & ngx=$!
trap 'kill $ngx 2>/dev/null || true; cp "$work/capture.err" /tmp/last-capture.err 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done

run_wrk() { # prints "requests req_per_sec"
    "${app[@]}" wrk -t1 -c8 -d"${secs}s" "http://127.0.0.1:$port/index.html" > "$work/wrk.txt"
    local n rps
    n="$(awk '/requests in/ {print $1}' "$work/wrk.txt")"
    rps="$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")"
    echo "$n $rps"
}

# l7tap's CPU time (user + system, clock ticks) from /proc.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz="$(getconf CLK_TCK)"

echo "round  off_req/s  on_req/s  ratio  requests_on  client_records  server_records  l7tap_cpu_us/req  counters"
for r in $(seq "$rounds"); do
    read -r _ off_rps < <(run_wrk)
    # The background shell truncates capture.err only when it gets to it: remove the previous
    # round's file first, or its "capturing" line would start wrk before this capture is on.
    rm -f "$work/capture.err"
    "${agent[@]}" "$bin" capture --port "$port" --format json > "$work/records.jsonl" 2> "$work/capture.err" & cap=$!
    for _ in $(seq 100); do grep -q "capturing" "$work/capture.err" 2>/dev/null && break; sleep 0.1; done
    t0="$(cpu_ticks $cap)"
    read -r on_n on_rps < <(run_wrk)
    t1="$(cpu_ticks $cap)"
    sleep 1
    kill -INT $cap; wait $cap || true
    client="$(grep -c '"comm":"wrk"' "$work/records.jsonl" || true)"
    server="$(grep -c '"comm":"nginx"' "$work/records.jsonl" || true)"
    counters="$(grep -o 'bpf_ring_full_events=[0-9]*\|records_unpaired=[0-9]*\|bpf_truncated_events=[0-9]*' "$work/capture.err" | tr '\n' ' ' || true)"
    ratio="$(awk -v a="$on_rps" -v b="$off_rps" 'BEGIN {printf "%.3f", a / b}')"
    us="$(awk -v a="$t0" -v b="$t1" -v n="$on_n" -v hz="$hz" 'BEGIN {printf "%.2f", (b - a) / hz / n * 1e6}')"
    echo "$r  $off_rps  $on_rps  $ratio  $on_n  $client  $server  $us  $counters"
done
