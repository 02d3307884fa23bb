"""Players of the browser tests that are not pages: ``websockets`` clients.

They speak the protocol as any program would (JSON-RPC over a WebSocket,
``state.join`` into the development configuration's zone "arena", then
``state.update`` to move, ``pubsub.publish`` to talk), one call at a time,
reading past the notifications that arrive in between.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.sync.client import ClientConnection

#: Seconds a player waits for one message from the gateway.
RECV_TIMEOUT_S = 10.0
#: Messages a player reads at most while it waits for one response.
MAX_READS = 500


class Player:
    """A player's WebSocket: one call at a time, notifications read past."""

    def __init__(self, ws: ClientConnection, name: str) -> None:
        self.name = name
        self.ws = ws
        welcome = json.loads(self.ws.recv(timeout=RECV_TIMEOUT_S))
        assert welcome["method"] == "session.welcome", welcome
        self.session_id: str = welcome["params"]["session_id"]
        self._ids = 0

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """The call's result; a JSON-RPC error fails the test."""
        self._ids += 1
        self.ws.send(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "method": method,
                    "params": params or {},
                    "id": self._ids,
                }
            )
        )
        for _ in range(MAX_READS):
            message = json.loads(self.ws.recv(timeout=RECV_TIMEOUT_S))
            if message.get("id") == self._ids:
                assert "error" not in message, message
                return message["result"]
        pytest.fail(f"{self.name}: no response to {method} in {MAX_READS} messages")

    def join(self, x: float, y: float, color: str) -> None:
        fields = {"x": x, "y": y, "name": self.name, "color": color}
        self.call("state.join", {"zone": "arena", "fields": fields})

    def move(self, x: float, y: float) -> dict[str, Any]:
        return self.call("state.update", {"fields": {"x": x, "y": y}})
