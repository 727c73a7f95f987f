#!/usr/bin/env bash
# Records grpc.pcap: a Python grpcio client calling a Python grpcio server (order.proto) over
# cleartext HTTP/2 on loopback, captured with tcpdump; the client's output (business id, gRPC
# status, reply message or error details per call) is the expectation (grpc.client.txt).
# Needs root, tcpdump, python3 with grpcio and grpcio-tools (pip install grpcio grpcio-tools).
#     bash tests/captures/grpc/record.sh [python with grpcio]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${1:-python3}"
port=50651
work="$(mktemp -d)"
"$py" -m grpc_tools.protoc -I "$here" --python_out="$work" --grpc_python_out="$work" "$here/order.proto"
cp "$here/server.py" "$here/client.py" "$work/"
cd "$work"
"$py" server.py $port > server.out & srv=$!
trap 'kill $srv ${td:-} 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do grep -q ready server.out 2>/dev/null && break; sleep 0.1; done
tcpdump -i lo -U -s 0 -w "$here/grpc.pcap" "tcp port $port" 2>/dev/null & td=$!
sleep 1
"$py" client.py $port > "$here/grpc.client.txt"
sleep 1
kill -INT $td; wait $td || true
cat "$here/grpc.client.txt"
