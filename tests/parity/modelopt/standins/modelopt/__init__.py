# quantforge stand-in (tests/parity/modelopt/assemble.sh): an empty package marker. ModelOpt's
# real modelopt/__init__.py pulls in the whole library; the DS-V4 exporter needs none of it.
