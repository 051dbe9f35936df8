#!/usr/bin/env bash
# Runs every libFuzzer target of a QF_FUZZ build: first its regression inputs
# (tests/fuzz/regressions/<target>/: past findings, must pass), then fuzzing from the seed corpora
# (make_seeds.py) for an equal share of the time budget. A finding fails the run; its input is
# kept under ARTIFACTS for a new regression file. Prints executions per target.
# Usage: run_fuzz.sh FUZZ_BUILD_DIR QF_BIN TOTAL_SECONDS [ARTIFACTS_DIR]
set -euo pipefail
fuzz_build=$(realpath "${1:?fuzz build dir}")
qf=$(realpath "${2:?quantforge binary (seeds)}")
total=${3:?total seconds}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
artifacts=$(realpath -m "${4:-$fuzz_build/fuzz-artifacts}")
tmp=$(mktemp -d /tmp/qf-fuzz.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$artifacts"
export QF_FUZZ_TOKENIZER="$repo/tests/fixtures/tokenizer/deepseek_like.tokenizer.json"
# HDF5 and Open MPI hold global allocations until exit: leaks are not findings here.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

"$qf" make-tiny --preset tiny --out "$tmp/tiny" --seed 5 --shards 2 --log-level warn
"$qf" quantize --backend cpu --in "$tmp/tiny" --out "$tmp/out" --work "$tmp/work" --samples 2 \
  --seq-len 16 --log-level warn
python3 "$here/make_seeds.py" "$repo" "$tmp/tiny" "$tmp/work" "$tmp/seeds"

targets=()
for bin in "$fuzz_build"/tests/fuzz/fuzz_*; do [ -x "$bin" ] && targets+=("$bin"); done
[ ${#targets[@]} -gt 0 ] || { echo "run_fuzz: no fuzz targets in $fuzz_build/tests/fuzz" >&2; exit 2; }
share=$(( total / ${#targets[@]} ))
[ "$share" -ge 1 ] || share=1
status=0
printf '%-24s %12s %10s %s\n' target executions seconds result
for bin in "${targets[@]}"; do
  name=$(basename "$bin")
  regress="$here/regressions/$name"
  if [ -d "$regress" ] && [ -n "$(ls -A "$regress")" ]; then
    if ! "$bin" "$regress"/* >"$tmp/$name.regress.log" 2>&1; then
      echo "run_fuzz: $name fails a regression input:" >&2
      tail -40 "$tmp/$name.regress.log" >&2
      status=1
      continue
    fi
  fi
  mkdir -p "$tmp/corpus/$name"
  result=ok
  if ! "$bin" -max_total_time="$share" -rss_limit_mb=3072 -timeout=30 -max_len=65536 \
      -print_final_stats=1 -artifact_prefix="$artifacts/$name-" \
      "$tmp/corpus/$name" "$tmp/seeds/$name" >"$tmp/$name.log" 2>&1; then
    result=FINDING
    status=1
    tail -60 "$tmp/$name.log" >&2
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$tmp/$name.log" | grep -o '[0-9]*$' || echo '?')
  printf '%-24s %12s %10s %s\n' "$name" "$execs" "$share" "$result"
done
if [ "$status" != 0 ]; then
  echo "run_fuzz: findings kept in $artifacts; once fixed, copy each into" \
       "tests/fuzz/regressions/<target>/ so it is replayed on every run" >&2
fi
exit $status
