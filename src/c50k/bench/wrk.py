"""wrk as a load generator: its command line, a bounded run, and its output as a GeneratorRun.

The numbers come from the C50K_WRK_REPORT line that wrk_report.lua prints; wrk's own human
lines are parsed only to cross-check them, so a disagreement is an error, never a guess.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import re
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from c50k.bench.results import ERROR_KINDS, GeneratorError, GeneratorRun, Histogram

SCRIPT_NAME = "wrk_report.lua"
REPORT_PREFIX = "C50K_WRK_REPORT "
# Longer path lists go through a file: argv stays short and readable in `ps`.
MAX_INLINE_PATHS = 50
# Beyond duration + timeout: thread start-up, done() reading the histogram, process exit.
EXIT_MARGIN_SECONDS = 10.0

_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_REQUESTS_IN = re.compile(r"^\s*(\d+) requests in ", re.MULTILINE)
_REQUESTS_PER_SEC = re.compile(r"Requests/sec:\s+([\d.]+)")


# A path written "PUT /items/7" is sent as a PUT of a small JSON object (wrk_report.lua).
WRITE_PREFIX = "PUT "


@dataclass(frozen=True)
class WrkOptions:
    url: str
    connections: int
    threads: int = 1
    # Whole seconds: wrk 4.1.0 rejects "1.5s" and "1500ms" for both.
    duration_seconds: int = 10
    timeout_seconds: int = 2
    paths: list[str] = field(default_factory=list)
    executable: str = "wrk"

    def __post_init__(self) -> None:
        if not 1 <= self.threads <= self.connections:
            raise ValueError("wrk needs 1 <= threads <= connections")
        if self.duration_seconds < 1 or self.timeout_seconds < 1:
            raise ValueError("wrk takes whole seconds >= 1 for duration and timeout")
        for path in self.paths:
            target = path.removeprefix(WRITE_PREFIX)  # The script turns these into PUTs.
            if not target.startswith("/") or "\n" in target or " " in target:
                raise ValueError(f"not a request path: {path!r}")


def script_resource() -> Traversable:
    return resources.files("c50k.bench").joinpath(SCRIPT_NAME)


def wrk_command(options: WrkOptions, script_path: Path, paths_dir: Path | None = None) -> list[str]:
    command = [
        options.executable,
        f"--connections={options.connections}",
        f"--threads={options.threads}",
        f"--duration={options.duration_seconds}s",
        f"--timeout={options.timeout_seconds}s",
        f"--script={script_path}",
        options.url,
    ]
    if len(options.paths) > MAX_INLINE_PATHS:
        if paths_dir is None:
            raise ValueError(f"more than {MAX_INLINE_PATHS} paths need a paths_dir for their file")
        return [*command, "--", f"@{write_paths_file(options.paths, paths_dir)}"]
    if options.paths:
        return [*command, "--", *options.paths]
    return command


def write_paths_file(paths: Sequence[str], directory: Path) -> Path:
    text = "".join(f"{path}\n" for path in paths)
    # Named by content: runs with the same paths share one file, different lists never clash.
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"wrk-paths-{digest}.txt"
    target.write_text(text)
    return target


def undo_wrk_correction(
    corrected: Mapping[int, int], duration_us: int, requests: int, connections: int
) -> Counter[int]:
    """The latency samples wrk measured, before its coordinated-omission correction.

    Before done() runs, wrk 4.1.0 calls stats_correct() with e = duration / (requests /
    connections), integer divisions: every sample n >= 2e is copied again at n-e, n-2e, ...
    while above e. Those copies are not measurements. The step is invertible: for m > e,
    corrected[m] = sum over k >= 0 of original[m + k*e], so original[m] = corrected[m] -
    corrected[m + e]; at or below e nothing was added.
    """
    per_connection = requests // connections
    if per_connection == 0:
        return Counter(corrected)  # wrk skips the correction then.
    interval = duration_us // per_connection
    original: Counter[int] = Counter()
    for value, count in corrected.items():
        n = count - corrected.get(value + interval, 0) if value > interval else count
        if n < 0:
            raise ValueError(f"wrk histogram does not invert at {value} us (interval {interval})")
        if n:
            original[value] = n
    return original


def parse_wrk_output(text: str, options: WrkOptions, command: list[str]) -> GeneratorRun:
    report = _report(text)
    requests = int(report["requests"])
    duration_us = int(report["duration_us"])
    corrected = {int(value): int(n) for value, n in report["latency_corrected"].items()}
    try:
        latency = undo_wrk_correction(corrected, duration_us, requests, options.connections)
    except ValueError as exc:
        raise GeneratorError(str(exc), text) from exc
    run = GeneratorRun(
        tool="wrk",
        command=command,
        url=options.url,
        connections=options.connections,
        duration_seconds=duration_us / 1e6,
        requests=requests,
        status=Counter({int(code): int(n) for code, n in report["status"].items()}),
        errors={kind: int(report["errors"][kind]) for kind in ERROR_KINDS},
        error_bodies=int(report["error_bodies"]),
        body_bytes=int(report["body_bytes"]),
        latency=Histogram(latency),
        timeline={int(s): (int(ok), int(bad)) for s, (ok, bad) in report["timeline"].items()},
        raw_output=text,
    )
    _check(text, report, run)
    return run


def _report(text: str) -> dict[str, Any]:
    for line in text.splitlines():
        if line.startswith(REPORT_PREFIX):
            report: dict[str, Any] = json.loads(line[len(REPORT_PREFIX) :])
            return report
    # wrk exits before the run on e.g. "unable to connect to 127.0.0.1:1 Connection refused".
    raise GeneratorError("wrk printed no C50K_WRK_REPORT line: the run did not happen", text)


def _check(text: str, report: Mapping[str, Any], run: GeneratorRun) -> None:
    """Every count that wrk states twice must agree; otherwise the parse is not trustworthy."""
    problems: list[str] = []
    requests, errors = run.requests, run.errors
    if int(report["responses"]) != requests or run.status.total() != requests:
        problems.append(f"the script saw {report['responses']} responses, wrk {requests}")
    # Responses slower than --timeout count as wrk timeouts and stay out of its histogram.
    if run.latency.total + errors["timeout"] != requests:
        problems.append(f"histogram holds {run.latency.total} samples for {requests} responses")
    over_399 = sum(n for code, n in run.status.items() if code > 399)
    if int(report["errors"]["status"]) != over_399:
        problems.append(f"wrk counted {report['errors']['status']} statuses > 399, not {over_399}")
    match = _SOCKET_ERRORS.search(text)
    stated = [int(n) for n in match.groups()] if match else [0, 0, 0, 0]
    if stated != [errors["connect"], errors["read"], errors["write"], errors["timeout"]]:
        problems.append(f"socket errors line says {stated}, the report {errors}")
    match = _NON_2XX.search(text)
    if (int(match.group(1)) if match else 0) != over_399:
        problems.append("the Non-2xx or 3xx line disagrees with the status counts")
    match = _REQUESTS_IN.search(text)
    if match is None or int(match.group(1)) != requests:
        problems.append("the 'N requests in' line is missing or different")
    match = _REQUESTS_PER_SEC.search(text)
    rate = requests / run.duration_seconds if run.duration_seconds else 0.0
    if match is None or not math.isclose(float(match.group(1)), rate, abs_tol=0.01):
        problems.append(f"the Requests/sec line does not say {rate:.2f}")
    if problems:
        raise GeneratorError("inconsistent wrk output: " + "; ".join(problems), text)


def _output_file(directory: Path, prefix: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=prefix, suffix=".out", dir=directory)
    os.close(handle)
    return Path(name)


async def run_bounded(
    command: Sequence[str], limit_seconds: float, workdir: Path
) -> tuple[int, str]:
    """Run `command`, its stdout and stderr into a file in `workdir`; SIGKILL it at the limit.

    Returns the exit status and the output. The file stays, as the run's raw record.
    """
    output = await asyncio.to_thread(_output_file, workdir, f"{Path(command[0]).name}-")
    fd = os.open(output, os.O_WRONLY)
    try:
        try:
            process = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.DEVNULL, stdout=fd, stderr=fd
            )
        except OSError as exc:
            raise GeneratorError(f"cannot start {command[0]}: {exc}") from exc
    finally:
        os.close(fd)
    try:
        returncode = await asyncio.wait_for(process.wait(), limit_seconds)
    except TimeoutError:
        partial = await asyncio.to_thread(output.read_text, errors="replace")
        raise GeneratorError(
            f"{command[0]} still ran after {limit_seconds:.0f} s; killed", partial
        ) from None
    finally:
        # Also on cancellation: never leave a generator running behind the harness.
        if process.returncode is None:
            process.kill()  # This child's own PID, nothing else.
            await process.wait()
    return returncode, await asyncio.to_thread(output.read_text, errors="replace")


async def run_wrk(options: WrkOptions, workdir: Path) -> GeneratorRun:
    limit = options.duration_seconds + options.timeout_seconds + EXIT_MARGIN_SECONDS
    with resources.as_file(script_resource()) as script:
        command = await asyncio.to_thread(wrk_command, options, script, workdir)
        returncode, text = await run_bounded(command, limit, workdir)
    if returncode != 0:
        raise GeneratorError(f"wrk exited with status {returncode}", text)
    # Parsing a long run's histogram takes a while: keep the event loop free meanwhile.
    return await asyncio.to_thread(parse_wrk_output, text, options, command)
