#!/usr/bin/env bash
# Records the bundled captures from real programs on loopback: nginx (Debian package) as the
# server, curl as the client, tcpdump as the recorder. The expectations next to each capture
# (<name>.nginx.jsonl: nginx's access log; <name>.curl.txt: curl's -w report) come from those
# programs, never from l7tap. Run as root on a machine with nginx-light, curl and tcpdump:
#     bash tests/captures/record.sh
# The loopback MTU is lowered to 1500 while recording so that large bodies span many segments
# as they would on a real network, and restored afterwards.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
port=18080
mkdir -p "$work/www"; chmod 755 "$work"
sed -e "s#NGINX_DIR#$work#g" -e "s#NGINX_PORT#$port#g" -e "s#BACKEND_PORT#$((port + 1))#g" "$here/nginx.conf" > "$work/nginx.conf"
# Content: a small page, a JSON document, 30 KB and 200 KB files of deterministic text.
printf '<html><body>hello l7tap</body></html>\n' > "$work/www/index.html"
printf '{"created":true}\n' > "$work/www/created.json"
python3 -c "import sys; sys.stdout.write(''.join('line %06d of the medium file\n' % i for i in range(1100)))" > "$work/www/medium.txt"
python3 -c "import sys; sys.stdout.write(''.join('line %06d of the large file.....\n' % i for i in range(6000)))" > "$work/www/large.txt"
nginx -c "$work/nginx.conf" & ngx=$!
trap 'kill $ngx 2>/dev/null || true; ip link set dev lo mtu 65536; rm -rf "$work"' EXIT
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
: > "$work/access.log"
ip link set dev lo mtu 1500

base="http://127.0.0.1:$port"
fmt='%{http_code} %{size_download} %{size_upload} %{num_connects}\n'

record() { # name, then the client command
    local name="$1"; shift
    : > "$work/access.log"
    tcpdump -i lo -U -s 0 -w "$here/$name.pcap" "tcp port $port" 2>/dev/null & local td=$!
    sleep 1
    "$@" > "$here/$name.curl.txt"
    sleep 1
    kill -INT $td; wait $td || true
    cp "$work/access.log" "$here/$name.nginx.jsonl"
}

# Keep-alive: five requests on one connection, with trace headers, HEAD, 404, 503, POST.
record keepalive curl -s -o /dev/null -w "$fmt" \
    -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' -H 'X-Request-ID: req-0001' "$base/index.html" \
    --next -s -o /dev/null -w "$fmt" -I "$base/index.html" \
    --next -s -o /dev/null -w "$fmt" "$base/missing" \
    --next -s -o /dev/null -w "$fmt" "$base/fail" \
    --next -s -o /dev/null -w "$fmt" -H 'Content-Type: application/json' --data-binary '{"item":42,"qty":3}' "$base/api/ok"

# Chunked: gzip-compressed responses of unknown length are sent chunked by nginx.
record chunked curl -s -o /dev/null -w "$fmt" --compressed "$base/medium.txt" \
    --next -s -o /dev/null -w "$fmt" --compressed "$base/api/ok"

# Large bodies over many 1448-byte segments: 35 KB (kept whole) and 210 KB (cut at 64 KiB).
record large curl -s -o /dev/null -w "$fmt" "$base/medium.txt" --next -s -o /dev/null -w "$fmt" "$base/large.txt" \
    --next -s -o /dev/null -w "$fmt" "$base/index.html"

# Pipelining: three requests written at once by a raw client, answered in order.
record pipelined python3 -c "
import socket, sys
s = socket.create_connection(('127.0.0.1', $port))
s.sendall(b'GET /index.html HTTP/1.1\r\nHost: pipe\r\n\r\nGET /missing HTTP/1.1\r\nHost: pipe\r\n\r\nGET /api/ok HTTP/1.1\r\nHost: pipe\r\nConnection: close\r\n\r\n')
data = b''
while True:
    chunk = s.recv(65536)
    if not chunk: break
    data += chunk
import re
print(' '.join(c.decode() for c in re.findall(rb'HTTP/1\.1 (\d{3}) ', data)))
"

# 100-continue: curl waits for the interim response before sending the body.
record continue curl -s -o /dev/null -w "$fmt" -H 'Expect: 100-continue' -H 'Content-Type: text/plain' \
    --data-binary "@$work/www/medium.txt" "$base/api/upload"

# The seed's first case: HTTP 200 whose JSON body says the operation failed.
record opt_status curl -s -o /dev/null -w "$fmt" "$base/api/order" --next -s -o /dev/null -w "$fmt" "$base/api/ok"
echo "recorded into $here"
