#!/usr/bin/env python3
"""Bit-exact check of our NVFP4 CPU reference against ModelOpt's NVFP4 formulas in torch.

Usage (GPU machine, torch >= 2.1, no other packages):
    build/tests/nvfp4_golden /tmp/nvfp4_golden            # writes manifest.json + .bin files
    python3 tests/parity/check_nvfp4_torch.py /tmp/nvfp4_golden [--require-cuda]

The functions below re-implement, op for op, NVIDIA/Model-Optimizer (commit a2fbac7):
  modelopt/torch/quantization/qtensor/nvfp4_tensor.py   (NVFP4QTensor)
  modelopt/torch/quantization/utils/core_utils.py       (reduce_amax, reduce_block_amax)
  modelopt/torch/quantization/utils/numeric_utils.py    (MXFP4 -> NVFP4 closed-form amax)
  modelopt/torch/quantization/qtensor/mxfp4_tensor.py   (MXFP4 dequantize)
  examples/deepseek/deepseek_v4/quantize_to_nvfp4.py    (_amax_to_nvfp4_scale_2,
                                                          _quantize_weight_nvfp4_lossless)
Every float op is a float32 torch tensor op on the case's device, so torch's own rounding
decides. A "true_divide" case runs on the CPU, a "reciprocal_multiply" case on CUDA: torch on CUDA
turns `tensor / python_float` into a multiply by the float32 reciprocal
(aten/src/ATen/native/cuda/BinaryDivTrueKernel.cu), the CPU divides. The "division_*" pair has an
amax where the two differ, so it also confirms which rule each device follows.
Exits 1 on any mismatch (codes, E4M3 scales, weight_scale_2, cast counts).
"""

import argparse
import json
import os
import struct
import sys

import torch

E2M1_MAX = 6.0
E4M3_MAX = 448.0
E8M0_BIAS = 127
E4M3_KMAX = 8
E4M3_KMIN = -9
E2M1_BOUNDS = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]
E2M1_MAGNITUDES = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]


# ---- core_utils.py ---------------------------------------------------------------------------
def reduce_amax_all(x):
    """reduce_amax(x) with axis=None: max(|max|, |min|), in x's dtype."""
    return torch.maximum(torch.abs(torch.max(x)), torch.abs(torch.min(x)))


