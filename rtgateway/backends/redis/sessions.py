"""The Redis session store: one hash per session, found by resume digest.

Layout (names in :mod:`.keyspace`):

- ``rtgw:s:{<session id>}``, a hash: ``player_id``, ``created_ms``,
  ``resume_digest``, and while attached ``gateway_id`` and
  ``connection_id``, while detached ``detached_ms``; one field per
  subscription (``sub:<topic>``: JSON ``[offset, epoch]`` or ``null``), per
  metadata key (``meta:<key>``: JSON) and per counter (``stat:<name>``: a
  decimal integer). A field per item lets each update be one atomic
  HSET/HDEL/HINCRBY, with no read-modify-write to lose concurrent changes.
- ``rtgw:d:{<digest>}``, a string: the session id of a resume-token digest.
- ``rtgw:p:{<player id>}:kick``, a string: the player's last kick, in ms.

The session hash and its digest key live and die together: ``detach``
gives both the same PEXPIRE, ``attach`` PERSISTs both and ``end`` deletes
both, each in one Lua script, so a session is never half there. Updates go
through scripts that first check that the session exists, because HSET or
HINCRBY on a vanished session would create a partial hash that never
expires.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from rtgateway.backends.interfaces import ISessionStore, Position, SessionRecord
from rtgateway.backends.redis.client import RedisClient, Script
from rtgateway.backends.redis.keyspace import (
    DIGEST_KEY_PREFIX,
    KEY_SUFFIX,
    SESSION_KEY_PREFIX,
    digest_key,
    kick_key,
    session_key,
)

# KEYS: session, digest. ARGV: session id, then field, value pairs.
CREATE = Script("""
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('SET', KEYS[2], ARGV[1])
return 1
""")

# KEYS: digest. ARGV: session key prefix, suffix, the digest.
# The session id, or nil when the mapping is stale or the session is gone.
FIND = Script("""
local session_id = redis.call('GET', KEYS[1])
if not session_id then return false end
local session = ARGV[1] .. session_id .. ARGV[2]
if redis.call('HGET', session, 'resume_digest') ~= ARGV[3] then return false end
return session_id
""")

# KEYS: session. ARGV: gateway id, connection id, digest key prefix, suffix.
# The fields before the change, or nil when the session does not exist.
ATTACH = Script("""
local before = redis.call('HGETALL', KEYS[1])
if #before == 0 then return false end
redis.call('HSET', KEYS[1], 'gateway_id', ARGV[1], 'connection_id', ARGV[2])
redis.call('HDEL', KEYS[1], 'detached_ms')
redis.call('PERSIST', KEYS[1])
local digest = redis.call('HGET', KEYS[1], 'resume_digest')
if digest then redis.call('PERSIST', ARGV[3] .. digest .. ARGV[4]) end
return before
""")

# KEYS: session. ARGV: connection id, now ms, window ms, digest key prefix,
# suffix. 1 when the connection owned the session and it is now detached.
DETACH = Script("""
if redis.call('HGET', KEYS[1], 'connection_id') ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'gateway_id', 'connection_id')
redis.call('HSET', KEYS[1], 'detached_ms', ARGV[2], 'last_active_ms', ARGV[2])
local digest = redis.call('HGET', KEYS[1], 'resume_digest')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if digest then redis.call('PEXPIRE', ARGV[4] .. digest .. ARGV[5], ARGV[3]) end
return 1
""")

# KEYS: session. ARGV: field, value pairs. HSET keeps the key's TTL.
UPDATE = Script("""
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
""")

# KEYS: session. ARGV: field, increment pairs.
ADD = Script("""
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 1, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
""")

# KEYS: session. ARGV: session id, digest key prefix, suffix.
# The last fields, or nil when already gone: read and delete are one step,
# so exactly one of concurrent callers gets them.
END = Script("""
local record = redis.call('HGETALL', KEYS[1])
if #record == 0 then return false end
local digest = redis.call('HGET', KEYS[1], 'resume_digest')
redis.call('DEL', KEYS[1])
if digest then
  local key = ARGV[2] .. digest .. ARGV[3]
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
return record
""")

SUBSCRIPTION = "sub:"
METADATA = "meta:"
STAT = "stat:"


def encode_position(position: Position | None) -> bytes:
    """A subscription's position as JSON: ``[offset, epoch]`` or ``null``."""
    if position is None:
        return b"null"
    return orjson.dumps([position.offset, position.epoch])


def decode_position(raw: bytes) -> Position | None:
    value = orjson.loads(raw)
    return None if value is None else Position(value[0], value[1])


def encode_record(record: SessionRecord) -> list[Any]:
    """The hash fields of a record, as a flat field, value list."""
    fields: list[Any] = [
        "player_id", record.player_id,
        "created_ms", record.created_ms,
        "resume_digest", record.resume_digest,
    ]  # fmt: skip
    for name in ("gateway_id", "connection_id", "detached_ms", "last_active_ms"):
        value = getattr(record, name)
        if value is not None:
            fields += [name, value]
    for topic, position in record.subscriptions.items():
        fields += [SUBSCRIPTION + topic, encode_position(position)]
    for key, value in record.metadata.items():
        fields += [METADATA + key, orjson.dumps(value)]
    for name, count in record.stats.items():
        fields += [STAT + name, int(count)]
    return fields


