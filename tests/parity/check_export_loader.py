#!/usr/bin/env python3
"""Loads an NVFP4 export by vLLM's DeepSeek-V4 rules into transformers, compares logits with the
source model (weight-only, W4A4-sim) and torch's NVFP4 decode with our C++ one (bit for bit).
Usage: --source NATIVE_DIR --export EXPORT_DIR [--decoded-dump DIR] [--device cuda] [--json OUT]"""
import argparse
import hashlib
import json
import math
import os
import re
import shutil
import struct
import sys
import tempfile
import traceback

import torch
import torch.nn.functional as F
from torch import nn

# FORMATS.md §1: E2M1 code table, bit 3 = sign (code 8 is -0.0).
E2M1 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
        -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]
E2M1_BOUNDS = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]  # FORMATS.md §1 rounding thresholds
E2M1_MAG = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
NVFP4_BLOCK = 16
FP8_BLOCK = 128  # FORMATS.md §4: one .scale per 128x128 tile
ROUTED_EXPERT = re.compile(r"^layers\.(\d+)\.ffn\.experts\.(\d+)\.(w[123])$")
NVFP4_SUFFIXES = (".weight_scale_2", ".weight_scale", ".input_scale")

problems = []  # refusals / failures: exit 1
notes = []


def problem(msg):
    problems.append(msg)
    print("  PROBLEM:", msg)


def note(msg):
    notes.append(msg)
    print("  note:", msg)


def section(title):
    print("\n== " + title, flush=True)


# ------------------------------------------------------------------------------------------------
# checkpoint access (safetensors headers read directly: dtype strings as on disk)
class Checkpoint:
    def __init__(self, path):
        from safetensors import safe_open
        self.path = path
        self.config = json.load(open(os.path.join(path, "config.json")))
        hq = os.path.join(path, "hf_quant_config.json")
        self.hf_quant = json.load(open(hq)) if os.path.exists(hq) else None
        idx = os.path.join(path, "model.safetensors.index.json")
        if os.path.exists(idx):
            self.index = json.load(open(idx))
            wm = self.index["weight_map"]
        else:
            self.index = None
            wm = None
        shards = sorted(set(wm.values())) if wm else ["model.safetensors"]
        self.info, self.where, self._files = {}, {}, {}
        for s in shards:
            with open(os.path.join(path, s), "rb") as f:
                n = struct.unpack("<Q", f.read(8))[0]
                header = json.loads(f.read(n))
            header.pop("__metadata__", None)
            for k, v in header.items():
                self.info[k] = (v["dtype"], list(v["shape"]))
                self.where[k] = s
            self._files[s] = safe_open(os.path.join(path, s), framework="pt")
        if wm is not None and set(wm) != set(self.where):
            extra, missing = set(self.where) - set(wm), set(wm) - set(self.where)
            problem(f"{path}: index weight_map vs shards: {len(missing)} listed but absent "
                    f"{sorted(missing)[:3]}, {len(extra)} present but unlisted {sorted(extra)[:3]}")
        if wm is not None:
            for k, s in wm.items():
                if k in self.where and self.where[k] != s:
                    problem(f"{k}: index says {s}, found in {self.where[k]}")

    def get(self, name):
        return self._files[self.where[name]].get_tensor(name)


# ------------------------------------------------------------------------------------------------
# decoders (CPU, float32)
def unpack_codes(packed):
    """[..., n/2] bytes -> [..., n] codes; element 2i = low nibble (FORMATS.md §1 packing)."""
    u = packed.view(torch.uint8).long()
    return torch.stack([u & 0xF, u >> 4], dim=-1).flatten(-2)


def nvfp4_decode(packed, scale_e4m3, scale_2):
    """FORMATS.md §1 dequantization: E2M1(code) x float(weight_scale) x weight_scale_2, in float32,
    associated as code * (scale * scale_2) like qf::numerics::nvfp4_decode so the C++ decoder can
    be compared bit for bit (ModelOpt multiplies the per-block scale product into the codes)."""
    lut = torch.tensor(E2M1, dtype=torch.float32)
    codes = unpack_codes(packed)
    block = scale_e4m3.float() * scale_2.float().reshape(())  # [out, in/16] float32
    return lut[codes] * block.repeat_interleave(NVFP4_BLOCK, dim=-1)


def fp8_block_decode(w, scale):
    """FORMATS.md §4 FP8 linears: F8_E4M3 [out, in] x one scale per 128x128 tile
    (E8M0 -> 2^(e-127), or F32)."""
    rows, cols = w.shape
    s = scale.float()
    s = s.repeat_interleave(FP8_BLOCK, 0)[:rows].repeat_interleave(FP8_BLOCK, 1)[:, :cols]
    return w.float() * s