def reduce_block_amax_last(x, block):
    """reduce_block_amax(x, {-1: block}): per-block max(|amax|, |amin|) over the last dim."""
    blocks = x.reshape(*x.shape[:-1], x.shape[-1] // block, block)
    return torch.maximum(torch.abs(blocks.amax(dim=-1)), torch.abs(blocks.amin(dim=-1)))


# ---- nvfp4_tensor.py ----------------------------------------------------------------------------
def scale_2_from_amax(amax):
    """get_weights_scaling_factor_2 / _amax_to_nvfp4_scale_2: 0-d tensor / Python float."""
    return amax.float() / (E2M1_MAX * E4M3_MAX)


def per_block_scale_fp8(x, block, scale_2):
    """get_weights_scaling_factor (dynamic path) + _cast_per_block_scale_to_fp8."""
    per_block_amax = reduce_block_amax_last(x, block).float()
    per_block_scale = per_block_amax / (E2M1_MAX * scale_2.to(per_block_amax.device))
    per_block_scale[per_block_scale == 0] = 1.0
    return per_block_scale.clamp(min=2**-9, max=E4M3_MAX).to(torch.float8_e4m3fn)


def cast_fp4(w):
    """_cast_fp4: sign bit from w < 0; searchsorted on the bounds, +1 on the odd bounds."""
    sign = (w < 0).to(torch.uint8)
    mag = w.abs()
    bounds = torch.tensor(E2M1_BOUNDS, device=w.device)
    ordinal = torch.searchsorted(bounds, mag, out_int32=True).to(torch.uint8)
    on_odd_bound = torch.any(mag.unsqueeze(-1) == bounds[[1, 3, 5]], dim=-1).to(torch.uint8)
    return (sign << 3) + ordinal + on_odd_bound


def nvfp4_quantize(x, block, scale_fp8, scale_2):
    """NVFP4QTensor.quantize with given scales (try_tensorrt=False): returns packed uint8."""
    shape = x.shape
    blocks = x.reshape(*shape[:-1], -1, block)
    scaled = blocks / (scale_fp8.to(torch.float32) * scale_2).unsqueeze(-1)
    codes = cast_fp4(scaled.reshape(shape))
    return (codes[..., 1::2] << 4) | codes[..., 0::2]


# ---- mxfp4_tensor.py / numeric_utils.py / quantize_to_nvfp4.py ----------------------------------
def mxfp4_dequantize_bf16(packed, e8m0, block=32):
    """MXFP4QTensor.dequantize(dtype=bfloat16): sign * magnitude * exp2(e8m0 - 127)."""
    codes = torch.zeros(*packed.shape[:-1], packed.shape[-1] * 2, dtype=torch.uint8,
                        device=packed.device)
    codes[..., 0::2] = packed & 0x0F
    codes[..., 1::2] = (packed >> 4) & 0x0F
    sign = 1 - 2 * ((codes & 0b1000) >> 3).to(torch.float32)
    table = torch.tensor(E2M1_MAGNITUDES, device=packed.device)
    values = sign * table[(codes & 0b0111).long()]
    scale = torch.exp2(e8m0.float() - E8M0_BIAS).reshape(-1, 1)
    out = values.reshape(-1, block) * scale
    return out.reshape(codes.shape).to(torch.bfloat16)


def mxfp4_k_max(e8m0):
    """mxfp4_to_nvfp4_global_amax's k_max: max k over non-zero bytes, 0 if none."""
    k = e8m0.to(torch.int32) - E8M0_BIAS
    nonzero = e8m0 > 0
    return int(k[nonzero].max().item()) if bool(nonzero.any()) else 0


def mxfp4_per_block_amax(blocks, e8m0):
    """mxfp4_to_nvfp4_per_block_amax: closed form 6 * 2^k in the local window, else max nibble."""
    k = e8m0.to(torch.int32) - E8M0_BIAS
    pow2_k = torch.exp2(k.float())
    closed_form = E2M1_MAX * pow2_k
    local_k_max = torch.where(e8m0 > 0, k, torch.full_like(k, -E8M0_BIAS)).amax()
    delta = k - (local_k_max - E4M3_KMAX)
    in_range = (delta >= E4M3_KMIN) & (delta <= E4M3_KMAX)
    low, high = blocks & 0x07, (blocks >> 4) & 0x07
    max_index = torch.maximum(low, high).amax(dim=-1).long()
    data_derived = torch.tensor(E2M1_MAGNITUDES, device=blocks.device)[max_index] * pow2_k
    amax = torch.where(in_range, closed_form, data_derived)
    return amax.repeat_interleave(2, dim=-1), int((~in_range).sum().item())


def lossless_cast(packed, e8m0, k_max):
    """_quantize_weight_nvfp4_lossless: returns packed, scale_fp8, scale_2, n_lossless, n_fb."""
    bf16 = mxfp4_dequantize_bf16(packed, e8m0)
    blocks = packed.view(*packed.shape[:-1], e8m0.shape[-1], 16)
    per_block_amax, n_fallback = mxfp4_per_block_amax(blocks, e8m0)
    m = k_max - E4M3_KMAX
    scale_2 = torch.tensor(2.0**m, dtype=torch.float32, device=packed.device).reshape(())
    scale_fp8 = ((per_block_amax / (E2M1_MAX * scale_2))
                 .clamp(min=2**-9, max=E4M3_MAX).to(torch.float8_e4m3fn))
    k = e8m0.to(torch.int32) - E8M0_BIAS
    n_lossless = int(((k >= (k_max - (E4M3_KMAX - E4M3_KMIN))) | (e8m0 == 0)).sum().item())
    return nvfp4_quantize(bf16, 16, scale_fp8, scale_2), scale_fp8, scale_2, n_lossless, n_fallback


# ---- harness ------------------------------------------------------------------------------------
def load(root, name, dtype, shape):
    with open(os.path.join(root, name), "rb") as f:
        data = bytearray(f.read())
    return torch.frombuffer(data, dtype=dtype).reshape(shape)


def float_from_bits(text):
    return struct.unpack("<f", struct.pack("<I", int(text, 16)))[0]


def bits(value):
    return struct.unpack("<I", struct.pack("<f", float(value)))[0]


def compare(what, ours, theirs, failures):
    ours, theirs = ours.flatten().cpu(), theirs.flatten().cpu()
    bad = (ours != theirs).nonzero().flatten()
    for i in bad[:5].tolist():
        failures.append(f"{what}[{i}] ours {int(ours[i])} torch {int(theirs[i])}")
    if len(bad) > 5:
        failures.append(f"{what}: {len(bad)} mismatches in total")
    return len(bad) == 0


def check_quantize(root, case, device):
    rows, cols = case["n_rows"], case["n_cols"]
    x = load(root, case["x"], torch.int16, (rows, cols)).view(torch.bfloat16).to(device)
    if case["amax_source"] == "data":
        amax = reduce_amax_all(x)
    else:
        amax = torch.tensor(float_from_bits(case["amax_bits"]), dtype=torch.float32, device=device)
    scale_2 = scale_2_from_amax(amax)
    scale_fp8 = per_block_scale_fp8(x, 16, scale_2)
    packed = nvfp4_quantize(x, 16, scale_fp8, scale_2)
    failures = []
    if bits(scale_2.item()) != int(case["scale_2_bits"], 16):
        failures.append(f"scale_2 ours {case['scale_2_bits']} torch {bits(scale_2.item()):#010x}")
    compare("scale", load(root, case["scale"], torch.uint8, (rows, cols // 16)),
            scale_fp8.view(torch.uint8), failures)
    compare("packed", load(root, case["packed"], torch.uint8, (rows, cols // 2)), packed, failures)
    return failures


def check_cast(root, case, device):
    rows, cols = case["n_rows"], case["n_cols"]
    packed_in = load(root, case["packed_in"], torch.uint8, (rows, cols // 2)).to(device)
    e8m0 = load(root, case["e8m0"], torch.uint8, (rows, cols // 32)).to(device)
    k_max = mxfp4_k_max(e8m0)
    if "pair_e8m0" in case:  # quantize_to_nvfp4.py _build_w13_kmax_overrides: max of the pair
        pair = load(root, case["pair_e8m0"], torch.uint8, (rows, cols // 32)).to(device)
        k_max = max(k_max, mxfp4_k_max(pair))
    packed, scale_fp8, scale_2, n_lossless, n_fallback = lossless_cast(packed_in, e8m0, k_max)
    failures = []
    if bits(scale_2.item()) != int(case["scale_2_bits"], 16):
        failures.append(f"scale_2 ours {case['scale_2_bits']} torch {bits(scale_2.item()):#010x}")
    if n_lossless != case["n_lossless"] or n_fallback != case["n_fallback"]:
        failures.append(f"counts ours lossless {case['n_lossless']} fallback {case['n_fallback']}"
                        f" torch {n_lossless} {n_fallback}")
    compare("scale", load(root, case["scale"], torch.uint8, (rows, cols // 16)),
            scale_fp8.view(torch.uint8), failures)
    compare("packed", load(root, case["packed"], torch.uint8, (rows, cols // 2)), packed, failures)
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("golden_dir")
    ap.add_argument("--require-cuda", action="store_true",
                    help="fail (instead of skipping) the reciprocal_multiply cases without CUDA")
    args = ap.parse_args()
    with open(os.path.join(args.golden_dir, "manifest.json")) as f:
        manifest = json.load(f)
    assert manifest["format"] == "qf-nvfp4-golden-v1", manifest["format"]
    has_cuda = torch.cuda.is_available()
    print(f"torch {torch.__version__}, cuda {'yes' if has_cuda else 'no'}")
    n_pass = n_fail = n_skip = 0
    for case in manifest["cases"]:
        # Quantize: the division rule picks the device. Cast: the DS-V4 exporter's default device
        # (CPU) is authoritative; a CUDA run is reported too but cannot fail the check (torch's
        # CUDA exp2 of -127 may differ for E8M0 byte 0 blocks).
        runs = [("cuda" if case.get("division") == "reciprocal_multiply" else "cpu", True)]
        if case["kind"] == "mxfp4_cast" and has_cuda:
            runs.append(("cuda", False))
        for device, authoritative in runs:
            if device == "cuda" and not has_cuda and not args.require_cuda:
                print(f"SKIP {case['name']:16s} needs CUDA")
                n_skip += 1
                continue
            try:
                check = check_quantize if case["kind"] == "quantize" else check_cast
                failures = check(args.golden_dir, case, device)
            except Exception as e:  # report and go on with the other cases
                failures = [f"exception: {e!r}"]
            status = "PASS" if not failures else ("FAIL" if authoritative else "DIFF")
            shape = f"{case['n_rows']}x{case['n_cols']}"
            note = "" if authoritative else " (informational)"
            print(f"{status} {case['name']:16s} {case['kind']:10s} {shape} on {device}{note}")
            for line in failures:
                print(f"     {line}")
            if authoritative:
                n_pass += not failures
                n_fail += bool(failures)
    print(f"{n_pass} passed, {n_fail} failed, {n_skip} skipped")
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
