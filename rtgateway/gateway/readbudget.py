"""A bound on the input one turn of the reactor processes.

Twisted's epoll reactor reads every ready connection in one turn (up to
64 KiB each) before it runs its timers. When clients send more than the
process can handle, the turn grows with the number of busy connections:
1,000 players sending 60 inputs a second made one turn last over a second,
and a zone's 60 Hz tick, a timer, ran less than once a second, its deltas
seconds late for everyone, the players who cause no load included.

:class:`ReadBudget` bounds a turn's input processing by the time the rest
of the previous turn took (timers, sends), never below ``budget_s`` and
never above :data:`CEILING` times it (the rest of a turn includes waiting
for events, which must not let the next turn read for a second): under
overload, input and timers share the process about evenly, and neither
starves the other (a fixed budget shorter than a zone's tick starved the
inputs instead). Once a turn has spent its
allowance, a connection whose bytes arrive is paused
(``pauseProducing``: its socket leaves the reactor's read set, so the
kernel's buffer and TCP's window hold the rest) and its bytes wait here;
the next turn, after the timers due by then, takes the waiting connections
first, oldest first, within a fresh allowance, and resumes their reading. A
gateway under input overload thus keeps its timers on time (ticks,
heartbeats, the outboxes' sends) and serves every connection in turn; one
that is not overloaded never reaches the bound and pays two clock reads
per read.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorTime

#: The most a turn may read, in budgets, however long the last one's rest.
CEILING = 4


class ReadBudget:
    """Input processing time per turn of the reactor, shared by connections."""

    __slots__ = (
        "_allowance",
        "_budget",
        "_call",
        "_clock",
        "_spent",
        "_timer",
        "_turn_started",
        "_waiting",
    )

    def __init__(
        self,
        clock: IReactorTime,
        budget_s: float,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._clock = clock
        self._budget = budget_s
        self._timer = timer
        self._spent = 0.0
        self._allowance = budget_s
        self._turn_started = timer()
        self._call: Any = None
        #: Paused connections and the bytes they were read, oldest first.
        self._waiting: deque[tuple[Any, bytes, Callable[[bytes], None]]] = deque()

    @property
    def waiting(self) -> int:
        """Connections paused until a later turn."""
        return len(self._waiting)

    def receive(
        self, connection: Any, data: bytes, process: Callable[[bytes], None]
    ) -> None:
        """Process ``data`` now, or pause ``connection`` if the turn has spent
        its allowance (or others wait already, who go first)."""
        if self._waiting or self._spent >= self._allowance:
            connection.transport.pauseProducing()
            self._waiting.append((connection, data, process))
            self._next_turn()
            return
        self._next_turn()
        self._spend(process, data)

    def forget(self, connection: Any) -> None:
        """The connection is gone: drop what it had waiting."""
        if any(entry[0] is connection for entry in self._waiting):
            self._waiting = deque(e for e in self._waiting if e[0] is not connection)

    def _spend(self, process: Callable[[bytes], None], data: bytes) -> None:
        started = self._timer()
        try:
            process(data)
        finally:
            self._spent += self._timer() - started

    def _next_turn(self) -> None:
        if self._call is None:
            self._call = self._clock.callLater(0, self._turn)

    def _turn(self) -> None:
        """A new turn: a fresh allowance, spent on the waiting connections first."""
        self._call = None
        now = self._timer()
        others = now - self._turn_started - self._spent
        self._allowance = min(max(self._budget, others), CEILING * self._budget)
        self._turn_started = now
        self._spent = 0.0
        waiting = self._waiting
        while waiting and self._spent < self._allowance:
            connection, data, process = waiting.popleft()
            connection.transport.resumeProducing()
            self._spend(process, data)
        if waiting:
            self._next_turn()
