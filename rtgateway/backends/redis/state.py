"""The Redis state store: a set of ids and a hash per entity, per zone.

Layout (names in :mod:`.keyspace`), every key tagged by its zone so that a
zone lives on one shard:

- ``rtgw:st:{<zone>}:ids``, a set: the ids of the zone's entities.
- ``rtgw:st:{<zone>}:e:<entity id>``, a hash: ``_v`` the version, and
  ``f:<name>`` per field holding the field's value as JSON (encoded by
  orjson, which writes the shortest decimal that reads back as the same
  float). Merging changed fields is then one HSET, with no JSON to decode
  in Lua, and numbers are never touched by Lua, whose cjson would print
  them with 14 significant digits.

Each write is one script that changes the zone's keys and publishes the
batch (:mod:`..zonefeed`) on the zone's channel, so the order of the
publications is the order in which Redis ran the writes. ``write_players``
and ``world_remove`` publish bytes that Python encoded; ``world_set``
splices the version it assigns between JSON pieces that Python encoded
(the gateway id, the entity id, the changed fields), building exactly the
bytes of :func:`~rtgateway.backends.zonefeed.encode_zone_batch`.
With the NATS bus the scripts are given no channel and publish nothing:
the store publishes the batch on NATS once Redis has answered, so the
writes of one gateway keep their order, while those of several may
interleave. Replicas keep the newer version of an entity, so a
``world_set`` then publishes every field of the entity (its script returns
them), not only those it changed: an older write arriving late changes
nothing, and the newer one it lost to is complete.

``load_zone`` is one script too; it builds the entity keys from the ids it
reads, all of them under the zone's tag.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from rtgateway.backends.interfaces import IBus, IStateStore, StoredEntity, ZoneFull
from rtgateway.backends.keys import zone_channel
from rtgateway.backends.redis.client import RedisClient, Script
from rtgateway.backends.redis.keyspace import (
    state_entity_key,
    state_entity_prefix,
    state_ids_key,
)
from rtgateway.backends.zonefeed import encode_zone_batch
from rtgateway.wire.errors import Conflict, NotFound

VERSION = b"_v"
FIELD = "f:"

# KEYS: ids. ARGV: entity key prefix. Returns {id, {HGETALL}, id, ...}.
LOAD = Script("""
local reply = {}
for i, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  reply[2 * i - 1] = id
  reply[2 * i] = redis.call('HGETALL', ARGV[1] .. id)
end
return reply
""")

# KEYS: ids, the changed entities, the removed entities. ARGV: channel,
# message, number of changed entities; then per changed entity its id,
# version, number of fields and field, value pairs; then the removed ids.
WRITE_PLAYERS = Script("""
local changed = tonumber(ARGV[3])
local a = 4
for k = 2, changed + 1 do
  local last = a + 2 + 2 * tonumber(ARGV[a + 2])
  redis.call('HSET', KEYS[k], '_v', ARGV[a + 1], unpack(ARGV, a + 3, last))
  redis.call('SADD', KEYS[1], ARGV[a])
  a = last + 1
end
for k = changed + 2, #KEYS do
  redis.call('DEL', KEYS[k])
  redis.call('SREM', KEYS[1], ARGV[a])
  a = a + 1
end
if ARGV[1] ~= '' then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return 1
""")

# KEYS: ids, entity. ARGV: expected version ('' for none), max entities,
# entity id, channel, then as JSON the gateway id, the entity id and the
# fields; then field, value pairs. Returns {1, new version}, {0, current
# version} on a conflict or {-1, 0} when the zone is full. Without a
# channel ('') it publishes nothing and returns the entity's hash too.
WORLD_SET = Script("""
local current = tonumber(redis.call('HGET', KEYS[2], '_v') or '0')
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= current then return {0, current} end
if current == 0 then
  if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return {-1, 0} end
  redis.call('SADD', KEYS[1], ARGV[3])
end
local version = redis.call('HINCRBY', KEYS[2], '_v', 1)
if #ARGV > 7 then redis.call('HSET', KEYS[2], unpack(ARGV, 8)) end
if ARGV[4] == '' then return {1, version, redis.call('HGETALL', KEYS[2])} end
redis.call('PUBLISH', ARGV[4], '{"g":' .. ARGV[5] .. ',"e":{' .. ARGV[6] ..
           ':[' .. string.format('%d', version) .. ',' .. ARGV[7] .. ']},"r":[]}')
return {1, version}
""")

# KEYS: ids, entity. ARGV: expected version ('' for none), entity id,
# channel, message. Returns {1, version}, {0, current version} on a
# conflict or {-1, 0} when the entity does not exist.
WORLD_REMOVE = Script("""
local current = tonumber(redis.call('HGET', KEYS[2], '_v') or '0')
if current == 0 then return {-1, 0} end
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= current then return {0, current} end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return {1, current}
""")


def encode_fields(fields: dict[str, Any]) -> list[Any]:
    """The hash fields of an entity's fields, as a flat field, value list."""
    flat: list[Any] = []
    for name, value in fields.items():
        flat += [FIELD + name, orjson.dumps(value)]
    return flat


