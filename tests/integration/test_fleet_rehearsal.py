"""The fleet rehearsed on network-namespace hosts (needs root, as `ip netns` does): every role
up from its rendered units, the edge failover tests against it (kill -9 of an app host, a
rolling restart of every app host, under a constant load through the NodeBalancer's
stand-in), and `down` leaving no process and no namespace."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from c50k.bench.sampling import process_tree
from c50k.fleet.rehearsal import Network, Rehearsal, down, leftovers, namespace_pids, up
from c50k.fleet.spec import FleetSpec
from c50k.stack.process import alive
from c50k.stack.state import StackState
from tests.integration.load import ConstantLoad, LoadReport


@dataclass
class Fleet:
    state_dir: Path
    network: Network
    state: StackState
    spec: FleetSpec

    @property
    def url(self) -> str:
        return self.network.urls[0]

    def apps(self) -> list[str]:
        return [s.name for s in StackState.load(self.state_dir).services if s.kind == "app"]


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    # The hosts' service users must reach the state directory: not under pytest's 0700 tmp.
    state_dir = Path(tempfile.mkdtemp(prefix="c50k-fleet-", dir="/tmp"))
    state_dir.chmod(0o755)
    try:
        network, state = up(state_dir, FleetSpec())
        spec = FleetSpec.model_validate_json((state_dir / "fleet.json").read_text())
        yield Fleet(state_dir, network, state, spec)
    finally:
        down(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


def assert_no_failure(report: LoadReport) -> None:
    assert report.failures == [], f"{len(report.failures)} of {report.sent}: {report.failures[:20]}"
    assert report.ok > 0


def test_every_role_serves_through_the_balancer(fleet: Fleet) -> None:
    kinds = {s.kind for s in fleet.state.services}
    assert kinds == {"postgres-primary", "postgres-replica", "redis", "app", "nodebalancer"}
    with httpx.Client(base_url=fleet.url, timeout=10) as client:
        written = client.put("/items/424242", json={"name": "fleet"})
        assert written.status_code == 200, written.text
        for url in fleet.network.urls:  # Every address of the balancer, every app behind it.
            answer = client.get(f"{url}/items/424242")
            assert answer.json()["main_item"]["name"] == "fleet"
        assert client.get("/items/1").json()["main_item"]["id"] == 1  # Seeded by `up`.


def test_kill9_of_an_app_host_fails_no_request(fleet: Fleet) -> None:
    victim = StackState.load(fleet.state_dir).named(fleet.apps()[1])
    with ConstantLoad(fleet.url) as load:
        time.sleep(2)
        for pid in process_tree(victim.pid):  # The host is gone: master and workers.
            os.kill(pid, signal.SIGKILL)
        time.sleep(fleet.spec.check.out_of_rotation_seconds + 4)
        report = load.stop()
    assert_no_failure(report)
    Rehearsal(fleet.state_dir).restart(fleet.spec, victim.name)  # Back for the next test.


def test_rolling_restart_of_every_app_host_fails_no_request(fleet: Fleet) -> None:
    rehearsal = Rehearsal(fleet.state_dir)
    with ConstantLoad(fleet.url) as load:
        for name in fleet.apps():
            # Drain (/ready 503, the balancer takes it out), stop, start, wait until ready,
            # then give the balancer its `rise` checks before the next host goes.
            rehearsal.restart(fleet.spec, name)
            time.sleep(2 * fleet.spec.check.interval_seconds + 1)
        report = load.stop()
    assert_no_failure(report)


def test_down_leaves_no_process_and_no_namespace(fleet: Fleet) -> None:
    records = StackState.load(fleet.state_dir).services
    namespaces = list(fleet.network.namespaces.values())
    assert all(namespace_pids(n) for n in namespaces if not n.endswith("nodebalancer"))
    down(fleet.state_dir)
    assert not any(alive(r.pid, r.started) for r in records)
    assert leftovers(fleet.network) == []
    assert Network.load(fleet.state_dir) is None
