"""`c50k bench`: run scenarios, write their reports, and keep BENCHMARKS.md's table current."""

from __future__ import annotations

import asyncio
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import orjson
from rich.console import Console

from c50k.bench.machine import read_machine
from c50k.bench.registry import BY_NAME
from c50k.bench.report import build_report, write_report
from c50k.bench.runner import Context
from c50k.bench.targets_setup import ALL_TARGETS
from c50k.settings import Settings

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


@dataclass(frozen=True)
class BenchOptions:
    scenarios: list[str]
    settings: Settings
    duration_seconds: int = 15
    addresses: int = 4
    targets: tuple[str, ...] = ALL_TARGETS
    results_dir: Path = Path("bench/results")
    bench_dir: Path = Path("bench")
    update_benchmarks: Path | None = None
    external_url: str | None = None
    connections: int | None = None


async def run_scenario(name: str, options: BenchOptions, console: Console) -> Path:
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    addresses = [f"127.0.0.{i}" for i in range(1, options.addresses + 1)]
    targets = list(options.targets)
    if options.external_url is not None:
        # Only the given service, on its own addresses (several URLs of one port: the load
        # spreads over them, as over the loopback addresses).
        urls = [u.strip() for u in options.external_url.split(",") if u.strip()]
        addresses = [urlsplit(u).hostname or "127.0.0.1" for u in urls]
        targets = ["external"]
    ctx = Context(
        workdir=(options.results_dir / f"{stamp}-{name}").resolve(),
        machine=read_machine(),
        addresses=addresses,
        duration_seconds=options.duration_seconds,
        baselines_dir=(options.bench_dir / "baselines").resolve(),
        targets=targets,
        console=console,
        settings=options.settings,
        external_url=options.external_url,
        connections=options.connections,
    )
    console.rule(f"c50k bench {name}")
    result = await BY_NAME[name].load()(ctx)
    report = build_report(ctx, result, started, ["c50k", "bench", *sys.argv[2:]])
    directory = write_report(ctx.workdir, report)
    verdict = "[green]passed[/]" if result.passed else "[red]failed[/]"
    console.print(f"{name}: {verdict} — {directory / 'report.html'}")
    for step in result.steps:
        for check in step.checks:
            if not check.passed:
                console.print(
                    f"  [red]✗[/] {step.target} {step.label}: {check.name}: {check.detail}"
                )
    return directory


def update_benchmarks(path: Path, summaries: list[str]) -> None:
    """Replace the generated section of BENCHMARKS.md with the latest tables."""
    text = path.read_text()
    block = f"{BEGIN}\n" + "\n".join(summaries) + f"{END}"
    if BEGIN in text and END in text:
        text = re.sub(
            re.escape(BEGIN) + ".*?" + re.escape(END), lambda _m: block, text, flags=re.DOTALL
        )
    else:
        text += f"\n## Latest `make bench`\n\n{block}\n"
    path.write_text(text)


def run_bench(options: BenchOptions) -> int:
    # Piped into a file or CI, rich would wrap at 80 columns; the step lines need more.
    console = Console(width=None if sys.stdout.isatty() else 120)
    directories: list[Path] = []
    for name in options.scenarios:
        directories.append(asyncio.run(run_scenario(name, options, console)))
    if options.update_benchmarks is not None:
        update_benchmarks(
            options.update_benchmarks, [(d / "summary.md").read_text() for d in directories]
        )
    verdicts = [orjson.loads((d / "report.json").read_bytes())["passed"] for d in directories]
    return 0 if all(verdicts) else 1
