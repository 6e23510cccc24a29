"""The bench's scenarios as data: the command line refuses what a scenario cannot do before
anything starts, and its help and README list exactly the registered scenarios."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from c50k.bench.registry import ALL, SCENARIOS, select
from c50k.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize("name", [s.name for s in SCENARIOS if not s.external])
def test_a_scenario_that_starts_its_own_c50k_refuses_a_target(name: str) -> None:
    result = CliRunner().invoke(app, ["bench", name, "--target", "http://127.0.0.1:9/"])
    assert result.exit_code == 2
    assert f"--target does not apply to {name}" in result.output


def test_every_scenario_that_refuses_a_target_is_named_at_once() -> None:
    with pytest.raises(ValueError, match="does not apply to") as refused:
        select(ALL, external=True)
    local = [s.name for s in SCENARIOS if not s.external]
    assert str(refused.value) == f"--target does not apply to {', '.join(local)}"
    assert local == ["overload", "locust", "hot-redis", "stampede", "db", "db-mixed"]


def test_unknown_scenarios_are_refused() -> None:
    result = CliRunner().invoke(app, ["bench", "warm"])
    assert result.exit_code == 2
    assert "unknown scenario 'warm'" in result.output


def test_all_runs_every_scenario_in_order() -> None:
    assert select(ALL, external=False) == list(SCENARIOS)
    assert [s.name for s in select("hot", external=True)] == ["hot"]


def test_every_runner_is_a_coroutine_function_of_a_context() -> None:
    for scenario in SCENARIOS:
        runner = scenario.load()
        assert inspect.iscoroutinefunction(runner), scenario.name
        assert next(iter(inspect.signature(runner).parameters)) == "ctx", scenario.name


def test_help_and_readme_list_the_registered_scenarios() -> None:
    names = [s.name for s in SCENARIOS]
    help_text = " ".join(CliRunner().invoke(app, ["bench", "--help"]).output.split())
    assert all(name in help_text for name in names)
    table = README.read_text().split("| scenario | what it proves |", 1)[1].split("\n\n", 1)[0]
    listed = re.findall(r"^\| `([\w-]+)` \|", table, flags=re.MULTILINE)
    assert sorted(listed) == sorted(names)
