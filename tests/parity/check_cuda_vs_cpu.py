"""GPU-machine parity of `quantize --backend cuda` against `--backend cpu` (the reference).

For each make-tiny case, runs the whole job with the CPU backend (2 ranks) and the CUDA backend
(1 rank, and 2 ranks sharing the GPU). The CUDA backend feeds its GEMMs BF16 activations, so the
reference it must match is the CPU forward with the same BF16 rounding of linear inputs
(`--cpu-bf16-inputs`); against it, it compares (pass/fail):
  * calibration records (WORK/rank-0/layer-LLLL.calib.h5, f32/input_amax): every linear's input
    amax within --tol (default 1%) relative of the CPU value; zeros (never observed) must match;
  * routing (i64/expert_tokens): at most 1% of the (token, slot) assignments may land on another
    expert (a near-tie decided differently by a last-bit difference); the amax check above
    excludes the experts whose token sets differ, and their worst difference is printed;
  * the exported checkpoint: every tensor byte-identical except `*.input_scale` (derived from the
    amax), which must be within --tol relative.
The same comparison of the BF16 runs against the all-FP32 CPU forward is printed for information
(on tiny random models a BF16 rounding can move a near-tie token to another expert, which moves
that expert's amax by a few %). With `--cuda-fp32-inputs` (three BF16 planes per linear input,
issue 24) the CUDA run is compared with the all-FP32 CPU forward strictly: identical expert token
counts, every amax (routed experts included) and input_scale within --tol. Exit status 1 if any
pass/fail check fails. usage:
  python3 check_cuda_vs_cpu.py --bin .device/bin/quantforge --work /tmp/x [--tol 0.01]
"""
import argparse
import glob
import re
import json
import os
import shutil
import struct
import subprocess
import sys

import h5py
import numpy as np

MAX_MOVED = 0.01  # routed (token, slot) assignments allowed to land on another expert

CASES = [  # name, make-tiny args, quantize args
    ("tiny_s5", ["--preset", "tiny", "--seed", "5"], ["--samples", "8", "--seq-len", "128"]),
    ("tiny_s11_full", ["--preset", "tiny", "--seed", "11"],
     ["--samples", "6", "--seq-len", "200", "--recipe", "full"]),
    ("small_s7", ["--preset", "small", "--seed", "7"], ["--samples", "4", "--seq-len", "256"]),
    ("tiny_bf16_s3", ["--preset", "tiny", "--seed", "3", "--format", "bf16"],
     ["--samples", "4", "--seq-len", "160", "--calib-batch", "3"]),
    ("tiny_s23_full", ["--preset", "tiny", "--seed", "23"],
     ["--samples", "8", "--seq-len", "192", "--recipe", "full"]),
    ("small_s29", ["--preset", "small", "--seed", "29"], ["--samples", "4", "--seq-len", "256"]),
]


def run(cmd, log):
    with open(log, "w") as f:
        f.write(" ".join(cmd) + "\n")
        f.flush()
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        print(f"FAILED ({r.returncode}): {' '.join(cmd)} (log {log})")
        print(open(log).read()[-3000:])
        sys.exit(1)


def calib_records(work):
    out = {}
    for path in sorted(glob.glob(os.path.join(work, "rank-0", "layer-*.calib.h5"))):
        with h5py.File(path, "r") as f:
            names = f["attrs"].attrs["linear_names"]
            names = names.decode() if isinstance(names, bytes) else str(names)
            out[path.split("/")[-1]] = (names.split("\n"), f["f32/input_amax"][()],
                                        f["i64/expert_tokens"][()])
    return out


def safetensors_tensors(d):
    tensors = {}
    for path in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
            data = f.read()
        for name, info in header.items():
            if name == "__metadata__":
                continue
            b, e = info["data_offsets"]
            tensors[name] = (info["dtype"], info["shape"], data[b:e])
    return tensors


def rel(a, b):
    a, b = np.float64(a), np.float64(b)
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), 1e-30)


