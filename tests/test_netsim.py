"""The network simulation proxy: each condition on a fake clock, then on loopback.

The unit tests run the proxy on a ``MemoryReactorClock``: the accepted
connection and the one to the target are ``StringTransport``\\s, and time
moves only when the test advances it. The loopback tests check what a fake
transport cannot show: real resets, and the proxy as a child process
controlled over HTTP.
"""

from __future__ import annotations

import socket
import socketserver
import threading

import pytest
import pytest_twisted
from twisted.internet import error, protocol, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.testing import MemoryReactorClock, StringTransport

from rtgateway.testing.netsim import HIGH_WATER, SLICE_S, NetSim, NetSimProcess

PEER = IPv4Address("TCP", "127.0.0.1", 40000)


class Connection:
    """Both ends of one proxied connection, as fake transports."""

    def __init__(self, harness: Harness) -> None:
        _, factory, _, _ = harness.reactor.tcpServers[-1]
        self.client = StringTransport()
        self.downstream = factory.buildProtocol(PEER)
        clients = len(harness.reactor.tcpClients)
        self.downstream.makeConnection(self.client)
        self.server = StringTransport()
        self.upstream = None
        if len(harness.reactor.tcpClients) > clients:
            _, _, upstream_factory, _, _ = harness.reactor.tcpClients[-1]
            self.upstream_factory = upstream_factory
            self.upstream = upstream_factory.buildProtocol(PEER)
            self.upstream.makeConnection(self.server)

    def send_up(self, data: bytes) -> None:
        self.downstream.dataReceived(data)

    def send_down(self, data: bytes) -> None:
        self.upstream.dataReceived(data)


class Harness:
    """A proxy on a fake reactor and clock."""

    def __init__(self, seed: int = 1) -> None:
        self.reactor = MemoryReactorClock()
        self.proxy = NetSim("127.0.0.1", 6379, reactor=self.reactor, seed=seed)
        self.proxy.start()

    def connect(self) -> Connection:
        return Connection(self)

    def advance(self, seconds: float, step: float = 0.001) -> None:
        """Move time in small steps so that every timer fires at its own time."""
        for _ in range(round(seconds / step)):
            self.reactor.advance(step)


@pytest.fixture
def harness() -> Harness:
    return Harness()


def test_forwards_both_ways_at_once_without_conditions(harness):
    """A clean link forwards each way within the same instant."""
    link = harness.connect()
    assert harness.reactor.tcpClients[-1][:2] == ("127.0.0.1", 6379)
    link.send_up(b"PING\r\n")
    link.send_down(b"+PONG\r\n")
    harness.reactor.advance(0)
    assert link.server.value() == b"PING\r\n"
    assert link.client.value() == b"+PONG\r\n"
    assert harness.proxy.forwarded == {"up": 6, "down": 7}


def test_latency_is_per_direction(harness):
    """Bytes wait the latency of their own direction, not a moment less."""
    harness.proxy.set_conditions("up", latency_s=0.1)
    harness.proxy.set_conditions("down", latency_s=0.3)
    link = harness.connect()
    link.send_up(b"up")
    link.send_down(b"down")
    harness.reactor.advance(0.099)
    assert link.server.value() == b"" and link.client.value() == b""
    harness.reactor.advance(0.001)
    assert link.server.value() == b"up" and link.client.value() == b""
    harness.reactor.advance(0.199)
    assert link.client.value() == b""
    harness.reactor.advance(0.001)
    assert link.client.value() == b"down"


