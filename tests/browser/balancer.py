"""A TCP load balancer in front of a cluster's gateways, for the browser tests.

A page talks only to the host that served it (its Content-Security-Policy
allows no other), so a page in front of a cluster reaches it the way
players do in production: through one address that forwards each new
connection to a gateway that is up. This one forwards to the first gateway
in its list that accepts the connection, so the tests know which gateway
serves a page, and when that gateway dies, the page's next connection (a
token request, the WebSocket) reaches the next one.

Each connection is two threads copying bytes; when either side ends, both
sockets are closed, so a killed gateway looks to the browser like a lost
connection, not a hanging one.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Sequence

#: Seconds to wait for a gateway to accept before trying the next.
CONNECT_TIMEOUT_S = 2.0
CHUNK = 65536


class Balancer:
    """Listens on a free loopback port; forwards to ``backends`` in order."""

    def __init__(self, backends: Sequence[int]) -> None:
        self._backends = list(backends)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._accepting = threading.Thread(
            target=self._accept, name="balancer", daemon=True
        )
        self._accepting.start()

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop listening and drop every forwarded connection."""
        self._closed = True
        self._listener.close()
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            _close(sock)
        self._accepting.join(timeout=CONNECT_TIMEOUT_S)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        backend = self._connect()
        if backend is None:
            _close(client)
            return
        with self._lock:
            if self._closed:
                _close(client)
                _close(backend)
                return
            self._open.update((client, backend))
        threading.Thread(target=self._copy, args=(backend, client), daemon=True).start()
        self._copy(client, backend)

    def _connect(self) -> socket.socket | None:
        for port in self._backends:
            try:
                return socket.create_connection(
                    ("127.0.0.1", port), timeout=CONNECT_TIMEOUT_S
                )
            except OSError:
                continue
        return None

    def _copy(self, source: socket.socket, target: socket.socket) -> None:
        source.settimeout(None)
        try:
            while chunk := source.recv(CHUNK):
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(source)
                self._open.discard(target)
            _close(source)
            _close(target)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
