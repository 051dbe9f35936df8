#!/usr/bin/env bash
# `quantforge status` and `--progress-json` on a live 2-rank quantize (preset small, as
# crash_resume.sh): status runs over and over while the job runs and must never disturb it (the
# job's OUT is byte-identical to a run nobody looked at, and status leaves no file behind); its
# exit codes follow the run (3 running, then 0 complete; 4 resumable once OUT is gone; 5 broken
# with a damaged store); the progress stream parses, one object per line, with every rank's
# layer commits, the phases in order and an ok end.
set -euo pipefail
qf=${QF_BIN:?QF_BIN must point at the quantforge binary}
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1}
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
tmp=$(mktemp -d /tmp/qf_e2e_status.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$qf" make-tiny --preset small --out "$tmp/src" --seed 11 --shards 3 --log-level warn
args=(--log-level warn --in "$tmp/src" --samples 2 --seq-len 64)

# The reference: nobody looks.
mpirun -np 2 "$qf" quantize "${args[@]}" --out "$tmp/ref" --work "$tmp/wref"

# The watched run: status in a loop for as long as mpirun lives.
mpirun -np 2 "$qf" quantize "${args[@]}" --out "$tmp/out" --work "$tmp/work" \
  --progress-json "$tmp/progress.jsonl" &
job=$!
n=0; n_running=0; codes=""
while kill -0 "$job" 2>/dev/null; do
  rc=0
  "$qf" status --work "$tmp/work" --out "$tmp/out" --json > "$tmp/s.json" 2> "$tmp/s.err" || rc=$?
  n=$((n + 1)); codes+=" $rc"
  case $rc in
    3) n_running=$((n_running + 1))
       python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['state']=='running' and d['writer_alive'], d" "$tmp/s.json" ;;
    0|1|4|5) ;;  # before the work dir exists (1), between phases or after the end
    *) cat "$tmp/s.err" >&2; fail "status exited $rc while the job ran" ;;
  esac
  "$qf" status --work "$tmp/work" --out "$tmp/out" > /dev/null 2>&1 || true  # the text form too
done
wait "$job" || fail "the watched quantize failed"
echo "status ran $n times while the job ran (exit codes:$codes)"
[ "$n_running" -ge 1 ] || fail "status never saw the job running"

# Not disturbed: the same bytes as the run nobody looked at.
diff -r "$tmp/ref" "$tmp/out" > /dev/null || fail "OUT differs from the unwatched run"

# Looking writes nothing: the work dir and OUT are unchanged by status.
snapshot() { find "$tmp/work" "$tmp/out" -printf '%p %s %T@\n' | sort; }
before=$(snapshot)
rc=0; "$qf" status --work "$tmp/work" --json > "$tmp/final.json" || rc=$?
[ "$rc" = 0 ] || fail "status of the finished run exited $rc, not 0 (complete)"
[ "$(snapshot)" = "$before" ] || fail "status changed files in WORK or OUT"
python3 - "$tmp/final.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["state"] == "complete" and d["exit_code"] == 0, d["state"]
assert d["phase"] == "done", d["phase"]
assert d["out"]["ok"] and d["out"]["files_checked"] > 0
assert len(d["ranks"]) == 2 and d["n_layers"] > 0
for r in d["ranks"]:
    assert r["calib"]["committed"] == d["n_layers"] and r["quant"]["committed"] == d["n_layers"], r
    assert r["writer"]["state"] in ("absent", "free"), r["writer"]
assert d["identity"]["checked"] and not d["identity"]["differences"], d["identity"]
assert d["identity"]["provenance"]["options"]["recipe"] == "experts"
PY

# The progress stream.
python3 - "$tmp/progress.jsonl" "$tmp/final.json" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
n_layers = json.load(open(sys.argv[2]))["n_layers"]
assert all(l["v"] == 1 and l["job"] == "quantize" and "time" in l and "t" in l for l in lines)
events = [l["event"] for l in lines]
assert events[0] == "start" and events[-1] == "end" and lines[-1]["status"] == "ok", events
assert lines[0]["world_size"] == 2
phases = [l["phase"] for l in lines if l["event"] == "phase"]
assert phases == ["calibration", "quantization", "export", "report", "done"], phases
commits = {(l["rank"], l["stage"], l["layer"]) for l in lines if l["event"] == "layer_committed"}
want = {(r, s, k) for r in (0, 1) for s in ("calib", "quant") for k in range(n_layers)}
assert commits == want, sorted(want - commits)
prog = [l for l in lines if l["event"] == "progress"]
assert prog and all("eta_seconds" in l and "rate" in l for l in prog)
print("progress stream: %d events, %d commits, phases %s" % (len(lines), len(commits), phases))
PY

# Resumable: OUT removed, every layer committed -> --export-only would write it.
rm -rf "$tmp/out"
rc=0; "$qf" status --work "$tmp/work" > "$tmp/s.txt" || rc=$?
[ "$rc" = 4 ] || { cat "$tmp/s.txt"; fail "status without OUT exited $rc, not 4"; }
grep -q '^export-only  would write' "$tmp/s.txt" || { cat "$tmp/s.txt"; fail "export-only verdict"; }
# ... and what it says is what happens.
mpirun -np 2 "$qf" quantize "${args[@]}" --out "$tmp/out" --work "$tmp/work" --export-only
diff -r "$tmp/ref" "$tmp/out" > /dev/null || fail "export-only output differs"

# Broken: a committed layer file changed size.
rm -rf "$tmp/out"
f=$(ls "$tmp"/work/rank-1/layer-*.quant.h5 | head -1)
printf x >> "$f"
rc=0; "$qf" status --work "$tmp/work" > "$tmp/s.txt" || rc=$?
[ "$rc" = 5 ] || { cat "$tmp/s.txt"; fail "status with a damaged store exited $rc, not 5"; }
grep -q 'rank-1' "$tmp/s.txt" || fail "the damaged store is not named"
echo "status_progress: ok"
