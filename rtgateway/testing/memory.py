"""A test kit: configurations, tokens, and a gateway with clients in memory.

:class:`MemoryGateway` runs the real service tree (router, components,
factory, upgrade resource, HTTP site) on a ``task.Clock``, and connects real
Autobahn WebSocket clients to it over ``twisted.test.iosim`` transports, so
tests of timers (heartbeats, idle, rate limits, resume windows) advance time
instead of sleeping, and no socket is opened.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, IOPump, connect

from rtgateway.backends.memory import MemoryBackends, MemoryHub
from rtgateway.config import Config, parse_config
from rtgateway.tokens import mint_token
from rtgateway.wire.codecs import CODECS, JSON

#: HS256 needs at least 32 bytes; this one is only ever used by tests.
TEST_SECRET = "rtgateway-test-secret-0123456789abcdef"


def make_config(overrides: dict[str, dict[str, Any]] | None = None) -> Config:
    """A checked configuration for tests; ``overrides`` maps section -> keys."""
    data: dict[str, dict[str, Any]] = {
        "gateway": {"id": "gw-test", "listen": "tcp:port=0:interface=127.0.0.1"},
        "auth": {"secret": TEST_SECRET},
    }
    for section, keys in (overrides or {}).items():
        data.setdefault(section, {}).update(copy.deepcopy(keys))
    return parse_config(data, source="<test>", base_dir=Path.cwd(), environ={})


def token_for(config: Config, sub: str, **kwargs: Any) -> str:
    """A valid token for player ``sub`` under ``config``."""
    return mint_token(config.auth, sub, **kwargs)


class RecordingClient(WebSocketClientProtocol):
    """An Autobahn client that keeps what it receives, decoded."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[Any] = []
        self.pings = 0
        self.opened = False
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed = False
        self.answer_pings = True
        self.raw = b""

    def dataReceived(self, data: bytes) -> None:
        if not self.opened:
            self.raw += data
        super().dataReceived(data)

    @property
    def http_status(self) -> int | None:
        """The HTTP status of the handshake response, once it arrived."""
        if not self.raw.startswith(b"HTTP/1.1 "):
            return None
        return int(self.raw[9:12])

    @property
    def http_body(self) -> bytes:
        """The body of a refused handshake."""
        return self.raw.partition(b"\r\n\r\n")[2]

    def onOpen(self) -> None:
        self.opened = True

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        codec = CODECS.get(self.websocket_protocol_in_use or "", JSON)
        self.received.append(codec.decode(payload))

    def onPing(self, payload: bytes) -> None:
        self.pings += 1
        if self.answer_pings:
            self.sendPong(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closed = True
        self.close_code = code
        self.close_reason = reason

    def notifications(self, method: str | None = None) -> list[dict[str, Any]]:
        """Notifications received so far (of one method, if given)."""
        return [
            m
            for m in self.received
            if isinstance(m, dict)
            and "id" not in m
            and (method is None or m.get("method") == method)
        ]

    def send(self, document: Any) -> None:
        """Encode ``document`` with the negotiated codec and send it."""
        codec = CODECS.get(self.websocket_protocol_in_use or "", JSON)
        self.sendMessage(codec.encode(document), codec.BINARY)


class MemoryGateway:
    """The gateway's service tree on a Clock, reachable through :meth:`connect`."""

    def __init__(
        self,
        config: Config | None = None,
        clock: Clock | None = None,
        hub: MemoryHub | None = None,
    ) -> None:
        from rtgateway.app import Gateway

        self.config = config or make_config()
        self.clock = clock or Clock()
        backends = MemoryBackends(self.clock, hub)
        self.gateway = Gateway(self.config, self.clock, listen=False, backends=backends)
        self.gateway.startService()
        self.pumps: list[IOPump] = []
        self._ids = 0

    def stop(self) -> None:
        self.gateway.stopService()

    def connect(
        self,
        sub: str | None = "alice",
        *,
        token: str | None = None,
        protocols: list[str] | None = None,
        headers: dict[str, str] | None = None,
        query: str = "",
        host: str = "127.0.0.1",
    ) -> RecordingClient:
        """Open a client connection; :meth:`flush` completes the handshake.

        ``token`` defaults to a fresh one for ``sub``, sent as a Bearer
        header; pass ``sub=None`` and no token for an anonymous attempt.
        """
        if token is None and sub is not None:
            token = self.token(sub)
        headers = dict(headers or {})
        if token is not None:
            headers.setdefault("Authorization", f"Bearer {token}")
        url = f"ws://127.0.0.1:8080{self.config.gateway.path}{query}"
        factory = WebSocketClientFactory(
            url, protocols=protocols or [], headers=headers
        )
        factory.protocol = RecordingClient
        factory.setProtocolOptions(failByDrop=False, autoPingInterval=0)
        client = factory.buildProtocol(None)
        assert isinstance(client, RecordingClient)
        server = self.gateway.site.buildProtocol(None)
        server_transport = FakeTransport(
            server, isServer=True, peerAddress=IPv4Address("TCP", host, 40000)
        )
        client_transport = FakeTransport(client, isServer=False)
        pump = connect(
            server, server_transport, client, client_transport, clock=self.clock
        )
        self.pumps.append(pump)
        return client

    @staticmethod
    def result_of(d: Any) -> Any:
        """The result of an already fired Deferred (memory backends fire at once)."""
        results: list[Any] = []
        d.addBoth(results.append)
        if not results:
            raise AssertionError(f"{d!r} has not fired")
        if isinstance(results[0], Failure):
            results[0].raiseException()
        return results[0]

    def token(self, sub: str, **kwargs: Any) -> str:
        """A token for ``sub`` valid on this gateway's clock."""
        kwargs.setdefault("now", self.clock.seconds())
        return token_for(self.config, sub, **kwargs)

    def open(self, sub: str | None = "alice", **kwargs: Any) -> RecordingClient:
        """:meth:`connect` and complete the handshake and welcome."""
        client = self.connect(sub, **kwargs)
        self.flush()
        return client

    def call(
        self, client: RecordingClient, method: str, params: Any = None
    ) -> dict[str, Any]:
        """Send a request and return the response to it (not its result)."""
        self._ids += 1
        request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": self._ids}
        if params is not None:
            request["params"] = params
        client.send(request)
        self.flush()
        for message in client.received:
            if (
                isinstance(message, dict)
                and message.get("id") == self._ids
                and ("result" in message or "error" in message)
            ):
                return message
        raise AssertionError(f"no response to {method}: {client.received[-5:]}")

    def drop(self, client: RecordingClient) -> None:
        """Cut a client's connection without a closing handshake."""
        transport = client.transport
        assert isinstance(transport, FakeTransport)
        transport.abortConnection()
        self.flush()

    def flush(self) -> None:
        """Move every pending byte between every client and the gateway.

        Frames waiting for the reactor's next turn are sent first, as
        that turn would (see :mod:`rtgateway.gateway.outbox`).
        """
        factory = self.gateway.factory
        outboxes = factory.outboxes
        moved = True
        while moved:
            if factory.read_budget.waiting:
                # A slow turn left input for the next one (a zero delay call,
                # which a real reactor runs on its next turn).
                self.clock.advance(0)
            moved = outboxes.pending or bool(factory.read_budget.waiting)
            outboxes.send_all()
            for pump in self.pumps:
                moved = pump.pump() or moved

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass, then deliver what that caused."""
        self.clock.advance(seconds)
        self.flush()
