"""The db scenario's request mix and what it reads from two scrapes of the exporter."""

from __future__ import annotations

import pytest

from c50k.bench.database import mixed_paths, store_figures
from c50k.bench.wrk import WrkOptions


def test_one_request_in_ten_is_a_write() -> None:
    paths = mixed_paths(20, 10)
    assert paths[:3] == ["/items/1", "/items/2", "/items/3"]
    assert [p for p in paths if p.startswith("PUT ")] == ["PUT /items/10", "PUT /items/20"]
    WrkOptions(url="http://127.0.0.1:1/", connections=1, paths=paths)  # Accepted by wrk's side.


def test_only_the_write_prefix_may_carry_a_space() -> None:
    with pytest.raises(ValueError, match="not a request path"):
        WrkOptions(url="http://127.0.0.1:1/", connections=1, paths=["GET /items/1"])


def test_figures_are_the_growth_between_scrapes() -> None:
    before = {
        'c50k_store_reads_total{role="replica",shard="0"}': 10.0,
        'c50k_store_pool_wait_seconds_count{role="primary",shard="0"}': 5.0,
        'c50k_store_pool_wait_seconds_sum{role="primary",shard="0"}': 0.5,
    }
    after = {
        'c50k_store_reads_total{role="replica",shard="0"}': 40.0,
        'c50k_store_reads_total{role="replica",shard="1"}': 30.0,
        'c50k_store_reads_total{role="primary",shard="1"}': 20.0,
        'c50k_store_pool_wait_seconds_count{role="primary",shard="0"}': 15.0,
        'c50k_store_pool_wait_seconds_sum{role="primary",shard="0"}': 0.52,
        'c50k_store_pool_wait_seconds_bucket{le="0.001",role="primary",shard="0"}': 3.0,
    }
    figures = store_figures(before, after)
    assert figures["replica"] == 60.0
    assert figures["primary"] == 20.0
    assert figures["checkouts"] == 10.0
    assert figures["wait_mean_ms"] == pytest.approx(2.0)