def arrival_times(harness: Harness, link: Connection, chunks: list[bytes]):
    """Send one chunk every millisecond; the time each one reached the server."""
    arrivals: dict[int, float] = {}
    sent: dict[int, float] = {}
    total = 0
    ends = []
    for chunk in chunks:
        total += len(chunk)
        ends.append(total)
    for i, chunk in enumerate(chunks):
        sent[i] = harness.reactor.seconds()
        link.send_up(chunk)
        harness.advance(0.001)
        for j, end in enumerate(ends):
            if j not in arrivals and len(link.server.value()) >= end:
                arrivals[j] = harness.reactor.seconds()
    for _ in range(1000):
        harness.advance(0.001)
        for j, end in enumerate(ends):
            if j not in arrivals and len(link.server.value()) >= end:
                arrivals[j] = harness.reactor.seconds()
    return sent, arrivals


def test_jitter_varies_delays_but_never_reorders(harness):
    """With jitter larger than the send interval, bytes still arrive in order."""
    harness.proxy.set_conditions("up", latency_s=0.05, jitter_s=0.04)
    link = harness.connect()
    chunks = [b"%03d," % i for i in range(100)]
    sent, arrivals = arrival_times(harness, link, chunks)
    assert link.server.value() == b"".join(chunks)
    delays = [arrivals[i] - sent[i] for i in range(100)]
    assert all(0.01 - 1e-9 <= d <= 0.091 + 1e-9 for d in delays), delays
    assert len({round(d, 3) for d in delays}) > 10  # jitter did vary them
    times = [arrivals[i] for i in range(100)]
    assert times == sorted(times)


def test_the_seed_repeats_the_jitter():
    """Two proxies with one seed delay the same bytes by the same amounts."""
    runs = []
    for seed in (5, 5, 6):
        harness = Harness(seed)
        harness.proxy.set_conditions("up", latency_s=0.05, jitter_s=0.04)
        link = harness.connect()
        runs.append(arrival_times(harness, link, [b"x%d" % i for i in range(20)])[1])
    assert runs[0] == runs[1] != runs[2]


def test_bandwidth_bound_is_respected(harness):
    """At 1,000 B/s no window sees more than its share plus one slice."""
    rate = 1_000
    harness.proxy.set_conditions("down", bandwidth_bps=rate)
    link = harness.connect()
    link.send_down(bytes(3_000))
    delivered = []
    for _ in range(400):
        harness.reactor.advance(0.01)
        delivered.append(len(link.client.value()))
    slice_bytes = rate * SLICE_S
    for window in (1, 10, 50, 100):
        for start in range(len(delivered) - window):
            got = delivered[start + window] - delivered[start]
            assert got <= rate * window * 0.01 + slice_bytes
    assert delivered[-1] == 3_000
    assert delivered.index(3_000) + 1 == pytest.approx(300, abs=1)  # 3.0 s
    assert link.server.value() == b""  # the other direction is untouched


def test_a_full_queue_stops_reading_the_sender(harness):
    """Past the high-water mark the sender is paused until the queue drains."""
    harness.proxy.set_conditions("up", bandwidth_bps=100_000)
    link = harness.connect()
    link.send_up(bytes(HIGH_WATER + 1))
    assert link.client.producerState == "paused"
    harness.advance(1.0, step=0.01)
    assert link.client.producerState == "producing"
    assert len(link.server.value()) == HIGH_WATER + 1


def test_a_full_receiver_pauses_forwarding(harness):
    """When the target's transport asks to pause, nothing more is written to it."""
    link = harness.connect()
    link.server.producer.pauseProducing()
    link.send_up(b"held")
    harness.advance(0.1)
    assert link.server.value() == b""
    link.server.producer.resumeProducing()
    harness.reactor.advance(0)
    assert link.server.value() == b"held"


