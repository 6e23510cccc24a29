from __future__ import annotations

import math
import resource
from pathlib import Path

import pytest
from pydantic import ValidationError

from c50k.runtime.serving import WORKER_CLASS, gunicorn_options
from c50k.settings import (
    RESERVED_FILES_PER_WORKER,
    ServerSettings,
    Settings,
    UpstreamSettings,
    configuration_table,
    instance_settings,
)


def test_environment_sets_nested_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C50K_UPSTREAM_URL", "http://127.0.0.1:9000/posts/{id}")
    monkeypatch.setenv("C50K_SERVER_WORKERS", "3")
    monkeypatch.setenv("C50K_CACHE_ENABLED", "false")
    monkeypatch.setenv("C50K_STORE_BACKEND", "memory")
    monkeypatch.setenv("C50K_LOG_LEVEL", "debug")
    settings = Settings()
    assert settings.upstream.url == "http://127.0.0.1:9000/posts/{id}"
    assert settings.server.workers == 3
    assert settings.cache.enabled is False
    assert settings.store.backend == "memory"
    assert settings.log.level == "debug"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://host/posts/{id}",
        "http://host/posts/",
        "http://host/{id}/{id}",
        "http://host/{name}/{id}",
        "file:///etc/passwd#{id}",
    ],
)
def test_upstream_template_is_checked(url: str) -> None:
    with pytest.raises(ValidationError):
        UpstreamSettings(url=url)


def test_empty_upstream_url_means_none() -> None:
    assert UpstreamSettings(url="").url is None


def test_deadline_must_cover_one_upstream_call() -> None:
    with pytest.raises(ValidationError, match="deadline"):
        Settings.model_validate(
            {"upstream": {"timeout_seconds": 5}, "request": {"deadline_seconds": 1}}
        )


def test_connection_budget_leaves_room_for_upstream_and_files() -> None:
    server = ServerSettings()
    budget = server.connection_budget(upstream_connections=256)

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert budget == soft - 256 - RESERVED_FILES_PER_WORKER
    assert ServerSettings(max_connections_per_worker=100).connection_budget(256) == 100


def test_several_addresses_bind_the_same_port() -> None:
    server = ServerSettings(host="127.0.0.1, 127.0.0.2,::1", port=8000)
    assert server.binds == ["127.0.0.1:8000", "127.0.0.2:8000", "[::1]:8000"]
    with pytest.raises(ValidationError):
        ServerSettings(host="127.0.0.1,,127.0.0.2")


def test_gunicorn_options_follow_settings() -> None:
    settings = Settings.model_validate(
        {"server": {"host": "0.0.0.0", "port": 8123, "workers": 3, "drain_seconds": 2.5}}
    )
    options = gunicorn_options(settings)
    assert options["bind"] == ["0.0.0.0:8123"]
    assert options["workers"] == 3
    assert options["worker_class"] == WORKER_CLASS
    assert options["keepalive"] == 75  # Longer than nginx's and HAProxy's idle timeouts.
    assert options["graceful_timeout"] == math.ceil(2.5 + 30) + 2  # Drain, in-flight, margin.
    assert options["forwarded_allow_ips"] == "127.0.0.1"
    assert options["accesslog"] is None


def test_an_instance_reads_its_settings_file_under_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c50k.toml"
    path.write_text("[server]\nworkers = 5\ndrain_seconds = 7.0\ngraceful_timeout_seconds = 10.0\n")
    monkeypatch.delenv("C50K_SETTINGS_FILE", raising=False)
    monkeypatch.setenv("C50K_SERVER_WORKERS", "2")
    server = instance_settings(path).server
    assert (server.workers, server.drain_seconds) == (2, 7.0)  # The variable wins, as in serve.
    assert server.stop_seconds == math.ceil(7.0 + 10.0) + 5
    assert Settings().server.drain_seconds == 3.0  # This process's own reading is untouched.


def test_every_stop_timeout_is_derived_from_the_drain_and_the_grace() -> None:
    server = ServerSettings(drain_seconds=2.5, graceful_timeout_seconds=30)
    assert server.worker_stop_seconds == math.ceil(2.5 + 30) + 2  # gunicorn's graceful_timeout
    assert server.stop_seconds == server.worker_stop_seconds + 3  # systemd's, the stack's


def test_configuration_page_matches_the_settings() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    assert configuration_table() in page, "run: c50k config docs, and paste into the page"
