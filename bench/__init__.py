"""Benchmark harness: `python -m bench` (see bench/README.md).

Not part of the test suite: it measures and reports, it never passes or fails on a target.
"""
