#!/usr/bin/env bash
# Bad inputs for quantize (and dequant where the output side matters): corrupted safetensors
# (header offsets overlapping / out of range, header length, truncation, unknown dtype, missing
# tensor, wrong scale shape), config.json values out of range (also for inspect and plan), NaN
# in an FP4 expert's UE8M0 scale and in an FP8 weight, an unwritable output parent, a full file
# system (output and work store), a rank killed mid-run, a corrupted or stale HDF5 work store.
# Every case must fail with a non-zero exit, a message naming the file/tensor/rank, no OUT and no
# OUT.partial, and no half-written store files (every layer-*.h5 under WORK is listed in its
# rank's manifest.json; no *.tmp.* file anywhere).
# Cases that need mount(2) (read-only and full tmpfs) print SKIP where mounting is not allowed.
# Env: QF_BIN (quantforge), QF_SOURCE_DIR (repo root); mpirun must allow root/oversubscribe.
set -euo pipefail
qf=${QF_BIN:?QF_BIN must point at the quantforge binary}
src_dir=${QF_SOURCE_DIR:?}
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1}
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
# mpirun waits odls_base_sigkill_timeout (1 s) between SIGTERM and SIGKILL of the other ranks
# after one exits non-zero; the refusals below need no grace period (the rank-dies case keeps the
# default, as users get it).
export OMPI_MCA_odls_base_sigkill_timeout=${OMPI_MCA_odls_base_sigkill_timeout:-0}
edit="python3 $src_dir/tests/e2e/st_edit.py"
tmp=$(mktemp -d /tmp/qf-bad.XXXXXX)
mounts=()
cleanup() {
  local m
  for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  chmod -R u+w "$tmp" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
start_s=$SECONDS

"$qf" make-tiny --preset tiny --out "$tmp/src" --seed 5 --shards 3 --log-level warn
# Known amax for every module (no calibration: fast, and the failing tensor is the edited one).
python3 - "$tmp/src/config.json" "$tmp" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1])); out = sys.argv[2]
experts, full = {}, {}
for l in range(cfg["num_hidden_layers"]):
    for e in range(cfg["n_routed_experts"]):
        for w in ("w1", "w2", "w3"):
            experts[f"layers.{l}.ffn.experts.{e}.{w}"] = 0.5 + 0.25 * l + 0.01 * e
    for m in ("attn.wq_a", "attn.wq_b", "attn.wkv", "attn.wo_a", "attn.wo_b", "attn.indexer.wq_b",
              "ffn.shared_experts.w1", "ffn.shared_experts.w2", "ffn.shared_experts.w3"):
        full[f"layers.{l}.{m}"] = 2.0 + l
# Only modules of the checkpoint: sliding-window layers have no indexer (keys must be modules).
import os
weights = json.load(open(os.path.join(os.path.dirname(sys.argv[1]), "model.safetensors.index.json")))["weight_map"]
full = {k: v for k, v in full.items() if k + ".weight" in weights}
full.update(experts)
json.dump(experts, open(f"{out}/amax.json", "w")); json.dump(full, open(f"{out}/amax_full.json", "w"))
PY

