#!/usr/bin/env python3
"""Parity checks of a `quantforge make-tiny` checkpoint against safetensors, torch and
transformers (run on the GPU machine: torch 2.11, transformers 5.17, safetensors).

usage: check_tiny_checkpoint.py NATIVE_DIR [--bf16 BF16_DIR] [--keep-saved DIR]

  (a) every shard opens with safetensors; each tensor's dtype/shape in the safetensors API equals
      our header and the index; torch materialises every tensor; metadata.total_size is right;
  (b) transformers builds DeepseekV4ForCausalLM from our config.json (layer types, hash layers,
      rope read as intended), save_pretrained()s a random model, and its tensor names/shapes
      equal ours after the known renames (MTP and `.scale` only on our side; FP4 experts I8
      [out, in/2] are [out, in] there);
  (c) with --bf16: the BF16 checkpoint equals torch's dequantization of the native one bit for
      bit, and transformers from_pretrained() loads it with no missing weights and runs a forward.
Prints every difference; exits 1 if any is unexplained, 0 otherwise. API surprises are reported,
not raised."""
import argparse
import json
import os
import struct
import sys
import tempfile
import traceback

problems = []


def problem(msg):
    problems.append(msg)
    print("  PROBLEM:", msg)


def section(title):
    print("\n== " + title)


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header


def load_index(ckpt):
    with open(os.path.join(ckpt, "model.safetensors.index.json")) as f:
        return json.load(f)


# ------------------------------------------------------------------------------------------------
# (a) safetensors / torch
def check_safetensors(ckpt):
    section("(a) safetensors + torch: " + ckpt)
    from safetensors import safe_open
    index = load_index(ckpt)
    wm = index["weight_map"]
    total = 0
    seen = {}
    for shard in sorted(set(wm.values())):
        path = os.path.join(ckpt, shard)
        header = read_header(path)
        with safe_open(path, framework="pt") as f:
            keys = set(f.keys())
            if keys != set(header):
                problem(f"{shard}: safetensors keys differ from the header")
            for name in sorted(keys):
                info = header[name]
                try:
                    sl = f.get_slice(name)
                    if sl.get_dtype() != info["dtype"] or list(sl.get_shape()) != info["shape"]:
                        problem(f"{name}: API {sl.get_dtype()} {sl.get_shape()} vs header "
                                f"{info['dtype']} {info['shape']}")
                    t = f.get_tensor(name)
                    if list(t.shape) != info["shape"]:
                        problem(f"{name}: torch shape {list(t.shape)} vs {info['shape']}")
                    seen[name] = (info["dtype"], info["shape"], str(t.dtype))
                except Exception as e:  # noqa: BLE001 - report and go on
                    problem(f"{name}: cannot load ({type(e).__name__}: {e})")
                begin, end = info["data_offsets"]
                total += end - begin
                if wm.get(name) != shard:
                    problem(f"{name}: index says {wm.get(name)}, found in {shard}")
    missing = set(wm) - set(seen)
    if missing:
        problem(f"{len(missing)} index entries not in any shard, e.g. {sorted(missing)[:3]}")
    if index.get("metadata", {}).get("total_size") != total:
        problem(f"metadata.total_size {index.get('metadata', {}).get('total_size')} != {total}")
    dtypes = sorted({v[2] for v in seen.values()})
    print(f"  {len(seen)} tensors, {total} bytes, torch dtypes: {', '.join(dtypes)}")
    return {k: (v[0], v[1]) for k, v in seen.items()}


# ------------------------------------------------------------------------------------------------
# (b) transformers config + save_pretrained names
RATIO_TO_TYPE = {0: "sliding_attention", 4: "compressed_sparse_attention",
                 128: "heavily_compressed_attention"}
# transformers' save names -> native names, applied in order (5.17 writes mostly native names).
RENAMES = [
    ("embed_tokens.weight", "embed.weight"), ("lm_head.weight", "head.weight"),
    ("hc_head.hc_fn", "hc_head_fn"), ("hc_head.hc_base", "hc_head_base"),
    ("hc_head.hc_scale", "hc_head_scale"), (".attn.norm.weight", ".attn.kv_norm.weight"),
]


def native_name(name):
    if name.startswith("model."):
        name = name[len("model."):]
    for old, new in RENAMES:
        if name == old or (old.startswith(".") and name.endswith(old)):
            name = name[: len(name) - len(old)] + new
    return name


