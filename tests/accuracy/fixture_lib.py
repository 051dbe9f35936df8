"""Torch-free helpers of the accuracy fixture (tests/accuracy): corpus discovery and file-level
held-out split, JSONL, safetensors headers/writing, the native DeepSeek V4 encoders (FP8 E4M3 with
UE8M0 128x128 tiles, MXFP4 routed experts, BF16) in numpy, the native config, make-tiny's tensor
table and the writer that reproduces it. Tested here by test_fixture_lib.py (numpy + quantforge)."""
import hashlib
import json
import math
import os
import struct
import subprocess

import numpy as np

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
# DeepSeek V3's pre-tokenizer, exactly as tests/fixtures/tokenizer/make_deepseek_like.py has it.
DS3_SPLIT = ("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?"
             "[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+")
PRETOKENIZER_SPLITS = ["\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+", DS3_SPLIT]

CORPUS_EXTS = (".py", ".md", ".rst", ".txt")
FP8_TILE = 128
MX_BLOCK = 32
E4M3_MAX = 448.0
E2M1_MAX = 6.0
E2M1_BOUNDS = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0], dtype=np.float32)
E2M1 = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                 -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], dtype=np.float32)


class FixtureError(RuntimeError):
    """A broken assumption: the fixture must not be written past it."""


# ------------------------------------------------------------------------------------------------
# corpus: files of the installed site-packages, held-out set chosen per FILE by a path hash
def _h(salt, rel):
    return int(hashlib.sha1(f"{salt}:{rel}".encode()).hexdigest()[:12], 16)


def site_roots():
    import site
    import sysconfig
    cands = []
    for key in ("purelib", "platlib"):
        cands.append(sysconfig.get_paths().get(key))
    try:
        cands += list(site.getsitepackages())
    except AttributeError:  # virtualenvs of old
        pass
    try:
        cands.append(site.getusersitepackages())
    except AttributeError:
        pass
    seen, roots = set(), []
    for c in cands:
        if c and os.path.isdir(c) and os.path.realpath(c) not in seen:
            seen.add(os.path.realpath(c))
            roots.append(c)
    return sorted(roots)


def list_corpus_files(roots, max_file_bytes=1 << 20, exts=CORPUS_EXTS):
    """Sorted [(relpath, abspath, size)] of text files under roots (first root wins a relpath)."""
    out, seen = [], set()
    for root in roots:
        for d, dirs, files in os.walk(root):
            dirs[:] = sorted(x for x in dirs if x != "__pycache__")
            for f in sorted(files):
                if not f.endswith(exts):
                    continue
                p = os.path.join(d, f)
                rel = os.path.relpath(p, root)
                if rel in seen:
                    continue
                try:
                    size = os.path.getsize(p)
                except OSError:
                    continue
                if 0 < size <= max_file_bytes:
                    seen.add(rel)
                    out.append((rel, p, size))
    out.sort()
    return out


def is_heldout(rel, permille):
    return _h("heldout", rel) % 1000 < permille


def read_corpus(files, max_bytes, heldout_permille=25, log=print):
    """Reads files in a fixed pseudo-random order (hash of the path) until max_bytes of UTF-8
    text; exact duplicate contents are dropped (license files...). Returns a dict with
    train/heldout lists of (relpath, text) in reading order and counters."""
    order = sorted(files, key=lambda f: (_h("order", f[0]), f[0]))
    train, held = [], []
    stats = dict(candidates=len(files), read=0, bytes=0, skipped_binary=0, skipped_dup=0)
    digests = set()
    for rel, path, _ in order:
        if stats["bytes"] >= max_bytes:
            break
        try:
            with open(path, "rb") as f:
                raw = f.read()
            text = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError):
            stats["skipped_binary"] += 1
            continue
        if "\x00" in text or not text.strip():
            stats["skipped_binary"] += 1
            continue
        dig = hashlib.sha1(raw).digest()
        if dig in digests:
            stats["skipped_dup"] += 1
            continue
        digests.add(dig)
        (held if is_heldout(rel, heldout_permille) else train).append((rel, text))
        stats["read"] += 1
        stats["bytes"] += len(raw)
    stats["train_files"], stats["heldout_files"] = len(train), len(held)
    stats["train_bytes"] = sum(len(t.encode()) for _, t in train)
    stats["heldout_bytes"] = sum(len(t.encode()) for _, t in held)
    overlap = {r for r, _ in train} & {r for r, _ in held}
    if overlap:
        raise FixtureError(f"held-out and training files overlap: {sorted(overlap)[:3]}")
    log(f"  corpus: {stats['read']} files, {stats['bytes'] / 1e6:.1f} MB read of "
        f"{len(files)} candidates; train {stats['train_files']} files "
        f"({stats['train_bytes'] / 1e6:.1f} MB), held-out {stats['heldout_files']} files "
        f"({stats['heldout_bytes'] / 1e6:.2f} MB); skipped {stats['skipped_binary']} non-text, "
        f"{stats['skipped_dup']} duplicates")
    return dict(train=train, heldout=held, stats=stats)


