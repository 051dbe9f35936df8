#!/usr/bin/env bash
# The MoE part of benchmark 2a (issue 7) against the calibration batch: `quantize --backend cuda`
# of the synthetic V4-Flash-dims source with QF_PROFILE=1 for each --calib-batch, and from the
# steady-state layer (the last; the first pays cuBLAS lazy loading) the GPU time of the
# "experts (routed + shared)" section -> MoE GEMM TFLOP/s (2 * 3 * hidden * moe_inter * (top-k +
# shared) FLOPs per token; the section also holds the per-layer FP4 -> BF16 expert dequant and
# the SwiGLU, so this is a lower bound on the GEMMs' own rate).
# Usage: bench/bench_calib_batch_sweep.sh QUANTFORGE_BIN SOURCE_DIR WORK_DIR [BATCHES="4 8 16"]
#        [SAMPLES=16] [SEQ_LEN=4096]
set -euo pipefail
qf=$1 src=$2 work=$3 batches=${4:-"4 8 16"} samples=${5:-16} seq_len=${6:-4096}
mkdir -p "$work"
read -r dim inter topk shared < <(python3 -c "
import json; c = json.load(open('$src/config.json'))
print(c['hidden_size'], c['moe_intermediate_size'], c['num_experts_per_tok'], c.get('n_shared_experts', 1))")
printf '%-6s %-14s %-12s %-12s %-10s\n' batch tokens/layer experts_ms MoE_TFLOP/s layer_tok/s
for b in $batches; do
  rm -rf "$work/out" "$work/work"
  QF_PROFILE=1 mpirun --bind-to none -np 1 "$qf" quantize --in "$src" --out "$work/out" --work "$work/work" \
    --backend cuda --samples "$samples" --seq-len "$seq_len" --calib-batch "$b" \
    >"$work/sweep-$b.log" 2>&1 || { tail -30 "$work/sweep-$b.log"; exit 1; }
  python3 - "$work/sweep-$b.log" "$b" "$samples" "$seq_len" "$dim" "$inter" "$topk" "$shared" <<'PY'
import re, sys
log, b, samples, seq, dim, inter, topk, shared = sys.argv[1], *map(int, sys.argv[2:])
text = open(log).read()
prof = [l for l in text.splitlines() if "forward" in l and "experts (routed + shared)" in l]
fwd = re.findall(r"forward ([0-9.]+)s = ([0-9]+) tokens/s", text)
last = prof[-1]
ms = float(re.search(r"experts \(routed \+ shared\) ([0-9.]+) ms", last).group(1))
tokens = samples * seq
flops = tokens * 2 * 3 * dim * inter * (topk + shared)
print(f"{b:<6d} {tokens:<14d} {ms:<12.1f} {flops / ms / 1e9:<12.0f} {fwd[-1][1] if fwd else '?':<10}")
PY
done
rm -rf "$work/out" "$work/work"
