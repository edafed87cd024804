#!/usr/bin/env bash
# Builds the JavaScript bindings (web/) for the browser into examples/web/pkg: the wasm32
# target and wasm-bindgen-cli (the version web/Cargo.toml pins) are installed where missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
version=$(sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' web/Cargo.toml)
rustup target list --installed | grep -q wasm32-unknown-unknown \
  || rustup target add wasm32-unknown-unknown
if [ "$(wasm-bindgen --version 2>/dev/null | cut -d' ' -f2)" != "$version" ]; then
  echo "installing wasm-bindgen-cli $version"
  cargo install -q wasm-bindgen-cli --version "$version"
fi
cargo build -q --release --target wasm32-unknown-unknown -p softmax-wgpu-web
wasm-bindgen --target web --no-typescript --out-dir examples/web/pkg \
  target/wasm32-unknown-unknown/release/softmax_wgpu_web.wasm
