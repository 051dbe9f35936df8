#!/usr/bin/env python3
"""Reports source files and function bodies that outgrow STYLE.md 2 ("aim for 150-500 lines;
over about 800 is a reason to split").

Counts the lines of every .hpp/.cpp/.cuh/.cu/.h file and, with a brace-matching heuristic, of
every function body in the .cpp/.cu files (from the line of the opening brace to the line of
the closing one; lambdas and local classes count towards the function around them). Soft
targets (files > 500 lines, functions > 80) are printed as warnings; the hard ceiling (files >
800, functions > 120) is printed as errors and makes the exit status 1, so CI can enforce it.
Usage: tools/check_sizes.py [--quiet] [PATH ...]   (default PATH: src; relative to the repo)
"""
import os
import re
import sys

FILE_SOFT, FILE_HARD = 500, 800
FUNC_SOFT, FUNC_HARD = 80, 120
SOURCE_EXTS = ('.hpp', '.cpp', '.cuh', '.cu', '.h')
BODY_EXTS = ('.cpp', '.cu')

CONTAINER_RE = re.compile(r'^(?:template\s*<.*>\s*)?(?:namespace|class|struct|union|enum|extern)\b',
                          re.S)
CONTROL_RE = re.compile(r'^(?:if|for|while|switch|catch|do|else|try|return)\b')


def strip_code(text):
    """text with comments, string and character literals and preprocessor lines blanked out
    (newlines kept, so line numbers stay valid)."""
    out = []
    i, n = 0, len(text)
    line_start = True
    while i < n:
        c = text[i]
        if line_start and c == '#':  # preprocessor directive, with its continuation lines
            while i < n and text[i] != '\n':
                if text[i] == '\\' and i + 1 < n and text[i + 1] == '\n':
                    out.append('\n')
                    i += 2
                    continue
                i += 1
            continue
        if c == '\n':
            out.append(c)
            line_start = True
            i += 1
            continue
        if c in ' \t':
            out.append(c)
            i += 1
            continue
        line_start = False
        if text.startswith('//', i):
            while i < n and text[i] != '\n':
                i += 1
            continue
        if text.startswith('/*', i):
            end = text.find('*/', i + 2)
            end = n if end < 0 else end + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:end]))
            i = end
            continue
        m = re.match(r'R"([^()\\ ]{0,16})\(', text[i:i + 20])
        if m and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == '_')):
            close = ')' + m.group(1) + '"'
            end = text.find(close, i + m.end())
            end = n if end < 0 else end + len(close)
            out.append(re.sub(r'[^\n]', ' ', text[i:end]))
            i = end
            continue
        if c == "'" and i > 0 and text[i - 1].isalnum() and i + 1 < n and text[i + 1].isalnum():
            i += 1  # digit separator: 1'000
            continue
        if c in '"\'':
            j = i + 1
            while j < n and text[j] != c and text[j] != '\n':
                j += 2 if text[j] == '\\' else 1
            out.append(' ' * (min(j + 1, n) - i))
            i = j + 1
            continue
        out.append(c)
        i += 1
    return ''.join(out)


def is_function_header(header):
    """True when the text before a `{` at namespace or class scope declares a function."""
    h = ' '.join(header.split())
    if not h or '(' not in h or CONTAINER_RE.match(h) or CONTROL_RE.match(h):
        return False
    depth = 0
    for k, ch in enumerate(h):
        if ch in '([':
            depth += 1
        elif ch in ')]':
            depth -= 1
        elif ch == '=' and depth == 0:
            before = h[:k].rstrip()
            if before.endswith('operator') or h[k - 1:k] in '=!<>' or h[k + 1:k + 2] == '=':
                continue
            return False  # an initializer (`T x = {`, `auto f = [](...) {`)
    return True


def function_name(header):
    h = ' '.join(header.split())
    m = re.search(r'((?:[\w:~]|operator\s*\S+?)+)\s*\(', h)
    return m.group(1) if m else h[:40]


def function_sizes(text):
    """[(name, first line, n_lines)] of the function bodies in text (C++ or CUDA source)."""
    code = strip_code(text)
    out = []
    stack = []  # per open brace: 'container', 'function', 'other'
    header_start = 0
    fn_start = None  # (name, line, depth)
    line = 1
    for k, ch in enumerate(code):
        if ch == '\n':
            line += 1
        elif ch in ';':
            if fn_start is None:
                header_start = k + 1
        elif ch == '{':
            if fn_start is not None:
                stack.append('other')
                continue
            header = code[header_start:k]
            # Access specifiers and labels end a header too (`public: void f() {`).
            header = re.sub(r'^.*\b(?:public|private|protected)\s*:(?!:)', '', header, flags=re.S)
            if CONTAINER_RE.match(' '.join(header.split())):
                stack.append('container')
            elif is_function_header(header):
                stack.append('function')
                fn_start = (function_name(header), line, len(stack))
            else:
                stack.append('other')
            header_start = k + 1
        elif ch == '}':
            if stack:
                kind = stack.pop()
                if kind == 'function' and fn_start is not None and len(stack) + 1 == fn_start[2]:
                    out.append((fn_start[0], fn_start[1], line - fn_start[1] + 1))
                    fn_start = None
            if fn_start is None:
                header_start = k + 1
    return out


def main(argv):
    quiet = '--quiet' in argv
    paths = [a for a in argv if a != '--quiet'] or ['src']
    repo = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
    files = []
    for p in paths:
        full = os.path.join(repo, p)
        if os.path.isfile(full):
            files.append(full)
            continue
        for dirpath, _, names in os.walk(full):
            files += [os.path.join(dirpath, f) for f in names if f.endswith(SOURCE_EXTS)]
    warnings, errors = [], []
    n_functions = 0
    for path in sorted(files):
        rel = os.path.relpath(path, repo)
        text = open(path, encoding='utf-8', errors='replace').read()
        n_lines = text.count('\n') + (0 if text.endswith('\n') or not text else 1)
        if n_lines > FILE_HARD:
            errors.append(f'{rel}: {n_lines} lines (ceiling {FILE_HARD})')
        elif n_lines > FILE_SOFT:
            warnings.append(f'{rel}: {n_lines} lines (target {FILE_SOFT})')
        if not path.endswith(BODY_EXTS):
            continue
        for name, first, n_body in function_sizes(text):
            n_functions += 1
            if n_body > FUNC_HARD:
                errors.append(f'{rel}:{first}: {name}: {n_body} lines (ceiling {FUNC_HARD})')
            elif n_body > FUNC_SOFT:
                warnings.append(f'{rel}:{first}: {name}: {n_body} lines (target {FUNC_SOFT})')
    if not quiet:
        for w in warnings:
            print(f'warning: {w}')
    for e in errors:
        print(f'error: {e}')
    print(f'check_sizes: {len(files)} files, {n_functions} functions; {len(warnings)} over the '
          f'targets ({FILE_SOFT} lines a file, {FUNC_SOFT} a function), {len(errors)} over the '
          f'ceiling ({FILE_HARD}, {FUNC_HARD})')
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
