"""One contract suite for every backend: memory and Redis give the same answers.

Each test runs once per backend factory. The memory backends run on a
``task.Clock``; the Redis ones against a real ``redis-server`` (one per
module) on the real reactor, with short real windows where time must pass.
The last section pins down how the Redis backends keep the contract
(batching, key expiry, reply parsing, presence keys and claims).
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
import pytest_twisted
from backend_harness import (
    command_calls,
    fixture_harness,  # noqa: F401
    fixture_redis_harness,  # noqa: F401
    fixture_redis_server,  # noqa: F401
    script_calls,
    sleep,
    unique,
)
from twisted.internet import task
from twisted.internet.defer import gatherResults
from zope.interface.verify import verifyObject

from rtgateway.backends.interfaces import (
    IBackends,
    IBus,
    IBusHandler,
    IPresenceStore,
    ISessionStore,
    ITopicHistory,
    Position,
    PresenceChange,
    PresenceRecord,
    Replay,
    SessionRecord,
)
from rtgateway.backends.keys import topic_channel
from rtgateway.backends.memory import MemoryBackends, MemoryHub, envelope
from rtgateway.backends.redis.keyspace import (
    GATEWAYS_KEY,
    digest_key,
    gateway_alive_key,
    gateway_claim_key,
    gateway_sessions_key,
    presence_key,
    presence_sessions_key,
    session_key,
    topic_meta_key,
)
from rtgateway.backends.redis.presence import CLAIM, DRAIN, DRAIN_BATCH
from rtgateway.backends.redis.resp import INCOMPLETE, ReplyReader


def record(session_id: str | None = None, **changes) -> SessionRecord:
    made = SessionRecord(
        session_id=session_id or unique("s"),
        player_id="player-1",
        created_ms=1_700_000_000_000,
        resume_digest=unique("digest"),
        gateway_id="gw-a",
        connection_id="conn-1",
        subscriptions={"chat.lobby": Position(7, "e1"), "fx.sparks": None},
        metadata={"presence": {"status": "online", "tags": ["a", "b"]}, "zone": 3},
        stats={"messages_in": 4, "bytes_out": 512},
    )
    return replace(made, **changes)


# -- every implementation provides its interface


@pytest_twisted.ensureDeferred
async def test_backends_provide_their_interfaces(harness):
    """Every backend object passes verifyObject against its interface."""
    backends = harness.backends
    assert verifyObject(IBackends, backends)
    assert verifyObject(ISessionStore, backends.sessions)
    assert verifyObject(ITopicHistory, backends.history)
    assert verifyObject(IBus, backends.bus)
    assert verifyObject(IPresenceStore, backends.presence)
    assert verifyObject(IBusHandler, backends.bus.handler)
    assert backends.ready() is True


# -- sessions


@pytest_twisted.ensureDeferred
async def test_created_session_loads_identical(harness):
    """A created session loads back equal, positions and None positions included."""
    sessions = harness.backends.sessions
    made = record(subscriptions={"a.b": Position(2**40, "ffee00"), "v.x": None})
    assert await sessions.create(made) is None
    assert await sessions.load(made.session_id) == made


@pytest_twisted.ensureDeferred
async def test_missing_session_loads_and_finds_nothing(harness):
    """Unknown ids and digests give None."""
    sessions = harness.backends.sessions
    assert await sessions.load("nobody") is None
    assert await sessions.find("no-such-digest") is None


@pytest_twisted.ensureDeferred
async def test_find_maps_digest_to_session(harness):
    """find() gives the id of the session a resume digest belongs to."""
    sessions = harness.backends.sessions
    made = record()
    await sessions.create(made)
    assert await sessions.find(made.resume_digest) == made.session_id


@pytest_twisted.ensureDeferred
async def test_attach_returns_previous_owner(harness):
    """attach() fires with the record as it was and makes the caller the owner."""
    sessions = harness.backends.sessions
    made = record()
    await sessions.create(made)
    before = await sessions.attach(made.session_id, "gw-b", "conn-2")
    assert before == made
    now = await sessions.load(made.session_id)
    assert now == replace(made, gateway_id="gw-b", connection_id="conn-2")
    assert await sessions.attach("nobody", "gw-b", "conn-2") is None
    assert await sessions.load("nobody") is None


@pytest_twisted.ensureDeferred
async def test_detach_only_by_owner(harness):
    """A connection that no longer owns the session cannot detach it."""
    sessions = harness.backends.sessions
    made = record()
    await sessions.create(made)
    await sessions.attach(made.session_id, "gw-b", "conn-2")
    now = harness.now_ms()
    assert await sessions.detach(made.session_id, "conn-1", now, 60_000) is False
    assert (await sessions.load(made.session_id)).connection_id == "conn-2"
    assert await sessions.detach(made.session_id, "conn-2", now, 60_000) is True
    detached = await sessions.load(made.session_id)
    assert detached == replace(
        made, gateway_id=None, connection_id=None, detached_ms=now, last_active_ms=now
    )
    assert not detached.attached
    assert await sessions.detach(made.session_id, "conn-2", now, 60_000) is False
    assert await sessions.detach("nobody", "conn-2", now, 60_000) is False


@pytest_twisted.ensureDeferred
async def test_detached_session_expires_after_window(harness):
    """A detached session and its digest are gone once the window has passed."""
    sessions = harness.backends.sessions
    made = record()
    await sessions.create(made)
    await sessions.detach(made.session_id, "conn-1", harness.now_ms(), 300)
    await harness.elapse(100)
    assert await sessions.find(made.resume_digest) == made.session_id
    await harness.elapse(300)
    assert await sessions.load(made.session_id) is None
    assert await sessions.find(made.resume_digest) is None
    assert await sessions.end(made.session_id) is None


@pytest_twisted.ensureDeferred
async def test_updates_keep_the_detach_window(harness):
    """Writing to a detached session does not make it live for ever."""
    sessions = harness.backends.sessions
    made = record()
    await sessions.create(made)
    await sessions.detach(made.session_id, "conn-1", harness.now_ms(), 200)
    await sessions.set_subscription(made.session_id, "chat.x", Position(1, "e"))
    await sessions.drop_subscription(made.session_id, "chat.lobby")
    await sessions.set_metadata(made.session_id, "zone", 4)
    await sessions.add_stats(made.session_id, {"messages_in": 1})
    await harness.elapse(350)
    assert await sessions.load(made.session_id) is None


@pytest_twisted.ensureDeferred
async def test_attached_session_never_expires(harness):
    """Attaching again cancels the expiry of the session and of its digest."""
    sessions = harness.backends.sessions
    made = record()
    await sessions.create(made)
    detached_at = harness.now_ms()
    await sessions.detach(made.session_id, "conn-1", detached_at, 200)
    before = await sessions.attach(made.session_id, "gw-c", "conn-3")
    assert before.detached_ms is not None and not before.attached
    await harness.elapse(350)
    loaded = await sessions.load(made.session_id)
    assert loaded == replace(
        made, gateway_id="gw-c", connection_id="conn-3", last_active_ms=detached_at
    )
    assert await sessions.find(made.resume_digest) == made.session_id


@pytest_twisted.ensureDeferred
async def test_subscriptions_set_and_dropped(harness):
    """Subscriptions are recorded with their position (None: volatile) and dropped."""
    sessions = harness.backends.sessions
    made = record(subscriptions={})
    await sessions.create(made)
    await sessions.set_subscription(made.session_id, "a.b", Position(3, "e"))
    assert await sessions.set_subscription(made.session_id, "v.v", None) is None
    await sessions.set_subscription(made.session_id, "a.b", Position(5, "e"))
    loaded = await sessions.load(made.session_id)
    assert loaded.subscriptions == {"a.b": Position(5, "e"), "v.v": None}
    assert await sessions.drop_subscription(made.session_id, "a.b") is None
    await sessions.drop_subscription(made.session_id, "never.there")
    loaded = await sessions.load(made.session_id)
    assert loaded.subscriptions == {"v.v": None}


@pytest_twisted.ensureDeferred
async def test_metadata_stored_per_key(harness):
    """Metadata values are stored per key as JSON and replaced whole."""
    sessions = harness.backends.sessions
    made = record(metadata={})
    await sessions.create(made)
    assert await sessions.set_metadata(made.session_id, "presence", {"s": "a"}) is None
    await sessions.set_metadata(made.session_id, "zone", "forest")
    await sessions.set_metadata(made.session_id, "zone", None)
    loaded = await sessions.load(made.session_id)
    assert loaded.metadata == {"presence": {"s": "a"}, "zone": None}


@pytest_twisted.ensureDeferred
async def test_stats_accumulate(harness):
    """add_stats adds to the counters already there."""
    sessions = harness.backends.sessions
    made = record(stats={"messages_in": 4})
    await sessions.create(made)
    assert (
        await sessions.add_stats(made.session_id, {"messages_in": 3, "resumes": 1})
        is None
    )
    await sessions.add_stats(made.session_id, {"messages_in": 10})
    await sessions.add_stats(made.session_id, {})
    loaded = await sessions.load(made.session_id)
    assert loaded.stats == {"messages_in": 17, "resumes": 1}


@pytest_twisted.ensureDeferred
async def test_updates_of_missing_session_create_nothing(harness):
    """Writing to a session that does not exist leaves it nonexistent."""
    sessions = harness.backends.sessions
    await sessions.set_subscription("ghost", "a.b", Position(1, "e"))
    await sessions.drop_subscription("ghost", "a.b")
    await sessions.set_metadata("ghost", "k", 1)
    await sessions.add_stats("ghost", {"messages_in": 1})
    assert await sessions.load("ghost") is None


@pytest_twisted.ensureDeferred
async def test_end_hands_record_out_once(harness):
    """end() fires with the last record, then None; the digest is forgotten."""
    sessions = harness.backends.sessions
    made = record()
    await sessions.create(made)
    await sessions.add_stats(made.session_id, {"messages_in": 1})
    ended = await sessions.end(made.session_id)
    assert ended == replace(made, stats={"messages_in": 5, "bytes_out": 512})
    assert await sessions.end(made.session_id) is None
    assert await sessions.load(made.session_id) is None
    assert await sessions.find(made.resume_digest) is None


@pytest_twisted.ensureDeferred
async def test_concurrent_ends_from_two_gateways(harness):
    """Of concurrent end() calls on two gateways, exactly one gets the record."""
    other = await harness.gateway()
    stores = [harness.backends.sessions, other.sessions]
    made = [record() for _ in range(10)]
    for each in made:
        await stores[0].create(each)
    calls = []
    for each in made:
        calls += [stores[0].end(each.session_id), stores[1].end(each.session_id)]
    results = await gatherResults(calls)
    for index, each in enumerate(made):
        pair = results[2 * index : 2 * index + 2]
        assert sorted(pair, key=lambda r: r is None) == [each, None]


@pytest_twisted.ensureDeferred
async def test_kicks_recorded_per_player(harness):
    """kicked_at gives the time of the player's last kick, None before any."""
    sessions = harness.backends.sessions
    assert await sessions.kicked_at("player-9") is None
    assert await sessions.kick("player-9", 1000) is None
    await sessions.kick("player-9", 2500)
    assert await sessions.kicked_at("player-9") == 2500
    assert await sessions.kicked_at("player-8") is None


