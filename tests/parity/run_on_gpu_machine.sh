#!/usr/bin/env bash
# Everything that needs the GPU machine (CUDA kernels vs CPU references, torch/transformers
# parity), run from the repo root there with the binaries of launch/device_bundle.sh in
# .device/bin. Logs go to $OUT (the device tool brings them back). Each step is independent;
# the script reports every step's status and exits non-zero if any failed.
# QF_GPU_SECTIONS picks what runs (default: all but the long jobs):
#   tests (kernels vs references, unit tests), torch (codecs, make-tiny, dequant, forward vs
#   transformers), cuda (quantize --backend cuda vs cpu; --comm nccl vs mpi), export (quantize +
#   vLLM-style loader), kbench (kernel benchmarks), job (bench_quantize_job.sh), hf (bench_calib_vs_transformers.sh),
#   multi (issue 10 on a multi-GPU machine: bench_multi_rank.sh with 1, 2, 4, 8 ranks up to the
#   GPU count; QF_MULTI_FLASH=0 skips its real-size scaling run), modelopt (issue 23: exports
#   against NVIDIA ModelOpt's own DS-V4 exporter, assembled into .device/modelopt beforehand by
#   tests/parity/modelopt/assemble.sh).
set -uo pipefail
bin=$PWD/.device/bin
out=${OUT:-/tmp/qf-gpu-out}
mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1
# Open MPI binds each rank to one core by default (<= 2 ranks): every mpirun below runs unbound.
export OMPI_MCA_hwloc_base_binding_policy=none
export QF_BIN=$bin/quantforge QF_SOURCE_DIR=$PWD
work=/tmp/qf-gpu
rm -rf "$work"; mkdir -p "$work"
status=0
summary="$out/summary.txt"
: >"$summary"
sections=${QF_GPU_SECTIONS:-tests torch cuda export kbench modelopt}
want() { case " $sections " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
step() {  # name, command...
  local name=$1; shift
  local start=$SECONDS
  if "$@" >"$out/$name.log" 2>&1; then r=PASS; else r="FAIL($?)"; status=1; fi
  printf '%-28s %-9s %4ds\n' "$name" "$r" $((SECONDS - start)) | tee -a "$summary"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >>"$summary"

# 1. GPU kernels vs CPU references (Catch2, [gpu]) and the unit tests on Catch2 v2 binaries.
want tests && for t in "$bin"/test_*; do
  case $(basename "$t") in test_communicator*|test_rank_store_crash) continue ;; esac
  step "$(basename "$t")" "$t"
done
want tests && [ -x "$bin/test_nccl_communicator" ] && step nccl_communicator_np1 mpirun -np 1 "$bin/test_nccl_communicator"

if want torch || want export; then
# 2. Codecs and NVFP4 vs torch.
[ -x "$bin/codec_tables" ] && step codecs_vs_torch python3 tests/parity/check_codecs.py "$bin/codec_tables"
if [ -x "$bin/nvfp4_golden" ]; then
  step nvfp4_vs_torch bash -c "'$bin/nvfp4_golden' '$work/nvfp4' && python3 tests/parity/check_nvfp4_torch.py '$work/nvfp4'"
fi

# 3. make-tiny read back by safetensors/torch + tensor list vs transformers save_pretrained.
step make_tiny "$bin/quantforge" make-tiny --preset tiny --out "$work/tiny" --shards 4 --seed 5
step make_tiny_bf16 "$bin/quantforge" make-tiny --preset tiny --format bf16 --out "$work/tiny_bf16" --shards 2 --seed 5
step tiny_vs_transformers python3 tests/parity/check_tiny_checkpoint.py "$work/tiny" --bf16 "$work/tiny_bf16"

# 4. dequant: CUDA backend, 1 rank; CPU backend 2 ranks; bytes vs torch reference and vs each other.
step dequant_cuda "$bin/quantforge" dequant --in "$work/tiny" --out "$work/bf16-cuda" --backend cuda
step dequant_cpu_np2 mpirun -np 2 "$bin/quantforge" dequant --in "$work/tiny" --out "$work/bf16-cpu" --backend cpu
step dequant_cuda_eq_cpu diff -r "$work/bf16-cuda" "$work/bf16-cpu"
step dequant_vs_torch python3 tests/parity/check_dequant.py "$work/tiny" "$work/bf16-cuda"

# 5. The reference forward vs transformers' DeepseekV4 (per-linear input amax, hidden states).
[ -x "$bin/forward_dump" ] && step forward_vs_transformers \
  python3 tests/parity/check_forward_vs_transformers.py --forward-dump "$bin/forward_dump" --device cuda
fi

# 6. quantize (calibrated, --backend auto = cuda here) -> export loaded the way vLLM loads it,
#    logits vs source; torch's NVFP4 decode vs ours bit for bit. Both recipes.
want export && for recipe in experts full; do
  step "quantize_$recipe" mpirun -np 2 "$bin/quantforge" quantize --in "$work/tiny" \
    --out "$work/q-$recipe" --work "$work/w-$recipe" --recipe "$recipe" --samples 8 --seq-len 128
  step "decode_dump_$recipe" "$bin/export_decode_dump" "$work/q-$recipe" "$work/dump-$recipe"
  step "loader_logits_$recipe" python3 tests/parity/check_export_loader.py --source "$work/tiny" \
    --export "$work/q-$recipe" --decoded-dump "$work/dump-$recipe" --device cuda \
    --json "$out/loader_$recipe.json"
done
want export && step validate_experts "$bin/quantforge" validate --source "$work/tiny" --out "$work/q-experts"

# 7. The CUDA backend against the CPU reference on make-tiny models: calibration amax within 1%,
#    every exported tensor but input_scale byte-identical (1 rank and 2 ranks sharing the GPU).
want cuda && step cuda_vs_cpu python3 tests/parity/check_cuda_vs_cpu.py --bin "$bin/quantforge" \
  --work "$work/cuda-vs-cpu"
#    --comm nccl (weights broadcast GPU to GPU, amax reduced on the GPU) against --comm mpi:
#    byte-identical exports, one rank per GPU (world size 1 on a one-GPU machine).
want cuda && step comm_nccl_vs_mpi bash tests/parity/check_comm_nccl_vs_mpi.sh "$bin/quantforge" \
  "$work/comm-nccl-vs-mpi"
#    Activation histograms (--act-scale percentile/mse) of the CUDA engine vs the CPU reference,
#    and the act-scale end-to-end test, which runs its cuda + percentile case where a GPU is.
want cuda && step hist_cuda_vs_cpu bash tests/parity/check_hist_cuda_vs_cpu.sh "$bin/quantforge" \
  "$work/hist-cuda-vs-cpu"
want cuda && step e2e_act_scale env QF_BIN="$bin/quantforge" bash tests/e2e/act_scale.sh

# 8. ModelOpt's own DS-V4 exporter (examples/deepseek/deepseek_v4/quantize_to_nvfp4.py at the
#    commit pinned in tests/parity/modelopt/assemble.sh) as the oracle: --recipe experts vs its
#    --cast_mxfp4_to_nvfp4, --expert-weights requantize vs its default path, --recipe full vs
#    NVFP4QTensor.quantize; every tensor, the index and the configs; deliberate differences
#    whitelisted (docs/EXPORT_FORMAT.md "Conformance with ModelOpt"). Findings in modelopt.json.
want modelopt && step modelopt_parity python3 tests/parity/check_vs_modelopt.py \
  --bin "$bin/quantforge" --modelopt "$PWD/.device/modelopt" --work "$work/modelopt" \
  --json "$out/modelopt.json"

# 9. Benchmarks (numbers only).
if want kbench; then
  for b in bench_dequant bench_nvfp4_quantize bench_attention bench_expert_gemm; do
    [ -x "$bin/$b" ] && step "$b" "$bin/$b"
  done
fi
want dequant_job && step bench_dequant_job bash bench/bench_dequant_job.sh "$bin/quantforge" /tmp/qf-bench 1 1 64
want job && step bench_quantize_job bash bench/bench_quantize_job.sh "$bin/quantforge" /tmp/qf-bench \
  "${QF_JOB_LAYERS:-2}"
want hf && step bench_calib_vs_transformers bash bench/bench_calib_vs_transformers.sh \
  "$bin/quantforge" /tmp/qf-bench

# 10. Several GPUs of one node (issue 10): the NCCL communicator test with one rank per GPU, then
#    quantize with N = 1, 2, 4, 8 ranks (up to the GPU count, one GPU each, --comm auto = nccl):
#    exports and input amax identical to N=1, time per phase, communication share; kill -9 of
#    one rank + --resume. First on make-tiny small (the checks, ~1 min), then on
#    make_flash_source.sh's real-size layers (scaling; no kill test). Tables in multi_*.log.
if want multi; then
  n_gpu=$(nvidia-smi -L | grep -c '^GPU ')
  multi_ranks=""
  for k in 1 2 4 8 16; do [ "$k" -le "$n_gpu" ] && multi_ranks+="$k "; done
  case " $multi_ranks " in *" $n_gpu "*) ;; *) multi_ranks+="$n_gpu" ;; esac
  echo "multi: $n_gpu GPU(s), ranks: $multi_ranks" | tee -a "$summary"
  [ "$n_gpu" -ge 2 ] && [ -x "$bin/test_nccl_communicator" ] && \
    step "nccl_communicator_np$n_gpu" mpirun -np "$n_gpu" "$bin/test_nccl_communicator"
  # SAMPLES a multiple of CALIB_BATCH x every N: each rank's batches = N=1's (same GEMM shapes).
  step multi_small env SAMPLES=16 SEQ_LEN=128 CALIB_BATCH=1 bash bench/bench_multi_rank.sh \
    "$bin/quantforge" "$work/multi-small" "$multi_ranks" cuda auto
  cp "$work/multi-small/multi_rank.tsv" "$out/multi_small.tsv" 2>/dev/null
  rm -rf "$work/multi-small"
  if [ "${QF_MULTI_FLASH:-1}" = 1 ]; then
    step multi_flash_source bash bench/make_flash_source.sh "$bin/quantforge" /tmp/qf-bench \
      "${QF_JOB_LAYERS:-2}"
    step multi_flash env SOURCE=/tmp/qf-bench/src SAMPLES=16 SEQ_LEN=4096 CALIB_BATCH=2 KILL=0 \
      bash bench/bench_multi_rank.sh "$bin/quantforge" "$work/multi-flash" "$multi_ranks" cuda auto
    cp "$work/multi-flash/multi_rank.tsv" "$out/multi_flash.tsv" 2>/dev/null
    rm -rf "$work/multi-flash"
  fi
fi

echo "overall: $([ $status = 0 ] && echo PASS || echo FAIL)" | tee -a "$summary"
exit $status
