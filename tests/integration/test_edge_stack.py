"""`c50k stack up --app-instances N --lb ...` as a user runs it: the processes it records, the
settings file it writes, `status` and `down`."""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

import httpx
import pytest

from c50k.stack.stack import StackPlan, up
from c50k.stack.state import StackError, StackState
from tests.integration.edge import ENV


def c50k(*args: str, state_dir: Path) -> tuple[int, str]:
    import subprocess  # noqa: PLC0415 -- only these tests run the command line.

    result = subprocess.run(
        [sys.executable, "-m", "c50k", "stack", *args, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        # The stack's own store (one SQLite file for every instance), not a store per worker.
        env={**os.environ, **{k: v for k, v in ENV.items() if k != "C50K_STORE_BACKEND"}},
        timeout=120,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


def test_a_balancer_needs_instances(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="--app-instances"):
        up(StackPlan(shards=0, lb="nginx"), tmp_path)
    assert StackState.load(tmp_path).services == []


def test_stack_up_status_down_with_nginx(tmp_path: Path) -> None:
    state_dir = tmp_path / "stack"
    code, output = c50k(
        "up", "--shards", "0", "--app-instances", "2", "--lb", "nginx", state_dir=state_dir
    )
    try:
        assert code == 0, output
        state = StackState.load(state_dir)
        # Redis comes with every stack unless --no-redis; the instances share it.
        assert [s.kind for s in state.services] == ["redis", "app", "app", "nginx"]
        settings = tomllib.loads(state.settings_path.read_text())
        apps = [s.address for s in state.of_kind("app")]
        assert settings["lb"]["instances"] == ",".join(apps)
        assert settings["server"]["forwarded_allow_ips"] == "127.0.0.1"
        # The instances share one store through the balancer: a write is read back.
        lb = state.named("nginx")
        url = f"http://{lb.address}/items/900"
        assert httpx.put(url, json={"name": "lamp"}).status_code == 200
        assert httpx.get(url).json()["main_item"]["name"] == "lamp"
        assert c50k("status", state_dir=state_dir)[0] == 0
    finally:
        code, output = c50k("down", state_dir=state_dir)
    assert code == 0, output
    assert "stopped nginx, app-1, app-0" in output
    assert c50k("status", state_dir=state_dir)[0] == 1
