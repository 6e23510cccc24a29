"""The shape of a fleet: how many hosts of each role, their sizes, the private subnet, the
balancer's health checks and who may reach what. One typed model, read by the Pulumi program
(from its stack config), by `c50k render cloud-init` and by `c50k fleet rehearse` (from a TOML
file), so a fleet is described once."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

# Where each role's hosts start in the subnet (host part of the address), and how many fit
# before the next role's block. A /24 holds every block.
ROLE_BLOCKS: dict[str, tuple[int, int]] = {
    "app": (10, 90),
    "postgres": (100, 80),
    "redis": (180, 10),
    "haproxy": (190, 10),
}
Role = Literal["app", "postgres-primary", "postgres-replica", "redis", "haproxy"]
ROLES: tuple[Role, ...] = ("app", "postgres-primary", "postgres-replica", "redis", "haproxy")


class FleetError(ValueError):
    pass


class HostGroup(BaseModel):
    count: int = Field(ge=0, description="Hosts of this role.")
    type: str = Field(min_length=1, description="Linode instance type, e.g. g6-dedicated-4.")


class PostgresGroup(BaseModel):
    shards: int = Field(default=1, ge=0, le=16, description="Shards, each one primary host.")
    replicas: int = Field(default=1, ge=0, le=4, description="Streaming replica hosts per shard.")
    type: str = Field(default="g6-dedicated-4", min_length=1, description="Linode type.")
    # Debian 12's PostgreSQL; a host that installs another major version names its bindir.
    bindir: str = Field(
        default="/usr/lib/postgresql/15/bin", description="Server binaries on the hosts."
    )
    auth: Literal["trust", "scram-sha-256"] = Field(
        default="trust",
        description="pg_hba method for the app and replica hosts (their addresses only, "
        "behind the firewall); scram-sha-256 once passwords are in the secrets.",
    )


class HealthCheck(BaseModel):
    """The NodeBalancer's active check of each app host (the rehearsal's HAProxy copies it)."""

    path: str = Field(default="/ready", pattern=r"^/[!-~]*$", description="HTTP check path.")
    interval_seconds: int = Field(default=3, ge=2, le=3600, description="Between checks.")
    timeout_seconds: int = Field(default=2, ge=1, le=30, description="One check's answer.")
    attempts: int = Field(default=2, ge=1, le=30, description="Failures that take a host out.")

    @model_validator(mode="after")
    def _timeout_below_interval(self) -> HealthCheck:
        if self.timeout_seconds >= self.interval_seconds:
            raise ValueError("health check timeout must be shorter than its interval")
        return self

    @property
    def out_of_rotation_seconds(self) -> int:
        """How long a dead host may still get new connections."""
        return self.attempts * self.interval_seconds


class FleetSpec(BaseModel):
    name: str = Field(
        default="c50k", pattern=r"^[a-z][a-z0-9-]{0,20}$", description="Prefix of every label."
    )
    region: str = Field(default="us-ord", min_length=1, description="Linode region.")
    image: str = Field(default="linode/debian12", description="Image of every host.")
    subnet: str = Field(default="10.0.0.0/24", description="The VPC's private IPv4 subnet.")
    app: HostGroup = Field(
        default_factory=lambda: HostGroup(count=3, type="g6-dedicated-4"),
        description="App hosts (c50k serve).",
    )
    postgres: PostgresGroup = Field(default_factory=PostgresGroup, description="Database hosts.")
    redis: HostGroup = Field(
        default_factory=lambda: HostGroup(count=1, type="g6-standard-2"),
        description="Redis hosts (0 or 1: one shared cache).",
    )
    haproxy: HostGroup = Field(
        default_factory=lambda: HostGroup(count=0, type="g6-dedicated-2"),
        description="Self-run HAProxy hosts, beside or instead of the NodeBalancer.",
    )
    app_port: int = Field(default=8000, ge=1024, le=65535, description="c50k's port on app hosts.")
    metrics_port: int = Field(default=9101, ge=1024, le=65535, description="App metrics exporter.")
    postgres_port: int = Field(default=5432, ge=1, le=65535, description="PostgreSQL's port.")
    pgbouncer_port: int = Field(default=6432, ge=1, le=65535, description="PgBouncer's port.")
    redis_port: int = Field(default=6379, ge=1, le=65535, description="Redis's port.")
    check: HealthCheck = Field(default_factory=HealthCheck, description="Balancer health check.")
    # The NodeBalancer connects to the app hosts from this part of the subnet.
    balancer_range: str = Field(
        default="10.0.0.240/28", description="The NodeBalancer's backend addresses in the subnet."
    )
    admin_cidrs: list[str] = Field(
        default_factory=list, description="Who may reach SSH (22) on every host."
    )
    monitoring_cidrs: list[str] = Field(
        default_factory=list, description="Who may scrape the app hosts' metrics port."
    )
    authorized_keys: list[str] = Field(
        default_factory=list, description="SSH public keys of the admin user."
    )
    package: str = Field(
        default="c50k",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-\[\],=<>!~+:/@]*$",
        description="What pip installs on each host: a requirement or a wheel URL.",
    )

    @field_validator("subnet", "balancer_range")
    @classmethod
    def _ipv4_network(cls, value: str) -> str:
        network = ipaddress.ip_network(value, strict=True)
        if network.version != 4 or not network.is_private:
            raise ValueError(f"{value} is not a private IPv4 network")
        return str(network)

    @field_validator("admin_cidrs", "monitoring_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        return [str(ipaddress.ip_network(v, strict=True)) for v in value]

    @field_validator("authorized_keys")
    @classmethod
    def _one_line_keys(cls, value: list[str]) -> list[str]:
        for key in value:
            if not key.startswith(("ssh-", "ecdsa-")) or any(c in key for c in "\r\n\0"):
                raise ValueError("an authorized key is one line starting with ssh- or ecdsa-")
        return value

    @model_validator(mode="after")
    def _fits_the_subnet(self) -> FleetSpec:
        subnet = ipaddress.ip_network(self.subnet)
        if subnet.prefixlen > 24:
            raise ValueError("the subnet must be a /24 or larger: each role has its block")
        balancer = ipaddress.ip_network(self.balancer_range)
        if not balancer.subnet_of(subnet):  # type: ignore[arg-type]  # Both IPv4, checked above.
            raise ValueError(f"balancer_range {balancer} is not in the subnet {subnet}")
        counts = {
            "app": self.app.count,
            "postgres": self.postgres.shards * (1 + self.postgres.replicas),
            "redis": self.redis.count,
            "haproxy": self.haproxy.count,
        }
        for role, count in counts.items():
            if count > ROLE_BLOCKS[role][1]:
                raise ValueError(f"{count} {role} hosts do not fit the block of {role}")
        if self.redis.count > 1:
            raise ValueError("one Redis host: the cache is one shared server")
        if self.app.count == 0:
            raise ValueError("a fleet needs at least one app host")
        return self


def load_fleet(path: Path | None) -> FleetSpec:
    """The fleet described in a TOML file (the FleetSpec fields), or the defaults."""
    if path is None:
        return FleetSpec()
    try:
        return FleetSpec.model_validate(tomllib.loads(path.read_text()))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise FleetError(f"cannot read the fleet file {path}: {exc}") from exc
