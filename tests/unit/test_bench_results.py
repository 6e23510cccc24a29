"""Exact latency histograms, and runs of several generator processes combined correctly."""

from __future__ import annotations

from collections import Counter

from c50k.bench.results import Aggregate, GeneratorError, GeneratorRun, Histogram


def test_percentile_is_the_nearest_rank() -> None:
    histogram = Histogram.of(range(1, 101))
    assert histogram.percentile(50) == 50
    assert histogram.percentile(99) == 99
    assert histogram.percentile(99.9) == 100
    assert histogram.percentile(0) == 1
    assert histogram.max == 100
    assert Histogram().percentile(99) == 0


def test_merging_gives_the_percentile_of_the_union_not_the_average() -> None:
    fast = Histogram(Counter({10: 90, 1000: 10}))
    slow = Histogram(Counter({10: 10, 1000: 90}))
    assert (fast.percentile(90), slow.percentile(90)) == (10, 1000)
    merged = Histogram()
    merged.add(fast)
    merged.add(slow)
    assert merged.total == 200
    # 100 samples of each value: p50 is the 100th sample, p90 the 180th.
    assert merged.percentile(50) == 10
    assert merged.percentile(90) == 1000
    assert merged.percentile(90) != (fast.percentile(90) + slow.percentile(90)) // 2


def test_histogram_json_round_trip() -> None:
    histogram = Histogram(Counter({250: 3, 17: 1}))
    assert histogram.to_json() == {"17": 1, "250": 3}
    assert Histogram.from_json(histogram.to_json()) == histogram


def run(requests: int, seconds: float, latency: Counter[int], **fields: object) -> GeneratorRun:
    return GeneratorRun(
        tool="wrk",
        command=["wrk"],
        url="http://127.0.0.1:9/",
        connections=10,
        duration_seconds=seconds,
        requests=requests,
        latency=Histogram(latency),
        **fields,  # type: ignore[arg-type]
    )


def test_aggregate_sums_rates_and_merges_samples() -> None:
    a = run(100, 2.0, Counter({5: 99, 900: 1}), status=Counter({200: 100}), error_bodies=0)
    b = run(300, 3.0, Counter({7: 300}), status=Counter({200: 290, 503: 10}), error_bodies=4)
    b.errors["read"] = 2
    a.timeline = {0: (40, 0), 1: (60, 0)}
    b.timeline = {1: (150, 10), 2: (150, 4)}
    total = Aggregate([a, b])
    assert total.requests == 400
    assert total.duration_seconds == 3.0
    assert total.throughput == 150.0
    assert total.latency.total == 400
    assert total.latency.percentile(99) == 7
    assert total.latency.max == 900
    assert total.status == Counter({200: 390, 503: 10})
    assert total.errors == {"connect": 0, "read": 2, "write": 0, "timeout": 0}
    assert total.error_bodies == 4
    assert total.timeline == {0: (40, 0), 1: (210, 10), 2: (150, 4)}
    summary = total.summary()
    assert summary["non_2xx"] == 10
    assert summary["latency_ms"]["max"] == 0.9


def test_unknown_counts_stay_unknown() -> None:
    wrk = run(10, 1.0, Counter({5: 10}), error_bodies=0, connections_served=10)
    h2load = run(10, 1.0, Counter({5: 10}))  # h2load cannot see bodies.
    assert Aggregate([wrk, h2load]).error_bodies is None
    assert Aggregate([wrk, h2load]).connections_served is None
    assert Aggregate([wrk]).connections_served == 10


def test_generator_error_shows_the_tail_of_the_output() -> None:
    output = "\n".join(f"line {i}" for i in range(100))
    error = GeneratorError("wrk failed", output)
    assert error.output == output
    assert "line 99" in str(error)
    assert "line 10\n" not in str(error)


def test_percentile_rank_is_exact_in_integers() -> None:
    # 41,000 samples: p99.9 is the 40,959th; float arithmetic once gave the 40,960th.
    from c50k.bench.results import Histogram  # noqa: PLC0415

    histogram = Histogram.of(range(1, 41_001))
    assert histogram.percentile(99.9) == 40_959
    assert histogram.percentile(100) == 41_000
    assert histogram.percentile(50) == 20_500
