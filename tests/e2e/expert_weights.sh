#!/usr/bin/env bash
# quantize --expert-weights on a make-tiny checkpoint (CPU backend, imported amax): the default
# is the lossless cast, byte for byte what an explicit `cast` writes; `requantize` changes only
# the routed experts' weight, weight_scale and weight_scale_2 (weight_scale_2 = max |x| over the
# w1/w3 pair / 2688, not a power of two), declares itself in hf_quant_config.json and passes
# validate; the value is part of the run's identity (resume and export-only with the other value
# are refused); an unknown value is refused naming the valid ones.
set -euo pipefail
qf=${QF_BIN:?QF_BIN must point at the quantforge binary}
tmp=$(mktemp -d /tmp/qf-expert-weights.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
q() { "$qf" quantize --log-level warn --backend cpu "$@"; }

"$qf" make-tiny --preset tiny --out "$tmp/src" --seed 13 --shards 3 --log-level warn
python3 - "$tmp/src/config.json" "$tmp/amax.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
amax = {f"layers.{l}.ffn.experts.{e}.{w}": 0.5 + 0.25 * l + 0.01 * e + (0.003 if w == "w3" else 0)
        for l in range(cfg["num_hidden_layers"]) for e in range(cfg["n_routed_experts"])
        for w in ("w1", "w2", "w3") if (l, e) != (2, 6)}
json.dump(amax, open(sys.argv[2], "w"))
PY

# 1. Default = explicit cast, byte for byte (the report names the mode either way).
q --in "$tmp/src" --out "$tmp/default" --work "$tmp/w-default" --amax-file "$tmp/amax.json"
q --in "$tmp/src" --out "$tmp/cast" --work "$tmp/w-cast" --amax-file "$tmp/amax.json" \
  --expert-weights cast
diff -r "$tmp/default" "$tmp/cast" >/dev/null || fail "--expert-weights cast differs from the default"
echo "ok: the default is --expert-weights cast, byte for byte"

# 2. requantize on 2 ranks: only the experts' weight tensors change; validate passes.
mpirun -np 2 "$qf" quantize --log-level warn --backend cpu --in "$tmp/src" --out "$tmp/req" \
  --work "$tmp/w-req" --amax-file "$tmp/amax.json" --expert-weights requantize
python3 - "$tmp/cast" "$tmp/req" <<'PY'
import json, math, os, re, struct, sys
cast_dir, req_dir = sys.argv[1:]

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

cast, req = tensors(cast_dir), tensors(req_dir)
assert cast.keys() == req.keys(), set(cast) ^ set(req)
expert = re.compile(r"^layers\.\d+\.ffn\.experts\.\d+\.w[123]\.(weight|weight_scale|weight_scale_2)$")
changed = 0
for name, (f, dtype, shape, data) in cast.items():
    rf, rdtype, rshape, rdata = req[name]
    assert (f, dtype, shape) == (rf, rdtype, rshape), (name, f, dtype, shape, rf, rdtype, rshape)
    if not expert.match(name):
        assert data == rdata, f"{name} differs but is not a requantized expert tensor"
        continue
    changed += data != rdata
    if name.endswith(".weight_scale_2"):
        s = struct.unpack("<f", rdata)[0]
        assert s > 0 and math.frexp(s)[0] != 0.5, f"{name}: {s} looks like a cast's power of two"
        assert math.frexp(struct.unpack("<f", data)[0])[0] == 0.5, name
        pair = re.sub(r"\.w1\.", ".w3.", name) if ".w1." in name else re.sub(r"\.w3\.", ".w1.", name)
        if pair != name:
            assert req[pair][3] == rdata, f"{name} and {pair} must share weight_scale_2"
assert changed > 0
hf = json.load(open(os.path.join(req_dir, "hf_quant_config.json")))
assert hf["quantforge"]["expert_weights"] == "requantize", hf["quantforge"]
assert "expert_weights" not in json.load(open(os.path.join(cast_dir, "hf_quant_config.json")))["quantforge"]
for d, mode in ((cast_dir, "cast"), (req_dir, "requantize")):
    r = json.load(open(d + ".quantization_report.json"))["quantize"]
    assert r["options"]["expert_weights"] == mode, r["options"]
req_report = json.load(open(req_dir + ".quantization_report.json"))["quantize"]
assert req_report["lossless_cast"]["blocks_lossless"] == 0, req_report["lossless_cast"]
assert "expert weights        requantize" in open(req_dir + ".quantization_report.txt").read()
print(f"ok: requantize changed {changed} expert tensors, nothing else; hf_quant_config and the report say so")
PY
"$qf" validate --source "$tmp/src" --out "$tmp/req" --log-level warn >"$tmp/validate.log" \
  || { cat "$tmp/validate.log" >&2; fail "validate of the requantized export"; }
grep -q "expert weights requantize" "$tmp/validate.log" || fail "validate did not name the mode"
"$qf" validate --source "$tmp/src" --out "$tmp/cast" --log-level warn >"$tmp/validate.log" \
  || { cat "$tmp/validate.log" >&2; fail "validate of the cast export"; }
echo "ok: validate passes both exports"

# 3. Part of the run's identity: resume / export-only with the other value are refused.
q --in "$tmp/src" --out "$tmp/other" --work "$tmp/w-req" --amax-file "$tmp/amax.json" --resume \
  2>"$tmp/log" && fail "resume of a requantize run as cast should be refused"
grep -q "expert_weights" "$tmp/log" || fail "expert_weights change not named: $(cat "$tmp/log")"
q --in "$tmp/src" --out "$tmp/other" --work "$tmp/w-cast" --amax-file "$tmp/amax.json" --resume \
  --expert-weights requantize 2>"$tmp/log" && fail "resume of a cast run as requantize should be refused"
grep -q "expert_weights" "$tmp/log" || fail "expert_weights change not named: $(cat "$tmp/log")"
q --in "$tmp/src" --out "$tmp/other" --work "$tmp/w-req" --amax-file "$tmp/amax.json" \
  --export-only 2>"$tmp/log" && fail "export-only of a requantize store as cast should be refused"
grep -q "expert_weights" "$tmp/log" || fail "export-only: change not named: $(cat "$tmp/log")"
[ ! -e "$tmp/other" ] || fail "a refused run left output behind"
mpirun -np 2 "$qf" quantize --log-level warn --backend cpu --in "$tmp/src" --out "$tmp/req-again" \
  --work "$tmp/w-req" --amax-file "$tmp/amax.json" --export-only --expert-weights requantize
diff -r "$tmp/req" "$tmp/req-again" >/dev/null || fail "export-only of the requantize store differs"
echo "ok: resume and export-only keep the mode"

# 4. An unknown value names the valid ones.
q --in "$tmp/src" --out "$tmp/x" --work "$tmp/w-x" --amax-file "$tmp/amax.json" \
  --expert-weights lossy 2>"$tmp/log" && fail "--expert-weights lossy should be refused"
grep -q "cast | requantize" "$tmp/log" || fail "unclear error: $(cat "$tmp/log")"
echo "ok: unknown --expert-weights refused"
echo "PASS expert_weights"
