#!/usr/bin/env bash
# `quantforge calib-data` as a user runs it: two JSONL datasets mixed with counts into an
# input_ids safetensors (shape and BOS checked), and refusals (bad JSON line, too few samples,
# existing --out) that exit non-zero, name the file/line and leave no output or temp file.
# Env: QF_BIN (quantforge), QF_SOURCE_DIR (repo root).
set -euo pipefail
qf=${QF_BIN:?QF_BIN must point at the quantforge binary}
src_dir=${QF_SOURCE_DIR:?}
tok="$src_dir/tests/fixtures/tokenizer/deepseek_like.tokenizer.json"
tmp=$(mktemp -d /tmp/qf-calib-data.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
printf '{"text": "hello world"}\n{"text": "def f(x):\\n    return x+1"}\n{"text": "你好"}\n' > a.jsonl
printf '"abc abc abc"\n"12345 😀"\n"more text here"\n' > b.jsonl

"$qf" calib-data --tokenizer "$tok" --text a.jsonl:2 --text b.jsonl --samples 3 --seq-len 6 \
  --out tokens.safetensors
python3 - <<'PY'
import json, struct
raw = open("tokens.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
info = header["input_ids"]
assert info["dtype"] == "I64" and info["shape"] == [3, 6], info
ids = struct.unpack("<18q", raw[8 + n:8 + n + 144])
assert ids[0] == 283, ids  # BOS of the first document of a.jsonl
prov = json.loads(header["__metadata__"]["quantforge.calib_data"])
assert [s["samples"] for s in prov["sources"]] == [2, 1], prov
PY

fail() {  # fail EXPECTED_TEXT ARGS...: must exit non-zero, print EXPECTED_TEXT, write nothing
  local want=$1
  shift
  if "$qf" calib-data --tokenizer "$tok" "$@" > out.log 2>&1; then
    echo "FAIL: calib-data $* succeeded" >&2
    exit 1
  fi
  grep -qF -- "$want" out.log || { echo "FAIL: no '$want' in:" >&2; cat out.log >&2; exit 1; }
  [ ! -e bad.safetensors ] || { echo "FAIL: bad.safetensors written" >&2; exit 1; }
  if ls | grep -q '\.tmp\.'; then echo "FAIL: temp file left" >&2; exit 1; fi
}
printf '{"text": "ok"}\n{"text": oops}\n' > broken.jsonl
fail "broken.jsonl:2: invalid JSON" --text broken.jsonl:5 --seq-len 2 --out bad.safetensors
fail "yields only" --text a.jsonl:50 --seq-len 6 --out bad.safetensors
fail "exists" --text a.jsonl:1 --seq-len 6 --out tokens.safetensors
fail "add up" --text a.jsonl:1 --text b.jsonl:1 --samples 3 --seq-len 6 --out bad.safetensors
echo "calib_data: OK"
