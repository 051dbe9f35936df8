#!/usr/bin/env bash
# Issue 10: `quantize` with N = 1, 2, 4, 8 ranks on one node (one GPU per rank through
# launch/mpirun_node.sh) on the same synthetic checkpoint. For each N: wall time, the summary's
# time per phase, bytes read and written, source GB per second of wall time, and rank 0's
# communication lines (count / bytes / seconds per collective kind and the share of wall time;
# NCCL's is the comm-stream time, see Communicator::stats). Checks: the export is byte-identical
# to the first N's (N=1) (diff -r; the quantization report beside OUT is not compared), and every
# rank's calibration records hold the first N's input amax bit for bit
# (bench/compare_calib_records.py). Then the kill test with the largest N: once rank 0 has
# committed a calibration layer, kill -9 the highest rank; mpirun must exit non-zero within
# KILL_TIMEOUT s and leave no rank process and no OUT; `quantize --resume` must then finish with
# the first N's bytes and amax. Prints a table, writes WORK_DIR/multi_rank.tsv; exit status 1 if
# any check failed.
#
# Usage: bench/bench_multi_rank.sh QUANTFORGE_BIN WORK_DIR [RANKS="1 2 4 8"] [BACKEND=cuda]
#                                  [COMM=auto]
# Env:
#   SOURCE=DIR        checkpoint to quantize (e.g. WORK/src of bench/make_flash_source.sh);
#                     default: make-tiny --preset $PRESET --seed 11 --shards $SHARDS into
#                     WORK_DIR/src (reused when present)
#   PRESET=small SHARDS=8
#   SAMPLES=16 SEQ_LEN=128 CALIB_BATCH=1   calibration set. For the cuda backend's identity
#                     check SAMPLES must be a multiple of CALIB_BATCH x every N: then each rank's
#                     batches hold the same sequences as N=1's and every GEMM has the same shape
#                     (cuBLAS picks kernels by shape; the MoE GEMMs' row counts depend on which
#                     tokens share a batch). The cpu backend does not depend on the batch.
#   KILL=1            0 skips the kill test;  KILL_TIMEOUT=120 (s for mpirun to exit after it)
#   QF_QUANTIZE_ARGS  extra quantize options (word-split)
#   KEEP=0            1 keeps every run's OUT and WORK (default: only the reference's)
set -uo pipefail
qf=${1:?usage: bench_multi_rank.sh QUANTFORGE_BIN WORK_DIR [RANKS] [BACKEND] [COMM]}
work=${2:?work directory}
ranks_list=${3:-1 2 4 8}
backend=${4:-cuda}
comm=${5:-auto}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
qf=$(cd "$(dirname "$qf")" && pwd)/$(basename "$qf")
export QF_BIN=$qf
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
samples=${SAMPLES:-16} seq_len=${SEQ_LEN:-128} batch=${CALIB_BATCH:-1}
kill_timeout=${KILL_TIMEOUT:-120}
read -r -a extra_args <<<"${QF_QUANTIZE_ARGS:-}"
read -r -a ranks <<<"$ranks_list"
[ "${#ranks[@]}" -ge 1 ] || { echo "no rank counts given" >&2; exit 2; }
mkdir -p "$work"
failures=()
fail() { echo "FAIL: $*" >&2; failures+=("$*"); }
now() { echo "${EPOCHREALTIME/,/.}"; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }

# An interpreter with h5py (the GPU image's python3; Debian's python3-h5py is under /usr/bin).
py_h5=""
for p in python3 /usr/bin/python3; do
  if "$p" -c "import h5py, numpy" 2>/dev/null; then py_h5=$p; break; fi
done
[ -n "$py_h5" ] || echo "warning: no python with h5py: the amax check is skipped (FAIL)" >&2

gpus=0
command -v nvidia-smi >/dev/null 2>&1 && gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
echo "machine: $(nproc) cores, $gpus GPU(s)$([ "$gpus" -gt 0 ] && nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | sed 's/^/ x /')"
for n in "${ranks[@]}"; do
  if [ "$backend" = cuda ] && [ $((samples % (n * batch))) != 0 ]; then
    echo "warning: SAMPLES=$samples is not a multiple of $n ranks x CALIB_BATCH=$batch: cuda" \
         "batches differ from N=1's, the exports may differ in the last bits" >&2
  fi
  if [ "$backend" = cuda ] && [ "$n" -gt "$gpus" ]; then
    echo "warning: $n ranks share $gpus GPU(s): --comm auto falls back to mpi" >&2
  fi
