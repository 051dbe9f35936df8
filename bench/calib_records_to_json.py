"""Writes the input amax of a quantforge work store's calibration records as JSON
({"layers.N.attn.wq_a": amax, ...}: the --amax-file format, and what bench/compare_amax.py
reads). Records are identical on every rank, so rank 0's are used.

usage: python3 calib_records_to_json.py WORK_DIR OUT.json
"""
import glob
import json
import os
import sys

import h5py


def main():
    work, out = sys.argv[1], sys.argv[2]
    amax = {}
    files = sorted(glob.glob(os.path.join(work, "rank-0", "layer-*.calib.h5")))
    if not files:
        sys.exit(f"no calibration records under {work}/rank-0")
    for path in files:
        with h5py.File(path, "r") as f:
            names = f["attrs"].attrs["linear_names"]
            names = names.decode() if isinstance(names, bytes) else str(names)
            for name, value in zip(names.split("\n"), f["f32/input_amax"][()]):
                if value > 0:  # 0 = never observed (an expert no token reached)
                    amax[name] = float(value)
    json.dump(amax, open(out, "w"), indent=1, sort_keys=True)
    print(f"{len(amax)} observed linears from {len(files)} layers -> {out}")


if __name__ == "__main__":
    main()
