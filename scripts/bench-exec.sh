#!/usr/bin/env bash
# What a program start costs with the capture running (issue 5): the TLS and Go TLS probers
# look at each program file and TLS library file once (the kernel program reports only the
# first exec or mapping of a file l7tap has not looked at), and every process exit is an event
# user space reads (to end the process's connections). A shell starts N short programs
# (/bin/true) with capture off, with the TLS probes off (`--no-tls`: no exec events at all)
# and with the defaults; the port filter lets nothing else through. Prints the loop's time per program and l7tap's CPU time per program
# (utime+stime from /proc/PID/stat over the loop). The runs alternate. With OLD=path to
# another build's l7tap binary, each round also runs it with the defaults (a before/after
# comparison in the same sitting). Needs root. Not run by CI.
#     [OLD=/path/to/l7tap] bash scripts/bench-exec.sh [programs per run, default 3000] [rounds, default 3]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-3000}"
rounds="${2:-3}"
cargo build --release -q -p l7tap-cli
bin=target/release/l7tap
work="$(mktemp -d)"
trap 'kill "${cap:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
. scripts/capture-ctl.sh
ticks="$(getconf CLK_TCK)"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Runs the loop; prints "loop_us_per_program l7tap_us_per_program".
loop() {
    local c0=0 c1=0
    if [ -n "${cap:-}" ]; then c0="$(cpu_ticks "$cap")"; fi
    local t0 t1
    t0="$(date +%s%N)"
    for _ in $(seq "$n"); do /bin/true; done
    t1="$(date +%s%N)"
    if [ -n "${cap:-}" ]; then c1="$(cpu_ticks "$cap")"; fi
    awk -v t="$((t1 - t0))" -v c="$((c1 - c0))" -v n="$n" -v hz="$ticks" \
        'BEGIN {printf "%.1f %.1f", t / n / 1000, c / hz * 1e6 / n}'
}
echo "round  off_us  no_tls_us (l7tap_us)  default_us (l7tap_us)  ${OLD:+old_default_us (l7tap_us)}   per program started"
for r in $(seq "$rounds"); do
    cap=""
    read -r off _ <<< "$(loop)"
    capture --port 1 --no-tls
    read -r notls notls_cpu <<< "$(loop)"
    stop
    capture --port 1
    read -r dflt dflt_cpu <<< "$(loop)"
    stop
    old=""
    if [ -n "${OLD:-}" ]; then
        new_bin="$bin"
        bin="$OLD"
        capture --port 1
        read -r o o_cpu <<< "$(loop)"
        stop
        bin="$new_bin"
        old="$(printf '%14s (%s)' "$o" "$o_cpu")"
    fi
    cap=""
    printf '%5d  %6s  %9s (%s)  %10s (%s)  %s\n' "$r" "$off" "$notls" "$notls_cpu" "$dflt" "$dflt_cpu" "$old"
done
