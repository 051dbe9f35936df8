#!/usr/bin/env python3
"""Issue 20's measurement harness (run_accuracy.sh calls it on the GPU machine): fixture smoke
run, the real fixture, calibration/eval token files, then `quantize` (recipes experts/full x
act-scale methods x calibration sample counts), `quantforge eval` W4A4 (+ W4A16 once per recipe)
and torch_eval_export.py, within a wall budget: quantize and torch eval run one at a time on the
GPU lane, quantforge evals on a CPU pool beside them; what no longer fits is skipped and listed.
accuracy.json is rewritten after every step. Torch-free: only subprocesses and JSON."""
import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
T0 = time.time()


def log(msg):
    print(f"[{time.time() - T0:6.1f}s] {msg}", flush=True)


def jload(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class Task:
    def __init__(self, name, lane, cmd, est, deps=(), timeout=600, env=None, kind=None,
                 warn_rcs=(), then=None):
        self.name, self.lane, self.cmd, self.est, self.deps = name, lane, cmd, est, list(deps)
        self.then = then  # (kind, default s) of the step that must follow for this one to count
        self.warn_rcs = warn_rcs  # exit codes meaning "done, with problems listed
        self.timeout, self.env, self.kind = timeout, env or {}, kind or lane
        self.status, self.rc, self.seconds, self.proc, self.start, self.note = \
            "pending", None, None, None, None, ""


class Runner:
    def __init__(self, a):
        self.a, self.deadline = a, T0 + a.budget
        self.work, self.out = a.work, a.out
        self.logs = os.path.join(self.work, "logs")
        os.makedirs(self.logs, exist_ok=True)
        os.makedirs(self.out, exist_ok=True)
        self.steps, self.rows, self.skipped = [], [], []
        self.measured = {}
        self.doc = {"format": "qf-accuracy/1", "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "budget_s": a.budget, "settings": {k: v for k, v in vars(a).items()},
                    "machine": machine_info(), "steps": self.steps, "rows": self.rows,
                    "skipped": self.skipped}
        open(os.path.join(self.out, "run_accuracy.log"), "w").close()

    def remaining(self):
        return self.deadline - time.time() - self.a.reserve

    def save(self):
        self.doc["elapsed_s"] = round(time.time() - T0, 1)
        self.doc["table"] = table_text(self.rows)
        p = os.path.join(self.out, "accuracy.json")
        with open(p + ".tmp", "w") as f:
            json.dump(self.doc, f, indent=2, default=str)
        os.replace(p + ".tmp", p)

    def _append_log(self, t, path):
        lines = open(path, errors="replace").read().splitlines() if os.path.exists(path) else []
        keep = 400 if t.status != "ok" else 60
        with open(os.path.join(self.out, "run_accuracy.log"), "a") as f:
            f.write(f"\n===== {t.name}: {t.status} rc={t.rc} {t.seconds}s\n$ {' '.join(t.cmd)}\n")
            if len(lines) > keep:
                f.write(f"... ({len(lines) - keep} lines cut; full log {path})\n")
            f.write("\n".join(lines[-keep:]) + "\n")

    def start(self, t):
        env = dict(os.environ, **t.env)
        t.logpath = os.path.join(self.logs, t.name + ".log")
        t.fh = open(t.logpath, "w")
        t.start = time.time()
        t.proc = subprocess.Popen(t.cmd, stdout=t.fh, stderr=subprocess.STDOUT, env=env,
                                  cwd=ROOT, start_new_session=True)
        t.status = "running"
        log(f"start {t.name} ({t.lane}, est {t.est:.0f} s)")

    def finish(self, t, status=None):
        t.seconds = round(time.time() - t.start, 1)
        t.rc = t.proc.returncode
        t.status = status or ("ok" if t.rc == 0 else "warn" if t.rc in t.warn_rcs else "failed")
        t.fh.close()
        if t.status == "ok":
            self.measured.setdefault(t.kind, []).append(t.seconds)
        self.steps.append({"name": t.name, "status": t.status, "rc": t.rc, "seconds": t.seconds,
                           "log": t.logpath, "note": t.note})
        self._append_log(t, t.logpath)
        tail = open(t.logpath, errors="replace").read().splitlines()[-3:] if t.status != "ok" else []
        log(f"{t.status:>7} {t.name} rc={t.rc} in {t.seconds} s" +
            "".join(f"\n          | {x[-200:]}" for x in tail))
        self.save()

    def kill(self, t):
        try:
            os.killpg(t.proc.pid, 9)
        except OSError:
            pass
        t.proc.wait()

    def estimate(self, t):
        def of(kind, default):
            m = self.measured.get(kind)
            return max(m) * 1.15 if m else default
        return of(t.kind, t.est) + (of(*t.then) if t.then else 0.0)

    def run_one(self, t):
        """Sequential step (smoke, fixture, calib-data)."""
        self.run_all([t])
        return t.status == "ok"

    def run_all(self, tasks):
        try:
            self._run_all(tasks)
        finally:  # an exception here must not leave quantforge running
            for t in tasks:
                if t.status == "running":
                    self.kill(t)
                    t.note = "killed: runner error"
                    self.finish(t, "killed")

    def _run_all(self, tasks):
        by_name = {t.name: t for t in tasks}
        slots = {"gpu": 1, "cpu": self.a.eval_workers}
        while True:
            for t in tasks:  # dependencies that did not succeed skip their dependents
                if t.status == "pending":
                    bad = [d for d in t.deps if by_name.get(d) and
                           by_name[d].status not in ("ok", "pending", "running")]
                    if bad:
                        self.skip(t, f"needs {bad[0]} ({by_name[bad[0]].status})")
            for lane, cap in slots.items():
                busy = sum(1 for t in tasks if t.status == "running" and t.lane == lane)
                for t in tasks:
                    if busy >= cap:
                        break
                    if t.status != "pending" or t.lane != lane:
                        continue
                    if any(by_name[d].status != "ok" for d in t.deps if d in by_name):
                        continue
                    if self.estimate(t) > self.remaining():
                        self.skip(t, f"budget: ~{self.estimate(t):.0f} s needed, "
                                     f"{self.remaining():.0f} s left")
                        continue
                    self.start(t)
                    busy += 1
            running = [t for t in tasks if t.status == "running"]
            if not running and not any(t.status == "pending" for t in tasks):
                return
            for t in running:
                if t.proc.poll() is not None:
                    self.finish(t)
                elif time.time() - t.start > t.timeout or time.time() > self.deadline - 5:
                    self.kill(t)
                    t.note = "killed: " + ("timeout" if time.time() - t.start > t.timeout
                                           else "budget")
                    self.finish(t, "killed")
            time.sleep(0.3)

    def skip(self, t, why):
        t.status, t.note = "skipped", why
        self.skipped.append({"name": t.name, "why": why})
        log(f"   skip {t.name}: {why}")
        self.save()


def machine_info():
    info = {"cpus": os.cpu_count()}
    try:
        info["gpu"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        info["gpu"] = None
    return info


COLS = [("recipe", 8), ("act", 11), ("N", 4), ("sim", 6), ("uncal", 6), ("ppl src", 9),
        ("ppl q", 9), ("KL", 9), ("top-1", 7), ("t.ppl q", 9), ("t.KL", 9), ("t.top-1", 7)]


def fmt(v, w):
    if v is None:
        return "-".rjust(w)
    if isinstance(v, float):
        return (f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}").rjust(w)
    return str(v).rjust(w)


def table_text(rows):
    lines = [" ".join(n.rjust(w) for n, w in COLS)]
    for r in rows:
        vals = [r["recipe"], r["act_scale"], r["samples"], r["sim"], r.get("uncalibrated_experts"),
                r.get("ppl_source"), r.get("ppl_quant"), r.get("kl"), r.get("top1"),
                r.get("torch_ppl_quant"), r.get("torch_kl"), r.get("torch_top1")]
        lines.append(" ".join(fmt(v, w) for v, (_, w) in zip(vals, COLS)))
    return "\n".join(lines)


def collect_row(run_dir, recipe, act, n, sim):
    """One table row from the run's quantize report, eval report and torch JSON."""
    r = {"recipe": recipe, "act_scale": act, "samples": n, "sim": sim, "run": run_dir}
    q = (jload(os.path.join(run_dir, "out.quantization_report.json")) or {}).get("quantize")
    if q:
        r["uncalibrated_experts"] = q.get("n_uncalibrated_experts")
        r["uncalibrated_list"] = (q.get("uncalibrated_experts") or [])[:20]
        r["quantize_seconds"] = (q.get("seconds") or {}).get("total")
        r["lossless_cast"] = q.get("lossless_cast")
    e = (jload(os.path.join(run_dir, f"eval_{sim.lower()}.json")) or {}).get("eval")
    if e:
        r.update(ppl_source=(e.get("perplexity") or {}).get("source"),
                 ppl_quant=(e.get("perplexity") or {}).get("quantized"), kl=e.get("kl_mean"),
                 top1=e.get("top1_agreement"), eval_seconds=e.get("seconds"),
                 eval_positions=(e.get("tokens") or {}).get("positions"),
                 worst_modules=(e.get("worst_modules") or [])[:5],
                 layers_rel_l2=[x.get("rel_l2") for x in e.get("layers") or []])
    t = jload(os.path.join(run_dir, "torch_eval.json")) or {}
    v = (t.get("variants") or {}).get(sim)
    if v:
        r.update(torch_ppl_source=v["perplexity"]["source"], torch_ppl_quant=v["perplexity"][
            "quantized"], torch_kl=v["kl_mean"], torch_top1=v["top1_agreement"],
            torch_logits_rel_l2=v.get("logits_rel_l2"),
            torch_loader_problems=len(t.get("loader_problems") or []))
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="folder with the quantforge binary")
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default="/tmp/qf-accuracy")
    ap.add_argument("--budget", type=float, default=520, help="wall seconds for everything")
    ap.add_argument("--reserve", type=float, default=12, help="seconds kept for the outputs")
    ap.add_argument("--fixture-dir", help="reuse this fixture (no smoke, no training)")
    ap.add_argument("--no-smoke", action="store_true")
    ap.add_argument("--after-fixture-s", type=float, default=215,
                    help="seconds kept after the fixture for quantize/eval")
    ap.add_argument("--fixture-minutes", type=float, help="override the fixture's --minutes")
    ap.add_argument("--fixture-args", default="", help="extra train_v4_fixture.py options "
                    "for the real fixture (e.g. '--steps 800' or '--batch 16')")
    ap.add_argument("--backend", default="cuda")
    ap.add_argument("--calib", default="32 128 512", help="calibration sample counts")
    ap.add_argument("--calib-batch", type=int, default=16,
                    help="quantize --calib-batch (sequences per calibration forward)")
    ap.add_argument("--eval-samples", type=int, default=16)
    ap.add_argument("--eval-workers", type=int, default=2)
    ap.add_argument("--torch-device", default="cuda")
    ap.add_argument("--keep-fixture", action="store_true", help="copy the fixture to OUT/fixture")
    ap.add_argument("--keep-fixture-tar", action="store_true",
                    help="OUT/fixture/fixture.tar.partNN (15 MB pieces: fewer files)")
    a = ap.parse_args()
    qf = os.path.join(os.path.abspath(a.bin), "quantforge")
    a.out, a.work = os.path.abspath(a.out), os.path.abspath(a.work)
    if os.path.exists(a.work):
        shutil.rmtree(a.work)
    R = Runner(a)
    py = sys.executable
    try:
        fixture = prepare_fixture(R, a, qf, py)
        if fixture:
            measure(R, a, qf, py, fixture)
    finally:
        finish(R, a)
    return 0 if R.rows and any(r.get("kl") is not None for r in R.rows) else 1


