"""The benchmark report as one self-contained HTML page: no external scripts, styles or fonts;
the plots are inline SVG drawn by matplotlib. Reads the `c50k-bench/1` dict (docs/bench-report.md).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from functools import partial
from html import escape
from typing import Any

import matplotlib

# The harness runs headless: pyplot must never reach for a display.
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from c50k.bench.report import NONE
from c50k.bench.targets_setup import BASELINES

TARGETS = ("c50k", *BASELINES)
COLORS = {"c50k": "#1f6feb", "naive": "#d1242f", "straightforward": "#bf8700", "ceiling": "#6e7781"}
NINES_TICKS = (50, 90, 99, 99.9, 99.99, 100)
# p100 sits at -log10(0) = infinity on a nines axis; draw it one decade past p99.99.
P100_NINES = 5.0

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;
max-width:1500px;padding:0 16px;color:#1f2328}
h1{margin:0 0 4px}h2{margin:32px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
h3{margin:20px 0 4px}code{font:12px ui-monospace,monospace;background:#f6f8fa;padding:1px 4px}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #d0d7de;padding:3px 7px}
th{background:#f6f8fa;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
.wide{overflow-x:auto}.badge{display:inline-block;padding:2px 10px;border-radius:4px;
color:#fff;font-weight:600}.pass{background:#1a7f37}.fail{background:#cf222e}
td.bad{background:#ffebe9;color:#a40e26;font-weight:600}
tr.failed>td:first-child{border-left:4px solid #cf222e}
tr.checks td{font-size:12px;background:#fbfbfc}ul.checks{margin:0;padding-left:18px}
li.failed{color:#a40e26;font-weight:600}li.passed{color:#57606a}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:8px 0}
dt{color:#57606a}dd{margin:0}svg{max-width:100%;height:auto}
.plots{display:flex;flex-wrap:wrap;gap:12px}.muted{color:#57606a}
"""


def render_html(report: dict[str, Any]) -> str:
    """The whole page for one run. Pure apart from matplotlib: nothing is read or written."""
    steps: list[dict[str, Any]] = report["steps"]
    verdict = "PASS" if report["passed"] else "FAIL"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>c50k bench: {escape(report['scenario'])} {escape(report['started_at'])}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>c50k bench: <code>{escape(report['scenario'])}</code> "
        f'<span class="badge {verdict.lower()}">{verdict}</span></h1>',
        _header(report),
        "<h2>Steps</h2>",
        _steps_table(steps) if steps else '<p class="muted">No steps were measured.</p>',
        "<h2>c50k against the baselines</h2>",
        _ratios_table(report["ratios"]),
        _plots(steps),
        _lists(report),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _header(report: dict[str, Any]) -> str:
    machine = report["machine"]
    low, high = machine["ephemeral_ports"]
    facts = {
        "started": f"{report['started_at']} (finished {report['finished_at']})",
        "command": " ".join(report["command"]),
        "cores": str(machine["cpus"]),
        "memory": f"{machine['memory_bytes'] / 2**30:.1f} GiB",
        "kernel": machine["kernel"],
        "platform": machine.get("platform", NONE),
        "Python": machine["python"],
        "open files (nofile)": f"soft {machine['nofile_soft']}, hard {machine['nofile_hard']}",
        "ephemeral ports": f"{low}-{high} ({high - low + 1:,} per destination)",
        "somaxconn": str(machine["somaxconn"]),
        "tcp_max_syn_backlog": str(machine["tcp_max_syn_backlog"]),
    }
    facts |= {f"{tool} version": line for tool, line in machine["versions"].items()}
    settings = ", ".join(f"{k} = {v}" for k, v in report["settings"].items())
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts.items())
    return (
        f"<dl>{rows}</dl><details><summary>Scenario settings</summary>"
        f"<p><code>{escape(settings)}</code></p></details>"
    )


def _num(value: float | None, digits: int = 0) -> str:
    return NONE if value is None else f"{value:,.{digits}f}"


def _ms(value: float | None) -> str:
    if value is None:
        return NONE
    return _num(value, 2 if value < 10 else 1 if value < 100 else 0)


def _td(text: str, *, bad: bool = False) -> str:
    return f'<td class="n{" bad" if bad else ""}">{escape(text)}</td>'


