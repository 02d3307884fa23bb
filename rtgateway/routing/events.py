"""Typed, versioned event types: the ``type`` of every published event.

Event types come from the configuration (``[events.<type>]``) and from
Python components; each has a compiled JSON Schema for its ``data``, a
version, a delivery (reliable or volatile) and a priority. ``rpc.discover``
lists them, so clients can generate their bindings.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from rtgateway.config.topics import EventConfig
from rtgateway.routing.schemas import CompiledSchema


@dataclass(frozen=True, slots=True)
class EventType:
    """A registered event type."""

    name: str
    version: int
    reliable: bool
    priority: int
    schema: CompiledSchema
    summary: str = ""

    @property
    def droppable(self) -> bool:
        """Volatile events of no priority may be dropped under backpressure."""
        return not self.reliable and self.priority <= 0

    def describe(self) -> dict[str, Any]:
        """This type as listed by ``rpc.discover``."""
        return {
            "name": self.name,
            "version": self.version,
            "delivery": "reliable" if self.reliable else "volatile",
            "priority": self.priority,
            "summary": self.summary,
            "schema": self.schema.schema,
        }


class EventRegistry:
    """Every event type this gateway accepts."""

    def __init__(self, configured: Mapping[str, EventConfig] | None = None) -> None:
        self._types: dict[str, EventType] = {}
        for name, event in (configured or {}).items():
            self.register(
                name,
                dict(event.schema),
                version=event.version,
                reliable=event.delivery == "reliable",
                priority=event.priority,
            )

    def register(
        self,
        name: str,
        schema: dict[str, Any],
        *,
        version: int = 1,
        reliable: bool = True,
        priority: int = 0,
        summary: str = "",
    ) -> EventType:
        """Add an event type; its schema is compiled now."""
        if name in self._types:
            raise ValueError(f"event type {name!r} is already registered")
        event = EventType(
            name, version, reliable, priority, CompiledSchema(schema), summary
        )
        self._types[name] = event
        return event

    def get(self, name: str) -> EventType | None:
        return self._types.get(name)

    def __iter__(self) -> Iterator[EventType]:
        return iter(sorted(self._types.values(), key=lambda e: e.name))
