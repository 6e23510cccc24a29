"""A database host's PostgreSQL: created on first boot (initdb on a primary, a base backup of
its primary on a replica) and configured on every boot, by the stack's own cluster code; the
database and its schema once the primary accepts connections. The host's systemd unit runs
these as `c50k fleet postgres-init` (before the server) and `postgres-bootstrap` (after)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from c50k.settings import PostgresSettings
from c50k.stack.postgres import DATABASE, Cluster, dsn, slot_name
from c50k.stack.state import StackError

WAIT_SECONDS = 300.0


def fleet_hba(auth: str, own: str, clients: list[str], replicas: list[str]) -> str:
    """The host's own tools (loopback and its address); the app hosts to the data, the
    replicas to the replication stream, each by its own address."""
    lines = [
        "# c50k fleet host: itself, the app hosts and the replicas, each by address.",
        "host all         all 127.0.0.1/32 trust",
        f"host all         all {own}/32 trust",
    ]
    lines += [f"host all         all {address}/32 {auth}" for address in clients]
    lines += [f"host replication all {address}/32 {auth}" for address in replicas]
    return "\n".join(lines) + "\n"


def _wait(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise StackError(f"{what} not within {timeout} s")
        time.sleep(1.0)


def init(
    *,
    role: Literal["primary", "replica"],
    name: str,
    data_dir: Path,
    listen: str,
    port: int,
    hba: str,
    primary: tuple[str, int] | None = None,
    timeout: float = WAIT_SECONDS,
) -> str:
    """Create the cluster on first boot, rewrite its c50k settings on every boot. Returns
    what was done."""
    cluster = Cluster(name, data_dir, listen, port, role, 0, hba=hba)
    if role == "primary":
        if cluster.initialised:
            cluster.reconfigure(None)
            return "configured"
        cluster.init_primary()
        return "created"
    if primary is None:
        raise StackError("a replica needs --primary HOST:PORT")
    source = Cluster(f"primary-of-{name}", data_dir, primary[0], primary[1], "primary", 0)
    if cluster.initialised:
        cluster.reconfigure(source)
        return "configured"
    # Hosts boot in any order: the primary may still be installing.
    _wait(source.ready, f"the primary {primary[0]}:{primary[1]} accepting connections", timeout)
    cluster.init_replica(source)
    return f"created from {primary[0]}:{primary[1]} (slot {slot_name(name)})"


def bootstrap(listen: str, port: int, timeout: float = WAIT_SECONDS) -> list[str]:
    """The database and the schema on a primary that has just started (idempotent)."""
    cluster = Cluster("bootstrap", Path("/nonexistent"), listen, port, "primary", 0)
    _wait(cluster.ready, f"{listen}:{port} accepting connections", timeout)
    exists = f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"  # noqa: S608 -- a constant.
    if cluster.sql(exists, "postgres") != "1":
        cluster.sql(f"CREATE DATABASE {DATABASE}", "postgres")
    from c50k.store.migrate import upgrade  # noqa: PLC0415 -- SQLAlchemy only when used.

    return upgrade(PostgresSettings.model_validate({"shards": [{"primary": dsn(listen, port)}]}))
