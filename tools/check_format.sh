#!/usr/bin/env bash
# Fails on any C++/CUDA file of the project that clang-format (the repository's .clang-format)
# would change. Usage: tools/check_format.sh [--fix]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
fmt=$(command -v clang-format-14 || command -v clang-format || true)
[ -n "$fmt" ] || { echo "check_format: clang-format is not installed (launch/setup.sh installs it)" >&2; exit 2; }
mapfile -t files < <(git ls-files -- 'src/*' 'kernels/*' 'tests/*' 'bench/*' 'tools/*' \
  | grep -E '\.(cpp|hpp|cu|cuh|h)$')
if [ "${1:-}" = --fix ]; then
  "$fmt" -i "${files[@]}"
  echo "check_format: formatted ${#files[@]} files"
  exit 0
fi
if ! "$fmt" --dry-run -Werror "${files[@]}" 2>"${TMPDIR:-/tmp}/qf-format.log"; then
  grep -E '^[^ ].*(warning|error):' "${TMPDIR:-/tmp}/qf-format.log" | cut -d: -f1 | sort -u \
    | sed 's/^/  needs clang-format: /' >&2
  echo "check_format: run tools/check_format.sh --fix" >&2
  exit 1
fi
echo "check_format: ${#files[@]} files formatted as .clang-format says"
