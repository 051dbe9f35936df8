#!/usr/bin/env python3
"""Checks every project #include against the module graph of src/modules.cmake.

A file in module M may include headers of M itself and of the modules M names in USES (direct
uses only: a module that needs another names it). src/cli may include any module; tests/,
bench/ and tools/ are not modules. Kernels (kernels/, kernels/forward/) must not include MPI,
NCCL or HDF5, and formats/ no CUDA header (STYLE.md 1). Exit 1 listing each violation.
Usage: tools/check_layering.py [REPO]
"""
import os
import re
import sys

repo = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), '..'))
graph_text = open(os.path.join(repo, 'src/modules.cmake')).read()
# qf_module(name dir [USES a b ...] [LIBS ...]) possibly over several lines.
modules = {}   # name -> (dir, set(uses))
for m in re.finditer(r'qf_module\(\s*(\w+)\s+(\S+)([^)]*)\)', graph_text):
    name, d, rest = m.group(1), m.group(2), m.group(3)
    uses = set()
    u = re.search(r'USES((?:\s+\w+)+?)(?:\s+LIBS\b|\s*$)', rest.strip() + ' ', re.S)
    if u:
        uses = set(u.group(1).split()) - {'LIBS'}
    modules[name] = (d.rstrip('/'), uses)
dir_to_module = {d: n for n, (d, _) in modules.items()}

def module_of_path(rel):
    """The module a repository-relative path belongs to (the longest matching folder)."""
    d = os.path.dirname(rel)
    return dir_to_module.get(d)

forbidden = {
    'kernels': [r'^mpi\.h$', r'^nccl\.h$', r'^hdf5', r'^H5'],
    'forward_kernels': [r'^mpi\.h$', r'^nccl\.h$', r'^hdf5', r'^H5'],
    'formats': [r'^cuda', r'\.cuh$'],
    'numerics': [r'^mpi\.h$', r'^nccl\.h$', r'^hdf5'],
    'ops': [r'^mpi\.h$', r'^nccl\.h$', r'^hdf5', r'^cuda'],
}
inc_re = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)
errors = []
n_files = 0
for root in ('src', 'kernels'):
    for dirpath, _, files in os.walk(os.path.join(repo, root)):
        for f in sorted(files):
            if not f.endswith(('.hpp', '.cpp', '.cu', '.cuh', '.h')):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, repo)
            mod = module_of_path(rel)
            if rel.startswith('src/cli/'):
                mod = 'cli'
            if mod is None:
                errors.append(f'{rel}: not in any module of src/modules.cmake')
                continue
            n_files += 1
            text = open(path, encoding='utf-8').read()
            for kind, target in inc_re.findall(text):
                line = text[:text.find(target)].count('\n') + 1
                if kind == '<':
                    for pat in forbidden.get(mod, []):
                        if re.search(pat, target):
                            errors.append(f'{rel}:{line}: module {mod} must not include <{target}>')
                    continue
                if mod == 'cli' and target.startswith('cli/'):
                    continue
                tmod = module_of_path('src/' + target) or module_of_path(target)
                if tmod is None:
                    if target.startswith('model/preset_json.inc') and mod == 'model':
                        continue  # generated into the build tree
                    errors.append(f'{rel}:{line}: includes "{target}", which is in no module')
                    continue
                for pat in forbidden.get(mod, []):
                    if re.search(pat, target):
                        errors.append(f'{rel}:{line}: module {mod} must not include "{target}"')
                if mod == 'cli' or tmod == mod:
                    continue
                if tmod not in modules[mod][1]:
                    errors.append(f'{rel}:{line}: module {mod} includes "{target}" of module '
                                  f'{tmod}, which src/modules.cmake does not list in its USES')
# The graph itself must be acyclic (lowest first in modules.cmake; a use of a later module is a
# cycle waiting to happen).
order = list(modules)
for i, name in enumerate(order):
    for u in sorted(modules[name][1]):
        if u not in modules:
            errors.append(f'src/modules.cmake: {name} uses unknown module {u}')
        elif order.index(u) >= i:
            errors.append(f'src/modules.cmake: {name} uses {u}, which is declared after it '
                          '(dependencies must point to earlier modules)')
for e in errors:
    print(e)
print(f'check_layering: {n_files} files in {len(modules)} modules, {len(errors)} violation(s)',
      file=sys.stderr)
sys.exit(1 if errors else 0)
