#!/usr/bin/env bash
# Issue 18, before any work: overlapping paths (defects 4, 5, 11), the output lock taken at the
# start of quantize and dequant (1b), and every input checked before anything is created (10).
# Each refusal must exit non-zero within seconds, name both paths (or the bad file), and leave
# nothing behind: no OUT, OUT.partial, OUT.partial.lock, report or WORK. After each bad input the
# corrected run must succeed without --resume. Spellings tried: relative vs absolute, "..",
# trailing slashes, a symlink into --in, blanks and UTF-8 in names.
# Env: QF_BIN (quantforge), QF_SOURCE_DIR (repo root); mpirun must allow root/oversubscribe.
set -euo pipefail
qf=${QF_BIN:?QF_BIN must point at the quantforge binary}
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1}
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
export OMPI_MCA_odls_base_sigkill_timeout=${OMPI_MCA_odls_base_sigkill_timeout:-0}
tmp=$(mktemp -d "/tmp/qf rel paths é.XXXXXX")  # a blank and UTF-8 in every path below
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
start_s=$SECONDS
cd "$tmp"

"$qf" make-tiny --preset tiny --out src --seed 5 --shards 3 --log-level warn
python3 - src/config.json amax.json <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
json.dump({f"layers.{l}.ffn.experts.{e}.{w}": 0.5 + 0.25 * l + 0.01 * e
           for l in range(cfg["num_hidden_layers"]) for e in range(cfg["n_routed_experts"])
           for w in ("w1", "w2", "w3")}, open(sys.argv[2], "w"))
PY
A=(--amax-file "$tmp/amax.json")

# Nothing of a run on OUT/WORK exists (the files a refused run must not create).
check_nothing() {  # name out work
  local p
  for p in "$2" "$2.partial" "$2.partial.lock" "$2.quantization_report.json" "$3"; do
    [ -z "$p" ] || [ ! -e "$p" ] || fail "$1: $p was created"
  done
}
expect_msg() {  # name log fragment...
  local name=$1 log=$2 f; shift 2
  for f in "$@"; do grep -qF -- "$f" "$log" || { cat "$log" >&2; fail "$name: message lacks '$f'"; }; done
}
# run NP CMD ARGS... -> rc in $rc, output in $tmp/log
run() { local np=$1; shift; rc=0; timeout 60 mpirun -np "$np" "$qf" "$@" --log-level warn >log 2>&1 || rc=$?; }
refused() {  # name "frag|frag" out work -- CMD ARGS...
  local name=$1 want=$2 out=$3 work=$4 frags t0=$SECONDS; shift 5
  run 2 "$@"
  [ "$rc" != 0 ] && [ "$rc" != 124 ] || { cat log >&2; fail "$name: exit $rc"; }
  IFS='|' read -r -a frags <<<"$want"; expect_msg "$name" log "${frags[@]}"
  check_nothing "$name" "$out" "$work"
  [ $((SECONDS - t0)) -le 20 ] || fail "$name: took $((SECONDS - t0)) s"
  echo "ok: $name -> $(grep -m1 'error:' log | sed 's/^.*error: //' | cut -c1-120)"
}

# ---- defect 4: --work/--out inside or equal to --in; dequant into its own source ----------
refused work-in-in "--work src/w is inside --in src|copied into every later export" src.o src/w \
  -- quantize --in src --out src.o --work src/w "${A[@]}"
refused work-is-in "is the same path as --in" o4 "" -- quantize --in src --out o4 --work src/ "${A[@]}"
refused out-in-in "--out src/q is inside --in src|would write into the source" src/q w4 \
  -- quantize --in src --out src/q --work w4 "${A[@]}"
refused out-is-in "--out $tmp/src/../src/ is the same path as --in src" "" w4 \
  -- quantize --in src --out "$tmp/src/../src/" --work w4 "${A[@]}"
