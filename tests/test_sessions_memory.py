"""Sessions: resume, takeover, expiry, refresh, kick and analytics, on a Clock."""

from __future__ import annotations

import pytest
from twisted.logger import capturedLogs

from rtgateway.backends.memory import MemoryHub
from rtgateway.testing import MemoryGateway, make_config
from rtgateway.wire import closecodes

OVERRIDES = {
    "topics": {"chat": {"subscribe": "any", "publish": "any", "history_size": 100}},
    "events": {"msg": {}},
    "session": {"resume_window_s": 30, "token_expiry_warning_s": 60},
}


@pytest.fixture
def gateway():
    """An in-memory gateway with a chat namespace and a 30 s resume window."""
    gateway = MemoryGateway(make_config(OVERRIDES))
    yield gateway
    gateway.stop()


def welcome(client):
    return client.notifications("session.welcome")[0]["params"]


def publish(gateway, client, n, topic="chat.room"):
    params = {"topic": topic, "type": "msg", "data": n}
    return gateway.call(client, "pubsub.publish", params)["result"]["offset"]


def offsets(client, topic="chat.room"):
    return [
        m["params"]["offset"]
        for m in client.notifications("msg")
        if m["params"]["topic"] == topic
    ]


def resume(gateway, client, token, positions=None):
    params = {"resume_token": token}
    if positions is not None:
        params["positions"] = positions
    return gateway.call(client, "session.resume", params)


def test_drop_and_resume_replays_missed_events_exactly_once(gateway):
    """After a drop, resume with positions gets every missed event once, in order."""
    publisher = gateway.open("pub")
    player = gateway.open("alice")
    token = welcome(player)["resume_token"]
    session_id = welcome(player)["session_id"]
    epoch = gateway.call(player, "pubsub.subscribe", {"topic": "chat.room"})["result"][
        "epoch"
    ]
    for n in range(3):
        publish(gateway, publisher, n)
    seen = offsets(player)
    gateway.drop(player)
    for n in range(3, 7):
        publish(gateway, publisher, n)
    again = gateway.open("alice")
    positions = {"chat.room": {"offset": seen[-1], "epoch": epoch}}
    result = resume(gateway, again, token, positions)["result"]
    assert result == {
        "session_id": session_id,
        "resumed": True,
        "subscriptions": ["chat.room"],
        "recovered": {"chat.room": True},
    }
    publish(gateway, publisher, 7)
    assert seen + offsets(again) == list(range(1, 9))


def test_resume_without_positions_continues_from_what_was_sent(gateway):
    """Without positions, the replay starts after the last event sent before a drop."""
    publisher, player = gateway.open("pub"), gateway.open("alice")
    token = welcome(player)["resume_token"]
    gateway.call(player, "pubsub.subscribe", {"topic": "chat.room"})
    publish(gateway, publisher, 1)
    gateway.drop(player)
    publish(gateway, publisher, 2)
    again = gateway.open("alice")
    assert resume(gateway, again, token)["result"]["recovered"] == {"chat.room": True}
    assert offsets(player) + offsets(again) == [1, 2]


def test_resume_refusals(gateway):
    """Another player's session: -32001; unknown token: -32003, fresh session kept."""
    alice = gateway.open("alice")
    token = welcome(alice)["resume_token"]
    gateway.drop(alice)
    mallory = gateway.open("mallory")
    assert resume(gateway, mallory, token)["error"]["code"] == -32001
    stranger = gateway.open("bob")
    assert resume(gateway, stranger, "no-such-token")["error"]["code"] == -32003
    assert "result" in gateway.call(stranger, "sys.ping", {})
    assert "result" in gateway.call(stranger, "pubsub.subscribe", {"topic": "chat.x"})


def test_detached_session_ends_after_the_resume_window(gateway):
    """resume_window_s after a drop the session ends and cannot be resumed."""
    ended = []

    class Listener:
        def session_ended(self, record, reason):
            ended.append((record.session_id, reason))

    gateway.gateway.sessions.add_listener(Listener())
    alice = gateway.open("alice")
    token, session_id = welcome(alice)["resume_token"], welcome(alice)["session_id"]
    gateway.drop(alice)
    gateway.advance(29)
    assert ended == []
    gateway.advance(2)
    assert ended == [(session_id, "expired")]
    assert resume(gateway, gateway.open("alice"), token)["error"]["code"] == -32003


