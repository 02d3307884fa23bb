"""The load generator's WebSocket client: websockets' sans-io engine on asyncio.

Chosen because it costs the least CPU per message of the clients measured
here (docs/benchmarks.rst has the figures): websockets' handshake and C
masking, driven straight from ``asyncio.Protocol`` callbacks, without the
futures and queues its high-level API spends on every message. After the
handshake the server's frames are parsed here rather than by websockets'
generator-based parser, which was a third of the client's time per message
received. On two shared cores every microsecond the client spends is one
the server under test does not get.

A :class:`ClientConnection` opens one authenticated connection, answers
pings (websockets' engine queues the pong; :meth:`_flush` sends it) and can
keep a window of ``sys.ping`` requests outstanding, timing each round trip.
For the other workloads (:mod:`bench.workloads`) it also makes JSON-RPC
calls (:meth:`ClientConnection.call`, answered by ``id``) and hands every
other message, decoded, to an ``on_event`` callback with its arrival time
(``time.time()``, comparable across processes of this machine).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cbor2
import orjson
from websockets.client import ClientProtocol
from websockets.http11 import Response
from websockets.speedups import apply_mask
from websockets.uri import parse_uri

#: Longest HTTP response head accepted before the frames start.
MAX_RESPONSE_HEAD = 65536


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

    def __init__(
        self, stop_at: float, max_messages: int, method: str = "sys.ping"
    ) -> None:
        self.stop_at = stop_at
        self.max_messages = max_messages
        #: What is called: ``sys.ping``, or a routed procedure whose callee
        #: answers in the order it was called (responses are matched by
        #: position).
        self.method = method
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
        #: The ``session.welcome`` document (None for the baseline).
        self.welcome: Any = None
        #: Called with (document, time.time()) for every message that is not
        #: the answer to a :meth:`call`; set by a workload.
        self.on_event: Callable[[Any, float], None] | None = None
        #: Called first with every message's payload, undecoded; True means
        #: it was handled (a workload that only measures what it receives
        #: need not decode it).
        self.on_payload: Callable[[bytes], bool] | None = None
        self._calls: dict[int, asyncio.Future[Any]] = {}
        #: When (``time.time()``) the last answer to a :meth:`call` arrived:
        #: earlier than its future's waiter wakes up.
        self.replied_at = 0.0
        #: The code of the server's close frame, if one came.
        self.close_code: int | None = None
        #: The HTTP response as it arrives; None once the frames start.
        self._head: bytearray | None = bytearray()
        self._pending = b""
        self._fragments: list[bytes] | None = None

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        request = self._ws.connect()
        if self._token is not None:
            request.headers["Authorization"] = f"Bearer {self._token}"
        self._ws.send_request(request)
        self._flush()

    def data_received(self, data: bytes) -> None:
        if self._head is None:
            self._frames(data)
        else:
            self._handshake_data(data)
        self._flush()

    def _handshake_data(self, data: bytes) -> None:
        """Bytes of the HTTP response: only they go through websockets.

        The response ends at the first blank line; what follows is frames,
        for :meth:`_frames`. A status other than 101 fails the connection
        here (websockets would wait for the body of the refusal).
        """
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_RESPONSE_HEAD:
                self._resolve_opened("response head too long")
                self.abort()
            return
        head, rest = bytes(self._head[: end + 4]), bytes(self._head[end + 4 :])
        self._head = None
        status = head.split(b" ", 2)[1:2]
        if status != [b"101"]:
            code = status[0].decode(errors="replace") if status else "?"
            self._resolve_opened(f"HTTP {code}")
            self.abort()
            return
        self._ws.receive_data(head)
        for event in self._ws.events_received():
            if isinstance(event, Response):
                self._handshake_done(event)
        if rest:
            self._frames(rest)

    def _frames(self, data: bytes) -> None:
        """Parse the server's frames (never masked) and act on each.

        websockets' own parser, a generator per connection, cost a third of
        this client's time per message; the server's frames are simple
        enough to read here: data frames (reassembled when fragmented),
        pings (answered through websockets, which masks the pong), a close
        (the connection is dropped: the load has no use for the rest).
        """
        if self._pending:
            data = self._pending + data
        size = len(data)
        position = 0
        while size - position >= 2:
            first, length = data[position], data[position + 1] & 0x7F
            start = position + 2
            if length == 126:
                if size - position < 4:
                    break
                length = int.from_bytes(data[start : start + 2], "big")
                start += 2
            elif length == 127:
                if size - position < 10:
                    break
                length = int.from_bytes(data[start : start + 8], "big")
                start += 8
            end = start + length
            if end > size:
                break
            position = end
            opcode = first & 0x0F
            if opcode == 1 or opcode == 2:  # text, binary
                if first & 0x80:
                    self._message(data[start:end], True)
                else:
                    self._fragments = [data[start:end]]
            elif opcode == 0 and self._fragments is not None:  # continuation
                self._fragments.append(data[start:end])
                if first & 0x80:
                    message, self._fragments = b"".join(self._fragments), None
                    self._message(message, True)
            elif opcode == 9:  # ping
                self.pings += 1
                self._ws.send_pong(data[start:end])
            elif opcode == 8:  # close
                if length >= 2:
                    self.close_code = int.from_bytes(data[start : start + 2], "big")
                self.abort()
                return
        self._pending = data[position:] if position < size else b""

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._resolve_opened("connection lost before it was usable")
        calls, self._calls = self._calls, {}
        for future in calls.values():
            if not future.done():
                future.set_exception(ConnectionError("connection lost"))
        if self._outstanding and self._pinging is not None:
            self._pinging.errors += len(self._outstanding)
            self._outstanding.clear()

    # -- workload --------------------------------------------------------------

    def start_pinging(self, pinging: Pinging, window: int) -> None:
        """Keep ``window`` requests outstanding until ``pinging`` stops."""
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

    def send(self, document: Any) -> None:
        """Encode and send one message now."""
        if self._transport is None:
            return
        payload = self._encoding.encode(document)
        if self._encoding.binary:
            self._ws.send_binary(payload)
        else:
            self._ws.send_text(payload)
        self._flush()

    def send_encoded(self, payload: bytes) -> None:
        """Send one message already encoded, framed here rather than by
        websockets (a text frame in JSON, binary in CBOR): the cheapest
        send, for workloads that send many small messages."""
        transport = self._transport
        if transport is None or self._head is not None:
            return
        first = 0x82 if self._encoding.binary else 0x81
        length = len(payload)
        if length < 126:
            header = bytes((first, 0x80 | length))
        elif length < 65536:
            header = bytes((first, 0xFE)) + length.to_bytes(2, "big")
        else:
            header = bytes((first, 0xFF)) + length.to_bytes(8, "big")
        mask = random.randbytes(4)
        transport.write(header + mask + apply_mask(payload, mask))

    def call(self, method: str, params: Any) -> asyncio.Future[Any]:
        """Send a request; the future gets the response document (result or
        error), or an exception if the connection is lost first."""
        self._next_id += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._transport is None:
            future.set_exception(ConnectionError("connection closed"))
            return future
        self._calls[self._next_id] = future
        self.send(
            {"jsonrpc": "2.0", "method": method, "params": params, "id": self._next_id}
        )
        return future

    @property
    def open(self) -> bool:
        """True until the connection is lost."""
        return self._transport is not None

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
            if fin and self._token is not None:
                try:
                    self.welcome = self._encoding.decode(payload)
                except ValueError:
                    self.welcome = None
            self._resolve_opened(None if fin else "fragmented welcome")
            return
        if self.on_payload is not None and self.on_payload(payload):
            return
        pinging = self._pinging
        if pinging is None:
            self._dispatch(payload)
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

    def _dispatch(self, payload: bytes) -> None:
        """A response to :meth:`call` resolves its future; the rest goes to
        ``on_event``."""
        now = time.time()
        try:
            document = self._encoding.decode(payload)
        except ValueError:
            document = None
        if type(document) is dict and "method" not in document and self._calls:
            future = self._calls.pop(document.get("id"), None)  # type: ignore[arg-type]
            if future is not None:
                self.replied_at = now
                if not future.done():
                    future.set_result(document)
                return
        if self.on_event is not None:
            self.on_event(document, now)

    def _send_ping(self) -> None:
        self._next_id += 1
        request = self._encoding.encode(
            {
                "jsonrpc": "2.0",
                "method": self._pinging.method,
                "params": {},
                "id": self._next_id,
            }
        )
        if self._encoding.binary:
            self._ws.send_binary(request)
        else:
            self._ws.send_text(request)
        self._outstanding.append((self._next_id, time.monotonic()))
        self._pinging.sent += 1

    def _flush(self) -> None:
        # ``writes`` is where websockets queues outgoing bytes: most calls
        # here (after a message received) find nothing to send.
        if self._transport is None or not self._ws.writes:
            return
        for data in self._ws.data_to_send():
            if data:
                self._transport.write(data)
            else:
                self._transport.close()

    def _resolve_opened(self, error: str | None) -> None:
        if not self._opened.done():
            self._opened.set_result(error)
