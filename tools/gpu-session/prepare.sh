#!/usr/bin/env bash
# Run here, on the CPU machine, before a session on a lent NVIDIA machine (which has PyTorch
# but no Rust): builds what tools/gpu-session/run.sh runs there into .gpu/ (ignored by git,
# carried by the device tool: `carry: [".gpu"]`):
#   .gpu/bin.tar.xz     the release CLI and the GPU test executables, stripped
#   .gpu/manifest_dir   the path they were built in (the tests read files below it)
#   .gpu/commit         the commit they were built from
#   .gpu/deb/           the Vulkan loader and GL dispatch libraries, which that machine lacks
# Prints the size that will travel (the device tool carries at most 64 MiB).
set -euo pipefail
cd "$(dirname "$0")/../.."
# The test suites that run kernels on an adapter; the rest need no GPU or need cargo.
TESTS=(accuracy_contract forward edge_cases half variants training batch_invariant sampling
  vocab_parallel large random_shapes device_api errors device_lost)
rm -rf .gpu && mkdir -p .gpu/bin .gpu/deb
cargo build --release --bin softmax-wgpu
args=()
for t in "${TESTS[@]}"; do args+=(--test "$t"); done
cargo test --release --no-run --message-format=json "${args[@]}" > .gpu/build.json
python3 - "${TESTS[@]}" <<'PY'
import json, shutil, sys
wanted = set(sys.argv[1:])
for line in open(".gpu/build.json"):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and \
            m["target"]["kind"] == ["test"] and m["target"]["name"] in wanted:
        shutil.copy(m["executable"], f".gpu/bin/{m['target']['name']}")
        wanted.discard(m["target"]["name"])
if wanted:
    sys.exit(f"no executable built for {sorted(wanted)}")
PY
rm .gpu/build.json
cp target/release/softmax-wgpu .gpu/bin/
strip .gpu/bin/*
printf '%s\n' "${TESTS[@]}" > .gpu/tests
pwd > .gpu/manifest_dir
# The commit the executables were built from (the device machine gets no .git).
{ git rev-parse --short HEAD; git status --porcelain --untracked-files=no | grep -q . && echo "(with uncommitted changes)"; } > .gpu/commit || true
tar -C .gpu -cJf .gpu/bin.tar.xz bin && rm -rf .gpu/bin
# The Vulkan loader, and the GL dispatch libraries NVIDIA's driver library links to, for
# that machine's x86-64 Ubuntu (Debian's older builds run there).
o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
mkdir -p /tmp/amd64/partial
apt-get "${o[@]}" update -qq
(cd .gpu/deb && apt-get "${o[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
du -sh .gpu
