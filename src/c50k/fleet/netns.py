"""Network namespaces standing in for separate machines on a private network: each gets a
veth pair, 10.X.N.2 inside and 10.X.N.1 on the host, with names and X drawn at random for each
set so that concurrent runs, and a set whose removal the kernel is still finishing, do not
clash. Needs root; removed on exit."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Namespace:
    name: str
    address: str  # Inside: where an app instance binds.
    gateway: str  # On the host: where the balancer's connections come from.


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@contextmanager
def _namespace(tag: str, octet: int, index: int) -> Iterator[Namespace]:
    tag = f"{tag}{index}"
    name, host_end, ns_end = f"c50k-{tag}", f"c5h{tag}", f"c5n{tag}"
    namespace = Namespace(name, f"10.{octet}.{index}.2", f"10.{octet}.{index}.1")
    _ip("netns", "add", name)
    try:
        _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        _ip("link", "set", ns_end, "netns", name)
        _ip("addr", "add", f"{namespace.gateway}/24", "dev", host_end)
        _ip("link", "set", host_end, "up")
        for command in (
            ["addr", "add", f"{namespace.address}/24", "dev", ns_end],
            ["link", "set", ns_end, "up"],
            ["link", "set", "lo", "up"],
        ):
            _ip("netns", "exec", name, "ip", *command)
        yield namespace
    finally:
        # Deleting one end of the pair deletes both at once; the namespace's own cleanup in
        # the kernel would do it later.
        subprocess.run(
            ["ip", "link", "del", host_end], capture_output=True, timeout=10, check=False
        )
        _ip("netns", "del", name)


@contextmanager
def namespaces(count: int) -> Iterator[list[Namespace]]:
    tag = secrets.token_hex(3)
    octet = 100 + secrets.randbelow(100)
    with ExitStack() as stack:
        yield [stack.enter_context(_namespace(tag, octet, i)) for i in range(count)]


# A private subnet of several hosts: one bridge in this namespace (the subnet's switch, with
# the gateway address, through which this machine reaches every host) and one namespace per
# host, plugged into it by a veth pair. Every name carries the set's random tag.


def bridge_up(name: str, gateway_cidr: str) -> None:
    _ip("link", "add", name, "type", "bridge")
    _ip("addr", "add", gateway_cidr, "dev", name)
    _ip("link", "set", name, "up")


def plug(namespace: str, bridge: str, link: str, addresses: list[str]) -> None:
    """A new namespace on the bridge with `addresses` (CIDR form) on its end of `link`."""
    host_end, ns_end = f"{link}h", f"{link}n"
    _ip("netns", "add", namespace)
    _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
    _ip("link", "set", host_end, "master", bridge)
    _ip("link", "set", host_end, "up")
    _ip("link", "set", ns_end, "netns", namespace)
    commands = [["addr", "add", a, "dev", ns_end] for a in addresses]
    commands += [["link", "set", ns_end, "up"], ["link", "set", "lo", "up"]]
    for command in commands:
        _ip("netns", "exec", namespace, "ip", *command)


def unplug(namespace: str, link: str) -> None:
    """Remove a namespace made by `plug` and its veth pair; gone already is fine."""
    subprocess.run(["ip", "link", "del", f"{link}h"], capture_output=True, timeout=10, check=False)
    subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=10, check=False)


def bridge_down(name: str) -> None:
    subprocess.run(["ip", "link", "del", name], capture_output=True, timeout=10, check=False)


def exists(namespace: str) -> bool:
    result = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=False
    )
    return namespace in result.stdout.split()


def link_exists(name: str) -> bool:
    result = subprocess.run(
        ["ip", "link", "show", name], capture_output=True, timeout=10, check=False
    )
    return result.returncode == 0


def routed(network: str) -> bool:
    """Whether this machine already has a route into `network` (a rehearsal must not shadow
    a network that exists)."""
    address = network.split("/", maxsplit=1)[0]
    result = subprocess.run(["ip", "-4", "route", "show", "to", "match", address],
                            capture_output=True, text=True, timeout=10, check=False)  # fmt: skip
    return any(line and not line.startswith("default") for line in result.stdout.splitlines())
