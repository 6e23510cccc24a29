"""What the Redis tier's keys are called and how long values live there: pure rules.

Every key carries the namespace and the version, so two deployments can share a Redis, and a
change of the value format (a new version) never reads an old value: those simply expire.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KeySpace:
    namespace: str
    version: int

    @property
    def prefix(self) -> str:
        return f"{self.namespace}:v{self.version}"

    def item(self, item_id: int) -> str:
        return f"{self.prefix}:item:{item_id}"

    def lease(self, item_id: int) -> str:
        return f"{self.prefix}:lease:{item_id}"

    @property
    def channel(self) -> str:
        """Where writes announce the ids every worker must drop from its in-process layer."""
        return f"{self.prefix}:invalidate"


def jittered_ms(seconds: float, jitter: float, draw: float | None = None) -> int:
    """`seconds` in milliseconds, longer by a random share up to `jitter`, so that keys filled
    together (a warm-up, a deploy) do not all expire in the same instant."""
    share = random.random() if draw is None else draw  # noqa: S311 -- spread, not secrecy.
    return max(1, round(seconds * 1000 * (1 + jitter * share)))
