"""Health, readiness and metrics over plain HTTP on the gateway's port."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from twisted.web.resource import Resource


class HealthResource(Resource):
    """``GET /healthz``: the process is up; says which gateway and how busy."""

    isLeaf = True

    def __init__(self, gateway_id: str, connection_count: Callable[[], int]) -> None:
        super().__init__()
        self._gateway_id = gateway_id
        self._connection_count = connection_count

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return orjson.dumps(
            {
                "status": "ok",
                "gateway_id": self._gateway_id,
                "connections": self._connection_count(),
            }
        )


class ReadyResource(Resource):
    """``GET /readyz``: 200 when the gateway should get traffic, else 503.

    A load balancer stops sending new connections to a gateway that is
    draining or whose backends are down.
    """

    isLeaf = True

    def __init__(self, checks: Callable[[], dict[str, bool]]) -> None:
        super().__init__()
        self._checks = checks

    def render_GET(self, request: Any) -> bytes:
        checks = self._checks()
        ready = all(checks.values())
        request.setResponseCode(200 if ready else 503)
        request.setHeader(b"content-type", b"application/json")
        return orjson.dumps({"ready": ready, "checks": checks})


class MetricsResource(Resource):
    """``GET /metrics``: the Prometheus text exposition of one registry."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return generate_latest(self._registry)
