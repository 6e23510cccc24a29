"""Demo items: JSONPlaceholder-style posts, the same bytes for the same id everywhere.

The mock upstream serves them, and `c50k seed` writes them into the store for a quick start.
"""

from __future__ import annotations

from typing import Any

_WORDS = ("sunt", "aut", "facere", "repellat", "provident", "occaecati", "excepturi", "optio")


def demo_post(post_id: int) -> dict[str, Any]:
    """The post with this id, about the size of JSONPlaceholder's (~300 bytes)."""
    title = " ".join(_WORDS[(post_id * k) % len(_WORDS)] for k in range(1, 7))
    body = " ".join(_WORDS[(post_id + k * 3) % len(_WORDS)] for k in range(1, 40))
    return {"userId": (post_id - 1) // 10 + 1, "id": post_id, "title": title, "body": body}
