"""Each deployment file from the settings and the inventory, through the package's templates."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import jinja2

from c50k.inventory import is_private
from c50k.runtime.serving import gunicorn_hooks, gunicorn_settings
from c50k.settings import Settings

Kind = Literal["haproxy", "nginx", "gunicorn", "systemd", "sysctl"]
KINDS: tuple[Kind, ...] = ("haproxy", "nginx", "gunicorn", "systemd", "sysctl")
TEMPLATES: dict[Kind, str] = {
    "haproxy": "haproxy.cfg.j2",
    "nginx": "nginx.conf.j2",
    "gunicorn": "gunicorn.conf.py.j2",
    "systemd": "c50k.service.j2",
    "sysctl": "sysctl.conf.j2",
}
# Files a load-balancer process keeps beyond its connections: listeners, logs, sockets.
LB_RESERVED_FILES = 64
# reuseport hashes connections over nginx's workers unevenly: room for a quarter more.
NGINX_SPREAD_HEADROOM = 1.25
# HAProxy waits this many check intervals for an answer to GET /ready; a refused connection
# (a dead instance) fails the check at once.
CHECK_TIMEOUT_INTERVALS = 5
# HAProxy keeps this much of each buffer for rewriting headers (its default).
HAPROXY_MAXREWRITE = 1024


class RenderError(ValueError):
    pass


@dataclass(frozen=True)
class Placement:
    """Where the rendered processes keep their runtime files, and who runs them. The defaults
    are a production host's; the local stack and the tests put everything in one directory."""

    runtime_dir: str = "/run/c50k"
    error_log: str = "stderr"
    pidfile: str | None = None
    user: str | None = None  # nginx workers' user; None: nginx's own default.
    service_user: str = "c50k"
    settings_file: str = "/etc/c50k/c50k.toml"
    python: str = "/opt/c50k/venv/bin/python"
    source: str = "C50K_* settings"
    secrets_file: str = "/etc/c50k/secrets.env"
    state_dir: str = "/var/lib/c50k"  # systemd's StateDirectory=c50k.
    # Variables that differ between hosts of one settings file (each app host's address).
    environment: tuple[tuple[str, str], ...] = ()


PRODUCTION = Placement()


