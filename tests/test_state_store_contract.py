"""The state store contract: memory and Redis keep and publish zones alike.

Each test runs against the memory backends (on a ``task.Clock``) and
against a real ``redis-server``, through the harness of
``backend_harness.py``. Every write is checked twice: in what
``load_zone`` gives back and in the batch it published on the zone's
channel. The last section pins down how the Redis store keeps the
contract (one script per call, the keys of a zone under its hash tag).
"""

from __future__ import annotations

import pytest
import pytest_twisted
from backend_harness import (
    fixture_harness,  # noqa: F401
    fixture_redis_harness,  # noqa: F401
    fixture_redis_server,  # noqa: F401
    script_calls,
    unique,
)
from twisted.internet.defer import gatherResults
from zope.interface.verify import verifyObject

from rtgateway.backends.interfaces import (
    IBackends,
    IStateStore,
    StoredEntity,
    ZoneFull,
)
from rtgateway.backends.keys import zone_channel
from rtgateway.backends.redis.keyspace import state_entity_key, state_ids_key
from rtgateway.backends.zonefeed import decode_zone_batch, encode_zone_batch
from rtgateway.wire.errors import Conflict, NotFound, Unavailable

#: Values whose exact JSON round trip matters (cjson would break the floats).
AWKWARD = {
    "x": 12.34,
    "y": 0.1,
    "z": -3.5,
    "tiny": 1e-7,
    "third": 1 / 3,
    "big": 2**53 + 1,
    "whole": 5,
    "zero": 0.0,
    "pos": [12.34, -0.01, 1e-7, 7],
    "empty": [],
    "text": 'say "hi" \\ back\nslash',
    "uni": "é😀 ж",
    "on": True,
    "off": False,
    "none": None,
}


async def zone_with_listener(harness):
    """A fresh zone whose channel the harness's gateway listens to."""
    zone = unique("zone")
    await harness.backends.bus.subscribe(zone_channel(zone))
    return zone


async def published(harness, zone: str, count: int) -> list[bytes]:
    """The first ``count`` messages of the zone's channel, waiting for them."""
    received = await harness.backends.bus.handler.wait_for(zone_channel(zone), count)
    return received[:count]


def assert_same_values(got: dict, expected: dict) -> None:
    """Equal, and of the same types (5 stays an int, True a bool, 0.0 a float)."""
    assert got == expected
    for name, value in expected.items():
        assert type(got[name]) is type(value), name


# -- the zone feed


def test_zone_batch_round_trips():
    """decode_zone_batch inverts encode_zone_batch; the wire format is g, e, r."""
    changed = {"player.p1": (3, {"x": 12.34, "pos": [1, 2.5]}), "world.z.a": (1, {})}
    message = encode_zone_batch("gw-a", changed, ["player.p2"])
    assert message == (
        b'{"g":"gw-a","e":{"player.p1":[3,{"x":12.34,"pos":[1,2.5]}],'
        b'"world.z.a":[1,{}]},"r":["player.p2"]}'
    )
    assert decode_zone_batch(message) == ("gw-a", changed, ["player.p2"])


def test_zone_full_is_unavailable():
    """ZoneFull is an Unavailable (-32005) naming the bound."""
    error = ZoneFull(3)
    assert isinstance(error, Unavailable) and error.code == -32005
    assert error.data == {"max_entities": 3}


# -- loading and player writes


@pytest_twisted.ensureDeferred
async def test_state_store_provides_its_interface(harness):
    """The state store passes verifyObject; the backends carry it as ``state``."""
    assert verifyObject(IStateStore, harness.backends.state)
    assert verifyObject(IBackends, harness.backends)


@pytest_twisted.ensureDeferred
async def test_unknown_zone_loads_empty(harness):
    """A zone never written loads as an empty dict."""
    assert await harness.backends.state.load_zone(unique("zone")) == {}


@pytest_twisted.ensureDeferred
async def test_write_players_creates_entities(harness):
    """Entities not stored yet are created with the given fields and version."""
    state, zone = harness.backends.state, unique("zone")
    changed = {"player.p1": (1, {"x": 1.5, "y": 2}), "player.p2": (4, {"hp": 10})}
    assert await state.write_players(zone, "gw-a", changed, []) is None
    assert await state.load_zone(zone) == {
        "player.p1": StoredEntity("player.p1", 1, {"x": 1.5, "y": 2}),
        "player.p2": StoredEntity("player.p2", 4, {"hp": 10}),
    }


