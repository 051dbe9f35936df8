#!/usr/bin/env bash
# Crash and resume: kill -9 one rank, or every process (mpirun included), of a 2-rank quantize at
# seeded points in calibration, quantization and export; `quantize --resume` (repeated if killed
# again) must finish the run with the same bytes as an uninterrupted run, and a killed run must
# never leave an OUT behind (OUT exists only once complete; OUT.partial is removed by the resume).
#
# Kill points: the reference run is timed by polling the documented on-disk states (rank stores,
# OUT.partial, OUT) every ~10 ms; each kill picks a phase and a random offset inside that phase's
# measured window, anchored at the phase's first on-disk sign written by this attempt (calibration
# of layer K: rank 0 has K committed calib layers; quantization: the first layer-*.quant.h5*;
# export: a new OUT.partial), so that kills land in every phase although quantization and export
# take only ~0.5 and ~0.2 s here, and whatever the machine's load. The log then shows where each
# kill really landed.
#
# Env: QF_BIN (required), QF_CRASH_SEEDS (default "1 2 3 4 5 6"), QF_KEEP_TMP=1 keeps the files.
# bench/soak_crash_resume.sh sources this file with QF_CRASH_LIB_ONLY=1 (functions only) for a
# longer randomized run.
set -uo pipefail
qf=${QF_BIN:?QF_BIN must point at the quantforge binary}
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1}
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
NP=2

# (builtins only where timing matters: a fork+exec costs ~5-20 ms on a busy 2-core machine)
now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $(( t / 1000 )); }
sleep_ms() { local s; printf -v s '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); sleep "$s"; }

# Source checkpoint and run options in $TMP: preset small with a short calibration set, ~3 s on
# 2 cores (calibration ~2 s over 6 layers, quantization ~0.5 s, export ~0.2 s). Preset tiny with
# the default set takes ~2 s but spends < 0.1 s in quantization and in export.
setup_source() {
  "$qf" make-tiny --preset small --out "$TMP/src" --seed 11 --shards 3 --log-level warn || return 1
  N_LAYERS=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['num_hidden_layers'])" \
    "$TMP/src/config.json")
  RUN_ARGS=(--log-level info --in "$TMP/src" --samples 2 --seq-len 64)
}

# rank processes of the run using work dir $1 (quantforge processes, not mpirun)
rank_pids() {
  local p
  for p in $(pgrep -f -- "--work $1( |$)"); do
    [ "$(ps -o comm= -p "$p" 2>/dev/null)" = quantforge ] && echo "$p"
  done
}
# anchors, true once the run started at $RUN_MARK got there (files from before it do not count)
newer_exists() {  # glob...
  local f
  for f in "$@"; do [ "$f" -nt "$RUN_MARK" ] && return 0; done
  return 1
}
n_calib() { local f n=0; for f in "$1"/rank-0/layer-*.calib.h5; do [ -e "$f" ] && n=$((n + 1)); done; echo $n; }
quant_started() { newer_exists "$1"/rank-*/layer-*.quant.h5*; }  # work
export_started() { newer_exists "$1.partial"; }                  # out
# what is on disk: rank 0's committed calib/quant layer files, OUT.partial, OUT
disk_state() {  # work out
  local c q s
  local f; c=$(n_calib "$1"); q=0
  for f in "$1"/rank-0/layer-*.quant.h5; do [ -e "$f" ] && q=$((q + 1)); done
  s="calib=$c quant=$q"; [ -e "$2.partial" ] && s+=" +partial"; [ -e "$2" ] && s+=" +OUT"; echo "$s"
}
# the phase the log shows the run was in when it stopped (the log of the last attempt only)
log_phase() {  # log
  local l; l=$(sed -n '/^--- attempt/h; /^--- attempt/!H; ${x;p}' "$1")
  local n; n=$(grep -c 'calib layer' <<<"$l")
  if grep -q 'tensors quantized in this run' <<<"$l"; then echo "finished"
  elif grep -q '^export' <<<"$l"; then echo "export(finishing)"
  elif grep -Eq '^quantize: [0-9]+/[0-9]+ ' <<<"$l"; then echo "export"
  elif [ "$n" -ge "$N_LAYERS" ]; then echo "quantize"
  elif [ "$n" -gt 0 ] || grep -q '^calibration:' <<<"$l"; then echo "calib(layer $n)"
  else echo "startup"; fi
}
# waits for mpirun $1 (limit $2 s); its exit status, or 255 on a hang (then kills everything)
wait_run() {  # pid limit_s work
  local t_end=$(( $(now_ms) + $2 * 1000 ))
  while kill -0 "$1" 2>/dev/null; do
    if [ "$(now_ms)" -gt "$t_end" ]; then
      kill -9 "$1" $(rank_pids "$3") 2>/dev/null; wait "$1" 2>/dev/null; return 255
    fi
    sleep 0.05
  done
  wait "$1" 2>/dev/null
}
# starts a run into work $1 / out $2 (extra args after); sets RUN_PID; appends to $LOG
start_run() {
  local work=$1 out=$2; shift 2
  echo "--- attempt $*" >>"$LOG"
  RUN_MARK=$work.mark; touch "$RUN_MARK"
  mpirun -np "$NP" "$qf" quantize "${RUN_ARGS[@]}" --out "$out" --work "$work" "$@" \
    2>>"$LOG" >/dev/null &
  RUN_PID=$!
}

