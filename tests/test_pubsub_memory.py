"""Topics and typed events through the gateway, in memory on a task.Clock."""

from __future__ import annotations

import pytest

from rtgateway.backends.memory import MemoryHub
from rtgateway.routing.fanout import SharedMessage
from rtgateway.testing import MemoryGateway, make_config
from rtgateway.wire.codecs import CBOR, JSON

TOPICS = {
    "chat": {
        "subscribe": "any",
        "publish": "any",
        "history_size": 5,
        "history_ttl_s": 60,
    },
    "player": {"subscribe": "self", "publish": "service"},
    "lobby": {"subscribe": "any", "publish": "any", "history_size": 0},
    "audit": {"subscribe": "none", "publish": "none"},
}
EVENTS = {
    "chat.message": {
        "schema": {
            "type": "object",
            "properties": {"text": {"type": "string", "maxLength": 50}},
            "required": ["text"],
            "additionalProperties": False,
        }
    },
    "chat.typing": {"delivery": "volatile"},
    "note": {},
}
OVERRIDES = {"topics": TOPICS, "events": EVENTS}


@pytest.fixture
def gateway():
    """An in-memory gateway with a few namespaces and event types."""
    gateway = MemoryGateway(make_config(OVERRIDES))
    yield gateway
    gateway.stop()


def say(gateway, client, text, topic="chat.room1"):
    params = {"topic": topic, "type": "chat.message", "data": {"text": text}}
    return gateway.call(client, "pubsub.publish", params)


def messages(client, method="chat.message"):
    return [n["params"] for n in client.notifications(method)]


def test_subscriber_receives_published_events_in_offset_order(gateway):
    """Events reach subscribers as notifications with offset, epoch and sender."""
    alice, bob = gateway.open("alice"), gateway.open("bob")
    subscribed = gateway.call(alice, "pubsub.subscribe", {"topic": "chat.room1"})
    assert subscribed["result"]["topic"] == "chat.room1"
    assert subscribed["result"]["offset"] == 0
    epoch = subscribed["result"]["epoch"]
    assert say(gateway, bob, "hi")["result"] == {"offset": 1}
    assert say(gateway, bob, "there")["result"] == {"offset": 2}
    received = messages(alice)
    assert [(m["offset"], m["data"]["text"]) for m in received] == [
        (1, "hi"),
        (2, "there"),
    ]
    assert all(m["epoch"] == epoch and m["from"] == "bob" for m in received)
    assert received[0]["topic"] == "chat.room1" and isinstance(
        received[0]["ts_ms"], int
    )


def test_cbor_and_json_subscribers_get_the_same_event(gateway):
    """One publication reaches JSON and CBOR subscribers alike."""
    json_client = gateway.open("a")
    cbor_client = gateway.open("b", protocols=["rtgw.v1.cbor"])
    for client in (json_client, cbor_client):
        gateway.call(client, "pubsub.subscribe", {"topic": "chat.room1"})
    say(gateway, json_client, "both")
    assert messages(json_client) == messages(cbor_client)


def test_volatile_events_have_no_offset(gateway):
    """Volatile event types and namespaces without history carry no offset."""
    alice, bob = gateway.open("alice"), gateway.open("bob")
    gateway.call(alice, "pubsub.subscribe", {"topic": "chat.room1"})
    lobby = gateway.call(alice, "pubsub.subscribe", {"topic": "lobby.main"})
    assert lobby["result"] == {"topic": "lobby.main"}
    typing = {"topic": "chat.room1", "type": "chat.typing", "data": {}}
    assert gateway.call(bob, "pubsub.publish", typing)["result"] == {}
    note = {"topic": "lobby.main", "type": "note", "data": [1, 2]}
    assert gateway.call(bob, "pubsub.publish", note)["result"] == {}
    (typed,) = messages(alice, "chat.typing")
    (noted,) = messages(alice, "note")
    assert "offset" not in typed and "epoch" not in typed and noted["data"] == [1, 2]


@pytest.mark.parametrize(
    ("sub", "roles", "method", "topic", "allowed"),
    [
        ("alice", [], "subscribe", "player.alice.inbox", True),
        ("bob", [], "subscribe", "player.alice.inbox", False),
        ("alice", [], "publish", "player.alice.inbox", False),
        ("svc", ["service"], "publish", "player.alice.inbox", True),
        ("svc", ["service"], "subscribe", "player.alice.inbox", True),
        ("alice", [], "subscribe", "audit.log", False),
        ("svc", ["service"], "publish", "audit.log", False),
    ],
)
def test_namespace_permissions(gateway, sub, roles, method, topic, allowed):
    """self, service and none permissions decide who subscribes and publishes."""
    client = gateway.open(None, token=gateway.token(sub, roles=roles))
    if method == "subscribe":
        response = gateway.call(client, "pubsub.subscribe", {"topic": topic})
    else:
        params = {"topic": topic, "type": "note", "data": {}}
        response = gateway.call(client, "pubsub.publish", params)
    assert ("result" in response) is allowed
    if not allowed:
        assert response["error"]["code"] == -32001


