"""The report of a benchmark run: JSON with a stable schema (docs/bench-report.md), a markdown
table for BENCHMARKS.md, and the HTML page (c50k.bench.report_html)."""

from __future__ import annotations

import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from c50k.bench.advisor import advise
from c50k.bench.runner import Context, Step
from c50k.bench.scenarios import ScenarioResult
from c50k.bench.targets_setup import BASELINES

SCHEMA = "c50k-bench/1"
NONE = "-"  # A figure the tool could not measure, never a zero.


def ratios(steps: list[Step]) -> list[dict[str, Any]]:
    """c50k's throughput over each baseline's, for every label measured on both."""
    by_label: dict[str, dict[str, Step]] = {}
    for step in steps:
        by_label.setdefault(step.label, {})[step.target] = step
    rows = []
    for label, targets in by_label.items():
        ours = targets.get("c50k")
        if ours is None:
            continue
        row: dict[str, Any] = {"label": label, "c50k_rps": round(ours.throughput, 1)}
        for baseline in BASELINES:
            theirs = targets.get(baseline)
            if theirs is not None:
                row[f"{baseline}_rps"] = round(theirs.throughput, 1)
                row[f"c50k_over_{baseline}"] = (
                    round(ours.throughput / theirs.throughput, 3) if theirs.throughput else None
                )
        if len(row) > 2:  # Measured beside at least one baseline.
            rows.append(row)
    return rows


def build_report(
    ctx: Context, result: ScenarioResult, started: datetime, command: list[str]
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "scenario": result.name,
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "machine": ctx.machine.to_json() | {"platform": platform.platform()},
        "settings": result.settings
        | {"addresses": ctx.addresses, "targets": ctx.targets, "python": sys.version.split()[0]},
        "steps": [step.to_json() for step in result.steps],
        "ratios": ratios(result.steps),
        "limits": [str(limit) for limit in ctx.limits],
        "notes": ctx.notes,
        "advice": [item.to_json() for item in advise(ctx, result)],
        "passed": result.passed,
    }


def write_report(directory: Path, report: dict[str, Any]) -> Path:
    from c50k.bench.report_html import render_html  # noqa: PLC0415 -- matplotlib is slow to import.

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    (directory / "summary.md").write_text(summary_markdown(report))
    (directory / "report.html").write_text(render_html(report))
    return directory


def _cell(value: float | None, digits: int = 1) -> str:
    return NONE if value is None else f"{value:,.{digits}f}"


def summary_markdown(report: dict[str, Any]) -> str:
    """One table per run: every step, then the ratios, the checks that failed, the advice."""
    machine = report["machine"]
    lines = [
        f"### `{report['scenario']}` — {report['started_at']}",
        "",
        f"`{' '.join(report['command'])}` on {machine['cpus']} cores, "
        f"{machine['memory_bytes'] / 2**30:.0f} GiB, Python {report['settings']['python']}",
        "",
        "| target | step | rps | p50 ms | p99 ms | max ms | non-2xx | socket errors | "
        "error bodies | served | checks |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for step in report["steps"]:
        agg = step["aggregate"]
        served = agg["connections_served"]
        served_cell = NONE if served is None else f"{served}/{agg['connections']}"
        bodies_cell = NONE if agg["error_bodies"] is None else str(agg["error_bodies"])
        checks = (
            "pass"
            if step["passed"]
            else "FAIL: "
            + ", ".join(dict.fromkeys(c["name"] for c in step["checks"] if not c["passed"]))
        )
        lines.append(
            f"| {step['target']} | {step['label']} | {_cell(agg['throughput_rps'], 0)} | "
            f"{_cell(agg['latency_ms']['p50'])} | {_cell(agg['latency_ms']['p99'])} | "
            f"{_cell(agg['latency_ms']['max'])} | {agg['non_2xx']} | "
            f"{sum(agg['socket_errors'].values())} | "
            f"{bodies_cell} | {served_cell} | {checks} |"
        )
    figures = [
        f"- {step['target']}, {step['label']}: "
        + "; ".join(f"{name}: {value}" for name, value in step["figures"].items())
        for step in report["steps"]
        if step.get("figures")
    ]
    if figures:
        lines += ["", *figures]
    if report["ratios"]:
        lines += [
            "",
            "| step | c50k / naive | c50k / straightforward | c50k / ceiling |",
            "|---|---:|---:|---:|",
        ]
        for row in report["ratios"]:
            cells = [_cell(row.get(f"c50k_over_{b}"), 2) for b in BASELINES]
            lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    for limit in report["limits"]:
        lines.append(f"\n- limit: {limit}")
    for note in report["notes"]:
        lines.append(f"\n- {note}")
    if report["advice"]:
        lines += ["", "Advice:"]
        lines += [f"- `{a['setting']}` = {a['value']}: {a['reason']}" for a in report["advice"]]
    return "\n".join(lines) + "\n"
