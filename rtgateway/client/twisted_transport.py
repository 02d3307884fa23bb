"""The client on Twisted: Autobahn's Twisted WebSocket client, Deferreds.

Every call returns a Deferred, so ``async def`` code uses the client
through ``ensureDeferred``/``Deferred.fromCoroutine`` and ``await``. The
reactor is injected (``IReactorTime`` and ``IReactorTCP``/``IReactorSSL``);
its ``seconds()`` is the core's clock.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.python.failure import Failure

from rtgateway.client.actions import ConnectionState
from rtgateway.client.calls import Call
from rtgateway.client.facade import ClientBase, TokenProvider
from rtgateway.client.options import ClientOptions

_STATUS_LINE = re.compile(r"^HTTP/1\.[01] (\d{3})")


def upgrade_status(status_line: str | None) -> int | None:
    """The HTTP status of a refused upgrade, from Autobahn's status line."""
    match = _STATUS_LINE.match(status_line or "")
    return int(match.group(1)) if match else None


class _Protocol(WebSocketClientProtocol):
    """Hands everything to the client that owns this connection's factory."""

    def onOpen(self) -> None:
        self._opened = True
        self.factory.client._protocol_opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.client._protocol_message(self, payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if getattr(self, "_opened", False):
            self.factory.client._protocol_closed(self, code, reason)
        else:
            status = upgrade_status(getattr(self, "http_status_line", None))
            self.factory.client._protocol_failed(self, status, reason or "")


class _Factory(WebSocketClientFactory):
    protocol = _Protocol
    #: The client this connection attempt belongs to, set before connecting.
    client: TwistedClient

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.client._tcp_failed(self, reason.getErrorMessage())


class TwistedClient(ClientBase):
    """The rtgateway client on a Twisted reactor."""

    def __init__(
        self,
        urls: str | list[str],
        token: TokenProvider | str,
        options: ClientOptions | None = None,
        *,
        reactor: Any = None,
        **kwargs: Any,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self._reactor = reactor
        self._timer: Any = None
        self._factory: _Factory | None = None
        self._connector: Any = None
        self._ws: _Protocol | None = None
        self._started: Deferred | None = None
        self._closed: Deferred[ConnectionState] = Deferred()
        super().__init__(urls, token, options, **kwargs)

    # -- the application's part -------------------------------------------------------

    def start(self) -> Deferred:
        """Connect; fires once the session is open (fails if it closes first)."""
        if self._started is None:
            self._started = Deferred()
            self.core.start(self._now())
            self._pump()
        return self._started

    def close(self) -> Deferred:
        """End the session and the connection; fires with the final state."""
        self.core.close(self._now())
        self._pump()
        return self.when_closed()

    def abort(self) -> None:
        if self._ws is not None:
            self._ws.dropConnection(abort=True)

    def when_closed(self) -> Deferred:
        """Fires with the final :class:`ConnectionState` once closed for good."""
        d: Deferred[ConnectionState] = Deferred()

        def relay(result: ConnectionState | Failure) -> ConnectionState | Failure:
            d.callback(result)
            return result

        self._closed.addBoth(relay)
        return d

    # -- the transport's part ---------------------------------------------------------

    def _now(self) -> float:
        return self._reactor.seconds()

    def _set_timer(self, at: float | None) -> None:
        if self._timer is not None and self._timer.active():
            if at is not None and self._timer.getTime() == at:
                return
            self._timer.cancel()
        self._timer = None
        if at is not None:
            delay = max(0.0, at - self._now())
            self._timer = self._reactor.callLater(delay, self._timer_fired)

    def _open(self, url: str) -> None:
        d = maybeDeferred(self._token_provider)
        d.addCallback(_awaited)
        d.addCallback(lambda token: self._connect(url, token))
        d.addErrback(self._token_failed)

    def _token_failed(self, failure: Failure) -> None:
        self._open_failed(_error(failure))

    def _connect(self, url: str, token: str) -> None:
        parts = urlsplit(url)
        host = parts.hostname
        if not host:
            raise ValueError(f"no host in {url!r}")
        factory = _Factory(
            url,
            protocols=self.options.subprotocols,
            headers={"Authorization": f"Bearer {token}"},
            reactor=self._reactor,
        )
        factory.setProtocolOptions(
            openHandshakeTimeout=self.options.connect_timeout_s,
            closeHandshakeTimeout=5,
        )
        factory.client = self
        self._factory = factory
        self._ws = None
        timeout = self.options.connect_timeout_s
        if parts.scheme == "wss":
            from twisted.internet.ssl import optionsForClientTLS

            tls = optionsForClientTLS(host)
            self._connector = self._reactor.connectSSL(
                host, parts.port or 443, factory, tls, timeout=timeout
            )
        else:
            self._connector = self._reactor.connectTCP(
                host, parts.port or 80, factory, timeout=timeout
            )

    def _send(self, data: bytes, binary: bool) -> None:
        if self._ws is not None:
            self._ws.sendMessage(data, binary)

    def _close_ws(self, code: int, reason: str) -> None:
        if self._ws is not None:
            self._ws.sendClose(code, reason)
        elif self._factory is not None:
            # A connect in progress: stop it; what it reports is ignored.
            self._factory = None
            self._connector.disconnect()
            self._ws_failed(None, reason)

    def _refresh_token(self) -> None:
        d = maybeDeferred(self._token_provider)
        d.addCallback(_awaited)
        d.addCallbacks(self._refresh_with, self._refresh_token_failed)

    def _refresh_token_failed(self, failure: Failure) -> None:
        self._refresh_failed(_error(failure))

    def _wrap(self, call: Call) -> Deferred:
        d: Deferred = Deferred()

        def settled(done: Call) -> None:
            if done.error is not None:
                d.errback(Failure(done.error))
            else:
                d.callback(done.result)

        call.add_done_callback(settled)
        return d

    def _state_changed(self, change: ConnectionState) -> None:
        if change.state == "open" and self._started and not self._started.called:
            self._started.callback(change)
        elif change.state == "closed":
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            if self._started is not None and not self._started.called:
                self._started.errback(
                    Failure(ConnectionError(f"closed: {change.code} {change.reason}"))
                )
            if not self._closed.called:
                self._closed.callback(change)

    # -- Autobahn's reports, for the current connection only --------------------------

    def _protocol_opened(self, protocol: _Protocol) -> None:
        if protocol.factory is self._factory:
            self._ws = protocol
            self._ws_opened(protocol.websocket_protocol_in_use)
        else:
            protocol.dropConnection(abort=True)

    def _protocol_message(self, protocol: _Protocol, payload: bytes) -> None:
        if protocol is self._ws:
            self._ws_message(payload)

    def _protocol_closed(self, protocol: _Protocol, code: Any, reason: Any) -> None:
        if protocol is self._ws:
            self._ws = None
            self._factory = None
            self._ws_closed(code, reason)

    def _protocol_failed(self, protocol: _Protocol, status: Any, reason: str) -> None:
        if protocol.factory is self._factory:
            self._factory = None
            self._ws_failed(status, reason)

    def _tcp_failed(self, factory: _Factory, reason: str) -> None:
        if factory is self._factory:
            self._factory = None
            self._ws_failed(None, reason)


def _error(failure: Failure) -> BaseException:
    """The exception a Failure carries (one made of its message if none)."""
    if failure.value is not None:
        return failure.value
    return RuntimeError(failure.getErrorMessage())


def _awaited(token: Any) -> Any:
    """A coroutine's result as a Deferred; a string or Deferred as it is."""
    if hasattr(token, "__await__") and not isinstance(token, Deferred):
        return ensureDeferred(token)
    return token
