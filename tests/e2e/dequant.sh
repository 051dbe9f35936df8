#!/usr/bin/env bash
# dequant end to end on a make-tiny native checkpoint: bit-identical output for 1..4 ranks,
# a consistent BF16 checkpoint, and clear failures (nothing left behind) on bad inputs.
# Env: QF_BIN (quantforge), QF_SOURCE_DIR (repo root); mpirun must allow root/oversubscribe.
set -euo pipefail
qf=${QF_BIN:?QF_BIN must point at the quantforge binary}
src_dir=${QF_SOURCE_DIR:?}
edit="python3 $src_dir/tests/e2e/st_edit.py"
tmp=$(mktemp -d /tmp/qf-dequant.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$qf" make-tiny --preset tiny --out "$tmp/src" --seed 3 --shards 3 --log-level warn

# 1. Same bytes for every rank count.
for np in 1 2 3 4; do
  mpirun -np $np "$qf" dequant --in "$tmp/src" --out "$tmp/out$np" --backend cpu \
    --chunk-mib 1 --log-level warn
done
for np in 2 3 4; do
  diff -r "$tmp/out1" "$tmp/out$np" >/dev/null || fail "dequant output with $np ranks differs from 1 rank"
done
echo "ok: identical output for 1..4 ranks"

# 2. A consistent BF16 checkpoint: no scales, weights BF16, index total_size right, config clean.
python3 - "$tmp/src" "$tmp/out1" <<'PY'
import json, os, struct, sys
src, out = sys.argv[1], sys.argv[2]
def headers(d):
    idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))
    tensors = {}
    for f in sorted(set(idx["weight_map"].values())):
        b = open(os.path.join(d, f), "rb").read()
        n = struct.unpack("<Q", b[:8])[0]
        for k, v in json.loads(b[8:8 + n]).items():
            if k != "__metadata__":
                tensors[k] = (v, f)
    return idx, tensors
sidx, s = headers(src)
oidx, o = headers(out)
assert not [k for k in o if k.endswith(".scale")], "scale tensors left in the output"
assert set(o) == {k for k in s if not k.endswith(".scale")}, "tensor sets differ"
for k, (v, f) in o.items():
    sv, sf = s[k]
    assert f == sf, f"{k}: shard {f} != source shard {sf}"
    if sv["dtype"] == "F8_E4M3":
        assert v["dtype"] == "BF16" and v["shape"] == sv["shape"], k
    elif sv["dtype"] == "I8" and k[:-len("weight")] + "scale" in s:
        assert v["dtype"] == "BF16" and v["shape"] == [sv["shape"][0], 2 * sv["shape"][1]], k
    else:
        assert v == {**sv, "data_offsets": v["data_offsets"]}, f"{k} changed: {v} vs {sv}"
total = sum(v["data_offsets"][1] - v["data_offsets"][0] for v, _ in o.values())
assert oidx["metadata"]["total_size"] == total, (oidx["metadata"], total)
assert oidx["weight_map"] == {k: f for k, (v, f) in o.items()}
cfg = json.load(open(os.path.join(out, "config.json")))
assert "quantization_config" not in cfg and cfg["model_type"] == "deepseek_v4", cfg.keys()
print("ok: BF16 checkpoint consistent,", len(o), "tensors")
PY

# 3. dequant(native) equals make-tiny --format bf16 of the same seed, tensor for tensor (the
#    generator defines its BF16 form as the exact dequantization of its native form).
"$qf" make-tiny --preset tiny --out "$tmp/bf16" --seed 3 --shards 2 --format bf16 --log-level warn
python3 - "$tmp/out1" "$tmp/bf16" <<'PY'
import json, os, struct, sys
def tensors(d):
    idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))
    out = {}
    for f in sorted(set(idx["weight_map"].values())):
        b = open(os.path.join(d, f), "rb").read()
        n = struct.unpack("<Q", b[:8])[0]
        for k, v in json.loads(b[8:8 + n]).items():
            if k != "__metadata__":
                s, e = v["data_offsets"]
                out[k] = (v["dtype"], v["shape"], b[8 + n + s:8 + n + e])
    return out
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
assert a.keys() == b.keys(), sorted(set(a) ^ set(b))[:5]
diff = [k for k in a if a[k] != b[k]]
assert not diff, f"{len(diff)} tensors differ, e.g. {diff[:3]}"
ca = json.load(open(os.path.join(sys.argv[1], "config.json")))
cb = json.load(open(os.path.join(sys.argv[2], "config.json")))
assert ca == cb, "config.json differs"
print("ok: dequant(native) == make-tiny bf16,", len(a), "tensors byte-identical")
PY

# 4. Bad inputs: clear error naming the problem, non-zero exit, nothing under the output name.
expect_failure() {  # name, expected message fragment, source dir, [ranks]
  local name=$1 want=$2 dir=$3 np=${4:-2}
  local out="$tmp/bad-$name"
  if mpirun -np "$np" "$qf" dequant --in "$dir" --out "$out" --backend cpu >"$tmp/log" 2>&1; then
    fail "$name: dequant succeeded"
  fi
  grep -q -- "$want" "$tmp/log" || { cat "$tmp/log" >&2; fail "$name: message lacks '$want'"; }
  [ ! -e "$out" ] || fail "$name: $out was created"
  [ ! -e "$out.partial" ] || fail "$name: $out.partial left behind"
  echo "ok: $name -> $(grep -m1 -o -- "$want.*" "$tmp/log" | cut -c1-100)"
}
bad() { rm -rf "$tmp/$1"; cp -r "$tmp/src" "$tmp/$1"; echo "$tmp/$1"; }

d=$(bad missing-scale); $edit "$d" drop layers.0.attn.wq_a.scale
expect_failure missing-scale "layers.0.attn.wq_a.scale is missing" "$d"
d=$(bad scale-shape); $edit "$d" transpose layers.0.attn.wo_a.scale
expect_failure scale-shape "layers.0.attn.wo_a.scale has shape" "$d"
d=$(bad unknown-dtype); $edit "$d" dtype layers.1.attn_norm.weight F9_E9M9
expect_failure unknown-dtype "unknown dtype" "$d"
d=$(bad truncated); shard=$($edit "$d" shard-of layers.2.attn.wq_b.weight); $edit "$d" truncate "$shard" -100
expect_failure truncated "$shard" "$d" 3

mkdir -p "$tmp/occupied" && touch "$tmp/occupied/keep"
if mpirun -np 2 "$qf" dequant --in "$tmp/src" --out "$tmp/occupied" >"$tmp/log" 2>&1; then
  fail "dequant into a non-empty directory succeeded"
fi
grep -q "not empty" "$tmp/log" || { cat "$tmp/log" >&2; fail "non-empty output: unclear message"; }
[ -f "$tmp/occupied/keep" ] && [ ! -e "$tmp/occupied.partial" ] || fail "non-empty output touched"
echo "ok: non-empty output refused"
echo "dequant e2e: all checks passed"