STEP_COLUMNS = (
    "target", "step", "conns", "rps", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms",
    "non-2xx", "socket errors", "error bodies", "served", "CPU µs/req", "peak RSS MB",
    "RSS KB/conn", "peak open files",
)  # fmt: skip


def _steps_table(steps: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in STEP_COLUMNS)
    rows = [f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>']
    for step in steps:
        agg, server, latency = step["aggregate"], step["server"], step["aggregate"]["latency_ms"]
        errors = {kind: n for kind, n in agg["socket_errors"].items() if n}
        served = agg["connections_served"]
        cells = [
            f"<td>{escape(step['target'])}</td><td>{escape(step['label'])}</td>",
            _td(_num(step["connections"])),
            _td(_num(agg["throughput_rps"])),
            *(_td(_ms(latency[key])) for key in ("p50", "p90", "p99", "p99_9", "max")),
            _td(_num(agg["non_2xx"]), bad=agg["non_2xx"] > 0),
            _td(", ".join(f"{k} {n:,}" for k, n in errors.items()) or "0", bad=bool(errors)),
            _td(_num(agg["error_bodies"]), bad=bool(agg["error_bodies"])),
            _td(
                NONE if served is None else f"{served:,}/{agg['connections']:,}",
                bad=served is not None and served < agg["connections"],
            ),
            _td(_num(server["cpu_us_per_request"], 1)),
            _td(_num(server["peak_rss_mb"], 1)),
            _td(_num(server["rss_kb_per_connection"], 2)),
            _td(_num(server["peak_open_files"])),
        ]
        failed = "" if step["passed"] else ' class="failed"'
        rows.append(f"<tr{failed}>{''.join(cells)}</tr>")
        checks = "".join(
            f'<li class="{"passed" if c["passed"] else "failed"}">'
            f"{'✓' if c['passed'] else '✗ FAILED'} {escape(c['name'])}: {escape(c['detail'])}</li>"
            for c in step["checks"]
        )
        if checks:
            rows.append(
                f'<tr class="checks"><td colspan="{len(STEP_COLUMNS)}">'
                f'<ul class="checks">{checks}</ul></td></tr>'
            )
    rows.append("</tbody></table></div>")
    return "".join(rows)


def _ratios_table(ratios: list[dict[str, Any]]) -> str:
    if not ratios:
        return '<p class="muted">No step was measured on both c50k and a baseline.</p>'
    head = "".join(f"<th>c50k / {escape(b)}</th>" for b in BASELINES)
    rows = [f"<table><thead><tr><th>step</th><th>c50k rps</th>{head}</tr></thead><tbody>"]
    for row in ratios:
        cells = []
        for baseline in BASELINES:
            ratio = row.get(f"c50k_over_{baseline}")
            theirs = row.get(f"{baseline}_rps")
            text = NONE if ratio is None else f"{ratio:.2f}x"
            if theirs is not None:
                text += f" (vs {theirs:,.0f} rps)"
            # The ceiling (nginx serving a constant) is an upper bound: being below it is expected.
            slower = ratio is not None and ratio < 1 and baseline != "ceiling"
            cells.append(_td(text, bad=slower))
        rows.append(
            f"<tr><td>{escape(row['label'])}</td>{_td(_num(row['c50k_rps']))}{''.join(cells)}</tr>"
        )
    rows.append("</tbody></table>")
    return "".join(rows)


def _lists(report: dict[str, Any]) -> str:
    def items(values: list[str], empty: str) -> str:
        if not values:
            return f'<p class="muted">{escape(empty)}</p>'
        return "<ul>" + "".join(f"<li>{escape(v)}</li>" for v in values) + "</ul>"

    advice = [
        f"{'What bound the run' if a['setting'] == 'bound' else a['setting']} = {a['value']}: "
        f"{a['reason']}"
        for a in report["advice"]
    ]
    return (
        f"<h2>Limits</h2>{items(report['limits'], 'No machine or server limit capped the run.')}"
        f"<h2>Notes</h2>{items(report['notes'], 'None.')}"
        f"<h2>Advice</h2>{items(advice, 'None.')}"
    )


def _color(target: str) -> str | None:
    return COLORS.get(target)  # None: matplotlib's own cycle picks one.


def _plain(value: float, _pos: float | None = None) -> str:
    return f"{value:,g}"  # 1,000 ms and 25,000 rps read faster than 10^3 and 2.5e4.


def _legend(ax: Axes) -> None:
    # Outside the axes: inside, it hides whichever curve happens to run under it.
    if ax.lines or ax.containers:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")


def _svg(draw: Callable[[Figure], None], width: float = 6.4, height: float = 4) -> str:
    fig = plt.figure(figsize=(width, height))
    try:
        draw(fig)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    finally:
        plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # HTML needs neither the XML prolog nor the DOCTYPE.


def _nines(percentile: float) -> float:
    return P100_NINES if percentile >= 100 else -math.log10(1 - percentile / 100)


def _latency_plot(label: str, steps: list[dict[str, Any]], fig: Figure) -> None:
    ax = fig.subplots()
    for step in steps:
        points = [(_nines(p), ms) for p, ms in step["latency_curve_ms"] if ms > 0]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", label=step["target"], color=_color(step["target"]))
    if ax.lines:
        # Log scale only with positive data: matplotlib warns on an empty log axis.
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(_plain)
        low, high = ax.get_ylim()
        # Within one decade at most one power of ten is labelled: label the 2..9 ticks too.
        ax.yaxis.set_minor_formatter(_plain if high / low < 10 else NullFormatter())
        _legend(ax)
    else:
        ax.text(0.5, 0.5, "no latency samples", ha="center", transform=ax.transAxes)
    ax.set_xticks([_nines(p) for p in NINES_TICKS], [f"{p:g}" for p in NINES_TICKS])
    ax.set(title=f"Latency percentiles: {label}", xlabel="percentile", ylabel="ms")
    ax.grid(True, which="both", alpha=0.3)


def _timeline_plot(label: str, steps: list[dict[str, Any]], fig: Figure) -> None:
    top, bottom = fig.subplots(2, 1, sharex=True)
    for step in steps:
        if step["timeline"]:
            seconds, responses, bad = zip(*step["timeline"], strict=True)
            color = _color(step["target"])
            top.plot(seconds, responses, label=step["target"], color=color)
            bottom.plot(seconds, bad, label=step["target"], color=color)
    top.set(title=f"Over time: {label}", ylabel="responses / s")
    bottom.set(xlabel="second", ylabel="bad / s")
    _legend(top)
    for ax in (top, bottom):
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(_plain)
        ax.grid(True, alpha=0.3)


def _throughput_plot(labels: list[str], steps: list[dict[str, Any]], fig: Figure) -> None:
    found = dict.fromkeys(s["target"] for s in steps)
    present = sorted(found, key=lambda t: TARGETS.index(t) if t in TARGETS else len(TARGETS))
    rps = {(s["target"], s["label"]): s["aggregate"]["throughput_rps"] for s in steps}
    width = 0.8 / len(present)
    ax = fig.subplots()
    for i, target in enumerate(present):
        measured = [
            (x, rps[target, label]) for x, label in enumerate(labels) if (target, label) in rps
        ]
        xs = [x + (i - (len(present) - 1) / 2) * width for x, _ in measured]
        heights = [value for _, value in measured]
        bars = ax.bar(xs, heights, width, label=target, color=_color(target))
        ax.bar_label(bars, fmt="{:,.0f}", fontsize="x-small", rotation=90, padding=2)
    ax.set_xticks(range(len(labels)), labels)
    ax.set(title="Throughput per step", ylabel="responses / s")
    ax.margins(y=0.2)  # Room above the tallest bar for its rotated value.
    ax.yaxis.set_major_formatter(_plain)
    _legend(ax)
    ax.grid(True, axis="y", alpha=0.3)


def _plots(steps: list[dict[str, Any]]) -> str:
    if not steps:
        return ""
    labels = list(dict.fromkeys(step["label"] for step in steps))
    by_label = {label: [s for s in steps if s["label"] == label] for label in labels}
    throughput = _svg(partial(_throughput_plot, labels, steps), width=max(6.4, 1.6 * len(labels)))
    latency = "".join(_svg(partial(_latency_plot, label, by_label[label])) for label in labels)
    timeline = "".join(
        _svg(partial(_timeline_plot, label, by_label[label]), height=4.6) for label in labels
    )
    return (
        f"<h3>Throughput</h3>{throughput}"
        f'<h2>Latency percentiles</h2><div class="plots">{latency}</div>'
        f'<h2>Throughput and bad responses over time</h2><div class="plots">{timeline}</div>'
    )
