"""Benchmark harness: Online Retail replicated N times, run through the Dagster CLI, timed per asset.

`python -m bench.generate`, `python -m bench.run_pipeline`, `python -m bench.metric_queries`;
see docs/bench.md.
"""
