"""Every role's user-data passes `cloud-init schema`, and its systemd units pass
`systemd-analyze verify` (both the system's own checkers; without them these tests fail)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from c50k.fleet.cloudinit import HostLayout, host_setup, user_data
from c50k.fleet.plan import app_settings, hosts
from c50k.fleet.spec import ROLES, FleetSpec
from c50k.render.files import RenderError
from c50k.stack.postgres import bindir

SPEC = FleetSpec(
    haproxy={"count": 1, "type": "g6-dedicated-2"},
    authorized_keys=["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI admin@example"],
    admin_cidrs=["203.0.113.0/24"],
)
SECRETS = {"C50K_REDIS_URL": 'redis://:p"w\\d@10.0.0.180:6379/0'}


def first(role: str) -> object:
    return next(h for h in hosts(SPEC) if h.role == role)


@pytest.mark.parametrize("role", ROLES)
def test_user_data_of_every_role_passes_cloud_init_schema(tmp_path: Path, role: str) -> None:
    host = next(h for h in hosts(SPEC) if h.role == role)
    text = user_data(host_setup(host, SPEC, app_settings(SPEC), SECRETS), SPEC)
    path = tmp_path / f"{role}.yaml"
    path.write_text(text)
    result = subprocess.run(
        ["cloud-init", "schema", "--config-file", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout
    document = yaml.safe_load(text)
    files = {f["path"]: f for f in document["write_files"]}
    assert "/etc/sysctl.d/60-c50k.conf" in files
    units = [p for p in files if p.startswith("/etc/systemd/system/")]
    assert units, "every role runs at least one unit"
    assert document["runcmd"][-1] == [
        "systemctl",
        "enable",
        "--now",
        *(Path(u).name for u in units),
    ]
    assert document["packages"]
    if role == "app":
        assert document["users"][1]["name"] == "c50k"
        assert files["/etc/c50k/secrets.env"]["permissions"] == "0600"
        assert (
            'C50K_REDIS_URL="redis://:p\\"w\\\\d@10.0.0.180:6379/0"'
            in files["/etc/c50k/secrets.env"]["content"]
        )


def test_units_of_every_role_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    assert shutil.which("systemd-analyze"), "systemd-analyze is part of systemd"
    # Paths of this machine, so that verify finds every executable the units name.
    layout = HostLayout(python=sys.executable, postgres_bindir=str(bindir()))
    names = []
    for host in hosts(SPEC):
        for name, text in host_setup(host, SPEC, app_settings(SPEC), {}, layout).units.items():
            path = tmp_path / host.name / name
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
            names.append(name)
            result = subprocess.run(
                ["systemd-analyze", "verify", str(path)],
                capture_output=True,
                text=True,
                check=False,
            )
            assert result.returncode == 0, f"{path}:\n{result.stderr}"
            assert not result.stderr.strip(), f"{path}:\n{result.stderr}"
            for directive in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
                              "PrivateTmp=yes", "RestrictAddressFamilies=", "RuntimeDirectory=",
                              "CapabilityBoundingSet="):  # fmt: skip
                assert directive in text, f"{name} lacks {directive}"
    assert set(names) == {
        "c50k.service",
        "c50k-postgres.service",
        "c50k-redis.service",
        "c50k-haproxy.service",
    }


def test_a_line_break_in_a_value_is_refused() -> None:
    app = next(h for h in hosts(SPEC) if h.role == "app")
    with pytest.raises(RenderError, match="line break"):
        host_setup(app, SPEC, app_settings(SPEC), {"C50K_X": "a\nExecStartPre=/bin/sh"})
    with pytest.raises(RenderError, match="not a C50K_"):
        host_setup(app, SPEC, app_settings(SPEC), {"PATH": "/usr/bin"})
    settings = app_settings(SPEC, {"server": {"forwarded_allow_ips": "10.0.0.1"}})
    settings["lb"]["instances"] = "10.0.0.10:8000"
    layout = HostLayout(python="/opt/venv/bin/python\nExecStartPre=/bin/sh")
    with pytest.raises(RenderError, match="line break"):
        host_setup(app, SPEC, settings, {}, layout)
