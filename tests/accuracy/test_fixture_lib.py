#!/usr/bin/env python3
"""Checks of fixture_lib without torch (numpy + a quantforge binary): encoders against
quantforge's own decoder (`dequant`), the native writer against make-tiny's table (`inspect`),
the corpus split, JSONL + `calib-data`, and the pre-tokenizer regexes against the committed
tokenizer fixture. Usage: python3 tests/accuracy/test_fixture_lib.py [--qf build/quantforge]"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import fixture_lib as fl  # noqa: E402
import train_config  # noqa: E402

failures = []


def check(cond, msg):
    print(("  ok   " if cond else "  FAIL ") + msg)
    if not cond:
        failures.append(msg)


def test_codecs():
    print("codecs")
    t = fl.e4m3_table()
    codes = np.arange(256, dtype=np.uint8)
    finite = np.isfinite(t)
    check(np.array_equal(fl.e4m3_encode(t[finite])[t[finite] != 0], codes[finite][t[finite] != 0]),
          "E4M3 encode(decode(c)) == c for every finite non-zero code")
    probes = np.array([1.0625, 1.1875, 17.0, 2.0 ** -10, 1.5 * 2.0 ** -9, 448.0, -3.3])
    got = t[fl.e4m3_encode(probes)]
    check(np.array_equal(got, [1.0, 1.25, 16.0, 0.0, 2.0 ** -8, 448.0, -3.25]),
          f"E4M3 ties to even as torch (FORMATS.md open questions): {got.tolist()}")
    y = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 5.5, -0.1, 0.26], dtype=np.float32)
    check(fl.E2M1[fl.e2m1_encode(y)].tolist() == [0, 1, 1, 2, 2, 4, 4, 6, -0.0, 0.5],
          "E2M1 rounding per FORMATS.md §1")
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((300, 200)) * 0.05).astype(np.float32)
    c, s = fl.fp8_block_encode(w)
    d = fl.fp8_block_decode(c, s)
    rel = np.linalg.norm(d - w) / np.linalg.norm(w)
    check(s.shape == (3, 2) and rel < 0.05, f"FP8 tiles [3, 2], rel err {rel:.4f}")
    w = (rng.standard_normal((64, 96)) * 0.05).astype(np.float32)
    p, s = fl.mxfp4_encode(w)
    d = fl.mxfp4_decode(p, s)
    rel = np.linalg.norm(d - w) / np.linalg.norm(w)
    check(p.shape == (64, 48) and s.shape == (64, 3) and rel < 0.2,
          f"MXFP4 [64, 48] + [64, 3], rel err {rel:.4f}")
    check(np.all(np.abs(w) <= np.exp2(s.astype(np.float64) - 127).repeat(32, 1) * 6),
          "MXFP4 scale covers the block max (no clipping)")
    b = fl.bf16_bytes(np.array([1.0, 1.00390625, 1.01171875, -2.5], np.float32))
    check(fl.bf16_decode(b, (4,)).tolist() == [1.0, 1.0, 1.015625, -2.5], "BF16 RNE")


def fake_state(table, seed=0):
    """Trained-like float32 tensors (logical shapes) for every non-scale native tensor."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, dtype, shape in table:
        if name.endswith(".scale"):
            continue
        if dtype == "I64":
            state[name] = rng.integers(0, 8, size=shape).astype(np.int64)
            continue
        shp = [shape[0], shape[1] * 2] if dtype == "I8" else shape
        state[name] = (rng.standard_normal(shp) * 0.05).astype(np.float32)
    return state


def test_native_roundtrip(qf, tmp):
    print("native writer vs make-tiny / inspect / dequant")
    for preset in ("smoke", "real"):
        cfg = fl.native_config(train_config.PRESETS[preset]["model"])
        d = os.path.join(tmp, preset)
        os.makedirs(d)
        cpath = os.path.join(d, "config.json")
        json.dump(cfg, open(cpath, "w"), indent=2)
        table = fl.make_tiny_table(qf, cpath, os.path.join(d, "ref"))
        state = fake_state(table)
        entries = fl.encode_native(table, state, log=lambda m: None)
        out = os.path.join(d, "native")
        os.makedirs(out)
        info = fl.write_native(out, entries, cfg, 14 << 20)
        mb = info["bytes"] / 2 ** 20
        check(all(s["bytes"] < 15 << 20 for s in info["shards"]),
              f"{preset}: {len(info['shards'])} shard(s) < 15 MB, {mb:.1f} MiB total, "
              f"{len(table)} tensors")
        if preset == "real":
            check(mb < 40, f"real fixture size {mb:.1f} MiB < 40 MiB")
        ref = {n: (dt, s) for n, dt, s in table}
        check(fl.table_of_dir(out) == ref, f"{preset}: tensor table == make-tiny's")
        r = subprocess.run([qf, "inspect", out], capture_output=True, text=True)
        check(r.returncode == 0 and "(native format): matches" in r.stdout,
              f"{preset}: quantforge inspect says the table matches")
        # Broken inputs must fail loudly.
        bad = dict(state)
        bad["layers.0.extra.weight"] = np.zeros((2, 2), np.float32)
        try:
            fl.encode_native(table, bad, log=lambda m: None)
            check(False, "an unmapped trained tensor is refused")
        except fl.FixtureError:
            check(True, "an unmapped trained tensor is refused")
        if preset != "smoke":
            continue
        bf = os.path.join(d, "bf16")
        r = subprocess.run([qf, "dequant", "--in", out, "--out", bf, "--backend", "cpu",
                            "--log-level", "warn"], capture_output=True, text=True)
        check(r.returncode == 0, f"quantforge dequant of our checkpoint ({r.stderr[-300:]})")
        if r.returncode:
            continue
        by = {e[0]: e for e in entries}
        idx = json.load(open(os.path.join(bf, "model.safetensors.index.json")))["weight_map"]
        n_exact, worst = 0, {}
        for name, shard in sorted(idx.items()):
            hdr = fl.read_header(os.path.join(bf, shard))[name]
            with open(os.path.join(bf, shard), "rb") as f:
                import struct
                hn = struct.unpack("<Q", f.read(8))[0]
                f.seek(8 + hn + hdr["data_offsets"][0])
                raw = f.read(hdr["data_offsets"][1] - hdr["data_offsets"][0])
            _, dtype, shape, data = by[name]
            if dtype not in ("F8_E4M3", "I8"):
                continue
            theirs = fl.bf16_decode(raw, hdr["shape"])
            sc = by[name[:-7] + ".scale"][3]
            sb = np.frombuffer(sc, np.uint8).reshape(by[name[:-7] + ".scale"][2])
            codes = np.frombuffer(data, np.uint8).reshape(shape)
            mine = (fl.fp8_block_decode if dtype == "F8_E4M3" else fl.mxfp4_decode)(codes, sb)
            mine16 = fl.bf16_decode(fl.bf16_bytes(mine), mine.shape)
            n_exact += int(np.array_equal(mine16, theirs))
            w = state[name]
            worst[dtype] = max(worst.get(dtype, 0), float(np.linalg.norm(theirs - w) /
                                                          np.linalg.norm(w)))
        n_q = sum(1 for e in entries if e[1] in ("F8_E4M3", "I8"))
        check(n_exact == n_q, f"quantforge's decode == ours for {n_exact}/{n_q} FP8/FP4 tensors")
        check(worst.get("F8_E4M3", 1) < 0.05 and worst.get("I8", 1) < 0.2,
              f"source quantization error (rel L2, worst): {worst}")