@pytest_twisted.ensureDeferred
async def test_write_players_merges_fields_and_sets_version(harness):
    """Changed fields are merged into the stored ones; the version is set as given."""
    state, zone = harness.backends.state, unique("zone")
    await state.write_players(zone, "gw-a", {"player.p1": (1, {"x": 1, "y": 2})}, [])
    await state.write_players(zone, "gw-a", {"player.p1": (2, {"x": 5})}, [])
    await state.write_players(zone, "gw-a", {"player.p1": (9, {"hp": 3})}, [])
    entities = await state.load_zone(zone)
    assert entities == {
        "player.p1": StoredEntity("player.p1", 9, {"x": 5, "y": 2, "hp": 3})
    }


@pytest_twisted.ensureDeferred
async def test_write_players_removes(harness):
    """Removed ids are deleted, in the same batch as changes to others."""
    state, zone = harness.backends.state, unique("zone")
    both = {"player.p1": (1, {"x": 1}), "player.p2": (1, {"x": 2})}
    await state.write_players(zone, "gw-a", both, [])
    await state.write_players(
        zone, "gw-a", {"player.p2": (2, {"x": 3})}, ["player.p1", "player.gone"]
    )
    assert await state.load_zone(zone) == {
        "player.p2": StoredEntity("player.p2", 2, {"x": 3})
    }
    await state.write_players(zone, "gw-a", {}, ["player.p2"])
    assert await state.load_zone(zone) == {}


@pytest_twisted.ensureDeferred
async def test_write_players_publishes_its_batch(harness):
    """The batch goes out on the zone channel as encode_zone_batch's bytes."""
    state = harness.backends.state
    zone = await zone_with_listener(harness)
    changed = {"player.p1": (2, {"x": 12.34}), "player.p2": (1, {"name": "ann"})}
    await state.write_players(zone, "gw-a", changed, ["player.p3"])
    (message,) = await published(harness, zone, 1)
    assert message == encode_zone_batch("gw-a", changed, ["player.p3"])
    assert decode_zone_batch(message) == ("gw-a", changed, ["player.p3"])


@pytest_twisted.ensureDeferred
async def test_empty_batch_writes_and_publishes_nothing(harness):
    """write_players with nothing changed nor removed publishes nothing."""
    state, bus = harness.backends.state, harness.backends.bus
    zone = await zone_with_listener(harness)
    assert await state.write_players(zone, "gw-a", {}, []) is None
    await bus.publish(zone_channel(zone), b"sentinel")
    assert await published(harness, zone, 1) == [b"sentinel"]
    assert bus.handler.on(zone_channel(zone)) == [b"sentinel"]
    assert await state.load_zone(zone) == {}


@pytest_twisted.ensureDeferred
async def test_loaded_entities_are_copies(harness):
    """Changing what load_zone or a writer holds does not change the store."""
    state, zone = harness.backends.state, unique("zone")
    position = [1.0, 2.0]
    await state.write_players(zone, "gw-a", {"player.p1": (1, {"pos": position})}, [])
    position.append(3.0)
    loaded = await state.load_zone(zone)
    loaded["player.p1"].fields["pos"].append(4.0)
    loaded["player.p1"].fields["hp"] = 1
    assert await state.load_zone(zone) == {
        "player.p1": StoredEntity("player.p1", 1, {"pos": [1.0, 2.0]})
    }


# -- world entities


@pytest_twisted.ensureDeferred
async def test_world_set_creates_at_one_and_merges(harness):
    """world_set creates at version 1, then merges fields and adds one."""
    state, zone = harness.backends.state, unique("zone")
    door = f"world.{zone}.door"
    assert (
        await state.world_set(zone, door, {"open": False, "hp": 5}, None, "g", 10) == 1
    )
    assert await state.world_set(zone, door, {"open": True}, None, "g", 10) == 2
    assert await state.world_set(zone, door, {}, None, "g", 10) == 3
    assert await state.load_zone(zone) == {
        door: StoredEntity(door, 3, {"open": True, "hp": 5})
    }