# -- topic history


async def append_n(history, topic: str, count: int, size: int = 100, ttl=60_000):
    return [
        await history.append(topic, b"event-%d" % n, size, ttl)
        for n in range(1, count + 1)
    ]


@pytest_twisted.ensureDeferred
async def test_append_numbers_events_from_one(harness):
    """Offsets run 1..n under one epoch."""
    positions = await append_n(harness.backends.history, unique("t"), 5)
    assert [p.offset for p in positions] == [1, 2, 3, 4, 5]
    assert len({p.epoch for p in positions}) == 1


@pytest_twisted.ensureDeferred
async def test_read_without_since_gives_top(harness):
    """since None: nothing to replay, the top is returned, recovered."""
    history = harness.backends.history
    topic = unique("t")
    positions = await append_n(history, topic, 3)
    assert await history.read(topic, None, 10) == Replay((), positions[-1], True)


@pytest_twisted.ensureDeferred
async def test_never_written_topic_has_stable_epoch(harness):
    """A topic without events has an epoch at offset 0 that the first event keeps."""
    history = harness.backends.history
    topic = unique("t")
    first = await history.read(topic, None, 10)
    assert first.top.offset == 0 and first.top.epoch and first.recovered
    again = await history.read(topic, first.top, 10)
    assert again == Replay((), first.top, True)
    position = await history.append(topic, b"x", 10, 60_000)
    assert position == Position(1, first.top.epoch)
    replayed = await history.read(topic, first.top, 10)
    assert [e.offset for e in replayed.events] == [1] and replayed.recovered


