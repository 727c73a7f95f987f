#!/usr/bin/env bash
# Records tests/kvp/kvp.pcap: the KVP test client talking to the KVP test server on loopback,
# captured with tcpdump; the client's own output is kept as the expectation (kvp.client.txt).
# Run as root with tcpdump and python3: bash tests/kvp/record.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
port=19090
python3 "$here/kvp.py" server $port & srv=$!
trap 'kill $srv 2>/dev/null || true' EXIT
sleep 0.5
tcpdump -i lo -U -s 0 -w "$here/kvp.pcap" "tcp port $port" 2>/dev/null & td=$!
sleep 1
python3 "$here/kvp.py" client $port > "$here/kvp.client.txt"
sleep 1
kill -INT $td; wait $td || true
cat "$here/kvp.client.txt"
