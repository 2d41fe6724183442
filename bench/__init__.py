"""Benchmarks: ``python -m bench [NAME ...]`` (see ``bench.__main__``); results in BENCHMARKS.md."""
