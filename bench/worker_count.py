"""What default worker count for `c50k serve` on this machine?

    .venv/bin/python bench/worker_count.py [--workers 1,2,3,4] [--rounds 2] [--duration 10]

Starts the mock upstream (`c50k upstream`) once, then for each worker count N, interleaved over
the rounds (order rotated each round), starts `c50k serve --workers N` on a free loopback port
with the memory store and no drain, warms it, and runs wrk against GET /items/1 twice:

- hot: the cache on, so after the warm-up /items/1 is answered from the worker's cache;
- fanout: C50K_CACHE_ENABLED=false, so every request makes two upstream calls (ids 1 and 2).

Each workload gets its own service process, stopped by its PID after the run. The serve logs
are scanned for errors, tracebacks and worker timeouts. wrk, the service and the mock upstream
all share this machine's cores: the numbers are relative, not capacity.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import re
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson

from c50k.stack.process import ManagedProcess, free_port, http_ok

START_TIMEOUT = 60.0
STOP_TIMEOUT = 40.0
WORKLOADS = ("hot", "fanout")
# Serve-log lines worth a look: anything but the lines of a normal start and stop.
PROBLEM = re.compile(
    r"WORKER TIMEOUT|Traceback|\[ERROR\]|\[CRITICAL\]|\[WARNING\]|Exception|SIGKILL"
    r"|exited with code|Worker failed to boot|Reason:",
    re.IGNORECASE,
)
UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
UNITS_BYTES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


@dataclass
class WrkResult:
    requests: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    max_ms: float = float("nan")
    bytes_read: float = 0.0
    # wrk prints the total with two decimals: the total is known to half the last digit.
    bytes_rounding: float = 0.0
    socket_errors: dict[str, int] = field(default_factory=dict)
    non_2xx: int = 0

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values()) + self.non_2xx


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value)
    if match is None:
        return float("nan")
    return float(match[1]) * UNITS_MS[match[2]]


def parse_wrk(text: str) -> WrkResult:
    result = WrkResult()
    if m := re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE):
        result.rps = float(m[1])
    if m := re.search(r"^\s+(\d+) requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read", text, re.M):
        result.requests = int(m[1])
        result.seconds = _ms(m[2] + m[3]) / 1e3
        result.bytes_read = float(m[4]) * UNITS_BYTES.get(m[5], 1)
        result.bytes_rounding = 0.005 * UNITS_BYTES.get(m[5], 1)
    for pct, value in re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", text, re.MULTILINE):
        setattr(result, f"p{pct}_ms", _ms(value))
    if m := re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", text, re.MULTILINE):
        result.max_ms = _ms(m[1])
    if m := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    ):
        result.socket_errors = dict(
            zip(("connect", "read", "write", "timeout"), map(int, m.groups()), strict=True)
        )
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        result.non_2xx = int(m[1])
    return result


@dataclass
class Run:
    round: int
    workers: int
    workload: str
    wrk: WrkResult
    service_cpu_seconds: float
    wrk_cpu_seconds: float
    upstream_cpu_seconds: float
    upstream_requests: int
    upstream_by_status: dict[str, int]
    complete_bytes: int
    stop_seconds: float
    stop_code: int | None
    problems: list[str]
    log_path: Path

    @property
    def service_cpu_us_per_request(self) -> float:
        return self.service_cpu_seconds / self.wrk.requests * 1e6 if self.wrk.requests else 0.0

    @property
    def upstream_calls_per_request(self) -> float:
        return self.upstream_requests / self.wrk.requests if self.wrk.requests else 0.0

    @property
    def bytes_per_response_gap(self) -> float:
        """Mean bytes wrk read per response minus a complete answer's size (0: all complete)."""
        if not self.wrk.requests:
            return float("nan")
        return self.wrk.bytes_read / self.wrk.requests - self.complete_bytes

    @property
    def bytes_per_response_rounding(self) -> float:
        return self.wrk.bytes_rounding / self.wrk.requests if self.wrk.requests else float("nan")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process from /proc (Linux); 0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU of gunicorn's master and its live workers."""
    return cpu_seconds(pid) + sum(cpu_seconds(child) for child in children_of(pid))


