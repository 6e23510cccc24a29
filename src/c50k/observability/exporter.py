"""The metrics exporter: GET /metrics sums every worker's files (prometheus_client's
MultiProcessCollector). Started by the gunicorn master (c50k.observability.multiprocess);
it stops on SIGTERM, and by itself when the master is gone.

    python -m c50k.observability.exporter HOST PORT DIR MASTER_PID LOG_FORMAT [--owns-directory]

With --owns-directory (a temporary directory the master made) it removes the directory when
the master is gone without its on_exit hook (SIGKILL).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import threading
from types import FrameType

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

from c50k.observability.logs import LogFormat, use_format

logger = logging.getLogger("c50k.metrics")

PARENT_CHECK_SECONDS = 1.0


def main(argv: list[str]) -> int:
    host, port, directory, master = argv[0], int(argv[1]), argv[2], int(argv[3])
    log_format: LogFormat = "console" if argv[4] == "console" else "json"
    handler = logging.StreamHandler()
    use_format([handler], log_format)
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]  # no hints there
    try:
        server, thread = start_http_server(port, host, registry)
    except OSError as exc:
        # The API keeps serving without its metrics; the operator reads why here.
        logger.error("metrics exporter cannot listen on %s:%d: %s", host, port, exc)
        return 1
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)  # Sent by the master's on_exit hook.
    signal.signal(signal.SIGINT, on_signal)  # Ctrl-C reaches the whole foreground group.
    # A master killed with SIGKILL cannot stop us; its workers notice the same way.
    while not stop.wait(PARENT_CHECK_SECONDS) and os.getppid() == master:
        pass
    server.shutdown()
    thread.join()
    if os.getppid() != master and "--owns-directory" in argv[5:]:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