@pytest_twisted.ensureDeferred
async def test_world_set_compare_and_set_succeeds(harness):
    """With the stored version (0 for a new entity) the write applies."""
    state, zone = harness.backends.state, unique("zone")
    door = f"world.{zone}.door"
    assert await state.world_set(zone, door, {"a": 1}, 0, "g", 10) == 1
    assert await state.world_set(zone, door, {"a": 2}, 1, "g", 10) == 2
    assert await state.world_set(zone, door, {"b": 3}, 2, "g", 10) == 3
    assert (await state.load_zone(zone))[door].fields == {"a": 2, "b": 3}


@pytest_twisted.ensureDeferred
async def test_world_set_conflict_reports_current_version(harness):
    """A wrong expected version fails with Conflict(current), changing nothing."""
    state = harness.backends.state
    zone = await zone_with_listener(harness)
    door, ghost = f"world.{zone}.door", f"world.{zone}.ghost"
    await state.world_set(zone, door, {"a": 1}, None, "g", 10)
    await state.world_set(zone, door, {"a": 2}, None, "g", 10)
    cases = [(door, 0, 2), (door, 1, 2), (door, 3, 2), (ghost, 4, 0)]
    for entity_id, expected, current in cases:
        with pytest.raises(Conflict) as raised:
            await state.world_set(zone, entity_id, {"a": 9}, expected, "g", 10)
        assert raised.value.current_version == current
        assert raised.value.data == {"current_version": current}
    assert await state.load_zone(zone) == {door: StoredEntity(door, 2, {"a": 2})}
    await harness.backends.bus.publish(zone_channel(zone), b"sentinel")
    assert (await published(harness, zone, 3))[2] == b"sentinel"


@pytest_twisted.ensureDeferred
async def test_world_set_publishes_its_change(harness):
    """world_set publishes its new version and only the fields it set.

    On NATS, where writes of several gateways may arrive out of order, it
    publishes every field of the entity: the newer version is then whole.
    """
    state = harness.backends.state
    zone = await zone_with_listener(harness)
    door = f"world.{zone}.door"
    await state.world_set(zone, door, {"open": False, "hp": 5}, None, "gw-b", 10)
    await state.world_set(zone, door, {"open": True}, 1, "gw-c", 10)
    second = {"open": True, "hp": 5} if harness.name == "nats" else {"open": True}
    assert await published(harness, zone, 2) == [
        encode_zone_batch("gw-b", {door: (1, {"open": False, "hp": 5})}, []),
        encode_zone_batch("gw-c", {door: (2, second)}, []),
    ]


@pytest_twisted.ensureDeferred
async def test_zone_full_refuses_creation_only(harness):
    """At max_entities, creating fails with ZoneFull; updates still apply."""
    state, zone = harness.backends.state, unique("zone")
    a, b, c = (f"world.{zone}.{name}" for name in "abc")
    await state.write_players(zone, "gw-a", {"player.p1": (1, {"x": 0})}, [])
    await state.world_set(zone, a, {"n": 1}, None, "g", 3)
    await state.world_set(zone, b, {"n": 1}, None, "g", 3)
    with pytest.raises(ZoneFull) as raised:
        await state.world_set(zone, c, {"n": 1}, None, "g", 3)
    assert raised.value.max_entities == 3
    with pytest.raises(ZoneFull):
        await state.world_set(zone, c, {"n": 1}, 0, "g", 3)
    assert await state.world_set(zone, a, {"n": 2}, None, "g", 3) == 2
    assert await state.world_set(zone, b, {"n": 2}, 1, "g", 3) == 2
    assert sorted(await state.load_zone(zone)) == sorted([a, b, "player.p1"])
    await state.world_remove(zone, a, None, "g")
    assert await state.world_set(zone, c, {"n": 1}, None, "g", 3) == 1


