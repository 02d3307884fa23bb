"""The backend test harness: memory and Redis backends behind one fixture.

Shared by the contract suites (``test_backend_contract.py``,
``test_state_store_contract.py``). The memory backends run on a
``task.Clock``; the Redis ones against a real ``redis-server`` (one per test
module) on the real reactor. A test module uses the fixtures by importing
their functions: ``harness`` (parametrized over memory and Redis),
``redis_harness`` and ``redis_server``, which the other two need. The
``nats`` parameter is the Redis backends with the NATS bus (``bus =
"nats"``) against a real ``nats-server`` too (the ``nats_server`` fixture).
"""

from __future__ import annotations

import time
import uuid

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from zope.interface import implementer

from rtgateway.backends.interfaces import IBusHandler
from rtgateway.backends.memory import MemoryBackends, MemoryHub
from rtgateway.backends.redis import RedisBackends
from rtgateway.config import BackendConfig
from rtgateway.testing.nats import NatsServer
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

    def config(self, call_timeout_s: float) -> BackendConfig:
        return BackendConfig(
            kind="redis", redis_url=self.server.url, call_timeout_s=call_timeout_s
        )

    async def gateway(self, call_timeout_s: float = 2.0):
        config = self.config(call_timeout_s)
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


class NatsHarness(RedisHarness):
    """The Redis backends of several gateways with the NATS bus."""

    name = "nats"

    def __init__(self, server: RedisServer, nats: NatsServer) -> None:
        super().__init__(server)
        self.nats = nats

    def config(self, call_timeout_s: float) -> BackendConfig:
        return BackendConfig(
            kind="redis",
            redis_url=self.server.url,
            call_timeout_s=call_timeout_s,
            bus="nats",
            nats_url=(self.nats.url,),
        )


@pytest.fixture(scope="module", name="redis_server")
def fixture_redis_server():
    """One real redis-server for the module."""
    server = RedisServer().start()
    yield server
    server.close()


async def make_harness(kind: str, request):
    if kind == "memory":
        made = MemoryHarness()
        made.backends = await made.gateway()
    else:
        redis = request.getfixturevalue("redis_server")
        if kind == "nats":
            made = NatsHarness(redis, request.getfixturevalue("nats_server"))
        else:
            made = RedisHarness(redis)
        made.backends = await made.gateway()
        await made.backends.client.execute("FLUSHDB")
    return made


@pytest_twisted.async_yield_fixture(params=["memory", "redis", "nats"], name="harness")
async def fixture_harness(request):
    """The backends under test, fresh for each test."""
    made = await make_harness(request.param, request)
    yield made
    await made.close()


@pytest_twisted.async_yield_fixture(name="redis_harness")
async def fixture_redis_harness(request):
    """The Redis backends alone, for tests of how they keep the contract."""
    made = await make_harness("redis", request)
    yield made
    await made.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def command_calls(backends, command: str) -> int:
    """How many ``command`` calls the Redis server has served."""
    info = (await backends.client.execute("INFO", "commandstats")).decode()
    for line in info.splitlines():
        if line.startswith(f"cmdstat_{command}:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


async def script_calls(backends) -> int:
    """Script calls served (EVALSHA, or EVAL after a NOSCRIPT)."""
    return await command_calls(backends, "evalsha") + await command_calls(
        backends, "eval"
    )