# No half-written store files: every layer-*.h5 of WORK/rank-R is committed in its manifest.
check_store() {  # work
  python3 - "$1" <<'PY' || return 1
import glob, json, os, sys
for rank in sorted(glob.glob(os.path.join(sys.argv[1], "rank-*"))):
    m = os.path.join(rank, "manifest.json")
    listed = {f["file"] for f in json.load(open(m))["files"]} if os.path.exists(m) else set()
    extra = sorted(set(f for f in os.listdir(rank) if f.startswith("layer-")) - listed)
    assert not extra, f"{rank}: uncommitted store files {extra}"
PY
}
# The checks after a refused run: OUT and OUT.partial absent, no temp file, store consistent.
check_clean() {  # name out work
  [ ! -e "$2" ] || fail "$1: $2 was created"
  [ ! -e "$2.partial" ] || fail "$1: $2.partial left behind"
  local left; left=$(find "$tmp" -name '*.tmp.*' 2>/dev/null | head -3)
  [ -z "$left" ] || fail "$1: temp files left behind: $left"
  [ -z "$3" ] || [ ! -d "$3" ] || check_store "$3" || fail "$1: half-written store files in $3"
}
# The log holds every fragment (fixed strings), else FAIL with the log.
expect_msg() {  # name log fragment...
  local name=$1 log=$2 f; shift 2
  for f in "$@"; do
    grep -qF -- "$f" "$log" || { cat "$log" >&2; fail "$name: message lacks '$f'"; }
  done
}
# Runs quantize (2 ranks, 60 s limit) expecting a refusal naming every fragment.
qfail() {  # name "fragment1|fragment2|..." quantize-args... (--out/--work default to tmp/NAME.*)
  local name=$1 want=$2; shift 2
  local out=$tmp/$name.out work=$tmp/$name.work rc=0 frags
  local args=("$@")
  [[ " ${args[*]} " == *" --out "* ]] || args+=(--out "$out")
  [[ " ${args[*]} " == *" --work "* ]] || args+=(--work "$work")
  for ((i = 0; i < ${#args[@]}; i++)); do
    [ "${args[i]}" = --out ] && out=${args[i + 1]}
    [ "${args[i]}" = --work ] && work=${args[i + 1]}
  done
  timeout 60 mpirun -np 2 "$qf" quantize --log-level warn "${args[@]}" >"$tmp/log" 2>&1 || rc=$?
  [ "$rc" != 0 ] || fail "$name: quantize succeeded"
  [ "$rc" != 124 ] || fail "$name: quantize hung (killed after 60 s)"
  ! grep -q "Segmentation fault\|signal 11\|signal 6 " "$tmp/log" || { cat "$tmp/log" >&2; fail "$name: crashed"; }
  IFS='|' read -r -a frags <<<"$want"
  expect_msg "$name" "$tmp/log" "${frags[@]}"
  check_clean "$name" "$out" "$work"
  echo "ok: $name (exit $rc) -> $(grep -m1 'error:' "$tmp/log" | sed 's/^.*error: //' | cut -c1-110)"
}
bad() { rm -rf "$tmp/$1"; cp -r "$tmp/src" "$tmp/$1"; echo "$tmp/$1"; }
A=(--amax-file "$tmp/amax.json")

# 1. Corrupted safetensors.
d=$(bad overlap); t=layers.0.attn.wq_b.weight; s=$($edit "$d" shard-of $t); $edit "$d" shift $t -4
qfail overlap "$s: tensor '$t': data_offsets|overlap tensor" --in "$d" "${A[@]}"
d=$(bad range); t=layers.3.ffn.experts.7.w3.scale; s=$($edit "$d" shard-of $t); $edit "$d" shift $t 100000000
qfail offsets-out-of-range "$s: tensor '$t': data_offsets|out of range" --in "$d" "${A[@]}"
d=$(bad hlen); s=model-00002-of-00003.safetensors; $edit "$d" header-len $s 1099511627776
qfail header-length "$s: bad header length" --in "$d" "${A[@]}"
d=$(bad truncated); t=layers.2.attn.wq_b.weight; s=$($edit "$d" shard-of $t); $edit "$d" truncate "$s" -100
qfail truncated "$s: tensor|out of range" --in "$d" "${A[@]}"
d=$(bad dtype); t=layers.1.ffn.experts.2.w1.weight; s=$($edit "$d" shard-of $t); $edit "$d" dtype $t F9_E9M9
qfail unknown-dtype "$s: tensor '$t': unknown dtype 'F9_E9M9'" --in "$d" "${A[@]}"
d=$(bad missing); $edit "$d" drop layers.1.ffn.experts.2.w3.weight
qfail missing-tensor "tensor layers.1.ffn.experts.2.w3.weight is missing" --in "$d" "${A[@]}"
d=$(bad scale-shape); $edit "$d" transpose layers.1.ffn.experts.2.w1.scale
qfail scale-shape "tensor layers.1.ffn.experts.2.w1.scale is F8_E8M0 [8, 96] but config.json implies" \
  --in "$d" "${A[@]}"

# 2. config.json values out of range (issue 18 defect 3): inspect --check, plan --in and quantize
#    each refuse the edited config within seconds, naming the file, the field, the value and the
#    reason, and create nothing (no plan report, no OUT, no WORK).
cfg_fail() {  # name fragment python-statement (edits `cfg`, the parsed config.json)
  local name=cfg-$1 want=$2 d rc t0=$SECONDS cmd
  d=$(bad "$name")
  python3 - "$d/config.json" "$3" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
exec(sys.argv[2])
json.dump(cfg, open(sys.argv[1], "w"), indent=2)
PY
  for cmd in inspect plan; do
    rc=0
    if [ $cmd = inspect ]; then
      timeout 20 "$qf" inspect --check --totals-only "$d" >"$tmp/log" 2>&1 || rc=$?
    else
      timeout 20 "$qf" plan --in "$d" --json "$tmp/$name.plan.json" >"$tmp/log" 2>&1 || rc=$?
    fi
    [ "$rc" != 0 ] && [ "$rc" != 124 ] || { cat "$tmp/log" >&2; fail "$name: $cmd exit $rc"; }
    expect_msg "$name $cmd" "$tmp/log" "$want"
  done
  [ ! -e "$tmp/$name.plan.json" ] || fail "$name: plan wrote its report"
  qfail "$name" "$want" --in "$d" "${A[@]}"
  [ $((SECONDS - t0)) -le 20 ] || fail "$name: refusals took $((SECONDS - t0)) s"
}
cfg_fail experts "config.json: n_routed_experts = 2000000000 exceeds the limit 65536" \
  'cfg["n_routed_experts"] = 2000000000'
cfg_fail mtp "config.json: num_nextn_predict_layers = 2147483647 exceeds the limit 64" \
  'cfg["num_nextn_predict_layers"] = 2**31 - 1'
cfg_fail sinkhorn "config.json: hc_sinkhorn_iters = 2147483647 exceeds the limit 1024" \
  'cfg["hc_sinkhorn_iters"] = 2**31 - 1'
cfg_fail ratio "config.json: compress_ratios[3] = 4294967300 must be 0, 4 or 128" \
  'cfg["compress_ratios"][3] = 2**32 + 4'
cfg_fail swiglu "config.json: swiglu_limit = -1 must be > 0" 'cfg["swiglu_limit"] = -1'
cfg_fail rope-factor "config.json: rope_scaling.factor = 0 must be > 0" \
  'cfg["rope_scaling"]["factor"] = 0'
cfg_fail float-int "config.json: hidden_size = 256.0 must be an integer" \
  'cfg["hidden_size"] = 256.0'
cfg_fail negative "config.json: num_hidden_layers = -4 is below the minimum 1" \
  'cfg["num_hidden_layers"] = -4'

# 3. NaN in the weights: a UE8M0 block scale 0xFF of an FP4 expert (recipe experts) and an E4M3
#    code 0x7F in an FP8 attention weight (recipe full). Stores committed before the refusal stay.
d=$(bad nan-scale); $edit "$d" poke layers.2.ffn.experts.5.w2.scale 7 0xFF
qfail nan-expert-scale "tensor layers.2.ffn.experts.5.w2.weight has|NaN/Inf" --in "$d" "${A[@]}"
d=$(bad nan-fp8); $edit "$d" poke layers.1.attn.wo_b.weight 100 0x7F
qfail nan-fp8-weight "tensor layers.1.attn.wo_b.weight has 1 NaN/Inf" --in "$d" \
  --amax-file "$tmp/amax_full.json" --recipe full

# 4. Output parent not writable. Root ignores mode bits, so the read-only case uses a read-only
#    tmpfs then (SKIP if mounting is not allowed); a regular file where a directory is expected
#    works everywhere.
mkdir -p "$tmp/ro"; chmod 555 "$tmp/ro"
if ! touch "$tmp/ro/probe" 2>/dev/null; then
  qfail unwritable-parent "output $tmp/ro/out|is not writable" --in "$tmp/src" "${A[@]}" --out "$tmp/ro/out"
elif mount -t tmpfs -o ro,size=1m tmpfs "$tmp/ro" 2>/dev/null; then
  mounts+=("$tmp/ro")
  qfail unwritable-parent-rofs "output $tmp/ro/out|is not writable" --in "$tmp/src" "${A[@]}" --out "$tmp/ro/out"
else
  echo "SKIP: unwritable-parent: running as root (mode bits ignored) and mount is not permitted"
fi
echo data >"$tmp/afile"
qfail parent-is-a-file "output $tmp/afile/out" --in "$tmp/src" "${A[@]}" --out "$tmp/afile/out"

# 5. ENOSPC: the output (6 MB) on a 2 MB tmpfs, for quantize and dequant; the work stores on a
#    200 KB tmpfs (layer files fill it; HDF5 used to segfault at exit after the failed close;
#    the quant files are ~85 KB each since derived tensors stay in the source).
mkdir -p "$tmp/small" "$tmp/smallw"
if mount -t tmpfs -o size=2m tmpfs "$tmp/small" 2>/dev/null; then
  mounts+=("$tmp/small")
  qfail enospc-output "$tmp/small/out.partial/model-|No space left on device" --in "$tmp/src" "${A[@]}" \
    --out "$tmp/small/out"
  [ -z "$(ls -A "$tmp/small")" ] || fail "enospc-output: files left on the full file system: $(ls -A "$tmp/small")"
  rc=0; timeout 60 mpirun -np 2 "$qf" dequant --in "$tmp/src" --out "$tmp/small/dq" --log-level warn \
    >"$tmp/log" 2>&1 || rc=$?
  [ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "enospc-dequant: exit $rc"
  expect_msg enospc-dequant "$tmp/log" "$tmp/small/dq.partial/model-" "No space left on device"
  check_clean enospc-dequant "$tmp/small/dq" ""
  [ -z "$(ls -A "$tmp/small")" ] || fail "enospc-dequant: files left: $(ls -A "$tmp/small")"
  echo "ok: enospc-dequant (exit $rc)"
  mount -t tmpfs -o size=200k tmpfs "$tmp/smallw"; mounts+=("$tmp/smallw")
  qfail enospc-work "$tmp/smallw/w/rank-|No space left on device" --in "$tmp/src" "${A[@]}" \
    --work "$tmp/smallw/w"
else
  echo "SKIP: enospc-output, enospc-dequant, enospc-work: mount -t tmpfs is not permitted here"
fi

# 5b. Issue 18 defect 6: an empty mount point as --out cannot be replaced by a rename, so the
#     export is staged inside it (and streamed there from the job's start) and moved in entry by
#     entry: the result equals an export into a plain directory, with nothing of the staging left.
mkdir -p "$tmp/mnt"
if mount -t tmpfs -o size=64m tmpfs "$tmp/mnt" 2>/dev/null; then
  mounts+=("$tmp/mnt")
  for o in mnt plain; do
    mpirun -np 2 "$qf" quantize --log-level warn --in "$tmp/src" "${A[@]}" --out "$tmp/$o" \
      --work "$tmp/$o.work" >"$tmp/log" 2>&1 || { cat "$tmp/log" >&2; fail "mount-point-out: $o run failed"; }
  done
  diff -r "$tmp/plain" "$tmp/mnt" >/dev/null || fail "mount-point-out: differs from the plain export"
  echo "ok: mount-point-out: staged inside the mount point, moved in, equal to a plain export"
else
  echo "SKIP: mount-point-out: mount -t tmpfs is not permitted here"
fi

# 6. A rank killed (kill -9) during calibration: mpirun ends quickly, non-zero, naming the rank.
work=$tmp/kill.work out=$tmp/kill.out
OMPI_MCA_odls_base_sigkill_timeout=1 timeout 60 mpirun -np 2 "$qf" quantize --log-level warn \
  --in "$tmp/src" --out "$out" --work "$work" --samples 32 --seq-len 256 >"$tmp/log" 2>&1 &
run_pid=$!
for _ in $(seq 3000); do [ -e "$work/rank-0/layer-0000.calib.h5" ] && break; sleep 0.01; done
rank_pids() { local p; for p in $(pgrep -f -- "--work $work( |\$)"); do
  [ "$(ps -o comm= -p "$p" 2>/dev/null)" = quantforge ] && echo "$p"; done; true; }
victim=$(rank_pids | tail -1)
[ -n "$victim" ] || fail "rank-dies: no rank process found"
t0=$SECONDS; kill -9 "$victim"
rc=0; wait "$run_pid" 2>/dev/null || rc=$?; dt=$((SECONDS - t0))
[ "$rc" != 124 ] || fail "rank-dies: mpirun hung after a rank was killed"
[ "$rc" != 0 ] || fail "rank-dies: mpirun exited 0"
[ "$dt" -le 10 ] || fail "rank-dies: mpirun took $dt s to stop"
expect_msg rank-dies "$tmp/log" "exited on signal 9"
grep -q "process rank [01] " "$tmp/log" || { cat "$tmp/log" >&2; fail "rank-dies: the rank is not named"; }
for _ in $(seq 50); do [ -z "$(rank_pids)" ] && break; sleep 0.1; done
[ -z "$(rank_pids)" ] || fail "rank-dies: rank processes survive: $(rank_pids)"
# The killed job streamed layers into OUT.partial; a SIGKILLed rank 0 cannot remove it, but the
# marker beside it must be there, so that the next run removes it (reliability_signals checks
# that a --resume does).
if [ -e "$out.partial" ]; then
  [ -e "$out.partial.marker" ] || fail "rank-dies: $out.partial left without its marker"
  rm -rf "$out.partial" "$out.partial.marker" "$out.partial.lock"
fi
check_clean rank-dies "$out" "$work"
echo "ok: rank-dies (exit $rc after ${dt} s) -> $(grep -m1 'exited on signal' "$tmp/log")"

# 7. Work stores: a corrupted committed layer file, a corrupted manifest, a stale store.
C=(--in "$tmp/src" --samples 4 --seq-len 64)
mpirun -np 2 "$qf" quantize --log-level warn "${C[@]}" --out "$tmp/good" --work "$tmp/good.work"
cp -r "$tmp/good.work" "$tmp/corrupt.work"
f=$tmp/corrupt.work/rank-0/layer-0001.quant.h5
printf '\x5a' | dd of="$f" bs=1 seek=$(( $(stat -c %s "$f") / 2 )) conv=notrunc status=none
qfail corrupt-h5-resume "$f: checksum mismatch|corrupted" "${C[@]}" --work "$tmp/corrupt.work" --resume
qfail corrupt-h5-export "$f: checksum mismatch|corrupted" "${C[@]}" --work "$tmp/corrupt.work" --export-only
cp -r "$tmp/good.work" "$tmp/manifest.work"
printf 'xx' | dd of="$tmp/manifest.work/rank-1/manifest.json" bs=1 seek=30 conv=notrunc status=none
qfail corrupt-manifest "$tmp/manifest.work/rank-1/manifest.json: manifest checksum mismatch" \
  "${C[@]}" --work "$tmp/manifest.work" --resume
# writer.lock's holder record names the last process that took the lock: not store data.
store_sums() { (cd "$1" && md5sum $(ls -d */* | grep -v '/writer.lock$')); }
sums=$(store_sums "$tmp/good.work")
qfail stale-store "$tmp/good.work/rank-0: the existing rank store was written by a different run|calibration.samples: 4 vs 5" \
  --in "$tmp/src" --samples 5 --seq-len 64 --work "$tmp/good.work" --resume
[ "$sums" = "$(store_sums "$tmp/good.work")" ] || fail "stale-store: the refused resume changed the store"

echo "bad_inputs e2e: all checks passed ($((SECONDS - start_s)) s)"
