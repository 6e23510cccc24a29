"""The rendered HAProxy and nginx files pass the real binaries' own checks (haproxy -c,
nginx -t) in every shape the settings allow, and the scrape config passes promtool's. Without
the binaries these tests fail."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from c50k.inventory import parse_instances
from c50k.observability.prometheus_config import render_scrape_config
from c50k.render.files import Kind, Placement, render, validate
from c50k.settings import LbSettings, Settings

SHAPES = {
    "defaults": {},
    "roundrobin, weights": {
        "algorithm": "roundrobin",
        "instances": "10.0.0.1:8000@10,10.0.0.2:8000@256,10.0.0.3:8001",
    },
    "micro-cache": {"microcache": True, "microcache_seconds": 2},
    "one instance, small": {"instances": "127.0.0.1:8001", "connections": 100, "nofile": 1024},
    "ipv6": {"instances": "[fd00::1]:8000,[::1]:8001", "host": "::1"},
    "large heads": {"max_header_bytes": 32768, "request_timeout_seconds": 0.5},
}


@pytest.mark.parametrize("kind", ["haproxy", "nginx", "gunicorn"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_rendered_file_passes_the_binary_check(tmp_path: Path, kind: Kind, shape: str) -> None:
    settings = Settings(lb=LbSettings.model_validate(SHAPES[shape]))
    path = tmp_path / f"{kind}.conf"
    path.write_text(render(kind, settings, Placement(runtime_dir=str(tmp_path))))
    validate(kind, path)  # Raises with the binary's complaint.


def test_the_scrape_config_passes_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: scripts/system-deps installs prometheus"
    instances = parse_instances("127.0.0.1:9101, app-2.internal:9101,[::1]:9102", weighted=False)
    text = render_scrape_config(instances, job="c50k", interval_seconds=5)
    assert "'[::1]:9102'" in text
    path = tmp_path / "prometheus.yml"
    path.write_text(text)
    checked = subprocess.run(
        [promtool, "check", "config", str(path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
