"""Session data for services in memory: session.get and lifecycle events."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from rtgateway.backends.memory import MemoryHub
from rtgateway.testing import MemoryGateway, make_config

OVERRIDES = {
    "session": {"resume_window_s": 30},
    "zones": {"cave": {"fields": {"torch": {"type": "boolean", "default": False}}}},
}
EVENTS = ("session.started", "session.resumed", "session.ended")


@pytest.fixture
def gateway():
    """An in-memory gateway with a 30 s resume window and one state zone."""
    gateway = MemoryGateway(make_config(OVERRIDES))
    yield gateway
    gateway.stop()


def service(gateway, sub="svc"):
    return gateway.open(sub, token=gateway.token(sub, roles=["service"]))


def welcome(client):
    return client.notifications("session.welcome")[0]["params"]


def follow(gateway, client):
    reply = gateway.call(client, "pubsub.subscribe", {"topic": "session.events"})
    assert "result" in reply, reply
    return reply["result"]


def lifecycle(client, player_id=None):
    """(event type, session id, data) of the session events a client received."""
    return [
        (m["method"], m["params"]["data"]["session_id"], m["params"]["data"])
        for m in client.received
        if isinstance(m, dict)
        and m.get("method") in EVENTS
        and (player_id is None or m["params"]["data"]["player_id"] == player_id)
    ]


def get(gateway, client, player_id):
    return gateway.call(client, "session.get", {"player_id": player_id})


def test_session_get_needs_the_service_role(gateway):
    """A player asking for anyone's sessions, its own included, gets -32001."""
    alice = gateway.open("alice")
    for player_id in ("alice", "bob"):
        assert get(gateway, alice, player_id)["error"]["code"] == -32001


def test_unknown_player_has_no_sessions(gateway):
    """A player never seen: no sessions, offline, never seen (not an error)."""
    result = get(gateway, service(gateway), "nobody")["result"]
    assert result["player_id"] == "nobody"
    assert result["sessions"] == []
    assert result["presence"]["status"] == "offline"
    assert result["presence"]["last_seen_ms"] is None


def test_attached_session_fields_and_live_analytics(gateway):
    """An attached session: where, since when, its zone, presence, counters so far."""
    gateway.advance(5)
    alice = gateway.open("alice")
    session_id = welcome(alice)["session_id"]
    gateway.call(alice, "state.join", {"zone": "cave"})
    gateway.call(alice, "presence.set", {"status": "invisible"})
    gateway.call(alice, "sys.ping", {})
    gateway.advance(10)
    svc = service(gateway)
    result = get(gateway, svc, "alice")["result"]
    # Services see the chosen status, invisible included.
    assert result["presence"]["status"] == "invisible"
    [session] = result["sessions"]
    analytics = session.pop("analytics")
    assert session == {
        "session_id": session_id,
        "gateway_id": "gw-test",
        "state": "attached",
        "created_ms": 5000,
        "detached_ms": None,
        "resume_until_ms": None,
        "zone": "cave",
    }
    assert analytics["session_id"] == session_id
    assert analytics["player_id"] == "alice"
    assert analytics["duration_s"] == 10
    assert analytics["messages_in"] >= 3
    assert analytics["messages_out"] >= 3
    assert analytics["bytes_in"] > 0
    assert analytics["reason"] is None and analytics["close_code"] is None


def test_detached_then_resumed_states(gateway):
    """Dropped: detached with its resume deadline; resumed: attached, one resume."""
    alice = gateway.open("alice")
    token = welcome(alice)["resume_token"]
    session_id = welcome(alice)["session_id"]
    gateway.call(alice, "sys.ping", {})
    gateway.drop(alice)
    gateway.advance(4)
    svc = service(gateway)
    [detached] = get(gateway, svc, "alice")["result"]["sessions"]
    assert detached["session_id"] == session_id
    assert detached["state"] == "detached"
    assert detached["detached_ms"] == 0
    assert detached["resume_until_ms"] == 30_000
    assert detached["analytics"]["messages_in"] >= 1
    back = gateway.open("alice")
    assert gateway.call(back, "session.resume", {"resume_token": token})["result"]
    [attached] = get(gateway, svc, "alice")["result"]["sessions"]
    assert attached["session_id"] == session_id
    assert attached["state"] == "attached"
    assert attached["detached_ms"] is None
    assert attached["analytics"]["reconnects"] == 1


