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

from tests.integration.edge import KINDS, Edge, Kind, edge_stack
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


def out_of_rotation(edge: Edge, victim_index: int) -> bool:
    if edge.kind == "haproxy":
        return edge.haproxy_status()[f"app-{victim_index}"].startswith("DOWN")
    # nginx has passive checks only: the first failed attempt takes the instance out.
    victim = edge.apps[victim_index]
    return f'upstream: "http://{victim.address}' in edge.lb_log() and (
        "temporarily disabled" in edge.lb_log()
    )


def in_rotation(edge: Edge, index: int) -> bool:
    return edge.haproxy_status()[f"app-{index}"] == "UP"


def serves_more(edge: Edge, index: int, served: int) -> bool:
    return edge.served(edge.apps[index]) > served


@pytest.mark.parametrize("kind", KINDS)
def test_kill9_of_one_instance_fails_no_request(tmp_path: Path, kind: Kind) -> None:
    with edge_stack(tmp_path / "stack", kind) as edge, ConstantLoad(edge.url) as load:
        edge.wait_until("served by every instance", lambda: all(edge.served(a) for a in edge.apps))
        victim = edge.apps[1]
        killed_at = time.monotonic()
        edge.kill9(victim)
        out_at = edge.wait_until("out of rotation", lambda: out_of_rotation(edge, 1))
        time.sleep(4)
        survivors_before = [edge.served(a) for a in (edge.apps[0], edge.apps[2])]
        time.sleep(2)
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
        for app in edge.apps:
            os.kill(app.pid, signal.SIGHUP)
            time.sleep(1.5)
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
        time.sleep(1)
        for _ in range(3):
            os.kill(edge.lb.pid, signal.SIGUSR2)  # The master starts a new worker with the new
            time.sleep(2)  # config, which takes the listeners over; the old one finishes.
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
