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

# ---- defect 9: source data changed after a partial run -------------------------------------
# A calibrated run stopped (SIGTERM) after its first layers; then one byte of a tensor changes in
# place (same size). --resume and --export-only must refuse, naming the file, also with the
# mtime set back (the ctime tells) and with --verify-source (the content digest tells); an
# unchanged copy of the source (new inodes and dates) is accepted with --verify-source only.
rank_pids() {  # work
  local p
  for p in $(pgrep -f -- "--work $1( |\$)"); do
    [ "$(ps -o comm= -p "$p" 2>/dev/null)" = quantforge ] && echo "$p"
  done
}
cp -r src s9; cp -r src s9copy
C9=(quantize --out o9 --work w9 --samples 4 --seq-len 32)
mpirun -np 2 "$qf" "${C9[@]}" --in s9 --log-level warn >log9 2>&1 &
run9=$!
for i in $(seq 1500); do [ -e w9/rank-0/layer-0001.calib.h5 ] && break; sleep 0.01; done
pids=$(rank_pids w9); [ -z "$pids" ] || kill -TERM $pids 2>/dev/null || true
wait "$run9" || true
rm -rf o9
python3 - w9 <<'PY' || fail "source identity not recorded in the stores"
import json, sys
files = {}
for r in (0, 1):
    for f in json.load(open(f"{sys.argv[1]}/rank-{r}/manifest.json"))["source"]["files"]:
        files.setdefault(f["name"], set()).add(f.get("xxh64", f.get("tensors_xxh64")))
assert "config.json" in files and "model-00002-of-00003.safetensors" in files, files
PY
shard9=$($edit s9 shard-of layers.0.attn.wq_b.weight)
mtime9=$(stat -c %y "s9/$shard9")
$edit s9 poke layers.0.attn.wq_b.weight 0 0x55
refused changed-resume "the source checkpoint changed since this store's run recorded it|$shard9: modified|--verify-source" \
  o9 "" -- "${C9[@]}" --in s9 --resume
refused changed-export "$shard9: modified" o9 "" -- "${C9[@]}" --in s9 --export-only
touch -d "$mtime9" "s9/$shard9"
refused changed-mtime-restored "$shard9: changed with its mtime kept or restored (ctime" o9 "" \
  -- "${C9[@]}" --in s9 --resume
hashed=$(python3 -c 'import json, sys; print(sum(1 for r in (0, 1) for f in json.load(open(f"w9/rank-{r}/manifest.json"))["source"]["files"] if f["name"] == sys.argv[1] and ("xxh64" in f or "tensors_xxh64" in f)))' "$shard9")
if [ "$hashed" != 0 ]; then
  refused changed-verify "source file(s) differ from what the store's run read|$shard9: content xxh64" \
    o9 "" -- "${C9[@]}" --in s9 --resume --verify-source
