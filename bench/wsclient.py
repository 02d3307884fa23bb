"""The load generator's WebSocket client: websockets' sans-io engine on asyncio.

Chosen because it costs the least CPU per message of the clients measured
here (docs/benchmarks.rst has the figures): websockets' own frame parser
and C masking, driven straight from ``asyncio.Protocol`` callbacks, without
the futures and queues its high-level API spends on every message. On two
shared cores every microsecond the client spends is one the server under
test does not get.

A :class:`ClientConnection` opens one authenticated connection, answers
pings (websockets' engine queues the pong; :meth:`_flush` sends it) and can
keep a window of ``sys.ping`` requests outstanding, timing each round trip.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cbor2
import orjson
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri


@dataclass(frozen=True)
class Encoding:
    """One of the protocol's encodings, as the client sends and reads it."""

    name: str
    subprotocol: str
    binary: bool
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]


ENCODINGS = {
    "json": Encoding("json", "rtgw.v1.json", False, orjson.dumps, orjson.loads),
    "cbor": Encoding("cbor", "rtgw.v1.cbor", True, cbor2.dumps, cbor2.loads),
}


class Pinging:
    """Counters of one measured workload, shared by a process's connections.

    A response counts (``received``, with its latency) when it arrives before
    ``stop_at``; after that no new request is sent and the outstanding ones
    are only drained. ``answered`` counts every valid response, drained ones
    included: it is what the CPU time per message is divided by.
    """

    def __init__(self, stop_at: float, max_messages: int) -> None:
        self.stop_at = stop_at
        self.max_messages = max_messages
        self.sent = 0
        self.received = 0
        self.answered = 0
        self.errors = 0
        self.latencies: list[float] = []
        self.last_response = 0.0

    @property
    def sending(self) -> bool:
        """True while more requests may be sent (time and count bounds)."""
        return self.sent < self.max_messages and time.monotonic() < self.stop_at


class ClientConnection(asyncio.Protocol):
    """One client connection to the gateway or the baseline.

    ``token`` None means the baseline: no Authorization header, and no
    ``session.welcome`` to wait for. ``opened`` resolves with None once the
    connection is usable (after the welcome from the gateway, at the
    handshake from the baseline), or with an error string when the server
    refuses or drops the connection first.
    """

    def __init__(
        self,
        url: str,
        encoding: Encoding,
        token: str | None,
        opened: asyncio.Future[str | None],
    ) -> None:
        self._ws = ClientProtocol(parse_uri(url), subprotocols=[encoding.subprotocol])
        self._encoding = encoding
        self._token = token
        self._opened = opened
        self._transport: asyncio.Transport | None = None
        self._next_id = 0
        self._outstanding: deque[tuple[int, float]] = deque()
        self._pinging: Pinging | None = None
        self.pings = 0

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        request = self._ws.connect()
        if self._token is not None:
            request.headers["Authorization"] = f"Bearer {self._token}"
        self._ws.send_request(request)
        self._flush()

    def data_received(self, data: bytes) -> None:
        self._ws.receive_data(data)
        for event in self._ws.events_received():
            if isinstance(event, Response):
                self._handshake_done(event)
            elif event.opcode is Opcode.TEXT or event.opcode is Opcode.BINARY:
                self._message(event.data, event.fin)
            elif event.opcode is Opcode.PING:
                self.pings += 1
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._resolve_opened("connection lost before it was usable")
        if self._outstanding and self._pinging is not None:
            self._pinging.errors += len(self._outstanding)
            self._outstanding.clear()

    # -- workload --------------------------------------------------------------

    def start_pinging(self, pinging: Pinging, window: int) -> None:
        """Keep ``window`` sys.ping requests outstanding until ``pinging`` stops."""
        self._pinging = pinging
        for _ in range(window):
            if not pinging.sending:
                break
            self._send_ping()
        self._flush()

    @property
    def outstanding(self) -> int:
        """Requests sent and not answered yet."""
        return len(self._outstanding)

    def abort(self) -> None:
        """Drop the TCP connection (RST): no TIME_WAIT piles up between runs."""
        if self._transport is not None:
            self._transport.abort()

    # -- internals -------------------------------------------------------------

    def _handshake_done(self, response: Response) -> None:
        if self._ws.handshake_exc is not None:
            self._resolve_opened(f"HTTP {response.status_code}")
            self.abort()
        elif self._token is None:
            self._resolve_opened(None)

    def _message(self, payload: bytes, fin: bool) -> None:
        if not self._opened.done():
            self._resolve_opened(None if fin else "fragmented welcome")
            return
        pinging = self._pinging
        if pinging is None:
            return
        now = time.monotonic()
        if not (fin and self._outstanding):
            pinging.errors += 1
            return
        request_id, sent_at = self._outstanding.popleft()
        try:
            document = self._encoding.decode(payload)
        except ValueError:  # orjson's and cbor2's decode errors both are
            document = None
        # The gateway answers with a result; the baseline echoes the request.
        if (
            type(document) is not dict
            or document.get("id") != request_id
            or "error" in document
        ):
            pinging.errors += 1
        else:
            pinging.answered += 1
            if now <= pinging.stop_at:
                pinging.received += 1
                pinging.latencies.append(now - sent_at)
                pinging.last_response = now
        if pinging.sending:
            self._send_ping()

    def _send_ping(self) -> None:
        self._next_id += 1
        request = self._encoding.encode(
            {"jsonrpc": "2.0", "method": "sys.ping", "params": {}, "id": self._next_id}
        )
        if self._encoding.binary:
            self._ws.send_binary(request)
        else:
            self._ws.send_text(request)
        self._outstanding.append((self._next_id, time.monotonic()))
        self._pinging.sent += 1

    def _flush(self) -> None:
        if self._transport is None:
            return
        for data in self._ws.data_to_send():
            if data:
                self._transport.write(data)
            else:
                self._transport.close()

    def _resolve_opened(self, error: str | None) -> None:
        if not self._opened.done():
            self._opened.set_result(error)