# Phase windows (ms) from an uninterrupted run into $TMP/ref (kept as the reference output).
run_reference() {
  local t0 t t_store=0 t_quant=0 t_partial=0 t_out=0 t_end
  LOG=$TMP/ref.log; t0=$(now_ms)
  start_run "$TMP/ref-work" "$TMP/ref"
  while kill -0 "$RUN_PID" 2>/dev/null; do
    t=$(( $(now_ms) - t0 ))
    [ "$t_store" = 0 ] && [ -d "$TMP/ref-work/rank-0" ] && t_store=$t
    [ "$t_quant" = 0 ] && quant_started "$TMP/ref-work" && t_quant=$t
    [ "$t_partial" = 0 ] && export_started "$TMP/ref" && t_partial=$t
    [ "$t_out" = 0 ] && [ -e "$TMP/ref" ] && t_out=$t
    sleep 0.01
  done
  wait "$RUN_PID" || { tail -20 "$LOG" >&2; echo "FAIL: reference run failed" >&2; return 1; }
  t_end=$(( $(now_ms) - t0 ))
  [ "$t_out" = 0 ] && t_out=$t_end
  [ "$t_partial" = 0 ] && t_partial=$t_out
  [ "$t_quant" = 0 ] && t_quant=$t_partial
  D_LAYER=$(( (t_quant - t_store) / N_LAYERS > 50 ? (t_quant - t_store) / N_LAYERS : 50 ))
  D_QUANT=$(( t_partial - t_quant > 50 ? t_partial - t_quant : 50 ))
  D_EXPORT=$(( t_out - t_partial > 50 ? t_out - t_partial : 50 ))
  echo "reference: ${t_end} ms = startup ${t_store} ms, calibration $(( t_quant - t_store )) ms" \
    "(${D_LAYER} ms/layer), quantization (to OUT.partial) $(( t_partial - t_quant )) ms, export" \
    "(OUT.partial to OUT) $(( t_out - t_partial )) ms, exit $(( t_end - t_out )) ms"
}

