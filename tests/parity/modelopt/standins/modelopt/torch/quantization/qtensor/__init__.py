# quantforge stand-in (tests/parity/modelopt/assemble.sh) for modelopt/torch/quantization/qtensor/
# __init__.py: exports only the two classes the DS-V4 exporter imports (the real one star-imports
# every qtensor class, some of which need CUDA extensions).
from .mxfp4_tensor import MXFP4QTensor
from .nvfp4_tensor import NVFP4QTensor

__all__ = ["MXFP4QTensor", "NVFP4QTensor"]
