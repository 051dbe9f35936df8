"""torch / transformers / tokenizers parts of train_v4_fixture.py (GPU machine: torch 2.11,
transformers 5.17, tokenizers 0.23). Every assumption about those APIs is checked at run time
and reported, with a fallback where one exists."""
import json
import os
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "parity"))
import fixture_lib as fl  # noqa: E402
from check_tiny_checkpoint import native_name  # noqa: E402  (save_pretrained -> native names)


# ------------------------------------------------------------------------------------------------
# tokenizer: byte-level BPE with DeepSeek V3's pre-tokenizer, BOS/EOS = ids 0/1, BOS post-processor
def train_tokenizer(texts, vocab_size, path):
    from tokenizers import (Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers,
                            processors, trainers)
    tok = Tokenizer(models.BPE())
    try:
        tok.normalizer = normalizers.Sequence([])
    except Exception:  # noqa: BLE001 - null normalizer is equally accepted by quantforge
        pass
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(p), behavior="isolated", invert=False)
         for p in fl.PRETOKENIZER_SPLITS]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2,
                                  special_tokens=[fl.BOS, fl.EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    bos, eos = tok.token_to_id(fl.BOS), tok.token_to_id(fl.EOS)
    if (bos, eos) != (0, 1):
        raise fl.FixtureError(f"BOS/EOS ids are {bos}/{eos}, config says 0/1")
    tok.post_processor = processors.TemplateProcessing(
        single=f"{fl.BOS}:0 $A:0", pair=f"{fl.BOS}:0 $A:0 {fl.BOS}:1 $B:1",
        special_tokens=[(fl.BOS, bos)])
    tok.save(path)
    tok = Tokenizer.from_file(path)
    saved = json.load(open(path, encoding="utf-8"))
    pats = [p.get("pattern", {}).get("Regex") for p in saved["pre_tokenizer"]["pretokenizers"][:3]]
    if pats != fl.PRETOKENIZER_SPLITS:
        raise fl.FixtureError(f"saved pre-tokenizer regexes differ from DeepSeek's: {pats}")
    probe = "def f(x):\n    return x ** 2  # ünï 你好 😀 12345\n"
    enc = tok.encode(probe)
    if enc.ids[0] != 0 or tok.decode(enc.ids[1:]) != probe:
        raise fl.FixtureError(f"tokenizer round trip failed: {enc.ids[:8]} -> "
                              f"{tok.decode(enc.ids[1:])!r}")
    return tok, {"vocab": tok.get_vocab_size(), "merges": len(saved["model"]["merges"])}


def encode_stream(tok, texts, chunk=512):
    """[BOS] + ids per document, concatenated (calib-data's concat packing): int32 stream."""
    parts = []
    fast = getattr(tok, "encode_batch_fast", None)
    for i in range(0, len(texts), chunk):
        batch = texts[i:i + chunk]
        encs = fast(batch) if fast else tok.encode_batch(batch)
        if fast and any(e.ids[:1] != [0] for e in encs):  # no post-processor on the fast path?
            fast = None
            encs = tok.encode_batch(batch)
        if any(e.ids[:1] != [0] for e in encs):
            raise fl.FixtureError("tokenizer output does not start with BOS (id 0)")
        parts += [np.asarray(e.ids, dtype=np.int32) for e in encs]
    return np.concatenate(parts) if parts else np.zeros(0, np.int32)


# ------------------------------------------------------------------------------------------------
# model
RATIO_TO_TYPE = {0: "sliding_attention", 4: "compressed_sparse_attention",
                 128: "heavily_compressed_attention"}


def build_model(native_cfg, cfg_dir, seed):
    """DeepseekV4ForCausalLM from the native config exactly as check_export_loader.load_model
    reads it (config.json without quantization_config), checked against what was meant."""
    from transformers import AutoConfig, DeepseekV4ForCausalLM
    plain = {k: v for k, v in native_cfg.items() if k != "quantization_config"}
    os.makedirs(cfg_dir, exist_ok=True)
    with open(os.path.join(cfg_dir, "config.json"), "w") as f:
        json.dump(plain, f, indent=2)
    cfg = AutoConfig.from_pretrained(cfg_dir)
    n = native_cfg["num_hidden_layers"]
    want = dict(layer_types=[RATIO_TO_TYPE[r] for r in native_cfg["compress_ratios"][:n]],
                mlp_layer_types=["hash_moe"] * native_cfg["num_hash_layers"]
                + ["moe"] * (n - native_cfg["num_hash_layers"]),
                qk_rope_head_dim=native_cfg["qk_rope_head_dim"])
    for key, val in want.items():
        if getattr(cfg, key, None) != val:
            raise fl.FixtureError(f"transformers read {key} = {getattr(cfg, key, None)}, "
                                  f"want {val}")
    try:
        cfg._attn_implementation = "eager"
    except Exception:  # noqa: BLE001 - eager is V4's only implementation anyway
        pass
    torch.manual_seed(seed)
    model = DeepseekV4ForCausalLM(cfg).float()
    return model, cfg


def set_hash_tables(model, seed, n_experts):
    """tid2eid is zero at init (real values come from a checkpoint): k distinct random experts per
    token id, seeded."""
    g = torch.Generator().manual_seed(seed + 77)
    tables = 0
    for name, buf in model.named_buffers():
        if name.endswith("tid2eid"):
            vocab, k = buf.shape
            perm = torch.rand(vocab, n_experts, generator=g).argsort(dim=1)[:, :k]
            buf.copy_(perm.to(buf.dtype))
            tables += 1
    return tables


def _fast_experts_forward(self, hidden_states, top_k_index, top_k_weights):
    """DeepseekV4Experts.forward's math with one host sync per call (the stock loop syncs per
    expert): token-expert pairs sorted by expert, one GEMM pair per expert, contributions
    summed over top-k in FP32 without atomics."""
    T, H = hidden_states.shape
    k = top_k_index.shape[-1]
    E = self.gate_up_proj.shape[0]
    flat = top_k_index.reshape(-1)
    order = torch.argsort(flat, stable=True)
    counts_t = torch.bincount(flat, minlength=E)
    counts = counts_t.tolist()
    if len(counts) > E:  # sentinel ids (expert parallelism): not ours, use the stock forward
        return self._qf_stock_forward(hidden_states, top_k_index, top_k_weights)
    if self._qf_load is not None:
        self._qf_load += counts_t
    x = hidden_states[order // k]  # advanced indexing: its backward is deterministic if asked
    ys, start = [], 0
    for e, c in enumerate(counts):
        if c:
            h = self._apply_gate(F.linear(x[start:start + c], self.gate_up_proj[e]))
            ys.append(F.linear(h, self.down_proj[e]))
            start += c
    y = torch.cat(ys, 0)
    inv = torch.empty_like(order)
    inv[order] = torch.arange(order.numel(), device=order.device)
    y = y[inv].view(T, k, H).float()
    return (y * top_k_weights.reshape(T, k, 1).float()).sum(1).to(hidden_states.dtype)


def install_fast_experts(model):
    """Binds _fast_experts_forward on every experts module after checking it against the stock
    forward (FP32, random routing); returns (n_installed, note)."""
    mods = [m for m in model.modules()
            if hasattr(m, "gate_up_proj") and getattr(m.gate_up_proj, "dim", lambda: 0)() == 3]
    if not mods or not all(hasattr(m, "_apply_gate") for m in mods):
        return 0, "experts modules without gate_up_proj/_apply_gate: stock forward kept"
    m = mods[0]
    m._qf_load = None
    E, _, H = m.gate_up_proj.shape
    dev = m.gate_up_proj.device
    g = torch.Generator(device="cpu").manual_seed(5)
    hs = torch.randn(64, H, generator=g).to(dev)
    idx = torch.stack([torch.randperm(E, generator=g)[:2] for _ in range(64)]).to(dev)
    w = torch.rand(64, 2, generator=g).to(dev)
    with torch.no_grad():
        mine = _fast_experts_forward(m, hs, idx, w)
        try:
            ref = m.forward(hs, idx, w)
        except Exception as e:  # noqa: BLE001 - the stock path is what would break training
            ref, why = None, f"{type(e).__name__}: {e}"
    if ref is None:
        err, how = float("nan"), f"stock experts forward failed ({why[:200]}); fast one used"
    else:
        err = float((ref - mine).norm() / ref.norm().clamp_min(1e-30))
        if not err < 1e-5:
            return 0, f"fast experts forward differs from the stock one (rel {err:.3g}): stock kept"
        how = f"fast experts forward (rel diff vs stock {err:.2g})"
    for mod in mods:
        mod._qf_stock_forward = mod.forward
        mod._qf_load = None
        mod.forward = types.MethodType(_fast_experts_forward, mod)
    return len(mods), how


def expert_load_tracking(model, on):
    mods = [m for m in model.modules() if hasattr(m, "_qf_load")]
    for m in mods:
        m._qf_load = torch.zeros(m.gate_up_proj.shape[0], dtype=torch.long,
                                 device=m.gate_up_proj.device) if on else None
    return mods


class RouterBalancer:
    """DeepSeek's aux-loss-free balancing: after each step e_score_correction_bias +=
    rate * sign(mean load - load) on every score-routed layer (the bias only picks experts)."""

    def __init__(self, model, rate):
        self.rate, self.items, self.note = rate, [], ""
        for mod in model.modules():
            b = getattr(mod, "e_score_correction_bias", None)
            if isinstance(b, torch.Tensor) and b.dim() == 1:
                cnt = torch.zeros(b.numel(), device=b.device)
                self.items.append((mod, cnt))
                mod.register_forward_hook(self._hook(cnt))
        self.seen = 0

    def _hook(self, cnt):
        def hook(mod, args, out):
            if isinstance(out, tuple) and len(out) >= 3 and torch.is_tensor(out[2]):
                cnt.add_(torch.bincount(out[2].reshape(-1), minlength=cnt.numel())[:cnt.numel()])
                self.seen += 1
        return hook

    @torch.no_grad()
    def step(self):
        if self.rate <= 0:
            return
        for mod, cnt in self.items:
            if cnt.sum() > 0:
                mod.e_score_correction_bias += self.rate * torch.sign(cnt.mean() - cnt)
            cnt.zero_()


def make_optimizer(model, lr, weight_decay, betas):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.dim() < 2 or any(s in name for s in ("position_bias", "_hc.", "hc_head",
                                                      "sinks"))
        (no_decay if skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=1e-8, fused=True), "fused"
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=1e-8), "foreach"


def params_digest(model):
    import hashlib
    h = hashlib.sha1()
    for _, t in sorted(model.state_dict().items()):
        h.update(t.detach().float().cpu().numpy().tobytes() if t.is_floating_point()
                 else t.detach().cpu().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def compare_models(models, windows, batch):
    """Next-token metrics on windows [n, S] (quantforge eval's definitions: NLL of token t+1 at
    t < S-1, natural log; KL(models[0] || models[i]) and top-1 agreement at every position).
    FP32, no autocast. Returns per model {nll_sum, kl_sum, top1_sum} + counts."""
    out = [dict(nll_sum=0.0, kl_sum=0.0, top1_sum=0.0) for _ in models]
    n_pred = n_pos = 0
    for i in range(0, windows.shape[0], batch):
        ids = windows[i:i + batch]
        ref_lp = None
        for j, m in enumerate(models):
            logits = m(input_ids=ids, use_cache=False).logits.float()
            lp = F.log_softmax(logits.double(), -1)
            out[j]["nll_sum"] += float(-lp[:, :-1].gather(-1, ids[:, 1:, None]).sum())
            if j == 0:
                ref_lp, ref_top = lp, logits.argmax(-1)
            else:
                out[j]["kl_sum"] += float((ref_lp.exp() * (ref_lp - lp)).sum(-1).clamp_min(0).sum())
                out[j]["top1_sum"] += float((logits.argmax(-1) == ref_top).sum())
        n_pred += ids.shape[0] * (ids.shape[1] - 1)
        n_pos += ids.numel()
    return out, n_pred, n_pos


def saved_native_state(model, tmp_dir):
    """save_pretrained() -> {native name: numpy array} (F32 as float32, I64 as int64)."""
    from safetensors import safe_open
    try:
        model.save_pretrained(tmp_dir, safe_serialization=True)
    except TypeError:
        model.save_pretrained(tmp_dir)
    state, saved_names = {}, {}
    files = sorted(f for f in os.listdir(tmp_dir) if f.endswith(".safetensors"))
    if not files:
        raise fl.FixtureError(f"save_pretrained wrote no safetensors: {os.listdir(tmp_dir)}")
    for f in files:
        with safe_open(os.path.join(tmp_dir, f), framework="pt") as sf:
            for k in sf.keys():
                t = sf.get_tensor(k)
                n = native_name(k)
                if n in state:
                    raise fl.FixtureError(f"{k} and {saved_names[n]} both map to {n}")
                saved_names[n] = k
                state[n] = (t.float().numpy() if t.is_floating_point()
                            else t.to(torch.int64).numpy())
    return state, saved_names
