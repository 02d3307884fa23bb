"""A client that sends but never reads is a slow consumer: closed 4008.

Not 4002 (idle) when its requests dry up because its answers cannot be
sent, not a dropped connection when its pongs do, and never an unbounded
buffer while it keeps sending. The process tests use a bare socket that
never calls ``recv`` until the gateway has decided to close it: WebSocket
libraries read ahead into their own memory, so only a socket with a small
receive buffer is a real non-reader.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time

import pytest

from rtgateway.gateway.backpressure import SendBufferGuard
from rtgateway.testing import GatewayProcess, make_config, token_for
from rtgateway.wire import closecodes

TOKENS = make_config()


def ping(n: int) -> dict:
    """A sys.ping whose 2 KB id makes its answer 2 KB as well."""
    return {
        "jsonrpc": "2.0",
        "method": "sys.ping",
        "params": {},
        "id": f"{n}-" + "x" * 2048,
    }


# -- in memory -----------------------------------------------------------------


def test_a_transport_that_stays_full_is_held_to_the_bound():
    """Twisted pauses its producer on every write while full: the count goes on."""
    guard = SendBufferGuard(4096)
    guard.pauseProducing()
    assert guard.admits(3000)
    guard.pauseProducing()  # the next write, the buffer still full
    assert not guard.admits(3000)
    guard.resumeProducing()
    assert guard.pending == 0 and guard.admits(3000)


def test_non_reader_on_a_full_transport_is_closed_4008(make_memory_gateway):
    """Answers written to a transport that stays full close 4008 past the bound."""
    gateway = make_memory_gateway({"limits": {"send_buffer_bytes": 16384}})
    client = gateway.open("alice")
    (connection,) = gateway.gateway.factory.connections
    write = connection.transport.write

    def full(data: bytes) -> None:  # what twisted.internet.abstract does
        write(data)
        connection._guard.pauseProducing()

    connection.transport.write = full
    sent = 0
    while sent < 40 and not client.closed:
        client.send(ping(sent))
        sent += 1
        gateway.flush()
    assert client.close_code == closecodes.SLOW_CONSUMER
    assert sent <= 10  # 16 KB of answers, then the bound
    registry = gateway.gateway.metrics.registry
    assert registry.get_sample_value("rtgateway_slow_consumers_total") == 1


def test_idle_timer_with_output_paused_closes_4008(make_memory_gateway):
    """No request for idle_timeout_s while the transport is full: 4008, not 4002."""
    gateway = make_memory_gateway({"heartbeat": {"idle_timeout_s": 3}})
    client = gateway.open("alice")
    (connection,) = gateway.gateway.factory.connections
    connection._guard.pauseProducing()  # what a full TCP buffer does
    gateway.advance(3)
    assert client.close_code == closecodes.SLOW_CONSUMER
    registry = gateway.gateway.metrics.registry
    assert registry.get_sample_value("rtgateway_slow_consumers_total") == 1


def test_idle_timer_with_output_flowing_still_closes_4002(make_memory_gateway):
    """A connection that is merely quiet keeps its idle close code."""
    gateway = make_memory_gateway({"heartbeat": {"idle_timeout_s": 3}})
    client = gateway.open("alice")
    gateway.advance(3)
    assert client.close_code == closecodes.IDLE_TIMEOUT


def test_missed_pong_with_output_paused_closes_4008(make_memory_gateway):
    """A ping stuck behind unread answers is no sign of a dead peer: 4008."""
    gateway = make_memory_gateway({"heartbeat": {"interval_s": 5, "timeout_s": 2}})
    client = gateway.open("alice")
    client.answer_pings = False
    (connection,) = gateway.gateway.factory.connections
    connection._guard.pauseProducing()
    gateway.advance(5)
    gateway.advance(2)
    assert client.close_code == closecodes.SLOW_CONSUMER


# -- a real gateway, a bare socket ---------------------------------------------


def masked_text_frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = bytes([0x81, 0x80 | length])
    elif length < 65536:
        header = bytes([0x81, 0x80 | 126]) + struct.pack("!H", length)
    else:
        header = bytes([0x81, 0x80 | 127]) + struct.pack("!Q", length)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def non_reader(port: int, sub: str) -> socket.socket:
    """A socket that did the upgrade by hand, with a small receive buffer."""
    sock = socket.socket()
    # Both before connect, so that the window the gateway sees is small: a
    # 4 KB receive buffer, and 1 KB segments (loopback's 64 KB segments
    # would let the kernel size the gateway's send buffer for megabytes).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1024)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    token = token_for(TOKENS, sub)
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 4096:
        head += sock.recv(1)  # not one byte past the 101: the rest stays unread
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def close_frame(sock: socket.socket, timeout: float = 20.0) -> tuple[int, bytes]:
    """Drain the socket up to the server's close frame: (code, reason)."""
    deadline = time.monotonic() + timeout
    data = b""
    offset = 0
    sock.settimeout(1)
    while time.monotonic() < deadline:
        while len(data) - offset >= 2:  # parse the (unmasked) frames received
            opcode, length = data[offset] & 0x0F, data[offset + 1] & 0x7F
            start = {126: 4, 127: 10}.get(length, 2)
            if len(data) - offset < start:
                break
            if length == 126:
                length = struct.unpack_from("!H", data, offset + 2)[0]
            elif length == 127:
                length = struct.unpack_from("!Q", data, offset + 2)[0]
            end = offset + start + length
            if end > len(data):
                break
            if opcode == 0x8:
                body = data[offset + start : end]
                return struct.unpack("!H", body[:2])[0], body[2:]
            offset = end
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            continue
        if not chunk:
            break
        data = data[offset:] + chunk
        offset = 0
    raise AssertionError(f"no close frame within {timeout} s")


