#!/usr/bin/env bash
# Records dns.pcap: dig (bind9-dnsutils) against dnsmasq on loopback, over UDP and TCP, with
# local records only (no upstream: nothing leaves the machine). dig's own answers are kept as
# the expectation (dns.dig.txt). Run as root with dnsmasq-base, bind9-dnsutils and tcpdump:
#     bash tests/captures/dns/record.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
port=15353
dnsmasq --no-daemon --port=$port --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts \
    --host-record=shop.l7tap.test,10.1.2.3,fd00::3 --cname=www.l7tap.test,shop.l7tap.test \
    --local=/l7tap.test/ --txt-record=info.l7tap.test,"hello dns" >/dev/null 2>&1 & srv=$!
trap 'kill $srv 2>/dev/null || true' EXIT
sleep 1
tcpdump -i lo -U -s 0 -w "$here/dns.pcap" "port $port" 2>/dev/null & td=$!
sleep 1
{
    for q in "shop.l7tap.test A" "shop.l7tap.test AAAA" "www.l7tap.test A" "missing.l7tap.test A" "info.l7tap.test TXT"; do
        echo "> udp $q"
        dig @127.0.0.1 -p $port +noall +answer +comments $q | grep -E "status:|IN" || true
    done
    echo "> tcp shop.l7tap.test A"
    dig @127.0.0.1 -p $port +tcp +noall +answer +comments shop.l7tap.test A | grep -E "status:|IN" || true
} > "$here/dns.dig.txt"
sleep 1
kill -INT $td; wait $td || true
cat "$here/dns.dig.txt"
