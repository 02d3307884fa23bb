"""Calls in flight to callees, bounded and timed, so that none is left waiting.

Every routed call this gateway waits on is one :class:`PendingCall` in a
:class:`CallTable`: either a request sent to a local callee (keyed by the
id the gateway gave it) or a call sent over the bus to another gateway
(keyed by the id in the bus message). Each ends exactly once: with the
callee's answer, with -32006 when its timer runs out, or with -32005 when
its callee or the callee's gateway goes away. A table holds at most
``limit`` calls; beyond that new calls get -32005 at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from rtgateway.wire.errors import RTGatewayError, Timeout, Unavailable


class CalleeError(RTGatewayError):
    """A callee's error response, passed to the player exactly as it came."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(str(error.get("message")), error.get("data"))
        self.code = error["code"]
        self.error = error

    def to_error_object(self) -> dict[str, Any]:
        return self.error


@dataclass(slots=True, eq=False)
class PendingCall:
    """One call waiting for its answer; ``owner`` is who must answer it.

    ``owner`` is the callee's connection id for a local call and the callee
    gateway's id for a call sent over the bus.
    """

    owner: str
    procedure: str
    answer: Deferred
    timer: IDelayedCall


class CallTable:
    """Calls in flight by id, each with a deadline."""

    def __init__(self, clock: IReactorTime, limit: int) -> None:
        self._clock = clock
        self._limit = limit
        self._calls: dict[Any, PendingCall] = {}
        self._loads: dict[str, int] = {}  # calls in flight by owner

    def __len__(self) -> int:
        return len(self._calls)

    def add(
        self, call_id: Any, owner: str, procedure: str, timeout_s: float
    ) -> Deferred:
        """A Deferred of the answer; -32005 at once when the table is full."""
        if len(self._calls) >= self._limit:
            raise Unavailable("too many calls in flight; retry later")
        answer: Deferred = Deferred()
        timer = self._clock.callLater(timeout_s, self._expire, call_id)
        self._calls[call_id] = PendingCall(owner, procedure, answer, timer)
        self._loads[owner] = self._loads.get(owner, 0) + 1
        return answer

    def load(self, owner: str) -> int:
        """How many calls ``owner`` has yet to answer (the least-busy choice)."""
        return self._loads.get(owner, 0)

    def reassign(self, call_id: Any, owner: str) -> None:
        """The call is now ``owner``'s to answer (who took a call on NATS)."""
        call = self.get(call_id)
        if call is not None:
            self._unload(call.owner)
            call.owner = owner
            self._loads[owner] = self._loads.get(owner, 0) + 1

    def get(self, call_id: Any) -> PendingCall | None:
        """The call waiting under ``call_id``, if any (ids may be of any type)."""
        try:
            return self._calls.get(call_id)
        except TypeError:  # an unhashable id answers nothing
            return None

    def resolve(self, call_id: Any, result: Any) -> None:
        """End a call with its result."""
        call = self._pop(call_id)
        if call is not None:
            call.answer.callback(result)

    def fail(self, call_id: Any, error: RTGatewayError) -> None:
        """End a call with a protocol error."""
        call = self._pop(call_id)
        if call is not None:
            call.answer.errback(error)

    def fail_owner(self, owner: str, error: RTGatewayError, procedures=None) -> int:
        """Fail every call ``owner`` must answer (of ``procedures``, if given)."""
        ids = [
            call_id
            for call_id, call in self._calls.items()
            if call.owner == owner
            and (procedures is None or call.procedure in procedures)
        ]
        for call_id in ids:
            self.fail(call_id, error)
        return len(ids)

    def owners(self) -> dict[str, set[str]]:
        """``{owner: {procedure}}`` of the calls in flight."""
        found: dict[str, set[str]] = {}
        for call in self._calls.values():
            found.setdefault(call.owner, set()).add(call.procedure)
        return found

    def fail_all(self, error: RTGatewayError) -> None:
        """End every call (the gateway is stopping)."""
        for call_id in list(self._calls):
            self.fail(call_id, error)

    def _expire(self, call_id: Any) -> None:
        call = self._calls.pop(call_id, None)
        if call is not None:
            self._unload(call.owner)
            call.answer.errback(Timeout("the callee did not answer in time"))

    def _pop(self, call_id: Any) -> PendingCall | None:
        call = self._calls.pop(call_id, None)
        if call is not None:
            self._unload(call.owner)
            if call.timer.active():
                call.timer.cancel()
        return call

    def _unload(self, owner: str) -> None:
        left = self._loads[owner] - 1
        if left:
            self._loads[owner] = left
        else:
            del self._loads[owner]
