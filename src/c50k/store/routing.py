"""Which shard holds an item, and which server of that shard answers a read: pure functions.

An id's slot is crc32 of its 8 big-endian bytes modulo the number of slots; a slot map gives
each slot to one shard. Moving data between shards is then a slot-map change, and the number
of slots never changes once data is written (it would move every item).

A read goes to a replica of the owning shard when one is healthy, close enough behind its
primary, and (when the client carries a consistency token from its own write) has replayed
at least to that write; otherwise to the primary. Replicas take turns (round robin).
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from c50k.settings import ShardSettings


class SlotMapError(ValueError):
    pass


def slot_of(item_id: int, slots: int) -> int:
    # Signed: ids are 64-bit in every store and may be negative in a PUT.
    return zlib.crc32(item_id.to_bytes(8, "big", signed=True)) % slots


def _parse_ranges(text: str, slots: int) -> list[int]:
    owned: list[int] = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError as exc:
            raise SlotMapError(f"slot range {part!r} is not N or N-M") from exc
        if not 0 <= first <= last < slots:
            raise SlotMapError(f"slot range {part!r} is outside 0-{slots - 1}")
        owned.extend(range(first, last + 1))
    return owned


def build_slot_map(shards: Sequence[ShardSettings], slots: int) -> tuple[int, ...]:
    """Slot -> shard index. Every slot owned exactly once; unset ranges on every shard split
    the slots evenly in shard order (shard 0 takes the first block)."""
    if not shards:
        raise SlotMapError("no shards configured")
    if all(shard.slots is None for shard in shards):
        return tuple(slot * len(shards) // slots for slot in range(slots))
    if any(shard.slots is None for shard in shards):
        raise SlotMapError("either every shard names its slots or none does")
    owner: list[int | None] = [None] * slots
    for index, shard in enumerate(shards):
        for slot in _parse_ranges(shard.slots or "", slots):
            if owner[slot] is not None:
                raise SlotMapError(f"slot {slot} is owned by shards {owner[slot]} and {index}")
            owner[slot] = index
    if (missing := [s for s, o in enumerate(owner) if o is None])[:1]:
        raise SlotMapError(f"{len(missing)} slots have no shard, the first is {missing[0]}")
    return tuple(o for o in owner if o is not None)


def shard_of(item_id: int, slot_map: Sequence[int]) -> int:
    return slot_map[slot_of(item_id, len(slot_map))]


@dataclass(frozen=True, slots=True)
class ReplicaHealth:
    """What the last health check saw of a replica."""

    healthy: bool
    lag_seconds: float
    replay_lsn: int  # Position in the WAL it has replayed (0 when unknown).


def choose_replica(
    replicas: Sequence[ReplicaHealth],
    max_lag_seconds: float,
    min_lsn: int,
    turn: int,
) -> int | None:
    """The index of the replica that serves this read, or None for the primary.

    `turn` rotates among the usable replicas; `min_lsn` is the client's own last write (0: no
    token)."""
    usable = [
        index
        for index, replica in enumerate(replicas)
        if replica.healthy
        and replica.lag_seconds <= max_lag_seconds
        and replica.replay_lsn >= min_lsn
    ]
    if not usable:
        return None
    return usable[turn % len(usable)]


def parse_lsn(text: str) -> int:
    """PostgreSQL's "16/B374D848" as one integer, for comparing positions in the WAL."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


# One counter per worker: the turn of the next read, shared by every shard.
turns = itertools.count()
