"""The HTTP site on the gateway's listening port.

One port serves the WebSocket path and the operational endpoints, so a
load balancer needs one target and one health check.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import Site

from rtgateway.web.static import NotFoundPage


class GatewayChannel(HTTPChannel):
    """An HTTP channel whose client has a deadline to get its request in.

    twisted.web's ``timeOut`` is an idle timeout: every byte received starts
    it again, so a client that dribbles its request line and headers one
    byte at a time (slowloris) would hold the connection for as long as it
    likes. The deadline counts from the accept, whatever the client sends,
    to the first response (a refusal, a health answer) or to the WebSocket
    upgrade (:meth:`stop_deadline`, called by the upgrade resource); on a
    kept-alive connection each further request has a deadline of its own,
    counted from the end of the previous response. A connection that misses
    it is closed as twisted.web closes an idle one.
    """

    _deadline: IDelayedCall | None = None
    _deadline_s: float | None = None

    def connectionMade(self) -> None:
        # The site's timeout; twisted.web sets ``timeOut`` to None while it
        # serves a request (its idle timeout is off then).
        self._deadline_s = self.timeOut
        super().connectionMade()
        self._start_deadline()

    def writeHeaders(
        self, version: bytes, code: bytes, reason: bytes, headers: Any
    ) -> None:
        self.stop_deadline()
        super().writeHeaders(version, code, reason, headers)

    def requestDone(self, request: Any) -> None:
        # Before the next request is read: a pipelined one may be complete
        # in the buffer, and be answered (stopping this deadline) at once.
        if self.persistent:
            self._start_deadline()
        super().requestDone(request)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.stop_deadline()
        super().connectionLost(reason)

    def stop_deadline(self) -> None:
        """The request was answered or upgraded: the deadline is met."""
        deadline, self._deadline = self._deadline, None
        if deadline is not None and deadline.active():
            deadline.cancel()

    def _start_deadline(self) -> None:
        self.stop_deadline()
        if self._deadline_s:
            self._deadline = self.callLater(self._deadline_s, self._deadline_missed)

    def _deadline_missed(self) -> None:
        self._deadline = None
        self.timeoutConnection()

    def timeoutConnection(self) -> None:
        """Close once, whichever comes first: the deadline or the idle timeout."""
        self.stop_deadline()
        self.setTimeout(None)
        super().timeoutConnection()


class GatewaySite(Site):
    """A Site of :class:`GatewayChannel` without an access log.

    twisted.web's default access log writes every request URI to the
    process log, which would include an ``access_token`` query parameter.
    Metrics count requests instead.

    Its channels speak HTTP/1.1 only (twisted.web's default channel can
    switch to HTTP/2 after a TLS ALPN negotiation, which the gateway's
    endpoints never offer, and a WebSocket upgrade needs HTTP/1.1).
    """

    noisy = False
    # Twisted types a site's protocol as its channel that may switch to
    # HTTP/2; a plain HTTPChannel is built and set up by Site the same way.
    protocol = GatewayChannel  # type: ignore[assignment]

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

    ``timeout`` is the deadline, counted from the accept, by which a
    connection must have sent its request and been answered or upgraded to
    a WebSocket (see :class:`GatewayChannel`); it is also twisted.web's
    idle timeout between the requests of a kept-alive connection.
    """
    root: Resource = _Endpoints()
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


class _Endpoints(Resource):
    """The named endpoints; any other path is a plain 404."""

    def getChild(self, path: bytes, request: Any) -> Any:
        return NotFoundPage()


class _RootWebSocket(Resource):
    """Serves the WebSocket at ``/`` while keeping the named endpoints."""

    def __init__(self, named: Resource, ws_resource: Any) -> None:
        super().__init__()
        self._named = named
        self._ws = ws_resource

    def getChild(self, path: bytes, request: Any) -> Any:
        if path == b"":
            return self._ws
        return self._named.children.get(path) or NotFoundPage()

    def render(self, request: Any) -> Any:
        return self._ws.render(request)
