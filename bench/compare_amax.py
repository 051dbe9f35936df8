"""Compares two per-linear input-amax files ({native_linear_name: amax} JSON, the format of
quantforge's --amax-file and of bench/bench_calib_transformers.py --amax-out), e.g. quantforge's
calibration against transformers' on the same tokens. Owns: the report. Does not own: producing
either file.

Prints, overall and per kind (attention linears, compressor/indexer, router gate, shared experts,
routed experts, head/other): names in both, names only in A / only in B, the worst relative
difference |a - b| / max(|a|, |b|) with its name, the median, and the fraction within --tol.
An amax of 0 means "never seen" (quantforge's convention) and counts as absent.
It is a report, not a test: exits 0 whatever the differences, 2 when a file cannot be read.

Usage: python3 bench/compare_amax.py A.json B.json [--tol 0.01] [--show N]
"""
import argparse
import json
import re
import sys

KINDS = ["attention", "compressor/indexer", "gate", "shared experts", "routed experts",
         "head/other"]


def kind_of(name):
    if re.search(r"\.ffn\.experts\.\d+\.", name):
        return "routed experts"
    if ".ffn.shared_experts." in name:
        return "shared experts"
    if name.endswith(".ffn.gate"):
        return "gate"
    if ".attn.compressor." in name or ".attn.indexer." in name:
        return "compressor/indexer"
    if ".attn." in name:
        return "attention"
    return "head/other"


def load(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        print(f"cannot read {path}: {e}", file=sys.stderr)
        sys.exit(2)
    if not isinstance(data, dict):
        print(f"{path}: expected a JSON object {{name: amax}}", file=sys.stderr)
        sys.exit(2)
    seen, bad = {}, []
    for k, v in data.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            bad.append(k)
        elif v != 0:
            seen[k] = float(v)
    if bad:
        print(f"{path}: {len(bad)} non-numeric values ignored, e.g. {bad[:3]}")
    return seen, len(data) - len(seen) - len(bad)


def rel_diff(a, b):
    m = max(abs(a), abs(b))
    if a != a or b != b:  # NaN on either side
        return float("inf")
    return abs(a - b) / m if m > 0 else 0.0


def median(xs):
    s = sorted(xs)
    n = len(s)
    return 0.0 if n == 0 else (s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2]))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="amax JSON A (e.g. quantforge)")
    ap.add_argument("b", help="amax JSON B (e.g. transformers)")
    ap.add_argument("--tol", type=float, default=0.01, help="relative tolerance (default 0.01)")
    ap.add_argument("--show", type=int, default=5, help="worst names / one-sided names listed")
    args = ap.parse_args()
    a, a_zero = load(args.a)
    b, b_zero = load(args.b)
    print(f"A: {args.a}: {len(a)} names seen ({a_zero} with amax 0 = never seen)")
    print(f"B: {args.b}: {len(b)} names seen ({b_zero} with amax 0 = never seen)")
    print(f"relative difference = |a - b| / max(|a|, |b|); tol {args.tol:g}\n")

    both = sorted(set(a) & set(b))
    only_a = sorted(set(a) - set(b))
    only_b = sorted(set(b) - set(a))
    diffs = {n: rel_diff(a[n], b[n]) for n in both}

    rows = []
    for kind in KINDS + ["all"]:
        names = [n for n in both if kind == "all" or kind_of(n) == kind]
        n_a = sum(1 for n in only_a if kind == "all" or kind_of(n) == kind)
        n_b = sum(1 for n in only_b if kind == "all" or kind_of(n) == kind)
        if not names and not n_a and not n_b:
            continue
        d = [diffs[n] for n in names]
        worst = max(names, key=lambda n: diffs[n]) if names else ""
        within = sum(1 for x in d if x <= args.tol)
        rows.append((kind, len(names), n_a, n_b, diffs.get(worst, 0.0), median(d),
                     100.0 * within / len(names) if names else 100.0, worst))
    w = max(len(r[0]) for r in rows) if rows else 10
    print(f"{'kind':<{w}}  {'both':>7} {'only A':>7} {'only B':>7}  {'worst rel':>10} "
          f"{'median rel':>10} {'within%':>8}  worst name")
    for kind, n, n_a, n_b, worst, med, pct, name in rows:
        print(f"{kind:<{w}}  {n:>7} {n_a:>7} {n_b:>7}  {worst:>10.3g} {med:>10.3g} {pct:>8.2f}"
              f"  {name}")

    if both and args.show:
        print(f"\nworst {min(args.show, len(both))} names:")
        for n in sorted(both, key=lambda n: -diffs[n])[: args.show]:
            print(f"  {n:<48} A {a[n]:<12.6g} B {b[n]:<12.6g} rel {diffs[n]:.3g}")
    for label, names in (("only in A", only_a), ("only in B", only_b)):
        if names and args.show:
            print(f"\n{label} ({len(names)}), first {min(args.show, len(names))}:")
            for n in names[: args.show]:
                print(f"  {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
