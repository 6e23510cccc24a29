"""Metrics, logs, traces and profiling: what an operator sees of a running c50k."""
