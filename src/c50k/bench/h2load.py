"""h2load (HTTP/1.1) as a load generator: command line, bounded run, output as a GeneratorRun.

Latency, exact status codes and the timeline come from h2load's per-request log (--log-file:
start µs since the epoch, status or -1 for a failed stream, µs to the end of the response);
the summary lines give what the log cannot (failure counts, bytes, per-client rates).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from c50k.bench.results import GeneratorError, GeneratorRun, Histogram
from c50k.bench.wrk import run_bounded

# Beyond duration + warm-up: connecting, then stopping thousands of clients (some on a
# server that stopped answering: 10 s was too little for the naive baseline), process exit.
EXIT_MARGIN_SECONDS = 30.0

_FINISHED = re.compile(r"^finished in ([\d.]+)(us|ms|s),", re.MULTILINE)
_REQUESTS = re.compile(
    r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
    r"(\d+) failed, (\d+) errored, (\d+) timeout",
    re.MULTILINE,
)
_STATUS = re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", re.MULTILINE)
_DATA_BYTES = re.compile(r"^traffic: .*\((\d+)\) data", re.MULTILINE)
_CONNECT_TIME = re.compile(r"^time for connect:(.*?)\s([\d.]+)%$", re.MULTILINE)
_CLIENT_RATE = re.compile(r"^req/s\s*:\s+([\d.]+)", re.MULTILINE)
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


@dataclass(frozen=True)
class H2loadOptions:
    # Requests cycle over these; h2load takes scheme, host and port from the first only.
    urls: list[str]
    clients: int
    threads: int = 1
    # Exactly one of duration (-D, after an optional warm-up) and requests (-n).
    duration_seconds: float | None = None
    warm_up_seconds: float = 0.0
    requests: int | None = None
    rps: float | None = None  # Per client.
    # -N and -T work in a request-count run only: h2load 1.52 aborts on a libev assertion
    # when -N fires in a duration run, and arms -T only once a client has submitted its last
    # request, which never happens in a duration run.
    inactivity_timeout_seconds: float | None = None
    active_timeout_seconds: float | None = None
    log_file: Path | None = None
    # Hard limit of a request-count run, which has no duration to derive one from.
    max_seconds: float = 60.0
    executable: str = "h2load"

    def __post_init__(self) -> None:
        if not 1 <= self.threads <= self.clients:
            raise ValueError("h2load needs 1 <= threads <= clients")
        if (self.duration_seconds is None) == (self.requests is None):
            raise ValueError("give exactly one of duration_seconds and requests")
        if self.requests is not None and self.requests < self.clients:
            raise ValueError("h2load needs requests >= clients")
        if self.duration_seconds is not None and (
            self.inactivity_timeout_seconds is not None or self.active_timeout_seconds is not None
        ):
            raise ValueError("h2load 1.52 cannot time out connections in a duration run")
        origins = {_origin(url) for url in self.urls}
        if len(origins) != 1:
            raise ValueError(f"h2load URLs must share one scheme://host:port, got {origins}")

    @property
    def limit_seconds(self) -> float:
        if self.duration_seconds is None:
            return self.max_seconds
        return self.duration_seconds + self.warm_up_seconds + EXIT_MARGIN_SECONDS


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


def _duration(seconds: float) -> str:
    # h2load rejects fractional seconds ("1.5") but takes whole milliseconds.
    return f"{round(seconds * 1000)}ms"


def h2load_command(options: H2loadOptions) -> list[str]:
    command = [
        options.executable,
        "--h1",
        f"--clients={options.clients}",
        f"--threads={options.threads}",
    ]
    if options.duration_seconds is not None:
        command.append(f"--duration={_duration(options.duration_seconds)}")
        if options.warm_up_seconds > 0:
            command.append(f"--warm-up-time={_duration(options.warm_up_seconds)}")
    else:
        command.append(f"--requests={options.requests}")
    if options.rps is not None:
        command.append(f"--rps={options.rps:g}")
    if options.inactivity_timeout_seconds is not None:
        command.append(
            f"--connection-inactivity-timeout={_duration(options.inactivity_timeout_seconds)}"
        )
    if options.active_timeout_seconds is not None:
        command.append(f"--connection-active-timeout={_duration(options.active_timeout_seconds)}")
    if options.log_file is not None:
        command.append(f"--log-file={options.log_file}")
    return [*command, *options.urls]


@dataclass
class RequestLog:
    """What h2load's --log-file holds: one row per request closed in the main duration."""

    latency: Histogram = field(default_factory=Histogram)
    status: Counter[int] = field(default_factory=Counter)
    failed_streams: int = 0
    # Second since the first request started → (responses, non-2xx responses + failed
    # streams) that ended in it; a failed stream is no response but is an error in its second.
    timeline: dict[int, tuple[int, int]] = field(default_factory=dict)

    @property
    def responses(self) -> int:
        return self.status.total()


