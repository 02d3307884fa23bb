"""Handlers by event type, and a log of the last frames in and out.

Handlers are plain callables registered per event type (``"chat.message"``)
or for every event (``"*"``). One that raises is logged with its traceback
and skipped: the other handlers of the event still run and the connection
stays up, since one buggy handler must not cost the player the game.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("rtgateway.client")

Handler = Callable[..., Any]
ANY = "*"


class Dispatcher:
    """Event type -> handlers, called in registration order."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self.handler_errors = 0

    def on(self, event_type: str, handler: Handler | None = None) -> Any:
        """Register ``handler`` for ``event_type``; without one, a decorator."""
        if handler is None:

            def decorate(function: Handler) -> Handler:
                self.on(event_type, function)
                return function

            return decorate
        self._handlers.setdefault(event_type, []).append(handler)
        return handler

    def off(self, event_type: str, handler: Handler) -> None:
        """Unregister a handler; nothing happens if it was not registered."""
        handlers = self._handlers.get(event_type, [])
        if handler in handlers:
            handlers.remove(handler)

    def has(self, event_type: str) -> bool:
        return bool(self._handlers.get(event_type))

    def emit(self, event_type: str, *args: Any) -> None:
        """Call every handler of ``event_type`` and of ``"*"``, each isolated."""
        handlers = list(self._handlers.get(event_type, ()))
        if event_type != ANY and not event_type.startswith("client."):
            handlers.extend(self._handlers.get(ANY, ()))
        for handler in handlers:
            try:
                handler(*args)
            except Exception:
                self.handler_errors += 1
                log.exception("handler %r for %s raised", handler, event_type)


@dataclass(frozen=True, slots=True)
class LoggedFrame:
    """One frame in the event log."""

    at: float
    direction: str  # "in" or "out"
    size: int
    message: Any


class FrameLog:
    """A ring buffer of the last ``size`` frames, and an optional trace.

    With ``trace`` set, every frame is also written to the
    ``rtgateway.client.trace`` logger at DEBUG, decoded, for debugging.
    """

    trace_log = logging.getLogger("rtgateway.client.trace")

    def __init__(self, size: int = 200, trace: bool = False) -> None:
        self._frames: deque[LoggedFrame] = deque(maxlen=size)
        self.trace = trace

    def record(self, at: float, direction: str, size: int, message: Any) -> None:
        self._frames.append(LoggedFrame(at, direction, size, message))
        if self.trace:
            self.trace_log.debug("%s %.3f %d %r", direction, at, size, message)

    def frames(self) -> list[LoggedFrame]:
        """The frames kept, oldest first."""
        return list(self._frames)
