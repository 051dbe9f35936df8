# quantforge stand-in (tests/parity/modelopt/assemble.sh): an empty package marker. The real one
# imports the FP8/NVFP4 GEMM backends, which the DS-V4 exporter does not use.