def test_resume_inside_the_window_keeps_the_session_alive(gateway):
    """A resumed session does not expire when the old window passes."""
    alice = gateway.open("alice")
    token = welcome(alice)["resume_token"]
    gateway.drop(alice)
    gateway.advance(20)
    again = gateway.open("alice")
    assert resume(gateway, again, token)["result"]["resumed"] is True
    gateway.advance(60)
    assert "result" in gateway.call(again, "sys.ping", {})
    assert not again.closed


def test_takeover_closes_the_old_connection_4003(gateway):
    """Resuming a session still attached elsewhere closes the old connection 4003."""
    first = gateway.open("alice")
    token = welcome(first)["resume_token"]
    second = gateway.open("alice")
    assert (
        resume(gateway, second, token)["result"]["session_id"]
        == welcome(first)["session_id"]
    )
    assert first.close_code == closecodes.SESSION_TAKEN_OVER
    assert not second.closed


def test_takeover_across_gateways_and_cross_gateway_delivery():
    """A session moves between gateways sharing a bus; events follow it."""
    hub = MemoryHub()
    gw1 = MemoryGateway(make_config({**OVERRIDES, "gateway": {"id": "gw1"}}), hub=hub)
    gw2 = MemoryGateway(make_config({**OVERRIDES, "gateway": {"id": "gw2"}}), hub=hub)
    publisher = gw2.open("pub")
    first = gw1.open("alice")
    token = welcome(first)["resume_token"]
    epoch = gw1.call(first, "pubsub.subscribe", {"topic": "chat.room"})["result"][
        "epoch"
    ]
    publish(gw2, publisher, 1)
    gw1.flush()
    assert offsets(first) == [1]
    second = gw2.open("alice")
    positions = {"chat.room": {"offset": 1, "epoch": epoch}}
    assert resume(gw2, second, token, positions)["result"]["recovered"] == {
        "chat.room": True
    }
    gw1.flush()
    assert first.close_code == closecodes.SESSION_TAKEN_OVER
    publish(gw2, publisher, 2)
    assert offsets(second) == [2]
    gw1.stop()
    gw2.stop()


def test_token_expiry_warns_then_closes_4001(gateway):
    """session.expiring comes token_expiry_warning_s before exp; at exp: 4001."""
    token = gateway.token("alice", ttl_s=120, now=gateway.clock.seconds())
    client = gateway.open(None, token=token)
    gateway.advance(59)
    assert client.notifications("session.expiring") == []
    gateway.advance(2)
    (warning,) = client.notifications("session.expiring")
    assert warning["params"] == {"expires_at_ms": 120_000}
    gateway.advance(60)
    assert client.close_code == closecodes.TOKEN_EXPIRED


def test_refresh_extends_the_connection(gateway):
    """session.refresh with a new token for the same player moves the expiry."""
    clock = gateway.clock
    client = gateway.open(None, token=gateway.token("alice", ttl_s=120, now=0))
    gateway.advance(70)
    fresh = gateway.token("alice", ttl_s=600, now=clock.seconds())
    result = gateway.call(client, "session.refresh", {"token": fresh})["result"]
    assert result == {"expires_at_ms": 670_000}
    gateway.advance(100)
    assert not client.closed
    other = gateway.token("bob", ttl_s=600, now=clock.seconds())
    assert (
        gateway.call(client, "session.refresh", {"token": other})["error"]["code"]
        == -32001
    )
    bad = gateway.call(client, "session.refresh", {"token": "x.y.z"})
    assert bad["error"]["code"] == -32001