@pytest_twisted.ensureDeferred
async def test_read_at_top_is_recovered_and_empty(harness):
    """A reader already at the top has nothing to replay."""
    history = harness.backends.history
    topic = unique("t")
    positions = await append_n(history, topic, 4)
    assert await history.read(topic, positions[-1], 10) == Replay(
        (), positions[-1], True
    )


@pytest_twisted.ensureDeferred
async def test_read_replays_events_after_since(harness):
    """Exactly the events after since come back, in order, with their bodies."""
    history = harness.backends.history
    topic = unique("t")
    positions = await append_n(history, topic, 6)
    replayed = await history.read(topic, positions[1], 10)
    assert replayed.recovered and replayed.top == positions[-1]
    assert [(e.offset, e.epoch, e.body) for e in replayed.events] == [
        (n, positions[0].epoch, b"event-%d" % n) for n in range(3, 7)
    ]
    whole = await history.read(topic, Position(0, positions[0].epoch), 6)
    assert [e.offset for e in whole.events] == [1, 2, 3, 4, 5, 6]


@pytest_twisted.ensureDeferred
async def test_trimmed_history_is_not_recovered(harness):
    """The history keeps exactly the last ``size`` events."""
    history = harness.backends.history
    topic = unique("t")
    positions = await append_n(history, topic, 5, size=3)
    epoch = positions[0].epoch
    assert await history.read(topic, Position(1, epoch), 10) == Replay(
        (), positions[-1], False
    )
    kept = await history.read(topic, Position(2, epoch), 10)
    assert kept.recovered and [e.offset for e in kept.events] == [3, 4, 5]


@pytest_twisted.ensureDeferred
async def test_other_epoch_or_future_offset_not_recovered(harness):
    """Positions of another epoch, or past the top, cannot be recovered."""
    history = harness.backends.history
    topic = unique("t")
    positions = await append_n(history, topic, 3)
    top = positions[-1]
    for since in (
        Position(1, "other"),
        Position(4, top.epoch),
        Position(-1, top.epoch),
    ):
        assert await history.read(topic, since, 10) == Replay((), top, False)


@pytest_twisted.ensureDeferred
async def test_more_than_limit_not_recovered(harness):
    """More missed events than ``limit`` is reported as not recovered."""
    history = harness.backends.history
    topic = unique("t")
    positions = await append_n(history, topic, 5)
    start = Position(0, positions[0].epoch)
    assert await history.read(topic, start, 4) == Replay((), positions[-1], False)
    assert len((await history.read(topic, start, 5)).events) == 5


@pytest_twisted.ensureDeferred
async def test_expired_history_starts_new_epoch(harness):
    """ttl after its last event the history is gone: a new epoch from offset 1."""
    history = harness.backends.history
    topic = unique("t")
    positions = await append_n(history, topic, 3, ttl=200)
    await harness.elapse(350)
    after = await history.read(topic, positions[1], 10)
    assert after.recovered is False and after.events == ()
    assert after.top.offset == 0 and after.top.epoch != positions[0].epoch
    assert await history.append(topic, b"x", 10, 200) == Position(1, after.top.epoch)


@pytest_twisted.ensureDeferred
async def test_bodies_are_opaque_bytes(harness):
    """Any bytes round-trip unchanged: not UTF-8, numbers, separators, empty, big."""
    history = harness.backends.history
    topic = unique("t")
    bodies = [
        b"",
        b"12",
        b"-3.5",
        b"\xff\xfe\x00|x|\r\n$5\r\n*2\r\n",
        bytes(range(256)),
        "é😀".encode(),
        b"z" * 200_000,
    ]
    for body in bodies:
        await history.append(topic, body, 100, 60_000)
    epoch = (await history.read(topic, None, 1)).top.epoch
    replayed = await history.read(topic, Position(0, epoch), 100)
    assert [e.body for e in replayed.events] == bodies


@pytest_twisted.ensureDeferred
async def test_appends_published_in_offset_order(harness):
    """Each append is published on the topic's channel as its envelope, in order."""
    other = await harness.gateway()
    topic = unique("t")
    channel = topic_channel(topic)
    await other.bus.subscribe(channel)
    history = (harness.backends.history, other.history)
    calls = [
        history[n % 2].append(topic, b"body-%d|\xff" % n, 100, 60_000)
        for n in range(40)
    ]
    positions = await gatherResults(calls)
    assert sorted(p.offset for p in positions) == list(range(1, 41))
    received = await other.bus.handler.wait_for(channel, 40)
    expected = sorted(
        (p.offset, envelope(p.offset, p.epoch, b"body-%d|\xff" % n))
        for n, p in enumerate(positions)
    )
    if harness.name != "nats":
        assert received == [message for _, message in expected]
        return
    # On NATS each gateway publishes once Redis answered: its own appends
    # keep offset order, and the two gateways' interleave.
    assert sorted(received) == sorted(message for _, message in expected)
    for parity in (0, 1):
        own = [
            envelope(p.offset, p.epoch, b"body-%d|\xff" % n)
            for n, p in enumerate(positions)
            if n % 2 == parity
        ]
        assert [m for m in received if m in own] == own


# -- bus


@pytest_twisted.ensureDeferred
async def test_bus_delivers_subscribed_channels(harness):
    """A subscribed channel's messages reach the handler as (str, bytes)."""
    bus = harness.backends.bus
    await bus.subscribe("rtgw.t.a")
    assert await bus.publish("rtgw.t.a", b"\x00one\xff") is None
    assert await bus.handler.wait_for("rtgw.t.a", 1) == [b"\x00one\xff"]
    assert all(isinstance(channel, str) for channel, _ in bus.handler.messages)


