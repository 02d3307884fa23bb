"""The client against real gateway processes, on both transports.

Each scenario is one ``async def`` run once with the Twisted client (on the
reactor pytest-twisted runs) and once with the asyncio client (in its own
event loop): same code, same assertions. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time

import pytest
from twisted.internet import defer, reactor, task

from rtgateway.client import ClientOptions, ConnectionLost, ReconnectPolicy
from rtgateway.client.asyncio_transport import AsyncioClient
from rtgateway.client.twisted_transport import TwistedClient
from rtgateway.testing import GatewayProcess, make_config, token_for
from rtgateway.testing.netsim import NetSimProcess

pytestmark = pytest.mark.integration

TOKENS = make_config()
TOPICS = {
    "chat": {
        "subscribe": "any",
        "publish": "any",
        "history_size": 10_000,
        "history_ttl_s": 600,
    }
}
EVENTS = {"chat.line": {"schema": {"type": "object"}}}
SETTINGS = {
    "topics": TOPICS,
    "events": EVENTS,
    "limits": {"rate_per_second": 10_000, "rate_burst": 10_000},
}
FAST = ReconnectPolicy(initial_s=0.05, multiplier=2, max_delay_s=0.5)


class TwistedDriver:
    """Runs a scenario on the reactor, with TwistedClient."""

    name = "twisted"

    def run(self, scenario):
        """A Deferred, which the test returns for pytest-twisted to wait on."""
        return defer.ensureDeferred(scenario(self))

    def client(self, urls, token, rng=None, **options):
        options.setdefault("reconnect", FAST)
        return TwistedClient(
            urls, token, ClientOptions(**options), reactor=reactor, rng=rng
        )

    async def sleep(self, seconds):
        await task.deferLater(reactor, seconds, lambda: None)

    def now(self):
        return reactor.seconds()


class AsyncioDriver:
    """Runs a scenario in a fresh asyncio loop, with AsyncioClient."""

    name = "asyncio"

    def run(self, scenario):
        return asyncio.run(scenario(self))

    def client(self, urls, token, rng=None, **options):
        options.setdefault("reconnect", FAST)
        return AsyncioClient(urls, token, ClientOptions(**options), rng=rng)

    async def sleep(self, seconds):
        await asyncio.sleep(seconds)

    def now(self):
        return asyncio.get_running_loop().time()


@pytest.fixture(params=[TwistedDriver, AsyncioDriver], ids=["twisted", "asyncio"])
def driver(request):
    return request.param()


async def until(driver, predicate, timeout=10.0, what="condition"):
    """Poll ``predicate`` every 20 ms for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await driver.sleep(0.02)


class Tokens:
    """A token provider that counts how often it is asked.

    ``first_claims`` apply to the first token only (a short-lived one).
    """

    def __init__(self, sub, first_claims=None, **claims):
        self.sub, self.claims, self.asked = sub, claims, 0
        self.first_claims = first_claims or {}

    def __call__(self):
        self.asked += 1
        claims = {**self.claims, **(self.first_claims if self.asked == 1 else {})}
        return token_for(TOKENS, self.sub, **claims)


class AsyncTokens(Tokens):
    """The same provider as a coroutine function, as a login service call is."""

    async def __call__(self):
        return super().__call__()


def record(client):
    """Keep every chat.line offset and every connection state change."""
    seen, states = [], []
    client.on("chat.line", lambda event: seen.append(event.offset))
    client.on("client.state", states.append)
    return seen, states


@pytest.fixture(scope="module")
def memory_gateway(tmp_path_factory):
    process = GatewayProcess(tmp_path_factory.mktemp("client"), SETTINGS).start()
    yield process
    process.stop()


@pytest.fixture
def gateways(fleet):
    """Starts gateways (of the ``fleet``) from SETTINGS plus overrides."""
    return lambda name, **overrides: fleet.start({**SETTINGS, **overrides}, name)


