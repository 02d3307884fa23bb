"""The admin methods of the debug inspector, in memory on a task.Clock."""

from __future__ import annotations

import pytest
from admin_kit import frames, open_admin, traced_connection, welcome

from rtgateway.testing import MemoryGateway, make_config

ZONES = {
    "cave": {"fields": {"torch": {"type": "boolean", "default": False}}},
    "field": {
        "position": ["x", "y"],
        "bounds": {"min": [-50, 0], "max": [50, 20]},
        "fields": {"x": {"type": "number"}, "y": {"type": "number"}},
    },
}


@pytest.fixture
def gateway():
    """An in-memory gateway with one state zone and small admin bounds."""
    gateway = MemoryGateway(
        make_config(
            {
                "zones": ZONES,
                "admin": {
                    "trace_rate": 5,
                    "trace_max_sessions": 2,
                    "trace_max_frame_bytes": 200,
                    "connections_page_size": 2,
                    "connections_page_max": 3,
                    "stats_samples": 4,
                    "zone_max_entities": 3,
                },
            }
        )
    )
    yield gateway
    gateway.stop()


@pytest.mark.parametrize(
    "method, params",
    [
        ("admin.connections", {}),
        ("admin.trace", {"session_id": "x"}),
        ("admin.untrace", {"session_id": "x"}),
        ("admin.zones", {}),
        ("admin.stats", {}),
        ("admin.presence", {}),
        ("admin.zone", {"zone": "cave"}),
    ],
)
def test_players_and_services_are_refused(gateway, method, params):
    """Without the admin role every admin method answers -32001."""
    for roles in ([], ["service"]):
        client = gateway.open("bob", token=gateway.token("bob", roles=roles))
        error = gateway.call(client, method, params)["error"]
        assert error["code"] == -32001, (roles, error)


def test_disabled_admin_has_no_methods():
    """With [admin] enabled = false the methods do not exist (-32601)."""
    gateway = MemoryGateway(make_config({"admin": {"enabled": False}}))
    try:
        admin = open_admin(gateway)
        error = gateway.call(admin, "admin.connections", {})["error"]
        assert error["code"] == -32601
    finally:
        gateway.stop()


def test_connections_lists_each_connection_without_tokens(gateway):
    """A row per connection: player, session, gateway, counters, zone, no token."""
    alice = gateway.open("alice")
    gateway.call(alice, "state.join", {"zone": "cave"})
    gateway.call(alice, "pubsub.subscribe", {"topic": "presence.bob"})
    gateway.advance(2)
    admin = open_admin(gateway)
    result = gateway.call(admin, "admin.connections", {"filter": "alice"})["result"]
    assert result["count"] == 1 and result["gateways"] == ["gw-test"]
    assert result["missing"] == [] and result["cursor"] is None
    (row,) = result["connections"]
    assert row["player_id"] == "alice"
    assert row["session_id"] == welcome(alice)["session_id"]
    assert row["gateway_id"] == "gw-test"
    assert row["since_ms"] == 0 and row["zone"] == "cave"
    assert row["subscriptions"] == ["presence.bob"]
    assert row["messages_in"] == 2 and row["messages_out"] >= 3
    assert row["bytes_in"] > 0 and row["bytes_out"] > 0
    assert row["send_buffer"]["limit"] == 1048576
    assert 0 <= row["send_buffer"]["fill"] <= 1
    assert row["traced"] is False and "rtt_ms" in row
    text = repr(result)
    assert welcome(alice)["resume_token"] not in text
    assert gateway.token("alice") not in text


