"""What both transports share: the public client API over the core.

A transport subclass supplies the clock, one timer, opening and closing a
WebSocket, writing frames, and how a :class:`~rtgateway.client.calls.Call`
becomes an awaitable of its event loop (a Deferred, an asyncio future);
everything else, and every decision, is here and in the core.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from rtgateway.client.actions import (
    Abort,
    Connect,
    ConnectionState,
    Disconnect,
    RefreshToken,
    Send,
)
from rtgateway.client.calls import NORMAL, Call
from rtgateway.client.core import ClientCore, RequestHandler
from rtgateway.client.dispatch import Handler, LoggedFrame
from rtgateway.client.options import ClientOptions
from rtgateway.client.prediction import Apply, Predictor

log = logging.getLogger("rtgateway.client")

#: A callable giving a JWT: a string, or an awaitable (Deferred, coroutine).
TokenProvider = Callable[[], Any]


class ClientBase(ABC):
    """The client as applications use it; transports fill in the I/O."""

    def __init__(
        self,
        urls: str | list[str],
        token: TokenProvider | str,
        options: ClientOptions | None = None,
        **kwargs: Any,
    ) -> None:
        self.core = ClientCore(urls, options, **kwargs)
        self.options = self.core.options
        self._token_provider: TokenProvider = (
            (lambda: token) if isinstance(token, str) else token
        )
        self.core.on("client.state", self._state_changed)

    # -- the transport's part ---------------------------------------------------------

    @abstractmethod
    def _now(self) -> float: ...

    @abstractmethod
    def _set_timer(self, at: float | None) -> None: ...

    @abstractmethod
    def _open(self, url: str) -> None:
        """Ask for a token, then connect; report through the ``_ws_*`` methods."""
        ...

    @abstractmethod
    def _send(self, data: bytes, binary: bool) -> None: ...

    @abstractmethod
    def _close_ws(self, code: int, reason: str) -> None: ...

    @abstractmethod
    def abort(self) -> None:
        """Drop the connection without a closing handshake, as a network would.

        The client reconnects and resumes as after any drop: the core asks
        for it when pings go unanswered; tests call it, and so can a game
        that knows the network changed.
        """
        ...

    @abstractmethod
    def _refresh_token(self) -> None:
        """Ask the provider for a token and hand it to :meth:`_refresh_with`."""
        ...

    @abstractmethod
    def _wrap(self, call: Call) -> Any:
        """The event loop's awaitable for ``call``."""
        ...

    @abstractmethod
    def _state_changed(self, change: ConnectionState) -> None:
        """Transports settle their start and close awaitables here."""
        ...

    # -- driving the core -----------------------------------------------------------

    def _pump(self) -> None:
        """Carry out what the core asks for, then set the timer it needs."""
        for action in self.core.take_actions():
            if isinstance(action, Send):
                self._send(action.data, action.binary)
            elif isinstance(action, Connect):
                self._open(action.url)
            elif isinstance(action, Disconnect):
                self._close_ws(action.code, action.reason)
            elif isinstance(action, Abort):
                self.abort()
            elif isinstance(action, RefreshToken):
                self._refresh_token()
        self._set_timer(self.core.next_deadline())

    def _timer_fired(self) -> None:
        self.core.timer(self._now())
        self._pump()

    def _ws_opened(self, subprotocol: str | None) -> None:
        self.core.opened(self._now(), subprotocol)
        self._pump()

    def _ws_message(self, data: bytes) -> None:
        self.core.received(self._now(), data)
        self._pump()

    def _ws_closed(self, code: int | None, reason: str | None) -> None:
        self.core.closed(self._now(), 1006 if code is None else code, reason)
        self._pump()

    def _ws_failed(self, status: int | None, reason: str) -> None:
        self.core.connect_failed(self._now(), status, reason)
        self._pump()

    def _refresh_with(self, token: str) -> None:
        self.core.refresh(token, self._now())
        self._pump()

    def _open_failed(self, error: BaseException) -> None:
        """No connection was even attempted (the token provider failed)."""
        log.error("could not connect: %s", error)
        self._ws_failed(None, f"could not connect: {error}")

    def _refresh_failed(self, error: BaseException) -> None:
        """The connection stays; the gateway closes it 4001 at the token's expiry."""
        log.error("the token provider failed to refresh: %s", error)

    # -- the application's part -------------------------------------------------------

    def on(self, event_type: str, handler: Handler | None = None) -> Any:
        """Handle events of a type; without ``handler``, a decorator.

        ``client.state``: :class:`~rtgateway.client.core.ConnectionState`;
        ``client.lost``: ``(topic, reason)``; ``"*"``: every event; any
        other type: an :class:`~rtgateway.client.core.Event`.
        """
        return self.core.on(event_type, handler)

    def off(self, event_type: str, handler: Handler) -> None:
        self.core.off(event_type, handler)

    def serve(self, handler: RequestHandler | None) -> None:
        """Answer the gateway's requests (routed calls, for a service) with ``handler``.

        ``handler(request, reply)`` gets each request document and answers
        it, at once or later, with ``reply(response)``, which sends the
        response document and is True, or is False when the connection the
        request came on has closed since (the gateway failed that call).
        """
        if handler is None:
            self.core.serve(None)
            return

        def served(request: dict[str, Any], reply: Callable[..., bool]) -> None:
            def reply_now(response: dict[str, Any]) -> bool:
                sent = reply(response)
                self._pump()
                return sent

            handler(request, reply_now)

        self.core.serve(served)

    def call(
        self,
        method: str,
        params: Any = None,
        *,
        timeout: float | None = None,
        priority: int = NORMAL,
        idempotent: bool | None = None,
    ) -> Any:
        """Call ``method``; the awaitable fires with the result or a typed error."""
        call = self.core.call(
            method,
            params,
            self._now(),
            timeout=timeout,
            priority=priority,
            idempotent=idempotent,
        )
        return self._after(call)

    def notify(self, method: str, params: Any = None, *, priority: int = NORMAL):
        """Send a notification (no response); raises QueueFull if it cannot wait."""
        self.core.notify(method, params, self._now(), priority=priority)
        self._pump()

    def subscribe(self, topic: str) -> Any:
        return self._after(self.core.subscribe(topic, self._now()))

    def unsubscribe(self, topic: str) -> Any:
        return self._after(self.core.unsubscribe(topic, self._now()))

    def set_presence(self, **presence: Any) -> Any:
        return self._after(self.core.set_presence(presence, self._now()))

    def join(self, zone: str, fields: dict[str, Any] | None = None) -> Any:
        return self._after(self.core.join(zone, fields, self._now()))

    def leave(self) -> Any:
        """``state.leave``; the zone is no longer joined again on reconnects."""
        return self._after(self.core.leave(self._now()))

    def update(self, fields: dict[str, Any], input_seq: int | None = None) -> None:
        """A ``state.update`` input (coalesced while disconnected)."""
        self.core.update(fields, self._now(), input_seq)
        self._pump()

    def predict_with(self, apply: Apply) -> Predictor:
        return self.core.predict_with(apply)

    def input(self, command: Any) -> dict[str, Any]:
        """Apply a command locally and send it; returns the predicted fields."""
        fields = self.core.input(command, self._now())
        self._pump()
        return fields

    def validate_events(self) -> Any:
        """Fetch ``rpc.discover`` and check every event's data against it."""
        return self._after(self.core.validate_events(self._now()))

    def rendered(self) -> dict[str, dict[str, Any]]:
        """Other entities' fields, interpolated for this moment."""
        return self.core.view.rendered(self._now())

    @property
    def mirror(self) -> dict[str, tuple[int, dict[str, Any]]]:
        """The zone's entities as last received: ``{id: (version, fields)}``."""
        return self.core.view.mirror.entities

    @property
    def state(self) -> str:
        """The core's phase: idle, connecting, handshake, resuming, open, ..."""
        return self.core.phase

    def stats(self) -> dict[str, Any]:
        return self.core.stats(self._now())

    def event_log(self) -> list[LoggedFrame]:
        """The last frames in and out, oldest first."""
        return self.core.frames.frames()

    def _after(self, call: Call) -> Any:
        self._pump()
        return self._wrap(call)
