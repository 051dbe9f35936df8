#!/usr/bin/env bash
# A whole quantize run (1 process, CPU backend) under ThreadSanitizer: the store committer,
# the layer read-ahead, the NVFP4 worker pool and the export's reader/writer threads all run
# against the main thread; then --export-only and a second run that resumes.
set -euo pipefail
qf=${QF_BIN:?QF_BIN must point at a TSan quantforge}
tmp=$(mktemp -d /tmp/qf-tsan.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
"$qf" make-tiny --preset tiny --out "$tmp/src" --seed 3 --shards 3 --log-level warn
"$qf" quantize --backend cpu --in "$tmp/src" --out "$tmp/out" --work "$tmp/work" --samples 4 \
  --seq-len 32 --recipe full --log-level warn
"$qf" quantize --backend cpu --in "$tmp/src" --out "$tmp/out2" --work "$tmp/work" --samples 4 \
  --seq-len 32 --recipe full --export-only --log-level warn
cmp -s "$tmp/out/model-00001-of-00003.safetensors" "$tmp/out2/model-00001-of-00003.safetensors"
"$qf" validate --source "$tmp/src" --out "$tmp/out" --log-level warn >/dev/null
echo "ok: quantize, export-only and validate under TSan"
