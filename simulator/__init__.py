"""Local, faithful servers for the four vendor APIs (demo, tests, benchmarks)."""
