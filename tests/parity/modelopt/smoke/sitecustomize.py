# SMOKE ONLY (tests/parity/modelopt/smoke/run_smoke.py; torch 1.13 has no float8): float8_e4m3fn
# is emulated as float16 storage holding values rounded to E4M3 (round to nearest even, 2^-9
# subnormal step, NaN above 448). Every .to(float16) is taken as that cast: nothing on the checked
# paths uses float16 otherwise. Does nothing where torch has float8.
import torch
if not hasattr(torch, "float8_e4m3fn"):
    torch.float8_e4m3fn = torch.float16
    torch.float8_e5m2 = torch.float16
    _orig_to = torch.Tensor.to

    def e4m3_round(x):
        x = x.float()
        _, e = torch.frexp(x)
        e = torch.clamp(e - 1, min=-6)
        q = torch.ldexp(torch.ones_like(x), (e - 3).float())
        r = torch.round(x / q) * q
        r = torch.where(r.abs() > 448, torch.full_like(r, float("nan")), r)
        return torch.where(x == 0, x, r)

    def _to(self, *args, **kwargs):
        target = args[0] if args else kwargs.get("dtype")
        if target is torch.float16 and self.dtype != torch.float16:
            return _orig_to(e4m3_round(self), torch.float16)
        return _orig_to(self, *args, **kwargs)

    torch.Tensor.to = _to
    torch.e4m3_round = e4m3_round
