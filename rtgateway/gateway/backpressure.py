"""A bound on what a connection may have waiting in its send buffer.

Twisted transports buffer writes without limit. Registered as the
transport's streaming producer, :class:`SendBufferGuard` learns when the
transport's own buffer is full (``pauseProducing``) and when it has drained
(``resumeProducing``), and counts what is written in between, with what
waits in the connection's outbox: once that passes the configured bound the
client is not reading fast enough, and the connection is closed 4008
instead of growing the server's memory.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

#: Bytes a connection's outbox may gather in one turn of the reactor before
#: a replay waits for them to be sent (see ``writable``); at most half the
#: bound.
OUTBOX_PAUSE_BYTES = 64 * 1024


@implementer(IPushProducer)
class SendBufferGuard:
    """Counts bytes written while the transport's buffer is full."""

    __slots__ = ("_drained", "_limit", "_paused", "_queue_pause", "pending", "queued")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._queue_pause = max(1, min(OUTBOX_PAUSE_BYTES, limit // 2))
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

    @property
    def writable(self) -> bool:
        """False while the transport's buffer is full or the outbox holds
        ``OUTBOX_PAUSE_BYTES`` (half the bound, if less): a replay then goes
        out in slices the socket can take, one per turn of the reactor."""
        return not self._paused and self.queued < self._queue_pause

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
        Twisted calls this again on every write while its buffer stays full:
        only the first call starts the count, or each write would set it
        back and the buffer would grow without bound.
        """
        if self._paused:
            return
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
