"""The NATS bus of the Redis backends, on real redis-server and nats-server.

The contract suites run on this bus too (``backend_harness``); these tests
cover what only NATS has: the connection settings of ``[backend]`` reaching
the client (credentials, TLS), and what the bus does when NATS goes away
and comes back.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from backend_harness import Recorder, eventually, sleep
from twisted.internet import reactor

from rtgateway.backends.redis import RedisBackends
from rtgateway.config import BackendConfig
from rtgateway.testing.certs import self_signed
from rtgateway.testing.nats import NatsServer
from rtgateway.wire.errors import Unavailable


def backends_on(redis_server, nats_url: str, **options) -> RedisBackends:
    config = BackendConfig(
        kind="redis",
        redis_url=redis_server.url,
        call_timeout_s=1.0,
        bus="nats",
        nats_url=(nats_url,),
        **options,
    )
    backends = RedisBackends(config, "gw-nats", reactor)
    backends.bus.handler = Recorder()
    backends.startService()
    return backends


@pytest_twisted.ensureDeferred
async def test_token_from_the_configuration_reaches_nats(redis_server):
    """With the right token the bus is ready; with a wrong one it never is."""
    with NatsServer(token="s3cret") as server:
        good = backends_on(redis_server, server.url, nats_token="s3cret")
        bad = backends_on(redis_server, server.url, nats_token="wrong")
        try:
            await eventually(good.ready)
            await good.bus.subscribe("rtgw.t.auth")
            await good.bus.publish("rtgw.t.auth", b"in")
            assert await good.bus.handler.wait_for("rtgw.t.auth", 1) == [b"in"]
            assert not bad.ready()
        finally:
            await good.stopService()
            await bad.stopService()


@pytest_twisted.ensureDeferred
async def test_tls_with_the_configured_ca(redis_server, tmp_path):
    """A tls:// server is verified against nats_tls_ca; without it, no connection."""
    key, cert = self_signed(tmp_path)
    with NatsServer(tls=(str(cert), str(key))) as server:
        trusting = backends_on(redis_server, server.url, nats_tls_ca=str(cert))
        doubting = backends_on(redis_server, server.url)
        try:
            await eventually(trusting.ready)
            await trusting.bus.subscribe("rtgw.t.tls")
            await trusting.bus.publish("rtgw.t.tls", b"sealed")
            assert await trusting.bus.handler.wait_for("rtgw.t.tls", 1) == [b"sealed"]
            await sleep(0.3)
            assert not doubting.ready()
        finally:
            await trusting.stopService()
            await doubting.stopService()


@pytest_twisted.ensureDeferred
async def test_outage_refuses_subscriptions_then_resyncs(redis_server):
    """NATS down: not ready, subscribe and publish -32005; back: subscriptions
    held, one resync."""
    server = NatsServer().start()
    backends = backends_on(redis_server, server.url)
    other = backends_on(redis_server, server.url)
    try:
        await eventually(lambda: backends.ready() and other.ready())
        await backends.bus.subscribe("rtgw.t.kept")
        server.kill()
        await eventually(lambda: not backends.ready())
        with pytest.raises(Unavailable):
            await backends.bus.subscribe("rtgw.t.new")
        with pytest.raises(Unavailable):  # unconfirmed within call_timeout_s
            await other.bus.publish("rtgw.t.kept", b"while down")
        server.restart()
        await eventually(lambda: backends.ready() and other.ready())
        assert backends.bus.handler.reconnects == 1
        await other.bus.publish("rtgw.t.kept", b"after")
        # What was published while down leaves once the publisher is back,
        # maybe before the subscriber is: only what follows is sure to arrive.
        handler = backends.bus.handler
        await eventually(lambda: b"after" in handler.on("rtgw.t.kept"))
    finally:
        await backends.stopService()
        await other.stopService()
        server.close()
