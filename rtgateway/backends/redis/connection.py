"""Connections to Redis: txredisapi's factory, told to report its state.

txredisapi keeps each connection of a pool alive with a ``ClientService``
(reconnecting with a jittered exponential backoff); this factory adds what
the backends need on top: a callback when a connection becomes usable or is
lost (for ``ready()``, failing fast and re-subscribing) and the settings that
keep payloads intact: ``charset=None`` so that replies stay bytes (bodies
are opaque; txredisapi would otherwise decode whatever happens to be UTF-8
and hand back a mix of ``str`` and ``bytes``) and ``convertNumbers=False``
so that a body like ``b"12"`` is not turned into an int. Replies are read
by :mod:`.resp`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import txredisapi
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.ssl import optionsForClientTLS
from twisted.logger import Logger

from rtgateway.backends.redis.resp import ReplyReaderProtocol
from rtgateway.backends.redis.target import RedisTarget

Listener = Callable[[Any], None]


def make_endpoint(
    reactor: Any, target: RedisTarget, timeout: float
) -> IStreamClientEndpoint:
    """A client endpoint for ``target``, with TLS (certificate checked) for rediss."""
    endpoint: IStreamClientEndpoint = HostnameEndpoint(
        reactor, target.host, target.port, timeout=timeout
    )
    if target.tls:
        endpoint = wrapClientTLS(optionsForClientTLS(target.host), endpoint)
    return endpoint


class ConnectionFactory(txredisapi.RedisFactory):
    """A lazy txredisapi pool that calls ``on_up``/``on_down`` with each protocol."""

    protocol = ReplyReaderProtocol
    log = Logger()
    # A restarted Redis is found within 5 s, not txredisapi's 10.
    initialDelay = 0.5
    maxDelay = 5.0

    def __init__(
        self,
        target: RedisTarget,
        poolsize: int,
        *,
        database: int | None,
        reply_timeout: float | None,
        on_up: Listener,
        on_down: Listener,
    ) -> None:
        super().__init__(
            f"{target.host}:{target.port}",
            database,
            poolsize,
            isLazy=True,
            charset=None,
            password=target.password,
            replyTimeout=reply_timeout,
            convertNumbers=False,
            username=target.username,
        )
        self._on_up = on_up
        self._on_down = on_down
        # Fails when Redis refuses the login or the database (txredisapi then
        # stops reconnecting: only a configuration change can help).
        self.deferred.addErrback(self._refused)

    def _refused(self, failure: Any) -> None:
        self.log.error("Redis refused the connection: {why}", why=failure.value)

    def addConnection(self, conn: Any) -> None:
        super().addConnection(conn)
        if conn in self.pool:  # txredisapi drops connections that died meanwhile
            self._on_up(conn)

    def delConnection(self, conn: Any) -> None:
        super().delConnection(conn)
        self._on_down(conn)