@pytest_twisted.ensureDeferred
async def test_world_remove_compare_and_set(harness):
    """world_remove deletes on the right version; Conflict on a wrong one."""
    state, zone = harness.backends.state, unique("zone")
    door = f"world.{zone}.door"
    await state.world_set(zone, door, {"a": 1}, None, "g", 10)
    await state.world_set(zone, door, {"a": 2}, None, "g", 10)
    for expected in (0, 1, 3):
        with pytest.raises(Conflict) as raised:
            await state.world_remove(zone, door, expected, "g")
        assert raised.value.current_version == 2
    assert await state.world_remove(zone, door, 2, "g") is None
    assert await state.load_zone(zone) == {}
    await state.world_set(zone, door, {"b": 1}, None, "g", 10)
    assert await state.world_remove(zone, door, None, "g") is None
    assert await state.world_set(zone, door, {"c": 1}, 0, "g", 10) == 1
    assert await state.load_zone(zone) == {door: StoredEntity(door, 1, {"c": 1})}


@pytest_twisted.ensureDeferred
async def test_world_remove_of_missing_entity_is_not_found(harness):
    """Removing an entity that is not there fails with NotFound, whatever expected."""
    state = harness.backends.state
    zone = await zone_with_listener(harness)
    for expected in (None, 0, 1):
        with pytest.raises(NotFound):
            await state.world_remove(zone, f"world.{zone}.ghost", expected, "g")
    await harness.backends.bus.publish(zone_channel(zone), b"sentinel")
    assert await published(harness, zone, 1) == [b"sentinel"]


@pytest_twisted.ensureDeferred
async def test_world_remove_publishes_the_removal(harness):
    """world_remove publishes a batch removing the entity, from the caller."""
    state = harness.backends.state
    zone = await zone_with_listener(harness)
    door = f"world.{zone}.door"
    await state.world_set(zone, door, {"a": 1}, None, "gw-a", 10)
    await state.world_remove(zone, door, 1, "gw-b")
    message = (await published(harness, zone, 2))[1]
    assert message == encode_zone_batch("gw-b", {}, [door])
    assert decode_zone_batch(message) == ("gw-b", {}, [door])


# -- values, zones, order


@pytest_twisted.ensureDeferred
async def test_values_round_trip_exactly(harness):
    """Floats, ints, lists, quoted and unicode strings, booleans come back exact."""
    state = harness.backends.state
    zone = await zone_with_listener(harness)
    door = f"world.{zone}.door"
    await state.write_players(zone, "gw-a", {"player.p1": (1, AWKWARD)}, [])
    await state.world_set(zone, door, AWKWARD, None, "gw-a", 10)
    entities = await state.load_zone(zone)
    for entity_id in ("player.p1", door):
        assert_same_values(entities[entity_id].fields, AWKWARD)
    player_batch, world_batch = await published(harness, zone, 2)
    assert world_batch == encode_zone_batch("gw-a", {door: (1, AWKWARD)}, [])
    for message, entity_id in ((player_batch, "player.p1"), (world_batch, door)):
        _, changed, _ = decode_zone_batch(message)
        assert_same_values(changed[entity_id][1], AWKWARD)
    assert b"12.34," in world_batch and b"0.1," in world_batch


@pytest_twisted.ensureDeferred
async def test_zones_are_isolated(harness):
    """The same entity id in two zones: separate entities, separate channels."""
    state = harness.backends.state
    north, south = await zone_with_listener(harness), await zone_with_listener(harness)
    await state.write_players(north, "g", {"player.p1": (1, {"x": 1})}, [])
    await state.write_players(south, "g", {"player.p1": (5, {"x": 2})}, [])
    await state.world_set(north, "world.n.w", {"k": 1}, None, "g", 2)
    await state.world_set(south, "world.n.w", {"k": 2}, None, "g", 2)
    await state.write_players(south, "g", {}, ["player.p1"])
    assert await state.load_zone(north) == {
        "player.p1": StoredEntity("player.p1", 1, {"x": 1}),
        "world.n.w": StoredEntity("world.n.w", 1, {"k": 1}),
    }
    assert await state.load_zone(south) == {
        "world.n.w": StoredEntity("world.n.w", 1, {"k": 2})
    }
    north_batches = await published(harness, north, 2)
    south_batches = await published(harness, south, 3)
    assert [decode_zone_batch(m)[1] for m in north_batches] == [
        {"player.p1": (1, {"x": 1})},
        {"world.n.w": (1, {"k": 1})},
    ]
    assert [decode_zone_batch(m)[2] for m in south_batches] == [[], [], ["player.p1"]]