done

# ---- the source --------------------------------------------------------------------------
src=${SOURCE:-$work/src}
if [ ! -f "$src/config.json" ]; then
  [ -n "${SOURCE:-}" ] && { echo "SOURCE=$SOURCE holds no checkpoint" >&2; exit 2; }
  "$qf" make-tiny --preset "${PRESET:-small}" --out "$src" --seed 11 --shards "${SHARDS:-8}" \
    --log-level warn || { echo "make-tiny failed" >&2; exit 1; }
fi
src_bytes=$(du -sb "$src" | cut -f1)
n_layers=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['num_hidden_layers'])" "$src/config.json")
echo "source: $src, $n_layers layers, $(python3 -c "print(f'{$src_bytes / 1e9:.3f}')") GB;" \
     "backend $backend, comm $comm, calibration $samples x $seq_len tokens, batch $batch"

# quantize under the node launcher (one rank per GPU, root and oversubscription flags as
# needed); extra options after $3. Output on $log.
quantize() {  # n out work log [options...]
  local n=$1 out=$2 w=$3 log=$4; shift 4
  bash "$repo/launch/mpirun_node.sh" --ranks "$n" quantize --log-level info --backend "$backend" \
    --comm "$comm" --in "$src" --out "$out" --work "$w" --samples "$samples" --seq-len "$seq_len" \
    --calib-batch "$batch" "${extra_args[@]}" "$@" >"$log" 2>&1
}

# The summary of a quantize log as "calib quant export total read_bytes written_bytes
# mpi_share nccl_share" (seconds, bytes summed over ranks, % of wall time; - when absent).
parse_summary() {  # log
  python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1], errors="replace").read()
s = text[text.rfind("summary ("):] if "summary (" in text else ""
def seconds(t):  # ProgressMeter::format_seconds: 12.4s | 3m05s | 1h02m
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:([\d.]+)s)?", t)
    if not m or not t: return float("nan")
    h, mi, se = m.groups()
    return int(h or 0) * 3600 + int(mi or 0) * 60 + float(se or 0)
units = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "PB": 1e15}
phase = {}
for name in ("calibration", "quantization", "export", "total"):
    m = re.search(rf"^\s+{name}\s+(\S+)\s*$", s, re.M)
    phase[name] = seconds(m.group(1)) if m else float("nan")
read = written = 0.0
for m in re.finditer(r"^\s+\d+\s+([\d.]+) (\w+)\s+([\d.]+) (\w+)\s", s, re.M):
    read += float(m.group(1)) * units[m.group(2)]
    written += float(m.group(3)) * units[m.group(4)]
share = {}
for m in re.finditer(r"communication \(rank 0, (\w+)\): .*share of wall time ([\d.]+)%", s):
    share[m.group(1)] = m.group(2)
print(" ".join(f"{phase[k]:.2f}" for k in ("calibration", "quantization", "export", "total")),
      f"{read:.0f} {written:.0f}", share.get("mpi", "-"), share.get("nccl", "-"))
PY
}