def write_jsonl(path, texts):
    """{"text": ...} per line; returns (lines, bytes)."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
            n += 1
    return n, os.path.getsize(path)


def sample_texts(texts, max_bytes, seed):
    """A seeded sample of whole documents totalling >= max_bytes (or all)."""
    rng = np.random.default_rng(seed)
    out, total = [], 0
    for i in rng.permutation(len(texts)):
        if total >= max_bytes:
            break
        out.append(texts[int(i)])
        total += len(texts[int(i)].encode())
    return out


# ------------------------------------------------------------------------------------------------
# safetensors
def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header


def write_safetensors(path, entries, metadata=None):
    """entries: [(name, dtype, shape, bytes)] written in this order, contiguous."""
    header, off = {}, 0
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, data in entries:
        if name in header:
            raise FixtureError(f"{path}: duplicate tensor {name}")
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(data)]}
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, _, _, data in entries:
            f.write(data)
    return 8 + len(h) + off


# ------------------------------------------------------------------------------------------------
# encoders (numpy, float32 in): DeepSeek-style FP8 tiles, MXFP4 experts, BF16
def bf16_bytes(a):
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    if not np.isfinite(a).all():
        raise FixtureError("non-finite value in a tensor being cast to BF16")
    r = (u + 0x7FFF + ((u >> 16) & 1)) >> 16  # round to nearest, ties to even
    return r.astype(np.uint16).tobytes()


def bf16_decode(b, shape):
    u = np.frombuffer(b, dtype=np.uint16).astype(np.uint32) << 16
    return u.view(np.float32).reshape(shape)


def pow2_ceil_exponent(x):
    """k = ceil(log2(x)) exactly, for x > 0 (frexp: x = m * 2^e, m in [0.5, 1))."""
    m, e = np.frexp(x.astype(np.float64))
    return np.where(m == 0.5, e - 1, e).astype(np.int64)


def _e8m0_from_amax(amax, maxval):
    """scale exponent k = ceil(log2(amax / maxval)) (an all-zero block: k = 0), as E8M0 bytes."""
    amax = amax.astype(np.float64)
    k = pow2_ceil_exponent(np.where(amax > 0, amax / maxval, 1.0))
    if (k < -127).any() or (k > 127).any():
        raise FixtureError(f"scale exponent out of E8M0 range: {k.min()}..{k.max()}")
    return k, (k + 127).astype(np.uint8)


def e4m3_table():
    """Value of each E4M3 (fn) code 0..255; 0x7F/0xFF are NaN."""
    v = np.zeros(256, dtype=np.float64)
    for c in range(256):
        s, e, m = c >> 7, (c >> 3) & 0xF, c & 7
        if e == 15 and m == 7:
            v[c] = np.nan
            continue
        mag = (m / 8.0) * 2.0 ** -6 if e == 0 else (1 + m / 8.0) * 2.0 ** (e - 7)
        v[c] = -mag if s else mag
    return v


_E4M3 = e4m3_table()
_E4M3_POS = _E4M3[:127]  # codes 0..126: increasing magnitudes 0 .. 448


def e4m3_encode(v):
    """float -> E4M3 code, round to nearest even (like torch's .to(float8_e4m3fn)); |v| <= 448."""
    v = np.asarray(v, dtype=np.float64)
    a = np.abs(v)
    if (a > E4M3_MAX).any():
        raise FixtureError("E4M3 encode: |value| > 448")
    e = np.floor(np.log2(np.where(a > 0, a, 1.0)))
    e = np.clip(e, -6, 8)
    q = np.exp2(e - 3)  # spacing of the binade (subnormals: 2^-9)
    r = np.round(a / q) * q  # half to even on an exact power-of-two quotient
    code = np.searchsorted(_E4M3_POS, r)
    if not np.array_equal(_E4M3_POS[np.minimum(code, 126)], r):
        raise FixtureError("E4M3 encode: rounding produced a non-representable value")
    return (code | np.where(v < 0, 0x80, 0)).astype(np.uint8)


def fp8_block_encode(w):
    """[out, in] float32 -> (E4M3 codes uint8 [out, in], E8M0 scales uint8 [ceil(out/128),
    ceil(in/128)]): scale = 2^ceil(log2(tile_amax / 448)), code = e4m3(w / scale)."""
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2 or not np.isfinite(w).all():
        raise FixtureError(f"FP8 encode needs a finite 2-D tensor, got {w.shape}")
    rows, cols = w.shape
    tr, tc = math.ceil(rows / FP8_TILE), math.ceil(cols / FP8_TILE)
    pad = np.zeros((tr * FP8_TILE, tc * FP8_TILE), dtype=np.float32)
    pad[:rows, :cols] = np.abs(w)
    amax = pad.reshape(tr, FP8_TILE, tc, FP8_TILE).max(axis=(1, 3))
    k, sbytes = _e8m0_from_amax(amax, E4M3_MAX)
    full = np.repeat(np.repeat(k, FP8_TILE, 0), FP8_TILE, 1)[:rows, :cols]
    scaled = w.astype(np.float64) * np.exp2(-full)  # exact: power-of-two scaling
    return e4m3_encode(scaled), sbytes


def fp8_block_decode(codes, sbytes):
    rows, cols = codes.shape
    s = np.exp2(sbytes.astype(np.float64) - 127)
    s = np.repeat(np.repeat(s, FP8_TILE, 0), FP8_TILE, 1)[:rows, :cols]
    return (_E4M3[codes] * s).astype(np.float32)


def e2m1_encode(y):
    """FORMATS.md §1 rounding (ModelOpt _cast_fp4): searchsorted on the bounds, +1 on the odd
    bounds 0.75/1.75/3.5, > 5 saturates to 6; sign bit iff y < 0."""
    y = np.asarray(y, dtype=np.float32)
    a = np.abs(y)
    idx = np.searchsorted(E2M1_BOUNDS, a, side="left")
    idx = idx + ((a == 0.75) | (a == 1.75) | (a == 3.5))
    return (np.minimum(idx, 7) | np.where(y < 0, 8, 0)).astype(np.uint8)


def mxfp4_encode(w):
    """[out, in] float32 -> (packed I8 bytes as uint8 [out, in/2], element 2i in the low nibble;
    E8M0 scales uint8 [out, in/32] with scale = 2^ceil(log2(block_amax / 6)))."""
    w = np.asarray(w, dtype=np.float32)
    rows, cols = w.shape
    if cols % MX_BLOCK or not np.isfinite(w).all():
        raise FixtureError(f"MXFP4 encode needs finite [out, in] with in % 32 == 0, got {w.shape}")
    blocks = w.reshape(rows, cols // MX_BLOCK, MX_BLOCK)
    amax = np.abs(blocks).max(axis=-1)
    k, sbytes = _e8m0_from_amax(amax, E2M1_MAX)
    y = (blocks.astype(np.float64) * np.exp2(-k)[..., None]).astype(np.float32).reshape(rows, cols)
    codes = e2m1_encode(y)
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)
    return packed, sbytes


def mxfp4_decode(packed, sbytes):
    lo, hi = packed & 0xF, packed >> 4
    codes = np.stack([lo, hi], axis=-1).reshape(packed.shape[0], -1)
    s = np.exp2(sbytes.astype(np.float64) - 127).repeat(MX_BLOCK, axis=1)
    return (E2M1[codes] * s).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# native config (the spelling of configs/tiny.json: exactly its keys, nothing else) + make-tiny
def native_config(d, transformers_version="unknown"):
    n, mtp = d["num_hidden_layers"], d.get("num_nextn_predict_layers", 0)
    ratios = list(d["compress_ratios"])
    if len(ratios) != n + mtp:
        raise FixtureError(f"compress_ratios has {len(ratios)} entries, want {n} + {mtp} MTP")
    return {
        "architectures": ["DeepseekV4ForCausalLM"], "attention_bias": False,
        "attention_dropout": 0.0, "bos_token_id": 0, "eos_token_id": 1, "expert_dtype": "fp4",
        "hc_eps": 1e-06, "hc_mult": d.get("hc_mult", 4), "hc_sinkhorn_iters": 20,
        "head_dim": d["head_dim"], "hidden_act": "silu", "hidden_size": d["hidden_size"],
        "index_head_dim": d["index_head_dim"], "index_n_heads": d["index_n_heads"],
        "index_topk": d["index_topk"], "initializer_range": 0.02,
        "max_position_embeddings": 4096, "model_type": "deepseek_v4",
        "moe_intermediate_size": d["moe_intermediate_size"],
        "n_routed_experts": d["n_routed_experts"], "n_shared_experts": 1,
        "norm_topk_prob": True, "num_attention_heads": d["num_attention_heads"],
        "num_experts_per_tok": d["num_experts_per_tok"], "num_hidden_layers": n,
        "num_hash_layers": d["num_hash_layers"], "num_key_value_heads": 1,
        "num_nextn_predict_layers": mtp, "o_groups": d["o_groups"],
        "o_lora_rank": d["o_lora_rank"], "q_lora_rank": d["q_lora_rank"],
        "qk_rope_head_dim": d["qk_rope_head_dim"],
        "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3",
                                "quant_method": "fp8", "scale_fmt": "ue8m0",
                                "weight_block_size": [128, 128]},
        "rms_norm_eps": 1e-06,
        "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 4,
                         "original_max_position_embeddings": 1024, "type": "yarn"},
        "rope_theta": 10000, "routed_scaling_factor": 1.5, "scoring_func": "sqrtsoftplus",
        "sliding_window": d["sliding_window"], "swiglu_limit": 10.0, "tie_word_embeddings": False,
        "topk_method": "noaux_tc", "torch_dtype": "bfloat16",
        "transformers_version": transformers_version, "use_cache": True,
        "vocab_size": d["vocab_size"], "compress_rope_theta": 160000,
        "compress_ratios": ratios,
    }


