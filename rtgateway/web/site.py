"""The HTTP site on the gateway's listening port.

One port serves the WebSocket path and the operational endpoints, so a
load balancer needs one target and one health check.
"""

from __future__ import annotations

from typing import Any

from twisted.web.resource import NoResource, Resource
from twisted.web.server import Site


class GatewaySite(Site):
    """A Site without an access log.

    twisted.web's default access log writes every request URI to the
    process log, which would include an ``access_token`` query parameter.
    Metrics count requests instead.
    """

    noisy = False

    def log(self, request: Any) -> None:
        return None


def build_site(
    *,
    ws_path: str,
    ws_resource: Any,
    endpoints: dict[bytes, Any],
    timeout: float,
    clock: Any,
) -> GatewaySite:
    """Mount ``ws_resource`` at ``ws_path`` and each endpoint at ``/<name>``.

    ``timeout`` bounds how long a connection may take to send its request
    (and so its WebSocket upgrade) before it is dropped.
    """
    root = Resource()
    for name, resource in endpoints.items():
        root.putChild(name, resource)
    segments = [s.encode() for s in ws_path.strip("/").split("/") if s]
    parent = root
    for segment in segments[:-1]:
        child = parent.children.get(segment)
        if child is None:
            child = Resource()
            parent.putChild(segment, child)
        parent = child
    if segments:
        parent.putChild(segments[-1], ws_resource)
    else:
        root = _RootWebSocket(root, ws_resource)
    return GatewaySite(root, timeout=timeout, reactor=clock)


class _RootWebSocket(Resource):
    """Serves the WebSocket at ``/`` while keeping the named endpoints."""

    def __init__(self, named: Resource, ws_resource: Any) -> None:
        super().__init__()
        self._named = named
        self._ws = ws_resource

    def getChild(self, path: bytes, request: Any) -> Any:
        if path == b"":
            return self._ws
        return self._named.children.get(path, NoResource())

    def render(self, request: Any) -> Any:
        return self._ws.render(request)
