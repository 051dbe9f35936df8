#!/usr/bin/env bash
# Issue 11's figure: KL / top-1 / perplexity of the quantized model vs its source for each
# activation-scale method, on the synthetic source with real V4-Flash layer dimensions
# (bench/make_flash_source.sh). Per method: `quantize --act-scale M` (CALIB_BACKEND, default
# cuda; histograms are collected by either backend), then `eval` (CPU reference forward, RANKS
# ranks splitting the held-out samples, which are not the calibration ones) -> a table.
# Usage: bench/bench_act_scale_eval.sh QUANTFORGE_BIN WORK_DIR [METHODS="max percentile mse"]
# Env: CALIB_SAMPLES=16 CALIB_SEQ=1024 EVAL_SAMPLES=4 EVAL_SEQ=256 RANKS=2 N_LAYERS=2
#      CALIB_BACKEND=cuda RECIPE=full QF_THREADS=(cores / RANKS)
set -euo pipefail
qf=$1 work=$2 methods=${3:-"max percentile mse"}
CALIB_SAMPLES=${CALIB_SAMPLES:-16} CALIB_SEQ=${CALIB_SEQ:-1024} EVAL_SAMPLES=${EVAL_SAMPLES:-4}
EVAL_SEQ=${EVAL_SEQ:-256} RANKS=${RANKS:-2} N_LAYERS=${N_LAYERS:-2}
CALIB_BACKEND=${CALIB_BACKEND:-cuda} RECIPE=${RECIPE:-full}
# eval's CPU forward uses every hardware thread per rank: share the cores between the ranks.
export QF_THREADS=${QF_THREADS:-$(( $(nproc) / RANKS > 0 ? $(nproc) / RANKS : 1 ))}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo/bench/make_flash_source.sh" "$qf" "$work" "$N_LAYERS" 256
src="$work/src"
for m in $methods; do
  rm -rf "$work/q-$m" "$work/w-$m"
  a=$(date +%s)
  mpirun --bind-to none -np 1 "$qf" quantize --in "$src" --out "$work/q-$m" --work "$work/w-$m" \
    --backend "$CALIB_BACKEND" --recipe "$RECIPE" --act-scale "$m" --samples "$CALIB_SAMPLES" \
    --seq-len "$CALIB_SEQ" --log-level warn >"$work/q-$m.log" 2>&1 \
    || { tail -30 "$work/q-$m.log"; exit 1; }
  b=$(date +%s)
  mpirun --bind-to none -np "$RANKS" "$qf" eval --source "$src" --out "$work/q-$m" --samples "$EVAL_SAMPLES" \
    --seq-len "$EVAL_SEQ" --report "$work/eval-$m.json" >"$work/eval-$m.log" 2>&1 \
    || { tail -30 "$work/eval-$m.log"; exit 1; }
  c=$(date +%s)
  rm -rf "$work/q-$m" "$work/w-$m"
  # One row per method as soon as it is done (a long run that is cut off keeps what it had).
  python3 - "$work/eval-$m.json" "$m" "$((b - a))" "$((c - b))" <<'PY'
import json, sys
path, m, tq, te = sys.argv[1:]
r = json.load(open(path))
r = r.get("eval", r)  # eval's section of the quantization report
worst = r.get("worst_modules") or []
print(f"{m:12s} KL {r['kl_mean']:.4f}  top-1 {r['top1_agreement']:.4f}  ppl quantized "
      f"{r['perplexity']['quantized']:.2f} (source {r['perplexity']['source']:.2f})  worst "
      f"{worst[0] if worst else '?'}  [quantize {tq} s, eval {te} s]")
PY
done