def test_calls_and_typed_errors(driver, memory_gateway):
    """A call gets its result; a refused one raises the typed error with data."""

    async def scenario(d):
        client = d.client(memory_gateway.url, Tokens("alice"), encoding="cbor")
        await client.start()
        pong = await client.call("sys.ping", {})
        assert isinstance(pong["server_time_ms"], int)
        with pytest.raises(Exception) as info:
            await client.call("pubsub.publish", {"topic": "chat.x", "type": "nope"})
        assert info.value.code == -32602 and "errors" in info.value.data
        final = await client.close()
        assert (final.state, final.code) == ("closed", 1000)

    return driver.run(scenario)


def test_drop_and_resume_loses_and_duplicates_nothing(driver, memory_gateway):
    """The network drops twice mid-stream; every event arrives once, in order."""
    topic = f"chat.resume-{driver.name}"

    async def scenario(d):
        subscriber = d.client(memory_gateway.url, Tokens("alice"))
        publisher = d.client(memory_gateway.url, Tokens("bob"))
        seen, _ = record(subscriber)
        await subscriber.start()
        await publisher.start()
        await subscriber.subscribe(topic)
        for n in range(1, 301):
            await publisher.call(
                "pubsub.publish", {"topic": topic, "type": "chat.line", "data": {}}
            )
            if n in (100, 200):
                await until(d, lambda: subscriber.state == "open", what="open")
                subscriber.abort()
        await until(d, lambda: len(seen) >= 300, what="300 events")
        await d.sleep(0.2)
        assert seen == list(range(1, 301))
        stats = subscriber.stats()
        assert stats["resumes"] == 2 and stats["resume_success_rate"] == 1.0
        await subscriber.close()
        await publisher.close()

    return driver.run(scenario)


def test_token_refresh_without_reconnect(driver, gateways):
    """session.expiring: the (async) provider is asked again, session.refresh sent."""
    gateway = gateways("gw-refresh", session={"token_expiry_warning_s": 29.5})

    async def scenario(d):
        tokens = AsyncTokens("alice", first_claims={"ttl_s": 30})
        client = d.client(gateway.url, tokens)
        _, states = record(client)
        await client.start()
        await until(d, lambda: client.core.refreshes >= 1, what="a refresh")
        assert tokens.asked == 2
        assert client.core.token_expires_at_ms > time.time() * 1000 + 25_000
        assert [s.state for s in states] == ["connecting", "open"]
        await client.close()

    return driver.run(scenario)


def test_kick_4010_stops_reconnecting(driver, memory_gateway):
    """Kicked by an admin (4010): closed for good, no reconnect attempt."""

    async def scenario(d):
        target = d.client(memory_gateway.url, Tokens(f"mallory-{d.name}"))
        admin = d.client(memory_gateway.url, Tokens("root", roles=["admin"]))
        _, states = record(target)
        await target.start()
        await admin.start()
        await admin.call("admin.kick", {"player_id": f"mallory-{d.name}"})
        final = await target.when_closed()
        assert (final.state, final.code) == ("closed", 4010)
        await d.sleep(0.5)
        assert [s.state for s in states] == ["connecting", "open", "closed"]
        await admin.close()

    return driver.run(scenario)


def test_taken_over_4003_stops_reconnecting(driver, memory_gateway):
    """Another connection resumes the session: the first is closed 4003 for good."""

    async def scenario(d):
        first = d.client(memory_gateway.url, Tokens("carol"))
        _, states = record(first)
        await first.start()
        thief = d.client(memory_gateway.url, Tokens("carol"))
        await thief.start()
        token = first.core.welcome["resume_token"]
        resumed = await thief.call("session.resume", {"resume_token": token})
        assert resumed["resumed"] is True
        final = await first.when_closed()
        assert (final.state, final.code) == ("closed", 4003)
        await d.sleep(0.5)
        assert [s.state for s in states] == ["connecting", "open", "closed"]
        await thief.close()

    return driver.run(scenario)


