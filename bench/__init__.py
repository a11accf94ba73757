"""Benchmarks: this operator, Intel's reference operator and a minimal floor, side by side on
the same local control plane. Entry point: ``python -m bench`` (bench/run.py)."""
