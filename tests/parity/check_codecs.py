#!/usr/bin/env python3
"""Compares our scalar codecs (src/numerics) with torch's casts, bit for bit.

Usage (GPU machine, torch >= 2.5 for float8_e8m0fnu; no other packages):
    python3 tests/parity/check_codecs.py build/tests/codec_tables [--require-cuda]

codec_tables prints decoded tables and our encodings of a probe list (float32 bit patterns).
References:
  E4M3 decode/encode   tensor.view(float8_e4m3fn).float() / x.to(float8_e4m3fn); for encode,
                       finite x is first clamped to [-448, 448] as ModelOpt does (our encoder
                       saturates; torch's plain cast gives NaN from just above 464). NaN probes
                       are cast unclamped (torch keeps the NaN's sign: 0x7F / 0xFF).
  E8M0 decode/encode   view(float8_e8m0fnu).float() / x.to(float8_e8m0fnu), unmodified.
  BF16 encode          x.to(bfloat16). torch writes 0x7FC0 for every NaN while we keep the sign and
                       payload, so NaN results are compared by NaN-ness only.
  E2M1 decode          torch cannot convert float4_e2m1fn_x2 to float32, so a table from the OCP
                       E2M1 fields written here (sign bit 3, bias 1), cross-checked against
                       ModelOpt's e2m1_values list.
  E2M1 encode          ModelOpt's _cast_fp4 (nvfp4_tensor.py) re-run with torch: searchsorted on
                       the bounds + 1 on the odd bounds, sign bit iff x < 0.
Casts run on the CPU and, when available, on CUDA. Exits 1 on any mismatch.
"""

import argparse
import json
import math
import subprocess
import sys

import torch

E2M1_BOUNDS = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]
E2M1_ODD_MASK = [0, 1, 0, 1, 0, 1, 0]
MODELOPT_E2M1_VALUES = [0, 0.5, 1, 1.5, 2, 3, 4, 6]


class Report:
    def __init__(self):
        self.n_failed_checks = 0

    def compare(self, name, ours, ref, probes=None, same=None):
        """ours/ref: lists; probes: float32 bit patterns shown for mismatches."""
        assert len(ours) == len(ref), name
        same = same or (lambda a, b: a == b)
        bad = [i for i in range(len(ref)) if not same(ours[i], ref[i])]
        status = "ok" if not bad else "MISMATCH"
        print(f"{name:<34} {len(ref):>7} compared {len(bad):>6} mismatched  {status}")
        for i in bad[:8]:
            if probes:
                where = f"probe 0x{probes[i]:08x} ({bits_to_float(probes[i])!r})"
            else:
                where = f"index {i}"
            print(f"    {where}: ours {fmt(ours[i])} torch {fmt(ref[i])}")
        if bad:
            self.n_failed_checks += 1


def fmt(v):
    return f"0x{v:02x}" if isinstance(v, int) else repr(v)


def bits_to_float(b):
    return torch.tensor([b - (1 << 32) if b >= (1 << 31) else b], dtype=torch.int32).view(
        torch.float32).item()


def probes_tensor(bits, device):
    signed = [b - (1 << 32) if b >= (1 << 31) else b for b in bits]
    return torch.tensor(signed, dtype=torch.int32, device=device).view(torch.float32)


def as_u8_list(t):
    return t.view(torch.uint8).cpu().tolist()


def decoded_list(t):
    return [None if math.isnan(v) else v for v in t.float().cpu().tolist()]


def same_decoded(a, b):
    return (a is None and b is None) or (a is not None and b is not None and float(a) == float(b))


def e2m1_field_value(code):
    sign = -1.0 if code & 0x8 else 1.0
    exp_field, man = (code >> 1) & 3, code & 1
    mag = 0.5 * man if exp_field == 0 else (1 + 0.5 * man) * 2.0 ** (exp_field - 1)
    return sign * mag