# Kills run RUN_PID (work $1, out $2) at phase $3 (calib|quant|export) + a random offset in its
# window; kind $4 = one (one rank, chosen at random) | all (mpirun and every rank). Sets
# KILL_DESC. Returns 1 if the run ended before the kill point (nothing killed).
kill_run() {
  local work=$1 out=$2 phase=$3 kind=$4 t0 delay anchor_ok=1 ranks=() victim at layer
  t0=$(now_ms)
  case $phase in
    calib) layer=$(( RANDOM % N_LAYERS ))  # during layer `layer`: after rank 0 committed `layer` of them
           while [ ! -d "$work/rank-0" ] || [ "$(n_calib "$work")" -lt "$layer" ]; do
             kill -0 "$RUN_PID" 2>/dev/null || { anchor_ok=0; break; }; sleep 0.01; done
           delay=$(( RANDOM % D_LAYER )); phase="calib$layer" ;;
    quant) while ! quant_started "$work" && ! export_started "$out"; do
             kill -0 "$RUN_PID" 2>/dev/null || { anchor_ok=0; break; }; sleep 0.01; done
           delay=$(( RANDOM % D_QUANT )) ;;
    export) while ! export_started "$out"; do
             kill -0 "$RUN_PID" 2>/dev/null || { anchor_ok=0; break; }; sleep 0.01; done
           delay=$(( RANDOM % D_EXPORT )) ;;
  esac
  # the rank processes exist by the time any anchor is reached: look them up before the sleep
  while [ "$anchor_ok" = 1 ]; do
    mapfile -t ranks < <(rank_pids "$work")
    [ "${#ranks[@]}" -ge "$NP" ] && break
    kill -0 "$RUN_PID" 2>/dev/null || break; sleep 0.01
  done
  victim=${ranks[RANDOM % NP]:-}
  [ "$anchor_ok" = 1 ] && sleep_ms "$delay"
  at=$(( $(now_ms) - t0 ))
  if [ "${#ranks[@]}" -eq 0 ] || ! kill -0 "$RUN_PID" 2>/dev/null; then
    KILL_DESC="$phase+${delay}ms: run ended first, nothing killed"; return 1
  fi
  if [ "$kind" = one ]; then
    kill -9 "$victim" 2>/dev/null
    KILL_DESC="$phase+${delay}ms (t=${at}ms): kill -9 one rank (pid $victim)"
  else
    kill -9 "$RUN_PID" "${ranks[@]}" 2>/dev/null
    KILL_DESC="$phase+${delay}ms (t=${at}ms): kill -9 all (mpirun + ${#ranks[@]} ranks)"
  fi
  return 0
}

# After a killed run: no rank process left; OUT absent, or complete and equal to the reference
# (the kill came after the rename). Prints "complete-OUT" in that case, a reason on failure.
check_after_kill() {  # work out
  local i
  for i in $(seq 50); do [ -z "$(rank_pids "$1")" ] && break; sleep 0.1; done
  [ -z "$(rank_pids "$1")" ] || { echo "rank processes survive the kill: $(rank_pids "$1")"; return 1; }
  if [ -e "$2" ]; then
    diff -r "$TMP/ref" "$2" >/dev/null || { echo "a killed run left an OUT that differs from the reference"; return 1; }
    echo "complete-OUT"
  fi
  return 0
}

