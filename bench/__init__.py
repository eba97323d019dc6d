"""Benchmarks: each prints its figures; docs/benchmarks.md records them."""
