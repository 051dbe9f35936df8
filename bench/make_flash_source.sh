#!/usr/bin/env bash
# The synthetic source of the issue-7 benchmarks: the first N layers of V4-Flash at real
# dimensions (configs/v4-flash.json; N_EXPERTS routed experts, no MTP layer so that it fits the
# GPU machine's disk), in the native FP8/FP4 format, written by make-tiny into WORK_DIR/src.
# Does nothing when WORK_DIR/src already holds a checkpoint.
# Usage: bench/make_flash_source.sh QUANTFORGE_BIN WORK_DIR [N_LAYERS=2] [N_EXPERTS=256]
set -euo pipefail
qf=$1 work=$2 n_layers=${3:-2} n_experts=${4:-256}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src="$work/src"
[ -f "$src/config.json" ] && exit 0
mkdir -p "$work"
python3 - "$repo/configs/v4-flash.json" "$work/config.json" "$n_layers" "$n_experts" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); n = int(sys.argv[3])
c["n_routed_experts"] = int(sys.argv[4])
c["num_nextn_predict_layers"] = 0
c["compress_ratios"] = c["compress_ratios"][:n]
c["num_hidden_layers"] = n
c["num_hash_layers"] = min(c.get("num_hash_layers", 0), n)
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY
rm -rf "$src"
a=$(date +%s.%N)
"$qf" make-tiny --config "$work/config.json" --out "$src" --shards 8 --log-level warn
b=$(date +%s.%N)
python3 -c "print(f'make-tiny: {$(du -sb "$src" | cut -f1) / 1e9:.2f} GB in {$b - $a:.2f} s')"