def test_events_of_start_drop_resume_and_expiry_in_order(gateway):
    """started, (the reconnect's fresh session replaced), resumed, ended by expiry."""
    svc = service(gateway)
    follow(gateway, svc)
    alice = gateway.open("alice")
    token = welcome(alice)["resume_token"]
    first = welcome(alice)["session_id"]
    gateway.drop(alice)
    gateway.advance(5)
    back = gateway.open("alice")
    fresh = welcome(back)["session_id"]
    gateway.call(back, "session.resume", {"resume_token": token})
    gateway.drop(back)
    gateway.advance(31)
    events = lifecycle(svc, "alice")
    assert [(kind, sid) for kind, sid, _ in events] == [
        ("session.started", first),
        ("session.started", fresh),
        ("session.ended", fresh),
        ("session.resumed", first),
        ("session.ended", first),
    ]
    started, _, replaced, resumed, ended = (data for _, _, data in events)
    assert started == {
        "session_id": first,
        "player_id": "alice",
        "gateway_id": "gw-test",
        "created_ms": 0,
    }
    assert replaced["reason"] == "replaced"
    assert resumed == {
        "session_id": first,
        "player_id": "alice",
        "gateway_id": "gw-test",
        "detached_ms": 0,
    }
    assert ended["reason"] == "expired"
    assert ended["analytics"]["reason"] == "expired"
    assert ended["analytics"]["reconnects"] == 1
    assert ended["analytics"]["session_id"] == first
    # Ended sessions are gone from session.get.
    assert get(gateway, svc, "alice")["result"]["sessions"] == []


def test_closed_session_ends_with_its_close_code(gateway):
    """session.close: session.ended with reason closed and close code 1000."""
    svc = service(gateway)
    follow(gateway, svc)
    alice = gateway.open("alice")
    gateway.call(alice, "session.close", {})
    [(kind, _, data)] = lifecycle(svc, "alice")[1:]
    assert kind == "session.ended"
    assert data["reason"] == "closed"
    assert data["analytics"]["close_code"] == 1000


def test_players_may_not_follow_session_events(gateway):
    """session.events is for services: players get -32001, nobody publishes."""
    alice = gateway.open("alice")
    reply = gateway.call(alice, "pubsub.subscribe", {"topic": "session.events"})
    assert reply["error"]["code"] == -32001
    params = {"topic": "session.events", "type": "session.started", "data": {}}
    for client in (alice, service(gateway)):
        reply = gateway.call(client, "pubsub.publish", params)
        assert reply["error"]["code"] == -32001


def test_events_are_reliable_for_a_resuming_service(gateway):
    """The topic keeps history: a service that was away replays what it missed."""
    svc = service(gateway)
    position = follow(gateway, svc)
    gateway.call(svc, "pubsub.unsubscribe", {"topic": "session.events"})
    alice = gateway.open("alice")
    since = {"offset": position["offset"], "epoch": position["epoch"]}
    params = {"topic": "session.events", "since": since}
    assert gateway.call(svc, "pubsub.subscribe", params)["result"]["recovered"]
    assert [kind for kind, _, _ in lifecycle(svc, "alice")] == ["session.started"]
    assert lifecycle(svc, "alice")[0][1] == welcome(alice)["session_id"]


