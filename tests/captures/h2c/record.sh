#!/usr/bin/env bash
# Records h2c.pcap: nghttp (nghttp2-client; four GET streams multiplexed on one connection,
# then a POST on a second one) and curl 7.88 (--http2-prior-knowledge, a GET on a third
# connection) against nginx 1.22
# serving cleartext HTTP/2 on loopback, captured with tcpdump. The expectations are what the
# clients printed (h2c.nghttp.txt: stream id, status, size, path; h2c.curl.txt) and nginx's
# access log (h2c.nginx.jsonl). (curl 7.88.1 fails with "Error in the HTTP2 framing layer"
# when it reuses an h2c connection for a second request and sometimes on h2c POSTs, hence
# nghttp for those.)
# Run as root with nginx-light, nghttp2-client, curl and tcpdump: bash tests/captures/h2c/record.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
conf="$here/../nginx.conf"
work="$(mktemp -d)"
port=18880
mkdir -p "$work/www"; chmod 755 "$work"
sed -e "s#NGINX_DIR#$work#g" -e "s#NGINX_PORT;#NGINX_PORT http2;#" -e "s#NGINX_PORT#$port#g" \
    -e "s#BACKEND_PORT#$((port + 1))#g" "$conf" > "$work/nginx.conf"
printf '<html><body>hello l7tap</body></html>\n' > "$work/www/index.html"
python3 -c "import sys; sys.stdout.write(''.join('line %06d of the medium file\n' % i for i in range(1100)))" > "$work/www/medium.txt"
chmod -R 755 "$work"
nginx -c "$work/nginx.conf" & ngx=$!
trap 'kill $ngx ${td:-} 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 50); do curl -s --http2-prior-knowledge -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
sleep 0.5; : > "$work/access.log"  # after the readiness probe has been logged
base="http://127.0.0.1:$port"
fmt='%{http_code} %{size_download} %{http_version} %{num_connects}\n'
tcpdump -i lo -U -s 0 -w "$here/h2c.pcap" "tcp port $port" 2>/dev/null & td=$!
sleep 1
nghttp -ns -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' \
    "$base/index.html" "$base/missing" "$base/medium.txt" "$base/fail" > "$work/nghttp.txt"
awk '/^id  responseEnd/ {on=1; next} on && NF >= 7 {print $1, $5, $6, $7}' "$work/nghttp.txt" > "$here/h2c.nghttp.txt"
printf '{"item":42,"qty":3}' > "$work/body.json"
nghttp -ns -H 'content-type: application/json' -d "$work/body.json" "$base/api/ok" > "$work/nghttp2.txt"
awk '/^id  responseEnd/ {on=1; next} on && NF >= 7 {print $1, $5, $6, $7}' "$work/nghttp2.txt" >> "$here/h2c.nghttp.txt"
curl -s --http2-prior-knowledge -o /dev/null -w "$fmt" "$base/index.html" > "$here/h2c.curl.txt"
sleep 1
kill -INT $td; wait $td || true
cp "$work/access.log" "$here/h2c.nginx.jsonl"
cat "$here/h2c.nghttp.txt" "$here/h2c.curl.txt" "$here/h2c.nginx.jsonl"
