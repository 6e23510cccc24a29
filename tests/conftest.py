"""Real tiers for the whole suite, started by the same code as `c50k stack up`."""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
import pytest

from c50k.settings import PostgresSettings
from c50k.stack.postgres import stack_postgres_settings
from c50k.stack.stack import StackPlan, temporary_stack
from c50k.stack.state import StackState


@pytest.fixture(scope="session")
def postgres_stack() -> Iterator[StackState]:
    """Two shards, each a primary and a streaming replica, migrated. Shared by the tests that
    only read and write items; tests that break servers start their own stack."""
    with temporary_stack(StackPlan(shards=2, replicas=1)) as state:
        yield state


async def empty_shards(settings: PostgresSettings) -> None:
    """Delete every item on every shard (through the primaries; replicas follow)."""
    for shard in settings.shards:
        conn = await asyncpg.connect(shard.primary, statement_cache_size=0)  # PgBouncer too.
        try:
            await conn.execute("TRUNCATE items")
        finally:
            await conn.close()


@pytest.fixture(scope="session")
def pgbouncer_stack() -> Iterator[StackState]:
    """One primary behind PgBouncer in transaction mode."""
    with temporary_stack(StackPlan(shards=1, replicas=0, pgbouncer=True)) as state:
        yield state


# The postgres settings a stack wrote, with test-specific changes.
postgres_settings = stack_postgres_settings
