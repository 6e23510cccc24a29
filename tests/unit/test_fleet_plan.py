"""The fleet spec and what the plan makes of it: addresses, settings, the units read back."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from c50k.fleet.cloudinit import host_setup, secrets_file
from c50k.fleet.plan import app_settings, host_environment, hosts
from c50k.fleet.rehearsal import rehearsal_spec
from c50k.fleet.spec import FleetSpec
from c50k.fleet.units import parse_unit


def test_each_role_takes_addresses_from_its_block() -> None:
    spec = FleetSpec(postgres={"shards": 2, "replicas": 2}, haproxy={"count": 2, "type": "t"})
    found = {h.name: h for h in hosts(spec)}
    assert [found[f"app-{i}"].address for i in range(3)] == ["10.0.0.10", "10.0.0.11", "10.0.0.12"]
    assert found["pg-0-primary"].address == "10.0.0.100"
    assert found["pg-0-replica-2"].primary == "10.0.0.100"
    assert found["pg-1-primary"].address == "10.0.0.103"
    assert found["pg-1-replica-1"].primary == "10.0.0.103"
    assert found["redis-0"].address == "10.0.0.180"
    assert found["haproxy-1"].address == "10.0.0.191"
    assert len({h.address for h in found.values()}) == len(found)


@pytest.mark.parametrize(
    "fields",
    [
        {"balancer_range": "10.9.0.0/28"},  # Outside the subnet.
        {"subnet": "8.8.8.0/24"},  # Not private.
        {"subnet": "10.0.0.0/25"},  # Smaller than the role blocks need.
        {"app": {"count": 91, "type": "t"}},
        {"app": {"count": 0, "type": "t"}},
        {"redis": {"count": 2, "type": "t"}},
        {"check": {"interval_seconds": 3, "timeout_seconds": 3}},
        {"check": {"path": "/ready\nHost: x"}},
        {"authorized_keys": ["ssh-ed25519 AAAA\nssh-rsa BBBB"]},
        {"package": "c50k; rm -rf /"},
    ],
)
def test_spec_refuses_what_cannot_be_built(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        FleetSpec.model_validate(fields)


def test_drain_outlasts_the_balancers_check_and_binds_are_per_host() -> None:
    spec = FleetSpec(check={"interval_seconds": 5, "timeout_seconds": 4, "attempts": 3})
    document = app_settings(spec, {"server": {"drain_seconds": 1.0, "workers": 3}})
    assert document["server"]["drain_seconds"] == 16.0  # 3 x 5 s, and 1 s more.
    assert document["server"]["workers"] == 3
    assert "host" not in document["server"]  # Each host's own, from its unit.
    app = next(h for h in hosts(spec) if h.role == "app")
    assert host_environment(app, spec) == {
        "C50K_SERVER_HOST": "10.0.0.10",
        "C50K_METRICS_HOST": "10.0.0.10",
    }


def test_rehearsal_moves_the_subnet_and_the_balancer_range_together() -> None:
    moved = rehearsal_spec(FleetSpec(), "10.201.7.0/24")
    assert (moved.subnet, moved.balancer_range) == ("10.201.7.0/24", "10.201.7.240/28")


def test_secrets_are_quoted_for_systemd() -> None:
    text = secrets_file({"C50K_A": 'x"y\\z', "C50K_B": "plain"})
    assert 'C50K_A="x\\"y\\\\z"\n' in text
    assert 'C50K_B="plain"\n' in text


def test_rendered_units_read_back_as_systemd_would_start_them() -> None:
    spec = FleetSpec()
    app = next(h for h in hosts(spec) if h.role == "app")
    unit = parse_unit(host_setup(app, spec, app_settings(spec)).units["c50k.service"])
    assert unit.user == "c50k"
    assert unit.exec_start == ["/opt/c50k/venv/bin/python", "-m", "c50k", "serve"]
    assert unit.environment["C50K_SERVER_HOST"] == "10.0.0.10"
    assert unit.environment["C50K_SETTINGS_FILE"] == "/etc/c50k/c50k.toml"
    assert unit.environment_files == ["-/etc/c50k/secrets.env"]
    assert (unit.state_directories, unit.runtime_directories) == (["c50k"], ["c50k"])
    replica = next(h for h in hosts(spec) if h.role == "postgres-replica")
    unit = parse_unit(host_setup(replica, spec, app_settings(spec)).units["c50k-postgres.service"])
    assert unit.user == "postgres"
    assert unit.exec_start_pre[0][3:6] == ["fleet", "postgres-init", "--role"]
    assert "--primary" in unit.exec_start_pre[0]
    assert unit.exec_start_post == []  # Only a primary creates the database.
