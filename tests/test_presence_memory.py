"""Presence through the gateway, in memory on a task.Clock."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from rtgateway.backends.memory import MemoryHub
from rtgateway.testing import MemoryGateway, make_config

SETTINGS = {
    "session": {"resume_window_s": 30},
    "presence": {"gateway_ttl_s": 9, "reap_interval_s": 3, "max_watch": 3},
}


@pytest.fixture
def gateway():
    """An in-memory gateway with a 30 s resume window."""
    gateway = MemoryGateway(make_config(SETTINGS))
    gateway.advance(1000)  # so that "now" is not 0
    yield gateway
    gateway.stop()


def changes(client, player=None):
    return [
        n["params"]["data"]
        for n in client.notifications("presence.changed")
        if player is None or n["params"]["data"]["player_id"] == player
    ]


def presence_of(gateway, client, player):
    return gateway.call(client, "presence.get", {"players": [player]})["result"][
        "players"
    ][player]


def test_never_seen_player_is_offline_with_null_last_seen(gateway):
    """A player never seen is offline, last_seen_ms null, nothing else."""
    watcher = gateway.open("watcher")
    assert presence_of(gateway, watcher, "ghost") == {
        "player_id": "ghost",
        "status": "offline",
        "last_seen_ms": None,
        "zone": None,
        "region": None,
        "activity": None,
    }


def test_watch_then_connect_and_change(gateway):
    """Watchers see a player come online and change status, zone, region, activity."""
    watcher = gateway.open("watcher")
    watched = gateway.call(watcher, "presence.watch", {"players": ["alice"]})
    assert watched["result"]["players"]["alice"]["status"] == "offline"
    alice = gateway.open("alice")
    assert changes(watcher)[-1]["status"] == "online"
    params = {"status": "busy", "zone": "forest", "region": "eu", "activity": "raid"}
    own = gateway.call(alice, "presence.set", params)["result"]["presence"]
    assert own == {"player_id": "alice", "last_seen_ms": 1_000_000, **params}
    assert changes(watcher)[-1] == own
    assert presence_of(gateway, watcher, "alice")["zone"] == "forest"


def test_zone_events_and_paged_listing(gateway):
    """Zone moves publish zone.joined/left; presence.zone pages with a count."""
    observer = gateway.open("observer")
    gateway.call(observer, "pubsub.subscribe", {"topic": "zone.forest"})
    players = [gateway.open(f"p{i}") for i in range(5)]
    for client in players:
        gateway.call(client, "presence.set", {"zone": "forest"})
    joined = [n["params"]["data"] for n in observer.notifications("zone.joined")]
    assert [j["player_id"] for j in joined] == [f"p{i}" for i in range(5)]
    page = gateway.call(observer, "presence.zone", {"zone": "forest", "limit": 2})[
        "result"
    ]
    assert page == {"count": 5, "players": ["p0", "p1"], "cursor": "p1"}
    rest = gateway.call(
        observer, "presence.zone", {"zone": "forest", "limit": 3, "cursor": "p1"}
    )["result"]
    assert rest == {"count": 5, "players": ["p2", "p3", "p4"], "cursor": None}
    gateway.call(players[0], "presence.set", {"zone": "cave"})
    (left,) = [n["params"]["data"] for n in observer.notifications("zone.left")]
    assert left == {"player_id": "p0", "zone": "forest"}


def test_invisible_looks_offline_to_others_and_hides_the_zone(gateway):
    """Invisible: offline to get, watch and zone listings; zone never leaks."""
    watcher = gateway.open("watcher")
    gateway.call(watcher, "pubsub.subscribe", {"topic": "zone.forest"})
    alice = gateway.open("alice")
    gateway.call(watcher, "presence.watch", {"players": ["alice"]})
    gateway.call(alice, "presence.set", {"zone": "forest"})
    gateway.advance(5)
    own = gateway.call(alice, "presence.set", {"status": "invisible"})["result"]
    assert own["presence"]["status"] == "invisible"
    seen = presence_of(gateway, watcher, "alice")
    assert seen == {
        "player_id": "alice",
        "status": "offline",
        "last_seen_ms": 1_005_000,
        "zone": None,
        "region": None,
        "activity": None,
    }
    assert changes(watcher)[-1] == seen
    listing = gateway.call(watcher, "presence.zone", {"zone": "forest"})["result"]
    assert listing == {"count": 0, "players": [], "cursor": None}
    assert [
        n["params"]["data"]["player_id"] for n in watcher.notifications("zone.left")
    ] == ["alice"]
    gateway.call(alice, "presence.set", {"zone": "cave"})
    assert not any("cave" in str(n) for n in watcher.received)
    gateway.call(alice, "presence.set", {"status": "online"})
    assert presence_of(gateway, watcher, "alice")["zone"] == "cave"


def test_online_while_any_session_lives(gateway):
    """With two sessions the player stays online until the last one ends."""
    watcher = gateway.open("watcher")
    gateway.call(watcher, "presence.watch", {"players": ["alice"]})
    phone, laptop = gateway.open("alice"), gateway.open("alice")
    gateway.call(phone, "session.close", {})
    assert presence_of(gateway, watcher, "alice")["status"] == "online"
    gateway.advance(2)
    gateway.call(laptop, "session.close", {})
    assert presence_of(gateway, watcher, "alice")["status"] == "offline"
    assert presence_of(gateway, watcher, "alice")["last_seen_ms"] == 1_002_000
    assert [c["status"] for c in changes(watcher)] == ["online", "offline"]


def test_drop_and_resume_inside_the_window_does_not_flap(gateway):
    """A drop and resume within the window shows watchers no change at all."""
    watcher = gateway.open("watcher")
    alice = gateway.open("alice")
    token = alice.notifications("session.welcome")[0]["params"]["resume_token"]
    gateway.call(watcher, "presence.watch", {"players": ["alice"]})
    before = len(changes(watcher))
    gateway.drop(alice)
    gateway.advance(20)
    assert presence_of(gateway, watcher, "alice")["status"] == "online"
    again = gateway.open("alice")
    assert gateway.call(again, "session.resume", {"resume_token": token})["result"]
    gateway.advance(60)
    assert len(changes(watcher)) == before
    assert presence_of(gateway, watcher, "alice")["status"] == "online"


def test_offline_after_the_window_with_the_disconnect_time(gateway):
    """When the resume window ends the player goes offline, last seen at the drop."""
    watcher = gateway.open("watcher")
    alice = gateway.open("alice")
    gateway.call(watcher, "presence.watch", {"players": ["alice"]})
    gateway.advance(7)
    gateway.drop(alice)
    gateway.advance(29)
    assert changes(watcher) == []
    gateway.advance(2)
    (offline,) = changes(watcher)
    assert offline["status"] == "offline" and offline["last_seen_ms"] == 1_007_000


def test_players_of_a_dead_gateway_go_offline_and_watchers_are_told():
    """A gateway that stops refreshing its liveness loses its players to the reaper."""
    clock, hub = Clock(), MemoryHub()
    alive = MemoryGateway(
        make_config({**SETTINGS, "gateway": {"id": "gw-a"}}), clock, hub
    )
    doomed = MemoryGateway(
        make_config({**SETTINGS, "gateway": {"id": "gw-b"}}), clock, hub
    )
    watcher = alive.open("watcher")
    doomed.open("alice")
    alive.call(watcher, "presence.watch", {"players": ["alice"]})
    doomed.gateway.presence._heartbeat.stop()  # the process is gone
    doomed.gateway.presence._reaper.stop()
    alive.advance(6)
    assert changes(watcher) == []
    for _ in range(3):
        alive.advance(3)
    (offline,) = changes(watcher)
    assert offline["status"] == "offline"
    alive.stop()


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("presence.get", {"players": [f"p{i}" for i in range(501)]}),
        ("presence.get", {"players": ["a", "a"]}),
        ("presence.zone", {"zone": "forest", "limit": 1001}),
        ("presence.set", {"status": "offline"}),
        ("presence.set", {"zone": "bad zone"}),
    ],
    ids=["too-many", "duplicates", "page-too-big", "offline-status", "bad-zone"],
)
def test_bounds_and_bad_params(gateway, method, params):
    """Calls past the configured bounds or with bad values get -32602."""
    client = gateway.open("alice")
    assert gateway.call(client, method, params)["error"]["code"] == -32602


def test_watch_list_is_bounded_per_session(gateway):
    """A session watches at most max_watch players."""
    client = gateway.open("alice")
    assert "result" in gateway.call(client, "presence.watch", {"players": ["a", "b"]})
    assert "result" in gateway.call(client, "presence.watch", {"players": ["b", "c"]})
    refused = gateway.call(client, "presence.watch", {"players": ["d"]})
    assert refused["error"]["code"] == -32602
    gateway.call(client, "presence.unwatch", {"players": ["a"]})
    assert "result" in gateway.call(client, "presence.watch", {"players": ["d"]})


def test_watches_survive_a_resume(gateway):
    """Watched players come back with the session on resume."""
    alice = gateway.open("alice")
    token = alice.notifications("session.welcome")[0]["params"]["resume_token"]
    gateway.call(alice, "presence.watch", {"players": ["bob"]})
    gateway.drop(alice)
    again = gateway.open("alice")
    result = gateway.call(again, "session.resume", {"resume_token": token})["result"]
    assert result["subscriptions"] == ["presence.bob"]
    gateway.open("bob")
    assert changes(again, "bob")[-1]["status"] == "online"


def test_zone_of_ten_thousand_is_paged_and_counted(gateway):
    """A 10,000-player zone answers one page and an exact count."""
    store = gateway.gateway.backends.presence
    for i in range(10_000):
        player = f"p{i:05d}"
        store.connect(player, f"s{i}", "gw-test")
        store.update(player, {"zone": "arena"}, 0)
    client = gateway.open("alice")
    page = gateway.call(client, "presence.zone", {"zone": "arena"})["result"]
    assert page["count"] == 10_000
    assert len(page["players"]) == 100 and page["cursor"] == "p00099"


def test_stalled_gateway_restores_its_players_after_being_reaped():
    """A gateway presumed dead after a stall brings its players back online."""
    clock, hub = Clock(), MemoryHub()
    watching = MemoryGateway(
        make_config({**SETTINGS, "gateway": {"id": "gw-a"}}), clock, hub
    )
    stalled = MemoryGateway(
        make_config({**SETTINGS, "gateway": {"id": "gw-b"}}), clock, hub
    )
    watcher = watching.open("watcher")
    stalled.open("alice")
    watching.call(watcher, "presence.watch", {"players": ["alice"]})
    heartbeat = stalled.gateway.presence._heartbeat
    heartbeat.stop()  # a long pause: no liveness refresh
    for _ in range(5):
        watching.advance(3)
    assert [c["status"] for c in changes(watcher)] == ["offline"]
    heartbeat.start(3, now=True)  # the gateway wakes up
    watching.flush()
    assert [c["status"] for c in changes(watcher)] == ["offline", "online"]
    watching.stop()
    stalled.stop()


def test_after_a_resume_ending_the_session_takes_the_player_offline(gateway):
    """The connection's own fresh session, replaced by the resume, leaves no trace."""
    watcher = gateway.open("watcher")
    gateway.call(watcher, "presence.watch", {"players": ["alice"]})
    alice = gateway.open("alice")
    token = alice.notifications("session.welcome")[0]["params"]["resume_token"]
    gateway.drop(alice)
    again = gateway.open("alice")
    gateway.call(again, "session.resume", {"resume_token": token})
    gateway.call(again, "session.close", {})
    assert [c["status"] for c in changes(watcher)] == ["online", "offline"]


