"""One contract suite for every backend: memory and Redis give the same answers.

Each test runs once per backend factory. The memory backends run on a
``task.Clock``; the Redis ones against a real ``redis-server`` (one per
module) on the real reactor, with short real windows where time must pass.
The last section pins down how the Redis backends keep the contract
(batching, key expiry, reply parsing).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.defer import gatherResults
from zope.interface import implementer
from zope.interface.verify import verifyObject

from rtgateway.backends.interfaces import (
    IBackends,
    IBus,
    IBusHandler,
    ISessionStore,
    ITopicHistory,
    Position,
    Replay,
    SessionRecord,
)
from rtgateway.backends.keys import topic_channel
from rtgateway.backends.memory import MemoryBackends, MemoryHub, envelope
from rtgateway.backends.redis import RedisBackends
from rtgateway.backends.redis.keyspace import digest_key, session_key, topic_meta_key
from rtgateway.backends.redis.resp import INCOMPLETE, ReplyReader
from rtgateway.config import BackendConfig
from rtgateway.testing.redis import RedisServer

WAIT_S = 5.0  # the longest any wait for Redis may take


def sleep(seconds: float):
    return task.deferLater(reactor, seconds, lambda: None)


async def eventually(check, timeout: float = WAIT_S) -> None:
    """Wait, on the real reactor, until ``check()`` is true."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await sleep(0.005)


@implementer(IBusHandler)
class Recorder:
    """An :class:`IBusHandler` that keeps what it receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.reconnects = 0

    def bus_message(self, channel: str, message: bytes) -> None:
        self.messages.append((channel, message))

    def bus_reconnected(self) -> None:
        self.reconnects += 1

    def on(self, channel: str) -> list[bytes]:
        return [message for name, message in self.messages if name == channel]

    async def wait_for(self, channel: str, count: int) -> list[bytes]:
        await eventually(lambda: len(self.on(channel)) >= count)
        return self.on(channel)


class MemoryHarness:
    """Memory backends sharing one hub, on a task.Clock."""

    name = "memory"

    def __init__(self) -> None:
        self.clock = task.Clock()
        self.hub = MemoryHub()
        self.backends = None

    async def gateway(self):
        backends = MemoryBackends(self.clock, self.hub)
        backends.bus.handler = Recorder()
        backends.startService()
        return backends

    async def elapse(self, ms: int) -> None:
        self.clock.advance(ms / 1000)

    def now_ms(self) -> int:
        return int(self.clock.seconds() * 1000)

    async def close(self) -> None:
        pass


class RedisHarness:
    """Redis backends of several gateways on one real server."""

    name = "redis"

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.started: list[RedisBackends] = []

    async def gateway(self, call_timeout_s: float = 2.0):
        config = BackendConfig(
            kind="redis", redis_url=self.server.url, call_timeout_s=call_timeout_s
        )
        backends = RedisBackends(config, f"gw{len(self.started)}", reactor)
        backends.bus.handler = Recorder()
        backends.startService()
        self.started.append(backends)
        await eventually(backends.ready)
        return backends

    async def elapse(self, ms: int) -> None:
        await sleep(ms / 1000)

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    async def close(self) -> None:
        for backends in self.started:
            await backends.stopService()


@pytest.fixture(scope="module")
def redis_server():
    """One real redis-server for the module."""
    server = RedisServer().start()
    yield server
    server.close()


async def make_harness(kind: str, request):
    if kind == "memory":
        made = MemoryHarness()
        made.backends = await made.gateway()
    else:
        made = RedisHarness(request.getfixturevalue("redis_server"))
        made.backends = await made.gateway()
        await made.backends.client.execute("FLUSHDB")
    return made


@pytest_twisted.async_yield_fixture(params=["memory", "redis"])
async def harness(request):
    """The backends under test, fresh for each test."""
    made = await make_harness(request.param, request)
    yield made
    await made.close()


@pytest_twisted.async_yield_fixture
async def redis_harness(request):
    """The Redis backends alone, for tests of how they keep the contract."""
    made = await make_harness("redis", request)
    yield made
    await made.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


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
        made, gateway_id=None, connection_id=None, detached_ms=now
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
    await sessions.detach(made.session_id, "conn-1", harness.now_ms(), 200)
    before = await sessions.attach(made.session_id, "gw-c", "conn-3")
    assert before.detached_ms is not None and not before.attached
    await harness.elapse(350)
    loaded = await sessions.load(made.session_id)
    assert loaded == replace(made, gateway_id="gw-c", connection_id="conn-3")
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
    assert received == [message for _, message in expected]


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


# -- Redis only: how the Redis backends keep the contract


async def command_calls(backends, command: str) -> int:
    info = (await backends.client.execute("INFO", "commandstats")).decode()
    for line in info.splitlines():
        if line.startswith(f"cmdstat_{command}:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


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
