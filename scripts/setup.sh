#!/usr/bin/env bash
# Installs what building l7tap needs on Debian 12 (as root; otherwise it only checks); with
# --tests, also what the test suite needs.
#     bash scripts/setup.sh [--tests]
set -euo pipefail
# gcc for -sys crates; Debian's rustc + wasm32 std for Rust plugins; clang/lld/wasi-libc for C plugins;
# clang + libelf/zlib + make for the eBPF program and the libbpf that libbpf-sys builds.
pkgs=(ca-certificates gcc libc6-dev pkg-config make rustc libstd-rust-dev-wasm32 clang-14 lld-14
      wasi-libc libclang-rt-14-dev-wasm32 libelf-dev zlib1g-dev)
tests=0
if [ "${1:-}" = --tests ]; then
    tests=1
    # The real servers and clients of the live-capture tests (nginx, curl, openssl, redis,
    # postgresql, mariadb, mosquitto, dnsmasq, dig, nghttp, python3 with grpcio, liburing for the
    # io_uring test server, wget for GnuTLS, libssl-dev for a client with OpenSSL linked in,
    # nodejs); valgrind and Go for the C ABI consumers' tests.
    pkgs+=(nginx-light curl openssl redis-server redis-tools postgresql dnsmasq-base iproute2 bind9-dnsutils
           nghttp2-client mosquitto mosquitto-clients mariadb-server mariadb-client python3
           python3-grpcio valgrind golang-go liburing-dev wget libssl-dev nodejs)
fi
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    if [ "$(id -u)" = 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
        echo "l7tap setup: missing Debian packages: ${missing[*]} (run: sudo apt-get install -y ${missing[*]})" >&2
        exit 1
    fi
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "l7tap setup: no cargo on PATH; l7tap needs Rust >= 1.85 (Debian 12's rustc 1.63 is too old): install it with rustup" >&2
    exit 1
fi
ver="$(rustc --version | awk '{print $2}')"
if [ "$(printf '%s\n1.85.0\n' "$ver" | sort -V | head -1)" != "1.85.0" ]; then
    echo "l7tap setup: rustc $ver is older than 1.85; update it (rustup update stable)" >&2
    exit 1
fi
# The OTLP export test decodes what l7tap sends with the official protobuf definitions.
if [ "$tests" = 1 ] && ! python3 -c "import opentelemetry.proto.collector.logs.v1.logs_service_pb2" 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check "opentelemetry-proto==1.45.2" 2>&1 | grep -v "WARNING: Running pip as the 'root' user" || true
fi
