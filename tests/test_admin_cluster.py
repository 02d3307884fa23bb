"""Admin calls across gateways sharing one memory hub: every gateway answers."""

from __future__ import annotations

import pytest
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


def open_admin(gateway):
    return gateway.open("root", token=gateway.token("root", roles=["admin"]))


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
