"""The service tree of one gateway process.

``build_gateway`` wires the layers together (metrics, router, components,
the WebSocket factory, the HTTP site) and returns a ``MultiService`` whose
children start in dependency order and stop in reverse: the listener stops
first (no new connections), then the open connections are drained, then
the components and finally the backends.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    jsonFileLogObserver,
    textFileLogObserver,
)

from rtgateway.auth import Authenticator
from rtgateway.components.sessions import SessionsComponent
from rtgateway.components.system import SystemComponent
from rtgateway.dispatch import Dispatcher
from rtgateway.gateway.factory import GatewayFactory
from rtgateway.gateway.upgrade import UpgradeResource
from rtgateway.metrics import GatewayMetrics
from rtgateway.router import Router
from rtgateway.web.health import HealthResource, MetricsResource, ReadyResource
from rtgateway.web.site import build_site


class GatewayListener(StreamServerEndpointService):
    """Listens on the configured endpoint; on stop, drains the connections."""

    def __init__(
        self, endpoint: Any, site: Any, factory: GatewayFactory, drain_s: float
    ):
        super().__init__(endpoint, site)
        self._raiseSynchronously = True
        self._factory = factory
        self._drain_s = drain_s

    def stopService(self) -> Deferred:
        stopped = super().stopService()
        drained = self._factory.drain(self._drain_s)
        return stopped.addCallback(lambda _: drained)


class Gateway(MultiService):
    """The root service; its attributes are the wired collaborators."""

    def __init__(self, config: Any, reactor: Any, *, listen: bool = True) -> None:
        super().__init__()
        self.config = config
        self.metrics = GatewayMetrics()
        self.router = Router()
        self.dispatcher = Dispatcher(self.router, self.metrics, reactor)
        self.sessions = SessionsComponent(
            router=self.router, config=config, clock=reactor
        )
        self.system = SystemComponent(self.router, reactor)
        self.factory = GatewayFactory(
            config=config,
            dispatcher=self.dispatcher,
            sessions=self.sessions,
            metrics=self.metrics,
            clock=reactor,
            reactor=reactor,
        )
        authenticator = Authenticator(config.auth)
        endpoints = {
            b"healthz": HealthResource(
                config.gateway.id, lambda: len(self.factory.connections)
            ),
            b"readyz": ReadyResource(self.readiness),
        }
        if config.metrics.enabled:
            endpoints[b"metrics"] = MetricsResource(self.metrics.registry)
        self.site = build_site(
            ws_path=config.gateway.path,
            ws_resource=UpgradeResource(self.factory, authenticator),
            endpoints=endpoints,
            timeout=config.limits.handshake_timeout_s,
            clock=reactor,
        )
        for child in (self.sessions, self.system):
            child.setServiceParent(self)
        if listen:
            endpoint = serverFromString(reactor, config.gateway.listen)
            self.listener = GatewayListener(
                endpoint, self.site, self.factory, config.shutdown.drain_timeout_s
            )
            self.listener.setServiceParent(self)

    def readiness(self) -> dict[str, bool]:
        """Named checks; the gateway is ready when all are true."""
        return {"accepting": not self.factory.draining}

    def setServiceParent(self, parent: Any) -> None:
        """Under twistd, install the configured log observer on the application."""
        super().setServiceParent(parent)
        if hasattr(parent, "setComponent"):
            observer = log_observer(self.config.logging)
            parent.setComponent(ILogObserver, observer)


def log_observer(logging: Any) -> Any:
    """The observer for ``[logging]``: stdout, text or JSON, from its level up.

    twistd's default observer would print every level, debug included.
    """
    make = jsonFileLogObserver if logging.format == "json" else textFileLogObserver
    predicate = LogLevelFilterPredicate(
        defaultLogLevel=LogLevel.levelWithName(logging.level)
    )
    return FilteringLogObserver(make(sys.stdout), [predicate])
