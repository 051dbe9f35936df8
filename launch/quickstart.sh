#!/usr/bin/env bash
# The main job on the embedded default, as README.md shows it: set up (packages + build), make a
# synthetic native DeepSeek V4 checkpoint (make-tiny), inspect it, plan it, dequantize it to
# BF16, quantize it to NVFP4 (calibration + export) with 2 MPI ranks, and validate the export. Work goes to ${QF_WORK:-out/quickstart} (replaced on every run).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo/launch/setup.sh"
qf="$repo/build/quantforge"
work=${QF_WORK:-$repo/out/quickstart}
ranks=${QF_RANKS:-2}
rm -rf "$work"
mkdir -p "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun_cmd=(mpirun --oversubscribe -np "$ranks")

step() { printf '\n== %s\n' "$*" >&2; }
step "make-tiny: synthetic DeepSeek V4 checkpoint (native FP8 + FP4 experts)"
"$qf" make-tiny --preset tiny --out "$work/tiny-native" --seed 1 --shards 4
step "inspect"
"$qf" inspect "$work/tiny-native" --totals-only
step "plan: $ranks ranks"
"$qf" plan --in "$work/tiny-native" --ranks "$ranks"
step "dequant: native -> BF16 on $ranks ranks"
"${mpirun_cmd[@]}" "$qf" dequant --in "$work/tiny-native" --out "$work/tiny-bf16"
"$qf" inspect "$work/tiny-bf16" --totals-only
step "quantize: calibrate (synthetic tokens) + NVFP4 experts + export on $ranks ranks"
"${mpirun_cmd[@]}" "$qf" quantize --in "$work/tiny-native" --out "$work/tiny-nvfp4" \
  --work "$work/qf-work" --samples 8 --seq-len 128
"$qf" inspect "$work/tiny-nvfp4" --totals-only
step "validate: the export against its source"
"$qf" validate --source "$work/tiny-native" --out "$work/tiny-nvfp4"
step "done: outputs under $work"
