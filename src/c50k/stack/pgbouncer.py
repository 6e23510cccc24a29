"""PgBouncer in transaction mode in front of each shard's primary, from the system's binary.

Many workers times pools become a few server connections: PgBouncer hands each transaction any
idle server connection. The service then runs with `C50K_POSTGRES_PGBOUNCER=true`, which turns
off asyncpg's prepared-statement cache and names each statement uniquely (store/postgres.py):
the Debian package is PgBouncer 1.18, older than the prepared-statement tracking of 1.21.
Replicas are read directly (one pool per worker is small there); migrations also go direct.
"""

from __future__ import annotations

import os
import pwd
import socket
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from c50k.stack.postgres import DATABASE, SUPERUSER, dsn, run_as
from c50k.stack.process import ManagedProcess
from c50k.stack.state import ServiceRecord, StackError

if TYPE_CHECKING:
    from c50k.stack.stack import Launch

READY_TIMEOUT = 30.0
CONFIG = """\
[databases]
{database} = host={server_host} port={server_port} dbname={database} user={user}

[pgbouncer]
listen_addr = {host}
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {auth_file}
pool_mode = transaction
max_client_conn = 5000
default_pool_size = {server_connections}
reserve_pool_size = 5
server_reset_query =
server_check_delay = 1
ignore_startup_parameters = extra_float_digits
"""


def binary() -> str:
    for candidate in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"):
        if Path(candidate).exists():
            return candidate
    raise StackError("pgbouncer was not found (install the Debian package pgbouncer)")


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def start_bouncer(
    launch: Launch, name: str, server_dsn: str, server_connections: int = 20
) -> ServiceRecord:
    """Start one PgBouncer for the server of `server_dsn`; returns its record (recorded)."""
    root = launch.state_dir / "pgbouncer"
    root.mkdir(parents=True, exist_ok=True)
    server = urlsplit(server_dsn)
    port = launch.ports.take()
    host = launch.plan.host
    auth_file = root / "userlist.txt"
    auth_file.write_text(f'"{SUPERUSER}" ""\n')
    config = root / f"{name}.ini"
    config.write_text(
        CONFIG.format(
            database=DATABASE,
            server_host=server.hostname,
            server_port=server.port,
            user=SUPERUSER,
            host=host,
            port=port,
            auth_file=auth_file,
            server_connections=server_connections,
        )
    )
    user = run_as()  # PgBouncer, like PostgreSQL, refuses to run as root.
    log = root / f"{name}.log"
    if user is not None:
        entry = pwd.getpwnam(user)
        for path in (root, auth_file, config):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    process = ManagedProcess(name, [binary(), str(config)], log, user=user).start().detach()
    process.wait_until(lambda: _listening(host, port), READY_TIMEOUT, "listening")
    return launch.state.add(
        ServiceRecord.of(
            process,
            "pgbouncer",
            host,
            port,
            stop_timeout=10.0,
            extra={"server": f"{server.hostname}:{server.port}"},
        )
    )


def start_tier(launch: Launch) -> None:
    """A PgBouncer before each shard's primary; the service's primary DSNs point at them."""
    shards = launch.group("postgres")["shards"]
    for index, shard in enumerate(shards):
        bouncer = start_bouncer(launch, f"pgbouncer-{index}", shard["primary"])
        shard["primary"] = dsn(bouncer.host, bouncer.port)
    launch.group("postgres")["pgbouncer"] = True
