"""Orchestration, for the drivers (main.py, steps/sweep.py): config, running or reusing steps, the cache, the report."""
