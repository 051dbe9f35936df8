#!/usr/bin/env bash
# Builds the CUDA binaries here (the GPU machine has no Boost.Program_options and no package
# installs) and copies what tests/parity/run_on_gpu_machine.sh needs into .device/ (git-ignored),
# to be carried to the GPU machine. Usage: bash launch/device_bundle.sh [sm]   (default 90)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
sm=${1:-90}
build="$repo/build-device"
export PATH="/usr/local/cuda/bin:$PATH"
cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DQF_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="$sm" >/dev/null
cmake --build "$build" -j "$(nproc)"
rm -rf "$repo/.device/bin"
mkdir -p "$repo/.device/bin"
cp "$build/quantforge" "$repo/.device/bin/"
find "$build/tests" "$build/bench" -maxdepth 1 -type f -executable \
  -exec cp {} "$repo/.device/bin/" \;
strip --strip-debug "$repo/.device/bin/"* 2>/dev/null || true
du -sh "$repo/.device/bin" >&2
