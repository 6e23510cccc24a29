"""Redis in the local stack: `up` starts it from the system's binary and writes its URL into
the settings file the service reads; `down` stops it by its PID."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from c50k.settings import SETTINGS_FILE_ENV, Settings
from c50k.stack.redis import answers_ping
from c50k.stack.stack import StackPlan, down, status_rows, up


def test_stack_up_starts_redis_and_down_stops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = up(StackPlan(shards=0, redis=True), tmp_path)
    try:
        (record,) = state.of_kind("redis")
        assert answers_ping(record.host, record.port)
        url = f"redis://{record.host}:{record.port}/0"
        assert tomllib.loads(state.settings_path.read_text())["redis"] == {"url": url}
        monkeypatch.setenv(SETTINGS_FILE_ENV, str(state.settings_path))
        assert Settings().redis.url == url
        conf = (tmp_path / "redis" / "redis.conf").read_text()
        assert 'save ""' in conf
        assert "appendonly no" in conf
        assert "maxmemory-policy allkeys-lfu" in conf
        assert [(r.name, running) for r, running in status_rows(tmp_path)] == [("redis", True)]
    finally:
        stopped = down(tmp_path)
    assert stopped == ["redis"]
    assert not record.running()
    assert not answers_ping(record.host, record.port)
