"""Read-your-writes across workers and instances: a write answers with a consistency token
(header X-Consistency-Token: "<shard>/<commit LSN>"); a read that sends it back is served only
by a server of that shard that has replayed the write, which is the primary when no replica
has. Within one request, the API and the store pass the tokens through these context
variables, so the ItemStore interface stays the same for stores without replicas."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from c50k.store.routing import format_lsn, parse_lsn

HEADER = "X-Consistency-Token"


@dataclass(frozen=True, slots=True)
class ConsistencyToken:
    """Returned by a write (header X-Consistency-Token), sent back by the client on reads: a
    read of that shard never goes to a replica that has not replayed the write."""

    shard: int
    lsn: int

    def __str__(self) -> str:
        return f"{self.shard}/{format_lsn(self.lsn)}"

    @classmethod
    def parse(cls, text: str) -> ConsistencyToken:
        shard, _, lsn = text.strip().partition("/")
        try:
            return cls(int(shard), parse_lsn(lsn))
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a consistency token (shard/LSN)") from exc


# The token the client sent with this request, if any.
read_after: ContextVar[ConsistencyToken | None] = ContextVar("read_after", default=None)
# The token of this request's own write, set by a store with replicas.
last_write: ContextVar[ConsistencyToken | None] = ContextVar("last_write", default=None)
