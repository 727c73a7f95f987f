#!/usr/bin/env bash
# Records psql.pcap: psql 15 (Debian's postgresql-client) running session.sql against a
# PostgreSQL 15 server on loopback (a throwaway cluster, trust auth, TCP on 127.0.0.1),
# captured with tcpdump; what psql printed (-a: each statement, then its command tag, rows or
# error) is the expectation (psql.txt). Then pgbench runs 5 transactions of its built-in
# select-only script over the extended protocol (-M extended: Parse/Bind/Execute) on the same
# server, recorded in pgbench.pcap; pgbench's report is pgbench.txt.
# Run as root with postgresql, postgresql-client, tcpdump: bash tests/captures/postgres/record.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
port=15432
bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
work="$(mktemp -d)"
chown postgres "$work"
su postgres -c "$bin/initdb -D $work/db -A trust -U postgres" >/dev/null
su postgres -c "$bin/pg_ctl -D $work/db -o '-p $port -k $work -c listen_addresses=127.0.0.1' -l $work/log start" >/dev/null
trap 'su postgres -c "$bin/pg_ctl -D $work/db stop -m immediate" >/dev/null 2>&1 || true; kill ${td:-} 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 50); do psql -h 127.0.0.1 -p $port -U postgres -c 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
psql -h 127.0.0.1 -p $port -U postgres -c 'CREATE DATABASE shop' >/dev/null
pgbench -h 127.0.0.1 -p $port -U postgres -i -s 1 shop >/dev/null 2>&1

tcpdump -i lo -U -s 0 -w "$here/psql.pcap" "tcp port $port" 2>/dev/null & td=$!
sleep 1
PGSSLMODE=disable psql -h 127.0.0.1 -p $port -U postgres -d shop -a -f "$here/session.sql" > "$here/psql.txt" 2>&1 || true
sleep 1
kill -INT $td; wait $td || true

tcpdump -i lo -U -s 0 -w "$here/pgbench.pcap" "tcp port $port" 2>/dev/null & td=$!
sleep 1
PGSSLMODE=disable pgbench -h 127.0.0.1 -p $port -U postgres -M extended -S -t 5 -c 1 shop > "$here/pgbench.txt" 2>&1
sleep 1
kill -INT $td; wait $td || true
cat "$here/psql.txt"
