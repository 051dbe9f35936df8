"""Calibration-pass benchmark of the transformers workflow quantforge replaces: a DeepSeek V4
BF16 checkpoint in the native layout (`quantforge dequant` output: layers.N.attn.wq_a.weight,
layers.N.ffn.experts.E.w1.weight, embed.weight, head.weight, ...) run through transformers'
DeepseekV4ForCausalLM (eager attention, BF16) while recording every linear's input amax, the
number a ModelOpt-style max calibration produces. Owns: loading, timing, amax recording and the
HF -> native name map. Does not own: quantization or the comparison (bench/compare_amax.py).

Modes
  resident  the whole model on one GPU; N batches of [B, L]; prints tokens/s (warm-up batches
            excluded; they reuse the first batches, and the recorder is reset after them).
  offload   ModelOpt hf_ptq.py --use_seq_device_map --gpu_max_mem_percentage 0.7 set-up:
            from_pretrained(device_map="sequential", max_memory={0: X GiB, "cpu": C GiB}), so the
            layers that do not fit live on the CPU and accelerate copies their weights to the GPU
            on every forward. Batch 1; each sample is timed; with --measure-samples M < --samples
            the total for --samples is projected from the steady-state per-sample time (the first
            --warmup samples excluded from it). Without accelerate (or --offload-impl manual) the
            same thing is done by hand: each CPU-resident decoder layer's tensors are copied to
            the GPU in a forward pre-hook and pointed back at the CPU copies in a forward hook.

Amax (on unless --no-amax; --both times both): a forward pre-hook on every nn.Linear and router
records max|input| under its native name (layers.L.attn.wq_a, ...ffn.gate, ...ffn.shared_experts.
w1, head, ...); the routed experts (3-D gate_up_proj/down_proj in transformers) get a replacement
forward computing the same output per expert (torch grouped_mm, or a per-expert loop) and
recording each expert's input amax (-> .w1 and .w3) and down-projection input amax (-> .w2).
Amax stays on the GPU (aminmax + maximum) until the end. --amax-out writes {native_name: amax}
(quantforge's --amax-file format; experts no token reached are left out = "never seen").

Examples
  python3 bench/bench_calib_transformers.py --model /data/v4-bf16 --mode resident --batch 4 \
      --seq-len 4096 --batches 8 --warmup 1 --both --amax-out /tmp/hf_amax.json
  python3 bench/bench_calib_transformers.py --model /data/v4-bf16 --mode offload --seq-len 4096 \
      --samples 512 --measure-samples 4 --gpu-mem-gb 56 --amax-out /tmp/hf_amax.json
"""
import argparse
import json
import os
import re
import struct
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

# transformers module path inside a decoder layer -> native DeepSeek name (modeling_deepseek_v4.py
# module tree vs src/model/tensor_table.cpp and tests/fixtures/transformers_v4_small_saved.json).
LAYER_RENAMES = {
    "self_attn.q_a_proj": "attn.wq_a",
    "self_attn.q_b_proj": "attn.wq_b",
    "self_attn.kv_proj": "attn.wkv",
    "self_attn.o_a_proj": "attn.wo_a",  # DeepseekV4GroupedLinear (an nn.Linear)
    "self_attn.o_b_proj": "attn.wo_b",
    "self_attn.compressor.kv_proj": "attn.compressor.wkv",
    "self_attn.compressor.gate_proj": "attn.compressor.wgate",
    # CSA: transformers nests the indexer inside the compressor; native has it under attn.
    "self_attn.compressor.indexer.kv_proj": "attn.indexer.compressor.wkv",
    "self_attn.compressor.indexer.gate_proj": "attn.indexer.compressor.wgate",
    "self_attn.compressor.indexer.q_b_proj": "attn.indexer.wq_b",
    "self_attn.compressor.indexer.scorer.weights_proj": "attn.indexer.weights_proj",
    "mlp.gate": "ffn.gate",  # TopK/Hash router (not an nn.Linear; F.linear on its weight)
    "mlp.shared_experts.gate_proj": "ffn.shared_experts.w1",
    "mlp.shared_experts.up_proj": "ffn.shared_experts.w3",
    "mlp.shared_experts.down_proj": "ffn.shared_experts.w2",
    "mlp.experts": "ffn.experts",  # 3-D stacked experts -> ffn.experts.E.w{1,2,3}
}


