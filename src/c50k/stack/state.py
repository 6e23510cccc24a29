"""What a running local stack is made of, kept in `<state dir>/stack.json` so that `c50k stack
status` and `c50k stack down`, in later commands, find every process `up` started by its PID."""

from __future__ import annotations

import json
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path

from c50k.stack.process import ManagedProcess, alive, stop_pid

STATE_FILE = "stack.json"
# The settings file the service reads (C50K_SETTINGS_FILE): every tier the stack started.
SETTINGS_FILE = "c50k.toml"


class StackError(RuntimeError):
    pass


@dataclass
class ServiceRecord:
    name: str  # Unique in the stack: "pg-0-primary", "pg-0-replica-1", "redis", "app-2", ...
    kind: str  # "postgres", "redis", "pgbouncer", "app", "haproxy", "nginx"
    pid: int
    started: int  # The process's start time: a reused PID is never signalled.
    host: str
    port: int
    log: str
    stop_signal: int = int(signal.SIGTERM)
    stop_timeout: float = 30.0
    data_dir: str | None = None
    extra: dict[str, str | int | float | bool | None] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        process: ManagedProcess,
        kind: str,
        host: str,
        port: int,
        *,
        stop_signal: int = signal.SIGTERM,
        stop_timeout: float,
        data_dir: Path | None = None,
        extra: dict[str, str | int | float | bool | None] | None = None,
    ) -> ServiceRecord:
        """The record of a process the stack started, serving on host:port: its name, PID,
        start time and log come from the process itself."""
        return cls(
            name=process.name,
            kind=kind,
            pid=process.pid,
            started=process.started,
            host=host,
            port=port,
            log=str(process.log_path),
            stop_signal=int(stop_signal),
            stop_timeout=stop_timeout,
            data_dir=None if data_dir is None else str(data_dir),
            extra=extra or {},
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def running(self) -> bool:
        return alive(self.pid, self.started)

    def stop(self) -> bool:
        return stop_pid(self.pid, self.started, self.stop_signal, self.stop_timeout)


@dataclass
class StackState:
    state_dir: Path
    services: list[ServiceRecord] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.state_dir / STATE_FILE

    @property
    def settings_path(self) -> Path:
        return self.state_dir / SETTINGS_FILE

    def add(self, record: ServiceRecord) -> ServiceRecord:
        if any(s.name == record.name for s in self.services):
            raise StackError(f"the stack already has a service named {record.name}")
        self.services.append(record)
        # Saved after every start: if a later start fails, `down` still finds this one.
        self.save()
        return record

    def named(self, name: str) -> ServiceRecord:
        for record in self.services:
            if record.name == name:
                return record
        raise StackError(f"the stack has no service named {name}")

    def of_kind(self, kind: str) -> list[ServiceRecord]:
        return [s for s in self.services if s.kind == kind]

    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        payload = {"services": [asdict(s) for s in self.services]}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        tmp.replace(self.path)

    @classmethod
    def load(cls, state_dir: Path) -> StackState:
        path = state_dir / STATE_FILE
        try:
            payload = json.loads(path.read_text())
        except FileNotFoundError:
            return cls(state_dir)
        except (OSError, ValueError) as exc:
            raise StackError(f"cannot read the stack state {path}: {exc}") from exc
        return cls(state_dir, [ServiceRecord(**s) for s in payload["services"]])

    def stop_all(self) -> list[str]:
        """Stop every service, the last started first (load balancer before apps before
        databases), and forget them. Returns the names of those that were running."""
        stopped = [s.name for s in reversed(self.services) if s.stop()]
        self.services.clear()
        self.save()
        return stopped