@pytest_twisted.ensureDeferred
async def test_gateways_share_zones(harness):
    """What one gateway writes, another loads and hears."""
    other = await harness.gateway()
    zone = unique("zone")
    await other.bus.subscribe(zone_channel(zone))
    state = harness.backends.state
    await state.write_players(zone, "gw-a", {"player.p1": (1, {"x": 1})}, [])
    await other.state.world_set(zone, f"world.{zone}.a", {"y": 2}, None, "gw-b", 10)
    assert await other.state.load_zone(zone) == await state.load_zone(zone)
    assert len(await state.load_zone(zone)) == 2
    received = await other.bus.handler.wait_for(zone_channel(zone), 2)
    assert [decode_zone_batch(m)[0] for m in received] == ["gw-a", "gw-b"]


@pytest_twisted.ensureDeferred
async def test_publication_order_is_call_order(harness):
    """Interleaved world_set and write_players are published in call order."""
    other = await harness.gateway()
    zone = unique("zone")
    channel = zone_channel(zone)
    await other.bus.subscribe(channel)
    state, shared = harness.backends.state, f"world.{zone}.shared"
    calls = []
    for n in range(60):
        if n % 3 == 0:
            changed = {f"player.p{n % 7}": (n, {"n": n})}
            calls.append(state.write_players(zone, "gw-a", changed, []))
        elif n % 3 == 1:
            calls.append(state.world_set(zone, shared, {"n": n}, None, "gw-a", 100))
        else:
            world = f"world.{zone}.w{n}"
            calls.append(state.world_set(zone, world, {"n": n}, 0, "gw-a", 100))
    results = await gatherResults(calls)
    assert results[1::3] == list(range(1, 21))
    received = await other.bus.handler.wait_for(channel, 60)
    order = [
        fields["n"]
        for message in received
        for _, fields in decode_zone_batch(message)[1].values()
    ]
    assert order == list(range(60))
    versions = [decode_zone_batch(m)[1].get(shared, (None,))[0] for m in received]
    assert [v for v in versions if v is not None] == list(range(1, 21))


# -- Redis only: how the Redis store keeps the contract


@pytest_twisted.ensureDeferred
async def test_redis_state_calls_are_one_script_each(redis_harness):
    """A write of 200 players and a load of the zone are one script call each."""
    backends = redis_harness.backends
    state, zone = backends.state, unique("zone")
    changed = {f"player.p{n}": (1, {"x": n + 0.25, "y": -n}) for n in range(200)}
    await state.write_players(zone, "g", {"player.warm": (1, {})}, [])
    await state.load_zone(zone)  # both scripts are loaded
    scripts = await script_calls(backends)
    await state.write_players(zone, "g", changed, ["player.warm"])
    assert await script_calls(backends) == scripts + 1
    entities = await state.load_zone(zone)
    assert await script_calls(backends) == scripts + 2
    assert entities == {
        entity_id: StoredEntity(entity_id, version, fields)
        for entity_id, (version, fields) in changed.items()
    }


@pytest_twisted.ensureDeferred
async def test_redis_zone_keys_share_its_tag(redis_harness):
    """A zone is a set of ids and a hash per entity, all under the zone's tag."""
    backends = redis_harness.backends
    state, execute = backends.state, backends.client.execute
    await execute("FLUSHDB")
    zone = unique("zone")
    door = f"world.{zone}.door"
    await state.world_set(zone, door, {"x": 12.34, "s": 'a"b'}, None, "g", 10)
    await state.write_players(zone, "g", {"player.p1": (7, {"on": True})}, [])
    keys = sorted(await execute("KEYS", "*"))
    assert keys == sorted(
        [
            state_ids_key(zone).encode(),
            state_entity_key(zone, door).encode(),
            state_entity_key(zone, "player.p1").encode(),
        ]
    )
    assert all(b"{%s}" % zone.encode() in key for key in keys)
    flat = await execute("HGETALL", state_entity_key(zone, door))
    assert dict(zip(flat[::2], flat[1::2], strict=True)) == {
        b"_v": b"1",
        b"f:x": b"12.34",
        b"f:s": b'"a\\"b"',
    }
    await state.world_remove(zone, door, 1, "g")
    await state.write_players(zone, "g", {}, ["player.p1"])
    assert await execute("KEYS", "*") == []
