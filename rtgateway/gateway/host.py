"""What a connection uses of the factory that built it.

:class:`~rtgateway.gateway.factory.GatewayFactory` builds connections and
keeps the books on them; a connection
(:class:`~rtgateway.gateway.protocol.GatewayProtocol`) reads its
configuration, clock, dispatcher, sessions, metrics, the shared outboxes
and read budget, prepares shared frames with it, and tells it when the
connection opens and when it is lost. :class:`ConnectionHost` names exactly
that, so the connection's module needs nothing of the factory's, which
imports it to build connections.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.interfaces import IReactorTime

from rtgateway.config import Config
from rtgateway.gateway.outbox import Outboxes
from rtgateway.gateway.readbudget import ReadBudget
from rtgateway.interfaces import ISessionManager
from rtgateway.metrics import GatewayMetrics
from rtgateway.routing.dispatch import Dispatcher


class ConnectionHost(Protocol):
    """The factory, as its connections see it (``protocol.factory``)."""

    config: Config
    clock: IReactorTime
    dispatcher: Dispatcher
    sessions: ISessionManager
    metrics: GatewayMetrics
    outboxes: Outboxes
    read_budget: ReadBudget

    def prepareMessage(
        self, payload: bytes, isBinary: bool = False, doNotCompress: bool = False
    ) -> Any:
        """Autobahn's: one frame, built once, sent to many connections."""

    # The connection passes itself; typed loosely here, precisely by the
    # factory, so that this module needs nothing of the connection's either.
    def connection_opened(self, protocol: Any) -> None:
        """The connection is open and authenticated: count it."""

    def connection_lost(self, protocol: Any) -> None:
        """The connection is gone: release its caps, detach its session."""
