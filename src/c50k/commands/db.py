"""`c50k db upgrade | status`: the PostgreSQL shards of the configured settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from c50k.commands.config import load_settings

if TYPE_CHECKING:
    from c50k.settings import PostgresSettings

db_app = typer.Typer(
    help="Schema and health of the PostgreSQL shards (C50K_POSTGRES_SHARDS, or the stack's "
    "settings file through C50K_SETTINGS_FILE).",
    no_args_is_help=True,
)


def _postgres() -> PostgresSettings:
    settings = load_settings()
    if not settings.postgres.shards:
        typer.echo("c50k db: no shards configured (C50K_POSTGRES_SHARDS)", err=True)
        raise typer.Exit(2)
    return settings.postgres


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply the migrations to every shard's primary (replicas follow by replication)."""
    from c50k.store.migrate import upgrade  # noqa: PLC0415 -- keep --help fast.

    for server in upgrade(_postgres(), revision):
        typer.echo(f"upgraded {server} to {revision}")


@db_app.command("status")
def db_status() -> None:
    """Each shard's primary and replicas: reachable, replication state, lag, revision.
    Exits 1 when a server is unreachable or behind the newest revision."""
    import asyncio  # noqa: PLC0415

    from c50k.store.migrate import head_revision, status  # noqa: PLC0415

    head = head_revision()
    rows = asyncio.run(status(_postgres()))
    healthy = True
    typer.echo(f"{'shard':<6}{'role':<9}{'server':<22}{'state':<16}{'lag':>10}  revision")
    for row in rows:
        lag = "" if row.lag_seconds is None else f"{row.lag_seconds:.3f}s"
        if row.lag_bytes:
            lag += f" ({row.lag_bytes} B)"
        revision = row.revision or "none"
        if row.revision != head:
            revision += f" (head is {head})"
            healthy = False
        healthy = healthy and row.reachable
        typer.echo(
            f"{row.shard:<6}{row.role:<9}{row.server:<22}{row.detail:<16}{lag:>10}  {revision}"
        )
    if not healthy:
        raise typer.Exit(1)
