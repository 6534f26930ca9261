"""Benchmark suites and corpus tooling (a package so that ``tests/`` can import the helpers)."""
