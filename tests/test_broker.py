"""The broker's ordering guarantees when the bus loses messages."""

from __future__ import annotations

from twisted.internet.defer import fail

from rtgateway.testing import MemoryGateway, make_config
from rtgateway.wire.errors import Unavailable

OVERRIDES = {
    "topics": {"chat": {"subscribe": "any", "publish": "any"}},
    "events": {"msg": {}},
}


def offsets(client):
    return [m["params"]["offset"] for m in client.notifications("msg")]


def append_unseen(gateway, topic, count):
    """Store events while this gateway's bus misses them (a lost bus message)."""
    backends = gateway.gateway.backends
    channel = f"rtgw.t.{topic}"
    listeners = backends.hub.channels.pop(channel)
    for _ in range(count):
        backends.history.append(
            topic,
            b'{"topic":"%s","type":"msg","data":0,"ts_ms":0}' % topic.encode(),
            100,
            60_000,
        )
    backends.hub.channels[channel] = listeners


def test_gap_in_the_bus_stream_is_filled_from_history():
    """Events missed on the bus come from history, in order, before later ones."""
    gateway = MemoryGateway(make_config(OVERRIDES))
    player = gateway.open("alice")
    gateway.call(player, "pubsub.subscribe", {"topic": "chat.a"})
    publish = {"topic": "chat.a", "type": "msg", "data": 1}
    gateway.call(player, "pubsub.publish", publish)
    append_unseen(gateway, "chat.a", 2)
    gateway.call(player, "pubsub.publish", publish)
    assert offsets(player) == [1, 2, 3, 4]
    assert gateway.gateway.metrics.stream_repairs._value.get() == 1
    gateway.stop()


def test_gap_repair_waits_for_an_unreachable_history():
    """While history is unavailable the gap stays held and is retried on the clock."""
    gateway = MemoryGateway(make_config(OVERRIDES))
    player = gateway.open("alice")
    gateway.call(player, "pubsub.subscribe", {"topic": "chat.a"})
    history = gateway.gateway.backends.history
    append_unseen(gateway, "chat.a", 1)
    real_read = history.read
    history.read = lambda *args: fail(Unavailable())
    gateway.call(
        player, "pubsub.publish", {"topic": "chat.a", "type": "msg", "data": 1}
    )
    assert offsets(player) == []
    gateway.advance(1.0)
    assert offsets(player) == []
    history.read = real_read
    gateway.advance(1.0)
    assert offsets(player) == [1, 2]
    gateway.stop()
