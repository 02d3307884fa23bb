"""The client on asyncio, with the ``websockets`` library.

Why not Autobahn's asyncio flavour: Autobahn's timers and loggers go
through txaio, whose framework choice is global to the process, and
importing ``autobahn.asyncio`` switches it to asyncio; a program (or a test
run) that also uses the Twisted client, or Autobahn on Twisted, would have
its handshake and close timers scheduled on the wrong loop. ``websockets``
has no such global state, is the asyncio library most applications already
have, and does the same job: RFC 6455, permessage-deflate, subprotocols,
headers, and the HTTP status of a refused upgrade. It comes with the
``asyncio`` extra (``pip install rtgateway[asyncio]``).

Every call returns an asyncio future; the loop's ``time()`` is the core's
clock. Frames leave through one writer task, in the order the core asked.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from rtgateway.client.actions import ConnectionState
from rtgateway.client.calls import Call
from rtgateway.client.facade import ClientBase, TokenProvider
from rtgateway.client.options import ClientOptions

log = logging.getLogger("rtgateway.client")


class AsyncioClient(ClientBase):
    """The rtgateway client on an asyncio event loop."""

    def __init__(
        self,
        urls: str | list[str],
        token: TokenProvider | str,
        options: ClientOptions | None = None,
        **kwargs: Any,
    ) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._ws: ClientConnection | None = None
        self._connection: asyncio.Task | None = None
        self._outgoing: asyncio.Queue | None = None
        self._started: asyncio.Future | None = None
        self._closed: asyncio.Future | None = None
        self._tasks: set[asyncio.Task] = set()
        super().__init__(urls, token, options, **kwargs)

    # -- the application's part -------------------------------------------------------

    async def start(self) -> ConnectionState:
        """Connect; returns once the session is open (raises if it closes first)."""
        if self._started is None:
            self._loop = asyncio.get_running_loop()
            self._started = self._loop.create_future()
            self._closed = self._loop.create_future()
            self.core.start(self._now())
            self._pump()
        return await asyncio.shield(self._started)

    async def close(self) -> ConnectionState:
        """End the session and the connection; returns the final state."""
        self.core.close(self._now())
        self._pump()
        return await self.when_closed()

    def abort(self) -> None:
        if self._ws is not None:
            self._ws.transport.abort()

    async def when_closed(self) -> ConnectionState:
        """The final :class:`ConnectionState`, once closed for good."""
        assert self._closed is not None, "start() first"
        return await asyncio.shield(self._closed)

    # -- the transport's part ---------------------------------------------------------

    def _now(self) -> float:
        return (self._loop or asyncio.get_event_loop()).time()

    def _set_timer(self, at: float | None) -> None:
        if self._timer is not None:
            if at is not None and self._timer.when() == at:
                return
            self._timer.cancel()
        self._timer = None
        if at is not None and self._loop is not None:
            self._timer = self._loop.call_at(at, self._timer_fired)

    def _open(self, url: str) -> None:
        self._connection = self._spawn(self._run(url))

    def _spawn(self, coroutine: Any) -> asyncio.Task:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self, url: str) -> None:
        """One connection: token, upgrade, then frames until it closes."""
        task = asyncio.current_task()
        try:
            token = await _awaited(self._token_provider())
        except Exception as error:
            self._open_failed(error)
            return
        try:
            ws = await connect(
                url,
                additional_headers={"Authorization": f"Bearer {token}"},
                subprotocols=[Subprotocol(p) for p in self.options.subprotocols],
                open_timeout=self.options.connect_timeout_s,
                close_timeout=5,
                max_size=None,
                ping_interval=None,
            )
        except InvalidStatus as refused:
            if task is self._connection:
                self._ws_failed(refused.response.status_code, str(refused))
            return
        except Exception as error:
            # Refused, reset, timed out, or an answer that is not HTTP
            # (InvalidMessage, InvalidHandshake): no WebSocket either way.
            if task is self._connection:
                self._ws_failed(None, str(error) or type(error).__name__)
            return
        if task is not self._connection:
            await ws.close()
            return
        self._ws = ws
        self._outgoing = asyncio.Queue()
        writer = self._spawn(self._write(ws, self._outgoing))
        self._ws_opened(ws.subprotocol)
        close = None
        try:
            while True:
                data = await ws.recv(decode=False)
                self._ws_message(data)
        except ConnectionClosed as closed:
            close = closed.rcvd
        finally:
            writer.cancel()
            if self._ws is ws:
                self._ws = None
                self._connection = None
                if close is None:
                    self._ws_closed(1006, "connection lost")
                else:
                    self._ws_closed(close.code, close.reason)

    async def _write(self, ws: ClientConnection, outgoing: asyncio.Queue) -> None:
        while True:
            kind, first, second = await outgoing.get()
            try:
                if kind == "close":
                    await ws.close(first, second)
                    return
                await ws.send(first, text=not second)
            except ConnectionClosed:
                return

    def _send(self, data: bytes, binary: bool) -> None:
        if self._ws is not None and self._outgoing is not None:
            self._outgoing.put_nowait(("send", data, binary))

    def _close_ws(self, code: int, reason: str) -> None:
        if self._ws is not None and self._outgoing is not None:
            self._outgoing.put_nowait(("close", code, reason))
            return
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.cancel()
            self._ws_failed(None, reason)

    def _refresh_token(self) -> None:
        self._spawn(self._refresh())

    async def _refresh(self) -> None:
        try:
            token = await _awaited(self._token_provider())
        except Exception as error:
            self._refresh_failed(error)
            return
        self._refresh_with(token)

    def _wrap(self, call: Call) -> asyncio.Future:
        assert self._loop is not None, "start() first"
        future = self._loop.create_future()

        def settled(done: Call) -> None:
            if future.done():
                return
            if done.error is not None:
                future.set_exception(done.error)
            else:
                future.set_result(done.result)

        call.add_done_callback(settled)
        return future

    def _state_changed(self, change: ConnectionState) -> None:
        started, closed = self._started, self._closed
        if change.state == "open" and started is not None and not started.done():
            started.set_result(change)
        elif change.state == "closed":
            if self._timer is not None:
                self._timer.cancel()
            if started is not None and not started.done():
                started.set_exception(
                    ConnectionError(f"closed: {change.code} {change.reason}")
                )
            if closed is not None and not closed.done():
                closed.set_result(change)


async def _awaited(token: Any) -> Any:
    return await token if inspect.isawaitable(token) else token
