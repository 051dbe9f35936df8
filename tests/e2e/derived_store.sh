#!/usr/bin/env bash
# The work store leaves the FP4 experts' packed weights in the source (issue 19, derived tensors):
# the run says how much it left there and its quant files are small; --export-only and --shard
# rebuild the run's bytes from the stores and the source; a source changed after the commit
# (one byte of one expert weight, size and mtime kept) is refused by --export-only, --shard and
# --resume, naming the file, with nothing left behind.
set -euo pipefail
qf=${QF_BIN:?QF_BIN must point at the quantforge binary}
tmp=$(mktemp -d /tmp/qf-derived.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
q() { "$qf" quantize --backend cpu "$@"; }

"$qf" make-tiny --preset tiny --out "$tmp/src" --seed 21 --shards 3 --log-level warn
python3 - "$tmp/src/config.json" "$tmp/amax.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
json.dump({f"layers.{l}.ffn.experts.{e}.{w}": 0.5 + 0.1 * l + 0.01 * e
           for l in range(cfg["num_hidden_layers"]) for e in range(cfg["n_routed_experts"])
           for w in ("w1", "w2", "w3")}, open(sys.argv[2], "w"))
PY

# 1. A run on 2 ranks: the summary counts the derived bytes; the quant files hold the rest.
OMPI_MCA_rmaps_base_oversubscribe=1 mpirun -np 2 "$qf" quantize --log-level info --backend cpu \
  --in "$tmp/src" --out "$tmp/out" --work "$tmp/work" --amax-file "$tmp/amax.json" >"$tmp/run.log" 2>&1 \
  || { cat "$tmp/run.log"; fail "the run failed"; }
line=$(grep "work store:" "$tmp/run.log") || fail "no work store line in the summary"
python3 - "$tmp/out" "$tmp/work" "$line" <<'PY'
import glob, json, os, re, struct, sys
out, work, line = sys.argv[1:]
m = re.search(r"; ([\d.]+) (B|KB|MB|GB) of tensors left in the source", line)
assert m, line
left = float(m.group(1)) * {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9}[m.group(2)]
packed = 0  # the output's packed expert weights: what the stores left in the source
for f in glob.glob(os.path.join(out, "*.safetensors")):
    raw = open(f, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    for name, info in json.loads(raw[8:8 + n]).items():
        if re.match(r"layers\.\d+\.ffn\.experts\.\d+\.w[123]\.weight$", name):
            packed += info["data_offsets"][1] - info["data_offsets"][0]
quant = sum(os.path.getsize(p) for p in glob.glob(os.path.join(work, "rank-*", "*.quant.h5")))
# The line is rank 0's share (packed weights and their block scales, packed / 8 more); the quant
# files of both ranks hold neither, only the other NVFP4 targets and the per-tensor scales.
assert 0 < left < packed, (left, packed)
assert quant < packed / 2, (quant, packed)
print(f"left in the source by rank 0: {left:.0f} B of {packed} B packed; quant files {quant} B")
PY
echo "ok: the stores left the packed expert weights and block scales in the source ($line)"

# 2. --export-only (2 ranks) and --shard (1 process) rebuild the same bytes.
OMPI_MCA_rmaps_base_oversubscribe=1 mpirun -np 2 "$qf" quantize --log-level warn --backend cpu \
  --in "$tmp/src" --out "$tmp/eo" --work "$tmp/work" --amax-file "$tmp/amax.json" --export-only
diff -r "$tmp/out" "$tmp/eo" >/dev/null || fail "--export-only differs from the run"
shard=$(cd "$tmp/out" && ls model-*.safetensors | tail -1)
cp -r "$tmp/out" "$tmp/one"
printf 'garbage' | dd of="$tmp/one/$shard" bs=1 seek=4096 conv=notrunc status=none
q --log-level error --in "$tmp/src" --out "$tmp/one" --work "$tmp/work" --amax-file "$tmp/amax.json" \
  --export-only --shard "$shard"
diff -r "$tmp/out" "$tmp/one" >/dev/null || fail "--shard $shard differs from the run"
echo "ok: --export-only and --shard rebuild the run's bytes from the stores and the source"

# 3. One byte of an expert weight changes; size and mtime stay, so only the content says so.
target=layers.1.ffn.experts.2.w3.weight
file=$(python3 "$(dirname "$0")/st_edit.py" "$tmp/src" shard-of "$target")
python3 - "$tmp/src/$file" "$target" <<'PY'
import json, os, struct, sys
path, name = sys.argv[1:]
st = os.stat(path)
with open(path, "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    begin = json.loads(f.read(n))[name]["data_offsets"][0]
    f.seek(8 + n + begin + 5)
    b = f.read(1)[0]
    f.seek(8 + n + begin + 5)
    f.write(bytes([b ^ 0x11]))  # never 8 <-> 0: the cleared code changes too
os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
PY
cp -r "$tmp/out" "$tmp/bad-shard"  # --shard rebuilds a file of an existing output
for mode in export-only shard; do
  extra=(--export-only); [ $mode = shard ] && extra=(--export-only --shard "$file")
  rc=0
  OMPI_MCA_rmaps_base_oversubscribe=1 mpirun -np $([ $mode = shard ] && echo 1 || echo 2) "$qf" \
    quantize --log-level warn --backend cpu --in "$tmp/src" --out "$tmp/bad-$mode" --work "$tmp/work" \
    --amax-file "$tmp/amax.json" "${extra[@]}" >"$tmp/bad.log" 2>&1 || rc=$?
  [ $rc != 0 ] || fail "$mode: an export over a changed source succeeded"
  # The source check refuses it first (ctime moved); the derived tensor's XXH64 is the check
  # behind it (tests/unit/test_source_derived.cpp reaches it directly).
  for want in "$file" "changed"; do
    grep -qF -- "$want" "$tmp/bad.log" || fail "$mode: '$want' not in: $(cat "$tmp/bad.log")"
  done
  if [ $mode = shard ]; then  # the existing output untouched, no temp file beside it
    diff -r "$tmp/out" "$tmp/bad-shard" >/dev/null || fail "shard: the output changed: $(ls -a "$tmp/bad-shard")"
  else
    [ ! -e "$tmp/bad-$mode" ] && [ ! -e "$tmp/bad-$mode.partial" ] \
      || fail "$mode: left $(ls -d "$tmp/bad-$mode"* 2>/dev/null)"
  fi
  echo "ok: $mode over a changed source refused (exit $rc): $(grep -m1 "error" "$tmp/bad.log" | cut -c1-150)"
done

# 4. A resume over the changed source: the committed layer's export refuses the same way.
rc=0
OMPI_MCA_rmaps_base_oversubscribe=1 mpirun -np 2 "$qf" quantize --log-level warn --backend cpu \
  --in "$tmp/src" --out "$tmp/res" --work "$tmp/work" --amax-file "$tmp/amax.json" --resume \
  >"$tmp/res.log" 2>&1 || rc=$?
[ $rc != 0 ] || fail "--resume over a changed source succeeded"
grep -qF "$file" "$tmp/res.log" || fail "--resume: $file not named: $(cat "$tmp/res.log")"
[ ! -e "$tmp/res" ] && [ ! -e "$tmp/res.partial" ] || fail "--resume left an output behind"
echo "ok: --resume over a changed source refused (exit $rc)"
