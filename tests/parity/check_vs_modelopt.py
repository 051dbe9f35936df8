#!/usr/bin/env python3
"""quantforge against NVIDIA ModelOpt's own DeepSeek-V4 exporter (issue 23), on make-tiny sources.

Runs on the GPU machine from the repo root (torch, safetensors; CPU tensors are enough):
    python3 tests/parity/check_vs_modelopt.py [--bin .device/bin/quantforge]
        [--modelopt .device/modelopt] [--work /tmp/qf-modelopt] [--json OUT.json] [--cuda auto]
.device/modelopt is made by tests/parity/modelopt/assemble.sh (ModelOpt's
examples/deepseek/deepseek_v4/quantize_to_nvfp4.py + the qtensor code it calls, at PINNED_COMMIT).

Per case (make-tiny config, seed, shard count; some sources patched), both tools get the SAME
input amax (quantforge: --amax-file JSON; ModelOpt: amax_dict_rank{r}-mp2.pt, with the weight amax
its calibration would record = max |W_bf16|), w1 != w3, some experts missing (the fallback):
  experts-cast       quantforge --recipe experts            vs quantize_to_nvfp4.py --cast_mxfp4_to_nvfp4
  experts-requantize quantforge --expert-weights requantize vs quantize_to_nvfp4.py (default path)
      every shard's tensors (name, dtype, shape, bytes), model.safetensors.index.json,
      config.json and hf_quant_config.json (parsed; each difference listed), the other files;
  full-requantize / full-cast   quantforge --recipe full: every NVFP4 tensor against ModelOpt's
      NVFP4QTensor.quantize of the dequantized BF16 weight with the same weight amax (FP4 experts
      under the cast: ModelOpt's _quantize_weight_nvfp4_lossless), input_scale from the same input
      amax by ModelOpt's DS-V4 merge rules; every other tensor a byte copy of the source.
Every quantforge export also passes `quantforge validate`.
Deliberate differences (docs/EXPORT_FORMAT.md "Conformance with ModelOpt") are whitelisted
below (WHITELIST) and listed in the output; anything else fails. The known one that is
ModelOpt's: an expert whose w1 and w3 lie in different shard files gets two weight_scale_2 values
from ModelOpt (it pairs w1/w3 per shard), one from quantforge (vLLM's fused GEMM1 needs one); the
split cases check quantforge's shared value and report ModelOpt's split as a deviation.
Exit status 0 when everything matches (up to the whitelist), 1 otherwise.
`--self-test` checks the pure-Python helpers only (no torch, no binaries); where torch lacks
float8 (Debian's 1.13), tests/parity/modelopt/smoke/run_smoke.py runs the whole check with the
float8 cast emulated.
"""

import argparse
import json
import math
import os
import pathlib
import random
import re
import shutil
import struct
import subprocess
import sys
import time
import traceback

# Must equal PIN in tests/parity/modelopt/assemble.sh (and the commit .device/modelopt says).
PINNED_COMMIT = "a2fbac7bad8ab446d3f8783dadb0c3366eb0ad73"

NVFP4_SUFFIXES = (".weight", ".weight_scale", ".weight_scale_2", ".input_scale")
EXPERT_RE = re.compile(r"^(layers\.\d+\.ffn\.experts\.\d+)\.(w[123])$")
SHARD_RE = re.compile(r"^model-\d+-of-\d+\.safetensors$")

# Deliberate differences of quantforge's export from ModelOpt's (docs/EXPORT_FORMAT.md).
WHITELIST = {
    "checksums-file": "quantforge_checksums.json: quantforge's integrity manifest of the shards "
                      "(validate verifies it); ModelOpt writes none",
    "index-total-size": "model.safetensors.index.json metadata.total_size: quantforge recomputes "
                        "it (checked here = the sum of its tensors); ModelOpt copies the source's",
    "hf-quantforge-block": "hf_quant_config.json \"quantforge\": quantforge's provenance block "
                           "(version, recipe, expert_weights); ModelOpt has none",
    "shard-layout": "tensor order and __metadata__ inside a shard file: quantforge keeps source "
                    "order, safetensors' save_file sorts; compared tensor by tensor instead",
    "file-format": "JSON whitespace/number formatting of config.json and the index: compared "
                   "parsed",
    "split-pair": "an expert whose w1/w3 sit in different shards: ModelOpt's per-shard pairing "
                  "gives them two weight_scale_2 values; quantforge shares one (checked against "
                  "ModelOpt's own math with the shared value)",
}

failures = []    # (where, text): each fails the run
deviations = []  # (where, whitelist key, text): allowed, listed
notes = []


def fail(where, text):
    failures.append((where, text))
    print(f"  FAIL [{where}] {text}", flush=True)


def deviate(where, key, text):
    assert key in WHITELIST, key
    deviations.append((where, key, text))
    print(f"  deviation [{where}] ({key}) {text}", flush=True)


def note(where, text):
    notes.append((where, text))
    print(f"  note [{where}] {text}", flush=True)


def section(title):
    print(f"\n=== {title}", flush=True)


# ---- safetensors, standard library only ---------------------------------------------------------
def read_safetensors(path):
    """{name: (dtype, shape, bytes)}, __metadata__ (or None), names in data-offset order."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", None)
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        tensors[name] = (info["dtype"], list(info["shape"]), raw[base + b:base + e])
    order = sorted(header, key=lambda k: header[k]["data_offsets"][0])
    return tensors, meta, order


def read_checkpoint(d):
    """{name: (shard file, dtype, shape, bytes)} over the shards in d's index."""
    index = load_json(os.path.join(d, "model.safetensors.index.json"))
    out = {}
    for shard in sorted(set(index["weight_map"].values())):
        tensors, _, _ = read_safetensors(os.path.join(d, shard))
        for name, (dtype, shape, data) in tensors.items():
            out[name] = (shard, dtype, shape, data)
    return out