def test_sigterm_drain_waits_the_advised_delay(driver, gateways):
    """A 1001 drain close: the client waits after_ms, then goes to the other."""
    drain = {"shutdown": {"drain_timeout_s": 5, "reconnect_jitter_ms": 800}}
    gw_a, gw_b = gateways("gw-a", **drain), gateways("gw-b", **drain)
    topic = f"chat.drain-{driver.name}"

    async def scenario(d):
        client = d.client([gw_a.url, gw_b.url], Tokens("dave"))
        times = []
        client.on("client.state", lambda s: times.append((d.now(), s)))
        lost = []
        client.on("client.lost", lambda t, reason: lost.append(t))
        await client.start()
        await client.subscribe(topic)
        on = client.core.welcome["gateway_id"]
        (gw_a if on == "gw-a" else gw_b).signal(signal.SIGTERM)
        await until(
            d,
            lambda: times[-1][1].state == "open" and len(times) > 2,
            what="reopened",
        )
        closed_at, advice = next((t, s) for t, s in times if s.state == "reconnecting")
        assert client.stats()["last_close_code"] == 1001
        assert 0 <= advice.delay <= 0.8
        connecting_at = next(
            t for t, s in times if s.state == "connecting" and t >= closed_at
        )
        assert connecting_at - closed_at >= advice.delay - 0.01
        # The other gateway (memory backend) does not know the session: a
        # fresh one, subscribed again.
        assert client.core.welcome["gateway_id"] != on
        await until(d, lambda: topic in client.core.positions, what="resubscribed")
        await client.close()

    return driver.run(scenario)


def test_sigkill_in_a_redis_cluster_moves_without_loss(driver, gateways, redis_server):
    """SIGKILL the subscriber's gateway mid-stream: it resumes on the other."""
    redis_server.flush()
    backend = {"backend": {"kind": "redis", "redis_url": redis_server.url}}
    gw_a, gw_b = gateways("gw-a", **backend), gateways("gw-b", **backend)
    topic = f"chat.kill-{driver.name}"

    async def scenario(d):
        subscriber = d.client([gw_a.url, gw_b.url], Tokens("erin"))
        seen, _ = record(subscriber)
        await subscriber.start()
        on = subscriber.core.welcome["gateway_id"]
        victim, survivor = (gw_a, gw_b) if on == "gw-a" else (gw_b, gw_a)
        publisher = d.client(survivor.url, Tokens("frank"))
        await publisher.start()
        await subscriber.subscribe(topic)
        for n in range(1, 201):
            await publisher.call(
                "pubsub.publish", {"topic": topic, "type": "chat.line", "data": {}}
            )
            if n == 60:
                victim.signal(signal.SIGKILL)
            await d.sleep(0.002)
        await until(d, lambda: len(seen) >= 200, timeout=20, what="200 events")
        await d.sleep(0.2)
        assert seen == list(range(1, 201))
        assert (
            subscriber.core.welcome["gateway_id"] == survivor.sections["gateway"]["id"]
        )
        assert subscriber.stats()["resumes"] == 1
        await subscriber.close()
        await publisher.close()

    return driver.run(scenario)


def test_call_in_flight_at_a_drop_fails_with_outcome_unknown(driver, memory_gateway):
    """A non-idempotent call lost with its connection fails ConnectionLost."""

    async def scenario(d):
        client = d.client(memory_gateway.url, Tokens("gina"))
        await client.start()
        pending = client.call(
            "pubsub.publish", {"topic": "chat.x", "type": "chat.line", "data": {}}
        )
        client.abort()
        with pytest.raises(ConnectionLost, match="outcome is unknown"):
            await pending
        ping = await client.call("sys.ping", {})
        assert "server_time_ms" in ping
        await client.close()

    return driver.run(scenario)