ln -s "$tmp/src" "src link"
refused work-symlink-into-in "--work src link/w is inside --in src|resolved: $tmp/src/w" o4 "" \
  -- quantize --in src --out o4 --work "src link/w" "${A[@]}"
refused dequant-into-source "--out src/bf16 is inside --in src" src/bf16 "" \
  -- dequant --in src --out src/bf16
refused dequant-out-is-in "--out ./src is the same path as --in $tmp/src" "" "" \
  -- dequant --in "$tmp/src" --out ./src
[ "$(ls src | wc -l)" = 5 ] || fail "the source directory changed: $(ls src)"

# ---- defect 5: --work inside --out (refused before calibration, not after) --------------
refused work-in-out "--work o5/w is inside --out o5" o5 o5/w -- quantize --in src --out o5 \
  --work o5/w --samples 64 --seq-len 256
refused work-is-out "--work $tmp/o5 is the same path as --out o5" o5 "" \
  -- quantize --in src --out o5 --work "$tmp/o5" "${A[@]}"

# ---- defect 11: --work is the staging dir of --out, inside it, or its lock file -----------
refused work-is-staging "--work o11.partial is the same path as the staging directory" o11 \
  o11.partial -- quantize --in src --out o11 --work o11.partial "${A[@]}"
refused work-in-staging "is inside the staging directory" o11 o11.partial/w \
  -- quantize --in src --out o11 --work o11.partial/w "${A[@]}"
refused work-is-lock "--work o11.partial.lock is the same path as the output lock file" o11 "" \
  -- quantize --in src --out o11/ --work o11.partial.lock "${A[@]}"
refused work-is-report "is the same path as the quantization report" o11 "" \
  -- quantize --in src --out o11 --work o11.quantization_report.json "${A[@]}"
refused amax-is-report "--amax-file o11.quantization_report.json is the same path" o11 w11 \
  -- quantize --in src --out o11 --work w11 --amax-file o11.quantization_report.json
mkdir w11; refused out-in-rank-dir "is a rank's work store" w11/rank-0/o w11/rank-0 \
  -- quantize --in src --out w11/rank-0/o --work w11 "${A[@]}"
rmdir w11

# ---- defect 10: every input checked before anything is created; the fix needs no --resume --
printf '[1, 2, 3, 4]\n[5, 6, 999999, 7]\n' >bad-ids.jsonl
printf '[1, 2, 3, 4]\n' >short.jsonl
printf '[1, 2, 3, 4]\n[5, 6, 7, 8]\n' >good.jsonl
echo '{"layers.0.ffn.experts.0.w1": -1}' >negative.json
echo not-a-directory >afile
C=(--in src --out o10 --work w10)
refused calib-bad-id "bad-ids.jsonl:2: token id 999999 outside the vocabulary" o10 w10 \
  -- quantize "${C[@]}" --calib bad-ids.jsonl --samples 2 --seq-len 4
refused calib-too-few "short.jsonl" o10 w10 -- quantize "${C[@]}" --calib short.jsonl --samples 2 --seq-len 4
refused calib-missing "missing.jsonl" o10 w10 -- quantize "${C[@]}" --calib missing.jsonl --samples 2 --seq-len 4
refused amax-negative "negative.json|amax of layers.0.ffn.experts.0.w1 is -1" o10 w10 \
  -- quantize "${C[@]}" --amax-file negative.json
refused amax-missing "no-such.json" o10 w10 -- quantize "${C[@]}" --amax-file no-such.json
refused work-under-file "--work afile/w: $tmp/afile exists and is not a directory" o10 afile/w \
  -- quantize --in src --out o10 --work afile/w "${A[@]}"
refused both-calib-amax "give --calib or --amax-file, not both" o10 w10 \
  -- quantize "${C[@]}" --calib good.jsonl "${A[@]}"
