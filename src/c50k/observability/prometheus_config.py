"""`c50k render prometheus`: a Prometheus configuration that scrapes the metrics exporter of
every c50k instance (C50K_METRICS_PORT on each app server, never through the load balancer).
`promtool check config` accepts what this writes (a test runs it)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

DEFAULT_INTERVAL_SECONDS = 15
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")


@dataclass(frozen=True, slots=True)
class Instance:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_instances(text: str) -> list[Instance]:
    """`host:port,host:port` (IPv6 as `[::1]:9101`) into instances; ValueError names the
    first bad entry."""
    instances = []
    for raw in (part.strip() for part in text.split(",")):
        if not raw:
            continue
        host, sep, port = raw.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
            valid_host = _is_ip(host)
        else:
            valid_host = _is_ip(host) or _HOSTNAME.fullmatch(host) is not None
        if not sep or not valid_host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"instance {raw!r} is not host:port")
        instances.append(Instance(host, int(port)))
    if not instances:
        raise ValueError("no instances given")
    if len(set(instances)) != len(instances):
        raise ValueError("an instance is listed twice")
    return instances


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


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
    targets = "\n".join(f"          - '{instance}'" for instance in instances)
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