def make_tiny_table(qf, config_path, out_dir):
    """Runs `quantforge make-tiny --config` and returns its tensor table in file order:
    [(name, dtype, shape)] (the exact names/dtypes/shapes of a native checkpoint)."""
    cmd = [qf, "make-tiny", "--config", config_path, "--out", out_dir, "--shards", "1", "--force",
           "--log-level", "warn"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise FixtureError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    shards = [f for f in os.listdir(out_dir) if f.endswith(".safetensors")]
    if len(shards) != 1:
        raise FixtureError(f"make-tiny wrote {shards}, want one shard")
    header = read_header(os.path.join(out_dir, shards[0]))
    items = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    return [(k, v["dtype"], list(v["shape"])) for k, v in items]


# ------------------------------------------------------------------------------------------------
# the native writer: trained tensors (native names, float32/int64) -> make-tiny's exact table
def encode_native(table, state, log=print):
    """table: make_tiny_table(); state: {native name: np.ndarray (float32 or int64, logical
    shape)}. Returns [(name, dtype, shape, bytes)] in table order. Fails on anything that does
    not map one to one."""
    by_name = {n: (d, s) for n, d, s in table}
    pending, out, used, errors = {}, [], set(), []
    for name, dtype, shape in table:
        if name.endswith(".scale"):
            continue
        if name not in state:
            errors.append(f"missing trained tensor for {name} ({dtype} {shape})")
            continue
        a, sname = state[name], name[: -len(".weight")] + ".scale"
        used.add(name)
        if dtype in ("F8_E4M3", "I8"):
            want = list(shape) if dtype == "F8_E4M3" else [shape[0], shape[1] * 2]
            if list(a.shape) != want:
                errors.append(f"{name}: trained shape {list(a.shape)} != native logical {want}")
                continue
            codes, sbytes = (fp8_block_encode if dtype == "F8_E4M3" else mxfp4_encode)(a)
            sd, ss = by_name.get(sname, (None, None))
            if sd != "F8_E8M0" or list(ss) != list(sbytes.shape):
                errors.append(f"{sname}: make-tiny has {sd} {ss}, encoder gives F8_E8M0 "
                              f"{list(sbytes.shape)}")
                continue
            out.append((name, dtype, list(codes.shape), codes.tobytes()))
            pending[sname] = (sname, "F8_E8M0", list(sbytes.shape), sbytes.tobytes())
            continue
        if list(a.shape) != list(shape):
            errors.append(f"{name}: trained shape {list(a.shape)} != native {list(shape)}")
            continue
        if dtype == "BF16":
            out.append((name, dtype, list(shape), bf16_bytes(a)))
        elif dtype == "F32":
            out.append((name, dtype, list(shape), np.ascontiguousarray(a, np.float32).tobytes()))
        elif dtype == "I64":
            if a.dtype.kind not in "iu":
                errors.append(f"{name}: I64 tensor from {a.dtype}")
                continue
            out.append((name, dtype, list(shape), np.ascontiguousarray(a, np.int64).tobytes()))
        else:
            errors.append(f"{name}: native dtype {dtype} has no encoder")
    for name, dtype, shape in table:  # scales in table order, right after their weights
        if name.endswith(".scale") and name not in pending:
            errors.append(f"{name}: no quantized weight produced it")
    unused = sorted(set(state) - used)
    for n in unused:
        errors.append(f"trained tensor {n} {list(state[n].shape)} maps to no native tensor")
    if errors:
        for e in errors[:40]:
            log("  NATIVE MAP ERROR: " + e)
        raise FixtureError(f"{len(errors)} tensor(s) do not map onto make-tiny's table "
                           f"(first: {errors[0]})")
    order = {n: i for i, (n, _, _) in enumerate(table)}
    out += list(pending.values())
    out.sort(key=lambda e: order[e[0]])
    return out


def plan_shards(entries, max_shard_bytes):
    shards, cur, size = [], [], 0
    for e in entries:
        if cur and size + len(e[3]) > max_shard_bytes:
            shards.append(cur)
            cur, size = [], 0
        cur.append(e)
        size += len(e[3])
    if cur:
        shards.append(cur)
    return shards


def write_native(out_dir, entries, config, max_shard_bytes):
    """DeepSeek layout: model-0000K-of-0000N.safetensors + model.safetensors.index.json +
    config.json. Returns {"shards": [...], "bytes": ..., "total_size": ...}."""
    shards = plan_shards(entries, max_shard_bytes)
    n = len(shards)
    weight_map, files, total = {}, [], 0
    for i, sh in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        size = write_safetensors(os.path.join(out_dir, fname), sh, {"format": "pt"})
        files.append({"file": fname, "tensors": len(sh), "bytes": size})
        for e in sh:
            weight_map[e[0]] = fname
            total += len(e[3])
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    return {"shards": files, "total_size": total,
            "bytes": sum(x["bytes"] for x in files)}


def read_tensor(path, name):
    """(dtype, shape, raw bytes) of one tensor of a safetensors file."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        if name not in header:
            raise FixtureError(f"{path}: no tensor {name}")
        b, e = header[name]["data_offsets"]
        f.seek(8 + n + b)
        return header[name]["dtype"], header[name]["shape"], f.read(e - b)


def table_of_dir(ckpt):
    """{name: (dtype, shape)} of a sharded checkpoint, via its index."""
    idx = json.load(open(os.path.join(ckpt, "model.safetensors.index.json")))
    out = {}
    for shard in sorted(set(idx["weight_map"].values())):
        for k, v in read_header(os.path.join(ckpt, shard)).items():
            out[k] = (v["dtype"], list(v["shape"]))
    return out
