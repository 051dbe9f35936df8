#!/usr/bin/env bash
# Assembles NVIDIA ModelOpt's DeepSeek-V4 NVFP4 exporter (examples/deepseek/deepseek_v4/
# quantize_to_nvfp4.py) into a git-ignored directory, runnable with plain torch + safetensors:
# the script and the qtensor code it calls, extracted verbatim from a ModelOpt repository at the
# pinned commit, plus our stand-ins (tests/parity/modelopt/standins/) for the package plumbing it
# imports but never uses. Nothing of ModelOpt is committed to quantforge; this rebuilds it from
# the caller's own ModelOpt clone. tests/parity/check_vs_modelopt.py runs the result.
#
# Usage: bash tests/parity/modelopt/assemble.sh MODELOPT_REPO [DEST]
#   MODELOPT_REPO  a clone of github.com/NVIDIA/Model-Optimizer: a checkout or a bare git dir
#                  that contains the pinned commit (no network is used)
#   DEST           default .device/modelopt (git-ignored; carried to the GPU machine)
set -euo pipefail

# The ModelOpt commit quantforge's --recipe experts is checked against (FORMATS.md "MO").
PIN=a2fbac7bad8ab446d3f8783dadb0c3366eb0ad73

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
src=${1:?usage: assemble.sh MODELOPT_REPO [DEST]}
dest=${2:-$repo_root/.device/modelopt}
standins="$repo_root/tests/parity/modelopt/standins"

# A checkout or a bare repository: find its git dir.
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
  gitdir=$(cd "$src" && cd "$(git rev-parse --git-dir)" && pwd)
else
  echo "assemble.sh: $src is not a git repository" >&2
  exit 1
fi
g() { git --git-dir="$gitdir" "$@"; }
if ! g cat-file -e "$PIN^{commit}" 2>/dev/null; then
  echo "assemble.sh: $src does not contain the pinned ModelOpt commit $PIN" >&2
  exit 1
fi

# Verbatim files: destination (relative to DEST) <- path in the ModelOpt repository.
verbatim=(
  "quantize_to_nvfp4.py examples/deepseek/deepseek_v4/quantize_to_nvfp4.py"
  "modelopt/torch/quantization/qtensor/nvfp4_tensor.py modelopt/torch/quantization/qtensor/nvfp4_tensor.py"
  "modelopt/torch/quantization/qtensor/mxfp4_tensor.py modelopt/torch/quantization/qtensor/mxfp4_tensor.py"
  "modelopt/torch/quantization/utils/numeric_utils.py modelopt/torch/quantization/utils/numeric_utils.py"
)
# Top-level definitions cut verbatim out of core_utils.py (the file itself imports modelopt's
# config, FSDP and accelerate helpers): what nvfp4_tensor.py imports from ..utils, and what they use.
core_utils=modelopt/torch/quantization/utils/core_utils.py
core_utils_defs="_FP8_DTYPES reduce_block_amax reduce_block_padding reduce_amax"

tmp="$dest.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
manifest="$tmp/MANIFEST"
{
  echo "# Assembled by tests/parity/modelopt/assemble.sh from NVIDIA/Model-Optimizer at $PIN."
  echo "# <file>  <origin>"
} >"$manifest"

for entry in "${verbatim[@]}"; do
  read -r out path <<<"$entry"
  mkdir -p "$tmp/$(dirname "$out")"
  g show "$PIN:$path" >"$tmp/$out"
  echo "$out  verbatim $path (blob $(g rev-parse "$PIN:$path"))" >>"$manifest"
done

out=modelopt/torch/quantization/utils/core_utils.py
mkdir -p "$tmp/$(dirname "$out")"
g show "$PIN:$core_utils" >"$tmp/core_utils.full.py"
python3 - "$tmp/core_utils.full.py" "$tmp/$out" "$PIN" $core_utils_defs <<'PY'
import ast, sys
full_path, out_path, pin, *wanted = sys.argv[1:]
text = open(full_path).read()
lines = text.splitlines(keepends=True)
tree = ast.parse(text)
found = {}
for node in tree.body:
    names = []
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        names = [node.name]
    elif isinstance(node, ast.Assign):
        names = [t.id for t in node.targets if isinstance(t, ast.Name)]
    for name in names:
        if name in wanted:
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            found[name] = "".join(lines[first - 1:node.end_lineno])
missing = [w for w in wanted if w not in found]
if missing:
    sys.exit(f"assemble.sh: {', '.join(missing)} not found in core_utils.py at {pin}")
# ModelOpt's license header (the file's leading comment block) stays with its code.
header = []
for line in lines:
    if not line.startswith("#"):
        break
    header.append(line)
with open(out_path, "w") as f:
    f.write("".join(header))
    f.write(f"\n# Cut by quantforge's tests/parity/modelopt/assemble.sh out of ModelOpt {pin}\n"
            f"# modelopt/torch/quantization/utils/core_utils.py: {', '.join(wanted)} (verbatim).\n\n")
    f.write("import torch\nimport torch.nn.functional as F\n\n\n")
    f.write("\n\n".join(found[w].rstrip("\n") + "\n" for w in wanted))
PY
rm -f "$tmp/core_utils.full.py"
echo "$out  extracted $core_utils: $core_utils_defs (blob $(g rev-parse "$PIN:$core_utils"))" \
  >>"$manifest"

# Our stand-ins for the package plumbing (see each file's header).
(cd "$standins" && find . -name '*.py' -type f | LC_ALL=C sort) | while read -r f; do
  f=${f#./}
  mkdir -p "$tmp/$(dirname "$f")"
  cp "$standins/$f" "$tmp/$f"
  echo "$f  stand-in tests/parity/modelopt/standins/$f" >>"$manifest"
done

echo "$PIN" >"$tmp/COMMIT"
# Every assembled module must at least compile (torch itself is not needed for this).
python3 -m py_compile $(find "$tmp" -name '*.py') 2>&1
find "$tmp" -name __pycache__ -type d -prune -exec rm -rf {} +

rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
mv "$tmp" "$dest"
trap - EXIT
echo "assembled ModelOpt $PIN into $dest:"
sed -n '3,$p' "$dest/MANIFEST" | sed 's/^/  /'
