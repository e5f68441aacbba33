"""Benchmarks: the reference workloads (W1-W8) and the code that times them."""
