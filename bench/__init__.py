"""Benchmarks: each prints its figures beside their targets and writes bench/results/<name>.json."""
