#!/usr/bin/env bash
# Machine instructions per request of live capture's user side (benches/live_path.rs),
# counted by valgrind's callgrind: deterministic for a given build, unlike the criterion
# times on this shared machine. Rows: `ring` (ring bytes -> reorder -> converter -> flow
# processor -> JSON lines) and `segments` (the same from converted segments: the baseline);
# their difference is the capture-specific part. Each row runs 1 and 3 times; the difference
# of the two counts is two iterations' work, without the set-up.
# Needs valgrind.    bash scripts/live-path-instructions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bench="$(cargo bench --bench live_path --no-run 2>&1 | awk '/Executable/ {print $NF}' | tr -d '()')"
count() { # row iterations -> instructions
    L7TAP_LIVE_PATH_ROW="$1" L7TAP_LIVE_PATH_ITERS="$2" valgrind --tool=callgrind \
        --callgrind-out-file=/dev/null "$bench" 2>&1 | grep -o 'Collected : [0-9]*' | awk '{print $3}'
}
requests="$(L7TAP_LIVE_PATH_ITERS=0 "$bench" | awk '/requests per iteration/ {print $4}')"
printf '%-10s %22s\n' row instructions/request
for row in segments ring; do
    one="$(count "$row" 1)"
    three="$(count "$row" 3)"
    printf '%-10s %22d\n' "$row" $(((three - one) / 2 / requests))
done
