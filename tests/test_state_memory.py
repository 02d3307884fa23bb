"""State synchronization through the gateway, in memory on a task.Clock."""

from __future__ import annotations

import pytest
from state_kit import decode

from rtgateway.state.mirror import Mirror
from rtgateway.testing import MemoryGateway, make_config

TICK = 1 / 60 + 1e-6  # a hair over the interval: float sums land just short
ZONES = {
    "arena": {
        "check_interval_ticks": 6,
        "position": ["x", "y"],
        "max_speed": 10,
        "bounds": {"min": [-100, -100], "max": [100, 100]},
        "fields": {
            "x": {"type": "number", "quantum": 0.01},
            "y": {"type": "number", "quantum": 0.01},
            "hp": {"type": "integer", "lane": "slow", "default": 100, "min": 0},
        },
    },
    "cave": {"fields": {"torch": {"type": "boolean", "default": False}}},
}


@pytest.fixture
def gateway():
    """An in-memory gateway with two state zones."""
    gateway = MemoryGateway(
        make_config({"zones": ZONES, "session": {"resume_window_s": 30}})
    )
    gateway.advance(1000)
    yield gateway
    gateway.stop()


def welcome(client):
    return client.notifications("session.welcome")[0]["params"]


def state_messages(client):
    return [
        m
        for m in client.notifications()
        if m["method"] in ("state.snapshot", "state.delta", "state.check")
    ]


def mirror_of(client, own):
    """A mirror built from every state push the client received."""
    mirror = Mirror(own=own)
    checks = 0
    for message in state_messages(client):
        assert mirror.apply(message["method"], message["params"]), message
        checks += message["method"] == "state.check"
    return mirror, checks


def joined(gateway, player, zone="arena", **fields):
    client = gateway.open(player)
    reply = gateway.call(client, "state.join", {"zone": zone, "fields": fields})
    assert "result" in reply, reply
    return client


def test_join_answers_then_sends_a_snapshot(gateway):
    """state.join answers zone, tick, entity and rates, then a snapshot follows."""
    alice = gateway.open("alice")
    reply = gateway.call(alice, "state.join", {"zone": "arena", "fields": {"x": 1.234}})
    assert reply["result"] == {
        "zone": "arena",
        "tick": reply["result"]["tick"],
        "entity": "player.alice",
        "tick_hz": {"fast": 60, "slow": 10},
    }
    position = alice.received.index(reply)
    snapshot = alice.received[position + 1]
    assert snapshot["method"] == "state.snapshot"
    assert snapshot["params"]["entities"] == {
        "player.alice": {"v": 1, "fields": {"x": 1.23, "hp": 100}}
    }


def test_unknown_zone_and_calls_before_join_are_not_found(gateway):
    """A zone not configured, and state calls before joining, answer -32003."""
    alice = gateway.open("alice")
    assert (
        gateway.call(alice, "state.join", {"zone": "moon"})["error"]["code"] == -32003
    )
    for method, params in [
        ("state.update", {"fields": {"x": 1}}),
        ("state.leave", {}),
        ("state.sync", {}),
        ("state.hash", {}),
    ]:
        assert gateway.call(alice, method, params)["error"]["code"] == -32003


def test_players_see_each_other_move_and_inputs_are_acked(gateway):
    """A notification input reaches the other client in the next delta and is acked."""
    alice = joined(gateway, "alice", x=0.0, y=0.0)
    bob = joined(gateway, "bob", x=5.0, y=0.0)
    gateway.advance(TICK)
    bob.send(
        {
            "jsonrpc": "2.0",
            "method": "state.update",
            "params": {"fields": {"x": 5.05}, "input_seq": 1},
        }
    )
    gateway.flush()
    gateway.advance(TICK)
    delta = state_messages(alice)[-1]["params"]
    assert delta["changed"] == {"player.bob": {"v": 2, "fields": {"x": 5.05}}}
    bob_delta = state_messages(bob)[-1]["params"]
    assert bob_delta["ack"] == {"input_seq": 1, "v": 2}
    assert "player.bob" not in bob_delta["changed"]


def test_update_request_answers_with_corrections(gateway):
    """A request update answers its version; a move too fast is corrected."""
    alice = joined(gateway, "alice", x=0.0, y=0.0)
    gateway.advance(0.5)
    reply = gateway.call(alice, "state.update", {"fields": {"x": 50.0}, "input_seq": 3})
    result = reply["result"]
    assert result["version"] == 2 and result["input_seq"] == 3
    assert 0 < result["corrected"]["x"] <= 5.0
    bad = gateway.call(alice, "state.update", {"fields": {"x": "east"}})
    assert bad["error"]["code"] == -32602
    assert bad["error"]["data"]["errors"] == [
        {"path": "/fields/x", "message": "must be a number"}
    ]