def test_subscribing_to_presence_topics_counts_as_watching(gateway):
    """pubsub.subscribe on presence.* is bounded by max_watch too."""
    client = gateway.open("alice")
    for player in ("a", "b", "c"):
        topic = {"topic": f"presence.{player}"}
        assert "result" in gateway.call(client, "pubsub.subscribe", topic)
    refused = gateway.call(client, "pubsub.subscribe", {"topic": "presence.d"})
    assert refused["error"]["code"] == -32602
    assert gateway.call(client, "presence.watch", {"players": ["d"]})["error"]


def test_reconnecting_player_is_online_again_unless_invisible(gateway):
    """Away does not outlive the sessions; invisible does (never a flash online)."""
    watcher = gateway.open("watcher")
    gateway.call(watcher, "presence.watch", {"players": ["alice"]})
    alice = gateway.open("alice")
    gateway.call(alice, "presence.set", {"status": "away", "zone": "forest"})
    gateway.call(alice, "session.close", {})
    back = gateway.open("alice")
    assert presence_of(gateway, watcher, "alice")["status"] == "online"
    assert presence_of(gateway, watcher, "alice")["zone"] is None
    gateway.call(back, "presence.set", {"status": "invisible"})
    gateway.call(back, "session.close", {})
    count = len(changes(watcher))
    gateway.open("alice")
    assert len(changes(watcher)) == count
    assert presence_of(gateway, watcher, "alice")["status"] == "offline"


def test_sessions_of_a_dead_gateway_are_detached_so_they_expire():
    """The reaper detaches a dead gateway's sessions: resumable, then forgotten."""
    clock, hub = Clock(), MemoryHub()
    alive = MemoryGateway(
        make_config({**SETTINGS, "gateway": {"id": "gw-a"}}), clock, hub
    )
    doomed = MemoryGateway(
        make_config({**SETTINGS, "gateway": {"id": "gw-b"}}), clock, hub
    )
    alice = doomed.open("alice")
    session_id = alice.notifications("session.welcome")[0]["params"]["session_id"]
    doomed.gateway.presence._heartbeat.stop()
    doomed.gateway.presence._reaper.stop()
    for _ in range(5):
        alive.advance(3)
    store = alive.gateway.backends.sessions
    record = alive.result_of(store.load(session_id))
    assert record is not None and not record.attached
    alive.advance(30 + 61)
    assert alive.result_of(store.load(session_id)) is None
    alive.stop()
