# quantforge stand-in (tests/parity/modelopt/assemble.sh) for modelopt/torch/quantization/
# backends/utils.py: NVFP4QTensor.quantize asks fp4_compatible() before trying TensorRT-LLM's FP4
# kernel, and only uses that kernel when also try_tensorrt=True, which the DS-V4 exporter never
# passes. So the answer cannot change a result; False keeps the plain torch path everywhere.


def fp4_compatible():
    """The TensorRT-LLM FP4 probe: never taken here."""
    return False
