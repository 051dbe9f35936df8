#!/usr/bin/env bash
# launch/quantforge.sbatch under a real single-node Slurm that this test starts (slurmctld +
# slurmd from Debian's slurm-wlm, private config, ports and state in a temp dir): CPU-backend
# quantize jobs of 2 ranks on a make-tiny checkpoint, one per launcher (auto = srun --mpi=pmix
# when available; mpirun) plus one with QF_GPUS_PER_NODE=2 (the GPU nodes' rank arithmetic),
# must complete and give identical exports that pass `validate --work`; a job whose quantforge
# fails must end FAILED. Skips (exit 0) only when the Slurm daemons are
# not installed (launch/setup.sh installs them). Needs QF_BIN and QF_SOURCE_DIR; runs as root
# (SlurmUser=root) or as any user allowed to bind local ports. QF_SLURM_AUTH=munge forces munge
# authentication; QF_SLURM_KEEP=1 keeps the temp dir (configs, daemon logs, job outputs).
set -euo pipefail
qf=${QF_BIN:?QF_BIN must point at the quantforge binary}
src_dir=${QF_SOURCE_DIR:?QF_SOURCE_DIR must point at the repository}
export PATH="$PATH:/usr/sbin:/sbin"
for b in slurmctld slurmd; do
  command -v "$b" >/dev/null 2>&1 || { echo "SKIP: $b not installed (apt-get install slurmctld slurmd)"; exit 0; }
done
for b in sbatch sinfo scontrol scancel srun; do
  command -v "$b" >/dev/null 2>&1 || { echo "FAIL: $b missing although slurmd is installed" >&2; exit 1; }
done
qf=$(cd "$(dirname "$qf")" && pwd)/$(basename "$qf")

# A test run inside a real Slurm job must not talk to that job's cluster.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^SLURM' || true)

tmp=$(mktemp -d /tmp/qf-slurm.XXXXXX)
chmod 755 "$tmp"
pids=()
cleanup() {
  local rc=$?
  if [ -f "$tmp/slurm.conf" ]; then
    # Jobs first (proctrack/linuxproc: killing slurmd would leave their steps running).
    scancel --quiet --user="$(id -un)" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -f "$tmp/munged.pid" ]; then  # munged writes its seed file while exiting
    local mp
    mp=$(cat "$tmp/munged.pid")
    kill "$mp" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$mp" 2>/dev/null || break; sleep 0.2; done
  fi
  if [ "${QF_SLURM_KEEP:-0}" = 1 ]; then
    echo "kept $tmp" >&2
  else
    # slurmstepd (daemonized) may still be removing its spool files for a moment.
    for _ in 1 2 3 4 5 6 7 8 9 10; do rm -rf "$tmp" 2>/dev/null && break; sleep 0.5; done
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  echo "FAIL: $*" >&2
  for f in "$tmp"/log/*.log "$tmp"/job-*.out; do
    [ -f "$f" ] && { echo "---- $f" >&2; tail -n 40 "$f" >&2; }
  done
  exit 1
}

mkdir -p "$tmp/state" "$tmp/spool" "$tmp/log" "$tmp/run"
node=$(hostname -s)
read -r ctld_port slurmd_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')

# Authentication: auth/none where this Slurm still ships it (22.05 does), else munge with a
# throwaway key and a private socket.
auth="AuthType=auth/none
CredType=cred/none"
have_auth_none=0
for f in /usr/lib/*/slurm-wlm/auth_none.so /usr/lib*/slurm/auth_none.so; do
  [ -e "$f" ] && have_auth_none=1
done
if [ "${QF_SLURM_AUTH:-}" = munge ] || [ "$have_auth_none" = 0 ]; then
  command -v munged >/dev/null 2>&1 || fail "this Slurm has no auth/none and munged is not installed"
  dd if=/dev/urandom of="$tmp/munge.key" bs=1024 count=1 status=none
  chmod 400 "$tmp/munge.key"
  munged --force --key-file="$tmp/munge.key" --socket="$tmp/run/munge.sock" \
    --pid-file="$tmp/munged.pid" --log-file="$tmp/log/munged.log" --seed-file="$tmp/munge.seed" \
    || fail "munged did not start"
  auth="AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$tmp/run/munge.sock"
fi

export SLURM_CONF="$tmp/slurm.conf"
cat >"$SLURM_CONF" <<EOF
ClusterName=qftest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
$auth
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/run/slurmctld.pid
SlurmdPidFile=$tmp/run/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
ReturnToService=2
MinJobAge=600
GresTypes=gpu
NodeName=$node NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=qftest Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
echo "CgroupPlugin=autodetect" >"$tmp/cgroup.conf"

