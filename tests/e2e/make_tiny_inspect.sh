#!/usr/bin/env bash
# make-tiny + inspect end to end: native and BF16 checkpoints pass `inspect --check`, values do
# not depend on --shards, the seed changes them, a non-empty --out is refused (and kept), --force
# replaces it, bad options exit 2. Needs QF_BIN (the quantforge binary). Exits non-zero on failure.
set -euo pipefail

QF_BIN=${QF_BIN:?set QF_BIN to the quantforge binary}
work=$(mktemp -d /tmp/qf_e2e_make_tiny.XXXXXX)
trap 'rm -rf "$work"' EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
run() {  # run a command, logging it; stderr kept in $work/last.err
  echo "+ $*" >&2
  "$@" 2>"$work/last.err" || { cat "$work/last.err" >&2; return 1; }
}
# "name checksum" per tensor, sorted (table lines end in a 16-hex-digit checksum).
checksums() {
  "$QF_BIN" inspect "$1" --checksums | awk 'length($NF) == 16 && $NF ~ /^[0-9a-f]+$/ {print $1, $NF}' | sort
}

# --- native, 1 and 3 shards, same seed
run "$QF_BIN" make-tiny --preset tiny --out "$work/n1" --shards 1 --seed 3
run "$QF_BIN" make-tiny --preset tiny --out "$work/n3" --shards 3 --seed 3
[ "$(ls "$work/n1"/*.safetensors | wc -l)" -eq 1 ] || fail "expected 1 shard"
[ "$(ls "$work/n3"/*.safetensors | wc -l)" -eq 3 ] || fail "expected 3 shards"
[ -f "$work/n3/model.safetensors.index.json" ] || fail "no index.json"
[ -f "$work/n3/config.json" ] || fail "no config.json"
grep -q '"model_type": "deepseek_v4"' "$work/n3/config.json" || fail "config.json model_type"
grep -q '"expert_dtype": "fp4"' "$work/n3/config.json" || fail "config.json expert_dtype"
grep -q '"quant_method": "fp8"' "$work/n3/config.json" || fail "config.json quantization_config"
run "$QF_BIN" inspect "$work/n3" --check >"$work/n3.txt"
grep -q "tensor table vs DeepSeek V4 (native format): matches" "$work/n3.txt" || fail "table check"
grep -q "F8_E4M3" "$work/n3.txt" || fail "no FP8 tensors listed"
grep -q "layers.1.attn.indexer.compressor.ape" "$work/n3.txt" || fail "no indexer tensors"
grep -q "mtp.0.e_proj.scale" "$work/n3.txt" || fail "no MTP tensors"

checksums "$work/n1" >"$work/n1.sum"
checksums "$work/n3" >"$work/n3.sum"
[ "$(wc -l <"$work/n1.sum")" -eq 427 ] || fail "expected 427 tensors, got $(wc -l <"$work/n1.sum")"
diff -q "$work/n1.sum" "$work/n3.sum" >/dev/null || fail "values depend on --shards"

# --- another seed changes the values
run "$QF_BIN" make-tiny --preset tiny --out "$work/s4" --shards 2 --seed 4
checksums "$work/s4" >"$work/s4.sum"
[ "$(grep '^embed.weight ' "$work/s4.sum")" != "$(grep '^embed.weight ' "$work/n1.sum")" ] ||
  fail "seed does not change values"

# --- BF16
run "$QF_BIN" make-tiny --preset tiny --format bf16 --out "$work/b" --shards 2 --seed 3
run "$QF_BIN" inspect "$work/b" --check --totals-only >"$work/b.txt"
grep -q "(bf16 format): matches" "$work/b.txt" || fail "bf16 table check"
grep -Eq "^  all +263 tensors" "$work/b.txt" || fail "bf16 tensor count"
! grep -q "quantization_config" "$work/b/config.json" || fail "bf16 config keeps quantization_config"
! "$QF_BIN" inspect "$work/b" | grep -q '\.scale ' || fail "bf16 has .scale tensors"
# Plain tensors are identical in both formats.
[ "$(grep '^layers.0.ffn.gate.tid2eid ' "$work/n1.sum")" = \
  "$(checksums "$work/b" | grep '^layers.0.ffn.gate.tid2eid ')" ] || fail "tid2eid differs by format"

# --- JSON output is one document with the totals
"$QF_BIN" inspect "$work/n1" --json --totals-only >"$work/n1.json"
grep -q '"n_tensors": 427' "$work/n1.json" || fail "inspect --json totals"

# --- a non-empty --out is refused and left untouched; --force replaces it
if "$QF_BIN" make-tiny --preset tiny --out "$work/n1" --seed 9 2>"$work/refuse.err"; then
  fail "make-tiny overwrote a non-empty directory"
fi
grep -q "not empty" "$work/refuse.err" || fail "refusal message"
checksums "$work/n1" | diff -q - "$work/n1.sum" >/dev/null || fail "refused run changed --out"
run "$QF_BIN" make-tiny --preset tiny --out "$work/n1" --seed 4 --shards 2 --force
checksums "$work/n1" | diff -q - "$work/s4.sum" >/dev/null || fail "--force did not replace --out"
ls "$work" | grep -q '\.tmp\.' && fail "temp directory left behind"

# --- usage errors exit 2
set +e
"$QF_BIN" make-tiny --out "$work/x" --format fp16 2>/dev/null
[ $? -eq 2 ] || fail "--format fp16 should exit 2"
"$QF_BIN" make-tiny --out "$work/x" --preset nope 2>/dev/null
[ $? -eq 2 ] || fail "--preset nope should exit 2"
"$QF_BIN" make-tiny --preset tiny 2>/dev/null
[ $? -eq 2 ] || fail "missing --out should exit 2"
"$QF_BIN" inspect "$work/does-not-exist" >/dev/null 2>&1
[ $? -ne 0 ] || fail "inspect of a missing directory should fail"
set -e
[ ! -e "$work/x" ] || fail "a failed make-tiny created --out"

echo "make_tiny_inspect: all checks passed"
