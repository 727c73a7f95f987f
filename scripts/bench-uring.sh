#!/usr/bin/env bash
# What l7tap's io_uring programs add to an io_uring request (issue 5), with
# scripts/uring_bench.c (batches of 32 requests per io_uring_enter): 100-byte UDP SENDs, and
# 4 KiB file READs from the page cache through a plain fd and through a registered (fixed)
# file (file I/O is not captured, but passes the programs). Each workload runs with capture
# off, attached but filtered out (another port), and capturing its port; the three runs
# alternate, so each round's differences are measured under the same load. Also the kernel's
# own run time of the io_uring programs (kernel.bpf_stats_enabled; bpftool). Needs root, gcc
# and liburing-dev. Not run by CI.
#     bash scripts/bench-uring.sh [requests per run, default 1000000] [rounds, default 3]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1000000}"
rounds="${2:-3}"
port=18780
cargo build --release -q -p l7tap-cli
bin=target/release/l7tap
work="$(mktemp -d)"
trap 'kill "${cap:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
gcc -O2 -o "$work/uring_bench" scripts/uring_bench.c -luring
head -c 8192 /dev/urandom > "$work/file"
sysctl -qw kernel.bpf_stats_enabled=1

# ns per request (the program's own wall clock); fails if any request failed.
run() {
    local ns failed
    if [ "$1" = send ]; then
        read -r ns failed < <("$work/uring_bench" send "$n" "$port")
    else
        read -r ns failed < <("$work/uring_bench" "$1" "$n" "$work/file")
    fi
    [ "$failed" = 0 ] || { echo "uring_bench $1: $failed requests failed" >&2; exit 1; }
    echo "$ns"
}

. scripts/capture-ctl.sh

# The kernel's run time of the running capture's io_uring programs: "name:ns_per_run(runs)".
prog_stats() {
    command -v bpftool > /dev/null || return 0
    bpftool prog show 2>/dev/null | awk '
        /name uring_(submit|complete)/ {
            for (i = 1; i < NF; i++) {
                if ($i == "name") name = $(i + 1)
                if ($i == "run_time_ns") t = $(i + 1)
                if ($i == "run_cnt") c = $(i + 1)
            }
            if (c) printf "%s:%.0f(%d) ", name, t / c, c
        }'
}

echo "workload   round  off_ns  filtered_ns  capturing_ns  filtered-off  capturing-off  kernel, capturing run"
for w in send read readfixed; do
    for r in $(seq "$rounds"); do
        off="$(run "$w")"
        capture --port 1
        filtered="$(run "$w")"
        stop
        capture --port "$port"
        capturing="$(run "$w")"
        kstats="$(prog_stats)"
        stop
        awk -v w="$w" -v r="$r" -v a="$off" -v b="$filtered" -v c="$capturing" -v k="$kstats" 'BEGIN {
            printf "%-9s  %5d  %6.1f  %11.1f  %12.1f  %12.1f  %13.1f  %s\n",
                w, r, a, b, c, b - a, c - a, k }'
    done
done
echo "last capture's counters:"
grep counters "$work/capture.err" | tr ' ' '\n' | grep -E 'bpf_(events|io_uring|ring_full|not_inet)' | tr '\n' ' '
echo