start=$(date +%s)
slurmctld -D -f "$SLURM_CONF" >"$tmp/log/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" -N "$node" >"$tmp/log/slurmd.out" 2>&1 &
pids+=($!)
state=""
for _ in $(seq 1 60); do
  state=$(sinfo -h -n "$node" -o %t 2>/dev/null || true)
  [ "$state" = idle ] && break
  sleep 0.5
done
[ "$state" = idle ] || { cat "$tmp"/log/*.out >&2; fail "node $node not idle after 30 s (state '$state')"; }
echo "ok: slurmctld + slurmd up, node $node idle ($(( $(date +%s) - start )) s)"

"$qf" make-tiny --preset tiny --out "$tmp/src" --seed 7 --shards 2 --log-level warn

# Submits the sbatch script as a CPU-only cluster job of 2 ranks; prints the job id.
submit() {  # submit NAME [env assignments...] -- [script args...]
  local name=$1; shift
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  (cd "$tmp" && env QF_GPUS_PER_NODE=0 "${envs[@]}" sbatch --parsable --job-name="$name" \
     --gpus-per-node=0 --ntasks-per-node=2 --ntasks=2 --time=5 --output="$tmp/job-$name.out" \
     "$src_dir/launch/quantforge.sbatch" "$@")
}
# Waits for a job to leave the queue; prints its final state.
wait_job() {
  local id=$1 st=""
  for _ in $(seq 1 180); do
    st=$(scontrol show job -o "$id" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2 || true)
    case "$st" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|PREEMPTED|BOOT_FAIL|DEADLINE) break ;; esac
    sleep 0.5
  done
  echo "$st"
}

q_args=(--backend cpu --samples 4 --seq-len 64 --log-level info)
id_auto=$(submit auto QF_ARGS="quantize --in $tmp/src" -- \
            --out "$tmp/out-auto" --work "$tmp/work-auto" "${q_args[@]}") || fail "sbatch refused the job"
id_mpirun=$(submit mpirun QF_LAUNCHER=mpirun -- quantize --in "$tmp/src" \
            --out "$tmp/out-mpirun" --work "$tmp/work-mpirun" "${q_args[@]}") || fail "sbatch refused the job"
# The GPU path's rank arithmetic (ranks per node = GPUs per node), still on the CPU backend.
id_pernode=$(submit pernode QF_GPUS_PER_NODE=2 QF_LAUNCHER=srun -- quantize --in "$tmp/src" \
            --out "$tmp/out-pernode" --work "$tmp/work-pernode" "${q_args[@]}") || fail "sbatch refused the job"
id_bad=$(submit bad -- quantize --in "$tmp/missing" --out "$tmp/out-bad" --work "$tmp/work-bad" \
           "${q_args[@]}") || fail "sbatch refused the job"

for job in auto:"$id_auto" mpirun:"$id_mpirun" pernode:"$id_pernode"; do
  name=${job%%:*}; id=${job#*:}
  st=$(wait_job "$id")
  [ "$st" = COMPLETED ] || fail "job $name ($id) ended '$st'"
  out="$tmp/job-$name.out"
  case $name in
    mpirun) want="ranks 2 (2 per node), GPUs per node 0, launcher mpirun" ;;
    pernode) want="ranks 2 (2 per node), GPUs per node 2, launcher srun" ;;
    *) want="ranks 2 (2 per node), GPUs per node 0, launcher" ;;
  esac
  grep -qF "$want" "$out" || fail "job $name: expected '$want' in its log"
  grep -q "NCCL_NVLS_ENABLE=0" "$out" || fail "job $name: NCCL_NVLS_ENABLE=0 not set/logged"
  grep -q "summary (2 rank(s)" "$out" || fail "job $name: not one MPI job of 2 ranks"
  "$qf" validate --source "$tmp/src" --out "$tmp/out-$name" --work "$tmp/work-$name" \
    --log-level warn >"$tmp/validate-$name.log" 2>&1 || { cat "$tmp/validate-$name.log" >&2; fail "validate rejected job $name's export"; }
  grep -q "2 rank(s)" "$tmp/validate-$name.log" || fail "job $name: work stores are not from 2 ranks"
  echo "ok: job $name ($id) COMPLETED, $(grep -o 'launcher [a-z]*' "$out"), export validated"
done
for name in mpirun pernode; do
  diff -r "$tmp/out-auto" "$tmp/out-$name" >/dev/null || fail "jobs auto and $name gave different exports"
done
echo "ok: all three jobs give identical exports"

st=$(wait_job "$id_bad")
[ "$st" = FAILED ] || fail "a job whose quantforge fails ended '$st', expected FAILED"
grep -q "exit status [1-9]" "$tmp/job-bad.out" || fail "failing job: exit status not logged"
echo "ok: a failing quantforge makes the job FAILED"
echo "slurm sbatch e2e: all checks passed in $(( $(date +%s) - start )) s"
