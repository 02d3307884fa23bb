"""The handshake timeout is a deadline from the accept, not an idle timeout.

A client that dribbles its request one byte at a time (slowloris) must not
hold a connection past ``[limits] handshake_timeout_s``, however steadily
its bytes keep coming; an upgraded WebSocket and an answered request are
not touched by it.
"""

from __future__ import annotations

import socket
import time

import pytest
from twisted.internet.testing import StringTransport

from rtgateway.testing import GatewayProcess

DRIBBLE = b"X-Slow: " + b"a" * 200


def dribble(gateway, channel, transport, *, every=0.5, steps=40):
    """Feed ``DRIBBLE`` one byte per ``every`` s; seconds until disconnected."""
    for step in range(steps):
        if transport.disconnecting:
            return step * every
        channel.dataReceived(DRIBBLE[step : step + 1])
        gateway.clock.advance(every)
    return None


def connect_channel(gateway):
    channel = gateway.gateway.site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    return channel, transport


@pytest.mark.parametrize("path", [b"/ws", b"/healthz"])
def test_dribbling_client_is_closed_at_the_deadline(make_memory_gateway, path):
    """A byte every 0.5 s does not hold a connection past handshake_timeout_s."""
    gateway = make_memory_gateway({"limits": {"handshake_timeout_s": 3}})
    channel, transport = connect_channel(gateway)
    channel.dataReceived(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n")
    held = dribble(gateway, channel, transport)
    assert held is not None, "still open after 20 s of dribbling"
    assert 3 <= held <= 3.5
    assert transport.value() == b""  # no response was ever started


def test_each_kept_alive_request_has_a_deadline_of_its_own(make_memory_gateway):
    """After an answered request, a dribbled second one is closed at the deadline."""
    gateway = make_memory_gateway({"limits": {"handshake_timeout_s": 3}})
    channel, transport = connect_channel(gateway)
    gateway.clock.advance(2)
    channel.dataReceived(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 200 ")
    gateway.clock.advance(2)  # past the first deadline: the request was answered
    assert not transport.disconnecting
    channel.dataReceived(b"GET /healthz HTTP/1.1\r\n")
    held = dribble(gateway, channel, transport)
    assert held is not None and held <= 1.5  # 3 s counted from the first answer


def test_upgraded_connection_outlives_the_deadline(make_memory_gateway):
    """The deadline ends at the upgrade: the WebSocket stays open and answers."""
    gateway = make_memory_gateway({"limits": {"handshake_timeout_s": 1}})
    client = gateway.open("alice")
    assert client.opened
    gateway.advance(5)
    assert not client.closed
    response = gateway.call(client, "sys.ping", {})
    assert "result" in response


def open_and_dribble(port, path, *, every=0.25, limit_s=8.0):
    """Send a request head then a byte every ``every`` s until the server closes.

    Returns (seconds from connect to close or to ``limit_s``, bytes dribbled,
    whether the server closed, bytes received).
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    with sock:
        started = time.monotonic()
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sock.settimeout(every)
        sent = 0
        received = b""
        for step in range(int(limit_s / every) + 1):
            if time.monotonic() - started >= limit_s:
                break
            try:
                sock.sendall(DRIBBLE[step % len(DRIBBLE) :][:1])
                sent += 1
                data = sock.recv(4096)
            except TimeoutError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                return time.monotonic() - started, sent, True, received
            if not data:
                return time.monotonic() - started, sent, True, received
            received += data
        return time.monotonic() - started, sent, False, received


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """A real twistd gateway with a one-second handshake deadline."""
    process = GatewayProcess(
        tmp_path_factory.mktemp("deadline"), {"limits": {"handshake_timeout_s": 1.0}}
    ).start()
    yield process
    process.stop()


@pytest.mark.integration
@pytest.mark.parametrize("path", [b"/ws", b"/healthz"])
def test_dribbling_tcp_client_is_closed_by_the_gateway_process(gateway, path):
    """Over loopback TCP, a byte every 0.25 s is closed after about 1 s."""
    held, sent, closed, received = open_and_dribble(gateway.port, path)
    assert closed, f"held open {held:.1f} s while {sent} bytes kept coming"
    assert 0.9 <= held < 2.5
    assert sent >= 3  # the client never went quiet
    assert received == b""
    # The gateway itself is fine, and answers a prompt client.
    assert gateway.get("/healthz")[0] == 200
