"""The sans-io tick step: rules, deltas, lanes, interest, backpressure, hashes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from state_kit import Clients, arena

from rtgateway.state.engine import Backpressure, ZoneEngine, ZoneFullError
from rtgateway.state.mirror import Mirror
from rtgateway.state.quantize import quantize
from rtgateway.state.schema import FieldSpec
from rtgateway.wire.errors import InvalidParams


def started(schema=None, players=("a", "b"), **fields):
    engine = ZoneEngine(schema or arena())
    clients = Clients(engine)
    for index, player in enumerate(players):
        clients.join(player, {"x": float(index), "y": 0.0, **fields})
    return engine, clients


def test_join_sends_a_snapshot_with_every_entity_own_included():
    """A joining client's snapshot holds its own entity and the others, all fields."""
    _engine, clients = started()
    snapshot = clients.last("b", "state.snapshot")
    assert set(snapshot["entities"]) == {"player.a", "player.b"}
    assert snapshot["entities"]["player.a"] == {
        "v": 1,
        "fields": {"x": 0.0, "y": 0.0, "hp": 100},
    }


def test_entering_entity_comes_with_all_fields_and_own_never_in_changed():
    """An entering entity carries every field; a client's own is never in changed."""
    engine, clients = started(players=("a",))
    clients.join("b", {"x": 1.0, "y": 2.0, "name": "bo"})
    clients.tick()
    delta = clients.last("a")
    assert delta["changed"] == {
        "player.b": {"v": 1, "fields": {"x": 1.0, "y": 2.0, "hp": 100, "name": "bo"}}
    }
    engine.update("b", {"x": 1.5}, 1, 0.5)
    clients.tick()
    assert "player.b" not in clients.last("b")["changed"]
    assert clients.last("a")["changed"] == {"player.b": {"v": 2, "fields": {"x": 1.5}}}


def test_inputs_are_acked_in_the_next_delta_even_when_nothing_else_changed():
    """A tick that applied an input sends a delta carrying the ack."""
    engine, clients = started(players=("a",))
    engine.update("a", {"open": True}, 7, 0.1)
    engine.update("a", {"open": False}, 8, 0.1)
    clients.tick()
    delta = clients.last("a")
    assert delta["ack"] == {"input_seq": 8, "v": 3}
    assert delta["changed"] == {} and delta["removed"] == []


def test_stale_input_seq_is_refused():
    """An input at or below the last applied input_seq is dropped with -32602."""
    engine, _clients = started(players=("a",))
    engine.update("a", {"x": 0.1}, 5, 0.1)
    with pytest.raises(InvalidParams) as refused:
        engine.update("a", {"x": 0.2}, 5, 0.2)
    assert refused.value.data["errors"][0]["path"] == "/input_seq"
    assert engine.entities["player.a"].fields["x"] == 0.1


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        ({"z": 1}, "/fields/z", "unknown field"),
        ({"x": "far"}, "/fields/x", "must be a number"),
        ({"x": True}, "/fields/x", "must be a number"),
        ({"hp": 1.5}, "/fields/hp", "must be an integer"),
        ({"name": "n" * 17}, "/fields/name", "must be at most 16 characters"),
        ({"dir": [1, "a"]}, "/fields/dir", "must be an array of numbers"),
        ({"dir": [1, 2, 3]}, "/fields/dir", "must have at most 2 items"),
        ({"open": 1}, "/fields/open", "must be a boolean"),
        ({"x": 1e300}, "/fields/x", "must be within ±(2^53 - 1)"),
        ({"hp": 2**60}, "/fields/hp", "must be within ±(2^53 - 1)"),
        ({"hp": -1e300}, "/fields/hp", "must be within ±(2^53 - 1)"),
        ({"dir": [0, 2.0**54]}, "/fields/dir", "must be within ±(2^53 - 1)"),
    ],
)
def test_bad_fields_are_refused_with_pointers(fields, path, message):
    """Unknown fields and wrong types get -32602 with the field's JSON pointer."""
    engine, _clients = started(players=("a",))
    with pytest.raises(InvalidParams) as refused:
        engine.update("a", fields, None, 0.1)
    assert refused.value.code == -32602
    assert refused.value.data["errors"] == [{"path": path, "message": message}]