def patch_tensor_bytes(d, name, offset, new_bytes):
    """Overwrites bytes of one tensor in place (the header is untouched)."""
    shard = load_json(os.path.join(d, "model.safetensors.index.json"))["weight_map"][name]
    path = os.path.join(d, shard)
    with open(path, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        begin, end = header[name]["data_offsets"]
        assert offset + len(new_bytes) <= end - begin, (name, offset, len(new_bytes))
        f.seek(8 + n + begin + offset)
        f.write(bytes(new_bytes))


def load_json(path):
    with open(path) as f:
        return json.load(f)


# ---- small numerics (for messages and the FP8 reference), no torch -----------------------------
def e4m3_to_float(b):
    sign = -1.0 if b & 0x80 else 1.0
    e, m = (b >> 3) & 0xF, b & 7
    if e == 15 and m == 7:
        return float("nan")
    if e == 0:
        return sign * m / 8.0 * 2.0 ** -6
    return sign * (1.0 + m / 8.0) * 2.0 ** (e - 7)


def f32(b):
    return struct.unpack("<f", b)[0]


def f32_bytes(x):
    return struct.pack("<f", x)


def to_f32(x):
    """x rounded to float32 (so JSON and torch.float32 carry the same value)."""
    return f32(f32_bytes(x))


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b)) if len(a) != len(b) else -1


def describe_tensor_diff(name, dtype, shape, a, b, max_listed=4):
    """One line: how many bytes differ and the first few, decoded where that helps."""
    if len(a) != len(b):
        return f"{name}: {len(a)} vs {len(b)} bytes"
    idx = [i for i in range(len(a)) if a[i] != b[i]]
    if dtype == "F32" and len(a) == 4:
        return f"{name}: quantforge {f32(a)!r} vs modelopt {f32(b)!r}"
    cols = shape[-1] if shape else 1
    parts = []
    for i in idx[:max_listed]:
        where = f"[{i // cols}, {i % cols}]" if len(shape) == 2 else f"[{i}]"
        if dtype == "F8_E4M3":
            parts.append(f"{where} 0x{a[i]:02x}={e4m3_to_float(a[i])} vs 0x{b[i]:02x}={e4m3_to_float(b[i])}")
        elif dtype in ("U8", "I8") and name.endswith(".weight"):
            parts.append(f"{where} codes lo/hi {a[i] & 15}/{a[i] >> 4} vs {b[i] & 15}/{b[i] >> 4}")
        else:
            parts.append(f"{where} 0x{a[i]:02x} vs 0x{b[i]:02x}")
    return (f"{name} {dtype} {shape}: {len(idx)} of {len(a)} bytes differ (quantforge vs "
            f"modelopt); first: " + "; ".join(parts))


def json_diff(a, b, path=""):
    """Every difference between two parsed JSON values, as 'path: ...' lines (a = quantforge)."""
    out = []
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            p = f"{path}.{k}" if path else k
            if k not in b:
                out.append(f"{p}: only in quantforge: {json.dumps(a[k])[:300]}")
            elif k not in a:
                out.append(f"{p}: only in modelopt: {json.dumps(b[k])[:300]}")
            else:
                out += json_diff(a[k], b[k], p)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            out += json_diff(x, y, f"{path}[{i}]")
    elif type(a) is not type(b) or a != b:
        out.append(f"{path}: quantforge {json.dumps(a)[:300]} vs modelopt {json.dumps(b)[:300]}")
    return out


# ---- the cases -----------------------------------------------------------------------------------
# preset, seed, shards, format, the patches applied to the source, experts forced uncalibrated.
# Shard placement depends only on the config and --shards (make-tiny: "values depend only on
# (config, seed), not on --shards"); the split cases check that their boundary really splits pairs.
CASES = [
    {"name": "tiny-s5-n5", "preset": "tiny", "seed": 5, "shards": 5, "format": "native",
     "expect_split": False, "patch": False, "missing": ["layers.1.ffn.experts.2"]},
    {"name": "tiny-s11-n7-split-patched", "preset": "tiny", "seed": 11, "shards": 7,
     "format": "native", "expect_split": True, "patch": True,
     "missing": ["layers.0.ffn.experts.0", "layers.2.ffn.experts.5"]},
    {"name": "small-s7-n7-split", "preset": "small", "seed": 7, "shards": 7, "format": "native",
     "expect_split": True, "patch": False, "missing": ["layers.1.ffn.experts.13"]},
    {"name": "tiny-bf16-s2", "preset": "tiny", "seed": 2, "shards": 2, "format": "bf16",
     "expect_split": False, "patch": False, "missing": ["layers.3.ffn.experts.4"]},
]


def split_pairs(weight_map):
    """Experts (layers.L.ffn.experts.E) whose w1 and w3 weights sit in different shard files."""
    out = {}
    for k, shard in weight_map.items():
        m = re.match(r"^(layers\.\d+\.ffn\.experts\.\d+)\.w1\.weight$", k)
        if m and weight_map.get(m.group(1) + ".w3.weight", shard) != shard:
            out[m.group(1)] = (shard, weight_map[m.group(1) + ".w3.weight"])
    return out


def amax_table(weight_map, seed, missing, n_missing_random=3):
    """Input amax {module: float32 value} for every weight module of the regular layers (keys
    that are no target are ignored by quantforge), minus the uncalibrated experts: the forced
    `missing` ones plus a few chosen at random. w1 and w3 always get different values. Also a
    large amax for the MTP experts, which neither tool may use (not targets, not in the pool)."""
    rng = random.Random(1000 + seed)
    modules = sorted({k[:-len(".weight")] for k in weight_map if k.endswith(".weight")})
    experts = sorted({m.group(1) for m in map(EXPERT_RE.match, modules) if m})
    chosen = set(missing) | set(rng.sample(experts, min(n_missing_random, len(experts))))
    table = {}
    for mod in modules:
        m = EXPERT_RE.match(mod)
        if m and m.group(1) in chosen:
            continue
        if mod.startswith("mtp."):
            if ".ffn.experts." in mod:
                table[mod] = 1000.0
            continue
        if not mod.startswith("layers."):
            continue
        table[mod] = to_f32(rng.uniform(0.5, 8.0))
    for mod in list(table):
        if mod.endswith(".w3") and mod[:-1] + "1" in table and table[mod] == table[mod[:-1] + "1"]:
            table[mod] = to_f32(table[mod] * 1.25)
    return table, sorted(chosen)


