"""Admin calls across gateways sharing one memory hub: every gateway answers."""

from __future__ import annotations

import pytest
from admin_kit import frames, open_admin, traced_connection, welcome
from twisted.internet.task import Clock

from rtgateway.backends.memory import MemoryHub
from rtgateway.components.admin.cluster import ADMIN_CHANNEL, ROSTER_TTL_S
from rtgateway.testing import MemoryGateway, make_config


@pytest.fixture
def cluster():
    """Three gateways on one hub and one clock; stopped afterwards."""
    hub, clock = MemoryHub(), Clock()
    gateways = [
        MemoryGateway(
            make_config(
                {
                    "gateway": {"id": name},
                    "admin": {"connections_page_size": 3},
                    "zones": {"cave": {"fields": {"x": {"type": "number"}}}},
                }
            ),
            clock=clock,
            hub=hub,
        )
        for name in ("gw-a", "gw-b", "gw-c")
    ]
    yield hub, gateways
    for gateway in gateways:
        gateway.stop()


def deafen(hub, gateway):
    """The gateway no longer hears admin questions, as if it hung."""
    hub.channels[ADMIN_CHANNEL].discard(gateway.gateway.backends.bus)


def test_connections_of_every_gateway_in_one_paged_list(cluster):
    """Rows of all gateways, ordered by gateway, paged across them."""
    _, (a, b, c) = cluster
    for gateway, players in ((a, ["a1"]), (b, ["b1", "b2"]), (c, ["c1"])):
        for player in players:
            gateway.open(player)
    admin = open_admin(a)
    seen, cursor = [], None
    while True:
        params = {"limit": 2} if cursor is None else {"limit": 2, "cursor": cursor}
        result = a.call(admin, "admin.connections", params)["result"]
        assert result["gateways"] == ["gw-a", "gw-b", "gw-c"]
        assert result["missing"] == [] and result["count"] == 5
        assert len(result["connections"]) <= 2
        seen += [(r["gateway_id"], r["player_id"]) for r in result["connections"]]
        cursor = result["cursor"]
        if cursor is None:
            break
    assert seen == [
        ("gw-a", "a1"),
        ("gw-a", "root"),
        ("gw-b", "b1"),
        ("gw-b", "b2"),
        ("gw-c", "c1"),
    ]
    # The gateway column is filtered on too.
    rows = a.call(admin, "admin.connections", {"filter": "GW-B"})["result"]
    assert rows["count"] == 2
    assert [r["player_id"] for r in rows["connections"]] == ["b1", "b2"]


def test_a_gateway_that_does_not_answer_is_missing_after_the_timeout(cluster):
    """The answer waits cluster_timeout_s, then lists the silent gateway."""
    hub, (a, b, c) = cluster
    b.open("b1")
    admin = open_admin(a)
    deafen(hub, c)
    admin.send({"jsonrpc": "2.0", "method": "admin.connections", "id": "q"})
    a.flush()
    assert [m for m in admin.received if m.get("id") == "q"] == []
    a.advance(1)
    (response,) = [m for m in admin.received if m.get("id") == "q"]
    result = response["result"]
    assert result["gateways"] == ["gw-a", "gw-b"] and result["missing"] == ["gw-c"]
    assert [r["player_id"] for r in result["connections"]] == ["root", "b1"]


def test_a_gateway_that_stopped_is_no_longer_expected(cluster):
    """A gateway saying goodbye is not waited for, nor listed as missing."""
    _, (a, _, c) = cluster
    c.stop()
    admin = open_admin(a)
    result = a.call(admin, "admin.zones", {})["result"]
    assert set(result["gateways"]) == {"gw-a", "gw-b"} and result["missing"] == []


def test_a_silent_gateway_is_forgotten_after_the_roster_ttl(cluster):
    """One that died without a word is missing for ROSTER_TTL_S, then forgotten."""
    hub, (a, _, c) = cluster
    deafen(hub, c)
    admin = open_admin(a)
    admin.send({"jsonrpc": "2.0", "method": "admin.stats", "id": "q"})
    a.flush()
    a.advance(1)
    response = next(m for m in admin.received if m.get("id") == "q")
    assert response["result"]["missing"] == ["gw-c"]
    a.advance(ROSTER_TTL_S)
    result = a.call(admin, "admin.stats", {"last": 1})["result"]
    assert result["missing"] == [] and set(result["gateways"]) == {"gw-a", "gw-b"}


