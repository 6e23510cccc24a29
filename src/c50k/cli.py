"""The `c50k` command."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from c50k import __version__
from c50k.bench.registry import names_help, select
from c50k.commands.config import config_app, load_settings
from c50k.commands.db import db_app
from c50k.commands.fleet import fleet_app
from c50k.commands.render import render_app
from c50k.commands.stack import stack_app

app = typer.Typer(
    name="c50k",
    help="A Python service stack that holds 50,000+ concurrent requests, and proves it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"c50k {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    _version_flag: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Every setting comes from C50K_* environment variables (docs/configuration.md);
    command-line flags override them."""


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind [C50K_SERVER_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind [C50K_SERVER_PORT].")] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Worker processes [C50K_SERVER_WORKERS].")
    ] = None,
) -> None:
    """Serve the API: gunicorn managing uvicorn workers (uvloop + httptools).

    SIGTERM drains (/ready turns 503, then in-flight requests finish); SIGINT stops at once;
    SIGHUP reloads the workers gracefully.
    """
    from c50k.runtime.serving import serve as run_server  # noqa: PLC0415 -- keep --help fast.

    settings = load_settings()
    overrides = {"host": host, "port": port, "workers": workers}
    server = settings.server.model_copy(
        update={k: v for k, v in overrides.items() if v is not None}
    )
    run_server(settings.model_copy(update={"server": server}))


@app.command()
def upstream(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 9000,
    posts: Annotated[int, typer.Option(min=0, help="Ids 1..N exist; others answer 404.")] = 100,
    latency_ms: Annotated[float, typer.Option(min=0, help="Delay before each answer.")] = 0.0,
    jitter_ms: Annotated[float, typer.Option(min=0, help="Random extra delay, 0..N.")] = 0.0,
    error_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share of answers with --status.")
    ] = 0.0,
    status: Annotated[
        int | None,
        typer.Option(min=100, max=599, help="Status of failed answers; alone, fails them all."),
    ] = None,
    invalid_json: Annotated[bool, typer.Option(help="Answer posts with broken JSON.")] = False,
    seed: Annotated[int | None, typer.Option(help="Seed of the failure dice.")] = None,
) -> None:
    """Run a mock upstream API (JSONPlaceholder-style GET /posts/{id}) with /stats and /control."""
    from c50k.upstream.mockserver import Behaviour, run  # noqa: PLC0415 -- keep --help fast.

    if status is not None and error_rate == 0:
        error_rate = 1.0
    behaviour = Behaviour(
        posts=posts,
        latency_ms=latency_ms,
        jitter_ms=jitter_ms,
        error_rate=error_rate,
        status=status if status is not None else 500,
        invalid_json=invalid_json,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger(__name__).info("mock upstream on http://%s:%d/posts/{id}", host, port)
    run(host, port, behaviour, seed)


@app.command()
def seed(
    count: Annotated[int, typer.Option(min=1, help="Write demo items 1..N.")] = 100,
    if_empty: Annotated[bool, typer.Option(help="Only when the store holds no item.")] = False,
) -> None:
    """Write demo items (JSONPlaceholder-style posts) into the configured store."""
    import asyncio  # noqa: PLC0415 -- keep --help fast.

    from c50k.items.seeding import seed_store  # noqa: PLC0415

    written = asyncio.run(seed_store(load_settings(), count, only_if_empty=if_empty))
    typer.echo(f"seeded {written} demo items" if written else "store not empty; nothing seeded")


@app.command()
def bench(
    scenario: Annotated[
        str,
        typer.Argument(help=names_help()),
    ],
    duration: Annotated[
        int, typer.Option(min=1, help="Seconds per closed-loop step (hot, fanout).")
    ] = 15,
    addresses: Annotated[
        int, typer.Option(min=1, max=254, help="Loopback addresses to spread load over.")
    ] = 4,
    targets: Annotated[
        str,
        typer.Option(
            help="Comma-separated: c50k, naive, straightforward, ceiling; c50k-bare, "
            "c50k-access-log (observability off, an access log on); behind a load balancer: "
            "c50k-haproxy, c50k-nginx, c50k-nginx-microcache."
        ),
    ] = "c50k,naive,straightforward,ceiling",
    connections: Annotated[
        int | None,
        typer.Option(min=1, help="Connections (locust: users) instead of the scenario's own."),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            help="Measure this running service instead: a URL, or several of one port, "
            "comma-separated, to spread the load over its addresses.",
        ),
    ] = None,
    results: Annotated[Path, typer.Option(help="Where reports go.")] = Path("bench/results"),
    update_benchmarks: Annotated[
        Path | None, typer.Option(help="Write the summaries into this BENCHMARKS.md.")
    ] = None,
) -> None:
    """Load-test c50k beside its baselines and write a report (JSON, HTML, markdown).

    Starts everything it measures on loopback addresses and stops it afterwards; never
    changes a system setting, but names the one that capped a run.
    """
    try:
        scenarios = select(scenario, external=target is not None)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    from c50k.bench.main import BenchOptions, run_bench  # noqa: PLC0415 -- keep --help fast.

    chosen = tuple(t.strip() for t in targets.split(",") if t.strip())
    options = BenchOptions(
        scenarios=[s.name for s in scenarios],
        settings=load_settings(),
        duration_seconds=duration,
        addresses=addresses,
        targets=chosen,
        results_dir=results,
        update_benchmarks=update_benchmarks,
        external_url=target,
        connections=connections,
    )
    raise typer.Exit(run_bench(options))


app.add_typer(stack_app, name="stack")
app.add_typer(db_app, name="db")
app.add_typer(render_app, name="render")
app.add_typer(fleet_app, name="fleet")
app.add_typer(config_app, name="config")


@app.command()
def profile(
    pid: Annotated[int, typer.Option(help="A worker's PID, or the master's (its first worker).")],
    seconds: Annotated[int, typer.Option(min=1, max=3600, help="How long to sample.")] = 10,
    output: Annotated[Path, typer.Option(help="The flame graph (SVG).")] = Path("profile.svg"),
    rate: Annotated[int, typer.Option(min=1, max=1000, help="Samples per second.")] = 100,
    idle: Annotated[bool, typer.Option(help="Sample the worker while it waits, too.")] = False,
) -> None:
    """Record a flame graph of a live worker with py-spy (docs/observability.md)."""
    from c50k.observability.profiling import ProfileError, record_flame_graph  # noqa: PLC0415

    try:
        worker = record_flame_graph(pid, seconds, output, rate, idle=idle)
    except ProfileError as exc:
        typer.echo(f"c50k profile: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"flame graph of worker {worker} ({seconds} s) in {output}")


def main() -> None:
    app()
