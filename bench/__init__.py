"""Benchmarks (DESIGN.md, "Performance targets"): run with ``python -m bench.crm``."""