def test_connections_are_paged_within_the_configured_bounds(gateway):
    """Pages follow the cursor, default to page_size, refuse over page_max."""
    for name in ("p1", "p2", "p3", "p4", "p5"):
        gateway.open(name)
    admin = open_admin(gateway)
    seen, cursor = [], None
    while True:
        params = {} if cursor is None else {"cursor": cursor}
        result = gateway.call(admin, "admin.connections", params)["result"]
        assert result["count"] == 6 and len(result["connections"]) <= 2
        seen += [row["player_id"] for row in result["connections"]]
        cursor = result["cursor"]
        if cursor is None:
            break
    assert seen == ["p1", "p2", "p3", "p4", "p5", "root"]
    error = gateway.call(admin, "admin.connections", {"limit": 4})["error"]
    assert error["code"] == -32602
    error = gateway.call(admin, "admin.connections", {"cursor": "nonsense"})["error"]
    assert error["code"] == -32602


def test_trace_delivers_frames_in_and_out_live(gateway):
    """Each frame the traced session sends or receives reaches the admin."""
    alice = gateway.open("alice")
    session_id = welcome(alice)["session_id"]
    admin = open_admin(gateway)
    result = gateway.call(admin, "admin.trace", {"session_id": session_id})["result"]
    assert result == {"session_id": session_id, "rate": 5, "max_frame_bytes": 200}
    gateway.clock.advance(1.5)
    gateway.call(alice, "sys.ping", {})
    shown = frames(admin, session_id)
    assert [(f["direction"], f["method"]) for f in shown] == [
        ("in", "sys.ping"),
        ("out", None),
    ]
    request, response = shown
    assert request["frame"]["method"] == "sys.ping" and request["time_ms"] == 1500
    assert response["frame"]["result"] == {"server_time_ms": 1500}
    assert request["size"] > 0 and request["dropped"] == 0
    rows = gateway.call(admin, "admin.connections", {"filter": "alice"})["result"]
    assert rows["connections"][0]["traced"] is True


def test_trace_rate_drops_and_counts_what_is_over_it(gateway):
    """Past trace_rate frames a second, frames are counted as dropped, not shown."""
    alice = gateway.open("alice")
    session_id = welcome(alice)["session_id"]
    admin = open_admin(gateway)
    gateway.call(admin, "admin.trace", {"session_id": session_id})
    for _ in range(10):  # 20 frames within one instant; the burst is 5
        gateway.call(alice, "sys.ping", {})
    assert len(frames(admin)) == 5
    gateway.advance(1)  # 5 more tokens
    gateway.call(alice, "sys.ping", {})
    latest = frames(admin)[-1]
    assert len(frames(admin)) == 7 and latest["dropped"] == 15
    counts = gateway.call(admin, "admin.untrace", {"session_id": session_id})
    assert counts["result"] == {"session_id": session_id, "shown": 7, "dropped": 15}
    gateway.call(alice, "sys.ping", {})
    assert len(frames(admin)) == 7  # untraced: nothing more


def test_trace_cuts_frames_to_the_configured_size(gateway):
    """A frame longer than trace_max_frame_bytes is shown as truncated text."""
    alice = gateway.open("alice")
    session_id = welcome(alice)["session_id"]
    admin = open_admin(gateway)
    gateway.call(admin, "admin.trace", {"session_id": session_id})
    gateway.call(alice, "presence.set", {"activity": "x" * 250})
    incoming = frames(admin)[0]
    assert incoming["truncated"] is True and isinstance(incoming["frame"], str)
    assert len(incoming["frame"].encode()) == 200 and incoming["size"] > 250
    assert incoming["method"] == "presence.set"