def test_mirrors_match_every_check_and_state_hash(gateway):
    """Mirrors built from pushes pass every state.check and equal state.hash."""
    alice = joined(gateway, "alice", x=0.0, y=0.0)
    bob = joined(gateway, "bob", x=1.0, y=0.0)
    for step in range(1, 40):
        gateway.call(
            bob, "state.update", {"fields": {"y": step * 0.1, "hp": 100 - step}}
        )
        gateway.advance(TICK)
    for _ in range(6):
        gateway.advance(TICK)
    mirror, checks = mirror_of(alice, "player.alice")
    assert checks >= 5
    assert mirror.entities["player.bob"][1]["hp"] == 61
    answer = gateway.call(alice, "state.hash", {})["result"]
    assert answer == {"zone": "arena", "tick": mirror.tick, "hash": mirror.hash()}


def test_sync_answers_the_tick_then_a_full_snapshot(gateway):
    """state.sync answers {tick} and sends a snapshot at that tick."""
    alice = joined(gateway, "alice", x=0.0, y=0.0)
    joined(gateway, "bob", x=1.0, y=1.0)
    for _ in range(3):
        gateway.advance(TICK)
    reply = gateway.call(alice, "state.sync", {})
    snapshot = alice.received[alice.received.index(reply) + 1]
    assert snapshot["params"]["tick"] == reply["result"]["tick"]
    assert set(snapshot["params"]["entities"]) == {"player.alice", "player.bob"}


def test_leave_and_joining_another_zone_remove_the_entity(gateway):
    """Leaving, or joining another zone, removes the player's entity from the first."""
    alice = joined(gateway, "alice", x=0.0, y=0.0)
    bob = joined(gateway, "bob", x=1.0, y=1.0)
    gateway.advance(TICK)
    gateway.call(bob, "state.join", {"zone": "cave"})
    gateway.advance(TICK)
    assert state_messages(alice)[-1]["params"]["removed"] == ["player.bob"]
    assert gateway.call(bob, "state.update", {"fields": {"torch": True}})["result"]
    assert gateway.call(bob, "state.leave", {})["result"] == {}
    assert gateway.call(bob, "state.hash", {})["error"]["code"] == -32003


def test_world_entities_need_the_service_role_and_compare_versions(gateway):
    """world.set creates and compare-and-sets; a wrong version is -32004."""
    alice = joined(gateway, "alice", x=0.0, y=0.0)
    service = gateway.open(
        "door-service", token=gateway.token("door-service", roles=["service"])
    )
    params = {"zone": "arena", "entity": "door1", "fields": {"x": 3.0, "y": 4.0}}
    assert gateway.call(alice, "world.set", params)["error"]["code"] == -32001
    assert gateway.call(service, "world.set", params)["result"] == {"version": 1}
    again = dict(params, fields={"hp": 5}, expected_version=1)
    assert gateway.call(service, "world.set", again)["result"] == {"version": 2}
    conflict = gateway.call(service, "world.set", again)["error"]
    assert conflict["code"] == -32004 and conflict["data"]["current_version"] == 2
    for _ in range(6):  # hp is a slow field
        gateway.advance(TICK)
    mirror, _ = mirror_of(alice, "player.alice")
    assert mirror.entities["world.arena.door1"] == (2, {"x": 3.0, "y": 4.0, "hp": 5})
    removal = {"zone": "arena", "entity": "door1", "expected_version": 2}
    assert gateway.call(service, "world.remove", removal)["result"] == {}
    assert gateway.call(service, "world.remove", removal)["error"]["code"] == -32003
    gateway.advance(TICK)
    assert state_messages(alice)[-1]["params"]["removed"] == ["world.arena.door1"]
    moon = gateway.call(service, "world.set", dict(params, zone="moon"))
    assert moon["error"]["code"] == -32003


