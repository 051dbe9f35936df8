# SMOKE ONLY (tests/parity/modelopt/smoke/run_smoke.py): a minimal safetensors.torch.save_file.
# float16 tensors are the emulated float8_e4m3fn (../sitecustomize.py), written as F8_E4M3 bytes.
import json, math, struct
import torch

def _e4m3(b):
    s = -1.0 if b & 0x80 else 1.0; e, m = (b >> 3) & 15, b & 7
    if e == 15 and m == 7: return float("nan")
    return s * (m / 8 * 2.0 ** -6 if e == 0 else (1 + m / 8) * 2.0 ** (e - 7))
_ENC = {}
for _b in range(256):
    v = _e4m3(_b)
    if not math.isnan(v) and v not in _ENC:  # +0 wins over -0 (0 == -0.0): fine for scales >= 2^-9
        _ENC[v] = _b
_NAME = {torch.uint8: "U8", torch.int8: "I8", torch.float32: "F32", torch.bfloat16: "BF16",
         torch.int32: "I32", torch.int64: "I64", torch.float16: "F8_E4M3"}

def to_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.float16:
        return bytes(0x7F if math.isnan(v) else _ENC[v] for v in t.float().flatten().tolist())
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().tobytes()

def save_file(tensors, path, metadata=None):
    header, blobs, off = {}, [], 0
    for k in sorted(tensors):
        t = tensors[k]; data = to_bytes(t)
        header[k] = {"dtype": getattr(t, "_st_dtype", None) or _NAME[t.dtype], "shape": list(t.shape),
                     "data_offsets": [off, off + len(data)]}
        blobs.append(data); off += len(data)
    text = json.dumps(header).encode(); text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
