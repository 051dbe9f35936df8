#!/usr/bin/env bash
# mpirun's default core binding: a rank pinned to fewer cores than the host has (Open MPI binds
# each of <= 2 ranks to one core) is warned about, naming the fix; --bind-to none is quiet, and
# so is srun's --cpus-per-task binding (SLURM_CPUS_PER_TASK set). Needs >= 2 cores to show.
set -euo pipefail
qf=${QF_BIN:?QF_BIN must point at the quantforge binary}
[ "$(nproc)" -ge 2 ] || { echo "skip: one core, nothing to bind away"; exit 0; }
tmp=$(mktemp -d /tmp/qf-binding.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
"$qf" make-tiny --preset tiny --out "$tmp/src" --seed 2 --log-level warn
run() {  # tag, mpirun options...
  local tag=$1; shift
  mpirun "$@" -np 1 "$qf" dequant --in "$tmp/src" --out "$tmp/out-$tag" --backend cpu \
    --log-level warn >"$tmp/$tag.log" 2>&1 || { cat "$tmp/$tag.log" >&2; fail "$tag: dequant"; }
}
run core --bind-to core
grep -q "may run on 1 of this host's $(nproc) CPU cores" "$tmp/core.log" \
  || { cat "$tmp/core.log" >&2; fail "no warning for a rank bound to one core"; }
grep -q -- "--bind-to none" "$tmp/core.log" || fail "the warning does not name --bind-to none"
run none --bind-to none
if grep -q "may run on" "$tmp/none.log"; then fail "warning with --bind-to none"; fi
SLURM_CPUS_PER_TASK=1 run slurm --bind-to core -x SLURM_CPUS_PER_TASK
if grep -q "may run on" "$tmp/slurm.log"; then fail "warning under SLURM_CPUS_PER_TASK"; fi
cmp -s <(cd "$tmp/out-core" && cat $(ls)) <(cd "$tmp/out-none" && cat $(ls)) \
  || fail "bound and unbound dequant outputs differ"
echo "ok: core-binding warning shown when bound to one core, quiet otherwise"
