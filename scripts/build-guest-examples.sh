#!/usr/bin/env bash
# Builds the BAT OS guest SDK (wasm-guest-sdk/) and its example methods for
# wasm32-unknown-unknown, with Debian's rustc (1.63) and its wasm32 std,
# without cargo or rustup. Each example becomes OUT_DIR/<name>.wasm.
#
#   scripts/build-guest-examples.sh [OUT_DIR]   (default: wasm-guest-sdk/target/examples)
#
# Needs: apt-get install -y rustc libstd-rust-dev-wasm32 lld-14
# GUEST_RUSTC overrides the compiler (default /usr/bin/rustc); any rustc with
# the wasm32-unknown-unknown target works. It also runs the MessagePack codec's
# unit tests on the host and, if python3 is present, checks each module against
# docs/method-abi.md (wasm-guest-sdk/tools/check_module.py).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sdk="$root/wasm-guest-sdk"
out="${1:-$sdk/target/examples}"
rustc="${GUEST_RUSTC:-/usr/bin/rustc}"
target=wasm32-unknown-unknown
install_hint="apt-get update && apt-get install -y rustc libstd-rust-dev-wasm32 lld-14"

die() {
    echo "build-guest-examples: error: $*" >&2
    exit 1
}

[ -x "$rustc" ] || die "no compiler at $rustc. Install Debian's rustc and wasm32 std:
    $install_hint"
sysroot="$("$rustc" --print sysroot)" || die "$rustc --print sysroot failed"
compgen -G "$sysroot/lib/rustlib/$target/lib/libcore-*.rlib" >/dev/null \
    || die "$rustc has no $target standard library (looked in $sysroot/lib/rustlib/$target/lib). Install it:
    $install_hint"

# Debian's rustc links wasm32 with `rust-lld`, a link to lld-14's `lld`
# (a package libstd-rust-dev-wasm32 only recommends).
if [ "$rustc" = /usr/bin/rustc ] && ! command -v rust-lld >/dev/null; then
    die "no rust-lld to link wasm32 with. Install it:
    $install_hint"
fi

mkdir -p "$out/deps"
out="$(cd "$out" && pwd)"

# opt-level=s: small modules. panic=abort: no unwinding in the sandbox.
# A 64 KiB shadow stack (rustc's default is 1 MiB) keeps the initial memory at
# a couple of 64 KiB pages; methods keep their buffers small.
common=(--edition 2021 --target "$target" -C opt-level=s -C panic=abort -D warnings)
features=(--cfg 'feature="panic-handler"')

echo "build-guest-examples: $("$rustc" --version), output in $out"

"$rustc" "${common[@]}" "${features[@]}" --crate-type rlib --crate-name batos_guest \
    --out-dir "$out/deps" "$sdk/src/lib.rs"
rlib="$out/deps/libbatos_guest.rlib"
[ -s "$rlib" ] || die "the SDK built no $rlib"

built=()
for src in "$sdk"/examples/*.rs; do
    name="$(basename "$src" .rs)"
    "$rustc" "${common[@]}" --crate-type cdylib --crate-name "$name" \
        -C lto=fat -C codegen-units=1 -C link-arg=-zstack-size=65536 -C strip=debuginfo \
        --extern batos_guest="$rlib" -L "dependency=$out/deps" \
        -o "$out/$name.wasm" "$src"
    [ -s "$out/$name.wasm" ] || die "no $out/$name.wasm"
    built+=("$out/$name.wasm")
done

# The MessagePack codec's unit tests run on the host (src/msgpack.rs is also a
# crate root of its own).
"$rustc" --edition 2021 --test -D warnings -o "$out/deps/msgpack-tests" "$sdk/src/msgpack.rs"
"$out/deps/msgpack-tests" -q

if command -v python3 >/dev/null; then
    python3 "$sdk/tools/check_module.py" "${built[@]}"
else
    echo "build-guest-examples: python3 not found, modules not checked against the ABI" >&2
fi

for f in "${built[@]}"; do
    echo "built $f ($(wc -c <"$f") bytes)"
done
