"""The inventory of app instances behind the load balancer: "host:port[@weight],..."."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

DEFAULT_WEIGHT = 100
MAX_WEIGHT = 256  # HAProxy's largest weight; nginx accepts any positive integer.


class InventoryError(ValueError):
    pass


@dataclass(frozen=True)
class Instance:
    host: str
    port: int
    weight: int = DEFAULT_WEIGHT

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_instance(text: str) -> Instance:
    address, _, weight_text = text.strip().partition("@")
    host, sep, port_text = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InventoryError(f"{text.strip()!r} is not host:port[@weight]")
    weight = DEFAULT_WEIGHT
    if weight_text:
        if not weight_text.isdigit() or not 0 < int(weight_text) <= MAX_WEIGHT:
            raise InventoryError(f"{text.strip()!r}: weight must be 1..{MAX_WEIGHT}")
        weight = int(weight_text)
    return Instance(host, int(port_text), weight)


def parse_instances(text: str) -> list[Instance]:
    instances = [parse_instance(part) for part in text.split(",") if part.strip()]
    if not instances:
        raise InventoryError("the inventory names no app instance")
    seen: set[str] = set()
    for instance in instances:
        if instance.address in seen:
            raise InventoryError(f"{instance.address} is listed twice")
        seen.add(instance.address)
    return instances


def format_instances(instances: list[Instance]) -> str:
    return ",".join(
        i.address if i.weight == DEFAULT_WEIGHT else f"{i.address}@{i.weight}" for i in instances
    )


def is_private(host: str) -> bool:
    """Whether an app may bind `host` in production: loopback or a private network only, so
    that only the load balancer faces clients. Names (not addresses) are refused: what they
    resolve to is not known when the file is rendered."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"
    return (address.is_private or address.is_loopback) and not address.is_unspecified
