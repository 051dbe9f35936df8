#!/usr/bin/env bash
# quantize end to end on make-tiny checkpoints (CPU backend, imported amax so that the test pins
# known values): identical bytes for 1..4 ranks, export-only and single-shard rebuilds equal
# the full run, resume rules, the documented fallback for unseen experts, both recipes, BF16
# input, the tensors/configs of docs/EXPORT_FORMAT.md, and the quantization report next to each
# export (OUT.quantization_report.json/.txt: options, lossless-cast counts as logged, the
# uncalibrated experts; export-only and --shard rules).
set -euo pipefail
qf=${QF_BIN:?QF_BIN must point at the quantforge binary}
tmp=$(mktemp -d /tmp/qf-quantize.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
q() { "$qf" quantize --log-level warn "$@"; }

"$qf" make-tiny --preset tiny --out "$tmp/src" --seed 11 --shards 3 --log-level warn
# Known amax: every module of every regular layer, except expert 3 of layer 1 (never routed).
python3 - "$tmp/src/config.json" "$tmp" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1])); out = sys.argv[2]
experts, full = {}, {}
for l in range(cfg["num_hidden_layers"]):
    for e in range(cfg["n_routed_experts"]):
        for w in ("w1", "w2", "w3"):
            if (l, e) != (1, 3):
                experts[f"layers.{l}.ffn.experts.{e}.{w}"] = 0.5 + 0.25 * l + 0.01 * e + (0.003 if w == "w3" else 0)
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

# 1. Same bytes for every rank count.
for np in 1 2 3 4; do
  mpirun -np $np "$qf" quantize --log-level info --in "$tmp/src" --out "$tmp/out$np" \
    --work "$tmp/work$np" --amax-file "$tmp/amax.json" >"$tmp/q$np.log" 2>&1 \
    || { cat "$tmp/q$np.log" >&2; fail "quantize on $np ranks"; }
done
for np in 2 3 4; do diff -r "$tmp/out1" "$tmp/out$np" >/dev/null || fail "output with $np ranks differs"; done
echo "ok: identical export for 1..4 ranks"
# Those exports were streamed (each layer's outputs written as its record was committed), and the
# summary counts the bytes moved per phase against the minimum.
for np in 1 2 3 4; do
  grep -Eq 'before that, [0-9.]+ [KMGT]?B of 4 layer\(s\) streamed beside calibration' "$tmp/q$np.log" \
    || { cat "$tmp/q$np.log" >&2; fail "the $np-rank export was not streamed"; }
  grep -Eq '^  bytes moved +disk read +disk write +calls read +calls write$' "$tmp/q$np.log" &&
    grep -Eq '^  minimum: read the source once [0-9.]+ [KMGT]?B; write the output once' "$tmp/q$np.log" \
    || fail "no bytes-moved table in the summary of the $np-rank run"
done
# The summary's communication line: rank 0's collectives per kind (Communicator::stats).
for np in 1 2 3 4; do
  grep -Eq '^  communication \(rank 0, mpi\): allreduce [1-9][0-9]* / [0-9.]+ [KMGT]?B / [0-9.]+ s, broadcast [0-9]+ / .* share of wall time [0-9.]+%$' \
    "$tmp/q$np.log" || fail "no communication line in the summary of the $np-rank run"
done

# 1b. The report next to each export: the counts quantize logged, the unseen expert's three
#     modules as uncalibrated, the options; equal counts for every rank count; never inside OUT.
python3 - "$tmp" <<'PY'
import json, os, re, sys
tmp = sys.argv[1]
first = None
for np in (1, 2, 3, 4):
    assert not [f for f in os.listdir(f"{tmp}/out{np}") if "report" in f], "report inside the export"
    r = json.load(open(f"{tmp}/out{np}.quantization_report.json"))
    assert r["format"] == "quantforge-quantization-report/1" and "eval" not in r, r.keys()
    q = r["quantize"]
    log = open(f"{tmp}/q{np}.log").read()
    m = re.search(r"(\d+) tensors quantized in this run \(lossless MXFP4 blocks (\d+), "
                  r"fallback blocks (\d+)\), (\d+) uncalibrated experts", log)
    assert m, log
    lc = q["lossless_cast"]
    got = (lc["tensors_quantized"], lc["blocks_lossless"], lc["blocks_fallback"],
           q["n_uncalibrated_experts"])
    assert got == tuple(map(int, m.groups())), (np, got, m.groups())
    assert lc["complete"] is True and lc["tensors_quantized"] == q["targets"] and lc["blocks_lossless"] > 0
    assert q["uncalibrated_experts"] == [f"layers.1.ffn.experts.3.{w}" for w in ("w1", "w2", "w3")], q
    assert q["world_size"] == np and q["mode"] == "run" and q["out"].endswith(f"out{np}")
    o = q["options"]
    assert (o["recipe"], o["kv_cache"], o["act_scale"]) == ("experts", "none", "max"), o
    assert o["calibration"]["amax_file"].endswith("amax.json")
    text = open(f"{tmp}/out{np}.quantization_report.txt").read()
    assert "layers.1.ffn.experts.3.w2" in text and f"{lc['blocks_lossless']} lossless" in text, text
    same = (got, q["uncalibrated_experts"])
    assert first is None or same == first, (np, same, first)
    first = same
