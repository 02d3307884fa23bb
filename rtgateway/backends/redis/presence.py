"""The Redis presence store: players, their live sessions, zones and gateways.

Layout (names in :mod:`.keyspace`):

- ``rtgw:pr:{<player>}``, a hash: ``status``, ``zone``, ``region``,
  ``activity``, ``last_seen_ms`` (decimal), ``online`` (``1``/``0``). A
  field is absent while its value is None (a status never set reads as
  ``online``), so None and ``""`` round-trip as themselves. It never
  expires: a player's ``last_seen_ms`` outlives its sessions, as in the
  memory store.
- ``rtgw:pr:{<player>}:s``, a hash of the player's live sessions: session
  id -> gateway id. The player is online while it is not empty.
- ``rtgw:gw:{<gateway>}:s``, a set of ``<player>|<session>``: the sessions
  live on a gateway, so that a dead gateway's sessions are found without a
  scan of every player. Session ids never contain ``|`` (they are
  URL-safe tokens), so a member is split at its last ``|`` whatever the
  player id holds.
- ``rtgw:gw:{<gateway>}:alive``, a string with a PX TTL: the gateway's
  liveness, refreshed by :meth:`RedisPresenceStore.gateway_alive`.
- ``rtgw:gateways``, a set of gateway ids: the gateways to watch.
- ``rtgw:gw:{<gateway>}:claimed:<claim id>``: a dead gateway's session
  set, renamed by the claim that took it while it is being drained.
- ``rtgw:z:{<zone>}``, a sorted set of the zone's visible players, every
  score 0, so that members sort by id (bytes, which is code point order
  for UTF-8, the memory store's order): a page is ZRANGEBYLEX from
  ``(cursor`` with a LIMIT, the size a ZCARD, never a full read.

Every write is one Lua script: reading the record as it was, applying the
change, writing the fields that changed, and moving the player in or out of
its zone listing, so ``before`` and ``after`` are exact even when two
gateways change one player at once. The rules are the memory store's
(:mod:`rtgateway.backends.memory_presence`), written once in :data:`PRELUDE`
and shared by the scripts. Records come back as JSON (``cjson``): one bulk
string is far cheaper to read in Python than thousands of small ones.

A dead gateway is claimed in one script (off the list, its session set
renamed to the claim's key: one caller only), then drained
:data:`DRAIN_BATCH` sessions per script, so that the death of a gateway
with tens of thousands of sessions never holds Redis for long. The claim
is at most once: a claimer that loses Redis half-way leaves the rest of
its claim to expire. Finding dead gateways reads every listed gateway's
alive key, O(gateways) per call (about 1.5 ms of Redis for 1,000).

One Redis, not Redis Cluster: the scripts of ``connect``, ``disconnect``,
``update`` and the claim touch a player's keys, gateway sets and zone
listings together, and build some of those keys from ids read in Redis
(the previous gateway of a session, the zone of a player), which Cluster
forbids (cross-slot, undeclared keys); ``get`` is one script over up to 500
player hashes. Sharding would require making the player the unit of
atomicity: one script on the player's shard that changes the record and
the session map and returns what moved (zone left and joined, gateway left
and joined); then the zone ZREM/ZADD and gateway SREM/SADD as separate
idempotent commands on their own shards, with a repair pass for a gateway
that dies in between (the drain already re-checks each session against the
player's map, so stale gateway-set members are harmless); ``get`` as one
pipeline of HMGETs per shard; and ``rtgw:gateways`` on one shard (or one
per shard) for the claim.
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson
from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from rtgateway.backends.interfaces import IPresenceStore, PresenceChange, PresenceRecord
from rtgateway.backends.redis.client import RedisClient, Script
from rtgateway.backends.redis.keyspace import (
    GATEWAY_ALIVE_SUFFIX,
    GATEWAY_CLAIM_SUFFIX,
    GATEWAY_KEY_PREFIX,
    GATEWAY_SESSIONS_SUFFIX,
    GATEWAYS_KEY,
    KEY_SUFFIX,
    PRESENCE_KEY_PREFIX,
    PRESENCE_SESSIONS_SUFFIX,
    ZONE_KEY_PREFIX,
    gateway_alive_key,
    gateway_claim_key,
    gateway_sessions_key,
    presence_key,
    presence_sessions_key,
    zone_key,
)

#: The fields ``update`` may change, as the interface names them.
CHANGEABLE = ("status", "zone", "region", "activity")

#: Sessions of a dead gateway checked per script: each script then holds
#: Redis for a few ms, where one script for a whole 10,000-session gateway
#: would stall every gateway of the cluster for ~50 ms.
DRAIN_BATCH = 500

#: How long a claimed gateway's sessions wait to be drained: only a claimer
#: that failed half-way (Redis lost) leaves them, and nobody else will drain
#: them (a claim is at most once), so they must not stay for ever.
CLAIM_TTL_MS = 10 * 60 * 1000


def _lua_string(text: str) -> str:
    """A key prefix or suffix as a Lua literal (they are plain ASCII)."""
    if "'" in text or "\\" in text or "\n" in text:
        raise ValueError(f"not a plain Lua string: {text!r}")
    return f"'{text}'"


# The key names the scripts build from ids they read, and the rules of a
# presence change, shared by every writing script. A record is a Lua table
# of the hash's fields (nil: absent, None in Python).
PRELUDE = f"""
local GATEWAY, GATEWAY_SESSIONS = {_lua_string(GATEWAY_KEY_PREFIX)}, \
{_lua_string(GATEWAY_SESSIONS_SUFFIX)}
local GATEWAY_ALIVE = {_lua_string(GATEWAY_ALIVE_SUFFIX)}
local GATEWAY_CLAIM = {_lua_string(GATEWAY_CLAIM_SUFFIX)}
local PLAYER, PLAYER_SESSIONS = {_lua_string(PRESENCE_KEY_PREFIX)}, \
{_lua_string(PRESENCE_SESSIONS_SUFFIX)}
local ZONE, SUFFIX = {_lua_string(ZONE_KEY_PREFIX)}, {_lua_string(KEY_SUFFIX)}
local FIELDS = {{'status', 'zone', 'region', 'activity', 'last_seen_ms', 'online'}}

