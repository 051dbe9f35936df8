#!/usr/bin/env bash
# Benchmark 2 of issue 7: calibration, quantforge (CUDA) vs transformers 5.17 eager DeepseekV4,
# same weights (the synthetic V4-Flash-dims source of bench_quantize_job.sh, and its BF16
# `dequant` for transformers) and same token ids, per-expert input amax recorded on both sides.
#   a. resident: B x L batches, the model on the GPU: tokens/s both sides + amax comparison.
#   b. offload: the replaced workflow's set-up (transformers with a capped GPU memory and a
#      sequential device map, batch 1) for SAMPLES_B samples of SEQ_B tokens, projected from
#      MEASURE_B measured samples; quantforge calibrates all SAMPLES_B samples for real.
# Usage: bench/bench_calib_vs_transformers.sh QUANTFORGE_BIN WORK_DIR
# Env: B=2 L=4096 BATCHES=4 SAMPLES_B=128 SEQ_B=512 MEASURE_B=4 GPU_MEM_GB=16 N_LAYERS=2
#      STEPS="resident offload"
set -euo pipefail
qf=$1 work=$2
B=${B:-2} L=${L:-4096} BATCHES=${BATCHES:-4} QF_BATCH=${QF_BATCH:-4} SAMPLES_B=${SAMPLES_B:-128} SEQ_B=${SEQ_B:-512}
MEASURE_B=${MEASURE_B:-4} GPU_MEM_GB=${GPU_MEM_GB:-16} N_LAYERS=${N_LAYERS:-2}
STEPS=${STEPS:-"resident offload"}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# transformers' eager attention materializes [B, heads, L, L] scores: avoid fragmentation OOMs.
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
src="$work/src" bf16="$work/bf16"
[ -f "$src/config.json" ] || { echo "no source: run bench/bench_quantize_job.sh $qf $work $N_LAYERS first"; exit 1; }
python3 - "$work" "$B" "$L" "$BATCHES" "$SAMPLES_B" "$SEQ_B" "$(python3 -c "import json;print(json.load(open('$src/config.json'))['vocab_size'])")" <<'PY'
import sys, numpy as np
from safetensors.numpy import save_file
work, b, l, n, sb, lb, vocab = sys.argv[1], *map(int, sys.argv[2:])
rng = np.random.default_rng(1234)
save_file({"input_ids": rng.integers(0, vocab, size=(b * n, l), dtype=np.int64)}, f"{work}/tokens_a.safetensors")
save_file({"input_ids": rng.integers(0, vocab, size=(sb, lb), dtype=np.int64)}, f"{work}/tokens_b.safetensors")
PY
[ -f "$bf16/config.json" ] || "$qf" dequant --in "$src" --out "$bf16" --backend cuda --log-level warn
qf_calib() {  # tokens samples seq_len batch tag
  rm -rf "$work/q-$5" "$work/w-$5"
  local a b
  a=$(date +%s.%N)
  mpirun --bind-to none -np 1 "$qf" quantize --in "$src" --out "$work/q-$5" --work "$work/w-$5" --backend cuda \
    --calib "$1" --samples "$2" --seq-len "$3" --calib-batch "$4" >"$work/q-$5.log" 2>&1 \
    || { tail -40 "$work/q-$5.log"; exit 1; }
  b=$(date +%s.%N)
  grep -E "calib layer|token-layers" "$work/q-$5.log" || true
  sed -n '/summary (/,$p' "$work/q-$5.log"
  echo "quantforge $5: whole quantize (calibration + NVFP4 + export) $(python3 -c "print(f'{$b - $a:.2f}')") s"
  python3 "$repo/bench/calib_records_to_json.py" "$work/w-$5" "$work/qf_amax_$5.json"
  rm -rf "$work/q-$5" "$work/w-$5"
}
for step in $STEPS; do
  case $step in
    resident)
      echo "=== a. resident: $B x $L tokens per batch, $BATCHES batches ==="
      qf_calib "$work/tokens_a.safetensors" $((B * BATCHES)) "$L" "$QF_BATCH" resident
      python3 "$repo/bench/bench_calib_transformers.py" --model "$bf16" --mode resident \
        --batch "$B" --seq-len "$L" --batches "$BATCHES" --warmup 1 --both \
        --tokens "$work/tokens_a.safetensors" --amax-out "$work/hf_amax_resident.json" \
        && python3 "$repo/bench/compare_amax.py" "$work/hf_amax_resident.json" \
          "$work/qf_amax_resident.json" || echo "transformers resident run failed"
      ;;
    offload)
      echo "=== b. offload: $SAMPLES_B samples x $SEQ_B tokens, transformers GPU cap $GPU_MEM_GB GiB ==="
      qf_calib "$work/tokens_b.safetensors" "$SAMPLES_B" "$SEQ_B" 16 offload
      python3 "$repo/bench/bench_calib_transformers.py" --model "$bf16" --mode offload \
        --seq-len "$SEQ_B" --samples "$SAMPLES_B" --measure-samples "$MEASURE_B" --warmup 1 \
        --gpu-mem-gb "$GPU_MEM_GB" --tokens "$work/tokens_b.safetensors" \
        --amax-out "$work/hf_amax_offload.json" \
        && python3 "$repo/bench/compare_amax.py" "$work/hf_amax_offload.json" \
          "$work/qf_amax_offload.json" || echo "transformers offload run failed"
      ;;
  esac
done
