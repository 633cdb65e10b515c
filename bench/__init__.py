"""Benchmarks: `python -m bench [module ...]` runs each module's main(), which prints a table."""
