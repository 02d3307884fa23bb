"""The WebSocket factory: safe Autobahn options, connection caps, drain.

Autobahn's server defaults suit a trusted peer, not the internet: messages
and frames of any size, no pings, ``failByDrop`` (the peer would see 1006
instead of the close code the protocol promises). Every option is set here
from the configuration.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
from autobahn.twisted.websocket import WebSocketServerFactory
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
)
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.logger import Logger

from rtgateway.config import Config
from rtgateway.gateway.outbox import Outboxes
from rtgateway.gateway.protocol import GatewayProtocol
from rtgateway.gateway.readbudget import ReadBudget
from rtgateway.interfaces import ISessionManager
from rtgateway.metrics import GatewayMetrics
from rtgateway.routing.dispatch import Dispatcher
from rtgateway.wire import closecodes


class GatewayFactory(WebSocketServerFactory):
    """Builds :class:`GatewayProtocol` and keeps the books on connections."""

    # Twisted types a factory's protocol as one whose ``factory`` is a
    # ``Factory[Self]``; Autobahn's factories are not generic, so no protocol
    # of theirs that types its factory (ours: a ConnectionHost) can match.
    protocol: type[GatewayProtocol] = GatewayProtocol  # type: ignore[assignment]
    # Autobahn's own ``log`` (txaio, level-gated) must stay: it logs raw
    # handshakes and frames at debug level, which must never reach output.
    _log = Logger()
    noisy = False

    def __init__(
        self,
        *,
        config: Config,
        dispatcher: Dispatcher,
        sessions: ISessionManager,
        metrics: GatewayMetrics,
        clock: IReactorTime,
        reactor: Any,
        ready: Callable[[], bool] = lambda: True,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(server="rtgateway", reactor=reactor)
        self.config = config
        self.dispatcher = dispatcher
        self.sessions = sessions
        self.metrics = metrics
        self.clock = clock
        #: Connections' frames, sent once per turn of the reactor.
        self.outboxes = Outboxes(clock)
        #: Input processed per turn of the reactor, shared by connections.
        self.read_budget = ReadBudget(clock, config.limits.read_budget_ms / 1000)
        self._ready = ready
        self.connections: set[GatewayProtocol] = set()
        self._per_host: Counter[str] = Counter()
        self._reserved = 0
        self._ids = itertools.count(1)
        self._rng = rng or random.Random()
        self._drained: list[Deferred] = []
        self.draining = False
        limits = config.limits
        self.setProtocolOptions(
            maxFramePayloadSize=limits.max_message_bytes,
            maxMessagePayloadSize=limits.max_message_bytes,
            autoPingInterval=0,
            failByDrop=False,
            # The upgrade resource replays a complete handshake in one call,
            # so Autobahn's own timer for it would only be set and cancelled
            # (a txaio batched timer, whose cancel is a list.remove) for each
            # connection. The site's deadline on the request (build_site)
            # is the handshake timeout.
            openHandshakeTimeout=0,
            closeHandshakeTimeout=limits.close_timeout_s,
            tcpNoDelay=True,
            webStatus=False,
            perMessageCompressionAccept=self._accept_compression,
        )

    def setProtocolOptions(self, *args: Any, **options: Any) -> None:
        """Autobahn's; new connections then hold the options through their class.

        See :meth:`GatewayProtocol.with_options`.
        """
        super().setProtocolOptions(*args, **options)
        self.protocol = GatewayProtocol.with_options(self)

    def buildProtocol(self, addr: IAddress | None) -> GatewayProtocol:  # type: ignore[override]
        """Twisted's: a connection of the factory's class, knowing its host.

        (Its return type is Twisted's protocol type, which ours cannot match:
        see ``protocol`` above.)
        """
        protocol = self.protocol()
        protocol.factory = self
        return protocol

    # -- admission -----------------------------------------------------------

    def refusal(self, host: str) -> tuple[int, str] | None:
        """HTTP status and reason refusing one more connection from ``host``."""
        limits = self.config.limits
        if self.draining:
            return 503, "draining"
        if not self._ready():
            return 503, "backend_unavailable"
        if self._reserved >= limits.max_connections:
            return 503, "at_capacity"
        if self._per_host[host] >= limits.max_connections_per_ip:
            return 429, "too_many_connections_from_address"
        return None

    def reserve(self, protocol: GatewayProtocol, host: str) -> None:
        """Count a connection against the caps until it is lost."""
        self._reserved += 1
        self._per_host[host] += 1
        protocol.peer_host = host
        protocol.connection_id = f"c{next(self._ids)}"
        protocol._reserved = True

    def _release(self, protocol: GatewayProtocol) -> None:
        if not protocol._reserved:
            return
        protocol._reserved = False
        self._reserved -= 1
        host = protocol.peer_host
        self._per_host[host] -= 1
        if self._per_host[host] <= 0:
            del self._per_host[host]

    def _accept_compression(self, offers: list[Any]) -> Any:
        if not self.config.gateway.permessage_deflate:
            return None
        for offer in offers:
            if isinstance(offer, PerMessageDeflateOffer):
                return PerMessageDeflateOfferAccept(
                    offer, max_message_size=self.config.limits.max_message_bytes
                )
        return None

    # -- lifecycle -------------------------------------------------------------

    def connection_opened(self, protocol: GatewayProtocol) -> None:
        self.connections.add(protocol)
        self.metrics.connections.inc()
        self.metrics.connections_opened.inc()
        self._log.info(
            "connection {connection_id} opened: player {player_id} from {peer_host}",
            connection_id=protocol.connection_id,
            player_id=protocol.principal.player_id,
            peer_host=protocol.peer_host,
        )

    def connection_lost(self, protocol: GatewayProtocol) -> None:
        self._release(protocol)
        if protocol not in self.connections:
            return
        self.connections.discard(protocol)
        code = protocol.close_code()
        self.metrics.connections.dec()
        self.metrics.connections_closed.labels(str(code)).inc()
        self._log.info(
            "connection {connection_id} closed with {code}: player {player_id}",
            connection_id=protocol.connection_id,
            code=code,
            player_id=protocol.principal.player_id,
        )
        if protocol.session_id is not None:
            self.sessions.detach(protocol, code)
        if not self.connections:
            drained, self._drained = self._drained, []
            for d in drained:
                d.callback(None)

    @property
    def reserved(self) -> int:
        """Connections counted against the caps (handshaking or open)."""
        return self._reserved

    def drain(self, timeout: float) -> Deferred:
        """Close every connection 1001 and fire once all are gone.

        Each client is told to reconnect after its own random delay, so a
        deploy does not bring every player back in the same instant. What is
        still open after ``timeout`` seconds is dropped.
        """
        self.draining = True
        jitter = self.config.shutdown.reconnect_jitter_ms
        for protocol in list(self.connections):
            after_ms = self._rng.randint(0, jitter)
            reason = orjson.dumps({"reconnect": True, "after_ms": after_ms}).decode()
            protocol.close(closecodes.GOING_AWAY, reason)
        if not self.connections:
            return succeed(None)
        done: Deferred = Deferred()
        self._drained.append(done)
        timer = self.clock.callLater(timeout, self._abort_all)

        def stop_timer(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        return done.addBoth(stop_timer)

    def _abort_all(self) -> None:
        for protocol in list(self.connections):
            protocol.dropConnection(abort=True)
