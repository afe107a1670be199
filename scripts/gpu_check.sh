#!/usr/bin/env bash
# One GPU session's measurements for issue 17 (docs/performance.md, "Cost of a full
# reproduction"): run once from the repository root on a machine with one CUDA GPU, in under
# 8 minutes, then bring back $OUT (default: outputs/gpu_check).
#
#   bash scripts/gpu_check.sh            # OUT=outputs/gpu_check
#   OUT=/some/dir SCALE=0.05 bash scripts/gpu_check.sh
#
# What it measures (each step bounded by `timeout`, so a slow step cannot eat the others' time;
# every step writes its own JSON, so a step that fails leaves the others' figures):
#   1. the standard benchmark minus the dvc repro (paper step with bf16 autocast, the bf16 and
#      fp32 matmul peaks of the same run, one-query latency ratios dynamic/soft_dynamic and
#      dynamic/exploitation_only, MS-LSTM, loader share, extraction clips/s with the
#      projected hours for Charades-STA's 9,848 videos);
#   2. the Charades-STA-shaped workload: training samples/s of dynamic (faithful selector
#      training), soft_dynamic and exploitation_only on real-length batches (the real
#      annotation files when data.root holds them), peak device memory, loader share,
#      evaluation queries/s, fraction of the matmul peak, and the projected wall time of
#      50 epochs x 10 variants.
# The targets of the issue are judged in each JSON's "targets" ([pass]/[FAIL] on stdout).
set -euo pipefail
OUT=${OUT:-outputs/gpu_check}
SCALE=${SCALE:-0.05}          # fraction of a Charades-STA epoch timed per variant (~39 steps)
DYNPATH=${DYNPATH:-dynpath}
mkdir -p "$OUT"
python - <<'PY' > "$OUT/env.txt" 2>&1 || true
import torch
print(torch.__version__, torch.version.cuda, torch.cuda.is_available())
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0).total_memory)
PY
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
# the paper's profile: Charades-STA data root, max_len 128, I3D at 224, 24 fps, 50 epochs
PARAMS="$OUT/params-charades.yaml"
$DYNPATH --params "$PARAMS" profile charades_sta >/dev/null
if [ -n "${CHARADES_ROOT:-}" ]; then
  sed -i "s#^  root: .*#  root: ${CHARADES_ROOT}#" "$PARAMS"
fi
start=$(date +%s)
status=0
timeout 270 $DYNPATH --params "$PARAMS" bench --device cuda \
  --sections paper,inference,mslstm,data,extraction --output "$OUT/bench_gpu.json" \
  | tee "$OUT/bench_gpu.txt" || status=$?
timeout 200 $DYNPATH --params "$PARAMS" bench --device cuda --sections charades \
  --charades-scale "$SCALE" --output "$OUT/charades_gpu.json" \
  | tee "$OUT/charades_gpu.txt" || status=$?
echo "gpu_check: $(( $(date +%s) - start )) s, exit status $status" | tee "$OUT/done.txt"
exit $status
