"""Benchmarks (scripts printing tables): ``python -m bench.run_all [--quick]``."""
