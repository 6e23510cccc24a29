"""h2load's output and request log, parsed from recordings of real runs (nghttp2 1.52, --h1).

h2load_clean        healthy `c50k upstream`, -c4 -t2 -D 1000ms --rps 50, two URLs
h2load_status       mock --error-rate 0.3 --status 500 --seed 7, -c4 -D 1000ms --rps 50
h2load_timeout      mock --latency-ms 1500, -c4 -n 12 --connection-inactivity-timeout 1000ms
h2load_refused      nothing listening on 127.0.0.1:1, -c4 -D 1000ms
h2load_cut_short    a raw asyncio server that answers every 50th request with a body
h2load_cut_short_n  shorter than its Content-Length and closes: -c4 -D 1000ms, and -n 1000
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from c50k.bench.h2load import H2loadOptions, h2load_command, parse_h2load_output
from c50k.bench.results import GeneratorError
from c50k.bench.runner import h2load_loads
from c50k.bench.targets import Target

DATA = Path(__file__).parent / "data"
URL = "http://127.0.0.1:9/posts/1"


def parse(name: str, **options: Any) -> Any:
    settings: dict[str, Any] = {"urls": [URL], "clients": 4, "log_file": DATA / f"{name}.log"}
    run_options = H2loadOptions(**(settings | options))
    return parse_h2load_output((DATA / f"{name}.txt").read_text(), run_options, ["h2load"])


def test_clean_run() -> None:
    run = parse("h2load_clean", duration_seconds=1, threads=2)
    assert run.tool == "h2load"
    assert run.requests == 200
    assert run.status == Counter({200: 200})
    assert run.errors == {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    assert run.error_bodies is None
    assert run.body_bytes == 77400
    assert run.duration_seconds == 1.0
    assert run.connections_served == 4
    assert run.latency.total == run.requests
    assert (run.latency.percentile(50), run.latency.percentile(99)) == (220, 3783)
    assert run.latency.max == 4970
    assert run.timeline == {0: (200, 0)}


def test_exact_status_codes_come_from_the_log() -> None:
    run = parse("h2load_status", duration_seconds=1)
    assert run.requests == 200
    assert run.status == Counter({200: 142, 500: 58})
    assert run.non_2xx == 58
    assert run.socket_errors == 0
    assert run.latency.total == 200
    assert run.timeline == {0: (200, 58)}


def test_inactivity_timeouts() -> None:
    run = parse("h2load_timeout", requests=12, inactivity_timeout_seconds=1)
    # 12 errored = 4 in flight when -N fired + 8 never sent by the closed clients.
    assert run.requests == 0
    assert run.errors == {"connect": 0, "read": 0, "write": 0, "timeout": 4}
    assert run.connections_served is None
    assert run.duration_seconds == pytest.approx(1.0)


def test_refused_connections() -> None:
    # h2load 1.52 exits 0 and prints nothing about it: only the absence of any connection.
    run = parse("h2load_refused", duration_seconds=1)
    assert run.requests == 0
    assert run.errors == {"connect": 4, "read": 0, "write": 0, "timeout": 0}
    assert run.connections_served == 0
    assert run.latency.total == 0


def test_responses_cut_short_are_read_errors_in_a_request_count_run() -> None:
    run = parse("h2load_cut_short_n", requests=1000)
    assert run.requests == 196
    assert run.errors == {"connect": 0, "read": 4, "write": 0, "timeout": 0}
    assert run.latency.total == 196


def test_a_duration_run_cannot_tell_cut_responses_from_its_own_stop() -> None:
    # The same 4 cut responses, but in a -D run they look like the responses every -D run
    # leaves arriving when it stops its clients: not counted as errors.
    run = parse("h2load_cut_short", duration_seconds=1)
    assert run.requests == 196
    assert run.errors == {"connect": 0, "read": 0, "write": 0, "timeout": 0}


def test_request_count_run_lasts_what_h2load_says() -> None:
    run = parse("h2load_cut_short_n", requests=1000)
    assert run.duration_seconds == pytest.approx(0.01633)


def test_warm_up_hides_body_bytes() -> None:
    # h2load 1.52 adds warm-up bodies to "data" but not to "total".
    run = parse("h2load_clean", duration_seconds=1, warm_up_seconds=1, threads=2)
    assert run.body_bytes is None


def test_a_log_from_another_run_is_rejected() -> None:
    text = (DATA / "h2load_clean.txt").read_text()
    options = H2loadOptions(
        urls=[URL], clients=4, duration_seconds=1, log_file=DATA / "h2load_cut_short.log"
    )
    with pytest.raises(GeneratorError, match="log holds 196 responses"):
        parse_h2load_output(text, options, ["h2load"])


def test_missing_summary_is_an_error() -> None:
    options = H2loadOptions(urls=[URL], clients=1, requests=1, log_file=DATA / "h2load_clean.log")
    with pytest.raises(GeneratorError, match="no 'requests:' line"):
        parse_h2load_output("h2load: ev_epoll.c:134: epoll_modify: Assertion", options, [])


def test_duration_command() -> None:
    options = H2loadOptions(
        urls=["http://127.0.0.1:8000/items/1", "http://127.0.0.1:8000/items/2"],
        clients=100,
        threads=2,
        duration_seconds=1.5,
        warm_up_seconds=0.5,
        rps=2.5,
        log_file=Path("requests.log"),
    )
    assert h2load_command(options) == [
        "h2load",
        "--h1",
        "--clients=100",
        "--threads=2",
        "--duration=1500ms",
        "--warm-up-time=500ms",
        "--rps=2.5",
        "--log-file=requests.log",
        "http://127.0.0.1:8000/items/1",
        "http://127.0.0.1:8000/items/2",
    ]
    assert options.limit_seconds == pytest.approx(32.0)  # 1.5 s + 0.5 s warm-up + 30 s margin.


def test_request_count_command_with_timeouts() -> None:
    options = H2loadOptions(
        urls=[URL], clients=4, requests=40, inactivity_timeout_seconds=2, active_timeout_seconds=5
    )
    assert h2load_command(options)[4:] == [
        "--requests=40",
        "--connection-inactivity-timeout=2000ms",
        "--connection-active-timeout=5000ms",
        URL,
    ]
    assert options.limit_seconds == options.max_seconds


@pytest.mark.parametrize(
    "changes",
    [
        {"requests": 10},  # Both duration and requests.
        {"duration_seconds": None},  # Neither.
        {"inactivity_timeout_seconds": 1.0},  # -N aborts h2load 1.52 in a duration run.
        {"active_timeout_seconds": 1.0},  # -T never fires in a duration run.
        {"threads": 5},
        {"urls": [URL, "http://127.0.0.2:9/posts/2"]},
        {"duration_seconds": None, "requests": 3},
    ],
)
def test_options_h2load_would_reject_or_mishandle(changes: dict[str, Any]) -> None:
    base = H2loadOptions(urls=[URL], clients=4, duration_seconds=1)
    with pytest.raises(ValueError):  # noqa: PT011 -- each case has its own message.
        dataclasses.replace(base, **changes)


def test_clients_are_spread_over_processes_addresses_and_threads(tmp_path: Path) -> None:
    target = Target("c50k", "http://127.0.0.1:8000", 8000, ["127.0.0.1"], [])
    addresses = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]
    loads = h2load_loads(
        target, addresses, 50_000, ["/items/1"], tmp_path, per_process=5_000, per_thread=250,
        duration_seconds=60,
    )  # fmt: skip
    assert [(load.clients, load.threads) for load in loads] == [(5_000, 20)] * 10
    assert [load.urls[0] for load in loads[:5]] == [
        f"http://{address}:8000/items/1" for address in [*addresses, addresses[0]]
    ]
    # Fewer clients than a thread takes: one thread a process, never more threads than clients.
    small = h2load_loads(
        target, addresses, 30, ["/items/1"], tmp_path, per_process=5_000, per_thread=250,
        duration_seconds=60,
    )  # fmt: skip
    assert [(load.clients, load.threads) for load in small] == [(8, 1), (8, 1), (7, 1), (7, 1)]
