"""The embedded state store: the entities of every zone in memory.

Each write changes the zone and publishes its batch on the hub's bus before
it returns, so the order of the publications on a zone's channel is the
order of the calls, as with the Redis store's scripts. Field values are
copied in and out (lists included), so neither the writer nor a reader of
:meth:`MemoryStateStore.load_zone` can change what the store holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from rtgateway.backends.interfaces import IBus, IStateStore, StoredEntity, ZoneFull
from rtgateway.backends.keys import zone_channel
from rtgateway.backends.zonefeed import encode_zone_batch
from rtgateway.wire.errors import Conflict, NotFound


@dataclass(slots=True)
class _Entity:
    version: int
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class StateHub:
    """The zones shared by the gateways of one process: zone -> id -> entity."""

    zones: dict[str, dict[str, _Entity]] = field(default_factory=dict)


def _copy(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        name: list(value) if isinstance(value, list | tuple) else value
        for name, value in fields.items()
    }


@implementer(IStateStore)
class MemoryStateStore:
    """An :class:`IStateStore` in a :class:`StateHub`, publishing on ``bus``."""

    def __init__(self, hub: StateHub, bus: IBus) -> None:
        self._hub = hub
        self._bus = bus

    def _remove(self, zone: str, entity_id: str) -> None:
        entities = self._hub.zones.get(zone)
        if entities is not None:
            entities.pop(entity_id, None)
            if not entities:
                del self._hub.zones[zone]

    def load_zone(self, zone: str) -> Deferred:
        entities = self._hub.zones.get(zone, {})
        return succeed(
            {
                entity_id: StoredEntity(entity_id, entity.version, _copy(entity.fields))
                for entity_id, entity in entities.items()
            }
        )

    def write_players(
        self,
        zone: str,
        gateway_id: str,
        changed: dict[str, tuple[int, dict[str, Any]]],
        removed: list[str],
    ) -> Deferred:
        if not changed and not removed:
            return succeed(None)
        entities = self._hub.zones.setdefault(zone, {})
        for entity_id, (version, fields) in changed.items():
            entity = entities.setdefault(entity_id, _Entity(version))
            entity.version = version
            entity.fields.update(_copy(fields))
        for entity_id in removed:
            self._remove(zone, entity_id)
        message = encode_zone_batch(gateway_id, changed, removed)
        self._bus.publish(zone_channel(zone), message)
        return succeed(None)

    def world_set(
        self,
        zone: str,
        entity_id: str,
        fields: dict[str, Any],
        expected_version: int | None,
        gateway_id: str,
        max_entities: int,
    ) -> Deferred:
        entities = self._hub.zones.get(zone, {})
        entity = entities.get(entity_id)
        current = entity.version if entity is not None else 0
        if expected_version is not None and expected_version != current:
            return fail(Conflict(current))
        if entity is None:
            if len(entities) >= max_entities:
                return fail(ZoneFull(max_entities))
            entity = self._hub.zones.setdefault(zone, {})[entity_id] = _Entity(0)
        entity.version += 1
        entity.fields.update(_copy(fields))
        message = encode_zone_batch(
            gateway_id, {entity_id: (entity.version, fields)}, []
        )
        self._bus.publish(zone_channel(zone), message)
        return succeed(entity.version)

    def world_remove(
        self,
        zone: str,
        entity_id: str,
        expected_version: int | None,
        gateway_id: str,
    ) -> Deferred:
        entity = self._hub.zones.get(zone, {}).get(entity_id)
        if entity is None:
            return fail(NotFound())
        if expected_version is not None and expected_version != entity.version:
            return fail(Conflict(entity.version))
        self._remove(zone, entity_id)
        message = encode_zone_batch(gateway_id, {}, [entity_id])
        self._bus.publish(zone_channel(zone), message)
        return succeed(None)