def lb_processes(settings: Settings) -> tuple[int, int]:
    """(clients one load-balancer process holds, processes needed for lb.connections)."""
    lb = settings.lb
    per_process = max(1, (lb.nofile - LB_RESERVED_FILES) // 2)
    maxconn = min(lb.connections, per_process)
    return maxconn, math.ceil(lb.connections / maxconn)


def check_production(settings: Settings, kind: Kind) -> None:
    """Only the load balancer faces clients: app instances bind private or loopback
    addresses. Raises RenderError naming the offending address."""
    if kind in ("haproxy", "nginx"):
        hosts = [(i.host, "C50K_LB_INSTANCES") for i in settings.lb.inventory]
    elif kind in ("gunicorn", "systemd"):
        hosts = [(h, "C50K_SERVER_HOST") for h in settings.server.host.split(",")]
    else:
        hosts = []
    for host, variable in hosts:
        if not is_private(host):
            raise RenderError(
                f"{variable}: {host} is not a private or loopback address; app instances must "
                "not face clients (only the load balancer does)"
            )
    if settings.lb.client_timeout_seconds >= settings.server.keepalive_seconds:
        raise RenderError(
            f"C50K_LB_CLIENT_TIMEOUT_SECONDS ({settings.lb.client_timeout_seconds}) must be "
            f"below C50K_SERVER_KEEPALIVE_SECONDS ({settings.server.keepalive_seconds}): the "
            "balancer would reuse connections the app has just closed"
        )


def _seconds(value: float) -> str:
    return f"{math.ceil(value)}s"


def _milliseconds(value: float) -> str:
    return f"{round(value * 1000)}ms"


def one_line(value: object) -> object:
    """Every value a template writes stays on its line: a newline (or NUL) in a setting would
    start a directive of its own in a unit, haproxy.cfg or nginx.conf."""
    if isinstance(value, str) and any(c in value for c in "\n\r\0"):
        raise RenderError(f"{value!r}: a rendered value must not hold a line break")
    return value


@cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("c50k.render", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 -- configuration files, not HTML.
        finalize=one_line,
    )
    environment.filters["pyrepr"] = repr
    environment.globals.update(s=_seconds, ms=_milliseconds)
    return environment


def _context(kind: Kind, settings: Settings, placement: Placement) -> dict[str, Any]:
    lb = settings.lb
    maxconn, processes = lb_processes(settings)
    worker_connections = lb.nofile - LB_RESERVED_FILES
    common: dict[str, Any] = {
        "lb": lb,
        "instances": lb.inventory,
        "binds": lb.binds,
        "runtime_dir": placement.runtime_dir,
        "source": placement.source,
        # The balancer refuses what the app would refuse anyway (413), before it travels.
        "max_body_bytes": settings.request.max_body_bytes,
    }
    if kind == "haproxy":
        return common | {
            "maxconn": maxconn,
            "processes": processes,
            "bufsize": max(16384, lb.max_header_bytes + HAPROXY_MAXREWRITE),
            "maxrewrite": HAPROXY_MAXREWRITE,
            "pidfile": placement.pidfile,
            "fastinter": min(0.25, lb.check_interval_seconds),
            "check_timeout": max(
                lb.connect_timeout_seconds, CHECK_TIMEOUT_INTERVALS * lb.check_interval_seconds
            ),
        }
    if kind == "nginx":
        workers = max(1, math.ceil(2 * lb.connections * NGINX_SPREAD_HEADROOM / worker_connections))
        return common | {
            "user": placement.user,
            "error_log": placement.error_log,
            "worker_connections": worker_connections,
            "workers": workers,
            # Room to keep every instance connection of a worker idle between requests: a
            # smaller cache closes the surplus after each answer and reconnects for the next.
            "upstream_keepalive": max(16, math.ceil(lb.connections / workers)),
        }
    if kind == "gunicorn":
        return common | {
            "options": gunicorn_settings(settings),
            "hooks": bool(gunicorn_hooks(settings)),
        }
    if kind == "systemd":
        server = settings.server
        return common | {
            "user": placement.service_user,
            "settings_file": placement.settings_file,
            "python": placement.python,
            "binds": ", ".join(server.binds),
            "drain": server.drain_seconds,
            "stop_seconds": server.stop_seconds,
            "nofile": lb.nofile,
            "secrets_file": placement.secrets_file,
            "state_dir": placement.state_dir,
            "environment": placement.environment,
            "capabilities": "",
        }
    return common | {
        "connections": lb.connections,
        "backlog": max(settings.server.backlog, 4096),
        "file_max": max(1_048_576, 4 * lb.connections),
    }


def render(kind: Kind, settings: Settings, placement: Placement = PRODUCTION) -> str:
    check_production(settings, kind)
    return render_template(TEMPLATES[kind], _context(kind, settings, placement))


def render_template(name: str, context: dict[str, Any]) -> str:
    return _environment().get_template(name).render(context)


def binary(name: Literal["haproxy", "nginx"]) -> str:
    """The system's haproxy or nginx (Debian installs nginx in /usr/sbin, often off PATH)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        raise RenderError(f"{name} is not installed (Debian package {name})")
    return found


def validate(kind: Kind, path: Path) -> str:
    """Ask the real binary whether the rendered file is valid (`haproxy -c`, `nginx -t`);
    the other kinds are checked by Python. Raises RenderError with the binary's output."""
    if kind == "haproxy":
        argv = [binary("haproxy"), "-c", "-f", str(path)]
    elif kind == "nginx":
        argv = [binary("nginx"), "-t", "-q", "-c", str(path.resolve()), "-e", "stderr"]
    elif kind == "gunicorn":
        argv = [sys.executable, "-c", "import runpy, sys; runpy.run_path(sys.argv[1])", str(path)]
    else:
        return "not checked"
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)  # noqa: S603 -- fixed argv.
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        raise RenderError(f"{' '.join(argv)} refused {path}:\n{output}")
    return output or "valid"
