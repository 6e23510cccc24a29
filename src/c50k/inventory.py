"""Instances as the settings and the command line name them: "host:port[@weight],...".

One parser for every list of instances: the app instances behind the load balancer
(C50K_LB_INSTANCES) and the metrics exporters Prometheus scrapes (`c50k render prometheus`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

DEFAULT_WEIGHT = 100
MAX_WEIGHT = 256  # HAProxy's largest weight; nginx accepts any positive integer.
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")


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


def parse_instance(text: str, *, weighted: bool = True) -> Instance:
    """`host:port[@weight]`: an IP address (IPv6 in brackets) or a host name, a port, and
    (when `weighted`) an optional weight."""
    raw = text.strip()
    address, at, weight_text = raw.partition("@")
    form = "host:port[@weight]" if weighted else "host:port"
    host, sep, port_text = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        valid_host = _is_ip(host)
    else:
        valid_host = _is_ip(host) or _HOSTNAME.fullmatch(host) is not None
    valid_port = port_text.isdigit() and 0 < int(port_text) < 65536
    if not sep or not valid_host or not valid_port or (at and not weighted):
        raise InventoryError(f"instance {raw!r} is not {form}")
    weight = DEFAULT_WEIGHT
    if at:
        if not weight_text.isdigit() or not 0 < int(weight_text) <= MAX_WEIGHT:
            raise InventoryError(f"instance {raw!r}: weight must be 1..{MAX_WEIGHT}")
        weight = int(weight_text)
    return Instance(host, int(port_text), weight)


def parse_instances(text: str, *, weighted: bool = True) -> list[Instance]:
    """Comma-separated instances, none listed twice; InventoryError names the first bad one."""
    parts = [part for part in text.split(",") if part.strip()]
    instances = [parse_instance(part, weighted=weighted) for part in parts]
    if not instances:
        raise InventoryError("no instances given")
    seen: set[str] = set()
    for instance in instances:
        if instance.address in seen:
            raise InventoryError(f"instance {instance.address} is listed twice")
        seen.add(instance.address)
    return instances


def format_instances(instances: list[Instance]) -> str:
    return ",".join(
        i.address if i.weight == DEFAULT_WEIGHT else f"{i.address}@{i.weight}" for i in instances
    )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_private(host: str) -> bool:
    """Whether an app may bind `host` in production: loopback or a private network only, so
    that only the load balancer faces clients. Names (not addresses) are refused: what they
    resolve to is not known when the file is rendered."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"
    return (address.is_private or address.is_loopback) and not address.is_unspecified