@pytest_twisted.ensureDeferred
async def test_bus_ignores_unsubscribed_channels(harness):
    """Channels never subscribed or unsubscribed are not delivered."""
    bus = harness.backends.bus
    await bus.subscribe("rtgw.t.kept")
    await bus.subscribe("rtgw.t.left")
    assert await bus.unsubscribe("rtgw.t.left") is None
    await bus.unsubscribe("rtgw.t.never")
    await bus.publish("rtgw.t.left", b"no")
    await bus.publish("rtgw.t.other", b"no")
    await bus.publish("rtgw.t.kept", b"yes")
    await bus.handler.wait_for("rtgw.t.kept", 1)
    assert bus.handler.messages == [("rtgw.t.kept", b"yes")]


@pytest_twisted.ensureDeferred
async def test_subscriptions_are_a_set(harness):
    """Subscribing twice then unsubscribing once stops delivery."""
    bus = harness.backends.bus
    await bus.subscribe("rtgw.t.x")
    await bus.subscribe("rtgw.t.x")
    await bus.unsubscribe("rtgw.t.x")
    await bus.subscribe("rtgw.t.end")
    await bus.publish("rtgw.t.x", b"no")
    await bus.publish("rtgw.t.end", b"end")
    await bus.handler.wait_for("rtgw.t.end", 1)
    assert bus.handler.on("rtgw.t.x") == []


@pytest_twisted.ensureDeferred
async def test_two_gateways_hear_each_other(harness):
    """Gateways hear each other's publications, only on channels they hold."""
    a, b = harness.backends, await harness.gateway()
    await a.bus.subscribe("rtgw.gw.a")
    await b.bus.subscribe("rtgw.gw.b")
    await b.bus.publish("rtgw.gw.a", b"to a")
    await a.bus.publish("rtgw.gw.b", b"to b")
    assert await a.bus.handler.wait_for("rtgw.gw.a", 1) == [b"to a"]
    assert await b.bus.handler.wait_for("rtgw.gw.b", 1) == [b"to b"]
    assert a.bus.handler.on("rtgw.gw.b") == [] and b.bus.handler.on("rtgw.gw.a") == []


@pytest_twisted.ensureDeferred
async def test_subscribe_fires_once_delivering(harness):
    """A message published right after subscribe() fired is delivered."""
    a, b = harness.backends, await harness.gateway()
    channels = [f"rtgw.t.ready{n}" for n in range(20)]
    await gatherResults([a.bus.subscribe(channel) for channel in channels])
    for channel in channels:
        await b.bus.publish(channel, channel.encode())
    for channel in channels:
        assert await a.bus.handler.wait_for(channel, 1) == [channel.encode()]


@pytest_twisted.ensureDeferred
async def test_many_subscribers_one_publication(harness):
    """A publication reaches every gateway subscribed to its channel, in order."""
    gateways = [harness.backends, *[await harness.gateway() for _ in range(3)]]
    for gateway in gateways:
        await gateway.bus.subscribe("rtgw.control")
    for n in range(50):
        await gateways[n % 4].bus.publish("rtgw.control", b"%d" % n)
    for gateway in gateways:
        received = await gateway.bus.handler.wait_for("rtgw.control", 50)
        assert received == [b"%d" % n for n in range(50)]


# -- presence


def offline(player_id: str, **fields) -> PresenceRecord:
    """A player's record while none of its sessions lives."""
    return PresenceRecord(player_id, **fields)


def online(player_id: str, **fields) -> PresenceRecord:
    """A player's record while a session of it lives."""
    return PresenceRecord(player_id, online=True, **fields)


async def zone_members(presence, zone: str) -> list[str]:
    """A whole (small) zone listing, checked to fit in one page."""
    count, ids, cursor = await presence.zone(zone, None, 1000)
    assert cursor is None and count == len(ids)
    return ids


async def claim_until_found(harness, stores, timeout_ms: int = 5000):
    """Claim from every store at once until a claim finds something.

    Time passes between rounds (the memory clock, or real time for Redis),
    bounded by ``timeout_ms``. Returns each store's claim of that round.
    """
    waited = 0
    while True:
        claims = await gatherResults([s.claim_dead_gateways() for s in stores])
        if any(claims):
            return claims
        assert waited < timeout_ms, "no gateway was claimed in time"
        await harness.elapse(50)
        waited += 50


@pytest_twisted.ensureDeferred
async def test_connect_makes_player_online(harness):
    """connect() fires with the record before and after: online, nothing else."""
    presence = harness.backends.presence
    change = await presence.connect("p1", "s1", "gw-a")
    assert change == PresenceChange(offline("p1"), online("p1"))
    assert await presence.get(["p1"]) == {"p1": online("p1")}


@pytest_twisted.ensureDeferred
async def test_online_while_any_session_lives(harness):
    """Online while any session lives; offline, with last_seen, after the last."""
    presence = harness.backends.presence
    await presence.connect("p1", "s1", "gw-a")
    second = await presence.connect("p1", "s2", "gw-b")
    assert second == PresenceChange(online("p1"), online("p1"))
    first_gone = await presence.disconnect("p1", "s1", 1000)
    assert first_gone == PresenceChange(online("p1"), online("p1"))
    last_gone = await presence.disconnect("p1", "s2", 2000)
    assert last_gone == PresenceChange(online("p1"), offline("p1", last_seen_ms=2000))
    again = await presence.disconnect("p1", "s2", 3000)
    assert again.before == again.after == offline("p1", last_seen_ms=2000)
    assert await presence.get(["p1"]) == {"p1": offline("p1", last_seen_ms=2000)}


@pytest_twisted.ensureDeferred
async def test_sessions_lists_live_sessions_and_their_gateways(harness):
    """sessions(): the player's sessions until they end, each on its latest gateway."""
    presence = harness.backends.presence
    assert await presence.sessions("p1") == {}
    await presence.connect("p1", "s1", "gw-a")
    await presence.connect("p1", "s2", "gw-a")
    await presence.connect("p1", "s2", "gw-b")
    await presence.connect("p2", "s3", "gw-a")
    assert await presence.sessions("p1") == {"s1": "gw-a", "s2": "gw-b"}
    await presence.disconnect("p1", "s1", 1000)
    assert await presence.sessions("p1") == {"s2": "gw-b"}
    await presence.disconnect("p1", "s2", 2000)
    assert await presence.sessions("p1") == {}
    assert await presence.sessions("p2") == {"s3": "gw-a"}


