"""The Redis topic history: a capped stream and a meta hash per topic.

``rtgw:t:{<topic>}:meta`` holds the topic's ``epoch`` and ``top`` offset;
``rtgw:t:{<topic>}:log`` is a stream whose entry ids are ``0-<offset>``
(one field ``b``, the body). Both keys share the topic's hash tag.

Appending is one Lua script, so that assigning the offset, storing the
event, trimming, refreshing the TTL and publishing the envelope on the
topic's bus channel happen as one step: publication order is offset order,
whatever the number of gateways appending to the topic.

The stream is trimmed with an exact ``MAXLEN``, not ``~``: the history
then holds exactly the last ``size`` events, like the memory one, and a
replay is recovered or not by the same rule (``~`` trims whole radix-tree
nodes only, keeping up to ~100 more events, which would make recovery
depend on Redis internals). Exact trimming costs one entry deletion per
append once the stream is full, which is cheap at history sizes.

A topic that has never had an event still has an epoch, created by the
first read: reading ``(0, E)`` and later replaying from it must work. The
interface gives ``read`` no TTL, so such an epoch-only topic expires after
:data:`EMPTY_TOPIC_TTL_MS`; the first append then sets the topic's own TTL.
With the NATS bus, the script is given no channel and publishes nothing:
the store publishes the same envelope on NATS once Redis has answered.
Appends of one gateway are then published in offset order; those of
several gateways may interleave, and the broker, which delivers by offset,
fills the gap from the history when a later offset arrives first. An append
whose publication is lost (the gateway died in between, NATS was down)
reaches subscribers with the next event of its topic, or when the bus
comes back.

When the meta hash is gone (expired, or Redis restarted without its data),
the next read or append starts a new epoch at offset 0 and drops any stream
left behind.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from rtgateway.backends.interfaces import IBus, ITopicHistory, Position, StoredEvent
from rtgateway.backends.keys import topic_channel
from rtgateway.backends.memory import envelope, new_epoch, replay
from rtgateway.backends.redis.client import RedisClient, Script
from rtgateway.backends.redis.keyspace import topic_log_key, topic_meta_key

#: How long the epoch of a topic that was read but never written is kept.
EMPTY_TOPIC_TTL_MS = 24 * 3600 * 1000

# KEYS: log, meta. ARGV: body, size, ttl ms, a new epoch, bus channel ('':
# none). Returns {offset, epoch}; publishes memory.envelope()'s bytes.
APPEND = Script("""
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[4]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'top', 0)
end
local offset = redis.call('HINCRBY', KEYS[2], 'top', 1)
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], string.format('0-%d', offset),
           'b', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
if ARGV[5] ~= '' then
  redis.call('PUBLISH', ARGV[5],
             string.format('%d|', offset) .. epoch .. '|' .. ARGV[1])
end
return {offset, epoch}
""")

# KEYS: log, meta. ARGV: a new epoch, its TTL ms, since offset, since epoch
# ('' for none), limit. Returns {epoch, top, offset, body, offset, body...}:
# the events after since, fetched only when all of them can be returned.
READ = Script("""
local meta = redis.call('HMGET', KEYS[2], 'epoch', 'top')
local epoch, top = meta[1], tonumber(meta[2])
if not epoch then
  epoch, top = ARGV[1], 0
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'top', 0)
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
local reply = {epoch, top}
if ARGV[4] == epoch then
  local since = tonumber(ARGV[3])
  local missing = top - since
  if since >= 0 and missing > 0 and missing <= tonumber(ARGV[5]) then
    local start = string.format('(0-%d', since)
    local entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', missing)
    for _, entry in ipairs(entries) do
      reply[#reply + 1] = tonumber(string.sub(entry[1], 3))
      reply[#reply + 1] = entry[2][2]
    end
  end
end
return reply
""")


def _position(reply: list) -> Position:
    offset, epoch = reply
    return Position(offset, epoch.decode())


@implementer(ITopicHistory)
class RedisHistory:
    """Reliable topics in Redis streams, shared by every gateway.

    ``outside`` is the bus to publish appends on when it is not Redis's own
    pub/sub (None: the script publishes them).
    """

    log = Logger()

    def __init__(self, client: RedisClient, outside: IBus | None = None) -> None:
        self._client = client
        self._outside = outside

    def append(self, topic: str, body: bytes, size: int, ttl_ms: int) -> Deferred:
        keys = [topic_log_key(topic), topic_meta_key(topic)]
        channel = topic_channel(topic)
        inside = "" if self._outside is not None else channel
        args = [body, size, ttl_ms, new_epoch(), inside]
        appended = self._client.evaluate(APPEND, keys, args).addCallback(_position)
        if self._outside is not None:
            appended.addCallback(self._publish, channel, body)
        return appended

    def _publish(self, position: Position, channel: str, body: bytes) -> Position:
        assert self._outside is not None
        message = envelope(position.offset, position.epoch, body)
        self._outside.publish(channel, message).addErrback(
            lambda failure: self.log.warn(
                "publishing {channel} failed ({error}); subscribers repair it later",
                channel=channel,
                error=failure.value,
            )
        )
        return position

    def read(self, topic: str, since: Position | None, limit: int) -> Deferred:
        keys = [topic_log_key(topic), topic_meta_key(topic)]
        if since is None:
            args = [new_epoch(), EMPTY_TOPIC_TTL_MS, 0, "", limit]
        else:
            args = [new_epoch(), EMPTY_TOPIC_TTL_MS, since.offset, since.epoch, limit]
        call = self._client.evaluate(READ, keys, args)
        return call.addCallback(self._replay, since, limit)

    @staticmethod
    def _replay(reply: list, since: Position | None, limit: int) -> object:
        epoch = reply[0].decode()
        events = [
            StoredEvent(offset, epoch, body)
            for offset, body in zip(reply[2::2], reply[3::2], strict=True)
        ]
        return replay(epoch, reply[1], events, since, limit)
