"""The service tree of one gateway process.

``Gateway`` wires the layers together (backends, metrics, router, broker,
components, the WebSocket factory, the HTTP site) and is the root
``MultiService``: its children start in dependency order and stop in
reverse, so the listener stops first (no new connections), the open
connections are drained, then the components stop and the backends last.
"""

from __future__ import annotations

import gc
import importlib
import sys
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    jsonFileLogObserver,
    textFileLogObserver,
)

from rtgateway.analytics import SessionAnalytics
from rtgateway.auth import Authenticator
from rtgateway.backends import build_backends
from rtgateway.components.admin import AdminComponent
from rtgateway.components.presence import PresenceComponent
from rtgateway.components.procedures import ProceduresComponent
from rtgateway.components.pubsub import PubSubComponent
from rtgateway.components.session_data import SessionDataComponent
from rtgateway.components.sessions import SessionsComponent
from rtgateway.components.state import StateComponent
from rtgateway.components.system import SystemComponent
from rtgateway.gateway.factory import GatewayFactory
from rtgateway.gateway.upgrade import UpgradeResource
from rtgateway.metrics import GatewayMetrics, StateMetrics
from rtgateway.routing.broker import Broker
from rtgateway.routing.dispatch import Dispatcher
from rtgateway.routing.events import EventRegistry
from rtgateway.routing.router import Router
from rtgateway.routing.topics import TopicPolicy
from rtgateway.web.health import HealthResource, MetricsResource, ReadyResource
from rtgateway.web.pages import page_endpoints
from rtgateway.web.site import build_site

#: The garbage collector's thresholds in a gateway process: Python's own,
#: except that a full collection waits for 100 collections of the middle
#: generation instead of 10. See :func:`settle_garbage_collector`.
GC_THRESHOLDS = (700, 10, 100)


