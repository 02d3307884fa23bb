"""The Redis backends when Redis fails: killed, frozen, restarted empty, absent.

Against a real ``redis-server`` (one per module, restarted by the tests
that kill it). Every call must fail with ``Unavailable`` within the call
timeout, never hang, and the backends must come back by themselves.
"""

from __future__ import annotations

import time
import uuid

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.defer import (
    Deferred,
    ensureDeferred,
    gatherResults,
    maybeDeferred,
)
from zope.interface import implementer

from rtgateway.backends.interfaces import IBusHandler, Position, SessionRecord
from rtgateway.backends.keys import topic_channel
from rtgateway.backends.redis import RedisBackends
from rtgateway.config import BackendConfig
from rtgateway.testing.redis import RedisServer
from rtgateway.wire.errors import Unavailable

TIMEOUT_S = 0.5  # call_timeout_s of the backends under test
MARGIN_S = 0.3  # scheduling slack allowed on top of it
RECONNECT_S = 12.0  # txredisapi's backoff tops out at 5 s between attempts


def sleep(seconds: float) -> Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


async def eventually(check, timeout: float) -> None:
    """Wait, on the real reactor, until ``check()`` is true."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await sleep(0.01)


@implementer(IBusHandler)
class Recorder:
    """Keeps the bus traffic a gateway receives."""

    def __init__(self, commands_up=lambda: True) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.reconnects = 0
        self.commands_up_when_told: list[bool] = []
        self._commands_up = commands_up

    def bus_message(self, channel: str, message: bytes) -> None:
        self.messages.append((channel, message))

    def bus_reconnected(self) -> None:
        self.reconnects += 1
        self.commands_up_when_told.append(self._commands_up())


@pytest.fixture(scope="module")
def module_server():
    """One real redis-server for the module."""
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def server(module_server):
    """The module's server, running and answering at the start of each test."""
    module_server.resume()
    if module_server.process.poll() is not None:
        module_server.start()
    yield module_server
    module_server.resume()


@pytest_twisted.async_yield_fixture
async def gateway(server):
    """Starts Redis backends with a short call timeout; stops them afterwards."""
    started: list[RedisBackends] = []

    def start(wait: bool = True):
        config = BackendConfig(
            kind="redis", redis_url=server.url, call_timeout_s=TIMEOUT_S
        )
        backends = RedisBackends(config, f"gw{len(started)}", reactor)
        backends.bus.handler = Recorder(lambda: backends.client.connected)
        backends.bus.ping_interval = 0.2
        backends.startService()
        started.append(backends)
        return backends

    yield start
    for backends in started:
        await backends.stopService().addTimeout(5, reactor)


async def ready(backends: RedisBackends) -> RedisBackends:
    await eventually(backends.ready, RECONNECT_S)
    return backends


async def assert_unavailable(make_call, limit: float = TIMEOUT_S + MARGIN_S) -> None:
    """The call fails with Unavailable within ``limit`` seconds."""
    started = time.monotonic()
    call = maybeDeferred(make_call).addTimeout(limit + 2, reactor)
    with pytest.raises(Unavailable) as raised:
        await call
    assert raised.value.code == -32005
    assert time.monotonic() - started < limit, make_call


def every_call(backends: RedisBackends):
    """A call of every method that needs Redis."""
    sessions, history, bus = backends.sessions, backends.history, backends.bus
    presence = backends.presence
    made = SessionRecord("s-new", "p", 1, "digest-new")
    return [
        lambda: sessions.create(made),
        lambda: sessions.load("s1"),
        lambda: sessions.find("digest-1"),
        lambda: sessions.attach("s1", "gw", "c2"),
        lambda: sessions.detach("s1", "c1", 1, 1000),
        lambda: sessions.set_subscription("s1", "a.b", Position(1, "e")),
        lambda: sessions.drop_subscription("s1", "a.b"),
        lambda: sessions.set_metadata("s1", "k", 1),
        lambda: sessions.add_stats("s1", {"messages_in": 1}),
        lambda: sessions.end("s1"),
        lambda: sessions.kick("p", 5),
        lambda: sessions.kicked_at("p"),
        lambda: history.append("topic", b"x", 10, 60_000),
        lambda: history.read("topic", None, 10),
        lambda: history.read("topic", Position(0, "e"), 10),
        lambda: bus.publish("rtgw.t.topic", b"x"),
        lambda: bus.subscribe(f"rtgw.t.new-{uuid.uuid4().hex}"),
        lambda: presence.connect("p", "s1", "gw"),
        lambda: presence.disconnect("p", "s1", 5),
        lambda: presence.update("p", {"status": "away"}, 5),
        lambda: presence.get(["p", "q"]),
        lambda: presence.zone("z", None, 10),
        lambda: presence.gateway_alive("gw", 1000),
        lambda: presence.claim_dead_gateways(),
    ]


@pytest_twisted.ensureDeferred
async def test_killed_redis_fails_every_call_fast(server, gateway):
    """With Redis killed, every call is Unavailable at once and ready() is False."""
    backends = await ready(gateway())
    await backends.sessions.create(SessionRecord("s1", "p", 1, "digest-1", "gw", "c1"))
    await backends.bus.subscribe("rtgw.t.kept")
    server.kill()
    await eventually(lambda: not backends.ready(), 2.0)
    for make_call in every_call(backends):
        await assert_unavailable(make_call, limit=0.1)
    assert await backends.bus.unsubscribe("rtgw.t.kept") is None  # local only
    started = time.monotonic()
    await backends.stopService().addTimeout(3, reactor)
    assert time.monotonic() - started < 1.0