def test_admin_kick_closes_every_session_4010_for_good():
    """admin.kick closes the player's sessions on every gateway; none resumes."""
    hub = MemoryHub()
    gw1 = MemoryGateway(make_config({**OVERRIDES, "gateway": {"id": "gw1"}}), hub=hub)
    gw2 = MemoryGateway(make_config({**OVERRIDES, "gateway": {"id": "gw2"}}), hub=hub)
    on_one, on_two = gw1.open("bob"), gw2.open("bob")
    dropped = gw2.open("bob")
    dropped_token = welcome(dropped)["resume_token"]
    gw2.drop(dropped)
    player = gw1.open("carol")
    assert (
        gw1.call(player, "admin.kick", {"player_id": "bob"})["error"]["code"] == -32001
    )
    admin = gw1.open(None, token=gw1.token("root", roles=["admin"]))
    kicked = gw1.call(admin, "admin.kick", {"player_id": "bob", "reason": "cheating"})
    assert kicked["result"] == {}
    gw2.flush()
    assert on_one.close_code == on_two.close_code == closecodes.KICKED
    assert on_one.close_reason == "cheating"
    for token in (dropped_token, welcome(on_one)["resume_token"]):
        assert resume(gw2, gw2.open("bob"), token)["error"]["code"] == -32003
    assert not player.closed
    gw1.stop()
    gw2.stop()


def test_closed_session_cannot_be_resumed(gateway):
    """After session.close the resume token is worthless."""
    alice = gateway.open("alice")
    token = welcome(alice)["resume_token"]
    gateway.call(alice, "session.close", {})
    assert resume(gateway, gateway.open("alice"), token)["error"]["code"] == -32003


def test_ended_session_writes_one_analytics_record(gateway):
    """An ended session logs one record with its totals and feeds the metrics."""
    alice = gateway.open("alice")
    token = welcome(alice)["resume_token"]
    gateway.call(alice, "sys.ping", {})
    gateway.advance(10)
    gateway.drop(alice)
    again = gateway.open("alice")
    resume(gateway, again, token)
    gateway.advance(5)
    with capturedLogs() as events:
        gateway.call(again, "session.close", {})
    (record,) = [e["session_analytics"] for e in events if "session_analytics" in e]
    assert record["player_id"] == "alice" and record["reason"] == "closed"
    assert record["duration_s"] == 15
    assert record["reconnects"] == 1
    assert record["messages_in"] == 3  # ping, resume, close
    assert record["messages_out"] >= 3 and record["bytes_in"] > 0
    assert record["close_code"] == 1000
    value = gateway.gateway.metrics.registry.get_sample_value
    assert value("rtgateway_sessions_ended_total", {"reason": "closed"}) == 1
    assert value("rtgateway_session_duration_seconds_count") == 1
    assert value("rtgateway_session_resumes_total") == 1


def test_a_replay_bigger_than_the_send_buffer_is_paced_not_closed(make_memory_gateway):
    """A long replay goes out as the connection drains, never over the bound (4008)."""
    overrides = {
        **OVERRIDES,
        "topics": {"chat": {"subscribe": "any", "publish": "any", "history_size": 500}},
        "limits": {
            "send_buffer_bytes": 2048,
            "rate_per_second": 10_000,
            "rate_burst": 10_000,
        },
    }
    gateway = make_memory_gateway(overrides)
    publisher, player = gateway.open("pub"), gateway.open("alice")
    token = welcome(player)["resume_token"]
    epoch = gateway.call(player, "pubsub.subscribe", {"topic": "chat.room"})["result"][
        "epoch"
    ]
    gateway.drop(player)
    for n in range(300):
        publish(gateway, publisher, n)
    again = gateway.open("alice")
    (connection,) = [
        c
        for c in gateway.gateway.factory.connections
        if c.principal.player_id == "alice"
    ]
    positions = {"chat.room": {"offset": 0, "epoch": epoch}}
    connection._guard.pauseProducing()  # what a full TCP buffer does
    assert resume(gateway, again, token, positions)["result"]["recovered"]
    assert offsets(again) == []  # waiting for the transport
    for _ in range(300):
        connection._guard.resumeProducing()
        gateway.flush()
        connection._guard.pauseProducing()
        if len(offsets(again)) == 300:
            break
    connection._guard.resumeProducing()
    gateway.flush()
    assert offsets(again) == list(range(1, 301))
    assert not again.closed
