"""What a fleet spec means, worked out once: every host with its role and private address, the
settings file the app hosts read, and the firewall rules between the tiers. Pure functions: the
Pulumi program, the cloud-init renderer and the rehearsal all read their answers here."""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass
from typing import Any

from c50k.fleet.spec import ROLE_BLOCKS, FleetSpec, Role
from c50k.settings import Settings
from c50k.stack.postgres import dsn

# The settings document (TOML groups) the app hosts read through C50K_SETTINGS_FILE.
SettingsDoc = dict[str, dict[str, Any]]
ALL_IPV4 = "0.0.0.0/0"
ALL_IPV6 = "::/0"


@dataclass(frozen=True)
class Host:
    name: str  # "app-0", "pg-0-primary", "pg-0-replica-1", "redis-0", "haproxy-0"
    role: Role
    address: str  # In the private subnet.
    shard: int | None = None
    primary: str | None = None  # A replica's primary's address.

    @property
    def group(self) -> str:
        """The firewall and the Linode type this host takes (its tier)."""
        return "postgres" if self.role.startswith("postgres") else self.role


def _address(spec: FleetSpec, block: str, index: int) -> str:
    subnet = ipaddress.ip_network(spec.subnet)
    return str(subnet.network_address + ROLE_BLOCKS[block][0] + index)


def hosts(spec: FleetSpec) -> list[Host]:
    """Every host of the fleet in start order: databases, cache, apps, balancers."""
    found: list[Host] = []
    slot = 0
    for shard in range(spec.postgres.shards):
        primary = _address(spec, "postgres", slot)
        found.append(Host(f"pg-{shard}-primary", "postgres-primary", primary, shard))
        slot += 1
        for replica in range(spec.postgres.replicas):
            address = _address(spec, "postgres", slot)
            name = f"pg-{shard}-replica-{replica + 1}"
            found.append(Host(name, "postgres-replica", address, shard, primary))
            slot += 1
    found += [
        Host(f"redis-{i}", "redis", _address(spec, "redis", i)) for i in range(spec.redis.count)
    ]
    found += [Host(f"app-{i}", "app", _address(spec, "app", i)) for i in range(spec.app.count)]
    found += [
        Host(f"haproxy-{i}", "haproxy", _address(spec, "haproxy", i))
        for i in range(spec.haproxy.count)
    ]
    return found


def of_role(spec: FleetSpec, *roles: str) -> list[Host]:
    return [h for h in hosts(spec) if h.role in roles]


def host_named(spec: FleetSpec, name: str) -> Host:
    for host in hosts(spec):
        if host.name == name:
            return host
    raise ValueError(f"the fleet has no host {name}; it has {[h.name for h in hosts(spec)]}")


def trusted_proxies(spec: FleetSpec) -> str:
    """Whose X-Forwarded-For the apps believe: the NodeBalancer's range and HAProxy hosts."""
    return ",".join([spec.balancer_range, *(h.address for h in of_role(spec, "haproxy"))])


def app_settings(spec: FleetSpec, base: SettingsDoc | None = None) -> SettingsDoc:
    """The settings file of every app host: `base` (the operator's own settings) with the
    fleet's shards, replicas, Redis, instances and trusted proxies on top. Validated by the
    settings model; each host's bind address comes from its unit (C50K_SERVER_HOST)."""
    doc: SettingsDoc = copy.deepcopy(base or {})
    shards = []
    for primary in of_role(spec, "postgres-primary"):
        replicas = [h for h in of_role(spec, "postgres-replica") if h.primary == primary.address]
        shards.append(
            {
                "primary": dsn(primary.address, spec.postgres_port),
                "replicas": [dsn(r.address, spec.postgres_port) for r in replicas],
            }
        )
    if shards:
        doc.setdefault("store", {})["backend"] = "postgres"
        doc.setdefault("postgres", {})["shards"] = shards
    if redis := of_role(spec, "redis"):
        doc.setdefault("redis", {})["url"] = f"redis://{redis[0].address}:{spec.redis_port}/0"
    server = doc.setdefault("server", {})
    server["port"] = spec.app_port
    server["forwarded_allow_ips"] = trusted_proxies(spec)
    # /ready turns 503 on SIGTERM: the balancer must see it fail `attempts` times before the
    # instance stops accepting, or a request lands on a closed port.
    server["drain_seconds"] = max(
        float(server.get("drain_seconds", 0.0)), spec.check.out_of_rotation_seconds + 1.0
    )
    doc.setdefault("metrics", {})["port"] = spec.metrics_port
    lb = doc.setdefault("lb", {})
    lb["instances"] = ",".join(f"{h.address}:{spec.app_port}" for h in of_role(spec, "app"))
    lb["check_interval_seconds"] = float(spec.check.interval_seconds)
    Settings.model_validate(doc)  # Raises on a field the model refuses.
    return doc


def host_environment(host: Host, spec: FleetSpec) -> dict[str, str]:
    """What differs between app hosts: the address each binds (the API and its metrics)."""
    if host.role != "app":
        return {}
    return {"C50K_SERVER_HOST": host.address, "C50K_METRICS_HOST": host.address}


@dataclass(frozen=True)
class Rule:
    """One inbound rule of a Cloud Firewall: accept TCP on `ports` from `sources`."""

    label: str
    ports: str
    sources: tuple[str, ...]

    @property
    def ipv4(self) -> list[str]:
        return [s for s in self.sources if ipaddress.ip_network(s).version == 4]

    @property
    def ipv6(self) -> list[str]:
        return [s for s in self.sources if ipaddress.ip_network(s).version == 6]


def _hosts_cidrs(found: list[Host]) -> tuple[str, ...]:
    return tuple(f"{h.address}/32" for h in found)


def firewall_rules(spec: FleetSpec) -> dict[str, list[Rule]]:
    """Inbound rules per tier; everything else is dropped. Tiers without hosts get none."""
    apps = _hosts_cidrs(of_role(spec, "app"))
    ssh = [Rule("ssh-from-admin", "22", tuple(spec.admin_cidrs))] if spec.admin_cidrs else []
    balancers = (spec.balancer_range, *_hosts_cidrs(of_role(spec, "haproxy")))
    rules = {
        "app": [
            Rule("app-from-balancer", str(spec.app_port), balancers),
            Rule("app-from-subnet", str(spec.app_port), (spec.subnet,)),
            *(
                [
                    Rule(
                        "metrics-from-monitoring",
                        str(spec.metrics_port),
                        tuple(spec.monitoring_cidrs),
                    )
                ]
                if spec.monitoring_cidrs
                else []
            ),
            *ssh,
        ],
        "postgres": [
            Rule(
                "postgres-pgbouncer-from-apps",
                f"{spec.postgres_port}, {spec.pgbouncer_port}",
                apps,
            ),
            # Replicas stream from their primary over the same port.
            Rule(
                "replication-from-db-hosts",
                str(spec.postgres_port),
                _hosts_cidrs(of_role(spec, "postgres-replica")),
            ),
            *ssh,
        ],
        "redis": [Rule("redis-from-apps", str(spec.redis_port), apps), *ssh],
        "haproxy": [Rule("http-from-anywhere", "80, 443", (ALL_IPV4, ALL_IPV6)), *ssh],
    }
    present = {h.group for h in hosts(spec)}
    return {
        tier: [r for r in found if r.sources] for tier, found in rules.items() if tier in present
    }


EDGE_RULES = [Rule("http-from-anywhere", "80, 443", (ALL_IPV4, ALL_IPV6))]
