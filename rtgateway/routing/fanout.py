"""One notification for many connections, encoded once per codec.

Fan-out is the hot path of pub/sub: an event for 1,000 subscribers must
not be encoded 1,000 times. A :class:`SharedMessage` encodes its document
at most once per codec and keeps the WebSocket frame prepared by the first
connection that asks (Autobahn's ``prepareMessage``), so every further
subscriber costs one append to its outbox (:mod:`rtgateway.gateway.outbox`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class SharedMessage:
    """A document sent to many connections; ``droppable`` under backpressure."""

    __slots__ = ("_payloads", "_prepared", "document", "droppable")

    def __init__(self, document: Any, *, droppable: bool = False) -> None:
        self.document = document
        self.droppable = droppable
        self._payloads: dict[str, bytes] = {}
        self._prepared: dict[str, Any] = {}

    def payload(self, codec: Any) -> bytes:
        """The document encoded with ``codec`` (once)."""
        payload = self._payloads.get(codec.NAME)
        if payload is None:
            payload = self._payloads[codec.NAME] = codec.encode(self.document)
        return payload

    def prepared(self, codec: Any, prepare: Callable[[bytes, bool], Any]) -> Any:
        """The frame for ``codec``, made by ``prepare(payload, is_binary)`` once."""
        prepared = self._prepared.get(codec.NAME)
        if prepared is None:
            prepared = self._prepared[codec.NAME] = prepare(
                self.payload(codec), codec.BINARY
            )
        return prepared
