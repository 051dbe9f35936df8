"""Parity of the C++ reference forward (src/model, run through tests/parity/forward_dump) with
transformers' DeepseekV4ForCausalLM (eager, FP32) on random tiny models.

For each of 3 configs (sliding / CSA / HCA mixes, hash and top-k MoE layers, YaRN, a tight
swiglu clamp, several seeds) it builds the model with transformers, re-randomises every
parameter and buffer (sinks, position biases, hc bases, router biases and hash tables are
zero at init), saves it with save_pretrained, records transformers' per-linear input amax
(forward pre-hooks on every nn.Linear and router, a wrapper around each experts module for the
per-expert inputs), runs forward_dump on the saved directory and compares:
  amax within 1% relative, identical per-expert token counts, per-layer hidden streams,
  final hidden state and logits within RTOL_STATE of the largest reference magnitude.
Prints the worst case per config; exits non-zero on any failure.

Usage: python3 check_forward_vs_transformers.py [--forward-dump PATH] [--work DIR]
                                                 [--device cpu|cuda] [--only NAME]
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DeepseekV4Config, DeepseekV4ForCausalLM

RTOL_AMAX = 0.01  # per-linear input amax, relative
RTOL_STATE = 2e-3  # hidden states / logits: max |diff| / max |reference|

# Small shapes shared by all configs: 4 heads x 32, rope on the last 8 dims, 2 output groups,
# indexer 8 heads x 16, 8 experts top-2, hc_mult 4.
BASE = dict(
    vocab_size=128, hidden_size=64, num_attention_heads=4, num_key_value_heads=1, head_dim=32,
    partial_rotary_factor=0.25, q_lora_rank=32, o_groups=2, o_lora_rank=16, index_n_heads=8,
    index_head_dim=16, n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2,
    moe_intermediate_size=32, hc_mult=4, hc_sinkhorn_iters=20, max_position_embeddings=4096,
    tie_word_embeddings=False)

CONFIGS = [
    # The V4 rates (CSA 4, HCA 128) at seq_len 256: 2 HCA entries, 64 CSA entries of which the
    # indexer keeps 16 (sparse selection engaged); window 128 < seq_len.
    dict(name="v4_rates", seed=0, n_seqs=2, seq_len=256,
         cfg=dict(layer_types=["heavily_compressed_attention", "compressed_sparse_attention",
                               "sliding_attention", "compressed_sparse_attention"],
                  mlp_layer_types=["hash_moe", "hash_moe", "moe", "moe"],
                  compress_rates={"compressed_sparse_attention": 4,
                                  "heavily_compressed_attention": 128},
                  sliding_window=128, index_topk=16, swiglu_limit=10.0)),
    # Small HCA rate (16) so many entries are pooled; YaRN on the compress rope
    # (factor 4 = 4096 / 1024); window 32.
    dict(name="yarn_small_rates", seed=1, n_seqs=2, seq_len=96,
         cfg=dict(layer_types=["sliding_attention", "heavily_compressed_attention",
                               "compressed_sparse_attention"],
                  mlp_layer_types=["hash_moe", "moe", "moe"],
                  compress_rates={"compressed_sparse_attention": 4,
                                  "heavily_compressed_attention": 16},
                  sliding_window=32, index_topk=8, swiglu_limit=10.0,
                  rope_parameters={"rope_type": "yarn", "factor": 4.0,
                                   "original_max_position_embeddings": 1024,
                                   "beta_fast": 32.0, "beta_slow": 1.0})),
    # index_topk above the entry count (every causal entry kept, -1 sentinels used), a tight
    # swiglu clamp (0.5) that engages, sigmoid-free default scoring, 3 sequences.
    dict(name="dense_topk_clamp", seed=2, n_seqs=3, seq_len=128,
         cfg=dict(layer_types=["compressed_sparse_attention", "heavily_compressed_attention",
                               "heavily_compressed_attention", "sliding_attention",
                               "compressed_sparse_attention"],
                  mlp_layer_types=["hash_moe", "moe", "moe", "moe", "moe"],
                  compress_rates={"compressed_sparse_attention": 4,
                                  "heavily_compressed_attention": 32},
                  sliding_window=64, index_topk=64, swiglu_limit=0.5)),
]


def build_model(spec):
    kwargs = dict(BASE)
    kwargs.update(spec["cfg"])
    kwargs["num_hidden_layers"] = len(kwargs["layer_types"])
    config = DeepseekV4Config(**kwargs)
    try:
        config._attn_implementation = "eager"
    except Exception:  # older setters: eager is the only implementation V4 supports anyway
        pass
    torch.manual_seed(spec["seed"])
    model = DeepseekV4ForCausalLM(config).float().eval()
    randomise(model, config, spec["seed"])
    return model, config


@torch.no_grad()
def randomise(model, config, seed):
    """Every parameter/buffer gets values that exercise its path (init leaves many at 0/1)."""
    g = torch.Generator().manual_seed(1000 + seed)

    def randn(t, std, mean=0.0):
        t.copy_(torch.randn(t.shape, generator=g) * std + mean)

    for name, p in list(model.named_parameters()) + list(model.named_buffers()):
        leaf = name.rsplit(".", 1)[-1]
        if "inv_freq" in name:
            continue
        if leaf == "tid2eid":
            rows = [torch.randperm(config.n_routed_experts, generator=g)[: p.shape[1]]
                    for _ in range(p.shape[0])]
            p.copy_(torch.stack(rows).to(p.dtype))
        elif leaf == "e_score_correction_bias":
            randn(p, 0.1)
        elif leaf in ("sinks", "position_bias", "base", "hc_base"):
            randn(p, 0.5)
        elif leaf in ("scale", "hc_scale"):
            randn(p, 0.1, 1.0)
        elif name.endswith("embed_tokens.weight"):
            randn(p, 1.0)
        elif leaf in ("gate_up_proj", "down_proj") and p.dim() == 3:
            randn(p, p.shape[-1] ** -0.5)
        elif p.dim() == 2:
            randn(p, p.shape[-1] ** -0.5)
        elif p.dim() == 1 and p.is_floating_point():
            randn(p, 0.1, 1.0)  # norm weights
        else:
            raise RuntimeError(f"randomise: unhandled tensor {name} {tuple(p.shape)}")


def saved_tensors(save_dir):
    from safetensors.torch import load_file
    out = {}
    for f in sorted(os.listdir(save_dir)):
        if f.endswith(".safetensors"):
            out.update(load_file(os.path.join(save_dir, f)))
    return out


def digest(t):
    t = t.detach().float().contiguous().cpu()
    try:
        data = t.numpy().tobytes()
    except Exception:  # torch built without numpy
        data = repr(t.view(torch.int32).flatten().tolist()).encode()
    return hashlib.sha1(data).hexdigest()


def native_name_map(model, saved):
    """HF module name -> native linear name (saved name minus `model.` and `.weight`), found by
    matching weight values: independent of the conversion_mapping rename rules."""
    by_value = {}
    for name, t in saved.items():
        if t.dim() == 2 and t.is_floating_point():
            key = (tuple(t.shape), digest(t))
            assert key not in by_value, f"two saved tensors with equal values: {name}"
            by_value[key] = name
    mapping = {}
    for mod_name, mod in model.named_modules():
        w = getattr(mod, "weight", None)
        if not isinstance(w, torch.Tensor) or w.dim() != 2:
            continue
        if not isinstance(mod, nn.Linear) and not mod.__class__.__name__.endswith("Router"):
            continue
        if mod_name == "model.embed_tokens":
            continue
        key = (tuple(w.shape), digest(w))
        assert key in by_value, f"no saved tensor holds the weight of {mod_name}"
        native = by_value[key]
        native = native[len("model."):] if native.startswith("model.") else native
        mapping[mod_name] = native[: -len(".weight")]
    return mapping


def experts_native_prefix(mod_name, saved, mod):
    """`model.layers.L.mlp.experts` -> `layers.L.ffn.experts`, checked against saved w1 values."""
    layer = int(mod_name.split(".layers.")[1].split(".")[0])
    prefix = f"layers.{layer}.ffn.experts"
    inter = mod.gate_up_proj.shape[1] // 2
    w1 = saved[f"model.{prefix}.0.w1.weight"]
    assert torch.equal(w1, mod.gate_up_proj[0, :inter].cpu()), f"{prefix}: w1 != gate_up_proj[:I]"
    return layer, prefix


def record_transformers(model, saved, ids, device):
    mapping = native_name_map(model, saved)
    amax, tokens, hooks = {}, {}, []

    def upd(name, x):
        v = float(x.detach().abs().max()) if x.numel() else 0.0
        amax[name] = max(amax.get(name, 0.0), v)

    for mod_name, mod in model.named_modules():
        if mod_name in mapping:
            native = mapping[mod_name]
            hooks.append(mod.register_forward_pre_hook(
                lambda m, args, kwargs, native=native: upd(native, args[0] if args else
                                                          kwargs["hidden_states"]),
                with_kwargs=True))
        if mod.__class__.__name__.endswith("Experts") and hasattr(mod, "gate_up_proj"):
            layer, prefix = experts_native_prefix(mod_name, saved, mod)
            orig = mod.forward

            def wrapped(hidden_states, top_k_index, top_k_weights, *a, mod=mod, orig=orig,
                        prefix=prefix, **kw):
                with torch.no_grad():
                    for e in range(mod.gate_up_proj.shape[0]):
                        token_idx = torch.where(top_k_index == e)[0]
                        if token_idx.numel() == 0:
                            continue
                        tokens[f"{prefix}.{e}"] = tokens.get(f"{prefix}.{e}", 0) + token_idx.numel()
                        rows = hidden_states[token_idx]
                        upd(f"{prefix}.{e}.w1", rows)
                        upd(f"{prefix}.{e}.w3", rows)
                        act = mod._apply_gate(F.linear(rows, mod.gate_up_proj[e]))
                        upd(f"{prefix}.{e}.w2", act)
                return orig(hidden_states, top_k_index, top_k_weights, *a, **kw)

            mod.forward = wrapped
    layer_out = []
    for layer in model.model.layers:
        hooks.append(layer.register_forward_hook(
            lambda m, args, out: layer_out.append((out[0] if isinstance(out, tuple) else out)
                                                  .detach().float().cpu())))
    final = {}
    hooks.append(model.lm_head.register_forward_pre_hook(
        lambda m, args: final.__setitem__("hidden", args[0].detach().float().cpu())))
    with torch.no_grad():
        out = model(input_ids=ids.to(device), use_cache=False)
    for h in hooks:
        h.remove()
    return dict(amax=amax, tokens=tokens, layers=layer_out, hidden=final["hidden"],
                logits=out.logits.detach().float().cpu())


def rel_state_err(ours, ref):
    ours = torch.tensor(ours, dtype=torch.float32).reshape(ref.shape)
    scale = max(float(ref.abs().max()), 1e-6)
    diff = (ours - ref).abs()
    idx = int(diff.argmax())
    return float(diff.max()) / scale, idx


def compare(spec, ref, dump):
    failures, worst = [], {}
    names = sorted(set(ref["amax"]) | set(dump["amax"]))
    worst_amax = (0.0, "")
    for n in names:
        a, b = ref["amax"].get(n), dump["amax"].get(n)
        if a is None or b is None:
            failures.append(f"amax {n}: transformers={a} ours={b} (seen on one side only)")
            continue
        rel = abs(a - b) / max(abs(a), abs(b), 1e-12)
        if rel > worst_amax[0]:
            worst_amax = (rel, n)
        if rel > RTOL_AMAX:
            failures.append(f"amax {n}: transformers={a:.6g} ours={b:.6g} rel={rel:.3g}")
    worst["amax"] = worst_amax
    if ref["tokens"] != dump["expert_tokens"]:
        diff = {k: (ref["tokens"].get(k), dump["expert_tokens"].get(k))
                for k in set(ref["tokens"]) | set(dump["expert_tokens"])
                if ref["tokens"].get(k) != dump["expert_tokens"].get(k)}
        failures.append(f"expert token counts differ (transformers, ours): {diff}")
    B, L = spec["n_seqs"], spec["seq_len"]
    for i, (r, d) in enumerate(zip(ref["layers"], dump["layers"])):
        err, idx = rel_state_err(d["values"], r.reshape(B * L, -1))
        worst[f"layer{i}({d['type']})"] = (err, idx)
        if err > RTOL_STATE:
            failures.append(f"layer {i} ({d['type']}) hidden streams: rel err {err:.3g} at flat "
                            f"index {idx} (token {idx // r[0, 0].numel()})")
    if len(ref["layers"]) != len(dump["layers"]):
        failures.append(f"layer count: transformers {len(ref['layers'])} ours {len(dump['layers'])}")
    for key, r in (("final_hidden", ref["hidden"]), ("logits", ref["logits"])):
        err, idx = rel_state_err(dump[key]["values"], r.reshape(B * L, -1))
        worst[key] = (err, idx)
        if err > RTOL_STATE:
            failures.append(f"{key}: rel err {err:.3g} at flat index {idx}")
    return failures, worst


def find_forward_dump(arg):
    cands = [arg] if arg else []
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    for b in (os.environ.get("QF_BUILD", ""), "build", "build-cuda", "build-forward"):
        if b:
            cands.append(os.path.join(b if os.path.isabs(b) else os.path.join(root, b), "tests",
                                      "forward_dump"))
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    sys.exit(f"forward_dump not found (tried {cands}); pass --forward-dump")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--forward-dump", default="")
    ap.add_argument("--work", default="")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    exe = find_forward_dump(args.forward_dump)
    work = args.work or tempfile.mkdtemp(prefix="qf_forward_parity_")
    all_ok = True
    for spec in CONFIGS:
        if args.only and spec["name"] != args.only:
            continue
        d = os.path.join(work, spec["name"])
        os.makedirs(d, exist_ok=True)
        model, config = build_model(spec)
        model.save_pretrained(os.path.join(d, "saved"))
        saved = saved_tensors(os.path.join(d, "saved"))
        g = torch.Generator().manual_seed(spec["seed"])
        ids = torch.randint(0, config.vocab_size, (spec["n_seqs"], spec["seq_len"]), generator=g)
        with open(os.path.join(d, "tokens.json"), "w") as f:
            json.dump({"n_seqs": spec["n_seqs"], "seq_len": spec["seq_len"],
                       "tokens": ids.tolist()}, f)
        ref = record_transformers(model.to(args.device), saved, ids, args.device)
        out_json = os.path.join(d, "ours.json")
        run = subprocess.run([exe, os.path.join(d, "saved"), os.path.join(d, "tokens.json"),
                              out_json], capture_output=True, text=True)
        if run.returncode != 0:
            print(f"[{spec['name']}] FAIL: forward_dump exited {run.returncode}\n{run.stderr}")
            all_ok = False
            continue
        with open(out_json) as f:
            dump = json.load(f)
        failures, worst = compare(spec, ref, dump)
        print(f"[{spec['name']}] layers={config.layer_types} mlp={config.mlp_layer_types} "
              f"rope={config.rope_parameters}")
        print(f"  linears compared: {len(ref['amax'])}, experts with tokens: {len(ref['tokens'])}")
        for k, (err, where) in worst.items():
            print(f"  worst {k}: {err:.3g} ({where})")
        if failures:
            all_ok = False
            print(f"  FAIL ({len(failures)}):")
            for msg in failures[:20]:
                print("   ", msg)
        else:
            print("  PASS")
    print("ALL PASS" if all_ok else "FAILURES", f"(work dir {work})")
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    main()
