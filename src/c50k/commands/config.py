"""`c50k config show | docs`, and the command line's one reading of the settings."""

from __future__ import annotations

import typer
from pydantic import ValidationError

from c50k.settings import Settings, configuration_table

config_app = typer.Typer(help="Show the effective configuration, or its documentation.")


def load_settings() -> Settings:
    """The settings of this process (C50K_* variables over C50K_SETTINGS_FILE), read once at
    the command line's edge and passed down; exits 2 naming what is invalid."""
    try:
        return Settings()
    except ValidationError as exc:
        typer.echo(f"c50k: invalid configuration:\n{exc}", err=True)
        raise typer.Exit(2) from exc


@config_app.command("show")
def config_show() -> None:
    """Print the effective settings (environment applied) as JSON."""
    typer.echo(load_settings().model_dump_json(indent=2))


@config_app.command("docs")
def config_docs() -> None:
    """Print the table of every C50K_* variable (docs/configuration.md holds it)."""
    typer.echo(configuration_table(), nl=False)