def native_name(hf_name):
    """`model.layers.3.self_attn.q_a_proj` -> `layers.3.attn.wq_a`; None when unknown."""
    n = hf_name[len("model."):] if hf_name.startswith("model.") else hf_name
    if n == "lm_head":
        return "head"
    m = re.fullmatch(r"layers\.(\d+)\.(.+)", n)
    if not m or m.group(2) not in LAYER_RENAMES:
        return None
    return f"layers.{m.group(1)}.{LAYER_RENAMES[m.group(2)]}"


def is_experts(mod):
    p = getattr(mod, "gate_up_proj", None)
    return isinstance(p, torch.Tensor) and p.dim() == 3 and hasattr(mod, "down_proj")


def is_router(mod):
    return mod.__class__.__name__.endswith("Router") and hasattr(mod, "weight")


# ------------------------------------------------------------------------------------------------
# checkpoint header reading (names + shapes only), to check the name map against the files
def checkpoint_shapes(model_dir):
    shapes = {}
    for f in sorted(os.listdir(model_dir)):
        if not f.endswith(".safetensors"):
            continue
        with open(os.path.join(model_dir, f), "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            header = json.loads(fh.read(n))
        for k, v in header.items():
            if k != "__metadata__":
                shapes[k[len("model."):] if k.startswith("model.") else k] = list(v["shape"])
    return shapes


def check_name_map(model, model_dir):
    """Every hooked module's native name must exist in the checkpoint with the module's shape."""
    try:
        shapes = checkpoint_shapes(model_dir)
    except Exception as e:  # noqa: BLE001 - a report, not a gate
        print(f"  name-map check skipped: cannot read safetensors headers ({e})")
        return
    bad, n = [], 0
    for hf, mod in model.named_modules():
        nat = native_name(hf)
        if nat is None:
            continue
        if is_experts(mod):
            n_exp, two_i, hidden = mod.gate_up_proj.shape
            want = {f"{nat}.0.w1.weight": [two_i // 2, hidden], f"{nat}.0.w3.weight": [two_i // 2, hidden],
                    f"{nat}.{n_exp - 1}.w2.weight": [hidden, two_i // 2]}
        elif isinstance(mod, nn.Linear) or is_router(mod):
            want = {f"{nat}.weight": list(mod.weight.shape)}
        else:
            continue
        for k, shape in want.items():
            n += 1
            if shapes.get(k) != shape:
                bad.append(f"{hf} -> {k}: checkpoint {shapes.get(k)}, module {shape}")
    print(f"  name-map check: {n - len(bad)} of {n} native names found with matching shapes")
    for b in bad[:20]:
        print(f"  WARNING name map: {b}")


# ------------------------------------------------------------------------------------------------
class AmaxRecorder:
    """max|x| per native linear name and per routed expert, kept as GPU tensors until report()."""

    def __init__(self):
        self.enabled = True
        self.reset()

    def reset(self):
        self.linear = {}  # name -> 0-d float32 tensor
        self.experts = {}  # prefix -> [in_amax[E], act_amax[E], tokens[E]]

    def linear_input(self, name, x):
        if not self.enabled or x.numel() == 0:
            return
        lo, hi = torch.aminmax(x.detach())
        v = torch.maximum(hi.float(), -lo.float())
        cur = self.linear.get(name)
        self.linear[name] = v if cur is None else torch.maximum(cur, v.to(cur.device))

    def expert_inputs(self, prefix, in_amax, act_amax, tokens):
        cur = self.experts.get(prefix)
        if cur is None:
            self.experts[prefix] = [in_amax, act_amax, tokens]
        else:
            d = cur[0].device
            cur[0] = torch.maximum(cur[0], in_amax.to(d))
            cur[1] = torch.maximum(cur[1], act_amax.to(d))
            cur[2] = cur[2] + tokens.to(d)

    def report(self):
        """({native_name: amax}, {expert_prefix.E: tokens}); .item()/.tolist() only here."""
        out, tokens = {}, {}
        if self.linear:
            names = list(self.linear)
            vals = torch.stack([self.linear[n].to("cpu") for n in names]).tolist()
            out.update(zip(names, vals))
        for prefix, (a_in, a_act, n_tok) in self.experts.items():
            for e, (vi, va, nt) in enumerate(zip(a_in.tolist(), a_act.tolist(), n_tok.tolist())):
                if nt == 0:
                    continue  # never routed: absent = "never seen" for quantforge --amax-file
                out[f"{prefix}.{e}.w1"] = vi
                out[f"{prefix}.{e}.w3"] = vi
                out[f"{prefix}.{e}.w2"] = va
                tokens[f"{prefix}.{e}"] = int(nt)
        return dict(sorted(out.items())), tokens


def row_amax(x):
    lo, hi = torch.aminmax(x, dim=-1)
    return torch.maximum(hi.float(), -lo.float())


def grouped_mm_fn():
    return getattr(F, "grouped_mm", None) or getattr(torch, "_grouped_mm", None)


class ExpertsForward:
    """Replacement forward of one DeepseekV4Experts: same math as its eager loop (gate_up ->
    _apply_gate (clamp + SiLU) -> down, times the routing weight, index_add), tokens sorted by
    expert so that per-expert amax is two scatter_reduce calls instead of 2 x E small kernels."""

    def __init__(self, mod, prefix, recorder, impl, orig_forward, check):
        self.mod, self.prefix, self.rec, self.impl = mod, prefix, recorder, impl
        self.orig, self.check = orig_forward, check
        self.record = True

    def __call__(self, hidden_states, top_k_index, top_k_weights, *args, **kwargs):
        mod = self.mod  # parameters read per call: accelerate swaps them in and out
        n_exp = mod.gate_up_proj.shape[0]
        n_tok, k = top_k_index.shape
        expert_ids = top_k_index.reshape(-1)
        perm = torch.argsort(expert_ids, stable=True)
        token_of = perm // k
        x = hidden_states[token_of].to(mod.gate_up_proj.dtype)
        weights = top_k_weights.reshape(-1)[perm]
        counts = torch.bincount(expert_ids, minlength=n_exp)
        act, out = self._experts(mod, x, counts)
        out = out * weights[:, None]
        final = torch.zeros_like(hidden_states)
        final.index_add_(0, token_of, out.to(final.dtype))
        if self.record and self.rec.enabled:
            ids_sorted = expert_ids[perm]
            in_rows = row_amax(hidden_states)[token_of]
            z = torch.zeros(n_exp, dtype=torch.float32, device=hidden_states.device)
            a_in = z.scatter_reduce(0, ids_sorted, in_rows, "amax", include_self=True)
            a_act = z.scatter_reduce(0, ids_sorted, row_amax(act), "amax", include_self=True)
            self.rec.expert_inputs(self.prefix, a_in, a_act, counts)
        if self.check:
            self.check = False
            ref = self.orig(hidden_states, top_k_index, top_k_weights, *args, **kwargs)
            err = float((final.float() - ref.float()).abs().max())
            scale = max(float(ref.float().abs().max()), 1e-30)
            print(f"  experts check {self.prefix}: max|ours - transformers| / max|ref| = "
                  f"{err / scale:.3g} ({self.impl})")
        return final

    def _experts(self, mod, x, counts):
        if self.impl == "grouped_mm":
            try:
                gmm = grouped_mm_fn()
                offs = torch.cumsum(counts, 0, dtype=torch.int32)
                act = mod._apply_gate(gmm(x, mod.gate_up_proj.transpose(-2, -1), offs=offs))
                return act, gmm(act, mod.down_proj.transpose(-2, -1), offs=offs)
            except Exception as e:  # noqa: BLE001 - dtype/arch not supported: loop instead
                print(f"  grouped_mm failed ({type(e).__name__}: {e}); using the per-expert loop")
                self.impl = "loop"
        inter = mod.down_proj.shape[-1]
        act = x.new_empty((x.shape[0], inter))
        out = x.new_empty((x.shape[0], mod.down_proj.shape[1]))
        start = 0
        for e, n in enumerate(counts.tolist()):  # one sync per layer, like the eager hit list
            if n == 0:
                continue
            a = mod._apply_gate(F.linear(x[start:start + n], mod.gate_up_proj[e]))
            act[start:start + n] = a
            out[start:start + n] = F.linear(a, mod.down_proj[e])
            start += n
        return act, out


def install_amax(model, recorder, impl, check):
    """Pre-hooks on linears/routers, replacement forwards on experts. Returns (handles, experts,
    unmapped HF names)."""
    handles, experts, unmapped = [], [], []
    for hf, mod in model.named_modules():
        nat = native_name(hf)
        if is_experts(mod):
            if nat is None:
                unmapped.append(hf)
                nat = "hf:" + hf
            hooked = hasattr(mod, "_hf_hook") and hasattr(mod, "_old_forward")
            orig = mod._old_forward if hooked else mod.forward
            fwd = ExpertsForward(mod, nat, recorder, impl, orig, check)
            # accelerate's hook calls module._old_forward after copying the weights in.
            if hooked:
                mod._old_forward = fwd
            else:
                mod.forward = fwd
            experts.append(fwd)
        elif isinstance(mod, nn.Linear) or is_router(mod):
            if nat is None:
                unmapped.append(hf)
                nat = "hf:" + hf

            def pre(m, args, kwargs, nat=nat):
                recorder.linear_input(nat, args[0] if args else kwargs["hidden_states"])

            handles.append(mod.register_forward_pre_hook(pre, with_kwargs=True))
    return handles, experts, unmapped


# ------------------------------------------------------------------------------------------------
def load_tokens(args, vocab, n_rows):
    """[n_rows, seq_len] int64 ids: from --tokens (input_ids 2-D [n, L>=seq_len] rows or a 1-D
    stream cut into windows, like quantforge's calibration_data) or random from --seed."""
    L = args.seq_len
    if args.tokens:
        from safetensors import safe_open
        with safe_open(args.tokens, framework="pt") as f:
            ids = f.get_tensor("input_ids").long()
        if ids.dim() == 1:
            ids = ids[: (ids.numel() // L) * L].reshape(-1, L)
        if ids.dim() != 2 or ids.shape[1] < L:
            sys.exit(f"{args.tokens}: input_ids {tuple(ids.shape)} cannot give rows of {L} ids")
        ids = ids[:, :L]
        if int(ids.min()) < 0 or int(ids.max()) >= vocab:
            sys.exit(f"{args.tokens}: ids outside [0, {vocab})")
        if ids.shape[0] < n_rows:
            print(f"  WARNING: {args.tokens} has {ids.shape[0]} samples, {n_rows} needed; cycling")
            ids = ids.repeat((n_rows + ids.shape[0] - 1) // ids.shape[0], 1)
        return ids[:n_rows].contiguous()
    g = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(0, vocab, (n_rows, L), generator=g, dtype=torch.int64)
    if args.save_tokens:
        from safetensors.torch import save_file
        save_file({"input_ids": ids}, args.save_tokens)
        print(f"  random ids written to {args.save_tokens} (quantforge --calib input)")
    return ids


def from_pretrained(path, **kw):
    from transformers import DeepseekV4ForCausalLM
    try:
        return DeepseekV4ForCausalLM.from_pretrained(path, dtype=torch.bfloat16,
                                                     attn_implementation="eager", **kw)
    except TypeError:  # pre-5.x spelling
        return DeepseekV4ForCausalLM.from_pretrained(path, torch_dtype=torch.bfloat16,
                                                     attn_implementation="eager", **kw)


def param_bytes(mod):
    return sum(t.numel() * t.element_size() for t in list(mod.parameters()) + list(mod.buffers()))


def load_offload_accelerate(args):
    max_mem = {0: int(args.gpu_mem_gb * 2**30), "cpu": int(args.cpu_mem_gb * 2**30)}
    kw = dict(device_map="sequential", max_memory=max_mem)
    if args.offload_folder:
        kw["offload_folder"] = args.offload_folder
    model = from_pretrained(args.model, **kw)
    where = {}
    for name, dev in getattr(model, "hf_device_map", {}).items():
        where.setdefault(str(dev), []).append(name)
    print("  device map: " + (", ".join(f"{d}: {len(v)} modules" for d, v in where.items())
                              or "everything on GPU 0"))
    for d, v in where.items():
        if d not in ("0", "cuda:0"):
            print(f"    on {d}: {v[0]} .. {v[-1]}")
    return model


def load_offload_manual(args):
    """What device_map="sequential" + cpu offload amounts to, by hand: layers in order on the GPU
    while they fit X GiB (less the non-layer weights and one offloaded layer's staging room),
    the rest on the CPU, copied in before and dropped after each forward."""
    model = from_pretrained(args.model)
    layers = model.model.layers
    budget = args.gpu_mem_gb * 2**30
    rest = param_bytes(model) - sum(param_bytes(layer) for layer in layers)
    budget -= rest + max(param_bytes(layer) for layer in layers)
    for name, child in model.model.named_children():
        if name != "layers":
            child.to("cuda")
    model.lm_head.to("cuda")
    used, n_gpu = 0, 0
    for layer in layers:
        b = param_bytes(layer)
        if used + b > budget:
            break
        layer.to("cuda")
        used += b
        n_gpu += 1
    for layer in list(layers)[n_gpu:]:
        cpu = {n: t.data for n, t in list(layer.named_parameters()) + list(layer.named_buffers())}
        tensors = dict(list(layer.named_parameters()) + list(layer.named_buffers()))

        def load(m, args_, cpu=cpu, tensors=tensors):
            for n, t in tensors.items():
                t.data = cpu[n].to("cuda", non_blocking=True)

        def drop(m, args_, out, cpu=cpu, tensors=tensors):
            for n, t in tensors.items():
                t.data = cpu[n]

        layer.register_forward_pre_hook(load)
        layer.register_forward_hook(drop)
    print(f"  manual offload: {n_gpu} of {len(layers)} decoder layers on the GPU "
          f"({used / 2**30:.1f} GiB), {len(layers) - n_gpu} copied in per forward")
    return model


def fix_norm_dtypes(model):
    """transformers 5.17 keeps the RMSNorm weights in FP32 (_keep_in_fp32_modules_strict:
    input_layernorm, q_a_norm, kv_norm, norm, ...) and returns weight * x.to(bf16), an FP32
    tensor that the next BF16 nn.Linear rejects ("expected mat1 and mat2 to have the same
    dtype"). Cast the output back to the input's dtype: the weights come from a BF16 checkpoint,
    so this is the BF16 product a BF16 weight would give."""
    n = 0
    for mod in model.modules():
        if mod.__class__.__name__ == "DeepseekV4RMSNorm":
            mod.register_forward_hook(
                lambda m, args, out: out if out.dtype == args[0].dtype else out.to(args[0].dtype))
            n += 1
    print(f"  {n} RMSNorm outputs cast back to their input dtype (FP32-kept norm weights)")


def have_accelerate():
    try:
        import accelerate  # noqa: F401
        return True
    except ImportError:
        return False


def load_model(args):
    t0 = time.perf_counter()
    if args.mode == "resident":
        if have_accelerate():
            model = from_pretrained(args.model, device_map="cuda")
        else:  # device_map needs accelerate: load on the CPU, then move
            model = from_pretrained(args.model).to("cuda")
    else:
        impl = args.offload_impl
        if impl == "auto":
            impl = "accelerate" if have_accelerate() else "manual"
            if impl == "manual":
                print("  accelerate not installed: manual layer offload")
        args.offload_impl = impl
        model = load_offload_accelerate(args) if impl == "accelerate" else load_offload_manual(args)
    model.eval()
    model.requires_grad_(False)
    fix_norm_dtypes(model)
    print(f"  loaded in {time.perf_counter() - t0:.1f} s; experts implementation in config: "
          f"{getattr(model.config, '_experts_implementation', '?')}; attention: "
          f"{getattr(model.config, '_attn_implementation', '?')}")
    return model


# ------------------------------------------------------------------------------------------------
def forward(model, ids):
    out = model(input_ids=ids.to("cuda", non_blocking=True), use_cache=False)
    del out


def run_resident(model, ids, args, label, recorder):
    B = args.batch
    n_batches = ids.shape[0] // B
    for i in range(args.warmup):  # the first batches again: max is idempotent, counts are reset
        forward(model, ids[(i % n_batches) * B:(i % n_batches + 1) * B])
    torch.cuda.synchronize()
    recorder.reset()
    times = []
    t_start = time.perf_counter()
    for i in range(args.batches):
        t0 = time.perf_counter()
        forward(model, ids[i * B:(i + 1) * B])
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - t_start
    n_tok = args.batches * B * args.seq_len
    print(f"  [{label}] {args.batches} batches x {B} x {args.seq_len} = {n_tok} tokens in "
          f"{total:.3f} s: {n_tok / total:,.0f} tokens/s (batch min {min(times):.3f} s, "
          f"max {max(times):.3f} s)")
    return dict(label=label, tokens=n_tok, seconds=total, tokens_per_s=n_tok / total,
                batch_seconds=times)


def run_offload(model, ids, args, label, recorder):
    times = []  # no extra warm-up forward (each costs a full weight stream): see --warmup
    for i in range(ids.shape[0]):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        forward(model, ids[i:i + 1])
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        print(f"  [{label}] sample {i}: {times[-1]:.3f} s")
    measured = sum(times)
    steady_part = times[args.warmup:] or times
    steady = sum(steady_part) / len(steady_part)
    projected = measured + (args.samples - len(times)) * steady
    n_tok = len(times) * args.seq_len
    print(f"  [{label}] measured: {len(times)} samples x {args.seq_len} tokens in {measured:.2f} s "
          f"({n_tok / measured:,.1f} tokens/s); steady-state {steady:.3f} s/sample "
          f"(first {min(args.warmup, len(times) - 1)} excluded)")
    print(f"  [{label}] projected: {args.samples} samples -> {projected:.1f} s "
          f"({projected / 3600:.2f} h)" + ("" if len(times) < args.samples else " (= measured)"))
    return dict(label=label, samples_measured=len(times), sample_seconds=times,
                measured_seconds=measured, steady_seconds_per_sample=steady,
                samples_requested=args.samples, projected_seconds=projected)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="BF16 checkpoint directory in the native layout")
    ap.add_argument("--mode", choices=["resident", "offload"], default="resident")
    ap.add_argument("--batch", type=int, default=4, help="resident: sequences per batch")
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--batches", type=int, default=4, help="resident: timed batches")
    ap.add_argument("--samples", type=int, default=512, help="offload: samples of the full run")
    ap.add_argument("--measure-samples", type=int, default=0,
                    help="offload: run only this many and project the rest (0: all --samples)")
    ap.add_argument("--warmup", type=int, default=1,
                    help="resident: untimed batches first; offload: first samples left out of "
                         "the steady-state time used for the projection")
    ap.add_argument("--gpu-mem-gb", type=float, default=0.0,
                    help="offload: GPU weight budget (default 0.7 x GPU memory, as hf_ptq.py)")
    ap.add_argument("--cpu-mem-gb", type=float, default=120.0)
    ap.add_argument("--offload-impl", choices=["auto", "accelerate", "manual"], default="auto")
    ap.add_argument("--offload-folder", default="", help="accelerate disk offload beyond the CPU budget")
    ap.add_argument("--tokens", default="", help="safetensors with input_ids [n, L] (or 1-D stream)")
    ap.add_argument("--seed", type=int, default=0, help="random ids when no --tokens")
    ap.add_argument("--save-tokens", default="", help="write the random ids here (safetensors)")
    ap.add_argument("--amax-out", default="", help="write {native_linear_name: amax} JSON")
    ap.add_argument("--expert-tokens-out", default="", help="write {layers.L.ffn.experts.E: tokens}")
    ap.add_argument("--report-out", default="", help="write timings + settings JSON")
    ap.add_argument("--no-amax", action="store_true", help="time the forward without amax hooks")
    ap.add_argument("--both", action="store_true", help="time with and without amax recording")
    ap.add_argument("--experts-impl", choices=["auto", "grouped_mm", "loop"], default="auto",
                    help="routed experts in the replacement forward (auto: grouped_mm on CUDA)")
    ap.add_argument("--check-experts", action="store_true",
                    help="compare the replacement experts forward with transformers' once per layer")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("needs a CUDA GPU")
    if args.no_amax and (args.both or args.amax_out):
        sys.exit("--no-amax excludes --both and --amax-out")
    if args.mode == "offload" and args.gpu_mem_gb <= 0:
        args.gpu_mem_gb = round(0.7 * torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    # TF32 stays at torch's default (off): the FP32 side paths (hyper-connections, indexer
    # scores) decide routing, and TF32 there moves amax by ~1% against an FP32 reference.

    import transformers
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, "
          f"{torch.cuda.get_device_name(0)}; mode {args.mode}"
          + (f", GPU budget {args.gpu_mem_gb} GiB" if args.mode == "offload" else ""))
    model = load_model(args)
    cfg = model.config
    n_rows = args.batches * args.batch if args.mode == "resident" else \
        (args.measure_samples or args.samples)
    if args.mode == "offload":
        args.samples = max(args.samples, n_rows)
    ids = load_tokens(args, cfg.vocab_size, n_rows)
    print(f"  tokens: {tuple(ids.shape)} from {args.tokens or f'random (seed {args.seed})'}")
    check_name_map(model, args.model)

    impl = args.experts_impl
    if impl == "auto":
        impl = "grouped_mm" if grouped_mm_fn() is not None else "loop"
    recorder = AmaxRecorder()
    handles, experts, unmapped = install_amax(model, recorder, impl, args.check_experts)
    print(f"  amax: {len(handles)} linear/router hooks, {len(experts)} experts modules ({impl})")
    for hf in unmapped:
        print(f"  WARNING: no native name for {hf}; recorded as hf:{hf}")

    run = run_resident if args.mode == "resident" else run_offload
    results = []
    ctx = torch.inference_mode if args.mode == "resident" else torch.no_grad  # accelerate swaps params
    with ctx():
        passes = ["amax", "plain"] if args.both else (["plain"] if args.no_amax else ["amax"])
        for label in passes:
            recorder.enabled = label == "amax"
            for fwd in experts:
                fwd.record = recorder.enabled
            if label == "plain":  # hooks off entirely, experts forward kept (same compute path)
                for h in handles:
                    h.remove()
            torch.cuda.reset_peak_memory_stats()
            results.append(run(model, ids, args, label, recorder))
            results[-1]["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
            print(f"  [{label}] peak GPU memory allocated {results[-1]['peak_gpu_gib']:.1f} GiB")
            if label == "amax":
                amax, tokens = recorder.report()
    if args.both:
        a, p = results
        key = "tokens_per_s" if args.mode == "resident" else "steady_seconds_per_sample"
        print(f"  amax recording overhead: {key} amax {a[key]:.4g} vs plain {p[key]:.4g}")

    if "amax" in [r["label"] for r in results]:
        n_exp = sum(1 for k in amax if ".ffn.experts." in k)
        print(f"  amax: {len(amax)} linears ({n_exp} routed-expert linears with tokens)")
        if args.amax_out:
            with open(args.amax_out, "w") as f:
                json.dump(amax, f, indent=1)
            print(f"  wrote {args.amax_out}")
        if args.expert_tokens_out:
            with open(args.expert_tokens_out, "w") as f:
                json.dump(tokens, f, indent=1)
    if args.report_out:
        with open(args.report_out, "w") as f:
            json.dump(dict(args=vars(args), experts_impl=impl, results=results), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
