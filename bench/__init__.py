"""Benchmarks of the platform's plumbing (event bus, RPC, worker memory) with real workers.

Not tests: they measure and report, they do not assert. Run them with `make bench` or
`.venv/bin/python -m bench.run_all [--write]`; results go to docs/BENCHMARKS.md.
"""
