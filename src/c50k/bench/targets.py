"""Starting and stopping the systems under test: the mock upstream, c50k, the baselines and
the nginx ceiling, each on a given port of one or more loopback addresses.

Load is spread over 127.0.0.1, 127.0.0.2, ... because one source/destination address pair
has only ~28,000 ephemeral ports. Servers bind each of those addresses explicitly rather than
0.0.0.0, which would put a benchmark server on the network.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from c50k.bench.sampling import process_tree
from c50k.stack.process import ManagedProcess, ProcessError, free_port, http_ok

START_TIMEOUT = 30.0
# gunicorn's graceful timeout is 30 s and c50k drains first; the harness does not wait that
# long for a server it has finished measuring, so SIGKILL follows sooner.
STOP_TIMEOUT = 15.0
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
# nginx reads a config token into a 4096-byte buffer; the quoted body must fit in it.
MAX_NGINX_BODY = 4000


@dataclass
class Target:
    name: str
    base_url: str
    port: int
    addresses: list[str]
    processes: list[ManagedProcess]
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = STOP_TIMEOUT

    def urls(self) -> list[str]:
        """The base URL on every address it listens on, in the order given."""
        return [f"http://{address}:{self.port}" for address in self.addresses]

    def server_pids(self) -> list[int]:
        """Every process of this target (masters and their workers), for CPU/RSS sampling."""
        return [pid for p in self.processes if p.running() for pid in process_tree(p.pid)]

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop(self.stop_timeout, self.stop_signal)


def _start(
    name: str,
    argv: Sequence[str],
    workdir: Path,
    port: int,
    addresses: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stop_signal: int = signal.SIGTERM,
) -> Target:
    """Start, then wait until GET /health answers on every address; on failure stop it and
    raise ProcessError with the tail of its log."""
    workdir.mkdir(parents=True, exist_ok=True)
    process = ManagedProcess(name, argv, workdir / f"{name}-{port}.log", env=env).start()
    base_url = f"http://{addresses[0]}:{port}"
    target = Target(name, base_url, port, list(addresses), [process], stop_signal)
    urls = target.urls()
    try:
        process.wait_until(
            lambda: all(http_ok(f"{url}/health") for url in urls),
            START_TIMEOUT,
            f"answering GET /health on {', '.join(urls)}",
        )
    except ProcessError:
        target.stop()
        raise
    return target


@contextmanager
def mock_upstream(
    workdir: Path, *, latency_ms: float = 0, posts: int = 100_000
) -> Iterator[Target]:
    """`c50k upstream` on a free port while the block runs, stopped whatever happens."""
    port = free_port()
    argv = [sys.executable, "-m", "c50k", "upstream", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--posts", str(posts), "--latency-ms", str(latency_ms)]
    upstream = _start("upstream", argv, workdir, port, ["127.0.0.1"])
    try:
        yield upstream
    finally:
        upstream.stop()


def posts_template(upstream: Target) -> str:
    """The upstream URL template (with {id}) that the services under test are given."""
    return f"{upstream.base_url}/posts/{{id}}"


def start_c50k(
    workdir: Path, port: int, addresses: list[str], workers: int, env: Mapping[str, str]
) -> Target:
    """`c50k serve`; `env` adds C50K_* settings (upstream URL, store, cache) to ours."""
    argv = [sys.executable, "-m", "c50k", "serve", "--workers", str(workers), "--port", str(port)]
    environment = {**os.environ, **env, "C50K_SERVER_HOST": ",".join(addresses)}
    return _start("c50k", argv, workdir, port, addresses, env=environment)


def _start_baseline(
    module: str,
    workdir: Path,
    port: int,
    addresses: list[str],
    upstream_template: str,
    *,
    baselines_dir: Path,
    options: Sequence[str],
    env: Mapping[str, str] | None = None,
) -> Target:
    binds = [arg for address in addresses for arg in ("-b", f"{address}:{port}")]
    argv = [sys.executable, "-m", "gunicorn", "--chdir", str(baselines_dir)]
    argv += ["-k", "uvicorn_worker.UvicornWorker", *options, *binds]
    # Not a serving setting: gunicorn 24+ opens a control socket at one path in $HOME,
    # which targets running side by side would fight over.
    argv += ["--no-control-socket", f"{module}:app"]
    environment = {**os.environ, "UPSTREAM_URL": upstream_template, **(env or {})}
    return _start(module, argv, workdir, port, addresses, env=environment)


def start_naive(
    workdir: Path,
    port: int,
    addresses: list[str],
    upstream_template: str,
    *,
    baselines_dir: Path,
    workers: int | None = None,
) -> Target:
    """bench/baselines/naive.py with gunicorn's defaults; workers default to 2 x cores + 1."""
    count = workers if workers is not None else 2 * len(os.sched_getaffinity(0)) + 1
    return _start_baseline(
        "naive",
        workdir,
        port,
        addresses,
        upstream_template,
        baselines_dir=baselines_dir,
        options=["-w", str(count)],
    )