def test_zones_and_stats_come_from_every_gateway(cluster):
    """admin.zones and admin.stats answer per gateway."""
    _, (a, b, _) = cluster
    a.advance(1)
    admin = open_admin(b)
    stats = b.call(admin, "admin.stats", {})["result"]
    assert sorted(stats["gateways"]) == ["gw-a", "gw-b", "gw-c"]
    assert all(len(s["samples"]) == 1 for s in stats["gateways"].values())
    zones = b.call(admin, "admin.zones", {})["result"]
    assert sorted(zones["gateways"]) == ["gw-a", "gw-b", "gw-c"]


def test_presence_counts_and_zones_add_up_across_gateways(cluster):
    """Statuses summed over the gateways; a zone's players from every one, paged."""
    _, (a, b, c) = cluster
    for gateway, player, status, zone in (
        (a, "a1", "away", "forest"),
        (b, "b1", "online", "forest"),
        (b, "b2", "busy", "cave"),
        (c, "c1", "online", "dunes"),
        (c, "c2", "online", "forest"),
    ):
        client = gateway.open(player)
        gateway.call(client, "presence.set", {"status": status, "zone": zone})
    admin = open_admin(a)
    first = a.call(admin, "admin.presence", {"limit": 2})["result"]
    assert first["gateways"] == ["gw-a", "gw-b", "gw-c"] and first["missing"] == []
    assert first["players"] == 6
    assert first["statuses"] == {"online": 4, "away": 1, "busy": 1, "invisible": 0}
    assert first["zones"] == [
        {"zone": "cave", "players": 1},
        {"zone": "dunes", "players": 1},
    ]
    rest = a.call(admin, "admin.presence", {"limit": 2, "cursor": first["cursor"]})
    assert rest["result"]["zones"] == [{"zone": "forest", "players": 3}]
    assert rest["result"]["cursor"] is None


def test_presence_lists_a_silent_gateway_as_missing(cluster):
    """A gateway that does not answer is missing, its players not counted."""
    hub, (a, b, c) = cluster
    b.open("b1")
    c.open("c1")
    admin = open_admin(a)
    deafen(hub, c)
    admin.send({"jsonrpc": "2.0", "method": "admin.presence", "id": "q"})
    a.flush()
    a.advance(1)
    (response,) = [m for m in admin.received if m.get("id") == "q"]
    result = response["result"]
    assert result["missing"] == ["gw-c"] and result["players"] == 2


def test_zone_holds_the_entities_of_every_gateway(cluster):
    """The store holds the whole zone: an admin on one gateway reads all of it."""
    _, (a, b, c) = cluster
    for gateway, player, x in ((b, "b1", 1.5), (c, "c1", 2.5)):
        client = gateway.open(player)
        gateway.call(client, "state.join", {"zone": "cave", "fields": {"x": x}})
    a.advance(1)
    admin = open_admin(a)
    result = a.call(admin, "admin.zone", {"zone": "cave"})["result"]
    assert result["count"] == 2 and result["truncated"] is False
    assert result["entities"] == {
        "player.b1": {"v": 1, "fields": {"x": 1.5}},
        "player.c1": {"v": 1, "fields": {"x": 2.5}},
    }


def session_of(client):
    return welcome(client)["session_id"]


def trace_across(cluster):
    """An admin on gw-a tracing a player of gw-b: (a, b, player, admin, session)."""
    _, (a, b, _) = cluster
    player = b.open("bob")
    session_id = session_of(player)
    admin = open_admin(a)
    result = a.call(admin, "admin.trace", {"session_id": session_id})["result"]
    assert result == {"session_id": session_id, "rate": 100.0, "max_frame_bytes": 4096}
    return a, b, player, admin, session_id


def test_trace_of_a_session_on_another_gateway_shows_its_frames_live(cluster):
    """The owning gateway shows the frames; they reach the admin over the bus."""
    a, b, player, admin, session_id = trace_across(cluster)
    fresh = b.token("bob", ttl_s=7200)
    b.call(player, "sys.ping", {})
    b.call(player, "session.refresh", {"token": fresh})
    a.flush()
    shown = frames(admin)
    assert [(f["direction"], f["method"]) for f in shown] == [
        ("in", "sys.ping"),
        ("out", None),
        ("in", "session.refresh"),
        ("out", None),
    ]
    assert all(f["session_id"] == session_id for f in shown)
    assert shown[2]["frame"]["params"] == {"token": "[redacted]"}
    assert fresh not in repr(admin.received)
    rows = a.call(admin, "admin.connections", {"filter": "bob"})["result"]
    assert rows["connections"][0]["traced"] is True


