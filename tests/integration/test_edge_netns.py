"""Three app instances in their own network namespaces (standing in for three machines on a
private network), each bound to its private address only, behind a real HAProxy or nginx on
the host: one is killed with -9 under load and no request fails. Needs root, as `ip netns`
does."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from c50k.bench.sampling import process_tree
from c50k.fleet.netns import Namespace, namespaces
from c50k.inventory import Instance, format_instances
from c50k.settings import LbSettings, Settings
from c50k.stack.balancer import launch_balancer
from c50k.stack.process import ManagedProcess, free_port, http_ok
from tests.integration.edge import ENV, KINDS, Kind, balancer_log, served, wait_for_failover
from tests.integration.load import ConstantLoad
from tests.waiting import wait_until

PORT = 8000
START_TIMEOUT = 60.0


@contextmanager
def instance_in(namespace: Namespace, log: Path, trusted: str) -> Iterator[ManagedProcess]:
    env = {**os.environ, **ENV, "C50K_SERVER_FORWARDED_ALLOW_IPS": trusted}
    argv = ["ip", "netns", "exec", namespace.name,  # execs: the PID is gunicorn's master.
            sys.executable, "-m", "c50k", "serve", "--host", namespace.address,
            "--port", str(PORT)]  # fmt: skip
    with ManagedProcess(f"app in {namespace.name}", argv, log, env=env).start() as process:
        url = f"http://{namespace.address}:{PORT}/ready"
        process.wait_until(lambda: http_ok(url), START_TIMEOUT, "ready")
        yield process


@pytest.mark.parametrize("kind", KINDS)
def test_kill9_of_an_instance_on_its_own_machine_fails_no_request(
    tmp_path: Path, kind: Kind
) -> None:
    with namespaces(3) as spaces, ExitStack() as stack:
        trusted = ",".join(ns.gateway for ns in spaces)
        apps = [
            stack.enter_context(instance_in(ns, tmp_path / f"app-{i}.log", trusted))
            for i, ns in enumerate(spaces)
        ]
        lb = LbSettings(
            instances=format_instances([Instance(ns.address, PORT) for ns in spaces]),
            port=free_port(),
            connections=2000,
        )
        balancer = stack.enter_context(launch_balancer(kind, Settings(lb=lb), tmp_path / kind))
        logs = [tmp_path / f"app-{i}.log" for i in range(3)]
        runtime = tmp_path / kind

        def detail() -> str:
            return balancer_log(runtime)[-3000:]

        with ConstantLoad(f"http://127.0.0.1:{lb.port}") as load:
            wait_until(lambda: all(served(log) for log in logs), "served by every instance")
            for pid in process_tree(apps[1].pid):  # The machine is gone: master and workers.
                os.kill(pid, signal.SIGKILL)
            wait_for_failover(kind, runtime, "app-1", Instance(spaces[1].address, PORT).address)
            before = [served(logs[0]), served(logs[2])]
            wait_until(
                lambda: served(logs[0]) > before[0] and served(logs[2]) > before[1],
                "served by both survivors",
                detail=detail,
            )
            report = load.stop()
        assert balancer.running()
    assert report.failures == [], report.failures[:20]
    counts = [served(log) for log in logs]
    assert all(counts), counts
