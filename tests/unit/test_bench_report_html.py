"""The HTML report: one self-contained page that states the run's facts, escaped, with plots."""

from __future__ import annotations

import re
from typing import Any

import matplotlib.pyplot as plt

from c50k.bench.report_html import render_html

CURVE = (50, 75, 90, 95, 99, 99.5, 99.9, 99.99, 100)


def step(
    target: str, label: str, rps: float, *, served: int | None, failed_detail: str | None = None
) -> dict[str, Any]:
    checks = [{"name": "no socket errors", "passed": True, "detail": "0 errors"}]
    if failed_detail is not None:
        checks.append({"name": "p99 (target)", "passed": False, "detail": failed_detail})
    return {
        "target": target,
        "label": label,
        "connections": 256,
        "service": {},
        "aggregate": {
            "processes": 2,
            "connections": 256,
            "connections_served": served,
            "requests": int(rps * 10),
            "duration_seconds": 10.0,
            "throughput_rps": rps,
            "latency_ms": {"p50": 1.2, "p90": 3.4, "p99": 12.5, "p99_9": 40.0, "max": 210.0},
            "status": {"200": int(rps * 10) - 7, "503": 7},
            "non_2xx": 7,
            "socket_errors": {"connect": 0, "read": 3, "write": 0, "timeout": 1},
            "error_bodies": None if served is not None else 0,
        },
        "latency_curve_ms": [[p, 1.0 + i * i] for i, p in enumerate(CURVE)],
        "timeline": [[s, int(rps), s % 3] for s in range(10)],
        "generators": [],
        "server": {
            "cpu_seconds": 12.0,
            "cpu_us_per_request": 48.2,
            "idle_rss_mb": 40.0,
            "peak_rss_mb": 95.5,
            "rss_kb_per_connection": 220.16,
            "peak_open_files": 300,
            "processes_at_peak": [],
        },
        "upstream_requests": None,
        "checks": checks,
        "passed": failed_detail is None,
    }


def report(steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schema": "c50k-bench/1",
        "scenario": "hot",
        "started_at": "2025-01-02T03:04:05+00:00",
        "finished_at": "2025-01-02T03:09:05+00:00",
        "command": ["c50k", "bench", "hot"],
        "machine": {
            "cpus": 8,
            "memory_bytes": 16 * 2**30,
            "kernel": "6.8.0",
            "python": "3.11.9",
            "nofile_soft": 1024,
            "nofile_hard": 524288,
            "ephemeral_ports": [32768, 60999],
            "somaxconn": 4096,
            "tcp_max_syn_backlog": 1024,
            "versions": {"c50k": "0.1.0", "wrk": "wrk 4.2.0"},
            "platform": "Linux-6.8.0-x86_64",
        },
        "settings": {"duration_seconds": 10, "python": "3.11.9"},
        "steps": steps,
        "ratios": [
            {
                "label": "256 connections",
                "c50k_rps": 30000.0,
                "naive_rps": 4000.0,
                "c50k_over_naive": 7.5,
            },
            {
                "label": "1024 connections",
                "c50k_rps": 29000.0,
                "naive_rps": 0.0,
                "c50k_over_naive": None,
            },
        ],
        "limits": [],
        "notes": ["<script>alert(1)</script> & friends"],
        "advice": [{"setting": "bound", "value": "CPU", "reason": "8 of 8 cores busy"}],
        "passed": False,
    }


def test_page_states_the_facts_and_failures() -> None:
    page = render_html(
        report(
            [
                step("c50k", "256 connections", 30000.0, served=256),
                step("naive", "256 connections", 4000.0, served=None),
                step(
                    "c50k", "1024 connections", 29000.0, served=250, failed_detail="p99 <b>98</b>"
                ),
                step("naive", "1024 connections", 0.0, served=None),
            ]
        )
    )
    assert page.startswith("<!DOCTYPE html>")
    assert "hot" in page
    assert "FAIL" in page
    assert "p99 &lt;b&gt;98&lt;/b&gt;" in page  # The failed check's detail, escaped.
    assert '<li class="failed">' in page
    assert "7.50x" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; friends" in page
    assert "<script" not in page.lower()
    assert page.count("<svg") >= 3
    assert plt.get_fignums() == []
    assert "<?xml" not in page
    assert "250/256" in page
    assert "read 3, timeout 1" in page
    assert "No machine or server limit capped the run." in page
    assert not re.search(r"""(href|src)=["']?https?:""", page)  # Nothing fetched from elsewhere.


def test_a_run_without_steps_still_renders() -> None:
    empty = report([]) | {"ratios": [], "notes": [], "advice": [], "passed": True}
    page = render_html(empty)
    assert "No steps were measured." in page
    assert "PASS" in page
    assert "<svg" not in page
