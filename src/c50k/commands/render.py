"""`c50k render haproxy|nginx|gunicorn|systemd|sysctl|prometheus|cloud-init`."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from c50k.commands.config import load_settings
from c50k.commands.fleet import FleetFile, base_settings

render_app = typer.Typer(
    help="Write a deployment file from the settings (C50K_* variables or C50K_SETTINGS_FILE) "
    "and the inventory of app instances (C50K_LB_INSTANCES).",
    no_args_is_help=True,
)

Output = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write here instead of to stdout.")
]
Check = Annotated[
    bool,
    typer.Option(help="Have the real binary check the written file (haproxy -c, nginx -t)."),
]
RuntimeDir = Annotated[
    str, typer.Option(help="Where the balancer keeps its socket, pid and temporary files.")
]

SUMMARIES = {
    "haproxy": "haproxy.cfg: leastconn/roundrobin over the instances, /ready checks, retries.",
    "nginx": "nginx.conf: upstream with keep-alive, forwarded headers, limits, micro-cache.",
    "gunicorn": "gunicorn.conf.py for one instance (plain `gunicorn -c`).",
    "systemd": "c50k.service: one instance under systemd, with reload and drain.",
    "sysctl": "sysctl.d file: accept queues, ports and files for the connection target.",
}


def _command(kind: str) -> Callable[[Output, Check, RuntimeDir], None]:
    def command(
        output: Output = None, check: Check = False, runtime_dir: RuntimeDir = "/run/c50k"
    ) -> None:
        from c50k.render.files import KINDS, Placement, RenderError, render, validate  # noqa: PLC0415

        chosen = next(k for k in KINDS if k == kind)
        try:
            text = render(chosen, load_settings(), Placement(runtime_dir=runtime_dir))
            if output is None:
                if check:
                    raise RenderError("--check needs --output")
                typer.echo(text, nl=False)
                return
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text)
            if check:
                typer.echo(f"{output}: {validate(chosen, output)}", err=True)
        except RenderError as exc:
            typer.echo(f"c50k render: {exc}", err=True)
            raise typer.Exit(1) from exc

    command.__doc__ = SUMMARIES[kind]
    return command


for _kind in SUMMARIES:
    render_app.command(_kind)(_command(_kind))


@render_app.command("prometheus")
def render_prometheus(
    instances: Annotated[
        str | None,
        typer.Option(
            help="Metrics exporters to scrape, host:port,host:port (default: each host of "
            "C50K_LB_INSTANCES at C50K_METRICS_PORT, one instance a machine)."
        ),
    ] = None,
    job: Annotated[str, typer.Option(help="The job label of every series.")] = "c50k",
    interval: Annotated[int, typer.Option(min=1, help="Scrape interval in seconds.")] = 15,
    output: Output = None,
) -> None:
    """prometheus.yml: a scrape config for every instance's metrics exporter."""
    from c50k.inventory import parse_instances  # noqa: PLC0415
    from c50k.observability.prometheus_config import render_scrape_config  # noqa: PLC0415

    if instances is None:
        settings = load_settings()
        hosts = dict.fromkeys(i.host for i in settings.lb.inventory)
        port = settings.metrics.port
        instances = ",".join(f"[{h}]:{port}" if ":" in h else f"{h}:{port}" for h in hosts)
    try:
        text = render_scrape_config(
            parse_instances(instances, weighted=False), job=job, interval_seconds=interval
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)


class RoleName(StrEnum):
    app = "app"
    postgres_primary = "postgres-primary"
    postgres_replica = "postgres-replica"
    redis = "redis"
    haproxy = "haproxy"


@render_app.command("cloud-init")
def render_cloud_init(
    role: Annotated[RoleName, typer.Option(help="The host's role.")],
    fleet: FleetFile = None,
    host: Annotated[
        str | None, typer.Option(help="Which host of the role (default: the first), e.g. app-2.")
    ] = None,
    secrets: Annotated[
        Path | None,
        typer.Option(help="A TOML file of C50K_* secrets, written to the host with mode 0600."),
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here.")] = None,
) -> None:
    """cloud-init user-data of one fleet host: packages, c50k, users, settings, secrets,
    hardened units, sysctl, started."""
    from c50k.fleet.cloudinit import host_setup, user_data  # noqa: PLC0415
    from c50k.fleet.plan import app_settings, host_named, of_role  # noqa: PLC0415
    from c50k.fleet.spec import FleetError, load_fleet  # noqa: PLC0415
    from c50k.render.files import RenderError  # noqa: PLC0415

    try:
        spec = load_fleet(fleet)
        found = of_role(spec, role.value) if host is None else [host_named(spec, host)]
        if not found or found[0].role != role.value:
            raise FleetError(f"the fleet has no {role.value} host {host or ''}".strip())
        values = tomllib.loads(secrets.read_text()) if secrets is not None else {}
        setup = host_setup(found[0], spec, app_settings(spec, base_settings()), values)
        text = user_data(setup, spec, "C50K_* settings, fleet spec")
    except (FleetError, RenderError, ValueError, OSError) as exc:
        typer.echo(f"c50k render: {exc}", err=True)
        raise typer.Exit(1) from exc
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
