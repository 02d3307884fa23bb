"""Methods every gateway answers: ``sys.ping`` and ``rpc.discover``.

OpenRPC has no notion of server-pushed events, so the registered event
types are listed in the document's ``x-events`` extension, each with its
version, delivery, priority and the JSON Schema of its data. Procedures
that backend services registered anywhere in the cluster are listed among
the methods, marked ``x-routed``, with the schemas and summary their
callee gave in ``rpc.register``; those registered without schemas have
open params and result.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

import rtgateway
from rtgateway.routing.events import EventRegistry
from rtgateway.routing.openrpc import discover_document, routed_descriptor
from rtgateway.routing.router import Router
from rtgateway.wire.errors import Unavailable

SERVER_TIME_RESULT = {
    "type": "object",
    "properties": {"server_time_ms": {"type": "integer"}},
    "required": ["server_time_ms"],
}


class SystemComponent(Service):
    """Liveness and self-description of the gateway."""

    name = "system"

    log = Logger()

    def __init__(
        self,
        router: Router,
        events: EventRegistry,
        clock: IReactorTime,
        routed: Any = None,
    ):
        self._router = router
        self._events = events
        self._clock = clock
        self._routed = routed

    def startService(self) -> None:
        super().startService()
        self._router.register(
            "sys.ping",
            self.ping,
            result=SERVER_TIME_RESULT,
            summary="Round trip to the gateway; returns its clock.",
        )
        self._router.register(
            "rpc.discover",
            self.discover,
            result={"type": "object", "required": ["openrpc", "methods"]},
            summary="This gateway's methods as an OpenRPC document.",
        )

    def stopService(self) -> None:
        self._router.unregister("sys.ping")
        self._router.unregister("rpc.discover")
        super().stopService()

    def ping(self, caller: Any, params: dict[str, Any]) -> dict[str, int]:
        return {"server_time_ms": int(self._clock.seconds() * 1000)}

    async def discover(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        routed: list[dict[str, Any]] = []
        if self._routed is not None:
            try:
                catalog = await self._routed.catalog()
            except Unavailable:
                self.log.warn("the procedure registry is unavailable; listing ours")
                catalog = self._routed.local_catalog()
            routed = [routed_descriptor(name, catalog[name]) for name in catalog]
        document = discover_document(
            self._router,
            title="rtgateway",
            version=rtgateway.__version__,
            extensions={
                "x-protocol": 1,
                "x-events": [event.describe() for event in self._events],
            },
        )
        document["methods"] += routed
        return document