def test_zone_state_mirrors_and_checks(driver, gateways):
    """Joined to a zone, the mirror follows deltas and every check matches."""
    zones = {
        "arena": {
            "check_interval_ticks": 5,
            "position": ["x", "y"],
            "fields": {
                "x": {"type": "number", "quantum": 0.01},
                "y": {"type": "number", "quantum": 0.01},
            },
        }
    }
    gateway = gateways("gw-state", zones=zones)

    async def scenario(d):
        mover = d.client(gateway.url, Tokens("mover"))
        watcher = d.client(gateway.url, Tokens("watcher"))
        await mover.start()
        await watcher.start()
        await mover.join("arena", {"x": 0, "y": 0})
        await watcher.join("arena", {"x": 1, "y": 1})
        for step in range(1, 31):
            mover.update({"x": step * 0.1, "y": 0}, input_seq=step)
            await d.sleep(1 / 60)
        await until(
            d,
            lambda: watcher.mirror.get("player.mover", (0, {}))[1].get("x") == 3.0,
            what="the last position",
        )
        await until(d, lambda: watcher.stats()["checks"] >= 2, what="checks")
        stats = watcher.stats()
        assert stats["desyncs"] == 0 and stats["state_syncs"] == 0
        assert json.dumps(watcher.rendered())  # plain JSON-able fields
        await mover.close()
        await watcher.close()

    return driver.run(scenario)


@pytest.fixture
def proxy(memory_gateway):
    """The netsim proxy in front of the memory gateway."""
    process = NetSimProcess("127.0.0.1", memory_gateway.port, seed=9).start()
    yield process
    process.stop()


def test_200_forced_disconnects_through_the_proxy_resume(driver, memory_gateway, proxy):
    """200 resets by the netsim proxy: at least 99% resume, nothing lost or doubled."""
    topic = f"chat.netsim-{driver.name}"
    proxied = f"ws://127.0.0.1:{proxy.port}/ws"

    async def scenario(d):
        subscriber = d.client(proxied, Tokens("henry"), ping_interval_s=0)
        publisher = d.client(memory_gateway.url, Tokens("ida"))
        seen, _ = record(subscriber)
        states = []
        subscriber.on("client.state", lambda s: states.append((d.now(), s)))
        await subscriber.start()
        await publisher.start()
        await subscriber.subscribe(topic)
        for drop in range(1, 201):
            await publisher.call(
                "pubsub.publish", {"topic": topic, "type": "chat.line", "data": {}}
            )
            assert proxy.drop_all() >= 1
            await until(
                d,
                lambda drop=drop: (
                    subscriber.state == "open"
                    and subscriber.stats()["resume_attempts"] == drop
                ),
                what=f"open again after reset {drop}",
            )
        await until(d, lambda: len(seen) >= 200, timeout=20, what="200 events")
        stats = subscriber.stats()
        rate = stats["resume_success_rate"]
        gaps, lost_at = [], None
        for at, change in states:
            if change.state == "reconnecting" and lost_at is None:
                lost_at = at
            elif change.state == "open" and lost_at is not None:
                gaps.append(at - lost_at)
                lost_at = None
        gaps.sort()
        print(
            f"{d.name}: {stats['resumes']}/{stats['resume_attempts']} resumed; "
            f"drop to open p50 {gaps[len(gaps) // 2] * 1000:.1f} ms, "
            f"p99 {gaps[int(len(gaps) * 0.99)] * 1000:.1f} ms"
        )
        assert stats["resume_attempts"] == 200 and rate >= 0.99
        assert seen == list(range(1, 201))
        await subscriber.close()
        await publisher.close()

    return driver.run(scenario)


