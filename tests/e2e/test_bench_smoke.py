"""`c50k bench` end to end, small: one generator, 100 connections, two seconds. The report
must follow its schema, and its counts must agree with the mock upstream's own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
STEP_FIELDS = {
    "target",
    "label",
    "connections",
    "service",
    "aggregate",
    "latency_curve_ms",
    "timeline",
    "generators",
    "server",
    "upstream_requests",
    "checks",
    "figures",
    "passed",
}
SUMMARY_FIELDS = {
    "processes",
    "connections",
    "connections_served",
    "requests",
    "duration_seconds",
    "throughput_rps",
    "latency_ms",
    "status",
    "non_2xx",
    "socket_errors",
    "error_bodies",
}


def run_bench(tmp_path: Path, *args: str, verdict: bool = True) -> dict[str, Any]:
    """The report of a `c50k bench` run; with `verdict`, the run must also have passed (exit
    status 1 is a failed check, anything else a failed run)."""
    completed = subprocess.run(
        [sys.executable, "-m", "c50k", "bench", *args, "--results", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    allowed = {0} if verdict else {0, 1}
    assert completed.returncode in allowed, completed.stdout[-3000:] + completed.stderr[-3000:]
    (report_dir,) = tmp_path.iterdir()
    assert (report_dir / "report.html").read_text().count("<svg") >= 2
    assert (report_dir / "summary.md").read_text().startswith("### `")
    report: dict[str, Any] = orjson.loads((report_dir / "report.json").read_bytes())
    return report


def test_fanout_smoke_run_agrees_with_the_mock_upstream(tmp_path: Path) -> None:
    report = run_bench(
        tmp_path,
        "fanout",
        "--duration",
        "2",
        "--connections",
        "100",
        "--targets",
        "c50k",
        "--addresses",
        "1",
    )
    assert report["schema"] == "c50k-bench/1"
    assert report["scenario"] == "fanout"
    assert report["passed"] is True
    assert {"cpus", "nofile_soft", "ephemeral_ports", "somaxconn", "versions"} <= set(
        report["machine"]
    )
    measured = [s for s in report["steps"] if s["label"].endswith("ms upstream")]
    assert [s["label"] for s in measured] == ["0 ms upstream", "20 ms upstream"]
    for step in measured:
        assert set(step) == STEP_FIELDS
        aggregate = step["aggregate"]
        assert set(aggregate) == SUMMARY_FIELDS
        assert aggregate["processes"] == 1
        assert aggregate["connections"] == 100
        assert aggregate["requests"] > 0
        assert aggregate["error_bodies"] == 0
        assert aggregate["non_2xx"] == 0
        # The mock counted two calls for every answer: exactly, but for calls in flight at
        # the edges of the step.
        calls, answers = step["upstream_requests"], aggregate["requests"]
        assert abs(calls - 2 * answers) <= 2 * 100
        assert {c["name"] for c in step["checks"]} >= {"two upstream calls per answer"}
        assert step["server"]["cpu_seconds"] > 0
        assert step["latency_curve_ms"][0][0] == 50


@pytest.mark.timeout(300)  # Seven steps, each starting its own server.
def test_db_smoke_run_reports_roles_and_the_asyncpg_peer(tmp_path: Path) -> None:
    report = run_bench(
        tmp_path, "db", "--duration", "2", "--connections", "16", "--targets", "c50k",
        "--addresses", "1", verdict=False,
    )  # fmt: skip
    # Speed targets are the benchmark's verdict, not this test's: every other check holds.
    failed = [c["name"] for s in report["steps"] for c in s["checks"] if not c["passed"]]
    assert all(name.endswith("(target)") for name in failed), failed
    steps = {
        (s["target"], s["label"]): s for s in report["steps"] if not s["label"].startswith("warm")
    }
    replicas = steps["c50k", "reads on replicas, reads, 16 connections"]
    primaries = steps["c50k", "primaries only, reads, 16 connections"]
    writes = steps["c50k", "reads on replicas, 10% writes, 16 connections"]
    for step in (replicas, primaries, writes):
        assert set(step) == STEP_FIELDS
        assert step["aggregate"]["non_2xx"] == 0
        assert step["aggregate"]["error_bodies"] == 0
        assert "mean pool wait" in step["figures"]
        assert step["figures"]["CPU per request"].endswith(" ms")
    served, _, total = replicas["figures"]["reads served by replicas"].partition(" of ")
    assert 0 < int(served) <= int(total.split()[0])
    assert primaries["figures"]["reads served by replicas"].startswith("0 of ")
    for step in (replicas, primaries):
        # Beside both peers, on the same server, ids and connections.
        for peer in ("asyncpg", "asyncpg-no-reset"):
            theirs = steps[peer, step["label"]]
            assert theirs["aggregate"]["error_bodies"] == 0
            assert theirs["aggregate"]["non_2xx"] == 0
            assert "x throughput; p99 " in step["figures"][f"c50k / {peer}"]
        assert [c["name"] for c in step["checks"] if c["name"].endswith("(target)")] == [
            "reads at >= 0.9x the asyncpg peer (target)"
        ]
