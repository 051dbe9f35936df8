#!/usr/bin/env bash
# `quantforge plan` against a real index: make-tiny writes a checkpoint; plan --in (its headers)
# and plan --config (the table alone) must both report its index's tensor count and total_size,
# and the same ownership. Then the real V4-Pro / V4-Flash configs on 8 ranks: parameter totals
# near the model cards (1.6 T / 284 B, without MTP), balanced ranks, calibration fits a GPU.
# Env (set by ctest): QF_BIN = the quantforge binary, QF_SOURCE_DIR = the repository root.
set -euo pipefail
: "${QF_BIN:?QF_BIN must point at the quantforge binary}"
: "${QF_SOURCE_DIR:?QF_SOURCE_DIR must point at the repository root}"
tmp=$(mktemp -d /tmp/qf_e2e_plan_XXXXXX)
trap 'rm -rf "$tmp"' EXIT

"$QF_BIN" make-tiny --preset tiny --out "$tmp/tiny" --log-level warn
"$QF_BIN" make-tiny --preset tiny --format bf16 --out "$tmp/tiny_bf16" --log-level warn
# stderr must stay empty: every tensor of the checkpoint is found in the config's table.
"$QF_BIN" plan --in "$tmp/tiny" --ranks 3 --json "$tmp/plan_in.json" --owners \
  >"$tmp/plan_in.txt" 2>"$tmp/plan_in.err"
"$QF_BIN" plan --in "$tmp/tiny_bf16" --ranks 3 --json "$tmp/plan_bf16_in.json" \
  >"$tmp/plan_bf16_in.txt" 2>"$tmp/plan_bf16_in.err"
"$QF_BIN" plan --config "$QF_SOURCE_DIR/configs/tiny.json" --format bf16 --ranks 3 \
  --json "$tmp/plan_bf16_cfg.json" >"$tmp/plan_bf16_cfg.txt"
if [[ -s "$tmp/plan_in.err" || -s "$tmp/plan_bf16_in.err" ]]; then
  cat "$tmp/plan_in.err" "$tmp/plan_bf16_in.err" >&2
  echo "FAIL plan --in printed warnings" >&2
  exit 1
fi
"$QF_BIN" plan --config "$QF_SOURCE_DIR/configs/tiny.json" --ranks 3 --json "$tmp/plan_cfg.json" \
  --owners >"$tmp/plan_cfg.txt"
"$QF_BIN" plan --config "$QF_SOURCE_DIR/configs/v4-pro.json" --ranks 8 --json "$tmp/pro.json" \
  >"$tmp/pro.txt"
"$QF_BIN" plan --config "$QF_SOURCE_DIR/configs/v4-flash.json" --ranks 8 --json "$tmp/flash.json" \
  >"$tmp/flash.txt"

python3 - "$tmp" <<'EOF'
import json, sys
tmp = sys.argv[1]
def load(name):
    with open(f"{tmp}/{name}") as f:
        return json.load(f)
failures = []
def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)

index = load("tiny/model.safetensors.index.json")
n_index, size_index = len(index["weight_map"]), int(index["metadata"]["total_size"])
for name in ("plan_in.json", "plan_cfg.json"):
    plan = load(name)
    t = plan["totals"]
    check(t["n_src_tensors"] == n_index, f"{name}: {t['n_src_tensors']} tensors == index {n_index}")
    check(t["src_bytes"] == size_index, f"{name}: {t['src_bytes']} bytes == total_size {size_index}")
    ranks = plan["ranks"]
    check(len(ranks) == 3, f"{name}: 3 ranks")
    check(sum(r["n_tensors"] for r in ranks) == n_index, f"{name}: ranks own every tensor once")
    check(sum(r["src_bytes"] for r in ranks) == size_index, f"{name}: rank bytes add up")
    owners = plan["owners"]
    check(sorted(owners) == sorted(index["weight_map"]), f"{name}: owners cover the index names")
    check(all(0 <= r < 3 for r in owners.values()), f"{name}: owners are ranks 0..2")
bf16_index = load("tiny_bf16/model.safetensors.index.json")
for name in ("plan_bf16_in.json", "plan_bf16_cfg.json"):
    t = load(name)["totals"]
    check(t["n_src_tensors"] == len(bf16_index["weight_map"]), f"{name}: tensor count == bf16 index")
    check(t["src_bytes"] == int(bf16_index["metadata"]["total_size"]), f"{name}: bytes == bf16 total_size")
check(load("plan_bf16_in.json")["balance"]["fingerprint"] == load("plan_bf16_cfg.json")["balance"]["fingerprint"],
      "bf16: --in and --config give the same plan")
a, b = load("plan_in.json"), load("plan_cfg.json")
check(a["owners"] == b["owners"], "--in and --config give the same owner for every tensor")
check(a["balance"]["fingerprint"] == b["balance"]["fingerprint"], "same plan fingerprint")

for name, params, gpu_limit in (("pro.json", 1.6e12, 40 * 2**30), ("flash.json", 284e9, 16 * 2**30)):
    plan = load(name)
    t = plan["totals"]
    main = t["src_params"] - t["src_params_mtp"]
    check(abs(main / params - 1) < 0.03, f"{name}: {main / 1e9:.1f} G params without MTP ~ {params / 1e9:.0f} G")
    ranks = plan["ranks"]
    check(len(ranks) == 8, f"{name}: 8 ranks")
    check(sum(r["src_bytes"] for r in ranks) == t["src_bytes"], f"{name}: rank bytes add up")
    check(plan["balance"]["imbalance"] < 0.005, f"{name}: totals within 0.5 % of the mean")
    check(plan["memory"]["gpu_bytes"] < gpu_limit, f"{name}: calibration fits a GPU")
    check(plan["time"]["job_seconds"] == max(r["io_seconds"] for r in ranks), f"{name}: job = slowest rank")
if failures:
    sys.exit(f"{len(failures)} check(s) failed")
EOF
echo "--- v4-pro, 8 ranks:"
cat "$tmp/pro.txt"