run 2 quantize "${C[@]}" --calib good.jsonl --samples 2 --seq-len 4
[ "$rc" = 0 ] || { cat log >&2; fail "the corrected run (no --resume) failed"; }
[ -f o10/config.json ] || fail "the corrected run wrote no output"
echo "ok: corrected run after each bad input succeeds without --resume"
# calib-data: a bad tokenizer or an --out that is one of its inputs creates nothing.
echo '{"model": {"type": "WordPiece"}}' >bad-tokenizer.json
printf '{"text": "hello"}\n' >text.jsonl
rc=0; "$qf" calib-data --tokenizer bad-tokenizer.json --text text.jsonl:1 --seq-len 2 \
  --out tokens.safetensors --log-level warn >log 2>&1 || rc=$?
[ "$rc" != 0 ] && [ ! -e tokens.safetensors ] || fail "calib-data with a bad tokenizer: rc $rc"
rc=0; "$qf" calib-data --tokenizer bad-tokenizer.json --text text.jsonl:1 --seq-len 2 \
  --out text.jsonl --force --log-level warn >log 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "calib-data --out = --text accepted"
expect_msg calib-data-out-is-input log "--out text.jsonl is the same path as --text text.jsonl"
grep -q hello text.jsonl || fail "calib-data replaced its input"
echo "ok: calib-data refuses a bad tokenizer and an --out that is an input, creating nothing"
# make-tiny --force never deletes the current directory (or one holding it) or its --config.
mkdir -p keep/sub; cp src/config.json keep/sub/config.json
rc=0; (cd keep/sub && "$qf" make-tiny --out .. --force --log-level warn) >log 2>&1 || rc=$?
[ "$rc" != 0 ] && [ -f keep/sub/config.json ] || fail "make-tiny --force --out .. deleted the cwd"
expect_msg make-tiny-cwd log "is inside --out .." "--force would delete it"
rc=0; "$qf" make-tiny --out keep --config keep/sub/config.json --force --log-level warn >log 2>&1 || rc=$?
[ "$rc" != 0 ] && [ -f keep/sub/config.json ] || fail "make-tiny --force deleted its --config"
echo "ok: make-tiny --force keeps the current directory and its --config"

# ---- defect 1b: the output lock is taken at the start, held to the end --------------------
# A long run on OUT; a second run on the same OUT (other WORK) fails at once naming it, creates
# no WORK, and the first run still finishes.
mpirun -np 2 "$qf" quantize --in src --out o1 --work w1a --samples 64 --seq-len 256 \
  --log-level warn >log1 2>&1 &
first=$!
for _ in $(seq 500); do [ -e o1.partial.lock ] && break; sleep 0.02; done
[ -e o1.partial.lock ] || fail "lock-at-start: the first run took no lock"
[ ! -e o1 ] || fail "lock-at-start: the first run already finished (make it longer)"
t0=$SECONDS
QF_LOCK_WAIT_SECONDS=0 run 2 quantize --in src --out o1 --work w1b "${A[@]}"
[ "$rc" != 0 ] || fail "lock-at-start: the second run on the same --out succeeded"
expect_msg lock-at-start log "output o1: another live process (pid" "holds o1.partial.lock"
[ ! -e w1b ] || fail "lock-at-start: the refused run created its work store"
echo "ok: lock-at-start: second run refused in $((SECONDS - t0)) s while the first calibrates"
QF_LOCK_WAIT_SECONDS=0 run 2 dequant --in src --out o1
[ "$rc" != 0 ] || fail "lock-at-start: dequant into a locked --out succeeded"
expect_msg lock-at-start-dequant log "another live process"
wait "$first" || { cat log1 >&2; fail "lock-at-start: the first run failed"; }
[ -f o1/config.json ] && [ ! -e o1.partial.lock ] || fail "lock-at-start: first run's output/lock"
echo "ok: the first run finished and removed its lock"

echo "reliability_paths e2e: all checks passed ($((SECONDS - start_s)) s)"