@pytest.mark.parametrize(
    ("params", "path"),
    [
        (
            {"topic": "chat.r", "type": "chat.message", "data": {"text": 5}},
            "/data/text",
        ),
        ({"topic": "chat.r", "type": "chat.message", "data": {}}, "/data"),
        (
            {"topic": "chat.r", "type": "chat.message", "data": {"text": "x", "y": 1}},
            "/data/y",
        ),
        ({"topic": "chat.r", "type": "chat.nope", "data": {}}, "/type"),
        ({"topic": "nowhere.r", "type": "note", "data": {}}, "/topic"),
        ({"topic": "chat..r", "type": "note", "data": {}}, "/topic"),
        ({"topic": "chat.r", "type": "note", "data": "x" * 9000}, "/data"),
    ],
    ids=[
        "wrong-type",
        "missing",
        "extra",
        "unknown-type",
        "namespace",
        "bad-name",
        "too-big",
    ],
)
def test_invalid_publications_are_32602_with_pointers(gateway, params, path):
    """Schema failures, unknown types and namespaces, oversize data: -32602."""
    client = gateway.open("alice")
    error = gateway.call(client, "pubsub.publish", params)["error"]
    assert error["code"] == -32602
    assert path in [e["path"] for e in error["data"]["errors"]]


def test_subscription_bound(make_memory_gateway):
    """A session holds at most max_subscriptions topics."""
    gateway = make_memory_gateway({**OVERRIDES, "limits": {"max_subscriptions": 2}})
    client = gateway.open("alice")
    for room in ("a", "b"):
        assert "result" in gateway.call(
            client, "pubsub.subscribe", {"topic": f"chat.{room}"}
        )
    again = gateway.call(client, "pubsub.subscribe", {"topic": "chat.a"})
    assert "result" in again
    refused = gateway.call(client, "pubsub.subscribe", {"topic": "chat.c"})
    assert refused["error"]["code"] == -32602


def test_subscribe_since_replays_missed_events_before_live_ones(gateway):
    """since replays the events after it, after the reply, then live ones follow."""
    publisher, late = gateway.open("pub"), gateway.open("late")
    epoch = gateway.call(publisher, "pubsub.subscribe", {"topic": "chat.room1"})[
        "result"
    ]["epoch"]
    for text in "abcd":
        say(gateway, publisher, text)
    since = {"offset": 1, "epoch": epoch}
    response = gateway.call(
        late, "pubsub.subscribe", {"topic": "chat.room1", "since": since}
    )
    assert response["result"]["recovered"] is True and response["result"]["offset"] == 4
    position = late.received.index(response)
    replayed = [
        m for m in late.received[position + 1 :] if m.get("method") == "chat.message"
    ]
    assert [m["params"]["offset"] for m in replayed] == [2, 3, 4]
    say(gateway, publisher, "e")
    assert [m["offset"] for m in messages(late)] == [2, 3, 4, 5]


@pytest.mark.parametrize(
    ("since", "published"),
    [({"offset": 1, "epoch": "other"}, 2), ({"offset": 1, "epoch": None}, 8)],
    ids=["other-epoch", "trimmed"],
)
def test_since_beyond_history_is_not_recovered(gateway, since, published):
    """Another epoch, or history trimmed past the position: recovered false."""
    publisher, late = gateway.open("pub"), gateway.open("late")
    epoch = gateway.call(publisher, "pubsub.subscribe", {"topic": "chat.room1"})[
        "result"
    ]["epoch"]
    for i in range(published):
        say(gateway, publisher, str(i))
    since = {**since, "epoch": since["epoch"] or epoch}
    response = gateway.call(
        late, "pubsub.subscribe", {"topic": "chat.room1", "since": since}
    )
    assert response["result"]["recovered"] is False
    assert messages(late) == []


