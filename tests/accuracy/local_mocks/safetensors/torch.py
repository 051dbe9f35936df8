"""Mock safetensors.torch: save_file / load_file for F32, BF16, I64, I32, I8, U8."""
import numpy as np
import torch

from . import fl, safe_open

DT = {torch.float32: "F32", torch.int64: "I64", torch.int32: "I32", torch.int8: "I8",
      torch.uint8: "U8", torch.bfloat16: "BF16", torch.float64: "F64"}


def save_file(tensors, path, metadata=None):
    entries = []
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            raw = fl.bf16_bytes(t.float().numpy())
        else:
            raw = t.numpy().tobytes()
        entries.append((name, DT[t.dtype], list(t.shape), raw))
    fl.write_safetensors(path, entries, metadata)


def load_file(path):
    with safe_open(path) as f:
        return {k: f.get_tensor(k) for k in f.keys()}
