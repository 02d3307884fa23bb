"""The errors a client call can fail with.

A JSON-RPC error response becomes a :class:`RemoteError` subclass chosen by
its code, so that applications can ``except RateLimited`` instead of
comparing numbers; the client's own failures (queue full, timeout, lost
connection, closed client) are :class:`ClientError` subclasses and never
carry a JSON-RPC code, since the gateway never said anything.
"""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Root of every error the client raises on its own account."""


class QueueFull(ClientError):
    """The outbound queue (or the call's priority in it) is at its bound."""


class CallTimeout(ClientError):
    """No response arrived within the call's timeout."""


class ConnectionLost(ClientError):
    """The connection ended after the request was sent: its outcome is unknown.

    The gateway may or may not have carried it out. Only requests marked
    idempotent are sent again by themselves; this one was not.
    """


class ClientClosed(ClientError):
    """The client is closed for good (by the application or by the gateway)."""


class RemoteError(Exception):
    """A JSON-RPC error response: ``code``, ``message`` and ``data``."""

    code: int = 0

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message
        self.data = data


class ParseError(RemoteError):
    code = -32700


class InvalidRequest(RemoteError):
    code = -32600


class MethodNotFound(RemoteError):
    code = -32601


class InvalidParams(RemoteError):
    """``data.errors`` lists ``{path, message}``."""

    code = -32602


class InternalError(RemoteError):
    code = -32603


class Forbidden(RemoteError):
    code = -32001


class RateLimited(RemoteError):
    """``data.retry_after_ms`` says when to try again."""

    code = -32002


class NotFound(RemoteError):
    code = -32003


class Conflict(RemoteError):
    """``data.current_version`` holds the version to retry against."""

    code = -32004


class Unavailable(RemoteError):
    code = -32005


class RemoteTimeout(RemoteError):
    code = -32006


_BY_CODE: dict[int, type[RemoteError]] = {
    cls.code: cls
    for cls in (
        ParseError,
        InvalidRequest,
        MethodNotFound,
        InvalidParams,
        InternalError,
        Forbidden,
        RateLimited,
        NotFound,
        Conflict,
        Unavailable,
        RemoteTimeout,
    )
}


def remote_error(error: Any) -> RemoteError:
    """The typed exception for a response's ``error`` member."""
    if not isinstance(error, dict):
        return InternalError(-32603, f"malformed error member: {error!r}")
    code = error.get("code")
    message = str(error.get("message", ""))
    cls = _BY_CODE.get(code, RemoteError) if isinstance(code, int) else RemoteError
    return cls(code if isinstance(code, int) else 0, message, error.get("data"))
