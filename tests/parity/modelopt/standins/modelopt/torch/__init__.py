# quantforge stand-in (tests/parity/modelopt/assemble.sh): an empty package marker.