def modelopt_cast_fp4(x):
    """ModelOpt NVFP4QTensor._cast_fp4 (nvfp4_tensor.py), op for op."""
    device = x.device
    bounds = torch.tensor(E2M1_BOUNDS, dtype=torch.float32, device=device)
    mask = torch.tensor(E2M1_ODD_MASK, dtype=torch.uint8, device=device)
    mask = mask.expand([*x.shape, 7])
    sign_bit = (x < 0).to(torch.uint8)
    x_abs = x.abs()
    ord_ = torch.searchsorted(bounds, x_abs, out_int32=True).to(torch.uint8)
    round_ = torch.any((x_abs.unsqueeze(-1) == bounds) * mask, dim=-1)
    return (sign_bit * 0b1000 + ord_ + round_).to(torch.uint8)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("codec_tables", help="path of the codec_tables binary")
    ap.add_argument("--require-cuda", action="store_true", help="fail if CUDA is unavailable")
    args = ap.parse_args()

    out = subprocess.run([args.codec_tables], check=True, capture_output=True, text=True).stdout
    t = json.loads(out)
    probes = t["probe_bits"]
    print(f"torch {torch.__version__}; {len(probes)} probes")
    rep = Report()

    # ---- decode tables (device independent: views of the bytes) -------------------------------
    codes = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    rep.compare("e4m3 decode (256 bytes)", t["e4m3_decode"],
                decoded_list(codes.view(torch.float8_e4m3fn)), same=same_decoded)
    rep.compare("e8m0 decode (256 bytes)", t["e8m0_decode"],
                decoded_list(codes.view(torch.float8_e8m0fnu)), same=same_decoded)
    e2m1_ref = [e2m1_field_value(c) for c in range(16)]
    assert e2m1_ref[:8] == MODELOPT_E2M1_VALUES
    assert e2m1_ref[8:] == [-v for v in MODELOPT_E2M1_VALUES]
    try:  # float4_e2m1fn_x2 -> float32 is not implemented in torch 2.11; use it if it ever is.
        packed = torch.tensor([c | (c << 4) for c in range(16)], dtype=torch.uint8)
        f4 = packed.view(torch.float4_e2m1fn_x2).float()
        print(f"    (torch decoded float4_e2m1fn_x2: {f4.tolist()})")
    except (RuntimeError, AttributeError, TypeError) as e:
        reason = str(e).splitlines()[0][:80]
        print(f"    (torch cannot decode float4_e2m1fn_x2: {reason}; using the field table)")
    rep.compare("e2m1 decode (16 codes)", t["e2m1_decode"], e2m1_ref, same=same_decoded)

    # ---- encodings on each device -------------------------------------------------------------
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    elif args.require_cuda:
        print("CUDA required but not available")
        return 1
    for dev in devices:
        try:
            check_encodings(rep, t, probes, dev)
        except RuntimeError as e:  # a cast not implemented on this device counts as a failure
            print(f"encode checks on {dev} raised: {str(e).splitlines()[0]}")
            rep.n_failed_checks += 1

    if rep.n_failed_checks:
        print(f"FAILED: {rep.n_failed_checks} comparison(s) mismatched")
        return 1
    print("all codec comparisons match")
    return 0


def check_encodings(rep, t, probes, dev):
    x = probes_tensor(probes, dev)
    clamped = torch.where(torch.isnan(x), x, x.clamp(-448.0, 448.0))
    rep.compare(f"e4m3 encode, clamp+cast [{dev}]", t["e4m3_encode"],
                as_u8_list(clamped.to(torch.float8_e4m3fn)), probes)
    rep.compare(f"e8m0 encode, cast [{dev}]", t["e8m0_encode"],
                as_u8_list(x.to(torch.float8_e8m0fnu)), probes)
    bf16 = (x.to(torch.bfloat16).view(torch.int16).to(torch.int32) & 0xFFFF).cpu().tolist()

    def same_bf16(a, b):
        nan_a = (a & 0x7F80) == 0x7F80 and (a & 0x7F) != 0
        nan_b = (b & 0x7F80) == 0x7F80 and (b & 0x7F) != 0
        return nan_a and nan_b or a == b

    rep.compare(f"bf16 encode, cast [{dev}]", t["bf16_encode"], bf16, probes, same=same_bf16)
    rep.compare(f"e2m1 encode, ModelOpt _cast_fp4 [{dev}]", t["e2m1_encode"],
                modelopt_cast_fp4(x).cpu().tolist(), probes)


if __name__ == "__main__":
    sys.exit(main())
