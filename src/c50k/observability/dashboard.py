"""The Grafana dashboard (docs/grafana/c50k-dashboard.json), built here so that its queries
name only metrics c50k exports: a unit test checks both, and that the file is current.

Rows: RED (rate, errors, duration per route), the tiers (cache, upstream, store), and
saturation (in flight, shed, refused at the connection cap). Regenerate the file with
`python -m c50k.observability.dashboard > docs/grafana/c50k-dashboard.json`.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

WINDOW = "[$__rate_interval]"
PANEL_WIDTH, PANEL_HEIGHT, COLUMNS = 8, 8, 3


def _rate(metric: str, by: str = "", where: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}{where}{WINDOW}))"


def _quantile(q: float, metric: str, by: str = "") -> str:
    labels = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({labels}) (rate({metric}_bucket{WINDOW})))"


_HTTP = "c50k_http_requests_total"
_5XX = '{status=~"5.."}'
_ERRORS = _rate(_HTTP, where=_5XX) + " / " + _rate(_HTTP)
_HITS, _MISSES = _rate("c50k_cache_hits_total", "level"), _rate("c50k_cache_misses_total", "level")
_LATENCY = "c50k_http_request_duration_seconds"
_POOL = "sum by (shard, role)"

Query = tuple[str, str]  # (legend, PromQL)
Panel = tuple[str, str, list[Query]]  # (title, unit, queries)

PANELS: list[tuple[str, list[Panel]]] = [
    (
        "RED: requests, errors, duration",
        [
            ("Requests by route", "reqps", [("{{route}}", _rate(_HTTP, "route"))]),
            ("Error ratio (5xx)", "percentunit", [("5xx", _ERRORS)]),
            (
                "Latency by route",
                "s",
                [
                    ("p50 {{route}}", _quantile(0.5, _LATENCY, "route")),
                    ("p99 {{route}}", _quantile(0.99, _LATENCY, "route")),
                ],
            ),
        ],
    ),
    (
        "Tiers: cache, upstream, store",
        [
            (
                "Cache hit ratio by level",
                "percentunit",
                [("{{level}}", f"{_HITS} / ({_HITS} + {_MISSES})")],
            ),
            (
                "Cache loads by level",
                "ops",
                [("{{level}}", _rate("c50k_cache_loads_total", "level"))],
            ),
            (
                "Upstream calls by outcome",
                "reqps",
                [("{{outcome}}", _rate("c50k_upstream_requests_total", "outcome"))],
            ),
            (
                "Upstream latency",
                "s",
                [
                    (
                        "p99 {{outcome}}",
                        _quantile(0.99, "c50k_upstream_request_duration_seconds", "outcome"),
                    )
                ],
            ),
            (
                "Circuit breakers (0 closed, 1 half-open, 2 open)",
                "none",
                [("{{breaker}}", "max by (breaker) (c50k_circuit_breaker_state)")],
            ),
            (
                "Store pool in use",
                "none",
                [
                    ("checked out {{shard}} {{role}}", f"{_POOL} (c50k_store_pool_checked_out)"),
                    ("overflow {{shard}} {{role}}", f"{_POOL} (c50k_store_pool_overflow)"),
                    ("size {{shard}} {{role}}", f"{_POOL} (c50k_store_pool_size)"),
                ],
            ),
            (
                "Store pool wait",
                "s",
                [
                    (
                        "p99 {{shard}} {{role}}",
                        _quantile(0.99, "c50k_store_pool_wait_seconds", "shard, role"),
                    )
                ],
            ),
            (
                "Store reads by shard and the role that answered",
                "reqps",
                [("{{shard}} {{role}}", _rate("c50k_store_reads_total", "shard, role"))],
            ),
            (
                "Stale cache answers by reason",
                "reqps",
                [("{{reason}}", _rate("c50k_cache_stale_answers_total", "reason"))],
            ),
            (
                "Replication lag",
                "s",
                [
                    (
                        "{{shard}} {{replica}}",
                        "max by (shard, replica) (c50k_store_replication_lag_seconds)",
                    )
                ],
            ),
        ],
    ),
    (
        "Saturation",
        [
            ("Requests in flight", "none", [("in flight", "sum (c50k_http_requests_in_flight)")]),
            (
                "Shed by admission control, by reason",
                "reqps",
                [("{{reason}}", _rate("c50k_http_requests_shed_total", "reason"))],
            ),
            (
                "Queueing delay before work starts",
                "s",
                [
                    ("p50", _quantile(0.5, "c50k_http_queue_seconds")),
                    ("p99", _quantile(0.99, "c50k_http_queue_seconds")),
                ],
            ),
            ("Workers shedding", "none", [("shedding", "max (c50k_http_shedding)")]),
        ],
    ),
]


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    next_id = 1
    for row_title, row_panels in PANELS:
        panels.append(
            {"id": next_id, "type": "row", "title": row_title, "collapsed": False,
             "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []}
        )  # fmt: skip
        next_id += 1
        y += 1
        for index, (title, unit, queries) in enumerate(row_panels):
            x = (index % COLUMNS) * PANEL_WIDTH
            if index and index % COLUMNS == 0:
                y += PANEL_HEIGHT
            panels.append(
                {
                    "id": next_id,
                    "type": "timeseries",
                    "title": title,
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                    "gridPos": {"h": PANEL_HEIGHT, "w": PANEL_WIDTH, "x": x, "y": y},
                    "targets": [
                        {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
                        for i, (legend, expr) in enumerate(queries)
                    ],
                }
            )
            next_id += 1
        y += PANEL_HEIGHT
    return {
        "title": "c50k",
        "uid": "c50k-overview",
        "tags": ["c50k"],
        "timezone": "utc",
        "schemaVersion": 39,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                }
            ]
        },
        "panels": panels,
    }


def metric_names(board: dict[str, Any]) -> set[str]:
    """Every c50k_* series a panel queries."""
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    return {name for expr in exprs for name in re.findall(r"\bc50k_[a-z_]+", expr)}


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