def logical_shape(name, dtype, shape):
    """Our stored shape -> the BF16 [out, in] shape a transformers model has."""
    if dtype == "I8" and ".experts." in name:  # FP4: two E2M1 codes per byte
        return [shape[0], shape[1] * 2]
    return shape


def check_transformers_names(ckpt, ours, keep_saved):
    section("(b) transformers config + save_pretrained tensor names")
    import torch
    import transformers
    print(f"  transformers {transformers.__version__}, torch {torch.__version__}")
    from transformers import AutoConfig
    raw = json.load(open(os.path.join(ckpt, "config.json")))
    cfg = AutoConfig.from_pretrained(ckpt)
    print(f"  config class {type(cfg).__name__}")
    n = raw["num_hidden_layers"]
    want_types = [RATIO_TO_TYPE[r] for r in raw["compress_ratios"][:n]]
    if list(getattr(cfg, "layer_types", [])) != want_types:
        problem(f"layer_types {getattr(cfg, 'layer_types', None)} != {want_types}")
    want_mlp = ["hash_moe"] * raw["num_hash_layers"] + ["moe"] * (n - raw["num_hash_layers"])
    if list(getattr(cfg, "mlp_layer_types", [])) != want_mlp:
        problem(f"mlp_layer_types {getattr(cfg, 'mlp_layer_types', None)} != {want_mlp}")
    if getattr(cfg, "qk_rope_head_dim", None) != raw["qk_rope_head_dim"]:
        problem(f"qk_rope_head_dim {getattr(cfg, 'qk_rope_head_dim', None)}")
    rp = getattr(cfg, "rope_parameters", None) or {}
    comp = rp.get("compress", {}) if isinstance(rp, dict) else {}
    print(f"  rope_parameters.compress = {comp}")
    if raw.get("rope_scaling") and comp.get("rope_type") != "yarn":
        problem("rope_scaling (YaRN) not carried into rope_parameters.compress")
    for key in ("expert_dtype", "quantization_config"):
        if key in raw and getattr(cfg, key, None) is None:
            print(f"  note: config attribute {key} not kept by transformers")

    from transformers import DeepseekV4ForCausalLM
    if hasattr(cfg, "quantization_config"):
        try:
            delattr(cfg, "quantization_config")  # build a plain random model
        except AttributeError:
            cfg.quantization_config = None
    torch.manual_seed(0)
    model = DeepseekV4ForCausalLM(cfg)
    out = keep_saved or tempfile.mkdtemp(prefix="qf_tf_saved_")
    model.save_pretrained(out)
    from safetensors import safe_open
    theirs = {}
    for f in sorted(os.listdir(out)):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(out, f), framework="pt") as sf:
                for k in sf.keys():
                    theirs[native_name(k)] = (k, list(sf.get_slice(k).get_shape()))
    mine = {k: logical_shape(k, d, s) for k, (d, s) in ours.items()
            if not k.endswith(".scale") and not k.startswith("mtp.")}
    n_mtp = sum(1 for k in ours if k.startswith("mtp."))
    print(f"  transformers saved {len(theirs)} tensors; ours {len(mine)} (+{n_mtp} mtp.*, "
          f"{sum(1 for k in ours if k.endswith('.scale'))} .scale, not built by transformers)")
    for k in sorted(set(mine) - set(theirs)):
        problem(f"only in ours: {k} {mine[k]}")
    for k in sorted(set(theirs) - set(mine)):
        problem(f"only in transformers: {theirs[k][0]} {theirs[k][1]}")
    for k in sorted(set(mine) & set(theirs)):
        if mine[k] != theirs[k][1]:
            problem(f"shape of {k}: ours {mine[k]} vs transformers {theirs[k][1]}")


# ------------------------------------------------------------------------------------------------
# (c) BF16 = dequant(native) with torch; transformers loads the BF16 checkpoint
E2M1 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]


def open_all(ckpt):
    from safetensors import safe_open
    wm = load_index(ckpt)["weight_map"]
    files = {s: safe_open(os.path.join(ckpt, s), framework="pt") for s in set(wm.values())}
    return lambda name: files[wm[name]].get_tensor(name), wm