@pytest_twisted.ensureDeferred
async def test_disconnect_of_unknown_session_changes_nothing(harness):
    """Ending a session the store never saw leaves every player as it was."""
    presence = harness.backends.presence
    never = await presence.disconnect("ghost", "s9", 1000)
    assert never == PresenceChange(offline("ghost"), offline("ghost"))
    await presence.connect("p1", "s1", "gw-a")
    other = await presence.disconnect("p1", "s-other", 1000)
    assert other == PresenceChange(online("p1"), online("p1"))
    assert await presence.get(["ghost", "p1"]) == {
        "ghost": offline("ghost"),
        "p1": online("p1"),
    }


@pytest_twisted.ensureDeferred
async def test_reconnect_starts_online_with_nothing_left_over(harness):
    """Back online: status online, no zone or activity, last_seen_ms kept."""
    presence = harness.backends.presence
    await presence.connect("p1", "s1", "gw-a")
    changes = {"status": "busy", "zone": "z1", "region": "eu", "activity": "x"}
    await presence.update("p1", changes, 500)
    await presence.disconnect("p1", "s1", 1000)
    assert await zone_members(presence, "z1") == []
    back = await presence.connect("p1", "s2", "gw-b")
    assert back.before == offline("p1", status="busy", region="eu", last_seen_ms=1000)
    assert back.after == online("p1", region="eu", last_seen_ms=1000)
    assert await zone_members(presence, "z1") == []


@pytest_twisted.ensureDeferred
async def test_invisible_outlives_its_sessions_and_keeps_its_last_seen(harness):
    """An invisible player reconnects invisible; its disconnect time never shows."""
    presence = harness.backends.presence
    await presence.connect("p1", "s1", "gw-a")
    await presence.update("p1", {"status": "invisible"}, 500)
    gone = await presence.disconnect("p1", "s1", 1000)
    assert gone.after == offline("p1", status="invisible", last_seen_ms=500)
    back = await presence.connect("p1", "s2", "gw-a")
    assert back.after == online("p1", status="invisible", last_seen_ms=500)


@pytest_twisted.ensureDeferred
async def test_connect_moves_session_between_gateways(harness):
    """A session connected again on another gateway moves: no change, one session."""
    presence = harness.backends.presence
    await presence.connect("p1", "s1", "gw-a")
    moved = await presence.connect("p1", "s1", "gw-b")
    assert moved == PresenceChange(online("p1"), online("p1"))
    # One session only: its end takes the player offline.
    gone = await presence.disconnect("p1", "s1", 1000)
    assert gone.after == offline("p1", last_seen_ms=1000)


@pytest_twisted.ensureDeferred
async def test_update_each_field(harness):
    """status, zone, region and activity are set and cleared one by one."""
    presence = harness.backends.presence
    await presence.connect("p1", "s1", "gw-a")
    expected = online("p1")
    for changes in (
        {"status": "away"},
        {"zone": "forest"},
        {"region": "eu-west"},
        {"activity": "fishing 🎣"},
        {"status": "busy", "region": ""},
        {"zone": None},
        {"region": None, "activity": None},
        {"status": "online", "zone": "", "activity": ""},
        {},
    ):
        change = await presence.update("p1", changes, 100)
        assert change.before == expected
        expected = replace(expected, **changes)
        assert change.after == expected
        assert await presence.get(["p1"]) == {"p1": expected}


@pytest_twisted.ensureDeferred
async def test_update_of_offline_player(harness):
    """An offline player's changes are kept, unlisted, until it comes online."""
    presence = harness.backends.presence
    change = await presence.update("p1", {"zone": "z1", "status": "away"}, 100)
    assert change == PresenceChange(
        offline("p1"), offline("p1", zone="z1", status="away")
    )
    assert await zone_members(presence, "z1") == []
    hidden = await presence.update("p1", {"status": "invisible"}, 200)
    assert hidden.after.last_seen_ms is None  # it was not seen going offline
    await presence.update("p1", {"status": "away"}, 300)
    await presence.connect("p1", "s1", "gw-a")
    assert await zone_members(presence, "z1") == ["p1"]


@pytest_twisted.ensureDeferred
async def test_zone_listing_follows_moves(harness):
    """Changing zone leaves the old listing and joins the new one; None leaves."""
    presence = harness.backends.presence
    await presence.connect("p1", "s1", "gw-a")
    await presence.update("p1", {"zone": "z1"}, 100)
    assert await zone_members(presence, "z1") == ["p1"]
    await presence.update("p1", {"zone": "z2"}, 200)
    assert await zone_members(presence, "z1") == []
    assert await zone_members(presence, "z2") == ["p1"]
    await presence.update("p1", {"status": "away", "activity": "afk"}, 300)
    assert await zone_members(presence, "z2") == ["p1"]
    await presence.update("p1", {"zone": None}, 400)
    assert await zone_members(presence, "z2") == []
    await presence.update("p1", {"zone": "z2"}, 500)
    await presence.disconnect("p1", "s1", 600)
    assert await zone_members(presence, "z2") == []


@pytest_twisted.ensureDeferred
async def test_invisible_leaves_zone_and_stamps_last_seen(harness):
    """Turning invisible looks like going offline; visible again rejoins the zone."""
    presence = harness.backends.presence
    await presence.connect("p1", "s1", "gw-a")
    await presence.update("p1", {"zone": "z1"}, 100)
    hidden = await presence.update("p1", {"status": "invisible"}, 200)
    assert hidden.after == online("p1", status="invisible", zone="z1", last_seen_ms=200)
    assert not hidden.after.visible
    assert await zone_members(presence, "z1") == []
    # Already invisible: not seen going offline again.
    still = await presence.update("p1", {"status": "invisible", "zone": "z2"}, 300)
    assert still.after.last_seen_ms == 200
    assert await zone_members(presence, "z2") == []
    back = await presence.update("p1", {"status": "away"}, 400)
    assert back.after == online("p1", status="away", zone="z2", last_seen_ms=200)
    assert await zone_members(presence, "z2") == ["p1"]
    await presence.update("p1", {"status": "invisible"}, 500)
    gone = await presence.disconnect("p1", "s1", 600)
    assert gone.after == offline("p1", status="invisible", last_seen_ms=500)
    assert await zone_members(presence, "z2") == []


