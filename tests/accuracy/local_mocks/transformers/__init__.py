"""Local stand-in for `transformers` (test_fixture_flow.py only; the GPU machine has the real
5.17). DeepseekV4ForCausalLM here holds every tensor of the config's native table (from
`quantforge make-tiny`, binary in $QF_MOCK_QF) and runs a toy forward (embedding -> per layer an
RMS-normed MoE with the real router/experts module shapes and call conventions + shared expert ->
head). save_pretrained writes the names 5.17 writes (model. prefix, embed_tokens, hc_head.hc_*,
attn.norm); from_pretrained reads native names as check_export_loader.load_model feeds them."""
import json
import os
import re
import subprocess
import sys
import tempfile
import types

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
import fixture_lib as fl  # noqa: E402

__version__ = "mock"
RATIO = {0: "sliding_attention", 4: "compressed_sparse_attention",
         128: "heavily_compressed_attention"}
EXPERT = re.compile(r"^layers\.(\d+)\.ffn\.experts\.(\d+)\.(w[123])\.weight$")
GATE = re.compile(r"^layers\.(\d+)\.ffn\.gate\.(weight|bias|tid2eid)$")


class DeepseekV4Config:
    def __init__(self, **d):
        self.__dict__.update(d)
        n = d["num_hidden_layers"]
        self.layer_types = [RATIO[r] for r in d["compress_ratios"][:n]]
        self.mlp_layer_types = ["hash_moe"] * d["num_hash_layers"] + ["moe"] * (n - d["num_hash_layers"])
        self.raw = d

    @classmethod
    def from_pretrained(cls, path):
        return cls(**json.load(open(os.path.join(path, "config.json"))))


AutoConfig = DeepseekV4Config
_TABLES = {}


def native_table(cfg):
    key = json.dumps(cfg.raw, sort_keys=True)
    if key not in _TABLES:
        with tempfile.TemporaryDirectory() as d:
            full = dict(cfg.raw, quantization_config={"quant_method": "fp8", "fmt": "e4m3",
                                                      "scale_fmt": "ue8m0",
                                                      "weight_block_size": [128, 128]})
            json.dump(full, open(os.path.join(d, "c.json"), "w"))
            _TABLES[key] = fl.make_tiny_table(os.environ["QF_MOCK_QF"], os.path.join(d, "c.json"),
                                              os.path.join(d, "ref"))
    return _TABLES[key]


def saved_name(n):
    if n == "embed.weight":
        return "model.embed_tokens.weight"
    if n == "head.weight":
        return n
    if n.startswith("hc_head_"):
        return "model.hc_head.hc_" + n[len("hc_head_"):]
    if n.endswith(".attn.kv_norm.weight"):
        return "model." + n[: -len("kv_norm.weight")] + "norm.weight"
    return "model." + n


class Experts(nn.Module):
    def __init__(self, E, H, I):
        super().__init__()
        self.gate_up_proj = nn.Parameter(torch.randn(E, 2 * I, H) * 0.02)
        self.down_proj = nn.Parameter(torch.randn(E, H, I) * 0.02)
        self.act_fn, self.limit, self.num_experts = F.silu, 10.0, E

    def _apply_gate(self, gate_up):
        gate, up = gate_up.chunk(2, dim=-1)
        return self.act_fn(gate.clamp(max=self.limit)) * up.clamp(min=-self.limit, max=self.limit)

    def forward(self, hidden_states, top_k_index, top_k_weights):  # transformers 5.17's eager loop
        final = torch.zeros_like(hidden_states)
        with torch.no_grad():
            mask = F.one_hot(top_k_index, num_classes=self.num_experts + 1).permute(2, 1, 0)
            hit = torch.greater(mask.sum(dim=(-1, -2)), 0).nonzero()
        for expert_idx in hit:
            expert_idx = expert_idx[0]
            if expert_idx == self.num_experts:
                continue
            top_k_pos, token_idx = torch.where(mask[expert_idx])
            cur = self._apply_gate(F.linear(hidden_states[token_idx], self.gate_up_proj[expert_idx]))
            cur = F.linear(cur, self.down_proj[expert_idx]) * top_k_weights[token_idx, top_k_pos, None]
            final.index_add_(0, token_idx, cur.to(final.dtype))
        return final


class Router(nn.Module):
    def __init__(self, E, H, k, vocab, hashed):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(E, H) * 0.02)
        self.top_k, self.hashed = k, hashed
        if hashed:
            self.register_buffer("tid2eid", torch.zeros(vocab, k, dtype=torch.long))
        else:
            self.register_buffer("e_score_correction_bias", torch.zeros(E))

    def forward(self, hs, ids=None):
        logits = F.linear(hs, self.weight)
        scores = torch.sqrt(F.softplus(logits.float()))
        idx = (self.tid2eid[ids.reshape(-1)] if self.hashed else
               torch.topk(scores + self.e_score_correction_bias, self.top_k, dim=-1).indices)
        w = scores.gather(1, idx)
        return logits, 1.5 * w / (w.sum(-1, keepdim=True) + 1e-20), idx


