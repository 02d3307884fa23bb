"""A connection's frames gathered per turn of the reactor, sent in one go.

Twisted's ``transport.write`` registers the connection for writability
(``epoll_ctl``), sends on the next turn of the loop, then unregisters it:
three system calls and one more event to dispatch for every write. When
one publication goes to 1,000 subscribers that was a third of the
gateway's CPU (docs/benchmarks.rst, "Where fan-out time goes"), and what
made delivery latency grow with the number of subscribers; every reply to
a call paid it too.

A connection instead appends its frames (events, replies, pings) to its
outbox and asks :class:`Outboxes` to send it; all of them are sent
together at the start of the reactor's next turn (``callLater(0)``), each
connection's frames in one ``send()`` straight to the socket when the
transport has nothing waiting before them. Frames written in the same turn
(a burst of publications, the replies to a pipelined window of calls) are
thus joined in one system call, as Twisted's buffer would have joined
them. Whatever the socket does not take, and every transport that is not
plain TCP (TLS), goes through ``transport.write`` as before, so ordering
and the send-buffer bound hold; frames Autobahn writes itself (handshake,
close, pong) send the outbox first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import tcp
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger


class Outboxes:
    """The outboxes waiting for the next turn, and the one call that sends them.

    A connection schedules its ``send_outbox`` when its outbox stops being
    empty; one delayed call per turn sends every scheduled outbox.
    """

    __slots__ = ("_call", "_clock", "_waiting")
    _log = Logger()

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._waiting: list[Callable[[], None]] = []
        self._call: Any = None

    def schedule(self, send: Callable[[], None]) -> None:
        """Call ``send`` at the start of the reactor's next turn."""
        if self._call is None:
            self._call = self._clock.callLater(0, self.send_all)
        self._waiting.append(send)

    @property
    def pending(self) -> bool:
        """True while some connection's frames wait for the next turn."""
        return bool(self._waiting)

    def send_all(self) -> None:
        """Send every waiting outbox now."""
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None
        waiting, self._waiting = self._waiting, []
        for send in waiting:
            try:
                send()
            except Exception:
                # One connection's failure (an event that would not encode
                # in a resumed replay) must not strand the others' frames.
                self._log.failure("sending a connection's outbox failed")


def write_now(transport: Any, data: bytes) -> None:
    """Write ``data`` to the socket at once when nothing is queued before it.

    Uses what :class:`twisted.internet.tcp.Connection` keeps of its write
    buffer (``dataBuffer``, ``_tempDataLen``), its ``TLS`` flag (set by
    ``startTLS``) and its ``writeSomeData``;
    ``tests/test_gateway_outbox.py`` checks them against the installed
    Twisted. Anything else is left to ``transport.write``.
    """
    if (
        isinstance(transport, tcp.Connection)
        and not transport.TLS
        and transport.connected
        and not transport.disconnecting
        and not transport.dataBuffer
        and not transport._tempDataLen
    ):
        sent = transport.writeSomeData(data)
        if isinstance(sent, int):  # else lost: Twisted finds out on write
            if sent == len(data):
                return
            data = data[sent:]
    transport.write(data)
