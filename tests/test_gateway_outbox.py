"""A connection's frames leave once per turn of the reactor, in order, within bounds."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor, tcp
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol

from rtgateway.gateway.outbox import write_now
from rtgateway.routing.fanout import SharedMessage
from rtgateway.testing import MemoryGateway, make_config
from rtgateway.wire.jsonrpc import notification

TOPICS = {"chat": {"subscribe": "any", "publish": "any", "history_size": 100}}
EVENTS = {"note": {}}


def make_gateway(**limits) -> MemoryGateway:
    return MemoryGateway(
        make_config({"topics": TOPICS, "events": EVENTS, "limits": limits})
    )


def server_side(gateway: MemoryGateway, player: str):
    (connection,) = [
        c
        for c in gateway.gateway.factory.connections
        if c.principal.player_id == player
    ]
    return connection


def record_writes(connection) -> list[bytes]:
    """Every ``transport.write`` the connection makes from now on."""
    writes: list[bytes] = []
    write = connection.transport.write

    def recording(data: bytes) -> None:
        writes.append(bytes(data))
        write(data)

    connection.transport.write = recording
    return writes


def publish_batch(client, texts: list[str]) -> None:
    """Publish several events in one WebSocket message (a JSON-RPC batch)."""
    client.send(
        [
            {
                "jsonrpc": "2.0",
                "method": "pubsub.publish",
                "params": {"topic": "chat.room", "type": "note", "data": {"t": t}},
                "id": n,
            }
            for n, t in enumerate(texts)
        ]
    )


def pump(gateway: MemoryGateway, index: int) -> None:
    """Move one client's bytes only, leaving the outboxes for the next turn."""
    gateway.pumps[index].pump()


def texts(client) -> list[str]:
    return [n["params"]["data"]["t"] for n in client.notifications("note")]


def test_a_turns_fan_out_frames_leave_in_one_write_on_the_next_turn():
    """Three publications read in one turn reach a subscriber in one write."""
    gateway = make_gateway(max_batch=10)
    alice, bob = gateway.open("alice"), gateway.open("bob")
    gateway.call(alice, "pubsub.subscribe", {"topic": "chat.room"})
    writes = record_writes(server_side(gateway, "alice"))
    publish_batch(bob, ["a", "b", "c"])
    pump(gateway, 1)
    assert writes == [] and gateway.gateway.factory.outboxes.pending
    gateway.gateway.factory.outboxes.send_all()
    assert len(writes) == 1 and writes[0].count(b'"note"') == 3
    assert not gateway.gateway.factory.outboxes.pending
    gateway.flush()
    assert texts(alice) == ["a", "b", "c"]


def test_the_next_turn_comes_from_the_reactor_clock():
    """The outboxes are sent by a call for the reactor's next turn."""
    gateway = make_gateway()
    alice, bob = gateway.open("alice"), gateway.open("bob")
    gateway.call(alice, "pubsub.subscribe", {"topic": "chat.room"})
    writes = record_writes(server_side(gateway, "alice"))
    publish_batch(bob, ["a"])
    pump(gateway, 1)
    assert writes == []
    gateway.clock.advance(0)
    assert len(writes) == 1
    assert not gateway.gateway.factory.outboxes.pending


def test_replies_and_events_share_the_outbox_in_order():
    """A notification of the connection's own joins the turn's write, in order."""
    gateway = make_gateway()
    alice, bob = gateway.open("alice"), gateway.open("bob")
    gateway.call(alice, "pubsub.subscribe", {"topic": "chat.room"})
    connection = server_side(gateway, "alice")
    writes = record_writes(connection)
    publish_batch(bob, ["first"])
    pump(gateway, 1)
    connection.send_notification("note", {"data": {"t": "second"}})
    assert writes == []
    gateway.gateway.factory.outboxes.send_all()
    (write,) = writes
    assert 0 <= write.index(b"first") < write.index(b"second")
    gateway.flush()
    assert texts(alice) == ["first", "second"]


