"""Which shard holds an id and which server answers a read: pure rules, no I/O."""

from __future__ import annotations

from collections import Counter

import pytest

from c50k.settings import ShardSettings
from c50k.store.consistency import ConsistencyToken
from c50k.store.routing import (
    ReplicaHealth,
    SlotMapError,
    build_slot_map,
    choose_replica,
    format_lsn,
    parse_lsn,
    shard_of,
    slot_of,
)


def shards(*slots: str | None) -> list[ShardSettings]:
    return [
        ShardSettings(primary=f"postgresql://u@h:{5432 + i}/d", slots=s)
        for i, s in enumerate(slots)
    ]


def test_slot_of_is_stable_across_runs_and_machines() -> None:
    # Fixed values: a change here would move stored items to other shards.
    # crc32 of the 8 big-endian signed bytes, modulo the slot count.
    assert [slot_of(i, 4096) for i in (0, 1, 2, 2**63 - 1, -1)] == SLOTS


def test_even_split_gives_each_shard_a_contiguous_equal_block() -> None:
    table = build_slot_map(shards(None, None), 8)
    assert table == (0, 0, 0, 0, 1, 1, 1, 1)
    assert Counter(build_slot_map(shards(None, None, None), 4096)) == {0: 1366, 1: 1365, 2: 1365}


def test_ids_spread_over_shards() -> None:
    table = build_slot_map(shards(None, None), 4096)
    counts = Counter(shard_of(i, table) for i in range(10_000))
    assert 4_500 < counts[0] < 5_500


def test_explicit_ranges_assign_every_slot_once() -> None:
    assert build_slot_map(shards("0-1,6", "2-5,7"), 8) == (0, 0, 1, 1, 1, 1, 0, 1)


@pytest.mark.parametrize(
    ("slots", "message"),
    [
        (("0-4", "4-7"), "slot 4 is owned by shards 0 and 1"),
        (("0-3", "5-7"), "1 slots have no shard, the first is 4"),
        (("0-3", "4-8"), "outside 0-7"),
        (("0-3", "x"), "is not N or N-M"),
        (("0-7", None), "either every shard names its slots or none does"),
    ],
)
def test_bad_slot_maps_are_refused(slots: tuple[str | None, ...], message: str) -> None:
    with pytest.raises(SlotMapError, match=message):
        build_slot_map(shards(*slots), 8)


def test_no_shards_is_refused() -> None:
    with pytest.raises(SlotMapError, match="no shards"):
        build_slot_map([], 8)


SLOTS = [3945, 4095, 3653, 2758, 3868]
FRESH = ReplicaHealth(healthy=True, lag_seconds=0.0, replay_lsn=100)


def test_replicas_take_turns() -> None:
    replicas = [FRESH, FRESH]
    assert [choose_replica(replicas, 1.0, 0, turn) for turn in range(4)] == [0, 1, 0, 1]


def test_unhealthy_or_lagging_replicas_are_skipped() -> None:
    down = ReplicaHealth(healthy=False, lag_seconds=0.0, replay_lsn=100)
    behind = ReplicaHealth(healthy=True, lag_seconds=5.0, replay_lsn=100)
    assert [choose_replica([down, behind, FRESH], 1.0, 0, t) for t in range(3)] == [2, 2, 2]


def test_primary_when_no_replica_qualifies() -> None:
    assert choose_replica([], 1.0, 0, 0) is None
    assert choose_replica([ReplicaHealth(False, 0.0, 100)], 1.0, 0, 0) is None


def test_a_token_needs_a_replica_that_replayed_the_write() -> None:
    behind = ReplicaHealth(healthy=True, lag_seconds=0.0, replay_lsn=99)
    assert choose_replica([behind, FRESH], 1.0, 100, 0) == 1
    assert choose_replica([behind], 1.0, 100, 0) is None  # Only the primary has it.


def test_lsn_text_round_trip_and_order() -> None:
    assert parse_lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert format_lsn(parse_lsn("16/B374D848")) == "16/B374D848"
    assert parse_lsn("0/10") < parse_lsn("0/100") < parse_lsn("1/0")


def test_consistency_token_round_trip_and_refusals() -> None:
    token = ConsistencyToken(shard=1, lsn=parse_lsn("0/3000060"))
    assert str(token) == "1/0/3000060"
    assert ConsistencyToken.parse(str(token)) == token
    for bad in ("", "1", "x/0/1", "1/zz/1"):
        with pytest.raises(ValueError, match="not a consistency token"):
            ConsistencyToken.parse(bad)