# ---- runs ----------------------------------------------------------------------------------------
class StepFailed(Exception):
    pass


def run(cmd, log, env=None, cwd=None):
    start = time.time()
    with open(log, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    print(f"  ran ({time.time() - start:.1f} s, rc {r.returncode}): {' '.join(cmd)}", flush=True)
    if r.returncode != 0:
        with open(log) as f:
            tail = f.read().splitlines()[-40:]
        print("  --- last lines of " + log + ":\n    " + "\n    ".join(tail), flush=True)
        raise StepFailed(f"exit status {r.returncode}: {' '.join(cmd)} (log {log})")


class Tools:
    def __init__(self, args):
        self.bin = os.path.abspath(args.bin)
        self.modelopt = os.path.abspath(args.modelopt)
        self.script = os.path.join(self.modelopt, "quantize_to_nvfp4.py")
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = self.modelopt + os.pathsep + self.env.get("PYTHONPATH", "")
        self.env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        self.env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        self.cuda = args.cuda

    def qf(self, args, log):
        run([self.bin] + args + ["--log-level", "info"], log, env=self.env)

    def modelopt_export(self, amax_dir, src, out, cast, log):
        cmd = [sys.executable, self.script, "--amax_path", amax_dir, "--source_ckpt", src,
               "--output_ckpt", out, "--device", "cpu"]
        if cast:
            cmd.append("--cast_mxfp4_to_nvfp4")
        run(cmd, log, env=self.env)


def import_modelopt(modelopt_dir):
    """The assembled script as a module: ModelOpt's own helpers for the references."""
    sys.path.insert(0, modelopt_dir)
    import quantize_to_nvfp4 as mo  # noqa: E402  (the assembled ModelOpt script)
    from modelopt.torch.quantization.qtensor import NVFP4QTensor  # noqa: E402
    return mo, NVFP4QTensor


# ---- torch helpers -------------------------------------------------------------------------------
def torch_u8(data, shape):
    import torch
    t = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return t.reshape(shape) if shape else t.reshape(())


def tensor_bytes(t):
    """Raw bytes of a torch tensor (float8 viewed as uint8)."""
    import torch
    t = t.detach().cpu().contiguous()
    if t.dtype not in (torch.uint8, torch.int8, torch.float32, torch.bfloat16, torch.int16):
        t = t.view(torch.uint8)
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def dequant_bf16(src, name, mo):
    """The BF16 values quantforge quantizes (and ModelOpt's calibration sees) of source weight
    `name`: MXFP4 via ModelOpt's _dequantize_mxfp4_to_bf16; FP8 x 128x128 scale as ModelOpt's
    ptq.py _fp8_ue8m0_blockwise_to_bf16 (ldexp of the float32 value, one rounding to BF16; here
    with partial edge tiles, which make-tiny shapes have); BF16 as stored."""
    import torch
    _, dtype, shape, data = src[name]
    base = name[:-len(".weight")]
    if dtype == "BF16":
        return torch.frombuffer(bytearray(data), dtype=torch.int16).reshape(shape).view(torch.bfloat16)
    _, sdtype, sshape, sdata = src[base + ".scale"]
    if dtype == "I8":  # MXFP4 expert
        return mo._dequantize_mxfp4_to_bf16(torch_u8(data, shape), torch_u8(sdata, sshape), "cpu")
    assert dtype == "F8_E4M3", (name, dtype)
    lut = torch.tensor([e4m3_to_float(b) for b in range(256)], dtype=torch.float32)
    w = lut[torch_u8(data, shape).long()]
    rows, cols = shape
    if sdtype == "F8_E8M0":
        exp = torch_u8(sdata, sshape).to(torch.int32) - 127
        exp = exp.repeat_interleave(128, 0)[:rows].repeat_interleave(128, 1)[:, :cols]
        return torch.ldexp(w, exp.to(torch.float32)).to(torch.bfloat16)
    assert sdtype == "F32", (name, sdtype)
    s = torch.frombuffer(bytearray(sdata), dtype=torch.float32).reshape(sshape)
    s = s.repeat_interleave(128, 0)[:rows].repeat_interleave(128, 1)[:, :cols]
    return (w * s).to(torch.bfloat16)


def weight_amax(src, name, mo):
    """max |W_bf16| as float32 0-d: what ModelOpt's max calibration records for the weight."""
    return dequant_bf16(src, name, mo).abs().max().float()


# ---- the ModelOpt inputs -------------------------------------------------------------------------
def write_amax_inputs(case_dir, src, table, mo):
    """quantforge's --amax-file and ModelOpt's per-rank dicts (MP 2: experts split by id parity,
    as ptq.py's rank-sharded experts), with weight amax = max |W_bf16| for calibrated experts."""
    import torch
    qf_path = os.path.join(case_dir, "amax.json")
    with open(qf_path, "w") as f:
        json.dump(table, f, indent=1, sort_keys=True)
    mo_dir = os.path.join(case_dir, "amax-modelopt")
    os.makedirs(mo_dir, exist_ok=True)
    ranks = [{}, {}]
    weight_amax_of = {}
    for mod, value in sorted(table.items()):
        m = re.match(r"^(?:layers|mtp)\.\d+\.ffn\.experts\.(\d+)\.w[123]$", mod)
        if not m:
            continue
        r = int(m.group(1)) % 2
        ranks[r][mod + "_input_quantizer._amax"] = torch.tensor(value, dtype=torch.float32)
        if mod.startswith("layers.") and mod + ".weight" in src and src[mod + ".weight"][1] == "I8":
            a = weight_amax(src, mod + ".weight", mo)
            weight_amax_of[mod] = a
            ranks[r][mod + "_weight_quantizer._amax"] = a.clone()
    for r, d in enumerate(ranks):
        torch.save(d, os.path.join(mo_dir, f"amax_dict_rank{r}-mp2.pt"))
    return qf_path, mo_dir, weight_amax_of


def patch_source(src_dir, case):
    """Edge cases no make-tiny draw produces, by editing E8M0 scale bytes of FP4 experts in place:
    a block 20 octaves below its tensor's k_max (outside the lossless window: the data-derived
    fallback), an all-zero-scale block (e8m0 0, the sentinel), and a w3 whose k_max is 5 above its
    w1's (shared k_max: w1 blocks inside their own window but outside the shared one). Also raise
    the k_max of the w3 of every split pair by 2 (so ModelOpt's per-shard pairing shows)."""
    index = load_json(os.path.join(src_dir, "model.safetensors.index.json"))["weight_map"]
    src = read_checkpoint(src_dir)
    done = []

    def scale_bytes(mod):
        return src[mod + ".scale"][3]

    def put(mod, offset, value):
        patch_tensor_bytes(src_dir, mod + ".scale", offset, [value])
        done.append(f"{mod}.scale[{offset}] = {value}")

    if case["patch"]:
        w2 = "layers.1.ffn.experts.3.w2"
        k = max(scale_bytes(w2))
        put(w2, 0, k - 20)
        put(w2, 5, 0)
        w1, w3 = "layers.2.ffn.experts.1.w1", "layers.2.ffn.experts.1.w3"
        k1 = max(scale_bytes(w1))
        put(w3, 3, min(k1 + 5, 254))
        put(w1, 1, k1 - 15)
    for base in split_pairs(index):
        w1, w3 = base + ".w1", base + ".w3"
        put(w3, 0, min(max(max(scale_bytes(w1)), max(scale_bytes(w3))) + 2, 254))
    return done


def add_aux_files(src_dir):
    """Non-shard files of a release: copied by both tools; .cache and __pycache__ skipped."""
    os.makedirs(os.path.join(src_dir, "inference", "__pycache__"), exist_ok=True)
    os.makedirs(os.path.join(src_dir, ".cache"), exist_ok=True)
    files = {"tokenizer.json": '{"model": "parity"}\n', "inference/README.md": "inference code\n",
             "inference/__pycache__/model.cpython-312.pyc": "stale\n", ".cache/stale": "x\n"}
    for rel, text in files.items():
        with open(os.path.join(src_dir, rel), "w") as f:
            f.write(text)


def other_files(d):
    """Relative paths of every regular file under d that is neither a shard nor a known JSON."""
    out = set()
    for root, _, names in os.walk(d):
        for n in names:
            rel = os.path.relpath(os.path.join(root, n), d)
            if SHARD_RE.match(rel) or rel in ("model.safetensors.index.json", "config.json",
                                              "hf_quant_config.json"):
                continue
            out.add(rel)
    return out


# ---- comparisons ---------------------------------------------------------------------------------
def compare_exports(where, qf_dir, mo_dir, split):
    """quantforge's export against ModelOpt's, file by file, tensor by tensor. Tensors of a
    split pair's weight, weight_scale and weight_scale_2 are left to check_split_pairs."""
    n_tensors = n_equal = 0
    qf_shards = sorted(f for f in os.listdir(qf_dir) if SHARD_RE.match(f))
    mo_shards = sorted(f for f in os.listdir(mo_dir) if SHARD_RE.match(f))
    if qf_shards != mo_shards:
        fail(where, f"shard files differ: quantforge {qf_shards} vs modelopt {mo_shards}")
    layout_same = True
    split_tensors = {b + "." + w + s for b in split for w in ("w1", "w3")
                     for s in (".weight", ".weight_scale", ".weight_scale_2")}
    for shard in sorted(set(qf_shards) & set(mo_shards)):
        qa, qmeta, qorder = read_safetensors(os.path.join(qf_dir, shard))
        ma, mmeta, morder = read_safetensors(os.path.join(mo_dir, shard))
        if set(qa) != set(ma):
            only_q, only_m = sorted(set(qa) - set(ma)), sorted(set(ma) - set(qa))
            fail(where, f"{shard}: tensor sets differ; only quantforge ({len(only_q)}): "
                        f"{only_q[:8]}; only modelopt ({len(only_m)}): {only_m[:8]}")
        if qorder != morder or qmeta != mmeta:
            layout_same = False
        for name in sorted(set(qa) & set(ma)):
            n_tensors += 1
            (qd, qs, qb), (md, ms, mb) = qa[name], ma[name]
            if (qd, qs) != (md, ms):
                fail(where, f"{shard} {name}: quantforge {qd} {qs} vs modelopt {md} {ms}")
            elif qb == mb:
                n_equal += 1
            elif name not in split_tensors:
                fail(where, f"{shard} " + describe_tensor_diff(name, qd, qs, qb, mb))
    if not layout_same:
        deviate(where, "shard-layout", "tensor order and/or __metadata__ differ inside shard files")
    print(f"  {where}: {n_equal} of {n_tensors} tensors byte-identical "
          f"({len(split_tensors)} split-pair tensors checked separately)", flush=True)

    # model.safetensors.index.json
    qi = load_json(os.path.join(qf_dir, "model.safetensors.index.json"))
    mi = load_json(os.path.join(mo_dir, "model.safetensors.index.json"))
    for line in json_diff(qi.get("weight_map"), mi.get("weight_map"), "weight_map"):
        fail(where, "index " + line)
    qmeta, mmeta = dict(qi.get("metadata", {})), dict(mi.get("metadata", {}))
    q_total, m_total = qmeta.pop("total_size", None), mmeta.pop("total_size", None)
    for line in json_diff(qmeta, mmeta, "metadata"):
        fail(where, "index " + line)
    actual = sum(len(t[3]) for t in read_checkpoint(qf_dir).values())
    if q_total != actual:
        fail(where, f"index metadata.total_size {q_total} but the tensors hold {actual} bytes")
    elif q_total != m_total:
        deviate(where, "index-total-size", f"quantforge {q_total} (= its tensor bytes) vs "
                                           f"modelopt {m_total} (the source's)")

    # config.json, hf_quant_config.json: parsed; each difference listed
    for fname in ("config.json", "hf_quant_config.json"):
        q, m = load_json(os.path.join(qf_dir, fname)), load_json(os.path.join(mo_dir, fname))
        for line in json_diff(q, m):
            if fname == "hf_quant_config.json" and line.startswith("quantforge:"):
                deviate(where, "hf-quantforge-block", f"{fname} {line}")
            else:
                fail(where, f"{fname} {line}")
        with open(os.path.join(qf_dir, fname), "rb") as f1, open(os.path.join(mo_dir, fname), "rb") as f2:
            if fname == "config.json" and f1.read() != f2.read():
                deviate(where, "file-format", f"{fname} bytes differ, parsed equal")

    # other files
    qo, mo_ = other_files(qf_dir), other_files(mo_dir)
    for rel in sorted(qo - mo_):
        if rel == "quantforge_checksums.json":
            deviate(where, "checksums-file", "quantforge_checksums.json only in quantforge's export")
        else:
            fail(where, f"file {rel} only in quantforge's export")
    for rel in sorted(mo_ - qo):
        fail(where, f"file {rel} only in modelopt's export")
    for rel in sorted(qo & mo_):
        with open(os.path.join(qf_dir, rel), "rb") as f1, open(os.path.join(mo_dir, rel), "rb") as f2:
            if f1.read() != f2.read():
                fail(where, f"file {rel} differs")


def check_split_pairs(where, split, qf_dir, mo_dir, src, mo, cast, weight_amax_of):
    """Each split pair: quantforge's w1 and w3 share weight_scale_2 = the pair's value (cast:
    2^(max k_max - 8); requantize: max of the two weight amax / 2688), and their codes and block
    scales equal ModelOpt's own function run with that shared value. ModelOpt's export gives each
    half its own value (reported as a deviation when they differ)."""
    import torch
    qf, mox = read_checkpoint(qf_dir), read_checkpoint(mo_dir)
    n_mo_split = 0
    for base, (shard1, shard3) in sorted(split.items()):
        w1, w3 = base + ".w1", base + ".w3"
        ins = {w: (torch_u8(src[w + ".weight"][3], src[w + ".weight"][2]),
                   torch_u8(src[w + ".scale"][3], src[w + ".scale"][2])) for w in (w1, w3)}
        if cast:
            ks = {w: mo._kmax_from_mxfp4_scale(ins[w][1], "cpu") for w in (w1, w3)}
            shared = max(ks.values())
            own = {w: f"k_max {ks[w]}" for w in (w1, w3)}
        else:
            amax = {w: weight_amax_of.get(w, weight_amax(src, w + ".weight", mo)) for w in (w1, w3)}
            shared = torch.maximum(amax[w1], amax[w3])
            own = {w: f"amax {float(amax[w])!r}" for w in (w1, w3)}
        for w in (w1, w3):
            if cast:
                packed, scale, s2, _, _ = mo._quantize_weight_nvfp4_lossless(*ins[w], shared, "cpu")
            else:
                packed, scale, s2, _ = mo._quantize_weight_nvfp4(*ins[w], shared, "cpu")
            want = {".weight": tensor_bytes(packed), ".weight_scale": tensor_bytes(scale),
                    ".weight_scale_2": tensor_bytes(s2.reshape(()))}
            for suffix, data in want.items():
                have = qf[w + suffix]
                if have[3] != data:
                    fail(where, "split pair " + describe_tensor_diff(w + suffix, have[1], have[2],
                                                                     have[3], data)
                         + " (reference: ModelOpt's function with the shared value)")
        q1, q3 = qf[w1 + ".weight_scale_2"][3], qf[w3 + ".weight_scale_2"][3]
        m1, m3 = mox[w1 + ".weight_scale_2"][3], mox[w3 + ".weight_scale_2"][3]
        if q1 != q3:
            fail(where, f"split pair {base}: quantforge weight_scale_2 {f32(q1)} (w1) != {f32(q3)} (w3)")
        if m1 != m3:
            n_mo_split += 1
            deviate(where, "split-pair",
                    f"{base}: w1 in {shard1}, w3 in {shard3}; modelopt weight_scale_2 "
                    f"{f32(m1)!r} (w1, {own[w1]}) and {f32(m3)!r} (w3, {own[w3]}); quantforge "
                    f"shares {f32(q1)!r}")
        else:
            # Both halves got the pair's value in ModelOpt too: then every byte must agree.
            note(where, f"split pair {base}: modelopt happens to give both halves "
                        f"{f32(m1)!r} (w1 {own[w1]}, w3 {own[w3]})")
            for w in (w1, w3):
                for s in (".weight", ".weight_scale", ".weight_scale_2"):
                    if qf[w + s][3] != mox[w + s][3]:
                        fail(where, "split pair " + describe_tensor_diff(
                            w + s, qf[w + s][1], qf[w + s][2], qf[w + s][3], mox[w + s][3]))
    return n_mo_split


def reference_input_amax(table, mo, amax_dir):
    """input amax per target module by ModelOpt's DS-V4 rules (its own _load_merged_amax for the
    routed experts: union over ranks, w1/w3 fused, fallback = max per projection over calibrated
    non-MTP experts); other modules as given, w1/w3 siblings (shared experts) max-shared as
    ModelOpt's unified export does for linears reading one input."""
    merged, fallback = mo._load_merged_amax(pathlib.Path(amax_dir))
    out = {}
    for mod, value in table.items():
        out[mod] = float(value)
    for k, v in merged.items():
        m = re.match(r"^(.*)_input_quantizer\._amax$", k)
        if m:
            out[m.group(1)] = float(v)

    def resolve(mod):
        m = EXPERT_RE.match(mod)
        if m:
            key = mod + "_input_quantizer._amax"
            return float(merged[key]) if key in merged else float(fallback[m.group(2)])
        v = out[mod]
        for a, b in ((".w1", ".w3"), (".w3", ".w1")):
            if mod.endswith(a) and mod[:-3] + b in out:
                v = max(v, out[mod[:-3] + b])
        return v
    return resolve


def check_full(where, qf_dir, src, mo, NVFP4QTensor, resolve_input, cast, expected_targets):
    """--recipe full: every NVFP4 module against ModelOpt's quantizer, everything else copied."""
    import torch
    out = read_checkpoint(qf_dir)
    targets = sorted(n[:-len(".weight_scale_2")] for n in out if n.endswith(".weight_scale_2"))
    if expected_targets is not None and set(targets) != set(expected_targets):
        fail(where, f"NVFP4 modules: only quantforge {sorted(set(targets) - set(expected_targets))[:8]}, "
                    f"missing {sorted(set(expected_targets) - set(targets))[:8]}")
    covered = set()
    n_ok = 0
    amax_cache = {}

    def amax_of(mod):
        if mod not in amax_cache:
            amax_cache[mod] = weight_amax(src, mod + ".weight", mo)
        return amax_cache[mod]

    for mod in targets:
        sib = None
        for a, b in ((".w1", ".w3"), (".w3", ".w1")):
            if mod.endswith(a) and mod[:-3] + b in targets:
                sib = mod[:-3] + b
        kind = src[mod + ".weight"][1]
        if cast and kind == "I8":
            w = torch_u8(src[mod + ".weight"][3], src[mod + ".weight"][2])
            s = torch_u8(src[mod + ".scale"][3], src[mod + ".scale"][2])
            k = mo._kmax_from_mxfp4_scale(s, "cpu")
            if sib:
                k = max(k, mo._kmax_from_mxfp4_scale(torch_u8(src[sib + ".scale"][3], src[sib + ".scale"][2]), "cpu"))
            packed, scale, s2, _, _ = mo._quantize_weight_nvfp4_lossless(w, s, k, "cpu")
            how = "_quantize_weight_nvfp4_lossless"
        else:
            amax = amax_of(mod) if not sib else torch.maximum(amax_of(mod), amax_of(sib))
            s2 = mo._amax_to_nvfp4_scale_2(amax)
            q, scale, _ = NVFP4QTensor.quantize(dequant_bf16(src, mod + ".weight", mo), 16, None, s2,
                                                try_tensorrt=False)
            packed = q._quantized_data
            how = "NVFP4QTensor.quantize"
        input_scale = mo._amax_to_nvfp4_scale_2(torch.tensor(resolve_input(mod), dtype=torch.float32))
        want = {".weight": tensor_bytes(packed), ".weight_scale": tensor_bytes(scale),
                ".weight_scale_2": tensor_bytes(s2.reshape(())),
                ".input_scale": tensor_bytes(input_scale.reshape(()))}
        ok = True
        for suffix, data in want.items():
            name = mod + suffix
            covered.add(name)
            have = out.get(name)
            if have is None:
                fail(where, f"{name} missing")
                ok = False
            elif have[3] != data:
                fail(where, describe_tensor_diff(name, have[1], have[2], have[3], data)
                     + f" (reference: ModelOpt {how}, source {kind})")
                ok = False
        n_ok += ok
    n_copies = 0
    for name, (shard, dtype, shape, data) in out.items():
        if name in covered:
            continue
        if name not in src:
            fail(where, f"{name}: in the export, neither NVFP4 output nor source tensor")
        elif src[name][1:] != (dtype, shape, data):
            fail(where, f"{name}: copied tensor differs from the source")
        else:
            n_copies += 1
    replaced = {m + ".weight" for m in targets} | {m + ".scale" for m in targets}
    for name in src:
        if name not in out and name not in replaced:
            fail(where, f"source tensor {name} missing from the export")
    print(f"  {where}: {n_ok} of {len(targets)} NVFP4 modules equal ModelOpt's reference, "
          f"{n_copies} tensors copied byte-identically", flush=True)
    return targets


# ---- one case ------------------------------------------------------------------------------------
def run_case(case, tools, work, mo, NVFP4QTensor, state):
    name = case["name"]
    section(f"case {name}: make-tiny --preset {case['preset']} --seed {case['seed']} "
            f"--shards {case['shards']} --format {case['format']}")
    d = os.path.join(work, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "logs"))
    logs = os.path.join(d, "logs")
    src_dir = os.path.join(d, "src")
    tools.qf(["make-tiny", "--preset", case["preset"], "--seed", str(case["seed"]), "--shards",
              str(case["shards"]), "--format", case["format"], "--out", src_dir],
             os.path.join(logs, "make_tiny.log"))
    add_aux_files(src_dir)
    native = case["format"] == "native"
    weight_map = load_json(os.path.join(src_dir, "model.safetensors.index.json"))["weight_map"]
    split = split_pairs(weight_map) if native else {}  # BF16: no ModelOpt run, pairs irrelevant
    print(f"  pairs split across shards: {sorted(split) or 'none'}", flush=True)
    if case["expect_split"] and not split:
        fail(name, f"--shards {case['shards']} was chosen to split a w1/w3 pair across shard "
                   "files, but no pair is split (make-tiny placement changed?): choose another")
    if native and not case["expect_split"] and split:
        note(name, f"pairs split across shards although not expected: {sorted(split)}")
    if native:
        for line in patch_source(src_dir, case):
            print(f"  patched source: {line}", flush=True)
    src = read_checkpoint(src_dir)
    table, uncalibrated = amax_table(weight_map, case["seed"], case["missing"])
    print(f"  amax for {len(table)} modules; uncalibrated experts: {uncalibrated}", flush=True)
    qf_amax, mo_amax, weight_amax_of = write_amax_inputs(d, src, table, mo)

    def qf_quantize(out, extra, log):
        tools.qf(["quantize", "--in", src_dir, "--out", os.path.join(d, out), "--work",
                  os.path.join(d, out + ".work"), "--amax-file", qf_amax, "--backend", "cpu"] + extra,
                 os.path.join(logs, log))
        tools.qf(["validate", "--source", src_dir, "--out", os.path.join(d, out)],
                 os.path.join(logs, log.replace(".log", ".validate.log")))

    def step(label, fn):
        where = f"{name}/{label}"
        print(f"-- {where}", flush=True)
        try:
            fn(where)
        except StepFailed as e:
            fail(where, str(e))
        except Exception as e:  # a bug here or an unexpected format: keep going, say where
            traceback.print_exc()
            fail(where, f"{type(e).__name__}: {e}")

    if native:
        def experts(where, cast):
            tag = "cast" if cast else "requantize"
            qf_quantize(f"qf-experts-{tag}", ["--recipe", "experts", "--expert-weights", tag],
                        f"qf_experts_{tag}.log")
            mo_out = os.path.join(d, f"mo-experts-{tag}")
            tools.modelopt_export(mo_amax, src_dir, mo_out, cast, os.path.join(logs, f"mo_{tag}.log"))
            compare_exports(where, os.path.join(d, f"qf-experts-{tag}"), mo_out, split)
            n = check_split_pairs(where, split, os.path.join(d, f"qf-experts-{tag}"), mo_out, src,
                                  mo, cast, weight_amax_of)
            state["split_deviations"] += n
            if case["expect_split"] and n == 0:
                fail(where, "expected ModelOpt to give a split pair two weight_scale_2 values "
                            "(the split w3 was given a higher k_max, the uncalibrated one a "
                            "larger amax); it did not, so this check proves nothing: investigate")
        step("experts-cast", lambda w: experts(w, True))
        step("experts-requantize", lambda w: experts(w, False))

    resolve = None

    def full(where, tag):
        nonlocal resolve
        qf_quantize(f"qf-full-{tag}", ["--recipe", "full", "--expert-weights", tag], f"qf_full_{tag}.log")
        if resolve is None:
            resolve = reference_input_amax(table, mo, mo_amax)
        expected = state["full_targets"].get(case["preset"]) if not native else None
        targets = check_full(where, os.path.join(d, f"qf-full-{tag}"), src, mo, NVFP4QTensor, resolve,
                             tag == "cast", expected)
        if native:
            state["full_targets"].setdefault(case["preset"], targets)

    step("full-requantize", lambda w: full(w, "requantize"))
    step("full-cast", lambda w: full(w, "cast"))

    if native and tools.cuda:
        def cuda(where):
            out = os.path.join(d, "qf-experts-requantize-cuda")
            tools.qf(["quantize", "--in", src_dir, "--out", out, "--work", out + ".work",
                      "--amax-file", qf_amax, "--backend", "cuda", "--expert-weights", "requantize"],
                     os.path.join(logs, "qf_requantize_cuda.log"))
            r = subprocess.run(["diff", "-r", out, os.path.join(d, "qf-experts-requantize")],
                               capture_output=True, text=True)
            if r.returncode != 0:
                fail(where, "--backend cuda differs from cpu: " + r.stdout[:2000])
            else:
                print(f"  {where}: --backend cuda export byte-identical to --backend cpu", flush=True)
        step("requantize-cuda-vs-cpu", cuda)


