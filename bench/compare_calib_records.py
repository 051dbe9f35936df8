"""Checks that runs of `quantize` with different rank counts calibrated the same: the input amax
of every calibration record (WORK/rank-R/layer-*.calib.h5, f32/input_amax with its
linear_names; layout in bench/calib_records_to_json.py) must be bit-identical on every rank of
every run, and equal to the reference run's rank 0. Expert token counts (i64/expert_tokens)
are compared too: they are all-reduced sums, so they must not depend on the rank count either.

usage: python3 compare_calib_records.py REF_WORK WORK [WORK...]
Prints one line per WORK; exit status 1 on any difference or missing record.
"""
import glob
import os
import sys

import h5py
import numpy as np


def read_rank(rank_dir):
    """{layer file name: (linear names, amax as uint32 bits, expert tokens)} of one rank."""
    records = {}
    for path in sorted(glob.glob(os.path.join(rank_dir, "layer-*.calib.h5"))):
        with h5py.File(path, "r") as f:
            names = f["attrs"].attrs["linear_names"]
            names = names.decode() if isinstance(names, bytes) else str(names)
            amax = np.asarray(f["f32/input_amax"][()], dtype=np.float32).view(np.uint32)
            tokens = f["i64/expert_tokens"][()] if "i64/expert_tokens" in f else np.zeros(0)
            records[os.path.basename(path)] = (names, amax, np.asarray(tokens))
    return records


def ranks_of(work):
    return sorted(glob.glob(os.path.join(work, "rank-*")), key=lambda d: int(d.rsplit("-", 1)[1]))


def diff(ref, got, where):
    """Reasons `got` differs from `ref` (empty list when identical)."""
    problems = []
    if sorted(ref) != sorted(got):
        problems.append(f"{where}: layers {sorted(got)} != reference {sorted(ref)}")
    for layer in sorted(set(ref) & set(got)):
        (rn, ra, rt), (gn, ga, gt) = ref[layer], got[layer]
        if rn != gn:
            problems.append(f"{where} {layer}: linear names differ")
        elif not np.array_equal(ra, ga):
            bad = np.nonzero(ra != ga)[0]
            names = rn.split("\n")
            i = int(bad[0])
            problems.append(
                f"{where} {layer}: {len(bad)} input amax differ, first {names[i]}: "
                f"{ra[i:i+1].view(np.float32)[0]!r} (ref) vs {ga[i:i+1].view(np.float32)[0]!r}")
        if not np.array_equal(rt, gt):
            problems.append(f"{where} {layer}: expert token counts differ")
    return problems


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    ref_ranks = ranks_of(sys.argv[1])
    if not ref_ranks:
        sys.exit(f"no rank stores under {sys.argv[1]}")
    ref = read_rank(ref_ranks[0])
    if not ref:
        sys.exit(f"no calibration records under {ref_ranks[0]}")
    failed = False
    for work in sys.argv[2:]:
        ranks = ranks_of(work)
        problems = [] if ranks else [f"{work}: no rank stores"]
        for rank_dir in ranks:
            problems += diff(ref, read_rank(rank_dir), os.path.relpath(rank_dir, work))
        n_linears = sum(len(a) for _, a, _ in ref.values())
        if problems:
            failed = True
            print(f"{work}: DIFFERENT ({len(problems)} problem(s))")
            for p in problems[:10]:
                print("  " + p)
        else:
            print(f"{work}: identical input amax on all {len(ranks)} rank(s): {len(ref)} layers, "
                  f"{n_linears} linears")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