def test_a_full_outbox_makes_the_connection_unwritable_until_sent():
    """A replay pauses once a turn's outbox holds half the send buffer."""
    gateway = make_gateway(send_buffer_bytes=4096)
    gateway.open("alice")
    connection = server_side(gateway, "alice")
    event = SharedMessage(notification("note", {"data": {"t": "x" * 700}}))
    resumed = []
    connection.send_shared(event)
    connection.send_shared(event)
    assert connection.writable
    connection.send_shared(event)
    assert not connection.writable  # 3 x ~730 bytes >= 4096 / 2
    connection.when_writable(lambda: resumed.append(connection.writable))
    assert resumed == []
    gateway.gateway.factory.outboxes.send_all()
    assert resumed == [True]


def test_what_waits_in_the_outbox_counts_against_the_send_buffer():
    """A burst bigger than send_buffer_bytes in one turn closes 4008."""
    gateway = make_gateway(send_buffer_bytes=4096)
    alice = gateway.open("alice")
    connection = server_side(gateway, "alice")
    event = SharedMessage(notification("note", {"data": {"t": "x" * 900}}))
    for _ in range(4):
        connection.send_shared(event)
    assert not alice.closed
    connection.send_shared(event)
    gateway.flush()
    assert alice.close_code == 4008
    assert len(texts(alice)) == 4


def test_frames_queued_while_the_transport_is_full_count_once():
    """While paused, the outbox's frames count once against the bound."""
    gateway = make_gateway(send_buffer_bytes=4096)
    alice = gateway.open("alice")
    connection = server_side(gateway, "alice")
    event = SharedMessage(notification("note", {"data": {"t": "x" * 900}}))
    connection._guard.pauseProducing()  # what a full TCP buffer does
    for _ in range(4):
        connection.send_shared(event)
    assert not alice.closed and connection.state == connection.STATE_OPEN
    connection.send_shared(event)
    assert connection.state != connection.STATE_OPEN
    connection._guard.resumeProducing()
    gateway.flush()
    assert alice.close_code == 4008
    assert len(texts(alice)) == 4


def test_a_connection_lost_with_frames_waiting_is_skipped():
    """Frames queued for a connection that dropped are discarded quietly."""
    gateway = make_gateway()
    alice, bob, carol = (
        gateway.open("alice"),
        gateway.open("bob"),
        gateway.open("carol"),
    )
    for client in (alice, carol):
        gateway.call(client, "pubsub.subscribe", {"topic": "chat.room"})
    publish_batch(bob, ["a"])
    pump(gateway, 1)
    server_side(gateway, "alice").transport.abortConnection()
    pump(gateway, 0)
    gateway.flush()
    assert texts(carol) == ["a"]
    assert texts(alice) == []


class _Collect(Protocol):
    def __init__(self) -> None:
        self.received = bytearray()
        self.made = Deferred()

    def connectionMade(self) -> None:
        self.made.callback(self)

    def dataReceived(self, data: bytes) -> None:
        self.received += data


@pytest.fixture
def tcp_pair():
    """A real loopback TCP connection: (server transport, client protocol)."""
    ports = []
    clients = []

    async def connect():
        server = _Collect()
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(lambda: server)
        )
        ports.append(port)
        client = _Collect()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        await endpoint.connect(Factory.forProtocol(lambda: client))
        clients.append(client)
        await server.made
        return server.transport, client

    yield connect
    for client in clients:
        client.transport.abortConnection()
    for port in ports:
        port.stopListening()


async def received(client: _Collect, size: int) -> bytes:
    for _ in range(2000):
        if len(client.received) >= size:
            return bytes(client.received)
        waited = Deferred()
        reactor.callLater(0.005, waited.callback, None)
        await waited
    raise AssertionError(f"{len(client.received)} of {size} bytes arrived")


@pytest_twisted.ensureDeferred
async def test_write_now_sends_straight_to_an_idle_tcp_socket(tcp_pair):
    """Nothing buffered: the bytes go to the socket, no write is registered."""
    transport, client = await tcp_pair()
    assert isinstance(transport, tcp.Connection)
    write_now(transport, b"hello")
    assert transport.dataBuffer == b"" and transport._tempDataLen == 0
    assert transport not in reactor.getWriters()
    assert await received(client, 5) == b"hello"


