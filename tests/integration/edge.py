"""The edge tier under test: a local stack (`c50k.stack`) of app instances behind a real
HAProxy or nginx, with what the tests observe: which instance served, what the balancer
thinks of each instance, and instances killed or restarted by their PIDs."""

from __future__ import annotations

import csv
import io
import os
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import pytest

from c50k.bench.sampling import process_tree
from c50k.stack.apps import instance_process, start_instance
from c50k.stack.process import ManagedProcess
from c50k.stack.stack import StackPlan, up
from c50k.stack.state import ServiceRecord, StackState
from tests.waiting import wait_until

Kind = Literal["haproxy", "nginx"]
KINDS: list[Kind] = ["haproxy", "nginx"]
# One worker per instance, every request in the instance's log (that is how a test sees
# which instance served), a connection target that needs one nginx worker.
ENV = {
    "C50K_SERVER_WORKERS": "1",
    "C50K_SERVER_ACCESS_LOG": "true",
    "C50K_LB_CONNECTIONS": "2000",
    "C50K_STORE_BACKEND": "memory",
}


@dataclass
class Edge:
    kind: Kind
    state: StackState
    restarted: list[ManagedProcess] = field(default_factory=list)

    @property
    def lb(self) -> ServiceRecord:
        return self.state.named(self.kind)

    @property
    def url(self) -> str:
        return f"http://{self.lb.address}"

    @property
    def apps(self) -> list[ServiceRecord]:
        return self.state.of_kind("app")

    def app_log(self, record: ServiceRecord) -> str:
        return Path(record.log).read_text(errors="replace")

    def served(self, record: ServiceRecord, marker: str = '"path": "/items/') -> int:
        return served(Path(record.log), marker)

    @property
    def runtime_dir(self) -> Path:
        return self.state.state_dir / self.kind

    def lb_log(self) -> str:
        return balancer_log(self.runtime_dir)

    def haproxy_status(self) -> dict[str, str]:
        return haproxy_status(self.runtime_dir)

    def kill9(self, record: ServiceRecord) -> None:
        """The instance dies at once, master and workers, as with a lost machine."""
        for pid in process_tree(record.pid):
            os.kill(pid, signal.SIGKILL)

    def restart(self, record: ServiceRecord) -> ManagedProcess:
        """SIGTERM (the drain), wait until it is gone, start it again on the same port."""
        record.stop()
        process = instance_process(
            record.name,
            record.host,
            record.port,
            self.state.settings_path,
            Path(record.log),
            metrics_port=int(record.extra["metrics_port"] or 0),
        )
        self.restarted.append(process)
        start_instance(process, record.host, record.port, self.state.settings_path)
        return process

    def wait_until(self, condition: str, check: Callable[[], bool], timeout: float = 15.0) -> float:
        """Poll `check()` until true; the monotonic time it became true."""
        return wait_until(check, condition, timeout, detail=lambda: self.lb_log()[-3000:])


def balancer_log(runtime_dir: Path) -> str:
    """Everything a balancer started in `runtime_dir` logged (HAProxy's output, nginx's error
    log)."""
    return "".join(p.read_text(errors="replace") for p in sorted(runtime_dir.glob("*.log")))


def haproxy_status(runtime_dir: Path) -> dict[str, str]:
    """Each server's state in HAProxy's own eyes (UP, DOWN, ...), from its stats socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(runtime_dir / "haproxy.sock"))
        sock.sendall(b"show stat\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    rows = csv.DictReader(io.StringIO(b"".join(chunks).decode().lstrip("# ")))
    return {r["svname"]: r["status"] for r in rows if r["pxname"] == "apps"}


def out_of_rotation(kind: Kind, runtime_dir: Path, server: str, address: str) -> bool:
    """Whether the balancer stopped sending to the instance at `address` (HAProxy's `server`)."""
    if kind == "haproxy":
        return haproxy_status(runtime_dir)[server].startswith("DOWN")
    # nginx has passive checks only: the first failed attempt takes the instance out.
    log = balancer_log(runtime_dir)
    return f'upstream: "http://{address}' in log and "temporarily disabled" in log


def attempts(runtime_dir: Path, address: str) -> int:
    """Requests nginx sent to the instance at `address` that failed there."""
    return balancer_log(runtime_dir).count(f'upstream: "http://{address}')


def wait_for_failover(kind: Kind, runtime_dir: Path, server: str, address: str) -> float:
    """Wait until the balancer took the dead instance at `address` out of rotation; with
    nginx, also until its rest period passed and it tried the instance once more (a request
    that must go on to another instance, not fail). Returns when the instance was out."""

    def detail() -> str:
        return balancer_log(runtime_dir)[-3000:]

    out_at = wait_until(
        partial(out_of_rotation, kind, runtime_dir, server, address),
        "out of rotation",
        15.0,
        detail,
    )
    if kind == "nginx":
        failed = attempts(runtime_dir, address)
        wait_until(lambda: attempts(runtime_dir, address) > failed, "tried again", detail=detail)
    return out_at


def served(log: Path, marker: str = '"path": "/items/') -> int:
    """Requests an instance served: c50k's JSON access line (C50K_SERVER_ACCESS_LOG), one each."""
    return log.read_text(errors="replace").count(marker)


@contextmanager
def edge_stack(state_dir: Path, kind: Kind, instances: int = 3, **env: str) -> Iterator[Edge]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**ENV, **env}.items():
            patch.setenv(name, value)
        state = up(StackPlan(shards=0, app_instances=instances, lb=kind), state_dir)
        edge = Edge(kind, state)
        try:
            yield edge
        finally:
            for process in edge.restarted:
                process.stop(signum=signal.SIGINT)
            for record in edge.apps:
                record.stop_signal = int(signal.SIGINT)  # Quick: nothing left to drain for.
            state.stop_all()
