#!/usr/bin/env bash
# Runs quantforge under Open MPI's mpirun on this node, one rank per GPU.
# Owns: the rank count, the mpirun flags (root, oversubscription, binding, environment).
# Does not own: the GPU choice of each rank (quantforge binds rank to GPU local_rank % count).
set -euo pipefail

usage() {
  cat <<'EOF'
usage: launch/mpirun_node.sh [--ranks N] [--dry-run] [--] COMMAND [quantforge options...]

Runs `quantforge COMMAND ...` under mpirun on this node with one MPI rank per GPU.

  --ranks N   number of ranks (default: the GPU count, from CUDA_VISIBLE_DEVICES when set,
              else `nvidia-smi -L`); required on a machine without GPUs (CPU backend)
  --dry-run   print the mpirun command line and exit
  -h, --help  this text

Each rank selects GPU (local rank % visible GPUs) itself, so CUDA_VISIBLE_DEVICES is left as
it is (restrict it to run on a subset of the GPUs). Environment:
  QF_BIN             quantforge binary (default: build/quantforge of this repository)
  NCCL_NVLS_ENABLE   defaults to 0 here (NVLink multicast off); set it to override
  NCCL_*             every NCCL variable set is passed to the ranks (-x)
  QF_MPIRUN_ARGS     extra mpirun arguments, word-split (e.g. "--mca btl ^openib")
Flags added only when needed: --allow-run-as-root (as root), --oversubscribe (more ranks than
CPU cores). Ranks are not pinned (--bind-to none): each rank runs I/O and conversion threads
that a one-core binding would serialize.

examples:
  launch/mpirun_node.sh quantize --in /nvme/V4-Flash --out /nvme/V4-Flash-NVFP4 --work /nvme/w
  launch/mpirun_node.sh --ranks 2 quantize --backend cpu --in SRC --out DST --work WORK
EOF
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ranks=""
dry_run=0
while [ $# -gt 0 ]; do
  case "$1" in
    --ranks) [ $# -ge 2 ] || { echo "mpirun_node.sh: --ranks needs a value" >&2; exit 2; }
             ranks=$2; shift ;;
    --ranks=*) ranks=${1#--ranks=} ;;
    --dry-run) dry_run=1 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    -*) echo "mpirun_node.sh: unknown option $1 (quantforge options go after the command)" >&2
        exit 2 ;;
    *) break ;;
  esac
  shift
done
[ $# -gt 0 ] || { usage >&2; exit 2; }

# GPUs this process may use: CUDA_VISIBLE_DEVICES wins (empty = none), then nvidia-smi.
count_gpus() {
  if [ -n "${CUDA_VISIBLE_DEVICES+set}" ]; then
    local list=${CUDA_VISIBLE_DEVICES// /}
    case "$list" in ""|-1|NoDevFiles) echo 0; return ;; esac
    local ids
    IFS=, read -r -a ids <<<"$list"
    echo "${#ids[@]}"
  elif command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true
  else
    echo 0
  fi
}
gpus=$(count_gpus)
if [ -z "$ranks" ]; then
  if [ "$gpus" -lt 1 ]; then
    echo "mpirun_node.sh: no GPU found (nvidia-smi / CUDA_VISIBLE_DEVICES); give --ranks N" \
         "(and --backend cpu to quantforge)" >&2
    exit 2
  fi
  ranks=$gpus
fi
[[ "$ranks" =~ ^[1-9][0-9]*$ ]] || { echo "mpirun_node.sh: --ranks must be a positive integer" >&2; exit 2; }
if [ "$gpus" -gt 0 ] && [ "$ranks" -gt "$gpus" ]; then
  echo "mpirun_node.sh: warning: $ranks ranks share $gpus GPU(s) (rank -> GPU local_rank % $gpus)" >&2
fi

qf=${QF_BIN:-$repo/build/quantforge}
[ -x "$qf" ] || { echo "mpirun_node.sh: $qf is not an executable (build it: bash launch/setup.sh, or set QF_BIN)" >&2; exit 2; }

export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}

cmd=(mpirun -np "$ranks")
if mpirun --version 2>/dev/null | grep -q "Open MPI"; then
  [ "$(id -u)" = 0 ] && cmd+=(--allow-run-as-root)
  # Open MPI counts one slot per physical core.
  cores=$(lscpu -p=core,socket 2>/dev/null | grep -v '^#' | sort -u | wc -l)
  [ "$cores" -gt 0 ] && [ "$cores" -le "$(nproc)" ] || cores=$(nproc)
  [ "$ranks" -gt "$cores" ] && cmd+=(--oversubscribe)
  cmd+=(--bind-to none)
  while IFS= read -r name; do cmd+=(-x "$name"); done < <(compgen -e | grep '^NCCL_' || true)
else
  echo "mpirun_node.sh: warning: not Open MPI; passing only -np (environment is inherited)" >&2
fi
if [ -n "${QF_MPIRUN_ARGS:-}" ]; then
  read -r -a extra <<<"$QF_MPIRUN_ARGS"
  cmd+=("${extra[@]}")
fi
cmd+=("$qf" "$@")

echo "mpirun_node.sh: $ranks rank(s), $gpus GPU(s) visible, NCCL_NVLS_ENABLE=$NCCL_NVLS_ENABLE" >&2
if [ "$dry_run" = 1 ]; then
  printf '%q ' "${cmd[@]}"
  echo
  exit 0
fi
exec "${cmd[@]}"
