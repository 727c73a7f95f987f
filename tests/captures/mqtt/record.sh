#!/usr/bin/env bash
# Records mqtt.pcap: mosquitto_sub and mosquitto_pub (mosquitto-clients) against the mosquitto
# broker on loopback, MQTT 3.1.1 and 5, QoS 0/1/2; the subscriber's output (-v: topic and
# payload) is kept as the expectation (mqtt.sub.txt). Run as root with mosquitto,
# mosquitto-clients and tcpdump: bash tests/captures/mqtt/record.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
port=11883
work="$(mktemp -d)"
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' $port > "$work/m.conf"
mosquitto -c "$work/m.conf" >/dev/null 2>&1 & srv=$!
trap 'kill $srv 2>/dev/null || true; rm -rf "$work"' EXIT
sleep 1
tcpdump -i lo -U -s 0 -w "$here/mqtt.pcap" "tcp port $port" 2>/dev/null & td=$!
sleep 1
mosquitto_sub -h 127.0.0.1 -p $port -i l7tap-sub -t 'plant/+/temp' -q 1 -v -C 3 -W 10 > "$here/mqtt.sub.txt" & sub=$!
sleep 0.5
mosquitto_pub -h 127.0.0.1 -p $port -i l7tap-pub-a -t plant/a/temp -q 0 -m 21.5
mosquitto_pub -h 127.0.0.1 -p $port -i l7tap-pub-b -t plant/b/temp -q 1 -m 22.0
mosquitto_pub -h 127.0.0.1 -p $port -i l7tap-pub-c -t plant/c/temp -q 2 -m 23.5 -V mqttv5
wait $sub || true
sleep 1
kill -INT $td; wait $td || true
cat "$here/mqtt.sub.txt"