@pytest_twisted.ensureDeferred
async def test_write_now_queues_behind_what_the_socket_did_not_take(tcp_pair):
    """Once the socket is full, later bytes wait in Twisted's buffer, in order."""
    transport, client = await tcp_pair()
    client.transport.pauseProducing()
    big = bytes(range(256)) * (64 * 1024)  # 16 MiB: more than the socket takes
    write_now(transport, big)
    assert transport.dataBuffer or transport._tempDataLen
    assert transport in reactor.getWriters()
    write_now(transport, b"tail")
    client.transport.resumeProducing()
    assert await received(client, len(big) + 4) == big + b"tail"


def test_autobahns_own_frames_go_after_the_outbox():
    """A close frame (written by Autobahn) follows the frames queued before it."""
    gateway = make_gateway()
    alice = gateway.open("alice")
    connection = server_side(gateway, "alice")
    connection.send_notification("note", {"data": {"t": "last words"}})
    connection.close(4010, "kicked")
    gateway.flush()
    assert texts(alice) == ["last words"]
    assert alice.close_code == 4010


def test_no_data_frame_follows_the_close_frame():
    """A replay waiting for its outbox resumes after a close, never behind it."""
    gateway = make_gateway(send_buffer_bytes=4096)
    alice = gateway.open("alice")
    connection = server_side(gateway, "alice")
    event = SharedMessage(notification("note", {"data": {"t": "x" * 700}}))
    while connection.writable:
        connection.send_shared(event)
    connection.when_writable(lambda: connection.send_shared(event))
    writes = record_writes(connection)
    connection.close(4010, "kicked")
    gateway.flush()
    assert writes[-1][0] == 0x88  # the close frame, and nothing after it
    assert alice.close_code == 4010


def test_a_one_byte_send_buffer_paces_a_replay_one_frame_per_turn():
    """The smallest bound still lets a replay through, one frame per turn."""
    gateway = make_gateway(send_buffer_bytes=1)
    alice = gateway.open("alice")
    connection = server_side(gateway, "alice")
    sent = []

    def replay() -> None:  # what Subscriber.flush does
        while len(sent) < 5:
            if not connection.writable:
                connection.when_writable(replay)
                return
            connection.send_shared(
                SharedMessage(notification("note", {"data": {"t": str(len(sent))}}))
            )
            sent.append(True)

    replay()
    assert len(sent) == 1
    gateway.flush()
    assert texts(alice) == ["0", "1", "2", "3", "4"]


def test_an_aborted_connection_sends_nothing_more():
    """Frames queued before an abort are discarded, not written."""
    gateway = make_gateway()
    gateway.open("alice")
    connection = server_side(gateway, "alice")
    connection.send_notification("note", {"data": {"t": "late"}})
    writes = record_writes(connection)
    connection.dropConnection(abort=True)
    gateway.gateway.factory.outboxes.send_all()
    assert writes == []


def test_one_failing_outbox_does_not_strand_the_others():
    """An error sending one connection's outbox is logged; the rest go out."""
    from twisted.internet.task import Clock
    from twisted.logger import globalLogPublisher

    from rtgateway.gateway.outbox import Outboxes

    clock = Clock()
    outboxes = Outboxes(clock)
    sent, logged = [], []

    def fails() -> None:
        raise ValueError("cannot encode")

    globalLogPublisher.addObserver(logged.append)
    try:
        outboxes.schedule(fails)
        outboxes.schedule(lambda: sent.append("other"))
        clock.advance(0)
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert sent == ["other"]
    assert any("log_failure" in event for event in logged)


def test_a_transport_pausing_with_frames_queued_counts_them():
    """A TLS transport may pause on a turn of its own, with the outbox full."""
    from rtgateway.gateway.backpressure import SendBufferGuard

    guard = SendBufferGuard(1000)
    guard.queued = 800
    guard.pauseProducing()
    assert guard.admits(200)
    assert not guard.admits(1)
