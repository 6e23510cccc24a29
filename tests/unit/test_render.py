"""The rendered deployment files: what each must say, from settings alone (no binaries)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from c50k.cli import app
from c50k.inventory import (
    Instance,
    InventoryError,
    format_instances,
    is_private,
    parse_instances,
)
from c50k.render.files import (
    KINDS,
    LB_RESERVED_FILES,
    RenderError,
    lb_processes,
    render,
)
from c50k.runtime.serving import gunicorn_hooks, gunicorn_settings
from c50k.settings import LbSettings, ServerSettings, Settings

THREE = "10.0.0.1:8000,10.0.0.2:8000@50,10.0.0.3:8001"


def settings_with(**lb: object) -> Settings:
    return Settings(lb=LbSettings.model_validate({"instances": THREE, **lb}))


def test_inventory_parses_hosts_ports_and_weights() -> None:
    assert parse_instances(" 10.0.0.1:8000 , [fd00::2]:81@7,localhost:9000@256") == [
        Instance("10.0.0.1", 8000),
        Instance("fd00::2", 81, 7),
        Instance("localhost", 9000, 256),
    ]
    assert format_instances(parse_instances("10.0.0.1:8000@100,[::1]:81@2")) == (
        "10.0.0.1:8000,[::1]:81@2"
    )


@pytest.mark.parametrize(
    "text", ["", "10.0.0.1", "10.0.0.1:0", "10.0.0.1:70000", ":80", "a:1@0", "a:1@257", "a:1,a:1"]
)
def test_inventory_refuses_what_it_cannot_place(text: str) -> None:
    with pytest.raises(InventoryError):
        parse_instances(text)
    with pytest.raises(ValidationError):
        LbSettings(instances=text)


@pytest.mark.parametrize(
    ("host", "private"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("192.168.1.5", True),
        ("172.16.0.1", True),
        ("fd00::1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("8.8.8.8", False),
        ("app.example.com", False),
    ],
)
def test_only_private_or_loopback_addresses_count_as_private(host: str, private: bool) -> None:
    assert is_private(host) is private


def test_forwarded_for_is_never_trusted_from_everyone() -> None:
    with pytest.raises(ValidationError, match="never"):
        ServerSettings(forwarded_allow_ips="*")
    with pytest.raises(ValidationError, match="never"):
        ServerSettings(forwarded_allow_ips="10.0.0.9,*")


def test_haproxy_balances_checks_retries_and_queues() -> None:
    text = render("haproxy", settings_with())
    for line in [
        "master-worker",
        "expose-fd listeners",
        "balance leastconn",
        "option httpchk",
        "http-check send meth GET uri /ready",
        "retry-on conn-failure empty-response response-timeout",
        "option redispatch 1",
        "timeout http-request 5000ms",
        "timeout queue 5000ms",
        "option forwardfor",
        "http-reuse safe",
        "http-request disable-l7-retry if !idempotent",
    ]:
        assert line in text
    assert re.search(r"default-server check inter 1000ms .*fall 2 rise 2 maxconn 1000", text)
    assert "server app-0 10.0.0.1:8000 weight 100" in text
    assert "server app-1 10.0.0.2:8000 weight 50" in text
    assert "server app-2 10.0.0.3:8001 weight 100" in text
    # Fail open: unchecked copies take traffic only when every checked instance is DOWN.
    assert "option allbackups" in text
    assert "server app-1-failopen 10.0.0.2:8000 weight 50 backup no-check" in text
    assert "balance roundrobin" in render("haproxy", settings_with(algorithm="roundrobin"))


def test_haproxy_holds_what_its_files_allow() -> None:
    settings = settings_with(connections=50_000, nofile=20_000)
    maxconn, processes = lb_processes(settings)
    assert 2 * maxconn + LB_RESERVED_FILES <= 20_000
    assert maxconn * processes >= 50_000
    text = render("haproxy", settings)
    assert f"maxconn {maxconn}\n" in text
    assert f"run {processes} processes" in text
    assert lb_processes(settings_with(connections=3000)) == (3000, 1)


def test_haproxy_refuses_oversized_bodies() -> None:
    text = render("haproxy", settings_with())
    assert "deny_status 413 if { req.hdr_val(content-length) gt 65536 }" in text


def test_nginx_proxies_with_keepalive_and_forwarded_headers() -> None:
    text = render("nginx", settings_with())
    for line in [
        "zone apps 256k;",
        "least_conn;",
        "server 10.0.0.2:8000 weight=50 max_fails=1 fail_timeout=2s;",
        # Fail open: never-failing copies take traffic only when every instance rests.
        "server 10.0.0.2:8000 weight=50 max_fails=0 backup;",
        "proxy_http_version 1.1;",
        "proxy_set_header Host $host;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_next_upstream error timeout http_502;",
        "client_header_timeout 5s;",
        "client_body_timeout 5s;",
        "large_client_header_buffers 4 8192;",
        "client_max_body_size 65536;",
    ]:
        assert line in text
    assert "least_conn" not in render("nginx", settings_with(algorithm="roundrobin"))
    assert "proxy_cache" not in text


def test_nginx_has_workers_and_files_for_the_connection_target() -> None:
    text = render("nginx", settings_with(connections=50_000, nofile=20_000))
    nofile = int(re.findall(r"worker_rlimit_nofile (\d+);", text)[0])
    per_worker = int(re.findall(r"worker_connections (\d+);", text)[0])
    workers = int(re.findall(r"worker_processes (\d+);", text)[0])
    assert per_worker < nofile <= 20_000
    # Each client connection has an instance connection beside it.
    assert workers * per_worker >= 2 * 50_000
    assert workers == math.ceil(1.25 * 100_000 / per_worker)
    # Every instance connection of a worker may stay idle in its keep-alive cache.
    assert int(re.findall(r"keepalive (\d+);", text)[0]) * workers >= 50_000


def test_nginx_micro_cache_covers_item_reads_only() -> None:
    text = render("nginx", settings_with(microcache=True, microcache_seconds=1))
    assert "proxy_cache_path" in text
    location = text[text.index("location /items/ {") :]
    assert "proxy_cache microcache;" in location
    assert "proxy_cache_valid 200 1s;" in location
    assert "proxy_cache_lock on;" in location


def test_app_instances_must_not_face_clients() -> None:
    with pytest.raises(RenderError, match=r"8\.8\.8\.8"):
        render("haproxy", settings_with(instances="10.0.0.1:80,8.8.8.8:80"))
    with pytest.raises(RenderError, match=r"0\.0\.0\.0"):
        render("nginx", settings_with(instances="0.0.0.0:80"))
    public = Settings(server=ServerSettings(host="0.0.0.0"))
    for kind in ("gunicorn", "systemd"):
        with pytest.raises(RenderError, match="C50K_SERVER_HOST"):
            render(kind, public)


def test_balancer_closes_idle_connections_before_the_app() -> None:
    with pytest.raises(RenderError, match="KEEPALIVE"):
        render("haproxy", settings_with(client_timeout_seconds=75))


def test_gunicorn_file_is_the_options_c50k_serve_uses(tmp_path: Path) -> None:
    settings = Settings(server=ServerSettings(host="10.0.0.5", port=8001, workers=3))
    namespace: dict[str, object] = {}
    exec(render("gunicorn", settings), namespace)  # noqa: S102 -- our own rendered file.
    values = gunicorn_settings(settings)
    assert {k: namespace[k] for k in values} == values
    for hook in gunicorn_hooks(settings):  # Built at start from the same settings.
        assert callable(namespace[hook]), hook


def test_systemd_unit_outlives_the_drain() -> None:
    settings = Settings(server=ServerSettings(drain_seconds=3, graceful_timeout_seconds=30))
    text = render("systemd", settings)
    stop = int(re.findall(r"TimeoutStopSec=(\d+)", text)[0])
    assert stop > 33
    assert "ExecReload=/bin/kill -HUP $MAINPID" in text
    assert "KillMode=mixed" in text
    assert "LimitNOFILE=20000" in text


def test_sysctl_names_queues_and_files() -> None:
    text = render("sysctl", settings_with())
    assert "net.core.somaxconn = 4096" in text
    assert "net.ipv4.ip_local_port_range = 1024 65535" in text


def test_render_command_writes_each_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C50K_LB_INSTANCES", THREE)
    runner = CliRunner()
    for kind in KINDS:
        result = runner.invoke(app, ["render", kind, "-o", str(tmp_path / kind)])
        assert result.exit_code == 0, result.output
        assert (tmp_path / kind).read_text() == render(kind, Settings())
    monkeypatch.setenv("C50K_LB_INSTANCES", "93.184.216.34:80")
    result = runner.invoke(app, ["render", "haproxy"])
    assert result.exit_code == 1
    assert "not a private or loopback address" in result.output
