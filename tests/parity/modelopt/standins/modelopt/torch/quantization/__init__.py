# quantforge stand-in (tests/parity/modelopt/assemble.sh): an empty package marker. The real one
# registers quantization modes and plugins, which the DS-V4 exporter does not use.