def test_service_on_another_gateway_sees_sessions_and_events():
    """Two gateways on one hub: a service on B follows a player on A."""
    hub, clock = MemoryHub(), None
    a = MemoryGateway(make_config({**OVERRIDES, "gateway": {"id": "gw-a"}}), hub=hub)
    clock = a.clock
    b = MemoryGateway(
        make_config({**OVERRIDES, "gateway": {"id": "gw-b"}}), clock=clock, hub=hub
    )
    try:
        svc = service(b)
        follow(b, svc)
        alice = a.open("alice")
        a.flush()
        b.flush()
        [session] = get(b, svc, "alice")["result"]["sessions"]
        assert session["gateway_id"] == "gw-a"
        assert session["session_id"] == welcome(alice)["session_id"]
        [(kind, _, data)] = lifecycle(svc, "alice")
        assert (kind, data["gateway_id"]) == ("session.started", "gw-a")
    finally:
        a.stop()
        b.stop()


def test_sessions_of_a_dead_gateway_end_with_an_event():
    """A dead gateway's session: detached by the reaper, then ended by expiry."""
    clock, hub = Clock(), MemoryHub()
    settings = {**OVERRIDES, "presence": {"gateway_ttl_s": 3, "reap_interval_s": 1}}
    alive = MemoryGateway(
        make_config({**settings, "gateway": {"id": "gw-a"}}), clock, hub
    )
    doomed = MemoryGateway(
        make_config({**settings, "gateway": {"id": "gw-b"}}), clock, hub
    )
    try:
        svc = service(alive)
        follow(alive, svc)
        session_id = welcome(doomed.open("alice"))["session_id"]
        doomed.gateway.presence._heartbeat.stop()  # the process is gone
        doomed.gateway.presence._reaper.stop()
        alive.advance(5)
        assert [kind for kind, _, _ in lifecycle(svc, "alice")] == ["session.started"]
        alive.advance(31)
        [_, (kind, sid, data)] = lifecycle(svc, "alice")
        assert (kind, sid, data["gateway_id"]) == ("session.ended", session_id, "gw-a")
        assert data["reason"] == "expired"
    finally:
        alive.stop()


def test_taking_over_a_live_session_is_a_resume_without_detached_ms(gateway):
    """Resumed from a connection that still held it: detached_ms is null."""
    svc = service(gateway)
    follow(gateway, svc)
    first = gateway.open("alice")
    session_id = welcome(first)["session_id"]
    second = gateway.open("alice")
    resume = {"resume_token": welcome(first)["resume_token"]}
    assert gateway.call(second, "session.resume", resume)["result"]
    assert first.close_code == 4003
    [(_, _, resumed)] = [
        e for e in lifecycle(svc, "alice") if e[0] == "session.resumed"
    ]
    assert resumed["session_id"] == session_id
    assert resumed["detached_ms"] is None
    # The same connection resuming its own session again is no event.
    own = {"resume_token": welcome(first)["resume_token"]}
    assert gateway.call(second, "session.resume", own)["result"]
    assert [e[0] for e in lifecycle(svc, "alice")].count("session.resumed") == 1
    [session] = get(gateway, svc, "alice")["result"]["sessions"]
    assert (session["session_id"], session["state"]) == (session_id, "attached")


def test_sessions_of_a_stalled_gateway_are_not_ended_under_it():
    """Reaped during a stall, back before the window ends: no session.ended."""
    clock, hub = Clock(), MemoryHub()
    settings = {**OVERRIDES, "presence": {"gateway_ttl_s": 3, "reap_interval_s": 1}}
    watching = MemoryGateway(
        make_config({**settings, "gateway": {"id": "gw-a"}}), clock, hub
    )
    stalled = MemoryGateway(
        make_config({**settings, "gateway": {"id": "gw-b"}}), clock, hub
    )
    try:
        svc = service(watching)
        follow(watching, svc)
        stalled.open("alice")
        heartbeat = stalled.gateway.presence._heartbeat
        heartbeat.stop()  # a long pause: no liveness refresh
        watching.advance(5)
        assert get(watching, svc, "alice")["result"]["sessions"] == []
        heartbeat.start(1, now=True)  # the gateway wakes up
        watching.advance(31)
        assert [kind for kind, _, _ in lifecycle(svc, "alice")] == ["session.started"]
        result = get(watching, svc, "alice")["result"]
        assert result["presence"]["status"] == "online"
        assert len(result["sessions"]) == 1
    finally:
        watching.stop()
        stalled.stop()
