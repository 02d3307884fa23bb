"""The bounded queue of what waits for a connection.

While the client is not connected, calls and notifications wait here and
leave in priority order (then first in, first out) once a session is open
again. The queue has a total bound and optional bounds per priority, so a
flood of low-priority chatter can never push out an important call: what
does not fit fails at once with :class:`QueueFull`. Game inputs
(``state.update`` notifications) are volatile: only the latest one is kept,
in a slot of its own outside the bounds, since an old input is worthless
once a newer one exists.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping

from rtgateway.client.calls import Call
from rtgateway.client.errors import QueueFull

#: Notifications whose latest value replaces any queued earlier one.
COALESCED_METHODS = frozenset({"state.update"})


class OutboundQueue:
    """Calls waiting to be sent, by priority, within bounds."""

    def __init__(
        self, max_size: int = 1000, per_priority: Mapping[int, int] | None = None
    ) -> None:
        if max_size < 0:
            raise ValueError("max_size must not be negative")
        self.max_size = max_size
        self.per_priority = dict(per_priority or {})
        self._heap: list[tuple[int, int, Call]] = []
        self._order = itertools.count()
        self._counts: dict[int, int] = {}
        self._latest: dict[str, Call] = {}
        #: Coalesced inputs replaced by a newer one before they could leave.
        self.coalesced = 0

    def __len__(self) -> int:
        return len(self._heap) + len(self._latest)

    def put(self, call: Call) -> None:
        """Queue a call; raises :class:`QueueFull` when a bound is reached."""
        if call.is_notification and call.method in COALESCED_METHODS:
            if call.method in self._latest:
                self.coalesced += 1
            self._latest[call.method] = call
            return
        if len(self._heap) >= self.max_size:
            raise QueueFull(
                f"outbound queue full ({self.max_size} waiting): {call.method} refused"
            )
        limit = self.per_priority.get(call.priority)
        held = self._counts.get(call.priority, 0)
        if limit is not None and held >= limit:
            raise QueueFull(
                f"outbound queue full for priority {call.priority} "
                f"({limit} waiting): {call.method} refused"
            )
        self._push(call)

    def put_back(self, call: Call) -> None:
        """Queue again a request lost with its connection, ahead of newer ones.

        It was accepted once, so no bound refuses it; the negative order
        key puts it before everything queued since at its priority.
        """
        self._counts[call.priority] = self._counts.get(call.priority, 0) + 1
        heapq.heappush(self._heap, (call.priority, -next(self._order), call))

    def _push(self, call: Call) -> None:
        self._counts[call.priority] = self._counts.get(call.priority, 0) + 1
        heapq.heappush(self._heap, (call.priority, next(self._order), call))

    def drain(self) -> list[Call]:
        """Everything queued, in the order to send it; the queue is left empty."""
        out = []
        while self._heap:
            _, _, call = heapq.heappop(self._heap)
            out.append(call)
        self._counts.clear()
        out.extend(self._latest.values())
        self._latest.clear()
        return out

    def remove(self, call: Call) -> bool:
        """Take one call out (its timeout expired); False if it is not here."""
        for index, (_, _, held) in enumerate(self._heap):
            if held is call:
                self._heap.pop(index)
                heapq.heapify(self._heap)
                self._counts[call.priority] -= 1
                return True
        for method, held in list(self._latest.items()):
            if held is call:
                del self._latest[method]
                return True
        return False

    def calls(self) -> list[Call]:
        """What is queued, in no particular order (for timeouts and closing)."""
        return [call for _, _, call in self._heap] + list(self._latest.values())