# ---- self-test of the helpers (no torch, no binaries) ------------------------------------------
def self_test():
    import tempfile
    assert e4m3_to_float(0x38) == 1.0 and e4m3_to_float(0x7E) == 448.0 and e4m3_to_float(0x01) == 2 ** -9
    assert math.isnan(e4m3_to_float(0x7F)) and e4m3_to_float(0xB8) == -1.0
    assert to_f32(0.1) != 0.1 and to_f32(to_f32(0.1)) == to_f32(0.1)
    assert json_diff({"a": 1, "b": [1, 2]}, {"a": 1, "b": [1, 2]}) == []
    d = json_diff({"a": 1, "q": {"x": 1}, "l": [1, 2]}, {"a": 2, "l": [1, 3], "m": None})
    assert d == ["a: quantforge 1 vs modelopt 2", "l[1]: quantforge 2 vs modelopt 3",
                 "m: only in modelopt: null", 'q: only in quantforge: {"x": 1}'], d
    assert json_diff(1, 1.0) != [] and json_diff(True, 1) != []
    wm = {"layers.0.ffn.experts.0.w1.weight": "a", "layers.0.ffn.experts.0.w3.weight": "b",
          "layers.0.ffn.experts.1.w1.weight": "a", "layers.0.ffn.experts.1.w3.weight": "a",
          "mtp.0.ffn.experts.0.w1.weight": "a", "mtp.0.ffn.experts.0.w3.weight": "b"}
    assert split_pairs(wm) == {"layers.0.ffn.experts.0": ("a", "b")}
    wm.update({k.replace("w1", "w2"): "a" for k in list(wm)})
    wm["layers.0.attn.wq_a.weight"] = "a"
    t, missing = amax_table(wm, 3, ["layers.0.ffn.experts.1"], n_missing_random=0)
    assert missing == ["layers.0.ffn.experts.1"]
    assert "layers.0.ffn.experts.1.w1" not in t and "layers.0.ffn.experts.0.w1" in t
    assert t["layers.0.ffn.experts.0.w1"] != t["layers.0.ffn.experts.0.w3"]
    assert t["mtp.0.ffn.experts.0.w1"] == 1000.0 and "layers.0.attn.wq_a" in t
    assert all(to_f32(v) == v for v in t.values())
    with tempfile.TemporaryDirectory() as tmp:
        # a two-tensor shard, read back, patched, re-read
        header = {"a": {"dtype": "U8", "shape": [2, 2], "data_offsets": [0, 4]},
                  "b": {"dtype": "F32", "shape": [], "data_offsets": [4, 8]},
                  "__metadata__": {"format": "pt"}}
        text = json.dumps(header).encode()
        text += b" " * ((8 - len(text) % 8) % 8)
        with open(os.path.join(tmp, "model-00001-of-00001.safetensors"), "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text + bytes([1, 2, 3, 4]) + f32_bytes(1.5))
        with open(os.path.join(tmp, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": {"a": "model-00001-of-00001.safetensors",
                                                      "b": "model-00001-of-00001.safetensors"}}, f)
        tensors, meta, order = read_safetensors(os.path.join(tmp, "model-00001-of-00001.safetensors"))
        assert meta == {"format": "pt"} and order == ["a", "b"]
        assert tensors["a"] == ("U8", [2, 2], bytes([1, 2, 3, 4])) and f32(tensors["b"][2]) == 1.5
        patch_tensor_bytes(tmp, "a", 2, [9])
        ck = read_checkpoint(tmp)
        assert ck["a"][3] == bytes([1, 2, 9, 4]) and ck["b"][1:3] == ("F32", [])
        line = describe_tensor_diff("x.weight_scale", "F8_E4M3", [2, 2], bytes([0x38, 0, 0, 0]),
                                    bytes([0x40, 0, 0, 0]))
        assert "1 of 4 bytes differ" in line and "0x38=1.0" in line and "[0, 0]" in line, line
        os.makedirs(os.path.join(tmp, "inference"))
        with open(os.path.join(tmp, "inference", "x.py"), "w") as f:
            f.write("")
        assert other_files(tmp) == {"inference/x.py"}
    print("self-test: PASS")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default=".device/bin/quantforge")
    p.add_argument("--modelopt", default=".device/modelopt")
    p.add_argument("--work", default="/tmp/qf-modelopt")
    p.add_argument("--json", help="write the findings here")
    p.add_argument("--cases", help="comma-separated case names (default: all)")
    p.add_argument("--cuda", default="auto", choices=["auto", "on", "off"],
                   help="also run --backend cuda --expert-weights requantize and require the cpu "
                        "bytes (auto: when torch sees a GPU)")
    p.add_argument("--self-test", action="store_true")
    args = p.parse_args()
    if args.self_test:
        self_test()
        return 0

    section("setup")
    commit_file = os.path.join(args.modelopt, "COMMIT")
    if not os.path.exists(commit_file):
        print(f"FAIL: {commit_file} missing: run tests/parity/modelopt/assemble.sh "
              f"MODELOPT_REPO first", flush=True)
        return 1
    with open(commit_file) as f:
        commit = f.read().strip()
    print(f"ModelOpt commit: {commit} (pinned {PINNED_COMMIT})")
    if commit != PINNED_COMMIT:
        print("FAIL: .device/modelopt was assembled from another commit; re-run assemble.sh")
        return 1
    with open(os.path.join(args.modelopt, "MANIFEST")) as f:
        print("assembled files:\n  " + "\n  ".join(l.rstrip() for l in f if not l.startswith("#")))
    import torch
    print(f"torch {torch.__version__}, python {sys.version.split()[0]}")
    try:
        import safetensors
        print(f"safetensors {safetensors.__version__}")
    except Exception as e:  # ModelOpt's script needs it; say so before the first case
        print(f"FAIL: safetensors not importable: {e}")
        return 1
    mo, NVFP4QTensor = import_modelopt(os.path.abspath(args.modelopt))
    if args.cuda == "auto":
        args.cuda = "on" if torch.cuda.is_available() else "off"
    args.cuda = args.cuda == "on"
    print(f"quantforge: {os.path.abspath(args.bin)}; cuda cross-check: {'on' if args.cuda else 'off'}")
    tools = Tools(args)
    os.makedirs(args.work, exist_ok=True)
    state = {"split_deviations": 0, "full_targets": {}}
    chosen = args.cases.split(",") if args.cases else [c["name"] for c in CASES]
    unknown = set(chosen) - {c["name"] for c in CASES}
    if unknown:
        print(f"FAIL: unknown case(s) {sorted(unknown)}")
        return 1
    start = time.time()
    for case in CASES:
        if case["name"] in chosen:
            try:
                run_case(case, tools, args.work, mo, NVFP4QTensor, state)
            except Exception as e:  # setup of the case failed (make-tiny, amax inputs)
                traceback.print_exc()
                fail(case["name"], f"{type(e).__name__}: {e}")

    section("summary")
    by_key = {}
    for where, key, text in deviations:
        by_key.setdefault(key, []).append(where)
    print("whitelisted deviations (docs/EXPORT_FORMAT.md, 'Conformance with ModelOpt'):")
    for key, wheres in sorted(by_key.items()):
        print(f"  {key}: {len(wheres)}x ({WHITELIST[key]})")
    print(f"ModelOpt split-pair weight_scale_2 deviations seen: {state['split_deviations']}")
    for where, text in failures[:50]:
        print(f"  FAIL [{where}] {text}")
    verdict = "PASS" if not failures else f"FAIL ({len(failures)} failure(s))"
    print(f"modelopt parity ({commit[:10]}, {len(chosen)} case(s), {time.time() - start:.0f} s): "
          f"{verdict}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"modelopt_commit": commit, "cases": chosen, "passed": not failures,
                       "failures": [{"where": w, "text": t} for w, t in failures],
                       "deviations": [{"where": w, "kind": k, "text": t} for w, k, t in deviations],
                       "notes": [{"where": w, "text": t} for w, t in notes],
                       "whitelist": WHITELIST}, f, indent=1)
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