def test_corpus_and_jsonl(qf, tmp):
    print("corpus split, JSONL, calib-data")
    root = os.path.join(tmp, "site")
    for i in range(200):
        d = os.path.join(root, f"pkg{i % 7}", "sub")
        os.makedirs(d, exist_ok=True)
        ext = fl.CORPUS_EXTS[i % 4]
        with open(os.path.join(d, f"f{i}{ext}"), "w") as f:
            f.write(f"def f{i}(x):\n    return x * {i}  # ünïcode 你好 😀\n" * (i % 5 + 1))
    with open(os.path.join(root, "pkg0", "big.txt"), "w") as f:
        f.write("x" * (2 << 20))
    with open(os.path.join(root, "pkg0", "dup.py"), "w") as f:
        f.write(open(os.path.join(root, "pkg0", "sub", "f0.py")).read())
    with open(os.path.join(root, "pkg0", "bin.txt"), "wb") as f:
        f.write(b"\xff\xfe\x00binary")
    files = fl.list_corpus_files([root])
    check(all(s <= 1 << 20 for _, _, s in files) and len(files) == 202,
          f"{len(files)} candidate files, > 1 MB skipped")
    c1 = fl.read_corpus(files, 1 << 30, heldout_permille=100, log=lambda m: None)
    c2 = fl.read_corpus(list(reversed(files)), 1 << 30, heldout_permille=100, log=lambda m: None)
    check(c1["train"] == c2["train"] and c1["heldout"] == c2["heldout"],
          "corpus order/split independent of listing order")
    check(c1["stats"]["skipped_dup"] == 1 and c1["stats"]["skipped_binary"] == 1,
          f"duplicate and binary files dropped: {c1['stats']}")
    check(5 <= len(c1["heldout"]) <= 40, f"held-out files: {len(c1['heldout'])} of 200 at 10%")
    c3 = fl.read_corpus(files, 3000, heldout_permille=100, log=lambda m: None)
    check(c3["stats"]["bytes"] >= 3000 and c3["stats"]["read"] < 100, "byte cap honoured")
    texts = [t for _, t in c1["train"]]
    jl = os.path.join(tmp, "calib.jsonl")
    n, size = fl.write_jsonl(jl, fl.sample_texts(texts, 4000, seed=1))
    back = [json.loads(line)["text"] for line in open(jl, encoding="utf-8")]
    check(len(back) == n and all(b in texts for b in back), f"JSONL round trip ({n} docs)")
    tok = os.path.join(ROOT, "tests", "fixtures", "tokenizer", "deepseek_like.tokenizer.json")
    out = os.path.join(tmp, "calib.safetensors")
    r = subprocess.run([qf, "calib-data", "--tokenizer", tok, "--text", f"{jl}:4",
                        "--seq-len", "64", "--out", out, "--log-level", "warn"],
                       capture_output=True, text=True)
    hdr = fl.read_header(out) if r.returncode == 0 else {}
    check(r.returncode == 0 and hdr.get("input_ids", {}).get("shape") == [4, 64],
          f"calib-data reads our JSONL: {hdr or r.stderr[-300:]}")
    fix = json.load(open(tok, encoding="utf-8"))
    pats = [p["pattern"]["Regex"] for p in fix["pre_tokenizer"]["pretokenizers"][:3]]
    check(pats == fl.PRETOKENIZER_SPLITS, "pre-tokenizer regexes == the committed fixture's")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--qf", default=os.path.join(ROOT, "build", "quantforge"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="qf_fixture_lib_") as tmp:
        test_codecs()
        test_native_roundtrip(args.qf, tmp)
        test_corpus_and_jsonl(args.qf, tmp)
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
