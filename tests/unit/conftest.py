"""tests/unit starts no process and opens no connection (README): fakes with the same
interface stand in for the tiers. This guard fails a unit test that tries; such a test belongs
in tests/integration."""

from __future__ import annotations

import socket
import subprocess
from typing import NoReturn

import pytest


def _refuse(*_args: object, **_kwargs: object) -> NoReturn:
    raise AssertionError(
        "a unit test starts no process and opens no connection: move it to tests/integration"
    )


@pytest.fixture(autouse=True)
def _no_processes_or_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse)
    for method in ("bind", "connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, method, _refuse)
