"""Local stand-in for the `safetensors` package (test_fixture_flow.py only): reads/writes the
real file format through fixture_lib. torch 1.13 has no float8 dtypes, so F8_E4M3 / F8_E8M0
tensors come back already decoded to float32 (what `.float()` gives on torch 2.11)."""
import json
import os
import struct
import sys

import numpy as np
import torch as _torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
import fixture_lib as fl  # noqa: E402

__version__ = "mock"
NP = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "I8": np.int8,
      "U8": np.uint8, "I16": np.int16}


def _to_torch(dtype, shape, raw):
    if dtype in NP:
        return _torch.from_numpy(np.frombuffer(raw, NP[dtype]).reshape(shape).copy())
    if dtype == "BF16":
        return _torch.from_numpy(fl.bf16_decode(raw, shape).copy()).to(_torch.bfloat16)
    u = np.frombuffer(raw, np.uint8).reshape(shape)
    if dtype == "F8_E4M3":
        return _torch.from_numpy(fl.e4m3_table()[u].astype(np.float32))
    if dtype == "F8_E8M0":
        return _torch.from_numpy(np.exp2(u.astype(np.float64) - 127).astype(np.float32))
    raise TypeError(f"mock safetensors: dtype {dtype}")


class _Slice:
    def __init__(self, info):
        self.info = info

    def get_dtype(self):
        return self.info["dtype"]

    def get_shape(self):
        return list(self.info["shape"])


class safe_open:  # noqa: N801 - the real API's name
    def __init__(self, path, framework="pt", device="cpu"):
        self.path = path
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            self.header = json.loads(f.read(n))
        self.header.pop("__metadata__", None)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def keys(self):
        return list(self.header)

    def get_slice(self, name):
        return _Slice(self.header[name])

    def get_tensor(self, name):
        dt, shape, raw = fl.read_tensor(self.path, name)
        return _to_torch(dt, shape, raw)
