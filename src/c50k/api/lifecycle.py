"""A worker process's lifecycle as the app sees it: serving, then draining."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


class Lifecycle:
    def __init__(self) -> None:
        self.draining = False

    def begin_drain(self) -> None:
        """Called on SIGTERM: /ready turns 503 and responses close their connections."""
        if not self.draining:
            logger.info("draining: /ready answers 503 from now on")
        self.draining = True