class Layer(nn.Module):
    def __init__(self, cfg, hashed):
        super().__init__()
        H, E = cfg.hidden_size, cfg.n_routed_experts
        self.gate = Router(E, H, cfg.num_experts_per_tok, cfg.vocab_size, hashed)
        self.experts = Experts(E, H, cfg.moe_intermediate_size)


class Inner(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layers = nn.ModuleList([Layer(cfg, i < cfg.num_hash_layers)
                                     for i in range(cfg.num_hidden_layers)])


class DeepseekV4ForCausalLM(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.model = Inner(config)
        self.other = nn.ParameterDict()
        for name, dtype, shape in native_table(config):
            if name.endswith(".scale") or EXPERT.match(name) or GATE.match(name):
                continue
            shape = [shape[0], shape[1] * 2] if dtype == "I8" else shape
            ones = name.endswith("norm.weight")
            t = torch.ones(shape) if ones else torch.randn(shape) * 0.02
            self.other[name.replace(".", "__")] = nn.Parameter(t)

    def p(self, n):
        return self.other[n.replace(".", "__")]

    def forward(self, input_ids=None, use_cache=False, **kw):
        x = self.p("embed.weight")[input_ids]
        B, S, H = x.shape
        for i, layer in enumerate(self.model.layers):
            h = F.rms_norm(x, (H,)) if hasattr(F, "rms_norm") else x * torch.rsqrt(
                x.float().pow(2).mean(-1, keepdim=True) + 1e-6).to(x.dtype)
            h = h * self.p(f"layers.{i}.ffn_norm.weight")
            flat = h.reshape(-1, H)
            _, w, idx = (layer.gate(flat, input_ids) if layer.gate.hashed else layer.gate(flat))
            routed = layer.experts(flat, idx, w).view(B, S, H)
            s = f"layers.{i}.ffn.shared_experts."
            shared = F.linear(F.silu(F.linear(h, self.p(s + "w1.weight"))) *
                              F.linear(h, self.p(s + "w3.weight")), self.p(s + "w2.weight"))
            x = x + routed + shared
        x = x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6).to(x.dtype)
        logits = F.linear(x * self.p("norm.weight"), self.p("head.weight"))
        return types.SimpleNamespace(logits=logits)

    def _native_tensors(self):
        out = {k.replace("__", "."): v for k, v in self.other.items()}
        for i, layer in enumerate(self.model.layers):
            ex, I = layer.experts, self.config.moe_intermediate_size
            for e in range(ex.gate_up_proj.shape[0]):
                p = f"layers.{i}.ffn.experts.{e}."
                out[p + "w1.weight"] = ex.gate_up_proj[e, :I]
                out[p + "w3.weight"] = ex.gate_up_proj[e, I:]
                out[p + "w2.weight"] = ex.down_proj[e]
            out[f"layers.{i}.ffn.gate.weight"] = layer.gate.weight
            out[f"layers.{i}.ffn.gate." + ("tid2eid" if layer.gate.hashed else "bias")] = (
                layer.gate.tid2eid if layer.gate.hashed else layer.gate.e_score_correction_bias)
        return out

    def save_pretrained(self, path, safe_serialization=True):
        from safetensors.torch import save_file
        os.makedirs(path, exist_ok=True)
        save_file({saved_name(n): t.detach().contiguous() for n, t in self._native_tensors().items()},
                  os.path.join(path, "model.safetensors"))
        json.dump(self.config.raw, open(os.path.join(path, "config.json"), "w"))

    @classmethod
    def from_pretrained(cls, path, output_loading_info=False, **kw):
        from safetensors import safe_open
        model = cls(DeepseekV4Config.from_pretrained(path))
        mine = model._native_tensors()
        seen, unexpected = set(), []
        with torch.no_grad():
            for f in sorted(os.listdir(path)):
                if not f.endswith(".safetensors"):
                    continue
                with safe_open(os.path.join(path, f)) as sf:
                    for k in sf.keys():
                        if k not in mine:
                            unexpected.append(k)
                            continue
                        mine[k].copy_(sf.get_tensor(k).to(mine[k].dtype))
                        seen.add(k)
        info = {"missing_keys": sorted(set(mine) - seen), "unexpected_keys": unexpected,
                "mismatched_keys": []}
        return (model, info) if output_loading_info else model
