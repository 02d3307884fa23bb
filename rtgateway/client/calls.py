"""One outgoing call and its outcome, without any event loop.

A :class:`Call` is what the core hands out for every request: it settles
once, with a result or an exception, and tells its callbacks. Transports
turn it into a Deferred or an asyncio future; the core never knows which.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: Methods that may be sent again after a lost connection: doing them twice
#: leaves the gateway as doing them once.
IDEMPOTENT_METHODS = frozenset(
    {
        "sys.ping",
        "presence.set",
        "state.sync",
        "pubsub.subscribe",
        "pubsub.unsubscribe",
    }
)

#: Priorities, smallest first out of the queue.
HIGH = 0
NORMAL = 1
LOW = 2


class Call:
    """A request (or a queued notification) and, once settled, its outcome."""

    __slots__ = (
        "_callbacks",
        "deadline",
        "error",
        "id",
        "idempotent",
        "method",
        "params",
        "priority",
        "result",
        "sent_at",
        "settled",
    )

    def __init__(
        self,
        method: str,
        params: Any,
        *,
        deadline: float | None,
        priority: int = NORMAL,
        idempotent: bool | None = None,
        notification: bool = False,
    ) -> None:
        self.method = method
        self.params = params
        self.deadline = deadline
        self.priority = priority
        self.idempotent = (
            method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        )
        #: None for a notification; set when the request is first written.
        self.id: int | None = None if notification else 0
        self.sent_at: float | None = None
        self.settled = False
        self.result: Any = None
        self.error: BaseException | None = None
        self._callbacks: list[Callable[[Call], None]] = []

    @property
    def is_notification(self) -> bool:
        return self.id is None

    def add_done_callback(self, callback: Callable[[Call], None]) -> None:
        """Call ``callback(call)`` once settled (at once if it already is)."""
        if self.settled:
            callback(self)
        else:
            self._callbacks.append(callback)

    def resolve(self, result: Any) -> None:
        self._settle(result, None)

    def fail(self, error: BaseException) -> None:
        self._settle(None, error)

    def _settle(self, result: Any, error: BaseException | None) -> None:
        if self.settled:
            return
        self.settled = True
        self.result = result
        self.error = error
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)

    def __repr__(self) -> str:
        return f"<Call {self.method} id={self.id} priority={self.priority}>"