def prepare_fixture(R, a, qf, py):
    gen = os.path.join(HERE, "train_v4_fixture.py")
    if a.fixture_dir:
        R.doc["fixture"] = {"dir": os.path.abspath(a.fixture_dir), "reused": True}
        return os.path.abspath(a.fixture_dir)
    if not a.no_smoke:
        t = Task("fixture_smoke", "gpu", [py, gen, "--smoke", "--out",
                                          os.path.join(a.work, "smoke"), "--qf", qf], 90,
                 timeout=200, warn_rcs=(3,))
        R.run_one(t)
        rep = jload(os.path.join(a.work, "smoke", "fixture_report.json")) or {}
        R.doc["smoke"] = {k: rep.get(k) for k in ("status", "problems", "error", "seconds")}
        if t.rc not in (0, 3):
            log("the smoke run failed: the real fixture would fail the same way; stopping")
            return None
    minutes = a.fixture_minutes or max(1.5, min(5.0, (R.remaining() - a.after_fixture_s) / 60))
    fix = os.path.join(a.work, "fixture")
    t = Task("fixture", "gpu", [py, gen, "--out", fix, "--qf", qf, "--minutes", f"{minutes:.2f}"]
             + shlex.split(a.fixture_args), minutes * 60, timeout=minutes * 60 + 150,
             warn_rcs=(3,))
    log(f"fixture budget {minutes:.2f} min")
    R.run_one(t)
    rep = jload(os.path.join(fix, "fixture_report.json")) or {}
    R.doc["fixture"] = summarize_fixture(fix, rep)
    log("fixture: " + ", ".join(f"{k} {v}" for k, v in R.doc["fixture"].items()
                                if k not in ("dir", "seconds")))
    shutil.copy(os.path.join(fix, "fixture_report.json"), a.out) if rep else None
    if t.rc not in (0, 3):
        log("no fixture: stopping")
        return None
    return fix