def test_trace_never_shows_tokens(gateway):
    """Members named token, access_token, resume_token and JWTs are redacted."""
    alice = gateway.open("alice")
    session_id = welcome(alice)["session_id"]
    resume_token = welcome(alice)["resume_token"]
    admin = open_admin(gateway)
    gateway.call(admin, "admin.trace", {"session_id": session_id})
    fresh = gateway.token("alice", ttl_s=7200)
    gateway.call(alice, "session.refresh", {"token": fresh})
    gateway.call(alice, "session.resume", {"resume_token": resume_token})
    gateway.call(
        alice,
        "presence.set",
        {"activity": fresh, "region": "eu"},
    )
    shown = frames(admin)
    incoming = [f for f in shown if f["direction"] == "in"]
    assert [f["method"] for f in incoming] == [
        "session.refresh",
        "session.resume",
        "presence.set",
    ]
    text = repr(shown)
    assert fresh not in text and resume_token not in text
    assert incoming[0]["frame"]["params"] == {"token": "[redacted]"}
    assert incoming[1]["frame"]["params"] == {"resume_token": "[redacted]"}
    assert incoming[2]["frame"]["params"] == {"activity": "[redacted]", "region": "eu"}


def test_trace_ends_when_the_traced_session_disconnects(gateway):
    """The admin is told with admin.trace_ended; the trace no longer counts."""
    alice = gateway.open("alice")
    session_id = welcome(alice)["session_id"]
    admin = open_admin(gateway)
    gateway.call(admin, "admin.trace", {"session_id": session_id})
    gateway.call(alice, "sys.ping", {})
    gateway.drop(alice)
    (ended,) = admin.notifications("admin.trace_ended")
    assert ended["params"] == {
        "session_id": session_id,
        "shown": 2,
        "dropped": 0,
        "reason": "disconnected",
    }
    error = gateway.call(admin, "admin.untrace", {"session_id": session_id})["error"]
    assert error["code"] == -32003


def test_trace_ends_when_the_admin_disconnects(gateway):
    """The traced connection stops showing frames once its admin is gone."""
    alice = gateway.open("alice")
    session_id = welcome(alice)["session_id"]
    admin = open_admin(gateway)
    gateway.call(admin, "admin.trace", {"session_id": session_id})
    server = traced_connection(gateway, session_id)
    assert server.tap is not None
    gateway.drop(admin)
    assert server.tap is None
    other = open_admin(gateway, "root2")
    assert "error" not in gateway.call(other, "admin.trace", {"session_id": session_id})


def test_a_refresh_without_the_admin_role_ends_the_admins_traces(gateway):
    """The role is not only checked when a trace starts: losing it ends them."""
    alice = gateway.open("alice")
    session_id = welcome(alice)["session_id"]
    admin = open_admin(gateway)
    gateway.call(admin, "admin.trace", {"session_id": session_id})
    gateway.call(alice, "sys.ping", {})
    still = gateway.token("root", roles=["admin"], ttl_s=7200)
    assert "result" in gateway.call(admin, "session.refresh", {"token": still})
    assert admin.notifications("admin.trace_ended") == []
    plain = gateway.token("root", ttl_s=7200)
    assert "result" in gateway.call(admin, "session.refresh", {"token": plain})
    (ended,) = admin.notifications("admin.trace_ended")
    assert ended["params"] == {
        "session_id": session_id,
        "shown": 2,
        "dropped": 0,
        "reason": "not_admin",
    }
    shown = len(frames(admin))
    gateway.call(alice, "sys.ping", {})
    assert len(frames(admin)) == shown
    server = traced_connection(gateway, session_id)
    assert server.tap is None


def test_concurrent_traces_are_bounded(gateway):
    """Past trace_max_sessions traces a new one is refused -32005."""
    sessions = [welcome(gateway.open(name))["session_id"] for name in "abc"]
    admin = open_admin(gateway)
    for session_id in sessions[:2]:
        assert "result" in gateway.call(
            admin, "admin.trace", {"session_id": session_id}
        )
    # Tracing the same session again is the trace already running.
    assert "result" in gateway.call(admin, "admin.trace", {"session_id": sessions[0]})
    error = gateway.call(admin, "admin.trace", {"session_id": sessions[2]})["error"]
    assert error["code"] == -32005
    gateway.call(admin, "admin.untrace", {"session_id": sessions[0]})
    assert "result" in gateway.call(admin, "admin.trace", {"session_id": sessions[2]})


