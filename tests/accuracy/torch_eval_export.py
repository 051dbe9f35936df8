#!/usr/bin/env python3
"""Independent torch evaluation of a quantforge NVFP4 export, decoded the way vLLM decodes it
(tests/parity/check_export_loader.py: its loader plan, decoders, transformers load and W4A4
simulation), on the token ids `quantforge eval` uses. Numbers comparable with eval's report:
  kl_mean         mean over every position of KL(source || quantized), natural log
  top1_agreement  fraction of positions whose argmax (first maximum) agrees
  perplexity      exp(mean NLL of token t+1 at positions t < seq_len - 1)
Both models run in FP32 (no TF32) on --device. W4A16 (decoded weights) is always measured;
W4A4 (inputs fake-quantized per 16-block with input_scale) unless --weights-only.

  python3 tests/accuracy/torch_eval_export.py --source NATIVE --export NVFP4 \\
      --tokens eval.safetensors [--samples N] [--seq-len L] [--weights-only] --json OUT.json
Exit 0 when the numbers were computed (loader problems are reported in the JSON), 2 on a crash."""
import argparse
import json
import math
import os
import sys
import time
import traceback

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "parity"))
import check_export_loader as cel  # noqa: E402

T0 = time.time()


def log(msg):
    print(f"[{time.time() - T0:6.1f}s] {msg}", flush=True)


def load_tokens(path, samples, seq_len):
    """quantforge's load_calibration_set for safetensors: 2-D rows -> first seq_len tokens of
    the first `samples` rows (all rows if samples <= 0); 1-D stream -> windows of seq_len."""
    from safetensors import safe_open
    with safe_open(path, framework="pt") as f:
        if "input_ids" not in f.keys():
            raise SystemExit(f"{path}: no input_ids tensor (keys {list(f.keys())[:5]})")
        ids = f.get_tensor("input_ids").to(torch.int64)
    if ids.dim() == 2:
        seq_len = seq_len or ids.shape[1]
        if ids.shape[1] < seq_len:
            raise SystemExit(f"{path}: rows hold {ids.shape[1]} tokens < --seq-len {seq_len}")
        rows = ids[:, :seq_len]
    elif ids.dim() == 1:
        if not seq_len:
            raise SystemExit(f"{path}: a 1-D token stream needs --seq-len")
        n = ids.numel() // seq_len
        rows = ids[: n * seq_len].view(n, seq_len)
    else:
        raise SystemExit(f"{path}: input_ids has {ids.dim()} dims")
    if samples and samples > 0:
        if rows.shape[0] < samples:
            raise SystemExit(f"{path}: {rows.shape[0]} samples < --samples {samples}")
        rows = rows[:samples]
    return rows.contiguous()


class Sums:
    def __init__(self):
        self.kl = self.top1 = self.nll_q = self.sq_err = self.sq_ref = 0.0
        self.finite = True

    def result(self, n_pos, n_pred, nll_src):
        return {"kl_mean": self.kl / n_pos, "top1_agreement": self.top1 / n_pos,
                "perplexity": {"source": math.exp(nll_src / n_pred),
                               "quantized": math.exp(self.nll_q / n_pred)},
                "nll_mean": {"source": nll_src / n_pred, "quantized": self.nll_q / n_pred},
                "logits_rel_l2": math.sqrt(self.sq_err / max(self.sq_ref, 1e-300)),
                "finite": self.finite}


@torch.no_grad()
def logits_batches(model, tokens, batch, device):
    for i in range(0, tokens.shape[0], batch):
        ids = tokens[i:i + batch].to(device)
        yield ids, model(input_ids=ids, use_cache=False).logits.float()


