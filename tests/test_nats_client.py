"""The Twisted NATS client against a real ``nats-server``.

One server per module (restarted by the tests that kill it); the auth and
payload tests start their own, configured for the case.
"""

from __future__ import annotations

import time

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred

from rtgateway.nats import (
    AuthorizationError,
    BufferFull,
    NatsClient,
    NatsError,
    NoResponders,
    PayloadTooLarge,
    RequestTimeout,
)
from rtgateway.testing.nats import NatsServer, find_nats_server

WAIT_S = 5.0


def sleep(seconds: float) -> Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


async def eventually(check, timeout: float = WAIT_S) -> None:
    """Wait, on the real reactor, until ``check()`` is true."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await sleep(0.01)


def client_of(url: str | list[str], **options) -> NatsClient:
    urls = [url] if isinstance(url, str) else url
    options.setdefault("reconnect_delay_s", 0.05)
    options.setdefault("max_reconnect_delay_s", 0.2)
    client = NatsClient(reactor, urls, **options)
    client.start()
    return client


@pytest.fixture
def clients():
    """Clients started by a test, stopped after it."""
    made: list[NatsClient] = []
    yield made
    for client in made:
        client.stop()


@pytest_twisted.ensureDeferred
async def test_publish_reaches_subscriber(nats_server, clients):
    """A message published by one client reaches another's subscription, headers too."""
    a, b = client_of(nats_server.url), client_of(nats_server.url)
    clients += [a, b]
    got = []
    await b.when_connected()
    b.subscribe("rtgw.t.chat.>", got.append)
    await b.flush()
    await a.when_connected()
    a.publish("rtgw.t.chat.lobby", b"hello")
    a.publish("rtgw.t.chat.lobby", b"with", headers={"Origin": "gw1"})
    await eventually(lambda: len(got) == 2)
    assert [m.payload for m in got] == [b"hello", b"with"]
    assert got[0].subject == "rtgw.t.chat.lobby"
    assert got[1].headers == {"Origin": "gw1"}


@pytest_twisted.ensureDeferred
async def test_unsubscribe_stops_delivery(nats_server, clients):
    """After unsubscribe nothing more of the subject is delivered."""
    a = client_of(nats_server.url)
    clients.append(a)
    got = []
    sub = a.subscribe("t.x", got.append)
    await a.flush()
    a.publish("t.x", b"1")
    await eventually(lambda: len(got) == 1)
    a.unsubscribe(sub)
    a.publish("t.x", b"2")
    await a.flush()
    await sleep(0.05)
    assert [m.payload for m in got] == [b"1"]


@pytest_twisted.ensureDeferred
async def test_queue_group_delivers_once(nats_server, clients):
    """Members of one queue group share a subject's messages: each goes to one."""
    a, b, sender = (client_of(nats_server.url) for _ in range(3))
    clients += [a, b, sender]
    got_a, got_b = [], []
    a.subscribe("work", got_a.append, queue="workers")
    b.subscribe("work", got_b.append, queue="workers")
    await a.flush()
    await b.flush()
    for n in range(40):
        sender.publish("work", str(n).encode())
    await eventually(lambda: len(got_a) + len(got_b) == 40)
    await sender.flush()
    assert sorted(int(m.payload) for m in got_a + got_b) == list(range(40))


@pytest_twisted.ensureDeferred
async def test_request_reply(nats_server, clients):
    """A request gets the responder's reply; with nobody listening, NoResponders."""
    service, caller = client_of(nats_server.url), client_of(nats_server.url)
    clients += [service, caller]

    def answer(msg):
        service.publish(msg.reply, b"re:" + msg.payload)

    service.subscribe("rtgw.rpc.echo", answer, queue="rtgw.rpc.echo")
    await service.flush()
    await caller.when_connected()
    reply = await caller.request("rtgw.rpc.echo", b"hi", timeout=WAIT_S)
    assert reply.payload == b"re:hi"
    started = time.monotonic()
    with pytest.raises(NoResponders) as caught:
        await caller.request("rtgw.rpc.nobody", b"hi", timeout=WAIT_S)
    assert caught.value.code == -32601
    assert time.monotonic() - started < 1.0  # told at once, not timed out


@pytest_twisted.ensureDeferred
async def test_request_timeout(nats_server, clients):
    """A responder that never answers: RequestTimeout after the timeout."""
    silent, caller = client_of(nats_server.url), client_of(nats_server.url)
    clients += [silent, caller]
    silent.subscribe("rtgw.rpc.silent", lambda msg: None)
    await silent.flush()
    await caller.when_connected()
    with pytest.raises(RequestTimeout) as caught:
        await caller.request("rtgw.rpc.silent", b"x", timeout=0.2)
    assert caught.value.code == -32006