def test_trace_of_an_unknown_session_is_not_found(gateway):
    """A session not connected to this gateway cannot be traced (-32003)."""
    admin = open_admin(gateway)
    error = gateway.call(admin, "admin.trace", {"session_id": "nobody"})["error"]
    assert error["code"] == -32003


def test_admins_tracing_each_other_do_not_feed_back(gateway):
    """admin.frame pushes are never traced, so two admins do not loop."""
    first, second = open_admin(gateway, "a1"), open_admin(gateway, "a2")
    gateway.call(first, "admin.trace", {"session_id": welcome(second)["session_id"]})
    gateway.call(second, "admin.trace", {"session_id": welcome(first)["session_id"]})
    gateway.advance(5)
    before = len(first.received) + len(second.received)
    gateway.call(first, "sys.ping", {})
    after = len(first.received) + len(second.received)
    # first: its response and second's traced request, response: nothing more.
    assert after - before == 3
    methods = [f["method"] for f in frames(first) + frames(second)]
    assert "admin.frame" not in methods


def test_zones_report_entities_clients_and_ticks(gateway):
    """admin.zones lists each zone with its entities, clients, p99 and overruns."""
    alice = gateway.open("alice")
    gateway.call(alice, "state.join", {"zone": "cave"})
    for _ in range(60):
        gateway.advance(1 / 60 + 1e-6)
    admin = open_admin(gateway)
    result = gateway.call(admin, "admin.zones", {})["result"]
    assert result["missing"] == []
    zone, idle = result["gateways"]["gw-test"]["zones"]
    assert zone["zone"] == "cave" and zone["active"] is True
    assert idle["zone"] == "field" and idle["active"] is False
    assert zone["entities"] == 1 and zone["clients"] == 1
    assert zone["ticks"] >= 59 and zone["overruns"] >= 0
    assert zone["tick_p99_ms"] is not None


def test_stats_sample_a_bounded_ring(gateway):
    """admin.stats keeps stats_samples samples of rates, p99, resumes."""
    alice = gateway.open("alice")
    resume_token = welcome(alice)["resume_token"]
    admin = open_admin(gateway)
    for _ in range(4):
        gateway.call(alice, "sys.ping", {})
    gateway.drop(alice)
    again = gateway.open("alice")
    gateway.call(again, "session.resume", {"resume_token": resume_token})
    gateway.advance(1)
    result = gateway.call(admin, "admin.stats", {})["result"]
    series = result["gateways"]["gw-test"]
    assert series["interval_ms"] == 1000
    (sample,) = series["samples"]
    assert sample["messages_in_per_s"] == 5  # four pings and the resume
    assert sample["reconnects"] == 1 and sample["resumes"] == 1
    assert sample["connections"] == 2 and sample["p99_call_ms"] is not None
    for _ in range(10):
        gateway.advance(1)
    samples = gateway.call(admin, "admin.stats", {})["result"]["gateways"]["gw-test"]
    assert len(samples["samples"]) == 4
    assert samples["samples"][-1]["messages_in_per_s"] == 0
    last = gateway.call(admin, "admin.stats", {"last": 2})["result"]
    assert len(last["gateways"]["gw-test"]["samples"]) == 2
    assert gateway.call(admin, "admin.stats", {"last": 5})["error"]["code"] == -32602


def test_presence_counts_players_by_status_and_zone(gateway):
    """Each player once, by status; zones with their players, invisible included."""
    statuses = {"p1": "away", "p2": "busy", "p3": "invisible", "p4": "online"}
    zones = {"p1": "forest", "p2": "forest", "p3": "cave", "p4": None}
    for player, status in statuses.items():
        client = gateway.open(player)
        gateway.call(client, "presence.set", {"status": status, "zone": zones[player]})
    gateway.open("p1")  # a second session: still one player
    admin = open_admin(gateway)
    result = gateway.call(admin, "admin.presence", {})["result"]
    assert result == {
        "players": 5,
        "statuses": {"online": 2, "away": 1, "busy": 1, "invisible": 1},
        "zones": [{"zone": "cave", "players": 1}, {"zone": "forest", "players": 2}],
        "cursor": None,
        "gateways": ["gw-test"],
        "missing": [],
    }


