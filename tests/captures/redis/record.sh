#!/usr/bin/env bash
# Records redis.pcap: redis-cli (Debian's redis-tools) against redis-server on loopback,
# captured with tcpdump; what redis-cli printed is kept as the expectation (redis.cli.txt).
# Run as root with redis-server, redis-tools and tcpdump: bash tests/captures/redis/record.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
port=16379
work="$(mktemp -d)"
redis-server --port $port --bind 127.0.0.1 --save '' --appendonly no --dir "$work" --daemonize no >/dev/null & srv=$!
trap 'kill $srv 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 50); do redis-cli -p $port PING >/dev/null 2>&1 && break; sleep 0.1; done
tcpdump -i lo -U -s 0 -w "$here/redis.pcap" "tcp port $port" 2>/dev/null & td=$!
sleep 1
{
    # One connection per redis-cli call; each line: the command, then what redis-cli printed.
    for cmd in "SET user:42 alice" "GET user:42" "INCR counter" "INCR counter" "GET missing" \
               "LPUSH user:42 x" "HSET h f1 v1 f2 v2" "HGETALL h" "DEL user:42 counter"; do
        echo "> $cmd"
        redis-cli -p $port $cmd 2>&1
    done
    # A pipeline: three commands written at once on one connection.
    echo "> PIPE SET p1 one | GET p1 | EXISTS p1 nope"
    printf '*3\r\n$3\r\nSET\r\n$2\r\np1\r\n$3\r\none\r\n*2\r\n$3\r\nGET\r\n$2\r\np1\r\n*3\r\n$6\r\nEXISTS\r\n$2\r\np1\r\n$4\r\nnope\r\n' \
        | redis-cli -p $port --pipe 2>&1
} > "$here/redis.cli.txt"
sleep 1
kill -INT $td; wait $td || true
cat "$here/redis.cli.txt"

# session.pcap: one redis-cli session reading commands from stdin. redis-cli first asks for
# COMMAND DOCS, a ~170 KB nested reply that exceeds max_message_bytes: the reply is cut and
# the rest skipped by walking RESP, so the user's commands still pair with their replies.
tcpdump -i lo -U -s 0 -w "$here/session.pcap" "tcp port $port" 2>/dev/null & td=$!
sleep 1
printf 'SET live:k hello\nGET live:k\nINCR live:k\nDEL live:k\n' | redis-cli -p $port > "$here/session.cli.txt" 2>&1
sleep 1
kill -INT $td; wait $td || true
cat "$here/session.cli.txt"
