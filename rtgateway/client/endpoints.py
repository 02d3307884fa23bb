"""A pool of gateway URLs: random pick, fail-over, memory of the down ones.

Any gateway of a cluster can resume any session, so the client picks one
at random (spreading load as a load balancer would) and, when a gateway
refuses or cannot be reached, remembers it as down for ``down_for_s`` so
that the next attempts go elsewhere. When every endpoint is down, the one
that went down first is tried again: waiting is the reconnect policy's job.
"""

from __future__ import annotations

import random
from collections.abc import Sequence


class EndpointPool:
    """Gateway URLs and when each was last found down."""

    def __init__(
        self, urls: Sequence[str], rng: random.Random, down_for_s: float = 30.0
    ) -> None:
        if isinstance(urls, str):
            urls = [urls]
        if not urls:
            raise ValueError("at least one gateway URL is needed")
        self.urls = list(dict.fromkeys(urls))
        self.down_for_s = down_for_s
        self._rng = rng
        self._down_since: dict[str, float] = {}

    def pick(self, now: float) -> str:
        """An endpoint to connect to: a random up one, else the longest down."""
        up = [url for url in self.urls if not self.is_down(url, now)]
        if up:
            return self._rng.choice(up)
        return min(self.urls, key=lambda url: self._down_since[url])

    def mark_down(self, url: str, now: float) -> None:
        """Remember that ``url`` failed at ``now``."""
        self._down_since[url] = now

    def mark_up(self, url: str) -> None:
        """Forget a failure of ``url``: it accepted a connection."""
        self._down_since.pop(url, None)

    def is_down(self, url: str, now: float) -> bool:
        since = self._down_since.get(url)
        return since is not None and now - since < self.down_for_s

    def any_up(self, now: float) -> bool:
        return any(not self.is_down(url, now) for url in self.urls)