def test_presence_zones_are_paged_within_the_configured_bounds(gateway):
    """Zones by name, page_size by default, the cursor to the next page."""
    for index in range(5):
        client = gateway.open(f"p{index}")
        gateway.call(client, "presence.set", {"zone": f"z{index}"})
    admin = open_admin(gateway)
    seen, cursor = [], None
    while True:
        params = {} if cursor is None else {"cursor": cursor}
        result = gateway.call(admin, "admin.presence", params)["result"]
        assert result["players"] == 6 and len(result["zones"]) <= 2
        seen += [row["zone"] for row in result["zones"]]
        cursor = result["cursor"]
        if cursor is None:
            break
    assert seen == ["z0", "z1", "z2", "z3", "z4"]
    error = gateway.call(admin, "admin.presence", {"limit": 4})["error"]
    assert error["code"] == -32602


def test_admin_methods_are_described_in_rpc_discover(gateway):
    """rpc.discover lists the admin methods with their schemas."""
    admin = open_admin(gateway)
    methods = gateway.call(admin, "rpc.discover", {})["result"]["methods"]
    described = {m["name"]: m for m in methods if m["name"].startswith("admin.")}
    assert {"admin.presence", "admin.connections"} <= set(described)
    presence = described["admin.presence"]
    assert presence["x-roles"] == ["admin"]
    required = presence["result"]["schema"]["required"]
    assert required[:3] == ["players", "statuses", "zones"]


def test_zone_lists_its_entities_with_versions_and_fields(gateway):
    """admin.zone: every entity of the zone, its version and its fields."""
    alice = gateway.open("alice")
    gateway.call(alice, "state.join", {"zone": "cave", "fields": {"torch": True}})
    service = gateway.open("svc", token=gateway.token("svc", roles=["service"]))
    gateway.call(service, "world.set", {"zone": "cave", "entity": "door", "fields": {}})
    gateway.advance(1)
    admin = open_admin(gateway)
    result = gateway.call(admin, "admin.zone", {"zone": "cave"})["result"]
    assert result == {
        "zone": "cave",
        "position": [],
        "bounds": None,
        "count": 2,
        "entities": {
            "player.alice": {"v": 1, "fields": {"torch": True}},
            "world.cave.door": {"v": 1, "fields": {}},
        },
        "truncated": False,
    }


def test_zone_says_its_position_fields_and_bounds(gateway):
    """admin.zone names the position fields and the bounds a map is drawn in."""
    gateway.call(gateway.open("alice"), "state.join", {"zone": "field"})
    gateway.advance(1)
    result = gateway.call(open_admin(gateway), "admin.zone", {"zone": "field"})
    assert result["result"]["position"] == ["x", "y"]
    assert result["result"]["bounds"] == {"min": [-50, 0], "max": [50, 20]}


def test_zone_is_bounded_by_zone_max_entities(gateway):
    """Past zone_max_entities the first ones by id are listed, marked truncated."""
    for name in ("p1", "p2", "p3", "p4"):
        gateway.call(gateway.open(name), "state.join", {"zone": "cave"})
    gateway.advance(1)
    admin = open_admin(gateway)
    result = gateway.call(admin, "admin.zone", {"zone": "cave"})["result"]
    assert result["count"] == 4 and result["truncated"] is True
    assert sorted(result["entities"]) == ["player.p1", "player.p2", "player.p3"]


def test_zone_not_configured_is_not_found(gateway):
    """A zone name the configuration does not have answers -32003."""
    admin = open_admin(gateway)
    error = gateway.call(admin, "admin.zone", {"zone": "nowhere"})["error"]
    assert error["code"] == -32003