def test_resume_keeps_the_entity_and_sends_a_snapshot(gateway):
    """A resumed session keeps its entity in the zone and gets a snapshot."""
    alice = joined(gateway, "alice", x=2.0, y=2.0)
    bob = joined(gateway, "bob", x=1.0, y=1.0)
    token = welcome(alice)["resume_token"]
    gateway.drop(alice)
    gateway.advance(5)
    assert "player.alice" in mirror_of(bob, "player.bob")[0].entities
    again = gateway.open("alice")
    reply = gateway.call(again, "session.resume", {"resume_token": token})
    assert reply["result"]["resumed"] is True
    snapshot = again.received[again.received.index(reply) + 1]
    assert snapshot["method"] == "state.snapshot"
    assert snapshot["params"]["entities"]["player.alice"]["fields"]["x"] == 2.0
    assert gateway.call(again, "state.update", {"fields": {"x": 2.5}})["result"]


def test_entity_leaves_when_the_resume_window_ends(gateway):
    """A detached player's entity is removed when its session expires."""
    alice = joined(gateway, "alice", x=2.0, y=2.0)
    bob = joined(gateway, "bob", x=1.0, y=1.0)
    gateway.advance(TICK)
    gateway.drop(alice)
    gateway.advance(31)
    gateway.advance(TICK)
    assert "player.alice" not in mirror_of(bob, "player.bob")[0].entities


def test_zone_events_follow_joins_and_leaves(gateway):
    """zone.joined and zone.left go out on zone.<zone> as players join and leave."""
    watcher = gateway.open("watcher")
    gateway.call(watcher, "pubsub.subscribe", {"topic": "zone.arena"})
    alice = joined(gateway, "alice", x=0.0, y=0.0)
    gateway.call(alice, "state.leave", {})
    events = [
        (n["method"], n["params"]["data"])
        for n in watcher.notifications()
        if n["method"].startswith("zone.")
    ]
    assert events == [
        ("zone.joined", {"player_id": "alice", "zone": "arena"}),
        ("zone.left", {"player_id": "alice", "zone": "arena"}),
    ]
    presence = gateway.call(watcher, "presence.get", {"players": ["alice"]})
    assert presence["result"]["players"]["alice"]["zone"] is None


def test_an_overrun_is_counted_and_not_run_twice(gateway):
    """A late tick loop runs one tick and counts the missed ones as overruns."""
    alice = joined(gateway, "alice", x=0.0, y=0.0)
    state = gateway.gateway.state
    engine = state._zones["arena"].engine
    before = engine.tick_count
    gateway.advance(TICK * 5)
    assert engine.tick_count == before + 1
    overruns = gateway.gateway.metrics.registry.get_sample_value(
        "rtgateway_state_tick_overruns_total", {"zone": "arena"}
    )
    assert overruns >= 4
    assert alice.opened


def test_cbor_clients_get_the_same_state(gateway):
    """A CBOR client receives binary state messages of the same structure."""
    alice = gateway.open("alice", protocols=["rtgw.v1.cbor"])
    gateway.call(alice, "state.join", {"zone": "arena", "fields": {"x": 1.5, "y": 0.0}})
    joined(gateway, "bob", x=1.0, y=1.0)
    gateway.advance(TICK)
    mirror, _ = mirror_of(alice, "player.alice")
    assert mirror.entities["player.bob"] == (1, {"x": 1.0, "y": 1.0, "hp": 100})
    assert decode  # the kit decodes both encodings


def test_a_replica_is_rebuilt_from_the_store_when_the_bus_comes_back(gateway):
    """Changes missed while the bus was away reach clients once it is back."""
    from rtgateway.backends.memory_state import _Entity

    alice = joined(gateway, "alice", x=0.0, y=0.0)
    service = gateway.open("svc", token=gateway.token("svc", roles=["service"]))
    door = {"zone": "arena", "entity": "door", "fields": {"x": 1.0, "y": 1.0}}
    gateway.call(service, "world.set", door)
    gateway.advance(TICK)
    zone = gateway.gateway.backends.hub.state.zones["arena"]
    # What other gateways wrote while this one's bus was down: a world
    # entity moved, another appeared; both only in the store.
    zone["world.arena.door"] = _Entity(2, {"x": 9.0, "y": 1.0})
    zone["world.arena.chest"] = _Entity(1, {"x": 2.0, "y": 2.0})
    gateway.gateway.broker.bus_reconnected()
    gateway.advance(TICK)
    mirror, _ = mirror_of(alice, "player.alice")
    assert mirror.entities["world.arena.door"] == (2, {"x": 9.0, "y": 1.0})
    assert mirror.entities["world.arena.chest"] == (1, {"x": 2.0, "y": 2.0})
    del zone["world.arena.chest"]
    gateway.gateway.broker.bus_reconnected()
    gateway.advance(TICK)
    assert "world.arena.chest" not in mirror_of(alice, "player.alice")[0].entities
    assert "player.alice" in zone