def test_a_silent_link_is_detected_by_pings_and_resumed(driver, memory_gateway, proxy):
    """A blackholed link sends no reset: unanswered pings drop it; it resumes."""
    topic = f"chat.blackhole-{driver.name}"
    proxied = f"ws://127.0.0.1:{proxy.port}/ws"

    async def scenario(d):
        subscriber = d.client(
            proxied,
            Tokens("jack"),
            ping_interval_s=0.2,
            ping_timeout_s=0.5,
            connect_timeout_s=1.0,
        )
        publisher = d.client(memory_gateway.url, Tokens("kate"))
        seen, _ = record(subscriber)
        await subscriber.start()
        await publisher.start()
        await subscriber.subscribe(topic)
        publish = {"topic": topic, "type": "chat.line", "data": {}}
        await publisher.call("pubsub.publish", publish)
        await until(d, lambda: seen == [1], what="the first event")
        proxy.blackhole(1.5)
        for _ in range(9):
            await publisher.call("pubsub.publish", publish)
        await until(
            d, lambda: len(seen) >= 10, timeout=15, what="the events after the hole"
        )
        assert seen == list(range(1, 11))
        stats = subscriber.stats()
        assert stats["resumes"] >= 1 and stats["resume_success_rate"] == 1.0
        await subscriber.close()
        await publisher.close()

    return driver.run(scenario)


def test_prediction_converges_after_the_gateway_corrects(driver, gateways):
    """Too fast for max_speed: the gateway corrects; the prediction ends on its x."""
    zones = {
        "track": {
            "position": ["x", "y"],
            "max_speed": 5,
            "speed_burst_s": 0.1,
            "fields": {
                "x": {"type": "number", "quantum": 0.01},
                "y": {"type": "number", "quantum": 0.01},
            },
        }
    }
    gateway = gateways("gw-track", zones=zones)

    def move(fields, dx):
        return {**fields, "x": round(fields["x"] + dx, 2), "y": fields["y"]}

    async def scenario(d):
        runner = d.client(gateway.url, Tokens("runner"))
        judge = d.client(gateway.url, Tokens("judge"))
        await runner.start()
        await judge.start()
        await runner.join("track", {"x": 0, "y": 0})
        await judge.join("track", {"x": 0, "y": 0})
        await until(d, lambda: "player.runner" in runner.mirror, what="snapshot")
        predictor = runner.predict_with(move)
        for _ in range(30):
            runner.input(2.0)  # 120 units/s against a max_speed of 5
            await d.sleep(1 / 60)
        await until(d, lambda: not predictor.pending, what="every ack")
        server_x = lambda: judge.mirror["player.runner"][1]["x"]  # noqa: E731
        await until(
            d, lambda: server_x() == predictor.predicted["x"], what="convergence"
        )
        assert predictor.corrections > 0
        assert 0 < predictor.predicted["x"] < 30 * 2.0
        await runner.close()
        await judge.close()

    return driver.run(scenario)


def test_401_asks_the_provider_once_more_then_stops(driver, memory_gateway):
    """A refused token: one more token is asked for; a second 401 closes."""

    async def scenario(d):
        asked = []

        def expired_once():
            asked.append(1)
            if len(asked) == 1:
                return token_for(TOKENS, "liam", ttl_s=60, now=time.time() - 3600)
            return token_for(TOKENS, "liam")

        client = d.client(memory_gateway.url, expired_once)
        await client.start()
        assert len(asked) == 2
        await client.close()

        refused = d.client(memory_gateway.url, lambda: "not.a.jwt")
        with pytest.raises(ConnectionError, match="401"):
            await refused.start()
        final = await refused.when_closed()
        assert (final.state, final.code) == ("closed", 401)

    return driver.run(scenario)


def test_a_full_gateway_503_fails_over_to_the_other(driver, gateways):
    """The first pick answers 503 (at its cap): the client goes to the other."""
    full = gateways("gw-full", limits={"max_connections": 1})
    free = gateways("gw-free")

    async def scenario(d):
        occupant = d.client(full.url, Tokens("max"))
        await occupant.start()
        # Seeded so that the full gateway is picked first.
        client = d.client([full.url, free.url], Tokens("nora"), rng=random.Random(1))
        states = []
        client.on("client.state", states.append)
        await client.start()
        assert client.core.welcome["gateway_id"] == "gw-free"
        assert states[0].url == full.url
        assert (states[1].state, states[1].delay) == ("reconnecting", 0.0)
        assert client.stats()["last_connect_error"].startswith("HTTP 503")
        await client.close()
        await occupant.close()

    return driver.run(scenario)
