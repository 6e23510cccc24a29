"""Per-role host set-up: the files, units, packages and commands of one fleet host, and the
cloud-init user-data that installs them (`c50k render cloud-init --role ROLE`).

A host's set-up comes from two sources only: the c50k settings (the app hosts' settings file,
fleet/plan.py) and the fleet spec. The rehearsal (c50k.fleet.rehearsal) installs the very
same `HostSetup`, with its paths under a directory of its own instead of /.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import jinja2
import tomli_w

from c50k.fleet.plan import Host, SettingsDoc, host_environment, of_role
from c50k.fleet.spec import FleetSpec, Role
from c50k.render.files import Placement, RenderError, one_line, render, render_template
from c50k.settings import Settings
from c50k.stack.redis import CONFIG as REDIS_CONFIG
from c50k.stack.redis import MAXMEMORY

SECRET_NAME = re.compile(r"^C50K_[A-Z0-9_]+$")
# Debian's packages per role; each host gets only what its processes run.
PACKAGES: dict[Role, tuple[str, ...]] = {
    "app": ("python3", "python3-venv"),
    "postgres-primary": ("postgresql", "python3", "python3-venv"),
    "postgres-replica": ("postgresql", "python3", "python3-venv"),
    "redis": ("redis-server",),
    "haproxy": ("haproxy",),
}
# Debian starts its own instance of each server on install; c50k's units replace them.
DEBIAN_UNITS: dict[Role, tuple[str, ...]] = {
    "redis": ("redis-server.service",),
    "haproxy": ("haproxy.service",),
}
# Debian's postgresql-common would create and start a cluster "main" on 5432 at install.
NO_MAIN_CLUSTER = "# c50k's unit runs the cluster of this host.\ncreate_main_cluster = false\n"
SERVICE_USER = "c50k"


@dataclass(frozen=True)
class HostLayout:
    """Where a host keeps things. `root` prefixes every path: "" on a real host, a directory
    of its own for each rehearsal host."""

    root: str = ""
    python: str = "/opt/c50k/venv/bin/python"
    postgres_bindir: str | None = None  # None: the fleet spec's.
    redis_server: str = "/usr/bin/redis-server"
    haproxy: str = "/usr/sbin/haproxy"

    def path(self, absolute: str) -> str:
        return f"{self.root}{absolute}"

    @property
    def etc(self) -> str:
        return self.path("/etc/c50k")

    def state(self, name: str) -> str:
        """systemd's StateDirectory=name."""
        return self.path(f"/var/lib/{name}")

    def runtime(self, name: str) -> str:
        """systemd's RuntimeDirectory=name."""
        return self.path(f"/run/{name}")


PRODUCTION_LAYOUT = HostLayout()


@dataclass(frozen=True)
class File:
    path: str
    content: str
    mode: str = "0644"


@dataclass
class HostSetup:
    host: Host
    packages: tuple[str, ...]
    users: tuple[str, ...]
    files: list[File] = field(default_factory=list)
    units: dict[str, str] = field(default_factory=dict)  # name -> unit text
    commands: list[list[str]] = field(default_factory=list)
    install_c50k: bool = False


def secrets_file(secrets: dict[str, str]) -> str:
    """An EnvironmentFile of C50K_* variables, each value double-quoted for systemd."""
    lines = ["# c50k secrets: C50K_* variables that override the settings file. Root only.\n"]
    for name, value in sorted(secrets.items()):
        if not SECRET_NAME.match(name):
            raise RenderError(f"secret {name!r} is not a C50K_* variable name")
        one_line(value)
        if any(ord(c) < 32 for c in value):
            raise RenderError(f"secret {name}: control characters are not allowed")
        quoted = value.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{name}="{quoted}"\n')
    return "".join(lines)


def _unit_path(layout: HostLayout, name: str) -> str:
    return layout.path(f"/etc/systemd/system/{name}")


def _settings(doc: SettingsDoc, host: Host, spec: FleetSpec) -> Settings:
    """The settings as this host sees them: the file, then its unit's variables."""
    settings = Settings.model_validate(doc)
    environment = host_environment(host, spec)
    if not environment:
        return settings
    server = settings.server.model_copy(update={"host": environment["C50K_SERVER_HOST"]})
    metrics = settings.metrics.model_copy(update={"host": environment["C50K_METRICS_HOST"]})
    return settings.model_copy(update={"server": server, "metrics": metrics})


def _app(setup: HostSetup, spec: FleetSpec, doc: SettingsDoc, layout: HostLayout) -> None:
    host = setup.host
    settings = _settings(doc, host, spec)
    environment = {
        **host_environment(host, spec),
        "C50K_METRICS_MULTIPROC_DIR": layout.runtime("c50k") + "/metrics",
    }
    placement = Placement(
        service_user=SERVICE_USER,
        settings_file=f"{layout.etc}/c50k.toml",
        secrets_file=f"{layout.etc}/secrets.env",
        state_dir=layout.state("c50k"),
        python=layout.python,
        source="the fleet's c50k.toml",
        environment=tuple(sorted(environment.items())),
    )
    setup.units["c50k.service"] = render("systemd", settings, placement)