def test_a_second_session_of_the_player_takes_its_entity_over(gateway):
    """One entity, one member: the older session is out of the zone, not the entity."""
    first = joined(gateway, "alice", x=0.0, y=0.0)
    bob = joined(gateway, "bob", x=5.0, y=0.0)
    second = joined(gateway, "alice", x=1.0, y=0.0)
    gateway.advance(TICK)
    assert first.opened and second.opened
    for method, params in [("state.update", {"fields": {"x": 2}}), ("state.leave", {})]:
        assert gateway.call(first, method, params)["error"]["code"] == -32003
    gateway.drop(first)
    gateway.advance(31)
    assert gateway.call(second, "state.update", {"fields": {"x": 1.5}})["result"]
    gateway.advance(TICK)
    mirror, _ = mirror_of(bob, "player.bob")
    assert mirror.entities["player.alice"][1]["x"] == 1.5


def test_a_refused_zone_switch_leaves_the_player_where_it_was(gateway):
    """A join of another zone that fails changes nothing: same zone, same entity."""
    watcher = gateway.open("watcher")
    gateway.call(watcher, "pubsub.subscribe", {"topic": "zone.arena"})
    alice = joined(gateway, "alice", x=0.0, y=0.0)
    bob = joined(gateway, "bob", x=5.0, y=0.0)
    refused = gateway.call(
        alice, "state.join", {"zone": "cave", "fields": {"torch": "lit"}}
    )
    assert refused["error"]["code"] == -32602
    gateway.advance(TICK)
    assert "player.alice" in mirror_of(bob, "player.bob")[0].entities
    assert gateway.call(alice, "state.update", {"fields": {"x": 0.5}})["result"]
    left = [n for n in watcher.notifications() if n["method"] == "zone.left"]
    assert left == []


def test_the_echo_of_a_departed_player_does_not_bring_it_back(gateway):
    """This gateway's own player writes coming back on the bus are not applied."""
    from rtgateway.backends.zonefeed import encode_zone_batch

    alice = joined(gateway, "alice", x=0.0, y=0.0)
    bob = joined(gateway, "bob", x=5.0, y=0.0)
    gateway.advance(TICK)
    gateway.call(alice, "state.leave", {})
    gateway.advance(TICK)
    state = gateway.gateway.state
    late = encode_zone_batch(
        state._gateway_id, {"player.alice": (3, {"x": 0.5, "y": 0.0})}, []
    )
    state._bus_message("arena", late)
    gateway.advance(TICK)
    assert "player.alice" not in state._zones["arena"].engine.entities
    assert "player.alice" not in mirror_of(bob, "player.bob")[0].entities


def test_a_client_too_far_behind_is_closed_once(gateway):
    """The 4008 close is asked for once, not on every tick until it completes."""
    alice = joined(gateway, "alice", x=0.0, y=0.0)
    joined(gateway, "bob", x=5.0, y=0.0)
    connections = gateway.gateway.factory.connections
    (server,) = [c for c in connections if c.principal.player_id == "alice"]
    server._guard.pauseProducing()  # what a transport with a full buffer does
    for _ in range(int(12 / TICK)):
        gateway.clock.advance(TICK)  # no flush: the close handshake waits
    gateway.flush()
    slow = gateway.gateway.metrics.registry.get_sample_value(
        "rtgateway_state_slow_clients_total"
    )
    assert slow == 1
    assert alice.close_code == 4008


def test_a_failing_tick_is_logged_and_the_zone_ticks_on(gateway, monkeypatch):
    """An exception in one tick is logged and counted; the next tick runs."""
    from twisted.logger import globalLogPublisher

    alice = joined(gateway, "alice", x=0.0, y=0.0)
    engine = gateway.gateway.state._zones["arena"].engine
    original = engine.tick
    monkeypatch.setattr(engine, "tick", lambda writable: 1 / 0)
    logged = []
    globalLogPublisher.addObserver(logged.append)
    try:
        gateway.advance(TICK)
    finally:
        globalLogPublisher.removeObserver(logged.append)
    failures = [e for e in logged if e.get("log_failure") is not None]
    assert failures and failures[0]["zone"] == "arena"
    monkeypatch.setattr(engine, "tick", original)
    gateway.call(alice, "state.update", {"fields": {"x": 0.5}})
    before = engine.tick_count
    gateway.advance(TICK)
    assert engine.tick_count == before + 1
    count = gateway.gateway.metrics.registry.get_sample_value(
        "rtgateway_state_tick_failures_total", {"zone": "arena"}
    )
    assert count == 1