@pytest_twisted.ensureDeferred
async def test_zone_pages(harness):
    """Pages in id order after the cursor; next cursor None at the end; exact count."""
    presence = harness.backends.presence
    ids = ["p-07", "p-02", "p-05", "p-01", "p-06", "p-03", "p-04"]
    for n, player_id in enumerate(ids):
        await presence.connect(player_id, f"s{n}", "gw-a")
        await presence.update(player_id, {"zone": "z"}, 100)
    await presence.connect("p-00", "s-x", "gw-a")  # online, in no zone
    assert await presence.zone("z", None, 3) == (7, ["p-01", "p-02", "p-03"], "p-03")
    assert await presence.zone("z", "p-03", 3) == (7, ["p-04", "p-05", "p-06"], "p-06")
    assert await presence.zone("z", "p-06", 3) == (7, ["p-07"], None)
    assert await presence.zone("z", "p-07", 3) == (7, [], None)
    # A cursor need not be a member; a page that ends the zone has no next.
    assert await presence.zone("z", "p-035", 4) == (
        7,
        ["p-04", "p-05", "p-06", "p-07"],
        None,
    )
    assert await presence.zone("z", "", 1) == (7, ["p-01"], "p-01")
    assert await presence.zone("z", None, 7) == (7, sorted(ids), None)
    assert await presence.zone("z", None, 100) == (7, sorted(ids), None)
    assert await presence.zone("nowhere", None, 10) == (0, [], None)
    await presence.update("p-04", {"zone": "elsewhere"}, 200)
    assert await presence.zone("z", "p-03", 1) == (6, ["p-05"], "p-05")


@pytest_twisted.ensureDeferred
async def test_zone_of_ten_thousand_players(harness):
    """A 10,000-player zone: pages and counts without reading it all (timed)."""
    presence = harness.backends.presence
    ids = [f"player-{n:05d}" for n in range(10_000)]
    shuffled = ids[::7] + [p for n, p in enumerate(ids) if n % 7]
    for start in range(0, len(shuffled), 1000):
        chunk = shuffled[start : start + 1000]
        await gatherResults([presence.connect(p, "s-" + p, "gw-a") for p in chunk])
        await gatherResults([presence.update(p, {"zone": "big"}, 1) for p in chunk])
    await presence.zone("big", None, 1)  # Redis has the script
    started = time.perf_counter()
    count, page, cursor = await presence.zone("big", "player-05000", 100)
    page_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    counted, _, _ = await presence.zone("big", None, 1)
    count_ms = (time.perf_counter() - started) * 1000
    assert count == counted == 10_000
    assert page == ids[5001:5101] and cursor == "player-05100"
    print(
        f"\n[{harness.name}] 10k zone: page of 100 {page_ms:.2f} ms, "
        f"count {count_ms:.2f} ms"
    )
    walked, cursor = [], None
    while True:
        count, page, cursor = await presence.zone("big", cursor, 500)
        walked += page
        if cursor is None:
            break
    assert walked == ids


@pytest_twisted.ensureDeferred
async def test_get_unknown_and_known_players(harness):
    """get() answers every id asked: never-seen players offline, last_seen None."""
    presence = harness.backends.presence
    await presence.connect("p1", "s1", "gw-a")
    await presence.update("p1", {"region": "eu"}, 1)
    await presence.connect("p2", "s2", "gw-a")
    await presence.disconnect("p2", "s2", 5000)
    asked = ["p2", "nobody", "p1", *(f"x{n}" for n in range(497))]
    found = await presence.get(asked)
    assert list(found) == asked
    assert found["p1"] == online("p1", region="eu")
    assert found["p2"] == offline("p2", last_seen_ms=5000)
    assert found["nobody"] == offline("nobody")
    assert all(found[f"x{n}"] == offline(f"x{n}") for n in range(497))
    assert await presence.get([]) == {}


@pytest_twisted.ensureDeferred
async def test_dead_gateway_claimed_once(harness):
    """A dead gateway is claimed by one caller, once; moved sessions are excluded."""
    stores = [harness.backends.presence, (await harness.gateway()).presence]
    presence = stores[0]
    await presence.gateway_alive("gw-dead", 200)
    await presence.gateway_alive("gw-live", 60_000)
    await presence.connect("p1", "s1", "gw-dead")
    await presence.connect("p2", "s2", "gw-dead")
    await presence.connect("p2", "s3", "gw-live")
    await presence.connect("p3", "s4", "gw-dead")
    await presence.connect("p3", "s4", "gw-live")  # resumed elsewhere
    await presence.connect("p|pipe", "s5", "gw-dead")
    await presence.connect("p4", "s6", "gw-dead")
    await presence.disconnect("p4", "s6", 10)  # ended normally
    assert await gatherResults([s.claim_dead_gateways() for s in stores]) == [[], []]
    claims = await claim_until_found(harness, stores)
    claimed = [claim for claim in claims if claim]
    assert len(claimed) == 1
    assert sorted(claimed[0]) == [
        ("gw-dead", "p1", "s1"),
        ("gw-dead", "p2", "s2"),
        ("gw-dead", "p|pipe", "s5"),
    ]
    await harness.elapse(100)
    assert await gatherResults([s.claim_dead_gateways() for s in stores]) == [[], []]
    # The claimer ends them: only players with no other session go offline.
    for gateway_id, player_id, session_id in claimed[0]:
        await presence.disconnect(player_id, session_id, 7000, gateway_id)
    found = await presence.get(["p1", "p2", "p3", "p|pipe"])
    assert found == {
        "p1": offline("p1", last_seen_ms=7000),
        "p2": online("p2"),
        "p3": online("p3"),
        "p|pipe": offline("p|pipe", last_seen_ms=7000),
    }


@pytest_twisted.ensureDeferred
async def test_disconnect_from_a_gateway_spares_a_moved_session(harness):
    """disconnect with a gateway id leaves a session that moved elsewhere alone."""
    presence = harness.backends.presence
    await presence.connect("p1", "s1", "gw-dead")
    await presence.connect("p1", "s1", "gw-live")  # resumed elsewhere meanwhile
    change = await presence.disconnect("p1", "s1", 500, "gw-dead")
    assert change.before == change.after == online("p1")
    gone = await presence.disconnect("p1", "s1", 600, "gw-live")
    assert gone.after == offline("p1", last_seen_ms=600)