def test_numbers_at_the_limit_stay_encodable_and_hashable():
    """A number quantized past 2^53 - 1 is refused; one at the limit ticks on."""
    schema = arena(
        fields={**arena().fields, "big": FieldSpec("big", "number", quantum=4)}
    )
    engine, clients = started(schema, players=("a", "b"))
    with pytest.raises(InvalidParams):
        engine.update("a", {"big": 2**53 - 1}, 1, 0.1)  # rounds up to 2^53
    engine.update("a", {"big": 2**53 - 4}, 2, 0.1)
    clients.tick()
    assert clients.mirrors["b"].entities["player.a"][1]["big"] == 2**53 - 4
    engine.view_hash("b")


def test_a_later_input_undoes_an_earlier_correction_in_the_ack():
    """ack.corrected holds only fields whose authoritative value was corrected."""
    engine, clients = started(players=("a",))
    assert engine.update("a", {"hp": 150}, 1, 0.1).corrected == {"hp": 100}
    engine.update("a", {"hp": 50}, 2, 0.1)
    engine.update("a", {"x": 0.5}, 3, 0.1)
    clients.tick()
    assert clients.last("a")["ack"] == {"input_seq": 3, "v": 3}
    engine.update("a", {"hp": 50, "x": 0.7}, 4, 0.2)
    engine.update("a", {"hp": 120}, 5, 0.2)
    clients.tick()
    assert clients.last("a")["ack"]["corrected"] == {"hp": 100}


def test_a_second_client_of_an_entity_takes_it_over():
    """One client per entity: the first is detached, the entity stays."""
    engine, clients = started(players=("a", "b"))
    clients.mirrors["a2"] = Mirror(own="player.a")
    clients.deliver("a2", engine.attach("a2", "player.a", "json", 0.5))
    assert "a" not in engine.clients and "a2" in engine.clients
    engine.detach("a")
    engine.update("a2", {"x": 3.0}, 1, 1.0)
    clients.tick()
    assert clients.mirrors["b"].entities["player.a"][1]["x"] == 3.0


def test_joining_again_keeps_the_speed_limit():
    """A re-join of the same zone cannot teleport past max_speed."""
    schema = arena(max_speed=10.0, speed_burst_s=1.0)
    engine, clients = started(schema, players=("a",))
    engine.update("a", {"x": 1.0}, 1, 1.0)
    clients.join("a", {"x": 90.0}, now=1.1)
    assert engine.entities["player.a"].fields["x"] < 12.0


def test_a_short_snapshot_interval_is_not_taken_for_never():
    """snapshot_interval_s below half a tick still means a snapshot every tick."""
    _engine, clients = started(arena(snapshot_interval_s=0.001), players=("a", "b"))
    clients.tick()
    assert clients.messages["a"][-1]["method"] == "state.snapshot"


def test_values_are_quantized_and_min_max_clamped_with_corrections():
    """Numbers keep multiples of their quantum; a clamp is reported as corrected."""
    engine, _clients = started(players=("a",))
    outcome = engine.update("a", {"x": 0.123456, "hp": 250, "dir": [0.74, -3]}, 1, 1.0)
    fields = engine.entities["player.a"].fields
    assert fields["x"] == 0.12 and fields["dir"] == [0.5, -3.0]
    assert fields["hp"] == 100
    assert outcome.corrected == {"hp": 100}


def test_bounds_clamp_the_position():
    """A position outside the zone's bounds is clamped and reported."""
    schema = arena(bounds_min=(-10.0, -10.0), bounds_max=(10.0, 10.0))
    engine, _clients = started(schema, players=("a",))
    outcome = engine.update("a", {"x": 12.0, "y": -30.0}, 1, 100.0)
    assert outcome.corrected == {"x": 10.0, "y": -10.0}


