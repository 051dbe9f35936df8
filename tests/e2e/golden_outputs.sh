#!/usr/bin/env bash
# Every output of a fixed set of runs (tests/golden/golden_outputs.sh) is byte-identical to the
# recorded digests (tests/golden/expected.sha256). A change that alters an output on purpose
# re-records them (bash tests/golden/golden_outputs.sh build/quantforge tests/golden/expected.sha256)
# and says why in its commit.
set -euo pipefail
qf=${QF_BIN:?QF_BIN must point at the quantforge binary}
src=${QF_SOURCE_DIR:?QF_SOURCE_DIR must point at the repository}
tmp=$(mktemp -d /tmp/qf-golden-e2e.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
bash "$src/tests/golden/golden_outputs.sh" "$qf" "$tmp/got.sha256" "$tmp/run"
if ! diff -u "$src/tests/golden/expected.sha256" "$tmp/got.sha256"; then
  echo "FAIL: outputs differ from tests/golden/expected.sha256 (lines above)" >&2
  exit 1
fi
echo "ok: $(wc -l <"$tmp/got.sha256") output digests identical to the record"