@pytest_twisted.ensureDeferred
async def test_refreshed_gateway_stays_alive(harness):
    """A gateway that refreshes its liveness within the TTL is never claimed."""
    presence = harness.backends.presence
    assert await presence.gateway_alive("gw-a", 600) is False  # not known yet
    await presence.connect("p1", "s1", "gw-a")
    await harness.elapse(400)
    assert await presence.gateway_alive("gw-a", 600) is True
    await harness.elapse(400)  # past the first TTL, within the second
    assert await presence.claim_dead_gateways() == []
    assert (await presence.get(["p1"]))["p1"] == online("p1")
    assert await claim_until_found(harness, [presence]) == [[("gw-a", "p1", "s1")]]
    assert await presence.gateway_alive("gw-a", 600) is False  # presumed dead


# -- Redis only: how the Redis backends keep the contract


@pytest_twisted.ensureDeferred
async def test_redis_subscriptions_of_one_turn_batched(redis_harness):
    """Subscribes of one reactor turn travel as one SUBSCRIBE command."""
    backends = redis_harness.backends
    bus = backends.bus
    subscribes = await command_calls(backends, "subscribe")
    unsubscribes = await command_calls(backends, "unsubscribe")
    await gatherResults([bus.subscribe(f"rtgw.t.b{n}") for n in range(50)])
    assert await command_calls(backends, "subscribe") == subscribes + 1
    for n in range(50):
        bus.unsubscribe(f"rtgw.t.b{n}")
    # Same turn: b0 is kept; the SUBSCRIBE of sync follows the UNSUBSCRIBE.
    await gatherResults([bus.subscribe("rtgw.t.b0"), bus.subscribe("rtgw.t.sync")])
    assert await command_calls(backends, "unsubscribe") == unsubscribes + 1
    assert await command_calls(backends, "subscribe") == subscribes + 2
    channels = await backends.client.execute("PUBSUB", "CHANNELS", "rtgw.t.b*")
    assert channels == [b"rtgw.t.b0"]


@pytest_twisted.ensureDeferred
async def test_redis_session_keys_expire_and_persist_together(redis_harness):
    """detach PEXPIREs the session hash and digest key alike; attach PERSISTs both."""
    backends = redis_harness.backends
    made = record()
    await backends.sessions.create(made)
    keys = [session_key(made.session_id), digest_key(made.resume_digest)]
    assert [await backends.client.execute("PTTL", key) for key in keys] == [-1, -1]
    await backends.sessions.detach(made.session_id, "conn-1", 1, 60_000)
    for key in keys:
        assert 59_000 < await backends.client.execute("PTTL", key) <= 60_000
    await backends.sessions.attach(made.session_id, "gw", "conn-2")
    assert [await backends.client.execute("PTTL", key) for key in keys] == [-1, -1]


@pytest_twisted.ensureDeferred
async def test_redis_read_only_topic_epoch_expires(redis_harness):
    """The epoch a read creates for an empty topic is not kept for ever."""
    backends = redis_harness.backends
    topic = unique("t")
    await backends.history.read(topic, None, 10)
    ttl = await backends.client.execute("PTTL", topic_meta_key(topic))
    assert 0 < ttl <= 24 * 3600 * 1000
    await backends.history.append(topic, b"x", 10, 5000)
    assert await backends.client.execute("PTTL", topic_meta_key(topic)) <= 5000


@pytest_twisted.ensureDeferred
async def test_redis_scripts_reloaded_after_script_flush(redis_harness):
    """A Redis that lost its scripts (NOSCRIPT) gets them again transparently."""
    backends = redis_harness.backends
    topic = unique("t")
    await backends.history.append(topic, b"a", 10, 60_000)
    await backends.client.execute("SCRIPT", "FLUSH")
    assert (await backends.history.append(topic, b"b", 10, 60_000)).offset == 2


@pytest_twisted.ensureDeferred
async def test_redis_other_errors_propagate(redis_harness):
    """A Redis error that is not an outage is a bug: it is not Unavailable."""
    import txredisapi

    backends = redis_harness.backends
    await backends.client.execute("SET", "rtgw:test:string", "x")
    with pytest.raises(txredisapi.ResponseError, match="WRONGTYPE"):
        await backends.client.execute("HGETALL", "rtgw:test:string")


def test_reply_reader_handles_any_split():
    """Replies cut anywhere by TCP are read whole and unchanged."""
    import txredisapi

    stream = (
        b"+OK\r\n:-42\r\n$-1\r\n*-1\r\n$0\r\n\r\n"
        b"$6\r\n\xff\r\n\x00|*\r\n"
        b"*3\r\n$7\r\nmessage\r\n$3\r\nchn\r\n$2\r\n12\r\n"
        b"*2\r\n*1\r\n:1\r\n*0\r\n"
        b"-NOSCRIPT No matching script\r\n"
    )
    expected = [
        "OK", -42, None, None, b"", b"\xff\r\n\x00|*",
        [b"message", b"chn", b"12"], [[1], []],
    ]  # fmt: skip
    for cut in range(len(stream) + 1):
        reader = ReplyReader()
        replies = []
        for part in (stream[:cut], stream[cut:]):
            reader.feed(part)
            while (reply := reader.gets()) is not INCOMPLETE:
                replies.append(reply)
        assert replies[:-1] == expected, cut
        assert isinstance(replies[-1], txredisapi.ResponseError)
        assert str(replies[-1]).startswith("NOSCRIPT")


def test_reply_reader_reads_a_large_reply_in_chunks_once():
    """A reply cut into many chunks is read item by item, never again from its start."""
    items = [b"0-%d" % n for n in range(20_000)]
    stream = b"*%d\r\n" % len(items) + b"".join(
        b"$%d\r\n%s\r\n" % (len(item), item) for item in items
    )
    reader = ReplyReader()
    reads = 0
    read = reader._read

    def counting(start):
        nonlocal reads
        reads += 1
        return read(start)

    reader._read = counting
    chunks = range(0, len(stream), 4096)
    for offset in chunks:
        reader.feed(stream[offset : offset + 4096])
        reply = reader.gets()
    assert reply == items
    assert reads <= len(items) + 1 + len(chunks)


