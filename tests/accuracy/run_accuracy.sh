#!/usr/bin/env bash
# Issue 20: accuracy of quantforge's NVFP4 exports on a trained DeepSeek V4 fixture, on the GPU
# machine (one H100/H200, torch + transformers + tokenizers), from the repo root:
#   bash tests/accuracy/run_accuracy.sh BIN_DIR OUT_DIR [--keep-fixture | --keep-fixture-tar]
#        [--budget 520] [--fixture-dir DIR] [--no-smoke] [--calib "32 128 512"] ...
# BIN_DIR holds quantforge (CUDA build). Smoke fixture, real fixture (trained within the
# budget), calib-data, quantize x {experts, full} x act-scale/sample counts, quantforge eval
# (W4A4, W4A16 once per recipe) and torch_eval_export.py; OUT_DIR gets accuracy.json,
# accuracy.txt (the table), run_accuracy.log (every step's output tail) and fixture_report.json.
# Work files in /tmp/qf-accuracy (--work). The whole run stays inside --budget seconds.
set -uo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,11p' "$0"
  exit 2
fi
bin=$(cd "$1" && pwd) || exit 2
out=$2
shift 2
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2
if [ ! -x "$bin/quantforge" ]; then
  echo "run_accuracy.sh: $bin/quantforge is not an executable" >&2
  exit 2
fi
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_hwloc_base_binding_policy=none NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1
export TOKENIZERS_PARALLELISM=true CUBLAS_WORKSPACE_CONFIG=:4096:8
exec python3 tests/accuracy/accuracy_runner.py --bin "$bin" --out "$out" "$@"
