#!/usr/bin/env bash
# Run on a lent NVIDIA machine, from the repository root, after tools/gpu-session/prepare.sh
# here (carry .gpu): the GPU tests, then our bench and PyTorch's over the same shapes, then the
# side by side. One call of the device tool:
#   run(command="bash tools/gpu-session/run.sh", carry=[".gpu"], timeout_s=600)
# Each phase has its own time limit (seconds, from the environment) so that the whole ends
# inside one call; PHASES picks phases for a rerun (PHASES="bench torch join").
# What comes back ($OUT, at most 8 files):
#   session.log          the GPU, the driver, each phase's outcome and the bench tables
#   tests.log            the test executables' output
#   ours.json            softmax-wgpu bench --json over SHAPES (written after every case)
#   variants.json        softmax under each forced variant over SWEEP_SHAPES, and softmax
#                        and cross-entropy with split-row dispatches sized to CACHE_MIBS of
#                        the L2 over CACHE_SHAPES
#   torch.json           tools/pytorch_reference.py --json over SHAPES
#   gpu-vs-pytorch.json  the side-by-side records (tools/gpu_vs_pytorch.py)
#   gpu-vs-pytorch.md    the same as a Markdown table
set -uo pipefail
OUT=${OUT:-/tmp/gpu-session-out}
PHASES=${PHASES:-"tests bench sweep torch join"}
TESTS_S=${TESTS_S:-150}
BENCH_S=${BENCH_S:-200}
SWEEP_S=${SWEEP_S:-90}
TORCH_S=${TORCH_S:-110}
SHAPES=${SHAPES:-1x262144,1x1048576,32x32000,32x128256,256x32000,256x128256,1024x128256,4096x32000,4096x128256}
SWEEP_SHAPES=${SWEEP_SHAPES:-32x32000,256x32000,4096x32000,256x128256,1024x128256,4096x128256}
CACHE_SHAPES=${CACHE_SHAPES:-256x128256,1024x128256,4096x128256}
CACHE_MIBS=${CACHE_MIBS:-24 48}
OPS=${OPS:-softmax,log-softmax,logsumexp,cross-entropy}
DTYPES=${DTYPES:-f32,f16}
mkdir -p "$OUT"
LOG="$OUT/session.log"
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }
has() { [[ " $PHASES " == *" $1 "* ]]; }
start=$(date +%s)

# The Vulkan loader, NVIDIA's driver manifest, the executables where the tests expect them.
if ! ldconfig -p | grep -q 'libvulkan\.so\.1 ' || ! ldconfig -p | grep -q 'libGLdispatch\.so\.0 '; then
  for f in .gpu/deb/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -e "$icd" ] && export VK_DRIVER_FILES="$icd"
export WGPU_BACKEND=vulkan
tar -C .gpu -xJf .gpu/bin.tar.xz
built_in=$(cat .gpu/manifest_dir)
if [ "$built_in" != "$PWD" ] && [ ! -e "$built_in" ]; then
  mkdir -p "$(dirname "$built_in")" && ln -s "$PWD" "$built_in"
fi
mkdir -p target/release && cp .gpu/bin/softmax-wgpu target/release/
CLI=./target/release/softmax-wgpu

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.draw \
  --format=csv >> "$LOG" 2>&1
$CLI info >> "$LOG" 2>&1 || log "softmax-wgpu info failed: no Vulkan adapter"
echo "built from commit $(tr '\n' ' ' < .gpu/commit)" >> "$LOG"

if has tests; then
  deadline=$(( $(date +%s) + TESTS_S ))
  while read -r t; do
    left=$(( deadline - $(date +%s) ))
    if [ "$left" -le 5 ]; then log "test $t: not run (phase out of time)"; continue; fi
    timeout "$left" ".gpu/bin/$t" > "$OUT/test.out" 2>&1
    rc=$?
    summary=$(grep -h "^test result:" "$OUT/test.out" | tail -1)
    [ "$rc" = 124 ] && summary="stopped at the phase's time limit"
    log "test $t: rc=$rc ${summary}"
    { echo "==== $t (rc=$rc)"; cat "$OUT/test.out"; } >> "$OUT/tests.log"
    rm -f "$OUT/test.out"
  done < .gpu/tests
fi

if has bench; then
  log "bench: $SHAPES ($OPS; $DTYPES)"
  timeout "$BENCH_S" $CLI bench --shapes "$SHAPES" --op "$OPS" --dtype "$DTYPES" --no-cpu \
    --json "$OUT/ours.json" >> "$LOG" 2>&1
  log "bench: rc=$?"
fi

if has sweep; then
  # Softmax under each variant on the batches of long rows, for the automatic choice;
  # resident holds rows of up to 32768 logits.
  deadline=$(( $(date +%s) + SWEEP_S ))
  parts=()
  for variant in online split-row resident; do
    shapes=$SWEEP_SHAPES
    [ "$variant" = resident ] && shapes=$(tr ',' '\n' <<< "$SWEEP_SHAPES" | grep 'x32000$' | paste -sd,)
    left=$(( deadline - $(date +%s) ))
    [ "$left" -le 5 ] && { log "sweep $variant: not run (phase out of time)"; continue; }
    timeout "$left" $CLI bench --shapes "$shapes" --op softmax --dtype "$DTYPES" --no-cpu \
      --variant "$variant" --device-copy-mib 0 --json "$OUT/variant-$variant.json" >> "$LOG" 2>&1
    log "sweep $variant: rc=$?"
    [ -e "$OUT/variant-$variant.json" ] && parts+=("$OUT/variant-$variant.json")
  done
  # Split-row dispatches sized to part of the L2 (EngineOptions::cache_bytes), each row's
  # second read then a cache hit: the candidate for batches of long rows.
  for mib in $CACHE_MIBS; do
    left=$(( deadline - $(date +%s) ))
    [ "$left" -le 5 ] && { log "sweep cache $mib MiB: not run (phase out of time)"; continue; }
    timeout "$left" $CLI --cache-mib "$mib" bench --shapes "$CACHE_SHAPES" --op softmax,cross-entropy \
      --dtype "$DTYPES" --no-cpu --device-copy-mib 0 --json "$OUT/variant-cache$mib.json" \
      >> "$LOG" 2>&1
    log "sweep cache $mib MiB: rc=$?"
    [ -e "$OUT/variant-cache$mib.json" ] && parts+=("$OUT/variant-cache$mib.json")
  done
  python3 - "$OUT/variants.json" "${parts[@]}" <<'PY'
import json, sys
records = [r for path in sys.argv[2:] for r in json.load(open(path))]
json.dump(records, open(sys.argv[1], "w"), indent=1)
PY
  rm -f "$OUT"/variant-*.json
fi

if has torch; then
  log "pytorch: $SHAPES"
  PYTHONUNBUFFERED=1 timeout "$TORCH_S" python3 tools/pytorch_reference.py --shapes "$SHAPES" \
    --op "$OPS" --dtype "$DTYPES" --json "$OUT/torch.json" >> "$LOG" 2>&1
  log "pytorch: rc=$?"
fi

if has join && [ -e "$OUT/ours.json" ] && [ -e "$OUT/torch.json" ]; then
  python3 tools/gpu_vs_pytorch.py --ours "$OUT/ours.json" --pytorch "$OUT/torch.json" \
    --json "$OUT/gpu-vs-pytorch.json" --markdown "$OUT/gpu-vs-pytorch.md" >> "$LOG" 2>&1
  log "join: rc=$?"
fi
log "done in $(( $(date +%s) - start )) s"