def decode_entity(entity_id: str, flat: list[bytes]) -> StoredEntity | None:
    """The entity from its HGETALL reply; None for a hash that is gone."""
    version = 0
    fields: dict[str, Any] = {}
    for raw_name, value in zip(flat[::2], flat[1::2], strict=True):
        if raw_name == VERSION:
            version = int(value)
        else:
            fields[raw_name.decode().removeprefix(FIELD)] = orjson.loads(value)
    return StoredEntity(entity_id, version, fields) if version else None


def _expected(expected_version: int | None) -> str | int:
    return "" if expected_version is None else expected_version


@implementer(IStateStore)
class RedisStateStore:
    """The zones' entities in Redis, shared by every gateway.

    ``outside`` is the bus to publish batches on when it is not Redis's own
    pub/sub (None: the scripts publish them).
    """

    log = Logger()

    def __init__(self, client: RedisClient, outside: IBus | None = None) -> None:
        self._client = client
        self._outside = outside

    def _channel(self, zone: str) -> str:
        """The channel the scripts publish on; '' when the store publishes."""
        return "" if self._outside is not None else zone_channel(zone)

    def _publish(self, reply: Any, zone: str, message: bytes) -> Any:
        """Publish ``message`` on the outside bus, once Redis has answered."""
        if self._outside is not None:
            self._outside.publish(zone_channel(zone), message).addErrback(
                lambda failure: self.log.warn(
                    "publishing a batch of {zone} failed ({error})",
                    zone=zone,
                    error=failure.value,
                )
            )
        return reply

    def load_zone(self, zone: str) -> Deferred:
        call = self._client.evaluate(
            LOAD, [state_ids_key(zone)], [state_entity_prefix(zone)]
        )
        return call.addCallback(self._entities)

    @staticmethod
    def _entities(reply: list) -> dict[str, StoredEntity]:
        entities = {}
        for raw_id, flat in zip(reply[::2], reply[1::2], strict=True):
            entity = decode_entity(raw_id.decode(), flat)
            if entity is not None:
                entities[entity.entity_id] = entity
        return entities

    def write_players(
        self,
        zone: str,
        gateway_id: str,
        changed: dict[str, tuple[int, dict[str, Any]]],
        removed: list[str],
    ) -> Deferred:
        if not changed and not removed:
            return succeed(None)
        keys = [state_ids_key(zone)]
        message = encode_zone_batch(gateway_id, changed, removed)
        args: list[Any] = [self._channel(zone), message, len(changed)]
        for entity_id, (version, fields) in changed.items():
            keys.append(state_entity_key(zone, entity_id))
            args += [entity_id, version, len(fields), *encode_fields(fields)]
        keys += [state_entity_key(zone, entity_id) for entity_id in removed]
        args += removed
        call = self._client.evaluate(WRITE_PLAYERS, keys, args)
        return call.addCallback(self._publish, zone, message).addCallback(
            lambda _: None
        )

    def world_set(
        self,
        zone: str,
        entity_id: str,
        fields: dict[str, Any],
        expected_version: int | None,
        gateway_id: str,
        max_entities: int,
    ) -> Deferred:
        keys = [state_ids_key(zone), state_entity_key(zone, entity_id)]
        args = [
            _expected(expected_version),
            max_entities,
            entity_id,
            self._channel(zone),
            orjson.dumps(gateway_id),
            orjson.dumps(entity_id),
            orjson.dumps(fields),
            *encode_fields(fields),
        ]
        call = self._client.evaluate(WORLD_SET, keys, args)
        return call.addCallback(self._set, zone, entity_id, gateway_id, max_entities)

    def _set(
        self,
        reply: list,
        zone: str,
        entity_id: str,
        gateway_id: str,
        max_entities: int,
    ) -> int:
        status, version = reply[:2]
        if status == 0:
            raise Conflict(version)
        if status < 0:
            raise ZoneFull(max_entities)
        if len(reply) > 2:  # the whole entity, for the outside bus
            entity = decode_entity(entity_id, reply[2])
            assert entity is not None
            batch = {entity_id: (version, entity.fields)}
            self._publish(None, zone, encode_zone_batch(gateway_id, batch, []))
        return version

    def world_remove(
        self,
        zone: str,
        entity_id: str,
        expected_version: int | None,
        gateway_id: str,
    ) -> Deferred:
        keys = [state_ids_key(zone), state_entity_key(zone, entity_id)]
        message = encode_zone_batch(gateway_id, {}, [entity_id])
        args = [_expected(expected_version), entity_id, self._channel(zone), message]
        call = self._client.evaluate(WORLD_REMOVE, keys, args)
        return call.addCallback(self._removed).addCallback(self._publish, zone, message)

    @staticmethod
    def _removed(reply: list) -> None:
        status, version = reply
        if status == 0:
            raise Conflict(version)
        if status < 0:
            raise NotFound()
