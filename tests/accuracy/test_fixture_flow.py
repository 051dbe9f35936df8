#!/usr/bin/env python3
"""Runs train_v4_fixture.py --smoke and torch_eval_export.py end to end on the CPU against the
stand-ins in local_mocks/ (safetensors, tokenizers, transformers: a toy model with the real
tensor table and module conventions), with quantforge's own make-tiny/inspect/calib-data/
quantize/eval in between: catches flow, I/O and report errors without the GPU machine. Needs
torch (any version >= 1.13) and numpy. The numbers mean nothing (toy model).
Usage: python3 tests/accuracy/test_fixture_flow.py [--qf build/quantforge] [--keep DIR]"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def run(cmd, env, what):
    print(f"$ {' '.join(cmd)}", flush=True)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    tail = "\n".join((r.stdout + r.stderr).splitlines()[-25:])
    print(tail)
    print(f"-> {what}: rc {r.returncode}\n", flush=True)
    return r.returncode


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--qf", default=os.path.join(ROOT, "build", "quantforge"))
    ap.add_argument("--keep")
    a = ap.parse_args()
    qf = os.path.abspath(a.qf)
    tmp = a.keep or tempfile.mkdtemp(prefix="qf_fixture_flow_")
    os.makedirs(tmp, exist_ok=True)
    env = dict(os.environ, QF_MOCK_QF=qf, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.path.join(HERE, "local_mocks"), OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    fails = []
    fix = os.path.join(tmp, "fixture")
    # W4A4 simulation needs torch.float8_e4m3fn (torch >= 2.1): older torch checks W4A16 only.
    has_fp8 = subprocess.run([sys.executable, "-c", "import torch; torch.float8_e4m3fn"],
                             capture_output=True).returncode == 0
    w4a16_only = [] if has_fp8 else ["--weights-only"]
    rc = run([sys.executable, os.path.join(HERE, "train_v4_fixture.py"), "--smoke", "--out", fix,
              "--qf", qf, "--device", "cpu"], env, "train_v4_fixture --smoke")
    rep = json.load(open(os.path.join(fix, "fixture_report.json")))
    print(json.dumps({k: rep.get(k) for k in ("status", "problems", "error", "seconds",
                                               "verify", "native", "determinism")}, indent=1,
                     default=str)[:3000])
    if rc not in (0, 3) or rep.get("status") == "failed":
        fails.append("fixture")
        print("\nFAIL: fixture")
        return 1
    need = ["config.json", "model.safetensors.index.json", "tokenizer.json", "heldout.jsonl",
            "calib.jsonl", "fixture_report.json"]
    missing = [f for f in need if not os.path.exists(os.path.join(fix, f))]
    if missing:
        fails.append(f"missing {missing}")
    if not (rep.get("verify") or {}).get("calib_data_parity"):
        fails.append("calib-data parity")
    seq = rep["tokens"]["seq_len"]
    ev = os.path.join(tmp, "eval.safetensors")
    if run([qf, "calib-data", "--tokenizer", os.path.join(fix, "tokenizer.json"), "--text",
            os.path.join(fix, "heldout.jsonl") + ":2", "--seq-len", str(seq), "--out", ev,
            "--force"], env, "calib-data"):
        fails.append("calib-data")
    for recipe in ("experts", "full"):
        q = os.path.join(tmp, f"q-{recipe}")
        shutil.rmtree(q, ignore_errors=True)
        shutil.rmtree(q + "-work", ignore_errors=True)
        if run([qf, "quantize", "--in", fix, "--out", q, "--work", q + "-work", "--recipe",
                recipe, "--backend", "cpu", "--calib", ev, "--samples", "2", "--seq-len",
                str(seq), "--log-level", "warn"], env, f"quantize {recipe}"):
            fails.append(f"quantize {recipe}")
            continue
        if run([qf, "eval", "--source", fix, "--out", q, "--tokens", ev, "--seq-len", str(seq),
                "--report", q + ".eval.json", "--log-level", "warn"], env, f"eval {recipe}"):
            fails.append(f"eval {recipe}")
        tj = os.path.join(tmp, f"torch-{recipe}.json")
        rc = run([sys.executable, os.path.join(HERE, "torch_eval_export.py"), "--source", fix,
                  "--export", q, "--tokens", ev, "--seq-len", str(seq), "--device", "cpu",
                  "--json", tj] + w4a16_only, env, f"torch_eval_export {recipe}")
        t = json.load(open(tj)) if os.path.exists(tj) else {}
        print(json.dumps({k: t.get(k) for k in ("status", "error", "tokens", "variants",
                                                 "loader_problems")}, indent=1)[:2500])
        if rc != 0 or t.get("status") != "ok":
            fails.append(f"torch eval {recipe}")
    print(f"\n{len(fails)} failure(s): {fails}  (work dir {tmp})")
    if not a.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