# ---- one run per N --------------------------------------------------------------------------
ref=""  # the first N's directory: the reference output and records
tsv="$work/multi_rank.tsv"
printf 'n\twall_s\tcalib_s\tquant_s\texport_s\ttotal_s\tread_bytes\twritten_bytes\tsrc_gb_per_s\tcomm_mpi_pct\tcomm_nccl_pct\texport_identical\tamax_identical\n' >"$tsv"
rows=()
comm_lines=()
for n in "${ranks[@]}"; do
  d="$work/n$n"
  rm -rf "$d"; mkdir -p "$d"
  echo "--- N=$n: quantize ..."
  a=$(now)
  quantize "$n" "$d/out" "$d/work" "$d/quantize.log"; rc=$?
  b=$(now)
  wall=$(secs "$a" "$b")
  if [ "$rc" != 0 ]; then
    tail -30 "$d/quantize.log" >&2
    fail "N=$n: quantize exited $rc (log $d/quantize.log)"
    continue
  fi
  read -r calib quant exp_s total rbytes wbytes share_mpi share_nccl < <(parse_summary "$d/quantize.log")
  while IFS= read -r l; do comm_lines+=("N=$n ${l#"${l%%[! ]*}"}"); done \
    < <(grep -E '^\s+communication \(rank 0' "$d/quantize.log")
  same_out=yes same_amax=yes
  if [ -z "$ref" ]; then
    ref=$d; same_out=ref; same_amax=ref
  else
    if ! diff -r "$ref/out" "$d/out" >"$d/export.diff" 2>&1; then
      same_out=NO; fail "N=$n: export differs from N=${ref##*/n}'s ($(head -2 "$d/export.diff" | tr '\n' '|'))"
    fi
    if [ -z "$py_h5" ] || ! "$py_h5" "$repo/bench/compare_calib_records.py" "$ref/work" "$d/work" >"$d/amax.txt" 2>&1; then
      same_amax=NO; fail "N=$n: calibration amax differ from N=${ref##*/n}'s ($(head -3 "$d/amax.txt" 2>/dev/null | tr '\n' '|'))"
    fi
  fi
  # every rank's records agree with each other too (the reference run included)
  if [ "$same_amax" = ref ] && [ -n "$py_h5" ]; then
    "$py_h5" "$repo/bench/compare_calib_records.py" "$d/work" "$d/work" >"$d/amax.txt" 2>&1 \
      || { same_amax=NO; fail "N=$n: ranks' calibration records disagree ($(head -3 "$d/amax.txt" | tr '\n' '|'))"; }
  fi
  gbps=$(python3 -c "print(f'{$src_bytes / 1e9 / $wall:.3f}')")
  rows+=("$n $wall $calib $quant $exp_s $total $rbytes $wbytes $gbps $share_mpi $share_nccl $same_out $same_amax")
  printf '%s\n' "$n $wall $calib $quant $exp_s $total $rbytes $wbytes $gbps $share_mpi $share_nccl $same_out $same_amax" | tr ' ' '\t' >>"$tsv"
  if [ "${KEEP:-0}" != 1 ] && [ "$d" != "$ref" ]; then rm -rf "$d/out" "$d/work"; fi
done

# ---- the table ------------------------------------------------------------------------------
echo
echo "quantize on $(nproc) cores, $gpus GPU(s), backend $backend, comm $comm; source $(python3 -c "print(f'{$src_bytes / 1e9:.3f}')") GB ($n_layers layers), $samples x $seq_len calibration tokens"
printf '%4s %8s %8s %8s %8s %9s %9s %8s %8s %7s %7s %7s %6s\n' N "wall s" "calib s" "quant s" \
  "export s" "read GB" "write GB" "src GB/s" speedup "mpi %" "nccl %" export amax
base=""
for r in "${rows[@]}"; do
  read -r n wall calib quant exp_s total rbytes wbytes gbps sm sn so sa <<<"$r"
  [ -z "$base" ] && base=$wall
  printf '%4s %8s %8s %8s %8s %9s %9s %8s %8s %7s %7s %7s %6s\n' "$n" "$wall" "$calib" "$quant" \
    "$exp_s" "$(python3 -c "print(f'{$rbytes / 1e9:.3f}')")" \
    "$(python3 -c "print(f'{$wbytes / 1e9:.3f}')")" "$gbps" \
    "$(python3 -c "print(f'{$base / $wall:.2f}x')")" "$sm" "$sn" "$so" "$sa"
done
echo "(wall: mpirun start to exit; phases: rank 0's summary; read/write: summed over ranks;"
echo " mpi/nccl %: rank 0's time in collectives / its total, NCCL = comm-stream time;"
echo " export/amax: identical to the first N's)"
for l in "${comm_lines[@]}"; do echo "  $l"; done