# TRIAL_LANDED += none (the run ended before the kill point) | after-OUT (killed once OUT was
# complete) | the phase the log shows (calib, quantize, export, startup)
landed() {  # hit log_phase out
  local w=${2%%(*}
  [ "$1" != 0 ] && w=none; [ "$1" = 0 ] && [ -e "$3" ] && w=after-OUT
  TRIAL_LANDED+="${TRIAL_LANDED:+ }$w"
}

# One trial in work $TMP/w$1, out $TMP/o$1: kill at (phase $2, kind $3); if $4/$5 are given
# (phase, kind), also kill the first resume there; then resume until success (at most 4 resumes)
# and compare with the reference. Sets TRIAL_MSG, TRIAL_RESUMES, TRIAL_LANDED (one word per kill
# point, see landed). Returns 0 ok, 1 failure (TRIAL_MSG says which).
trial() {
  local id=$1 phase=$2 kind=$3 phase2=${4:-} kind2=${5:-}
  local work=$TMP/w$id out=$TMP/o$id rc after where hit
  LOG=$TMP/t$id.log; TRIAL_RESUMES=0; TRIAL_LANDED=""
  start_run "$work" "$out"
  # (2>/dev/null: bash's "Killed" job notices)
  kill_run "$work" "$out" "$phase" "$kind" 2>/dev/null; hit=$?
  wait_run "$RUN_PID" 60 "$work" 2>/dev/null; rc=$?
  [ "$rc" = 255 ] && { TRIAL_MSG="$KILL_DESC; FAIL: the run hung after the kill"; return 1; }
  where=$(log_phase "$LOG"); landed "$hit" "$where" "$out"
  TRIAL_MSG="$KILL_DESC; log: $where; rc=$rc; after: [$(disk_state "$work" "$out")]"
  after=$(check_after_kill "$work" "$out") || { TRIAL_MSG+="; FAIL: $after"; return 1; }
  if [ "$after" != complete-OUT ]; then
    [ "$rc" = 0 ] && { TRIAL_MSG+="; FAIL: mpirun exited 0 but there is no OUT"; return 1; }
    while :; do
      TRIAL_RESUMES=$((TRIAL_RESUMES + 1))
      start_run "$work" "$out" --resume
      if [ -n "$phase2" ] && [ "$TRIAL_RESUMES" = 1 ]; then
        if kill_run "$work" "$out" "$phase2" "$kind2" 2>/dev/null; then
          wait_run "$RUN_PID" 60 "$work" 2>/dev/null; rc=$?
          [ "$rc" = 255 ] && { TRIAL_MSG+="; resume 1: $KILL_DESC; FAIL: hung after the kill"; return 1; }
          where=$(log_phase "$LOG"); landed 0 "$where" "$out"
          TRIAL_MSG+="; resume 1: $KILL_DESC; log: $where; rc=$rc"
          after=$(check_after_kill "$work" "$out") || { TRIAL_MSG+="; FAIL: $after"; return 1; }
          [ "$after" = complete-OUT ] && break
          [ "$rc" = 0 ] && { TRIAL_MSG+="; FAIL: mpirun exited 0 but there is no OUT"; return 1; }
          continue
        fi
        TRIAL_MSG+="; resume 1: $KILL_DESC"; landed 1 "" "$out"
      fi
      wait_run "$RUN_PID" 120 "$work" 2>/dev/null; rc=$?
      [ "$rc" = 255 ] && { TRIAL_MSG+="; FAIL: resume $TRIAL_RESUMES hung"; return 1; }
      { [ "$rc" = 0 ] || [ "$TRIAL_RESUMES" -ge 4 ]; } && break
    done
    if [ "$rc" != 0 ] && [ ! -e "$out" ]; then
      TRIAL_MSG+="; FAIL: resume failed (rc=$rc), log $LOG: $(tail -4 "$LOG" | tr '\n' '|')"; return 1
    fi
  fi
  [ -e "$out.partial" ] && { TRIAL_MSG+="; FAIL: $out.partial remains after the resume"; return 1; }
  if ! diff -r "$TMP/ref" "$out" >"$TMP/diff$id" 2>&1; then
    TRIAL_MSG+="; FAIL: MISMATCH after $TRIAL_RESUMES resume(s): $(head -3 "$TMP/diff$id" | tr '\n' '|')"
    return 1
  fi
  TRIAL_MSG+="; $TRIAL_RESUMES resume(s) -> identical"
  [ "${QF_KEEP_TMP:-0}" = 1 ] || rm -rf "$work" "$out" "$work.mark"
  return 0
}

[ "${QF_CRASH_LIB_ONLY:-0}" = 1 ] && return 0

TMP=$(mktemp -d /tmp/qf-crash.XXXXXX)
if [ "${QF_KEEP_TMP:-0}" = 1 ]; then echo "files kept in $TMP"; else trap 'rm -rf "$TMP"' EXIT; fi
start_s=$SECONDS
setup_source || exit 1
run_reference || exit 1

# Seed i: phase cycles calib/quant/export, kind one/all (6 seeds cover every pair); the last seed
# also kills its first resume (one rank, during the export that every resume redoes).
seeds=(${QF_CRASH_SEEDS:-1 2 3 4 5 6})
phases=(calib quant export)
failures=0; i=0
for seed in "${seeds[@]}"; do
  RANDOM=$seed
  phase=${phases[i % 3]}; kind=$([ $(( (i / 3) % 2 )) = 0 ] && echo one || echo all)
  extra=(); [ $((i + 1)) = ${#seeds[@]} ] && extra=(export one)
  i=$((i + 1))
  if trial "$seed" "$phase" "$kind" "${extra[@]}"; then
    echo "seed $seed: $TRIAL_MSG"
  else
    echo "seed $seed: $TRIAL_MSG" >&2; failures=$((failures + 1))
  fi
done
[ "$failures" = 0 ] || { echo "FAIL: $failures of ${#seeds[@]} seeds" >&2; exit 1; }
echo "crash_resume e2e: ${#seeds[@]} seeds, every output byte-identical ($((SECONDS - start_s)) s)"
