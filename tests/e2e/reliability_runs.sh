#!/usr/bin/env bash
# Issue 18, across runs: amax files at the edges of float32 and with unknown module names
# (defects 7, 13), --export-only --shard with another run's store (8), source data changed
# after a crash (9), validate's gaps (12), and messages: NUL bytes and control characters in
# tensor names, non-files where shard files belong, an empty --shard (13).
# Env: QF_BIN (quantforge), QF_SOURCE_DIR (repo root); mpirun must allow root/oversubscribe.
set -euo pipefail
qf=${QF_BIN:?QF_BIN must point at the quantforge binary}
src_dir=${QF_SOURCE_DIR:?}
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1}
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
export OMPI_MCA_odls_base_sigkill_timeout=${OMPI_MCA_odls_base_sigkill_timeout:-0}
edit="python3 $src_dir/tests/e2e/st_edit.py"
tmp=$(mktemp -d /tmp/qf-rel-runs.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
start_s=$SECONDS
cd "$tmp"

"$qf" make-tiny --preset tiny --out src --seed 5 --shards 3 --log-level warn
amax_file() {  # out value [key-prefix]
  python3 - src/config.json "$1" "$2" "${3:-layers}" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
json.dump({f"{sys.argv[4]}.{l}.ffn.experts.{e}.{w}": float(sys.argv[3])
           for l in range(cfg["num_hidden_layers"]) for e in range(cfg["n_routed_experts"])
           for w in ("w1", "w2", "w3")}, open(sys.argv[2], "w"))
PY
}
amax_file amax.json 0.75
expect_msg() {  # name log fragment...
  local name=$1 log=$2 f; shift 2
  for f in "$@"; do grep -qF -- "$f" "$log" || { cat "$log" >&2; fail "$name: message lacks '$f'"; }; done
}
# run NP CMD ARGS... -> rc in $rc, output in ./log
run() { local np=$1; shift; rc=0; timeout 60 mpirun -np "$np" "$qf" "$@" --log-level warn >log 2>&1 || rc=$?; }
refused() {  # name "frag|frag" out work -- CMD ARGS...
  local name=$1 want=$2 out=$3 work=$4 frags p; shift 5
  run 2 "$@"
  [ "$rc" != 0 ] && [ "$rc" != 124 ] || { cat log >&2; fail "$name: exit $rc"; }
  IFS='|' read -r -a frags <<<"$want"; expect_msg "$name" log "${frags[@]}"
  for p in "$out" "$out.partial" "$out.partial.lock" "$work"; do
    [ -z "$p" ] || [ ! -e "$p" ] || fail "$name: $p was created"
  done
  echo "ok: $name -> $(grep -m1 'error:' log | sed 's/^.*error: //' | cut -c1-120)"
}

# ---- defect 7: amax at the edges of float32 ------------------------------------------------
amax_file tiny.json 1e-45
refused amax-1e-45 "tiny.json: amax of layers.0.ffn.experts.0.w1 is 1e-45 - below|use 0 for a module" \
  o7 w7 -- quantize --in src --out o7 --work w7 --amax-file tiny.json
amax_file huge.json 1e39
refused amax-overflow "amax of layers.0.ffn.experts.0.w1 is 1e+39|finite in float32" o7 w7 \
  -- quantize --in src --out o7 --work w7 --amax-file huge.json
amax_file smallest.json 3.2e-35
run 2 quantize --in src --out o7 --work w7 --amax-file smallest.json
[ "$rc" = 0 ] || { cat log >&2; fail "amax 3.2e-35 refused"; }
"$qf" validate --source src --out o7 --log-level warn >log 2>&1 || { cat log >&2; fail "amax 3.2e-35: validate"; }
echo "ok: amax 3.2e-35 (just above min_input_amax) exports normal input scales and validates"

# ---- defect 13: an amax file that names unknown modules ------------------------------------
amax_file typo.json 0.5 layer
refused amax-typo "typo.json: 96 of 96 keys name no module of the checkpoint|layer.0.ffn.experts.0.w1" \
  o13 w13 -- quantize --in src --out o13 --work w13 --amax-file typo.json
python3 -c 'import json; d = json.load(open("amax.json")); d["layers.1.ffn.experts.3.w4"] = 1.0;
json.dump(d, open("one-typo.json", "w"))'
refused amax-one-typo "1 of 97 keys name no module|layers.1.ffn.experts.3.w4" o13 w13 \
  -- quantize --in src --out o13 --work w13 --amax-file one-typo.json

# ---- defect 13: messages -------------------------------------------------------------------
# A tensor name with a NUL and an ANSI escape, and a bad dtype: the whole message, escaped, with
# its location; no raw control byte reaches the log (or inspect's table).
rm -rf nul; cp -r src nul
$edit nul dtype layers.0.attn.wq_b.weight F9_E9M9
$edit nul rename layers.0.attn.wq_b.weight 'layers.0.attn.wq_b\x00evil\x1b[31m.weight'
refused nul-name "tensor 'layers.0.attn.wq_b\x00evil\x1b[31m.weight': unknown dtype 'F9_E9M9'|[check failed" \
  o13 w13 -- quantize --in nul --out o13 --work w13 --amax-file amax.json
! grep -qP '[\x00\x1b]' log || fail "nul-name: raw control bytes in the log"
rm -rf nul; cp -r src nul
$edit nul rename layers.0.attn.wq_b.weight 'layers.0.attn.wq_b\x00evil\x1b[31m.weight'
"$qf" inspect nul >log 2>&1 || true
grep -qF 'unexpected layers.0.attn.wq_b\x00evil\x1b[31m.weight' log || { cat log; fail "inspect: name not escaped"; }
! grep -qP '[\x00\x1b]' log || fail "inspect: raw control bytes on stdout"
echo "ok: nul-name: inspect prints the name escaped"
# What a shard file is when it is not a file: never "missing".
shard_kind() {  # name "message" setup-command
  rm -rf kind; cp -r src kind
  local f=kind/model-00002-of-00003.safetensors; rm "$f"
  eval "$3"
  refused "shard-$1" "shard file model-00002-of-00003.safetensors listed in model.safetensors.index.json $2" \
    o13 w13 -- quantize --in kind --out o13 --work w13 --amax-file amax.json
}
shard_kind loop "is a symlink loop" 'ln -s loop2 "$f"; ln -s model-00002-of-00003.safetensors kind/loop2'
shard_kind dir "is a directory, not a file" 'mkdir "$f"'
shard_kind fifo "is a FIFO (named pipe), not a file" 'mkfifo "$f"'
shard_kind dangling "is a dangling symlink (to /nonexistent/x)" 'ln -s /nonexistent/x "$f"'
mkfifo fifo.json
refused amax-fifo "fifo.json: cannot read it: it is a FIFO" o13 w13 \
  -- quantize --in src --out o13 --work w13 --amax-file fifo.json
rm -rf kind; cp -r src kind; rm kind/config.json; mkfifo kind/config.json
refused config-fifo "config.json: cannot read it: it is a FIFO" o13 w13 \
  -- quantize --in kind --out o13 --work w13 --amax-file amax.json
# Empty path options are refused, not taken as "not given" (--shard '' rebuilt every shard's
# neighbour, --calib '' calibrated on the synthetic set).
for opt in shard calib amax-file; do
  rc=0; "$qf" quantize --in src --out o13 --work w13 --export-only --$opt '' >log 2>&1 || rc=$?
  [ "$rc" = 2 ] || { cat log; fail "--$opt '': exit $rc"; }
  expect_msg "empty-$opt" log "--$opt is empty"
done
rc=0; "$qf" quantize --in src --out o13 --work '' >log 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -qF -- "--work is empty" log || { cat log; fail "--work '': exit $rc"; }
echo "ok: --shard/--calib/--amax-file/--work '' refused (exit 2)"

echo "reliability_runs e2e: all checks passed ($((SECONDS - start_s)) s)"
