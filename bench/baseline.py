"""The baseline: the least a WebSocket server on this stack can do.

A raw Autobahn server on the same Twisted reactor as the gateway, with no
authentication, no JSON-RPC, no limits and no heartbeats. Every gateway
figure is divided by this server's figure for the same load in the same
run, so the ratio says what rtgateway's own work costs on top of the stack,
under the same machine noise.

Modes:

``echo``
    Every message is sent straight back (the ``rpc`` scenario's baseline:
    the echoed request stands for the response).
``broadcast``
    Every message is a publish: framed once with ``prepareMessage`` and sent
    to every other connected client with ``sendPreparedMessage`` (the
    sender does not get its own message back, as a gateway publisher that
    is not subscribed does not). This is what Autobahn offers for fan-out.
``broadcast-raw``
    As ``broadcast``, but the prepared frame is written straight to each
    transport, skipping Autobahn's send path: the ceiling for fan-out on
    this stack.

Run as ``python -m bench.baseline --port P --mode echo --reactor epoll``; it
prints ``listening`` once the port is open.
"""

from __future__ import annotations

import argparse
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from bench.reactors import REACTORS, install
from rtgateway.testing.process import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent

MODES = ("echo", "broadcast", "broadcast-raw")
#: The gateway's default message bound, so both servers parse alike.
MAX_MESSAGE_BYTES = 65536
#: Both servers under test listen with this backlog (Twisted's default is 50).
LISTEN_BACKLOG = 1024


def _server_factory(mode: str):
    """The Autobahn factory for ``mode`` (imported after the reactor)."""
    from autobahn.twisted.websocket import (
        WebSocketServerFactory,
        WebSocketServerProtocol,
    )

    class BaselineProtocol(WebSocketServerProtocol):
        def onConnect(self, request):
            # Accept what the load generator offers, as the gateway does.
            return request.protocols[0] if request.protocols else None

        def onOpen(self):
            self.factory.clients.add(self)

        def onMessage(self, payload, isBinary):
            if mode == "echo":
                self.sendMessage(payload, isBinary)
                return
            prepared = self.factory.prepareMessage(payload, isBinary)
            if mode == "broadcast":
                for client in self.factory.clients:
                    if client is not self:
                        client.sendPreparedMessage(prepared)
            else:
                frame = prepared.payloadHybi
                for client in self.factory.clients:
                    if client is not self:
                        client.transport.write(frame)

        def connectionLost(self, reason):
            self.factory.clients.discard(self)
            super().connectionLost(reason)

    factory = WebSocketServerFactory()
    factory.protocol = BaselineProtocol
    factory.clients = set()
    factory.setProtocolOptions(
        maxFramePayloadSize=MAX_MESSAGE_BYTES,
        maxMessagePayloadSize=MAX_MESSAGE_BYTES,
        autoPingInterval=0,
        failByDrop=False,
        tcpNoDelay=True,
        webStatus=False,
    )
    return factory


def main(argv: list[str] | None = None) -> None:
    """Serve on 127.0.0.1 until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m bench.baseline")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=MODES, default="echo")
    parser.add_argument("--reactor", choices=REACTORS, default="epoll")
    options = parser.parse_args(argv)
    install(options.reactor)
    from twisted.internet import reactor

    reactor.listenTCP(
        options.port,
        _server_factory(options.mode),
        backlog=LISTEN_BACKLOG,
        interface="127.0.0.1",
    )
    print("listening", flush=True)
    reactor.run()


class BaselineProcess:
    """The baseline server in a child process on a free loopback port."""

    #: No authentication: load processes send no token.
    secret = None

    def __init__(self, mode: str = "echo", reactor: str = "epoll") -> None:
        self.port = free_port()
        self.mode = mode
        self.reactor = reactor
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self, timeout: float = 20.0) -> BaselineProcess:
        """Start the server and return once it listens."""
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.baseline",
                f"--port={self.port}",
                f"--mode={self.mode}",
                f"--reactor={self.reactor}",
            ],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdout=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.1)
            if ready and self.process.stdout.readline().startswith(b"listening"):
                return self
            if self.process.poll() is not None:
                raise RuntimeError("the baseline server exited at start")
        self.stop()
        raise RuntimeError(f"the baseline server did not listen in {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL what does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)
        self.process.stdout.close()


if __name__ == "__main__":
    main(sys.argv[1:])
