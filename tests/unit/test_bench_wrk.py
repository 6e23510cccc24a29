"""wrk's output, parsed from recordings of real runs against `c50k upstream`.

Recorded with wrk 4.1.0 (Debian) and src/c50k/bench/wrk_report.lua:
  wrk_clean    healthy mock, -c4 -t2 -d1s, paths /posts/1 /posts/2 /posts/3
  wrk_status   mock --error-rate 0.3 --status 500 --seed 7, -c4 -t2 -d1s
  wrk_timeout  mock --latency-ms 1500, -c4 -t1 -d3s --timeout 1s
  wrk_refused  nothing listening on 127.0.0.1:1
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from c50k.bench.results import GeneratorError
from c50k.bench.wrk import (
    MAX_INLINE_PATHS,
    WrkOptions,
    parse_wrk_output,
    undo_wrk_correction,
    wrk_command,
)

DATA = Path(__file__).parent / "data"
OPTIONS = WrkOptions(url="http://127.0.0.1:9/posts/1", connections=4, threads=2)


def recording(name: str) -> str:
    return (DATA / f"{name}.txt").read_text()


def test_clean_run() -> None:
    run = parse_wrk_output(recording("wrk_clean"), OPTIONS, ["wrk"])
    assert run.tool == "wrk"
    assert run.requests == 66094
    assert run.status == Counter({200: 66094})
    assert run.errors == {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    assert run.error_bodies == 0
    assert run.body_bytes == 25424159
    assert run.duration_seconds == pytest.approx(1.098445)
    assert run.latency.total == run.requests
    assert (run.latency.percentile(50), run.latency.percentile(99)) == (60, 149)
    assert run.latency.max == 4731
    assert run.timeline == {0: (60111, 0), 1: (5983, 0)}
    assert run.connections_served is None


def test_wrk_correction_is_undone() -> None:
    # wrk's own histogram holds 68869 samples for 66094 responses: synthetic ones.
    assert '"latency_count":68869' in recording("wrk_clean")
    run = parse_wrk_output(recording("wrk_clean"), OPTIONS, ["wrk"])
    assert run.latency.total == 66094


def test_non_2xx_and_error_bodies() -> None:
    run = parse_wrk_output(recording("wrk_status"), OPTIONS, ["wrk"])
    assert run.requests == 45286
    assert run.status == Counter({200: 31704, 500: 13582})
    assert run.non_2xx == 13582
    # The mock's injected failures answer {"error": "injected"}.
    assert run.error_bodies == 13582
    assert run.socket_errors == 0
    assert run.latency.total == 45286
    assert (run.latency.percentile(50), run.latency.percentile(99)) == (62, 305)
    assert run.timeline == {0: (45286, 13582)}


def test_responses_slower_than_the_timeout() -> None:
    run = parse_wrk_output(recording("wrk_timeout"), OPTIONS, ["wrk"])
    # wrk counts a late response as a request and as a timeout, and keeps it out of the
    # histogram; requests still in flight when the run ends are not counted at all.
    assert run.requests == 8
    assert run.errors == {"connect": 0, "read": 0, "write": 0, "timeout": 8}
    assert run.latency.total == 0
    assert run.status == Counter({200: 8})


def test_refused_connection_is_an_error_carrying_wrk_output() -> None:
    with pytest.raises(GeneratorError, match="Connection refused") as caught:
        parse_wrk_output(recording("wrk_refused"), OPTIONS, ["wrk"])
    assert caught.value.output.startswith("unable to connect to 127.0.0.1:1")


def test_disagreeing_human_lines_are_rejected() -> None:
    text = recording("wrk_timeout").replace("timeout 8", "timeout 7")
    with pytest.raises(GeneratorError, match="socket errors line"):
        parse_wrk_output(text, OPTIONS, ["wrk"])
    text = recording("wrk_status").replace("Non-2xx or 3xx responses: 13582", "")
    with pytest.raises(GeneratorError, match="Non-2xx"):
        parse_wrk_output(text, OPTIONS, ["wrk"])


def wrk_stats_correct(data: Counter[int], expected: int) -> Counter[int]:
    """wrk 4.1.0's stats_correct(), transcribed from stats.c."""
    out = Counter(data)
    for n in range(expected * 2, max(data, default=0) + 1):
        count = data[n]  # Only lower buckets have been added to so far.
        m = n - expected
        while count and m > expected:
            out[m] += count
            m -= expected
    return out


def test_undo_inverts_wrks_correction_exactly() -> None:
    rng = random.Random(5)  # noqa: S311 -- test data, not secrets.
    for _ in range(50):
        original = Counter(rng.choice([80, 90, 300, 900, 2500, 7000]) for _ in range(400))
        connections = rng.choice([1, 4, 20])
        duration_us = rng.randrange(100_000, 3_000_000)
        requests = original.total()
        interval = duration_us // (requests // connections)
        corrected = wrk_stats_correct(original, interval)
        assert undo_wrk_correction(corrected, duration_us, requests, connections) == original


def test_command_with_inline_paths(tmp_path: Path) -> None:
    options = WrkOptions(
        url="http://127.0.0.1:8000/items/1",
        connections=20,
        threads=2,
        duration_seconds=3,
        timeout_seconds=2,
        paths=["/items/1", "/items/2"],
    )
    assert wrk_command(options, Path("/s/wrk_report.lua"), tmp_path) == [
        "wrk",
        "--connections=20",
        "--threads=2",
        "--duration=3s",
        "--timeout=2s",
        "--script=/s/wrk_report.lua",
        "http://127.0.0.1:8000/items/1",
        "--",
        "/items/1",
        "/items/2",
    ]
    assert list(tmp_path.iterdir()) == []


def test_many_paths_go_through_a_file(tmp_path: Path) -> None:
    paths = [f"/items/{i}" for i in range(MAX_INLINE_PATHS + 1)]
    options = WrkOptions(url="http://127.0.0.1:8000/", connections=2, paths=paths)
    command = wrk_command(options, Path("wrk_report.lua"), tmp_path)
    assert command[-2] == "--"
    assert command[-1].startswith("@")
    assert Path(command[-1][1:]).read_text().splitlines() == paths
    with pytest.raises(ValueError, match="paths_dir"):
        wrk_command(options, Path("wrk_report.lua"))


def test_command_without_paths_requests_the_url() -> None:
    options = WrkOptions(url="http://127.0.0.1:8000/health", connections=1)
    assert wrk_command(options, Path("x.lua"))[-1] == "http://127.0.0.1:8000/health"


@pytest.mark.parametrize(
    "changes",
    [
        {"threads": 5},
        {"duration_seconds": 0},
        {"timeout_seconds": 0},
        {"paths": ["items/1"]},
        {"paths": ["/a b"]},
    ],
)
def test_options_wrk_would_reject(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 -- each case has its own message.
        WrkOptions(url="http://127.0.0.1:8000/", connections=4, **changes)  # type: ignore[arg-type]
