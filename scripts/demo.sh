#!/usr/bin/env bash
# Sets up, builds and runs l7tap's main job on a bundled capture: replays traffic recorded from
# nginx and curl on loopback and prints the L7 records (a table, then the JSON of the records
# whose 200 response carries {"OPT_STATUS":"FAILED"}, before and after the http_status_rewrite plugin).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --locked -q -p l7tap-cli
bash scripts/build-plugins.sh
for c in keepalive pipelined chunked large continue; do
    echo "== tests/captures/$c.pcap"
    ./target/debug/l7tap replay --format table "tests/captures/$c.pcap"
done
echo "== tests/captures/opt_status.pcap: nginx answered 200 with {\"OPT_STATUS\":\"FAILED\",...}"
./target/debug/l7tap replay --format table "tests/captures/opt_status.pcap"
echo "== the same with the http_status_rewrite plugin (JSON)"
./target/debug/l7tap replay --plugin target/plugins/http_status_rewrite.wasm "tests/captures/opt_status.pcap"
