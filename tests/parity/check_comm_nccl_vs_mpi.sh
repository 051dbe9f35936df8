#!/usr/bin/env bash
# GPU machine: `quantize --backend cuda --comm nccl` (layer weights broadcast GPU to GPU into the
# layer_arena layout, amax all-reduced on the GPU) against `--comm mpi` (host buffers) on
# make-tiny models: the exports must be byte-identical, both recipes (full: FP8 attention
# targets go through the layer-bytes hook too). One rank per GPU: NCCL refuses two ranks on
# one GPU, so this runs with as many ranks as GPUs (1 on a one-GPU machine: world size 1 goes
# through the whole NCCL path, each rank owning everything). Also: auto picks nccl here, and a
# store filled over MPI is accepted by a --resume over NCCL (--comm is not in the provenance).
# Usage: check_comm_nccl_vs_mpi.sh QUANTFORGE WORK_DIR
set -euo pipefail
qf=${1:?quantforge binary}
work=${2:?work directory}
rm -rf "$work"; mkdir -p "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }
np=$(nvidia-smi -L | wc -l)
[ "$np" -ge 1 ] || fail "no GPU"
q() { mpirun -np "$np" "$qf" quantize --log-level info --backend cuda --samples 8 --seq-len 96 "$@"; }

for preset in tiny small; do
  "$qf" make-tiny --preset "$preset" --out "$work/$preset" --seed 7 --shards 3 --log-level warn
  for recipe in experts full; do
    tag=$preset-$recipe
    for comm in mpi nccl; do
      q --in "$work/$preset" --out "$work/out-$tag-$comm" --work "$work/w-$tag-$comm" \
        --recipe "$recipe" --comm "$comm" >"$work/$tag-$comm.log" 2>&1 \
        || { cat "$work/$tag-$comm.log" >&2; fail "$tag --comm $comm"; }
    done
    grep -q "over NCCL" "$work/$tag-nccl.log" || fail "$tag: --comm nccl did not take the NCCL path"
    if grep -q "over NCCL" "$work/$tag-mpi.log"; then fail "$tag: --comm mpi used NCCL"; fi
    diff -r "$work/out-$tag-mpi" "$work/out-$tag-nccl" >/dev/null \
      || fail "$tag: exports differ between --comm mpi and --comm nccl"
    echo "ok: $tag ($np rank(s)): --comm nccl export byte-identical to --comm mpi"
  done
done

# auto = nccl with one GPU per rank.
q --in "$work/tiny" --out "$work/out-auto" --work "$work/w-auto" >"$work/auto.log" 2>&1 \
  || { cat "$work/auto.log" >&2; fail "--comm auto"; }
grep -q "over NCCL" "$work/auto.log" || fail "--comm auto did not pick NCCL with one GPU per rank"
diff -r "$work/out-tiny-experts-mpi" "$work/out-auto" >/dev/null || fail "--comm auto export differs"
# The communicator is not part of the run's identity: a finished store filled over MPI is
# accepted by a resume over NCCL and exports the same bytes.
q --in "$work/tiny" --out "$work/out-resume" --work "$work/w-tiny-experts-mpi" --resume \
  --comm nccl >"$work/resume.log" 2>&1 || { cat "$work/resume.log" >&2; fail "resume with nccl"; }
diff -r "$work/out-tiny-experts-mpi" "$work/out-resume" >/dev/null || fail "resume over NCCL differs"
echo "ok: auto picks nccl; an MPI run resumes over NCCL with the same export"
