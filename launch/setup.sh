#!/usr/bin/env bash
# Installs every Debian package quantforge needs (when missing) and builds it into build/.
# Usage: bash launch/setup.sh [--no-install] [--no-build] [--build-dir DIR] [--cpu-only]
# Safe to re-run: packages already present are not reinstalled, the build is incremental.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir="$repo/build"
install=1
build=1
cuda_flag=""
while [ $# -gt 0 ]; do
  case "$1" in
    --no-install) install=0 ;;
    --no-build) build=0 ;;
    --build-dir) build_dir=$2; shift ;;
    --cpu-only) cuda_flag="-DQF_CUDA=OFF" ;;
    -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

# Build tools, MPI, HDF5, Boost.Program_options, Catch2 (v2 on Debian 12), JSON, and the
# Slurm daemons used by the launcher test.
packages=(build-essential cmake ninja-build pkg-config python3 git
          libopenmpi-dev openmpi-bin libhdf5-dev libboost-program-options-dev
          catch2 nlohmann-json3-dev
          libpcre2-dev
          slurmctld slurmd slurm-client munge
          clang libclang-rt-14-dev clang-format  # defences: sanitizers, libFuzzer, formatting
          chromium)  # tests/e2e/report_html.sh loads the report page headless (skipped without)
if [ "$install" = 1 ]; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    sudo_cmd=""
    [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  fi
fi

[ "$build" = 1 ] || exit 0
# CUDA is optional: without nvcc the CPU backend is built (QF_CUDA=OFF).
if [ -z "$cuda_flag" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
cmake -S "$repo" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release $cuda_flag >/dev/null
cmake --build "$build_dir" -j "$(nproc)"
echo "setup: built $build_dir/quantforge" >&2
