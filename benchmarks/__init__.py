"""Benchmarks of fleet against the bare git/process floor (docs/benchmarks.md).

Run from the repository root:

    python -m benchmarks.run --sizes 10 100 1000

Nothing here runs in the default test suite (tests/test_benchmarks_smoke.py only
checks that the harness works at N=10, and asserts no timing).
"""
