#!/usr/bin/env bash
# Machine instructions per plugin hook call, counted by valgrind's callgrind: deterministic for
# a given build (the shared machine's load does not move it, unlike the criterion times of
# `cargo bench --bench plugins`). Rows: wasmer's own typed call of an `i32.const 0` function
# (the floor), the host's no-op hook, the ABI round trip and the status-rewrite plugin, each
# from `benches/plugins.rs`, counted only inside the call (`--toggle-collect`).
# Needs valgrind and the example plugins (bash scripts/build-plugins.sh).
#     bash scripts/plugin-instructions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bench="$(cargo bench --bench plugins --no-run 2>&1 | awk '/Executable/ {print $NF}' | tr -d '()')"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
floor=0
printf '%-28s %12s %10s\n' row instructions "x floor"
# (row, function counted, the typed call made once per hook call: how calls are counted)
host="*on_http_record* typed_func.rs:l7tap_wasm_host::host::call_one"
for row in "wasmer_bare_call *call_sys* typed_func.rs:criterion::bencher::Bencher<M>::iter" \
    "noop_hook $host" "abi_round_trip_1k_payload $host" "http_status_rewrite_1k_json $host"; do
    set -f; set -- $row; set +f
    valgrind --tool=callgrind --callgrind-out-file="$out/$1" --toggle-collect="$2" \
        "$bench" --bench --profile-time 1 "plugin_call/$1\$" > "$out/$1.log" 2>&1
    total="$(grep -o 'Collected : [0-9]*' "$out/$1.log" | awk '{print $3}' | sort -n | tail -1)"
    calls="$(callgrind_annotate --tree=caller "$out/$1" 2>/dev/null \
        | awk -v f="$3 (" 'index($0, f) && !n {n = 1; print}' \
        | grep -o '([0-9,]*x)' | tr -d '(),x')"
    per=$((total / calls))
    if [ "$floor" = 0 ]; then floor=$per; fi
    printf '%-28s %12d %10s\n' "$1" "$per" "$(awk -v a="$per" -v b="$floor" 'BEGIN {printf "%.2f", a / b}')"
done
