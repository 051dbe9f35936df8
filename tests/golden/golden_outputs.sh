#!/usr/bin/env bash
# Digests of every output a fixed set of quantforge runs produces (make-tiny native/BF16, inspect,
# plan, dequant, calib-data, quantize with both recipes, calibrated and imported amax, every
# act-scale method, export-only, --shard, eval numbers), one "sha256  name" line each.
# Refactors and speed-ups must leave them unchanged: tests/golden/expected.sha256 is the record
# and tests/e2e/golden_outputs.sh compares against it. Timings and paths are not hashed.
# Usage: golden_outputs.sh QF_BIN OUT_DIGESTS [WORKDIR]
set -euo pipefail
qf=${1:?quantforge binary}
digests=${2:?digest output file}
tmp=${3:-$(mktemp -d /tmp/qf-golden.XXXXXX)}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
mkdir -p "$tmp"
digests=$(realpath "$digests")
qf=$(realpath "$qf")
# Relative paths only below, so that no digest depends on where the run happens.
cd "$tmp"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mpi() { local np=$1; shift; mpirun -np "$np" --bind-to none "$qf" "$@" --log-level warn; }
: >"$digests"
# hash_tree NAME DIR: every regular file under DIR, by relative path.
hash_tree() {
  (cd "$2" && find . -type f | LC_ALL=C sort | while read -r f; do
     printf '%s  %s/%s\n' "$(sha256sum <"$f" | cut -d' ' -f1)" "$1" "${f#./}"
   done) >>"$digests"
}
hash_text() { printf '%s  %s\n' "$(sha256sum | cut -d' ' -f1)" "$1" >>"$digests"; }
# Numbers of a quantization report (eval section and quantize counters), no times or paths.
report_numbers() {
  python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
q = r.get("quantize", {})
keep = {k: q.get(k) for k in ("targets", "n_uncalibrated_experts", "uncalibrated_experts",
                              "lossless_cast")}
e = r.get("eval")
if e:
    keep["eval"] = {k: e.get(k) for k in ("kl_mean", "top1_agreement", "perplexity", "layers",
                                         "modules", "tokens")}
print(json.dumps(keep, sort_keys=True))
PY
}

"$qf" make-tiny --preset tiny --out "src" --seed 1 --shards 4 --log-level warn
"$qf" make-tiny --preset tiny --out "src-bf16" --seed 2 --shards 2 --format bf16 --log-level warn
"$qf" make-tiny --preset small --out "src-small" --seed 3 --shards 3 --log-level warn
hash_tree make-tiny "src"
hash_tree make-tiny-bf16 "src-bf16"
hash_tree make-tiny-small "src-small"
"$qf" inspect "src" --log-level warn | hash_text inspect.stdout
"$qf" plan --in "src" --ranks 3 --log-level warn | hash_text plan.stdout
cp "$repo/configs/v4-pro.json" v4-pro.json
"$qf" plan --config v4-pro.json --ranks 8 --gpu b200 --log-level warn \
  | hash_text plan-v4-pro.stdout

mpi 2 dequant --in "src" --out "dequant"
hash_tree dequant "dequant"

cp "$repo/tests/fixtures/tokenizer/deepseek_like.tokenizer.json" tokenizer.json
for i in 1 2 3 4 5 6; do
  printf '{"text": "def main_%s():\\n    return 42  # the answer, quantized to four bits %s"}\n' $i $i
done >"text.jsonl"
"$qf" calib-data --tokenizer tokenizer.json --text "text.jsonl:3" \
  --seq-len 16 --out "calib.safetensors" --log-level warn
sha256sum <"calib.safetensors" | sed 's/ .*//; s/$/  calib-data\/calib.safetensors/' >>"$digests"

# quantize: calibrated (synthetic tokens), both recipes, both KV options, every act-scale method.
run_q() {  # NAME NP ARGS...
  local name=$1 np=$2; shift 2
  mpi "$np" quantize --backend cpu --out "$name" --work "$name.work" "$@"
  hash_tree "$name" "$name"
  report_numbers "$name.quantization_report.json" | hash_text "$name.report-numbers"
}
run_q q-experts 2 --in "src" --samples 4 --seq-len 32
run_q q-full 3 --in "src" --samples 4 --seq-len 32 --recipe full --kv-cache fp8_cast
run_q q-percentile 2 --in "src" --samples 4 --seq-len 32 --act-scale percentile:99.9
run_q q-mse 1 --in "src" --samples 4 --seq-len 32 --act-scale mse --recipe full
python3 -c 'import json,sys; json.dump({f"layers.{l}.ffn.experts.{e}.{w}": 0.25 + 0.5 * l + 0.01 * e
  for l in range(2) for e in range(8) for w in ("w1", "w2", "w3") if (l, e) != (1, 5)},
  open(sys.argv[1], "w"))' "amax.json"
run_q q-amax 3 --in "src" --amax-file "amax.json"
run_q q-bf16 2 --in "src-bf16" --samples 4 --seq-len 32
run_q q-small 2 --in "src-small" --samples 3 --seq-len 16 --calib "calib.safetensors" \
  --recipe full

# export-only and --shard rebuild the same bytes from the stores alone.
rm -rf "q-experts-eo"
mpi 2 quantize --backend cpu --in "src" --out "q-experts-eo" --work "q-experts.work" \
  --samples 4 --seq-len 32 --export-only
diff -r "q-experts" "q-experts-eo" >/dev/null \
  || { echo "golden: --export-only wrote other bytes than the run" >&2; exit 1; }
shard=$(cd "q-full" && ls model-*.safetensors | sed -n 2p)
cp "q-full/$shard" "shard.orig"
printf 'garbage' | dd of="q-full/$shard" bs=1 seek=100 conv=notrunc status=none
"$qf" quantize --backend cpu --in "src" --out "q-full" --work "q-full.work" \
  --samples 4 --seq-len 32 --recipe full --kv-cache fp8_cast --export-only --shard "$shard" \
  --log-level warn
cmp -s "q-full/$shard" "shard.orig" || { echo "golden: --shard rebuilt other bytes" >&2; exit 1; }

# eval: W4A4 and W4A16 numbers.
mpi 2 eval --source "src" --out "q-full" --samples 4 --seq-len 32 \
  --report "eval-full.json" >/dev/null
report_numbers "eval-full.json" | hash_text eval-full.numbers
mpi 2 eval --source "src" --out "q-experts" --samples 4 --seq-len 32 --weights-only \
  --report "eval-w4a16.json" >/dev/null
report_numbers "eval-w4a16.json" | hash_text eval-w4a16.numbers
"$qf" validate --source "src" --out "q-full" --log-level warn >/dev/null
echo "golden: $(wc -l <"$digests") digests in $digests" >&2