def mxfp4_decode(packed, e8m0):
    """FORMATS.md §4 FP4 routed experts: I8 [out, in/2] E2M1 low nibble first, E8M0 per 32."""
    lut = torch.tensor(E2M1, dtype=torch.float32)
    return lut[unpack_codes(packed)] * e8m0.float().repeat_interleave(32, dim=-1)


# ------------------------------------------------------------------------------------------------
# the loader: what each tensor is (vLLM DeepSeek-V4 rules); refuse what vLLM would not load
def quant_mode(cfg, hf_quant, label):
    """FORMATS.md §3 'vLLM': model_type deepseek_v4 + quant_method fp8 -> DeepseekV4FP8Config;
    routed experts are ModelOptNvFp4FusedMoE only if expert_dtype == "fp4" and
    moe_quant_algo.upper() == "NVFP4". quant_method "modelopt" -> generic ModelOpt NVFP4 config
    (SGLang ModelOptFp4Config: needs group_size and an exclude list; quantized_layers for
    MIXED_PRECISION)."""
    if cfg.get("model_type") != "deepseek_v4":
        problem(f"{label}: model_type {cfg.get('model_type')!r} is not deepseek_v4")
    qc = cfg.get("quantization_config")
    if not qc:
        return "plain", set()
    method = qc.get("quant_method")
    if method == "fp8":
        moe_algo = str(qc.get("moe_quant_algo") or "").upper()
        if moe_algo == "NVFP4":
            if cfg.get("expert_dtype") != "fp4":
                problem(f"{label}: moe_quant_algo NVFP4 but expert_dtype "
                        f"{cfg.get('expert_dtype')!r}: vLLM would build MXFP4/FP8 experts "
                        "(FORMATS.md §3), not NVFP4")
            if qc.get("weight_block_size", [128, 128]) != [128, 128]:
                problem(f"{label}: weight_block_size {qc.get('weight_block_size')} != [128, 128]")
            # What SGLang's HybridFp8NvFp4Config reads (FORMATS.md §3): MTP MoE must be excluded
            # so it falls back to MXFP4; quantized_layers as MO-V4Q writes them.
            if "mtp.*" not in (qc.get("ignore") or []):
                problem(f"{label}: quantization_config.ignore {qc.get('ignore')} lacks 'mtp.*' "
                        "(SGLang HybridFp8NvFp4Config would build MTP experts as NVFP4)")
            want = {f"layers.{n}.ffn.experts" for n in range(cfg.get("num_hidden_layers", 0))}
            if set(qc.get("quantized_layers") or {}) != want:
                note(f"{label}: quantized_layers {sorted(qc.get('quantized_layers') or {})} != "
                     "one 'layers.N.ffn.experts' per regular layer (vLLM ignores it)")
            return "experts", set()
        if moe_algo:
            problem(f"{label}: unknown moe_quant_algo {qc.get('moe_quant_algo')!r}")
        return "native", set()
    if method == "modelopt":
        algo = qc.get("quant_algo")
        layers = qc.get("quantized_layers")
        group = qc.get("group_size")
        excl = qc.get("ignore", qc.get("exclude_modules"))
        if hf_quant:  # nested hf_quant_config.json form (FORMATS.md §2/§3)
            q = hf_quant.get("quantization", {})
            layers = layers if layers is not None else q.get("quantized_layers")
            group = group if group is not None else q.get("group_size")
            excl = excl if excl is not None else q.get("exclude_modules")
            if q.get("quant_algo") != algo:
                problem(f"{label}: hf_quant_config quant_algo {q.get('quant_algo')!r} != "
                        f"config.json {algo!r}")
        if algo not in ("NVFP4", "MIXED_PRECISION"):
            problem(f"{label}: quant_method modelopt with quant_algo {algo!r}")
        if group != NVFP4_BLOCK:
            problem(f"{label}: group_size {group!r} != 16 (SGLang ModelOptFp4Config needs it)")
        if excl is None:
            problem(f"{label}: no ignore/exclude_modules list (SGLang ModelOptFp4Config needs it)")
        if not isinstance(layers, dict) or not layers:
            problem(f"{label}: quant_method modelopt without quantized_layers")
            layers = {}
        mods = set()
        for mod, spec in layers.items():
            if (spec or {}).get("quant_algo") != "NVFP4" or (spec or {}).get("group_size") != 16:
                problem(f"{label}: quantized_layers[{mod!r}] = {spec} is not NVFP4/16")
            mods.add(mod)
        return "full", mods
    problem(f"{label}: quant_method {method!r} is neither fp8 nor modelopt")
    return "unknown", set()


