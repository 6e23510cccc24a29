"""PostgreSQL clusters from the system's binaries: per shard, a primary (initdb) and streaming
replicas (pg_basebackup), each its own postmaster on its own port, for the local stack and
the tests. PostgreSQL refuses to run as root, so as root the clusters run as `postgres`."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from c50k.settings import PostgresSettings
from c50k.stack.process import ManagedProcess
from c50k.stack.state import ServiceRecord, StackError, StackState

if TYPE_CHECKING:
    from c50k.stack.stack import Launch

DATABASE = "c50k"
SUPERUSER = "postgres"
# A local stack is a test bench: fsync stays on (an answered write must survive a kill -9 of
# the server), but the memory settings are small so that several clusters fit a laptop.
SERVER_SETTINGS = {
    "listen_addresses": "'{host}'",
    "port": "{port}",
    "unix_socket_directories": "''",  # TCP only: no clash with the system's cluster socket.
    "max_connections": "300",
    "shared_buffers": "64MB",
    "wal_level": "replica",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "wal_keep_size": "256MB",
    "hot_standby": "on",
    "hot_standby_feedback": "on",
    "wal_receiver_status_interval": "1s",
    "fsync": "on",
    "synchronous_commit": "on",
    "log_min_messages": "warning",
    "log_line_prefix": "'%m [%p] '",
}
HBA = """\
# c50k local stack: loopback only, no passwords. A deployment uses scram-sha-256.
host all         all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
"""
READY_TIMEOUT = 60.0


def bindir() -> Path:
    """Where the server binaries are: $C50K_PG_BINDIR, then the newest Debian install, then
    PATH."""
    if configured := os.environ.get("C50K_PG_BINDIR"):
        return Path(configured)
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    for candidate in reversed(versions):
        if (candidate / "postgres").exists():
            return candidate
    if found := shutil.which("postgres"):
        return Path(found).parent
    raise StackError(
        "PostgreSQL's server binaries were not found (install the Debian package postgresql, "
        "or set C50K_PG_BINDIR)"
    )


def run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SUPERUSER)
    except KeyError as exc:
        raise StackError("running as root needs the system user postgres to run clusters") from exc
    return SUPERUSER


def dsn(host: str, port: int, database: str = DATABASE) -> str:
    return f"postgresql://{SUPERUSER}@{host}:{port}/{database}"


@dataclass
class Cluster:
    """One postmaster: its data directory, address and role."""

    name: str
    data_dir: Path
    host: str
    port: int
    role: str  # "primary" or "replica"
    shard: int
    hba: str = HBA  # A fleet host admits its app hosts and replicas (c50k.fleet.postgres).

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.name}.log"

    def _tool(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        user = run_as()
        result = subprocess.run(  # noqa: S603 -- argv built here from fixed tool names.
            [str(bindir() / tool), *args],
            capture_output=True,
            text=True,
            user=user,
            group=None if user is None else pwd.getpwnam(user).pw_gid,
            timeout=READY_TIMEOUT,
            check=False,
            env={**os.environ, "PGCONNECT_TIMEOUT": "3"},
        )
        if check and result.returncode != 0:
            raise StackError(f"{tool} {' '.join(args)} failed for {self.name}:\n{result.stderr}")
        return result

    def sql(self, query: str, database: str = DATABASE) -> str:
        """One query through psql as the superuser; the unaligned, tuples-only output."""
        result = self._tool(
            "psql", "-h", self.host, "-p", str(self.port), "-U", SUPERUSER, "-d", database,
            "-v", "ON_ERROR_STOP=1", "-Atc", query,
        )  # fmt: skip
        return result.stdout.strip()

    def _prepare_dir(self) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        user = run_as()
        if user is not None:
            # The postgres user must reach its data directory: through the stack's own two
            # levels (the state directory and its postgres/), which we open for traversal,
            # and through every directory above, which we leave as they are.
            entry = pwd.getpwnam(user)
            ours = [self.data_dir.parent, self.data_dir.parent.parent]
            for directory in ours:
                directory.chmod(directory.stat().st_mode | 0o001)
            for directory in self.data_dir.parent.parent.resolve().parents:
                info = directory.stat()
                if info.st_mode & 0o001 == 0 and info.st_uid != entry.pw_uid:
                    raise StackError(
                        f"as root, PostgreSQL runs as {user}, who cannot enter {directory}: "
                        "choose a state directory that every user can reach (e.g. under /tmp "
                        "or the project)"
                    )
            self.data_dir.mkdir(mode=0o700, exist_ok=True)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
            self.log_path.touch()
            os.chown(self.log_path, entry.pw_uid, entry.pw_gid)

    @property
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def _configure(self, primary: Cluster | None = None) -> None:
        values = {k: v.format(host=self.host, port=self.port) for k, v in SERVER_SETTINGS.items()}
        if primary is not None:
            # Here rather than in postgresql.auto.conf (pg_basebackup -R), so that a restart of
            # the stack on other ports points the replica at its primary's new port.
            values["primary_conninfo"] = (
                f"'host={primary.host} port={primary.port} user={SUPERUSER} "
                f"application_name={slot_name(self.name)}'"
            )
            values["primary_slot_name"] = f"'{slot_name(self.name)}'"
        lines = "".join(f"{key} = {value}\n" for key, value in values.items())
        conf = self.data_dir / "postgresql.conf"
        # include the stack's lines last so they win over initdb's and pg_basebackup's.
        (self.data_dir / "c50k.conf").write_text(lines)
        text = conf.read_text()
        if "include 'c50k.conf'" not in text:
            conf.write_text(text + "\ninclude 'c50k.conf'\n")
        (self.data_dir / "pg_hba.conf").write_text(self.hba)
        names = ["c50k.conf", "pg_hba.conf", "postgresql.conf"]
        if primary is not None:
            (self.data_dir / "standby.signal").touch()
            names.append("standby.signal")
        user = run_as()
        if user is not None:
            entry = pwd.getpwnam(user)
            for name in names:
                os.chown(self.data_dir / name, entry.pw_uid, entry.pw_gid)

    def init_primary(self) -> None:
        self._prepare_dir()
        self._tool(
            "initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust",
            "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions",
            # The new cluster's files are flushed by its first checkpoint, before any data.
            "--no-sync",
        )  # fmt: skip
        self._configure()

    def init_replica(self, primary: Cluster) -> None:
        self._prepare_dir()
        self._tool(
            "pg_basebackup", "-h", primary.host, "-p", str(primary.port), "-U", SUPERUSER,
            "-D", str(self.data_dir), "-X", "stream", "-c", "fast",
            "--create-slot", "--slot", slot_name(self.name),
        )  # fmt: skip
        self._configure(primary)

    def reconfigure(self, primary: Cluster | None) -> None:
        """Before a restart on (maybe) other ports: rewrite the stack's settings."""
        self._configure(primary)

    def start(self) -> ServiceRecord:
        """Start the postmaster itself (not through pg_ctl), so its PID is the one recorded."""
        process = (
            ManagedProcess(
                self.name,
                [str(bindir() / "postgres"), "-D", str(self.data_dir)],
                self.log_path,
                user=run_as(),
            )
            .start()
            .detach()
        )
        process.wait_until(self.ready, READY_TIMEOUT, "accepting connections")
        return ServiceRecord.of(
            process,
            "postgres",
            self.host,
            self.port,
            stop_signal=signal.SIGINT,  # "Fast" shutdown: roll back, checkpoint, exit.
            stop_timeout=30.0,
            data_dir=self.data_dir,
            extra={"role": self.role, "shard": self.shard},
        )

    def ready(self) -> bool:
        result = self._tool(
            "pg_isready", "-h", self.host, "-p", str(self.port), "-d", "postgres", check=False
        )
        return result.returncode == 0

    def wait_streaming(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sql("SELECT status FROM pg_stat_wal_receiver", "postgres") == "streaming":
                return
            time.sleep(0.1)
        raise StackError(f"{self.name} did not start streaming from its primary in {timeout} s")


def cluster_of(record: ServiceRecord) -> Cluster:
    """The cluster behind a recorded postgres service (for status, faults and restarts)."""
    if record.data_dir is None:
        raise StackError(f"{record.name} has no data directory")
    return Cluster(
        name=record.name,
        data_dir=Path(record.data_dir),
        host=record.host,
        port=record.port,
        role=str(record.extra["role"]),
        shard=int(record.extra["shard"] or 0),
    )


def slot_name(name: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", name.lower())


def shard_clusters(
    root: Path, host: str, shard: int, replicas: int, ports: list[int]
) -> list[Cluster]:
    """A shard's primary, then its replicas, in `root`."""
    names = [f"pg-{shard}-primary"] + [f"pg-{shard}-replica-{r + 1}" for r in range(replicas)]
    return [
        Cluster(name, root / name, host, port, "primary" if i == 0 else "replica", shard)
        for i, (name, port) in enumerate(zip(names, ports, strict=True))
    ]


def start_shard(state: StackState, clusters: list[Cluster]) -> None:
    """Start (after creating, the first time) a primary and its replicas; wait until every
    replica streams. Each process is recorded as soon as it runs."""
    primary, *replicas = clusters
    if primary.initialised:
        primary.reconfigure(None)
    else:
        primary.init_primary()
    state.add(primary.start())
    exists = f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"  # noqa: S608 -- a constant.
    if primary.sql(exists, "postgres") != "1":
        primary.sql(f"CREATE DATABASE {DATABASE}", "postgres")
    for replica in replicas:
        if replica.initialised:
            replica.reconfigure(primary)
        else:
            replica.init_replica(primary)
        state.add(replica.start())
        replica.wait_streaming()


def start_tier(launch: Launch) -> None:
    plan = launch.plan
    root = launch.state_dir / "postgres"
    shards = []
    for shard in range(plan.shards):
        ports = [launch.ports.take() for _ in range(1 + plan.replicas)]
        clusters = shard_clusters(root, plan.host, shard, plan.replicas, ports)
        start_shard(launch.state, clusters)
        primary, *replicas = clusters
        shards.append(
            {
                "primary": dsn(primary.host, primary.port),
                "replicas": [dsn(r.host, r.port) for r in replicas],
            }
        )
    launch.group("store")["backend"] = "postgres"
    launch.group("postgres")["shards"] = shards
    from c50k.store.migrate import upgrade  # noqa: PLC0415 -- SQLAlchemy only when used.

    upgrade(PostgresSettings.model_validate({"shards": shards}))


def stack_postgres_settings(state: StackState, **changes: object) -> PostgresSettings:
    """The postgres settings a stack wrote into its settings file, with `changes` on top."""
    document = tomllib.loads(state.settings_path.read_text())
    return PostgresSettings.model_validate({**document["postgres"], **changes})