def compare(case, ref_work, ref_out, work, out, tol, label, informational=False, strict=False):
    ok = True
    ref_calib, calib = calib_records(ref_work), calib_records(work)
    if ref_calib.keys() != calib.keys():
        print(f"  {label}: calib layer files differ: {sorted(ref_calib)} vs {sorted(calib)}")
        return False
    # Every non-routed linear sees the same tokens on both sides: its amax must agree within tol.
    # A routed expert's token set can differ: a routing near-tie decided differently moves one
    # (token, slot) assignment from one expert to another, changing the inputs of those 2
    # experts (6 linears: w1, w3, w2). So at most 6 x (moved assignments) routed-expert amax may
    # be off by more than tol, and at most MAX_MOVED of all assignments may move.
    worst, worst_name, n_lin = 0.0, "", 0
    worst_r, worst_r_name, n_routed, n_routed_off = 0.0, "", 0, 0
    n_moved, n_assign = 0, 0
    for key, (names, amax, toks) in ref_calib.items():
        names2, amax2, toks2 = calib[key]
        if names != names2:
            print(f"  {label}: {key}: linear names differ")
            ok = False
            continue
        n_moved += int(np.abs(toks - toks2).sum()) // 2
        n_assign += int(toks.sum())
        for n, a, b in zip(names, amax, amax2):
            r = rel(a, b)
            if ".ffn.experts." in n:
                n_routed += 1
                n_routed_off += int(r > tol or (a == 0) != (b == 0))
                if r > worst_r:
                    worst_r, worst_r_name = r, f"{n} (cpu {a:.6g}, cuda {b:.6g})"
                continue
            n_lin += 1
            if (a == 0) != (b == 0):
                print(f"  {label}: {n}: observed on one side only (cpu {a}, cuda {b})")
                ok = False
            if r > worst:
                worst, worst_name = r, f"{n} (cpu {a:.6g}, cuda {b:.6g})"
    moved = n_moved / max(n_assign, 1)
    # Count-neutral swaps (one token in, one out of the same two experts) leave the counts
    # equal, so allow one such swap even when no count moved.
    allowed_off = 0 if strict else 6 * max(n_moved, 1)
    tag = lambda good: "info" if informational else ("ok" if good else "FAIL")
    moved_ok = n_moved == 0 if strict else moved <= MAX_MOVED
    ok &= worst <= tol and moved_ok and n_routed_off <= allowed_off
    print(f"  {label}: {n_lin} non-routed linear amax, worst rel diff {worst:.3e} "
          f"[{tag(worst <= tol)}] {worst_name}")
    print(f"  {label}: routing: {n_moved}/{n_assign} assignments moved ({100 * moved:.3f}%, limit "
          f"{0 if strict else 100 * MAX_MOVED:.1f}%) [{tag(moved_ok)}]; {n_routed_off}/{n_routed} routed-expert "
          f"amax off by > tol (allowed {allowed_off}) [{tag(n_routed_off <= allowed_off)}], worst "
          f"{worst_r:.3e} {worst_r_name}")
    ref_t, t = safetensors_tensors(ref_out), safetensors_tensors(out)
    if ref_t.keys() != t.keys():
        print(f"  {label}: exported tensor names differ ({len(ref_t)} vs {len(t)})")
        return False
    # input_scale follows from the amax (calibrated modules) or from the projection's max over
    # the calibrated experts (fallback), so the amax rule applies: within tol, except routed
    # experts whose inputs routing changed (same budget as above).
    n_equal, n_scale, worst_scale, worst_scale_name, bad = 0, 0, 0.0, "", []
    n_routed_scale_off = 0
    for name, (dtype, shape, data) in ref_t.items():
        dtype2, shape2, data2 = t[name]
        if name.endswith(".input_scale"):
            n_scale += 1
            a = np.frombuffer(data, dtype=np.float32)[0]
            b = np.frombuffer(data2, dtype=np.float32)[0]
            r = rel(a, b)
            if ".experts." in name and ".shared_experts." not in name:
                n_routed_scale_off += int(r > tol)
            elif r > worst_scale:
                worst_scale, worst_scale_name = r, name
            continue
        if (dtype, shape, data) == (dtype2, shape2, data2):
            n_equal += 1
        else:
            bad.append(name)
    scales_ok = worst_scale <= tol and n_routed_scale_off <= allowed_off
    ok &= not bad and scales_ok
    print(f"  {label}: {n_equal}/{len(ref_t) - n_scale} exported tensors byte-identical"
          f"{' [FAIL: ' + ', '.join(bad[:5]) + ']' if bad else ''}; {n_scale} input_scale: "
          f"non-routed worst rel diff {worst_scale:.3e} {worst_scale_name}, routed off by > tol "
          f"{n_routed_scale_off} (allowed {allowed_off}) [{tag(scales_ok)}]")
    return ok or informational


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--tol", type=float, default=0.01)
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    all_ok = True
    for name, tiny_args, q_args in CASES:
        d = os.path.join(args.work, name)
        os.makedirs(d)
        src = os.path.join(d, "src")
        run([args.bin, "make-tiny", "--out", src] + tiny_args, os.path.join(d, "make_tiny.log"))
        runs = {"cpu_np2": (2, ["--backend", "cpu"]),
                "cpu_bf16_np2": (2, ["--backend", "cpu", "--cpu-bf16-inputs"]),
                "cuda_np1": (1, ["--backend", "cuda"]), "cuda_np2": (2, ["--backend", "cuda"]),
                "cuda_fp32_np1": (1, ["--backend", "cuda", "--cuda-fp32-inputs"])}
        for label, (np_, backend) in runs.items():
            run(["mpirun", "-np", str(np_), args.bin, "quantize", "--in", src, "--out",
                 os.path.join(d, "out-" + label), "--work", os.path.join(d, "work-" + label)]
                + backend + q_args, os.path.join(d, label + ".log"))
        print(f"{name}:")
        w = lambda label: (os.path.join(d, "work-" + label), os.path.join(d, "out-" + label))
        for label in ("cuda_np1", "cuda_np2"):
            all_ok &= compare(name, *w("cpu_bf16_np2"), *w(label), args.tol,
                              label + " vs cpu --cpu-bf16-inputs")
        compare(name, *w("cpu_np2"), *w("cuda_np1"), args.tol, "cuda_np1 vs cpu FP32",
                informational=True)
        all_ok &= compare(name, *w("cpu_np2"), *w("cuda_fp32_np1"), args.tol,
                          "cuda_fp32_np1 vs cpu FP32 (strict)", strict=True)
    print("PASS" if all_ok else "FAIL")
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    main()
