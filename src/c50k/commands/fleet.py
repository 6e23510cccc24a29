"""`c50k fleet rehearse up|status|down`, and the commands a database host's units run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from c50k.commands.config import load_settings

fleet_app = typer.Typer(
    help="A fleet of hosts (docs/deploy.md): the rehearsal on network-namespace hosts, and the "
    "commands a database host's units run.",
    no_args_is_help=True,
)
rehearse_app = typer.Typer(
    help="The fleet on this machine: each host a network namespace on one bridge, running what "
    "its cloud-init would install; HAProxy stands in for the NodeBalancer. Needs root.",
    no_args_is_help=True,
)
fleet_app.add_typer(rehearse_app, name="rehearse")


FleetFile = Annotated[
    Path | None,
    typer.Option("--fleet", help="The fleet spec, a TOML file (default: the spec's defaults)."),
]
StateDir = Annotated[Path, typer.Option("--state-dir", help="Where the rehearsal keeps its hosts.")]


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"c50k fleet: {exc}", err=True)
    return typer.Exit(1)


def base_settings() -> dict[str, Any]:
    """The operator's own settings (C50K_* or C50K_SETTINGS_FILE), as they set them: the
    fleet's settings file is these with the fleet's addresses on top."""
    return load_settings().model_dump(mode="json", exclude_unset=True, exclude_none=True)


@fleet_app.command("postgres-init")
def postgres_init(
    role: Annotated[str, typer.Option(help="primary or replica.")],
    name: Annotated[str, typer.Option(help="The host's name (the replica's slot).")],
    data_dir: Annotated[Path, typer.Option(help="The cluster's data directory.")],
    listen: Annotated[str, typer.Option(help="The host's private address.")],
    port: Annotated[int, typer.Option(help="PostgreSQL's port.")] = 5432,
    auth: Annotated[str, typer.Option(help="pg_hba method for the clients.")] = "trust",
    client: Annotated[list[str] | None, typer.Option(help="An app host's address.")] = None,
    replica: Annotated[list[str] | None, typer.Option(help="A replica host's address.")] = None,
    primary: Annotated[str | None, typer.Option(help="A replica's primary, HOST:PORT.")] = None,
) -> None:
    """Create the cluster on first boot (initdb, or a base backup of the primary), and write
    its c50k settings and pg_hba on every boot. A database host's unit runs it first."""
    from c50k.fleet.postgres import fleet_hba, init  # noqa: PLC0415
    from c50k.stack.state import StackError  # noqa: PLC0415

    if role not in ("primary", "replica"):
        raise typer.BadParameter("--role is primary or replica")
    source = None
    if primary is not None:
        address, _, primary_port = primary.rpartition(":")
        source = (address, int(primary_port))
    try:
        done = init(
            role="primary" if role == "primary" else "replica",
            name=name,
            data_dir=data_dir,
            listen=listen,
            port=port,
            hba=fleet_hba(auth, listen, client or [], replica or []),
            primary=source,
        )
    except StackError as exc:
        raise _fail(exc) from exc
    typer.echo(f"{name}: {done}")


@fleet_app.command("postgres-bootstrap")
def postgres_bootstrap(
    listen: Annotated[str, typer.Option(help="The primary's private address.")],
    port: Annotated[int, typer.Option(help="PostgreSQL's port.")] = 5432,
) -> None:
    """Create the database and apply the migrations on a primary that has just started."""
    from c50k.fleet.postgres import bootstrap  # noqa: PLC0415
    from c50k.stack.state import StackError  # noqa: PLC0415

    try:
        servers = bootstrap(listen, port)
    except StackError as exc:
        raise _fail(exc) from exc
    typer.echo(f"migrated {', '.join(servers)}")


@rehearse_app.command("up")
def rehearse_up(fleet: FleetFile = None, state_dir: StateDir = Path("var/fleet")) -> None:
    """Create the hosts and start the fleet; prints the balancer's URLs."""
    from c50k.fleet.rehearsal import up  # noqa: PLC0415
    from c50k.fleet.spec import FleetError, load_fleet  # noqa: PLC0415
    from c50k.stack.state import StackError  # noqa: PLC0415

    try:
        network, state = up(state_dir, load_fleet(fleet), base_settings())
    except (StackError, FleetError) as exc:
        raise _fail(exc) from exc
    for record in state.services:
        typer.echo(f"{record.name:<34} {record.host:<15} pid {record.pid}")
    typer.echo(f"\nbalancer: {','.join(network.urls)}")


@rehearse_app.command("status")
def rehearse_status(state_dir: StateDir = Path("var/fleet")) -> None:
    """Each process of the rehearsal and whether it runs (exit 1 if one does not)."""
    from c50k.stack.stack import status_rows  # noqa: PLC0415 -- the stack's own records.

    rows = status_rows(state_dir)
    if not rows:
        typer.echo(f"no rehearsal in {state_dir}")
        raise typer.Exit(1)
    for record, running in rows:
        typer.echo(f"{record.name:<34} {record.host:<15} {'running' if running else 'STOPPED'}")
    if not all(running for _record, running in rows):
        raise typer.Exit(1)


@rehearse_app.command("down")
def rehearse_down(state_dir: StateDir = Path("var/fleet")) -> None:
    """Stop every process, remove every namespace and the bridge the rehearsal created."""
    from c50k.fleet.rehearsal import down  # noqa: PLC0415

    removed = down(state_dir)
    typer.echo(f"removed {', '.join(removed)}" if removed else "nothing to remove")
