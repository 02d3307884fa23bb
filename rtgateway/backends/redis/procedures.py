"""The Redis procedure registry: one sorted set per procedure.

Layout (names in :mod:`.keyspace`):

- ``rtgw:rpc:{<procedure>}``, a sorted set: gateway id -> the time (ms,
  the Redis server's clock) its entry runs out. Renewing prunes the
  members that ran out and sets the key's PX TTL to the entry's, so a
  procedure whose gateways all died leaves no key behind.
- ``rtgw:rpc:{<procedure>}:description``, a string: the JSON a callee
  gave of the procedure (its schemas), with the PX TTL of the entry that
  last carried it; gone with the procedure's last entry.
- ``rtgw:rpc:names``, a sorted set: procedure -> when its last entry runs
  out (``ZADD GT``), for ``rpc.discover``; the registry's one cluster-wide
  key. Finding the callees of a call never reads it.

Every time is taken from ``TIME`` inside the scripts, so gateways whose
clocks disagree still agree on which entries are live.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from zope.interface import implementer

from rtgateway.backends.interfaces import IProcedureRegistry
from rtgateway.backends.redis.client import RedisClient, Script
from rtgateway.backends.redis.keyspace import (
    PROCEDURE_NAMES_KEY,
    procedure_description_key,
    procedure_key,
)

_NOW = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
"""

# KEYS: procedure set, names, description. ARGV: gateway, procedure, ttl ms,
# and the description when the gateway has one.
ADVERTISE = Script(
    _NOW
    + """
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], 'GT', now + ttl, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if ARGV[4] then
  redis.call('SET', KEYS[3], ARGV[4], 'PX', ttl)
end
"""
)

# KEYS: procedure set, names, description. ARGV: gateway, procedure. The name leaves the
# index with its last live entry.
WITHDRAW = Script(
    _NOW
    + """
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf') == 0 then
  redis.call('DEL', KEYS[1], KEYS[3])
  redis.call('ZREM', KEYS[2], ARGV[2])
end
"""
)

# KEYS: one sorted set. The members whose score is still in the future.
LIVE = Script(
    _NOW
    + """
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
"""
)


@implementer(IProcedureRegistry)
class RedisProcedureRegistry:
    """The registry in Redis; every call is one script per procedure."""

    def __init__(self, client: RedisClient) -> None:
        self._client = client

    def advertise(
        self,
        procedures: list[str],
        gateway_id: str,
        ttl_ms: int,
        descriptions: dict[str, bytes] | None = None,
    ) -> Deferred:
        described = descriptions or {}
        calls = [
            self._client.evaluate(
                ADVERTISE,
                _keys(procedure),
                [gateway_id, procedure, int(ttl_ms)]
                + ([described[procedure]] if procedure in described else []),
            )
            for procedure in procedures
        ]
        return gatherResults(calls, consumeErrors=True).addCallbacks(
            lambda _: None, _first_error
        )

    def withdraw(self, procedure: str, gateway_id: str) -> Deferred:
        args = [gateway_id, procedure]
        call = self._client.evaluate(WITHDRAW, _keys(procedure), args)
        return call.addCallback(lambda _: None)

    def gateways(self, procedure: str) -> Deferred:
        call = self._client.evaluate(LIVE, [procedure_key(procedure)], [])
        return call.addCallback(_names)

    def procedures(self) -> Deferred:
        call = self._client.evaluate(LIVE, [PROCEDURE_NAMES_KEY], [])
        return call.addCallback(_names)

    def descriptions(self, procedures: list[str]) -> Deferred:
        calls = [
            self._client.execute("GET", procedure_description_key(procedure))
            for procedure in procedures
        ]
        return gatherResults(calls, consumeErrors=True).addCallbacks(
            lambda found: {
                procedure: description
                for procedure, description in zip(procedures, found, strict=True)
                if description is not None
            },
            _first_error,
        )


def _keys(procedure: str) -> list[str]:
    return [
        procedure_key(procedure),
        PROCEDURE_NAMES_KEY,
        procedure_description_key(procedure),
    ]


def _names(reply: list[bytes]) -> list[str]:
    return sorted(member.decode() for member in reply)


def _first_error(failure: Any) -> Any:
    """gatherResults wraps the failure; callers expect the backend's own."""
    return failure.value.subFailure
