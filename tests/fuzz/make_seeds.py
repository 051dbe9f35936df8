#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, built from the repository's fixtures and a make-tiny
checkpoint (small inputs only: libFuzzer mutates faster from small seeds).
Usage: make_seeds.py REPO TINY_CHECKPOINT_DIR WORK_STORE_DIR OUT_DIR"""
import glob, json, os, struct, sys

repo, tiny, work, out = sys.argv[1:5]

def put(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data if isinstance(data, bytes) else data.encode())

def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape, bytes)] -> file bytes, header padded to 8 like the Rust writer."""
    header, off, blob = {}, 0, b''
    if metadata is not None:
        header['__metadata__'] = metadata
    for name, dtype, shape, data in tensors:
        header[name] = {'dtype': dtype, 'shape': shape, 'data_offsets': [off, off + len(data)]}
        off += len(data)
        blob += data
    text = json.dumps(header).encode()
    text += b' ' * ((8 - len(text) % 8) % 8)
    return struct.pack('<Q', len(text)) + text + blob

# safetensors: every dtype family the project reads, a scalar, an empty tensor, metadata.
put('fuzz_safetensors', 'mixed', safetensors([
    ('a.weight', 'F8_E4M3', [2, 4], bytes(range(8))),
    ('a.scale', 'F8_E8M0', [1, 1], b'\x7f'),
    ('b', 'BF16', [3], b'\x80\x3f' * 3),
    ('c', 'F32', [], struct.pack('<f', 1.5)),
    ('d', 'I8', [2, 2], b'\x01\x23\x45\x67'),
    ('e', 'I64', [0], b''),
], {'format': 'pt'}))
put('fuzz_safetensors', 'empty', safetensors([]))
for path in glob.glob(os.path.join(tiny, '*.safetensors')):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        head = f.read(n)
    # The real header with an empty data buffer: every offset is then out of range.
    put('fuzz_safetensors', 'tiny_header_' + os.path.basename(path), struct.pack('<Q', n) + head)

put('fuzz_shard_index', 'tiny', open(os.path.join(tiny, 'model.safetensors.index.json')).read())
put('fuzz_shard_index', 'minimal', '{"metadata": {"total_size": 4}, "weight_map": {"a": "x.safetensors"}}')

for path in glob.glob(os.path.join(repo, 'configs', '*.json')) + [os.path.join(tiny, 'config.json')]:
    put('fuzz_model_config', os.path.basename(os.path.dirname(path)) + '_' + os.path.basename(path),
        open(path).read())

# Calibration files: 2 leading bytes (samples, seq_len) then the file.
put('fuzz_calibration_file', 'jsonl', b'\x01\x03' + b'[1, 2, 3, 4]\n{"input_ids": [5, 6, 7]}\n')
put('fuzz_calibration_file', 'st2d', b'\x01\x02' + safetensors(
    [('input_ids', 'I64', [2, 3], struct.pack('<6q', 1, 2, 3, 4, 5, 6))]))
put('fuzz_calibration_file', 'st1d', b'\x00\x01' + safetensors(
    [('input_ids', 'I32', [4], struct.pack('<4i', 1, 2, 3, 4))]))

fx = os.path.join(repo, 'tests', 'fixtures', 'tokenizer')
put('fuzz_tokenizer_json', 'deepseek_like', open(os.path.join(fx, 'deepseek_like.tokenizer.json')).read())
texts = json.load(open(os.path.join(repo, 'tests', 'parity', 'tokenizer_texts.json')))
for i, t in enumerate(texts['texts']):
    put('fuzz_tokenizer_encode', 'text%02d' % i, t)

calib = sorted(glob.glob(os.path.join(work, 'rank-*', '*.calib.h5')))
quant = sorted(glob.glob(os.path.join(work, 'rank-*', '*.quant.h5')), key=os.path.getsize)
for path in calib[:2] + quant[:1]:
    put('fuzz_layer_record', os.path.basename(path), open(path, 'rb').read())
print('seeds:', {t: len(os.listdir(os.path.join(out, t))) for t in sorted(os.listdir(out))})
