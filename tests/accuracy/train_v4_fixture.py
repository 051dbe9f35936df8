#!/usr/bin/env python3
"""Trains a small DeepSeek V4 (every layer kind) on the Python sources/docs of the installed
site-packages and writes it as a native FP8/FP4 checkpoint that quantforge reads: the accuracy
fixture of issue 20. GPU machine (torch 2.11, transformers 5.17, tokenizers); README.md here.

  python3 tests/accuracy/train_v4_fixture.py --out DIR --qf .device/bin/quantforge
      [--minutes 5] [--seed 0] [--smoke] [--steps N]

--minutes is the whole script's wall budget: training stops so that the phases after it fit.
--steps N trains exactly N steps with a step-based schedule (bitwise-reproducible runs where the
kernels are deterministic; the default time-based schedule depends on the machine's speed).
Writes DIR/{config.json, model-0000K-of-0000N.safetensors, model.safetensors.index.json,
tokenizer.json, heldout.jsonl, calib.jsonl, fixture_report.json}. Exit 0: written and verified;
3: written but a verification failed (fixture_report.json says which); 1: not written."""
import os

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "parity"))
import fixture_lib as fl  # noqa: E402
import train_config  # noqa: E402

T0 = time.time()


def log(msg):
    print(f"[{time.time() - T0:7.1f}s] {msg}", flush=True)


class Report:
    """fixture_report.json, rewritten after every phase (a crash keeps what was measured)."""

    def __init__(self, path):
        self.path, self.problems = path, []
        self.d = {"format": "qf-accuracy-fixture/1", "status": "running", "seconds": {},
                  "problems": self.problems}

    def save(self):
        self.d["seconds"]["total"] = round(time.time() - T0, 2)
        with open(self.path + ".tmp", "w") as f:
            json.dump(self.d, f, indent=2, default=str)
        os.replace(self.path + ".tmp", self.path)

    def problem(self, msg):
        log("PROBLEM: " + msg)
        self.problems.append(msg)

    @contextlib.contextmanager
    def phase(self, name):
        t = time.time()
        log(f"== {name}")
        try:
            yield
        finally:
            self.d["seconds"][name] = round(time.time() - t, 2)
            log(f"   {name}: {time.time() - t:.1f} s")
            self.save()


def windows_of(stream, S):
    n = len(stream) // S
    return stream[: n * S].reshape(n, S)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--qf", required=True, help="quantforge binary (make-tiny, inspect, calib-data)")
    ap.add_argument("--minutes", type=float, help="wall budget of the whole script")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, ~30 s: API check")
    ap.add_argument("--steps", type=int, help="exact step count (step-based schedule)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--batch", type=int, help="override the preset's batch (windows per step)")
    ap.add_argument("--eval-windows", type=int, help="override the held-out windows evaluated")
    args = ap.parse_args()
    P = dict(train_config.PRESETS["smoke" if args.smoke else "real"])
    if args.batch:
        P["batch"] = args.batch
    if args.eval_windows:
        P["eval_windows"] = args.eval_windows
    minutes = args.minutes if args.minutes is not None else P["minutes"]
    if args.smoke and args.steps is None:
        args.steps = P["smoke_steps"]  # an API check: bounded, time-independent
    if os.path.exists(args.out) and os.listdir(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out, exist_ok=True)
    rep = Report(os.path.join(args.out, "fixture_report.json"))
    rep.d.update(preset="smoke" if args.smoke else "real", seed=args.seed, minutes=minutes,
                 argv=sys.argv)
    try:
        code = run(args, P, minutes, rep)
    except Exception as e:  # noqa: BLE001 - recorded, then exit 1
        traceback.print_exc()
        rep.d["status"] = "failed"
        rep.d["error"] = f"{type(e).__name__}: {e}"
        rep.d["traceback"] = traceback.format_exc()[-4000:]
        rep.save()
        return 1
    rep.d["status"] = "ok" if code == 0 else "written, verification failed"
    rep.save()
    log(f"done: {rep.d['status']} ({time.time() - T0:.0f} s)")
    return code


