"""Zone schemas and a client harness for the sans-io state tests."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import cbor2
import orjson

from rtgateway.state.engine import ZoneEngine
from rtgateway.state.mirror import Mirror
from rtgateway.state.schema import FieldSpec, ZoneSchema


def arena(**overrides: Any) -> ZoneSchema:
    """A zone with a 2D position, a slow integer and a string."""
    fields = {
        "x": FieldSpec("x", "number", quantum=0.01),
        "y": FieldSpec("y", "number", quantum=0.01),
        "hp": FieldSpec("hp", "integer", lane="slow", default=100, min=0, max=100),
        "name": FieldSpec("name", "string", lane="slow", max_length=16),
        "dir": FieldSpec("dir", "vector", quantum=0.5, max_length=2),
        "open": FieldSpec("open", "boolean"),
    }
    settings: dict[str, Any] = {
        "name": "arena",
        "fields": MappingProxyType(fields),
        "position": ("x", "y"),
    }
    settings.update(overrides)
    return ZoneSchema(**settings)


def decode(payload: bytes) -> dict[str, Any]:
    """A state message, JSON or CBOR."""
    if payload[:1] == b"{":
        return orjson.loads(payload)
    return cbor2.loads(payload)


class Clients:
    """Mirrors for the clients of one engine, fed with what the engine sends."""

    def __init__(self, engine: ZoneEngine) -> None:
        self.engine = engine
        self.mirrors: dict[str, Mirror] = {}
        self.checks = 0
        self.messages: dict[str, list[dict[str, Any]]] = {}

    def join(self, client: str, fields: dict[str, Any], codec: str = "json", now=0.0):
        entity = f"player.{client}"
        self.mirrors[client] = Mirror(own=entity)
        self.deliver(client, self.engine.join(client, entity, codec, fields, now))

    def deliver(self, client: str, payload: bytes) -> None:
        message = decode(payload)
        self.messages.setdefault(client, []).append(message)
        method, params = message["method"], message["params"]
        assert self.mirrors[client].apply(method, params), (client, params)
        if method == "state.check":
            self.checks += 1

    def tick(self, writable=lambda client: True):
        result = self.engine.tick(writable)
        for client, payload in result.sends:
            self.deliver(client, payload)
        return result

    def last(self, client: str, method: str = "state.delta") -> dict[str, Any] | None:
        found = [m for m in self.messages.get(client, []) if m["method"] == method]
        return found[-1]["params"] if found else None

    def expected_view(self, client: str) -> dict[str, tuple[int, dict[str, Any]]]:
        """What the server says the client holds (published state), own excluded.

        A client's own entity is in its snapshots only: deltas carry its
        ``ack`` instead, for the client's prediction.
        """
        view = self.engine.clients[client]
        entities = self.engine.entities
        return {
            entity_id: (
                entities[entity_id].pversion,
                dict(entities[entity_id].published),
            )
            for entity_id in view.held
            if entity_id != view.entity_id
        }

    def others(self, client: str) -> dict[str, tuple[int, dict[str, Any]]]:
        """The client's mirror without its own entity."""
        mirror = self.mirrors[client]
        return {k: v for k, v in mirror.entities.items() if k != mirror.own}
