"""pathattr benchmarks: one harness (harness.py), cases per device (cpu.py)."""
