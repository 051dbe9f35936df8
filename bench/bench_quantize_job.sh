#!/usr/bin/env bash
# Benchmark 1 of issue 7: end-to-end `quantize` (CUDA backend, 1 rank) on a synthetic checkpoint
# with real V4-Flash layer dimensions (first N layers, all 256 experts, no MTP layer so that it
# fits the GPU machine's disk), against the I/O floor measured in the same run: reading the
# source once (`cat` to /dev/null) + writing the output once (`dd` of the output's size, fsync).
# Usage: bench/bench_quantize_job.sh QUANTFORGE_BIN WORK_DIR [N_LAYERS=2] [SAMPLES=16]
#        [SEQ_LEN=4096] [CALIB_BATCH=4] [N_EXPERTS=256]
# Leaves WORK_DIR/src (the synthetic source) for the next benchmark; removes the outputs (env
# KEEP_OUT=DIR: the output checkpoint is moved there instead, to compare builds byte for byte;
# KEEP_WORK=DIR: the work store likewise, to rebuild the output with --export-only).
set -euo pipefail
qf=$1 work=$2 n_layers=${3:-2} samples=${4:-16} seq_len=${5:-4096} batch=${6:-4} n_experts=${7:-256}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo/bench/make_flash_source.sh" "$qf" "$work" "$n_layers" "$n_experts"
src="$work/src"
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }
gb() { python3 -c "print(f'{$1 / 1e9:.2f}')"; }
src_bytes=$(du -sb "$src" | cut -f1)
drop() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null && echo cold || echo warm; }
rm -rf "$work/out" "$work/work"
cache=$(drop); a=$(date +%s.%N); cat "$src"/*.safetensors >/dev/null; b=$(date +%s.%N)
read_s=$(secs $a $b)
cache_q=$(drop)
a=$(date +%s.%N)
mpirun --bind-to none -np 1 "$qf" quantize --in "$src" --out "$work/out" --work "$work/work" --backend cuda \
  --samples "$samples" --seq-len "$seq_len" --calib-batch "$batch" >"$work/quantize.log" 2>&1 \
  || { tail -40 "$work/quantize.log"; exit 1; }
b=$(date +%s.%N)
grep -E "calib layer|rank 0: weights|export \(rank 0\)|work store:" "$work/quantize.log" || true
sed -n '/summary (/,$p' "$work/quantize.log"
wall=$(secs $a $b)
out_bytes=$(du -sb "$work/out" | cut -f1)
work_bytes=$(du -sb "$work/work" | cut -f1)
a=$(date +%s.%N)
dd if=/dev/zero of="$work/zeros" bs=64M count=$(( (out_bytes + (64<<20) - 1) / (64<<20) )) conv=fsync status=none
b=$(date +%s.%N)
write_s=$(secs $a $b); rm -f "$work/zeros"
floor=$(python3 -c "print(f'{$read_s + $write_s:.2f}')")
echo
printf '%-44s %9s %9s\n' "step" "GB" "s"
printf '%-44s %9s %9s\n' "read source once: cat > /dev/null ($cache)" "$(gb $src_bytes)" "$read_s"
printf '%-44s %9s %9s\n' "write output once: dd + fsync" "$(gb $out_bytes)" "$write_s"
printf '%-44s %9s %9s\n' "I/O floor (read + write)" "" "$floor"
printf '%-44s %9s %9s\n' "quantize --backend cuda np1 ($cache_q)" "" "$wall"
printf '%-44s %9s %9s\n' "  (work store written, HDF5)" "$(gb $work_bytes)" ""
echo "quantize / floor = $(python3 -c "print(f'{$wall / $floor:.2f}')")x  ($n_layers V4-Flash layers, $n_experts experts, calibration $samples x $seq_len tokens)"
if [ -n "${KEEP_OUT:-}" ]; then rm -rf "$KEEP_OUT"; mv "$work/out" "$KEEP_OUT"; fi
if [ -n "${KEEP_WORK:-}" ]; then rm -rf "$KEEP_WORK"; mv "$work/work" "$KEEP_WORK"; fi
rm -rf "$work/out" "$work/work"
