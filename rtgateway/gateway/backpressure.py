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

    __slots__ = ("_drained", "_limit", "_paused", "pending", "queued")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._paused = False
        self._drained: list[Callable[[], None]] = []
        #: Bytes counted since the transport paused.
        self.pending = 0
        #: Bytes admitted that wait before the transport (the connection's
        #: outbox), kept by the connection: it adds what it queues and sets
        #: this back to 0 when it sends them.
        self.queued = 0

    @property
    def paused(self) -> bool:
        """True while the transport's own buffer is full."""
        return self._paused

    def admits(self, size: int) -> bool:
        """Account for ``size`` more bytes; False once over the bound.

        What waits in the outbox counts against the bound as well; a single
        message is always admitted into an empty outbox.
        """
        if not self._paused:
            queued = self.queued
            return not queued or queued + size <= self._limit
        self.pending += size
        return self.pending <= self._limit

    def pauseProducing(self) -> None:
        """The transport's buffer is full; what is queued counts from now on.

        A plain TCP transport pauses while the outbox is written to it (then
        empty), a TLS one possibly on a turn of its own, with frames queued.
        """
        self._paused = True
        self.pending = self.queued

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
