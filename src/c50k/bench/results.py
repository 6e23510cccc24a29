"""What one load generator process measured, and how runs of several processes combine.

Latency is kept as an exact histogram (microseconds → count) so percentiles of the combined
run are computed from all samples; percentiles of separate processes are never averaged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

ERROR_KINDS = ("connect", "read", "write", "timeout")


class GeneratorError(RuntimeError):
    """A generator run that produced no usable result; `output` is what the tool printed."""

    def __init__(self, message: str, output: str = "") -> None:
        tail = "\n".join(output.strip().splitlines()[-40:])
        super().__init__(f"{message}\n--- output (tail) ---\n{tail}" if tail else message)
        self.output = output


@dataclass
class Histogram:
    """Latency samples in whole microseconds: value → count."""

    counts: Counter[int] = field(default_factory=Counter)

    @classmethod
    def of(cls, samples: Iterable[int]) -> Histogram:
        return cls(Counter(samples))

    def add(self, other: Histogram) -> None:
        self.counts.update(other.counts)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def max(self) -> int:
        return max(self.counts, default=0)

    def percentile(self, p: float) -> int:
        """The smallest sample that at least p% of samples do not exceed (nearest rank)."""
        total = self.total
        if total == 0:
            return 0
        # ceil(total * p / 100) in integers (floats put p99.9 of 41,000 samples one rank off),
        # and at least the first sample.
        rank = max(1, -(-total * round(p * 1000) // 100_000))
        seen = 0
        for value in sorted(self.counts):
            seen += self.counts[value]
            if seen >= rank:
                return value
        return self.max

    def to_json(self) -> dict[str, int]:
        return {str(k): v for k, v in sorted(self.counts.items())}

    @classmethod
    def from_json(cls, data: Mapping[str, int]) -> Histogram:
        return cls(Counter({int(k): int(v) for k, v in data.items()}))


@dataclass
class GeneratorRun:
    """One generator process's results, parsed from its own output."""

    tool: Literal["wrk", "h2load", "locust"]
    command: list[str]
    url: str
    connections: int
    duration_seconds: float
    requests: int  # Responses received, whatever their status.
    status: Counter[int] = field(default_factory=Counter)  # Status code → responses.
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_KINDS, 0))
    # Responses whose body carried an "error" object (None: the tool cannot see bodies).
    error_bodies: int | None = None
    body_bytes: int | None = None
    # Connections that got at least one response (None: the tool cannot tell).
    connections_served: int | None = None
    latency: Histogram = field(default_factory=Histogram)
    # Second since the start → (responses, non-2xx or error responses) in that second.
    timeline: dict[int, tuple[int, int]] = field(default_factory=dict)
    raw_output: str = ""

    @property
    def non_2xx(self) -> int:
        return sum(n for code, n in self.status.items() if not 200 <= code < 300)

    @property
    def socket_errors(self) -> int:
        return sum(self.errors.values())


@dataclass
class Aggregate:
    """Several generator processes of one run, combined correctly."""

    runs: list[GeneratorRun]

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.runs)

    @property
    def duration_seconds(self) -> float:
        # The processes ran side by side: the run lasted as long as the longest of them.
        return max((r.duration_seconds for r in self.runs), default=0.0)

    @property
    def throughput(self) -> float:
        # Summed rates: each process's requests over its own duration.
        return sum(r.requests / r.duration_seconds for r in self.runs if r.duration_seconds > 0)

    @cached_property  # The runs do not change; merging is done once.
    def latency(self) -> Histogram:
        merged = Histogram()
        for run in self.runs:
            merged.add(run.latency)
        return merged

    @cached_property  # The runs do not change; merging is done once.
    def status(self) -> Counter[int]:
        total: Counter[int] = Counter()
        for run in self.runs:
            total.update(run.status)
        return total

    @property
    def errors(self) -> dict[str, int]:
        return {kind: sum(r.errors.get(kind, 0) for r in self.runs) for kind in ERROR_KINDS}

    @property
    def error_bodies(self) -> int | None:
        known = [r.error_bodies for r in self.runs if r.error_bodies is not None]
        return sum(known) if len(known) == len(self.runs) and known else None

    @property
    def connections(self) -> int:
        return sum(r.connections for r in self.runs)

    @property
    def connections_served(self) -> int | None:
        known = [r.connections_served for r in self.runs if r.connections_served is not None]
        return sum(known) if len(known) == len(self.runs) and known else None

    @cached_property  # The runs do not change; merging is done once.
    def timeline(self) -> dict[int, tuple[int, int]]:
        merged: dict[int, tuple[int, int]] = {}
        for run in self.runs:
            for second, (ok, bad) in run.timeline.items():
                before = merged.get(second, (0, 0))
                merged[second] = (before[0] + ok, before[1] + bad)
        return dict(sorted(merged.items()))

    def summary(self) -> dict[str, Any]:
        latency = self.latency
        status = self.status
        return {
            "processes": len(self.runs),
            "connections": self.connections,
            "connections_served": self.connections_served,
            "requests": self.requests,
            "duration_seconds": round(self.duration_seconds, 3),
            "throughput_rps": round(self.throughput, 1),
            "latency_ms": {
                name: round(latency.percentile(p) / 1000, 3)
                for name, p in (("p50", 50), ("p90", 90), ("p99", 99), ("p99_9", 99.9))
            }
            | {"max": round(latency.max / 1000, 3)},
            "status": {str(code): n for code, n in sorted(status.items())},
            "non_2xx": sum(n for code, n in status.items() if not 200 <= code < 300),
            "socket_errors": self.errors,
            "error_bodies": self.error_bodies,
        }