def raw_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes, int]:
    """GET on a fresh connection: status, headers, body and the size of the whole response."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        headers = {k.lower(): v for k, v in response.getheaders()}
        # Status line + header lines + blank line, as they came over the wire.
        head = len(f"HTTP/1.1 {response.status} {response.reason}\r\n") + 2
        head += sum(len(f"{k}: {v}\r\n") for k, v in response.getheaders())
        return response.status, headers, body, head + len(body)
    finally:
        conn.close()


def upstream_stats(base_url: str) -> dict[str, object]:
    port = int(base_url.rsplit(":", 1)[1])
    status, _headers, body, _size = raw_get(port, "/stats")
    if status != 200:
        raise RuntimeError(f"upstream /stats answered {status}")
    value = orjson.loads(body)
    return value if isinstance(value, dict) else {}


def reset_upstream_stats(base_url: str) -> None:
    port = int(base_url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5.0)
    try:
        conn.request("POST", "/stats/reset")
        conn.getresponse().read()
    finally:
        conn.close()


def workers_started(log: Path, since: int, count: int) -> bool:
    try:
        text = log.read_bytes()[since:].decode(errors="replace")
    except OSError:
        return False
    return text.count("Application startup complete.") >= count


def warm_up(port: int, count: int) -> int:
    """`count` requests on fresh connections (so they spread over the workers); the size of a
    complete answer."""
    size = 0
    for _ in range(count):
        status, headers, body, size = raw_get(port, "/items/1")
        if status != 200 or headers.get("x-items-complete") != "true":
            raise RuntimeError(f"warm-up /items/1 answered {status}: {body[:200]!r}")
    return size


def run_one(
    args: argparse.Namespace, round_no: int, workers: int, workload: str, upstream: ManagedProcess
) -> Run:
    upstream_url = f"http://127.0.0.1:{args.upstream_port}"
    port = free_port()
    env = {
        **os.environ,
        "C50K_UPSTREAM_URL": f"{upstream_url}/posts/{{id}}",
        "C50K_STORE_BACKEND": "memory",
        "C50K_SERVER_DRAIN_SECONDS": "0",
        "C50K_CACHE_ENABLED": "true" if workload == "hot" else "false",
    }
    log = args.log_dir / f"serve-r{round_no}-w{workers}-{workload}.log"
    since = log.stat().st_size if log.exists() else 0
    argv = [sys.executable, "-m", "c50k", "serve", "--workers", str(workers), "--port", str(port)]
    service = ManagedProcess(f"c50k serve ({workers} workers)", argv, log, env=env).start()
    try:
        service.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/ready"), START_TIMEOUT)
        service.wait_until(
            lambda: workers_started(log, since, workers), START_TIMEOUT, "fully started"
        )
        complete_bytes = warm_up(port, args.warmup)
        reset_upstream_stats(upstream_url)
        wrk_argv = [
            args.wrk,
            f"-t{args.threads}",
            f"-c{args.connections}",
            f"-d{args.duration}s",
            "--latency",
            f"http://127.0.0.1:{port}/items/1",
        ]
        service_cpu0, upstream_cpu0 = tree_cpu_seconds(service.pid), cpu_seconds(upstream.pid)
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        finished = subprocess.run(
            wrk_argv,
            capture_output=True,
            text=True,
            timeout=args.duration + 60,
            check=False,
        )
        children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        service_cpu = tree_cpu_seconds(service.pid) - service_cpu0
        upstream_cpu = cpu_seconds(upstream.pid) - upstream_cpu0
        if finished.returncode != 0:
            raise RuntimeError(f"wrk exited {finished.returncode}: {finished.stderr}")
        stats = upstream_stats(upstream_url)
        # After the load, one more answer must still be complete.
        status, headers, body, _size = raw_get(port, "/items/1")
        after_ok = status == 200 and headers.get("x-items-complete") == "true"
    finally:
        stop_started = time.monotonic()
        # SIGTERM: with C50K_SERVER_DRAIN_SECONDS=0 it stops at once. SIGINT does not: its
        # SIGQUIT to the workers is ignored and gunicorn SIGKILLs them after graceful_timeout.
        stop_code = service.stop(STOP_TIMEOUT, signal.SIGTERM)
        stop_seconds = time.monotonic() - stop_started
    text = log.read_bytes()[since:].decode(errors="replace")
    problems = [line for line in text.splitlines() if PROBLEM.search(line)]
    if not after_ok:
        problems.append(f"/items/1 after the load answered {status}: {body[:200]!r}")
    if stop_code not in (0, None) or stop_seconds > 5:
        problems.append(f"stop took {stop_seconds:.1f} s, exit code {stop_code}")
    by_status = stats.get("by_status")
    wrk_cpu = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
    requests = stats.get("requests")
    return Run(
        round=round_no,
        workers=workers,
        workload=workload,
        wrk=parse_wrk(finished.stdout),
        service_cpu_seconds=service_cpu,
        wrk_cpu_seconds=wrk_cpu,
        upstream_cpu_seconds=upstream_cpu,
        upstream_requests=requests if isinstance(requests, int) else 0,
        upstream_by_status=(
            {str(k): int(v) for k, v in by_status.items()} if isinstance(by_status, dict) else {}
        ),
        complete_bytes=complete_bytes,
        stop_seconds=stop_seconds,
        stop_code=stop_code,
        problems=problems,
        log_path=log,
    )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def relative(runs: list[Run], workers: int, workload: str, base: int) -> float:
    """Median over rounds of this count's rps ÷ the base count's rps in the same round."""
    ratios: list[float] = []
    for round_no in sorted({r.round for r in runs}):
        mine = [
            r for r in runs if (r.round, r.workers, r.workload) == (round_no, workers, workload)
        ]
        theirs = [r for r in runs if (r.round, r.workers, r.workload) == (round_no, base, workload)]
        if mine and theirs and theirs[0].wrk.rps > 0:
            ratios.append(mine[0].wrk.rps / theirs[0].wrk.rps)
    return median(ratios)


def describe(run: Run) -> str:
    w = run.wrk
    socket_errors = ", ".join(f"{k} {v}" for k, v in w.socket_errors.items() if v) or "none"
    return (
        f"round {run.round} workers {run.workers} {run.workload:<6} "
        f"{w.rps:9.0f} rps  p50 {w.p50_ms:8.2f} ms  p99 {w.p99_ms:8.2f} ms  "
        f"max {w.max_ms:8.2f} ms  socket errors: {socket_errors}  non-2xx {w.non_2xx}  "
        f"service CPU {run.service_cpu_us_per_request:6.0f} µs/req  "
        f"wrk CPU {run.wrk_cpu_seconds / max(w.seconds, 1e-9):.2f} cores  "
        f"upstream {run.upstream_calls_per_request:.2f} calls/req  "
        f"bytes/resp gap {run.bytes_per_response_gap:+.2f} "
        f"(rounding ±{run.bytes_per_response_rounding:.2f})  stop {run.stop_seconds:.1f} s"
    )


def report(runs: list[Run], args: argparse.Namespace) -> None:
    base = 2 if 2 in args.workers else args.workers[0]

    def pick(workers: int, workload: str) -> list[Run]:
        return [r for r in runs if r.workers == workers and r.workload == workload]

    print()
    print("## Worker count: c50k serve --workers N, GET /items/1 under wrk")
    print()
    print(
        "| workers | hot rps | hot p99 ms | fanout rps | fanout p99 ms | errors (hot / fanout) "
        f"| hot rps vs {base} | fanout rps vs {base} |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for workers in args.workers:
        hot, fan = pick(workers, "hot"), pick(workers, "fanout")
        print(
            f"| {workers} "
            f"| {median([r.wrk.rps for r in hot]):,.0f} "
            f"| {median([r.wrk.p99_ms for r in hot]):,.1f} "
            f"| {median([r.wrk.rps for r in fan]):,.0f} "
            f"| {median([r.wrk.p99_ms for r in fan]):,.1f} "
            f"| {sum(r.wrk.errors for r in hot)} / {sum(r.wrk.errors for r in fan)} "
            f"| {relative(runs, workers, 'hot', base):.2f}x "
            f"| {relative(runs, workers, 'fanout', base):.2f}x |"
        )
    print()
    print("Per-run detail (medians over rounds):")
    print()
    print(
        "| workers | workload | p50 ms | service CPU µs/req | wrk CPU cores "
        "| upstream CPU cores | upstream calls/req | bytes/resp gap (± rounding) "
        "| log problems |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for workers in args.workers:
        for workload in WORKLOADS:
            sel = pick(workers, workload)
            print(
                f"| {workers} | {workload} "
                f"| {median([r.wrk.p50_ms for r in sel]):,.2f} "
                f"| {median([r.service_cpu_us_per_request for r in sel]):,.0f} "
                f"| {median([r.wrk_cpu_seconds / max(r.wrk.seconds, 1e-9) for r in sel]):.2f} "
                f"| {median([r.upstream_cpu_seconds / max(r.wrk.seconds, 1e-9) for r in sel]):.2f} "
                f"| {median([r.upstream_calls_per_request for r in sel]):.3f} "
                f"| {median([r.bytes_per_response_gap for r in sel]):+.2f} "
                f"(±{median([r.bytes_per_response_rounding for r in sel]):.2f}) "
                f"| {sum(len(r.problems) for r in sel)} |"
            )
    print()
    print(
        f"rps and p99 are medians over {args.rounds} rounds; 'vs {base}' is the ratio to "
        f"{base} workers inside each round (side by side), then the median. errors = wrk "
        "socket errors (connect, read, write, timeout) + non-2xx responses, summed over rounds. "
        "upstream calls/req: the mock upstream's request count over wrk's (2 = every fan-out "
        "reached the upstream). bytes/resp gap: mean bytes wrk read per response minus the size "
        "of one complete answer: a side degraded into an error object is ~345 bytes shorter, so "
        "a gap within the rounding of wrk's two-decimal total means at most a handful of "
        "degraded answers (a coarse check; wrk cannot read bodies without a Lua response hook, "
        "which would cost CPU on the same cores). wrk, the service and the upstream share "
        f"{len(os.sched_getaffinity(0))} cores."
    )
    problems = [(r, p) for r in runs for p in r.problems]
    print()
    if problems:
        print(f"Serve-log problems ({len(problems)} lines):")
        seen: set[str] = set()
        for run, line in problems:
            key = re.sub(r"^\[[^]]*\] \[\d+\] ", "", line)
            key = re.sub(r"\d+", "N", key)
            if key not in seen:
                seen.add(key)
                print(f"- workers {run.workers} {run.workload} round {run.round}: {line}")
    else:
        print("Serve logs: no errors, warnings, tracebacks or worker timeouts.")
    print()
    command = shlex.join([Path(sys.executable).as_posix(), *sys.argv])
    wrk_command = shlex.join(
        [
            args.wrk,
            f"-t{args.threads}",
            f"-c{args.connections}",
            f"-d{args.duration}s",
            "--latency",
            "http://127.0.0.1:<port>/items/1",
        ]
    )
    print(f"- command: `{command}` (cwd {Path.cwd()})")
    print(f"- wrk: `{wrk_command}`")
    print(f"- date: {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"- nproc: {len(os.sched_getaffinity(0))} ({platform.machine()}, {platform.system()})")
    print(f"- python: {platform.python_version()} ({sys.implementation.name})")
    print(f"- logs: {args.log_dir}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--workers", default="1,2,3,4", help="comma-separated worker counts")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=int, default=10, help="seconds of each wrk run")
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=20, help="requests before each run")
    parser.add_argument("--wrk", default="/usr/bin/wrk")
    parser.add_argument("--log-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        args.workers = [int(part) for part in args.workers.split(",") if part.strip()]
    except ValueError:
        parser.error("--workers takes comma-separated integers")
    if not args.workers or min(args.workers) < 1 or max(args.workers) > 64:
        parser.error("--workers: counts from 1 to 64")
    for name in ("rounds", "duration", "connections", "threads", "warmup"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.duration > 300:
        parser.error("--duration: at most 300 s")
    return args


def main() -> int:
    args = parse_args()
    args.log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="c50k-bench-workers-"))
    args.upstream_port = free_port()
    upstream_url = f"http://127.0.0.1:{args.upstream_port}"
    upstream = ManagedProcess(
        "c50k upstream",
        [
            sys.executable,
            "-m",
            "c50k",
            "upstream",
            "--port",
            str(args.upstream_port),
            "--posts",
            "100000",
        ],
        args.log_dir / "upstream.log",
    ).start()
    print(f"mock upstream pid {upstream.pid} on {upstream_url}; logs in {args.log_dir}", flush=True)
    runs: list[Run] = []
    try:
        upstream.wait_until(lambda: http_ok(f"{upstream_url}/health"), START_TIMEOUT, "healthy")
        for round_no in range(1, args.rounds + 1):
            shift = (round_no - 1) % len(args.workers)
            order = args.workers[shift:] + args.workers[:shift]
            workloads = WORKLOADS if round_no % 2 else WORKLOADS[::-1]
            for workers in order:
                for workload in workloads:
                    run = run_one(args, round_no, workers, workload, upstream)
                    runs.append(run)
                    print(describe(run), flush=True)
                    for line in run.problems[:5]:
                        print(f"    log: {line}", flush=True)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"stopped early: {type(exc).__name__}: {exc}", flush=True)
    finally:
        code = upstream.stop()
        print(f"mock upstream stopped, exit code {code}", flush=True)
    if runs:
        report(runs, args)
    expected = args.rounds * len(args.workers) * len(WORKLOADS)
    return 0 if len(runs) == expected and not any(r.wrk.errors for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
