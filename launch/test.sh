#!/usr/bin/env bash
# The test command of README.md: set up (packages + build), then every CPU test through ctest
# (unit, multi-rank under mpirun, end-to-end). GPU tests (label gpu) run on GPU machines only.
# Usage: bash launch/test.sh [ctest args...]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo/launch/setup.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd "$repo/build"
ctest --output-on-failure -LE gpu -j "$(nproc)" "$@"