def run(args, P, minutes, rep):
    import torch
    import torch.nn.functional as F
    import fixture_torch as ft
    import transformers
    import tokenizers
    deadline = T0 + minutes * 60
    S, M, out = P["seq_len"], P["model"], args.out
    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    import safetensors
    rep.d["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__,
                         "tokenizers": tokenizers.__version__, "numpy": np.__version__,
                         "safetensors": safetensors.__version__, "python": sys.version.split()[0],
                         "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"}
    log(f"versions: {rep.d['versions']}")

    with rep.phase("corpus"):
        roots = fl.site_roots()
        files = fl.list_corpus_files(roots)
        corpus = fl.read_corpus(files, P["corpus_bytes"], P["heldout_permille"], log=log)
        train_texts = [t for _, t in corpus["train"]]
        cap, keep = 0, []
        for t in [t for _, t in corpus["heldout"]]:  # reading order, capped by whole documents
            if cap >= P["heldout_jsonl_bytes"]:
                break
            keep.append(t)
            cap += len(t.encode())
        held_texts = keep
        if len(train_texts) < 10 or not held_texts:
            raise fl.FixtureError(f"corpus too small under {roots}: {corpus['stats']}")
        n_h, b_h = fl.write_jsonl(os.path.join(out, "heldout.jsonl"), held_texts)
        n_c, b_c = fl.write_jsonl(os.path.join(out, "calib.jsonl"),
                                  fl.sample_texts(train_texts, P["calib_bytes"], args.seed + 1))
        rep.d["corpus"] = dict(corpus["stats"], roots=roots, heldout_jsonl_docs=n_h,
                               heldout_jsonl_bytes=b_h, calib_jsonl_docs=n_c,
                               calib_jsonl_bytes=b_c)

    with rep.phase("tokenizer"):
        sub = fl.sample_texts(train_texts, P["tokenizer_bytes"], args.seed + 2)
        tok, tinfo = ft.train_tokenizer(sub, M["vocab_size"], os.path.join(out, "tokenizer.json"))
        if tinfo["vocab"] > M["vocab_size"]:
            raise fl.FixtureError(f"tokenizer vocab {tinfo['vocab']} > {M['vocab_size']}")
        rep.d["tokenizer"] = dict(tinfo, trained_on_bytes=sum(len(t.encode()) for t in sub))
        log(f"  tokenizer: {tinfo}")

    with rep.phase("tokenize"):
        train_stream = ft.encode_stream(tok, train_texts)
        held_stream = ft.encode_stream(tok, held_texts)
        del train_texts
        counts = np.bincount(train_stream, minlength=M["vocab_size"]).astype(np.float64) + 1.0
        held_w = windows_of(held_stream, S)[: P["eval_windows"]]
        if len(held_w) < 2:
            raise fl.FixtureError(f"held-out text gives {len(held_stream)} tokens, < 2 windows")
        logp = np.log(counts / counts.sum())
        uni_ce = float(-logp[held_w[:, 1:]].mean())
        rep.d["tokens"] = dict(train=int(len(train_stream)), heldout=int(len(held_stream)),
                               bytes_per_token=round(corpus["stats"]["train_bytes"]
                                                     / max(1, len(train_stream)), 3),
                               eval_windows=int(len(held_w)), seq_len=S)
        rep.d["unigram"] = dict(ce=uni_ce, ppl=math.exp(uni_ce))
        log(f"  tokens: {rep.d['tokens']}; held-out unigram CE {uni_ce:.4f} "
            f"(ppl {math.exp(uni_ce):.1f})")

    with rep.phase("model"):
        cfg = fl.native_config(M, transformers.__version__)
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        tmp = tempfile.mkdtemp(prefix="qf_fixture_")
        table = fl.make_tiny_table(args.qf, os.path.join(out, "config.json"),
                                   os.path.join(tmp, "ref"))
        shutil.rmtree(os.path.join(tmp, "ref"), ignore_errors=True)
        model, hf_cfg = ft.build_model(cfg, os.path.join(tmp, "cfg"), args.seed)
        n_tables = ft.set_hash_tables(model, args.seed, M["n_routed_experts"])
        model.to(dev)
        n_fast, how = ft.install_fast_experts(model)
        n_params = sum(p.numel() for p in model.parameters())
        rep.d["model"] = dict(native_config=cfg, params=n_params, hash_tables=n_tables,
                              experts_forward=how, experts_modules_patched=n_fast,
                              layer_types=list(hf_cfg.layer_types),
                              mlp_layer_types=list(hf_cfg.mlp_layer_types),
                              mtp_layers=cfg["num_nextn_predict_layers"],
                              native_tensors=len(table))
        log(f"  model: {n_params / 1e6:.2f} M parameters, {len(table)} native tensors, "
            f"layers {hf_cfg.layer_types}, mlp {hf_cfg.mlp_layer_types}; {how}")
        if n_tables != M["num_hash_layers"]:
            raise fl.FixtureError(f"{n_tables} tid2eid tables for {M['num_hash_layers']} hash layers")

    train_gpu = torch.from_numpy(windows_of(train_stream, S).astype(np.int64)).to(dev)
    held_gpu = torch.from_numpy(held_w.astype(np.int64)).to(dev)
    V = M["vocab_size"]
    balancer = ft.RouterBalancer(model, P["bias_update"])
    amp = torch.autocast(dev.type, dtype=torch.bfloat16)

    def train_step(opt, ids, lr):
        for g in opt.param_groups:
            g["lr"] = lr
        with amp:
            logits = model(input_ids=ids, use_cache=False).logits
        loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, V), ids[:, 1:].reshape(-1))
        lv = float(loss.item())
        if not math.isfinite(lv):
            opt.zero_grad(set_to_none=True)
            return lv, None
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), P["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        balancer.step()
        return lv, gn

    with rep.phase("determinism"):
        g = torch.Generator().manual_seed(args.seed + 3)
        nb = min(P["batch"], 8)  # cheap: the question is only whether the kernels repeat
        batches = [train_gpu[torch.randint(0, len(train_gpu), (nb,), generator=g)]
                   for _ in range(3)]
        init = {k: v.detach().clone() for k, v in model.state_dict().items()}
        runs = []
        for _ in range(2):
            model.load_state_dict(init)
            opt, _ = ft.make_optimizer(model, P["lr"], P["weight_decay"], P["betas"])
            t = time.time()
            losses = [train_step(opt, b, P["lr"] * 0.1)[0] for b in batches]
            torch.cuda.synchronize() if dev.type == "cuda" else None
            runs.append((losses, ft.params_digest(model), time.time() - t))
        model.load_state_dict(init)
        del init
        same = runs[0][:2] == runs[1][:2]
        rep.d["determinism"] = dict(bitwise_identical=same, losses=[r[0] for r in runs], batch=nb,
                                    step_seconds=[round(r[2] / 3, 3) for r in runs])
        log(f"  two 3-step runs from one state: {'bitwise identical' if same else 'DIFFER'} "
            f"(losses {runs[0][0]} / {runs[1][0]}), {runs[1][2] / 3:.3f} s/step")

    with rep.phase("train"):
        opt, kind = ft.make_optimizer(model, P["lr"], P["weight_decay"], P["betas"])
        train_s = deadline - P["post_reserve_s"] - time.time()
        steps_mode = args.steps is not None
        if not steps_mode and train_s < 20:
            rep.problem(f"only {train_s:.0f} s left for training (budget {minutes} min)")
            train_s = 20.0
        loaders = ft.expert_load_tracking(model, True)
        g = torch.Generator().manual_seed(args.seed + 4)
        perm, pos, step, tokens, nonfinite, curve, lv = None, 0, 0, 0, 0, [], float("nan")
        t_start, last_log, ema = time.time(), time.time(), None
        log(f"  {'%d steps' % args.steps if steps_mode else '%.0f s' % train_s} of training, "
            f"batch {P['batch']} x {S}, {len(train_gpu)} windows, AdamW ({kind}) peak lr "
            f"{P['lr']}, warmup {P['warmup_steps']} steps, cosine to {P['min_lr_ratio']}x")
        while True:
            el = time.time() - t_start
            if (steps_mode and step >= args.steps) or (not steps_mode and el >= train_s):
                break
            frac = step / args.steps if steps_mode else el / train_s
            lr = P["lr"] * min(1.0, (step + 1) / P["warmup_steps"]) * (
                P["min_lr_ratio"] + (1 - P["min_lr_ratio"]) * 0.5 * (1 + math.cos(math.pi * frac)))
            if perm is None or pos + P["batch"] > len(perm):
                perm, pos = torch.randperm(len(train_gpu), generator=g).to(dev), 0
            ids = train_gpu[perm[pos:pos + P["batch"]]]
            pos += P["batch"]
            try:
                lv, gn = train_step(opt, ids, lr)
            except torch.cuda.OutOfMemoryError:
                if P["batch"] <= 4:
                    raise
                opt.zero_grad(set_to_none=True)
                torch.cuda.empty_cache()
                P["batch"] //= 2
                rep.problem(f"out of GPU memory at step {step}: batch halved to {P['batch']}")
                continue
            if gn is None:
                nonfinite += 1
                rep.problem(f"step {step}: non-finite loss {lv}, step skipped")
                if nonfinite > 20:
                    raise fl.FixtureError("more than 20 non-finite losses")
                continue
            step += 1
            tokens += ids.numel()
            ema = lv if ema is None else 0.98 * ema + 0.02 * lv
            if step % max(1, step // 100 + 1) == 0 or step < 5:
                curve.append([step, round(lv, 4), round(lr, 6)])
            if time.time() - last_log > 15 or step == 1:
                last_log = time.time()
                el = last_log - t_start
                log(f"  step {step:5d}  loss {lv:.4f} (ema {ema:.4f})  lr {lr:.2e}  "
                    f"|g| {float(gn):.3f}  {tokens / el / 1e3:.0f}k tok/s  {el:.0f}/"
                    f"{train_s if not steps_mode else float('nan'):.0f} s")
                rep.d["training"] = dict(steps=step, tokens_seen=tokens, loss_ema=ema, curve=curve)
                rep.save()
        el = time.time() - t_start
        load = []
        for i, m in enumerate(loaders):
            c = m._qf_load.float()
            share = c / c.sum().clamp_min(1)
            load.append(dict(layer=i, min_share=float(share.min()), max_share=float(share.max()),
                             unused_experts=int((c == 0).sum())))
        ft.expert_load_tracking(model, False)
        rep.d["training"] = dict(steps=step, tokens_seen=tokens, seconds=round(el, 1),
                                 tokens_per_s=round(tokens / max(el, 1e-9)), loss_final=lv,
                                 loss_ema=ema, nonfinite_steps=nonfinite, curve=curve,
                                 schedule="steps" if steps_mode else "time", optimizer=kind,
                                 batch=P["batch"], peak_lr=P["lr"], expert_load=load,
                                 balanced_routers=len(balancer.items),
                                 router_calls_seen=balancer.seen,
                                 epochs=round(tokens / max(1, train_gpu.numel()), 3))
        log(f"  trained {step} steps, {tokens / 1e6:.1f} M tokens in {el:.0f} s "
            f"({tokens / el / 1e3:.0f}k tok/s); expert load per layer (min/max share): "
            + ", ".join(f"{x['min_share']:.3f}/{x['max_share']:.3f}" for x in load))

    model.eval()
    with rep.phase("eval_trained"):
        (r,), n_pred, _ = ft.compare_models([model], held_gpu, 8)
        (rt,), n_pred_t, _ = ft.compare_models([model], train_gpu[: len(held_gpu)], 8)
        ce, ce_t = r["nll_sum"] / n_pred, rt["nll_sum"] / n_pred_t
        rep.d["eval"] = dict(heldout_ce=ce, heldout_ppl=math.exp(ce), train_ce=ce_t,
                             train_ppl=math.exp(ce_t), unigram_ppl=math.exp(uni_ce),
                             predicted_tokens=n_pred)
        log(f"  held-out ppl {math.exp(ce):.3f} (CE {ce:.4f}); train-sample ppl "
            f"{math.exp(ce_t):.3f}; unigram ppl {math.exp(uni_ce):.1f}")
        if not args.smoke and not ce < 0.8 * uni_ce:
            rep.problem(f"held-out CE {ce:.3f} is not far below the unigram CE {uni_ce:.3f}")

    with rep.phase("native"):
        state, saved = ft.saved_native_state(model, os.path.join(tmp, "saved"))
        entries = fl.encode_native(table, state, log=log)
        info = fl.write_native(out, entries, cfg, P["max_shard_bytes"])
        shutil.rmtree(os.path.join(tmp, "saved"), ignore_errors=True)
        r = subprocess.run([args.qf, "inspect", out], capture_output=True, text=True)
        matches = r.returncode == 0 and "(native format): matches" in r.stdout
        rep.d["native"] = dict(info, inspect_matches=matches, tensors=len(entries),
                               mb=round(info["bytes"] / 2 ** 20, 2))
        log(f"  native: {len(entries)} tensors, {len(info['shards'])} shards, "
            f"{info['bytes'] / 2 ** 20:.2f} MiB; quantforge inspect: "
            f"{'matches' if matches else 'MISMATCH'}")
        if not matches:
            rep.problem("quantforge inspect does not report a matching native tensor table:\n"
                        + r.stdout[-2000:] + r.stderr[-1000:])
    return verify(args, P, rep, model, held_gpu, held_stream, state, tmp, dev)


def verify(args, P, rep, model, held_gpu, held_stream, state, tmp, dev):
    """Reload through check_export_loader's decoding + from_pretrained; held-out ppl, KL and
    top-1 vs the trained model; tokenizer parity with quantforge calib-data."""
    import torch
    import fixture_torch as ft
    import check_export_loader as cel
    out, S = args.out, P["seq_len"]
    with rep.phase("verify"):
        ck = cel.Checkpoint(out)
        mode, plan = cel.plan_checkpoint(ck, "native")
        dec, _ = cel.decode_checkpoint(ck, plan)
        worst = (0.0, "")
        for name, a in state.items():
            if name in dec and a.dtype.kind == "f":
                d = dec[name].float().numpy()
                e = float(np.linalg.norm(d - a) / max(np.linalg.norm(a), 1e-30))
                worst = max(worst, (e, name))
            elif name in dec and not np.array_equal(dec[name].numpy(), a):
                rep.problem(f"{name}: integer tensor changed in the native checkpoint")
        m2 = cel.load_model(ck.config, dec, dev, "native")
        (r1, r2), n_pred, n_pos = ft.compare_models([model, m2], held_gpu, 8)
        ce1, ce2 = r1["nll_sum"] / n_pred, r2["nll_sum"] / n_pred
        v = dict(loader_mode=mode, loader_problems=list(cel.problems), worst_weight_rel_l2=worst,
                 heldout_ppl_trained=math.exp(ce1), heldout_ppl_native=math.exp(ce2),
                 ppl_rel_change=math.exp(ce2 - ce1) - 1, kl_trained_native=r2["kl_sum"] / n_pos,
                 top1_trained_native=r2["top1_sum"] / n_pos)
        log(f"  native reload: held-out ppl {math.exp(ce2):.3f} vs trained {math.exp(ce1):.3f} "
            f"({100 * v['ppl_rel_change']:+.2f}%), KL {v['kl_trained_native']:.5f}, top-1 "
            f"{v['top1_trained_native']:.4f}; worst weight rel L2 {worst[0]:.4f} ({worst[1]})")
        if cel.problems:
            rep.problem(f"loader problems on the native checkpoint: {cel.problems[:5]}")
        if not abs(v["ppl_rel_change"]) < 0.10:
            rep.problem(f"native checkpoint's held-out ppl differs by "
                        f"{100 * v['ppl_rel_change']:.1f}% from the trained model's")
        del m2
        # Tokenizer parity: quantforge calib-data on the first held-out documents vs tokenizers.
        t = os.path.join(tmp, "parity.safetensors")
        r = subprocess.run([args.qf, "calib-data", "--tokenizer", os.path.join(out, "tokenizer.json"),
                            "--text", os.path.join(out, "heldout.jsonl") + ":2", "--seq-len", str(S),
                            "--out", t, "--log-level", "warn"], capture_output=True, text=True)
        if r.returncode != 0:
            rep.problem(f"quantforge calib-data failed on the fixture: {r.stderr[-1000:]}")
            v["calib_data_parity"] = None
        else:
            dt, shape, raw = fl.read_tensor(t, "input_ids")
            ids = np.frombuffer(raw, np.int64)
            ref = held_stream[: ids.size].astype(np.int64)
            same = dt == "I64" and ids.size == ref.size and bool(np.array_equal(ids, ref))
            v["calib_data_parity"] = same
            log(f"  quantforge calib-data vs tokenizers on 2 x {S} held-out tokens: "
                f"{'identical' if same else 'DIFFER'}")
            if not same:
                bad = int(np.argmax(ids != ref)) if ids.size == ref.size else -1
                rep.problem(f"calib-data tokens differ from tokenizers' (first at {bad})")
        rep.d["verify"] = v
    shutil.rmtree(tmp, ignore_errors=True)
    return 3 if rep.problems else 0


if __name__ == "__main__":
    sys.exit(main())
