"""The broker when the history is lost under it (Redis restarted empty), in memory.

A topic's history that is lost starts a new epoch at offset 1. Events of
the new epoch that this gateway's bus missed (it was still reconnecting)
are in the new history and must reach the subscribers, in order, before
the later ones: they were acknowledged to their publishers.
"""

from __future__ import annotations

from rtgateway.testing import MemoryGateway, make_config

OVERRIDES = {
    "topics": {"chat": {"subscribe": "any", "publish": "any"}},
    "events": {"msg": {}},
}
PUBLISH = {"topic": "chat.a", "type": "msg", "data": 1}


def positions(client) -> list[tuple[int, str]]:
    events = [m["params"] for m in client.notifications("msg")]
    return [(event["offset"], event["epoch"]) for event in events]


def lose_history_and_append_unseen(gateway: MemoryGateway, count: int) -> None:
    """Drop chat.a's history, then store events that this gateway's bus misses."""
    hub = gateway.gateway.backends.hub
    hub.topics.pop("chat.a")
    listeners = hub.channels.pop("rtgw.t.chat.a")
    for _ in range(count):
        gateway.gateway.backends.history.append(
            "chat.a", b'{"topic":"chat.a","type":"msg","data":0,"ts_ms":0}', 100, 60_000
        )
    hub.channels["rtgw.t.chat.a"] = listeners


def test_new_epoch_start_missed_on_the_bus_is_read_from_history():
    """The first bus event of a new epoch at offset 4: offsets 1-3 come first."""
    gateway = MemoryGateway(make_config(OVERRIDES))
    player = gateway.open("alice")
    gateway.call(player, "pubsub.subscribe", {"topic": "chat.a"})
    gateway.call(player, "pubsub.publish", PUBLISH)
    lose_history_and_append_unseen(gateway, 3)
    gateway.call(player, "pubsub.publish", PUBLISH)
    (old, _), *new = positions(player)
    assert [offset for offset, _ in new] == [1, 2, 3, 4]
    assert len({epoch for _, epoch in new}) == 1 and new[0][1] != old
    gateway.stop()


def test_bus_reconnected_after_history_lost_delivers_the_new_epoch():
    """A repair that finds a new epoch delivers it from offset 1, not from its top."""
    gateway = MemoryGateway(make_config(OVERRIDES))
    player = gateway.open("alice")
    gateway.call(player, "pubsub.subscribe", {"topic": "chat.a"})
    gateway.call(player, "pubsub.publish", PUBLISH)
    lose_history_and_append_unseen(gateway, 2)
    gateway.gateway.broker.bus_reconnected()
    gateway.call(player, "pubsub.publish", PUBLISH)
    assert [offset for offset, _ in positions(player)] == [1, 1, 2, 3]
    gateway.stop()
