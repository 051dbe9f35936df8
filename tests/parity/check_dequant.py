"""GPU-machine parity check of `quantforge dequant` against torch.

Dequantizes every FP8 / FP4 weight of a native checkpoint with torch's own dtypes
(float8_e4m3fn codes x float8_e8m0fnu (or float32) 128x128 tile scales; E2M1 nibbles, low
first, x 2^(e8m0-127) per 32), rounds once to bfloat16, and compares byte for byte with our
BF16 output. Pass-through tensors must be byte-identical to the source.

usage: python3 check_dequant.py NATIVE_DIR BF16_DIR      (exit 1 on any mismatch)
"""
import json
import os
import sys

import torch
from safetensors import safe_open

E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                     -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], dtype=torch.float32)


def open_all(d):
    index = json.load(open(os.path.join(d, "model.safetensors.index.json")))
    handles = {f: safe_open(os.path.join(d, f), "pt") for f in sorted(set(index["weight_map"].values()))}
    return {name: handles[f] for name, f in index["weight_map"].items()}


def scale_to_float(s):
    if s.dtype == torch.float8_e8m0fnu:
        return s.float()
    return s.to(torch.float32)


def ref_fp8(w, s):
    rows, cols = w.shape
    sf = scale_to_float(s)
    sf = sf.repeat_interleave(128, 0)[:rows].repeat_interleave(128, 1)[:, :cols]
    return (w.float() * sf).to(torch.bfloat16)


def ref_fp4(packed, s):
    b = packed.view(torch.uint8)
    lo = E2M1[(b & 0xF).long()]
    hi = E2M1[(b >> 4).long()]
    vals = torch.stack([lo, hi], dim=-1).reshape(b.shape[0], b.shape[1] * 2)
    sf = scale_to_float(s).repeat_interleave(32, 1)
    return (vals * sf).to(torch.bfloat16)


def main():
    src_dir, out_dir = sys.argv[1], sys.argv[2]
    src, out = open_all(src_dir), open_all(out_dir)
    n_fp8 = n_fp4 = n_plain = 0
    bad = []
    for name in sorted(src):
        if name.endswith(".scale"):
            if name in out:
                bad.append(f"{name}: scale tensor present in output")
            continue
        w = src[name].get_tensor(name)
        scale_name = name[: -len("weight")] + "scale" if name.endswith(".weight") else None
        got = out[name].get_tensor(name)
        if scale_name and scale_name in src:
            s = src[scale_name].get_tensor(scale_name)
            if w.dtype == torch.float8_e4m3fn:
                want, kind = ref_fp8(w, s), "fp8"
                n_fp8 += 1
            else:
                want, kind = ref_fp4(w, s), "fp4"
                n_fp4 += 1
            if got.dtype != torch.bfloat16 or got.shape != want.shape:
                bad.append(f"{name}: {got.dtype} {tuple(got.shape)} vs {want.dtype} {tuple(want.shape)}")
                continue
            # NaN results are canonical 0x7FC0 on our side; torch's NaN bits may differ.
            gb, wb = got.view(torch.int16), want.view(torch.int16)
            both_nan = torch.isnan(got.float()) & torch.isnan(want.float())
            diff = (gb != wb) & ~both_nan
            if diff.any():
                i = diff.nonzero()[0].tolist()
                bad.append(f"{name} ({kind}): {int(diff.sum())} of {got.numel()} differ, first at {i}: "
                           f"ours {got[tuple(i)].item()} torch {want[tuple(i)].item()}")
        else:
            n_plain += 1
            same_bytes = torch.equal(w.reshape(-1).view(torch.uint8), got.reshape(-1).view(torch.uint8))
            if w.dtype != got.dtype or w.shape != got.shape or not same_bytes:
                bad.append(f"{name}: pass-through tensor changed")
    print(f"check_dequant: {n_fp8} FP8 + {n_fp4} FP4 weights compared bit for bit, {n_plain} pass-through")
    for line in bad[:20]:
        print("MISMATCH", line)
    if bad:
        print(f"check_dequant: FAILED ({len(bad)} tensors)")
        sys.exit(1)
    print("check_dequant: PASSED (byte-identical to torch)")


if __name__ == "__main__":
    main()