local function load(key)
  local flat = redis.call('HGETALL', key)
  local record = {{}}
  for i = 1, #flat, 2 do record[flat[i]] = flat[i + 1] end
  return record
end

local function copy(record)
  local made = {{}}
  for name, value in pairs(record) do made[name] = value end
  return made
end

-- A record as the list of its FIELDS' values, false for absent: the shape
-- of an HMGET of FIELDS, which is what every script replies (as JSON).
local function pack(record)
  local out = {{}}
  for i, name in ipairs(FIELDS) do out[i] = record[name] or false end
  return out
end

local function visible(record)
  return record.online == '1' and record.status ~= 'invisible'
end

-- Write after over before in the player's hash, keep the zone listing in
-- step with visibility (memory_presence._store), reply [before, after].
local function store(key, player, before, after)
  local set, del = {{}}, {{}}
  for _, name in ipairs(FIELDS) do
    local value = after[name]
    if value ~= before[name] then
      if value == nil then
        del[#del + 1] = name
      else
        set[#set + 1] = name
        set[#set + 1] = value
      end
    end
  end
  if #set > 0 then redis.call('HSET', key, unpack(set)) end
  if #del > 0 then redis.call('HDEL', key, unpack(del)) end
  local was, now = visible(before), visible(after)
  local moved = after.zone ~= before.zone
  if was and before.zone and (not now or moved) then
    redis.call('ZREM', ZONE .. before.zone .. SUFFIX, player)
  end
  if now and after.zone and (not was or moved) then
    redis.call('ZADD', ZONE .. after.zone .. SUFFIX, 0, player)
  end
  return cjson.encode({{pack(before), pack(after)}})
end
"""

# KEYS: player hash, player sessions, gateway set. ARGV: player, session,
# gateway. Maps the session to the gateway (taking it out of its previous
# gateway's set: a resume elsewhere) and marks the player online.
CONNECT = Script(
    PRELUDE
    + """
local member = ARGV[1] .. '|' .. ARGV[2]
local previous = redis.call('HGET', KEYS[2], ARGV[2])
if previous and previous ~= ARGV[3] then
  redis.call('SREM', GATEWAY .. previous .. GATEWAY_SESSIONS, member)
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('SADD', KEYS[3], member)
local before = load(KEYS[1])
local after = copy(before)
if before.online ~= '1' and after.status ~= 'invisible' then after.status = nil end
after.online = '1'
return store(KEYS[1], ARGV[1], before, after)
"""
)

# KEYS: player hash, player sessions. ARGV: player, session, last seen ms.
# Forgets the session; the last one takes the player offline.
DISCONNECT = Script(
    PRELUDE
    + """
local gateway = redis.call('HGET', KEYS[2], ARGV[2])
if ARGV[4] ~= '' and gateway ~= ARGV[4] then
  local unchanged = load(KEYS[1])
  return cjson.encode({pack(unchanged), pack(unchanged)})
end
if gateway then
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('SREM', GATEWAY .. gateway .. GATEWAY_SESSIONS, ARGV[1] .. '|' .. ARGV[2])
end
local before = load(KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 or before.online ~= '1' then
  return cjson.encode({pack(before), pack(before)})
end
local after = copy(before)
after.online = '0'
after.zone, after.activity = nil, nil
if before.status ~= 'invisible' then after.last_seen_ms = ARGV[3] end
return store(KEYS[1], ARGV[1], before, after)
"""
)

# KEYS: player hash. ARGV: player, now ms, then field, value pairs where a
# value is '' for None or '=' followed by the text (so '' stays a text).
UPDATE = Script(
    PRELUDE
    + """
local before = load(KEYS[1])
local after = copy(before)
for i = 3, #ARGV, 2 do
  local value = ARGV[i + 1]
  if value == '' then
    after[ARGV[i]] = nil
  else
    after[ARGV[i]] = string.sub(value, 2)
  end
end
if visible(before) and after.status == 'invisible' then after.last_seen_ms = ARGV[2] end
return store(KEYS[1], ARGV[1], before, after)
"""
)

# KEYS: player hashes. The records, in order: one round trip, one consistent
# snapshot, and one JSON string to parse rather than thousands of RESP bulk
# strings (the difference is ~10 ms of Python for 500 players).
GET = Script(
    PRELUDE
    + """
local records = {}
for i, key in ipairs(KEYS) do records[i] = redis.call('HMGET', key, unpack(FIELDS)) end
return cjson.encode(records)
"""
)

# KEYS: zone. ARGV: ZRANGEBYLEX min ('-' or '(' .. cursor), how many to read.
# {size, ids}: the size from ZCARD, the ids from the cursor on.
ZONE = Script("""
local ids = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], '+', 'LIMIT', 0, ARGV[2])
return {redis.call('ZCARD', KEYS[1]), ids}
""")

# KEYS: alive key, gateways set. ARGV: gateway, ttl ms. Both or neither: a
# gateway listed without its alive key would be claimed dead at once.
ALIVE = Script("""
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
return 1 - redis.call('SADD', KEYS[2], ARGV[1])
""")

# KEYS: gateways set. ARGV: claim id, claim TTL ms. Claims every listed
# gateway whose alive key is gone: takes it off the list and renames its
# session set to its claim key, in this one script, so exactly one caller
# gets each. Replies the ids of the claimed gateways that had sessions.
CLAIM = Script(
    PRELUDE
    + """
local claimed = {}
for _, gateway in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', GATEWAY .. gateway .. GATEWAY_ALIVE) == 0 then
    redis.call('SREM', KEYS[1], gateway)
    local sessions = GATEWAY .. gateway .. GATEWAY_SESSIONS
    if redis.call('EXISTS', sessions) == 1 then
      local claim = GATEWAY .. gateway .. GATEWAY_CLAIM .. ARGV[1]
      redis.call('RENAME', sessions, claim)
      redis.call('PEXPIRE', claim, ARGV[2])
      claimed[#claimed + 1] = gateway
    end
  end
end
return claimed
"""
)

# KEYS: claim key, the gateway's (new) session set. ARGV: gateway, count.
# Pops up to count members of a claim and replies {members left, player,
# session, player, session...} of those the player's session map still
# places on the gateway, and not live on it again (a gateway restarted under
# the same id while the claim is drained).
DRAIN = Script(
    PRELUDE
    + """
local reply = {0}
for _, member in ipairs(redis.call('SPOP', KEYS[1], ARGV[2])) do
  if redis.call('SISMEMBER', KEYS[2], member) == 0 then
    local bar = string.find(member, '|[^|]*$')
    local player = string.sub(member, 1, bar - 1)
    local session = string.sub(member, bar + 1)
    if redis.call('HGET', PLAYER .. player .. PLAYER_SESSIONS, session) == ARGV[1] then
      reply[#reply + 1] = player
      reply[#reply + 1] = session
    end
  end
end
reply[1] = redis.call('SCARD', KEYS[1])
return reply
"""
)


def decode_presence(player_id: str, values: list[Any]) -> PresenceRecord:
    """The record of a player from its packed fields (JSON, false: absent)."""
    status, zone, region, activity, last_seen, is_online = values
    return PresenceRecord(
        player_id=player_id,
        online=is_online == "1",
        status="online" if status is False else status,
        zone=None if zone is False else zone,
        region=None if region is False else region,
        activity=None if activity is False else activity,
        last_seen_ms=None if last_seen is False else int(last_seen),
    )


def _change(reply: bytes, player_id: str) -> PresenceChange:
    before, after = orjson.loads(reply)
    return PresenceChange(
        decode_presence(player_id, before), decode_presence(player_id, after)
    )


def encode_change(value: str | None) -> str:
    """A value of ``update`` for the script: '' for None, '=' and the text."""
    return "" if value is None else "=" + value


@implementer(IPresenceStore)
class RedisPresenceStore:
    """Presence in Redis, shared by every gateway.

    Each call is one script, so one round trip; a claim that found dead
    gateways then drains their sessions :data:`DRAIN_BATCH` at a time.
    """

    def __init__(self, client: RedisClient) -> None:
        self._client = client

    def connect(self, player_id: str, session_id: str, gateway_id: str) -> Deferred:
        keys = [
            presence_key(player_id),
            presence_sessions_key(player_id),
            gateway_sessions_key(gateway_id),
        ]
        call = self._client.evaluate(CONNECT, keys, [player_id, session_id, gateway_id])
        return call.addCallback(_change, player_id)

    def disconnect(
        self,
        player_id: str,
        session_id: str,
        last_seen_ms: int,
        gateway_id: str | None = None,
    ) -> Deferred:
        keys = [presence_key(player_id), presence_sessions_key(player_id)]
        args = [player_id, session_id, int(last_seen_ms), gateway_id or ""]
        call = self._client.evaluate(DISCONNECT, keys, args)
        return call.addCallback(_change, player_id)

    def sessions(self, player_id: str) -> Deferred:
        call = self._client.execute("HGETALL", presence_sessions_key(player_id))
        return call.addCallback(
            lambda flat: {
                flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)
            }
        )

    def update(self, player_id: str, changes: dict[str, Any], now_ms: int) -> Deferred:
        # Checked here, before any round trip: the script would store any
        # field, and a None status would read back as "online".
        unknown = set(changes) - set(CHANGEABLE)
        if unknown:
            raise TypeError(f"presence fields that cannot be changed: {unknown}")
        if "status" in changes and changes["status"] is None:
            raise ValueError("a presence status cannot be None")
        args: list[Any] = [player_id, int(now_ms)]
        for name, value in changes.items():
            args += [name, encode_change(value)]
        call = self._client.evaluate(UPDATE, [presence_key(player_id)], args)
        return call.addCallback(_change, player_id)

    def get(self, player_ids: list[str]) -> Deferred:
        ids = list(player_ids)
        if not ids:
            return succeed({})
        call = self._client.evaluate(GET, [presence_key(p) for p in ids], [])
        return call.addCallback(
            lambda reply: {
                p: decode_presence(p, values)
                for p, values in zip(ids, orjson.loads(reply), strict=True)
            }
        )

    def zone(self, zone: str, cursor: str | None, limit: int) -> Deferred:
        limit = max(limit, 0)
        start = "-" if cursor is None else "(" + cursor
        # One more than the page tells whether there is a next page.
        call = self._client.evaluate(ZONE, [zone_key(zone)], [start, limit + 1])
        return call.addCallback(self._page, limit)

    @staticmethod
    def _page(reply: list, limit: int) -> tuple[int, list[str], str | None]:
        count, raw = reply
        ids = [member.decode() for member in raw[:limit]]
        more = len(raw) > limit
        return count, ids, ids[-1] if more and ids else None

    def gateway_alive(self, gateway_id: str, ttl_ms: int) -> Deferred:
        keys = [gateway_alive_key(gateway_id), GATEWAYS_KEY]
        call = self._client.evaluate(ALIVE, keys, [gateway_id, int(ttl_ms)])
        return call.addCallback(lambda known: known == 1)

    def claim_dead_gateways(self) -> Deferred:
        return Deferred.fromCoroutine(self._claim_dead_gateways())

    async def _claim_dead_gateways(self) -> list[tuple[str, str, str]]:
        claim_id = secrets.token_hex(8)
        args = [claim_id, CLAIM_TTL_MS]
        claimed = await self._client.evaluate(CLAIM, [GATEWAYS_KEY], args)
        orphans: list[tuple[str, str, str]] = []
        for raw in claimed:
            gateway_id = raw.decode()
            keys = [gateway_claim_key(gateway_id, claim_id)]
            keys.append(gateway_sessions_key(gateway_id))
            left = 1
            while left:
                reply = await self._client.evaluate(
                    DRAIN, keys, [gateway_id, DRAIN_BATCH]
                )
                left, flat = reply[0], reply[1:]
                orphans += [
                    (gateway_id, player.decode(), session.decode())
                    for player, session in zip(flat[::2], flat[1::2], strict=True)
                ]
        return orphans
