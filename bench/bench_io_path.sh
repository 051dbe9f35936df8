#!/usr/bin/env bash
# The I/O path of `quantize` alone, for machines without a GPU (issue 19): the synthetic V4-Flash
# source of benchmark 1 (bench/make_flash_source.sh; N_EXPERTS routed experts), quantized on the
# CPU backend from an --amax-file (no calibration forward: what is left is reading the source,
# the NVFP4 cast, the work store, the export and its checksums), cold page cache, one rank,
# unbound, against the I/O floor measured in the same run (`cat` of the source + `dd` of the
# output's size with fsync). Several binaries are run alternately (A B A B ...), so two builds
# compare side by side.
# Usage: bench/bench_io_path.sh WORK_DIR ROUNDS BIN [BIN...]   env: N_LAYERS=2 N_EXPERTS=64
set -euo pipefail
work=$1 rounds=$2; shift 2
bins=("$@")
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
bash "$repo/bench/make_flash_source.sh" "${bins[0]}" "$work" "${N_LAYERS:-2}" "${N_EXPERTS:-64}"
src=$work/src
python3 - "$src" "$work/amax.json" <<'PY'
import json, re, sys
weights = json.load(open(f"{sys.argv[1]}/model.safetensors.index.json"))["weight_map"]
amax = {k[:-len(".weight")]: 1.5 for k in weights if re.search(r"\.ffn\.experts\.\d+\.w[123]\.weight$", k)}
json.dump(amax, open(sys.argv[2], "w"))
PY
drop() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null && echo cold || echo warm; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }
cache=$(drop); a=$(date +%s.%N); cat "$src"/*.safetensors >/dev/null; b=$(date +%s.%N)
read_s=$(secs $a $b)
src_bytes=$(du -sb "$src" | cut -f1)
results=()
for round in $(seq "$rounds"); do
  for i in "${!bins[@]}"; do
    rm -rf "$work/out" "$work/work"
    c=$(drop); a=$(date +%s.%N)
    mpirun --bind-to none -np 1 "${bins[$i]}" quantize --backend cpu --in "$src" --out "$work/out" \
      --work "$work/work" --amax-file "$work/amax.json" >"$work/run-$round-$i.log" 2>&1 \
      || { tail -20 "$work/run-$round-$i.log"; exit 1; }
    b=$(date +%s.%N)
    results+=("$round $i $(secs $a $b) $c")
    out_bytes=$(du -sb "$work/out" | cut -f1)
  done
done
a=$(date +%s.%N)
dd if=/dev/zero of="$work/zeros" bs=64M count=$(( (out_bytes + (64<<20) - 1) / (64<<20) )) conv=fsync status=none
b=$(date +%s.%N); write_s=$(secs $a $b); rm -f "$work/zeros"
floor=$(python3 -c "print(f'{$read_s + $write_s:.2f}')")
printf 'source %.2f GB, output %.2f GB; read once (cat, %s) %s s + write once (dd + fsync) %s s = I/O floor %s s\n' \
  "$(python3 -c "print($src_bytes/1e9)")" "$(python3 -c "print($out_bytes/1e9)")" "$cache" "$read_s" "$write_s" "$floor"
printf '%-6s %-40s %9s %9s %s\n' round binary seconds x_floor cache
for r in "${results[@]}"; do
  read -r round i s c <<<"$r"
  printf '%-6s %-40s %9s %9s %s\n' "$round" "${bins[$i]}" "$s" "$(python3 -c "print(f'{$s / $floor:.2f}')")" "$c"
done
for i in "${!bins[@]}"; do
  echo "--- ${bins[$i]}, last round: phases and bytes moved"
  sed -n '/summary (/,$p' "$work/run-$rounds-$i.log" | grep -E "^  (phase|calibration |quantization |export |total |work store|bytes moved|whole job|minimum)" || true
  grep -E "^export \(rank 0\)" "$work/run-$rounds-$i.log" || true
done
rm -rf "$work/out" "$work/work"
