#!/usr/bin/env bash
# Crash/resume soak: N iterations (default 50) of a 2-rank quantize killed with kill -9 at a
# random point (phase: calibration 50%, quantization 25%, export 25%; a random offset inside the
# phase window measured on an uninterrupted run), one random rank or every process (mpirun
# included), in a third of the iterations a second kill of the first resume, then `--resume`
# until it succeeds; every final output must equal the uninterrupted run byte for byte.
# Same machinery as tests/e2e/crash_resume.sh (sourced from there).
#
#   bash bench/soak_crash_resume.sh [N] [first_seed]
# Env: QF_BIN (default build/quantforge), QF_KEEP_TMP=1.
# Exit status 1 if any iteration failed (mismatch, failed or hung resume, OUT left by a kill).
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
n_iter=${1:-50}; seed0=${2:-1000}
export QF_BIN=${QF_BIN:-$repo/build/quantforge}
QF_CRASH_LIB_ONLY=1 . "$repo/tests/e2e/crash_resume.sh"

TMP=$(mktemp -d /tmp/qf-soak.XXXXXX)
if [ "${QF_KEEP_TMP:-0}" = 1 ]; then echo "files kept in $TMP"; else trap 'rm -rf "$TMP"' EXIT; fi
start_s=$SECONDS
setup_source || exit 1
run_reference || exit 1

declare -A target=() landed=()
resumes=0 failures=0 mismatches=0 doubles=0 one=0 all=0
phases=(calib calib quant export) kinds=(one all)
for ((it = 0; it < n_iter; it++)); do
  seed=$((seed0 + it)); RANDOM=$seed
  # (no $(...) around RANDOM: a subshell has its own generator)
  phase=${phases[RANDOM % 4]}; kind=${kinds[RANDOM % 2]}; extra=()
  if [ $((RANDOM % 3)) = 0 ]; then extra=("${phases[RANDOM % 4]}" "${kinds[RANDOM % 2]}"); doubles=$((doubles + 1)); fi
  if trial "$seed" "$phase" "$kind" "${extra[@]}"; then ok=ok; else ok=FAIL; failures=$((failures + 1)); fi
  [[ $TRIAL_MSG == *MISMATCH* ]] && mismatches=$((mismatches + 1))
  resumes=$((resumes + TRIAL_RESUMES))
  # every kill point: by target phase, and where it landed (TRIAL_LANDED, one word each)
  target[$phase]=$(( ${target[$phase]:-0} + 1 ))
  # (a second kill point counts only if there was a resume to kill: TRIAL_LANDED has 2 words)
  set -- $TRIAL_LANDED
  [ $# -ge 2 ] && target[${extra[0]}]=$(( ${target[${extra[0]}]:-0} + 1 ))
  for w in $TRIAL_LANDED; do landed[$w]=$(( ${landed[$w]:-0} + 1 )); done
  one=$((one + $(grep -o 'kill -9 one' <<<"$TRIAL_MSG" | wc -l)))
  all=$((all + $(grep -o 'kill -9 all' <<<"$TRIAL_MSG" | wc -l)))
  echo "[$((it + 1))/$n_iter] seed $seed $ok: $TRIAL_MSG"
done

fmt() { local -n m=$1; local k s=""; for k in startup calib quant quantize export after-OUT none; do [ -n "${m[$k]:-}" ] && s+="$k ${m[$k]}, "; done; echo "${s%, }"; }
elapsed=$((SECONDS - start_s))
echo
echo "soak summary: $n_iter iterations (seeds $seed0..$((seed0 + n_iter - 1))), $doubles with a second kill, ${elapsed} s"
echo "  kill points aimed at: $(fmt target)"
echo "  kills: $((one + all)) ($one of one rank, $all of mpirun + all ranks)"
echo "  where they landed (log; after-OUT: once OUT was complete; none: the run ended first): $(fmt landed)"
echo "  resumes run: $resumes; failures: $failures; mismatches: $mismatches"
echo
echo "RESULTS.md line:"
echo "| crash/resume soak, $(nproc) cores, 2 ranks, preset small (--samples 2 --seq-len 64) | $n_iter iterations, $((one + all)) kills ($(fmt landed)) | $resumes resumes | $mismatches mismatches, $failures failures | ${elapsed} s |"
[ "$failures" = 0 ]