def decode_record(session_id: str, flat: list[bytes]) -> SessionRecord:
    """The record of a session from its HGETALL reply."""
    fields: dict[str, str] = {}
    subscriptions: dict[str, Position | None] = {}
    metadata: dict[str, Any] = {}
    stats: dict[str, int] = {}
    for raw_name, value in zip(flat[::2], flat[1::2], strict=True):
        name = raw_name.decode()
        if name.startswith(SUBSCRIPTION):
            subscriptions[name.removeprefix(SUBSCRIPTION)] = decode_position(value)
        elif name.startswith(METADATA):
            metadata[name.removeprefix(METADATA)] = orjson.loads(value)
        elif name.startswith(STAT):
            stats[name.removeprefix(STAT)] = int(value)
        else:
            fields[name] = value.decode()
    detached_ms = fields.get("detached_ms")
    last_active_ms = fields.get("last_active_ms")
    return SessionRecord(
        session_id=session_id,
        player_id=fields["player_id"],
        created_ms=int(fields["created_ms"]),
        resume_digest=fields["resume_digest"],
        gateway_id=fields.get("gateway_id"),
        connection_id=fields.get("connection_id"),
        detached_ms=None if detached_ms is None else int(detached_ms),
        last_active_ms=None if last_active_ms is None else int(last_active_ms),
        subscriptions=subscriptions,
        metadata=metadata,
        stats=stats,
    )


def _none(_: object) -> None:
    return None


def _record(flat: list[bytes] | None, session_id: str) -> SessionRecord | None:
    return decode_record(session_id, flat) if flat else None


@implementer(ISessionStore)
class RedisSessionStore:
    """Sessions in Redis hashes, readable and resumable from every gateway."""

    def __init__(self, client: RedisClient) -> None:
        self._client = client

    def create(self, record: SessionRecord) -> Deferred:
        keys = [session_key(record.session_id), digest_key(record.resume_digest)]
        args = [record.session_id, *encode_record(record)]
        return self._client.evaluate(CREATE, keys, args).addCallback(_none)

    def load(self, session_id: str) -> Deferred:
        call = self._client.execute("HGETALL", session_key(session_id))
        return call.addCallback(_record, session_id)

    def find(self, resume_digest: str) -> Deferred:
        args = [SESSION_KEY_PREFIX, KEY_SUFFIX, resume_digest]
        call = self._client.evaluate(FIND, [digest_key(resume_digest)], args)
        return call.addCallback(lambda found: found.decode() if found else None)

    def attach(self, session_id: str, gateway_id: str, connection_id: str) -> Deferred:
        args = [gateway_id, connection_id, DIGEST_KEY_PREFIX, KEY_SUFFIX]
        call = self._client.evaluate(ATTACH, [session_key(session_id)], args)
        return call.addCallback(_record, session_id)

    def detach(
        self, session_id: str, connection_id: str, now_ms: int, window_ms: int
    ) -> Deferred:
        args = [connection_id, now_ms, window_ms, DIGEST_KEY_PREFIX, KEY_SUFFIX]
        call = self._client.evaluate(DETACH, [session_key(session_id)], args)
        return call.addCallback(bool)

    def set_subscription(
        self, session_id: str, topic: str, position: Position | None
    ) -> Deferred:
        args = [SUBSCRIPTION + topic, encode_position(position)]
        call = self._client.evaluate(UPDATE, [session_key(session_id)], args)
        return call.addCallback(_none)

    def drop_subscription(self, session_id: str, topic: str) -> Deferred:
        call = self._client.execute(
            "HDEL", session_key(session_id), SUBSCRIPTION + topic
        )
        return call.addCallback(_none)

    def set_metadata(self, session_id: str, key: str, value: Any) -> Deferred:
        args = [METADATA + key, orjson.dumps(value)]
        call = self._client.evaluate(UPDATE, [session_key(session_id)], args)
        return call.addCallback(_none)

    def add_stats(self, session_id: str, stats: dict[str, int]) -> Deferred:
        args: list[Any] = []
        for name, count in stats.items():
            args += [STAT + name, int(count)]
        if not args:
            return succeed(None)
        call = self._client.evaluate(ADD, [session_key(session_id)], args)
        return call.addCallback(_none)

    def end(self, session_id: str) -> Deferred:
        args = [session_id, DIGEST_KEY_PREFIX, KEY_SUFFIX]
        call = self._client.evaluate(END, [session_key(session_id)], args)
        return call.addCallback(_record, session_id)

    def kick(self, player_id: str, now_ms: int) -> Deferred:
        call = self._client.execute("SET", kick_key(player_id), now_ms)
        return call.addCallback(_none)

    def kicked_at(self, player_id: str) -> Deferred:
        call = self._client.execute("GET", kick_key(player_id))
        return call.addCallback(lambda raw: None if raw is None else int(raw))
