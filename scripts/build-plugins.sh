#!/usr/bin/env bash
# Builds the guest SDK and every plugin under plugins/ into target/plugins/*.wasm.
# Rust plugins: Debian's rustc 1.63 for wasm32-wasi (apt: rustc libstd-rust-dev-wasm32).
# C plugins: clang-14 with wasi-libc and lld-14 (apt: clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32).
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/plugins
mkdir -p "$out"
RUSTC=/usr/bin/rustc
exports=(get_hook_bitmap get_custom_message_hook check_payload parse_payload on_http_req on_http_resp on_custom_message)
link_args=()
for e in "${exports[@]}"; do link_args+=(-C "link-arg=--export=$e"); done
$RUSTC --edition 2021 --crate-type rlib --crate-name l7tap_sdk --target wasm32-wasi -C opt-level=2 -C target-feature=+bulk-memory,+simd128 \
    sdk/rust/src/lib.rs -o "$out/libl7tap_sdk.rlib"
for dir in plugins/*/; do
    name="$(basename "$dir")"
    if [ -f "$dir/src/main.rs" ]; then
        $RUSTC --edition 2021 --crate-name "$name" --target wasm32-wasi -C opt-level=2 -C target-feature=+bulk-memory,+simd128 -C panic=abort -C strip=debuginfo \
            --extern l7tap_sdk="$out/libl7tap_sdk.rlib" -L "$out" "${link_args[@]}" \
            "$dir/src/main.rs" -o "$out/$name.wasm"
    elif [ -f "$dir/plugin.c" ]; then
        clang-14 --target=wasm32-wasi --sysroot=/usr -O2 -fuse-ld=lld \
            -Wl,--export=get_hook_bitmap -Wl,--export=check_payload -Wl,--export=parse_payload \
            -Wl,--export=on_http_req -Wl,--export=on_http_resp \
            "$dir/plugin.c" -o "$out/$name.wasm"
    else
        continue
    fi
    echo "built $out/$name.wasm"
done
