#!/usr/bin/env bash
# quantize --weight-scale on a make-tiny checkpoint (CPU backend, --recipe full, token
# calibration): the default is max, byte for byte what an explicit `max` writes, with no trace in
# the export; mse and gptq (2 ranks) change only the requantized (non-expert) targets' weight,
# weight_scale and weight_scale_2, keep every cast expert tensor exact, name the method in
# hf_quant_config.json and pass validate; the method is part of the run's identity; gptq with
# --amax-file, any non-max method with --backend cuda and unknown names are refused.
set -euo pipefail
qf=${QF_BIN:?QF_BIN must point at the quantforge binary}
tmp=$(mktemp -d /tmp/qf-weight-scale.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
q() { "$qf" quantize --log-level warn --backend cpu --recipe full --in "$tmp/src" --samples 8 \
  --seq-len 64 "$@"; }

"$qf" make-tiny --preset tiny --out "$tmp/src" --seed 17 --shards 2 --log-level warn

# 1. Default = explicit max, byte for byte; neither export names a method.
q --out "$tmp/default" --work "$tmp/w-default"
q --out "$tmp/max" --work "$tmp/w-max" --weight-scale max
diff -r "$tmp/default" "$tmp/max" >/dev/null || fail "--weight-scale max differs from the default"
echo "ok: the default is --weight-scale max, byte for byte"

# 2. mse (1 rank) and gptq (2 ranks): only requantized targets change; validate passes.
q --out "$tmp/mse" --work "$tmp/w-mse" --weight-scale mse
mpirun -np 2 "$qf" quantize --log-level warn --backend cpu --recipe full --in "$tmp/src" \
  --samples 8 --seq-len 64 --out "$tmp/gptq" --work "$tmp/w-gptq" --weight-scale gptq
python3 - "$tmp/max" "$tmp/mse" "$tmp/gptq" <<'PY'
import json, os, re, struct, sys
max_dir, mse_dir, gptq_dir = sys.argv[1:]

def tensors(d):
    out = {}
    for f in sorted(os.listdir(d)):
        if not f.endswith(".safetensors"):
            continue
        raw = open(os.path.join(d, f), "rb").read()
        n = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8:8 + n])
        for name, info in header.items():
            if name == "__metadata__":
                continue
            b, e = info["data_offsets"]
            out[name] = (f, info["dtype"], info["shape"], raw[8 + n + b:8 + n + e])
    return out

base = tensors(max_dir)
assert "weight_scale" not in json.load(open(os.path.join(max_dir, "hf_quant_config.json")))["quantforge"]
routed = re.compile(r"^layers\.\d+\.ffn\.experts\.\d+\.")
nvfp4 = re.compile(r"\.(weight|weight_scale|weight_scale_2)$")
for d, method in ((mse_dir, "mse"), (gptq_dir, "gptq")):
    got = tensors(d)
    assert base.keys() == got.keys(), set(base) ^ set(got)
    changed = 0
    for name, (f, dtype, shape, data) in base.items():
        gf, gdtype, gshape, gdata = got[name]
        assert (f, dtype, shape) == (gf, gdtype, gshape), name
        m = nvfp4.search(name)
        target = m and (name[:m.start()] + ".weight_scale_2") in base  # an NVFP4 module
        if routed.match(name) or not target:
            assert data == gdata, f"{method}: {name} differs but is not a requantized target tensor"
            continue
        changed += data != gdata
    assert changed > 0, method
    hf = json.load(open(os.path.join(d, "hf_quant_config.json")))
    assert hf["quantforge"]["weight_scale"] == method, hf["quantforge"]
    r = json.load(open(d + ".quantization_report.json"))["quantize"]
    assert r["options"]["weight_scale"] == method, r["options"]
    assert r["weight_scale_blocks_moved"] > 0, r
    print(f"ok: {method} changed {changed} requantized tensors, kept every routed expert exact")
PY
for m in mse gptq; do
  "$qf" validate --source "$tmp/src" --out "$tmp/$m" --log-level warn >"$tmp/validate.log" \
    || { cat "$tmp/validate.log" >&2; fail "validate of the $m export"; }
done
echo "ok: validate passes the searched exports"

# 3. Part of the run's identity: resume / export-only with another method are refused; an
# export-only with the same method gives the same bytes.
q --out "$tmp/other" --work "$tmp/w-mse" --resume 2>"$tmp/log" \
  && fail "resume of an mse run as max should be refused"
grep -q "weight_scale" "$tmp/log" || fail "weight_scale change not named: $(cat "$tmp/log")"
[ ! -e "$tmp/other" ] || fail "a refused run left output behind"
q --out "$tmp/mse-again" --work "$tmp/w-mse" --export-only --weight-scale mse
diff -r "$tmp/mse" "$tmp/mse-again" >/dev/null || fail "export-only of the mse store differs"
echo "ok: resume and export-only keep the method"

# 4. Refusals: gptq without token calibration, cuda, unknown names.
q --out "$tmp/x" --work "$tmp/w-x" --weight-scale gptq --amax-file /dev/null 2>"$tmp/log" \
  && fail "gptq with --amax-file should be refused"
grep -q "X^T X" "$tmp/log" || fail "unclear gptq refusal: $(cat "$tmp/log")"
"$qf" quantize --log-level warn --backend cuda --recipe full --in "$tmp/src" --out "$tmp/cu" \
  --work "$tmp/w-cu" --weight-scale mse 2>"$tmp/log" && fail "cuda + mse should be refused"
grep -qi "weight-scale\|cuda" "$tmp/log" || fail "unclear cuda refusal: $(cat "$tmp/log")"
q --out "$tmp/x" --work "$tmp/w-x" --weight-scale best 2>"$tmp/log" \
  && fail "--weight-scale best should be refused"
grep -q "max | " "$tmp/log" || fail "unclear error: $(cat "$tmp/log")"
echo "ok: refusals"
echo "PASS weight_scale"
