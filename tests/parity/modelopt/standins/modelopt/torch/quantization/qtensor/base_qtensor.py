# quantforge stand-in (tests/parity/modelopt/assemble.sh) for modelopt/torch/quantization/qtensor/
# base_qtensor.py. The real BaseQuantizedTensor is FSDP-aware (QFSDPParam, QTensorWrapper,
# torch.serialization safe globals) and imports modelopt's FSDP utilities; MXFP4QTensor and
# NVFP4QTensor use only its constructor's two attributes, which this keeps as the real one sets them.


class BaseQuantizedTensor:
    """A packed tensor plus the shape and dtype it came from."""

    def __init__(self, original_shape, original_dtype, quantized_data):
        self.metadata = {"shape": original_shape, "dtype": original_dtype}
        self._quantized_data = quantized_data
