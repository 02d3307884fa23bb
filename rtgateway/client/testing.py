"""A scripted gateway for testing code built on the client core.

Like treq's ``testing`` module: no network, no event loop. The core is
driven the way a transport drives it, on a fake clock; every action it asks
for is carried out here (frames decoded into ``sent``, connects and closes
recorded) and the test answers as the gateway would, message by message.
"""

from __future__ import annotations

import json
import random
from typing import Any

from rtgateway.client import ClientCore, ClientOptions
from rtgateway.client.actions import Abort, Connect, Disconnect, RefreshToken, Send


def welcome(session: str = "s1", token: str = "r1") -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "method": "session.welcome",
        "params": {
            "session_id": session,
            "player_id": "alice",
            "gateway_id": "gw",
            "resume_token": token,
            "protocol": 1,
        },
    }


def event(topic: str, offset: int, epoch: str = "e1", **data: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "method": "chat.line",
        "params": {
            "topic": topic,
            "data": data,
            "ts_ms": 0,
            "offset": offset,
            "epoch": epoch,
        },
    }


class CoreHarness:
    """One core on a fake clock (JSON frames), and what it sent."""

    def __init__(self, urls: Any = "ws://a/ws", seed: int = 1, **options: Any):
        self.core = ClientCore(urls, ClientOptions(**options), rng=random.Random(seed))
        self.now = 0.0
        self.sent: list[dict[str, Any]] = []
        self.connects: list[str] = []
        self.disconnects: list[tuple[int, str]] = []
        self.aborts: list[str] = []
        self.refresh_asked = 0
        self.states: list[Any] = []
        self.core.on("client.state", self.states.append)

    def pump(self) -> None:
        for action in self.core.take_actions():
            if isinstance(action, Send):
                self.sent.append(json.loads(action.data))
            elif isinstance(action, Connect):
                self.connects.append(action.url)
            elif isinstance(action, Disconnect):
                self.disconnects.append((action.code, action.reason))
            elif isinstance(action, Abort):
                self.aborts.append(action.reason)
            elif isinstance(action, RefreshToken):
                self.refresh_asked += 1

    def start(self) -> CoreHarness:
        self.core.start(self.now)
        self.pump()
        return self

    def open(self, session: str = "s1", token: str = "r1") -> None:
        """The pending connect succeeds and the gateway welcomes."""
        self.core.opened(self.now, "rtgw.v1.json")
        self.feed(welcome(session, token))

    def feed(self, document: Any) -> None:
        self.core.received(self.now, json.dumps(document).encode())
        self.pump()

    def requests(self, method: str | None = None) -> list[dict[str, Any]]:
        """Requests sent so far (of one method, if given), in order."""
        self.pump()
        return [
            m
            for m in self.sent
            if "id" in m and (method is None or m.get("method") == method)
        ]

    def last(self, method: str) -> dict[str, Any]:
        return self.requests(method)[-1]

    def reply(self, method: str, result: Any) -> None:
        self.feed({"jsonrpc": "2.0", "result": result, "id": self.last(method)["id"]})

    def fail(self, method: str, code: int, message: str = "no", data=None) -> None:
        error = {"code": code, "message": message}
        if data is not None:
            error["data"] = data
        self.feed({"jsonrpc": "2.0", "error": error, "id": self.last(method)["id"]})

    def drop(self, code: int | None = 1006, reason: str | None = None) -> None:
        self.core.closed(self.now, code, reason)
        self.pump()

    def advance(self, seconds: float) -> None:
        """Move the clock, running the core's timer at each deadline on the way."""
        end = self.now + seconds
        while True:
            deadline = self.core.next_deadline()
            if deadline is None or deadline > end:
                break
            self.now = max(self.now, deadline)
            self.core.timer(self.now)
            self.pump()
        self.now = end
        self.core.timer(self.now)
        self.pump()

    def state_names(self) -> list[str]:
        return [s.state for s in self.states]
