# SMOKE ONLY (tests/parity/modelopt/smoke/run_smoke.py): a minimal safetensors.safe_open for
# machines without the package. F8_* tensors come back as uint8 and keep their dtype string.
import json, struct
import torch as _torch
__version__ = "smoke-fake"
_STORE = {"I8": _torch.int8, "U8": _torch.uint8, "F32": _torch.float32, "I32": _torch.int32,
          "I64": _torch.int64, "F8_E4M3": _torch.uint8, "F8_E8M0": _torch.uint8}


class safe_open:
    def __init__(self, path, framework="pt", device="cpu"):
        raw = open(path, "rb").read()
        n = struct.unpack("<Q", raw[:8])[0]
        self.h = json.loads(raw[8:8 + n]); self.h.pop("__metadata__", None)
        self.raw, self.base = raw, 8 + n

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def keys(self):
        return sorted(self.h)

    def get_tensor(self, k):
        info = self.h[k]; b, e = info["data_offsets"]
        data = bytearray(self.raw[self.base + b:self.base + e])
        if info["dtype"] == "BF16":
            t = _torch.frombuffer(data, dtype=_torch.int16).view(_torch.bfloat16)
        else:
            t = _torch.frombuffer(data, dtype=_STORE[info["dtype"]]) if data else _torch.empty(0, dtype=_STORE[info["dtype"]])
        t = t.reshape(info["shape"])
        if info["dtype"].startswith("F8"):
            t._st_dtype = info["dtype"]
        return t
