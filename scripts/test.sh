#!/usr/bin/env bash
# Sets up and runs the whole l7tap test suite: formatting, lints, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --tests
bash scripts/build-plugins.sh
# The guest SDK's own unit tests, natively with the same Debian rustc 1.63 it is built with.
/usr/bin/rustc --edition 2021 --test sdk/rust/src/lib.rs -o target/plugins/sdk-tests
target/plugins/sdk-tests
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# As root, the live eBPF capture tests must run, not skip (L7TAP_REQUIRE_LIVE=0 to allow skips).
if [ "$(id -u)" = 0 ]; then export L7TAP_REQUIRE_LIVE="${L7TAP_REQUIRE_LIVE:-1}"; fi
# The C/Python consumer tests load the shared library, which `cargo test` does not link.
cargo build -p l7tap-ffi --locked
cargo test --workspace --locked