def test_speed_limit_shortens_the_move_along_its_direction():
    """A move faster than max_speed is cut to the allowance, same direction."""
    schema = arena(max_speed=10.0, speed_burst_s=1.0)
    engine, clients = started(schema, players=("a",))
    outcome = engine.update("a", {"x": 30.0, "y": 40.0}, 1, 0.5)
    x, y = outcome.corrected["x"], outcome.corrected["y"]
    assert math.hypot(x, y) <= 5.0 + 1e-9
    assert math.hypot(x, y) > 4.9
    assert abs(y / x - 4 / 3) < 0.01
    assert clients.engine.update("a", {"x": x + 0.1}, 2, 0.6).corrected == {}


def test_bunched_inputs_within_the_allowance_are_not_corrected():
    """Inputs arriving together within the allowance accumulated are all applied."""
    schema = arena(max_speed=6.0)
    engine, _clients = started(schema, players=("a",))
    now = 1 / 60
    for step in range(1, 4):
        outcome = engine.update("a", {"x": step * 0.1}, step, now * 3)
        assert outcome.corrected == {}


def test_slow_fields_wait_for_the_slow_tick():
    """A slow-lane change goes out only on ticks that are multiples of fast/slow."""
    engine, clients = started()
    engine.update("a", {"hp": 50, "x": 0.5}, 1, 0.1)
    clients.tick()
    assert clients.last("b")["changed"] == {"player.a": {"v": 2, "fields": {"x": 0.5}}}
    for _ in range(4):
        clients.tick()
    assert clients.last("b")["tick"] == 1
    clients.tick()
    delta = clients.last("b")
    assert delta["tick"] == 6 and delta["base_tick"] == 1
    assert delta["changed"] == {"player.a": {"v": 2, "fields": {"hp": 50}}}


def test_no_message_when_nothing_changed():
    """A client gets no state message on a tick where its view did not change."""
    _engine, clients = started()
    clients.tick()
    before = len(clients.messages["a"])
    for _ in range(10):
        clients.tick()
    assert len(clients.messages["a"]) == before


def test_removed_entities_are_listed():
    """An entity leaving the zone is in removed; the client's mirror drops it."""
    engine, clients = started()
    clients.tick()
    engine.leave("b")
    clients.tick()
    assert clients.last("a")["removed"] == ["player.b"]
    assert set(clients.mirrors["a"].entities) == {"player.a"}


def test_a_skipped_client_gets_one_delta_from_its_own_base():
    """A client that was not writable gets, later, one delta from its base."""
    engine, clients = started()
    for step in range(1, 5):
        engine.update("a", {"x": step * 0.1}, step, step / 60)
        clients.tick(writable=lambda client: client != "b")
    assert clients.last("b") is None
    clients.tick()
    delta = clients.last("b")
    assert delta["base_tick"] == 0 and delta["tick"] == 5
    assert delta["changed"] == {"player.a": {"v": 5, "fields": {"x": 0.4}}}


def test_a_client_behind_moves_to_the_slow_rate_then_is_closed():
    """Behind for half a second: slow rate; behind for the close bound: closed."""
    engine = ZoneEngine(arena(), backpressure=Backpressure(3, 10, 50))
    clients = Clients(engine)
    clients.join("a", {"x": 0.0, "y": 0.0})
    clients.join("b", {"x": 1.0, "y": 0.0})
    closes = []
    for step in range(1, 13):
        engine.update("a", {"x": step * 0.01}, step, step / 60)
        closes += clients.tick(writable=lambda client: client != "b").closes
        if step == 4:
            assert engine.clients["b"].rate == 6
    assert "b" in closes
    assert engine.clients["a"].rate == 1


