#!/usr/bin/env bash
# Issue 18 defect 13: SIGTERM / SIGINT stop quantize and dequant at the next safe point (between
# layers, between export chunks; every rank through the collective step) with exit status
# 128 + signal and a message saying what was kept and how to go on; then `--resume` finishes with
# the bytes of an uninterrupted run. Cases: SIGTERM to every rank during calibration (what a
# scheduler does), SIGTERM to mpirun, SIGINT twice (the second stops at once, like kill -9),
# SIGTERM during the export, SIGTERM during dequant.
# Env: QF_BIN (quantforge); mpirun must allow root/oversubscribe.
set -uo pipefail
qf=${QF_BIN:?QF_BIN must point at the quantforge binary}
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1}
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
# Open MPI's mpirun, on SIGTERM/SIGINT, sends the ranks SIGTERM after odls_base_sigkill_timeout
# seconds and SIGKILL as long again after that (1 s by default, as here).
export OMPI_MCA_odls_base_sigkill_timeout=1
tmp=$(mktemp -d /tmp/qf-rel-signals.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
start_s=$SECONDS
cd "$tmp"

"$qf" make-tiny --preset small --out src --seed 11 --shards 3 --log-level warn || fail "make-tiny"
R=(quantize --in src --samples 4 --seq-len 64 --log-level info)
mpirun -np 2 "$qf" "${R[@]}" --out ref --work ref.work >ref.log 2>&1 || fail "reference run"

rank_pids() {  # work
  local p
  for p in $(pgrep -f -- "--work $1( |\$)"); do
    [ "$(ps -o comm= -p "$p" 2>/dev/null)" = quantforge ] && echo "$p"
  done
}
wait_for() {  # path
  local i
  for i in $(seq 1500); do [ -e "$1" ] && return 0; sleep 0.01; done
  return 1
}
# After a stop: nothing of the output exists, no rank survives, no temp file. (A process killed
# outright leaves OUT.partial.lock, unlocked, as kill -9 does: pass "killed" to allow that.)
check_stopped() {  # name out work [killed]
  local p i
  for i in $(seq 50); do [ -z "$(rank_pids "$3")" ] && break; sleep 0.1; done
  [ -z "$(rank_pids "$3")" ] || fail "$1: rank processes survive"
  for p in "$2" "$2.partial" $([ -z "${4:-}" ] && echo "$2.partial.lock"); do
    # A killed run may leave the staging its layers were streamed into, but only with the
    # marker that lets the next run remove it (resume_identical checks that it does).
    [ -n "${4:-}" ] && [ "$p" = "$2.partial" ] && [ -e "$2.partial.marker" ] && continue
    [ ! -e "$p" ] || fail "$1: $p left behind"
  done
  [ -z "$(find . -name '*.tmp.*' | head -1)" ] || fail "$1: temp files: $(find . -name '*.tmp.*')"
}
resume_identical() {  # name out work
  mpirun -np 2 "$qf" "${R[@]}" --out "$2" --work "$3" --resume >"$1.resume.log" 2>&1 ||
    { tail -5 "$1.resume.log" >&2; fail "$1: --resume failed"; }
  diff -r ref "$2" >/dev/null || fail "$1: the resumed output differs from the reference"
  for p in "$2.partial" "$2.partial.marker" "$2.partial.lock"; do
    [ ! -e "$p" ] || fail "$1: $p left behind by the resumed run"
  done
}
expect() {  # name log fragment...
  local name=$1 log=$2 f; shift 2
  for f in "$@"; do grep -qF -- "$f" "$log" || { cat "$log" >&2; fail "$name: log lacks '$f'"; }; done
}

# 1. SIGTERM to every rank during calibration: 143, the message, resume -> identical.
mpirun -np 2 "$qf" "${R[@]}" --out o1 --work w1 >t1.log 2>&1 &
run=$!
wait_for w1/rank-0/layer-0001.calib.h5 || fail "term-ranks: calibration did not start"
kill -TERM $(rank_pids w1)
wait "$run"; rc=$?
[ "$rc" = 143 ] || { cat t1.log >&2; fail "term-ranks: exit $rc, expected 143"; }
expect term-ranks t1.log "quantize: stopped by SIGTERM after layer" \
  "Kept: every committed layer in w1" "Continue with the same command and --resume."
check_stopped term-ranks o1 w1
resume_identical term-ranks o1 w1
echo "ok: SIGTERM to the ranks in calibration -> exit 143, $(grep -o 'stopped by SIGTERM after [^.]*' t1.log); --resume -> identical"

# 2. SIGTERM to mpirun: it passes SIGTERM on to the ranks 1 s later and SIGKILLs them 1 s after
#    that; a rank that reaches a safe point in time stops with the message, else it is killed
#    (crash-safe either way). Both end in a resume with identical bytes.
mpirun -np 2 "$qf" "${R[@]}" --out o2 --work w2 >t2.log 2>&1 &
run=$!
wait_for w2/rank-0/manifest.json || fail "term-mpirun: the run did not start"
kill -TERM "$run"
wait "$run"; rc=$?
[ "$rc" != 0 ] || fail "term-mpirun: exit 0"
how=$(grep -o "stopped by SIGTERM after [^.]*\|exited on signal [0-9]*" t2.log | head -1)
[ -n "$how" ] || { cat t2.log >&2; fail "term-mpirun: neither stopped nor killed?"; }
check_stopped term-mpirun o2 w2 $([[ $how == exited* ]] && echo killed)
resume_identical term-mpirun o2 w2
echo "ok: SIGTERM to mpirun -> mpirun exit $rc, ranks: $how; --resume -> identical"

# 3. SIGINT twice: the second one stops at once (default action), like kill -9; resume works.
mpirun -np 2 "$qf" "${R[@]}" --out o3 --work w3 >t3.log 2>&1 &
run=$!
wait_for w3/rank-0/layer-0001.calib.h5 || fail "int-twice: calibration did not start"
pids=$(rank_pids w3)
kill -INT $pids; sleep 0.05; kill -INT $pids 2>/dev/null
wait "$run"; rc=$?
[ "$rc" != 0 ] || fail "int-twice: exit 0"
grep -q "exited on signal 2\|stopped by SIGINT" t3.log || { cat t3.log >&2; fail "int-twice: no signal reported"; }
check_stopped int-twice o3 w3 killed
resume_identical int-twice o3 w3
echo "ok: SIGINT twice -> exit $rc ($(grep -o 'exited on signal 2\|stopped by SIGINT' t3.log | head -1)); --resume -> identical"

# 4. SIGTERM during the export: OUT.partial removed, the stores complete; --resume writes OUT.
#    (A signal that lands after the last export chunk lets the run finish: exit 0, OUT complete.)
mpirun -np 2 "$qf" "${R[@]}" --out o4 --work w4 >t4.log 2>&1 &
run=$!
# OUT.partial exists from the start (the export is streamed): the job record names the phase.
for _ in $(seq 1500); do grep -Eq '"phase": ?"export"' w4/job.json 2>/dev/null && break; sleep 0.01; done
grep -Eq '"phase": ?"export"' w4/job.json || fail "term-export: the export did not start"
kill -TERM $(rank_pids w4) 2>/dev/null
wait "$run"; rc=$?
if [ "$rc" = 143 ]; then
  expect term-export t4.log "quantize: stopped by SIGTERM" "o4.partial removed" \
    "Every layer is committed: write the output with the same command and --resume"
  check_stopped term-export o4 w4
  resume_identical term-export o4 w4
  echo "ok: SIGTERM in the export -> exit 143, OUT.partial removed; --resume -> identical"
else
  [ "$rc" = 0 ] && diff -r ref o4 >/dev/null || { cat t4.log >&2; fail "term-export: exit $rc"; }
  echo "ok: SIGTERM in the export landed after the last chunk: the run finished (identical OUT)"
fi

# 5. dequant: SIGTERM -> 143, nothing left behind.
"$qf" make-tiny --preset small --out big --seed 3 --shards 6 --log-level warn || fail "make-tiny"
mpirun -np 2 "$qf" dequant --in big --out d5 --chunk-mib 1 >t5.log 2>&1 &
run=$!
wait_for d5.partial || fail "term-dequant: no staging"
kill -TERM $(pgrep -f -- "--out d5( |\$)" | while read -r p; do
  [ "$(ps -o comm= -p "$p")" = quantforge ] && echo "$p"; done) 2>/dev/null
wait "$run"; rc=$?
if [ "$rc" = 143 ]; then
  expect term-dequant t5.log "dequant: stopped by SIGTERM" "Nothing was kept" "run the same command again"
  for p in d5 d5.partial d5.partial.lock; do [ ! -e "$p" ] || fail "term-dequant: $p left"; done
  echo "ok: SIGTERM in dequant -> exit 143, nothing left"
else
  [ "$rc" = 0 ] && [ -f d5/config.json ] || { cat t5.log >&2; fail "term-dequant: exit $rc"; }
  echo "ok: SIGTERM in dequant landed after the last tensor: the run finished"
fi

echo "reliability_signals e2e: all checks passed ($((SECONDS - start_s)) s)"
