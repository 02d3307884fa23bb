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
    to every connected client with ``sendPreparedMessage``, as the gateway's
    fan-out does.
``broadcast-raw``
    As ``broadcast``, but the prepared frame is written straight to each
    transport, skipping Autobahn's send path: the ceiling for fan-out.

Run as ``python -m bench.baseline --port P --mode echo --reactor epoll``; it
prints ``listening`` once the port is open.
"""

from __future__ import annotations

import argparse
import sys

from bench.reactors import REACTORS, install

MODES = ("echo", "broadcast", "broadcast-raw")
#: The gateway's default message bound, so both servers parse alike.
MAX_MESSAGE_BYTES = 65536


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
                    client.sendPreparedMessage(prepared)
            else:
                frame = prepared.payloadHybi
                for client in self.factory.clients:
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
        options.port, _server_factory(options.mode), backlog=4096, interface="127.0.0.1"
    )
    print("listening", flush=True)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