@pytest_twisted.ensureDeferred
async def test_redis_presence_get_is_one_script(redis_harness):
    """get() of 500 players is one script call, not a round trip per player."""
    backends = redis_harness.backends
    presence = backends.presence
    players = [f"p{n}" for n in range(500)]
    await presence.connect("p7", "s7", "gw-a")
    await presence.get(players[:1])  # the script is loaded
    scripts = await script_calls(backends)
    started = time.perf_counter()
    found = await presence.get(players)
    took_ms = (time.perf_counter() - started) * 1000
    assert await script_calls(backends) == scripts + 1
    assert found["p7"] == PresenceRecord("p7", online=True) and len(found) == 500
    print(f"\n[redis] get of 500 players: {took_ms:.2f} ms")


@pytest_twisted.ensureDeferred
async def test_redis_presence_keys_follow_sessions(redis_harness):
    """Gateway sets follow a session that moves; None fields are absent fields."""
    backends = redis_harness.backends
    presence, execute = backends.presence, backends.client.execute
    await presence.connect("p1", "s1", "gw-a")
    await presence.connect("p1", "s1", "gw-b")
    assert await execute("SMEMBERS", gateway_sessions_key("gw-a")) == []
    assert await execute("SMEMBERS", gateway_sessions_key("gw-b")) == [b"p1|s1"]
    assert await execute("HGETALL", presence_sessions_key("p1")) == [b"s1", b"gw-b"]
    await presence.update("p1", {"zone": "z", "region": ""}, 1)
    await presence.update("p1", {"zone": None}, 2)
    fields = await execute("HGETALL", presence_key("p1"))
    assert dict(zip(fields[::2], fields[1::2], strict=True)) == {
        b"online": b"1",
        b"region": b"",
    }
    await presence.disconnect("p1", "s1", 3)
    assert await execute("EXISTS", gateway_sessions_key("gw-b")) == 0
    assert await execute("EXISTS", presence_sessions_key("p1")) == 0
    await presence.gateway_alive("gw-b", 5000)
    assert 0 < await execute("PTTL", gateway_alive_key("gw-b")) <= 5000
    assert await execute("SMEMBERS", GATEWAYS_KEY) == [b"gw-b"]


@pytest_twisted.ensureDeferred
async def test_redis_dead_gateway_drained_in_batches(redis_harness):
    """A big dead gateway is claimed in one script and drained in bounded ones."""
    backends = redis_harness.backends
    presence, execute = backends.presence, backends.client.execute
    count = 2 * DRAIN_BATCH + 7
    await presence.gateway_alive("gw-dead", 100)
    await gatherResults(
        [presence.connect(f"p{n}", f"s{n}", "gw-dead") for n in range(count)]
    )
    await sleep(0.15)  # gw-dead's liveness runs out
    for script in (CLAIM, DRAIN):  # so that each call is one EVALSHA
        await execute("SCRIPT", "LOAD", script.source)
    scripts = await script_calls(backends)
    started = time.perf_counter()
    claimed = await presence.claim_dead_gateways()
    took_ms = (time.perf_counter() - started) * 1000
    assert sorted(claimed) == sorted(
        ("gw-dead", f"p{n}", f"s{n}") for n in range(count)
    )
    assert await script_calls(backends) - scripts == 1 + 3  # claim, three drains
    assert await execute("KEYS", "rtgw:gw:*") == []
    print(f"\n[redis] claim of a dead gateway with {count} sessions: {took_ms:.1f} ms")


@pytest_twisted.ensureDeferred
async def test_redis_drain_skips_sessions_live_again(redis_harness):
    """Sessions back on a gateway restarted under the same id are not drained."""
    backends = redis_harness.backends
    presence, client = backends.presence, backends.client
    await presence.gateway_alive("gw-x", 100)
    await presence.connect("p1", "s1", "gw-x")
    await presence.connect("p2", "s2", "gw-x")
    await sleep(0.15)
    claim_id = "test-claim"
    assert await client.evaluate(CLAIM, [GATEWAYS_KEY], [claim_id, 60_000]) == [b"gw-x"]
    # gw-x restarts and p1 resumes there before the claim is drained.
    await presence.gateway_alive("gw-x", 60_000)
    await presence.connect("p1", "s1", "gw-x")
    keys = [gateway_claim_key("gw-x", claim_id), gateway_sessions_key("gw-x")]
    assert await client.evaluate(DRAIN, keys, ["gw-x", 10]) == [0, b"p2", b"s2"]


@pytest_twisted.ensureDeferred
async def test_redis_presence_matches_memory_on_random_operations(redis_harness):
    """Random connects, disconnects and updates give the memory store's answers."""
    import random

    redis_store = redis_harness.backends.presence
    memory_store = MemoryBackends(task.Clock(), MemoryHub()).presence
    chooser = random.Random(20240607)
    players = ["a", "b", "c|d", "é", "e"]
    values = {
        "status": ["online", "away", "busy", "invisible"],
        "zone": [None, "", "z1", "z2"],
        "region": [None, "", "eu"],
        "activity": [None, "", "x"],
    }
    for step in range(800):
        player = chooser.choice(players)
        session = chooser.choice(["s1", "s2", "s3"])
        kind = chooser.random()
        if kind < 0.3:
            gateway = chooser.choice(["g1", "g2"])
            calls = [
                s.connect(player, session, gateway) for s in (memory_store, redis_store)
            ]
        elif kind < 0.55:
            calls = [
                s.disconnect(player, session, step) for s in (memory_store, redis_store)
            ]
        else:
            names = chooser.sample(sorted(values), chooser.randint(0, 4))
            changes = {name: chooser.choice(values[name]) for name in names}
            calls = [
                s.update(player, changes, step) for s in (memory_store, redis_store)
            ]
        expected, got = await gatherResults(calls)
        assert got == expected, step
    for zone in ("z1", "z2", ""):
        for limit in (1, 2, 10):
            cursor = None
            while True:
                page = await redis_store.zone(zone, cursor, limit)
                assert page == await memory_store.zone(zone, cursor, limit)
                cursor = page[2]
                if cursor is None:
                    break
    assert await redis_store.get(players) == await memory_store.get(players)
