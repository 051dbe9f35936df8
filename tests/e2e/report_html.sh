#!/usr/bin/env bash
# The quantization report page in a real browser: quantize a tiny model (2 ranks), eval it,
# then headless Chromium loads OUT.quantization_report.html (file://, no network): the DOM has
# the options, timings, heat map (one cell per layer x expert, fallback experts marked), amax
# ranges, eval and validate sections; the console shows no error; the screenshot is a PNG that is not
# blank. Exits 77 (ctest SKIP_RETURN_CODE) when no chromium is installed.
set -euo pipefail
qf=${QF_BIN:?QF_BIN must point at the quantforge binary}
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || { echo "SKIP: no chromium (Debian package chromium)"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1}
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
tmp=$(mktemp -d /tmp/qf_e2e_report_html.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$qf" make-tiny --preset tiny --out "$tmp/src" --seed 5 --shards 2 --log-level warn
mpirun -np 2 "$qf" quantize --log-level warn --in "$tmp/src" --out "$tmp/out" --work "$tmp/work" \
  --samples 2 --seq-len 32
page="$tmp/out.quantization_report.html"
[ -s "$page" ] || fail "quantize wrote no $page"
[ ! -e "$tmp/out/$(basename "$page")" ] || fail "the page is inside OUT"
mpirun -np 2 "$qf" eval --log-level warn --source "$tmp/src" --out "$tmp/out" --samples 2 \
  --seq-len 32 > /dev/null
grep -q 'id="eval"' "$page" || fail "eval did not update the page"
"$qf" validate --log-level warn --source "$tmp/src" --out "$tmp/out" > "$tmp/validate.txt" \
  || fail "validate failed: $(cat "$tmp/validate.txt")"
grep -q 'id="validate-verdict"' "$page" || fail "validate did not update the page"
grep -q '^validate .*: PASS, ' "$tmp/out.quantization_report.txt" \
  || fail "no validate line in the text report: $(tail -3 "$tmp/out.quantization_report.txt")"
! grep -qi '<script\|https\?://[a-z]' <(sed 's#http://www.w3.org/2000/svg##g' "$page") \
  || fail "the page has a script or an external link"

run_browser() {  # args...
  timeout 120 "$browser" --headless --no-sandbox --disable-gpu --no-first-run \
    --user-data-dir="$tmp/profile" --enable-logging=stderr --v=0 "$@"
}
run_browser --dump-dom "file://$page" > "$tmp/dom.html" 2> "$tmp/dom.log" || {
  cat "$tmp/dom.log" >&2; fail "chromium --dump-dom failed"; }
run_browser --screenshot="$tmp/shot.png" --window-size=1200,1800 "file://$page" \
  > /dev/null 2> "$tmp/shot.log" || { cat "$tmp/shot.log" >&2; fail "chromium --screenshot failed"; }
if grep -E 'CONSOLE|Uncaught' "$tmp/dom.log" "$tmp/shot.log" | grep -qiE 'error|Uncaught'; then
  grep -E 'CONSOLE|Uncaught' "$tmp/dom.log" "$tmp/shot.log" >&2; fail "console errors"
fi
python3 - "$tmp/dom.html" "$tmp/shot.png" "$tmp/out.quantization_report.json" <<'PY'
import json, re, struct, sys, zlib
dom, shot, report = open(sys.argv[1]).read(), sys.argv[2], json.load(open(sys.argv[3]))
for id_ in ("options", "timings", "timings-chart", "expert-heatmap", "amax-ranges", "eval",
            "eval-layers", "worst-modules", "validate", "validate-verdict", "validate-checks"):
    assert f'id="{id_}"' in dom, f"no #{id_} in the DOM"
tokens = report["quantize"]["calibration_summary"]["expert_tokens"]
n_cells = sum(len(row) for row in tokens)
assert n_cells > 0 and dom.count('class="cell') == n_cells, (n_cells, dom.count('class="cell'))
n_fallback = sum(1 for m in report["quantize"]["uncalibrated_experts"] if ".experts." in m)
assert dom.count('class="cell fallback"') <= n_fallback
assert dom.count('class="amax"') >= 1
assert report["quantize"]["options"]["recipe"] in dom
assert report["validate"]["passed"] is True and ">PASS<" in dom, "no PASS verdict on the page"
# The screenshot: a PNG whose pixels are not all one color.
data = open(shot, "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
idat, pos = b"", 8
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    if kind == b"IDAT": idat += data[pos + 8:pos + 8 + n]
    pos += 12 + n
pixels = zlib.decompress(idat)
assert len(set(pixels)) > 16, "the screenshot is blank"
print("report page: %d heat-map cells, %d bytes of PNG" % (n_cells, len(data)))
PY
echo "report_html: ok"