@torch.no_grad()
def accumulate(src_logits, q_logits, ids, sums):
    """quantforge eval's add_logit_metrics, in float64 from FP32 logits."""
    ls, lq = F.log_softmax(src_logits.double(), -1), F.log_softmax(q_logits.double(), -1)
    sums.kl += float((ls.exp() * (ls - lq)).sum(-1).clamp_min(0).sum())
    sums.top1 += float((src_logits.argmax(-1) == q_logits.argmax(-1)).sum())
    sums.nll_q += float(-lq[:, :-1].gather(-1, ids[:, 1:, None]).sum())
    sums.sq_err += float((src_logits.double() - q_logits.double()).pow(2).sum())
    sums.sq_ref += float(src_logits.double().pow(2).sum())
    sums.finite &= bool(torch.isfinite(q_logits).all())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", required=True)
    ap.add_argument("--export", required=True)
    ap.add_argument("--tokens", required=True, help="safetensors with input_ids, as eval --tokens")
    ap.add_argument("--samples", type=int, default=0, help="first N samples (default all)")
    ap.add_argument("--seq-len", type=int, default=0, help="tokens per sample (default the row)")
    ap.add_argument("--weights-only", action="store_true", help="W4A16 only (no activation quant)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    rep = {"format": "qf-torch-eval/1", "source": args.source, "export": args.export,
           "tokens_file": args.tokens, "versions": {"torch": torch.__version__},
           "device": args.device, "status": "running"}

    def save():
        rep["seconds"] = round(time.time() - T0, 2)
        rep["loader_problems"], rep["loader_notes"] = list(cel.problems), list(cel.notes)
        with open(args.json + ".tmp", "w") as f:
            json.dump(rep, f, indent=2)
        os.replace(args.json + ".tmp", args.json)

    try:
        import transformers
        rep["versions"]["transformers"] = transformers.__version__
        tokens = load_tokens(args.tokens, args.samples, args.seq_len)
        n, L = tokens.shape
        rep["tokens"] = {"samples": n, "seq_len": L, "positions": n * L,
                         "predicted": n * (L - 1)}
        log(f"tokens: {n} x {L} from {args.tokens}")
        src, exp = cel.Checkpoint(args.source), cel.Checkpoint(args.export)
        _, src_plan = cel.plan_checkpoint(src, "source")
        exp_mode, exp_plan = cel.plan_checkpoint(exp, "export")
        rep["export_mode"] = exp_mode
        scalars = cel.check_scale_values(exp, exp_plan, "export")
        vocab = src.config["vocab_size"]
        if int(tokens.max()) >= vocab or int(tokens.min()) < 0:
            raise SystemExit(f"token ids outside [0, {vocab})")
        src_dec, _ = cel.decode_checkpoint(src, src_plan)
        exp_dec, nvfp4_dec = cel.decode_checkpoint(exp, exp_plan)
        rep["nvfp4_modules"] = len(nvfp4_dec)
        log(f"decoded: source {len(src_dec)} tensors, export {len(exp_dec)} "
            f"({len(nvfp4_dec)} NVFP4, mode {exp_mode})")
        save()

        m_src = cel.load_model(src.config, src_dec, args.device, "source")
        del src_dec
        src_logits, nll_src = [], 0.0
        for ids, lg in logits_batches(m_src, tokens, args.batch, args.device):
            ls = F.log_softmax(lg.double(), -1)
            nll_src += float(-ls[:, :-1].gather(-1, ids[:, 1:, None]).sum())
            src_logits.append(lg.cpu())
        del m_src
        n_pos, n_pred = n * L, n * (L - 1)
        rep["source_perplexity"] = math.exp(nll_src / n_pred)
        log(f"source perplexity {rep['source_perplexity']:.4f}")
        save()

        m_exp = cel.load_model(exp.config, exp_dec, args.device, "export")
        rep["variants"] = {}
        variants = ["W4A16"] + ([] if args.weights_only else ["W4A4"])
        for v in variants:
            if v == "W4A4":
                cel.install_w4a4(m_exp, nvfp4_dec, scalars)
            sums = Sums()
            for k, (ids, lg) in enumerate(logits_batches(m_exp, tokens, args.batch, args.device)):
                accumulate(src_logits[k].to(args.device), lg, ids, sums)
            rep["variants"][v] = sums.result(n_pos, n_pred, nll_src)
            r = rep["variants"][v]
            log(f"{v}: KL {r['kl_mean']:.6g}, top-1 {r['top1_agreement']:.4f}, perplexity "
                f"source {r['perplexity']['source']:.4f} quantized "
                f"{r['perplexity']['quantized']:.4f}, logits rel L2 {r['logits_rel_l2']:.4g}")
            save()
        rep["primary"] = "W4A16" if args.weights_only else "W4A4"
        rep.update({k: rep["variants"][rep["primary"]][k]
                    for k in ("kl_mean", "top1_agreement", "perplexity")})
        rep["status"] = "ok"
        save()
        log(f"{len(cel.problems)} loader problem(s); wrote {args.json}")
        return 0
    except BaseException as e:  # noqa: BLE001 - keep what was measured
        traceback.print_exc()
        rep["status"] = "failed"
        rep["error"] = f"{type(e).__name__}: {e}"
        save()
        return 2


if __name__ == "__main__":
    sys.exit(main())