def wait_for(check, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


@pytest.fixture
def gateway(fleet):
    """A gateway of these limits and heartbeat settings (of the ``fleet``)."""

    def start(limits: dict, heartbeat: dict) -> GatewayProcess:
        return fleet.start(
            {
                "limits": {
                    # Only the send buffer decides here, not the rate limit.
                    "rate_per_second": 1_000_000,
                    "rate_burst": 1_000_000,
                    "abuse_rejections": 1_000_000,
                    # Time enough to drain up to the close frame once the
                    # gateway has sent it.
                    "close_timeout_s": 15.0,
                    **limits,
                },
                "heartbeat": heartbeat,
            },
        )

    return start


@pytest.mark.integration
def test_sender_that_never_reads_is_closed_4008_not_4002(gateway):
    """20,000 pings with 2 KB ids, no read: closed 4008 well before the idle timer."""
    process = gateway({"send_buffer_bytes": 65536}, {"idle_timeout_s": 3.0})
    slow = "rtgateway_slow_consumers_total"
    sock = non_reader(process.port, "sink")
    with sock:
        started = time.monotonic()
        sent = 0
        while sent < 20_000 and time.monotonic() - started < 30:
            try:
                sock.sendall(masked_text_frame(json.dumps(ping(sent)).encode()))
            except (TimeoutError, ConnectionError):
                break
            sent += 1
            if sent % 100 == 0 and process.metric(slow):
                break
        held = time.monotonic() - started
        wait_for(lambda: process.metric(slow) == 1, timeout=5)
        code, reason = close_frame(sock)
    assert code == closecodes.SLOW_CONSUMER, (code, reason, sent, f"{held:.1f} s")
    assert process.metric(slow) == 1
    assert sent < 20_000  # closed long before the last ping was sent
    # A bounded send buffer: nothing near the 40 MB of answers was kept.
    assert process.metric("rtgateway_bytes_out_total") < 8 * 1024 * 1024
    assert wait_for(
        lambda: (
            process.metric("rtgateway_connections_closed_total", {"code": "4008"}) == 1
        ),
        timeout=20,
    )
    assert process.metric("rtgateway_connections_closed_total", {"code": "4002"}) == 0


@pytest.mark.integration
def test_idle_timer_while_answers_wait_unread_closes_4008(gateway):
    """A non-reader quiet for idle_timeout_s with answers queued: 4008, not 4002."""
    process = gateway({"send_buffer_bytes": 32 * 1024 * 1024}, {"idle_timeout_s": 1.0})
    sock = non_reader(process.port, "sink")
    with sock:
        # 5 MB of answers: far more than the kernel's buffers hold, less
        # than the send buffer bound, so only the idle timer can end it.
        for n in range(2500):
            sock.sendall(masked_text_frame(json.dumps(ping(n)).encode()))
        assert wait_for(
            lambda: (
                process.metric("rtgateway_messages_in_total", {"method": "sys.ping"})
                >= 2500
            ),
            timeout=10,
        )
        assert process.metric("rtgateway_slow_consumers_total") == 0
        time.sleep(2.0)  # the idle timer fires meanwhile
        code, reason = close_frame(sock, timeout=30)
    assert code == closecodes.SLOW_CONSUMER, (code, reason)
    assert process.metric("rtgateway_slow_consumers_total") == 1