def settle_garbage_collector() -> None:
    """Keep full garbage collections off the process's startup heap, and rarer.

    Each connection leaves some 50 objects the collector tracks, none of
    them garbage while it is open; a full collection visits every one, at
    about 1 us each (0.6 s at 10,000 connections, during which no message
    moves). Opening 10,000 connections set off 8 of them (2.5 s of CPU,
    18 % of the opening's). With full collections gated on 100 collections
    of the middle generation, opening 10,000 connections sets off none;
    Python's rule that a full collection waits until a quarter of the old
    objects are new still holds. The price: cyclic garbage (what a closed
    connection leaves) is found less often, so it can pile up for longer
    under heavy churn before it is freed.

    What exists once the gateway has started (modules, classes, the service
    tree, some 50,000 objects) lives as long as the process: it is frozen
    out of every later collection, after one last full collection so that
    no garbage is frozen with it.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


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
    """The root service; its attributes are the wired collaborators.

    ``backends`` may be given (tests share one memory hub between several
    gateways); by default they follow ``[backend]``.
    """

    def __init__(
        self,
        config: Any,
        reactor: Any,
        *,
        listen: bool = True,
        backends: Any = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.clock = reactor
        self._owns_process = False
        self.backends = (
            backends if backends is not None else build_backends(config, reactor)
        )
        self.metrics = GatewayMetrics()
        self.router = Router()
        self.events = EventRegistry(config.events)
        self.broker = Broker(
            policy=TopicPolicy(config.topics),
            events=self.events,
            history=self.backends.history,
            bus=self.backends.bus,
            clock=reactor,
            gateway_id=config.gateway.id,
            metrics=self.metrics,
            max_replay=config.session.max_replay,
        )
        self.dispatcher = Dispatcher(self.router, self.metrics, reactor)
        authenticator = Authenticator(config.auth, reactor)
        self.sessions = SessionsComponent(
            router=self.router,
            config=config,
            clock=reactor,
            backends=self.backends,
            broker=self.broker,
            authenticator=authenticator,
            analytics=SessionAnalytics(self.metrics.registry),
        )
        self.pubsub = PubSubComponent(
            router=self.router,
            broker=self.broker,
            sessions=self.sessions,
            store=self.backends.sessions,
            max_subscriptions=config.limits.max_subscriptions,
            max_watch=config.presence.max_watch,
        )
        self.presence = PresenceComponent(
            router=self.router,
            broker=self.broker,
            events=self.events,
            sessions=self.sessions,
            store=self.backends.presence,
            session_store=self.backends.sessions,
            config=config,
            clock=reactor,
        )
        self.state_metrics = StateMetrics(self.metrics.registry)
        self.state = StateComponent(
            router=self.router,
            broker=self.broker,
            sessions=self.sessions,
            presence=self.presence,
            store=self.backends.state,
            session_store=self.backends.sessions,
            bus=self.backends.bus,
            zones=dict(config.zones),
            gateway_id=config.gateway.id,
            clock=reactor,
            metrics=self.state_metrics,
            resume_window_s=config.session.resume_window_s,
        )
        self.session_data = SessionDataComponent(
            router=self.router,
            broker=self.broker,
            events=self.events,
            sessions=self.sessions,
            presence=self.backends.presence,
            session_store=self.backends.sessions,
            config=config,
            clock=reactor,
        )
        self.procedures = ProceduresComponent(
            router=self.router,
            broker=self.broker,
            sessions=self.sessions,
            registry=self.backends.procedures,
            bus=self.backends.bus,
            config=config,
            clock=reactor,
        )
        self.system = SystemComponent(
            self.router, self.events, reactor, routed=self.procedures
        )
        self.factory = GatewayFactory(
            config=config,
            dispatcher=self.dispatcher,
            sessions=self.sessions,
            metrics=self.metrics,
            clock=reactor,
            reactor=reactor,
            ready=self.backends.ready,
        )
        endpoints: dict[bytes, Any] = {
            **page_endpoints(config, authenticator, reactor),
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
        children = [
            self.backends,
            self.sessions,
            self.pubsub,
            self.presence,
            self.state,
            self.session_data,
            self.procedures,
            self.system,
        ]
        if config.admin.enabled:
            self.admin = AdminComponent(
                router=self.router,
                broker=self.broker,
                sessions=self.sessions,
                state=self.state,
                presence_store=self.backends.presence,
                state_store=self.backends.state,
                session_store=self.backends.sessions,
                bus=self.backends.bus,
                config=config,
                clock=reactor,
                metrics=self.metrics,
                state_metrics=self.state_metrics,
                connections=lambda: self.factory.connections,
            )
            children.append(self.admin)
        children += [load_component(name, self) for name in config.components.extra]
        for child in children:
            child.setServiceParent(self)
        if listen:
            endpoint = serverFromString(reactor, config.gateway.listen)
            self.listener = GatewayListener(
                endpoint, self.site, self.factory, config.shutdown.drain_timeout_s
            )
            self.listener.setServiceParent(self)

    def startService(self) -> None:
        """Start the children; then, in a process of its own, settle the gc."""
        super().startService()
        if self._owns_process:
            settle_garbage_collector()

    def stopService(self) -> Deferred:
        """Stop the children one after the other, in reverse order.

        ``MultiService`` would stop them all at once: the backends would go
        while connections are still draining and sessions still detaching.
        """
        super(MultiService, self).stopService()
        return Deferred.fromCoroutine(self._stop_in_order())

    async def _stop_in_order(self) -> None:
        for service in reversed(list(self)):
            await maybeDeferred(service.stopService)

    def readiness(self) -> dict[str, bool]:
        """Named checks; the gateway is ready when all are true."""
        return {
            "accepting": not self.factory.draining,
            "backends": self.backends.ready(),
        }

    def setServiceParent(self, parent: Any) -> None:
        """Under twistd, install the configured log observer on the application.

        The process is then the gateway's own, and its garbage collector is
        settled once the gateway has started (:func:`settle_garbage_collector`);
        a gateway in a test's process leaves it alone.
        """
        super().setServiceParent(parent)
        if hasattr(parent, "setComponent"):
            parent.setComponent(ILogObserver, log_observer(self.config.logging))
            self._owns_process = True


def load_component(name: str, gateway: Gateway) -> Any:
    """Import ``package.module:Class`` and build it with the gateway.

    A user component is a ``Service`` whose constructor takes the
    :class:`Gateway`, from which it reaches the router, the broker, the
    event registry, the sessions component and the clock.
    """
    module_name, _, class_name = name.partition(":")
    component_class = getattr(importlib.import_module(module_name), class_name)
    return component_class(gateway)


def log_observer(logging: Any) -> Any:
    """The observer for ``[logging]``: stdout, text or JSON, from its level up.

    twistd's default observer would print every level, debug included.
    """
    make = jsonFileLogObserver if logging.format == "json" else textFileLogObserver
    predicate = LogLevelFilterPredicate(
        defaultLogLevel=LogLevel.levelWithName(logging.level)
    )
    return FilteringLogObserver(make(sys.stdout), [predicate])
