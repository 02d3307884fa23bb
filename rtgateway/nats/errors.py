"""What a NATS call can fail with, each error carrying its JSON-RPC code.

They are rooted in the project's :class:`~rtgateway.wire.errors.RTGatewayError`
so that a caller routing a player's call can hand them on as they are: no
responders is "method not found", a request without an answer in time is
"timeout", a server that cannot be reached is "unavailable".
"""

from __future__ import annotations

from rtgateway.wire.errors import RTGatewayError


class NatsError(RTGatewayError):
    """The NATS server cannot take the call now (down, closed, refusing)."""

    code = -32005
    message = "NATS unavailable"


class AuthorizationError(NatsError):
    """The server refused the credentials (``-ERR 'Authorization Violation'``)."""

    message = "NATS authorization refused"


class BufferFull(NatsError):
    """Disconnected, and the pending buffer cannot hold this publication."""

    message = "NATS pending buffer full"


class PayloadTooLarge(RTGatewayError):
    """The message is larger than the server's ``max_payload``."""

    code = -32602
    message = "Payload too large"

    def __init__(self, size: int, max_payload: int) -> None:
        super().__init__(
            f"a NATS message of {size} bytes is over the server's "
            f"max_payload of {max_payload}",
            {"size": size, "max_payload": max_payload},
        )
        self.size = size
        self.max_payload = max_payload


class NoResponders(NatsError):
    """Nobody listens on the request's subject (the server's 503 status)."""

    code = -32601
    message = "No responders"


class RequestTimeout(NatsError):
    """A request got no reply within its timeout."""

    code = -32006
    message = "Timeout"
