#!/usr/bin/env python3
"""SMOKE ONLY: runs tests/parity/check_vs_modelopt.py on a CPU machine that has Debian's torch 1.13
(python3-torch) but no float8 dtypes and no safetensors, e.g. this repo's build machine:

    PYTHONPATH=tests/parity/modelopt/smoke /usr/bin/python3 tests/parity/modelopt/smoke/run_smoke.py \\
        --bin build/quantforge --cuda off --work /tmp/qf-modelopt-smoke

sitecustomize.py (loaded through PYTHONPATH, also by the ModelOpt subprocess) emulates
torch.float8_e4m3fn as float16 storage holding values rounded to E4M3 (round to nearest even,
subnormal step 2^-9, NaN above 448: torch's cast on the values ModelOpt clamps); safetensors/ is a
minimal safe_open/save_file that stores the emulated float8 as F8_E4M3 bytes. Everything else is
ModelOpt's real code. It catches integration errors early; the real check is the GPU machine's.
"""
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", ".."))  # tests/parity
sys.path.insert(0, here)
import torch  # noqa: E402

if torch.float8_e4m3fn is not torch.float16:
    sys.exit("run_smoke.py: the float8 emulation is not active: set PYTHONPATH=" + here +
             " (and use it only where torch lacks float8, e.g. torch 1.13)")
import check_vs_modelopt as check  # noqa: E402
from safetensors.torch import to_bytes  # noqa: E402  (the smoke safetensors)

_tensor_bytes = check.tensor_bytes
check.tensor_bytes = lambda t: (to_bytes(t.detach().cpu()) if t.dtype == torch.float16
                                else _tensor_bytes(t))
sys.exit(check.main())