def test_view_hash_matches_an_independent_canonical_json():
    """The hash is SHA-256 over RFC 8785 JSON of the view, first 16 hex digits."""
    import hashlib
    import json

    engine, clients = started()
    engine.update("a", {"x": 12.34, "name": 'é"x'}, 1, 10.0)
    for _ in range(6):
        clients.tick()
    _tick, digest = engine.view_hash("b")
    entity = engine.entities["player.a"]
    view = {"player.a": {"fields": entity.published, "v": entity.pversion}}

    def canonical(value):
        if isinstance(value, dict):
            items = sorted(value.items(), key=lambda kv: kv[0].encode("utf-16-be"))
            return (
                "{"
                + ",".join(
                    f"{json.dumps(k, ensure_ascii=False)}:{canonical(v)}"
                    for k, v in items
                )
                + "}"
            )
        if isinstance(value, list):
            return "[" + ",".join(canonical(v) for v in value) + "]"
        if isinstance(value, float):
            return repr(int(value)) if value.is_integer() else repr(value)
        return json.dumps(value, ensure_ascii=False)

    expected = hashlib.sha256(canonical(view).encode()).hexdigest()[:16]
    assert digest == expected


def test_checks_follow_every_nth_tick_and_match_the_mirror():
    """state.check goes to every caught-up client each check_interval_ticks."""
    engine, clients = started(arena(check_interval_ticks=3))
    for step in range(1, 10):
        engine.update("a", {"x": step * 0.25}, step, step)
        clients.tick()
    assert clients.checks == 6


def test_zone_full_refuses_new_entities():
    """Joining a zone at max_entities fails; the entities already in it stay."""
    _engine, clients = started(arena(max_entities=2))
    with pytest.raises(ZoneFullError):
        clients.join("c", {"x": 0.0, "y": 0.0})


def test_aoi_sends_only_entities_within_the_radius_with_hysteresis():
    """With aoi_radius, entities enter within the radius and leave past the margin."""
    schema = arena(aoi_radius=10.0, aoi_leave_margin=2.0)
    engine = ZoneEngine(schema)
    clients = Clients(engine)
    clients.join("a", {"x": 0.0, "y": 0.0})
    clients.join("near", {"x": 5.0, "y": 0.0})
    clients.join("far", {"x": 50.0, "y": 0.0})
    for _ in range(6):
        clients.tick()
    assert set(clients.mirrors["a"].entities) == {"player.a", "player.near"}
    engine.update("near", {"x": 11.0}, 1, 10.0)
    for _ in range(12):
        clients.tick()
    assert "player.near" in clients.mirrors["a"].entities
    engine.update("near", {"x": 12.5}, 2, 20.0)
    for _ in range(12):
        clients.tick()
    assert "player.near" not in clients.mirrors["a"].entities
    engine.update("far", {"x": 9.0}, 1, 30.0)
    for _ in range(12):
        clients.tick()
    assert "player.far" in clients.mirrors["a"].entities


def test_an_entity_held_by_the_margin_leaves_when_it_walks_away():
    """An entity kept by the leave margin beyond the 3 x 3 cells still leaves."""
    schema = arena(aoi_radius=10.0, aoi_leave_margin=9.0)
    engine = ZoneEngine(schema)
    clients = Clients(engine)
    clients.join("a", {"x": 9.5, "y": 0.5})
    clients.join("b", {"x": 15.0, "y": 0.5})
    for _ in range(6):
        clients.tick()
    assert "player.b" in clients.mirrors["a"].entities
    # 15.5 m away: kept by the margin, two cells over from a's cell.
    engine.update("b", {"x": 25.0}, 1, 10.0)
    for _ in range(12):
        clients.tick()
    assert "player.b" in clients.mirrors["a"].entities
    for seq, x in enumerate((27.0, 29.5), start=2):
        engine.update("b", {"x": x}, seq, 10.0 + seq)
        for _ in range(12):
            clients.tick()
    assert "player.b" not in clients.mirrors["a"].entities


def test_the_grid_forgets_stamps_of_cells_left_long_ago():
    """A wandering entity does not leave a stamp in every cell it crossed."""
    schema = arena(aoi_radius=10.0)
    engine = ZoneEngine(schema)
    clients = Clients(engine)
    clients.join("a", {"x": 0.0, "y": 0.0})
    clients.join("b", {"x": 0.0, "y": 0.0})
    for step in range(1, 1300):
        if step % 10 == 0:
            engine.update("b", {"x": step * 1.0}, step, step * 1.0)
        clients.tick()
    assert len(engine._grid.stamps) < 20


