"""What the core asks a transport to do, and what handlers are given.

Actions (:class:`Connect`, :class:`Send`, :class:`Disconnect`,
:class:`Abort`, :class:`RefreshToken`) are plain values the core returns
from :meth:`~rtgateway.client.core.ClientCore.take_actions`; a transport
carries them out in order. :class:`ConnectionState` and :class:`Event` are
what ``client.state`` and event handlers receive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Connect:
    """Open a WebSocket to ``url`` (asking the token provider first)."""

    url: str


@dataclass(frozen=True, slots=True)
class Send:
    """Write one frame (binary for CBOR, text for JSON)."""

    data: bytes
    binary: bool


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Close the WebSocket with ``code`` and ``reason``."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Abort:
    """Drop the connection without a closing handshake (it is dead)."""

    reason: str


@dataclass(frozen=True, slots=True)
class RefreshToken:
    """Ask the token provider for a new token, then call :meth:`ClientCore.refresh`."""


@dataclass(frozen=True, slots=True)
class ConnectionState:
    """A change of the connection's state, as handlers of ``client.state`` see it.

    ``state`` is ``connecting``, ``open``, ``reconnecting`` (``attempt`` and
    the ``delay`` before it) or ``closed`` (``code``: the close code, or the
    HTTP status of a refused upgrade; ``reason``).
    """

    state: str
    url: str | None = None
    attempt: int = 0
    delay: float | None = None
    code: int | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """A notification from the gateway, as handlers receive it."""

    type: str
    params: Any

    @property
    def topic(self) -> str | None:
        return self.params.get("topic") if isinstance(self.params, dict) else None

    @property
    def data(self) -> Any:
        return self.params.get("data") if isinstance(self.params, dict) else None

    @property
    def offset(self) -> int | None:
        return self.params.get("offset") if isinstance(self.params, dict) else None

    @property
    def sender(self) -> str | None:
        return self.params.get("from") if isinstance(self.params, dict) else None
