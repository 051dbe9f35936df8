# quantforge stand-in (tests/parity/modelopt/assemble.sh) for modelopt/torch/quantization/utils/
# __init__.py: re-exports the three reduce helpers NVFP4QTensor imports. core_utils.py next to it
# holds ModelOpt's own code of those helpers, cut out of the real core_utils.py by assemble.sh
# (the rest of that file needs modelopt's config, FSDP and accelerate plumbing).
from .core_utils import reduce_amax, reduce_block_amax, reduce_block_padding

__all__ = ["reduce_amax", "reduce_block_amax", "reduce_block_padding"]