def test_blackhole_forwards_nothing_then_resets_the_damaged(harness):
    """A blackhole forwards nothing; when it ends, what lost bytes is reset."""
    harness.proxy.set_conditions("both", latency_s=0.05)
    quiet, busy, in_flight = harness.connect(), harness.connect(), harness.connect()
    in_flight.send_up(b"on its way")
    harness.proxy.blackhole(10.0)
    busy.send_up(b"lost")
    busy.send_down(b"lost too")
    clients = len(harness.reactor.tcpClients)
    stranded = harness.connect()
    assert len(harness.reactor.tcpClients) == clients  # never reaches the target
    stranded.send_up(b"nowhere")
    harness.advance(9.99, step=0.01)
    for link in (quiet, busy, in_flight):
        assert link.server.value() == b"" and link.client.value() == b""
    assert not any(c.client.disconnected for c in (quiet, busy, in_flight, stranded))
    harness.advance(0.02, step=0.01)
    assert not harness.proxy.blackholed
    assert [c.client.disconnected for c in (quiet, busy, in_flight, stranded)] == [
        False,
        True,
        True,
        True,
    ]
    assert busy.server.disconnected and in_flight.server.disconnected
    quiet.send_up(b"after")
    harness.advance(0.06)
    assert quiet.server.value() == b"after"
    assert harness.proxy.dropped == 3 and len(harness.proxy.links) == 1


def test_blackhole_until_cleared(harness):
    """Without a duration the blackhole lasts until cleared."""
    link = harness.connect()
    harness.proxy.blackhole()
    harness.advance(60, step=1.0)
    assert harness.proxy.blackholed
    harness.proxy.clear()
    link.send_up(b"again")
    harness.reactor.advance(0)
    assert link.server.value() == b"again" and not link.client.disconnected


def test_drop_all_resets_both_sides(harness):
    """drop_all aborts the accepted side and the target side of every connection."""
    links = [harness.connect() for _ in range(3)]
    harness.proxy.set_conditions("up", latency_s=1.0)
    links[0].send_up(b"never delivered")
    assert harness.proxy.drop_all() == 3
    harness.advance(2.0, step=0.1)
    for link in links:
        assert link.client.disconnected and link.server.disconnected
    assert links[0].server.value() == b""
    assert harness.proxy.links == set() and harness.proxy.dropped == 3


def test_random_drops_follow_the_rate_and_the_seed(harness):
    """At 1 drop/s, about half the connections are gone after 0.7 s, all by 30 s."""
    links = [harness.connect() for _ in range(200)]
    harness.proxy.random_drops(1.0)
    harness.advance(0.7, step=0.01)
    gone = sum(link.client.disconnected for link in links)
    assert 70 <= gone <= 130  # 1 - e^-0.7 = 50 %
    harness.advance(30, step=0.5)
    assert all(link.client.disconnected and link.server.disconnected for link in links)
    harness.proxy.random_drops(0)
    survivor = harness.connect()
    harness.advance(30, step=0.5)
    assert not survivor.client.disconnected


def test_a_closed_side_closes_the_other_after_its_bytes(harness):
    """An orderly close is passed on once the bytes before it are delivered."""
    harness.proxy.set_conditions("up", latency_s=0.2)
    link = harness.connect()
    link.send_up(b"last words")
    link.downstream.connectionLost(error.ConnectionDone())
    harness.reactor.advance(0.1)
    assert not link.server.disconnecting
    harness.reactor.advance(0.1)
    assert link.server.value() == b"last words" and link.server.disconnecting
    link.upstream.connectionLost(error.ConnectionDone())
    assert harness.proxy.links == set() and harness.proxy.dropped == 0


def test_an_unreachable_target_closes_the_accepted_side(harness):
    """When the target refuses, the accepted connection is closed."""
    link = harness.connect()
    link.upstream_factory.clientConnectionFailed(None, error.ConnectionRefusedError())
    assert link.client.disconnected and harness.proxy.links == set()


def test_slow_degrades_both_directions(harness):
    """slow() delays and narrows both ways; clear() restores the clean link."""
    harness.proxy.slow(latency_s=0.3, jitter_s=0.0, bandwidth_bps=1_000)
    link = harness.connect()
    link.send_up(bytes(100))
    link.send_down(bytes(100))
    harness.advance(0.35)
    assert 0 < len(link.server.value()) < 100 and 0 < len(link.client.value()) < 100
    harness.advance(0.1)
    assert len(link.server.value()) == len(link.client.value()) == 100
    harness.proxy.clear()
    link.send_up(b"quick")
    harness.reactor.advance(0)
    assert link.server.value().endswith(b"quick")