# ---- kill -9 of one rank, then --resume -------------------------------------------------------
n=${ranks[0]}
for r in "${ranks[@]}"; do [ "$r" -gt "$n" ] && n=$r; done
if [ "${KILL:-1}" = 1 ] && [ "$n" -ge 2 ] && [ -n "$ref" ]; then
  d="$work/kill"
  rm -rf "$d"; mkdir -p "$d"
  echo
  echo "--- kill test: N=$n, kill -9 of rank $((n - 1)) once rank 0 committed a calibration layer"
  # the rank processes of this run: quantforge processes with our --work, rank from Open MPI's env
  rank_pid() {  # rank
    local p
    for p in $(pgrep -f -- "--work $d/work( |$)"); do
      [ "$(ps -o comm= -p "$p" 2>/dev/null)" = quantforge ] || continue
      if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1"; then
        echo "$p"; return
      fi
    done
  }
  n_committed() { local f k=0; for f in "$d"/work/rank-0/layer-*.calib.h5; do [ -e "$f" ] && k=$((k + 1)); done; echo $k; }
  quantize "$n" "$d/out" "$d/work" "$d/run.log" &
  pid=$!
  victim="" t_end=$(( SECONDS + 600 ))
  while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$t_end" ]; do
    [ -z "$victim" ] && victim=$(rank_pid $((n - 1)))
    [ -n "$victim" ] && [ "$(n_committed)" -ge 1 ] && break
    sleep 0.01
  done
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid"
    fail "kill test: the run ended (rc $?) before a layer was committed and rank $((n - 1)) found: use a larger model"
  elif [ -z "$victim" ]; then
    kill -9 "$pid"; fail "kill test: no process of rank $((n - 1)) found"
  else
    state="calib layers committed by rank 0: $(n_committed) of $n_layers"
    kill -9 "$victim"
    a=$(now)
    t_end=$(( SECONDS + kill_timeout ))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$t_end" ]; do sleep 0.05; done
    if kill -0 "$pid" 2>/dev/null; then
      fail "kill test: mpirun still runs ${kill_timeout} s after the kill (hang)"
      for p in $(pgrep -f -- "--work $d/work( |$)"); do kill -9 "$p" 2>/dev/null; done
      kill -9 "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null; rc=$?
    b=$(now)
    echo "killed rank $((n - 1)) (pid $victim) at [$state]; mpirun exited $rc after $(secs "$a" "$b") s"
    [ "$rc" != 0 ] || fail "kill test: mpirun exited 0 after a rank was killed"
    for _ in $(seq 100); do [ -z "$(pgrep -f -- "--work $d/work( |$)")" ] && break; sleep 0.1; done
    left=$(pgrep -f -- "--work $d/work( |$)" | tr '\n' ' ')
    [ -z "$left" ] || { fail "kill test: processes survive: $left"; kill -9 $left 2>/dev/null; }
    [ -e "$d/out" ] && fail "kill test: the killed run left OUT ($d/out)"
    [ -e "$d/out.partial" ] && echo "note: the killed run left OUT.partial (the resume removes it)"
    echo "resume: quantize --resume with N=$n ..."
    a=$(now)
    quantize "$n" "$d/out" "$d/work" "$d/resume.log" --resume; rc=$?
    b=$(now)
    if [ "$rc" != 0 ]; then
      tail -30 "$d/resume.log" >&2; fail "kill test: --resume exited $rc"
    else
      echo "resume finished in $(secs "$a" "$b") s ($(grep -c '(resumed' "$d/resume.log") calib" \
           "layer line(s) marked resumed in the log)"
      [ -e "$d/out.partial" ] && fail "kill test: OUT.partial remains after the resume"
      if diff -r "$ref/out" "$d/out" >"$d/export.diff" 2>&1; then
        echo "resumed export: byte-identical to N=${ref##*/n}'s"
      else
        fail "kill test: resumed export differs from N=${ref##*/n}'s ($(head -2 "$d/export.diff" | tr '\n' '|'))"
      fi
      if [ -n "$py_h5" ] && "$py_h5" "$repo/bench/compare_calib_records.py" "$ref/work" "$d/work" >"$d/amax.txt" 2>&1; then
        echo "resumed records: $(sed 's/^[^:]*: //' "$d/amax.txt")"
      else
        fail "kill test: resumed calibration amax differ ($(head -3 "$d/amax.txt" 2>/dev/null | tr '\n' '|'))"
      fi
    fi
  fi
  [ "${KEEP:-0}" = 1 ] || rm -rf "$d/out" "$d/work"
fi

echo
if [ "${#failures[@]}" = 0 ]; then
  echo "bench_multi_rank: PASS (N = ${ranks[*]}: exports and amax identical$([ "${KILL:-1}" = 1 ] && [ "$n" -ge 2 ] && echo "; kill -9 + --resume identical"))"
  exit 0
fi
echo "bench_multi_rank: FAIL (${#failures[@]}):"
for f in "${failures[@]}"; do echo "  $f"; done
exit 1
