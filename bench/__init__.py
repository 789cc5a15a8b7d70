"""Benchmarks (bench/README.md, "Targets"): run with ``python -m bench.crm``."""