@settings(max_examples=300, deadline=None)
@given(st.floats(-1e6, 1e6), st.sampled_from([0.01, 0.25, 0.5, 1.0, 5.0, 0.001]))
def test_quantization_is_idempotent(value, quantum):
    """quantize(quantize(x)) == quantize(x), and it prints as the quantum's decimals."""
    once = quantize(value, quantum)
    assert quantize(once, quantum) == once
    places = len(repr(quantum).split(".")[1]) if "." in repr(quantum) else 0
    if places and repr(quantum).split(".")[1] != "0":
        assert len(repr(once).split(".")[-1]) <= places or "e" in repr(once)


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(
            st.just("move"), st.integers(0, 3), st.floats(-60, 60), st.floats(-60, 60)
        ),
        st.tuples(st.just("slow"), st.integers(0, 3), st.integers(-5, 120)),
        st.tuples(st.just("tick"), st.integers(0, 15)),
        st.tuples(st.just("world"), st.integers(0, 2), st.floats(-60, 60)),
        st.tuples(st.just("unworld"), st.integers(0, 2)),
        st.tuples(st.just("sync"), st.integers(0, 3)),
        st.tuples(st.just("rejoin"), st.integers(0, 3)),
        st.tuples(st.just("resume"), st.integers(0, 3)),
    ),
    max_size=60,
)


@settings(max_examples=80, deadline=None)
@given(operations=OPERATIONS)
def test_every_mirror_equals_the_servers_view(operations):
    """Mirrors built only from pushes equal the server's view, through skipped
    ticks, snapshots, resumes, re-joins and world churn."""
    run_mirrors(0.0, operations)


@settings(max_examples=80, deadline=None)
@given(operations=OPERATIONS)
def test_every_mirror_equals_the_servers_view_under_aoi_churn(operations):
    """The same with an AOI radius: entities entering and leaving views."""
    run_mirrors(20.0, operations)


def run_mirrors(radius, operations):
    schema = arena(aoi_radius=radius, check_interval_ticks=2)
    engine = ZoneEngine(schema, backpressure=Backpressure(3, 10_000, 6))
    clients = Clients(engine)
    players = ["p0", "p1", "p2", "p3"]
    for index, player in enumerate(players):
        clients.join(
            player, {"x": index * 5.0, "y": 0.0}, "cbor" if index % 2 else "json"
        )
    now = 0.0
    version = {}
    for seq, op in enumerate(operations, start=1):
        now += 1 / 60
        kind = op[0]
        if kind == "move":
            engine.update(players[op[1]], {"x": op[2], "y": op[3]}, seq, now)
        elif kind == "slow":
            engine.update(players[op[1]], {"hp": op[2]}, seq, now)
        elif kind == "tick":
            clients.tick(
                writable=lambda client, mask=op[1]: (
                    not (mask >> players.index(client)) & 1
                )
            )
        elif kind == "world":
            entity = f"world.arena.w{op[1]}"
            version[entity] = version.get(entity, 0) + 1
            engine.apply(entity, version[entity], {"x": op[2], "y": 1.0})
        elif kind == "unworld":
            entity = f"world.arena.w{op[1]}"
            if engine.remove(entity):
                version.pop(entity)
        elif kind == "sync":
            clients.deliver(players[op[1]], engine.snapshot(players[op[1]]))
        elif kind == "resume":
            player = players[op[1]]
            entity_id = engine.detach(player)
            codec = "cbor" if op[1] % 2 else "json"
            clients.deliver(player, engine.attach(player, entity_id, codec, now))
        elif kind == "rejoin":
            player = players[op[1]]
            engine.leave(player)
            clients.join(player, {"x": 1.0, "y": 1.0})
    for _ in range(8):
        clients.tick()
    for player in players:
        mirror = clients.mirrors[player]
        assert clients.others(player) == clients.expected_view(player)
        assert mirror.tick == engine.clients[player].base
        if radius == 0.0:
            assert set(mirror.entities) == set(engine.entities)
        _tick, digest = engine.view_hash(player)
        assert digest == mirror.hash()
