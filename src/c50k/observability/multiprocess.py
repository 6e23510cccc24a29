"""prometheus_client's multiprocess mode under gunicorn, as gunicorn server hooks.

Each worker writes its metrics into files of its own in one directory; the exporter, a small
process the master starts, sums them on every scrape. The rules (prometheus_client's docs):
the directory is set (PROMETHEUS_MULTIPROC_DIR) before any worker imports prometheus_client,
and wiped at start, or a restart would add the last run's counts; a dead worker is marked, so
its live gauges (in flight, pool levels) drop out while its counters stay in the sums.

The exporter listens on its own port (C50K_METRICS_PORT), which the load balancer does not
forward: the metrics are for Prometheus, not for clients.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from c50k.settings import MetricsSettings

ENV = "PROMETHEUS_MULTIPROC_DIR"
EXPORTER_STOP_SECONDS = 5.0


def wipe(directory: Path) -> None:
    """Remove the metric files of an earlier run (only those: the directory may hold more)."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in directory.glob("*.db"):
        path.unlink()


class MetricsHooks:
    """gunicorn's on_starting, when_ready, child_exit and on_exit for the metrics."""

    def __init__(self, settings: MetricsSettings, log_format: str = "json") -> None:
        self.settings = settings
        self.log_format = log_format
        self.directory: Path | None = None
        self._temporary = False
        self._exporter: subprocess.Popen[bytes] | None = None

    def options(self) -> dict[str, Any]:
        return {
            "on_starting": self.on_starting,
            "when_ready": self.when_ready,
            "child_exit": self.child_exit,
            "on_exit": self.on_exit,
        }

    def on_starting(self, _server: Any) -> None:
        # In the master, before any worker is forked: workers inherit the variable.
        if self.settings.multiproc_dir is not None:
            self.directory = self.settings.multiproc_dir.resolve()
            wipe(self.directory)
        else:
            # Per master: two instances on one machine must never sum each other's files.
            self.directory = Path(tempfile.mkdtemp(prefix="c50k-metrics-"))
            self._temporary = True
        os.environ[ENV] = str(self.directory)

    def when_ready(self, server: Any) -> None:
        if self.directory is None:
            return
        argv = [sys.executable, "-m", "c50k.observability.exporter"]
        argv += [self.settings.host, str(self.settings.port), str(self.directory)]
        argv += [str(os.getpid()), self.log_format]
        argv += ["--owns-directory"] if self._temporary else []
        # A failing exporter (port taken) logs its error and exits; serving goes on.
        self._exporter = subprocess.Popen(argv, stdin=subprocess.DEVNULL)  # noqa: S603 -- our own module.
        server.log.info(
            "metrics on http://%s:%d/metrics (pid %d)",
            self.settings.host,
            self.settings.port,
            self._exporter.pid,
        )

    def child_exit(self, _server: Any, worker: Any) -> None:
        if self.directory is not None:
            from prometheus_client import multiprocess  # noqa: PLC0415 -- after ENV is set.

            multiprocess.mark_process_dead(worker.pid, str(self.directory))  # type: ignore[no-untyped-call]  # no hints there

    def on_exit(self, _server: Any) -> None:
        exporter, self._exporter = self._exporter, None
        if exporter is not None and exporter.poll() is None:
            exporter.terminate()
            try:
                exporter.wait(EXPORTER_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                exporter.kill()
                exporter.wait(EXPORTER_STOP_SECONDS)
        if self._temporary and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
