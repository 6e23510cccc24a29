"""Reading back a rendered systemd unit: the user, environment, directories and command lines
the rehearsal runs exactly as systemd would start them on a host."""

from __future__ import annotations

import shlex
import signal
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ServiceUnit:
    user: str = "root"
    environment: dict[str, str] = field(default_factory=dict)
    environment_files: list[str] = field(default_factory=list)  # "-path": optional.
    state_directories: list[str] = field(default_factory=list)
    runtime_directories: list[str] = field(default_factory=list)
    working_directory: str | None = None
    exec_start_pre: list[list[str]] = field(default_factory=list)
    exec_start: list[str] = field(default_factory=list)
    exec_start_post: list[list[str]] = field(default_factory=list)
    kill_signal: int = int(signal.SIGTERM)
    timeout_stop_seconds: float = 90.0


def parse_unit(text: str) -> ServiceUnit:  # noqa: PLR0912 -- one branch per directive.
    """The [Service] section of a unit c50k rendered (one value a line, no continuations)."""
    unit = ServiceUnit()
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section != "[Service]":
            continue
        key, _, value = line.partition("=")
        if key == "User":
            unit.user = value
        elif key == "Environment":
            for assignment in shlex.split(value):
                name, _, setting = assignment.partition("=")
                unit.environment[name] = setting
        elif key == "EnvironmentFile":
            unit.environment_files.append(value)
        elif key == "StateDirectory":
            unit.state_directories += value.split()
        elif key == "RuntimeDirectory":
            unit.runtime_directories += value.split()
        elif key == "WorkingDirectory":
            unit.working_directory = value
        elif key == "ExecStartPre":
            unit.exec_start_pre.append(shlex.split(value))
        elif key == "ExecStart":
            unit.exec_start = shlex.split(value)
        elif key == "ExecStartPost":
            unit.exec_start_post.append(shlex.split(value))
        elif key == "KillSignal":
            unit.kill_signal = int(signal.Signals[value])
        elif key == "TimeoutStopSec":
            unit.timeout_stop_seconds = float(value)
    return unit


def read_environment_file(path: str) -> dict[str, str]:
    """KEY="value" lines as c50k writes them (systemd's EnvironmentFile= syntax, quoted)."""
    optional = path.startswith("-")
    file = Path(path.removeprefix("-"))
    if optional and not file.exists():
        return {}
    values: dict[str, str] = {}
    for line in file.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = shlex.split(value)[0] if value else ""
    return values