def summarize_fixture(fix, rep):
    tr, ev, ve = rep.get("training") or {}, rep.get("eval") or {}, rep.get("verify") or {}
    return {"dir": fix, "status": rep.get("status"), "problems": rep.get("problems"),
            "params": (rep.get("model") or {}).get("params"),
            "native_mb": (rep.get("native") or {}).get("mb"),
            "train_steps": tr.get("steps"), "tokens_seen": tr.get("tokens_seen"),
            "tokens_per_s": tr.get("tokens_per_s"), "heldout_ppl": ev.get("heldout_ppl"),
            "unigram_ppl": ev.get("unigram_ppl"), "native_heldout_ppl": ve.get("heldout_ppl_native"),
            "calib_data_parity": ve.get("calib_data_parity"),
            "bitwise_reproducible": (rep.get("determinism") or {}).get("bitwise_identical"),
            "seconds": rep.get("seconds")}


def measure(R, a, qf, py, fix):
    rep = jload(os.path.join(fix, "fixture_report.json")) or {}
    seq = (rep.get("tokens") or {}).get("seq_len") or 512
    counts = [int(x) for x in a.calib.split()]
    data = os.path.join(a.work, "data")
    os.makedirs(data, exist_ok=True)
    tok = os.path.join(fix, "tokenizer.json")
    prep = []
    for n in counts:
        prep.append(Task(f"calib_{n}", "gpu", [qf, "calib-data", "--tokenizer", tok, "--text",
                                                os.path.join(fix, "calib.jsonl") + f":{n}",
                                                "--seq-len", str(seq), "--out",
                                                os.path.join(data, f"calib_{n}.safetensors")], 10,
                         timeout=120, kind="calib"))
    evt = os.path.join(data, "eval_tokens.safetensors")
    prep.append(Task("eval_tokens", "gpu", [qf, "calib-data", "--tokenizer", tok, "--text",
                                            os.path.join(fix, "heldout.jsonl") +
                                            f":{a.eval_samples}", "--seq-len", str(seq),
                                            "--out", evt], 10, timeout=120, kind="calib"))
    R.run_all(prep)
    if prep[-1].status != "ok":
        log("no eval tokens: stopping")
        return
    ok_counts = [n for n, t in zip(counts, prep) if t.status == "ok"]
    mid = 128 if 128 in ok_counts else (ok_counts[len(ok_counts) // 2] if ok_counts else None)
    if mid is None:
        return
    runs = []  # (recipe, act, n) in priority order
    for recipe in ("experts", "full"):
        runs.append((recipe, "max", mid))
    for recipe in ("experts", "full"):
        runs += [(recipe, "max", n) for n in ok_counts if n != mid]
    for recipe in ("experts", "full"):
        runs += [(recipe, act, mid) for act in ("percentile", "mse")]
    gpu, cpu, ev_env = [], [], {"QF_THREADS": str(max(1, (os.cpu_count() or 2) // a.eval_workers))}
    for recipe, act, n in runs:
        rd = os.path.join(a.work, "runs", f"{recipe}-{act}-{n}")
        os.makedirs(rd, exist_ok=True)
        name = f"{recipe}-{act}-{n}"
        gpu.append(Task(f"quantize_{name}", "gpu", [
            qf, "quantize", "--in", fix, "--out", os.path.join(rd, "out"), "--work",
            os.path.join(rd, "work"), "--recipe", recipe, "--backend", a.backend, "--calib",
            os.path.join(data, f"calib_{n}.safetensors"), "--samples", str(n), "--seq-len",
            str(seq), "--act-scale", act, "--calib-batch", str(a.calib_batch)], 30,
            timeout=240, env={"QF_THREADS": "4"}, kind="quantize", then=("eval", 60)))
        sims = ["W4A4"] + (["W4A16"] if act == "max" and n == mid else [])
        for sim in sims:
            cmd = [qf, "eval", "--source", fix, "--out", os.path.join(rd, "out"), "--tokens", evt,
                   "--seq-len", str(seq), "--report", os.path.join(rd, f"eval_{sim.lower()}.json")]
            cpu.append(Task(f"eval_{sim}_{name}", "cpu", cmd + (["--weights-only"] if sim ==
                                                                "W4A16" else []), 60,
                            deps=[f"quantize_{name}"], timeout=300, env=ev_env, kind="eval"))
            R.rows.append({"recipe": recipe, "act_scale": act, "samples": n, "sim": sim,
                           "run": rd})
        if act == "max" and n == mid:
            gpu.append(Task(f"torch_{name}", "gpu", [
                py, os.path.join(HERE, "torch_eval_export.py"), "--source", fix, "--export",
                os.path.join(rd, "out"), "--tokens", evt, "--seq-len", str(seq), "--device",
                a.torch_device, "--json", os.path.join(rd, "torch_eval.json")], 45,
                deps=[f"quantize_{name}"], timeout=300, kind="torch"))
    # W4A16 evals right after the two W4A4 evals of the max/mid runs.
    first = {t.name: i for i, t in enumerate(cpu)}
    cpu.sort(key=lambda t: (0 if t.name.endswith(f"max-{mid}") else 1,
                            1 if "W4A16" in t.name else 0, first[t.name]))
    tasks = gpu + cpu
    orig_finish = R.finish

    def finish_and_collect(t, status=None):
        orig_finish(t, status)
        R.rows[:] = [collect_row(r["run"], r["recipe"], r["act_scale"], r["samples"], r["sim"])
                     for r in R.rows]
        R.save()

    R.finish = finish_and_collect
    R.run_all(tasks)
    R.finish = orig_finish


def finish(R, a):
    R.rows[:] = [collect_row(r["run"], r["recipe"], r["act_scale"], r["samples"], r["sim"])
                 for r in R.rows]
    fix = (R.doc.get("fixture") or {}).get("dir")
    if fix and os.path.isdir(fix) and (a.keep_fixture or a.keep_fixture_tar):
        dst = os.path.join(a.out, "fixture")
        os.makedirs(dst, exist_ok=True)
        names = sorted(f for f in os.listdir(fix) if f.endswith((".json", ".jsonl", ".safetensors")))
        if a.keep_fixture_tar:
            tarp = os.path.join(a.work, "fixture.tar")
            with tarfile.open(tarp, "w") as tf:
                for f in names:
                    tf.add(os.path.join(fix, f), arcname=os.path.join("fixture", f))
            with open(tarp, "rb") as src:
                k = 0
                while True:
                    chunk = src.read(15 << 20)
                    if not chunk:
                        break
                    with open(os.path.join(dst, f"fixture.tar.part{k:02d}"), "wb") as o:
                        o.write(chunk)
                    k += 1
            R.doc["fixture_copy"] = {"tar_parts": k, "files": names,
                                     "restore": "cat fixture.tar.part* | tar x"}
        else:
            for f in names:
                shutil.copy(os.path.join(fix, f), dst)
            R.doc["fixture_copy"] = {"files": names}
        log(f"fixture copied to {dst}: {R.doc['fixture_copy']}")
    R.save()
    text = table_text(R.rows)
    skipped = "\n".join(f"  skipped {s['name']}: {s['why']}" for s in R.skipped)
    failed = "\n".join(f"  {s['status']} {s['name']} (rc {s['rc']}, {s['note']})"
                       for s in R.steps if s["status"] not in ("ok",))
    fx = R.doc.get("fixture") or {}
    head = (f"fixture: {fx.get('status')}, held-out ppl {fx.get('heldout_ppl')} (native "
            f"{fx.get('native_heldout_ppl')}), unigram {fx.get('unigram_ppl')}, "
            f"{fx.get('train_steps')} steps / {fx.get('tokens_seen')} tokens")
    body = (f"{head}\n{text}\n" + (f"not run:\n{skipped}\n" if skipped else "") +
            (f"failed or with problems:\n{failed}\n" if failed else "") +
            f"elapsed {time.time() - T0:.0f} s of {a.budget:.0f} s\n")
    with open(os.path.join(a.out, "accuracy.txt"), "w") as f:
        f.write(body)
    print("\n" + body, flush=True)


if __name__ == "__main__":
    sys.exit(main())