@pytest_twisted.ensureDeferred
async def test_frozen_redis_times_out_then_recovers(server, gateway):
    """A Redis that stops answering costs each call at most the call timeout."""
    backends = await ready(gateway())
    await backends.bus.subscribe("rtgw.t.frozen")
    server.pause()
    await gatherResults(
        [ensureDeferred(assert_unavailable(call)) for call in every_call(backends)]
    )
    # The unanswered PING gives the subscriber connection up.
    await eventually(lambda: not backends.bus.connected, 0.2 + TIMEOUT_S + 1.0)
    assert not backends.ready()
    server.resume()
    await ready(backends)
    assert backends.bus.handler.reconnects >= 1
    await backends.bus.publish("rtgw.t.frozen", b"thawed")
    await eventually(lambda: backends.bus.handler.messages, 2.0)
    assert backends.bus.handler.messages == [("rtgw.t.frozen", b"thawed")]


@pytest_twisted.ensureDeferred
async def test_restarted_redis_reconnects_with_new_epoch(server, gateway):
    """After a restart without data: reconnected, re-subscribed, new epoch from 1."""
    backends, other = await ready(gateway()), await ready(gateway())
    handler = backends.bus.handler
    await backends.bus.subscribe("rtgw.control")
    await backends.bus.subscribe(topic_channel("room"))
    for n in range(3):
        old = await backends.history.append("room", b"%d" % n, 10, 60_000)
    assert old.offset == 3
    await eventually(lambda: len(handler.messages) == 3, 2.0)
    handler.messages.clear()
    server.kill()
    await eventually(lambda: not backends.ready(), 2.0)
    server.start()
    await ready(backends)
    await ready(other)
    assert handler.reconnects == 1
    assert other.bus.handler.reconnects == 1  # told even without subscriptions
    # Told once history can be read again, to repair what was missed.
    assert handler.commands_up_when_told == [True]
    await other.bus.publish("rtgw.control", b"after")
    new = await other.history.append("room", b"new", 10, 60_000)
    assert new.offset == 1 and new.epoch != old.epoch
    replay = await backends.history.read("room", old, 10)
    assert replay.recovered is False and replay.top == new
    await eventually(lambda: len(handler.messages) == 2, 2.0)
    assert handler.messages == [
        ("rtgw.control", b"after"),
        (topic_channel("room"), b"1|%s|new" % new.epoch.encode()),
    ]


@pytest_twisted.ensureDeferred
async def test_started_without_redis_then_connects(server, gateway):
    """Started while Redis is down: calls time out, then it connects by itself."""
    server.kill()
    backends = gateway()
    assert not backends.ready()
    await assert_unavailable(lambda: backends.sessions.load("s1"))
    await assert_unavailable(lambda: backends.bus.subscribe("rtgw.t.early"))
    server.start()
    await ready(backends)
    assert backends.bus.handler.reconnects == 0
    await backends.bus.subscribe("rtgw.t.late")
    await backends.bus.publish("rtgw.t.early", b"dropped")  # its subscribe failed
    await backends.bus.publish("rtgw.t.late", b"kept")
    await eventually(lambda: backends.bus.handler.messages, 2.0)
    assert backends.bus.handler.messages == [("rtgw.t.late", b"kept")]


@pytest_twisted.ensureDeferred
async def test_subscribe_unanswered_is_given_up(server, gateway):
    """A subscribe Redis never confirms fails in time and leaves no subscription."""
    backends = await ready(gateway())
    server.pause()
    await assert_unavailable(lambda: backends.bus.subscribe("rtgw.t.lost"))
    server.resume()
    await ready(backends)
    await backends.bus.subscribe("rtgw.t.after")
    await backends.bus.publish("rtgw.t.lost", b"no")
    await backends.bus.publish("rtgw.t.after", b"yes")
    await eventually(lambda: backends.bus.handler.messages, 2.0)
    assert backends.bus.handler.messages == [("rtgw.t.after", b"yes")]


async def kill_connections(gateway_id: str, killer: RedisBackends) -> None:
    """Drop both Redis connections of a gateway from the server side."""
    names = {f"rtgw:{gateway_id}".encode(), f"rtgw:{gateway_id}:bus".encode()}
    listing = await killer.client.execute("CLIENT", "LIST")
    for line in listing.splitlines():
        fields = dict(item.split(b"=", 1) for item in line.split() if b"=" in item)
        if fields.get(b"name") in names:
            await killer.client.execute("CLIENT", "KILL", "ID", fields[b"id"])


@pytest_twisted.ensureDeferred
async def test_bus_reconnected_waits_for_command_connection(server, gateway):
    """bus_reconnected() comes once history can be read, not merely re-subscribed."""
    backends, killer = await ready(gateway()), await ready(gateway())
    await backends.bus.subscribe("rtgw.t.repair")
    backends.client._factory.initialDelay = 1.5  # commands come back last
    await kill_connections("gw0", killer)
    await sleep(0.9)  # the bus is back (0.5 s) and re-subscribed; commands are not
    assert not backends.client.connected
    assert backends.bus.handler.reconnects == 0 and not backends.ready()
    await ready(backends)
    assert backends.bus.handler.commands_up_when_told == [True]
