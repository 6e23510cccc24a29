"""Real HAProxy and nginx in front of three app instances under a constant load: an instance
killed, every instance restarted in turn, the balancer reloaded — and no request fails."""

from __future__ import annotations

import os
import signal
import time
from functools import partial
from pathlib import Path

import httpx
import pytest

from tests.integration.edge import KINDS, Edge, Kind, edge_stack, wait_for_failover
from tests.integration.load import ConstantLoad, LoadReport

# HAProxy checks /ready every 1 s and needs 2 failures: a dead instance is out within ~2 s.
OUT_OF_ROTATION_SECONDS = 3.0


def assert_no_failure(report: LoadReport, edge: Edge) -> None:
    assert report.failures == [], (
        f"{len(report.failures)} of {report.sent} failed:\n"
        + "\n".join(report.failures[:20])
        + f"\n{edge.lb_log()[-3000:]}"
    )
    assert report.ok > 0


def in_rotation(edge: Edge, index: int) -> bool:
    return edge.haproxy_status()[f"app-{index}"] == "UP"


def serves_more(edge: Edge, index: int, served: int) -> bool:
    return edge.served(edge.apps[index]) > served


def survivors_serve_more(edge: Edge, before: list[int]) -> bool:
    return all(serves_more(edge, i, served) for i, served in zip((0, 2), before, strict=True))


def workers_started(edge: Edge, index: int) -> int:
    """Workers an instance has started (gunicorn's new ones after a SIGHUP among them)."""
    return edge.app_log(edge.apps[index]).count("Application startup complete")


def new_worker_up(edge: Edge, index: int, started: int) -> bool:
    return workers_started(edge, index) > started


def reloaded(edge: Edge, load: ConstantLoad, reloads: int, answered: int) -> bool:
    """HAProxy's worker before the last reload exited, and requests were answered since."""
    return edge.lb_log().count("Former worker") >= reloads and load.report.ok > answered


@pytest.mark.parametrize("kind", KINDS)
def test_kill9_of_one_instance_fails_no_request(tmp_path: Path, kind: Kind) -> None:
    with edge_stack(tmp_path / "stack", kind) as edge, ConstantLoad(edge.url) as load:
        edge.wait_until("served by every instance", lambda: all(edge.served(a) for a in edge.apps))
        victim = edge.apps[1]
        killed_at = time.monotonic()
        edge.kill9(victim)
        out_at = wait_for_failover(kind, edge.runtime_dir, victim.name, victim.address)
        survivors_before = [edge.served(a) for a in (edge.apps[0], edge.apps[2])]
        edge.wait_until(
            "served by both survivors", partial(survivors_serve_more, edge, survivors_before)
        )
        report = load.stop()
        survivors_after = [edge.served(a) for a in (edge.apps[0], edge.apps[2])]
    assert_no_failure(report, edge)
    assert out_at - killed_at <= OUT_OF_ROTATION_SECONDS
    assert all(a > b for a, b in zip(survivors_after, survivors_before, strict=True))


@pytest.mark.parametrize("kind", KINDS)
def test_rolling_restart_fails_no_request(tmp_path: Path, kind: Kind) -> None:
    with edge_stack(tmp_path / "stack", kind) as edge, ConstantLoad(edge.url) as load:
        edge.wait_until("served by every instance", lambda: all(edge.served(a) for a in edge.apps))
        # gunicorn's reload: new workers start, then the old ones drain.
        for index, app in enumerate(edge.apps):
            started = workers_started(edge, index)
            os.kill(app.pid, signal.SIGHUP)
            edge.wait_until("a new worker up", partial(new_worker_up, edge, index, started))
        # Then a full stop (drain, exit) and start of each instance, one at a time.
        for index, app in enumerate(edge.apps):
            edge.restart(app)
            if kind == "haproxy":
                edge.wait_until("back in rotation", partial(in_rotation, edge, index))
            edge.wait_until("serving again", partial(serves_more, edge, index, edge.served(app)))
        report = load.stop()
    assert_no_failure(report, edge)


def test_haproxy_reload_fails_no_connection(tmp_path: Path) -> None:
    with (
        edge_stack(tmp_path / "stack", "haproxy", instances=2) as edge,
        ConstantLoad(edge.url, keepalive=False) as load,
    ):
        edge.wait_until("served by every instance", lambda: all(edge.served(a) for a in edge.apps))
        for reloads in range(1, 4):
            # The master starts a new worker with the new config, which takes the listeners
            # over; the old one finishes its connections and exits.
            answered = load.report.ok
            os.kill(edge.lb.pid, signal.SIGUSR2)
            edge.wait_until("reloaded", partial(reloaded, edge, load, reloads, answered))
        report = load.stop()
        log = edge.lb_log()
    assert_no_failure(report, edge)
    assert log.count("Reloading HAProxy") >= 3, log[-3000:]


def test_nginx_fails_open_when_every_instance_rests(tmp_path: Path) -> None:
    """Every instance failed once (all were down a moment, as in a connect storm); nginx
    serves again as soon as one is back instead of answering 502 "no live upstreams" until
    the rest period (2 x the check interval, 30 s here) ends."""
    with edge_stack(tmp_path, "nginx", instances=2, C50K_LB_CHECK_INTERVAL_SECONDS="15") as edge:
        for app in edge.apps:
            app.stop()
        assert httpx.get(f"{edge.url}/items/1", timeout=10).status_code == 502
        assert edge.lb_log().count("temporarily disabled") == len(edge.apps), edge.lb_log()
        started = time.monotonic()
        for app in edge.apps:
            edge.restart(app)
        answer = httpx.get(f"{edge.url}/items/1", timeout=10)
        assert time.monotonic() - started < 30, "the instances took the whole rest period"
        assert answer.status_code == 200, edge.lb_log()[-3000:]