fi
refused copy-unverified "replaced by another file (inode" o9 "" -- "${C9[@]}" --in s9copy --resume
# A copy can be proven unchanged only by digests: the stopped run may not have hashed every file
# yet (each rank hashes its share in the background), and then --verify-source must refuse.
unhashed=$(python3 -c 'import json
files = {}
for r in (0, 1):
    for f in json.load(open(f"w9/rank-{r}/manifest.json"))["source"]["files"]:
        files[f["name"]] = files.get(f["name"], False) or "xxh64" in f or "tensors_xxh64" in f
print(sum(1 for v in files.values() if not v))')
run 2 "${C9[@]}" --in s9copy --resume --verify-source
if [ "$unhashed" = 0 ]; then
  [ "$rc" = 0 ] || { cat log >&2; fail "an unchanged copy with --verify-source: exit $rc"; }
  mpirun -np 2 "$qf" quantize --in src --out o9ref --work w9ref --samples 4 --seq-len 32 --log-level warn
  diff -r o9ref o9 >/dev/null || fail "resume on a verified copy differs from an uninterrupted run"
  copy_result="a verified copy resumes to identical bytes"
else
  [ "$rc" != 0 ] && grep -q "have no content digest in the store" log \
    || { cat log >&2; fail "a copy with $unhashed unhashed file(s) accepted or unclear: exit $rc"; }
  copy_result="a copy with $unhashed file(s) the stopped run had not hashed yet is refused"
fi
echo "ok: defect 9: changed source refused on --resume/--export-only (digest of $shard9 recorded: $hashed); $copy_result"

# Issue 19: a finished run takes every source file's content digest from its own reads (no second
# pass); --verify-source recomputes them from the files, so a copy of the source (new inodes)
# then resumes to identical bytes.
run 2 quantize --in src --out o19 --work w19 --samples 4 --seq-len 32
[ "$rc" = 0 ] || { cat log >&2; fail "issue 19: a plain run: exit $rc"; }
python3 - w19 src <<'PY' || fail "issue 19: a finished run lacks a source content digest"
import json, os, sys
files = {}
for r in (0, 1):
    for f in json.load(open(f"{sys.argv[1]}/rank-{r}/manifest.json"))["source"]["files"]:
        d = f.get("tensors_xxh64") if f["name"].endswith(".safetensors") else f.get("xxh64")
        if d: files.setdefault(f["name"], set()).add(d)
names = sorted(n for n in os.listdir(sys.argv[2]))
missing = [n for n in names if n not in files]
assert not missing, f"no digest for {missing}"
assert all(len(v) == 1 for v in files.values()), files
PY
cp -r src s19copy
run 2 quantize --in s19copy --out o19b --work w19 --samples 4 --seq-len 32 --resume --verify-source
[ "$rc" = 0 ] || { cat log >&2; fail "issue 19: a verified copy of the source: exit $rc"; }
diff -r o19 o19b >/dev/null || fail "issue 19: the verified copy's export differs"
echo "ok: issue 19: every source digest recorded from the run's reads; --verify-source on a copy agrees"

# ---- defect 8: --export-only --shard with another run's store ------------------------------
amax_file amax2.json 0.5
run 2 quantize --in src --out o8a --work w8a --amax-file amax.json
[ "$rc" = 0 ] || { cat log >&2; fail "defect 8: run A"; }
run 2 quantize --in src --out o8b --work w8b --amax-file amax2.json
[ "$rc" = 0 ] || { cat log >&2; fail "defect 8: run B"; }
shard8=$($edit o8a shard-of layers.0.ffn.experts.0.w1.input_scale)
snap() { (cd o8a && find . -type f -exec sha256sum {} + | LC_ALL=C sort); }
snap >o8a.sum
refused shard-other-store "the work store in w8b is not the one o8a was exported from|was not changed" \
  "" "" -- quantize --in src --out o8a --work w8b --amax-file amax2.json --export-only --shard "$shard8"
snap | diff -q o8a.sum - >/dev/null || fail "shard-other-store: o8a changed"
mv o8a.quantization_report.json report8.json  # no record: the rebuilt shard's checksum decides
refused shard-other-store-noreport "the rebuilt shard's xxh64|differs from the one|was not changed" \
  "" "" -- quantize --in src --out o8a --work w8b --amax-file amax2.json --export-only --shard "$shard8"
snap | diff -q o8a.sum - >/dev/null || fail "shard-other-store-noreport: o8a changed"
mv report8.json o8a.quantization_report.json
run 2 quantize --in src --out o8a --work w8a --amax-file amax.json --export-only --shard "$shard8"
[ "$rc" = 0 ] || { cat log >&2; fail "defect 8: --shard with the right store"; }
snap | diff -q o8a.sum - >/dev/null || fail "defect 8: --shard with the right store changed bytes"
echo "ok: defect 8: --shard refuses another run's store (report record, then checksum) and leaves OUT as it was"

# ---- defect 12: validate --work and extra files --------------------------------------------
v() { rc=0; "$qf" validate --source src --out "$@" --log-level warn >log 2>&1 || rc=$?; }
v o8a --work w8a
[ "$rc" = 0 ] || { cat log >&2; fail "validate --work of its own store"; }
expect_msg validate-work log "input scales vs the work store's calibration:" "all equal"
v o8a --work w8b
[ "$rc" != 0 ] || { cat log >&2; fail "validate --work of another run's store passed"; }
expect_msg validate-other-work log "--work w8b is from another run" "provenance xxh64"
# No checksums file: a changed unpaired input_scale (w2's) is caught through --work alone.
rm -rf o12; cp -r o8a o12; cp o8a.quantization_report.json o12.quantization_report.json
rm o12/quantforge_checksums.json
python3 - o12 layers.0.ffn.experts.0.w2.input_scale <<'PY'
import json, struct, sys, glob
for path in glob.glob(f"{sys.argv[1]}/*.safetensors"):
    with open(path, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        if sys.argv[2] in header:
            begin = header[sys.argv[2]]["data_offsets"][0]
            f.seek(8 + n + begin); value = struct.unpack("<f", f.read(4))[0]
            f.seek(8 + n + begin); f.write(struct.pack("<f", value * 2))
PY
v o12
[ "$rc" = 0 ] || { cat log >&2; fail "validate without --work should pass a doubled unpaired scale (nothing to compare)"; }
v o12 --work w8a
[ "$rc" != 0 ] || { cat log >&2; fail "validate --work missed a changed unpaired input_scale"; }
expect_msg validate-scale log "layers.0.ffn.experts.0.w2.input_scale is" "the work store's calibration gives"
# Extra files in OUT fail, named.
rm -rf o12; cp -r o8a o12
echo stray >o12/notes.txt; mkdir o12/sub; echo x >o12/sub/left.bin
v o12
[ "$rc" != 0 ] || { cat log >&2; fail "validate passed extra files"; }
expect_msg validate-extra log "notes.txt is in the output but is no part of the export" "sub/left.bin"
echo "ok: defect 12: validate --work refuses another run's store, checks unpaired input scales without checksums; extra files fail"

echo "reliability_runs e2e: all checks passed ($((SECONDS - start_s)) s)"