def test_history_expires_after_its_ttl_with_a_new_epoch(gateway):
    """After history_ttl_s without events the history is gone: a new epoch."""
    publisher, late = gateway.open("pub"), gateway.open("late")
    epoch = gateway.call(publisher, "pubsub.subscribe", {"topic": "chat.room2"})[
        "result"
    ]["epoch"]
    say(gateway, publisher, "old", "chat.room2")
    gateway.call(publisher, "pubsub.unsubscribe", {"topic": "chat.room2"})
    gateway.advance(61)
    since = {"offset": 0, "epoch": epoch}
    response = gateway.call(
        late, "pubsub.subscribe", {"topic": "chat.room2", "since": since}
    )
    assert response["result"]["recovered"] is False
    assert response["result"]["epoch"] != epoch


def test_unsubscribe_stops_delivery(gateway):
    """After pubsub.unsubscribe no more events arrive."""
    alice, bob = gateway.open("alice"), gateway.open("bob")
    gateway.call(alice, "pubsub.subscribe", {"topic": "chat.room1"})
    say(gateway, bob, "1")
    assert (
        gateway.call(alice, "pubsub.unsubscribe", {"topic": "chat.room1"})["result"]
        == {}
    )
    say(gateway, bob, "2")
    assert [m["data"]["text"] for m in messages(alice)] == ["1"]


def test_bus_interest_follows_local_subscribers():
    """A gateway listens on a topic's channel only while it has local subscribers."""
    hub = MemoryHub()
    first = MemoryGateway(make_config({**OVERRIDES, "gateway": {"id": "gw1"}}), hub=hub)
    second = MemoryGateway(
        make_config({**OVERRIDES, "gateway": {"id": "gw2"}}), hub=hub
    )
    idle = MemoryGateway(make_config({**OVERRIDES, "gateway": {"id": "gw3"}}), hub=hub)
    alice, bob = first.open("alice"), second.open("bob")
    idle.open("carol")
    second.call(bob, "pubsub.subscribe", {"topic": "chat.room1"})
    assert second.gateway.broker.topics() == ["chat.room1"]
    assert first.gateway.broker.topics() == []
    received_before = idle.gateway.metrics.bus_messages_received._value.get()
    say(first, alice, "across")
    second.flush()
    assert [m["data"]["text"] for m in messages(bob)] == ["across"]
    assert idle.gateway.metrics.bus_messages_received._value.get() == received_before
    second.call(bob, "pubsub.unsubscribe", {"topic": "chat.room1"})
    assert second.gateway.broker.topics() == []
    assert "rtgw.t.chat.room1" not in hub.channels
    for gateway in (first, second, idle):
        gateway.stop()


def test_discover_lists_event_types(gateway):
    """rpc.discover lists every event type with its schema and delivery."""
    client = gateway.open("alice")
    document = gateway.call(client, "rpc.discover", {})["result"]
    events = {e["name"]: e for e in document["x-events"]}
    assert events["chat.message"]["schema"]["required"] == ["text"]
    assert events["chat.typing"]["delivery"] == "volatile"
    names = {m["name"] for m in document["methods"]}
    assert {
        "pubsub.subscribe",
        "pubsub.publish",
        "session.resume",
        "admin.kick",
    } <= names


def test_shared_message_is_encoded_once_per_codec():
    """Fan-out encodes a document once per codec, however many subscribers."""
    encoded = []

    class CountingCodec:
        def __init__(self, codec):
            self.codec, self.NAME, self.BINARY = codec, codec.NAME, codec.BINARY

        def encode(self, document):
            encoded.append(self.NAME)
            return self.codec.encode(document)

    message = SharedMessage({"jsonrpc": "2.0", "method": "x", "params": {}})
    codecs = [CountingCodec(JSON)] * 3 + [CountingCodec(CBOR)] * 2
    prepared = [
        message.prepared(c, lambda payload, binary: (payload, binary)) for c in codecs
    ]
    assert sorted(encoded) == ["cbor", "json"]
    assert prepared[0] is prepared[2] and prepared[3] is prepared[4]


def test_volatile_events_are_dropped_under_backpressure(gateway):
    """While a connection's transport is full, volatile events skip it."""
    alice, bob = gateway.open("alice"), gateway.open("bob")
    gateway.call(alice, "pubsub.subscribe", {"topic": "chat.room1"})
    connection = next(
        c
        for c in gateway.gateway.factory.connections
        if c.principal.player_id == "alice"
    )
    connection._guard.pauseProducing()
    gateway.call(
        bob,
        "pubsub.publish",
        {"topic": "chat.room1", "type": "chat.typing", "data": {}},
    )
    say(gateway, bob, "kept")
    assert messages(alice, "chat.typing") == []
    assert [m["data"]["text"] for m in messages(alice)] == ["kept"]
    assert gateway.gateway.metrics.events_dropped._value.get() == 1
