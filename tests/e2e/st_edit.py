"""Edits a safetensors checkpoint directory in place to make bad inputs for the e2e tests
(standard library only, so it runs on CI). Every edit keeps the file otherwise valid, so the
tool under test must detect the specific problem.

usage: st_edit.py DIR drop NAME            remove a tensor (shard and index)
       st_edit.py DIR transpose NAME       swap the two dims of a 2-D tensor's shape
       st_edit.py DIR dtype NAME STRING    set the header dtype string
       st_edit.py DIR truncate FILE N      cut a shard to N bytes (negative: drop -N bytes)
       st_edit.py DIR shard-of NAME        print the shard file holding NAME
       st_edit.py DIR header-len FILE N    set a shard's 8-byte header length prefix to N
       st_edit.py DIR shift NAME N         move NAME's data_offsets by N bytes (negative: into
                                           the previous tensor; past the end: out of range)
       st_edit.py DIR poke NAME I BYTE     set byte I (negative: from the end) of NAME's data
                                           to BYTE (e.g. 0xFF)
       st_edit.py DIR rename NAME NEW      rename a tensor (shard and index); NEW may hold
                                           Python escapes (\\x00, \\x1b, \\n)
"""
import json
import os
import struct
import sys


def read_shard(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    return header, data


def write_shard(path, header, data):
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def load_index(d):
    with open(os.path.join(d, "model.safetensors.index.json")) as f:
        return json.load(f)


def shard_of(d, name):
    return load_index(d)["weight_map"][name]


def main():
    d, op = sys.argv[1], sys.argv[2]
    if op == "truncate":
        path = os.path.join(d, sys.argv[3])
        n = int(sys.argv[4])
        size = os.path.getsize(path)
        os.truncate(path, n if n >= 0 else size + n)
        return
    if op == "header-len":
        with open(os.path.join(d, sys.argv[3]), "r+b") as f:
            f.write(struct.pack("<Q", int(sys.argv[4])))
        return
    name = sys.argv[3]
    if op == "shard-of":
        print(shard_of(d, name))
        return
    path = os.path.join(d, shard_of(d, name))
    header, data = read_shard(path)
    if op == "drop":
        begin, end = header[name]["data_offsets"]
        del header[name]
        data = data[:begin] + data[end:]
        for key, entry in header.items():
            if key != "__metadata__" and entry["data_offsets"][0] >= end:
                entry["data_offsets"] = [o - (end - begin) for o in entry["data_offsets"]]
        index = load_index(d)
        del index["weight_map"][name]
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump(index, f, indent=2)
    elif op == "transpose":
        header[name]["shape"] = header[name]["shape"][::-1]
    elif op == "dtype":
        header[name]["dtype"] = sys.argv[4]
    elif op == "shift":
        header[name]["data_offsets"] = [o + int(sys.argv[4]) for o in header[name]["data_offsets"]]
    elif op == "rename":
        new = sys.argv[4].encode().decode("unicode_escape")
        header[new] = header.pop(name)
        index = load_index(d)
        index["weight_map"][new] = index["weight_map"].pop(name)
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump(index, f, indent=2)
    elif op == "poke":
        begin, end = header[name]["data_offsets"]
        i = int(sys.argv[4])
        pos = (begin if i >= 0 else end) + i
        assert begin <= pos < end, f"byte {i} is outside {name} ({end - begin} bytes)"
        data = data[:pos] + bytes([int(sys.argv[5], 0)]) + data[pos + 1:]
    else:
        sys.exit("unknown op " + op)
    write_shard(path, header, data)


if __name__ == "__main__":
    main()
