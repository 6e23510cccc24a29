"""The scenarios of `c50k bench`, as data: the command line, its help and its checks are
derived from this list. A runner is imported only when its scenario runs, so `c50k --help`
loads none of the harness."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from c50k.bench.runner import Context
    from c50k.bench.scenarios import ScenarioResult

Runner = Callable[["Context"], Awaitable["ScenarioResult"]]
ALL = "all"


@dataclass(frozen=True)
class Scenario:
    name: str
    runner: str  # "module:function"
    summary: str
    # Whether `--target URL` may stand in for the c50k it measures. The others configure the
    # c50k they start themselves (its admission limit, store, cache or database tier).
    external: bool

    def load(self) -> Runner:
        module, _, function = self.runner.partition(":")
        runner: Runner = getattr(importlib.import_module(module), function)
        return runner


SCENARIOS = (
    Scenario("hot", "c50k.bench.scenarios:hot", "cached reads over 100 ids", external=True),
    Scenario("fanout", "c50k.bench.scenarios:fanout", "cache off, two upstream calls a request",
             external=True),
    Scenario("c50k", "c50k.bench.stress:c50k", "50,000 keep-alive connections, each busy",
             external=True),
    Scenario("burst", "c50k.bench.stress:burst", "50,000 connections opened at once",
             external=True),
    Scenario("overload", "c50k.bench.stress:overload", "an open-model rate at 3x capacity",
             external=False),
    Scenario("locust", "c50k.bench.classic:locust", "the classic locust user", external=False),
    Scenario("hot-redis", "c50k.bench.cache_scenarios:hot_redis",
             "cached reads with and without Redis", external=False),
    Scenario("stampede", "c50k.bench.cache_scenarios:stampede",
             "thousands of connections on one cold id", external=False),
    Scenario("db", "c50k.bench.database:db",
             "the data tier alone, beside a raw asyncpg peer", external=False),
    Scenario("db-mixed", "c50k.bench.database_mixed:db_mixed",
             "50,000 connections on PostgreSQL, 5% cold reads", external=False),
)  # fmt: skip
BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}


def names_help() -> str:
    return ", ".join(s.name for s in SCENARIOS) + f", or {ALL}"


def select(name: str, *, external: bool) -> list[Scenario]:
    """The scenarios `c50k bench NAME` runs; ValueError for an unknown name, or for scenarios
    that cannot measure an external service when `--target` is given."""
    if name == ALL:
        chosen = list(SCENARIOS)
    elif name in BY_NAME:
        chosen = [BY_NAME[name]]
    else:
        raise ValueError(f"unknown scenario {name!r}; choose from {names_help()}")
    if external and (local := [s.name for s in chosen if not s.external]):
        raise ValueError(f"--target does not apply to {', '.join(local)}")
    return chosen
