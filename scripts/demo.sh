#!/usr/bin/env bash
# Sets up, builds and runs l7tap's main job on a bundled capture: replays traffic recorded from
# nginx and curl on loopback and prints the L7 records (a table, then the JSON of the records
# whose 200 response carries {"OPT_STATUS":"FAILED"}: the case the plugins work on).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --locked -q -p l7tap-cli
for c in keepalive pipelined chunked large continue; do
    echo "== tests/captures/$c.pcap"
    ./target/debug/l7tap replay --format table "tests/captures/$c.pcap"
done
echo "== tests/captures/opt_status.pcap (JSON)"
./target/debug/l7tap replay "tests/captures/opt_status.pcap"
