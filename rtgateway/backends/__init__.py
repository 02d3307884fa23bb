"""Backends: where sessions, topic history and the bus live.

``memory`` keeps everything in this process (the default); ``redis``
shares it between the gateways of a cluster.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime


def build_backends(config: Any, clock: IReactorTime) -> Any:
    """The backends service for ``[backend] kind``."""
    if config.backend.kind == "redis":
        from rtgateway.backends.redis import RedisBackends

        return RedisBackends(config.backend, config.gateway.id, clock)
    from rtgateway.backends.memory import MemoryBackends

    return MemoryBackends(clock)
