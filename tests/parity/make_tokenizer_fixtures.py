#!/usr/bin/env python3
"""Records reference token ids for the C++ tokenizer (src/tokenizer/) from the Hugging Face
`tokenizers` package: every text of tokenizer_texts.json (English, code, CJK, emoji, whitespace,
numbers, special tokens) is encoded with and without special tokens, and written as
<out-dir>/<name>.ids.json, which tests/unit/test_tokenizer_fixtures.cpp checks.

Run where `tokenizers` is installed (the GPU machine), e.g. for the real DeepSeek V4 tokenizer:
  python3 tests/parity/make_tokenizer_fixtures.py --tokenizer /models/DeepSeek-V4-Flash/tokenizer.json \
      --name deepseek_v4 --copy-tokenizer
The C++ test finds the tokenizer as <name>.tokenizer.json next to the fixture (--copy-tokenizer
puts it there) or in $QF_TOKENIZER_DIR. make_tokenizer_fixtures.js does the same with the npm
package `tokenizers` (the same Rust core) where Python's is not installed.
"""
import argparse
import json
import pathlib
import shutil
import sys

HERE = pathlib.Path(__file__).resolve().parent


def format_fixture(f: dict) -> str:
    """One text per line, so diffs of regenerated fixtures stay readable."""
    def dump(v):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))

    def table(m):
        return "{\n" + ",\n".join(f"  {dump(t)}: {dump(ids)}" for t, ids in m.items()) + "\n }"

    return (f'{{\n "tokenizer": {dump(f["tokenizer"])},\n "generator": {dump(f["generator"])},\n'
            f' "ids": {table(f["ids"])},\n "ids_with_special_tokens": {table(f["ids_with_special_tokens"])}\n}}\n')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", required=True, help="tokenizer.json to record")
    parser.add_argument("--name", required=True, help="fixture name: writes <name>.ids.json")
    parser.add_argument("--texts", default=str(HERE / "tokenizer_texts.json"))
    parser.add_argument("--extra-jsonl", action="append", default=[],
                        help="JSONL file whose 'text' fields are added to the texts (repeatable)")
    parser.add_argument("--out-dir", default=str(HERE.parent / "fixtures" / "tokenizer"))
    parser.add_argument("--copy-tokenizer", action="store_true",
                        help="also copy the tokenizer.json to <out-dir>/<name>.tokenizer.json")
    args = parser.parse_args()

    import tokenizers  # imported late so --help works without the package

    tok = tokenizers.Tokenizer.from_file(args.tokenizer)
    texts = json.loads(pathlib.Path(args.texts).read_text(encoding="utf-8"))["texts"]
    for path in args.extra_jsonl:
        for line in pathlib.Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                value = json.loads(line)
                texts.append(value["text"] if isinstance(value, dict) else value)
    fixture = {
        "tokenizer": f"{args.name}.tokenizer.json",
        "generator": f"tokenizers {tokenizers.__version__} (python)",
        "ids": {t: tok.encode(t, add_special_tokens=False).ids for t in texts},
        "ids_with_special_tokens": {t: tok.encode(t, add_special_tokens=True).ids for t in texts},
    }
    out_dir = pathlib.Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{args.name}.ids.json"
    out.write_text(format_fixture(fixture), encoding="utf-8")
    if args.copy_tokenizer:
        shutil.copyfile(args.tokenizer, out_dir / fixture["tokenizer"])
    print(f"wrote {out}: {len(fixture['ids'])} texts", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