@pytest_twisted.ensureDeferred
async def test_reconnect_resubscribes_and_sends_pending(nats_server, clients):
    """After a server restart subscriptions are back and buffered messages go out."""
    a = client_of(nats_server.url)
    clients.append(a)
    got = []
    reconnects = []
    a.on_connect(reconnects.append)
    a.subscribe("t.back", got.append)
    await a.flush()
    lost = []
    a.on_disconnect(lambda: lost.append(True))
    nats_server.kill()
    await eventually(lambda: not a.connected)
    a.publish("t.back", b"while down")  # buffered
    flushed = a.flush()
    nats_server.start()
    await eventually(lambda: a.connected, timeout=10)
    await flushed
    await eventually(lambda: len(got) == 1)
    assert got[0].payload == b"while down"
    assert reconnects == [False, True]
    assert lost == [True]


@pytest_twisted.ensureDeferred
async def test_pending_buffer_is_bounded(clients):
    """While disconnected, publications past max_pending_bytes raise BufferFull."""
    server = NatsServer()  # never started: nothing listens on its port
    try:
        a = client_of(server.url, max_pending_bytes=100)
        clients.append(a)
        a.publish("t.x", b"x" * 50)
        with pytest.raises(BufferFull):
            a.publish("t.x", b"x" * 50)
    finally:
        server.close()


@pytest_twisted.ensureDeferred
async def test_fails_over_to_the_next_url(nats_server, clients):
    """A dead first URL is skipped: the client connects to the next one."""
    dead = NatsServer()
    try:
        a = client_of([dead.url, nats_server.url])
        clients.append(a)
        await a.when_connected()
        assert a.server_info["port"] == nats_server.port
    finally:
        dead.close()


@pytest_twisted.ensureDeferred
async def test_max_payload_is_respected(clients):
    """A message over the server's max_payload raises PayloadTooLarge, sends nothing."""
    with NatsServer(max_payload=1024) as server:
        a = client_of(server.url)
        clients.append(a)
        await a.when_connected()
        assert a.max_payload == 1024
        a.publish("t.x", b"x" * 1000)
        with pytest.raises(PayloadTooLarge) as caught:
            a.publish("t.x", b"x" * 1025)
        assert "1025" in caught.value.message and "1024" in caught.value.message
        with pytest.raises(PayloadTooLarge):
            await a.request("t.x", b"x" * 2000, timeout=1)
        await a.flush()
        assert a.connected  # the server never saw the oversized message


@pytest_twisted.ensureDeferred
async def test_token_auth(clients):
    """The right token connects; a wrong one fails when_connected with a clear error."""
    with NatsServer(token="s3cret") as server:
        good = client_of(server.url, token="s3cret")
        bad = client_of(server.url, token="wrong")
        clients += [good, bad]
        await good.when_connected()
        with pytest.raises(AuthorizationError) as caught:
            await bad.when_connected()
        assert "refused the credentials" in caught.value.message
        assert not bad.connected


@pytest_twisted.ensureDeferred
async def test_user_password_auth(clients):
    """User and password, given as options or in the URL, connect."""
    with NatsServer(user="gw", password="pw") as server:
        by_options = client_of(server.url, user="gw", password="pw")
        in_url = client_of(f"nats://gw:pw@127.0.0.1:{server.port}")
        clients += [by_options, in_url]
        await by_options.when_connected()
        await in_url.when_connected()


@pytest_twisted.ensureDeferred
async def test_stop_fails_requests_in_flight(nats_server):
    """Stopping fails the requests in flight and refuses new publications."""
    silent, caller = client_of(nats_server.url), client_of(nats_server.url)
    silent.subscribe("rtgw.rpc.slow", lambda msg: None)
    await silent.flush()
    await caller.when_connected()
    pending = caller.request("rtgw.rpc.slow", b"x", timeout=WAIT_S)
    await caller.stop()
    with pytest.raises(NatsError):
        await pending
    with pytest.raises(NatsError):
        caller.publish("t.x", b"x")
    await silent.stop()


def test_finds_the_binary():
    """The test tooling finds a nats-server (the env variable, PATH or the package)."""
    assert find_nats_server()


@pytest_twisted.ensureDeferred
async def test_connection_sends_small_writes_at_once(nats_server, clients):
    """TCP_NODELAY is set: a reply written after another must not wait for an ACK."""
    import socket

    client = client_of(nats_server.url)
    clients.append(client)
    await client.when_connected()
    handle = client._protocol.transport.getHandle()
    assert handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


@pytest_twisted.ensureDeferred
async def test_publications_during_the_handshake_are_sent(nats_server, clients):
    """Published after CONNECT went out but before its PONG: sent, then flushed."""
    listener = client_of(nats_server.url)
    clients.append(listener)
    got = []
    listener.subscribe("late.x", got.append)
    await listener.flush()
    late = NatsClient(reactor, [nats_server.url])
    clients.append(late)
    flushed = []
    handshake = late._handshake

    def handshake_then_publish(protocol, server):
        handshake(protocol, server)
        late.publish("late.x", b"late")
        flushed.append(late.flush())

    late._handshake = handshake_then_publish
    late.start()
    await eventually(lambda: flushed)
    await flushed[0]
    await listener.flush()
    await eventually(lambda: got)
    assert [m.payload for m in got] == [b"late"]