def test_bad_settings_are_refused(harness):
    """A wrong direction or a negative figure raises ValueError."""
    with pytest.raises(ValueError, match="direction"):
        harness.proxy.set_conditions("sideways", latency_s=1)
    with pytest.raises(ValueError):
        harness.proxy.set_conditions(latency_s=-1)
    with pytest.raises(ValueError):
        harness.proxy.random_drops(-1)


# -- loopback ------------------------------------------------------------------


class Recorder(protocol.Protocol):
    """Keeps what it receives and why its connection ended."""

    def __init__(self, echo: bool = False) -> None:
        self.received = b""
        self.echo = echo
        self.ended: Deferred = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.echo:
            self.transport.write(data)

    def connectionLost(self, reason=None) -> None:
        self.ended.callback(reason.value)  # a Failure would errback


async def until(check, timeout: float = 5.0) -> None:
    from twisted.internet import task

    for _ in range(int(timeout / 0.01)):
        if check():
            return
        await task.deferLater(reactor, 0.01, lambda: None)
    raise AssertionError("condition not met in time")


@pytest_twisted.ensureDeferred
async def test_drop_is_a_tcp_reset_on_loopback():
    """On real sockets a drop ends both peers with a reset, not an orderly close."""
    servers: list[Recorder] = []

    def serve() -> Recorder:
        servers.append(Recorder(echo=True))
        return servers[-1]

    listening = reactor.listenTCP(
        0, protocol.Factory.forProtocol(serve), interface="127.0.0.1"
    )
    proxy = NetSim(
        "127.0.0.1", listening.getHost().port, reactor=reactor, seed=3
    ).start()
    try:
        proxy.set_conditions("both", latency_s=0.02)
        client = Recorder()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", proxy.port)
        await connectProtocol(endpoint, client)
        client.transport.write(b"hello")
        await until(lambda: client.received == b"hello")
        assert proxy.drop_all() == 1
        client_reason = await client.ended
        server_reason = await servers[0].ended
        assert isinstance(client_reason, error.ConnectionLost)
        assert isinstance(server_reason, error.ConnectionLost)
    finally:
        await proxy.stop()
        await listening.stopListening()


class EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


def echo_over(sock: socket.socket, data: bytes, timeout: float = 2.0) -> bytes:
    sock.settimeout(timeout)
    sock.sendall(data)
    return sock.recv(65536)


def test_the_proxy_as_a_process_is_controlled_over_http():
    """python -m rtgateway.testing.netsim: forwards, blackholes, drops on request."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), EchoHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with NetSimProcess("127.0.0.1", server.server_address[1], seed=1) as proxy:
            first = socket.create_connection(("127.0.0.1", proxy.port))
            assert echo_over(first, b"one") == b"one"
            proxy.blackhole()
            with pytest.raises(TimeoutError):
                echo_over(first, b"swallowed", timeout=0.3)
            assert proxy.status()["blackholed"] is True
            proxy.clear_blackhole()  # first lost bytes: reset
            with pytest.raises(ConnectionResetError):
                echo_over(first, b"x")
            second = socket.create_connection(("127.0.0.1", proxy.port))
            proxy.set_conditions("down", latency_s=0.2)
            assert echo_over(second, b"late") == b"late"
            assert proxy.drop_all() == 1
            with pytest.raises(ConnectionResetError):
                echo_over(second, b"y")
            status = proxy.status()
            assert status["accepted"] == 2 and status["dropped"] == 2
            assert status["conditions"]["down"]["latency_s"] == 0.2
            first.close()
            second.close()
    finally:
        server.shutdown()
        server.server_close()
