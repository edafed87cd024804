#!/usr/bin/env bash
# Builds the wasm (build.sh) and serves the demo page on localhost: open the URL it prints in
# a browser with WebGPU (Chrome, Edge; Firefox and Safari where WebGPU is on).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bash "$here/build.sh"
port="${PORT:-8000}"
echo "softmax-wgpu demo: http://127.0.0.1:$port/"
exec python3 -m http.server "$port" --bind 127.0.0.1 --directory "$here"