def check_dequant(native_dir, bf16_dir):
    section("(c1) BF16 checkpoint == torch dequantization of the native one")
    import torch
    get_n, wm_n = open_all(native_dir)
    get_b, wm_b = open_all(bf16_dir)
    lut = torch.tensor(E2M1, dtype=torch.float32)
    n_checked = 0
    for name in sorted(wm_n):
        if name.endswith(".scale"):
            if name in wm_b:
                problem(f"bf16 checkpoint has {name}")
            continue
        if name not in wm_b:
            problem(f"bf16 checkpoint lacks {name}")
            continue
        w, b = get_n(name), get_b(name)
        scale_name = name[: -len(".weight")] + ".scale" if name.endswith(".weight") else None
        if scale_name not in wm_n:
            if not torch.equal(w.view(torch.uint8).flatten(), b.view(torch.uint8).flatten()):
                problem(f"{name}: plain tensor differs between formats")
            continue
        s = get_n(scale_name).float()  # E8M0 -> 2^(e-127) (torch float8_e8m0fnu semantics)
        if w.dtype == torch.float8_e4m3fn:
            rows, cols = w.shape
            sf = s.repeat_interleave(128, 0)[:rows].repeat_interleave(128, 1)[:, :cols]
            want = (w.float() * sf).to(torch.bfloat16)
        else:  # FP4 I8 [out, in/2], low nibble first
            u = w.view(torch.uint8).long()
            codes = torch.stack([u & 0xF, u >> 4], dim=-1).flatten(-2)
            want = (lut[codes] * s.repeat_interleave(32, 1)).to(torch.bfloat16)
        if b.dtype != torch.bfloat16 or not torch.equal(want.view(torch.int16), b.view(torch.int16)):
            diff = (want.float() - b.float()).abs().max().item() if b.shape == want.shape else None
            problem(f"{name}: bf16 != torch dequant (max abs diff {diff})")
        n_checked += 1
    print(f"  {n_checked} quantized weights compared bit for bit")


def check_transformers_load(bf16_dir):
    section("(c2) transformers from_pretrained of the BF16 checkpoint + forward")
    import torch
    from transformers import DeepseekV4ForCausalLM
    try:  # transformers 5 spells it dtype=; 4.x torch_dtype=
        model, info = DeepseekV4ForCausalLM.from_pretrained(
            bf16_dir, dtype=torch.float32, output_loading_info=True)
    except TypeError:
        model, info = DeepseekV4ForCausalLM.from_pretrained(
            bf16_dir, torch_dtype=torch.float32, output_loading_info=True)
    missing = list(info.get("missing_keys", []))
    unexpected = [k for k in info.get("unexpected_keys", []) if not k.startswith("mtp.")]
    mismatched = list(info.get("mismatched_keys", []))
    print(f"  missing {len(missing)}, unexpected (non-mtp) {len(unexpected)}, "
          f"mismatched {len(mismatched)}, mtp skipped "
          f"{sum(1 for k in info.get('unexpected_keys', []) if k.startswith('mtp.'))}")
    for k in missing[:20]:
        problem(f"missing after load: {k}")
    for k in unexpected[:20]:
        problem(f"unexpected after load: {k}")
    for k in mismatched[:20]:
        problem(f"shape mismatch after load: {k}")
    ids = torch.arange(0, 16).unsqueeze(0) % model.config.vocab_size
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    print(f"  forward: logits {tuple(logits.shape)}, finite={bool(torch.isfinite(logits).all())}, "
          f"std={logits.float().std().item():.4f}")
    if not torch.isfinite(logits).all():
        problem("forward produced non-finite logits")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("native_dir")
    ap.add_argument("--bf16", help="BF16 make-tiny checkpoint of the same preset and seed")
    ap.add_argument("--keep-saved", help="directory for transformers' save_pretrained output")
    args = ap.parse_args()
    steps = [("(a)", lambda: check_safetensors(args.native_dir))]
    ours = {}
    try:
        ours = steps[0][1]()
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        problem("(a) crashed")
    for label, fn in [("(b)", lambda: check_transformers_names(args.native_dir, ours,
                                                               args.keep_saved)),
                      ("(a) bf16", lambda: args.bf16 and check_safetensors(args.bf16)),
                      ("(c1)", lambda: args.bf16 and check_dequant(args.native_dir, args.bf16)),
                      ("(c2)", lambda: args.bf16 and check_transformers_load(args.bf16))]:
        try:
            fn()
        except Exception:  # noqa: BLE001 - API surprises are reported, not fatal
            traceback.print_exc()
            problem(f"{label} crashed (see traceback above)")
    print(f"\n{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
