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
