"""Typed errors, each carrying the JSON-RPC error code the protocol names.

Every error the gateway reports to a client is one of these; anything else
that escapes a handler is turned into :class:`InternalError` and logged
server-side, never sent.
"""

from __future__ import annotations

from typing import Any


class RTGatewayError(Exception):
    """Root of every error rtgateway raises on purpose."""

    code: int = -32603
    message: str = "Internal error"

    def __init__(self, message: str | None = None, data: Any = None) -> None:
        self.message = message if message is not None else type(self).message
        self.data = data
        super().__init__(self.message)

    def to_error_object(self) -> dict[str, Any]:
        """The JSON-RPC ``error`` member for this error."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class ParseError(RTGatewayError):
    """The frame is not a well-formed document of the connection's encoding."""

    code = -32700
    message = "Parse error"


class InvalidRequest(RTGatewayError):
    """The document is not a valid JSON-RPC 2.0 request or batch."""

    code = -32600
    message = "Invalid Request"


class MethodNotFound(RTGatewayError):
    """No method of that name is registered (or visible to the caller)."""

    code = -32601
    message = "Method not found"


class InvalidParams(RTGatewayError):
    """Parameters failed validation; ``data.errors`` lists ``{path, message}``."""

    code = -32602
    message = "Invalid params"

    def __init__(self, errors: list[dict[str, str]], message: str | None = None):
        super().__init__(message, {"errors": errors})
        self.errors = errors


class InternalError(RTGatewayError):
    """Something went wrong on the server; details are only in its log."""

    code = -32603
    message = "Internal error"


class Forbidden(RTGatewayError):
    """Authenticated, but not allowed to do this."""

    code = -32001
    message = "Forbidden"


class RateLimited(RTGatewayError):
    """Over the connection's rate; ``data.retry_after_ms`` says when to retry."""

    code = -32002
    message = "Rate limited"

    def __init__(self, retry_after_ms: int):
        super().__init__(None, {"retry_after_ms": retry_after_ms})
        self.retry_after_ms = retry_after_ms


class NotFound(RTGatewayError):
    """A session, resume token, entity or topic history does not exist."""

    code = -32003
    message = "Not found"


class Conflict(RTGatewayError):
    """Version mismatch; ``data.current_version`` holds the current one."""

    code = -32004
    message = "Conflict"

    def __init__(self, current_version: int, message: str | None = None):
        super().__init__(message, {"current_version": current_version})
        self.current_version = current_version


class Unavailable(RTGatewayError):
    """A backend is down; the call may be retried later."""

    code = -32005
    message = "Unavailable"


class Timeout(RTGatewayError):
    """The callee did not answer in time."""

    code = -32006
    message = "Timeout"
