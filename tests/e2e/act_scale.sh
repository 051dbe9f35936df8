#!/usr/bin/env bash
# --act-scale end to end on a make-tiny checkpoint (CPU, 2 ranks): max, percentile and mse all
# export and validate, every percentile/mse input_scale is <= max's, eval gives finite numbers
# for each (printed, no assertion on which wins), the report next to each export names its
# method; a changed method on resume is refused, cuda + a histogram method is not (the CUDA
# calibration records histograms too).
set -euo pipefail
qf=${QF_BIN:?QF_BIN must point at the quantforge binary}
tmp=$(mktemp -d /tmp/qf-actscale.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
q() { mpirun -np 2 "$qf" quantize --log-level warn --backend cpu --in "$tmp/src" --samples 8 --seq-len 64 "$@"; }

"$qf" make-tiny --preset tiny --out "$tmp/src" --seed 11 --log-level warn
for m in max percentile mse; do
  q --out "$tmp/$m" --work "$tmp/work-$m" --act-scale $m
  "$qf" validate --source "$tmp/src" --out "$tmp/$m" --log-level warn >/dev/null \
    || fail "--act-scale $m: export does not validate"
  mpirun -np 2 "$qf" eval --log-level warn --source "$tmp/src" --out "$tmp/$m" --samples 8 \
    --seq-len 64 --report "$tmp/$m.json" >/dev/null
done

python3 - "$tmp" <<'PY'
import glob, json, math, os, struct, sys
tmp = sys.argv[1]
def input_scales(d):
    out = {}
    for path in glob.glob(os.path.join(d, "*.safetensors")):
        b = open(path, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
        for name, t in json.loads(b[8:8 + n]).items():
            if name.endswith(".input_scale"):
                assert t["dtype"] == "F32", t
                s, _ = t["data_offsets"]
                out[name] = struct.unpack("<f", b[8 + n + s:8 + n + s + 4])[0]
    return out
mx = input_scales(f"{tmp}/max")
assert mx and all(v > 0 for v in mx.values())
for m in ("percentile", "mse"):
    s = input_scales(f"{tmp}/{m}")
    assert s.keys() == mx.keys(), m
    worse = [k for k in s if not (0 < s[k] <= mx[k])]
    assert not worse, (m, worse[:3])
    n_lower = sum(s[k] < mx[k] for k in s)
    print(f"{m}: {n_lower}/{len(s)} input_scales below max's (median ratio "
          f"{sorted(s[k] / mx[k] for k in s)[len(s) // 2]:.3f})")
for m in ("max", "percentile", "mse"):
    r = json.load(open(f"{tmp}/{m}.json"))["eval"]
    q = json.load(open(f"{tmp}/{m}.quantization_report.json"))["quantize"]
    assert q["options"]["act_scale"].split(":")[0] == m, q["options"]
    assert math.isfinite(r["kl_mean"]) and math.isfinite(r["top1_agreement"]), r
    assert all(math.isfinite(r["perplexity"][k]) for k in ("source", "quantized"))
    print(f"{m:10s} KL {r['kl_mean']:.4f}  top-1 {r['top1_agreement']:.4f}  "
          f"ppl {r['perplexity']['quantized']:.1f} (source {r['perplexity']['source']:.1f})")
PY

# Refusals: a changed method on resume (provenance), bad names; cuda with a histogram method is
# accepted (here it may only fail for want of a GPU or of a CUDA build).
q --out "$tmp/again" --work "$tmp/work-max" --act-scale mse --resume >/dev/null 2>"$tmp/log" \
  && fail "resume with another --act-scale should be refused"
grep -q "act_scale" "$tmp/log" || fail "unclear resume refusal: $(cat "$tmp/log")"
if "$qf" quantize --log-level warn --backend cuda --in "$tmp/src" --out "$tmp/cu" --work "$tmp/wcu" \
  --act-scale percentile --samples 8 --seq-len 64 >/dev/null 2>"$tmp/log"; then
  # A GPU machine: the CUDA calibration's histograms give a valid export.
  "$qf" validate --source "$tmp/src" --out "$tmp/cu" --log-level warn >/dev/null \
    || fail "cuda + percentile: export does not validate"
  python3 -c "
import json, sys; q = json.load(open(sys.argv[1]))['quantize']['options']
assert q['backend'] == 'cuda' and q['act_scale'].startswith('percentile'), q" "$tmp/cu.quantization_report.json"
  echo "ok: cuda + percentile exported and validated"
else
  grep -q "histogram" "$tmp/log" && fail "cuda + percentile refused for histograms: $(cat "$tmp/log")"
  echo "ok: cuda + percentile not refused for histograms (no GPU here: $(head -c 120 "$tmp/log"))"
fi
"$qf" quantize --log-level warn --backend cpu --in "$tmp/src" --out "$tmp/c" --work "$tmp/wc" \
  --act-scale percentile:0 >/dev/null 2>"$tmp/log" && fail "percentile:0 should be refused"
grep -q "(0, 100]" "$tmp/log" || fail "unclear refusal: $(cat "$tmp/log")"
echo "act_scale e2e: all checks passed"
