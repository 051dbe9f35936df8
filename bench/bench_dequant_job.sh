#!/usr/bin/env bash
# Whole-job dequant throughput vs the I/O floor, on a synthetic checkpoint with real V4-Flash
# layer dimensions (first N layers, default 1) and E routed experts (default 64 of 256, so that
# generating the synthetic source stays within minutes; each expert is 12.6 MB native).
# Prints: source bytes, time to `cat` the source to /dev/null (after dropping the page cache
# when allowed), dequant wall time per backend, and GB/s (source bytes / time).
# Usage: bench/bench_dequant_job.sh QUANTFORGE_BIN WORK_DIR [N_LAYERS] [RANKS] [N_EXPERTS]
set -euo pipefail
qf=$1 work=$2 n_layers=${3:-1} ranks=${4:-1} n_experts=${5:-64}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$work"
python3 - "$repo/configs/v4-flash.json" "$work/config.json" "$n_layers" "$n_experts" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); n = int(sys.argv[3])
c["n_routed_experts"] = int(sys.argv[4])
mtp = c.get("num_nextn_predict_layers", 0)
c["compress_ratios"] = c["compress_ratios"][:n] + c["compress_ratios"][-mtp:] if mtp else c["compress_ratios"][:n]
c["num_hidden_layers"] = n
c["num_hash_layers"] = min(c.get("num_hash_layers", 0), n)
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY
src="$work/src"
rm -rf "$src" "$work"/out-*
t0=$(date +%s.%N)
"$qf" make-tiny --config "$work/config.json" --out "$src" --shards 8 --log-level warn
t1=$(date +%s.%N)
src_bytes=$(du -sb "$src" | cut -f1)
drop() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null && echo cold || echo warm; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }
gbps() { python3 -c "print(f'{$1 / ($3 - $2) / 1e9:.2f}')"; }
cache=$(drop); a=$(date +%s.%N); cat "$src"/*.safetensors >/dev/null; b=$(date +%s.%N)
printf '%-34s %10s %8s %8s\n' "step" "GB" "s" "GB/s"
printf '%-34s %10.2f %8s %8s\n' "make-tiny (synthetic source)" "$(python3 -c "print($src_bytes/1e9)")" "$(secs $t0 $t1)" "-"
printf '%-34s %10.2f %8s %8s\n' "cat source > /dev/null ($cache)" "$(python3 -c "print($src_bytes/1e9)")" "$(secs $a $b)" "$(gbps $src_bytes $a $b)"
for backend in ${QF_BENCH_BACKENDS:-cuda cpu}; do
  cache=$(drop); a=$(date +%s.%N)
  mpirun --bind-to none -np "$ranks" "$qf" dequant --in "$src" --out "$work/out-$backend" --backend "$backend" --log-level warn
  b=$(date +%s.%N)
  out_bytes=$(du -sb "$work/out-$backend" | cut -f1)
  printf '%-34s %10.2f %8s %8s   (writes %.2f GB, %s)\n' "dequant $backend np$ranks ($cache)" \
    "$(python3 -c "print($src_bytes/1e9)")" "$(secs $a $b)" "$(gbps $src_bytes $a $b)" \
    "$(python3 -c "print($out_bytes/1e9)")" "$(gbps $out_bytes $a $b) GB/s out"
  rm -rf "$work/out-$backend"
done
# Write floor: the BF16 output's size written with dd and fsynced (what dequant does at least).
a=$(date +%s.%N)
dd if=/dev/zero of="$work/zeros" bs=64M count=$(( (out_bytes + (64<<20) - 1) / (64<<20) )) conv=fsync status=none
b=$(date +%s.%N)
zbytes=$(stat -c %s "$work/zeros"); rm -f "$work/zeros"
printf '%-34s %10.2f %8s %8s\n' "dd zeros + fsync (output size)" "$(python3 -c "print($zbytes/1e9)")" "$(secs $a $b)" "$(gbps $zbytes $a $b)"