print(f"ok: report next to the export, as logged: {first[0][1]} lossless / {first[0][2]} fallback "
      f"blocks, uncalibrated {first[1]}")
PY

# 2. The format: tensors, scales, configs (independent reading with the standard library).
python3 - "$tmp/src" "$tmp/out1" "$tmp/amax.json" <<'PY'
import json, math, os, struct, sys
src, out, amax = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))
def tensors(d):
    idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))
    res = {}
    for f in sorted(set(idx["weight_map"].values())):
        b = open(os.path.join(d, f), "rb").read(); n = struct.unpack("<Q", b[:8])[0]
        for k, v in json.loads(b[8:8 + n]).items():
            if k != "__metadata__":
                s, e = v["data_offsets"]; res[k] = (v["dtype"], v["shape"], b[8 + n + s:8 + n + e], f)
    return idx, res
_, s = tensors(src); idx, o = tensors(out)
cfg = json.load(open(os.path.join(src, "config.json"))); L = cfg["num_hidden_layers"]
f32 = lambda b: struct.unpack("<f", b)[0]
targets = [k for k in s if k.startswith("layers.") and ".ffn.experts." in k and k.endswith(".weight")
           and int(k.split(".")[1]) < L]
assert targets, "no targets"
for k in targets:
    p = k[:-len(".weight")]
    dt, shape, _, shard = s[k]
    rows, cols = shape[0], shape[1] * 2
    assert o[p + ".weight"][:2] == ("U8", [rows, cols // 2]), p
    assert o[p + ".weight_scale"][:2] == ("F8_E4M3", [rows, cols // 16]), p
    assert o[p + ".weight_scale_2"][:2] == ("F32", []) and o[p + ".input_scale"][:2] == ("F32", []), p
    assert p + ".scale" not in o, p
    assert o[p + ".weight"][3] == shard, "target moved to another shard"
    ws2 = f32(o[p + ".weight_scale_2"][2]); isc = f32(o[p + ".input_scale"][2])
    assert ws2 > 0 and math.isfinite(ws2) and math.log2(ws2).is_integer(), (p, ws2)  # lossless cast: 2^(k-8)
    assert isc > 0 and math.isfinite(isc), (p, isc)
    scales = o[p + ".weight_scale"][2]
    assert all(x not in (0x00, 0x80, 0x7F, 0xFF) for x in scales), p + ": zero/NaN block scale"
# w1/w3 share both scales; w1 input_scale = max(w1, w3) amax / 2688; unseen expert = projection max.
for k in targets:
    if ".w1." not in k: continue
    p1 = k[:-len(".weight")]; p3 = p1[:-2] + "w3"
    for suffix in (".weight_scale_2", ".input_scale"):
        assert o[p1 + suffix][2] == o[p3 + suffix][2], p1 + suffix
    want = max(amax.get(p1, 0), amax.get(p3, 0))
    if want == 0:
        want = max(max(v for kk, v in amax.items() if kk.endswith(".w1")), max(v for kk, v in amax.items() if kk.endswith(".w3")))
    got = f32(o[p1 + ".input_scale"][2])
    assert got == struct.unpack("<f", struct.pack("<f", want / 2688.0))[0] or abs(got - want / 2688.0) <= 1e-7 * want, (p1, got, want / 2688)
# Everything else byte for byte (MTP included).
for k, v in s.items():
    if k in targets or (k.endswith(".scale") and k[:-6] + ".weight" in targets): continue
    assert o[k] == v, k + " changed"
assert set(o) == {k for k in s if k not in targets and not (k.endswith(".scale") and k[:-6] + ".weight" in targets)} \
    | {k[:-len(".weight")] + x for k in targets for x in (".weight", ".weight_scale", ".weight_scale_2", ".input_scale")}
assert idx["metadata"]["total_size"] == sum(len(v[2]) for v in o.values())
qc = json.load(open(os.path.join(out, "config.json")))["quantization_config"]
assert qc["quant_method"] == "fp8" and qc["moe_quant_algo"] == "NVFP4" and qc["quant_algo"] == "MIXED_PRECISION"
assert qc["ignore"] == ["*.attn.*", "*.ffn.shared_experts.*", "head", "mtp.*"] and "exclude_modules" not in qc
assert sorted(qc["quantized_layers"]) == [f"layers.{l}.ffn.experts" for l in range(L)]
hf = json.load(open(os.path.join(out, "hf_quant_config.json")))["quantization"]
assert hf["exclude_modules"] == qc["ignore"] and hf["quantized_layers"] == qc["quantized_layers"]
assert hf["kv_cache_quant_algo"] is None and hf["group_size"] == 16
print("ok: export format,", len(targets), "experts quantized")
PY

# 3. Export from the stores alone equals the run; one shard rebuilt by a single plain process too.
q --in "$tmp/src" --out "$tmp/reexport" --work "$tmp/work2" --amax-file "$tmp/amax.json" --export-only 2>/dev/null \
  && fail "export-only with a different rank count than the stores should be refused"
mpirun -np 2 "$qf" quantize --log-level warn --in "$tmp/src" --out "$tmp/reexport" --work "$tmp/work2" \
  --amax-file "$tmp/amax.json" --export-only
diff -r "$tmp/out1" "$tmp/reexport" >/dev/null || fail "export-only differs"
cp -r "$tmp/out2" "$tmp/shardfix"
# An earlier report beside it, with eval numbers: a --shard rebuild (same bytes) keeps them.
python3 -c "
import json, sys; r = json.load(open(sys.argv[1])); r['eval'] = {'kl_mean': 0.125}
json.dump(r, open(sys.argv[2], 'w'))" "$tmp/out2.quantization_report.json" "$tmp/shardfix.quantization_report.json"
shard=model-00002-of-00003.safetensors
printf 'garbage' | dd of="$tmp/shardfix/$shard" bs=1 seek=4096 conv=notrunc status=none
q --in "$tmp/src" --out "$tmp/shardfix" --work "$tmp/work2" --amax-file "$tmp/amax.json" --export-only --shard "$shard"
diff -r "$tmp/out1" "$tmp/shardfix" >/dev/null || fail "--shard rebuild differs"
python3 - "$tmp" <<'PY'
import json, sys
tmp = sys.argv[1]
old = json.load(open(f"{tmp}/out2.quantization_report.json"))["quantize"]
re_ = json.load(open(f"{tmp}/reexport.quantization_report.json"))
assert re_["quantize"]["mode"] == "export-only" and re_["quantize"]["lossless_cast"] is None, re_
sf = json.load(open(f"{tmp}/shardfix.quantization_report.json"))
assert sf["quantize"]["mode"] == "export-only --shard" and sf["eval"] == {"kl_mean": 0.125}, sf
assert sf["quantize"]["lossless_cast"] == old["lossless_cast"], (sf["quantize"], old)
assert sf["quantize"]["uncalibrated_experts"] == old["uncalibrated_experts"]
PY
echo "ok: --export-only (2 ranks) and --shard (1 plain process) reproduce the output"

# 4. Resume rules.
q --in "$tmp/src" --out "$tmp/again" --work "$tmp/work1" --amax-file "$tmp/amax.json" 2>"$tmp/log" \
  && fail "an existing work store without --resume should be refused"
grep -q -- "--resume" "$tmp/log" || fail "unclear message without --resume: $(cat "$tmp/log")"
q --in "$tmp/src" --out "$tmp/again" --work "$tmp/work1" --amax-file "$tmp/amax.json" --resume
diff -r "$tmp/out1" "$tmp/again" >/dev/null || fail "resume of a finished run differs"
q --in "$tmp/src" --out "$tmp/other" --work "$tmp/work1" --amax-file "$tmp/amax.json" --resume \
  --recipe full 2>"$tmp/log" && fail "resume with another recipe should be refused"
grep -q "recipe" "$tmp/log" || fail "recipe change not named: $(cat "$tmp/log")"
[ ! -e "$tmp/other" ] && [ ! -e "$tmp/other.partial" ] || fail "refused resume left output behind"
echo "ok: resume rules"

# 5. Recipe full, and a BF16 source (from dequant) gives a valid export of the same layout.
mpirun -np 2 "$qf" quantize --log-level warn --in "$tmp/src" --out "$tmp/full" --work "$tmp/workf" \
  --amax-file "$tmp/amax_full.json" --recipe full
python3 - "$tmp/full" <<'PY'
import json, os, sys
qc = json.load(open(os.path.join(sys.argv[1], "config.json")))["quantization_config"]
idx = json.load(open(os.path.join(sys.argv[1], "model.safetensors.index.json")))["weight_map"]
assert qc["quant_method"] == "modelopt" and qc["quant_algo"] == "MIXED_PRECISION"
for m in qc["quantized_layers"]:
    for x in (".weight", ".weight_scale", ".weight_scale_2", ".input_scale"):
        assert m + x in idx, m + x
assert "layers.0.attn.wq_a" in qc["quantized_layers"] and "layers.0.ffn.shared_experts.w2" in qc["quantized_layers"]
assert not any(k.startswith("mtp.") and k.endswith("weight_scale_2") for k in idx)
print("ok: recipe full,", len(qc["quantized_layers"]), "modules")
PY
"$qf" dequant --in "$tmp/src" --out "$tmp/bf16" --log-level warn
q --in "$tmp/bf16" --out "$tmp/from-bf16" --work "$tmp/workb" --amax-file "$tmp/amax.json"
python3 - "$tmp/out1" "$tmp/from-bf16" <<'PY'
import json, os, sys
a = json.load(open(os.path.join(sys.argv[1], "model.safetensors.index.json")))["weight_map"]
b = json.load(open(os.path.join(sys.argv[2], "model.safetensors.index.json")))["weight_map"]
q = [k for k in a if k.endswith(".weight_scale_2")]
assert q and all(k in b for k in q), "BF16 input: quantized tensors missing"
print("ok: BF16 input quantizes the same", len(q), "linears")
PY

# 6. Bad input: a config that does not match the tensors.
cp -r "$tmp/src" "$tmp/badcfg"
python3 -c "import json,sys; p=sys.argv[1]; c=json.load(open(p)); c['moe_intermediate_size']+=32; json.dump(c,open(p,'w'))" "$tmp/badcfg/config.json"
q --in "$tmp/badcfg" --out "$tmp/badout" --work "$tmp/workx" --amax-file "$tmp/amax.json" 2>"$tmp/log" \
  && fail "a config that does not match the tensors should be refused"
grep -q "config.json implies" "$tmp/log" || fail "config mismatch unclear: $(cat "$tmp/log")"
[ ! -e "$tmp/badout" ] && [ ! -e "$tmp/workx/rank-0/manifest.json" ] || fail "refused run left files"
echo "ok: config/tensor mismatch refused"
# 6b. --comm: nccl needs the cuda backend (refused before any file is written); an unknown name
#     is refused; the communicator is not part of the run's identity (a resume may name it).
q --in "$tmp/src" --out "$tmp/nc" --work "$tmp/wnc" --amax-file "$tmp/amax.json" --backend cpu \
  --comm nccl 2>"$tmp/log" && fail "--comm nccl with --backend cpu should be refused"
grep -q -- "--comm nccl needs --backend cuda" "$tmp/log" || fail "--comm refusal unclear: $(cat "$tmp/log")"
[ ! -e "$tmp/nc" ] && [ ! -e "$tmp/wnc" ] || fail "refused --comm left files"
# --cuda-bf16-inputs is the cuda backend's (issue 24): refused with cpu, before any file.
q --in "$tmp/src" --out "$tmp/nc" --work "$tmp/wnc" --backend cpu --cuda-bf16-inputs --samples 2 \
  --seq-len 16 2>"$tmp/log" && fail "--cuda-bf16-inputs with --backend cpu should be refused"
grep -q -- "--cuda-bf16-inputs is an option of the cuda backend; this run's backend is cpu" "$tmp/log" \
  || fail "--cuda-bf16-inputs refusal unclear: $(cat "$tmp/log")"
[ ! -e "$tmp/nc" ] && [ ! -e "$tmp/wnc" ] || fail "refused --cuda-bf16-inputs left files"
q --in "$tmp/src" --out "$tmp/nc" --work "$tmp/wnc" --amax-file "$tmp/amax.json" --comm gloo \
  2>"$tmp/log" && fail "--comm gloo should be refused"
grep -qF -- "unknown --comm 'gloo'; expected auto | mpi | nccl" "$tmp/log" || fail "unknown --comm unclear: $(cat "$tmp/log")"
q --in "$tmp/src" --out "$tmp/again-mpi" --work "$tmp/work1" --amax-file "$tmp/amax.json" --resume \
  --comm mpi
diff -r "$tmp/out1" "$tmp/again-mpi" >/dev/null || fail "resume with --comm mpi differs"
echo "ok: --comm refusals; --comm is not part of the run's identity"
# 7. The whole pipeline with calibration (synthetic token set): same bytes for 1 and 3 ranks,
#    and a calibration file of token ids (JSONL) is accepted.
for np in 1 3; do
  mpirun -np $np "$qf" quantize --log-level warn --in "$tmp/src" --out "$tmp/cal$np" \
    --work "$tmp/calw$np" --samples 6 --seq-len 96
done
diff -r "$tmp/cal1" "$tmp/cal3" >/dev/null || fail "calibrated output differs between 1 and 3 ranks"
python3 -c "
import random; r = random.Random(5)
for _ in range(4): print([r.randrange(1024) for _ in range(80)])" >"$tmp/tokens.jsonl"
mpirun -np 2 "$qf" quantize --log-level warn --in "$tmp/src" --out "$tmp/calj" --work "$tmp/calwj" \
  --calib "$tmp/tokens.jsonl" --samples 4 --seq-len 64
[ -f "$tmp/calj/hf_quant_config.json" ] || fail "calibration from JSONL produced no export"
echo "ok: calibrated pipeline identical for 1 and 3 ranks; JSONL calibration accepted"

# 8. validate accepts every export above and rejects a corrupted one.
for out in out1 full from-bf16 cal1; do
  src="$tmp/src"; [ "$out" = from-bf16 ] && src="$tmp/bf16"
  "$qf" validate --source "$src" --out "$tmp/$out" --log-level warn >"$tmp/log" 2>&1 \
    || { cat "$tmp/log" >&2; fail "validate rejected $out"; }
done
cp -r "$tmp/cal1" "$tmp/corrupt"
python3 - "$tmp/corrupt" <<'PY'
import json, os, struct, sys
d = sys.argv[1]
idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))["weight_map"]
name = "layers.2.ffn.experts.1.w2.weight_scale_2"
path = os.path.join(d, idx[name])
b = bytearray(open(path, "rb").read()); n = struct.unpack("<Q", b[:8])[0]
s, e = json.loads(b[8:8 + n])[name]["data_offsets"]
b[8 + n + s:8 + n + e] = struct.pack("<f", 0.0)
open(path, "wb").write(b)
PY
"$qf" validate --source "$tmp/src" --out "$tmp/corrupt" --log-level warn >"$tmp/log" 2>&1 \
  && fail "validate accepted a zero weight_scale_2"
grep -q "layers.2.ffn.experts.1.w2" "$tmp/log" || { cat "$tmp/log" >&2; fail "validate did not name the tensor"; }
echo "ok: validate passes 4 exports and names the corrupted tensor"

# 9. validate --work checks the HDF5 stores' checksums too.
"$qf" validate --source "$tmp/src" --out "$tmp/out3" --work "$tmp/work3" --log-level warn >"$tmp/log" 2>&1 \
  || { cat "$tmp/log" >&2; fail "validate --work rejected intact stores"; }
grep -q "3 rank(s)" "$tmp/log" || fail "validate --work did not report 3 rank stores"
victim="$tmp/work3/rank-2/layer-0002.quant.h5"
printf 'X' | dd of="$victim" bs=1 seek=600 conv=notrunc status=none
"$qf" validate --source "$tmp/src" --out "$tmp/out3" --work "$tmp/work3" --log-level warn >"$tmp/log" 2>&1 \
  && fail "validate --work accepted a corrupted layer file"
grep -q "layer-0002.quant.h5" "$tmp/log" || { cat "$tmp/log" >&2; fail "corrupted store file not named"; }
echo "ok: validate --work verifies and names a corrupted store file"
echo "quantize e2e: all checks passed"