def start_straightforward(
    workdir: Path,
    port: int,
    addresses: list[str],
    upstream_template: str,
    *,
    baselines_dir: Path,
    workers: int | None = None,
) -> Target:
    """bench/baselines/straightforward.py: workers default to the CPU count, keep-alive 75 s."""
    count = workers if workers is not None else len(os.sched_getaffinity(0))
    return _start_baseline(
        "straightforward",
        workdir,
        port,
        addresses,
        upstream_template,
        baselines_dir=baselines_dir,
        options=["-w", str(count), "--keep-alive", "75"],
    )


def start_asyncpg_peer(
    workdir: Path,
    port: int,
    addresses: list[str],
    dsn: str,
    *,
    baselines_dir: Path,
    workers: int,
    env: Mapping[str, str] | None = None,
) -> Target:
    """bench/baselines/asyncpg_peer.py reading the server at `dsn`: the db scenario's peer at
    the driver's own speed, under the same gunicorn and uvicorn worker as c50k."""
    return _start_baseline(
        "asyncpg_peer",
        workdir,
        port,
        addresses,
        "",
        baselines_dir=baselines_dir,
        options=["-w", str(workers)],
        env={"PEER_DSN": dsn, **(env or {})},
    )


# The ceiling: what one machine answers with no Python at all. Every GET /items/... gets the
# same bytes, so the load generators' cost is known.
NGINX_CONF = """\
worker_processes {workers};
worker_rlimit_nofile 19500;
pid {dir}/nginx.pid;
error_log {log} warn;

events {{
    worker_connections 19000;
    multi_accept on;
}}

http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    # nginx strings have no escape for "$"; a geo value is never parsed for variables.
    geo $c50k_dollar {{ default "$"; }}

    server {{
{listens}
        default_type application/json;
        location = /health {{ return 200 '{{"status":"ok"}}'; }}
        location /items/ {{ return 200 '{body}'; }}
    }}
}}
"""


def render_nginx_conf(
    workdir: Path, port: int, addresses: list[str], body: bytes, workers: int
) -> str:
    # A UnicodeDecodeError (a ValueError) for bytes an nginx config cannot hold.
    text = body.decode()
    quoted = text.replace("\\", "\\\\").replace("'", "\\'").replace("$", "${c50k_dollar}")
    if len(quoted) > MAX_NGINX_BODY:
        raise ValueError(f"a body of {len(body)} bytes does not fit in an nginx config token")
    if any(c in str(workdir) for c in " \t\n;'\"\\{}$#"):
        raise ValueError(f"{workdir} cannot be written unquoted in an nginx config")
    listens = "\n".join(
        f"        listen {address}:{port} backlog=4096 reuseport;" for address in addresses
    )
    return NGINX_CONF.format(
        workers=workers,
        dir=workdir,
        log=workdir / f"ceiling-{port}.log",
        listens=listens,
        body=quoted,
    )


def start_ceiling(
    workdir: Path, port: int, addresses: list[str], body: bytes, workers: int
) -> Target:
    """nginx answering `body` to every GET /items/...; stopped with SIGQUIT (graceful)."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(render_nginx_conf(workdir, port, addresses, body, workers))
    # nginx's error log is the file _start tails on failure, so one tail tells all.
    log = workdir / f"ceiling-{port}.log"
    argv = [NGINX, "-p", str(workdir), "-c", str(conf), "-e", str(log), "-g", "daemon off;"]
    return _start("ceiling", argv, workdir, port, addresses, stop_signal=signal.SIGQUIT)
