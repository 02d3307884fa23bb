"""The upgrade gate: every check that must pass before a WebSocket exists.

Requests for the WebSocket path arrive here through twisted.web, which has
already parsed (and bounded) the request line and headers. Refusals are
answered as ordinary HTTP responses with a short JSON body, instead of
through Autobahn's handshake failure path, which puts its reason (and an
exception's text) into the HTTP status line. Cheap checks come first, so a
flood of connections costs no signature verification.

An accepted request is handed to a :class:`GatewayProtocol` the way
Autobahn's ``WebSocketResource`` does, except that the replayed handshake
carries neither the ``Authorization`` header nor the ``access_token``
parameter: the token never reaches Autobahn or its debug log.
"""

from __future__ import annotations

import fnmatch
from typing import Any
from urllib.parse import urlencode

import orjson
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from rtgateway.auth import AuthenticationFailed, Authenticator, token_from_request
from rtgateway.gateway.factory import GatewayFactory
from rtgateway.wire.codecs import choose_codec

_SANITIZED_HEADERS = frozenset({b"authorization", b"cookie"})


@implementer(IResource)
class UpgradeResource:
    """The resource at the WebSocket path."""

    isLeaf = True
    log = Logger()

    def __init__(self, factory: GatewayFactory, authenticator: Authenticator) -> None:
        self._factory = factory
        self._authenticator = authenticator
        self._origins = tuple(o.lower() for o in factory.config.gateway.allowed_origins)

    def getChildWithDefault(self, name: bytes, request: Any) -> Any:
        return self

    def putChild(self, path: bytes, child: Any) -> None:
        raise NotImplementedError("the WebSocket endpoint has no children")

    def render(self, request: Any) -> Any:
        metrics = self._factory.metrics
        if request.method != b"GET":
            request.setHeader(b"allow", b"GET")
            return _refuse(request, metrics, 405, "method_not_allowed")
        upgrade = (request.getHeader(b"upgrade") or b"").lower()
        if b"websocket" not in upgrade:
            request.setHeader(b"upgrade", b"websocket")
            return _refuse(request, metrics, 426, "websocket_upgrade_required")
        if not _is_valid_handshake(request):
            return _refuse(request, metrics, 400, "invalid_websocket_handshake")
        host = request.getClientAddress().host
        refusal = self._factory.refusal(host)
        if refusal is not None:
            return _refuse(request, metrics, *refusal)
        if not self._origin_allowed(request.getHeader(b"origin")):
            return _refuse(request, metrics, 403, "origin_not_allowed")
        codec = choose_codec(_offered_subprotocols(request))
        if codec is None:
            return _refuse(request, metrics, 400, "unsupported_subprotocol")
        token = token_from_request(request.getHeader(b"authorization"), request.args)
        try:
            principal = self._authenticator.authenticate(token)
        except AuthenticationFailed as failure:
            metrics.auth_failures.labels(failure.reason).inc()
            self.log.info(
                "authentication failed from {peer_host}: {reason}",
                peer_host=host,
                reason=failure.reason,
            )
            request.setHeader(b"www-authenticate", _www_authenticate(failure.reason))
            return _refuse(request, metrics, 401, failure.reason)
        protocol = self._factory.buildProtocol(request.getClientAddress())
        protocol.principal = principal
        protocol.codec = codec
        self._factory.reserve(protocol, host)
        _hand_over(request, protocol)
        return NOT_DONE_YET

    def _origin_allowed(self, origin: bytes | None) -> bool:
        """Non-browser clients send no Origin; browsers must be on the list."""
        if not self._origins or origin is None:
            return True
        value = origin.decode("latin-1").lower()
        return any(fnmatch.fnmatchcase(value, pattern) for pattern in self._origins)


def _offered_subprotocols(request: Any) -> list[str]:
    values = request.requestHeaders.getRawHeaders(b"sec-websocket-protocol", [])
    return [
        p.strip()
        for value in values
        for p in value.decode("latin-1").split(",")
        if p.strip()
    ]


def _is_valid_handshake(request: Any) -> bool:
    """The RFC 6455 headers Autobahn would otherwise refuse without a body."""
    version = request.getHeader(b"sec-websocket-version")
    key = request.getHeader(b"sec-websocket-key") or b""
    connection = (request.getHeader(b"connection") or b"").lower()
    return version == b"13" and len(key.strip()) == 24 and b"upgrade" in connection


def _www_authenticate(reason: str) -> bytes:
    """RFC 6750: no error code when the request simply carried no token."""
    if reason == "missing_token":
        return b'Bearer realm="rtgateway"'
    return b'Bearer realm="rtgateway", error="invalid_token"'


def _refuse(request: Any, metrics: Any, status: int, reason: str) -> bytes:
    metrics.handshake_refusals.labels(str(status)).inc()
    request.setResponseCode(status, _STATUS_PHRASES[status])
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"connection", b"close")
    return orjson.dumps({"error": _ERROR_NAMES[status], "reason": reason})


_STATUS_PHRASES = {
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    405: b"Method Not Allowed",
    426: b"Upgrade Required",
    429: b"Too Many Requests",
    503: b"Service Unavailable",
}

_ERROR_NAMES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    405: "method_not_allowed",
    426: "upgrade_required",
    429: "too_many_connections",
    503: "unavailable",
}


def _hand_over(request: Any, protocol: Any) -> None:
    """Give the request's transport to ``protocol`` and replay the handshake."""
    transport, request.channel.transport = request.channel.transport, None
    if isinstance(transport, ProtocolWrapper):
        transport.wrappedProtocol = protocol
    elif isinstance(getattr(transport, "protocol", None), ProtocolWrapper):
        transport.protocol.wrappedProtocol = protocol
    else:
        transport.protocol = protocol
    # twisted.web's channel is still registered as the transport's producer
    # and paused it while the request was served: take both back.
    transport.unregisterProducer()
    protocol.makeConnection(transport)
    transport.resumeProducing()
    protocol.dataReceived(_sanitized_handshake(request))
    # The request is never finished, so it would stay in its channel's queue,
    # and the two would keep each other alive until the garbage collector
    # found them: a cycle of some thirty objects per connection. Nothing else
    # holds the channel (the transport is the protocol's now): once the
    # request is out of the queue, both go when render() returns. (The
    # channel's idle timeout, which must never fire on a connection it no
    # longer has, was stopped by twisted.web for the request; made sure of.
    # Its handshake deadline is met: the upgrade is done.)
    channel = request.channel
    channel.setTimeout(None)
    channel.stop_deadline()
    channel.requests.clear()


def _sanitized_handshake(request: Any) -> bytes:
    query = [
        (key, value)
        for key, values in request.args.items()
        if key != b"access_token"
        for value in values
    ]
    target = request.path + (b"?" + urlencode(query).encode() if query else b"")
    lines = [request.method + b" " + target + b" HTTP/1.1"]
    for name, values in request.requestHeaders.getAllRawHeaders():
        if name.lower() not in _SANITIZED_HEADERS:
            lines.append(name + b": " + b",".join(values))
    return b"\r\n".join(lines) + b"\r\n\r\n"