def _postgres(setup: HostSetup, spec: FleetSpec, layout: HostLayout) -> None:
    host = setup.host
    role = "primary" if host.role == "postgres-primary" else "replica"
    replicas = [h.address for h in of_role(spec, "postgres-replica") if h.primary == host.address]
    setup.files.append(
        File(layout.path("/etc/postgresql-common/createcluster.conf"), NO_MAIN_CLUSTER)
    )
    setup.units["c50k-postgres.service"] = render_template(
        "c50k-postgres.service.j2",
        {
            "role": role,
            "name": host.name,
            "shard": host.shard,
            "address": host.address,
            "port": spec.postgres_port,
            "bindir": layout.postgres_bindir or spec.postgres.bindir,
            "python": layout.python,
            "data_dir": layout.state("c50k-postgres") + "/data",
            "auth": spec.postgres.auth,
            "clients": [h.address for h in of_role(spec, "app")],
            "replicas": replicas,
            "primary": f"{host.primary}:{spec.postgres_port}" if host.primary else None,
            "capabilities": "",
        },
    )


def _redis(setup: HostSetup, spec: FleetSpec, layout: HostLayout, nofile: int) -> None:
    host = setup.host
    config = f"{layout.etc}/redis.conf"
    # The stack's cache configuration, bound to the private address. Protected mode would
    # refuse every client that is not on loopback: the firewall admits the app hosts only.
    text = REDIS_CONFIG.format(
        host=host.address, port=spec.redis_port, dir=layout.state("c50k-redis"), maxmemory=MAXMEMORY
    ).replace("protected-mode yes", "protected-mode no")
    setup.files.append(File(config, text))
    setup.units["c50k-redis.service"] = render_template(
        "c50k-redis.service.j2",
        {
            "address": host.address,
            "port": spec.redis_port,
            "redis_server": layout.redis_server,
            "config": config,
            "nofile": nofile,
            "capabilities": "",
        },
    )


def _haproxy(setup: HostSetup, spec: FleetSpec, doc: SettingsDoc, layout: HostLayout) -> None:
    settings = Settings.model_validate(doc)
    lb = settings.lb.model_copy(update={"host": setup.host.address, "port": 80})
    settings = settings.model_copy(update={"lb": lb})
    config = f"{layout.etc}/haproxy.cfg"
    placement = Placement(
        runtime_dir=layout.runtime("c50k-haproxy"), source="the fleet's c50k.toml"
    )
    setup.files.append(File(config, render("haproxy", settings, placement)))
    setup.units["c50k-haproxy.service"] = render_template(
        "c50k-haproxy.service.j2",
        {
            "binds": ", ".join(lb.binds),
            "haproxy": layout.haproxy,
            "config": config,
            "nofile": lb.nofile,
            # Port 80 as the haproxy user: this one capability, nothing else.
            "capabilities": "CAP_NET_BIND_SERVICE",
        },
    )


def host_setup(
    host: Host,
    spec: FleetSpec,
    doc: SettingsDoc,
    secrets: dict[str, str] | None = None,
    layout: HostLayout = PRODUCTION_LAYOUT,
) -> HostSetup:
    """Everything one host needs: files (settings, secrets, sysctl, configs), hardened units
    for each of its processes, packages, users and the commands that start them."""
    role = host.role
    settings = Settings.model_validate(doc)
    installs_c50k = role in ("app", "postgres-primary", "postgres-replica")
    setup = HostSetup(
        host,
        PACKAGES[role],
        (SERVICE_USER,) if role == "app" else (),
        install_c50k=installs_c50k,
    )
    sysctl = render("sysctl", settings, Placement(source="the fleet's c50k.toml"))
    setup.files.append(File(layout.path("/etc/sysctl.d/60-c50k.conf"), sysctl))
    if role == "app":
        setup.files.append(File(f"{layout.etc}/c50k.toml", tomli_w.dumps(doc)))
        setup.files.append(File(f"{layout.etc}/secrets.env", secrets_file(secrets or {}), "0600"))
        _app(setup, spec, doc, layout)
    elif role in ("postgres-primary", "postgres-replica"):
        _postgres(setup, spec, layout)
    elif role == "redis":
        _redis(setup, spec, layout, settings.lb.nofile)
    else:
        _haproxy(setup, spec, doc, layout)
    for name, text in setup.units.items():
        setup.files.append(File(_unit_path(layout, name), text))
    venv = layout.python.rsplit("/bin/", 1)[0]
    if installs_c50k:
        setup.commands += [
            ["python3", "-m", "venv", venv],
            [f"{venv}/bin/pip", "install", "--upgrade", spec.package],
        ]
    setup.commands.append(["sysctl", "-p", layout.path("/etc/sysctl.d/60-c50k.conf")])
    for unit in DEBIAN_UNITS.get(role, ()):
        setup.commands.append(["systemctl", "disable", "--now", unit])
    setup.commands.append(["systemctl", "daemon-reload"])
    setup.commands.append(["systemctl", "enable", "--now", *setup.units])
    return setup


@cache
def _yaml_environment() -> jinja2.Environment:
    # No line check here: file contents are block scalars on purpose, and every other value
    # goes through tojson (a JSON string is a YAML double-quoted scalar).
    return jinja2.Environment(
        loader=jinja2.PackageLoader("c50k.render", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 -- YAML, not HTML.
    )


def _block_safe(file: File) -> None:
    # A block scalar takes its indentation from its first line, and keeps one final newline.
    if not file.content.endswith("\n") or file.content[:1].isspace() or "\t" in file.content:
        raise RenderError(f"{file.path}: content cannot be written as a YAML block")


def user_data(setup: HostSetup, spec: FleetSpec, source: str = "the fleet spec") -> str:
    """The cloud-config of one host."""
    for file in setup.files:
        _block_safe(file)
    context: dict[str, Any] = {
        "host": setup.host.name,
        "role": setup.host.role,
        "source": source,
        "packages": setup.packages,
        "users": setup.users,
        "authorized_keys": spec.authorized_keys,
        "files": setup.files,
        "commands": setup.commands,
    }
    return _yaml_environment().get_template("cloud-config.yaml.j2").render(context)
