"""A bound on what a connection may have waiting in its send buffer.

Twisted transports buffer writes without limit. Registered as the
transport's streaming producer, :class:`SendBufferGuard` learns when the
transport's own buffer is full (``pauseProducing``) and when it has drained
(``resumeProducing``), and counts what is written in between: once that
passes the configured bound the client is not reading fast enough, and the
connection is closed 4008 instead of growing the server's memory.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer


@implementer(IPushProducer)
class SendBufferGuard:
    """Counts bytes written while the transport's buffer is full."""

    __slots__ = ("_drained", "_limit", "_paused", "pending")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._paused = False
        self._drained: list[Callable[[], None]] = []
        self.pending = 0

    @property
    def paused(self) -> bool:
        """True while the transport's own buffer is full."""
        return self._paused

    def admits(self, size: int, queued: int = 0) -> bool:
        """Account for ``size`` more bytes; False once over the bound.

        ``queued`` is what waits before the transport (the connection's
        outbox) and counts against the bound as well. The transport pauses
        only while it is being written to, when the outbox has just been
        emptied into it; from then on everything queued was admitted while
        paused, and is already in ``pending``.
        """
        if not self._paused:
            return queued + size <= self._limit or not queued
        self.pending += size
        return self.pending <= self._limit

    def pauseProducing(self) -> None:
        self._paused = True

    def when_drained(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the transport's buffer has drained."""
        self._drained.append(action)

    def resumeProducing(self) -> None:
        self._paused = False
        self.pending = 0
        drained, self._drained = self._drained, []
        for action in drained:
            action()

    def stopProducing(self) -> None:
        self._paused = True