def read_request_log(path: Path) -> RequestLog:
    # Two passes over the file: the timeline's zero is the earliest start, and rows are in
    # end order, so it is known only at the end; a long run's log is too big to hold twice.
    with path.open() as rows:
        first_start = min((int(line.split("\t", 1)[0]) for line in rows if line.strip()), default=0)
    log = RequestLog()
    timeline: dict[int, list[int]] = {}
    with path.open() as rows:
        for line in rows:
            if not line.strip():
                continue
            start, status_text, duration_text = line.split("\t")[:3]
            status, duration = int(status_text), int(duration_text)
            counts = timeline.setdefault((int(start) + duration - first_start) // 1_000_000, [0, 0])
            if status <= 0:
                log.failed_streams += 1
                counts[1] += 1
                continue
            log.status[status] += 1
            log.latency.counts[duration] += 1
            counts[0] += 1
            counts[1] += not 200 <= status < 300
    log.timeline = {second: (ok, bad) for second, (ok, bad) in sorted(timeline.items())}
    return log


def parse_h2load_output(text: str, options: H2loadOptions, command: list[str]) -> GeneratorRun:
    if options.log_file is None:
        raise ValueError("parsing h2load needs the run's --log-file")
    match = _REQUESTS.search(text)
    if match is None:
        raise GeneratorError("h2load printed no 'requests:' line: the run did not happen", text)
    total, started, _done, succeeded, failed, errored, timeout = (int(n) for n in match.groups())
    log = read_request_log(options.log_file)
    if log.responses != succeeded + failed - errored:
        raise GeneratorError(
            f"h2load's log holds {log.responses} responses, its summary "
            f"{succeeded + failed - errored} (succeeded + failed - errored)",
            text,
        )
    by_class = [int(n) for n in _required(_STATUS, text, "status codes").groups()]
    logged = [sum(n for code, n in log.status.items() if code // 100 == c) for c in (2, 3, 4, 5)]
    if any(seen > counted for seen, counted in zip(logged, by_class, strict=True)):
        raise GeneratorError(f"h2load's log has statuses {logged}, its summary {by_class}", text)

    # h2load 1.52 counts failed requests, not failed sockets, and prints nothing when a
    # connection is refused or dropped. Mapped as faithfully as its counts allow (checked
    # against the mock upstream and against a server that cuts responses short):
    #   timeout: "timeout", the requests in flight when -N/-T closed their connection.
    #   read: requests sent that got no complete response. In a -n run that is "errored"
    #     minus the timeouts minus the requests never sent (total - started: h2load abandons
    #     a dead client's remaining requests and counts them as errored too), plus responses
    #     cut short after their status line (in "status codes", not in the log). A -D run
    #     ends by stopping every client wherever it is, so responses still arriving then
    #     show exactly like responses the server cut short (1-3 of 50,000 clients in a run
    #     with no error): a -D run cannot tell them apart and counts neither. h2load cannot
    #     tell a failed write from a failed read; an HTTP/1.1 client learns of a dropped
    #     connection on read.
    #   connect: all clients when none connected (no response, no "Application protocol"
    #     line, no connect-time sample); h2load gives no count of partial failures.
    #   write: never told apart, so 0.
    never_sent = max(0, total - started)
    cut_short = max(0, sum(by_class) - sum(logged)) if options.requests is not None else 0
    nobody_connected = log.responses == 0 and "Application protocol:" not in text
    connect_time = _CONNECT_TIME.search(text)
    if connect_time is not None and float(connect_time.group(2)) > 0:
        nobody_connected = False  # A connect-time sample exists (only outside warm-up).
    errors = {
        "connect": options.clients if nobody_connected else 0,
        "read": max(errored - timeout - never_sent, cut_short),
        "write": 0,
        "timeout": timeout,
    }
    # Per-client rates: a minimum above zero means every client got a response.
    rate = _CLIENT_RATE.search(text)
    served: int | None = None
    if nobody_connected:
        served = 0
    elif rate is not None and float(rate.group(1)) > 0:
        served = options.clients
    data = _DATA_BYTES.search(text)
    return GeneratorRun(
        tool="h2load",
        command=command,
        url=options.urls[0],
        connections=options.clients,
        duration_seconds=_run_seconds(text, options),
        requests=log.responses,
        status=log.status,
        errors=errors,
        error_bodies=None,  # h2load never shows the harness a body.
        # h2load 1.52 adds warm-up bodies to "data" (not to "total"): only a run without
        # warm-up states the body bytes of its measured requests.
        body_bytes=int(data.group(1)) if data and options.warm_up_seconds == 0 else None,
        connections_served=served,
        latency=log.latency,
        timeline=log.timeline,
        raw_output=text,
    )


def _required(pattern: re.Pattern[str], text: str, what: str) -> re.Match[str]:
    match = pattern.search(text)
    if match is None:
        raise GeneratorError(f"h2load printed no {what!r} line", text)
    return match


def _run_seconds(text: str, options: H2loadOptions) -> float:
    # A duration run counts only requests of the main duration; "finished in" adds warm-up
    # and start-up, and h2load's own req/s divides by the main duration too.
    if options.duration_seconds is not None:
        return float(options.duration_seconds)
    value, unit = _required(_FINISHED, text, "finished in").groups()
    return round(float(value) * _UNITS[unit], 6)


async def run_h2load(options: H2loadOptions, workdir: Path) -> GeneratorRun:
    if options.log_file is None:
        options = dataclasses.replace(options, log_file=workdir / f"h2load-{uuid.uuid4().hex}.log")
    log_file = options.log_file
    assert log_file is not None  # noqa: S101 -- narrowing for mypy.
    await asyncio.to_thread(log_file.unlink, missing_ok=True)  # A stale log must not count.
    command = h2load_command(options)
    returncode, text = await run_bounded(command, options.limit_seconds, workdir)
    if returncode != 0:
        raise GeneratorError(f"h2load exited with status {returncode}", text)
    # The request log of a long run holds millions of rows: keep the event loop free.
    return await asyncio.to_thread(parse_h2load_output, text, options, command)


def latency_by_status(path: Path) -> dict[int, Histogram]:
    """Per-status latency from a --log-file: how fast shed (503) requests were answered,
    apart from admitted ones."""
    by_status: dict[int, Histogram] = {}
    with path.open() as rows:
        for line in rows:
            fields = line.split("\t")
            if len(fields) < 3:
                continue
            status = int(fields[1])
            if status > 0:
                by_status.setdefault(status, Histogram()).counts[int(fields[2])] += 1
    return by_status