def covered(prefix, modules):
    """A module listed in quantized_layers covers itself and everything below it."""
    parts = prefix.split(".")
    return any(".".join(parts[:i]) in modules for i in range(1, len(parts) + 1))


def plan_checkpoint(ck, label):
    """Returns (mode, plan) with plan[name] = ("nvfp4"|"fp8"|"mxfp4"|"plain"|"skip", extra)."""
    cfg, info = ck.config, ck.info
    mode, modules = quant_mode(cfg, ck.hf_quant, label)
    print(f"  {label}: {len(info)} tensors, quantization mode '{mode}'")
    plan = {}
    n_layers = cfg.get("num_hidden_layers")
    n_experts = cfg.get("n_routed_experts")

    # Which modules must be NVFP4 (FORMATS.md §3): experts mode = every routed expert of a
    # regular layer (vLLM hard-codes the NVFP4 sub-config for FusedMoE); full = quantized_layers.
    nvfp4 = set()
    with_scale2 = {n[: -len(".weight_scale_2")] for n in info if n.endswith(".weight_scale_2")}
    if mode == "experts":
        for layer in range(n_layers):
            for e in range(n_experts):
                for w in ("w1", "w2", "w3"):
                    nvfp4.add(f"layers.{layer}.ffn.experts.{e}.{w}")
    elif mode == "full":
        for name in info:
            if name.endswith(".weight") and not name.startswith("mtp."):
                p = name[: -len(".weight")]
                if covered(p, modules):
                    nvfp4.add(p)
        for mod in modules:
            if not any(p == mod or p.startswith(mod + ".") for p in nvfp4):
                problem(f"{label}: quantized_layers lists {mod!r} but no such weight exists")
    stray = {p for p in with_scale2 if p not in nvfp4 and not p.startswith("mtp.")}
    for p in sorted(stray):
        problem(f"{label}: {p} carries NVFP4 tensors but the config does not make it NVFP4 "
                "(the loader has no parameter for them)")
    for p in sorted(with_scale2):
        if p.startswith("mtp."):
            note(f"{label}: {p} is NVFP4 inside mtp.* (skipped: transformers has no MTP)")

    # NVFP4 groups: FORMATS.md §2 table; no `.scale` (vLLM maps an expert `.scale` to
    # weight_scale, which would collide with ours, §3 'Checkpoint keys').
    for p in sorted(nvfp4):
        keys = {k: f"{p}{k}" for k in (".weight", ".weight_scale", ".weight_scale_2",
                                       ".input_scale")}
        absent = [k for k, n in keys.items() if n not in info]
        if absent:
            problem(f"{label}: NVFP4 module {p} lacks {absent}")
            continue
        if f"{p}.scale" in info:
            problem(f"{label}: {p} has both NVFP4 tensors and a .scale")
        (wd, ws), (sd, ss) = info[keys[".weight"]], info[keys[".weight_scale"]]
        if wd != "U8" or len(ws) != 2:
            problem(f"{label}: {p}.weight is {wd} {ws}, want U8 [out, in/2]")
            continue
        out_f, in_f = ws[0], ws[1] * 2
        if in_f % NVFP4_BLOCK:
            problem(f"{label}: {p}: in_features {in_f} not a multiple of 16")
        if sd != "F8_E4M3" or ss != [out_f, in_f // NVFP4_BLOCK]:
            problem(f"{label}: {p}.weight_scale is {sd} {ss}, want F8_E4M3 "
                    f"[{out_f}, {in_f // NVFP4_BLOCK}]")
        for k in (".weight_scale_2", ".input_scale"):
            d, s = info[keys[k]]
            if d != "F32" or s != []:
                problem(f"{label}: {p}{k} is {d} {s}, want F32 [] (0-d)")
        plan[keys[".weight"]] = ("nvfp4", p)
        for k in (".weight_scale", ".weight_scale_2", ".input_scale"):
            plan[keys[k]] = ("skip", "nvfp4 companion")

    # Everything else.
    for name, (dtype, shape) in sorted(info.items()):
        if name in plan:
            continue
        if name.startswith("mtp."):
            plan[name] = ("skip", "mtp")  # §3: mtp.* skipped by the main-model loader
            continue
        suffix = next((s for s in NVFP4_SUFFIXES if name.endswith(s)), None)
        if suffix:
            if name[: -len(suffix)] not in stray:
                problem(f"{label}: orphan NVFP4 companion {name} (no complete NVFP4 group)")
            plan[name] = ("skip", "stray")
            continue
        if name.endswith(".scale"):
            w = name[: -len(".scale")] + ".weight"
            if w not in info:
                problem(f"{label}: {name} has no .weight sibling")
            plan[name] = ("skip", "scale")
            continue
        sname = name[: -len(".weight")] + ".scale" if name.endswith(".weight") else None
        if sname in info:
            sd, ss = info[sname]
            if dtype == "F8_E4M3" and len(shape) == 2:
                want = [math.ceil(shape[0] / FP8_BLOCK), math.ceil(shape[1] / FP8_BLOCK)]
                if sd not in ("F8_E8M0", "F32") or ss != want:
                    problem(f"{label}: {sname} is {sd} {ss}, want F8_E8M0|F32 {want}")
                if mode == "full":
                    problem(f"{label}: {name} is still block-FP8 in a quant_method 'modelopt' "
                            "export; a generic ModelOpt NVFP4 loader cannot read DeepSeek "
                            "`.scale` tiles (dequantized here anyway)")
                plan[name] = ("fp8", sname)
            elif dtype == "I8" and len(shape) == 2 and ROUTED_EXPERT.match(name[:-7]):
                if sd != "F8_E8M0" or ss != [shape[0], shape[1] * 2 // 32]:
                    problem(f"{label}: {sname} is {sd} {ss}, want F8_E8M0 "
                            f"[{shape[0]}, {shape[1] * 2 // 32}]")
                if mode in ("experts", "full"):
                    problem(f"{label}: routed expert {name} is still MXFP4 but the config "
                            "declares NVFP4 experts")
                plan[name] = ("mxfp4", sname)
            else:
                problem(f"{label}: {name} ({dtype} {shape}) with a .scale is neither block-FP8 "
                        "nor an MXFP4 routed expert")
            continue
        if dtype in ("U8", "I8", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4"):
            problem(f"{label}: {name} is {dtype} without any scale tensor")
            continue
        plan[name] = ("plain", None)
    return mode, plan


def check_scale_values(ck, plan, label):
    """Refuse missing / NaN / <= 0 scales; w1 and w3 of one expert (or shared expert) must share
    weight_scale_2 and input_scale (vLLM fuses them into one w13 GEMM, FORMATS.md §2/§3)."""
    scalars = {}
    for name, (kind, p) in plan.items():
        if kind != "nvfp4":
            continue
        ws = ck.get(p + ".weight_scale")
        wsf = ws.float()
        bad = ~torch.isfinite(wsf) | (wsf <= 0)
        if bad.any():
            problem(f"{label}: {p}.weight_scale has {int(bad.sum())} NaN/<=0 entries")
        for k in (".weight_scale_2", ".input_scale"):
            v = ck.get(p + k).float()
            if v.numel() != 1 or not math.isfinite(v.item()) or v.item() <= 0:
                problem(f"{label}: {p}{k} = {v.tolist()} (must be one finite value > 0)")
            scalars[p + k] = v.reshape(-1)[0].item()
    for key in sorted(scalars):
        if ".w1." not in key:
            continue
        other = key.replace(".w1.", ".w3.")
        if other in scalars and scalars[key] != scalars[other]:
            problem(f"{label}: {key} = {scalars[key]!r} but {other} = {scalars[other]!r}: "
                    "vLLM fuses w1/w3 with one scale")
    # ModelOpt also shares scales between linears that read the same input (FORMATS.md §2,
    # requantize_resmooth_fused_llm_layers); no DS-V4 loader is known to need it: informational.
    for key in sorted(scalars):
        if key.endswith(".wq_a.input_scale"):
            other = key.replace(".wq_a.", ".wkv.")
            if other in scalars and scalars[other] != scalars[key]:
                note(f"{label}: wq_a/wkv input_scale differ ({scalars[key]:.6g} vs "
                     f"{scalars[other]:.6g}); ModelOpt would share them (same input)")
    return scalars


def decode_checkpoint(ck, plan):
    """name -> full-precision tensor (float32 for decoded ones, stored dtype otherwise)."""
    out, nvfp4 = {}, {}
    for name, (kind, extra) in sorted(plan.items()):
        if kind == "skip":
            continue
        if kind == "nvfp4":
            t = nvfp4_decode(ck.get(name), ck.get(extra + ".weight_scale"),
                             ck.get(extra + ".weight_scale_2"))
            nvfp4[name] = t
        elif kind == "fp8":
            t = fp8_block_decode(ck.get(name), ck.get(extra))
        elif kind == "mxfp4":
            t = mxfp4_decode(ck.get(name), ck.get(extra))
        else:
            t = ck.get(name)
        if t.is_floating_point() and not torch.isfinite(t.float()).all():
            problem(f"{ck.path}: {name} decodes to non-finite values")
        out[name] = t.contiguous()
    return out, nvfp4


# ------------------------------------------------------------------------------------------------
# transformers load (native names, like check_tiny_checkpoint.py (c2))
def load_model(cfg, tensors, device, label, keep_dir=None):
    from safetensors.torch import save_file
    from transformers import DeepseekV4ForCausalLM
    tmp = keep_dir or tempfile.mkdtemp(prefix=f"qf_loader_{label}_")
    os.makedirs(tmp, exist_ok=True)
    plain_cfg = {k: v for k, v in cfg.items() if k != "quantization_config"}
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(plain_cfg, f, indent=2)
    save_file(tensors, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
    kwargs = dict(output_loading_info=True)
    try:
        model, info = DeepseekV4ForCausalLM.from_pretrained(tmp, dtype=torch.float32,
                                                            attn_implementation="eager", **kwargs)
    except TypeError:
        model, info = DeepseekV4ForCausalLM.from_pretrained(tmp, torch_dtype=torch.float32,
                                                            **kwargs)
    except ValueError:  # attn_implementation rejected
        model, info = DeepseekV4ForCausalLM.from_pretrained(tmp, dtype=torch.float32, **kwargs)
    if not keep_dir:
        shutil.rmtree(tmp, ignore_errors=True)
    missing = list(info.get("missing_keys", []))
    unexpected = [k for k in info.get("unexpected_keys", []) if not k.startswith("mtp.")]
    mismatched = list(info.get("mismatched_keys", []))
    print(f"  {label}: from_pretrained: missing {len(missing)}, unexpected (non-mtp) "
          f"{len(unexpected)}, mismatched {len(mismatched)}")
    for k in missing[:20]:
        problem(f"{label}: missing after load: {k}")
    for k in unexpected[:20]:
        problem(f"{label}: unexpected after load: {k}")
    for k in mismatched[:20]:
        problem(f"{label}: shape mismatch after load: {k}")
    return model.to(device).eval()


# ------------------------------------------------------------------------------------------------
# W4A4 simulation: NVFP4 fake-quant of each NVFP4 linear's input with its input_scale
def fake_quant_nvfp4(x, input_scale):
    """Activation NVFP4 as the serving kernels do it, with ModelOpt's numerics (FORMATS.md §1):
    global scale = input_scale; block scale = e4m3(clamp(block_amax / (6 * input_scale),
    2^-9, 448)) (zero block -> 1); codes = E2M1 round (ties per §1, > 5 saturates to 6)."""
    shape, dtype = x.shape, x.dtype
    xf = x.float().reshape(-1, NVFP4_BLOCK)
    amax = xf.abs().amax(dim=-1, keepdim=True)
    s = amax / (6.0 * input_scale)
    s = torch.where(s == 0, torch.ones_like(s), s).clamp(2.0 ** -9, 448.0)
    d = s.to(torch.float8_e4m3fn).float() * input_scale
    y = xf / d
    a = y.abs()
    bounds = torch.tensor(E2M1_BOUNDS, device=x.device)
    idx = torch.bucketize(a, bounds)  # number of bounds strictly below a: ties round down
    idx = idx + ((a == 0.75) | (a == 1.75) | (a == 3.5)).long()  # these ties round up
    mag = torch.tensor(E2M1_MAG, device=x.device)[idx.clamp(max=7)]
    q = torch.where(y < 0, -mag, mag) * d
    return q.reshape(shape).to(dtype)


def digest(t):
    t = t.detach().float().contiguous().cpu()
    return hashlib.sha1(t.view(torch.int32).numpy().tobytes()).hexdigest()


def install_w4a4(model, nvfp4_dec, scalars):
    """Finds each NVFP4 weight's module by value (independent of transformers' renames), then a
    pre-hook fake-quantizes nn.Linear inputs and a forward wrapper does it for the 3-D experts."""
    by_value = {}
    for name, t in nvfp4_dec.items():
        by_value[(tuple(t.shape), digest(t))] = name[: -len(".weight")]
    hooked, hooks = set(), []
    for mod_name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            key = (tuple(mod.weight.shape), digest(mod.weight))
            if key in by_value:
                p = by_value[key]
                s = scalars[p + ".input_scale"]
                hooks.append(mod.register_forward_pre_hook(
                    lambda m, args, s=s: (fake_quant_nvfp4(args[0], s),) + tuple(args[1:])))
                hooked.add(p)
        elif hasattr(mod, "gate_up_proj") and getattr(mod.gate_up_proj, "dim", lambda: 0)() == 3:
            m = re.search(r"layers\.(\d+)\.", mod_name)
            if not m:
                continue
            prefix = f"layers.{m.group(1)}.ffn.experts"
            n_exp, two_i, _ = mod.gate_up_proj.shape
            inter = two_i // 2
            ok = True
            for e in range(n_exp):
                p = f"{prefix}.{e}"
                if f"{p}.w1.weight" not in nvfp4_dec:
                    ok = False
                    break
                gu, dn = mod.gate_up_proj[e].detach().cpu(), mod.down_proj[e].detach().cpu()
                if not (torch.equal(gu[:inter], nvfp4_dec[f"{p}.w1.weight"])
                        and torch.equal(gu[inter:], nvfp4_dec[f"{p}.w3.weight"])
                        and torch.equal(dn, nvfp4_dec[f"{p}.w2.weight"])):
                    problem(f"{mod_name}: expert {e} weights != decoded {p}.w1/w3/w2 "
                            "(loaded into the wrong place?)")
                    ok = False
                    break
            if not ok:
                continue
            s13 = [scalars[f"{prefix}.{e}.w1.input_scale"] for e in range(n_exp)]
            s2 = [scalars[f"{prefix}.{e}.w2.input_scale"] for e in range(n_exp)]

            def wrapped(hidden_states, top_k_index, top_k_weights, *a, mod=mod, s13=s13, s2=s2,
                        **kw):
                # Same math as DeepseekV4Experts.forward (eager), inputs fake-quantized.
                final = torch.zeros_like(hidden_states)
                for e in range(mod.gate_up_proj.shape[0]):
                    token_idx, pos = torch.where(top_k_index == e)
                    if token_idx.numel() == 0:
                        continue
                    x = fake_quant_nvfp4(hidden_states[token_idx], s13[e])
                    cur = mod._apply_gate(F.linear(x, mod.gate_up_proj[e]))
                    cur = F.linear(fake_quant_nvfp4(cur, s2[e]), mod.down_proj[e])
                    cur = cur * top_k_weights[token_idx, pos, None]
                    final.index_add_(0, token_idx, cur.to(final.dtype))
                return final

            mod.forward = wrapped
            for e in range(n_exp):
                hooked.update(f"{prefix}.{e}.{w}" for w in ("w1", "w2", "w3"))
    all_p = {n[: -len(".weight")] for n in nvfp4_dec}
    missing = sorted(all_p - hooked)
    print(f"  W4A4: {len(hooked)} of {len(all_p)} NVFP4 linears simulated")
    for p in missing[:10]:
        problem(f"W4A4: NVFP4 weight {p} not found in the loaded model by value")
    return hooks


# ------------------------------------------------------------------------------------------------
def logits_of(model, prompts, device):
    with torch.no_grad():
        return torch.stack([model(input_ids=p.unsqueeze(0).to(device), use_cache=False)
                            .logits[0].float().cpu() for p in prompts])


def compare_logits(src, exp):
    """Per prompt + overall: max |dlogit|, rel L2, mean KL(src||exp), top-1 agreement %."""
    rows = []

    def stats(s, e):
        ls, le = F.log_softmax(s.double(), -1), F.log_softmax(e.double(), -1)
        kl = (ls.exp() * (ls - le)).sum(-1)
        return dict(max_abs=float((s - e).abs().max()),
                    rel_l2=float((s - e).norm() / s.norm().clamp_min(1e-30)),
                    kl_mean=float(kl.mean()), kl_max=float(kl.max()),
                    top1=float((s.argmax(-1) == e.argmax(-1)).double().mean() * 100),
                    finite=bool(torch.isfinite(e).all()))
    for i in range(src.shape[0]):
        rows.append(stats(src[i], exp[i]))
    overall = stats(src.reshape(-1, src.shape[-1]), exp.reshape(-1, exp.shape[-1]))
    return rows, overall


def print_table(name, rows, overall):
    print(f"  {name}:  prompt  max|dlogit|   relL2      KL mean    KL max     top1%")
    for i, r in enumerate(rows + [overall]):
        tag = f"{i:>6}" if i < len(rows) else "   all"
        print(f"  {'':{len(name)}}   {tag}  {r['max_abs']:<12.5g}{r['rel_l2']:<11.4g}"
              f"{r['kl_mean']:<11.4g}{r['kl_max']:<11.4g}{r['top1']:.2f}"
              f"{'' if r['finite'] else '  NON-FINITE'}")


def compare_dump(dump_dir, nvfp4_dec):
    section(f"decoder parity: torch decode vs C++ nvfp4_dequantize_ref ({dump_dir})")
    man = json.load(open(os.path.join(dump_dir, "manifest.json")))
    theirs = {t["name"]: t for t in man["tensors"]}
    if set(theirs) != set(nvfp4_dec):
        only_c, only_t = set(theirs) - set(nvfp4_dec), set(nvfp4_dec) - set(theirs)
        problem(f"dump names differ: {len(only_c)} only in the C++ dump {sorted(only_c)[:3]}, "
                f"{len(only_t)} only in torch's {sorted(only_t)[:3]}")
    n_ok = n_bad = 0
    for name in sorted(set(theirs) & set(nvfp4_dec)):
        t = theirs[name]
        want = nvfp4_dec[name]
        raw = open(os.path.join(dump_dir, t["file"]), "rb").read()
        if list(t["shape"]) != list(want.shape) or len(raw) != want.numel() * 4:
            problem(f"{name}: dump shape {t['shape']} ({len(raw)} bytes) vs torch "
                    f"{list(want.shape)}")
            n_bad += 1
            continue
        ours = torch.frombuffer(bytearray(raw), dtype=torch.int32).reshape(want.shape)
        mine = want.contiguous().view(torch.int32)
        if torch.isnan(want).any() or torch.isnan(ours.view(torch.float32)).any():
            problem(f"{name}: NaN in a decoded NVFP4 weight")
        diff = ours != mine
        if diff.any():
            i = int(diff.flatten().nonzero()[0])
            problem(f"{name}: {int(diff.sum())} elements differ bitwise, first at flat {i}: "
                    f"C++ {ours.view(torch.float32).flatten()[i].item()!r} torch "
                    f"{want.flatten()[i].item()!r}")
            n_bad += 1
        else:
            n_ok += 1
    print(f"  {n_ok + n_bad} tensors compared bit for bit: {n_ok} identical, {n_bad} differ")
    return n_ok + n_bad, n_bad


def weight_error_report(src_dec, nvfp4_dec):
    """Per-NVFP4-weight relative L2 error vs the source's dequantized weight."""
    section("weight-level error: export NVFP4 decode vs source dequant")
    errs, exact = [], 0
    for name, w in nvfp4_dec.items():
        if name not in src_dec:
            problem(f"{name}: not in the source checkpoint")
            continue
        s = src_dec[name].float()
        if s.shape != w.shape:
            problem(f"{name}: shape {list(w.shape)} vs source {list(s.shape)}")
            continue
        e = float((w - s).norm() / s.norm().clamp_min(1e-30))
        errs.append((e, name))
        exact += int(torch.equal(w, s))
    if errs:
        errs.sort()
        mean = sum(e for e, _ in errs) / len(errs)
        print(f"  {len(errs)} NVFP4 weights: {exact} bit-identical to the source "
              f"(lossless MXFP4 cast), rel L2 mean {mean:.4g}, max {errs[-1][0]:.4g} "
              f"({errs[-1][1]})")
        for e, n in errs:
            if e > 0.25:  # NVFP4 of a Gaussian is ~0.1; beyond that the tensor is mangled
                problem(f"{n}: weight rel L2 error {e:.3g} vs source")
    return errs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", required=True, help="native (FP8/FP4) checkpoint directory")
    ap.add_argument("--export", required=True, help="quantforge quantize output directory")
    ap.add_argument("--decoded-dump", help="OUT_DIR of tests/parity/export_decode_dump")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n-prompts", type=int, default=4)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--min-top1", type=float, default=50.0)
    ap.add_argument("--no-w4a4", action="store_true")
    ap.add_argument("--strict-w4a4", action="store_true", help="W4A4 thresholds also fail")
    ap.add_argument("--keep-tmp", help="keep the temporary F32 checkpoints under this directory")
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    # Consumer: no vLLM/SGLang on the GPU machine, so the loader is plan_checkpoint() +
    # check_scale_values() here (vLLM quant_config.py / deepseek_v4.py rules as FORMATS.md §3
    # records them), feeding full-precision tensors to transformers by native names.
    import transformers
    print(f"consumer: transformers {transformers.__version__} DeepseekV4ForCausalLM (FP32, "
          f"{args.device}) fed by this script's vLLM-rules loader; torch {torch.__version__}")
    report = {"source": args.source, "export": args.export}

    section("loader: plan + refusal checks (FORMATS.md §1-§4, vLLM DeepSeek-V4 rules)")
    src, exp = Checkpoint(args.source), Checkpoint(args.export)
    src_mode, src_plan = plan_checkpoint(src, "source")
    exp_mode, exp_plan = plan_checkpoint(exp, "export")
    report["export_mode"] = exp_mode
    if exp_mode not in ("experts", "full"):
        problem(f"export quantization mode is '{exp_mode}', not an NVFP4 export")
    if src_mode not in ("native", "plain"):
        note(f"source mode is '{src_mode}'")
    scalars = check_scale_values(exp, exp_plan, "export")
    kinds = {}
    for k, _ in exp_plan.values():
        kinds[k] = kinds.get(k, 0) + 1
    print(f"  export plan: {kinds}")
    for key in ("num_hidden_layers", "hidden_size", "vocab_size", "n_routed_experts"):
        if src.config.get(key) != exp.config.get(key):
            problem(f"config {key}: source {src.config.get(key)} export {exp.config.get(key)}")
    refused = bool(problems)
    if refused:
        print("  loader REFUSES the export (problems above); decoding anyway where possible")

    section("decode (torch, CPU, float32)")
    src_dec, _ = decode_checkpoint(src, src_plan)
    exp_dec, nvfp4_dec = decode_checkpoint(exp, exp_plan)
    print(f"  source: {len(src_dec)} tensors; export: {len(exp_dec)} tensors, "
          f"{len(nvfp4_dec)} NVFP4 decoded")
    if set(src_dec) != set(exp_dec):
        a, b = set(src_dec) - set(exp_dec), set(exp_dec) - set(src_dec)
        problem(f"loaded tensor sets differ: {len(a)} only in source {sorted(a)[:3]}, "
                f"{len(b)} only in export {sorted(b)[:3]}")
    for name in sorted(set(src_dec) & set(exp_dec)):
        if name in nvfp4_dec:
            continue
        if not torch.equal(src_dec[name], exp_dec[name]):
            problem(f"{name}: not NVFP4 in the export but differs from the source")
    errs = weight_error_report(src_dec, nvfp4_dec)
    report["weight_rel_l2_max"] = errs[-1][0] if errs else None

    if args.decoded_dump:
        n, n_bad = compare_dump(args.decoded_dump, nvfp4_dec)
        report["decoder_parity"] = {"compared": n, "differ": n_bad}

    section("transformers load + logits")
    keep = args.keep_tmp
    vocab = src.config["vocab_size"]
    g = torch.Generator().manual_seed(args.seed)
    prompts = torch.randint(0, vocab, (args.n_prompts, args.prompt_len), generator=g)
    print(f"  prompts: {args.n_prompts} x {args.prompt_len} ids, seed {args.seed}, vocab {vocab}")
    m_src = load_model(src.config, src_dec, args.device, "source",
                       keep and os.path.join(keep, "source"))
    ref = logits_of(m_src, prompts, args.device)
    del m_src
    print(f"  source logits: std {ref.std():.4g}, max |x| {ref.abs().max():.4g}, "
          f"finite {bool(torch.isfinite(ref).all())}")
    if not torch.isfinite(ref).all():
        problem("source logits are non-finite")
    m_exp = load_model(exp.config, exp_dec, args.device, "export",
                       keep and os.path.join(keep, "export"))
    variants = [("weight-only", logits_of(m_exp, prompts, args.device))]
    if not args.no_w4a4:
        install_w4a4(m_exp, nvfp4_dec, scalars)
        variants.append(("W4A4-sim", logits_of(m_exp, prompts, args.device)))
    report["logits"] = {}
    for name, out in variants:
        rows, overall = compare_logits(ref, out)
        print_table(name, rows, overall)
        report["logits"][name] = {"per_prompt": rows, "overall": overall}
        strict = name == "weight-only" or args.strict_w4a4
        if not overall["finite"]:
            problem(f"{name}: non-finite logits")
        elif overall["top1"] < args.min_top1:
            (problem if strict else note)(f"{name}: top-1 agreement {overall['top1']:.1f}% < "
                                          f"{args.min_top1}%")

    report["problems"], report["notes"] = problems, notes
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    print(f"\n{len(problems)} problem(s), {len(notes)} note(s); loader "
          f"{'REFUSED' if refused else 'accepted'} the export")
    return 1 if problems else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        sys.exit(2)
