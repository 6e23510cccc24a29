"""`c50k render prometheus`: a Prometheus configuration that scrapes the metrics exporter of
every c50k instance (C50K_METRICS_PORT on each app server, never through the load balancer).
`promtool check config` accepts what this writes (a test runs it)."""

from __future__ import annotations

import re

from c50k.inventory import Instance

DEFAULT_INTERVAL_SECONDS = 15


def render_scrape_config(
    instances: list[Instance],
    *,
    job: str = "c50k",
    interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", job):
        raise ValueError(f"job name {job!r} must be letters, digits, '_' or '-'")
    if interval_seconds < 1:
        raise ValueError("the scrape interval must be at least 1 s")
    # A scrape must end before the next starts.
    timeout = max(1, min(10, interval_seconds - 1)) if interval_seconds > 1 else 1
    targets = "\n".join(f"          - '{instance.address}'" for instance in instances)
    return f"""\
# Rendered by `c50k render prometheus`; render it again rather than editing it.
global:
  scrape_interval: {interval_seconds}s
  evaluation_interval: {interval_seconds}s

scrape_configs:
  - job_name: '{job}'
    metrics_path: /metrics
    scrape_timeout: {timeout}s
    static_configs:
      - targets:
{targets}
"""