def test_untrace_across_gateways_stops_the_frames(cluster):
    """admin.untrace ends the trace on the owning gateway; counts are the admin's."""
    a, b, player, admin, session_id = trace_across(cluster)
    b.call(player, "sys.ping", {})
    a.flush()
    counts = a.call(admin, "admin.untrace", {"session_id": session_id})["result"]
    assert counts == {"session_id": session_id, "shown": 2, "dropped": 0}
    assert traced_connection(b, session_id).tap is None
    b.call(player, "sys.ping", {})
    a.flush()
    assert len(frames(admin)) == 2
    error = a.call(admin, "admin.untrace", {"session_id": session_id})["error"]
    assert error["code"] == -32003


def test_the_traced_player_leaving_another_gateway_ends_the_trace(cluster):
    """admin.trace_ended reaches the admin when the traced connection goes."""
    a, b, player, admin, session_id = trace_across(cluster)
    b.call(player, "sys.ping", {})
    b.drop(player)
    a.flush()
    (ended,) = admin.notifications("admin.trace_ended")
    assert ended["params"] == {
        "session_id": session_id,
        "shown": 2,
        "dropped": 0,
        "reason": "disconnected",
    }
    error = a.call(admin, "admin.untrace", {"session_id": session_id})["error"]
    assert error["code"] == -32003


def test_the_admin_leaving_ends_its_trace_on_the_other_gateway(cluster):
    """The owning gateway stops showing frames once the admin is gone."""
    a, b, _, admin, session_id = trace_across(cluster)
    assert traced_connection(b, session_id).tap is not None
    a.drop(admin)
    assert traced_connection(b, session_id).tap is None


def test_a_refresh_without_the_admin_role_ends_its_trace_on_the_other_gateway(
    cluster,
):
    """The admin is told (not_admin) and the owner stops showing frames."""
    a, b, player, admin, session_id = trace_across(cluster)
    a.call(admin, "session.refresh", {"token": a.token("root", ttl_s=7200)})
    (ended,) = admin.notifications("admin.trace_ended")
    assert ended["params"]["reason"] == "not_admin"
    assert ended["params"]["session_id"] == session_id
    assert traced_connection(b, session_id).tap is None
    shown = len(frames(admin))
    b.call(player, "sys.ping", {})
    assert len(frames(admin)) == shown


def unhear(hub, gateway):
    """The gateway hears nothing more of the bus, as if the others were dead."""
    bus = gateway.gateway.backends.bus
    for listeners in hub.channels.values():
        listeners.discard(bus)


def test_an_owner_silent_for_three_timeouts_is_lost(cluster):
    """Nothing heard of the owning gateway for 3 cluster_timeout_s: trace ended."""
    hub = cluster[0]
    a, _, _, admin, session_id = trace_across(cluster)
    unhear(hub, a)
    a.advance(3)
    assert admin.notifications("admin.trace_ended") == []
    a.advance(1)
    (ended,) = admin.notifications("admin.trace_ended")
    assert ended["params"] == {
        "session_id": session_id,
        "shown": 0,
        "dropped": 0,
        "reason": "gateway_lost",
    }


def test_an_owner_that_no_longer_hears_the_admins_gateway_ends_the_trace(cluster):
    """The owning gateway stops tracing for a gateway silent 3 cluster_timeout_s."""
    hub = cluster[0]
    _, b, _, _, session_id = trace_across(cluster)
    unhear(hub, b)
    b.advance(3)
    assert traced_connection(b, session_id).tap is not None
    b.advance(1)
    assert traced_connection(b, session_id).tap is None


def test_an_owner_saying_goodbye_ends_the_trace_at_once(cluster):
    """A gateway stopping ends the traces it ran for others, with no wait."""
    a, b, _, admin, _ = trace_across(cluster)
    b.stop()  # its goodbye, before any of its connections closes
    a.flush()
    (ended,) = admin.notifications("admin.trace_ended")
    assert ended["params"]["reason"] == "gateway_lost"


def test_a_trace_of_a_session_on_no_gateway_is_not_found(cluster):
    """A session the store does not hold attached answers -32003."""
    _, (a, b, _) = cluster
    player = b.open("bob")
    session_id = session_of(player)
    b.drop(player)
    admin = open_admin(a)
    error = a.call(admin, "admin.trace", {"session_id": session_id})["error"]
    assert error["code"] == -32003


def beats(gateway):
    return [c for c in gateway.clock.getDelayedCalls() if "_beats" in repr(c)]


def test_no_timer_runs_once_remote_traces_end(cluster):
    """The beats run only while a remote trace does: none before, none after."""
    a, _, _, admin, session_id = trace_across(cluster)
    assert len(beats(a)) == 2  # a's and b's, on their shared clock
    a.call(admin, "admin.untrace", {"session_id": session_id})
    a.advance(1)
    assert beats(a) == []
